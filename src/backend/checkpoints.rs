//! The checkpoint store: snapshots of the state, its signals and `config/`,
//! and restoring one — what `error-recovery` keeps.
//!
//! The file backend's implementation is [`crate::recovery::checkpoint`]
//! (`.checkpoints/`: the format, making, listing, verifying, removing) and
//! [`crate::recovery::restore`] (putting one back). Every operation that
//! changes checkpoints or the state runs under the `state` lock, taken here
//! for [`Access::owner`], and first finishes an interrupted restore.

use std::fs;
use std::time::Duration;

use serde::Serialize;

use super::FileBackend;
use crate::error::Result;
use crate::recovery::checkpoint::{self, Checkpoint, Cleaned, Created, Entry, Request, Verified};
use crate::recovery::restore::{self, Restored};
use crate::state::Store;

pub use super::Access;

/// What `cleanup` removed (or, dry, would remove).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Pruned {
    #[serde(flatten)]
    pub cleaned: Cleaned,
    /// Checkpoints left.
    pub kept_count: usize,
    pub dry_run: bool,
}

/// Where checkpoints live.
pub trait CheckpointStore {
    /// Makes a checkpoint of the state (exit 4 for a bad request, nothing
    /// made; 1 when there is no state, 3 when it does not parse).
    fn create(&self, req: &Request<'_>, access: Access<'_>) -> Result<Created>;
    /// Every checkpoint, newest first.
    fn list(&self) -> Result<Vec<Checkpoint>>;
    /// Every checkpoint, newest first, each verified.
    fn entries(&self) -> Result<Vec<Entry>>;
    /// Checkpoint `id`, or the newest for `latest`/`None` (exit 1 when none).
    fn find(&self, id: Option<&str>) -> Result<Checkpoint>;
    /// Checks every file of `cp` against its checksum (exit 3 otherwise).
    fn verify(&self, cp: &Checkpoint) -> Result<Verified>;
    /// Puts checkpoint `id` (`None`: the newest) back; exit 4 when it holds
    /// another state's lineage, unless `force`.
    fn restore(&self, id: Option<&str>, access: Access<'_>, force: bool) -> Result<Restored>;
    /// Removes one checkpoint; `false` when it was gone already.
    fn remove(&self, cp: &Checkpoint, access: Access<'_>) -> Result<bool>;
    /// Removes checkpoints older than `max_age` but the newest `keep`, and
    /// leftover temp folders.
    fn cleanup(
        &self,
        max_age: Duration,
        keep: usize,
        dry_run: bool,
        access: Access<'_>,
    ) -> Result<Pruned>;
    /// The checkpoint of a restore that was interrupted, if one was.
    fn interrupted_restore(&self) -> Option<String>;
    /// Stores a copy of checkpoint `v` of another backend, under its id
    /// (`migrate-backend`); exit 1 when that id exists here.
    fn adopt(&self, v: &Verified) -> Result<Created>;
}

impl FileBackend {
    fn store(&self, access: Access<'_>) -> Result<Store<'_>> {
        Store::open(&self.cfg, access.retention)
    }
}

impl CheckpointStore for FileBackend {
    fn create(&self, req: &Request<'_>, access: Access<'_>) -> Result<Created> {
        req.check()?;
        let st = self.store(access)?;
        let txn = st.begin(access.owner)?;
        restore::repair(&self.cfg, &txn, &st)?;
        let bytes = st.load_bytes()?.ok_or_else(|| st.missing())?;
        checkpoint::create(&self.cfg, st.path(), &bytes, req)
    }

    fn list(&self) -> Result<Vec<Checkpoint>> {
        checkpoint::list(&self.cfg)
    }

    fn entries(&self) -> Result<Vec<Entry>> {
        checkpoint::entries(&self.cfg)
    }

    fn find(&self, id: Option<&str>) -> Result<Checkpoint> {
        checkpoint::find(&self.cfg, id)
    }

    fn verify(&self, cp: &Checkpoint) -> Result<Verified> {
        checkpoint::verify(cp)
    }

    fn restore(&self, id: Option<&str>, access: Access<'_>, force: bool) -> Result<Restored> {
        restore::restore(&self.cfg, access.retention, access.owner, id, force)
    }

    fn remove(&self, cp: &Checkpoint, access: Access<'_>) -> Result<bool> {
        let st = self.store(access)?;
        let _txn = st.begin(access.owner)?;
        checkpoint::remove(cp)
    }

    fn cleanup(
        &self,
        max_age: Duration,
        keep: usize,
        dry_run: bool,
        access: Access<'_>,
    ) -> Result<Pruned> {
        let cfg = &self.cfg;
        let st = self.store(access)?;
        let txn = st.begin(access.owner)?;
        if !dry_run {
            restore::repair(cfg, &txn, &st)?;
        }
        let mut cleaned = checkpoint::prune(cfg, max_age, keep, dry_run)?;
        for t in restore::leftovers(cfg) {
            if dry_run || fs::remove_dir_all(&t).is_ok() {
                cleaned.temps.push(t);
            }
        }
        let left = checkpoint::list(cfg)?.len();
        drop(txn);
        Ok(Pruned {
            kept_count: if dry_run {
                left - cleaned.checkpoints.len()
            } else {
                left
            },
            cleaned,
            dry_run,
        })
    }

    fn interrupted_restore(&self) -> Option<String> {
        restore::interrupted(&self.cfg)
    }

    fn adopt(&self, v: &Verified) -> Result<Created> {
        checkpoint::adopt(&self.cfg, v)
    }
}
