//! `audit recent`: the newest events that match a filter, oldest first.
//!
//! Only the last `n` matching lines are kept while the log streams past (a
//! ring of raw lines), so memory is bounded by `n`, not by the log.

use std::collections::VecDeque;

use serde_json::Value;

use super::scan::{Events, Filter, Totals};
use crate::error::Result;

/// The newest `n` matching events, as raw lines, oldest first.
pub fn collect(events: &dyn Events, filter: &Filter, n: usize) -> Result<(Vec<Vec<u8>>, Totals)> {
    let mut ring: VecDeque<Vec<u8>> = VecDeque::with_capacity(n.min(4096));
    let totals = events.scan_events(&mut |line| {
        if n > 0 && filter.matches(line) {
            if ring.len() == n {
                // Reuse the oldest line's buffer for the newest.
                let mut buf = ring.pop_front().unwrap_or_default();
                buf.clear();
                buf.extend_from_slice(line.raw);
                ring.push_back(buf);
            } else {
                ring.push_back(line.raw.to_vec());
            }
        }
    })?;
    Ok((ring.into(), totals))
}

/// The events as JSON values (lines that parsed once always parse again).
pub fn values(lines: &[Vec<u8>]) -> Vec<Value> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect()
}
