//! Checkpoints: `.checkpoints/checkpoint-YYYYMMDD-HHMMSSZ-SEQ-OPERATION/`
//! holding `state.json`, `metadata.json` and copies of `.signals/` (as
//! `signals/`) and `config/` when present (schemas/checkpoint.schema.json).
//! This module owns them: it makes, lists, verifies and removes them, and
//! every command that touches one comes through here.
//!
//! **Names and order.** The time in a name is UTC (the `Z`); SEQ is one above
//! the highest SEQ there, chosen under the `state` lock, so it only grows.
//! "Newest", `latest` and cleanup's `--keep` follow SEQ as a number, never a
//! caller's clock or time zone. Names of earlier versions
//! (`checkpoint-YYYYMMDD-HHMMSS-OPERATION[.N]`, local time) are still read:
//! older than every SEQ name, ordered among themselves by their metadata's
//! UTC timestamp. The folder is [`Config::checkpoints_dir`], one state
//! file's own: a second state file in the same folder never sees these.
//!
//! **Making.** A checkpoint is built in a temp folder inside `.checkpoints/`
//! (`.tmp-checkpoint-…-PID`), every file written durably through
//! [`durable::replace`], then renamed into place with `RENAME_NOREPLACE`
//! and `.checkpoints/` fsynced: a half-made checkpoint never exists under a
//! checkpoint's name. The state is read under the `state` lock, so a
//! checkpoint never holds half of a transaction.
//!
//! **Removing** ([`remove`]): the folder is first renamed aside to
//! `.removing-checkpoint-…-PID` (fsynced), then deleted, under the `state`
//! lock. A kill part-way leaves only that temp name, which [`list`] and
//! `verify-integrity` ignore and the next checkpoint or cleanup sweeps
//! ([`remove_leftovers`]): a half-deleted checkpoint never exists under a
//! checkpoint's name. That is the one rule for every removal, leftovers
//! included ([`remove_leftover`]), and a leftover whose writer still runs
//! ([`in_progress`]: the `-PID` in its name is a live process) is never
//! removed.
//!
//! This module knows the format and nothing of restoring: making a
//! checkpoint under the `state` lock after finishing an interrupted restore
//! is the checkpoint store's job ([`crate::backend::CheckpointStore`]).
//!
//! `metadata.json` lists the SHA-256 of every other file; [`verify`]
//! refuses (exit 3) a checkpoint with a changed, missing or unlisted file.
//! What it does not protect: `metadata.json` itself is only checked to parse.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use chrono::{DateTime, TimeZone, Utc};

use super::TOOL;
use crate::config::{Config, MAX_INPUT_BYTES};
use crate::durable::{self, Durability};
use crate::error::{Error, Result};
use crate::state::store;

/// The name of the metadata file inside a checkpoint.
pub const METADATA: &str = "metadata.json";
/// The state's copy inside a checkpoint.
pub const STATE: &str = "state.json";
/// The folders a checkpoint copies: (name inside the checkpoint, live folder).
pub fn folders(cfg: &Config) -> [(&'static str, PathBuf); 2] {
    [("signals", cfg.signals_dir()), ("config", cfg.config_dir())]
}

/// `metadata.json` of a checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// The checkpoint's folder name.
    pub id: String,
    pub operation: String,
    pub phase: String,
    /// When it was made (RFC 3339, UTC, µs).
    pub timestamp: String,
    pub pid: u32,
    pub hostname: String,
    /// The caller's METADATA_JSON, stored as given.
    pub metadata: Value,
    /// `metadata.revision` of the state it holds.
    #[serde(default)]
    pub revision: u64,
    /// Which of `signals` and `config` were present (and so are restored).
    #[serde(default)]
    pub folders: Vec<String>,
    /// SHA-256 (hex) of every other file, by path inside the checkpoint.
    pub files: BTreeMap<String, String>,
}

/// Where a checkpoint stands among the others: every SEQ name is newer than
/// every name of an earlier version. Compared as numbers, never as text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Order {
    /// `checkpoint-YYYYMMDD-HHMMSS-OPERATION[.N]` (local time): by when it
    /// was made (metadata timestamp, UTC), then N.
    Legacy { made: DateTime<Utc>, suffix: u64 },
    /// `checkpoint-YYYYMMDD-HHMMSSZ-SEQ-OPERATION`: by SEQ.
    Seq(u64),
}

/// One checkpoint folder.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub id: String,
    pub path: PathBuf,
    /// When it was made (UTC).
    pub made: DateTime<Utc>,
    /// Its place in the order (newest = greatest).
    pub order: Order,
    /// Its metadata, when `metadata.json` parses.
    pub meta: Option<Metadata>,
}

/// A checkpoint whose checksums all match, with its files' contents.
#[derive(Debug)]
pub struct Verified {
    pub meta: Metadata,
    /// Every file but `metadata.json`, by path inside the checkpoint.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Verified {
    /// The files of folder `name` (`signals` or `config`), by path inside it;
    /// `None` when the checkpoint holds no copy of that folder.
    pub fn folder(&self, name: &str) -> Option<Vec<(&str, &[u8])>> {
        let prefix = format!("{name}/");
        let files: Vec<(&str, &[u8])> = self
            .files
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?, v.as_slice())))
            .collect();
        (self.meta.folders.iter().any(|f| f == name) || !files.is_empty()).then_some(files)
    }
}

/// SHA-256 of `bytes` as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks an OPERATION: 1-128 of `[A-Za-z0-9._-]`, not starting with `.`
/// (the rules of lock names), so it is always part of one folder name.
pub fn validate_operation(op: &str) -> Result<()> {
    crate::lock::name::validate_as("checkpoint operation", op)
}

/// What a new checkpoint is of: OPERATION, PHASE, METADATA_JSON.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    pub operation: &'a str,
    /// `None`: the state's phase.
    pub phase: Option<&'a str>,
    /// The caller's METADATA_JSON as given (`None`: `{}`).
    pub metadata: Option<&'a str>,
}

impl Request<'_> {
    /// Checks OPERATION and METADATA_JSON (exit 4; nothing is created) and
    /// returns the metadata value.
    pub fn check(&self) -> Result<Value> {
        validate_operation(self.operation)?;
        match self.metadata {
            None => Ok(json!({})),
            Some(text) => crate::state::commands::parse_json_arg(text, "the checkpoint metadata")
                .map_err(|e| json_hint(e, "pass a JSON value, e.g. '{\"ticket\": \"T-1\"}'")),
        }
    }
}

/// A checkpoint just made.
#[derive(Clone, Debug, Serialize)]
pub struct Created {
    pub id: String,
    pub path: PathBuf,
    pub operation: String,
    pub phase: String,
    /// How many files it holds besides `metadata.json`.
    #[serde(rename = "file_count")]
    pub files: usize,
    /// `metadata.revision` of the state it holds.
    pub revision: u64,
}

/// Makes a checkpoint of the state `bytes` (read from `state_path` under the
/// `state` lock, which the caller holds until this returns).
pub fn create(cfg: &Config, state_path: &Path, bytes: &[u8], req: &Request<'_>) -> Result<Created> {
    let user_meta = req.check()?;
    let operation = req.operation;
    let doc = store::parse_state(bytes, state_path).map_err(|e| {
        e.hint("a checkpoint of an unreadable state is useless: run 'state-manager recover' first")
    })?;
    let phase = req
        .phase
        .map(str::to_owned)
        .unwrap_or_else(|| doc["phase"].as_str().unwrap_or_default().to_owned());

    let dir = cfg.checkpoints_dir();
    crate::state::backup::ensure_own_dir(&dir, &cfg.root)?;
    remove_leftovers(&dir);
    let stamp = Utc::now().format("%Y%m%d-%H%M%SZ");
    let first = next_seq(cfg)?;
    let tmp = dir.join(format!(
        "{MAKING}{stamp}-{operation}-{}",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&tmp);
    crate::debug::log(|| format!("checkpoint: building {}", tmp.display()));
    make_dir(&tmp)?;
    let result = (|| {
        let mut files = BTreeMap::new();
        durable::replace(&tmp.join(STATE), bytes, Durability::Durable)?;
        files.insert(STATE.to_string(), sha256_hex(bytes));
        let mut present = Vec::new();
        for (name, live) in folders(cfg) {
            if copy_folder(&live, &tmp.join(name), name, &cfg.root, &mut files)? {
                present.push(name.to_string());
            }
        }
        let mut meta = Metadata {
            id: String::new(),
            operation: operation.to_string(),
            phase,
            timestamp: crate::audit::event::now_rfc3339_micros(),
            pid: std::process::id(),
            hostname: crate::audit::event::hostname(),
            metadata: user_meta,
            revision: crate::state::document::revision(&doc),
            folders: present,
            files,
        };
        for seq in first..first.saturating_add(10_000) {
            let id = format!("checkpoint-{stamp}-{seq:06}-{operation}");
            let dest = dir.join(&id);
            if fs::symlink_metadata(&dest).is_ok() {
                continue;
            }
            meta.id = id.clone();
            let mut text = serde_json::to_vec_pretty(&meta).expect("metadata serializes");
            text.push(b'\n');
            durable::replace(&tmp.join(METADATA), &text, Durability::Durable)?;
            sync_tree(&tmp)?;
            match rename_noreplace(&tmp, &dest) {
                Ok(()) => {
                    durable::sync_dir(&dir)?;
                    crate::debug::log(|| {
                        format!(
                            "checkpoint {id}: {} file(s) at {}",
                            meta.files.len(),
                            dest.display()
                        )
                    });
                    return Ok(Created {
                        id,
                        path: dest,
                        operation: meta.operation,
                        phase: meta.phase,
                        files: meta.files.len(),
                        revision: meta.revision,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io(e, "cannot rename checkpoint into place", &dest)),
            }
        }
        Err(Error::general("too many checkpoints with one sequence number").with_path(&dir))
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result
}

/// Makes a copy of checkpoint `v` (from another backend) under its own id
/// and metadata, built aside and renamed into place as [`create`] does.
/// Exit 1 when a checkpoint of that id exists already.
pub fn adopt(cfg: &Config, v: &Verified) -> Result<Created> {
    let dir = cfg.checkpoints_dir();
    crate::state::backup::ensure_own_dir(&dir, &cfg.root)?;
    validate_operation(&v.meta.operation)?;
    if parse_name(&v.meta.id).is_none() {
        return Err(Error::validation(format!(
            "'{}' is not a checkpoint id",
            v.meta.id
        )));
    }
    let dest = dir.join(&v.meta.id);
    let tmp = dir.join(format!("{MAKING}adopt-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    make_dir(&tmp)?;
    let result = (|| {
        for (rel, bytes) in &v.files {
            if !is_plain_relative(rel) {
                return Err(corrupt(
                    &tmp,
                    format!("a path outside the checkpoint: {rel:?}"),
                ));
            }
            let path = tmp.join(rel);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(|e| Error::io(e, "cannot create", parent))?;
            }
            durable::replace(&path, bytes, Durability::Durable)?;
        }
        let mut text = serde_json::to_vec_pretty(&v.meta).expect("metadata serializes");
        text.push(b'\n');
        durable::replace(&tmp.join(METADATA), &text, Durability::Durable)?;
        sync_tree(&tmp)?;
        rename_noreplace(&tmp, &dest).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                Error::general(format!("checkpoint {} exists already", v.meta.id)).with_path(&dest)
            } else {
                Error::io(e, "cannot rename checkpoint into place", &dest)
            }
        })?;
        durable::sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result?;
    Ok(Created {
        id: v.meta.id.clone(),
        path: dest,
        operation: v.meta.operation.clone(),
        phase: v.meta.phase.clone(),
        files: v.meta.files.len(),
        revision: v.meta.revision,
    })
}

/// Replaces the hint of a bad-JSON error (not of an over-size one).
pub fn json_hint(e: Error, hint: &str) -> Error {
    if e.kind() == crate::error::Kind::Validation {
        e.hint(hint)
    } else {
        e
    }
}

/// Creates a private folder.
pub fn make_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(e, "cannot create folder", dir))
}

/// rename(2) that refuses to replace an existing target (an empty folder
/// would otherwise be replaced silently).
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        // A filesystem without renameat2 flags: the folder names are unique
        // per second and suffix, and the caller checked the target is free.
        Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => fs::rename(from, to),
        Err(e) => Err(e.into()),
    }
}

/// fsyncs every folder of a tree, deepest first, so the entries of freshly
/// made subfolders are durable before the tree is renamed into place.
pub fn sync_tree(root: &Path) -> Result<()> {
    let mut dirs: Vec<PathBuf> = walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_dir())
        .map(|e| e.into_path())
        .collect();
    dirs.reverse();
    for d in dirs {
        durable::sync_dir(&d)?;
    }
    Ok(())
}

/// Copies the live folder `live` into `dest`, adding each file's checksum to
/// `files` under `name/`. `false` when there is no such folder. Symlinks
/// inside are skipped with a warning; a folder that is a symlink out of the
/// root is refused (exit 6).
fn copy_folder(
    live: &Path,
    dest: &Path,
    name: &str,
    root: &Path,
    files: &mut BTreeMap<String, String>,
) -> Result<bool> {
    match fs::symlink_metadata(live) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(e, "cannot inspect", live)),
        Ok(_) => {}
    }
    durable::check_not_escaping(live, root)?;
    if !live.is_dir() {
        return Err(Error::general("expected a folder but found a file")
            .with_path(live)
            .hint("move that file away, then checkpoint again"));
    }
    make_dir(dest)?;
    for entry in walkdir::WalkDir::new(live).min_depth(1).sort_by_file_name() {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(live).to_path_buf();
            match e.into_io_error() {
                Some(io) => Error::io(io, "cannot read folder", path),
                None => Error::general("cannot read folder").with_path(path),
            }
        })?;
        let rel = entry
            .path()
            .strip_prefix(live)
            .expect("walkdir yields paths below its root");
        let Some(rel_text) = rel.to_str() else {
            eprintln!(
                "{TOOL}: warning: skipped {} (its name is not UTF-8)",
                entry.path().display()
            );
            continue;
        };
        let ft = entry.file_type();
        if ft.is_dir() {
            make_dir(&dest.join(rel))?;
        } else if ft.is_file() {
            let bytes = durable::read_limited(entry.path(), MAX_INPUT_BYTES)?;
            durable::replace(&dest.join(rel), &bytes, Durability::Durable)?;
            files.insert(format!("{name}/{rel_text}"), sha256_hex(&bytes));
        } else {
            eprintln!(
                "{TOOL}: warning: skipped {} (not a regular file)",
                entry.path().display()
            );
        }
    }
    Ok(true)
}

/// The temp name prefix of a checkpoint being made.
const MAKING: &str = ".tmp-checkpoint-";
/// The temp name prefix of a checkpoint being removed.
const REMOVING: &str = ".removing-checkpoint-";

/// Removes temp folders of killed checkpoints and of interrupted removals
/// ([`remove_leftover`]). Call under the `state` lock.
pub fn remove_leftovers(dir: &Path) -> Vec<PathBuf> {
    leftovers(dir)
        .into_iter()
        .filter(|p| remove_leftover(p).unwrap_or(false))
        .collect()
}

/// Temp folders in `dir` of checkpoints being made or removed (or killed
/// while being so): never a checkpoint, and never another state file's
/// subfolder, whose name is not one of these.
pub fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with(MAKING) || name.starts_with(REMOVING)
        })
        .map(|e| e.path())
        .collect()
}

/// What a checkpoint's name says: the same two forms as a backup's.
use crate::state::backup::Parsed;

/// Reads `checkpoint-YYYYMMDD-HHMMSSZ-SEQ-OPERATION` or an earlier version's
/// `checkpoint-YYYYMMDD-HHMMSS-OPERATION[.N]`; `None` for any other name.
fn parse_name(name: &str) -> Option<Parsed> {
    let rest = name.strip_prefix("checkpoint-")?;
    let b = rest.as_bytes();
    if b.len() < 17 || b[8] != b'-' {
        return None;
    }
    let made = chrono::NaiveDateTime::parse_from_str(&rest[..15], "%Y%m%d-%H%M%S").ok()?;
    if b[15] == b'Z' {
        let (seq, op) = rest[16..].strip_prefix('-')?.split_once('-')?;
        if seq.is_empty() || !seq.bytes().all(|c| c.is_ascii_digit()) || op.is_empty() {
            return None;
        }
        return Some(Parsed::Seq {
            made: made.and_utc(),
            seq: seq.parse().ok()?,
        });
    }
    if b[15] != b'-' {
        return None;
    }
    let suffix = rest
        .rsplit_once('.')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0);
    Some(Parsed::Legacy { made, suffix })
}

/// One above the highest SEQ among the checkpoints (1 when there is none).
/// Call under the `state` lock.
fn next_seq(cfg: &Config) -> Result<u64> {
    Ok(list(cfg)?
        .iter()
        .filter_map(|c| match c.order {
            Order::Seq(n) => Some(n),
            Order::Legacy { .. } => None,
        })
        .max()
        .map_or(1, |n| n.saturating_add(1)))
}

/// Every checkpoint, newest first (see the module docs for the order).
/// Folders that do not look like checkpoints — temp folders, another state
/// file's subfolder — are ignored.
pub fn list(cfg: &Config) -> Result<Vec<Checkpoint>> {
    let dir = cfg.checkpoints_dir();
    crate::debug::log(|| format!("checkpoints: listing {}", dir.display()));
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(e, "cannot list checkpoints", &dir)),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let id = entry.file_name().to_string_lossy().into_owned();
        let Some(parsed) = parse_name(&id) else {
            continue;
        };
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        let meta = read_metadata(&path).ok();
        let (made, order) = match parsed {
            Parsed::Seq { made, seq } => (made, Order::Seq(seq)),
            Parsed::Legacy { made, suffix } => {
                // The name is the writer's local time, of which this
                // process's zone is the best guess (good enough for an age
                // in days); the order follows the metadata's UTC timestamp.
                let made = chrono::Local
                    .from_local_datetime(&made)
                    .earliest()
                    .map_or_else(|| made.and_utc(), |t| t.to_utc());
                let stamped = meta
                    .as_ref()
                    .and_then(|m| DateTime::parse_from_rfc3339(&m.timestamp).ok())
                    .map_or(made, |t| t.to_utc());
                (
                    made,
                    Order::Legacy {
                        made: stamped,
                        suffix,
                    },
                )
            }
        };
        out.push(Checkpoint {
            id,
            path,
            made,
            order,
            meta,
        });
    }
    out.sort_by(|a, b| (b.order, &b.id).cmp(&(a.order, &a.id)));
    Ok(out)
}

/// Finds checkpoint `id`, or the newest for `latest`/none; exit 1 naming
/// `error-recovery list` when there is no such checkpoint.
pub fn find(cfg: &Config, id: Option<&str>) -> Result<Checkpoint> {
    let all = list(cfg)?;
    match id {
        None | Some("latest") => all.into_iter().next().ok_or_else(|| {
            Error::general("no checkpoint to restore")
                .with_path(cfg.checkpoints_dir())
                .hint("make one with 'error-recovery checkpoint OPERATION'")
        }),
        Some(id) => all.into_iter().find(|c| c.id == id).ok_or_else(|| {
            Error::general(format!("no checkpoint '{}'", id.escape_debug()))
                .with_path(cfg.checkpoints_dir())
                .hint("see 'error-recovery list' for the checkpoints there are")
        }),
    }
}

fn read_metadata(dir: &Path) -> Result<Metadata> {
    let path = dir.join(METADATA);
    let bytes = match durable::read_limited(&path, MAX_INPUT_BYTES) {
        Ok(b) => b,
        Err(e) if e.io_kind() == Some(io::ErrorKind::NotFound) => {
            return Err(corrupt(dir, "it has no metadata.json"));
        }
        Err(e) => return Err(e),
    };
    serde_json::from_slice(&bytes)
        .map_err(|e| corrupt(dir, format!("metadata.json does not parse: {e}")))
}

fn corrupt(dir: &Path, why: impl std::fmt::Display) -> Error {
    Error::corruption("checkpoint failed verification")
        .with_path(dir)
        .because(why)
        .hint("restore another checkpoint (see 'error-recovery list'); nothing was changed")
}

/// Whether a path from `metadata.json` stays inside the checkpoint.
fn is_plain_relative(rel: &str) -> bool {
    let p = Path::new(rel);
    !rel.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Reads a checkpoint and checks every file against its checksum: a changed,
/// missing or unlisted file, or an unparseable `metadata.json` or
/// `state.json`, is exit 3. What is returned is exactly what was checked.
pub fn verify(cp: &Checkpoint) -> Result<Verified> {
    let dir = &cp.path;
    let meta = read_metadata(dir)?;
    if let Some(bad) = meta.files.keys().find(|k| !is_plain_relative(k)) {
        return Err(corrupt(
            dir,
            format!("metadata.json lists a path outside the checkpoint: {bad:?}"),
        ));
    }
    if !meta.files.contains_key(STATE) {
        return Err(corrupt(dir, "metadata.json does not list state.json"));
    }
    let mut files = BTreeMap::new();
    for entry in walkdir::WalkDir::new(dir).min_depth(1).sort_by_file_name() {
        let entry = entry.map_err(|e| corrupt(dir, e))?;
        let rel = entry
            .path()
            .strip_prefix(dir)
            .expect("walkdir yields paths below its root");
        let ft = entry.file_type();
        if ft.is_dir() {
            continue;
        }
        let rel_text = rel
            .to_str()
            .ok_or_else(|| corrupt(dir, format!("unlisted file {}", rel.display())))?;
        if rel_text == METADATA {
            continue;
        }
        if !ft.is_file() {
            return Err(corrupt(dir, format!("{rel_text} is not a regular file")));
        }
        let Some(want) = meta.files.get(rel_text) else {
            return Err(corrupt(dir, format!("unlisted file {rel_text}")));
        };
        let bytes = durable::read_limited(entry.path(), MAX_INPUT_BYTES)?;
        if &sha256_hex(&bytes) != want {
            return Err(corrupt(
                dir,
                format!("{rel_text} does not match its checksum"),
            ));
        }
        files.insert(rel_text.to_string(), bytes);
    }
    if let Some(missing) = meta.files.keys().find(|k| !files.contains_key(*k)) {
        return Err(corrupt(dir, format!("{missing} is missing")));
    }
    if let Err(e) = serde_json::from_slice::<Value>(&files[STATE]) {
        return Err(corrupt(dir, format!("state.json does not parse: {e}")));
    }
    Ok(Verified { meta, files })
}

/// What [`inspect`] found of one file that `metadata.json` lists.
#[derive(Debug)]
pub enum Listed {
    /// Its content hashes to the recorded SHA-256.
    Verified,
    /// It does not (both as lowercase hex).
    Mismatch {
        recorded: String,
        actual: String,
    },
    Missing,
    Unreadable(Error),
    /// The listed path is not a plain path inside the checkpoint.
    Outside,
    /// What is recorded for it is not a string.
    NotASum(Value),
}

/// One file `metadata.json` lists: its path inside the checkpoint, its
/// path, and what [`inspect`] found.
pub type ListedFile = (String, PathBuf, Listed);

/// What [`inspect`] found of `metadata.json`.
#[derive(Debug)]
pub enum MetaFile {
    /// It parses as JSON (not necessarily as [`Metadata`]).
    Parsed(Value),
    Missing,
    /// It does not parse: why.
    Unparsed(String),
    Unreadable(Error),
}

/// A checkpoint folder checked file by file, reporting every problem rather
/// than stopping at the first as [`verify`] does (for `verify-integrity`).
/// The checksum rule is [`verify`]'s: the recorded value is the SHA-256 as
/// lowercase hex, nothing else.
#[derive(Debug)]
pub struct Inspection {
    pub metadata_path: PathBuf,
    pub metadata: MetaFile,
    /// `state.json` of the checkpoint, and whether it is there.
    pub state_path: PathBuf,
    pub has_state: bool,
    /// The files `metadata.json` lists, by path inside the checkpoint, with
    /// what was found; `Err(value)` when `files` is not an object, `None`
    /// when metadata.json has no `files` (or does not parse).
    pub files: Option<std::result::Result<Vec<ListedFile>, Value>>,
}

/// Checks checkpoint folder `dir` file by file (see [`Inspection`]).
pub fn inspect(dir: &Path) -> Inspection {
    let metadata_path = dir.join(METADATA);
    let metadata = match durable::read_limited(&metadata_path, MAX_INPUT_BYTES) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(v) => MetaFile::Parsed(v),
            Err(e) => MetaFile::Unparsed(e.to_string()),
        },
        Err(e) if e.io_kind() == Some(io::ErrorKind::NotFound) => MetaFile::Missing,
        Err(e) => MetaFile::Unreadable(e),
    };
    let state_path = dir.join(STATE);
    let files = match &metadata {
        MetaFile::Parsed(m) => match m.get("files") {
            Some(Value::Object(files)) => Some(Ok(files
                .iter()
                .map(|(rel, sum)| (rel.clone(), dir.join(rel), check_listed(dir, rel, sum)))
                .collect())),
            Some(other) => Some(Err(other.clone())),
            None => None,
        },
        _ => None,
    };
    Inspection {
        metadata_path,
        metadata,
        has_state: state_path.exists(),
        state_path,
        files,
    }
}

fn check_listed(dir: &Path, rel: &str, sum: &Value) -> Listed {
    if !is_plain_relative(rel) {
        return Listed::Outside;
    }
    let Some(recorded) = sum.as_str() else {
        return Listed::NotASum(sum.clone());
    };
    match durable::read_limited(&dir.join(rel), MAX_INPUT_BYTES) {
        Ok(bytes) => {
            let actual = sha256_hex(&bytes);
            if actual == recorded {
                Listed::Verified
            } else {
                Listed::Mismatch {
                    recorded: recorded.to_string(),
                    actual,
                }
            }
        }
        Err(e) if e.io_kind() == Some(io::ErrorKind::NotFound) => Listed::Missing,
        Err(e) => Listed::Unreadable(e),
    }
}

/// Total size of a checkpoint's files in bytes.
pub fn size_of(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// One row of `list`: a checkpoint, what its metadata says, whether it verifies.
#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    pub id: String,
    pub operation: Option<String>,
    pub phase: Option<String>,
    /// `metadata.json`'s timestamp.
    pub timestamp: Option<String>,
    /// When it was made (RFC 3339, UTC, seconds).
    pub made: String,
    pub revision: Option<u64>,
    /// How many files its metadata lists.
    #[serde(rename = "file_count")]
    pub files: Option<usize>,
    /// Total size of its files in bytes.
    pub size: u64,
    /// The caller's METADATA_JSON.
    pub metadata: Option<Value>,
    /// Every checksum matches.
    pub valid: bool,
    pub path: PathBuf,
}

impl Entry {
    /// The listing of checkpoint `c`, whose files take `size` bytes.
    pub fn of(c: Checkpoint, size: u64, valid: bool) -> Entry {
        let m = c.meta.as_ref();
        Entry {
            operation: m.map(|m| m.operation.clone()),
            phase: m.map(|m| m.phase.clone()),
            timestamp: m.map(|m| m.timestamp.clone()),
            made: c.made.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            revision: m.map(|m| m.revision),
            files: m.map(|m| m.files.len()),
            size,
            metadata: m.map(|m| m.metadata.clone()),
            valid,
            id: c.id,
            path: c.path,
        }
    }
}

/// Every checkpoint, newest first, each verified; one removed while it was
/// being read is gone, not invalid.
pub fn entries(cfg: &Config) -> Result<Vec<Entry>> {
    Ok(list(cfg)?
        .into_iter()
        .filter_map(|c| {
            let valid = verify(&c).is_ok();
            (valid || c.path.exists()).then(|| {
                let size = size_of(&c.path);
                Entry::of(c, size, valid)
            })
        })
        .collect())
}

/// What `cleanup` removes (or would remove).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Cleaned {
    /// The ids of the checkpoints removed (`removed` in JSON: `checkpoints`
    /// is an object in `status`).
    #[serde(rename = "removed")]
    pub checkpoints: Vec<String>,
    /// Temp folders of killed checkpoints (and, from `cleanup`, restores).
    pub temps: Vec<PathBuf>,
}

/// Removes checkpoint `cp`: renames it aside to a temp name (fsynced), then
/// deletes it, so a kill part-way never leaves a half-deleted checkpoint
/// under a checkpoint's name (the next sweep removes the rest). `Ok(false)`
/// when it was already gone. Call under the `state` lock.
pub fn remove(cp: &Checkpoint) -> Result<bool> {
    remove_aside(&cp.path, &cp.id["checkpoint-".len()..])
}

/// Removes a leftover temp folder of [`leftovers`] by the same rule as
/// [`remove`] (renamed aside first, unless it already is), and never one
/// whose checkpoint is still being written ([`in_progress`]: `Ok(false)`).
pub fn remove_leftover(path: &Path) -> Result<bool> {
    if in_progress(path) {
        return Ok(false);
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.strip_prefix(MAKING) {
        Some(stem) => remove_aside(path, stem),
        None => match fs::remove_dir_all(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(e, "cannot remove folder", path)),
        },
    }
}

/// Whether leftover `path` (`…-PID`) belongs to a checkpoint that another
/// running process is still making or removing. Without the `state` lock
/// that is how one being written is told apart from one that was killed.
pub fn in_progress(path: &Path) -> bool {
    let pid = path.file_name().and_then(|n| {
        n.to_string_lossy()
            .rsplit_once('-')
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
    });
    pid.is_some_and(|pid| {
        pid != std::process::id()
            && rustix::process::Pid::from_raw(pid as i32).is_some_and(|p| {
                !matches!(
                    rustix::process::test_kill_process(p),
                    Err(rustix::io::Errno::SRCH)
                )
            })
    })
}

/// Renames `path` aside to `.removing-checkpoint-STEM-PID` (fsynced), then
/// deletes it; `Ok(false)` when it was gone already.
fn remove_aside(path: &Path, stem: &str) -> Result<bool> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let aside = dir.join(format!("{REMOVING}{stem}-{}", std::process::id()));
    crate::debug::log(|| format!("removing {} (aside as {})", path.display(), aside.display()));
    let _ = fs::remove_dir_all(&aside);
    match rename_noreplace(path, &aside) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(e, "cannot remove checkpoint", path)),
    }
    durable::sync_dir(dir)?;
    match fs::remove_dir_all(&aside) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(Error::io(e, "cannot remove checkpoint", &aside)
            .hint("it was renamed aside: 'error-recovery cleanup' removes the rest")),
    }
}

/// Whether checkpoint `cp` is older than `max_age` (a time in the future is not).
pub fn older_than(cp: &Checkpoint, max_age: Duration) -> bool {
    crate::state::backup::age_of(cp.made) > max_age
}

/// Removes checkpoints older than `max_age` except the newest `keep`, and the
/// temp folders of killed checkpoints ([`remove_leftover`]'s rule). Call
/// under the `state` lock.
pub fn prune(cfg: &Config, max_age: Duration, keep: usize, dry_run: bool) -> Result<Cleaned> {
    let mut cleaned = Cleaned::default();
    for (i, c) in list(cfg)?.into_iter().enumerate() {
        if i < keep || !older_than(&c, max_age) {
            continue;
        }
        if !dry_run && !remove(&c)? {
            continue;
        }
        cleaned.checkpoints.push(c.id);
    }
    for t in leftovers(&cfg.checkpoints_dir()) {
        if in_progress(&t) {
            continue;
        }
        if dry_run || remove_leftover(&t).unwrap_or(false) {
            cleaned.temps.push(t);
        }
    }
    if !dry_run && !cleaned.checkpoints.is_empty() {
        durable::sync_dir(&cfg.checkpoints_dir())?;
    }
    Ok(cleaned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::Code;

    #[test]
    fn operations_follow_lock_name_rules() {
        for ok in ["deploy", "a.b_c-1", &"x".repeat(128)] {
            assert!(validate_operation(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".x", "a/b", "a b", "..", "é", &"x".repeat(129)] {
            assert_eq!(
                validate_operation(bad).unwrap_err().code(),
                Code::ValidationFailed,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn names_carry_their_time_and_sequence() {
        let t = chrono::NaiveDateTime::parse_from_str("20261123-143000", "%Y%m%d-%H%M%S").unwrap();
        assert_eq!(
            parse_name("checkpoint-20261123-143000Z-000010-deploy-2"),
            Some(Parsed::Seq {
                made: t.and_utc(),
                seq: 10
            })
        );
        assert_eq!(
            parse_name("checkpoint-20261123-143000-deploy"),
            Some(Parsed::Legacy { made: t, suffix: 0 })
        );
        assert_eq!(
            parse_name("checkpoint-20261123-143000-deploy.12"),
            Some(Parsed::Legacy {
                made: t,
                suffix: 12
            })
        );
        assert!(parse_name("checkpoint-2026-deploy").is_none());
        assert!(parse_name("checkpoint-20261123-143000Z-x-deploy").is_none());
        assert!(parse_name("checkpoint-20261123-143000Z-7").is_none());
        assert!(parse_name(".tmp-checkpoint-20261123-143000Z-x-1").is_none());
        assert!(parse_name("build.json").is_none());
        assert!(Order::Seq(10) > Order::Seq(9));
        assert!(
            Order::Seq(1)
                > Order::Legacy {
                    made: Utc::now() + chrono::Duration::days(1),
                    suffix: 9
                }
        );
    }

    #[test]
    fn paths_must_stay_inside() {
        assert!(is_plain_relative("signals/A.json"));
        assert!(!is_plain_relative("../x"));
        assert!(!is_plain_relative("/etc/passwd"));
        assert!(!is_plain_relative("a/../../b"));
        assert!(!is_plain_relative(""));
    }

    #[test]
    fn sha256_is_hex() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn leftovers_of_a_running_writer_are_kept_and_others_removed_aside() {
        let dir = tempfile::tempdir().unwrap();
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let live = dir
            .path()
            .join(format!("{MAKING}20260101-000000Z-x-{}", sleeper.id()));
        let dead = dir
            .path()
            .join(format!("{MAKING}20260101-000000Z-y-999999"));
        let aside = dir
            .path()
            .join(format!("{REMOVING}20260101-000000Z-z-999998"));
        for d in [&live, &dead, &aside] {
            fs::create_dir_all(d.join("signals")).unwrap();
            fs::write(d.join("state.json"), "{}").unwrap();
        }
        assert!(in_progress(&live) && !in_progress(&dead));
        let mut removed = remove_leftovers(dir.path());
        removed.sort();
        let mut want = vec![dead.clone(), aside.clone()];
        want.sort();
        assert_eq!(removed, want);
        assert!(live.is_dir() && !dead.exists() && !aside.exists());
        assert_eq!(leftovers(dir.path()), vec![live.clone()]);
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
        assert!(remove_leftover(&live).unwrap());
        assert!(fs::read_dir(dir.path()).unwrap().next().is_none());
    }

    #[test]
    fn inspection_reports_every_listed_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("state.json"), "{}").unwrap();
        fs::create_dir(d.join("signals")).unwrap();
        fs::write(d.join("signals/A.json"), "changed").unwrap();
        let meta = json!({"files": {
            "state.json": sha256_hex(b"{}"),
            "signals/A.json": sha256_hex(b"original"),
            "signals/gone.json": sha256_hex(b""),
            "../x": sha256_hex(b""),
            "config/n": 7,
        }});
        fs::write(d.join(METADATA), meta.to_string()).unwrap();
        let found = inspect(d);
        assert!(found.has_state && matches!(found.metadata, MetaFile::Parsed(_)));
        let files = found.files.unwrap().unwrap();
        let by = |rel: &str| &files.iter().find(|(r, _, _)| r == rel).unwrap().2;
        assert!(matches!(by("state.json"), Listed::Verified));
        assert!(matches!(by("signals/A.json"), Listed::Mismatch { .. }));
        assert!(matches!(by("signals/gone.json"), Listed::Missing));
        assert!(matches!(by("../x"), Listed::Outside));
        assert!(matches!(by("config/n"), Listed::NotASum(_)));
        fs::write(d.join(METADATA), "{").unwrap();
        assert!(matches!(inspect(d).metadata, MetaFile::Unparsed(_)));
        fs::remove_file(d.join(METADATA)).unwrap();
        assert!(matches!(inspect(d).metadata, MetaFile::Missing));
    }
}
