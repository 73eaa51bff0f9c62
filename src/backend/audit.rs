//! The audit sink: one event per operation of any binary, appended in one
//! order, and read back by the review commands (`state-manager audit …`).
//!
//! The file backend's implementation is [`crate::audit::event`] (one
//! `write(2)` per event to the JSON Lines file, rotated by
//! [`crate::audit::rotate`]) and [`crate::audit::scan`].

use super::FileBackend;
use crate::audit::event::{self, Event};

/// Where audit events go.
pub trait AuditSink {
    /// Appends one event. Never fails the operation it describes: a failure
    /// is a warning on stderr.
    fn append(&self, event: &Event);
}

impl AuditSink for FileBackend {
    fn append(&self, event: &Event) {
        event::append(&self.cfg, event)
    }
}
