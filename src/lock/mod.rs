//! Named locks that outlive one command (design.md §6).
//!
//! - [`record`]: the on-disk record and the per-lock mutex that serializes its changes.
//! - [`process`]: holder identities that survive pid reuse and reboots.
//! - [`wait`]: blocking in the kernel until a record changes or a holder exits.
//! - [`name`]: lock names and the deadlock-preventing hierarchy.
//!
//! [`transaction`] is what `state-manager` uses around a read-modify-write:
//! it waits until no *other* owner holds the lock, then keeps the lock's
//! mutex for the whole transaction. A shell that holds `state` through
//! `lock-manager acquire state` therefore excludes every other writer, while
//! its own `state-manager set` calls pass (no self-deadlock).

pub mod name;
pub mod process;
pub mod record;
pub mod wait;

use std::time::{Duration, Instant};

pub use process::Identity;
pub use record::{LockType, Mutex, Record};

use crate::config::Config;
use crate::error::{Error, Kind, Result};

/// Holds lock `name` exclusively for one transaction of `owner`'s.
///
/// Returns once no live holder other than `owner` is recorded, keeping the
/// lock's mutex so that no record change (no `acquire` by anyone) can happen
/// until the returned guard is dropped. Exit 2 after `timeout`.
pub fn transaction(
    cfg: &Config,
    name: &str,
    owner: Option<&Identity>,
    timeout: Duration,
) -> Result<Mutex> {
    let deadline = Instant::now() + timeout;
    let mut watcher: Option<wait::Watcher> = None;
    loop {
        let mutex = Mutex::lock(cfg, name)?;
        let record = record::load(&record::record_path(cfg, name))?;
        let blockers: Vec<&record::Holder> = record
            .as_ref()
            .map(|r| {
                r.holders
                    .iter()
                    .filter(|h| owner.is_none_or(|o| !h.id.same_process(o)) && h.is_live())
                    .collect()
            })
            .unwrap_or_default();
        if blockers.is_empty() {
            return Ok(mutex);
        }
        let pids: Vec<u32> = blockers.iter().map(|h| h.id.pid).collect();
        let first = blockers[0];
        let kind = record.as_ref().map_or("exclusive", |r| r.kind.as_str());
        drop(mutex);
        let Some(w) = watcher.as_ref() else {
            // Watch before looking again, so no release is missed.
            watcher = Some(wait::Watcher::new(&cfg.locks_dir())?);
            continue;
        };
        if w.wait(&pids, Some(deadline))? == wait::Wake::TimedOut {
            return Err(Error::new(
                Kind::LockTimeout,
                format!(
                    "timed out after {:.1}s waiting for lock '{name}' held {kind} by pid {}",
                    timeout.as_secs_f64(),
                    first.id.pid
                ),
            )
            .hint("see 'lock-manager list'; release it, or raise LOCK_TIMEOUT"));
        }
    }
}
