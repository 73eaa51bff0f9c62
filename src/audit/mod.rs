//! The audit log: one JSON line per operation of any binary (design.md §7),
//! and the commands that review it (`state-manager audit …`).
//!
//! [`event`] writes events and [`rotate`] keeps the log's size bounded;
//! [`scan`] streams them back for the review commands ([`recent`],
//! [`stats`], [`races`], [`history`], [`export`], [`monitor`]), whose
//! arguments and entry point are in [`cli`]. Writing never fails the
//! operation it describes: a failure to audit is a warning on stderr and
//! nothing more. Reviewing never fails on a bad line: it is counted and
//! skipped.

pub mod cli;
pub mod event;
pub mod export;
pub mod history;
pub mod monitor;
pub mod races;
pub mod recent;
pub mod rotate;
pub mod scan;
pub mod stats;
pub mod table;

pub use event::{Event, Recorder};
