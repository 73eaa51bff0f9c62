//! The `lock-manager` subcommands: one function each, printing their result
//! on stdout and returning the exit code, with an audit event per operation
//! (`acquire`, `takeover`, `release`, `check`, `list`, `clean`, `status`).
//!
//! Refusals (bad name, bad metadata, hierarchy) are audited like any other
//! acquire, with exit code 4, and write nothing under `.locks/`.

use std::time::Duration;

use serde_json::{Value, json};

use super::manager::{self, Acquired, CheckState, Request, WaitLog};
use super::name;
use super::process::{self, Identity};
use super::record::LockType;
use super::report;
use crate::audit::Recorder;
use crate::cmd as cli;
use crate::config::{self, Config};
use crate::error::{Error, Result};
use crate::exit::Code;

/// The binary's name, as audit events and error lines carry it.
pub const TOOL: &str = "lock-manager";

/// The arguments of `acquire`, as typed.
#[derive(Clone, Debug, Default)]
pub struct AcquireArgs {
    pub name: String,
    /// Seconds, fractions allowed; `None`: the configured LOCK_TIMEOUT.
    pub timeout: Option<String>,
    /// `shared` or `exclusive`; `None`: exclusive.
    pub kind: Option<String>,
    /// A JSON value (an object, preferably) stored with the holder.
    pub metadata: Option<String>,
    /// `--owner PID`; `None`: LOCK_OWNER_PID, else the parent process.
    pub owner: Option<u32>,
    /// How long the hold lasts at most, such as `30`, `10m`.
    pub ttl: Option<String>,
    pub verbose: bool,
    pub json: bool,
}

/// Builds the request from typed arguments; every refusal is exit 4.
fn request(cfg: &Config, a: &AcquireArgs) -> Result<Request> {
    name::validate(&a.name)?;
    let timeout = match a.timeout.as_deref() {
        Some(t) => config::parse_seconds(t, "timeout")?,
        None => cfg.lock_timeout,
    };
    let kind = match a.kind.as_deref() {
        Some(k) => LockType::parse(k)?,
        None => LockType::Exclusive,
    };
    let metadata = a.metadata.as_deref().map(parse_metadata).transpose()?;
    let ttl = a
        .ttl
        .as_deref()
        .map(|t| config::parse_duration(t).map(|d| d.as_secs_f64()))
        .transpose()?;
    Ok(Request {
        name: a.name.clone(),
        kind,
        owner: owner_for(cfg, &a.name, a.owner)?,
        ttl,
        metadata,
        timeout,
    })
}

/// The owner of this invocation for lock `name`: `--owner`, else
/// `LOCK_OWNER_PID`, else the parent process — unless this very process
/// already holds `name`. That happens when a shell runs `lock-manager` as the
/// last command of `bash -c '...'`: bash then execs it in place, so it has
/// the shell's pid and start time, and its parent is not the shell.
fn owner_for(cfg: &Config, name: &str, flag: Option<u32>) -> Result<Identity> {
    let implicit =
        flag.is_none() && std::env::var_os("LOCK_OWNER_PID").is_none_or(|v| v.is_empty());
    if implicit
        && let Ok(Some(rec)) = manager::read(cfg, name)
        && !rec.holders.is_empty()
    {
        let me = Identity::current();
        if rec.holder(&me).is_some() {
            return Ok(me);
        }
    }
    process::resolve_owner(flag)
}

/// Parses METADATA: any JSON value nested at most
/// [`MAX_DEPTH`](crate::state::document::MAX_DEPTH) deep (exit 4 otherwise),
/// stored as given.
pub fn parse_metadata(text: &str) -> Result<Value> {
    let value = serde_json::from_str(text).map_err(|e| {
        Error::validation("bad metadata: it is not JSON")
            .because(e)
            .hint(r#"pass a JSON object such as '{"step":"build"}' (quote it for the shell)"#)
    })?;
    crate::state::document::check_depth(&value, 0, "the lock metadata")?;
    Ok(value)
}

/// Acquires with one `acquire` audit event (and one `takeover` event per
/// stale holder replaced). `build` makes the request; its errors are
/// audited as refusals.
fn audited_acquire(
    cfg: &Config,
    target: &str,
    build: impl FnOnce() -> Result<Request>,
) -> (Result<Acquired>, WaitLog, Option<Request>) {
    let rec = Recorder::start(cfg, TOOL, "acquire", target);
    let mut log = WaitLog::start();
    let (req, result) = match build() {
        Ok(req) => {
            let result = manager::acquire(cfg, &req, &mut log);
            (Some(req), result)
        }
        Err(e) => (None, Err(e)),
    };
    let mut detail = json!({
        "lock_type": req.as_ref().map(|r| r.kind.as_str()),
        "wait_ms": log.wait_ms(),
        "owner_pid": req.as_ref().map(|r| r.owner.pid),
        "holders_while_waiting": log.holders,
    });
    if let (Ok(got), Some(req)) = (&result, &req) {
        detail["already_held"] = json!(got.already_held);
        detail["upgraded"] = json!(got.upgraded);
        for t in &got.takeovers {
            Recorder::start(cfg, TOOL, "takeover", target).finish_with(
                0,
                "ok",
                json!({"stale_pid": t.stale_pid, "owner_pid": req.owner.pid, "reason": t.reason}),
            );
        }
    }
    rec.finish(&result, detail);
    (result, log, req)
}

/// `acquire NAME [TIMEOUT] [TYPE] [METADATA]`: 0 held, 2 timed out, 3 corrupt
/// record, 4 bad name/metadata/type or hierarchy violation.
pub fn acquire(cfg: &Config, a: &AcquireArgs) -> Result<Code> {
    let (result, log, req) = audited_acquire(cfg, &a.name, || request(cfg, a));
    let got = result?;
    if a.json || a.verbose {
        let req = req.expect("a granted request");
        let mut v = serde_json::to_value(&got.record).expect("a record always serializes");
        v["owner_pid"] = json!(req.owner.pid);
        v["wait_ms"] = json!(log.wait_ms());
        v["holders_while_waiting"] = json!(log.holders);
        v["already_held"] = json!(got.already_held);
        v["upgraded"] = json!(got.upgraded);
        v["takeovers"] = got
            .takeovers
            .iter()
            .map(|t| json!({"stale_pid": t.stale_pid, "reason": t.reason}))
            .collect();
        if a.json {
            cli::print_json(&v);
        } else {
            cli::print(&verbose_text(&got, &req, &log));
        }
    }
    Ok(Code::Success)
}

/// The human form of `acquire --verbose`.
fn verbose_text(got: &Acquired, req: &Request, log: &WaitLog) -> String {
    let rec = &got.record;
    let how = if got.upgraded {
        "upgraded to exclusive"
    } else if got.already_held {
        "already held"
    } else {
        "acquired"
    };
    let mut out = format!(
        "lock '{}' {how}: {} for pid {} after {:.1} ms\n",
        rec.name,
        rec.kind.as_str(),
        req.owner.pid,
        log.wait_ms()
    );
    if !log.holders.is_empty() {
        let pids: Vec<String> = log.holders.iter().map(u32::to_string).collect();
        out.push_str(&format!("  waited for: pid {}\n", pids.join(", ")));
    }
    for t in &got.takeovers {
        out.push_str(&format!(
            "  took over from stale pid {} ({})\n",
            t.stale_pid, t.reason
        ));
    }
    for h in &rec.holders {
        out.push_str(&format!("  holder: pid {} since {}", h.id.pid, h.acquired));
        if let Some(ttl) = h.ttl {
            out.push_str(&format!(", ttl {ttl}s"));
        }
        if let Some(m) = &h.metadata {
            out.push_str(&format!(", metadata {m}"));
        }
        out.push('\n');
    }
    out
}

/// `release NAME [--force]`: 0 released (or not held), 6 held by another owner.
pub fn release(cfg: &Config, name: &str, owner: Option<u32>, force: bool) -> Result<Code> {
    let rec = Recorder::start(cfg, TOOL, "release", name);
    let (owner, result) = match name::validate(name).and_then(|()| owner_for(cfg, name, owner)) {
        Ok(o) => {
            let result = manager::release(cfg, name, &o, force);
            (Some(o), result)
        }
        Err(e) => (None, Err(e)),
    };
    let mut detail = json!({
        "owner_pid": owner.as_ref().map(|o| o.pid),
        "forced": force,
    });
    if let Ok(r) = &result {
        detail["held"] = json!(r.held);
        if force {
            detail["forced_pids"] = json!(r.forced_pids);
        }
    }
    rec.finish(&result, detail);
    result.map(|_| Code::Success)
}

/// `check NAME`: prints `locked:TYPE:PID` (0), `unlocked` (1) or `stale` (2);
/// a record that does not parse is exit 3.
pub fn check(cfg: &Config, name: &str) -> Result<Code> {
    let rec = Recorder::start(cfg, TOOL, "check", name);
    let result = manager::check(cfg, name);
    let (line, code) = match &result {
        Ok(CheckState::Locked(kind, pid)) => {
            (format!("locked:{}:{pid}", kind.as_str()), Code::Success)
        }
        Ok(CheckState::Unlocked) => ("unlocked".to_string(), Code::GeneralError),
        Ok(CheckState::Stale) => ("stale".to_string(), Code::LockTimeout),
        Err(_) => {
            rec.finish(&result, json!({}));
            return result.map(|_| Code::Success);
        }
    };
    // An answer, not a failure (design.md §12): the event says 0 whatever
    // the answer, which `answer_exit` keeps, so audit failure counts stay true.
    rec.finish_with(
        0,
        "ok",
        json!({ "state": line, "answer_exit": code.as_i32() }),
    );
    cli::println(&line);
    if code == Code::Success
        && let Some(note) = manager::unverified_note(cfg, name)
    {
        eprintln!("{TOOL}: note: {note}");
    }
    Ok(code)
}

/// The output format of `list`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Table,
    Json,
}

/// `list [table|json]`: every lock record, one row per holder.
pub fn list(cfg: &Config, format: Format) -> Result<Code> {
    let rec = Recorder::start(cfg, TOOL, "list", "*");
    process::snapshot(|| list_of(cfg, rec, format))
}

fn list_of(cfg: &Config, rec: Recorder<'_>, format: Format) -> Result<Code> {
    let result = manager::scan(cfg);
    rec.finish(
        &result,
        json!({ "count": result.as_ref().map_or(0, Vec::len) }),
    );
    let entries = result?;
    match format {
        Format::Table => cli::print(&report::table(&entries)),
        Format::Json => cli::print_json(&report::json_list(&entries)),
    }
    warn_corrupt(&entries);
    Ok(Code::Success)
}

/// One warning line per record that does not parse.
fn warn_corrupt(entries: &[manager::Entry]) {
    for e in entries {
        if let Err(err) = &e.record {
            eprintln!("{TOOL}: warning: {err}");
        }
    }
}

/// `clean [--force]`: removes stale records (with `--force`, also records that
/// do not parse) and prints how many.
pub fn clean(cfg: &Config, force: bool) -> Result<Code> {
    let rec = Recorder::start(cfg, TOOL, "clean", "*");
    let result = process::snapshot(|| manager::clean(cfg, force));
    let detail = match &result {
        Ok(c) => json!({
            "removed": c.removed.len(),
            "names": c.removed,
            "pruned": c.pruned,
            "corrupt_kept": c.corrupt,
            "forced": force,
        }),
        Err(_) => json!({ "forced": force }),
    };
    rec.finish(&result, detail);
    let cleaned = result?;
    let n = cleaned.removed.len();
    cli::println(&format!(
        "removed {n} stale lock record{}",
        if n == 1 { "" } else { "s" }
    ));
    for name in &cleaned.corrupt {
        eprintln!(
            "{TOOL}: warning: kept lock record '{name}', which does not parse — inspect it, then run 'lock-manager clean --force'"
        );
    }
    Ok(Code::Success)
}

/// `status [--json]`: locks held and by whom, waiting requests, stale and
/// corrupt records.
pub fn status(cfg: &Config, as_json: bool) -> Result<Code> {
    let rec = Recorder::start(cfg, TOOL, "status", "*");
    process::snapshot(|| status_of(cfg, rec, as_json))
}

fn status_of(cfg: &Config, rec: Recorder<'_>, as_json: bool) -> Result<Code> {
    let result = manager::scan(cfg);
    let counts = result
        .as_ref()
        .map(|e| report::counts(e))
        .unwrap_or_default();
    rec.finish(
        &result,
        json!({"held": counts.held, "stale": counts.stale, "waiting": counts.waiting, "corrupt": counts.corrupt}),
    );
    let entries = result?;
    if as_json {
        cli::print_json(&report::status_json(&entries));
    } else {
        cli::print(&report::status_text(&entries));
    }
    Ok(Code::Success)
}

/// Acquires `name` for this very process (the holder of `run`), audited.
pub(crate) fn acquire_for_self(
    cfg: &Config,
    name: &str,
    kind: LockType,
    timeout: Duration,
) -> (Result<Acquired>, WaitLog) {
    let (result, log, _) = audited_acquire(cfg, name, || {
        name::validate(name)?;
        Ok(Request {
            name: name.to_string(),
            kind,
            owner: Identity::current(),
            ttl: None,
            metadata: None,
            timeout,
        })
    });
    (result, log)
}
