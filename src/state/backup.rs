//! Backups of the state: `.state-backups/state-YYYYMMDD-HHMMSS-REASON.json`.
//!
//! A backup is a hard link to the state file's current inode: files are never
//! changed in place, so the old version stays intact after the state is
//! replaced, and a backup costs one link(2), not a copy. Two backups in one
//! second never overwrite each other: link(2) refuses an existing name and
//! the next free sequence suffix (`...-REASON.1.json`) is taken instead.
//! Newest first means by the time in the name, then by the version's mtime.
//! Retention: the newest `keep` (default 5), none older than `max_age`
//! (default 7 days), both settable by flag and environment.
//!
//! Checksums: a backup holds the exact bytes of a former state file, so it
//! carries that file's own `metadata.checksum` (see [`super::integrity`]);
//! no manifest is needed, and a changed byte is found by checking the
//! backup like the live state.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::durable::{self, Durability};
use crate::error::{Error, Result};

/// How many backups to keep and for how long.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    pub keep: usize,
    pub max_age: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep: 5,
            max_age: Duration::from_secs(7 * 86400),
        }
    }
}

/// One backup file.
#[derive(Clone, Debug)]
pub struct Backup {
    pub path: PathBuf,
    pub name: String,
    /// When the backup was made (from its name).
    pub made: chrono::NaiveDateTime,
    /// When the version it holds was written.
    pub modified: SystemTime,
    pub size: u64,
}

/// Makes a reason safe for a file name: `[A-Za-z0-9_-]`, at most 64 characters.
pub fn sanitize_reason(reason: &str) -> String {
    let s: String = reason
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if s.is_empty() { "manual".into() } else { s }
}

/// Backs up `source` (the state file) with `reason`; `None` when there is no
/// source. Durable: the link is fsynced into the backups folder.
pub fn create(cfg: &Config, source: &Path, reason: &str) -> Result<Option<PathBuf>> {
    if !source.exists() {
        return Ok(None);
    }
    let dir = cfg.backups_dir();
    durable::ensure_dir(&dir, &cfg.root)?;
    let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
    let reason = sanitize_reason(reason);
    for seq in 0..10_000u32 {
        let name = if seq == 0 {
            format!("state-{stamp}-{reason}.json")
        } else {
            format!("state-{stamp}-{reason}.{seq}.json")
        };
        let path = dir.join(&name);
        match fs::hard_link(source, &path) {
            Ok(()) => {
                durable::sync_dir(&dir)?;
                return Ok(Some(path));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            // Another filesystem (a mount inside the root): copy instead.
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) => {
                let bytes = durable::read_limited(source, crate::config::MAX_INPUT_BYTES)?;
                if path.exists() {
                    continue;
                }
                durable::replace(&path, &bytes, Durability::Durable)?;
                return Ok(Some(path));
            }
            Err(e) => return Err(Error::io(e, "cannot create backup", &path)),
        }
    }
    Err(Error::general("too many backups in one second").with_path(&dir))
}

/// Every backup, newest first. Files that do not look like backups, or are
/// not regular files, are ignored.
pub fn list(cfg: &Config) -> Result<Vec<Backup>> {
    let dir = cfg.backups_dir();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(e, "cannot list backups", &dir)),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(made) = time_in_name(&name) else {
            continue;
        };
        // Not followed: a FIFO, device or symlink here is not one of ours, so
        // it is neither read (recover) nor removed (prune).
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        out.push(Backup {
            path: entry.path(),
            name,
            made,
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            size: meta.len(),
        });
    }
    out.sort_by(|a, b| (b.made, b.modified, &b.name).cmp(&(a.made, a.modified, &a.name)));
    Ok(out)
}

/// The backup named `id`: its file name, the name without `.json`, or its
/// path. Exit 1 naming `list-backups` when there is none.
pub fn find(cfg: &Config, id: &str) -> Result<Backup> {
    let wanted = Path::new(id)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    list(cfg)?
        .into_iter()
        .find(|b| b.name == wanted || b.name.strip_suffix(".json") == Some(wanted.as_str()))
        .ok_or_else(|| {
            Error::general(format!("no backup '{id}'"))
                .with_path(cfg.backups_dir())
                .hint("see 'state-manager list-backups' for the names")
        })
}

/// The time a backup was made, from `state-YYYYMMDD-HHMMSS-...json`.
fn time_in_name(name: &str) -> Option<chrono::NaiveDateTime> {
    let rest = name.strip_prefix("state-")?;
    if !name.ends_with(".json") || rest.len() < 16 {
        return None;
    }
    chrono::NaiveDateTime::parse_from_str(&rest[..15], "%Y%m%d-%H%M%S").ok()
}

/// Removes backups beyond the newest `keep` and those older than `max_age`;
/// returns what it removed.
pub fn prune(cfg: &Config, retention: Retention) -> Result<Vec<PathBuf>> {
    let now = chrono::Local::now().naive_local();
    let max_age = chrono::Duration::from_std(retention.max_age).unwrap_or(chrono::Duration::MAX);
    let mut removed = Vec::new();
    for (i, b) in list(cfg)?.into_iter().enumerate() {
        if i >= retention.keep || now.signed_duration_since(b.made) > max_age {
            match fs::remove_file(&b.path) {
                Ok(()) => removed.push(b.path),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(e, "cannot remove old backup", &b.path)),
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_file_name_safe() {
        assert_eq!(sanitize_reason("pre restore/../x"), "pre_restore____x");
        assert_eq!(sanitize_reason(""), "manual");
    }

    #[test]
    fn names_carry_their_time() {
        assert!(time_in_name("state-20261123-143000-set.json").is_some());
        assert!(time_in_name("state-20261123-143000-set.3.json").is_some());
        assert!(time_in_name("notes.txt").is_none());
        assert!(time_in_name("state-2026-set.json").is_none());
    }
}

/// Retention flags, for the binaries that write the state.
#[derive(Clone, Debug, clap::Args)]
pub struct RetentionArgs {
    /// Backups to keep [default: 5]
    #[arg(long, env = "BACKUP_KEEP", value_name = "N")]
    pub keep_backups: Option<usize>,

    /// Remove backups older than this, e.g. 7d, 12h [default: 7d]
    #[arg(long, env = "BACKUP_MAX_AGE", value_name = "DURATION")]
    pub backup_max_age: Option<String>,
}

impl RetentionArgs {
    /// The retention these flags describe.
    pub fn retention(&self) -> Result<Retention> {
        let mut r = Retention::default();
        if let Some(k) = self.keep_backups {
            r.keep = k;
        }
        if let Some(age) = self.backup_max_age.as_deref().filter(|s| !s.is_empty()) {
            r.max_age = crate::config::parse_duration(age)?;
        }
        Ok(r)
    }
}
