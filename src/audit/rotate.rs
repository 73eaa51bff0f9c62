//! Rotation of the audit log: at `AUDIT_MAX_BYTES` (default 64 MiB) the log
//! is renamed to `LOG.1`, the older files shift to `.2` … `.5`, and the
//! oldest beyond five is dropped.
//!
//! Guarantees, with any number of concurrent writers:
//!
//! - The log is rotated once per crossing, never twice: a writer that sees
//!   the file it wrote to (by fstat of its own fd) at or over the limit takes
//!   an flock of the companion `LOG.rotate` and rotates only if the path
//!   still names the very inode it wrote to. A second writer that saw the
//!   same crossing finds a new inode (or none) under the lock and does
//!   nothing.
//! - No event is lost to rotation: a writer that opened the log just before
//!   the rename appends into what became `LOG.1`, which every review command
//!   reads ([`log_files`]).
//!
//! Not guaranteed: an event written by a writer that held the old fd across
//! five further rotations lands in a dropped file; a review that runs during
//! a rotation may miss one file's events (run it again).

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// How many rotated files are kept (`LOG.1` … `LOG.5`).
pub const KEEP: usize = 5;
/// The size at which the log rotates when `AUDIT_MAX_BYTES` is not set (64 MiB).
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// The rotation threshold: `AUDIT_MAX_BYTES` (bytes; `0` turns rotation off), else 64 MiB.
pub fn max_bytes() -> u64 {
    std::env::var("AUDIT_MAX_BYTES")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_MAX_BYTES)
}

/// `LOG.n`, the n-th rotated file (1 = newest).
pub fn rotated(log: &Path, n: usize) -> PathBuf {
    let mut s = log.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// `LOG.rotate`, the lock file that serializes rotations.
pub fn lock_path(log: &Path) -> PathBuf {
    let mut s = log.as_os_str().to_owned();
    s.push(".rotate");
    PathBuf::from(s)
}

/// Rotates `log` if `written` (the fd just appended to) is at or over `max`
/// bytes and `log` still names it. Returns whether this call rotated.
pub fn after_append(log: &Path, written: &File, max: u64) -> std::io::Result<bool> {
    if max == 0 {
        return Ok(false);
    }
    let ours = written.metadata()?;
    if ours.len() < max {
        return Ok(false);
    }
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(lock_path(log))?;
    // Held until `lock` drops at the end of this function, on every path.
    lock.lock()?;
    // Re-check under the lock: another writer may have rotated our inode away.
    // Followed: a log that is a symlink (inside its folder) names its target's
    // inode; rotating renames the link, and the next writer starts a new log.
    let now = match fs::metadata(log) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if now.ino() != ours.ino() || now.dev() != ours.dev() {
        return Ok(false);
    }
    for n in (1..KEEP).rev() {
        match fs::rename(rotated(log, n), rotated(log, n + 1)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    fs::rename(log, rotated(log, 1))?;
    Ok(true)
}

/// The log's files, oldest first: `LOG.5` … `LOG.1`, then `LOG`; only those that exist.
pub fn log_files(log: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..=KEEP).rev().map(|n| rotated(log, n)).collect();
    files.push(log.to_path_buf());
    files.retain(|p| p.exists());
    files
}

/// Opens the log's files, oldest first, skipping a file seen twice (a
/// rotation between two opens). Opening newest first means a concurrent
/// rotation can make us miss a file, never read one twice.
pub fn open_log_files(log: &Path) -> Vec<(PathBuf, File)> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    let mut paths: Vec<PathBuf> = vec![log.to_path_buf()];
    paths.extend((1..=KEEP).map(|n| rotated(log, n)));
    for p in paths {
        // Regular files only, never blocking (a FIFO planted as LOG.2 is skipped).
        if let Ok(f) = crate::durable::open_kept(&p)
            && let Ok(m) = f.metadata()
        {
            let id = (m.dev(), m.ino());
            if !seen.contains(&id) {
                seen.push(id);
                out.push((p, f));
            }
        }
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn rotates_once_and_shifts_older_files() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.jsonl");
        for round in 0..7 {
            let mut f = OpenOptions::new()
                .append(true)
                .create(true)
                .open(&log)
                .unwrap();
            f.write_all(format!("{round}\n").as_bytes()).unwrap();
            assert!(after_append(&log, &f, 1).unwrap());
            // A second writer that saw the same crossing on the old fd, once
            // a third has started a new log: it must not rotate the new one.
            let mut newer = OpenOptions::new()
                .append(true)
                .create(true)
                .open(&log)
                .unwrap();
            newer.write_all(b"n\n").unwrap();
            assert!(!after_append(&log, &f, 1).unwrap());
            fs::remove_file(&log).unwrap();
            assert!(
                !after_append(&log, &f, 1).unwrap(),
                "no log: nothing to rotate"
            );
        }
        assert!(!log.exists());
        assert_eq!(fs::read_to_string(rotated(&log, 1)).unwrap(), "6\n");
        assert_eq!(fs::read_to_string(rotated(&log, 5)).unwrap(), "2\n");
        assert!(!rotated(&log, 6).exists());
        assert_eq!(log_files(&log).len(), 5);
    }

    #[test]
    fn under_the_limit_nothing_moves() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.jsonl");
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&log)
            .unwrap();
        f.write_all(b"x\n").unwrap();
        assert!(!after_append(&log, &f, 100).unwrap());
        assert!(!after_append(&log, &f, 0).unwrap());
        assert!(log.exists());
    }
}
