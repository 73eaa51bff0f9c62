//! `audit recent`: the newest events that match a filter, oldest first.
//!
//! Where the events can be read newest first (the file backend: the live
//! log from its end, then `LOG.1`, … only if needed), reading stops at the
//! `n`-th match: the cost is what those events hold, not the log's size.
//! Elsewhere the log streams past once and only the last `n` matching lines
//! are kept (a ring of raw lines). Either way memory is bounded by `n`, and
//! the events shown are the same.
//!
//! What differs: read from the end, the lines before the oldest event shown
//! are never read, so the malformed lines counted ([`Totals`]) are those
//! among the lines read.

use std::collections::VecDeque;

use serde_json::Value;

use super::scan::{Events, Filter, Totals};
use crate::error::Result;

/// The newest `n` matching events, as raw lines, oldest first.
pub fn collect(events: &dyn Events, filter: &Filter, n: usize) -> Result<(Vec<Vec<u8>>, Totals)> {
    if n == 0 {
        // Nothing to show: no reason to read at all, but say what the log holds.
        return collect_forward(events, filter, n);
    }
    let mut newest: Vec<Vec<u8>> = Vec::with_capacity(n.min(4096));
    let back = events.scan_events_back(&mut |line| {
        if filter.matches(line) {
            newest.push(line.raw.to_vec());
        }
        newest.len() < n
    });
    match back {
        Some(totals) => {
            let totals = totals?;
            newest.reverse();
            Ok((newest, totals))
        }
        None => collect_forward(events, filter, n),
    }
}

/// [`collect`] by one forward pass over every event, keeping the last `n`
/// matches: for the places that cannot be read newest first.
pub fn collect_forward(
    events: &dyn Events,
    filter: &Filter,
    n: usize,
) -> Result<(Vec<Vec<u8>>, Totals)> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    use crate::audit::TestRng as Rng;

    const TOOLS: &[&str] = &["state-manager", "lock-manager", "error-recovery"];
    const OPS: &[&str] = &["set", "acquire", "write", "checkpoint", "audit-recent"];
    const TARGETS: &[&str] = &["deploy", "/w/s.json", "/w/./s.json", "ck-1", ""];

    /// One line of a generated log: mostly events (ts jittered, not in
    /// order), some malformed, some blank, some ending in `\r`.
    fn line(rng: &mut Rng, i: u64) -> String {
        let sec = 1_000 + i * 2 + rng.below(5);
        let ts = format!(
            "2024-05-01T10:{:02}:{:02}.{:06}Z",
            (sec / 60) % 60,
            sec % 60,
            rng.below(1_000_000)
        );
        let mut l = match rng.below(20) {
            0 => "not json".to_string(),
            1 => format!("{{\"ts\":\"{ts}\",\"tool\":\"x\"}}"),
            2 => String::new(),
            _ => serde_json::json!({
                "ts": ts, "tool": rng.pick(TOOLS), "op": rng.pick(OPS),
                "target": rng.pick(TARGETS), "pid": i, "exit_code": rng.below(3),
                "run_id": rng.pick(&["r1", "r2"]),
            })
            .to_string(),
        };
        if rng.below(10) == 0 {
            l.push('\r');
        }
        l
    }

    /// Writes the live log and 0–3 rotated files; the live log may lack
    /// its last newline, and any file may be empty.
    fn write_log(rng: &mut Rng, log: &Path) {
        let files = rng.below(4) as usize;
        let mut i = 0;
        for n in (0..=files).rev() {
            let path = if n == 0 {
                log.to_path_buf()
            } else {
                super::super::rotate::rotated(log, n)
            };
            let mut text = String::new();
            for _ in 0..rng.below(40) {
                text.push_str(&line(rng, i));
                text.push('\n');
                i += 1;
            }
            if n == 0 && rng.below(2) == 0 {
                text.push_str(&line(rng, i));
            }
            std::fs::write(path, text).unwrap();
        }
    }

    fn filters(rng: &mut Rng) -> Filter {
        let maybe =
            |rng: &mut Rng, of: &[&str]| (rng.below(3) == 0).then(|| rng.pick(of).to_string());
        Filter {
            run_id: maybe(rng, &["r1", "r2", "r3"]),
            tool: maybe(rng, TOOLS),
            op: maybe(rng, OPS),
            target: maybe(rng, &["deploy", "/w/s.json", "/w/x/../s.json", "ck-1"])
                .map(crate::audit::scan::Target::new),
            since: (rng.below(3) == 0).then(|| {
                crate::audit::scan::parse_ts("2024-05-01T10:17:00Z").unwrap()
                    + rng.below(60_000_000) as i64
            }),
            failed: rng.below(4) == 0,
        }
    }

    #[test]
    fn newest_first_gives_what_the_forward_scan_gives() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::new(dir.path().join("s.json"));
        let mut shown = 0;
        for seed in 1..400u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            for f in std::fs::read_dir(dir.path()).unwrap() {
                std::fs::remove_file(f.unwrap().path()).unwrap();
            }
            write_log(&mut rng, &cfg.audit_log);
            for _ in 0..8 {
                let filter = filters(&mut rng);
                let n = [1, 2, 3, 5, 20, 1000][rng.below(6) as usize];
                let (back, bt) = collect(&cfg, &filter, n).unwrap();
                let (fwd, ft) = collect_forward(&cfg, &filter, n).unwrap();
                assert_eq!(back, fwd, "seed {seed}, n {n}, {filter:?}");
                assert!(bt.lines <= ft.lines && bt.malformed <= ft.malformed);
                if back.len() < n {
                    // Fewer than asked: everything was read, and counted.
                    assert_eq!((bt.lines, bt.malformed), (ft.lines, ft.malformed));
                    assert_eq!(bt.files, ft.files);
                }
                shown += back.len();
            }
        }
        assert!(shown > 1000, "the family shows events: {shown}");
    }
}
