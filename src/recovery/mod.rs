//! Getting a workflow back on its feet: checkpoints of the state and its
//! folders, atomic restore, degraded mode, retry with backoff, and the
//! recovery strategy for each exit code (the `error-recovery` binary).
//!
//! - [`checkpoint`] — `.checkpoints/checkpoint-YYYYMMDD-HHMMSSZ-SEQ-OPERATION/`,
//!   built in a temp folder and renamed into place, every file checksummed:
//!   the one owner of the format (make, list, verify, inspect, remove).
//! - [`restore`] — verifies a checkpoint, then replaces the state, `.signals/`
//!   and `config/` under the `state` lock; an interrupted restore is finished
//!   by the next run.
//! - [`degraded`] — the state's `degradedMode` switch, `is-degraded`'s
//!   answer and what the `status` report reads.
//! - [`retry`] — runs a command until it succeeds, with capped exponential
//!   backoff and jitter, under an optional overall deadline.
//! - [`suggest`] — what each exit code means and what `handle --apply` does
//!   about it.
//!
//! These functions return typed values and print nothing (but a warning on
//! stderr); the subcommands that render them are in `crate::cmd::recovery`.
//!
//! What this module does not guarantee: a checkpoint copies only the state
//! file, `.signals/` and `config/` (regular files; symlinks inside them are
//! skipped), and restored files are private (0600) whatever their mode was.

pub mod checkpoint;
pub mod degraded;
pub mod restore;
pub mod retry;
pub mod suggest;

/// The binary's name, used in messages and audit events.
pub const TOOL: &str = "error-recovery";
