//! The lock record: `.locks/NAME.lock`, one JSON document per named lock
//! (schemas/lock.schema.json), and the companion `.locks/NAME.mutex`.
//!
//! Protocol, shared by `lock-manager` and the `state` transactions of
//! `state-manager`:
//!
//! - A record is only changed, created or removed while holding an exclusive
//!   flock(2) on `NAME.mutex` ([`Mutex`]). Record operations hold it for
//!   microseconds; a `state-manager` read-modify-write holds the `state`
//!   mutex for its whole transaction, so every record change waits for it.
//! - A record is replaced atomically (temp + rename), so readers never lock
//!   and never see half a record. A record that does not parse is therefore
//!   corruption, reported as such, never judged "stale" and stolen.
//! - Waiting for a mutex honours the caller's deadline: a transaction that
//!   runs long (or a stopped process holding it) makes others time out with
//!   exit 2, never block without end. The wait is a blocking flock(2) that a
//!   per-thread timer signal interrupts at the deadline (see [`Mutex::lock_until`]).
//! - A holder is live while its process runs (see [`super::process`]) and its
//!   TTL has not passed. A record whose holders are all dead is stale. A TTL
//!   is measured on CLOCK_BOOTTIME, which wall-clock steps (NTP, `date -s`)
//!   do not move; the RFC 3339 `acquired` time is for display, and for
//!   records from another boot or from before the boot-time field existed.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant};

use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::process::{self, Identity};
use crate::config::Config;
use crate::durable::{self, Durability};
use crate::error::{Error, Kind, Result};

/// Shared or exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockType {
    Shared,
    Exclusive,
}

impl LockType {
    pub fn as_str(self) -> &'static str {
        match self {
            LockType::Shared => "shared",
            LockType::Exclusive => "exclusive",
        }
    }

    /// Parses `shared` or `exclusive` (exit 4 otherwise).
    pub fn parse(s: &str) -> Result<LockType> {
        match s {
            "shared" => Ok(LockType::Shared),
            "exclusive" => Ok(LockType::Exclusive),
            other => Err(Error::validation(format!("bad lock type '{other}'"))
                .hint("use 'shared' or 'exclusive'")),
        }
    }
}

/// One holder of a lock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    #[serde(flatten)]
    pub id: Identity,
    /// When this holder acquired the lock (RFC 3339).
    pub acquired: String,
    /// The same instant on CLOCK_BOOTTIME (seconds since boot), by which
    /// the TTL is measured while the boot id matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acquired_boottime: Option<f64>,
    /// Seconds after `acquired` at which the hold lapses, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<f64>,
    /// Caller-supplied JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

impl Holder {
    /// Live: the process runs and the TTL, if any, has not passed.
    pub fn is_live(&self) -> bool {
        self.staleness().is_none()
    }

    /// Why this holder no longer holds the lock (`"ttl-expired"`,
    /// `"other-boot"`, `"pid-reused"` or `"dead"`), or `None` while it does.
    /// Age alone never makes a holder stale.
    pub fn staleness(&self) -> Option<&'static str> {
        if self.expires_in().is_some_and(|left| left.is_zero()) {
            return Some("ttl-expired");
        }
        self.id.death()
    }

    /// How long until the TTL passes (zero once it has); `None` without a TTL.
    ///
    /// Measured on CLOCK_BOOTTIME when the holder recorded it on this boot,
    /// so a wall-clock step neither expires a live hold early nor keeps a
    /// lapsed one; otherwise (an older record) on the wall clock.
    pub fn expires_in(&self) -> Option<Duration> {
        let ttl = self.ttl?;
        let age = match self.acquired_boottime {
            Some(at) if self.id.boot_id == process::boot_id() => process::boottime() - at,
            _ => {
                let at = chrono::DateTime::parse_from_rfc3339(&self.acquired).ok()?;
                let age = chrono::Utc::now().signed_duration_since(at);
                age.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6
            }
        };
        Some(Duration::from_secs_f64((ttl - age).clamp(0.0, 1e9)))
    }
}

/// A request waiting for a lock; new shared requests queue behind an exclusive waiter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Waiter {
    #[serde(flatten)]
    pub id: Identity,
    #[serde(rename = "type")]
    pub kind: LockType,
    pub since: String,
}

/// What a record says about its lock, by [`Record::standing`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// A live holder has it.
    Held,
    /// No live holder, but a live waiter is about to take it: not stale.
    Waited,
    /// Holders recorded, none live, nobody waiting: a dead owner's record.
    Stale,
    /// No holder and no live waiter (a killed waiter's leftover): unlocked.
    Vacant,
}

impl Standing {
    /// Whether `clean` removes a record of this standing: nobody live is in it.
    pub fn is_removable(self) -> bool {
        matches!(self, Standing::Stale | Standing::Vacant)
    }
}

/// The record of one named lock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: LockType,
    /// When the record last changed (RFC 3339).
    pub timestamp: String,
    pub holders: Vec<Holder>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiters: Vec<Waiter>,
}

impl Record {
    /// An empty record of lock `name`.
    pub fn new(name: &str, kind: LockType) -> Record {
        Record {
            name: name.to_string(),
            kind,
            timestamp: String::new(),
            holders: Vec::new(),
            waiters: Vec::new(),
        }
    }

    /// Whether any holder is live.
    pub fn is_held(&self) -> bool {
        self.holders.iter().any(Holder::is_live)
    }

    /// The live holders.
    pub fn live_holders(&self) -> impl Iterator<Item = &Holder> {
        self.holders.iter().filter(|h| h.is_live())
    }

    /// What the record says about its lock now: the one staleness rule,
    /// which `check`, `list`, `status`, `clean` and the state tools' health
    /// and cleanup all follow. Each holder's and waiter's liveness is read
    /// once.
    pub fn standing(&self) -> Standing {
        if self.is_held() {
            Standing::Held
        } else if self.waiters.iter().any(|w| w.id.is_live()) {
            Standing::Waited
        } else if !self.holders.is_empty() {
            Standing::Stale
        } else {
            Standing::Vacant
        }
    }

    /// Whether the record only names holders that are gone (and no live
    /// waiter): what `check` calls stale, `list` marks STALE and `clean`
    /// removes.
    pub fn is_stale(&self) -> bool {
        self.standing() == Standing::Stale
    }

    /// Drops dead holders and waiters; returns how many holders were dropped.
    pub fn prune(&mut self) -> usize {
        let before = self.holders.len();
        self.holders.retain(Holder::is_live);
        self.waiters.retain(|w| w.id.is_live());
        before - self.holders.len()
    }

    /// The holder that is `owner`, if any.
    pub fn holder(&self, owner: &Identity) -> Option<&Holder> {
        self.holders.iter().find(|h| h.id.same_process(owner))
    }
}

/// `.locks/NAME.lock`
pub fn record_path(cfg: &Config, name: &str) -> PathBuf {
    cfg.locks_dir().join(format!("{name}.lock"))
}

/// `.locks/NAME.mutex`
pub fn mutex_path(cfg: &Config, name: &str) -> PathBuf {
    cfg.locks_dir().join(format!("{name}.mutex"))
}

/// Reads a record: `None` when there is none, exit 3 when it does not parse.
pub fn load(path: &Path) -> Result<Option<Record>> {
    let bytes = match durable::read_limited(path, crate::config::MAX_INPUT_BYTES) {
        Ok(b) => b,
        Err(e) if e.io_kind() == Some(io::ErrorKind::NotFound) => return Ok(None),
        Err(e) => return Err(e),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        Error::corruption("lock record does not parse")
            .with_path(path)
            .because(e)
            .hint("inspect it, then remove it with 'lock-manager clean --force'")
    })
}

/// Writes a record atomically (not fsynced: records never outlive a boot).
/// Called holding the record's [`Mutex`], so its temp file has one fixed
/// name and no write lists `.locks/` ([`durable::replace_serialized`]).
pub fn store(path: &Path, record: &Record) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(record).expect("a record always serializes");
    durable::replace_serialized(path, &bytes, Durability::Atomic)
}

/// Removes a record (holding its [`Mutex`]); a missing one is fine.
pub fn remove(path: &Path) -> Result<()> {
    durable::remove_serialized(path)
}

/// An exclusive flock(2) on `NAME.mutex`: the right to change `NAME.lock`.
/// Released when dropped, or by the kernel if the process dies.
///
/// A mutex file may be unlinked only by a process that holds it
/// ([`Mutex::remove_file`]: whoever removes the record, and `clean`), so
/// `.locks/` keeps no mutex file per name ever used; [`Mutex::lock`] checks after
/// locking that the file it locked is still the one at the path, so a
/// locker can never hold an unlinked file while another locks its successor.
#[must_use = "the mutex is released as soon as the guard is dropped"]
#[derive(Debug)]
pub struct Mutex {
    file: File,
    path: PathBuf,
}

/// A mutex not had by its deadline: who holds it, if /proc/locks says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Busy {
    pub holder_pid: Option<u32>,
}

impl Busy {
    /// Why the wait failed, for an error's "because".
    pub fn describe(&self, name: &str) -> String {
        let by = self
            .holder_pid
            .map_or(String::new(), |p| format!(" (pid {p})"));
        format!(
            "another process{by} holds .locks/{name}.mutex: a running state transaction, or a process stopped in the middle of a lock operation"
        )
    }
}

/// Even a zero timeout waits this long for a mutex, which record changes
/// hold for microseconds: `acquire NAME 0` must not fail because another
/// lock operation was changing the record at that instant.
pub const MUTEX_GRACE: Duration = Duration::from_millis(100);

impl Mutex {
    /// Waits until the mutex of lock `name` is ours, at most LOCK_TIMEOUT
    /// (exit 2 after). Its holders keep it for microseconds, or for one
    /// state transaction.
    pub fn lock(cfg: &Config, name: &str) -> Result<Mutex> {
        let started = Instant::now();
        match Mutex::lock_until(cfg, name, started + cfg.lock_timeout)? {
            Ok(m) => Ok(m),
            Err(busy) => Err(Error::new(
                Kind::LockTimeout,
                format!(
                    "timed out after {:.1}s waiting for lock '{name}'",
                    started.elapsed().as_secs_f64()
                ),
            )
            .because(busy.describe(name))
            .hint("wait longer (LOCK_TIMEOUT), or find the process with 'lock-manager status'")),
        }
    }

    /// Waits until the mutex of lock `name` is ours or `deadline` passes
    /// (then `Ok(Err(Busy))`; never sooner than [`MUTEX_GRACE`] from now).
    ///
    /// The wait is a blocking flock(2), interrupted by a timer signal aimed
    /// at this thread at the deadline (SIGALRM, whose handler does nothing
    /// and is installed without SA_RESTART, so flock returns EINTR). The
    /// timer repeats every few milliseconds after the deadline, so a signal
    /// that lands just before flock is entered cannot leave it blocked.
    pub fn lock_until(
        cfg: &Config,
        name: &str,
        deadline: Instant,
    ) -> Result<std::result::Result<Mutex, Busy>> {
        let deadline = deadline.max(Instant::now() + MUTEX_GRACE);
        durable::ensure_dir(&cfg.locks_dir(), &cfg.root)?;
        let path = mutex_path(cfg, name);
        durable::check_not_escaping(&path, &cfg.root)?;
        // A FIFO, socket or device here is refused, never opened.
        if let Ok(m) = fs::symlink_metadata(&path)
            && !m.is_file()
            && !m.file_type().is_symlink()
        {
            return Err(durable::not_regular(&path, m.file_type()));
        }
        loop {
            // Opened read-only: closing a descriptor opened for writing would
            // raise IN_CLOSE_WRITE in `.locks/` and wake every waiter for nothing.
            let fd = rustix::fs::open(
                &path,
                // NONBLOCK: a FIFO planted here must not hang the open.
                OFlags::RDONLY
                    | OFlags::CREATE
                    | OFlags::NOFOLLOW
                    | OFlags::CLOEXEC
                    | OFlags::NONBLOCK
                    | OFlags::NOCTTY,
                Mode::from_raw_mode(0o600),
            )
            .map_err(|e| Error::io(e.into(), "cannot open lock mutex", &path))?;
            let file = File::from(fd);
            let meta = file
                .metadata()
                .map_err(|e| Error::io(e, "cannot open lock mutex", &path))?;
            if !meta.is_file() {
                return Err(durable::not_regular(&path, meta.file_type()));
            }
            let locked = flock_until(&file, deadline).map_err(|e| {
                Error::new(Kind::of_io(&e), "cannot lock mutex")
                    .with_path(&path)
                    .because(e)
            })?;
            if !locked {
                return Ok(Err(Busy {
                    holder_pid: flock_holder(&file),
                }));
            }
            // `clean` may have unlinked the file while we waited for it.
            let locked = rustix::fs::fstat(&file);
            let current = rustix::fs::lstat(&path);
            if let (Ok(a), Ok(b)) = (locked, current)
                && (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
            {
                return Ok(Ok(Mutex { file, path }));
            }
        }
    }

    /// Unlinks the mutex file while holding it (for a lock with no record).
    pub fn remove_file(self) -> Result<()> {
        let result = fs::remove_file(&self.path);
        drop(self.file);
        match result {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(Error::io(e, "cannot remove lock mutex", &self.path))
            }
            _ => Ok(()),
        }
    }
}

/// Takes an exclusive flock on `file`; `false` if `deadline` passed first.
fn flock_until(file: &File, deadline: Instant) -> io::Result<bool> {
    match rustix::fs::flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => return Ok(true),
        Err(Errno::WOULDBLOCK) => {}
        Err(e) => return Err(e.into()),
    }
    let _alarm = Alarm::arm(deadline)?;
    loop {
        match rustix::fs::flock(file, FlockOperation::LockExclusive) {
            Ok(()) => return Ok(true),
            Err(Errno::INTR) if Instant::now() >= deadline => return Ok(false),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// The pid that holds a flock on `file`, from /proc/locks.
fn flock_holder(file: &File) -> Option<u32> {
    let st = rustix::fs::fstat(file).ok()?;
    let (major, minor) = (rustix::fs::major(st.st_dev), rustix::fs::minor(st.st_dev));
    let key = format!("{major:02x}:{minor:02x}:{}", st.st_ino);
    let locks = fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        // `N: FLOCK ADVISORY WRITE PID DEV:INO ...`; waiters have a `->` field.
        if fields.get(1) != Some(&"FLOCK") || fields.get(5) != Some(&key.as_str()) {
            return None;
        }
        fields.get(4)?.parse().ok()
    })
}

/// A timer that sends SIGALRM to this thread at a deadline and every few
/// milliseconds after it, until dropped.
struct Alarm {
    timer: libc::timer_t,
    /// The thread's signal mask before SIGALRM was unblocked for the wait.
    mask: libc::sigset_t,
}

extern "C" fn on_alarm(_: libc::c_int) {}

impl Alarm {
    fn arm(deadline: Instant) -> io::Result<Alarm> {
        static HANDLER: Once = Once::new();
        // SAFETY: plain libc calls on zero-initialised C structs; the handler
        // is async-signal-safe (it does nothing). It is installed once for
        // the process and kept: restoring the old action while another
        // thread's timer is armed would let its SIGALRM kill the process.
        unsafe {
            HANDLER.call_once(|| {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_alarm as *const () as libc::sighandler_t;
                sa.sa_flags = 0; // no SA_RESTART: flock must return EINTR
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut());
            });
            let mut unblock: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut unblock);
            libc::sigaddset(&mut unblock, libc::SIGALRM);
            let mut mask: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &unblock, &mut mask);
            let mut sev: libc::sigevent = std::mem::zeroed();
            sev.sigev_notify = libc::SIGEV_THREAD_ID;
            sev.sigev_signo = libc::SIGALRM;
            sev.sigev_notify_thread_id = libc::gettid();
            let mut timer: libc::timer_t = std::mem::zeroed();
            if libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut timer) != 0 {
                let e = io::Error::last_os_error();
                libc::pthread_sigmask(libc::SIG_SETMASK, &mask, std::ptr::null_mut());
                return Err(e);
            }
            let alarm = Alarm { timer, mask };
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_micros(1));
            let spec = libc::itimerspec {
                it_value: timespec(left),
                it_interval: timespec(Duration::from_millis(5)),
            };
            if libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(alarm)
        }
    }
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    }
}

impl Drop for Alarm {
    fn drop(&mut self) {
        // SAFETY: the timer was created by `arm` and is deleted once. A
        // signal already pending is consumed by the no-op handler.
        unsafe {
            libc::timer_delete(self.timer);
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.mask, std::ptr::null_mut());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mutex_removed_by_its_holder_is_recreated_for_the_next_locker() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::new(dir.path().join("s.json"));
        let m = Mutex::lock(&cfg, "x").unwrap();
        m.remove_file().unwrap();
        assert!(!mutex_path(&cfg, "x").exists());
        let _m = Mutex::lock(&cfg, "x").unwrap();
        assert!(mutex_path(&cfg, "x").exists());
    }

    #[test]
    fn a_locker_blocked_on_a_mutex_that_is_removed_locks_its_successor() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::new(dir.path().join("s.json"));
        let held = Mutex::lock(&cfg, "x").unwrap();
        let cfg2 = cfg.clone();
        let waiter = std::thread::spawn(move || {
            let m = Mutex::lock(&cfg2, "x").unwrap();
            std::thread::sleep(Duration::from_millis(300));
            drop(m);
        });
        // Let the other locker open the file and block on it, then unlink it.
        std::thread::sleep(Duration::from_millis(100));
        held.remove_file().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        // The other locker must now hold the file at the path, not the unlinked one.
        let f = File::open(mutex_path(&cfg, "x")).expect("the successor exists");
        assert!(f.try_lock().is_err(), "two lockers hold the mutex at once");
        waiter.join().unwrap();
    }

    #[test]
    fn a_mutex_held_elsewhere_times_out_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::new(dir.path().join("s.json"));
        let _held = Mutex::lock(&cfg, "x").unwrap();
        let cfg2 = cfg.clone();
        let waiter = std::thread::spawn(move || {
            let t = Instant::now();
            let got = Mutex::lock_until(&cfg2, "x", t + Duration::from_millis(300)).unwrap();
            (got.map(|_| ()), t.elapsed())
        });
        let (got, took) = waiter.join().unwrap();
        let busy = got.unwrap_err();
        assert_eq!(busy.holder_pid, Some(std::process::id()));
        assert!(took >= Duration::from_millis(290), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }
}
