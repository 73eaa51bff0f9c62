//! Backups of the state: `.state-backups/state-YYYYMMDDTHHMMSSZ-SEQ-REASON.json`.
//!
//! A backup is a hard link to the state file's current inode: files are never
//! changed in place, so the old version stays intact after the state is
//! replaced, and a backup costs one link(2), not a copy.
//!
//! **Order.** The time in a name is UTC (the `Z`), for people; the order is
//! SEQ, a number one above the highest SEQ in the folder, taken under a
//! flock(2) of the folder itself, so it only grows whatever the callers'
//! time zones, a DST fall-back hour or a clock step back. "Newest",
//! `recover` and retention follow SEQ compared as a number (`10` after `9`),
//! never the time in the name. Names written by earlier versions
//! (`state-YYYYMMDD-HHMMSS-REASON[.N].json`, local time) are still read;
//! they are older than every SEQ name, and among themselves ordered by the
//! mtime of the version they hold, then N as a number.
//!
//! **One state file's own.** The folder is [`Config::backups_dir`]: a
//! second state file in the same folder has its own and never sees these.
//!
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

use chrono::{DateTime, TimeZone, Utc};

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

/// Where a backup stands among the others: every SEQ name is newer than
/// every name of an earlier version. Compared as numbers, never as text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Order {
    /// `state-YYYYMMDD-HHMMSS-REASON[.N].json` (local time): by the held
    /// version's mtime, then N.
    Legacy { modified: SystemTime, suffix: u64 },
    /// `state-YYYYMMDDTHHMMSSZ-SEQ-REASON.json`: by SEQ.
    Seq(u64),
}

/// One backup file.
#[derive(Clone, Debug)]
pub struct Backup {
    pub path: PathBuf,
    pub name: String,
    /// When the backup was made (from its name).
    pub made: DateTime<Utc>,
    /// When the version it holds was written.
    pub modified: SystemTime,
    pub size: u64,
    /// Its place in the order (newest = greatest).
    pub order: Order,
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

/// Creates `dir` below the state root, and its parent when it is the
/// per-state subfolder `.state-backups/NAME/` or `.checkpoints/NAME/`.
pub(crate) fn ensure_own_dir(dir: &Path, root: &Path) -> Result<()> {
    if let Some(parent) = dir.parent()
        && parent != root
        && !parent.as_os_str().is_empty()
        && parent.file_name().is_some_and(|n| {
            n == crate::config::BACKUPS_FOLDER || n == crate::config::CHECKPOINTS_FOLDER
        })
    {
        durable::ensure_dir(parent, root)?;
    }
    durable::ensure_dir(dir, root)
}

/// Creates this state file's backups folder (see [`Config::backups_dir`]).
pub fn ensure_dir(cfg: &Config) -> Result<PathBuf> {
    let dir = cfg.backups_dir();
    ensure_own_dir(&dir, &cfg.root)?;
    Ok(dir)
}

/// Backs up `source` (the state file) with `reason`; `None` when there is no
/// source. Durable: the link is fsynced into the backups folder.
pub fn create(cfg: &Config, source: &Path, reason: &str) -> Result<Option<PathBuf>> {
    let made = link(cfg, source, reason)?;
    if let Some(p) = &made
        && let Some(dir) = p.parent()
    {
        durable::sync_dir(dir)?;
    }
    Ok(made)
}

/// [`create`] without the fsync of the backups folder: the caller makes
/// the link durable before it depends on it (a commit does, before its
/// rename: [`durable::replace_syncing`]). A copy made across filesystems
/// is durable already.
pub fn link(cfg: &Config, source: &Path, reason: &str) -> Result<Option<PathBuf>> {
    if !source.exists() {
        return Ok(None);
    }
    let dir = ensure_dir(cfg)?;
    // Held while SEQ is chosen and the link made: two writers (a commit and
    // a `backup`, which takes no state lock) never take the same SEQ.
    let guard = fs::File::open(&dir).map_err(|e| Error::io(e, "cannot open backups", &dir))?;
    guard
        .lock()
        .map_err(|e| Error::io(e, "cannot lock backups", &dir))?;
    let stamp = Utc::now().format("%Y%m%dT%H%M%SZ");
    let reason = sanitize_reason(reason);
    let first = next_seq(&dir)?;
    for seq in first..first.saturating_add(10_000) {
        let name = format!("state-{stamp}-{seq:06}-{reason}.json");
        let path = dir.join(&name);
        match fs::hard_link(source, &path) {
            Ok(()) => return Ok(Some(path)),
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
    Err(Error::general("too many backups with one sequence number").with_path(&dir))
}

/// One above the highest SEQ in `dir` (1 when there is none).
fn next_seq(dir: &Path) -> Result<u64> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io(e, "cannot list backups", dir))?;
    Ok(entries
        .flatten()
        .filter_map(|e| match parse_name(&e.file_name().to_string_lossy())? {
            Parsed::Seq { seq, .. } => Some(seq),
            Parsed::Legacy { .. } => None,
        })
        .max()
        .map_or(1, |s| s.saturating_add(1)))
}

/// What a backup's (or a checkpoint's) name says: a UTC time with a
/// sequence number, or an earlier version's local time with a `.N` suffix.
#[derive(Debug, PartialEq)]
pub(crate) enum Parsed {
    Seq {
        made: DateTime<Utc>,
        seq: u64,
    },
    Legacy {
        made: chrono::NaiveDateTime,
        suffix: u64,
    },
}

/// Reads `state-YYYYMMDDTHHMMSSZ-SEQ-REASON.json` or an earlier version's
/// `state-YYYYMMDD-HHMMSS-REASON[.N].json`; `None` for any other name.
fn parse_name(name: &str) -> Option<Parsed> {
    let rest = name.strip_prefix("state-")?.strip_suffix(".json")?;
    if rest.len() > 17 && rest.as_bytes()[8] == b'T' && rest.as_bytes()[15] == b'Z' {
        let made = chrono::NaiveDateTime::parse_from_str(&rest[..15], "%Y%m%dT%H%M%S").ok()?;
        let after = rest[16..].strip_prefix('-')?;
        let (seq, reason) = after.split_once('-')?;
        if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) || reason.is_empty() {
            return None;
        }
        return Some(Parsed::Seq {
            made: made.and_utc(),
            seq: seq.parse().ok()?,
        });
    }
    if rest.len() < 17 || rest.as_bytes()[15] != b'-' {
        return None;
    }
    let made = chrono::NaiveDateTime::parse_from_str(&rest[..15], "%Y%m%d-%H%M%S").ok()?;
    let suffix = rest
        .rsplit_once('.')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0);
    Some(Parsed::Legacy { made, suffix })
}

/// Every backup, newest first (see the module docs for the order). Files
/// that do not look like backups, or are not regular files, are ignored.
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
        let Some(parsed) = parse_name(&name) else {
            continue;
        };
        // Not followed: a FIFO, device or symlink here is not one of ours, so
        // it is neither read (recover) nor removed (prune).
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let (made, order) = match parsed {
            Parsed::Seq { made, seq } => (made, Order::Seq(seq)),
            Parsed::Legacy { made, suffix } => (
                // The writer's local time: this process's zone is the best guess.
                chrono::Local
                    .from_local_datetime(&made)
                    .earliest()
                    .map_or_else(|| DateTime::<Utc>::from(modified), |t| t.to_utc()),
                Order::Legacy { modified, suffix },
            ),
        };
        out.push(Backup {
            path: entry.path(),
            name,
            made,
            modified,
            size: meta.len(),
            order,
        });
    }
    out.sort_by(|a, b| (b.order, &b.name).cmp(&(a.order, &a.name)));
    Ok(out)
}

/// The backup named `id`: its file name, the name without `.json`, or its
/// path. Exit 1 naming `list-backups` when there is none.
pub fn find(cfg: &Config, id: &str) -> Result<Backup> {
    find_in(list(cfg)?, id).map_err(|e| e.with_path(cfg.backups_dir()))
}

/// Backup `id` (its name, with or without `.json`, or a path ending in it)
/// among `backups`; exit 1 when none is.
pub fn find_in(backups: Vec<Backup>, id: &str) -> Result<Backup> {
    let wanted = Path::new(id)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    backups
        .into_iter()
        .find(|b| b.name == wanted || b.name.strip_suffix(".json") == Some(wanted.as_str()))
        .ok_or_else(|| {
            Error::general(format!("no backup '{id}'"))
                .hint("see 'state-manager list-backups' for the names")
        })
}

/// How long ago `made` was (zero for a time in the future), without overflow.
pub fn age_of(made: DateTime<Utc>) -> Duration {
    Utc::now()
        .signed_duration_since(made)
        .to_std()
        .unwrap_or(Duration::ZERO)
}

/// Removes backups beyond the newest `keep` and those older than `max_age`;
/// returns what it removed.
pub fn prune(cfg: &Config, retention: Retention) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for (i, b) in list(cfg)?.into_iter().enumerate() {
        if i >= retention.keep || age_of(b.made) > retention.max_age {
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
    fn names_carry_their_time_and_sequence() {
        let t = |s| chrono::NaiveDateTime::parse_from_str(s, "%Y%m%d-%H%M%S").unwrap();
        assert_eq!(
            parse_name("state-20261123T143000Z-000012-set.json"),
            Some(Parsed::Seq {
                made: t("20261123-143000").and_utc(),
                seq: 12
            })
        );
        assert_eq!(
            parse_name("state-20261123T143000Z-1234567-pre-restore.json"),
            Some(Parsed::Seq {
                made: t("20261123-143000").and_utc(),
                seq: 1_234_567
            })
        );
        assert_eq!(
            parse_name("state-20261123-143000-set.json"),
            Some(Parsed::Legacy {
                made: t("20261123-143000"),
                suffix: 0
            })
        );
        assert_eq!(
            parse_name("state-20261123-143000-set.10.json"),
            Some(Parsed::Legacy {
                made: t("20261123-143000"),
                suffix: 10
            })
        );
        assert!(parse_name("notes.txt").is_none());
        assert!(parse_name("state-2026-set.json").is_none());
        assert!(parse_name("state-20261123T143000Z--set.json").is_none());
        assert!(parse_name("state-20261123T143000Z-12.json").is_none());
    }

    #[test]
    fn sequence_numbers_order_as_numbers_and_above_earlier_names() {
        let legacy = Order::Legacy {
            modified: SystemTime::now() + Duration::from_secs(86400),
            suffix: 99,
        };
        assert!(Order::Seq(10) > Order::Seq(9));
        assert!(Order::Seq(1) > legacy);
        let a = Order::Legacy {
            modified: SystemTime::UNIX_EPOCH,
            suffix: 10,
        };
        let b = Order::Legacy {
            modified: SystemTime::UNIX_EPOCH,
            suffix: 2,
        };
        assert!(a > b);
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
            r.max_age = crate::config::parse_duration(age, "backup max age (BACKUP_MAX_AGE)")?;
        }
        Ok(r)
    }
}
