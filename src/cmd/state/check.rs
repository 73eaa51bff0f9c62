//! `status`, `validate`, `verify-integrity`, `validate-backup`, `health`:
//! the commands whose exit code says how the state is.

use serde::Serialize;
use serde_json::{Value, json};

use super::TOOL;
use crate::cmd::{self as cli, Ctx, Paint};
use crate::error::{Error, Result};
use crate::exit::Code;
use crate::state::health::{self, StatusReport};
use crate::state::integrity::{self, FileCheck, Report};
use crate::state::{backup, schema};

/// `status [--json]`: a summary; exit 0 valid, 1 missing, 3 corrupt, 4 invalid.
pub fn status(ctx: &Ctx) -> Result<Code> {
    let store = ctx.store()?;
    let bytes = store.load_bytes()?;
    let backups = ctx.backend.state().list_backups()?.len();
    let report = health::status(&ctx.cfg, store.path(), bytes.as_deref(), backups);
    if ctx.output.json {
        ctx.print_json(&report);
    } else {
        cli::print(&status_text(ctx, &report));
    }
    if report.code() == Code::GeneralError {
        eprintln!(
            "{TOOL}: no state file at {} — run 'state-manager init'",
            store.path().display()
        );
    }
    Ok(report.code())
}

fn status_text(ctx: &Ctx, r: &StatusReport) -> String {
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    let degraded = if r.degraded_mode.enabled {
        ctx.output.paint(
            &format!("ON ({})", r.degraded_mode.reason.as_deref().unwrap_or("-")),
            Paint::Warn,
        )
    } else {
        "off".into()
    };
    let state = ctx.output.paint(
        r.condition.name(),
        match r.condition {
            health::Condition::Valid => Paint::Good,
            health::Condition::Invalid => Paint::Warn,
            _ => Paint::Bad,
        },
    );
    let locks_text = if r.live_locks.is_empty() {
        "none".to_string()
    } else {
        r.live_locks.join(", ")
    };
    format!(
        "state file:     {}\nstate:          {}\nsize:           {}\nschema version: {}\nphase:          {}\nlast modified:  {}\nrevision:       {}\nbackups:        {}\nlive locks:     {}\ndegraded mode:  {}\n",
        r.path,
        state,
        r.size.map_or("-".into(), |n| format!("{n} bytes")),
        s(&r.schema_version),
        s(&r.phase),
        s(&r.last_modified),
        s(&r.revision),
        r.backups,
        locks_text,
        degraded
    )
}

/// What `validate` found.
#[derive(Serialize)]
struct Validated {
    valid: bool,
    path: String,
    violations: Vec<schema::Violation>,
    violation_count: usize,
}

/// `validate [--json]`: 0 valid, 3 unparseable, 4 schema violations.
pub fn validate(ctx: &Ctx) -> Result<Code> {
    ctx.audited_state("validate", |detail| {
        let store = ctx.store()?;
        let doc = store.load()?;
        let v = schema::violations(&doc);
        detail["violation_count"] = json!(v.len());
        let report = Validated {
            valid: v.is_empty(),
            path: store.path().display().to_string(),
            violation_count: v.len(),
            violations: v,
        };
        if ctx.output.json {
            ctx.print_json(&report);
        } else {
            let mut out = String::new();
            for x in &report.violations {
                out.push_str(&format!("{x}\n"));
            }
            if report.valid {
                out.push_str(&format!("valid: {}\n", report.path));
            }
            cli::print(&out);
        }
        if report.valid {
            Ok(Code::Success)
        } else {
            Err(Error::validation(format!("the state breaks the schema in {} place(s)", report.violation_count))
                .with_path(store.path())
                .hint("fix them with 'state-manager set', or run 'state-manager migrate' for an older document"))
        }
    })
}

/// `verify-integrity` / `validate-backup` under `--json`.
#[derive(Serialize)]
struct IntegrityJson<'r> {
    clean: bool,
    exit_code: i32,
    /// The state file's status; `missing` when there is none; null for
    /// `validate-backup`.
    state_status: Option<&'static str>,
    files: Vec<&'r FileCheck>,
    summary: Summary,
}

#[derive(Serialize)]
struct Summary {
    checked: usize,
    verified: usize,
    unverified: usize,
    corrupt: usize,
    unreadable: usize,
    invalid: usize,
}

/// Prints a report as text or JSON and turns it into the command's result.
fn finish_report(ctx: &Ctx, report: &Report, state_path: Option<&std::path::Path>) -> Result<Code> {
    let checked = report.all().count();
    let code = report.code();
    if ctx.output.json {
        ctx.print_json(&IntegrityJson {
            clean: code == Code::Success,
            exit_code: code.as_i32(),
            state_status: match (&report.state, state_path) {
                (Some(s), _) => Some(s.status()),
                (None, Some(_)) => Some("missing"),
                (None, None) => None,
            },
            files: report.all().collect(),
            summary: Summary {
                checked,
                verified: report.count("ok"),
                unverified: report.count("unverified"),
                corrupt: report.count("corrupt"),
                unreadable: report.count("unreadable"),
                invalid: report.count("invalid"),
            },
        });
    } else {
        let mut out = String::new();
        if let (None, Some(p)) = (&report.state, state_path) {
            out.push_str(&format!("note: no state file at {}\n", p.display()));
        }
        for f in report.all() {
            for p in &f.problems {
                let paint = if p.severity() == "invalid" {
                    Paint::Warn
                } else {
                    Paint::Bad
                };
                out.push_str(&format!(
                    "{}  {}: {}\n",
                    ctx.output
                        .paint(&format!("{:<10}", p.severity().to_uppercase()), paint),
                    f.path.display(),
                    p.message
                ));
            }
            if f.status() == "unverified" {
                out.push_str(&format!(
                    "{}  {}: no checksum (written by hand or by an older toolkit; the next write adds one)\n",
                    ctx.output.paint("UNVERIFIED", Paint::Dim),
                    f.path.display()
                ));
            }
        }
        let mut parts = vec![format!("{} verified", report.count("ok"))];
        for s in ["unverified", "corrupt", "unreadable", "invalid"] {
            if report.count(s) > 0 {
                parts.push(format!("{} {s}", report.count(s)));
            }
        }
        out.push_str(&format!(
            "checked {checked} file(s): {}\n",
            parts.join(", ")
        ));
        cli::print(&out);
    }
    match report.error() {
        None => Ok(Code::Success),
        Some(e) => Err(e),
    }
}

/// `verify-integrity [--json]`: 0 clean, 3 anything corrupt, 4 only schema problems.
pub fn verify_integrity(ctx: &Ctx) -> Result<Code> {
    ctx.audited_state("verify-integrity", |detail| {
        let store = ctx.store()?;
        let report = integrity::verify_all(&ctx.cfg, store.path());
        detail["checked"] = json!(report.all().count());
        detail["problems"] = json!(report.all().filter(|f| !f.problems.is_empty()).count());
        finish_report(ctx, &report, Some(store.path()))
    })
}

/// `validate-backup ID [--json]`: the checks of `verify-integrity` for one
/// backup, named by its file name (with or without `.json`) or path.
pub fn validate_backup(ctx: &Ctx, id: &str) -> Result<Code> {
    let found = backup::find(&ctx.cfg, id);
    let target = found
        .as_ref()
        .map_or_else(|_| id.to_string(), |b| b.name.clone());
    ctx.audited("validate-backup", target, |detail| {
        let b = found?;
        let check = integrity::check_document_file(&b.path, "backup");
        detail["status"] = json!(check.status());
        let report = Report {
            state: None,
            files: vec![check],
        };
        let result = finish_report(ctx, &report, None);
        if result.is_ok() && !ctx.output.json {
            cli::println(&format!("valid: {}", b.name));
        }
        result
    })
}

/// The colour of a health status.
fn health_paint(status: &str) -> Paint {
    match status {
        "healthy" => Paint::Good,
        "degraded" => Paint::Warn,
        "unhealthy" => Paint::Bad,
        _ => Paint::Dim,
    }
}

/// `health [--json]`: see [`crate::state::health`].
pub fn health(ctx: &Ctx) -> Result<Code> {
    let report = health::report(&ctx.cfg);
    if ctx.output.json {
        ctx.print_json(&report);
    } else {
        let paint = |status: &str, text: String| ctx.output.paint(&text, health_paint(status));
        let mut out = format!(
            "status: {}\n",
            paint(report.status, report.status.to_string())
        );
        for (name, c) in &report.checks {
            out.push_str(&format!(
                "  {name:<14} {} {}\n",
                paint(c.status, format!("{:<10}", c.status)),
                c.detail
            ));
        }
        cli::print(&out);
    }
    match report.error() {
        None => Ok(Code::Success),
        Some(e) => Err(e),
    }
}
