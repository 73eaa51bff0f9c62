//! Waiting for a lock without polling.
//!
//! The holder of a cross-invocation lock is a shell that holds no file
//! descriptor, so a waiter cannot block in flock(2) on it. Instead it blocks
//! in poll(2) on an inotify watch of `.locks/` (woken when a record is
//! replaced or removed) together with a pidfd of each holder (readable the
//! instant that process exits, so a dead owner's lock is taken over at once).
//!
//! Create the [`Watcher`] *before* reading the record you decide on, so that
//! a change between the read and the wait still wakes the waiter.
//!
//! When no inotify watch can be had — the per-user instance limit
//! `fs.inotify.max_user_instances` (128 by default, shared by every process
//! of the user: 128 waiters exhaust it), `fs.inotify.max_user_watches`, or
//! the open-file limit — the waiter does not fail: it keeps the pidfds of
//! the holders (a holder's exit still wakes it at once) and looks again at
//! short intervals (5 ms, doubling to [`FALLBACK_MAX_INTERVAL`]) for releases
//! by live holders, which only a watch could report. Slower to notice a
//! release, never wrong, and it gets the lock. A pidfd that cannot be opened
//! for want of descriptors is replaced the same way.
//!
//! A waiter of `lock-manager` also listens for SIGINT, SIGTERM and SIGHUP
//! ([`Interrupts`]): blocked while it waits and read from a signalfd in the
//! same poll(2), so Ctrl-C ends the wait at once, the request leaves the
//! record under its mutex, and only then does the process end by that
//! signal (no handler, no thread).
//!
//! What this does not promise: that a wake-up means the lock is free. Every
//! wake-up only says "look again"; the caller re-reads the record under its
//! mutex and decides. Holders on other hosts cannot be watched by pidfd: for
//! them only a record change or the deadline wakes the waiter.

use std::cell::Cell;
use std::ffi::CString;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::inotify;
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags};

use super::process::{Identity, start_time_of};
use crate::child::BlockedSignals;
use crate::error::{Error, Kind, Result};

/// The longest step between looks of a waiter that has no inotify watch.
pub const FALLBACK_MAX_INTERVAL: Duration = Duration::from_millis(50);

/// An inotify watch on the locks folder, optionally narrowed to one file
/// (or, when the kernel gives none, timed looks: see the module docs).
pub struct Watcher {
    /// `None`: no watch could be had; wake up at `interval` instead.
    fd: Option<OwnedFd>,
    /// The next step between looks without a watch (or without a pidfd).
    interval: Cell<Duration>,
    /// Only events naming this file wake the waiter (`None`: any file).
    only: Option<CString>,
    /// Set when the watched folder itself went away: the watch is dead.
    lost: Cell<bool>,
}

/// Why [`Watcher::wait`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// A record changed or a holder exited: look again.
    Changed,
    /// The deadline passed.
    TimedOut,
    /// A signal of [`Interrupts`] is pending.
    Interrupted,
}

impl Watcher {
    /// Watches `dir` for any file being replaced, removed or written.
    pub fn new(dir: &Path) -> Result<Watcher> {
        Watcher::watch(dir, None)
    }

    /// Watches `dir` for changes of the file `name` only (such as `x.lock`),
    /// so that traffic on other locks does not wake the waiter.
    pub fn for_file(dir: &Path, name: &str) -> Result<Watcher> {
        let name = CString::new(name)
            .map_err(|_| Error::general("cannot watch a file name holding NUL"))?;
        Watcher::watch(dir, Some(name))
    }

    fn watch(dir: &Path, only: Option<CString>) -> Result<Watcher> {
        let fd = match Watcher::inotify(dir) {
            Ok(fd) => Some(fd),
            Err(e) if is_limit(e) => None,
            Err(e) => return Err(Error::io(e.into(), "cannot watch folder", dir)),
        };
        Ok(Watcher {
            fd,
            interval: Cell::new(FIRST_INTERVAL),
            only,
            lost: Cell::new(false),
        })
    }

    /// Whether this waiter has an inotify watch (not timed looks).
    pub fn is_watching(&self) -> bool {
        self.fd.is_some()
    }

    fn inotify(dir: &Path) -> rustix::io::Result<OwnedFd> {
        let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)?;
        inotify::add_watch(
            &fd,
            dir,
            inotify::WatchFlags::MOVED_TO
                | inotify::WatchFlags::MOVED_FROM
                | inotify::WatchFlags::DELETE
                | inotify::WatchFlags::CLOSE_WRITE
                | inotify::WatchFlags::CREATE
                | inotify::WatchFlags::DELETE_SELF
                | inotify::WatchFlags::MOVE_SELF,
        )?;
        Ok(fd)
    }

    /// Whether the watched folder was removed or moved: make a new watcher.
    pub fn is_lost(&self) -> bool {
        self.lost.get()
    }

    /// Blocks until a record changes, one of `pids` exits, or `deadline` passes
    /// (`None`: no deadline). Prefer [`Watcher::wait_for`], which also guards
    /// against a pid being reused between reading the record and waiting.
    pub fn wait(&self, pids: &[u32], deadline: Option<Instant>) -> Result<Wake> {
        let mut pidfds: Vec<OwnedFd> = Vec::with_capacity(pids.len());
        let mut unwatched = false;
        for &pid in pids {
            match open_pidfd(pid)? {
                Pidfd::Open(fd) => pidfds.push(fd),
                // Already gone: nothing to wait for, look again now.
                Pidfd::Gone => return Ok(Wake::Changed),
                Pidfd::NoDescriptor => unwatched = true,
            }
        }
        self.poll(&pidfds, unwatched, deadline)
    }

    /// Blocks until a record changes, one of the `processes` (holders, or
    /// the waiters we queue behind) exits, or `deadline` passes.
    pub fn wait_for(&self, processes: &[Identity], deadline: Option<Instant>) -> Result<Wake> {
        self.wait_for_or(processes, None, deadline)
    }

    /// [`Watcher::wait_for`], also woken ([`Wake::Interrupted`]) by a
    /// signal pending on `interrupts`.
    pub fn wait_for_or(
        &self,
        processes: &[Identity],
        interrupts: Option<&Interrupts>,
        deadline: Option<Instant>,
    ) -> Result<Wake> {
        let mut pidfds: Vec<OwnedFd> = Vec::with_capacity(processes.len());
        let mut unwatched = false;
        for id in processes.iter().filter(|id| id.is_local()) {
            let fd = match open_pidfd(id.pid)? {
                Pidfd::Open(fd) => fd,
                Pidfd::Gone => return Ok(Wake::Changed),
                Pidfd::NoDescriptor => {
                    unwatched = true;
                    continue;
                }
            };
            // The pid may have been freed and reused since the record was
            // read: then the pidfd names a stranger, and the holder is gone.
            if start_time_of(id.pid) != Some(id.start_time) {
                return Ok(Wake::Changed);
            }
            pidfds.push(fd);
        }
        let signals = interrupts.map(|i| i.0.as_fd());
        self.poll_or(&pidfds, signals, unwatched, deadline)
    }

    /// Polls the watch and `pidfds` until one fires or `deadline` passes;
    /// without a watch, or with a process left `unwatched`, also wakes at
    /// the next timed look.
    fn poll(&self, pidfds: &[OwnedFd], unwatched: bool, deadline: Option<Instant>) -> Result<Wake> {
        self.poll_or(pidfds, None, unwatched, deadline)
    }

    /// [`Watcher::poll`], also returning [`Wake::Interrupted`] when `signals`
    /// (a signalfd) is readable.
    fn poll_or(
        &self,
        pidfds: &[OwnedFd],
        signals: Option<BorrowedFd<'_>>,
        unwatched: bool,
        deadline: Option<Instant>,
    ) -> Result<Wake> {
        let tick = (self.fd.is_none() || unwatched).then(|| {
            let step = self.interval.get();
            self.interval.set((step * 2).min(FALLBACK_MAX_INTERVAL));
            Instant::now() + step
        });
        loop {
            let wake_at = match (deadline, tick) {
                (Some(d), Some(t)) => Some(d.min(t)),
                (d, t) => d.or(t),
            };
            let timeout = match wake_at {
                None => None,
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(if deadline.is_some_and(|d| d <= Instant::now()) {
                            Wake::TimedOut
                        } else {
                            Wake::Changed
                        });
                    }
                    Some(Timespec {
                        tv_sec: left.as_secs() as _,
                        tv_nsec: left.subsec_nanos() as _,
                    })
                }
            };
            let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(2 + pidfds.len());
            if let Some(fd) = &signals {
                fds.push(PollFd::new(fd, PollFlags::IN));
            }
            let first = usize::from(signals.is_some());
            if let Some(fd) = &self.fd {
                fds.push(PollFd::new(fd, PollFlags::IN));
            }
            let first = first + usize::from(self.fd.is_some());
            for fd in pidfds {
                fds.push(PollFd::new(fd, PollFlags::IN));
            }
            match rustix::event::poll(&mut fds, timeout.as_ref()) {
                Ok(0) => continue, // re-check the deadline and the next look
                Ok(_) => {
                    if signals.is_some() && !fds[0].revents().is_empty() {
                        return Ok(Wake::Interrupted);
                    }
                    if fds[first..].iter().any(|f| !f.revents().is_empty()) {
                        self.drain();
                        return Ok(Wake::Changed);
                    }
                    if self.drain() {
                        return Ok(Wake::Changed);
                    }
                    // Only other files changed: keep waiting.
                }
                Err(Errno::INTR) => continue,
                Err(e) => {
                    return Err(
                        Error::new(Kind::of_io(&e.into()), "cannot wait for lock").because(e)
                    );
                }
            }
        }
    }

    /// Reads all pending events; returns whether any concerns the watched
    /// file (or the folder itself, or the queue overflowed).
    fn drain(&self) -> bool {
        let Some(fd) = &self.fd else { return false };
        let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = inotify::Reader::new(fd, &mut buf);
        let mut relevant = false;
        while let Ok(event) = reader.next() {
            let flags = event.events();
            if flags.intersects(
                inotify::ReadFlags::DELETE_SELF
                    | inotify::ReadFlags::MOVE_SELF
                    | inotify::ReadFlags::IGNORED,
            ) {
                self.lost.set(true);
                relevant = true;
            } else if flags.contains(inotify::ReadFlags::QUEUE_OVERFLOW) {
                relevant = true;
            } else {
                relevant |= match (&self.only, event.file_name()) {
                    (None, _) => true,
                    (Some(want), Some(name)) => want.as_c_str() == name,
                    (Some(_), None) => false,
                };
            }
        }
        relevant
    }
}

/// The signals that end a wait of `lock-manager`.
pub const INTERRUPTS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// The signal that ended a wait of this process (0: none).
static INTERRUPTED: AtomicI32 = AtomicI32::new(0);

/// The signal that ended a wait of this process, if one did: the command
/// layer then ends the process by it, once the request has left the record
/// and its audit event is written.
pub fn interrupted() -> Option<i32> {
    match INTERRUPTED.load(Ordering::Relaxed) {
        0 => None,
        sig => Some(sig),
    }
}

/// [`INTERRUPTS`] blocked, and readable from a signalfd that
/// [`Watcher::wait_for_or`] polls: while it lives, those signals only wake
/// the waiter. Dropping it restores the signal mask, so a signal not read
/// by then takes its default action (ends the process).
pub struct Interrupts(BlockedSignals);

/// The signalfd, for a waiter that polls it beside descriptors of its own
/// (the Redis wake channel).
impl AsFd for Interrupts {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl Interrupts {
    /// Blocks [`INTERRUPTS`] and opens the signalfd. A blocked signal is
    /// queued even when ignored: the ignored ones are left alone (`nohup`'s
    /// SIGHUP, a background job's SIGINT).
    pub fn block() -> Result<Interrupts> {
        BlockedSignals::block(INTERRUPTS.into_iter().filter(|&s| !ignored(s)))
            .map(Interrupts)
            .map_err(|e| Error::new(Kind::of_io(&e), "cannot watch signals").because(e))
    }

    /// The signal pending, if any (read, so it is not delivered again);
    /// remembered for [`interrupted`].
    pub fn take(&self) -> Option<i32> {
        let sig = self.0.read()?.ssi_signo as i32;
        INTERRUPTED.store(sig, Ordering::Relaxed);
        Some(sig)
    }
}

/// Whether SIGINT reaches this process ignored (inherited `SIG_IGN`, as a
/// non-interactive shell gives its background jobs): then Ctrl-C cannot end
/// a wait, which `--verbose` says.
pub fn sigint_ignored() -> bool {
    ignored(libc::SIGINT)
}

/// Whether signal `sig` is ignored in this process (`SIG_IGN`).
fn ignored(sig: libc::c_int) -> bool {
    // SAFETY: sigaction with a null new action only reads the current one.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}

/// The name of signal `sig` as shells write it (`SIGINT`).
pub fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGHUP => "SIGHUP".into(),
        n => format!("signal {n}"),
    }
}

/// The first step between timed looks.
const FIRST_INTERVAL: Duration = Duration::from_millis(5);

/// Whether an inotify or pidfd error is a kernel limit, which a waiter
/// works around (timed looks) rather than fails on: the per-user inotify
/// instances or watches, or the process's or system's descriptors.
fn is_limit(e: Errno) -> bool {
    matches!(e, Errno::MFILE | Errno::NFILE | Errno::NOSPC | Errno::NOMEM)
}

/// What [`open_pidfd`] found.
enum Pidfd {
    Open(OwnedFd),
    /// No such process.
    Gone,
    /// Out of descriptors: the caller looks again at intervals instead.
    NoDescriptor,
}

/// A pidfd for `pid`.
fn open_pidfd(pid: u32) -> Result<Pidfd> {
    let Some(p) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return Ok(Pidfd::Gone);
    };
    match rustix::process::pidfd_open(p, PidfdFlags::empty()) {
        Ok(fd) => Ok(Pidfd::Open(fd)),
        Err(Errno::SRCH) => Ok(Pidfd::Gone),
        Err(e) if is_limit(e) => Ok(Pidfd::NoDescriptor),
        Err(e) => Err(
            Error::new(Kind::of_io(&e.into()), "cannot watch lock holder")
                .because(format!("pidfd_open({pid}): {e}")),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_the_watched_file_wakes_the_waiter() {
        let dir = tempfile::tempdir().unwrap();
        let w = Watcher::for_file(dir.path(), "x.lock").unwrap();
        std::fs::write(dir.path().join("other.lock"), b"{}").unwrap();
        let soon = Instant::now() + Duration::from_millis(50);
        assert_eq!(w.wait_for(&[], Some(soon)).unwrap(), Wake::TimedOut);
        std::fs::write(dir.path().join("x.lock"), b"{}").unwrap();
        let later = Instant::now() + Duration::from_secs(5);
        assert_eq!(w.wait_for(&[], Some(later)).unwrap(), Wake::Changed);
    }

    #[test]
    fn an_exited_process_wakes_the_waiter_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let w = Watcher::for_file(dir.path(), "x.lock").unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let id = Identity::of_pid(child.id()).unwrap();
        let t = Instant::now();
        let wake = w
            .wait_for(&[id], Some(Instant::now() + Duration::from_secs(10)))
            .unwrap();
        assert_eq!(wake, Wake::Changed);
        assert!(t.elapsed() < Duration::from_secs(5));
        child.wait().unwrap();
    }

    #[test]
    fn without_a_watch_the_waiter_looks_again_at_short_intervals() {
        let dir = tempfile::tempdir().unwrap();
        let w = Watcher {
            fd: None,
            interval: Cell::new(FIRST_INTERVAL),
            only: None,
            lost: Cell::new(false),
        };
        let far = Instant::now() + Duration::from_secs(10);
        let mut steps = Vec::new();
        for _ in 0..6 {
            let t = Instant::now();
            assert_eq!(w.wait_for(&[], Some(far)).unwrap(), Wake::Changed);
            steps.push(t.elapsed());
        }
        assert!(steps[0] < Duration::from_millis(40), "{steps:?}");
        assert!(
            steps[5] <= FALLBACK_MAX_INTERVAL + Duration::from_millis(40),
            "{steps:?}"
        );
        // The deadline still ends the wait.
        let soon = Instant::now() + Duration::from_millis(1);
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(w.wait_for(&[], Some(soon)).unwrap(), Wake::TimedOut);
        drop(dir);
    }

    #[test]
    fn a_reused_pid_is_not_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let w = Watcher::for_file(dir.path(), "x.lock").unwrap();
        let me = Identity::current();
        let reused = Identity {
            start_time: me.start_time + 1,
            ..me
        };
        let wake = w
            .wait_for(&[reused], Some(Instant::now() + Duration::from_secs(10)))
            .unwrap();
        assert_eq!(wake, Wake::Changed);
    }
}
