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
//! checkpoint's name.
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

use super::{Ctx, TOOL, restore};
use crate::audit::Recorder;
use crate::cmd as cli;
use crate::config::{Config, MAX_INPUT_BYTES};
use crate::durable::{self, Durability};
use crate::error::{Error, Result};
use crate::exit::Code;
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
    let bad = |why: &str| {
        Error::validation(format!("bad checkpoint operation '{}'", op.escape_debug()))
            .because(why)
            .hint("use 1-128 letters, digits, '.', '_' or '-', not starting with '.'")
    };
    if op.is_empty() {
        return Err(bad("it is empty"));
    }
    if op.len() > 128 {
        return Err(bad("it is longer than 128 characters"));
    }
    if op.starts_with('.') {
        return Err(bad("it starts with '.'"));
    }
    if let Some(c) = op
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(bad(&format!("it contains {c:?}")));
    }
    Ok(())
}

/// `checkpoint OPERATION [PHASE] [METADATA_JSON]`: prints the new id.
pub fn create(
    ctx: &Ctx,
    operation: &str,
    phase: Option<&str>,
    metadata: Option<&str>,
) -> Result<Code> {
    let mut rec = Recorder::start(&ctx.cfg, TOOL, "checkpoint", operation);
    let mut detail = json!({ "operation": operation });
    let result = create_inner(ctx, operation, phase, metadata, &mut detail);
    if let Ok(id) = &result {
        rec.set_target(id.as_str());
    }
    rec.finish(&result, detail);
    cli::println(&result?);
    Ok(Code::Success)
}

fn create_inner(
    ctx: &Ctx,
    operation: &str,
    phase: Option<&str>,
    metadata: Option<&str>,
    detail: &mut Value,
) -> Result<String> {
    validate_operation(operation)?;
    let user_meta = match metadata {
        None => json!({}),
        Some(text) => crate::state::commands::parse_json_arg(text, "the checkpoint metadata")
            .map_err(|e| json_hint(e, "pass a JSON value, e.g. '{\"ticket\": \"T-1\"}'"))?,
    };
    let cfg = &ctx.cfg;
    let st = ctx.store()?;
    let owner = ctx.owner_identity()?;
    let txn = st.begin(owner.as_ref())?;
    restore::repair(ctx, &txn, &st)?;
    let bytes = st.load_bytes()?.ok_or_else(|| st.missing())?;
    let doc = store::parse_state(&bytes, st.path()).map_err(|e| {
        e.hint("a checkpoint of an unreadable state is useless: run 'state-manager recover' first")
    })?;
    let phase = phase
        .map(str::to_owned)
        .unwrap_or_else(|| doc["phase"].as_str().unwrap_or_default().to_owned());

    let dir = cfg.checkpoints_dir();
    crate::state::backup::ensure_own_dir(&dir, &cfg.root)?;
    remove_leftovers(&dir);
    let stamp = Utc::now().format("%Y%m%d-%H%M%SZ");
    let first = next_seq(cfg)?;
    let tmp = dir.join(format!(
        ".tmp-checkpoint-{stamp}-{operation}-{}",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&tmp);
    make_dir(&tmp)?;
    let result = (|| {
        let mut files = BTreeMap::new();
        durable::replace(&tmp.join(STATE), &bytes, Durability::Durable)?;
        files.insert(STATE.to_string(), sha256_hex(&bytes));
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
                    detail["phase"] = json!(meta.phase);
                    detail["files"] = json!(meta.files.len());
                    detail["revision"] = json!(meta.revision);
                    return Ok(id);
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

/// Replaces the hint of a bad-JSON error (not of an over-size one).
pub(crate) fn json_hint(e: Error, hint: &str) -> Error {
    if e.kind() == crate::error::Kind::Validation {
        e.hint(hint)
    } else {
        e
    }
}

/// Creates a private folder.
pub(crate) fn make_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(e, "cannot create folder", dir))
}

/// rename(2) that refuses to replace an existing target (an empty folder
/// would otherwise be replaced silently).
pub(crate) fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
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
pub(crate) fn sync_tree(root: &Path) -> Result<()> {
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

/// Removes temp folders of killed checkpoints and of interrupted removals.
/// Call only under the `state` lock, when no checkpoint can be in progress.
pub(crate) fn remove_leftovers(dir: &Path) -> Vec<PathBuf> {
    leftovers(dir)
        .into_iter()
        .filter(|p| fs::remove_dir_all(p).is_ok())
        .collect()
}

/// Temp folders in `dir` of checkpoints being made or removed (or killed
/// while being so): never a checkpoint, and never another state file's
/// subfolder, whose name is not one of these.
pub(crate) fn leftovers(dir: &Path) -> Vec<PathBuf> {
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

/// Total size of a checkpoint's files in bytes.
fn size_of(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// `list [table|json]`: every checkpoint, newest first, with whether it verifies.
pub fn list_cmd(ctx: &Ctx, format: &str) -> Result<Code> {
    ctx.audited(
        "list",
        ctx.cfg.checkpoints_dir().display().to_string(),
        |detail| {
            let as_json = match format {
                "json" => true,
                "table" => false,
                other => {
                    return Err(Error::validation(format!("bad list format '{other}'"))
                        .hint("use 'table' or 'json'"));
                }
            };
            let all = list(&ctx.cfg)?;
            detail["count"] = json!(all.len());
            // A checkpoint removed while it was being read is gone, not invalid.
            let all: Vec<(Checkpoint, bool)> = all
                .into_iter()
                .filter_map(|c| {
                    let valid = verify(&c).is_ok();
                    (valid || c.path.exists()).then_some((c, valid))
                })
                .collect();
            let rows: Vec<Value> = all
                .iter()
                .map(|(c, valid)| {
                    let m = c.meta.as_ref();
                    json!({
                        "id": c.id,
                        "operation": m.map(|m| m.operation.clone()),
                        "phase": m.map(|m| m.phase.clone()),
                        "timestamp": m.map(|m| m.timestamp.clone()),
                        "made": c.made.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        "revision": m.map(|m| m.revision),
                        "files": m.map(|m| m.files.len()),
                        "size": size_of(&c.path),
                        "metadata": m.map(|m| m.metadata.clone()),
                        "valid": valid,
                        "path": c.path.display().to_string(),
                    })
                })
                .collect();
            if as_json {
                cli::print_json(&Value::Array(rows));
                return Ok(Code::Success);
            }
            if rows.is_empty() {
                cli::println(&format!(
                    "no checkpoints in {}",
                    ctx.cfg.checkpoints_dir().display()
                ));
                return Ok(Code::Success);
            }
            let s = |v: &Value| match v {
                Value::String(s) => s.clone(),
                Value::Null => "-".into(),
                other => other.to_string(),
            };
            let width = all
                .iter()
                .map(|(c, _)| c.id.len())
                .max()
                .unwrap_or(2)
                .max(2);
            let pw = rows
                .iter()
                .map(|r| s(&r["phase"]).len())
                .max()
                .unwrap_or(5)
                .max(5);
            let mut out = format!(
                "{:<width$}  {:<pw$}  {:<20}  {:>8}  {:>5}  VALID\n",
                "ID", "PHASE", "MADE", "REVISION", "FILES"
            );
            for ((c, _), r) in all.iter().zip(&rows) {
                out.push_str(&format!(
                    "{:<width$}  {:<pw$}  {:<20}  {:>8}  {:>5}  {}\n",
                    c.id,
                    s(&r["phase"]),
                    c.made.format("%Y-%m-%d %H:%M:%SZ"),
                    s(&r["revision"]),
                    s(&r["files"]),
                    if r["valid"] == json!(true) {
                        "yes"
                    } else {
                        "NO"
                    }
                ));
            }
            cli::print(&out);
            Ok(Code::Success)
        },
    )
}

/// What `cleanup` removes (or would remove).
#[derive(Debug, Default)]
pub struct Cleaned {
    pub checkpoints: Vec<String>,
    pub temps: Vec<PathBuf>,
}

/// Removes checkpoint `cp`: renames it aside to a temp name (fsynced), then
/// deletes it, so a kill part-way never leaves a half-deleted checkpoint
/// under a checkpoint's name (the next sweep removes the rest). `Ok(false)`
/// when it was already gone. Call under the `state` lock.
pub fn remove(cp: &Checkpoint) -> Result<bool> {
    let dir = cp.path.parent().unwrap_or(Path::new("."));
    let mut aside = dir.join(format!("{REMOVING}{}", &cp.id["checkpoint-".len()..]));
    aside
        .as_mut_os_string()
        .push(format!("-{}", std::process::id()));
    let _ = fs::remove_dir_all(&aside);
    match rename_noreplace(&cp.path, &aside) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(e, "cannot remove checkpoint", &cp.path)),
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
/// temp folders of killed checkpoints and restores. Call under the `state` lock.
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
    let mut temps = leftovers(&cfg.checkpoints_dir());
    temps.extend(restore::leftovers(cfg));
    for t in temps {
        if dry_run || fs::remove_dir_all(&t).is_ok() {
            cleaned.temps.push(t);
        }
    }
    if !dry_run && !cleaned.checkpoints.is_empty() {
        durable::sync_dir(&cfg.checkpoints_dir())?;
    }
    Ok(cleaned)
}

/// `cleanup [AGE=7d] [--keep N] [--dry-run]`: AGE is any duration
/// [`crate::config::parse_duration`] reads (a bare number is seconds).
pub fn cleanup(ctx: &Ctx, age: Option<&str>, keep: usize, dry_run: bool) -> Result<Code> {
    ctx.audited(
        "cleanup",
        ctx.cfg.checkpoints_dir().display().to_string(),
        |detail| {
            let max_age = crate::config::parse_duration_named(age.unwrap_or("7d"), "age")?;
            let st = ctx.store()?;
            let owner = ctx.owner_identity()?;
            let txn = st.begin(owner.as_ref())?;
            if !dry_run {
                restore::repair(ctx, &txn, &st)?;
            }
            let cleaned = prune(&ctx.cfg, max_age, keep, dry_run)?;
            drop(txn);
            detail["removed"] = json!(cleaned.checkpoints.len());
            detail["temps"] = json!(cleaned.temps.len());
            detail["dry_run"] = json!(dry_run);
            let verb = if dry_run { "would remove" } else { "removed" };
            let mut out = String::new();
            for id in &cleaned.checkpoints {
                out.push_str(&format!("{verb} {id}\n"));
            }
            for t in &cleaned.temps {
                out.push_str(&format!("{verb} leftover {}\n", t.display()));
            }
            out.push_str(&format!(
                "{verb} {} checkpoint(s) and {} leftover temp folder(s); {} kept\n",
                cleaned.checkpoints.len(),
                cleaned.temps.len(),
                list(&ctx.cfg)?.len()
                    - if dry_run {
                        cleaned.checkpoints.len()
                    } else {
                        0
                    }
            ));
            cli::print(&out);
            Ok(Code::Success)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
