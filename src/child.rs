//! Running a child command: spawn it, wait, and map how it ended to one exit
//! code (its own, or 128+N when signal N ended it). Shared by
//! `lock-manager run` and `error-recovery retry`.
//!
//! - [`exit_code`]: the one mapping of an [`ExitStatus`] to an exit code.
//! - [`spawn_error`]: a command that could not be started (exit 5 when it
//!   is not found).
//! - [`poll_until`]: the one deadline wait on file descriptors (a pidfd, a
//!   signal pipe or signalfd).
//! - [`BlockedSignals`]: signals blocked and read from a signalfd (the one
//!   wrapper for `run`'s forwarding and a lock wait's interrupts).
//! - [`Running`]: a child watched through its pidfd, optionally leading its
//!   own process group, which [`Running::terminate`] ends (SIGTERM, a grace
//!   period, SIGKILL) so that no process of the group outlives it.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, Signal};

use crate::error::{Error, Kind, Result};

/// How long a child has between SIGTERM and SIGKILL in [`Running::terminate`].
pub const GRACE: Duration = Duration::from_secs(2);

/// Signals blocked for this thread and readable from a signalfd instead of
/// being delivered; dropping it restores the mask saved by [`block`], so a
/// signal not read by then takes its action.
///
/// [`block`]: BlockedSignals::block
pub struct BlockedSignals {
    fd: OwnedFd,
    old_mask: libc::sigset_t,
}

impl BlockedSignals {
    /// Blocks `signals` and opens a non-blocking signalfd for them.
    pub fn block(signals: impl IntoIterator<Item = libc::c_int>) -> io::Result<BlockedSignals> {
        // SAFETY: libc calls on local, initialised sigsets; the fd is new and ours.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in signals {
                libc::sigaddset(&mut set, s);
            }
            let mut old_mask: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old_mask);
            let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
            if fd < 0 {
                let e = io::Error::last_os_error();
                libc::pthread_sigmask(libc::SIG_SETMASK, &old_mask, std::ptr::null_mut());
                return Err(e);
            }
            Ok(BlockedSignals {
                fd: OwnedFd::from_raw_fd(fd),
                old_mask,
            })
        }
    }

    /// The next pending signal, if any (read, so it is not delivered again).
    pub fn read(&self) -> Option<libc::signalfd_siginfo> {
        // SAFETY: an all-zero signalfd_siginfo is a valid value.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: reads at most one siginfo into a struct of that size.
        let n = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                size,
            )
        };
        (n == size as isize).then_some(info)
    }

    /// The mask before [`BlockedSignals::block`], for a child to restore
    /// before it execs.
    pub fn old_mask(&self) -> libc::sigset_t {
        self.old_mask
    }
}

impl AsFd for BlockedSignals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for BlockedSignals {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by `block`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old_mask, std::ptr::null_mut()) };
    }
}

/// The exit code of a finished child: its own, or 128+N for signal N.
pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

/// The error for a command that could not be started: exit 5 "command not
/// found" when there is no such program (the caller adds its hint with
/// [`not_found_hint`]).
pub fn spawn_error(e: io::Error, program: &OsStr) -> Error {
    if e.kind() == io::ErrorKind::NotFound {
        Error::new(
            Kind::DependencyMissing,
            format!("command not found: {}", program.to_string_lossy()),
        )
    } else {
        Error::io(e, "cannot run the command", program)
    }
}

/// `e` with `hint` when it is "command not found".
pub fn not_found_hint(e: Error, hint: &str) -> Error {
    if e.kind() == Kind::DependencyMissing {
        e.hint(hint)
    } else {
        e
    }
}

/// The error for a wait on a child that failed.
pub fn wait_error(e: io::Error) -> Error {
    Error::new(Kind::of_io(&e), "cannot wait for the command").because(e)
}

/// poll(2) on `fds` until one is readable (`true`), a signal interrupts the
/// wait (`true`), or `deadline` passes (`false`; `None`: never).
pub fn poll_until(fds: &[BorrowedFd<'_>], deadline: Option<Instant>) -> Result<bool> {
    loop {
        let timeout = match deadline {
            None => None,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(false);
                }
                Some(Timespec {
                    tv_sec: left.as_secs() as _,
                    tv_nsec: left.subsec_nanos() as _,
                })
            }
        };
        let mut pfds: Vec<PollFd<'_>> = fds
            .iter()
            .map(|fd| PollFd::new(fd, PollFlags::IN))
            .collect();
        match rustix::event::poll(&mut pfds, timeout.as_ref()) {
            Ok(0) => continue,
            Ok(_) => return Ok(true),
            Err(Errno::INTR) => return Ok(true),
            Err(e) => {
                return Err(Error::new(Kind::of_io(&e.into()), "cannot wait").because(e));
            }
        }
    }
}

/// A running child, watched through its pidfd.
pub struct Running {
    child: Child,
    pidfd: OwnedFd,
    /// The child leads its own process group.
    group: bool,
}

impl Running {
    /// Spawns `cmd`, in a process group of its own when `group`. Errors as
    /// [`spawn_error`].
    pub fn spawn(cmd: &mut Command, group: bool) -> Result<Running> {
        if group {
            cmd.process_group(0);
        }
        let child = cmd.spawn().map_err(|e| spawn_error(e, cmd.get_program()))?;
        Running::adopt(child, group)
    }

    /// Watches `child`, spawned by the caller (in a process group of its
    /// own when `group`: `Command::process_group(0)`).
    pub fn adopt(child: Child, group: bool) -> Result<Running> {
        let pid = Pid::from_raw(child.id() as i32).expect("a child has a positive pid");
        let pidfd = rustix::process::pidfd_open(pid, PidfdFlags::empty()).map_err(|e| {
            Error::new(Kind::of_io(&e.into()), "cannot watch the command").because(e)
        })?;
        Ok(Running {
            child,
            pidfd,
            group,
        })
    }

    /// The child's pid.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32).expect("a child has a positive pid")
    }

    /// The pidfd, readable once the child has exited.
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// The child's status if it has exited (reaping it).
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        self.child.try_wait().map_err(wait_error)
    }

    /// Sends `sig` to the child's group (or the child alone without one).
    pub fn signal(&self, sig: Signal) {
        let _ = if self.group {
            rustix::process::kill_process_group(self.pid(), sig)
        } else {
            rustix::process::pidfd_send_signal(&self.pidfd, sig)
        };
    }

    /// SIGTERM, up to [`GRACE`] for the group to exit, then SIGKILL; reaps
    /// the child. Returns its status.
    pub fn terminate(&mut self) -> Result<ExitStatus> {
        let end = Instant::now() + GRACE;
        self.signal(Signal::TERM);
        let status = loop {
            if let Some(s) = self.try_wait()? {
                break Some(s);
            }
            if !poll_until(&[self.pidfd.as_fd()], Some(end))? {
                break None;
            }
        };
        let status = match status {
            Some(s) => {
                // The child is gone; give the rest of its group the same grace.
                self.wait_group(end);
                s
            }
            None => {
                self.signal(Signal::KILL);
                self.child.wait().map_err(wait_error)?
            }
        };
        if self.group {
            let _ = rustix::process::kill_process_group(self.pid(), Signal::KILL);
            self.wait_group(Instant::now() + GRACE);
        }
        Ok(status)
    }

    /// Waits until no process of the child's group is left, or `end`.
    /// Orphans of the group are ours to reap when we are their subreaper, so
    /// a zombie is not mistaken for a survivor. No pidfd exists for a group:
    /// a short poll, only on this timeout path.
    fn wait_group(&self, end: Instant) {
        if !self.group {
            return;
        }
        use rustix::process::{WaitOptions, test_kill_process_group, waitpgid};
        loop {
            while let Ok(Some(_)) = waitpgid(self.pid(), WaitOptions::NOHANG) {}
            if test_kill_process_group(self.pid()).is_err() || Instant::now() >= end {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_death_is_128_plus_n() {
        let status = Command::new("sh")
            .args(["-c", "kill -TERM $$"])
            .status()
            .unwrap();
        assert_eq!(exit_code(status), 128 + 15);
        let status = Command::new("sh").args(["-c", "exit 7"]).status().unwrap();
        assert_eq!(exit_code(status), 7);
    }

    #[test]
    fn a_missing_command_is_exit_5() {
        let e = Running::spawn(&mut Command::new("/no/such/command"), false)
            .err()
            .unwrap();
        assert_eq!(e.code(), crate::exit::Code::DependencyMissing);
        assert!(e.hint_text().is_none());
    }
}
