//! The audit log: one JSON line per operation of any binary
//! (schemas/audit-event.schema.json), and what the review commands
//! (`state-manager audit …`) compute from it.
//!
//! [`event`] writes events and [`rotate`] keeps the log's size bounded;
//! [`scan`] streams them back (forward, or newest first with [`backward`];
//! the toolkit's own lines read by [`plain`], any other by `serde_json`)
//! for the reviews ([`recent`], [`stats`],
//! [`races`], [`history`], [`export`], [`monitor`]), which return typed
//! values and print nothing: the arguments, the text and JSON rendering and
//! the entry point are in `crate::cmd::audit`. Writing never fails the
//! operation it describes: a failure to audit is a warning on stderr and
//! nothing more. Reviewing never fails on a bad line: it is counted and
//! skipped.

pub mod backward;
pub mod event;
pub mod export;
pub mod history;
pub mod missing;
pub mod monitor;
pub mod plain;
pub mod races;
pub mod recent;
pub mod rotate;
pub mod scan;
pub mod spill;
pub mod stats;

pub use event::{Event, Recorder};
