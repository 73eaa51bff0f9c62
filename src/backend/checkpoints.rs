//! The checkpoint store: snapshots of the state, its signals and `config/`,
//! and restoring one — what `error-recovery` keeps.
//!
//! The file backend's implementation is [`crate::recovery::checkpoint`]
//! (`.checkpoints/`) and [`crate::recovery::restore`].

use super::FileBackend;
use crate::error::Result;
use crate::recovery::checkpoint::{self, Checkpoint};

/// Where checkpoints live.
pub trait CheckpointStore {
    /// Every checkpoint, newest first.
    fn list(&self) -> Result<Vec<Checkpoint>>;
}

impl CheckpointStore for FileBackend {
    fn list(&self) -> Result<Vec<Checkpoint>> {
        checkpoint::list(&self.cfg)
    }
}
