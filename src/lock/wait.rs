//! Waiting for a lock without polling.
//!
//! The holder of a cross-invocation lock is a shell that holds no file
//! descriptor, so a waiter cannot block in flock(2) on it. Instead it blocks
//! in poll(2) on an inotify watch of `.locks/` (woken when any record is
//! replaced or removed) together with a pidfd of each holder (readable the
//! instant that process exits, so a dead owner's lock is taken over at once).
//!
//! Create the [`Watcher`] *before* reading the record you decide on, so that
//! a change between the read and the wait still wakes the waiter.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::Instant;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::inotify;
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags};

use crate::error::{Error, Kind, Result};

/// An inotify watch on the locks folder.
pub struct Watcher {
    fd: OwnedFd,
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
    /// Watches `dir` for records being replaced, removed or written.
    pub fn new(dir: &Path) -> Result<Watcher> {
        let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
            .map_err(|e| Error::io(e.into(), "cannot watch folder", dir))?;
        inotify::add_watch(
            &fd,
            dir,
            inotify::WatchFlags::MOVED_TO
                | inotify::WatchFlags::DELETE
                | inotify::WatchFlags::CLOSE_WRITE
                | inotify::WatchFlags::CREATE,
        )
        .map_err(|e| Error::io(e.into(), "cannot watch folder", dir))?;
        Ok(Watcher { fd })
    }

    /// Blocks until a record changes, one of `pids` exits, or `deadline` passes
    /// (`None`: no deadline).
    pub fn wait(&self, pids: &[u32], deadline: Option<Instant>) -> Result<Wake> {
        let mut pidfds: Vec<OwnedFd> = Vec::with_capacity(pids.len());
        for &pid in pids {
            let Some(p) = Pid::from_raw(pid as i32) else {
                continue;
            };
            match rustix::process::pidfd_open(p, PidfdFlags::empty()) {
                Ok(fd) => pidfds.push(fd),
                // Already gone: nothing to wait for, look again now.
                Err(Errno::SRCH) => return Ok(Wake::Changed),
                Err(e) => {
                    return Err(
                        Error::new(Kind::of_io(&e.into()), "cannot watch lock holder")
                            .because(format!("pidfd_open({pid}): {e}")),
                    );
                }
            }
        }
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
            for fd in &pidfds {
                fds.push(PollFd::new(fd, PollFlags::IN));
            }
            match rustix::event::poll(&mut fds, timeout.as_ref()) {
                Ok(0) => continue, // re-check the deadline
                Ok(_) => {
                    self.drain();
                    return Ok(Wake::Changed);
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

    /// Reads and discards pending events.
    fn drain(&self) {
        let mut buf = [0u8; 4096];
        while let Ok(n) = rustix::io::read(self.fd.as_fd(), &mut buf) {
            if n == 0 {
                break;
            }
        }
    }
}
