//! `lock-manager run`: hold a lock for the life of a child command, like
//! flock(1), with the toolkit's exit codes.
//!
//! The holder is the `lock-manager` process itself, not the calling shell:
//! the lock lasts exactly as long as the child (we wait for it, then
//! release), and if `lock-manager` is killed — even by SIGKILL — its pid is
//! gone, so the record is stale at once and the next acquirer takes over.
//!
//! The child gets `WFSTATE_LOCK_NAME` and no descriptor of ours: every file
//! the toolkit opens is close-on-exec, and the lock itself is a record, not
//! an open file. Signals sent to `lock-manager` are not forwarded; a
//! terminal's Ctrl-C reaches the child through the process group.

use std::ffi::OsString;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use serde_json::json;

use super::commands::{TOOL, acquire_for_self};
use super::manager;
use super::process::Identity;
use super::record::LockType;
use crate::audit::Recorder;
use crate::config::{self, Config};
use crate::error::{Error, Kind, Result};

/// The arguments of `run`.
#[derive(Clone, Debug)]
pub struct RunArgs {
    pub name: String,
    pub shared: bool,
    /// Seconds to wait for the lock; `None`: LOCK_TIMEOUT.
    pub timeout: Option<String>,
    /// The command and its arguments.
    pub command: Vec<OsString>,
}

/// Runs the command holding the lock; returns the child's exit code
/// (128+N if a signal N ended it). Errors: 2 the lock was not had in time,
/// 4 bad name or timeout, 5 the command is not found, 6 it is not executable.
pub fn run(cfg: &Config, a: &RunArgs) -> Result<u8> {
    let rec = Recorder::start(cfg, TOOL, "run", &a.name);
    let mut wait_ms = 0.0;
    let result = run_inner(cfg, a, &mut wait_ms);
    let detail = json!({ "wait_ms": wait_ms, "child_exit": result.as_ref().ok() });
    match &result {
        Ok(code) => {
            let outcome = if *code == 0 { "ok" } else { "error" };
            rec.finish_with(i32::from(*code), outcome, detail);
        }
        Err(_) => rec.finish(&result, detail),
    }
    result
}

fn run_inner(cfg: &Config, a: &RunArgs, wait_ms: &mut f64) -> Result<u8> {
    let timeout = match a.timeout.as_deref() {
        Some(t) => config::parse_seconds(t, "timeout")?,
        None => cfg.lock_timeout,
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
    let (acquired, log) = acquire_for_self(cfg, &a.name, kind, timeout);
    *wait_ms = log.wait_ms();
    acquired?;
    let spawned = Command::new(program)
        .args(args)
        .env("WFSTATE_LOCK_NAME", &a.name)
        .spawn();
    let outcome = match spawned {
        Ok(mut child) => child
            .wait()
            .map(|status| match (status.code(), status.signal()) {
                (Some(code), _) => code as u8,
                (None, Some(sig)) => (128 + sig) as u8,
                (None, None) => 1,
            })
            .map_err(|e| Error::io(e, "cannot wait for the command", program)),
        Err(e) => Err(spawn_error(e, program)),
    };
    release_own(cfg, &a.name);
    outcome
}

/// The error for a command that could not be started.
fn spawn_error(e: io::Error, program: &OsString) -> Error {
    let shown = program.to_string_lossy();
    if e.kind() == io::ErrorKind::NotFound {
        Error::new(
            Kind::DependencyMissing,
            format!("command not found: {shown}"),
        )
        .hint("check its name, or give its full path")
    } else {
        Error::io(e, "cannot run the command", shown.as_ref())
    }
}

/// Releases this process's hold, audited; a failure is a warning (the lock
/// is stale anyway the moment we exit).
fn release_own(cfg: &Config, name: &str) {
    let rec = Recorder::start(cfg, TOOL, "release", name);
    let me = Identity::current();
    let result = manager::release(cfg, name, &me, false);
    rec.finish(&result, json!({ "owner_pid": me.pid, "forced": false }));
    if let Err(e) = result {
        eprintln!("{TOOL}: warning: {e}");
    }
}
