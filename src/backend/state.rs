//! The state store: the document, its read-modify-write transactions, its
//! backups and the signal files — what `state-manager` keeps.
//!
//! The file backend's implementation is [`crate::state::store`] (the state
//! file, written by [`crate::durable::replace`]) and
//! [`crate::state::backup`] (`.state-backups/`).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use std::fs;
use std::os::unix::fs::DirBuilderExt;

use super::{Access, FileBackend};
use crate::error::{Error, Result};
use crate::state::backup::{self, Backup, Retention};
use crate::state::{Commit, commands, document, store};

/// A change to the document inside a transaction, in place.
pub type Change<'f> = &'f mut dyn FnMut(&mut Value) -> Result<()>;
/// A change to the document inside a transaction: from the current one
/// (`None`: no state) to the next (`None`: leave it as it is).
pub type Transform<'f> = &'f mut dyn FnMut(Option<&Value>) -> Result<Option<Value>>;

/// What [`StateStore::init`] did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Initialized {
    pub path: String,
    /// Whether this call wrote the state (false: it was there already).
    pub initialized: bool,
    pub revision: u64,
    /// The backup a corrupt state was replaced by.
    pub recovered_from: Option<String>,
    /// Where a corrupt state was kept.
    pub corrupt_kept_at: Option<String>,
}

/// Where the state document lives and how it changes.
pub trait StateStore {
    /// Creates the state if there is none (idempotent: a valid one is left
    /// as it is, exit 4 for one that breaks the schema); a state that does
    /// not parse is kept aside and replaced by the newest valid backup, or
    /// a fresh document. Under the `state` lock.
    fn init(&self, access: Access<'_>) -> Result<Initialized>;
    /// The stored document's bytes as they are; `None` when there is no state.
    fn load_bytes(&self) -> Result<Option<Vec<u8>>>;
    /// The error for a state that does not exist (exit 1, naming `init`).
    fn missing(&self) -> crate::error::Error;
    /// The document in `bytes` (as [`StateStore::load_bytes`] gave them);
    /// exit 3 naming `recover` when they do not parse.
    fn parse(&self, bytes: &[u8]) -> Result<Value>;
    /// A read-modify-write under the `state` lock on behalf of `owner`:
    /// `change` gets the current document (`None` when there is no state;
    /// exit 3 before it is called when the state does not parse) and
    /// returns the next one, or `None` to change nothing. The new document
    /// is committed as the next revision, the version it replaces backed up
    /// as `reason`. `waited` is told how long the lock took, before
    /// `change` runs.
    fn transact(
        &self,
        access: Access<'_>,
        reason: &str,
        change: Transform<'_>,
        waited: &mut dyn FnMut(Duration),
    ) -> Result<Option<Commit>>;
    /// [`StateStore::transact`] of an existing document edited in place
    /// (exit 1 when there is none).
    fn update(
        &self,
        access: Access<'_>,
        reason: &str,
        change: Change<'_>,
        waited: &mut dyn FnMut(Duration),
    ) -> Result<Commit> {
        let commit = self.transact(
            access,
            reason,
            &mut |old| {
                let mut new = old.ok_or_else(|| self.missing())?.clone();
                change(&mut new)?;
                Ok(Some(new))
            },
            waited,
        )?;
        Ok(commit.expect("an update always commits"))
    }
    /// `set`: [`StateStore::update`] by a `change` that touches the
    /// top-level member `key` alone (and the metadata, as every commit
    /// does). A backend that can write a large document without building
    /// it whole overrides this; the result is the same.
    fn set(
        &self,
        access: Access<'_>,
        reason: &str,
        key: &str,
        change: Change<'_>,
        waited: &mut dyn FnMut(Duration),
    ) -> Result<Commit> {
        let _ = key;
        self.update(access, reason, change, waited)
    }
    /// The backups, newest first.
    fn list_backups(&self) -> Result<Vec<Backup>>;
    /// The document backup `b` holds, as stored.
    fn backup_bytes(&self, b: &Backup) -> Result<Vec<u8>>;
    /// Stores `bytes` as backup `b` of another backend, under its name
    /// (`migrate-backend`), not pruned.
    fn put_backup(&self, b: &Backup, bytes: &[u8]) -> Result<()>;
    /// Removes backup `b`; `false` when it was gone already.
    fn remove_backup(&self, b: &Backup) -> Result<bool>;
    /// A backup of the current state named for `reason`; old backups are
    /// then pruned by `retention` (keeping at least this one).
    fn backup(&self, reason: &str, retention: Retention) -> Result<PathBuf>;
    /// Restores the newest valid backup whose name contains `pattern`
    /// under the `state` lock, keeping the current version first (as a
    /// backup, or aside when it does not parse). Exit 3 when none matches.
    /// Exit 4 when that backup holds another state's lineage, unless `force`.
    fn recover(&self, access: Access<'_>, pattern: Option<&str>, force: bool) -> Result<Recovered>;
}

/// What [`StateStore::recover`] did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Recovered {
    pub path: String,
    /// The backup restored.
    pub recovered_from: String,
    pub revision: u64,
    /// Where the current version was kept: its backup, or the corrupt copy.
    pub backup: Option<String>,
    /// Set when the current version did not parse and was kept aside.
    pub corrupt_kept_at: Option<String>,
}

impl FileBackend {
    fn open_state(&self, retention: Retention) -> Result<store::Store<'_>> {
        store::Store::open(&self.cfg, retention)
    }
}

impl StateStore for FileBackend {
    fn init(&self, access: Access<'_>) -> Result<Initialized> {
        let cfg = &self.cfg;
        if !cfg.root.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&cfg.root)
                .map_err(|e| Error::io(e, "cannot create state folder", &cfg.root))?;
        }
        let st = self.open_state(access.retention)?;
        let txn = st.begin(access.owner)?;
        backup::ensure_dir(cfg)?;
        let mut done = Initialized {
            path: st.path().display().to_string(),
            initialized: true,
            revision: 0,
            recovered_from: None,
            corrupt_kept_at: None,
        };
        let Some(bytes) = st.load_bytes()? else {
            done.revision = txn.commit(None, document::fresh(), "init")?.revision;
            return Ok(done);
        };
        if let Ok(doc) = store::parse_state(&bytes, st.path()) {
            store::check_schema(&doc).map_err(|e| {
                e.hint("the state exists but is not valid: run 'state-manager migrate' (older documents) or 'state-manager repair'")
            })?;
            done.initialized = false;
            done.revision = document::revision(&doc);
            return Ok(done);
        }
        let aside = commands::keep_aside(st.path())?;
        done.corrupt_kept_at = Some(aside.display().to_string());
        let commit = match commands::newest_valid_backup(cfg, None)? {
            Some((b, doc)) => {
                done.recovered_from = Some(b.name);
                txn.commit_over_corrupt(doc, "init-recover")?
            }
            None => txn.commit_over_corrupt(document::fresh(), "init")?,
        };
        done.revision = commit.revision;
        Ok(done)
    }

    fn load_bytes(&self) -> Result<Option<Vec<u8>>> {
        let st = self.open_state(Retention::default())?;
        crate::debug::log(|| format!("state file {}", st.path().display()));
        st.load_bytes()
    }

    fn missing(&self) -> crate::error::Error {
        match self.open_state(Retention::default()) {
            Ok(st) => st.missing(),
            Err(e) => e,
        }
    }

    fn parse(&self, bytes: &[u8]) -> Result<Value> {
        // The resolved path is wanted only in the message of a failure.
        store::parse_json(bytes).or_else(|_| {
            let st = self.open_state(Retention::default())?;
            store::parse_state(bytes, st.path())
        })
    }

    fn transact(
        &self,
        access: Access<'_>,
        reason: &str,
        change: Transform<'_>,
        waited: &mut dyn FnMut(Duration),
    ) -> Result<Option<Commit>> {
        let st = self.open_state(access.retention)?;
        let txn = st.begin(access.owner)?;
        waited(txn.waited);
        let old = txn.load_opt()?;
        let commit = match change(old.as_ref())? {
            Some(new) => txn.commit(old.as_ref(), new, reason).map(Some),
            None => Ok(None),
        };
        if let Some(old) = old {
            store::release(old);
        }
        commit
    }

    fn update(
        &self,
        access: Access<'_>,
        reason: &str,
        change: Change<'_>,
        waited: &mut dyn FnMut(Duration),
    ) -> Result<Commit> {
        let st = self.open_state(access.retention)?;
        let txn = st.begin(access.owner)?;
        waited(txn.waited);
        // Edited in place, not in a copy: the stamp needs only the old metadata.
        let mut doc = txn.load()?;
        let basis = document::stamp_basis(&doc);
        change(&mut doc)?;
        txn.commit(Some(&basis), doc, reason)
    }

    fn set(
        &self,
        access: Access<'_>,
        reason: &str,
        key: &str,
        change: Change<'_>,
        waited: &mut dyn FnMut(Duration),
    ) -> Result<Commit> {
        let st = self.open_state(access.retention)?;
        let txn = st.begin(access.owner)?;
        waited(txn.waited);
        let bytes = st.load_bytes()?.ok_or_else(|| st.missing())?;
        // A large state in the toolkit's own form: only the member the
        // change touches is built (crate::state::splice).
        if let Some(commit) = txn.commit_spliced(&bytes, key, change, reason)? {
            return Ok(commit);
        }
        let mut doc = store::parse_state(&bytes, st.path())?;
        drop(bytes);
        let basis = document::stamp_basis(&doc);
        change(&mut doc)?;
        txn.commit(Some(&basis), doc, reason)
    }

    fn list_backups(&self) -> Result<Vec<Backup>> {
        backup::list(&self.cfg)
    }

    fn backup_bytes(&self, b: &Backup) -> Result<Vec<u8>> {
        crate::durable::read_limited(&b.path, crate::config::MAX_INPUT_BYTES)
    }

    fn remove_backup(&self, b: &Backup) -> Result<bool> {
        match fs::remove_file(&b.path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(e, "cannot remove", &b.path)),
        }
    }

    fn put_backup(&self, b: &Backup, bytes: &[u8]) -> Result<()> {
        let dir = backup::ensure_dir(&self.cfg)?;
        let name = std::path::Path::new(&b.name);
        if name.components().count() != 1 || !b.name.starts_with("state-") {
            return Err(Error::validation(format!(
                "'{}' is not a backup name",
                b.name
            )));
        }
        crate::durable::replace(&dir.join(name), bytes, crate::durable::Durability::Durable)
    }

    fn backup(&self, reason: &str, retention: Retention) -> Result<PathBuf> {
        let st = self.open_state(retention)?;
        // A backup that would not restore is no backup.
        st.load()?;
        let made = backup::create(&self.cfg, st.path(), reason)?.ok_or_else(|| st.missing())?;
        crate::debug::log(|| format!("backup made: {}", made.display()));
        let keep = Retention {
            keep: retention.keep.max(1),
            ..retention
        };
        if let Err(e) = backup::prune(&self.cfg, keep) {
            eprintln!("state-manager: warning: cannot prune backups: {e}");
        }
        Ok(made)
    }

    fn recover(&self, access: Access<'_>, pattern: Option<&str>, force: bool) -> Result<Recovered> {
        let st = self.open_state(access.retention)?;
        let txn = st.begin(access.owner)?;
        let Some((b, doc)) = commands::newest_valid_backup(&self.cfg, pattern)? else {
            let what = match pattern {
                Some(p) => format!("no valid backup matches '{p}'"),
                None => "no valid backup to recover from".to_string(),
            };
            return Err(crate::error::Error::corruption(what)
                .with_path(self.cfg.backups_dir())
                .hint(
                    "see 'state-manager list-backups'; 'state-manager init' starts a fresh state",
                ));
        };
        if let Ok(current) = txn.load_opt() {
            document::check_lineage(current.as_ref(), &doc, &format!("backup {}", b.name), force)?;
        }
        let mut detail = serde_json::json!({});
        let commit = commands::recover_into(&txn, &st, doc, &mut detail)?;
        Ok(Recovered {
            path: st.path().display().to_string(),
            recovered_from: b.name,
            revision: commit.revision,
            backup: commit.backup.map(|p| p.display().to_string()),
            corrupt_kept_at: detail["corrupt_kept_at"].as_str().map(str::to_owned),
        })
    }
}
