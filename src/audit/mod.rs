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

/// A small deterministic generator (xorshift) for the reviews' tests, so a
/// failure names its seed.
#[cfg(test)]
pub(crate) struct TestRng(pub u64);

#[cfg(test)]
impl TestRng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn pick<T: Clone>(&mut self, of: &[T]) -> T {
        of[self.below(of.len() as u64) as usize].clone()
    }
}
