//! The audit sink: one event per operation of any binary, appended in one
//! order, and read back by the review commands (`state-manager audit …`).
//!
//! The file backend's implementation is [`crate::audit::event`] (one
//! `write(2)` per event to the JSON Lines file, rotated by
//! [`crate::audit::rotate`]) and [`crate::audit::scan`] (the rotated files
//! oldest first, then the live log, one line at a time; or newest first,
//! from the end of the live log back, for `audit recent`).

use super::FileBackend;
use crate::audit::event::{self, Event};
use crate::audit::scan::{Events, Line, Totals};
use crate::error::Result;

/// Where audit events go, and where the review commands read them back
/// ([`Events::scan_events`], in log order, oldest first).
pub trait AuditSink: Events {
    /// Appends one event. Never fails the operation it describes: a failure
    /// is a warning on stderr.
    fn append(&self, event: &Event);
    /// Every event, oldest first, each handed to `each`; returns what was
    /// read. A line that does not parse is counted and skipped, never fatal.
    fn scan(&self, each: &mut dyn FnMut(&Line)) -> Result<Totals> {
        self.scan_events(each)
    }
}

/// The audit file, read as a [`crate::config::Config`] reads it.
impl Events for FileBackend {
    fn scan_events(&self, each: &mut dyn FnMut(&Line)) -> Result<Totals> {
        self.cfg.scan_events(each)
    }

    fn scan_events_naming(&self, needle: &str, each: &mut dyn FnMut(&Line)) -> Result<Totals> {
        self.cfg.scan_events_naming(needle, each)
    }

    fn scan_events_back(&self, each: &mut dyn FnMut(&Line) -> bool) -> Option<Result<Totals>> {
        self.cfg.scan_events_back(each)
    }
}

impl AuditSink for FileBackend {
    fn append(&self, event: &Event) {
        event::append(&self.cfg, event)
    }
}
