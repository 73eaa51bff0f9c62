//! Named locks that outlive one command: the domain of `lock-manager` and
//! of the `state` lock `state-manager` takes. Nothing here prints; the
//! command layer (`crate::cmd::lock`) renders, and reaches the records
//! through the backend's lock registry (`crate::backend::LockRegistry`).
//!
//! - [`record`]: the on-disk record and the per-lock mutex that serializes
//!   its changes; [`Record::standing`], the one rule for held, stale, free.
//! - [`process`]: holder identities that survive pid reuse and reboots.
//! - [`wait`]: blocking in the kernel until a record changes or a holder exits.
//! - [`name`]: lock names and the deadlock-preventing hierarchy.
//! - [`owners`]: the per-owner index of held locks, so the hierarchy check
//!   reads only the requesting owner's records.
//! - [`manager`]: the decisions: grant, wait, take over, release, check,
//!   clean, and [`manager::scan`], the one lister of `.locks/`.
//! - [`commands`]: the acquire request, the owner a call acts for, the
//!   audited acquire; [`report`]: the counts `status` shows; [`run`]: holds
//!   a lock for a child's life.
//!
//! [`transaction`] is what `state-manager` uses around a read-modify-write:
//! it waits until no *other* owner holds the lock, then keeps the lock's
//! mutex for the whole transaction. A shell that holds `state` through
//! `lock-manager acquire state` therefore excludes every other writer, while
//! its own `state-manager set` calls pass (no self-deadlock). While it waits
//! it counts as an exclusive waiter, so new shared requests queue behind it.

pub mod commands;
pub mod manager;
pub mod name;
pub mod owners;
pub mod process;
pub mod record;
pub mod report;
pub mod run;
pub mod wait;

use std::time::Duration;

pub use process::Identity;
pub use record::{LockType, Mutex, Record};

use crate::config::Config;
use crate::error::Result;

/// Holds lock `name` exclusively for one transaction of `owner`'s.
///
/// Returns once no live holder other than `owner` is recorded, keeping the
/// lock's mutex so that no record change (no `acquire` by anyone) can happen
/// until the returned guard is dropped. Exit 2 after `timeout` (waiting for
/// the holders or for the mutex itself), 3 if the lock's record does not
/// parse, 4 at once if `owner` holds a lock that ranks after `name` in the
/// hierarchy (the same rule as `acquire`). On a terminal, a wait longer than
/// a second says what it waits for, and then when it got the lock.
pub fn transaction(
    cfg: &Config,
    name: &str,
    owner: Option<&Identity>,
    timeout: Duration,
) -> Result<Mutex> {
    // On a terminal, a long wait says who holds the lock, as `acquire` does.
    let attend = manager::Attend {
        signals: false,
        progress: manager::Progress::IfTerminal,
    };
    manager::transaction(
        cfg,
        name,
        owner,
        timeout,
        &mut manager::WaitLog::attended(attend),
    )
}
