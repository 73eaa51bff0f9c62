//! Restoring a checkpoint: the state, `.signals/` and `config/` replaced
//! atomically under the `state` lock, after every checksum has matched.
//! Nothing is lost by a restore: the state it replaces is kept as a backup
//! and the folders it replaces are kept under `.state-backups/restore-*/`;
//! [`Restored`] names the files it removed, for its caller to print.
//!
//! Order, all under the `state` lock:
//!
//! 1. Verify the checkpoint (exit 3 on any mismatch: nothing is touched) and
//!    check its state against the schema (exit 4: nothing is touched).
//! 2. Build the new folders beside the live ones
//!    (`.wfstate-restore-PID-new-signals`, `…-new-config`), durably, and
//!    hard-link the files of the live folders into
//!    `.state-backups/restore-YYYYMMDDTHHMMSSZ-PID/` (a copy where links fail).
//! 3. Write the journal `.wfstate-restore.journal` naming the checkpoint and
//!    the live state's revision at this instant (`from_revision`; null when
//!    there is no readable state).
//! 4. Commit the state through [`crate::state::Txn::commit`]: the live state
//!    is backed up (`…-pre-restore.json`; a corrupt one is kept aside as
//!    `.corrupt-*`), the restored content validated and given the next
//!    revision, so revisions never go backwards.
//! 5. Swap each folder in with `renameat2(RENAME_EXCHANGE)`: the live name
//!    holds the old folder or the new one at every instant, never neither.
//!    The old one (now under the temp name) is then removed. A filesystem
//!    without `RENAME_EXCHANGE` falls back to rename-away + rename-in.
//! 6. Remove the journal.
//!
//! A crash before step 3 leaves only temp folders, which the next
//! checkpoint, restore or cleanup removes. A crash after step 3 leaves the
//! journal. Other commands (`set`, `append`, …) may commit in the meantime,
//! so the next checkpoint, restore, cleanup or `handle --apply` finishes
//! the restore only while the state is still where the crash left it:
//!
//! - at `from_revision` (the crash came before step 4), or
//! - at the revision step 4 gives, with the checkpoint's content (the crash
//!   came after it): the restore is run again from the start (re-verified;
//!   committing the same content again only bumps the revision), so state
//!   and folders never stay out of step — including the fallback's window
//!   where the live folder has been renamed away.
//!
//! Otherwise the state has moved on since, and finishing would revert the
//! work committed after the crash: the journal is dropped instead, with a
//! warning and an audit event (outcome `dropped`). A pending restore is
//! never applied over newer revisions. What is not covered: folders other
//! than `.signals/` and `config/`, and modes of restored files (they come
//! back 0600).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::TOOL;
use super::checkpoint::{self, Verified};
use crate::audit::Recorder;
use crate::config::{Config, MAX_INPUT_BYTES};
use crate::durable::{self, Durability};
use crate::error::{Error, Result};
use crate::exit::Code;
use crate::lock::Identity;
use crate::state::backup::Retention;
use crate::state::{Store, Txn, commands, document, store};

/// The journal of a restore in progress, in the state root.
pub const JOURNAL: &str = ".wfstate-restore.journal";
/// The prefix of a restore's temp folders in the state root.
const TEMP_PREFIX: &str = ".wfstate-restore-";

#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    id: String,
    pid: u32,
    started: String,
    /// The live state's `metadata.revision` when the restore began; `None`
    /// when there was no readable state (also a journal of an older version).
    #[serde(default)]
    from_revision: Option<u64>,
}

/// For the crash tests (debug builds only): SIGKILLs this process at the
/// instant named by `WFSTATE_TEST_CRASH_AT`.
fn crash_point(_at: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("WFSTATE_TEST_CRASH_AT").as_deref() == Ok(_at) {
        let me = rustix::process::getpid();
        let _ = rustix::process::kill_process(me, rustix::process::Signal::KILL);
    }
}

/// What a restore did: the new revision, where the replaced state and
/// folders are kept, and every file it removed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Restored {
    /// The checkpoint restored.
    pub id: String,
    /// The state's revision now.
    pub revision: u64,
    /// The backup of the state it replaced.
    pub backup: Option<PathBuf>,
    /// Where a corrupt state it replaced is kept.
    pub corrupt_kept_at: Option<PathBuf>,
    /// The folders replaced: `signals`, `config`.
    pub folders: Vec<String>,
    /// Where the files of the replaced folders are kept.
    pub kept_at: Option<PathBuf>,
    /// The live files that the checkpoint did not have, as `.signals/NAME`.
    pub removed: Vec<String>,
    /// How long the `state` lock took (ms).
    #[serde(skip)]
    pub lock_wait_ms: f64,
}

impl Restored {
    /// The audit detail of the restore.
    pub fn detail(&self) -> Value {
        let mut d = json!({
            "lock_wait_ms": self.lock_wait_ms,
            "revision": self.revision,
            "folders": self.folders,
            "removed": self.removed,
        });
        if let Some(b) = &self.backup {
            d["backup"] = json!(b.file_name().map(|n| n.to_string_lossy().into_owned()));
        }
        if let Some(c) = &self.corrupt_kept_at {
            d["corrupt_kept_at"] = json!(c.display().to_string());
        }
        if let Some(k) = &self.kept_at {
            d["kept"] = json!(k.display().to_string());
        }
        d
    }
}

/// `restore [ID|latest]`: finishes an interrupted restore first, then
/// verifies checkpoint `id` and puts it back, under the `state` lock taken
/// for `owner`; the state's commit keeps backups by `retention`.
pub fn restore(
    cfg: &Config,
    retention: Retention,
    owner: Option<&Identity>,
    id: Option<&str>,
    force: bool,
) -> Result<Restored> {
    let st = Store::open(cfg, retention)?;
    let txn = st.begin(owner)?;
    let waited = crate::audit::event::ms(txn.waited);
    repair(cfg, &txn, &st)?;
    let cp = checkpoint::find(cfg, id)?;
    crate::debug::log(|| format!("restore: verifying {}", cp.path.display()));
    let verified = checkpoint::verify(&cp)?;
    check_lineage(&txn, &verified, force)?;
    let mut done = apply(cfg, &txn, &st, &verified)?;
    done.lock_wait_ms = waited;
    Ok(done)
}

/// Exit 4 when checkpoint `v` holds another state's lineage than the live
/// one (which may not parse: then there is nothing to compare), unless `force`.
fn check_lineage(txn: &Txn<'_, '_>, v: &Verified, force: bool) -> Result<()> {
    let (Ok(Some(live)), Ok(theirs)) = (
        txn.load_opt(),
        serde_json::from_slice::<Value>(&v.files[checkpoint::STATE]),
    ) else {
        return Ok(());
    };
    crate::state::document::check_lineage(
        Some(&live),
        &theirs,
        &format!("checkpoint {}", v.meta.id),
        force,
    )
}

/// Replaces the state and folders with a verified checkpoint's (steps 1–6 of
/// the module docs). The caller holds the `state` lock through `txn`.
fn apply(cfg: &Config, txn: &Txn<'_, '_>, st: &Store<'_>, v: &Verified) -> Result<Restored> {
    let mut done = Restored {
        id: v.meta.id.clone(),
        ..Restored::default()
    };
    let doc: Value = serde_json::from_slice(&v.files[checkpoint::STATE])
        .map_err(|e| Error::corruption("checkpoint state does not parse").because(e))?;
    for (_, live) in checkpoint::folders(cfg) {
        durable::check_not_escaping(&live, &cfg.root)?;
        if live.exists() && !live.is_dir() {
            return Err(Error::general("expected a folder but found a file")
                .with_path(&live)
                .hint("move that file away, then restore again"));
        }
    }
    let current = match txn.load_opt() {
        Ok(doc) => Ok(doc),
        Err(e) if e.code() == Code::StateCorruption => Err(e),
        Err(e) => return Err(e),
    };
    let mut probe = doc.clone();
    document::stamp(&mut probe, current.as_ref().ok().and_then(Option::as_ref))?;
    store::check_schema(&probe).map_err(|e| {
        e.hint("the checkpoint's state breaks the schema; restore another one (see 'error-recovery list')")
    })?;

    let pid = std::process::id();
    let mut plan: Vec<(&'static str, PathBuf, Option<PathBuf>)> = Vec::new();
    let journal = cfg.root.join(JOURNAL);
    let mut removed: Vec<String> = Vec::new();
    let mut kept_dir: Option<PathBuf> = None;
    let prepared = (|| {
        for (name, live) in checkpoint::folders(cfg) {
            let incoming = v.folder(name);
            let shown = if name == "signals" { ".signals" } else { name };
            let live_files = files_in(&live);
            if !live_files.is_empty() {
                let kept = match &kept_dir {
                    Some(k) => k.clone(),
                    None => {
                        durable::ensure_dir(&cfg.backups_dir(), &cfg.root)?;
                        let k = cfg.backups_dir().join(format!(
                            "restore-{}-{pid}",
                            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
                        ));
                        let _ = fs::remove_dir_all(&k);
                        checkpoint::make_dir(&k)?;
                        kept_dir = Some(k.clone());
                        k
                    }
                };
                keep_folder(&live, &live_files, &kept.join(name))?;
                let wanted: Vec<&str> = incoming
                    .as_ref()
                    .map(|f| f.iter().map(|(rel, _)| *rel).collect())
                    .unwrap_or_default();
                removed.extend(
                    live_files
                        .iter()
                        .filter(|rel| !wanted.contains(&rel.as_str()))
                        .map(|rel| format!("{shown}/{rel}")),
                );
            }
            match incoming {
                Some(files) => {
                    let tmp = cfg.root.join(format!("{TEMP_PREFIX}{pid}-new-{name}"));
                    plan.push((name, live, Some(tmp.clone())));
                    build(&tmp, &files)?;
                }
                None => plan.push((name, live, None)),
            }
        }
        if let Some(k) = &kept_dir {
            checkpoint::sync_tree(k)?;
            durable::sync_dir(&cfg.backups_dir())?;
        }
        let j = Journal {
            id: v.meta.id.clone(),
            pid,
            started: crate::audit::event::now_rfc3339_micros(),
            from_revision: current
                .as_ref()
                .ok()
                .and_then(Option::as_ref)
                .map(document::revision),
        };
        let bytes = serde_json::to_vec_pretty(&j).expect("journal serializes");
        durable::replace(&journal, &bytes, Durability::Durable)
    })();
    let undo = |plan: &[(&str, PathBuf, Option<PathBuf>)]| {
        for (_, _, new) in plan {
            if let Some(n) = new {
                let _ = fs::remove_dir_all(n);
            }
        }
        let _ = fs::remove_file(&journal);
    };
    if let Err(e) = prepared {
        undo(&plan);
        if let Some(k) = &kept_dir {
            let _ = fs::remove_dir_all(k);
        }
        return Err(e);
    }
    crash_point("restore-after-journal");

    let committed = match current {
        Ok(cur) => txn.commit(cur.as_ref(), doc, "pre-restore"),
        Err(_) => commands::keep_aside(st.path()).and_then(|aside| {
            eprintln!("{TOOL}: kept the corrupt state at {}", aside.display());
            done.corrupt_kept_at = Some(aside);
            txn.commit_over_corrupt(doc, "restore")
        }),
    };
    let commit = match committed {
        Ok(c) => c,
        Err(e) => {
            // The commit is atomic: the state is unchanged, so is everything else.
            undo(&plan);
            return Err(e);
        }
    };
    crate::debug::log(|| {
        format!(
            "restore {}: committed revision {}",
            v.meta.id, commit.revision
        )
    });
    done.revision = commit.revision;
    done.backup = commit.backup;

    let mut replaced = Vec::new();
    for (name, live, new) in &plan {
        let aside = cfg.root.join(format!("{TEMP_PREFIX}{pid}-old-{name}"));
        if swap(live, new.as_deref(), &aside)? {
            crate::debug::log(|| format!("restore {}: swapped in {}", v.meta.id, live.display()));
            replaced.push(name.to_string());
        }
    }
    durable::sync_dir(&cfg.root)?;
    match fs::remove_file(&journal) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(Error::io(e, "cannot remove the restore journal", &journal));
        }
        _ => {}
    }
    durable::sync_dir(&cfg.root)?;
    done.folders = replaced;
    done.removed = removed;
    done.kept_at = kept_dir;
    Ok(done)
}

/// The files under `dir`, by path inside it, sorted; none when it is absent.
fn files_in(dir: &Path) -> Vec<String> {
    if !dir.is_dir() {
        return Vec::new();
    }
    let mut out: Vec<String> = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| {
            e.path()
                .strip_prefix(dir)
                .ok()
                .map(|p| p.to_string_lossy().into_owned())
        })
        .collect();
    out.sort();
    out
}

/// Keeps the files `rels` of the live folder `live` in `kept` (hard links:
/// the toolkit never changes a file in place; a copy where linking fails).
fn keep_folder(live: &Path, rels: &[String], kept: &Path) -> Result<()> {
    for rel in rels {
        let (from, to) = (live.join(rel), kept.join(rel));
        make_parent(&to)?;
        if fs::hard_link(&from, &to).is_err() {
            let bytes = fs::read(&from).map_err(|e| Error::io(e, "cannot keep", &from))?;
            durable::replace(&to, &bytes, Durability::Durable)?;
        }
    }
    Ok(())
}

/// Creates the folders above `path` (0700) that do not exist yet.
fn make_parent(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match path.parent() {
        Some(parent) if !parent.exists() => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| Error::io(e, "cannot create folder", parent)),
        _ => Ok(()),
    }
}

/// Writes a folder's files into a fresh temp folder, durably.
fn build(tmp: &Path, files: &[(&str, &[u8])]) -> Result<()> {
    let _ = fs::remove_dir_all(tmp);
    checkpoint::make_dir(tmp)?;
    for (rel, bytes) in files {
        let path = tmp.join(rel);
        make_parent(&path)?;
        durable::replace(&path, bytes, Durability::Durable)?;
    }
    checkpoint::sync_tree(tmp)
}

/// Puts `new` (or nothing) in place of `live`; `true` when something changed.
fn swap(live: &Path, new: Option<&Path>, aside: &Path) -> Result<bool> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    let live_exists = fs::symlink_metadata(live).is_ok();
    let rename = |from: &Path, to: &Path| {
        fs::rename(from, to).map_err(|e| Error::io(e, "cannot rename folder into place", to))
    };
    match (new, live_exists) {
        (None, false) => return Ok(false),
        // The checkpoint had no such folder: the live one goes, as it was then.
        (None, true) => rename(live, aside)?,
        (Some(new), false) => checkpoint::rename_noreplace(new, live)
            .map_err(|e| Error::io(e, "cannot rename folder into place", live))?,
        (Some(new), true) => match renameat_with(CWD, new, CWD, live, RenameFlags::EXCHANGE) {
            // `new` now holds the old folder.
            Ok(()) => remove_quietly(new),
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => {
                // No RENAME_EXCHANGE here: the journal covers the instant
                // between these two renames (see the module docs).
                rename(live, aside)?;
                rename(new, live)?;
            }
            Err(e) => {
                return Err(Error::io(e.into(), "cannot swap folder into place", live));
            }
        },
    }
    remove_quietly(aside);
    Ok(true)
}

fn remove_quietly(path: &Path) {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => eprintln!(
            "{TOOL}: warning: cannot remove {}: {e} (remove it by hand)",
            path.display()
        ),
        _ => {}
    }
}

/// Temp folders of interrupted restores in the state root.
pub fn leftovers(cfg: &Config) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(&cfg.root) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(TEMP_PREFIX))
        .map(|e| e.path())
        .collect()
}

/// The live revision when the state has moved on since the restore of
/// `journal` was interrupted (see the module docs); `None` while finishing
/// it is safe.
fn moved_on(journal: &Journal, txn: &Txn<'_, '_>, v: &Verified) -> Option<String> {
    let live = match txn.load_opt() {
        Ok(Some(doc)) => doc,
        // Still unreadable or absent: nothing can have been committed since.
        _ if journal.from_revision.is_none() => return None,
        _ => return Some("unreadable".into()),
    };
    let rev = document::revision(&live);
    if journal.from_revision == Some(rev) {
        return None; // interrupted before its commit, nothing since
    }
    let restored: Option<Value> = serde_json::from_slice(&v.files[checkpoint::STATE]).ok();
    let content = |d: &Value| {
        let mut d = d.clone();
        if let Value::Object(m) = &mut d {
            m.remove("metadata");
        }
        d
    };
    let after = journal
        .from_revision
        .unwrap_or(0)
        .max(restored.as_ref().map_or(0, document::revision))
        + 1;
    match restored {
        // Interrupted after its commit, nothing since.
        Some(r) if rev == after && content(&r) == content(&live) => None,
        _ => Some(rev.to_string()),
    }
}

fn remove_journal(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(Error::io(e, "cannot remove the restore journal", path))
        }
        _ => durable::sync_dir(path.parent().unwrap_or(Path::new("."))),
    }
}

/// Whether a restore was interrupted (its journal is there).
pub fn interrupted(cfg: &Config) -> Option<String> {
    let bytes = durable::read_limited(&cfg.root.join(JOURNAL), MAX_INPUT_BYTES).ok()?;
    Some(
        serde_json::from_slice::<Journal>(&bytes)
            .map(|j| j.id)
            .unwrap_or_else(|_| "(unreadable journal)".into()),
    )
}

/// Removes restore temp folders and finishes an interrupted restore (see the
/// module docs). The caller holds the `state` lock through `txn`.
pub fn repair(cfg: &Config, txn: &Txn<'_, '_>, st: &Store<'_>) -> Result<()> {
    for p in leftovers(cfg) {
        remove_quietly(&p);
    }
    let path = cfg.root.join(JOURNAL);
    let bytes = match durable::read_limited(&path, MAX_INPUT_BYTES) {
        Ok(b) => b,
        Err(e) if e.io_kind() == Some(io::ErrorKind::NotFound) => return Ok(()),
        Err(e) => return Err(e),
    };
    let Ok(journal) = serde_json::from_slice::<Journal>(&bytes) else {
        // Written durably before anything changed: unreadable means it never
        // finished being written, so nothing was changed after it.
        let _ = fs::remove_file(&path);
        return Ok(());
    };
    let rec = Recorder::start(cfg, TOOL, "restore", journal.id.as_str());
    let mut detail = json!({ "resumed": true, "interrupted_pid": journal.pid });
    let verified = checkpoint::find(cfg, Some(&journal.id)).and_then(|cp| checkpoint::verify(&cp));
    if let Ok(v) = &verified
        && let Some(live) = moved_on(&journal, txn, v)
    {
        eprintln!(
            "{TOOL}: warning: dropped the interrupted restore of {}: the state has moved on since (revision {live}; the restore began at {}), and finishing it would undo that work; run 'error-recovery restore {}' to go back to it anyway",
            journal.id,
            journal
                .from_revision
                .map_or("no readable state".to_string(), |r| r.to_string()),
            journal.id
        );
        detail["dropped"] = json!(true);
        detail["from_revision"] = json!(journal.from_revision);
        detail["live_revision"] = json!(live);
        rec.finish_with(0, "dropped", detail);
        remove_journal(&path)?;
        return Ok(());
    }
    eprintln!(
        "{TOOL}: finishing the interrupted restore of {} first",
        journal.id
    );
    let result = verified.and_then(|v| apply(cfg, txn, st, &v));
    if let Ok(done) = &result
        && let (Value::Object(d), Value::Object(more)) = (&mut detail, done.detail())
    {
        d.extend(more.into_iter().filter(|(k, _)| k != "lock_wait_ms"));
    }
    rec.finish(&result, detail);
    if let Err(e) = result {
        eprintln!(
            "{TOOL}: warning: cannot finish the restore of {}: {e}; the state is left as it is",
            journal.id
        );
        let _ = fs::remove_file(&path);
    }
    Ok(())
}
