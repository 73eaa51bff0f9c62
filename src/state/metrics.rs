//! `state-manager metrics`: the figures a monitoring system scrapes —
//! operations by tool, op and exit code, their durations and lock waits,
//! stale-lock takeovers, and what the state, its backups, checkpoints and
//! locks look like now.
//!
//! Gathered through the backend seam only, so it reads the same on every
//! backend: the audit events come from [`crate::audit::scan`] (one pass, the
//! review commands' own events left out by the default
//! [`Filter`], as `diagnostics` counts them), the state from
//! the state store and judged by [`health::status`], the lock records from
//! the registry judged by [`crate::lock::report::counts`].
//!
//! Read-only: no lock is taken and nothing is created or written (not even
//! an audit event). What it does not guarantee: the counts come from the
//! audit log, so they are as complete as the log is — a log that rotates
//! drops its oldest file and the counts go down with it (a counter reset to
//! Prometheus); and every figure is a snapshot of the moment it was read.
//! The names, types and help texts are the command layer's
//! (`crate::cmd::state::metrics`).

use std::collections::BTreeMap;

use super::health::{self, Condition};
use crate::audit::rotate;
use crate::audit::scan::{self, Filter};
use crate::backend::Backend;
use crate::config::Config;
use crate::error::Result;
use crate::exit::Code;
use crate::lock::process;
use crate::lock::record::{LockType, Standing};

/// Upper bounds (seconds) of the duration and lock-wait histograms: from a
/// millisecond (a read) to five minutes (a long lock wait), about three per
/// decade, as Prometheus client libraries space theirs.
pub const BUCKETS_S: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// A distribution of seconds counted into [`BUCKETS_S`] (and `+Inf`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Buckets {
    /// Values at or under each bound of [`BUCKETS_S`] but over the one
    /// before (not cumulative).
    within: [u64; BUCKETS_S.len()],
    /// How many values were counted (the `+Inf` bucket).
    pub count: u64,
    /// Their sum, in whole microseconds (the audit log's precision), so
    /// that a sum prints without binary-fraction noise.
    sum_us: f64,
}

impl Buckets {
    /// Counts one value in seconds (a negative or non-finite one is ignored).
    pub fn observe(&mut self, s: f64) {
        if !s.is_finite() || s < 0.0 {
            return;
        }
        self.count += 1;
        self.sum_us += (s * 1e6).round();
        if let Some(i) = BUCKETS_S.iter().position(|b| s <= *b) {
            self.within[i] += 1;
        }
    }

    /// The sum of the values, in seconds.
    pub fn sum(&self) -> f64 {
        self.sum_us / 1e6
    }

    /// Each bound with how many values are at or under it (cumulative, as
    /// Prometheus' `_bucket{le}`); `+Inf` is [`Buckets::count`].
    pub fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        BUCKETS_S
            .iter()
            .zip(&self.within)
            .scan(0u64, |seen, (b, n)| {
                *seen += n;
                Some((*b, *seen))
            })
    }
}

/// Which operation: the binary and its subcommand, as the audit event says.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Op {
    pub tool: String,
    pub op: String,
}

/// What the audit log says (see the module docs for what rotation does).
#[derive(Clone, Debug, Default)]
pub struct Audit {
    /// Events by operation and exit code.
    pub operations: BTreeMap<(Op, i32), u64>,
    /// How long each operation took.
    pub durations: BTreeMap<Op, Buckets>,
    /// How long operations waited for a lock, for those that say.
    pub lock_waits: BTreeMap<Op, Buckets>,
    /// Stale-lock takeovers (`takeover` events).
    pub takeovers: u64,
    /// Lines skipped because they do not parse.
    pub malformed_lines: u64,
    /// Files read (rotated ones and the live log), or 1 for a stream.
    pub files: usize,
    /// Bytes of the log: its files, or the events of a stream.
    pub bytes: u64,
    /// When the newest event was written (seconds since the epoch).
    pub last_event: Option<f64>,
}

/// The state document now.
#[derive(Clone, Debug)]
pub struct State {
    pub condition: Condition,
    /// Bytes as stored; `None` when there is no state.
    pub bytes: Option<u64>,
    /// `metadata.revision`, when the state parses.
    pub revision: Option<u64>,
    /// `metadata.lastModified`, seconds since the epoch, when it reads.
    pub last_modified: Option<f64>,
    pub degraded: bool,
}

/// Backups or checkpoints: how many, their size, the newest one's time.
#[derive(Clone, Debug, Default)]
pub struct Kept {
    pub count: usize,
    pub bytes: u64,
    /// When the newest was made (seconds since the epoch).
    pub newest: Option<f64>,
}

/// The lock records now, judged by the one staleness rule.
#[derive(Clone, Debug, Default)]
pub struct Locks {
    /// Locks a live holder has, by type.
    pub held_shared: usize,
    pub held_exclusive: usize,
    /// Records whose holders are all gone (taken over by the next acquirer).
    pub stale: usize,
    /// Live waiting requests.
    pub waiting: usize,
    /// Records that do not parse.
    pub unreadable: usize,
}

/// Everything `metrics` reports.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// The engine: `file` or `redis`.
    pub backend: &'static str,
    pub audit: Audit,
    pub state: State,
    pub backups: Kept,
    pub checkpoints: Kept,
    pub locks: Locks,
    /// When these figures were gathered (seconds since the epoch).
    pub generated: f64,
}

/// Gathers the figures of `backend` (see the module docs).
pub fn gather(backend: &dyn Backend, cfg: &Config) -> Result<Metrics> {
    let generated = scan::now_micros() as f64 / 1e6;
    let audit = audit_figures(backend, cfg)?;
    let backups = backend.state().list_backups()?;
    let state = state_figures(backend, cfg, backups.len())?;
    let backups = Kept {
        count: backups.len(),
        bytes: backups.iter().map(|b| b.size).sum(),
        newest: backups.iter().map(|b| seconds(b.made)).reduce(f64::max),
    };
    Ok(Metrics {
        backend: backend.kind(),
        audit,
        state,
        backups,
        checkpoints: checkpoint_figures(backend)?,
        locks: lock_figures(backend)?,
        generated,
    })
}

fn seconds(t: chrono::DateTime<chrono::Utc>) -> f64 {
    t.timestamp_micros() as f64 / 1e6
}

/// One pass over the audit events.
fn audit_figures(backend: &dyn Backend, cfg: &Config) -> Result<Audit> {
    let mut a = Audit::default();
    let mut stream_bytes = 0u64;
    let mut last: Option<i64> = None;
    let filter = Filter::default();
    let totals = backend.audit().scan_events(&mut |line| {
        stream_bytes += line.raw.len() as u64 + 1;
        last = Some(last.map_or(line.at, |l| l.max(line.at)));
        if !filter.matches(line) {
            return;
        }
        let ev = &line.ev;
        let op = Op {
            tool: ev.tool.to_string(),
            op: ev.op.to_string(),
        };
        if ev.op == "takeover" {
            a.takeovers += 1;
        }
        a.durations
            .entry(op.clone())
            .or_default()
            .observe(ev.duration_ms / 1e3);
        if let Some(w) = ev.lock_wait_ms() {
            a.lock_waits.entry(op.clone()).or_default().observe(w / 1e3);
        }
        *a.operations.entry((op, ev.exit_code)).or_default() += 1;
    })?;
    a.malformed_lines = totals.malformed;
    a.last_event = last.map(|t| t as f64 / 1e6);
    if backend.kind() == "file" {
        let files = rotate::log_files(&cfg.audit_log);
        a.bytes = files
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        a.files = files.len();
    } else {
        a.bytes = stream_bytes;
        a.files = totals.files.len();
    }
    Ok(a)
}

/// The state as `status` judges it.
fn state_figures(backend: &dyn Backend, cfg: &Config, backups: usize) -> Result<State> {
    let bytes = match backend.state().load_bytes() {
        Ok(b) => b,
        // Stored bytes that fail their checksum: a corrupt state, which is a
        // figure to report, not a failure to report it.
        Err(e) if e.code() == Code::StateCorruption => Some(Vec::new()),
        Err(e) => return Err(e),
    };
    let place = health::Place {
        backend: backend.kind(),
        namespace: backend.namespace().map(str::to_owned),
        location: backend.location(),
    };
    let report = health::status(cfg, place, bytes.as_deref(), backups);
    let parses = matches!(report.condition, Condition::Valid | Condition::Invalid);
    Ok(State {
        condition: report.condition,
        bytes: bytes.as_ref().map(|b| b.len() as u64),
        revision: if parses {
            Some(report.revision.as_u64().unwrap_or(0))
        } else {
            None
        },
        last_modified: report
            .last_modified
            .as_str()
            .and_then(scan::parse_ts)
            .map(|t| t as f64 / 1e6),
        degraded: report.degraded_mode.enabled,
    })
}

fn checkpoint_figures(backend: &dyn Backend) -> Result<Kept> {
    let store = backend.checkpoints();
    if backend.kind() == "file" {
        let all = store.list()?;
        return Ok(Kept {
            count: all.len(),
            bytes: all
                .iter()
                .map(|c| crate::recovery::checkpoint::size_of(&c.path))
                .sum(),
            newest: all.iter().map(|c| seconds(c.made)).reduce(f64::max),
        });
    }
    let all = store.entries()?;
    Ok(Kept {
        count: all.len(),
        bytes: all.iter().map(|c| c.size).sum(),
        newest: all
            .iter()
            .filter_map(|c| scan::parse_ts(&c.made))
            .max()
            .map(|t| t as f64 / 1e6),
    })
}

fn lock_figures(backend: &dyn Backend) -> Result<Locks> {
    // Each holder's pid judged once for all the records.
    let status = process::snapshot(|| backend.locks().status())?;
    let counts = status.counts;
    let mut locks = Locks {
        stale: counts.stale,
        waiting: counts.waiting,
        unreadable: counts.corrupt,
        ..Locks::default()
    };
    for rec in status.entries.iter().filter_map(|e| e.record.as_ref().ok()) {
        if rec.standing() == Standing::Held {
            match rec.kind {
                LockType::Shared => locks.held_shared += 1,
                LockType::Exclusive => locks.held_exclusive += 1,
            }
        }
    }
    Ok(locks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_bounds_inclusive() {
        let mut b = Buckets::default();
        for s in [0.0, 0.001, 0.0011, 0.3, 1000.0, -1.0, f64::NAN] {
            b.observe(s);
        }
        assert_eq!(b.count, 5);
        assert_eq!(b.sum(), 1000.3021);
        let c: Vec<(f64, u64)> = b.cumulative().collect();
        assert_eq!(c.len(), BUCKETS_S.len());
        assert_eq!(c[0], (0.001, 2));
        assert_eq!(c[1], (0.0025, 3));
        assert_eq!(c.iter().find(|(le, _)| *le == 0.5), Some(&(0.5, 4)));
        // 1000 s is over every bound: only in +Inf.
        assert_eq!(c.last(), Some(&(300.0, 4)));
        assert!(c.windows(2).all(|w| w[0].1 <= w[1].1));
    }
}
