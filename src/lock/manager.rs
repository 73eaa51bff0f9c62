//! The decisions about named locks: who gets a lock, who waits, who is
//! taken over, and what release, check and clean do to a record.
//!
//! Guarantees:
//! - Every record change happens under the lock's [`Mutex`] and is an
//!   atomic replace, so concurrent acquirers never both win and a reader
//!   never sees half a record.
//! - A waiter blocks in the kernel ([`Watcher`]): woken when the record
//!   changes, when a process it waits for exits, or when a blocking holder's
//!   TTL passes; never by a sleep loop.
//! - Writer preference: an exclusive request that has to wait records itself
//!   in the record's `waiters`, and new shared requests queue behind a live
//!   exclusive waiter. A waiter whose timeout passes removes its entry; so
//!   does a waiter of `lock-manager` ended by SIGINT, SIGTERM or SIGHUP,
//!   before it ends (see [`super::wait::Interrupts`]).
//! - No operation on one lock reads or lists the other records: a record
//!   write has one temp name, the hierarchy check reads the requesting
//!   owner's index ([`super::owners`]), and a record removed takes its
//!   mutex file with it. `list`, `status` and `clean` read every record.
//! - A holder is dropped only when it is stale (dead, pid reused, other boot,
//!   TTL passed), never for being old; a record that does not parse is
//!   corruption (exit 3) and is left alone.
//!
//! Not guaranteed: FIFO order among exclusive requests (a new one may take a
//! lock that has just been released before an older waiter wakes), and
//! freedom from deadlock when two shared holders both ask to upgrade (each
//! waits for the other until its timeout; the hierarchy cannot order one lock
//! against itself).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::name;
use super::owners;
use super::process::{self, Identity};
use super::record::{self, Busy, Holder, LockType, Mutex, Record, Standing, Waiter};
use super::wait::{Interrupts, Wake, Watcher};
use crate::audit::event::now_rfc3339_micros;
use crate::config::Config;
use crate::durable;
use crate::error::{Error, Kind, Result};
use crate::exit::Code;

/// One acquire request.
#[derive(Clone, Debug)]
pub struct Request {
    pub name: String,
    pub kind: LockType,
    /// Who will hold the lock (the calling shell).
    pub owner: Identity,
    /// Seconds after which the hold lapses, if set.
    pub ttl: Option<f64>,
    /// Caller-supplied JSON, stored with the holder.
    pub metadata: Option<Value>,
    /// How long to wait; zero tries once.
    pub timeout: Duration,
}

/// A stale holder replaced by an acquirer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Takeover {
    pub stale_pid: u32,
    /// `"dead"`, `"pid-reused"`, `"ttl-expired"` or `"other-boot"`.
    pub reason: &'static str,
}

/// What a waiter says on stderr while it waits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Progress {
    /// Nothing (stderr is not a terminal; a state-manager transaction).
    #[default]
    Quiet,
    /// After [`SLOW_WAIT`], who holds the lock; then when it was had.
    Terminal,
    /// `--verbose`: the same at once, and that SIGINT arrives ignored.
    Verbose,
    /// `Terminal` if stderr is a terminal, else `Quiet`: decided at the
    /// first wait, so an acquire that does not wait does not ask.
    IfTerminal,
}

impl Progress {
    /// `Verbose` when asked, else `Terminal` if stderr turns out to be a
    /// terminal once the request has to wait.
    pub fn choose(verbose: bool) -> Progress {
        if verbose {
            Progress::Verbose
        } else {
            Progress::IfTerminal
        }
    }

    /// This, with `IfTerminal` decided.
    pub(crate) fn resolved(self) -> Progress {
        use std::io::IsTerminal;
        match self {
            Progress::IfTerminal if io::stderr().is_terminal() => Progress::Terminal,
            Progress::IfTerminal => Progress::Quiet,
            other => other,
        }
    }
}

/// How long a wait on a terminal lasts before it says what it waits for.
pub const SLOW_WAIT: Duration = Duration::from_secs(1);

/// How a waiter of `lock-manager` behaves beyond waiting.
#[derive(Clone, Copy, Debug, Default)]
pub struct Attend {
    /// SIGINT, SIGTERM and SIGHUP end the wait: the request leaves the
    /// record and the call fails ([`super::wait::interrupted`] says by which).
    pub signals: bool,
    pub progress: Progress,
}

/// What happened while a request waited; filled in even when it fails, for
/// the audit event.
#[derive(Clone, Debug)]
pub struct WaitLog {
    pub started: Instant,
    /// Pids that held the lock while we waited, in the order first seen.
    pub holders: Vec<u32>,
    /// Time from the start of the request until it was granted or gave up.
    pub waited: Duration,
    /// What the waiter says and hears while it waits.
    pub attend: Attend,
    /// The "waiting for lock" line was printed (so the "got lock" one is due).
    pub announced: bool,
}

impl WaitLog {
    pub fn start() -> WaitLog {
        WaitLog::attended(Attend::default())
    }

    /// A log for a waiter that attends to signals or says what it waits for.
    pub fn attended(attend: Attend) -> WaitLog {
        WaitLog {
            started: Instant::now(),
            holders: Vec::new(),
            waited: Duration::ZERO,
            attend,
            announced: false,
        }
    }

    fn saw(&mut self, holders: &[Identity]) {
        for h in holders {
            if !self.holders.contains(&h.pid) {
                self.holders.push(h.pid);
            }
        }
    }

    /// The wait in milliseconds, to three decimals, for audit details.
    pub fn wait_ms(&self) -> f64 {
        crate::audit::event::ms(self.waited)
    }

    /// Under `--verbose`, at the first wait of a waiter that attends to
    /// signals: when SIGINT arrives ignored (a shell's background job), says
    /// that Ctrl-C cannot end the wait for lock `name`, which ends at
    /// `deadline` or on SIGTERM. Every backend's wait calls this.
    pub(crate) fn note_ignored_sigint(&mut self, name: &str, deadline: Instant) {
        self.attend.progress = self.attend.progress.resolved();
        if self.attend.progress == Progress::Verbose && super::wait::sigint_ignored() {
            super::commands::say(&format!(
                "note: SIGINT arrives ignored here (a background job?): Ctrl-C cannot end this wait for lock '{name}'; it ends at its timeout ({}s), or on SIGTERM",
                trim_secs(deadline.saturating_duration_since(self.started))
            ));
        }
    }

    /// Whether the "waiting for lock" line is due now: at once under
    /// `--verbose`, after [`SLOW_WAIT`] on a terminal, never otherwise, and
    /// only once. Decides [`Progress::IfTerminal`] (a request that waits).
    pub(crate) fn line_due(&mut self) -> bool {
        self.attend.progress = self.attend.progress.resolved();
        match self.attend.progress {
            _ if self.announced => false,
            Progress::Quiet | Progress::IfTerminal => false,
            Progress::Terminal => Instant::now() >= self.started + SLOW_WAIT,
            Progress::Verbose => true,
        }
    }

    /// Says the "waiting for lock" `line` (then "got lock" is due).
    pub(crate) fn announce(&mut self, line: &str) {
        self.announced = true;
        super::commands::say(line);
    }

    /// `until`, or earlier on a terminal whose wait is not said yet: the
    /// moment the wait gets long enough to say it.
    pub(crate) fn wake_by(&self, until: Instant) -> Instant {
        if self.attend.progress == Progress::Terminal && !self.announced {
            until.min(self.started + SLOW_WAIT)
        } else {
            until
        }
    }

    /// After a grant: "got lock 'NAME' after S s", when the wait was said.
    pub(crate) fn say_got(&self, name: &str) {
        if self.announced {
            super::commands::say(&format!(
                "got lock '{name}' after {:.1} s",
                self.waited.as_secs_f64()
            ));
        }
    }
}

/// The `--debug` line of one round of a wait for lock `name`: what is in
/// the way (`blocked`), and how long the request has waited.
pub(crate) fn debug_round(name: &str, round: u32, blocked: &str, log: &WaitLog) {
    crate::debug::log(|| {
        format!(
            "lock '{name}' wait round {round}: {blocked} ({:.3} ms waited)",
            crate::audit::event::ms(log.started.elapsed())
        )
    });
}

/// The `--debug` line of a granted acquire.
pub(crate) fn debug_granted(req: &Request, log: &WaitLog) {
    crate::debug::log(|| {
        format!(
            "acquire '{}' {} for pid {}: granted after {:.3} ms waiting, {:.3} ms in all",
            req.name,
            req.kind.as_str(),
            req.owner.pid,
            log.wait_ms(),
            crate::audit::event::ms(log.started.elapsed())
        )
    });
}

/// The `--debug` line of an acquire that timed out, `blocked` by what.
pub(crate) fn debug_timed_out(req: &Request, log: &WaitLog, blocked: &str) {
    crate::debug::log(|| {
        format!(
            "acquire '{}' timed out after {:.3} ms: {blocked}",
            req.name,
            log.wait_ms(),
        )
    });
}

/// The `--debug` line of a release.
pub(crate) fn debug_release(name: &str, owner: &Identity, held: bool, started: Instant) {
    crate::debug::log(|| {
        format!(
            "release '{name}' for pid {}: {} in {:.3} ms",
            owner.pid,
            if held { "released" } else { "was not held" },
            crate::audit::event::ms(started.elapsed())
        )
    });
}

/// A granted acquire.
#[derive(Clone, Debug)]
pub struct Acquired {
    /// The record as stored after the grant.
    pub record: Record,
    pub takeovers: Vec<Takeover>,
    /// The owner held the lock already (nothing was counted twice).
    pub already_held: bool,
    /// A shared hold of the owner's became exclusive.
    pub upgraded: bool,
    /// The fencing token of the hold and the server's epoch (Redis; `None`
    /// on files, which have no tokens).
    pub fencing: Option<(u64, String)>,
}

/// Why a request cannot be granted yet.
struct Blocked {
    /// Live holders in the way.
    holders: Vec<Identity>,
    /// Live exclusive waiters a shared request queues behind.
    queued_behind: Vec<Identity>,
    /// The type the lock is held with.
    kind: LockType,
    /// When the first blocking holder's TTL passes, if any has one.
    expires: Option<Instant>,
    /// The record's mutex was never had: a transaction kept it past the deadline.
    mutex: Option<Busy>,
}

impl Blocked {
    fn describe(&self, name: &str) -> String {
        if let Some(busy) = &self.mutex {
            return busy.describe(name);
        }
        let pids = |ids: &[Identity]| {
            ids.iter()
                .map(|i| i.pid.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut held = match self.holders.as_slice() {
            [] => String::new(),
            [h] => format!("held {} by pid {}", self.kind.as_str(), h.pid),
            hs => format!("held {} by pids {}", self.kind.as_str(), pids(hs)),
        };
        if let Some(why) = self.holders.iter().find_map(Identity::unverifiable) {
            held.push_str(&format!(
                " (cannot verify: {why}; never taken over, only 'release --force' removes it)"
            ));
        }
        match (held.as_str(), self.queued_behind.as_slice()) {
            (held, []) => held.to_string(),
            ("", w) => format!("queued behind exclusive waiter pid {}", pids(w)),
            (held, w) => format!("{held}, and queued behind exclusive waiter pid {}", pids(w)),
        }
    }

    fn watch_list(&self) -> Vec<Identity> {
        self.holders
            .iter()
            .chain(&self.queued_behind)
            .cloned()
            .collect()
    }
}

/// The answer of `check`: its exit code is the answer, not a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Held: the type and the pid of the first live holder (exit 0).
    Locked { kind: LockType, pid: u32 },
    /// No record, or nobody holds it (exit 1).
    Unlocked,
    /// A record whose holders are all gone ([`Record::is_stale`]; exit 2).
    Stale,
}

impl Check {
    /// The documented exit code: 0 locked, 1 unlocked, 2 stale.
    /// The answer for a lock whose record is `rec` (`None`: no record),
    /// by [`Record::standing`]: every backend answers `check` with it.
    pub fn of(rec: Option<&Record>) -> Check {
        let Some(rec) = rec else {
            return Check::Unlocked;
        };
        match rec.standing() {
            Standing::Held => match rec.live_holders().next() {
                Some(h) => Check::Locked {
                    kind: rec.kind,
                    pid: h.id.pid,
                },
                None => Check::Unlocked,
            },
            Standing::Stale => Check::Stale,
            Standing::Waited | Standing::Vacant => Check::Unlocked,
        }
    }

    pub fn code(&self) -> Code {
        match self {
            Check::Locked { .. } => Code::Success,
            Check::Unlocked => Code::GeneralError,
            Check::Stale => Code::LockTimeout,
        }
    }

    /// `locked`, `unlocked` or `stale`.
    pub fn status(&self) -> &'static str {
        match self {
            Check::Locked { .. } => "locked",
            Check::Unlocked => "unlocked",
            Check::Stale => "stale",
        }
    }
}

/// A finished release.
#[derive(Clone, Debug, Default)]
pub struct Released {
    /// The owner held the lock (or, forced, anyone did).
    pub held: bool,
    /// The live holders a forced release removed.
    pub forced_pids: Vec<u32>,
}

/// Reads the record of `name`: refuses a symlink leading out of the root
/// (exit 6), `None` when there is none, exit 3 when it does not parse.
pub fn read(cfg: &Config, name: &str) -> Result<Option<Record>> {
    let path = record::record_path(cfg, name);
    crate::debug::log(|| format!("lock record {}", path.display()));
    durable::check_not_escaping(&cfg.locks_dir(), &cfg.root)?;
    durable::check_not_escaping(&path, &cfg.root)?;
    record::load(&path)
}

/// Acquires `req.name` for `req.owner`, waiting up to `req.timeout`.
///
/// Exit 4 for a bad name or a hierarchy violation (nothing written), 2 when
/// the timeout passes, 3 when the record does not parse.
pub fn acquire(cfg: &Config, req: &Request, log: &mut WaitLog) -> Result<Acquired> {
    name::validate(&req.name)?;
    if let Some(ttl) = req.ttl
        && !(ttl > 0.0 && ttl.is_finite())
    {
        return Err(Error::validation("bad TTL: it must be more than 0 seconds")
            .hint("give a duration such as 30, 0.5 or 10m"));
    }
    check_hierarchy(cfg, &req.name, &req.owner)?;
    let deadline = log.started + req.timeout;
    let result = await_turn(cfg, &req.name, Some(req.kind), deadline, log, |rec| {
        decide(rec, &req.owner, req.kind)
    });
    log.waited = log.started.elapsed();
    let (mutex, current) = match result? {
        Turn::Granted(mutex, current) => (mutex, current),
        Turn::TimedOut(blocked) => {
            debug_timed_out(req, log, &blocked.describe(&req.name));
            return Err(timeout_error(&req.name, req.timeout, &blocked));
        }
    };
    let granted = grant(cfg, req, current)?;
    drop(mutex);
    log.say_got(&req.name);
    debug_granted(req, log);
    Ok(granted)
}

/// The error for a request that was not granted within `timeout`.
fn timeout_error(name: &str, timeout: Duration, blocked: &Blocked) -> Error {
    Error::new(
        Kind::LockTimeout,
        format!(
            "timed out after {}s waiting for lock '{name}'",
            trim_secs(timeout)
        ),
    )
    .because(blocked.describe(name))
    .hint("see 'lock-manager list'; wait longer (TIMEOUT or LOCK_TIMEOUT), or release it")
}

/// Seconds as short text: `1`, `0.5`, `2.25`.
pub(crate) fn trim_secs(d: Duration) -> String {
    let s = format!("{:.3}", d.as_secs_f64());
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Whether `owner` may have lock `kind` now, given the current record.
fn decide(
    rec: Option<&Record>,
    owner: &Identity,
    kind: LockType,
) -> std::result::Result<(), Blocked> {
    let Some(rec) = rec else { return Ok(()) };
    let others: Vec<&Holder> = rec.live_holders().filter(|h| h.id != *owner).collect();
    let mine = rec.live_holders().any(|h| h.id == *owner);
    let blocked = |holders: &[&Holder], queued_behind: Vec<Identity>| Blocked {
        holders: holders.iter().map(|h| h.id.clone()).collect(),
        queued_behind,
        kind: rec.kind,
        expires: holders
            .iter()
            .filter_map(|h| h.expires_in())
            .min()
            .map(|left| Instant::now() + left + Duration::from_millis(1)),
        mutex: None,
    };
    match kind {
        // Fresh, re-entrant, or an upgrade of the sole shared holder.
        LockType::Exclusive if others.is_empty() => Ok(()),
        LockType::Exclusive => Err(blocked(&others, Vec::new())),
        // Re-entrant: an owner's exclusive hold covers a shared request.
        LockType::Shared if mine => Ok(()),
        LockType::Shared if rec.kind == LockType::Exclusive && !others.is_empty() => {
            Err(blocked(&others, Vec::new()))
        }
        LockType::Shared => {
            let writers: Vec<Identity> = rec
                .waiters
                .iter()
                .filter(|w| w.kind == LockType::Exclusive && w.id.is_live())
                .map(|w| w.id.clone())
                .collect();
            if writers.is_empty() {
                Ok(())
            } else {
                Err(blocked(&others, writers))
            }
        }
    }
}

/// Writes the record that gives `req.owner` the lock. Called holding the mutex.
fn grant(cfg: &Config, req: &Request, current: Option<Record>) -> Result<Acquired> {
    let mut rec = current
        .clone()
        .unwrap_or_else(|| Record::new(&req.name, req.kind));
    let takeovers: Vec<Takeover> = rec
        .holders
        .iter()
        .filter_map(|h| {
            h.staleness().map(|reason| Takeover {
                stale_pid: h.id.pid,
                reason,
            })
        })
        .collect();
    let before = rec.holders.clone();
    rec.holders.retain(Holder::is_live);
    if !rec.waiters.is_empty() {
        // Our own waiter entry, if we waited, goes with the grant.
        let me = Identity::current();
        rec.waiters.retain(|w| w.id != me && w.id.is_live());
    }
    let mut already_held = false;
    let mut upgraded = false;
    if rec.holders.iter().any(|h| h.id == req.owner) {
        already_held = true;
        if req.kind == LockType::Exclusive && rec.kind == LockType::Shared {
            upgraded = true;
            rec.kind = LockType::Exclusive;
        }
    } else {
        if rec.holders.is_empty() {
            rec.kind = req.kind;
        }
        rec.holders.push(Holder {
            id: req.owner.clone(),
            acquired: now_rfc3339_micros(),
            acquired_boottime: Some(process::boottime()),
            ttl: req.ttl,
            metadata: req.metadata.clone(),
        });
    }
    // A re-entrant request that changes nothing writes nothing.
    if current.as_ref() != Some(&rec) {
        if !already_held {
            // The index first: a kill between the writes leaves it a superset.
            owners::add(cfg, &req.owner, &req.name)?;
        }
        rec.timestamp = now_rfc3339_micros();
        record::store(&record::record_path(cfg, &req.name), &rec)?;
        unindex_dropped(cfg, &req.name, &before, &rec);
    }
    Ok(Acquired {
        record: rec,
        takeovers,
        already_held,
        upgraded,
        fencing: None,
    })
}

/// The outcome of [`await_turn`].
enum Turn {
    /// The caller may proceed: the mutex is held and this is the record.
    Granted(Mutex, Option<Record>),
    TimedOut(Blocked),
}

/// Waits until `decide` grants, holding the mutex when it does.
///
/// A request that has to wait and is exclusive (`register` is
/// `Some(Exclusive)`) records this process in the record's `waiters`, so
/// that new shared requests queue behind it; the entry is removed when the
/// request gives up, and by the caller's write when it is granted.
fn await_turn(
    cfg: &Config,
    name: &str,
    register: Option<LockType>,
    deadline: Instant,
    log: &mut WaitLog,
    mut decide: impl FnMut(Option<&Record>) -> std::result::Result<(), Blocked>,
) -> Result<Turn> {
    let path = record::record_path(cfg, name);
    crate::debug::log(|| format!("lock record {}", path.display()));
    let file_name = format!("{name}.lock");
    let mut me: Option<Identity> = None;
    let mut watcher: Option<Watcher> = None;
    // Set up at the first wait only: an uncontended acquire pays nothing.
    let mut interrupts: Option<Interrupts> = None;
    let mut asked_signals = false;
    let mut round = 0u32;
    loop {
        round += 1;
        let mutex = match Mutex::lock_until(cfg, name, deadline)? {
            Ok(m) => m,
            // A waiter entry of ours stays behind: it is pruned once we exit.
            Err(busy) => {
                return Ok(Turn::TimedOut(Blocked {
                    holders: Vec::new(),
                    queued_behind: Vec::new(),
                    kind: LockType::Exclusive,
                    expires: None,
                    mutex: Some(busy),
                }));
            }
        };
        durable::check_not_escaping(&path, &cfg.root)?;
        let current = record::load(&path)?;
        let blocked = match decide(current.as_ref()) {
            Ok(()) if interrupts.as_ref().is_some_and(|i| i.take().is_some()) => {
                // A signal came with the turn: the request is withdrawn, not granted.
                let me = me.get_or_insert_with(Identity::current);
                if withdraw(&path, current, me)? {
                    mutex.remove_file()?;
                }
                return Err(interrupted_error(name));
            }
            Ok(()) => {
                // Closing an inotify descriptor waits for an SRCU grace period
                // in the kernel (10-20 ms measured here): leave it to process
                // exit, after the grant is written, not in the handoff's path.
                std::mem::forget(watcher);
                return Ok(Turn::Granted(mutex, current));
            }
            Err(b) => b,
        };
        log.saw(&blocked.holders);
        if crate::debug::enabled() {
            debug_round(name, round, &blocked.describe(name), log);
        }
        let me = me.get_or_insert_with(Identity::current);
        if Instant::now() >= deadline {
            if withdraw(&path, current, me)? {
                mutex.remove_file()?;
            }
            return Ok(Turn::TimedOut(blocked));
        }
        if log.attend.signals && !asked_signals {
            asked_signals = true;
            // Without a signalfd (no descriptor left), the signals keep
            // their default action: the wait still works, only less tidily.
            interrupts = Interrupts::block().ok();
            log.note_ignored_sigint(name, deadline);
        }
        // Said before `current` goes into the waiter registration below.
        let announce = log
            .line_due()
            .then(|| waiting_line(name, current.as_ref(), &blocked));
        if register == Some(LockType::Exclusive)
            && let Some(mut rec) = current
            && !rec.waiters.iter().any(|w| w.id == *me)
        {
            rec.waiters.retain(|w| w.id.is_live());
            rec.waiters.push(Waiter {
                id: me.clone(),
                kind: LockType::Exclusive,
                since: now_rfc3339_micros(),
            });
            rec.timestamp = now_rfc3339_micros();
            record::store(&path, &rec)?;
        }
        drop(mutex);
        // Once the request is in the record: the line means "queued".
        if let Some(line) = announce {
            log.announce(&line);
        }
        let w = match watcher.take() {
            Some(w) if !w.is_lost() => w,
            // Watch before looking again, so that no change is missed.
            _ => {
                watcher = Some(Watcher::for_file(&cfg.locks_dir(), &file_name)?);
                continue;
            }
        };
        // Until the deadline, or until a blocking holder's TTL passes (or,
        // on a terminal, until the wait is long enough to say so).
        let until = log.wake_by(blocked.expires.map_or(deadline, |e| e.min(deadline)));
        match w.wait_for_or(&blocked.watch_list(), interrupts.as_ref(), Some(until)) {
            // Either way the next turn looks again; past the deadline it
            // decides once more and then gives up.
            Ok(Wake::Changed | Wake::TimedOut) => watcher = Some(w),
            Ok(Wake::Interrupted) => {
                if interrupts.as_ref().and_then(Interrupts::take).is_some() {
                    // Leave the record at once, under its mutex; a mutex kept
                    // busy by a transaction leaves the entry to be pruned.
                    let soon = Instant::now() + Duration::from_secs(1);
                    if let Ok(Ok(_m)) = Mutex::lock_until(cfg, name, soon) {
                        let _ = record::load(&path).map(|rec| withdraw(&path, rec, me));
                    }
                    return Err(interrupted_error(name));
                }
                watcher = Some(w);
            }
            Err(e) => {
                if let Ok(Ok(_m)) = Mutex::lock_until(cfg, name, Instant::now()) {
                    let _ = record::load(&path).map(|rec| withdraw(&path, rec, me));
                }
                return Err(e);
            }
        }
    }
}

/// The error of a wait ended by a signal of [`Interrupts`]; the command
/// layer ends the process by that signal ([`super::wait::interrupted`]).
pub(crate) fn interrupted_error(name: &str) -> Error {
    let sig = super::wait::interrupted().unwrap_or(libc::SIGINT);
    Error::general(format!(
        "interrupted by {} while waiting for lock '{name}'",
        super::wait::signal_name(sig)
    ))
    .hint("the request left the record; nothing was acquired")
}

/// What a waiter says when its wait gets long: the first holder in the way,
/// its command name and since when (UTC), or the writer it queues behind.
fn waiting_line(name: &str, rec: Option<&Record>, blocked: &Blocked) -> String {
    let held = |id: &Identity| {
        let acquired = rec.and_then(|r| r.holder(id)).map(|h| h.acquired.as_str());
        held_by(id, acquired)
    };
    let holders: Vec<String> = blocked.holders.iter().map(held).collect();
    let behind = blocked.queued_behind.first().map(held);
    waiting_line_of(name, &holders, behind)
}

/// One process a waiter waits for, for people: `pid P (COMMAND, since
/// HH:MM:SS UTC)` — its command name when it runs on this host, and since
/// when it holds the lock when `acquired` (RFC 3339, UTC) says.
pub(crate) fn held_by(id: &Identity, acquired: Option<&str>) -> String {
    let comm = id
        .is_local()
        .then(|| process::comm(id.pid))
        .flatten()
        .unwrap_or_else(|| "?".into());
    let since = acquired
        .and_then(|a| a.get(11..19))
        .map(|t| format!(", since {t} UTC"))
        .unwrap_or_default();
    format!("pid {} ({comm}{since})", id.pid)
}

/// The "waiting for lock" line: the first of `holders` (each as
/// [`held_by`] gives it), or the exclusive waiter a request queues `behind`.
pub(crate) fn waiting_line_of(name: &str, holders: &[String], behind: Option<String>) -> String {
    let mut line = format!("waiting for lock '{name}'");
    match (holders, behind) {
        ([], Some(w)) => line.push_str(&format!(" behind exclusive waiter {w}")),
        ([h], _) => line.push_str(&format!(" held by {h}")),
        ([h, more @ ..], _) => line.push_str(&format!(" held by {h} and {} more", more.len())),
        ([], None) => {}
    }
    line.push('…');
    line
}

/// Removes `me` from the waiters of `rec` (held mutex), leaving no trace of a
/// request that gave up: a record left with neither holders nor waiters is
/// removed (then `true`: the caller may remove the mutex file too).
fn withdraw(path: &std::path::Path, rec: Option<Record>, me: &Identity) -> Result<bool> {
    let Some(mut rec) = rec else { return Ok(false) };
    if !rec.waiters.iter().any(|w| w.id == *me) {
        return Ok(false);
    }
    rec.waiters.retain(|w| w.id != *me && w.id.is_live());
    if rec.holders.is_empty() && rec.waiters.is_empty() {
        record::remove(path)?;
        Ok(true)
    } else {
        rec.timestamp = now_rfc3339_micros();
        record::store(path, &rec)?;
        Ok(false)
    }
}

/// Holds lock `name` for one transaction of `owner`'s; see [`super::transaction`].
pub fn transaction(
    cfg: &Config,
    name: &str,
    owner: Option<&Identity>,
    timeout: Duration,
    log: &mut WaitLog,
) -> Result<Mutex> {
    // The same order as `acquire`: an owner holding a lock that ranks after
    // `name` would otherwise wait for a holder of `name` that waits for it.
    if let Some(owner) = owner {
        check_hierarchy(cfg, name, owner)?;
    }
    let deadline = log.started + timeout;
    let turn = await_turn(cfg, name, Some(LockType::Exclusive), deadline, log, |rec| {
        let Some(rec) = rec else { return Ok(()) };
        let others: Vec<&Holder> = rec
            .live_holders()
            .filter(|h| owner.is_none_or(|o| h.id != *o))
            .collect();
        if others.is_empty() {
            return Ok(());
        }
        Err(Blocked {
            holders: others.iter().map(|h| h.id.clone()).collect(),
            queued_behind: Vec::new(),
            kind: rec.kind,
            expires: others
                .iter()
                .filter_map(|h| h.expires_in())
                .min()
                .map(|left| Instant::now() + left + Duration::from_millis(1)),
            mutex: None,
        })
    });
    log.waited = log.started.elapsed();
    match turn? {
        Turn::Granted(mutex, current) => {
            log.say_got(name);
            // Our waiter entry, if the wait made one, goes now: we hold the
            // mutex, so nobody can act on it in between.
            if current.as_ref().is_some_and(|r| !r.waiters.is_empty()) {
                let path = record::record_path(cfg, name);
                withdraw(&path, current, &Identity::current())?;
            }
            Ok(mutex)
        }
        Turn::TimedOut(blocked) => Err(timeout_error(name, timeout, &blocked)),
    }
}

/// Hands `from`'s hold of `name` to `to` in one record write, keeping its
/// type, time, TTL and metadata: how `run` makes its child the holder.
/// Exit 1 if `from` no longer holds it (its hold was taken over as stale).
pub fn transfer(cfg: &Config, name: &str, from: &Identity, to: &Identity) -> Result<()> {
    let path = record::record_path(cfg, name);
    let _mutex = Mutex::lock(cfg, name)?;
    let mut rec = record::load(&path)?.unwrap_or_else(|| Record::new(name, LockType::Exclusive));
    let Some(h) = rec.holders.iter_mut().find(|h| h.id == *from) else {
        return Err(Error::general(format!(
            "lock '{name}' is no longer held by pid {}: cannot hand it to pid {}",
            from.pid, to.pid
        )));
    };
    h.id = to.clone();
    owners::add(cfg, to, name)?;
    rec.timestamp = now_rfc3339_micros();
    record::store(&path, &rec)?;
    owners::remove(cfg, from, name);
    Ok(())
}

/// Drops the dead holders and waiters of `name`, removing a record left empty.
pub fn prune(cfg: &Config, name: &str) -> Result<()> {
    let path = record::record_path(cfg, name);
    if read(cfg, name)?.is_none() {
        return Ok(());
    }
    let mutex = Mutex::lock(cfg, name)?;
    let Some(mut rec) = record::load(&path)? else {
        return Ok(());
    };
    let before = rec.holders.clone();
    let waiters = rec.waiters.len();
    if rec.prune() == 0 && rec.waiters.len() == waiters {
        return Ok(());
    }
    put(cfg, name, mutex, &before, rec)
}

/// Writes `rec` back holding its `mutex`, or removes it (and the mutex file,
/// so `.locks/` does not keep one per name ever used) when nobody is left
/// in it; then drops the index entries of the holders of `before` it no
/// longer names.
fn put(cfg: &Config, name: &str, mutex: Mutex, before: &[Holder], mut rec: Record) -> Result<()> {
    let path = record::record_path(cfg, name);
    if rec.holders.is_empty() && rec.waiters.is_empty() {
        record::remove(&path)?;
        unindex_dropped(cfg, name, before, &rec);
        mutex.remove_file()
    } else {
        rec.timestamp = now_rfc3339_micros();
        record::store(&path, &rec)?;
        unindex_dropped(cfg, name, before, &rec);
        Ok(())
    }
}

/// Removes the owner-index entries of `name` of the holders in `before`
/// that `after` no longer names (see [`owners`]: after the record write).
fn unindex_dropped(cfg: &Config, name: &str, before: &[Holder], after: &Record) {
    for h in before {
        if !after.holders.iter().any(|a| a.id == h.id) {
            owners::remove(cfg, &h.id, name);
        }
    }
}

/// Releases `name` held by `owner`; with `force`, whoever holds it.
///
/// A lock the owner does not hold while another live owner does is exit 6,
/// naming the holder. A lock nobody live holds releases as a no-op.
pub fn release(cfg: &Config, name: &str, owner: &Identity, force: bool) -> Result<Released> {
    let started = Instant::now();
    let released = release_of(cfg, name, owner, force)?;
    debug_release(name, owner, released.held, started);
    Ok(released)
}

fn release_of(cfg: &Config, name: &str, owner: &Identity, force: bool) -> Result<Released> {
    name::validate(name)?;
    let path = record::record_path(cfg, name);
    // Nothing to release, and no reason to create `.locks/` to say so.
    if read(cfg, name)?.is_none() {
        return Ok(Released::default());
    }
    let mutex = Mutex::lock(cfg, name)?;
    let Some(mut rec) = record::load(&path)? else {
        return Ok(Released::default());
    };
    let before = rec.holders.clone();
    let mut released = Released::default();
    if force {
        released.forced_pids = rec
            .live_holders()
            .filter(|h| h.id != *owner)
            .map(|h| h.id.pid)
            .collect();
        released.held = rec.is_held();
        rec.holders.clear();
    } else if rec.holder(owner).is_some() {
        released.held = true;
        rec.holders.retain(|h| h.id != *owner);
    } else if let Some(h) = rec.live_holders().next() {
        return Err(Error::new(
            Kind::PermissionDenied,
            format!(
                "cannot release lock '{name}': it is held {} by pid {}, not by pid {}",
                rec.kind.as_str(),
                h.id.pid,
                owner.pid
            ),
        )
        .hint("release it from the shell that holds it (--owner PID), or use --force"));
    } else {
        return Ok(released);
    }
    rec.prune();
    put(cfg, name, mutex, &before, rec)?;
    Ok(released)
}

/// The answer of `check`: locked, unlocked or stale by
/// [`Record::standing`] (exit 3 if the record does not parse).
pub fn check(cfg: &Config, name: &str) -> Result<Check> {
    name::validate(name)?;
    Ok(Check::of(read(cfg, name)?.as_ref()))
}

/// Why `check` cannot vouch for the holder of `rec`, if it cannot: a holder
/// on another host or in another pid namespace, which is never taken over.
pub fn unverified_note(rec: &Record) -> Option<String> {
    let name = &rec.name;
    let (h, why) = rec
        .live_holders()
        .find_map(|h| h.id.unverifiable().map(|why| (h, why)))?;
    Some(format!(
        "pid {} holds '{name}' (cannot verify: {why}): it is never taken over; 'lock-manager release {name} --force' removes it",
        h.id.pid
    ))
}

/// One record found by [`scan`].
#[derive(Debug)]
pub struct Entry {
    pub name: String,
    /// The record, or why it does not parse.
    pub record: std::result::Result<Record, Error>,
}

impl Entry {
    /// The record's [`Record::standing`]; `None` when it does not parse.
    pub fn standing(&self) -> Option<Standing> {
        self.record.as_ref().ok().map(Record::standing)
    }
}

/// The names of the lock records in `dir` (`NAME.lock` with a valid NAME),
/// sorted; none when the folder does not exist. The one directory read of
/// lock records: [`scan`], [`record_files`] and the hierarchy check use it.
fn record_names_in(dir: &Path) -> io::Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().into_string().ok()?;
            let name = file.strip_suffix(".lock")?;
            name::validate(name).ok()?;
            Some(name.to_string())
        })
        .collect();
    names.sort();
    Ok(names)
}

/// The names of every lock record in `.locks/`, sorted (exit 6 for a
/// `.locks` symlink leading out of the root).
pub fn record_names(cfg: &Config) -> Result<Vec<String>> {
    let dir = cfg.locks_dir();
    crate::debug::log(|| format!("lock records in {}", dir.display()));
    durable::check_not_escaping(&dir, &cfg.root)?;
    record_names_in(&dir).map_err(|e| Error::io(e, "cannot list lock records", &dir))
}

/// The path of every lock record file, sorted by name: for the checks that
/// look at the files themselves (`verify-integrity`). Unreadable: none.
pub fn record_files(cfg: &Config) -> Vec<PathBuf> {
    record_names(cfg)
        .unwrap_or_default()
        .iter()
        .map(|n| record::record_path(cfg, n))
        .collect()
}

/// Every lock record in `.locks/`, sorted by name: the file backend's
/// [`crate::backend::LockRegistry::list`].
pub fn scan(cfg: &Config) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    scan_each(cfg, &mut |e| entries.push(e))?;
    Ok(entries)
}

/// [`scan`], each record handed to `f` as it is read and not kept: the
/// file backend's [`crate::backend::LockRegistry::each`]. How many.
pub fn scan_each(cfg: &Config, f: &mut dyn FnMut(Entry)) -> Result<usize> {
    let mut n = 0;
    for name in record_names(cfg)? {
        // `None`: removed between listing and reading, so simply gone.
        if let Some(record) = record::load(&record::record_path(cfg, &name)).transpose() {
            f(Entry { name, record });
            n += 1;
        }
    }
    Ok(n)
}

/// What `clean` did.
#[derive(Clone, Debug, Default)]
pub struct Cleaned {
    /// Stale records removed (and unparseable ones, with `force`).
    pub removed: Vec<String>,
    /// Dead holders or waiters pruned from records that stay.
    pub pruned: usize,
    /// Unparseable records left in place (no `force`).
    pub corrupt: Vec<String>,
}

/// What [`sweep`] did to one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Swept {
    /// No record (any more).
    Gone,
    /// Nobody live was in it (or, forced, it did not parse): removed.
    Removed,
    /// Kept; this many dead holders or waiters were pruned from it.
    Kept(usize),
    /// It does not parse and was left alone.
    Corrupt,
}

/// Removes the record of `name` if nobody live is in it
/// ([`Standing::is_removable`]), judged under its mutex so that no acquire
/// can slip in between; else, with `prune`, drops its dead holders and
/// waiters. With `force`, a record that does not parse is removed too.
/// What `clean` does to each record, and `state-manager cleanup --stale`.
pub fn sweep(cfg: &Config, name: &str, prune: bool, force: bool) -> Result<Swept> {
    let path = record::record_path(cfg, name);
    let mutex = Mutex::lock(cfg, name)?;
    let swept = sweep_locked(cfg, name, prune, force);
    crate::debug::log(|| format!("sweep {}: {swept:?}", path.display()));
    match swept {
        // No record left: neither is a reason to keep its mutex file.
        Ok(Swept::Removed | Swept::Gone) => mutex.remove_file()?,
        _ => drop(mutex),
    }
    swept
}

/// [`sweep`], holding the mutex.
fn sweep_locked(cfg: &Config, name: &str, prune: bool, force: bool) -> Result<Swept> {
    let path = &record::record_path(cfg, name);
    match record::load(path) {
        Ok(None) => Ok(Swept::Gone),
        Ok(Some(rec)) if rec.standing().is_removable() => {
            record::remove(path)?;
            unindex_dropped(cfg, name, &rec.holders, &Record::new(name, rec.kind));
            Ok(Swept::Removed)
        }
        Ok(Some(_)) if !prune => Ok(Swept::Kept(0)),
        Ok(Some(mut rec)) => {
            let before = rec.holders.clone();
            let waiters = rec.waiters.len();
            let pruned = rec.prune() + (waiters - rec.waiters.len());
            if pruned > 0 {
                rec.timestamp = now_rfc3339_micros();
                record::store(path, &rec)?;
                unindex_dropped(cfg, name, &before, &rec);
            }
            Ok(Swept::Kept(pruned))
        }
        Err(e) if e.kind() == Kind::Corruption && force => {
            record::remove(path)?;
            Ok(Swept::Removed)
        }
        Err(e) if e.kind() == Kind::Corruption => Ok(Swept::Corrupt),
        Err(e) => Err(e),
    }
}

/// Removes stale records and prunes dead holders from live ones; with
/// `force`, also removes records that do not parse.
pub fn clean(cfg: &Config, force: bool) -> Result<Cleaned> {
    let mut done = Cleaned::default();
    for name in record_names(cfg)? {
        match sweep(cfg, &name, true, force)? {
            Swept::Gone => {}
            Swept::Removed => done.removed.push(name),
            Swept::Kept(n) => done.pruned += n,
            Swept::Corrupt => done.corrupt.push(name),
        }
    }
    for tmp in durable::leftover_temps(&cfg.locks_dir()) {
        let _ = fs::remove_file(tmp);
    }
    owners::remove_gone(cfg)?;
    remove_idle_mutexes(cfg)?;
    Ok(done)
}

/// Removes the `NAME.mutex` files of locks that have no record, each while
/// holding it (see [`Mutex`]), so `.locks/` does not grow with every name
/// ever used.
fn remove_idle_mutexes(cfg: &Config) -> Result<()> {
    let Ok(entries) = fs::read_dir(cfg.locks_dir()) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let Some(name) = e
            .file_name()
            .to_str()
            .and_then(|f| f.strip_suffix(".mutex"))
            .filter(|n| name::validate(n).is_ok())
            .map(str::to_string)
        else {
            continue;
        };
        if record::record_path(cfg, &name).exists() {
            continue;
        }
        let mutex = Mutex::lock(cfg, &name)?;
        if !record::record_path(cfg, &name).exists() {
            mutex.remove_file()?;
        }
    }
    Ok(())
}

/// Refuses (exit 4) a request for `name` by an owner that holds a lock of a
/// larger priority number. Re-requesting a lock already held is fine.
pub fn check_hierarchy(cfg: &Config, name: &str, owner: &Identity) -> Result<()> {
    let wanted = name::priority(name);
    // Nothing ranks after the default priority: no need to look.
    if wanted >= name::priority("any-other-name") {
        return Ok(());
    }
    // Only the locks the owner's index lists (a superset of what it holds),
    // each confirmed by its record: O(locks held by this owner).
    let listed = owners::listed(cfg, owner);
    if !listed
        .iter()
        .any(|o| o != name && name::priority(o) > wanted)
    {
        return Ok(());
    }
    if read(cfg, name)
        .ok()
        .flatten()
        .is_some_and(|r| r.live_holders().any(|h| h.id == *owner))
    {
        return Ok(());
    }
    let mut held: Vec<(u32, String)> = listed
        .into_iter()
        .filter(|other| other != name && name::priority(other) > wanted)
        .filter(|other| {
            record::load(&record::record_path(cfg, other))
                .ok()
                .flatten()
                .is_some_and(|rec| rec.live_holders().any(|h| h.id == *owner))
        })
        .map(|other| (name::priority(&other), other))
        .collect();
    held.sort();
    let Some((_, other)) = held.pop() else {
        return Ok(());
    };
    Err(name::hierarchy_error(owner.pid, &other, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(id: Identity) -> Holder {
        Holder {
            id,
            acquired: now_rfc3339_micros(),
            acquired_boottime: Some(process::boottime()),
            ttl: None,
            metadata: None,
        }
    }

    fn dead() -> Identity {
        Identity {
            start_time: Identity::current().start_time + 1,
            ..Identity::current()
        }
    }

    fn parent() -> Identity {
        Identity::of_pid(rustix::process::getppid().unwrap().as_raw_nonzero().get() as u32).unwrap()
    }

    #[test]
    fn exclusive_blocks_others_but_not_its_owner() {
        let me = Identity::current();
        let mut rec = Record::new("x", LockType::Exclusive);
        rec.holders.push(holder(me.clone()));
        assert!(decide(Some(&rec), &me, LockType::Exclusive).is_ok());
        assert!(decide(Some(&rec), &me, LockType::Shared).is_ok());
        assert!(decide(Some(&rec), &parent(), LockType::Shared).is_err());
        assert!(decide(Some(&rec), &parent(), LockType::Exclusive).is_err());
    }

    #[test]
    fn shared_queues_behind_a_live_exclusive_waiter_only() {
        let mut rec = Record::new("x", LockType::Shared);
        rec.holders.push(holder(parent()));
        let me = Identity::current();
        assert!(decide(Some(&rec), &me, LockType::Shared).is_ok());
        rec.waiters.push(Waiter {
            id: dead(),
            kind: LockType::Exclusive,
            since: now_rfc3339_micros(),
        });
        assert!(decide(Some(&rec), &me, LockType::Shared).is_ok());
        rec.waiters.push(Waiter {
            id: parent(),
            kind: LockType::Exclusive,
            since: now_rfc3339_micros(),
        });
        let b = decide(Some(&rec), &me, LockType::Shared).unwrap_err();
        assert_eq!(b.queued_behind.len(), 1);
    }

    #[test]
    fn stale_holders_do_not_block() {
        let mut rec = Record::new("x", LockType::Exclusive);
        rec.holders.push(holder(dead()));
        assert!(decide(Some(&rec), &Identity::current(), LockType::Exclusive).is_ok());
        let mut ttl = holder(parent());
        ttl.ttl = Some(0.000_001);
        rec.holders = vec![ttl];
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(rec.holders[0].staleness(), Some("ttl-expired"));
        assert!(decide(Some(&rec), &Identity::current(), LockType::Exclusive).is_ok());
    }

    /// Stores `rec` as the record of its lock.
    fn put(cfg: &Config, rec: &Record) {
        crate::durable::ensure_dir(&cfg.locks_dir(), &cfg.root).unwrap();
        record::store(&record::record_path(cfg, &rec.name), rec).unwrap();
    }

    #[test]
    fn check_status_and_clean_follow_one_staleness_rule() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::new(dir.path().join("s.json"));
        let waiter = |id: Identity| Waiter {
            id,
            kind: LockType::Exclusive,
            since: now_rfc3339_micros(),
        };
        // A dead owner's record: stale everywhere, and removed.
        let mut gone = Record::new("gone", LockType::Exclusive);
        gone.holders.push(holder(dead()));
        // Its holder is dead but a live waiter is about to take it: not stale.
        let mut taken = Record::new("taken", LockType::Exclusive);
        taken.holders.push(holder(dead()));
        taken.waiters.push(waiter(parent()));
        // Only a killed waiter's entry: unlocked, and removed.
        let mut left = Record::new("left", LockType::Exclusive);
        left.waiters.push(waiter(dead()));
        for r in [&gone, &taken, &left] {
            put(&cfg, r);
        }
        assert_eq!(check(&cfg, "gone").unwrap(), Check::Stale);
        assert_eq!(check(&cfg, "taken").unwrap(), Check::Unlocked);
        assert_eq!(check(&cfg, "left").unwrap(), Check::Unlocked);
        let c = super::super::report::counts(&scan(&cfg).unwrap());
        assert_eq!((c.held, c.stale, c.waiting), (0, 1, 1));
        let cleaned = clean(&cfg, false).unwrap();
        assert_eq!(cleaned.removed, ["gone", "left"]);
        assert_eq!(cleaned.pruned, 1, "the dead holder of 'taken'");
        assert!(read(&cfg, "taken").unwrap().unwrap().holders.is_empty());
    }

    #[test]
    fn seconds_print_short() {
        assert_eq!(trim_secs(Duration::from_secs(1)), "1");
        assert_eq!(trim_secs(Duration::from_millis(500)), "0.5");
        assert_eq!(trim_secs(Duration::from_millis(2250)), "2.25");
    }
}
