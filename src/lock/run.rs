//! `lock-manager run`: hold a lock for the life of a child command, like
//! flock(1), with the toolkit's exit codes.
//!
//! The holder is the child, not `lock-manager`: the hold follows the
//! command (docs/architecture.md, "Locks"), so killing the wrapper — even by SIGKILL —
//! neither frees the lock nor orphans a running command. The protocol:
//!
//! 1. The wrapper acquires the lock for itself (waiting, hierarchy,
//!    takeover: an ordinary acquire, audited).
//! 2. It forks. The child, before it execs the command, rewrites the
//!    record in one write so that the hold is its own ([`manager::transfer`]),
//!    and sets `LOCK_OWNER_PID` to its pid. The command therefore never runs
//!    without the lock, and its own `state-manager`/`lock-manager` calls
//!    (and those of its subshells) are the holder's. A wrapper killed
//!    between 1 and 2 leaves a stale hold; if another acquirer took it
//!    over, the transfer fails and the command does not run.
//! 3. The wrapper waits for the child. SIGINT, SIGTERM and SIGHUP sent to
//!    the wrapper are forwarded to the child (a terminal's own signals,
//!    which already reach the whole process group, are not sent twice);
//!    the wrapper exits with the child's code (128+N for a signal N).
//! 4. When the child exits its hold is stale at once (waiters watching its
//!    pidfd take over); the wrapper also releases it.
//!
//! Not covered: processes the command leaves running in the background
//! after it exits do not keep the lock (flock(1) would keep it while they
//! hold its descriptor). The child gets `WFSTATE_LOCK_NAME`, `LOCK_OWNER_PID`
//! and no descriptor of ours: every file the toolkit opens is close-on-exec.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use serde_json::json;

use super::commands::{TOOL, acquire_for_self, say};
use super::manager::{self, Attend, Progress};
use super::process::Identity;
use super::record::LockType;
use crate::audit::Recorder;
use crate::backend::Backend;
use crate::child::{self, BlockedSignals};
use crate::config::{self, Config};
use crate::error::{Error, Kind, Result};

/// The arguments of `run`.
#[derive(Clone, Debug)]
pub struct RunArgs {
    pub name: String,
    pub shared: bool,
    /// Seconds to wait for the lock; `None`: LOCK_TIMEOUT.
    pub timeout: Option<String>,
    /// flock's `-n`: try once (a timeout of 0); refused with `timeout`.
    pub nonblock: bool,
    /// flock's `--verbose`: say how long getting the lock took and what runs.
    pub verbose: bool,
    /// The command and its arguments.
    pub command: Vec<OsString>,
}

/// Runs the command holding the lock; returns the child's exit code
/// (128+N if a signal N ended it). Errors: 2 the lock was not had in time,
/// 4 bad name or timeout, 5 the command is not found, 6 it is not executable.
pub fn run(cfg: &Config, backend: &dyn Backend, a: &RunArgs) -> Result<u8> {
    let rec = Recorder::start(cfg, TOOL, "run", &a.name);
    let mut wait_ms = 0.0;
    let mut child_pid = None;
    #[cfg(feature = "redis")]
    let result = match backend.redis() {
        Some(redis) => leased::run_inner(cfg, redis, a, &mut wait_ms, &mut child_pid),
        None => run_inner(cfg, a, &mut wait_ms, &mut child_pid),
    };
    #[cfg(not(feature = "redis"))]
    let result = {
        let _ = backend;
        run_inner(cfg, a, &mut wait_ms, &mut child_pid)
    };
    let detail = json!({
        "wait_ms": wait_ms,
        "child_exit": result.as_ref().ok(),
        "child_pid": child_pid,
    });
    match &result {
        Ok(code) => {
            let outcome = if *code == 0 { "ok" } else { "error" };
            rec.finish_with(i32::from(*code), outcome, detail);
        }
        Err(e) => match super::wait::interrupted() {
            Some(sig) => {
                let mut detail = detail;
                detail["error"] = json!(e.summary());
                rec.finish_with(128 + sig, "interrupted", detail);
            }
            None => rec.finish(&result, detail),
        },
    }
    result
}

/// The errno a child reports when it could not take the hold over.
const HANDOVER_FAILED: i32 = libc::ENOLCK;

/// The wait and the lock type `a` asks for, and its command split into
/// program and arguments (exit 4 for bad options or no command).
fn request(cfg: &Config, a: &RunArgs) -> Result<(Duration, LockType)> {
    let timeout = match (a.timeout.as_deref(), a.nonblock) {
        (Some(_), true) => {
            return Err(
                Error::validation("-n/--nonblock and -w/--timeout both given")
                    .hint("give one of them: -n is a timeout of 0"),
            );
        }
        (Some(t), false) => config::parse_duration(t, "timeout")?,
        (None, true) => Duration::ZERO,
        (None, false) => cfg.lock_timeout,
    };
    if a.command.is_empty() {
        return Err(Error::validation("no command to run")
            .hint("usage: lock-manager run NAME -- CMD [ARGS...]"));
    }
    let kind = if a.shared {
        LockType::Shared
    } else {
        LockType::Exclusive
    };
    Ok((timeout, kind))
}

/// flock(1)'s two `--verbose` lines, in its words.
fn say_verbose(a: &RunArgs, waited: Duration) {
    say(&format!(
        "getting lock '{}' took {:.6} seconds",
        a.name,
        waited.as_secs_f64()
    ));
    let line: Vec<String> = a
        .command
        .iter()
        .map(|w| w.to_string_lossy().into_owned())
        .collect();
    say(&format!("executing {}", line.join(" ")));
}

fn run_inner(
    cfg: &Config,
    a: &RunArgs,
    wait_ms: &mut f64,
    child_pid: &mut Option<u32>,
) -> Result<u8> {
    let (timeout, kind) = request(cfg, a)?;
    let (program, args) = a.command.split_first().expect("checked by request");
    let attend = Attend {
        signals: true,
        progress: Progress::choose(a.verbose),
    };
    let (acquired, log) = acquire_for_self(cfg, &a.name, kind, timeout, attend);
    *wait_ms = log.wait_ms();
    let got = acquired?;
    if a.verbose {
        say_verbose(a, log.waited);
    }
    let me = Identity::current();
    // This very process held it already (a shell exec'd us in place): that
    // hold is the shell's, and stays with it.
    let hand_over = !got.already_held;
    let signals = match Signals::block() {
        Ok(s) => s,
        Err(e) => {
            if hand_over {
                release_own(cfg, &a.name, &me);
            }
            return Err(Error::io(e, "cannot watch signals", "signalfd"));
        }
    };

    let mut cmd = Command::new(program);
    cmd.args(args);
    let name = CString::new(a.name.as_bytes()).expect("a valid lock name has no NUL");
    let (cfg2, lock, from) = (cfg.clone(), a.name.clone(), me.clone());
    let old_mask = signals.0.old_mask();
    // SAFETY: runs in the forked child of this single-threaded process, where
    // the allocator and every lock are free: the transfer is ordinary code.
    // The environment is changed here, in the child, so that the exec sees
    // it (the Command itself carries no environment changes).
    unsafe {
        cmd.pre_exec(move || {
            libc::pthread_sigmask(libc::SIG_SETMASK, &old_mask, std::ptr::null_mut());
            let child = Identity::current();
            let owner = if hand_over {
                manager::transfer(&cfg2, &lock, &from, &child)
                    .map_err(|_| io::Error::from_raw_os_error(HANDOVER_FAILED))?;
                child.pid
            } else {
                from.pid
            };
            let pid = CString::new(owner.to_string()).expect("digits");
            libc::setenv(c"WFSTATE_LOCK_NAME".as_ptr(), name.as_ptr(), 1);
            libc::setenv(c"LOCK_OWNER_PID".as_ptr(), pid.as_ptr(), 1);
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            drop(signals);
            // The child may have taken the hold over and then failed to exec.
            let _ = manager::prune(cfg, &a.name);
            if hand_over {
                release_own(cfg, &a.name, &me);
            }
            return Err(spawn_error(e, program, &a.name));
        }
    };
    *child_pid = Some(child.id());
    crate::debug::log(|| format!("run {}: command started, pid {}", a.name, child.id()));
    // Unreaped, the child's start time stays readable even once it exits.
    let holder = if hand_over {
        Identity::of_child(child.id()).ok()
    } else {
        None
    };
    let status = signals.wait_forwarding(&mut child);
    drop(signals);
    if let Some(holder) = &holder {
        release_own(cfg, &a.name, holder);
    }
    let status = status.map_err(|e| Error::io(e, "cannot wait for the command", program))?;
    let code = child::exit_code(status);
    crate::debug::log(|| format!("run {}: the command exited {code}", a.name));
    Ok(code as u8)
}

/// SIGINT, SIGTERM, SIGHUP (to forward) and SIGCHLD (the child's exit),
/// blocked and read from a signalfd while the child runs; the mask before
/// is restored on drop and in the child.
struct Signals(BlockedSignals);

/// The signals `run` forwards to its child.
const FORWARDED: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

impl Signals {
    fn block() -> io::Result<Signals> {
        BlockedSignals::block(FORWARDED.into_iter().chain([libc::SIGCHLD])).map(Signals)
    }

    /// Reads every pending signal; forwards those to forward to `child`
    /// (`None`: discards them).
    fn forward_pending(&self, child: Option<u32>) {
        self.forward_pending_to(child, false);
    }

    /// [`Signals::forward_pending`]; `own_group`: the child leads a process
    /// group of its own, which a terminal's signals do not reach.
    fn forward_pending_to(&self, child: Option<u32>, own_group: bool) {
        while let Some(info) = self.0.read() {
            let sig = info.ssi_signo as libc::c_int;
            // A terminal's signal (SI_KERNEL) already went to the whole
            // foreground process group, the child included (unless it has
            // a group of its own).
            if let Some(pid) = child
                && FORWARDED.contains(&sig)
                && (own_group || info.ssi_code != libc::SI_KERNEL)
            {
                // SAFETY: kill(2) on our own unreaped child.
                unsafe { libc::kill(pid as libc::pid_t, sig) };
            }
        }
    }

    /// Waits for the child to exit, forwarding signals meanwhile.
    fn wait_forwarding(&self, child: &mut Child) -> io::Result<ExitStatus> {
        loop {
            self.forward_pending(Some(child.id()));
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            child::poll_until(&[self.0.as_fd()], None).map_err(io::Error::other)?;
        }
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        // Signals that came after the child's exit had no one left to reach;
        // then the inner value restores the mask.
        self.forward_pending(None);
    }
}

/// The error for a command that could not be started.
fn spawn_error(e: io::Error, program: &OsString, name: &str) -> Error {
    if e.raw_os_error() == Some(HANDOVER_FAILED) {
        Error::general(format!(
            "cannot hand lock '{name}' to the command: the hold was taken over, or its record stayed busy"
        ))
        .hint("run it again; see 'lock-manager status'")
    } else {
        child::not_found_hint(
            child::spawn_error(e, program),
            "check its name, or give its full path",
        )
    }
}

/// Releases `holder`'s hold, audited. A hold already taken over (the child
/// exited and a waiter took the lock at once) is no error; any other
/// failure is a warning (the hold is stale anyway once the child is gone).
fn release_own(cfg: &Config, name: &str, holder: &Identity) {
    let holds =
        manager::read(cfg, name).is_ok_and(|r| r.is_some_and(|r| r.holder(holder).is_some()));
    if !holds {
        return;
    }
    let rec = Recorder::start(cfg, TOOL, "release", name);
    let result = manager::release(cfg, name, holder, false);
    rec.finish(&result, json!({ "owner_pid": holder.pid, "forced": false }));
    match result {
        Err(e) if e.kind() == Kind::PermissionDenied => {}
        Err(e) => eprintln!("{TOOL}: warning: {e}"),
        Ok(_) => {}
    }
}

/// `run` on Redis, where every hold is a lease: the wrapper acquires, hands
/// the hold to the child before it execs (as on files), exports its fencing
/// token, and then renews the child's lease itself every third of the lease.
/// The child also gets a keeper, so that a wrapper killed (even by SIGKILL)
/// leaves the hold with the command, as on files. When a renewal is not confirmed
/// before the lease could have lapsed, the command no longer holds the lock
/// for sure: its process group is ended (SIGTERM, then SIGKILL after
/// [`child::GRACE`]) and `run` exits 6 when the server said the lock was
/// taken over, 8 when it could not be reached — never 0 after losing the
/// lock.
///
/// The child leads a process group of its own, so that all it started can
/// be ended with it — except when `run` is in a terminal's foreground
/// group: then the child stays in it (so it can read the terminal) and is
/// ended alone.
#[cfg(feature = "redis")]
mod leased {
    use std::time::Instant;

    use super::*;
    use crate::backend::redis::RedisBackend;
    use crate::backend::redis::keeper::{
        Leases, Renewed, ensure, forget_link, forget_tokens_dir, hand_token, own_link,
    };
    use crate::backend::redis::local;
    use crate::child::Running;
    use crate::lock::commands::audited_acquire;
    use crate::lock::manager::Request;
    use crate::lock::name;

    /// The errno a child reports when the server could not be reached for
    /// the handover.
    const HANDOVER_UNREACHABLE: i32 = libc::ENETUNREACH;

    pub(super) fn run_inner(
        cfg: &Config,
        redis: &RedisBackend,
        a: &RunArgs,
        wait_ms: &mut f64,
        child_pid: &mut Option<u32>,
    ) -> Result<u8> {
        let (timeout, kind) = request(cfg, a)?;
        let lease = local::lease()?;
        let (program, args) = a.command.split_first().expect("checked by request");
        let attend = Attend {
            signals: true,
            progress: Progress::choose(a.verbose),
        };
        let me = Identity::current();
        let locks = redis.locks();
        let (acquired, log, _) = audited_acquire(
            cfg,
            &a.name,
            attend,
            || {
                name::validate(&a.name)?;
                Ok(Request {
                    name: a.name.clone(),
                    kind,
                    owner: me.clone(),
                    ttl: None,
                    metadata: None,
                    timeout,
                })
            },
            |req, log| locks.acquire(req, log),
        );
        *wait_ms = log.wait_ms();
        let got = acquired?;
        if a.verbose {
            say_verbose(a, log.waited);
        }
        // This very process held it already (a shell exec'd us in place):
        // that hold is the shell's, and its keeper renews it.
        let hand_over = !got.already_held;
        let link = own_link(redis, lease);
        // When the grant's lease ends is not known here: a renewal sent now
        // is a time to count the lease from.
        let mut mine = Leases::new(&link, me.clone(), lease, Instant::now());
        let token = match checked_token(&mut mine, &link, &a.name, &me, hand_over) {
            Ok(t) => t,
            Err(e) => {
                if hand_over {
                    release_leased(cfg, redis, &a.name, &me);
                }
                return Err(e);
            }
        };
        let signals = match Signals::block() {
            Ok(s) => s,
            Err(e) => {
                if hand_over {
                    release_leased(cfg, redis, &a.name, &me);
                }
                return Err(Error::io(e, "cannot watch signals", "signalfd"));
            }
        };
        let group = !in_terminal_foreground();
        let mut cmd = Command::new(program);
        cmd.args(args);
        if group {
            cmd.process_group(0);
        }
        let name = CString::new(a.name.as_bytes()).expect("a valid lock name has no NUL");
        let (epoch, token) = (
            CString::new(token.0).unwrap_or_default(),
            CString::new(token.1.to_string()).expect("digits"),
        );
        let (lock, from) = (a.name.clone(), me.clone());
        let old_mask = signals.0.old_mask();
        // The closure must be 'static and Send; it runs in the forked child,
        // a copy of this process's memory in which `link` lives on until
        // exec (spawn returns only after it).
        let link_at = &link as *const RedisBackend as usize;
        // SAFETY: runs in the forked child of this single-threaded process,
        // where the allocator and every lock are free; `link_at` points into
        // the child's own copy of this stack frame, alive until the exec.
        // The parent does not use `link`'s connection until spawn returns,
        // and drops it when the spawn failed (a reply may be left unread).
        unsafe {
            cmd.pre_exec(move || {
                libc::pthread_sigmask(libc::SIG_SETMASK, &old_mask, std::ptr::null_mut());
                let child = Identity::current();
                let owner = if hand_over {
                    let link = &*(link_at as *const RedisBackend);
                    link.transfer_hold(&lock, &from, &child)
                        .and_then(|()| hand_token(link, &lock, &from, &child))
                        .map_err(|e| {
                            io::Error::from_raw_os_error(if e.kind() == Kind::Network {
                                HANDOVER_UNREACHABLE
                            } else {
                                HANDOVER_FAILED
                            })
                        })?;
                    child.pid
                } else {
                    from.pid
                };
                let pid = CString::new(owner.to_string()).expect("digits");
                libc::setenv(c"WFSTATE_LOCK_NAME".as_ptr(), name.as_ptr(), 1);
                libc::setenv(c"LOCK_OWNER_PID".as_ptr(), pid.as_ptr(), 1);
                libc::setenv(c"WFSTATE_FENCING_TOKEN".as_ptr(), token.as_ptr(), 1);
                libc::setenv(c"WFSTATE_FENCING_EPOCH".as_ptr(), epoch.as_ptr(), 1);
                Ok(())
            });
        }
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                drop(signals);
                forget_link(&link);
                if hand_over {
                    // The child may have taken the hold over and then
                    // failed to exec: a dead holder of ours, released.
                    release_dead(cfg, redis, &a.name);
                    release_leased(cfg, redis, &a.name, &me);
                }
                return Err(if e.raw_os_error() == Some(HANDOVER_UNREACHABLE) {
                    Error::new(
                        Kind::Network,
                        format!(
                            "cannot hand lock '{}' to the command: the server did not answer",
                            a.name
                        ),
                    )
                    .hint("check the server; the lock lapses after WFSTATE_LEASE")
                } else {
                    spawn_error(e, program, &a.name)
                });
            }
        };
        *child_pid = Some(child.id());
        crate::debug::log(|| format!("run {}: command started, pid {}", a.name, child.id()));
        // Unreaped, the child's start time stays readable even once it exits.
        let holder = if hand_over {
            Identity::of_child(child.id()).ok()
        } else {
            None
        };
        if let Some(h) = &holder {
            // The hold follows the command, not this wrapper: should the
            // wrapper be killed, the command's keeper goes on renewing it
            // (and releases it when the command exits).
            if let Err(e) = ensure(redis, h) {
                eprintln!("{TOOL}: warning: {e}");
            }
        }
        if group {
            // Orphans of the child's group become ours to reap, so that the
            // end of the group can be awaited (`Running::terminate`).
            let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
        }
        let mut running = Running::adopt(child, group)?;
        let status = match &holder {
            Some(h) => {
                let leases = mine.hand_to(h.clone());
                renewing(&signals, &mut running, leases, &a.name, group)
            }
            None => waiting(&signals, &mut running, group),
        };
        drop(signals);
        let status = status?;
        if let Some(holder) = &holder {
            release_leased(cfg, redis, &a.name, holder);
            forget_tokens_dir(redis, holder);
        }
        let code = child::exit_code(status);
        crate::debug::log(|| format!("run {}: the command exited {code}", a.name));
        Ok(code as u8)
    }

    /// Confirms the hold just granted by renewing it (so that its lease can
    /// be counted from a known instant), and reads its token.
    fn checked_token(
        mine: &mut Leases<'_>,
        link: &RedisBackend,
        name: &str,
        me: &Identity,
        hand_over: bool,
    ) -> Result<(String, u64)> {
        if hand_over {
            match mine.renew() {
                Renewed::Held(r) if r.held.iter().any(|n| n == name) => {}
                Renewed::Held(_) => return Err(taken_over(name)),
                Renewed::Unconfirmed(e) => return Err(e),
            }
        }
        match link.token_of(name, me)? {
            Some(t) => Ok(t),
            None => Err(taken_over(name)),
        }
    }

    /// Waits for the child, forwarding signals and renewing its lease; ends
    /// it when the lease could have lapsed unrenewed.
    fn renewing(
        signals: &Signals,
        running: &mut Running,
        mut leases: Leases<'_>,
        name: &str,
        group: bool,
    ) -> Result<ExitStatus> {
        loop {
            signals.forward_pending_to(Some(running.id()), group);
            if let Some(status) = running.try_wait()? {
                if leases.failing() && Instant::now() >= leases.lapse() {
                    // It ran to its end, but maybe not under the lock.
                    return Err(unreachable(name, &leases, None));
                }
                // The hold may have been taken since the last renewal.
                if leases.taken(name) == Some(true) {
                    return Err(taken_over(name));
                }
                return Ok(status);
            }
            let at = leases.next();
            if child::poll_until(&[signals.0.as_fd(), running.pidfd()], Some(at))? {
                continue; // a signal, or the child's exit
            }
            match leases.renew() {
                Renewed::Held(r) if r.held.iter().any(|n| n == name) => {}
                Renewed::Held(_) => {
                    crate::debug::log(|| format!("run {name}: taken over: ending the command"));
                    let _ = running.terminate();
                    return Err(taken_over(name));
                }
                Renewed::Unconfirmed(e) => {
                    if Instant::now() >= leases.lapse() {
                        crate::debug::log(|| {
                            format!("run {name}: lease lapsed: ending the command")
                        });
                        let _ = running.terminate();
                        return Err(unreachable(name, &leases, Some(e)));
                    }
                }
            }
        }
    }

    /// Waits for the child, forwarding signals (the hold is not ours to renew).
    fn waiting(signals: &Signals, running: &mut Running, group: bool) -> Result<ExitStatus> {
        loop {
            signals.forward_pending_to(Some(running.id()), group);
            if let Some(status) = running.try_wait()? {
                return Ok(status);
            }
            child::poll_until(&[signals.0.as_fd(), running.pidfd()], None)?;
        }
    }

    /// Exit 6: the lock was taken over while the command ran.
    fn taken_over(name: &str) -> Error {
        Error::new(
            Kind::PermissionDenied,
            format!(
                "lock '{name}' is no longer the command's: it was taken over (its lease lapsed, or a 'release --force'), so the command was stopped"
            ),
        )
        .hint("see 'lock-manager status' and the audit log for who has it; a longer WFSTATE_LEASE tolerates longer pauses")
    }

    /// Exit 8: no renewal was confirmed before the lease could have lapsed.
    fn unreachable(name: &str, leases: &Leases<'_>, e: Option<Error>) -> Error {
        let why = e.map(|e| format!(": {}", e.summary())).unwrap_or_default();
        Error::new(
            Kind::Network,
            format!(
                "lock '{name}': no renewal confirmed within the lease ({} ms), so the command no longer held it for sure and was stopped{why}",
                leases.lease().as_millis()
            ),
        )
        .hint("check that the server is up and reachable, then run the command again")
    }

    /// Whether this process is in the foreground process group of the
    /// terminal on stdin, stdout or stderr.
    fn in_terminal_foreground() -> bool {
        // SAFETY: isatty, tcgetpgrp and getpgrp only read kernel state.
        (0..3).any(|fd| unsafe { libc::isatty(fd) == 1 && libc::tcgetpgrp(fd) == libc::getpgrp() })
    }

    /// Releases `holder`'s hold of `name`, audited, if it still has one;
    /// any failure is a warning (the lease lapses anyway).
    fn release_leased(cfg: &Config, redis: &RedisBackend, name: &str, holder: &Identity) {
        if !matches!(redis.token_of(name, holder), Ok(Some(_))) {
            return;
        }
        let rec = Recorder::start(cfg, TOOL, "release", name);
        let result = redis.locks().release(name, holder, false);
        rec.finish(&result, json!({ "owner_pid": holder.pid, "forced": false }));
        match result {
            Err(e) if e.kind() == Kind::PermissionDenied => {}
            Err(e) => eprintln!("{TOOL}: warning: {e}"),
            Ok(_) => {}
        }
    }

    /// Releases the holds of `name` whose holder is a dead process of this
    /// host (a child that took the hold over and could not exec).
    fn release_dead(cfg: &Config, redis: &RedisBackend, name: &str) {
        let Ok(Some(record)) = redis.locks().read(name) else {
            return;
        };
        for h in &record.holders {
            if h.id.is_local() && h.id.death().is_some() {
                release_leased(cfg, redis, name, &h.id);
            }
        }
    }
}
