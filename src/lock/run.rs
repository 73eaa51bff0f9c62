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

use serde_json::json;

use super::commands::{TOOL, acquire_for_self, say};
use super::manager::{self, Attend, Progress};
use super::process::Identity;
use super::record::LockType;
use crate::audit::Recorder;
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
pub fn run(cfg: &Config, a: &RunArgs) -> Result<u8> {
    let rec = Recorder::start(cfg, TOOL, "run", &a.name);
    let mut wait_ms = 0.0;
    let mut child_pid = None;
    let result = run_inner(cfg, a, &mut wait_ms, &mut child_pid);
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

fn run_inner(
    cfg: &Config,
    a: &RunArgs,
    wait_ms: &mut f64,
    child_pid: &mut Option<u32>,
) -> Result<u8> {
    let timeout = match (a.timeout.as_deref(), a.nonblock) {
        (Some(_), true) => {
            return Err(
                Error::validation("-n/--nonblock and -w/--timeout both given")
                    .hint("give one of them: -n is a timeout of 0"),
            );
        }
        (Some(t), false) => config::parse_duration(t, "timeout")?,
        (None, true) => std::time::Duration::ZERO,
        (None, false) => cfg.lock_timeout,
    };
    let Some((program, args)) = a.command.split_first() else {
        return Err(Error::validation("no command to run")
            .hint("usage: lock-manager run NAME -- CMD [ARGS...]"));
    };
    let kind = if a.shared {
        LockType::Shared
    } else {
        LockType::Exclusive
    };
    let attend = Attend {
        signals: true,
        progress: Progress::choose(a.verbose),
    };
    let (acquired, log) = acquire_for_self(cfg, &a.name, kind, timeout, attend);
    *wait_ms = log.wait_ms();
    let got = acquired?;
    if a.verbose {
        // flock(1)'s own two lines, in its words.
        say(&format!(
            "getting lock '{}' took {:.6} seconds",
            a.name,
            log.waited.as_secs_f64()
        ));
        let line: Vec<String> = a
            .command
            .iter()
            .map(|w| w.to_string_lossy().into_owned())
            .collect();
        say(&format!("executing {}", line.join(" ")));
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
        while let Some(info) = self.0.read() {
            let sig = info.ssi_signo as libc::c_int;
            // A terminal's signal (SI_KERNEL) already went to the whole
            // foreground process group, the child included.
            if let Some(pid) = child
                && FORWARDED.contains(&sig)
                && info.ssi_code != libc::SI_KERNEL
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
