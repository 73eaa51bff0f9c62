//! `state-manager diagnostics`: what the audit log and the disk say about
//! how the toolkit has been doing — operations by kind, error rate, duration
//! percentiles per operation, lock waits, stale-lock takeovers, and the space
//! taken by the state, its backups, checkpoints and the audit log.
//!
//! Read-only and streaming: the audit log (with its rotated files) is read
//! once through [`crate::audit::stats`], in memory that does not grow with it.
//! The command itself (`crate::cmd::state::maintain::diagnostics`) gathers
//! and prints; this module holds the shape of one operation's line.
//!
//! On Redis it adds the server's own figures (`server`: PING latency
//! p50/p95, memory against `maxmemory`, evictions, persistence, clients,
//! replication), read by `crate::backend::redis::health`; on files
//! `server` is null.

use serde_json::{Value, json};

use super::health::existing_ancestor;
use crate::audit::rotate;
use crate::audit::scan::{Filter, Totals};
use crate::audit::stats::{By, Group, Stats};
use crate::config::Config;
use crate::error::Result;

pub fn group_json(name: &str, g: &Group, verbose: bool) -> Value {
    let mut v = json!({
        "op": name,
        "event_count": g.events,
        "failed": g.failed,
        "error_rate": if g.events == 0 { 0.0 } else { g.failed as f64 / g.events as f64 },
        "duration": g.duration.figures(),
        "lock_wait": g.wait.figures(),
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

/// What the audit log and the disk say (see the module docs).
pub struct Diagnostics {
    pub stats: Stats,
    pub totals: Totals,
    /// Stale-lock takeovers recorded.
    pub takeovers: u64,
    /// Operations that failed with exit 2.
    pub lock_timeouts: u64,
    pub state_bytes: u64,
    pub backups: usize,
    pub backup_bytes: u64,
    pub checkpoints: usize,
    pub checkpoint_bytes: u64,
    pub audit_log_files: usize,
    pub audit_log_bytes: u64,
    /// Free and total bytes, free inodes of the state root's filesystem.
    pub filesystem: Option<Value>,
    /// The Redis server's figures (null on files).
    pub server: Option<Value>,
}

/// Reads the audit log (once) of `backend` and sizes its state, backups
/// and checkpoints (and, on files, the audit files and the filesystem; on
/// Redis, the server's figures, its latency from `pings` PINGs).
pub fn gather_from(
    backend: &dyn crate::backend::Backend,
    cfg: &Config,
    pings: usize,
) -> Result<Diagnostics> {
    let file = backend.kind() == "file";
    #[cfg(feature = "redis")]
    let server = match backend.redis() {
        Some(r) => {
            Some(serde_json::to_value(r.server_figures(pings)?).expect("server figures serialize"))
        }
        None => None,
    };
    #[cfg(not(feature = "redis"))]
    let server = {
        let _ = pings;
        None
    };
    let mut st = Stats::new(By::Op);
    let mut event_bytes = 0u64;
    let filter = Filter::default();
    let totals = backend.audit().scan_events(&mut |line| {
        event_bytes += line.raw.len() as u64 + 1;
        if filter.matches(line) {
            st.add(line);
        }
    })?;
    let takeovers = st.groups.get("takeover").map_or(0, |g| g.events);
    let lock_timeouts: u64 = st
        .groups
        .values()
        .map(|g| g.by_exit.get(&2).copied().unwrap_or(0))
        .sum();
    let backups = backend.state().list_backups()?;
    let (checkpoints, checkpoint_bytes) = if file {
        let all = crate::recovery::checkpoint::list(cfg)?;
        let bytes = all.iter().map(|c| super::cleanup::size_of(&c.path)).sum();
        (all.len(), bytes)
    } else {
        let all = backend.checkpoints().entries()?;
        (all.len(), all.iter().map(|c| c.size).sum())
    };
    let (audit_log_files, audit_log_bytes) = if file {
        let log_files = rotate::log_files(&cfg.audit_log);
        let bytes = log_files
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        (log_files.len(), bytes)
    } else {
        (totals.files.len(), event_bytes)
    };
    Ok(Diagnostics {
        takeovers,
        lock_timeouts,
        state_bytes: backend
            .state()
            .load_bytes()
            .ok()
            .flatten()
            .map_or(0, |b| b.len() as u64),
        backups: backups.len(),
        backup_bytes: backups.iter().map(|b| b.size).sum(),
        checkpoints,
        checkpoint_bytes,
        audit_log_files,
        audit_log_bytes,
        filesystem: file
            .then(|| rustix::fs::statvfs(existing_ancestor(&cfg.root)).ok())
            .flatten()
            .map(|v| {
                json!({
                    "free_bytes": v.f_bavail.saturating_mul(v.f_frsize),
                    "total_bytes": v.f_blocks.saturating_mul(v.f_frsize),
                    "free_inodes": v.f_favail,
                })
            }),
        server,
        stats: st,
        totals,
    })
}

impl Diagnostics {
    /// The operations by kind, most events first.
    pub fn operations(&self) -> Vec<(&String, &Group)> {
        let mut ops: Vec<(&String, &Group)> = self.stats.groups.iter().collect();
        ops.sort_by(|a, b| b.1.events.cmp(&a.1.events).then_with(|| a.0.cmp(b.0)));
        ops
    }

    /// The report `diagnostics --json` prints; `verbose` adds failures by
    /// exit code per operation.
    pub fn to_json(&self, verbose: bool) -> Value {
        let (st, totals) = (&self.stats, &self.totals);
        let t = &st.total;
        json!({
            "audit": {
                "event_count": t.events,
                "malformed_lines": totals.malformed,
                "files": totals.files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
                "first": st.first.map(crate::audit::scan::format_micros),
                "last": st.last.map(crate::audit::scan::format_micros),
                "failed": t.failed,
                "error_rate": if t.events == 0 { 0.0 } else { t.failed as f64 / t.events as f64 },
                "duration": t.duration.figures(),
                "lock_wait": t.wait.figures(),
                "lock_timeouts": self.lock_timeouts,
                "stale_takeovers": self.takeovers,
                "operations": self.operations().iter().map(|(k, g)| group_json(k, g, verbose)).collect::<Vec<_>>(),
            },
            "disk": {
                "state_bytes": self.state_bytes,
                "backups": self.backups,
                "backup_bytes": self.backup_bytes,
                "checkpoint_count": self.checkpoints,
                "checkpoint_bytes": self.checkpoint_bytes,
                "audit_log_files": self.audit_log_files,
                "audit_log_bytes": self.audit_log_bytes,
                "filesystem": self.filesystem,
            },
            "server": self.server,
        })
    }
}
