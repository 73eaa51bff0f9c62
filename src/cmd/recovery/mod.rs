//! The `error-recovery` subcommands: each calls the domain
//! ([`crate::recovery`]) or the checkpoint store (`ctx.backend.checkpoints()`),
//! audits the call and renders the typed result as text or JSON.
//!
//! - [`checkpoints`] — `checkpoint`, `restore`, `list`, `cleanup`.
//! - [`degraded`] — `degrade`, `recover-mode`, `is-degraded`, `status`.
//! - [`suggest`] — `suggest`, `handle`.

pub mod checkpoints;
pub mod degraded;
pub mod suggest;

use serde::Serialize;
use serde_json::Value;

use super::Ctx;
use crate::backend::checkpoints::Access;
use crate::lock::Identity;

/// The binary's name, used in messages and audit events.
pub const TOOL: &str = crate::recovery::TOOL;

/// The owner identity and retention a call that takes the `state` lock uses.
pub(crate) fn access<'a>(ctx: &Ctx, owner: Option<&'a Identity>) -> Access<'a> {
    ctx.access(owner)
}

/// A typed result as a JSON value.
pub(crate) fn to_json(v: &impl Serialize) -> Value {
    serde_json::to_value(v).expect("reports serialize")
}
