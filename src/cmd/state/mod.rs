//! The `state-manager` subcommands (all but `audit` and `hook`): each runs
//! one operation of `crate::state` and prints its result as text or, with
//! `--json`, as one JSON value (snake_case keys; `-c` on one line), with one
//! audit event per call.
//!
//! - [`document`]: `init`, `read`, `write`, `set`, `merge`, `append`,
//!   `del`, `mv`, `signal`, `migrate`.
//! - [`backups`]: `backup`, `list-backups`, `recover`.
//! - [`check`]: `status`, `validate`, `verify-integrity`,
//!   `validate-backup`, `health`.
//! - [`maintain`]: `repair`, `export`, `import`, `cleanup`, `diagnostics`,
//!   `benchmark`.
//! - [`metrics`]: `metrics` (the Prometheus text format).

pub mod backups;
pub mod check;
pub mod document;
pub mod maintain;
pub mod metrics;
pub mod states;

use serde::Serialize;
use serde_json::{Value, json};

use crate::audit::event::ms;
use crate::cmd::Ctx;
use crate::error::Result;
use crate::state::Commit;

pub(crate) const TOOL: &str = "state-manager";

impl Ctx {
    /// Runs `f` as operation `op` on the state file, recording one audit event.
    pub(crate) fn audited_state<T>(
        &self,
        op: &str,
        f: impl FnOnce(&mut Value) -> Result<T>,
    ) -> Result<T> {
        self.audited(op, self.state_target(), f)
    }

    /// A read-modify-write under the `state` lock, through the backend:
    /// `change` edits the current document; the result is committed as the
    /// next revision. `change` may run more than once (an optimistic
    /// backend computes it again after a conflict), each time on the
    /// document as it then is.
    pub(crate) fn update(
        &self,
        op: &str,
        change: impl FnMut(&mut Value) -> Result<()>,
    ) -> Result<Commit> {
        self.update_at(op, None, change)
    }

    /// [`Ctx::update`] of the value at `path` (jq's form): its event's
    /// detail names the path, on every backend (see [`note_path`]).
    pub(crate) fn update_at(
        &self,
        op: &str,
        path: Option<&str>,
        change: impl FnMut(&mut Value) -> Result<()>,
    ) -> Result<Commit> {
        self.update_member(op, path, None, change)
    }

    /// [`Ctx::update_at`] of a change confined to the top-level member
    /// `member` when it is given (see [`crate::backend::StateStore::set`]).
    pub(crate) fn update_member(
        &self,
        op: &str,
        path: Option<&str>,
        member: Option<&str>,
        mut change: impl FnMut(&mut Value) -> Result<()>,
    ) -> Result<Commit> {
        self.audited_state(op, |detail| {
            if let Some(p) = path {
                note_path(detail, "path", p);
            }
            let owner = self.owner_identity()?;
            let state = self.backend.state();
            let access = self.access(owner.as_ref());
            let mut waited = |waited| detail["lock_wait_ms"] = json!(ms(waited));
            let commit = match member {
                Some(key) => state.set(access, op, key, &mut change, &mut waited)?,
                None => state.update(access, op, &mut change, &mut waited)?,
            };
            detail["revision"] = json!(commit.revision);
            Ok(commit)
        })
    }
}

/// Records `key: path` in an operation's audit detail — the event the
/// recorder writes on files, and the one a backend's commit script writes
/// (Redis) — so `audit missing .PATH` can find what changed or removed it.
pub(crate) fn note_path(detail: &mut Value, key: &str, path: &str) {
    detail[key] = json!(path);
    crate::audit::event::note_for_commit(key, json!(path));
}

/// Says on stderr where a corrupt state that a recovery replaced was kept,
/// when `detail` (filled by the domain) names the place.
pub(crate) fn note_corrupt_kept(detail: &Value) {
    if let Some(aside) = detail["corrupt_kept_at"].as_str() {
        eprintln!("{TOOL}: kept the corrupt state at {aside}");
    }
}

/// What a commit made, as mutations print it under `--json`.
#[derive(Serialize)]
pub struct Committed {
    pub revision: u64,
    /// The backup of the version it replaced.
    pub backup: Option<String>,
}

impl From<&Commit> for Committed {
    fn from(c: &Commit) -> Committed {
        Committed {
            revision: c.revision,
            backup: c.backup.as_ref().map(|p| p.display().to_string()),
        }
    }
}
