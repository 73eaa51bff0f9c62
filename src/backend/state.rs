//! The state store: the document, its read-modify-write transactions, its
//! backups and the signal files — what `state-manager` keeps.
//!
//! The file backend's implementation is [`crate::state::store`] (the state
//! file, written by [`crate::durable::replace`]) and
//! [`crate::state::backup`] (`.state-backups/`).

use super::FileBackend;
use crate::error::Result;
use crate::state::store;

/// Where the state document lives and how it changes.
pub trait StateStore {
    /// The stored document's bytes as they are; `None` when there is no state.
    fn load_bytes(&self) -> Result<Option<Vec<u8>>>;
}

impl StateStore for FileBackend {
    fn load_bytes(&self) -> Result<Option<Vec<u8>>> {
        store::Store::open(&self.cfg, Default::default())?.load_bytes()
    }
}
