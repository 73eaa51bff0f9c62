//! `audit recent`: the newest events that match a filter, oldest first.
//!
//! Only the last `n` matching lines are kept while the log streams past (a
//! ring of raw lines), so memory is bounded by `n`, not by the log.

use std::collections::VecDeque;

use serde_json::{Value, json};

use super::scan::{self, Filter, Totals};
use super::table::{Table, ms};
use crate::config::Config;
use crate::error::Result;

/// The newest `n` matching events, as raw lines, oldest first.
pub fn collect(cfg: &Config, filter: &Filter, n: usize) -> Result<(Vec<Vec<u8>>, Totals)> {
    let mut ring: VecDeque<Vec<u8>> = VecDeque::with_capacity(n.min(4096));
    let totals = scan::scan(&cfg.audit_log, |line| {
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

/// The JSON form: `{"events": [...], "malformed": N, "files": [...]}`.
pub fn to_json(lines: &[Vec<u8>], totals: &Totals) -> Value {
    json!({ "events": values(lines), "malformed": totals.malformed, "files": totals.files })
}

/// The text form: one aligned row per event.
pub fn to_text(lines: &[Vec<u8>], totals: &Totals) -> String {
    let mut t = Table::new(&[
        "time", "tool", "op", "target", "pid", "owner", "ms", "exit", "run",
    ]);
    for c in [4, 5, 6, 7] {
        t.right(c);
    }
    let mut skip = Totals::default();
    for raw in lines {
        if let Some(l) = scan::parse_line(raw, &mut skip) {
            let ev = &l.ev;
            t.row(vec![
                ev.ts.to_string(),
                ev.tool.to_string(),
                ev.op.to_string(),
                ev.target.to_string(),
                ev.pid.to_string(),
                ev.owner().to_string(),
                ms(Some(ev.duration_ms)),
                ev.exit_code.to_string(),
                ev.run_id.as_deref().unwrap_or("-").to_string(),
            ]);
        }
    }
    let mut out = if t.is_empty() {
        "no matching events\n".to_string()
    } else {
        t.render()
    };
    if totals.malformed > 0 {
        out.push_str(&format!(
            "({})\n",
            super::table::malformed_note(totals.malformed)
        ));
    }
    out
}
