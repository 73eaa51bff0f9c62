//! The state store: reading the state file, and committing a new version of
//! it under the `state` lock.
//!
//! A commit validates the document against the schema (an invalid one is
//! refused with exit 4 and nothing changes), stamps the toolkit-owned
//! metadata (`revision` + 1, `lastModified`, `checksum` — see
//! [`super::integrity`]; computed in the pass that serializes the
//! document, [`document::seal_pretty`]), keeps the previous version as a
//! backup (a hard link), replaces the file through
//! [`durable::replace_syncing_with`] and prunes old backups. Readers take no
//! lock: the file is only ever replaced whole.
//!
//! The syncs of a commit, in order: the new file's data (fdatasync), the
//! backups folder (the link of the old version), the rename, the state's
//! folder. A crash before the rename's fsync leaves the old version with
//! its backup durable or not yet linked; after it, the new version and the
//! backup of the old one.
//!
//! [`Txn::commit_spliced`] commits a `set` on a large state without
//! building the whole document (see [`super::splice`]): the same checks,
//! stamp, checksum, backup and syncs, and the same bytes.
//!
//! Read-modify-write happens inside one [`Txn`], which holds the `state`
//! lock's mutex (see [`crate::lock::transaction`]) from before the read until
//! after the write, so N concurrent shells lose no update.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::backup::{self, Retention};
use super::document;
use super::schema;
use super::splice;
use crate::config::{Config, MAX_INPUT_BYTES};
use crate::durable;
use crate::error::{Error, Result};
use crate::lock::{self, Identity};

/// The state file of a configuration.
pub struct Store<'a> {
    pub cfg: &'a Config,
    pub retention: Retention,
    /// The file actually read and replaced (a symlink inside the root resolved).
    path: PathBuf,
}

/// The outcome of a commit.
#[derive(Clone, Debug)]
pub struct Commit {
    pub revision: u64,
    /// The backup of the version it replaced, if there was one.
    pub backup: Option<PathBuf>,
}

impl<'a> Store<'a> {
    /// The store of `cfg`; a state file that is a symlink out of the root is refused (exit 6).
    pub fn open(cfg: &'a Config, retention: Retention) -> Result<Store<'a>> {
        durable::check_not_escaping(&cfg.state_file, &cfg.root)?;
        let path = if cfg.state_file.is_symlink() {
            std::fs::canonicalize(&cfg.state_file)
                .map_err(|e| Error::io(e, "cannot resolve", &cfg.state_file))?
        } else {
            cfg.state_file.clone()
        };
        Ok(Store {
            cfg,
            retention,
            path,
        })
    }

    /// The file the state lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether there is a state file.
    pub fn exists(&self) -> bool {
        self.path.exists()
    }

    /// The raw bytes; `None` when there is no state file.
    pub fn load_bytes(&self) -> Result<Option<Vec<u8>>> {
        match durable::read_limited(&self.path, MAX_INPUT_BYTES) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The document; `None` when there is no state file; exit 3 when it does not parse.
    pub fn load_opt(&self) -> Result<Option<Value>> {
        let Some(bytes) = self.load_bytes()? else {
            return Ok(None);
        };
        parse_state(&bytes, &self.path).map(Some)
    }

    /// The document; exit 1 naming `init` when there is none.
    pub fn load(&self) -> Result<Value> {
        self.load_opt()?.ok_or_else(|| self.missing())
    }

    /// The error for a missing state file.
    pub fn missing(&self) -> Error {
        Error::general("no state file")
            .with_path(&self.path)
            .hint("run 'state-manager init' first, or point STATE_FILE at your state")
    }

    /// Takes the `state` lock for a read-modify-write on behalf of `owner`
    /// (the calling shell, so a shell holding `lock-manager acquire state` passes).
    /// Exit 2 after LOCK_TIMEOUT, also when another transaction keeps the
    /// mutex that long; exit 4 at once when `owner` holds a lock ranking
    /// after `state` (it could deadlock with a holder of `state` waiting for it).
    pub fn begin(&self, owner: Option<&Identity>) -> Result<Txn<'_, 'a>> {
        let started = Instant::now();
        let mutex = lock::transaction(self.cfg, "state", owner, self.cfg.lock_timeout)?;
        let waited = started.elapsed();
        crate::debug::log(|| {
            format!(
                "state lock taken after {:.3}ms (state file {})",
                waited.as_secs_f64() * 1e3,
                self.path.display()
            )
        });
        Ok(Txn {
            store: self,
            _mutex: mutex,
            waited,
        })
    }
}

/// Parses state bytes; exit 3 naming `recover` when they are not JSON.
pub fn parse_state(bytes: &[u8], path: &Path) -> Result<Value> {
    parse_json(bytes).map_err(|e| {
        Error::corruption("state file does not parse")
            .with_path(path)
            .because(e)
            .hint("run 'state-manager recover' to restore the newest valid backup")
    })
}

/// Parses JSON `bytes` as `serde_json::from_slice` does, the same value and
/// the same errors, but checks UTF-8 once for the whole input (a fast scan)
/// instead of once per string: a large state has hundreds of thousands.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(bytes),
    }
}

/// A read-modify-write of the state, holding the `state` lock until dropped.
pub struct Txn<'s, 'a> {
    store: &'s Store<'a>,
    _mutex: lock::Mutex,
    /// How long the lock took.
    pub waited: Duration,
}

impl Txn<'_, '_> {
    /// The current document (see [`Store::load_opt`]).
    pub fn load_opt(&self) -> Result<Option<Value>> {
        self.store.load_opt()
    }

    /// The current document (see [`Store::load`]).
    pub fn load(&self) -> Result<Value> {
        self.store.load()
    }

    /// Writes `new` as the next version after `old` (see the module docs).
    pub fn commit(&self, old: Option<&Value>, new: Value, reason: &str) -> Result<Commit> {
        self.commit_inner(old, new, reason, true)
    }

    /// Writes `new` over a state file that does not parse, without backing
    /// that file up (the caller has kept it aside).
    pub fn commit_over_corrupt(&self, new: Value, reason: &str) -> Result<Commit> {
        self.commit_inner(None, new, reason, false)
    }

    fn commit_inner(
        &self,
        old: Option<&Value>,
        mut new: Value,
        reason: &str,
        keep_old: bool,
    ) -> Result<Commit> {
        let started = Instant::now();
        document::stamp(&mut new, old)?;
        // After the stamp, so the checksum covers the new revision and time;
        // sealed in the pass that serializes it.
        let bytes = document::seal_pretty(&mut new);
        check_schema(&new)?;
        let revision = document::revision(&new);
        release(new);
        let bytes = &bytes[..];
        self.write_version(
            revision,
            bytes.len(),
            &mut |w| w.write_all(bytes),
            reason,
            keep_old,
            started,
        )
    }

    /// Replaces the state file by the `len` bytes `fill` writes (revision
    /// `revision`), keeping the old version as a backup named for `reason`
    /// when `keep_old`: the part of a commit after the new text is known.
    fn write_version(
        &self,
        revision: u64,
        len: usize,
        fill: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>,
        reason: &str,
        keep_old: bool,
        started: Instant,
    ) -> Result<Commit> {
        if len as u64 > MAX_INPUT_BYTES {
            return Err(durable::too_large(len as u64, MAX_INPUT_BYTES).with_path(&self.store.path));
        }
        let cfg = self.store.cfg;
        let backup = if keep_old {
            backup::link(cfg, &self.store.path, reason)?
        } else {
            None
        };
        if let Some(b) = &backup {
            crate::debug::log(|| format!("backup made: {}", b.display()));
        }
        // The backup's link is made durable after the new bytes are and
        // before the rename: the same guarantee as syncing it first (a crash
        // never leaves the new state without the old one's backup), but on
        // ext4 the new file's fdatasync has already committed the journal
        // transaction holding the link, so that fsync finds nothing to write.
        let backup_dir = backup.as_deref().and_then(Path::parent);
        let path = &self.store.path;
        durable::replace_syncing_with(path, backup_dir.as_slice(), |w| {
            fill(w).map_err(|e| Error::io(e, "cannot write", path))
        })?;
        if let Err(e) = backup::prune(cfg, self.store.retention) {
            eprintln!("state-manager: warning: cannot prune backups: {e}");
        }
        crate::debug::log(|| {
            format!(
                "committed revision {revision} ({len} bytes) to {} in {:.3}ms",
                self.store.path.display(),
                started.elapsed().as_secs_f64() * 1e3
            )
        });
        Ok(Commit { revision, backup })
    }

    /// A `set` of top-level member `key` of the stored document `bytes`
    /// (read under this transaction's lock) by `change`, without building
    /// the whole document (see [`splice`]). `Ok(None)` when it declines:
    /// then the caller takes the whole-tree path, which gives the same
    /// result, or the same error, on any document.
    pub fn commit_spliced(
        &self,
        bytes: &[u8],
        key: &str,
        change: &mut dyn FnMut(&mut Value) -> Result<()>,
        reason: &str,
    ) -> Result<Option<Commit>> {
        if bytes.len() < splice::MIN_BYTES {
            crate::debug::log(|| "set: whole-tree path: the state is smaller than 64 KiB".into());
            return Ok(None);
        }
        let started = Instant::now();
        let spliced = match splice::prepare(bytes, key, change, &document::now_rfc3339()) {
            Ok(s) => s,
            Err(why) => {
                crate::debug::log(|| format!("set: whole-tree path: {why}"));
                return Ok(None);
            }
        };
        crate::debug::log(|| {
            format!(
                "set: member path: {} of {} members copied as stored",
                spliced.copied(),
                spliced.members()
            )
        });
        let commit = self.write_version(
            spliced.revision,
            spliced.len(),
            &mut |w| spliced.write(bytes, w),
            reason,
            true,
            started,
        )?;
        Ok(Some(commit))
    }
}

static LEAK_DOCUMENTS: AtomicBool = AtomicBool::new(false);

/// Lets commits leave their documents unfreed: for a command that exits
/// right after its one commit, where freeing a large document's tree node
/// by node costs more than the rest of the write and the exit returns the
/// memory anyway. Only the command layer of a binary calls it, never a
/// library path that commits in a loop (`benchmark`, tests).
pub fn leak_documents_at_exit() {
    LEAK_DOCUMENTS.store(true, Ordering::Relaxed);
}

/// Drops `doc`, or leaves it to the process's exit (see [`leak_documents_at_exit`]).
pub fn release(doc: Value) {
    if LEAK_DOCUMENTS.load(Ordering::Relaxed) {
        std::mem::forget(doc);
    }
}

/// Refuses (exit 4) a document that breaks the schema, naming the first problem.
pub fn check_schema(doc: &Value) -> Result<()> {
    let v = schema::violations(doc);
    match v.first() {
        None => Ok(()),
        Some(first) => {
            let more = if v.len() > 1 {
                format!(" (and {} more)", v.len() - 1)
            } else {
                String::new()
            };
            Err(Error::validation("the document breaks the state schema")
                .because(format!("{first}{more}"))
                .hint("fix that in your input and try again; the state was not changed"))
        }
    }
}
