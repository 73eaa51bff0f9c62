//! The per-owner index of held locks: `.locks/owners/PID-START/NAME`, one
//! empty file per lock an owner holds, so that the hierarchy check reads
//! only the records of the locks the *requesting* owner holds, not every
//! record in `.locks/` (which made a `state` request grow with the number
//! of records).
//!
//! The record is the truth; the index is a hint that may say too much,
//! never too little:
//!
//! 1. An entry is made *before* the record that names the owner as a holder
//!    is written, and removed only *after* the record no longer names it,
//!    both under the lock's [`super::Mutex`]. A kill between the two writes
//!    leaves an entry without a hold (a superset), never a hold without an
//!    entry.
//! 2. The hierarchy check reads the record of every entry and counts it only
//!    when the owner is a live holder there ([`super::Record::live_holders`],
//!    the one staleness rule): an entry of a released, taken-over or lapsed
//!    hold is ignored. Entries are never removed by a reader (an acquire of
//!    that name may be between its two writes).
//! 3. `PID-START` names a process, not a pid: a new process that reuses the
//!    pid has another start time and so another folder. `clean` removes the
//!    folders of owners that are gone.
//!
//! `state` is never indexed: nothing ranks before it, so no check asks
//! whether an owner holds it.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use super::name;
use super::process::Identity;
use crate::config::Config;
use crate::durable;
use crate::error::{Error, Result};

/// `.locks/owners`
pub fn owners_dir(cfg: &Config) -> PathBuf {
    cfg.locks_dir().join("owners")
}

/// `.locks/owners/PID-START`: the index folder of `owner`.
pub fn owner_dir(cfg: &Config, owner: &Identity) -> PathBuf {
    owners_dir(cfg).join(format!("{}-{}", owner.pid, owner.start_time))
}

/// Whether holds of `name` are indexed (every lock that can rank after another).
fn indexed(name: &str) -> bool {
    name::priority(name) > name::priority("state")
}

/// Records that `owner` is about to hold `name`: call holding the lock's
/// mutex, before the record write that names the owner.
pub fn add(cfg: &Config, owner: &Identity, name: &str) -> Result<()> {
    if !indexed(name) {
        return Ok(());
    }
    let dir = owner_dir(cfg, owner);
    let entry = dir.join(name);
    // A release of the owner's last other lock may remove the folder between
    // our mkdir and our create: then make it again (a few times at most).
    let mut tries = 0;
    loop {
        durable::ensure_dir(&owners_dir(cfg), &cfg.root)?;
        match durable::ensure_dir(&dir, &cfg.root) {
            Err(e) if e.io_kind() == Some(io::ErrorKind::NotFound) && tries < 5 => {
                tries += 1;
                continue;
            }
            other => other?,
        }
        match OpenOptions::new()
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(
                (rustix::fs::OFlags::CLOEXEC
                    | rustix::fs::OFlags::NOFOLLOW
                    | rustix::fs::OFlags::NONBLOCK)
                    .bits() as i32,
            )
            .open(&entry)
        {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound && tries < 5 => tries += 1,
            Err(e) => return Err(Error::io(e, "cannot index the lock's owner", &entry)),
        }
    }
}

/// Records that `owner` no longer holds `name`: call holding the lock's
/// mutex, after the record no longer names the owner. The owner's folder
/// goes with its last entry. Failures leave a superset, which is harmless.
pub fn remove(cfg: &Config, owner: &Identity, name: &str) {
    if !indexed(name) {
        return;
    }
    let dir = owner_dir(cfg, owner);
    if fs::remove_file(dir.join(name)).is_ok() {
        // Fails while the owner holds other locks: the folder stays.
        let _ = fs::remove_dir(&dir);
    }
}

/// The names `owner`'s index lists (a superset of what it holds; see the
/// module docs). None when it has no folder.
pub fn listed(cfg: &Config, owner: &Identity) -> Vec<String> {
    let Ok(entries) = fs::read_dir(owner_dir(cfg, owner)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| name::validate(n).is_ok())
        .collect()
}

/// Removes the index entries of owners that are gone: each entry only
/// once, under its lock's mutex, the record no longer names that process
/// as a holder (an owner on another host or in another pid namespace, which
/// /proc cannot see, keeps the entries of the holds its records show), then
/// the emptied folders. What `clean` does to the index; returns how many
/// entries went.
pub fn remove_gone(cfg: &Config) -> Result<usize> {
    let Ok(entries) = fs::read_dir(owners_dir(cfg)) else {
        return Ok(0);
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let file = e.file_name();
        let Some((pid, start)) = file.to_str().and_then(|f| f.split_once('-')) else {
            continue;
        };
        let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
            continue;
        };
        // A local owner that still runs keeps its index as it is.
        if super::process::start_time_of(pid) == Some(start) {
            continue;
        }
        let dir = e.path();
        let Ok(names) = fs::read_dir(&dir) else {
            continue;
        };
        for n in names.flatten() {
            let Some(name) = n.file_name().into_string().ok() else {
                continue;
            };
            if name::validate(&name).is_err() || !n.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let _mutex = super::Mutex::lock(cfg, &name)?;
            let held = super::record::load(&super::record::record_path(cfg, &name))
                .ok()
                .flatten()
                .is_some_and(|r| {
                    r.holders
                        .iter()
                        .any(|h| h.id.pid == pid && h.id.start_time == start)
                });
            if !held && fs::remove_file(n.path()).is_ok() {
                removed += 1;
            }
        }
        let _ = fs::remove_dir(&dir);
    }
    // `owners` itself stays: an acquire may be about to make a folder in it.
    Ok(removed)
}
