//! Getting a workflow back on its feet: checkpoints of the state and its
//! folders, atomic restore, degraded mode, retry with backoff, and the
//! recovery strategy for each exit code (the `error-recovery` binary).
//!
//! - [`checkpoint`] — `.checkpoints/checkpoint-YYYYMMDD-HHMMSS-OPERATION/`,
//!   built in a temp folder and renamed into place, every file checksummed.
//! - [`restore`] — verifies a checkpoint, then replaces the state, `.signals/`
//!   and `config/` under the `state` lock; an interrupted restore is finished
//!   by the next run.
//! - [`degraded`] — the state's `degradedMode` switch and the `status` report.
//! - [`retry`] — runs a command until it succeeds, with capped exponential
//!   backoff and jitter, under an optional overall deadline.
//! - [`suggest`] — what each exit code means and what `handle --apply` does
//!   about it.
//!
//! What this module does not guarantee: a checkpoint copies only the state
//! file, `.signals/` and `config/` (regular files; symlinks inside them are
//! skipped), and restored files are private (0600) whatever their mode was.

pub mod checkpoint;
pub mod degraded;
pub mod restore;
pub mod retry;
pub mod suggest;

use serde_json::{Value, json};

use crate::audit::Recorder;
use crate::config::Config;
use crate::error::Result;
use crate::lock::{self, Identity};
use crate::state::Store;
use crate::state::backup::Retention;

/// The binary's name, used in messages and audit events.
pub const TOOL: &str = "error-recovery";

/// What every `error-recovery` subcommand needs.
pub struct Ctx {
    pub cfg: Config,
    /// Backup retention for the state commits made by restore, degrade and handle.
    pub retention: Retention,
    /// `--owner`: the lock owner this invocation acts for.
    pub owner: Option<u32>,
}

impl Ctx {
    pub(crate) fn store(&self) -> Result<Store<'_>> {
        Store::open(&self.cfg, self.retention)
    }

    /// The owner for the `state` lock: `--owner`, `LOCK_OWNER_PID`, else the
    /// calling shell. A caller that has already exited owns nothing.
    pub(crate) fn owner(&self) -> Result<Option<Identity>> {
        lock::process::caller(self.owner)
    }

    /// The state file as configured, the audit target of state operations.
    pub(crate) fn state_target(&self) -> String {
        self.cfg.state_file.display().to_string()
    }

    /// Runs `f` as operation `op` on `target`, recording one audit event.
    pub(crate) fn audited<T>(
        &self,
        op: &str,
        target: impl Into<String>,
        f: impl FnOnce(&mut Value) -> Result<T>,
    ) -> Result<T> {
        let rec = Recorder::start(&self.cfg, TOOL, op, target);
        let mut detail = json!({});
        let result = f(&mut detail);
        rec.finish(&result, detail);
        result
    }
}
