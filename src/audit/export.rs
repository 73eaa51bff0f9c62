//! `audit export`: one JSON document holding the environment (host,
//! versions, paths, disk free), every matching event, their stats and their
//! races — what to attach to an incident report.
//!
//! One pass over the log: events are copied to the output as they stream
//! past (each line is valid JSON, or it was counted as malformed and left
//! out), while stats and races accumulate; those two follow the events in the
//! document. With `--output FILE` the document goes through
//! [`durable::write_output`], so FILE is the whole export or untouched; a
//! device or FIFO (`--output /dev/stdout`) is written through instead.

use std::io::{self, Write};
use std::path::Path;

use serde_json::{Value, json};

use super::races::{self, Races};
use super::rotate;
use super::scan::{self, Events, Filter, Totals};
use super::stats::{By, Stats};
use crate::config::Config;
use crate::durable;
use crate::error::{Error, Result};

/// What an export held.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub events: u64,
    pub findings: usize,
    pub malformed: u64,
}

/// The environment block: host, versions, paths and disk free.
pub fn environment(cfg: &Config) -> Value {
    let uname = rustix::system::uname();
    let disk = rustix::fs::statvfs(if cfg.root.as_os_str().is_empty() {
        Path::new(".")
    } else {
        &cfg.root
    })
    .map(|s| {
        json!({
            "path": cfg.root,
            "free_bytes": s.f_bavail.saturating_mul(s.f_frsize),
            "total_bytes": s.f_blocks.saturating_mul(s.f_frsize),
        })
    })
    .unwrap_or(Value::Null);
    json!({
        "host": super::event::hostname(),
        "user": super::event::user_name(),
        "kernel": format!("{} {}", uname.sysname().to_string_lossy(), uname.release().to_string_lossy()),
        "versions": { "wfstate": env!("CARGO_PKG_VERSION") },
        "paths": {
            "cwd": std::env::current_dir().ok(),
            "state_file": cfg.state_file,
            "root": cfg.root,
            "audit_log": cfg.audit_log,
            "audit_files": rotate::log_files(&cfg.audit_log),
        },
        "audit_max_bytes": rotate::max_bytes(),
        "run_id": cfg.run_id,
        "disk": disk,
    })
}

/// Writes the export document to `out`.
pub fn write_to(
    cfg: &Config,
    events: &dyn Events,
    filter: &Filter,
    window_ms: f64,
    out: &mut dyn Write,
) -> Result<Summary> {
    let io_err = |e: io::Error| Error::io(e, "cannot write the export", "-");
    let head = json!({
        "generated": scan::format_micros(scan::now_micros()),
        "environment": environment(cfg),
        "filter": {
            "since": filter.since.map(scan::format_micros),
        },
    });
    // The head's closing brace is replaced by the events array and the rest.
    let mut head = serde_json::to_string(&head).expect("JSON values always serialize");
    head.pop();
    out.write_all(head.as_bytes()).map_err(io_err)?;
    out.write_all(b",\"events\":[").map_err(io_err)?;
    let mut stats = Stats::new(By::Tool);
    let mut races = Races::new(window_ms, races::json_render(false));
    let mut n = 0u64;
    let mut failed: Option<io::Error> = None;
    let totals = events.scan_events(&mut |line| {
        if failed.is_some() || !filter.matches(line) {
            return;
        }
        stats.add(line);
        races.add(line);
        let sep: &[u8] = if n == 0 { b"\n" } else { b",\n" };
        if let Err(e) = out.write_all(sep).and_then(|_| out.write_all(line.raw)) {
            failed = Some(e);
        }
        n += 1;
    })?;
    if let Some(e) = failed {
        return Err(io_err(e));
    }
    let findings = races.finish()?;
    let stats = serde_json::to_string(&stats.report(&totals)).expect("the stats report serializes");
    out.write_all(b"\n],\"stats\":").map_err(io_err)?;
    out.write_all(stats.as_bytes()).map_err(io_err)?;
    out.write_all(b",\"races\":").map_err(io_err)?;
    races::write_json(
        &findings,
        &Totals {
            files: Vec::new(),
            ..totals.clone()
        },
        false,
        out,
    )
    .map_err(io_err)?;
    out.write_all(b"}\n").map_err(io_err)?;
    out.flush().map_err(io_err)?;
    Ok(Summary {
        events: n,
        findings: findings.len(),
        malformed: totals.malformed,
    })
}

/// Writes the export to `path` through [`durable::write_output`], the
/// toolkit's one atomic write: a regular file is replaced atomically and
/// durably (a `.NAME.PID.SEQ.tmp` temp file beside it, fsync, rename, fsync
/// of the folder — the whole export or untouched, and a temp file left by a
/// killed export is swept by the next write), a device or FIFO
/// (`/dev/stdout`) is written through and never renamed over.
pub fn write_file(
    cfg: &Config,
    events: &dyn Events,
    filter: &Filter,
    window_ms: f64,
    path: &Path,
) -> Result<Summary> {
    if path.file_name().is_none() {
        return Err(Error::validation("bad --output")
            .with_path(path)
            .hint("name a file"));
    }
    durable::write_output(path, |w| {
        write_to(cfg, events, filter, window_ms, w).map_err(|e| e.with_path(path))
    })
}
