//! `state-manager diagnostics`: what the audit log and the disk say about
//! how the toolkit has been doing — operations by kind, error rate, duration
//! percentiles per operation, lock waits, stale-lock takeovers, and the space
//! taken by the state, its backups, checkpoints and the audit log.
//!
//! Read-only and streaming: the audit log (with its rotated files) is read
//! once through [`crate::audit::stats`], in memory that does not grow with it.

use serde_json::{Value, json};

use super::backup;
use super::cleanup;
use super::commands::Ctx;
use super::health::{existing_ancestor, human_bytes};
use crate::audit::rotate;
use crate::audit::scan::Filter;
use crate::audit::stats::{self, By, Group};
use crate::audit::table::ms;
use crate::cmd as cli;
use crate::error::Result;
use crate::exit::Code;

fn group_json(name: &str, g: &Group, verbose: bool) -> Value {
    let mut v = json!({
        "op": name,
        "events": g.events,
        "failed": g.failed,
        "error_rate": if g.events == 0 { 0.0 } else { g.failed as f64 / g.events as f64 },
        "duration_ms": g.duration.summary(),
        "lock_wait_ms": g.wait.summary(),
    });
    if verbose {
        v["by_exit"] = json!(
            g.by_exit
                .iter()
                .map(|(c, n)| (c.to_string(), json!(n)))
                .collect::<serde_json::Map<_, _>>()
        );
    }
    v
}

/// `diagnostics [--json] [--verbose]`
pub fn diagnostics(ctx: &Ctx, as_json: bool, verbose: bool) -> Result<Code> {
    let cfg = &ctx.cfg;
    let (st, totals) = stats::collect(cfg, &Filter::default(), By::Op)?;
    let mut ops: Vec<(&String, &Group)> = st.groups.iter().collect();
    ops.sort_by(|a, b| b.1.events.cmp(&a.1.events).then_with(|| a.0.cmp(b.0)));
    let takeovers = st.groups.get("takeover").map_or(0, |g| g.events);
    let lock_timeouts: u64 = st
        .groups
        .values()
        .map(|g| g.by_exit.get(&2).copied().unwrap_or(0))
        .sum();

    let state_size = std::fs::metadata(&cfg.state_file).map_or(0, |m| m.len());
    let backups = backup::list(cfg)?;
    let backup_bytes: u64 = backups.iter().map(|b| b.size).sum();
    let checkpoints = crate::recovery::checkpoint::list(cfg)?;
    let checkpoint_bytes: u64 = checkpoints.iter().map(|c| cleanup::size_of(&c.path)).sum();
    let log_files = rotate::log_files(&cfg.audit_log);
    let log_bytes: u64 = log_files
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let disk = rustix::fs::statvfs(existing_ancestor(&cfg.root))
        .ok()
        .map(|v| {
            json!({
                "free_bytes": v.f_bavail.saturating_mul(v.f_frsize),
                "total_bytes": v.f_blocks.saturating_mul(v.f_frsize),
                "free_inodes": v.f_favail,
            })
        });
    let t = &st.total;
    let report = json!({
        "audit": {
            "events": t.events,
            "malformed_lines": totals.malformed,
            "files": totals.files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "first": st.first.map(crate::audit::scan::format_micros),
            "last": st.last.map(crate::audit::scan::format_micros),
            "failed": t.failed,
            "error_rate": if t.events == 0 { 0.0 } else { t.failed as f64 / t.events as f64 },
            "duration_ms": t.duration.summary(),
            "lock_wait_ms": t.wait.summary(),
            "lock_timeouts": lock_timeouts,
            "stale_takeovers": takeovers,
            "operations": ops.iter().map(|(k, g)| group_json(k, g, verbose)).collect::<Vec<_>>(),
        },
        "disk": {
            "state_bytes": state_size,
            "backups": backups.len(),
            "backup_bytes": backup_bytes,
            "checkpoints": checkpoints.len(),
            "checkpoint_bytes": checkpoint_bytes,
            "audit_log_files": log_files.len(),
            "audit_log_bytes": log_bytes,
            "filesystem": disk,
        },
    });
    if as_json {
        cli::print_json(&report);
        return Ok(Code::Success);
    }
    let rate = |failed: u64, events: u64| {
        if events == 0 {
            0.0
        } else {
            100.0 * failed as f64 / events as f64
        }
    };
    let mut out = format!(
        "audit log:        {} events in {} file(s){}\nerror rate:       {:.1}% ({} failed)\nlock waits ms:    p50 {}  p95 {}  max {}\nlock timeouts:    {}\nstale takeovers:  {}\n\n",
        t.events,
        totals.files.len(),
        if totals.malformed > 0 {
            format!(", {} malformed line(s) skipped", totals.malformed)
        } else {
            String::new()
        },
        rate(t.failed, t.events),
        t.failed,
        ms(t.wait.quantile(0.5)),
        ms(t.wait.quantile(0.95)),
        ms(t.wait.max()),
        lock_timeouts,
        takeovers,
    );
    if !ops.is_empty() {
        let w = ops.iter().map(|(k, _)| k.len()).max().unwrap_or(2).max(9);
        out.push_str(&format!(
            "{:<w$}  {:>7}  {:>6}  {:>8}  {:>8}  {:>8}\n",
            "OPERATION", "EVENTS", "ERR%", "P50 ms", "P95 ms", "MAX ms"
        ));
        for (k, g) in &ops {
            out.push_str(&format!(
                "{:<w$}  {:>7}  {:>6.1}  {:>8}  {:>8}  {:>8}\n",
                k,
                g.events,
                rate(g.failed, g.events),
                ms(g.duration.quantile(0.5)),
                ms(g.duration.quantile(0.95)),
                ms(g.duration.max())
            ));
            if verbose && !g.by_exit.is_empty() {
                let codes: Vec<String> = g
                    .by_exit
                    .iter()
                    .map(|(c, n)| format!("{}×{n}", stats::code_name(*c)))
                    .collect();
                out.push_str(&format!("{:<w$}    failures: {}\n", "", codes.join(", ")));
            }
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "state:            {}\nbackups:          {} ({})\ncheckpoints:      {} ({})\naudit log:        {} in {} file(s)\n",
        human_bytes(state_size),
        backups.len(),
        human_bytes(backup_bytes),
        checkpoints.len(),
        human_bytes(checkpoint_bytes),
        human_bytes(log_bytes),
        log_files.len(),
    ));
    if let Some(d) = &report["disk"]["filesystem"].as_object() {
        out.push_str(&format!(
            "disk free:        {} of {}\n",
            human_bytes(d["free_bytes"].as_u64().unwrap_or(0)),
            human_bytes(d["total_bytes"].as_u64().unwrap_or(0))
        ));
    }
    if verbose {
        for f in &totals.files {
            out.push_str(&format!("read:             {}\n", f.display()));
        }
    }
    cli::print(&out);
    Ok(Code::Success)
}
