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
//! What this does not promise: that a wake-up means the lock is free. Every
//! wake-up only says "look again"; the caller re-reads the record under its
//! mutex and decides. Holders on other hosts cannot be watched by pidfd: for
//! them only a record change or the deadline wakes the waiter.

use std::cell::Cell;
use std::ffi::CString;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Instant;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::inotify;
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags};

use super::process::{Identity, start_time_of};
use crate::error::{Error, Kind, Result};

/// An inotify watch on the locks folder, optionally narrowed to one file.
pub struct Watcher {
    fd: OwnedFd,
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
        let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
            .map_err(|e| Error::io(e.into(), "cannot watch folder", dir))?;
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
        )
        .map_err(|e| Error::io(e.into(), "cannot watch folder", dir))?;
        Ok(Watcher {
            fd,
            only,
            lost: Cell::new(false),
        })
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
        for &pid in pids {
            match open_pidfd(pid)? {
                Some(fd) => pidfds.push(fd),
                // Already gone: nothing to wait for, look again now.
                None => return Ok(Wake::Changed),
            }
        }
        self.poll(&pidfds, deadline)
    }

    /// Blocks until a record changes, one of the `processes` (holders, or
    /// the waiters we queue behind) exits, or `deadline` passes.
    pub fn wait_for(&self, processes: &[Identity], deadline: Option<Instant>) -> Result<Wake> {
        let mut pidfds: Vec<OwnedFd> = Vec::with_capacity(processes.len());
        for id in processes.iter().filter(|id| id.is_local()) {
            let Some(fd) = open_pidfd(id.pid)? else {
                return Ok(Wake::Changed);
            };
            // The pid may have been freed and reused since the record was
            // read: then the pidfd names a stranger, and the holder is gone.
            if start_time_of(id.pid) != Some(id.start_time) {
                return Ok(Wake::Changed);
            }
            pidfds.push(fd);
        }
        self.poll(&pidfds, deadline)
    }

    fn poll(&self, pidfds: &[OwnedFd], deadline: Option<Instant>) -> Result<Wake> {
        loop {
            let timeout = match deadline {
                None => None,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(Wake::TimedOut);
                    }
                    Some(Timespec {
                        tv_sec: left.as_secs() as _,
                        tv_nsec: left.subsec_nanos() as _,
                    })
                }
            };
            let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(1 + pidfds.len());
            fds.push(PollFd::new(&self.fd, PollFlags::IN));
            for fd in pidfds {
                fds.push(PollFd::new(fd, PollFlags::IN));
            }
            match rustix::event::poll(&mut fds, timeout.as_ref()) {
                Ok(0) => continue, // re-check the deadline
                Ok(_) => {
                    if fds[1..].iter().any(|f| !f.revents().is_empty()) {
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
        let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = inotify::Reader::new(&self.fd, &mut buf);
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

/// A pidfd for `pid`; `None` if there is no such process.
fn open_pidfd(pid: u32) -> Result<Option<OwnedFd>> {
    let Some(p) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return Ok(None);
    };
    match rustix::process::pidfd_open(p, PidfdFlags::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::SRCH) => Ok(None),
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
