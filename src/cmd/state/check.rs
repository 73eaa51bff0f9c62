//! `status`, `validate`, `verify-integrity`, `validate-backup`, `health`:
//! the commands whose exit code says how the state is.

use serde::Serialize;
use serde_json::{Value, json};

use super::TOOL;
use crate::cmd::{self as cli, Ctx, Paint};
use crate::config::Found;
use crate::error::{Error, Result};
use crate::exit::Code;
use crate::state::health::{self, StatusReport};
use crate::state::integrity::{self, FileCheck, Report};
use crate::state::{backup, schema};

/// `status [--json]`: a summary; exit 0 valid, 1 missing, 3 corrupt, 4 invalid.
pub fn status(ctx: &Ctx) -> Result<Code> {
    let b = &ctx.backend;
    let bytes = match b.state().load_bytes() {
        Ok(bytes) => bytes,
        // Stored bytes that fail their checksum: the state is corrupt, which
        // is status's answer (exit 3), not a failure to give one. No bytes
        // parse as a document, so the report says corrupt.
        Err(e) if e.code() == Code::StateCorruption => Some(Vec::new()),
        Err(e) => return Err(e),
    };
    let backups = b.state().list_backups()?.len();
    let place = health::Place {
        backend: b.kind(),
        namespace: b.namespace().map(str::to_owned),
        location: ctx.state_target(),
    };
    let report = health::status(&ctx.cfg, place, bytes.as_deref(), backups);
    let found_by = (b.kind() == "file").then_some(ctx.cfg.found_by);
    if ctx.output.json {
        ctx.print_json(&StatusJson {
            report: &report,
            found_by,
        });
    } else {
        cli::print(&status_text(ctx, &report, found_by));
    }
    if report.code() == Code::GeneralError {
        eprintln!(
            "{TOOL}: no state at {} — run 'state-manager init'",
            report.path
        );
    }
    Ok(report.code())
}

/// `status --json`: the report and how the state file was chosen.
#[derive(Serialize)]
struct StatusJson<'r> {
    #[serde(flatten)]
    report: &'r StatusReport,
    /// How the state file was chosen (see [`crate::config::locate_state`]);
    /// null on a server backend.
    found_by: Option<Found>,
}

fn status_text(ctx: &Ctx, r: &StatusReport, found_by: Option<Found>) -> String {
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
        "backend:        {}\nstate file:     {}{}\nstate:          {}\nsize:           {}\nschema version: {}\nphase:          {}\nlast modified:  {}\nrevision:       {}\nbackups:        {}\nlive locks:     {}\ndegraded mode:  {}\n",
        match &r.namespace {
            Some(ns) => format!("{} (namespace {ns})", r.backend),
            None => r.backend.to_string(),
        },
        r.path,
        found_by.map_or(String::new(), |f| format!(
            "\nfound by:       {}",
            f.describe()
        )),
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
        let state = ctx.backend.state();
        let bytes = state.load_bytes()?.ok_or_else(|| state.missing())?;
        let doc = state.parse(&bytes)?;
        let v = schema::violations(&doc);
        detail["violation_count"] = json!(v.len());
        let report = Validated {
            valid: v.is_empty(),
            path: ctx.state_target(),
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
        let (report, place) = if ctx.backend.kind() == "file" {
            let store = ctx.store()?;
            (
                integrity::verify_all(&ctx.cfg, store.path()),
                store.path().to_path_buf(),
            )
        } else {
            let place = std::path::PathBuf::from(ctx.state_target());
            (
                integrity::verify_stored(ctx.backend.as_ref(), &place)?,
                place,
            )
        };
        detail["checked"] = json!(report.all().count());
        detail["problems"] = json!(report.all().filter(|f| !f.problems.is_empty()).count());
        finish_report(ctx, &report, Some(&place))
    })
}

/// `validate-backup ID [--json]`: the checks of `verify-integrity` for one
/// backup, named by its file name (with or without `.json`) or path.
pub fn validate_backup(ctx: &Ctx, id: &str) -> Result<Code> {
    let state = ctx.backend.state();
    let found = state
        .list_backups()
        .and_then(|all| backup::find_in(all, id));
    let target = found
        .as_ref()
        .map_or_else(|_| id.to_string(), |b| b.name.clone());
    ctx.audited("validate-backup", target, |detail| {
        let b = found?;
        let check = match state.backup_bytes(&b) {
            Ok(bytes) => integrity::check_document_bytes(&b.path, "backup", &bytes),
            // Unreadable: the file check says how.
            Err(_) => integrity::check_document_file(&b.path, "backup"),
        };
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

/// `health [--json] [--pings N]`: see [`crate::state::health`] (and, on
/// Redis, `crate::backend::redis::health`; `pings` PINGs make its latency figures).
pub fn health(ctx: &Ctx, pings: usize) -> Result<Code> {
    #[cfg(feature = "redis")]
    let report = match ctx.backend.redis() {
        Some(r) => health::summarize(
            r.health_checks(pings),
            "redis",
            Some(r.namespace().to_owned()),
        ),
        None => health::report(&ctx.cfg),
    };
    #[cfg(not(feature = "redis"))]
    let report = {
        let _ = pings;
        health::report(&ctx.cfg)
    };
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
            // What to do, under a warning (an unhealthy check's hint ends
            // the error line on stderr).
            if let (Some(hint), "degraded" | "unknown") = (&c.hint, c.status) {
                out.push_str(&format!("{:<28}→ {hint}\n", ""));
            }
        }
        cli::print(&out);
    }
    match report.error() {
        None => Ok(Code::Success),
        Some(e) => Err(e),
    }
}
