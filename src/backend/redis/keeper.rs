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

use std::cell::RefCell;
use std::fs::{File, OpenOptions, TryLockError};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags};

use super::local::{self, Local, holder_id, parse_holder_id};
use super::locks::Renewal;
use super::{Link, RedisBackend};
use crate::error::{Error, Kind, Result};
use crate::lock::Identity;
use crate::lock::process::start_time_of;

/// The hidden subcommand of `lock-manager` that runs a keeper.
pub const SUBCOMMAND: &str = "keeper";

/// Makes sure one keeper runs for `owner` on this host: cheap when one
/// does (a non-blocking flock test), else starts one and returns at once.
/// An owner this host cannot watch (another pid namespace) gets none.
pub(crate) fn ensure(backend: &RedisBackend, owner: &Identity) -> Result<()> {
    if owner.pid == std::process::id() && owner.is_local() {
        // `lock-manager run`'s own hold, handed to its child and renewed
        // by `run` itself.
        return Ok(());
    }
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
///
/// A bare fork and execve rather than `std::process::Command`: that one
/// call site would bring posix_spawn and its 30 dynamic symbols into every
/// binary (the lock registry is behind the backend seam), which the loader
/// binds at every start-up, `--version` included.
fn spawn(backend: &RedisBackend, owner: &Identity) -> Result<()> {
    use std::ffi::{CString, OsStr};
    use std::os::unix::ffi::OsStrExt;

    let program = keeper_program();
    let cannot = |e: std::io::Error| {
        Error::new(Kind::of_io(&e), "cannot start the lease keeper")
            .because(format!("{}: {e}", program.display()))
            .hint("check that lock-manager is installed beside this binary; without a keeper the lock lapses after WFSTATE_LEASE")
    };
    let c = |b: &[u8]| CString::new(b).map_err(|_| cannot(std::io::ErrorKind::InvalidInput.into()));
    // Everything the child needs is made before the fork: after it, only
    // async-signal-safe system calls.
    let prog = c(program.as_os_str().as_bytes())?;
    let argv = [
        c(b"lock-manager")?,
        c(SUBCOMMAND.as_bytes())?,
        c(holder_id(owner).as_bytes())?,
    ];
    // Its audit events that cannot reach the server fall back to the
    // caller's audit file: name it (and the state beside it) absolutely,
    // since the keeper runs in `/`.
    let mut set: Vec<(&str, &OsStr)> = vec![
        ("WFSTATE_BACKEND", OsStr::new(&backend.url)),
        ("WFSTATE_NAMESPACE", OsStr::new(&backend.ns)),
    ];
    let absolute: Vec<(&str, PathBuf)> = [
        ("STATE_FILE", &backend.cfg.state_file),
        ("AUDIT_LOG", &backend.cfg.audit_log),
    ]
    .into_iter()
    .filter_map(|(var, path)| std::path::absolute(path).ok().map(|a| (var, a)))
    .collect();
    set.extend(absolute.iter().map(|(var, a)| (*var, a.as_os_str())));
    let mut envp = Vec::new();
    for (k, v) in std::env::vars_os() {
        let dropped = k == "LOCK_OWNER_PID" || set.iter().any(|(s, _)| k == *s);
        if !dropped {
            envp.push(c(&[k.as_bytes(), b"=", v.as_bytes()].concat())?);
        }
    }
    for (k, v) in &set {
        envp.push(c(&[k.as_bytes(), b"=", v.as_bytes()].concat())?);
    }
    let argv_p: Vec<*const libc::c_char> = argv
        .iter()
        .map(|a| a.as_ptr())
        .chain([std::ptr::null()])
        .collect();
    let envp_p: Vec<*const libc::c_char> = envp
        .iter()
        .map(|a| a.as_ptr())
        .chain([std::ptr::null()])
        .collect();
    let null = File::open("/dev/null").map_err(cannot)?;
    let stderr = keeper_stderr().unwrap_or_else(|| null.try_clone().expect("dup /dev/null"));
    // Tells the parent why an exec failed; closed by a successful one.
    let (mut report_rd, report_wr) = std::io::pipe().map_err(cannot)?;
    use std::os::fd::AsRawFd;
    let (null_fd, err_fd, wr_fd) = (null.as_raw_fd(), stderr.as_raw_fd(), report_wr.as_raw_fd());
    // SAFETY: the child only makes async-signal-safe calls on memory made
    // before the fork, then execs or exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(cannot(std::io::Error::last_os_error()));
    }
    if pid == 0 {
        unsafe {
            libc::setsid();
            // The caller may block or ignore the signals that end a
            // process (a wait's interrupts, `run`'s forwarding, nohup):
            // the keeper ends by SIGTERM as any daemon does.
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGPIPE] {
                libc::signal(sig, libc::SIG_DFL);
            }
            libc::dup2(null_fd, 0);
            libc::dup2(null_fd, 1);
            libc::dup2(err_fd, 2);
            libc::chdir(c"/".as_ptr());
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
            libc::execve(prog.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr());
            let errno = *libc::__errno_location();
            libc::write(wr_fd, (&errno as *const i32).cast(), 4);
            libc::_exit(127);
        }
    }
    drop(report_wr);
    let mut got = [0u8; 4];
    if std::io::Read::read_exact(&mut report_rd, &mut got).is_ok() {
        // Reap it: it has exited.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        return Err(cannot(std::io::Error::from_raw_os_error(
            i32::from_ne_bytes(got),
        )));
    }
    crate::debug::log(|| format!("keeper: started pid {pid} for {}", holder_id(owner)));
    // Not waited for: it outlives this command (its parent becomes init).
    Ok(())
}

/// Where a keeper's stderr goes: `WFSTATE_KEEPER_LOG` (appended) when set
/// and openable, else `None` (/dev/null).
fn keeper_stderr() -> Option<File> {
    let p = std::env::var_os("WFSTATE_KEEPER_LOG").filter(|p| !p.is_empty())?;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(p)
        .ok()
}

/// Runs the keeper of `holder` (a holder id, `HOST:PID:START:BOOT:PIDNS`)
/// until its owner holds nothing, exits (its holds are then released), or
/// the server stayed out of reach until the leases could have lapsed (an
/// error then). Returns at once when another keeper runs for that owner.
pub fn keep(backend: &RedisBackend, holder: &str) -> Result<()> {
    let owner = parse_holder_id(holder).ok_or_else(|| {
        Error::validation(format!("'{}' is not a holder id", holder.escape_debug()))
            .hint("the keeper is started by 'lock-manager acquire'; it is not for direct use")
    })?;
    let lease = local::lease()?;
    let local = Local::open(&backend.url, &backend.ns)?;
    let path = local.keeper_lock_path(&owner);
    local.make_parents(&path)?;
    let Some(mut flock) = take(&path)? else {
        crate::debug::log(|| format!("keeper: another keeper runs for {holder}"));
        return Ok(());
    };
    let Some(pidfd) = watch(&owner)? else {
        crate::debug::log(|| format!("keeper: owner {holder} has already exited"));
        return owner_exited(backend, &owner, lease, &path, flock);
    };
    crate::debug::log(|| format!("keeper: keeping the leases of {holder} ({lease:?})"));
    let link = own_link(backend, lease);
    let mut leases = Leases::new(&link, owner.clone(), lease, Instant::now());
    loop {
        if exited(pidfd.as_fd(), leases.next())? {
            crate::debug::log(|| format!("keeper: owner {holder} exited"));
            return owner_exited(&link, &owner, lease, &path, flock);
        }
        match leases.renew() {
            Renewed::Held(r) if !r.held.is_empty() => {}
            Renewed::Held(_) => {
                // Nothing held: give the flock up first, then look once
                // more. An `acquire` whose flock test saw us running was
                // granted before that test, so the second look sees its
                // hold; one that tests after finds no keeper and starts one.
                let _ = std::fs::remove_file(&path);
                drop(flock);
                let again = leases.renew();
                if let Renewed::Held(r) = &again
                    && r.held.is_empty()
                {
                    crate::debug::log(|| format!("keeper: {holder} holds nothing: done"));
                    return Ok(());
                }
                match take(&path)? {
                    Some(f) => flock = f,
                    None => return Ok(()), // another keeper took over
                }
            }
            Renewed::Unconfirmed(e) => {
                if Instant::now() >= leases.lapse() {
                    crate::debug::log(|| {
                        format!(
                            "keeper: no renewal confirmed within the lease; the holds lapse: {e}"
                        )
                    });
                    let _ = std::fs::remove_file(&path);
                    return Err(e);
                }
            }
        }
    }
}

/// Releases every hold of an owner that exited (forgetting its token
/// files), retrying until the leases could have lapsed anyway; then removes
/// its keeper file.
fn owner_exited(
    backend: &RedisBackend,
    owner: &Identity,
    lease: Duration,
    path: &Path,
    flock: File,
) -> Result<()> {
    let lapse = Instant::now() + lease;
    let result = loop {
        match backend.release_owner(owner, "owner-exited") {
            Ok(n) => {
                crate::debug::log(|| format!("keeper: released {n} hold(s)"));
                break Ok(());
            }
            Err(e) if Instant::now() + retry_step(lease) >= lapse => break Err(e),
            Err(e) => {
                crate::debug::log(|| format!("keeper: release not confirmed, retrying: {e}"));
                forget_link(backend);
                std::thread::sleep(retry_step(lease));
            }
        }
    };
    let _ = std::fs::remove_file(path);
    drop(flock);
    result
}

/// Moves `from`'s token file for `name` to `to` (after
/// [`RedisBackend::transfer_hold`], which keeps the token): `to`'s own
/// `state-manager` calls then present it. No file: nothing to move.
pub(crate) fn hand_token(
    backend: &RedisBackend,
    name: &str,
    from: &Identity,
    to: &Identity,
) -> Result<()> {
    let local = Local::open(&backend.url, &backend.ns)?;
    let (old, new) = (local.hold_path(from, name), local.hold_path(to, name));
    local.make_parents(&new)?;
    match std::fs::rename(&old, &new) {
        Ok(()) => {
            let _ = std::fs::remove_dir(local.holds_dir(from));
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(e, "move", &old)),
    }
}

/// Removes `owner`'s (empty) folder of token files.
pub(crate) fn forget_tokens_dir(backend: &RedisBackend, owner: &Identity) {
    if let Ok(local) = Local::open(&backend.url, &backend.ns) {
        let _ = std::fs::remove_dir(local.holds_dir(owner));
    }
}

/// How a renewal went.
pub(crate) enum Renewed {
    /// The server answered: what is still held, what was found lapsed.
    Held(Renewal),
    /// No answer (or an error): the holds still run until [`Leases::lapse`].
    Unconfirmed(Error),
}

/// The leases of one owner, as far as this process can vouch for them.
pub(crate) struct Leases<'a> {
    backend: &'a RedisBackend,
    owner: Identity,
    lease: Duration,
    /// When the last confirmed renewal (or the grant) was sent: the server
    /// set each lease end to its time then plus `lease`, so the holds run
    /// at least until this instant plus `lease`.
    confirmed: Instant,
    /// Whether the last renewal failed (retries come sooner).
    failing: bool,
}

impl<'a> Leases<'a> {
    /// `owner`'s leases, last known renewed (or granted) by a call sent at
    /// `confirmed`.
    pub(crate) fn new(
        backend: &'a RedisBackend,
        owner: Identity,
        lease: Duration,
        confirmed: Instant,
    ) -> Leases<'a> {
        Leases {
            backend,
            owner,
            lease,
            confirmed,
            failing: false,
        }
    }

    /// Renews every lease of the owner in one script.
    pub(crate) fn renew(&mut self) -> Renewed {
        let sent = Instant::now();
        match self.backend.renew_owner(&self.owner, self.lease) {
            Ok(r) => {
                self.confirmed = sent;
                self.failing = false;
                if !r.lost.is_empty() {
                    crate::debug::log(|| format!("leases: lapsed before renewal: {:?}", r.lost));
                }
                Renewed::Held(r)
            }
            Err(e) => {
                crate::debug::log(|| format!("leases: renewal not confirmed: {e}"));
                self.failing = true;
                forget_link(self.backend);
                Renewed::Unconfirmed(e)
            }
        }
    }

    /// The same leases, handed to `owner` (`run`'s child: a transfer
    /// keeps each lease end).
    pub(crate) fn hand_to(&self, owner: Identity) -> Leases<'a> {
        Leases {
            owner,
            failing: false,
            ..*self
        }
    }

    /// Whether the owner's hold of `name` was taken from it (its lease
    /// lapsed and was pruned, or a `release --force` removed it): the
    /// server notes those in `lock:N:lost` until that holder acquires
    /// again. `None` when the server cannot say.
    pub(crate) fn taken(&self, name: &str) -> Option<bool> {
        let key = self.backend.keys.key(&format!("lock:{name}:lost"));
        let id = holder_id(&self.owner);
        self.backend
            .with("read the lost holds", |c| {
                redis::cmd("HEXISTS").arg(&key).arg(&id).query::<bool>(c)
            })
            .ok()
    }

    /// The lease each renewal asks for.
    pub(crate) fn lease(&self) -> Duration {
        self.lease
    }

    /// Whether the last renewal was not confirmed.
    pub(crate) fn failing(&self) -> bool {
        self.failing
    }

    /// The instant the holds could have lapsed unless a renewal sent
    /// before it is confirmed.
    pub(crate) fn lapse(&self) -> Instant {
        self.confirmed + self.lease
    }

    /// When to renew next: a third of the lease after the last confirmed
    /// renewal; after a failure, sooner, and never after the lapse.
    pub(crate) fn next(&self) -> Instant {
        if self.failing {
            (Instant::now() + retry_step(self.lease)).min(self.lapse())
        } else {
            self.confirmed + self.lease / 3
        }
    }
}

/// The pause between two tries after a failure: a tenth of the lease.
fn retry_step(lease: Duration) -> Duration {
    lease / 10
}

/// A backend of its own for renewals: its own connection, and a timeout no
/// longer than a quarter of the lease, so that one unanswered call cannot
/// outlast the lease it is meant to extend.
pub(crate) fn own_link(backend: &RedisBackend, lease: Duration) -> RedisBackend {
    let mut b = backend.for_namespace(&backend.ns);
    b.conn = Rc::new(RefCell::new(Link::default()));
    b.timeout = backend
        .timeout
        .min(lease / 4)
        .max(Duration::from_millis(10));
    b
}

/// Drops the connection and the memory of a failure, so that the next
/// call connects afresh (a failed call may have left a reply unread, and
/// an unreachable server is remembered to fail later calls at once).
pub(crate) fn forget_link(backend: &RedisBackend) {
    *backend.conn.borrow_mut() = Link::default();
}

/// Takes the keeper flock of `path`: `None` when another keeper has it. The
/// file taken is the one the path names (not one a finishing keeper just
/// unlinked).
fn take(path: &Path) -> Result<Option<File>> {
    loop {
        let file = open_lock_file(path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => return Err(Error::io(e, "lock", path)),
        }
        let ours = file.metadata().map_err(|e| Error::io(e, "read", path))?;
        match std::fs::symlink_metadata(path) {
            Ok(now) if now.ino() == ours.ino() && now.dev() == ours.dev() => return Ok(Some(file)),
            _ => continue,
        }
    }
}

/// A pidfd of `owner`, or `None` when it no longer runs. The start time is
/// checked after the pidfd is open: a pid freed and reused in between
/// names another process, which is never watched.
fn watch(owner: &Identity) -> Result<Option<OwnedFd>> {
    if !owner.is_local() {
        return Err(Error::new(
            Kind::General,
            format!("cannot watch lock owner {} from here", holder_id(owner)),
        )
        .hint("a keeper runs on its owner's host, in its pid namespace"));
    }
    let Some(pid) = i32::try_from(owner.pid).ok().and_then(Pid::from_raw) else {
        return Ok(None);
    };
    let fd = match rustix::process::pidfd_open(pid, PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(Errno::SRCH) => return Ok(None),
        Err(e) => {
            return Err(
                Error::new(Kind::of_io(&e.into()), "cannot watch the lock owner")
                    .because(format!("pidfd_open({}): {e}", owner.pid)),
            );
        }
    };
    if start_time_of(owner.pid) != Some(owner.start_time) {
        return Ok(None);
    }
    Ok(Some(fd))
}

/// Waits on `pidfd` until `until`: whether the process exited.
fn exited(pidfd: std::os::fd::BorrowedFd<'_>, until: Instant) -> Result<bool> {
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let timeout = Timespec {
            tv_sec: left.as_secs() as _,
            tv_nsec: left.subsec_nanos() as _,
        };
        let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(Error::new(Kind::of_io(&e.into()), "cannot wait").because(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_keeper_flock_per_file_and_a_removed_file_frees_the_name_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owner.lock");
        assert!(!runs(&path).unwrap(), "nobody holds a new file");
        let first = take(&path).unwrap().expect("free");
        assert!(runs(&path).unwrap());
        assert!(take(&path).unwrap().is_none(), "a second keeper exits");
        // A finishing keeper removes its file before it lets go: the next
        // one takes a new file, not the old one.
        std::fs::remove_file(&path).unwrap();
        let second = take(&path).unwrap().expect("a new file");
        let ino = |f: &File| f.metadata().unwrap().ino();
        assert_ne!(ino(&first), ino(&second));
        drop(first);
        assert!(runs(&path).unwrap(), "the new file stays held");
        drop(second);
        assert!(!runs(&path).unwrap());
    }

    #[test]
    fn renewals_come_every_third_of_the_lease_and_retries_never_after_the_lapse() {
        let backend = crate::backend::redis::open(
            &crate::config::Config::new("/nonexistent/state.json"),
            "redis+unix:///nonexistent.sock",
        )
        .unwrap();
        let lease = Duration::from_millis(900);
        let at = Instant::now();
        let mut leases = Leases::new(&backend, Identity::current(), lease, at);
        assert_eq!(leases.next(), at + lease / 3);
        assert_eq!(leases.lapse(), at + lease);
        // Unreachable: not confirmed; the lapse stays where the last
        // confirmed renewal put it, and retries come sooner.
        assert!(matches!(leases.renew(), Renewed::Unconfirmed(_)));
        assert!(leases.failing());
        assert_eq!(leases.lapse(), at + lease);
        assert!(leases.next() <= Instant::now() + lease / 10);
        assert!(leases.next() <= leases.lapse());
    }
}
