//! The keeper: one small detached process per lock owner on the owner's
//! host, which keeps that owner's leases alive while the owner runs and
//! gives them back the instant it exits.
//!
//! A lock taken by `lock-manager acquire` is held by the calling shell,
//! which keeps no process or connection open for it; on Redis every hold is
//! a lease that lapses unless renewed. [`ensure`] (called by `acquire` after
//! a grant) makes sure a keeper runs for the owner: a non-blocking flock
//! test of `Local::keeper_lock_path(owner)` — microseconds when one runs —
//! else it re-executes this binary as `lock-manager keeper HOLDER`, in a
//! session of its own (`setsid`: the caller's terminal never signals it),
//! with stdin, stdout and stderr on /dev/null and every other descriptor
//! closed at exec (a `$(lock-manager acquire x)` never waits for it), in
//! `/` (it keeps no folder busy). `acquire` does not wait for it.
//!
//! What the keeper guarantees, and what it does not:
//! - One keeper per owner: it holds the flock on its file while it runs;
//!   a second one started by a racing `acquire` exits at once.
//! - It watches the owner through a pidfd opened *before* the owner's
//!   start time is checked again, so a reused pid is never watched.
//! - Every lease/3 it renews all the owner's leases in one script
//!   (`renew_owner`); a lapsed lease is never revived by it.
//! - When the owner exits it releases every hold at once (`release_owner`,
//!   audited, waking waiters).
//! - When nothing is held any more it exits — after giving up its flock and
//!   looking once more, so that an `acquire` that saw it running just
//!   before is never left without a keeper.
//! - When the server cannot be reached it retries until the leases could
//!   have lapsed, then exits: the server lets them lapse by itself, and the
//!   next acquirer takes over (audited as `lease-expired`). A keeper killed
//!   or paused has the same effect; the owner's later fenced writes are
//!   then refused (exit 6).
//!
//! It never prints: debug lines (`DEBUG=1`) go to stderr, which is
//! /dev/null unless `WFSTATE_KEEPER_LOG` names a file to append them to.

// TEMPORARY while issue 14 lands: remove once the Redis acquire calls `ensure`.
#![allow(dead_code)]

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::RedisBackend;
use super::local::{Local, holder_id};
use crate::error::{Error, Kind, Result};
use crate::lock::Identity;

/// The hidden subcommand of `lock-manager` that runs a keeper.
pub const SUBCOMMAND: &str = "keeper";

/// Makes sure one keeper runs for `owner` on this host: cheap when one
/// does (a non-blocking flock test), else starts one and returns at once.
/// An owner this host cannot watch (another pid namespace) gets none.
pub(crate) fn ensure(backend: &RedisBackend, owner: &Identity) -> Result<()> {
    if !owner.is_local() {
        crate::debug::log(|| {
            format!(
                "keeper: owner {} cannot be watched from here: no keeper",
                holder_id(owner)
            )
        });
        return Ok(());
    }
    let local = Local::open(&backend.url, &backend.ns)?;
    let path = local.keeper_lock_path(owner);
    local.make_parents(&path)?;
    if runs(&path)? {
        crate::debug::log(|| format!("keeper: one runs for {}", holder_id(owner)));
        return Ok(());
    }
    spawn(backend, owner)
}

/// Opens (creating) a keeper's flock file: 0600, never through a symlink,
/// close-on-exec.
fn open_lock_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::io(e, "open", path))
}

/// Whether a keeper holds the flock on `path` now.
fn runs(path: &Path) -> Result<bool> {
    let file = open_lock_file(path)?;
    match file.try_lock() {
        // Free: ours for an instant, given back when `file` closes.
        Ok(()) => Ok(false),
        Err(TryLockError::WouldBlock) => Ok(true),
        Err(TryLockError::Error(e)) => Err(Error::io(e, "lock", path)),
    }
}

/// The binary a keeper runs as: this one when it is `lock-manager`, else
/// the `lock-manager` beside it.
fn keeper_program() -> PathBuf {
    let exe = std::fs::read_link("/proc/self/exe").ok();
    match exe {
        Some(p) if p.file_name().is_some_and(|n| n == "lock-manager") => {
            PathBuf::from("/proc/self/exe")
        }
        Some(p) => p.with_file_name("lock-manager"),
        None => PathBuf::from("lock-manager"),
    }
}

/// Starts a detached keeper for `owner`; returns once it runs (exec'd).
fn spawn(backend: &RedisBackend, owner: &Identity) -> Result<()> {
    let program = keeper_program();
    let mut cmd = Command::new(&program);
    cmd.arg0("lock-manager")
        .arg(SUBCOMMAND)
        .arg(holder_id(owner))
        .current_dir("/")
        .env("WFSTATE_BACKEND", &backend.url)
        .env("WFSTATE_NAMESPACE", &backend.ns)
        .env_remove("LOCK_OWNER_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(keeper_stderr());
    // Its audit events that cannot reach the server fall back to the
    // caller's audit file: name it (and the state beside it) absolutely,
    // since the keeper runs in `/`.
    for (var, path) in [
        ("STATE_FILE", &backend.cfg.state_file),
        ("AUDIT_LOG", &backend.cfg.audit_log),
    ] {
        if let Ok(abs) = std::path::absolute(path) {
            cmd.env(var, abs);
        }
    }
    // SAFETY: runs in the forked child before exec; setsid and close_range
    // are async-signal-safe system calls on no shared state.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::setsid()?;
            // Every descriptor the caller's shell left open (a pipe a
            // `$(...)` or a test reads to its end) closes at exec; older
            // kernels without CLOSE_RANGE_CLOEXEC: only ours, all
            // close-on-exec already.
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| {
        Error::new(Kind::of_io(&e), "cannot start the lease keeper")
            .because(format!("{}: {e}", program.display()))
            .hint("check that lock-manager is installed beside this binary; without a keeper the lock lapses after WFSTATE_LEASE")
    })?;
    crate::debug::log(|| {
        format!(
            "keeper: started pid {} for {}",
            child.id(),
            holder_id(owner)
        )
    });
    // Not waited for: it outlives this command (its parent becomes init).
    drop(child);
    Ok(())
}

/// Where a keeper's stderr goes: `WFSTATE_KEEPER_LOG` (appended) when set
/// and openable, else /dev/null.
fn keeper_stderr() -> Stdio {
    match std::env::var_os("WFSTATE_KEEPER_LOG").filter(|p| !p.is_empty()) {
        Some(p) => OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(p)
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null()),
        None => Stdio::null(),
    }
}
