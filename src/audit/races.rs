//! `audit races`: timing conflicts, each with the events behind it.
//!
//! - `overlap`: operations on the same target by different owners whose
//!   intervals `[ts - duration_ms, ts]` overlap, at least one of them not a
//!   pure read. Overlapping events are chained into one finding per episode
//!   (a chain of overlaps with two or more owners always holds at least one
//!   overlapping pair of different owners). The owner of an event is
//!   `detail.owner_pid` when present (lock ops), else its `ppid`.
//! - `lock-wait`: a lock wait (`detail.wait_ms` or `lock_wait_ms`) over `--window`.
//! - `takeover`: a stale lock taken over.
//! - `revision-conflict`: a write refused by `--expect-revision`.
//! - `refused`: a state operation refused because the state lock timed out
//!   (exit 2); `lock-timeout`: a lock-manager acquire that timed out.
//!
//! The log streams past once. The log is in finishing order (within a little
//! scheduling jitter), so an event overlaps the current episode of its target
//! exactly when it starts before the episode's latest end; an episode closes
//! as soon as an event starts after it. Memory holds one open episode per
//! target (at most [`MAX_EVENTS`] lines each) and the findings.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use serde::Serialize;
use serde_json::Value;

use super::event::{is_read_only, ms_text};
use super::recent;
use super::scan::{self, Events, Filter, Line, Totals};
use crate::error::Result;

/// Events listed per finding; the rest are counted.
pub const MAX_EVENTS: usize = 20;
/// `--window` when not given: lock waits longer than this are findings.
pub const DEFAULT_WINDOW_MS: f64 = 500.0;

/// One timing conflict.
#[derive(Clone, Debug)]
pub struct Finding {
    pub kind: &'static str,
    pub target: String,
    /// When it began (µs since the epoch).
    pub at: i64,
    pub summary: String,
    pub owners: Vec<u32>,
    /// The events behind it, raw, in log order.
    pub events: Vec<Vec<u8>>,
    /// Events behind it beyond those listed.
    pub more: u64,
}

/// An open episode of overlapping operations on one target.
struct Episode {
    start: i64,
    end: i64,
    owners: Vec<u32>,
    ops: Vec<String>,
    writes: bool,
    count: u64,
    events: Vec<Vec<u8>>,
}

impl Episode {
    fn new(line: &Line, start: i64) -> Episode {
        let mut e = Episode {
            start,
            end: line.at,
            owners: Vec::new(),
            ops: Vec::new(),
            writes: false,
            count: 0,
            events: Vec::new(),
        };
        e.add(line, start);
        e
    }

    fn add(&mut self, line: &Line, start: i64) {
        let ev = &line.ev;
        self.start = self.start.min(start);
        self.end = self.end.max(line.at);
        let owner = ev.owner();
        if !self.owners.contains(&owner) {
            self.owners.push(owner);
        }
        if !self.ops.iter().any(|o| *o == ev.op) {
            self.ops.push(ev.op.to_string());
        }
        self.writes |= !is_read_only(&ev.op);
        self.count += 1;
        if self.events.len() < MAX_EVENTS {
            self.events.push(line.raw.to_vec());
        }
    }

    fn into_finding(self, target: String) -> Option<Finding> {
        if self.owners.len() < 2 || !self.writes {
            return None;
        }
        let mut owners = self.owners;
        owners.sort_unstable();
        Some(Finding {
            kind: "overlap",
            summary: format!(
                "{} operations ({}) by owners {} overlap within {:.3} s",
                self.count,
                self.ops.join(", "),
                join(&owners),
                (self.end - self.start) as f64 / 1e6
            ),
            target,
            at: self.start,
            owners,
            more: self.count - self.events.len() as u64,
            events: self.events,
        })
    }
}

fn join(pids: &[u32]) -> String {
    pids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The streaming finder.
pub struct Races {
    window_ms: f64,
    open: HashMap<String, Episode>,
    pub findings: Vec<Finding>,
}

impl Races {
    pub fn new(window_ms: f64) -> Races {
        Races {
            window_ms,
            open: HashMap::new(),
            findings: Vec::new(),
        }
    }

    /// Looks at one event.
    pub fn add(&mut self, line: &Line) {
        let ev = &line.ev;
        self.single(line);
        let start = line.at - (ev.duration_ms.max(0.0) * 1000.0) as i64;
        match self.open.get_mut(&*ev.target) {
            Some(ep) if start < ep.end => ep.add(line, start),
            Some(ep) => {
                let done = std::mem::replace(ep, Episode::new(line, start));
                if let Some(f) = done.into_finding(ev.target.to_string()) {
                    self.findings.push(f);
                }
            }
            None => {
                self.open
                    .insert(ev.target.to_string(), Episode::new(line, start));
            }
        }
    }

    /// Findings that one event makes on its own.
    fn single(&mut self, line: &Line) {
        let ev = &line.ev;
        let d = ev.detail.as_ref();
        let owner = ev.owner();
        let (kind, summary) = if ev.op == "takeover" {
            let stale = d
                .and_then(|d| d.stale_pid)
                .map_or("?".to_string(), |p| p.to_string());
            let reason = d.and_then(|d| d.reason.as_deref()).unwrap_or("stale");
            (
                "takeover",
                format!("stale lock of pid {stale} ({reason}) taken over by pid {owner}"),
            )
        } else if d.and_then(|d| d.conflict.as_deref()) == Some("revision") {
            let show = |v: Option<i64>| v.map_or("?".to_string(), |v| v.to_string());
            (
                "revision-conflict",
                format!(
                    "{} by owner {owner} expected revision {}, found {}",
                    ev.op,
                    show(d.and_then(|d| d.expected)),
                    show(d.and_then(|d| d.actual))
                ),
            )
        } else if ev.exit_code == 2 && ev.tool == "state-manager" {
            (
                "refused",
                format!(
                    "{} by owner {owner} refused: the state lock was not acquired in time",
                    ev.op
                ),
            )
        } else if ev.exit_code == 2
            && ev.tool == "lock-manager"
            && matches!(&*ev.op, "acquire" | "run")
        {
            (
                "lock-timeout",
                format!(
                    "{} by owner {owner} timed out after {} ms",
                    ev.op,
                    ms_text(Some(ev.duration_ms))
                ),
            )
        } else if let Some(w) = ev.lock_wait_ms().filter(|w| *w > self.window_ms) {
            let holders = d
                .and_then(|d| d.holders_while_waiting.as_deref())
                .filter(|h| !h.is_empty())
                .map(|h| format!(" behind pids {}", join(h)))
                .unwrap_or_default();
            (
                "lock-wait",
                format!(
                    "{} by owner {owner} waited {} ms{holders} (over {} ms)",
                    ev.op,
                    ms_text(Some(w)),
                    self.window_ms
                ),
            )
        } else {
            return;
        };
        self.findings.push(Finding {
            kind,
            target: ev.target.to_string(),
            at: line.at - (ev.duration_ms.max(0.0) * 1000.0) as i64,
            summary,
            owners: vec![owner],
            events: vec![line.raw.to_vec()],
            more: 0,
        });
    }

    /// Closes the open episodes and returns every finding, earliest first.
    pub fn finish(mut self) -> Vec<Finding> {
        for (target, ep) in self.open.drain() {
            if let Some(f) = ep.into_finding(target) {
                self.findings.push(f);
            }
        }
        // Stable: findings of one instant keep their log order.
        self.findings.sort_by_key(|f| f.at);
        self.findings
    }
}

/// Runs `audit races` over the events.
pub fn collect(
    events: &dyn Events,
    filter: &Filter,
    window_ms: f64,
) -> Result<(Vec<Finding>, Totals)> {
    let mut races = Races::new(window_ms);
    let totals = events.scan_events(&mut |line| {
        if filter.matches(line) {
            races.add(line);
        }
    })?;
    Ok((races.finish(), totals))
}

/// One finding as `audit races --json` prints it.
#[derive(Debug, Serialize)]
pub struct FindingReport<'a> {
    pub kind: &'static str,
    pub target: &'a str,
    /// When it began (RFC 3339).
    pub at: String,
    pub summary: &'a str,
    pub owners: &'a [u32],
    /// The events behind it, whole, in log order.
    pub events: Vec<Value>,
    /// Events behind it beyond those listed.
    pub more_events: u64,
}

impl Finding {
    /// The finding as reported.
    pub fn report(&self) -> FindingReport<'_> {
        FindingReport {
            kind: self.kind,
            target: &self.target,
            at: scan::format_micros(self.at),
            summary: &self.summary,
            owners: &self.owners,
            events: recent::values(&self.events),
            more_events: self.more,
        }
    }
}

/// What follows the findings in the report.
#[derive(Debug, Serialize)]
struct Tail<'a> {
    finding_count: usize,
    counts: BTreeMap<&'static str, u64>,
    malformed: u64,
    files: &'a [std::path::PathBuf],
}

/// How many findings of each kind.
pub fn counts(findings: &[Finding]) -> BTreeMap<&'static str, u64> {
    let mut counts = BTreeMap::new();
    for f in findings {
        *counts.entry(f.kind).or_default() += 1;
    }
    counts
}

/// Writes the JSON form, `{"findings": [...], "finding_count": N, "counts":
/// {...}, ...}`, one finding at a time: a long log can hold many findings,
/// and building one value of them all would take many times their size in
/// memory. Pretty, or on one line.
pub fn write_json(
    findings: &[Finding],
    totals: &Totals,
    pretty: bool,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    fn enc(v: &impl Serialize, pretty: bool) -> String {
        if pretty {
            serde_json::to_string_pretty(v)
        } else {
            serde_json::to_string(v)
        }
        .expect("race reports serialize")
    }
    let nl: &[u8] = if pretty { b"\n" } else { b"" };
    out.write_all(b"{\"findings\":[")?;
    for (i, f) in findings.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        out.write_all(nl)?;
        out.write_all(enc(&f.report(), pretty).as_bytes())?;
    }
    let tail = Tail {
        finding_count: findings.len(),
        counts: counts(findings),
        malformed: totals.malformed,
        files: &totals.files,
    };
    out.write_all(nl)?;
    out.write_all(b"],")?;
    out.write_all(&enc(&tail, pretty).as_bytes()[1..])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(kind: &'static str) -> Finding {
        Finding {
            kind,
            target: "deploy".into(),
            at: 0,
            summary: "s".into(),
            owners: vec![1, 2],
            events: vec![br#"{"ts":"2024-05-01T10:00:00Z","tool":"a","op":"b"}"#.to_vec()],
            more: 0,
        }
    }

    #[test]
    fn json_is_one_line_unless_pretty() {
        let findings = [finding("overlap"), finding("takeover")];
        let mut compact = Vec::new();
        write_json(&findings, &Totals::default(), false, &mut compact).unwrap();
        assert!(!compact.contains(&b'\n'));
        let mut pretty = Vec::new();
        write_json(&findings, &Totals::default(), true, &mut pretty).unwrap();
        let a: Value = serde_json::from_slice(&compact).unwrap();
        let b: Value = serde_json::from_slice(&pretty).unwrap();
        assert_eq!(a, b);
        assert_eq!(a["finding_count"], 2);
        assert_eq!(a["counts"]["takeover"], 1);
    }
}
