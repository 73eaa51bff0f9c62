//! The lock registry: named shared/exclusive locks, their holders and
//! waiters — what `lock-manager` keeps, and what `state-manager` takes
//! around a transaction.
//!
//! The file backend's implementation is [`crate::lock::manager`] over the
//! records in `.locks/` ([`crate::lock::record`]).

use super::FileBackend;
use crate::error::Result;
use crate::lock::manager::{self, Entry};

/// Where lock records live.
pub trait LockRegistry {
    /// Every lock record, sorted by name: the one way to list them.
    fn list(&self) -> Result<Vec<Entry>>;
}

impl LockRegistry for FileBackend {
    fn list(&self) -> Result<Vec<Entry>> {
        manager::scan(&self.cfg)
    }
}
