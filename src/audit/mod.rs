//! The audit log: one JSON line per operation of any binary (design.md §7).
//!
//! [`event`] writes events; review commands read them back. Writing never
//! fails the operation it describes: a failure to audit is a warning on
//! stderr and nothing more.

pub mod event;

pub use event::{Event, Recorder};
