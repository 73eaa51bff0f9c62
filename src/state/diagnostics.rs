//! `state-manager diagnostics`: what the audit log and the disk say about
//! how the toolkit has been doing — operations by kind, error rate, duration
//! percentiles per operation, lock waits, stale-lock takeovers, and the space
//! taken by the state, its backups, checkpoints and the audit log.
//!
//! Read-only and streaming: the audit log (with its rotated files) is read
//! once through [`crate::audit::stats`], in memory that does not grow with it.
//! The command itself (`crate::cmd::state::maintain::diagnostics`) gathers
//! and prints; this module holds the shape of one operation's line.

use serde_json::{Value, json};

use crate::audit::stats::Group;

pub fn group_json(name: &str, g: &Group, verbose: bool) -> Value {
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
