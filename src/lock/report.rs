//! What `lock-manager status` reports, judged from a [`scan`] of `.locks/`
//! by the one staleness rule ([`Record::standing`]). Liveness is judged at
//! the moment of the scan, so a report is a snapshot and may be out of date
//! by the time it is read. Rendering is `crate::cmd::lock`'s.
//!
//! [`scan`]: super::manager::scan
//! [`Record::standing`]: super::record::Record::standing

use serde::Serialize;

use super::manager::Entry;
use super::record::Standing;

/// Counts for `status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Locks with a live holder.
    pub held: usize,
    /// Records whose holders are all gone.
    pub stale: usize,
    /// Live waiting requests.
    pub waiting: usize,
    /// Records that do not parse.
    pub corrupt: usize,
}

/// Counts held and stale locks, live waiting requests and corrupt records.
pub fn counts(entries: &[Entry]) -> Counts {
    let mut c = Counts::default();
    for e in entries {
        match &e.record {
            Ok(rec) => {
                match rec.standing() {
                    Standing::Held => c.held += 1,
                    Standing::Stale => c.stale += 1,
                    Standing::Waited | Standing::Vacant => {}
                }
                c.waiting += rec.waiters.iter().filter(|w| w.id.is_live()).count();
            }
            Err(_) => c.corrupt += 1,
        }
    }
    c
}

/// What `status` reports: the counts and every record they were made from.
#[derive(Debug)]
pub struct Status {
    pub counts: Counts,
    /// Every record, sorted by name.
    pub entries: Vec<Entry>,
}

impl Status {
    pub fn of(entries: Vec<Entry>) -> Status {
        Status {
            counts: counts(&entries),
            entries,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::audit::event::now_rfc3339_micros;
    use crate::error::Error;
    use crate::lock::process::Identity;
    use crate::lock::record::{Holder, LockType, Record};

    /// A corrupt record, a lock held shared twice by this process, and a
    /// record whose holder is gone.
    pub(crate) fn entries() -> Vec<Entry> {
        let me = Identity::current();
        let gone = Identity {
            start_time: me.start_time + 1,
            ..me.clone()
        };
        let h = |id: Identity| Holder {
            id,
            acquired: now_rfc3339_micros(),
            acquired_boottime: None,
            ttl: None,
            metadata: None,
        };
        let mut shared = Record::new("docs", LockType::Shared);
        shared.holders = vec![h(me.clone()), h(me.clone())];
        let mut old = Record::new("old", LockType::Exclusive);
        old.holders = vec![h(gone)];
        vec![
            Entry {
                name: "bad".into(),
                record: Err(Error::corruption("lock record does not parse")),
            },
            Entry {
                name: "docs".into(),
                record: Ok(shared),
            },
            Entry {
                name: "old".into(),
                record: Ok(old),
            },
        ]
    }

    #[test]
    fn counts_follow_the_standing_of_each_record() {
        let s = Status::of(entries());
        let c = s.counts;
        assert_eq!((c.held, c.stale, c.waiting, c.corrupt), (1, 1, 0, 1));
        assert_eq!(s.entries.len(), 3);
    }
}
