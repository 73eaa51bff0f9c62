//! Who holds a lock: a process identified so that its death, or the reuse of
//! its pid by another process, is never mistaken for the holder still running.
//!
//! An [`Identity`] is a pid plus that process's start time (field 22 of
//! `/proc/PID/stat`, in clock ticks since boot), the kernel's boot id and the
//! host name. The same pid with another start time is another process; the
//! same start time on another boot is a pid from before a reboot. A pid is
//! only meaningful in the pid namespace it was read in, so the identity also
//! names that namespace (the inode of `/proc/self/ns/pid` of the process that
//! wrote it): a holder from another namespace — `unshare -p`, a container
//! sharing the host name — cannot be checked from here and is never judged
//! dead or reused.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A process, identified beyond its pid.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Identity {
    pub pid: u32,
    pub start_time: u64,
    pub boot_id: String,
    pub host: String,
    /// The pid namespace `pid` is a number in (`/proc/self/ns/pid` inode of
    /// the recording process); absent in records written before it existed,
    /// which are read as this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_ns: Option<u64>,
}

/// Two identities are the same process when pid, start time, boot and host
/// agree, and so do their pid namespaces where both are known (an old record
/// without one still matches its owner).
impl PartialEq for Identity {
    fn eq(&self, other: &Identity) -> bool {
        self.pid == other.pid
            && self.start_time == other.start_time
            && self.boot_id == other.boot_id
            && self.host == other.host
            && match (self.pid_ns, other.pid_ns) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl Eq for Identity {}

/// Whether a recorded process still runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// Same pid, same start time, same boot, this host.
    Live,
    /// Gone, or its pid now belongs to another process, or from another boot.
    Dead,
    /// On another host or in another pid namespace: it cannot be checked
    /// from here, so it is treated as live and never taken over.
    Unknown,
}

impl Identity {
    /// The identity of the running process `pid`; an error if there is none.
    pub fn of_pid(pid: u32) -> Result<Identity> {
        let start_time = start_time_of(pid).ok_or_else(|| {
            Error::validation(format!("no running process with pid {pid}"))
                .hint("pass the pid of a live process with --owner or LOCK_OWNER_PID")
        })?;
        Ok(Identity::with_start_time(pid, start_time))
    }

    /// The identity of our own child `pid`, even once it has exited: an
    /// unreaped child's pid cannot be reused, and its start time stays readable.
    pub fn of_child(pid: u32) -> Result<Identity> {
        let start_time = read_stat_start_time(pid, true).ok_or_else(|| {
            Error::general(format!("cannot read the start time of child pid {pid}"))
        })?;
        Ok(Identity::with_start_time(pid, start_time))
    }

    fn with_start_time(pid: u32, start_time: u64) -> Identity {
        Identity {
            pid,
            start_time,
            boot_id: boot_id().to_string(),
            host: host().to_string(),
            pid_ns: pid_ns(),
        }
    }

    /// This process.
    pub fn current() -> Identity {
        Identity::of_pid(std::process::id()).expect("/proc/self/stat is readable")
    }

    /// Checks the process against /proc now.
    pub fn liveness(&self) -> Liveness {
        if self.unverifiable().is_some() {
            return Liveness::Unknown;
        }
        match self.death() {
            None => Liveness::Live,
            Some(_) => Liveness::Dead,
        }
    }

    /// Why this process cannot be checked from here, or `None` when it can:
    /// `"other host"` or `"other pid namespace"` (a record from before a
    /// reboot of this host can be checked: it is dead).
    pub fn unverifiable(&self) -> Option<&'static str> {
        if self.host != host() {
            return Some("other host");
        }
        if self.boot_id == boot_id()
            && let (Some(theirs), Some(ours)) = (self.pid_ns, pid_ns())
            && theirs != ours
        {
            return Some("other pid namespace");
        }
        None
    }

    /// Whether the process may still run (live, or not checkable from here).
    pub fn is_live(&self) -> bool {
        self.liveness() != Liveness::Dead
    }

    /// Why the process is no longer the one recorded, or `None` while it may
    /// still run: `"other-boot"`, `"pid-reused"` (the pid now names a process
    /// with another start time) or `"dead"` (no such process, or a zombie).
    pub fn death(&self) -> Option<&'static str> {
        if self.host != host() {
            return None;
        }
        if self.boot_id == boot_id() && self.unverifiable().is_some() {
            return None;
        }
        if self.boot_id != boot_id() {
            return Some("other-boot");
        }
        match start_time_of(self.pid) {
            Some(t) if t == self.start_time => None,
            Some(_) => Some("pid-reused"),
            None => Some("dead"),
        }
    }

    /// Whether the process runs on this host and in our pid namespace, so
    /// that /proc and pidfds describe it.
    pub fn is_local(&self) -> bool {
        self.unverifiable().is_none()
    }

    /// Whether two identities are the same process.
    pub fn same_process(&self, other: &Identity) -> bool {
        self == other
    }
}

/// The lock owner for this invocation: `--owner PID`, else `LOCK_OWNER_PID`,
/// else the parent process (the calling shell).
pub fn resolve_owner(flag: Option<u32>) -> Result<Identity> {
    let pid = match flag {
        Some(p) => p,
        None => match std::env::var("LOCK_OWNER_PID") {
            Ok(v) if !v.trim().is_empty() => v.trim().parse().map_err(|_| {
                Error::validation(format!("bad LOCK_OWNER_PID '{v}'"))
                    .hint("set it to a process id, such as $$")
            })?,
            _ => rustix::process::getppid().map_or(1, |p| p.as_raw_nonzero().get() as u32),
        },
    };
    if pid == 0 {
        return Err(
            Error::validation("owner pid 0 is not a process").hint("pass a real pid, such as $$")
        );
    }
    Identity::of_pid(pid)
}

/// The command name of `pid` (`/proc/PID/comm`, at most 15 bytes), if it runs.
pub fn comm(pid: u32) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(text.trim_end_matches('\n').to_string())
}

/// The command names of the shells a lock owner is expected to be: a script
/// or a terminal's shell that lives across its `acquire` and `release`.
const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "ksh93", "mksh", "pdksh", "oksh", "loksh", "yash", "posh",
    "ash", "busybox", "fish", "tcsh", "csh", "rbash", "elvish", "nu", "xonsh",
];

/// Whether a process of this command name is a shell ([`SHELLS`]).
pub fn is_shell(comm: &str) -> bool {
    SHELLS.contains(&comm)
}

thread_local! {
    /// Start times already read during a [`snapshot`], by pid.
    static SNAPSHOT: RefCell<Option<HashMap<u32, Option<u64>>>> = const { RefCell::new(None) };
}

/// Runs `f` reading each pid's start time at most once: for reports over
/// many records held by few processes (`list`, `status`, `clean`). Inside,
/// a process that dies stays "live" until `f` returns — safe for a report or
/// a cleanup (it only errs towards keeping a lock), wrong for a waiter, which
/// must never run inside a snapshot.
pub fn snapshot<T>(f: impl FnOnce() -> T) -> T {
    SNAPSHOT.with(|s| *s.borrow_mut() = Some(HashMap::new()));
    let out = f();
    SNAPSHOT.with(|s| *s.borrow_mut() = None);
    out
}

/// The owner a state-changing call acts for: as [`resolve_owner`], except
/// that a calling shell which has already exited owns nothing (`None`);
/// an explicit `--owner` that is not running is still an error.
pub fn caller(flag: Option<u32>) -> Result<Option<Identity>> {
    match resolve_owner(flag) {
        Ok(id) => Ok(Some(id)),
        Err(e) if flag.is_some() => Err(e),
        Err(_) => Ok(None),
    }
}

/// The start time of `pid` in clock ticks after boot, if it runs.
pub fn start_time_of(pid: u32) -> Option<u64> {
    let cached = SNAPSHOT.with(|s| s.borrow().as_ref().map(|m| m.get(&pid).copied()));
    match cached {
        Some(Some(t)) => t,
        Some(None) => {
            let t = read_start_time(pid);
            SNAPSHOT.with(|s| {
                if let Some(m) = s.borrow_mut().as_mut() {
                    m.insert(pid, t);
                }
            });
            t
        }
        None => read_start_time(pid),
    }
}

fn read_start_time(pid: u32) -> Option<u64> {
    read_stat_start_time(pid, false)
}

/// Field 22 of /proc/PID/stat; `None` for a zombie unless `zombie_ok`.
fn read_stat_start_time(pid: u32, zombie_ok: bool) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    // `rest` starts at field 3 (state); the start time is field 22.
    let field = rest.split_ascii_whitespace().nth(22 - 3)?;
    // A zombie has exited: it holds nothing, though its pid is not yet free.
    if rest.starts_with('Z') && !zombie_ok {
        return None;
    }
    field.parse().ok()
}

/// The kernel's boot id, read once per process.
pub fn boot_id() -> &'static str {
    static BOOT: OnceLock<String> = OnceLock::new();
    BOOT.get_or_init(|| {
        fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    })
}

/// The inode of this process's pid namespace (`/proc/self/ns/pid` reads
/// `pid:[N]`), read once per process; `None` if /proc does not say.
pub fn pid_ns() -> Option<u64> {
    static NS: OnceLock<Option<u64>> = OnceLock::new();
    *NS.get_or_init(|| {
        let link = fs::read_link("/proc/self/ns/pid").ok()?;
        let text = link.to_str()?;
        text.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
    })
}

/// Seconds since boot on CLOCK_BOOTTIME: steady (wall-clock steps do not
/// move it), counting suspend, and the same for every process of one boot.
pub fn boottime() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec; CLOCK_BOOTTIME exists since Linux 2.6.39.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// This host's name, read once per process.
///
/// `WFSTATE_TEST_HOST_ID`, when set, replaces it: a test-only override
/// that makes one group of processes on this machine look like another
/// host to the rest, so that their holds must be judged by leases (Redis
/// backend), never by pids.
pub fn host() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| match std::env::var("WFSTATE_TEST_HOST_ID") {
        Ok(h) if !h.is_empty() && !h.contains(['/', ':']) => h,
        _ => crate::audit::event::hostname(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_process_is_live_and_a_changed_start_time_is_dead() {
        let me = Identity::current();
        assert_eq!(me.liveness(), Liveness::Live);
        let reused = Identity {
            start_time: me.start_time + 1,
            ..me.clone()
        };
        assert_eq!(reused.liveness(), Liveness::Dead);
        let old_boot = Identity {
            boot_id: "other".into(),
            ..me.clone()
        };
        assert_eq!(old_boot.liveness(), Liveness::Dead);
        let remote = Identity {
            host: "elsewhere.invalid".into(),
            ..me
        };
        assert_eq!(remote.liveness(), Liveness::Unknown);
        assert_eq!(remote.death(), None);
        assert_eq!(reused.death(), Some("pid-reused"));
        assert_eq!(old_boot.death(), Some("other-boot"));
        let gone = Identity {
            pid: u32::MAX - 1,
            ..reused.clone()
        };
        assert_eq!(gone.death(), Some("dead"));
    }

    #[test]
    fn a_holder_in_another_pid_namespace_is_never_judged_dead() {
        let me = Identity::current();
        assert!(me.pid_ns.is_some(), "/proc/self/ns/pid is readable here");
        // Its pid names some other process here, or none: neither says anything.
        let inside = Identity {
            pid_ns: me.pid_ns.map(|n| n + 1),
            start_time: me.start_time + 1,
            ..me.clone()
        };
        assert_eq!(inside.liveness(), Liveness::Unknown);
        assert_eq!(inside.death(), None);
        assert_eq!(inside.unverifiable(), Some("other pid namespace"));
        assert!(!inside.is_local());
        // From before a reboot, the namespace number means nothing: dead.
        let old = Identity {
            boot_id: "other".into(),
            ..inside
        };
        assert_eq!(old.death(), Some("other-boot"));
        // A record from before namespaces were recorded still names its owner.
        let legacy = Identity {
            pid_ns: None,
            ..me.clone()
        };
        assert_eq!(legacy, me);
        assert_eq!(legacy.liveness(), Liveness::Live);
    }

    #[test]
    fn shells_are_known_by_name_and_others_are_not() {
        for sh in ["sh", "bash", "dash", "zsh", "busybox", "fish"] {
            assert!(is_shell(sh), "{sh}");
        }
        for other in [
            "make", "xargs", "timeout", "env", "nohup", "python3", "bash5",
        ] {
            assert!(!is_shell(other), "{other}");
        }
        assert!(comm(std::process::id()).is_some_and(|c| !c.is_empty()));
        assert_eq!(comm(u32::MAX - 1), None);
    }

    #[test]
    fn no_such_pid_has_no_start_time() {
        assert!(start_time_of(u32::MAX - 1).is_none());
    }
}
