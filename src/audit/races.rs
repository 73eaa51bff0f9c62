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
use std::io::{self, Write};

use serde::Serialize;
use serde_json::Value;

use super::event::{is_read_only, ms_text};
use super::plain;
use super::recent;
use super::scan::{self, Events, Filter, Line, Totals};
use super::spill::Spill;
use crate::error::{Error, Result};

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

/// An open episode of overlapping operations on one target. Its buffers
/// are used again for the next episode of its target ([`Episode::reset`]):
/// most episodes end without a finding.
struct Episode {
    start: i64,
    end: i64,
    owners: Vec<u32>,
    ops: Vec<String>,
    writes: bool,
    count: u64,
    /// The first [`MAX_EVENTS`] lines, one after another; `ends[i]` is where
    /// the i-th ends.
    raw: Vec<u8>,
    ends: Vec<usize>,
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
            raw: Vec::new(),
            ends: Vec::new(),
        };
        e.add(line, start);
        e
    }

    /// Starts the next episode with `line`, in this one's buffers.
    fn reset(&mut self, line: &Line, start: i64) {
        self.start = start;
        self.end = line.at;
        self.owners.clear();
        self.ops.clear();
        self.writes = false;
        self.count = 0;
        self.raw.clear();
        self.ends.clear();
        self.add(line, start);
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
        if self.ends.len() < MAX_EVENTS {
            self.raw.extend_from_slice(line.raw);
            self.ends.push(self.raw.len());
        }
    }

    /// The finding this episode makes on `target`, if it makes one.
    fn finding(&self, target: &str) -> Option<Finding> {
        if self.owners.len() < 2 || !self.writes {
            return None;
        }
        let mut owners = self.owners.clone();
        owners.sort_unstable();
        let mut from = 0;
        let events = self
            .ends
            .iter()
            .map(|&end| {
                let e = self.raw[from..end].to_vec();
                from = end;
                e
            })
            .collect();
        Some(Finding {
            kind: "overlap",
            summary: format!(
                "{} operations ({}) by owners {} overlap within {:.3} s",
                self.count,
                self.ops.join(", "),
                join(&owners),
                (self.end - self.start) as f64 / 1e6
            ),
            target: target.to_string(),
            at: self.start,
            owners,
            more: self.count - self.ends.len() as u64,
            events,
        })
    }
}

fn join(pids: &[u32]) -> String {
    pids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes one finding as it will be shown (text, or JSON pretty or compact).
pub type Render<'r> = Box<dyn FnMut(&Finding, &mut Vec<u8>) + 'r>;

/// The streaming finder.
pub struct Races<'r> {
    window_ms: f64,
    open: HashMap<String, Episode>,
    found: Findings,
    render: Render<'r>,
    /// The first failure to keep a finding (scratch space).
    failed: Option<Error>,
}

/// The findings of a scan, each kept rendered in a [`Spill`] as it is
/// made: held in memory are only its time and place (24 bytes each) and the
/// counts per kind, whatever the findings hold.
pub struct Findings {
    spill: Spill,
    /// (when it began, offset, length) of each finding, in the order made;
    /// sorted by time (stably: log order within one instant) at the end.
    index: Vec<(i64, u64, u32)>,
    counts: BTreeMap<&'static str, u64>,
}

impl Findings {
    fn new(spill: Spill) -> Findings {
        Findings {
            spill,
            index: Vec::new(),
            counts: BTreeMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// How many findings of each kind.
    pub fn counts(&self) -> &BTreeMap<&'static str, u64> {
        &self.counts
    }

    /// Hands each finding as rendered to `each`, earliest first.
    pub fn each(&self, mut each: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        let mut window = self.spill.window();
        for &(_, at, len) in &self.index {
            each(window.get(at, at + u64::from(len))?)?;
        }
        Ok(())
    }
}

impl<'r> Races<'r> {
    /// A finder that renders each finding with `render` as it is made.
    pub fn new(window_ms: f64, render: Render<'r>) -> Races<'r> {
        Races {
            window_ms,
            open: HashMap::new(),
            found: Findings::new(Spill::default()),
            render,
            failed: None,
        }
    }

    fn keep(&mut self, f: Finding) {
        if self.failed.is_some() {
            return;
        }
        let render = &mut self.render;
        match self.found.spill.push(|b| render(&f, b)) {
            Ok(at) => {
                let len = (self.found.spill.len() - at) as u32;
                self.found.index.push((f.at, at, len));
                *self.found.counts.entry(f.kind).or_default() += 1;
            }
            Err(e) => self.failed = Some(e),
        }
    }

    /// Looks at one event.
    pub fn add(&mut self, line: &Line) {
        let ev = &line.ev;
        self.single(line);
        let start = line.at - (ev.duration_ms.max(0.0) * 1000.0) as i64;
        let done = match self.open.get_mut(&*ev.target) {
            Some(ep) if start < ep.end => {
                ep.add(line, start);
                None
            }
            Some(ep) => {
                let done = ep.finding(&ev.target);
                ep.reset(line, start);
                done
            }
            None => {
                self.open
                    .insert(ev.target.to_string(), Episode::new(line, start));
                None
            }
        };
        if let Some(f) = done {
            self.keep(f);
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
        self.keep(Finding {
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
    pub fn finish(mut self) -> Result<Findings> {
        for (target, ep) in std::mem::take(&mut self.open) {
            if let Some(f) = ep.finding(&target) {
                self.keep(f);
            }
        }
        if let Some(e) = self.failed {
            return Err(e);
        }
        // Stable: findings of one instant keep their log order.
        self.found.index.sort_by_key(|&(at, off, _)| (at, off));
        Ok(self.found)
    }
}

/// Runs `audit races` over the events, each finding rendered by `render`.
pub fn collect(
    events: &dyn Events,
    filter: &Filter,
    window_ms: f64,
    render: Render<'_>,
) -> Result<(Findings, Totals)> {
    let mut races = Races::new(window_ms, render);
    let totals = events.scan_events(&mut |line| {
        if filter.matches(line) {
            races.add(line);
        }
    })?;
    Ok((races.finish()?, totals))
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

/// Renders a finding as `audit races --json` lists it: pretty, or on one line.
pub fn json_render<'r>(pretty: bool) -> Render<'r> {
    Box::new(move |f, b| {
        if !write_finding(f, pretty, b) {
            write_report(f, pretty, b);
        }
    })
}

/// A finding as serde_json writes its [`FindingReport`], through a `Value`
/// of each event.
fn write_report(f: &Finding, pretty: bool, b: &mut Vec<u8>) {
    if pretty {
        serde_json::to_writer_pretty(b, &f.report())
    } else {
        serde_json::to_writer(b, &f.report())
    }
    .expect("race reports serialize")
}

/// [`write_report`]'s bytes, the events copied from their lines
/// ([`plain::write_value`]) instead of parsed into values and written out
/// again; `false` (nothing written) when an event is not one it copies.
fn write_finding(f: &Finding, pretty: bool, b: &mut Vec<u8>) -> bool {
    let start = b.len();
    let (sep, open, close): (&[u8], &[u8], &[u8]) = if pretty {
        (b": ", b"\n  ", b"\n")
    } else {
        (b":", b"", b"")
    };
    let text = |b: &mut Vec<u8>, s: &str| serde_json::to_writer(b, s).expect("strings serialize");
    let field = |b: &mut Vec<u8>, first: bool, name: &str| {
        if !first {
            b.push(b',');
        }
        b.extend_from_slice(open);
        text(b, name);
        b.extend_from_slice(sep);
    };
    b.push(b'{');
    field(b, true, "kind");
    text(b, f.kind);
    field(b, false, "target");
    text(b, &f.target);
    field(b, false, "at");
    text(b, &scan::format_micros(f.at));
    field(b, false, "summary");
    text(b, &f.summary);
    field(b, false, "owners");
    let items: &[u8] = if pretty { b"\n    " } else { b"" };
    let end: &[u8] = if pretty { b"\n  ]" } else { b"]" };
    b.push(b'[');
    for (i, o) in f.owners.iter().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        b.extend_from_slice(items);
        b.extend_from_slice(o.to_string().as_bytes());
    }
    if !f.owners.is_empty() {
        b.extend_from_slice(end);
    } else {
        b.push(b']');
    }
    field(b, false, "events");
    b.push(b'[');
    for (i, e) in f.events.iter().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        b.extend_from_slice(items);
        let copied =
            std::str::from_utf8(e).is_ok_and(|e| plain::write_value(e, pretty.then_some(2), b));
        if !copied {
            b.truncate(start);
            return false;
        }
    }
    if !f.events.is_empty() {
        b.extend_from_slice(end);
    } else {
        b.push(b']');
    }
    field(b, false, "more_events");
    b.extend_from_slice(f.more.to_string().as_bytes());
    b.extend_from_slice(close);
    b.push(b'}');
    true
}

/// Writes the JSON form, `{"findings": [...], "finding_count": N, "counts":
/// {...}, ...}`, one finding at a time from where they were kept as made
/// (rendered by [`json_render`] with the same `pretty`): a long log can
/// hold many findings, and building one value of them all would take many
/// times their size in memory.
pub fn write_json(
    findings: &Findings,
    totals: &Totals,
    pretty: bool,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let nl: &[u8] = if pretty { b"\n" } else { b"" };
    out.write_all(b"{\"findings\":[")?;
    let mut first = true;
    findings.each(|f| {
        if !std::mem::take(&mut first) {
            out.write_all(b",")?;
        }
        out.write_all(nl)?;
        out.write_all(f)
    })?;
    let tail = Tail {
        finding_count: findings.len(),
        counts: findings.counts().clone(),
        malformed: totals.malformed,
        files: &totals.files,
    };
    let tail = if pretty {
        serde_json::to_string_pretty(&tail)
    } else {
        serde_json::to_string(&tail)
    }
    .expect("race reports serialize");
    out.write_all(nl)?;
    out.write_all(b"],")?;
    out.write_all(&tail.as_bytes()[1..])?;
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

    fn write(findings: &Findings, pretty: bool) -> Value {
        let mut out = Vec::new();
        write_json(findings, &Totals::default(), pretty, &mut out).unwrap();
        assert_eq!(out.contains(&b'\n'), pretty);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn json_is_one_line_unless_pretty_and_lists_the_findings_earliest_first() {
        let mut docs = Vec::new();
        for (pretty, limit) in [(false, 0), (true, 0), (false, 1 << 20), (true, 1 << 20)] {
            let mut races = Races::new(DEFAULT_WINDOW_MS, json_render(pretty));
            // Kept to the file at once (limit 0), or in memory.
            races.found = Findings::new(Spill::with_limit(limit));
            let mut late = finding("overlap");
            late.at = 5;
            races.keep(late);
            races.keep(finding("takeover"));
            let mut late2 = finding("lock-wait");
            late2.at = 5;
            races.keep(late2);
            let found = races.finish().unwrap();
            assert_eq!(found.spill.on_disk(), limit == 0);
            let a = write(&found, pretty);
            assert_eq!(a["finding_count"], 3);
            assert_eq!(a["counts"]["takeover"], 1);
            let kinds: Vec<&str> = a["findings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["kind"].as_str().unwrap())
                .collect();
            assert_eq!(
                kinds,
                ["takeover", "overlap", "lock-wait"],
                "earliest first, stably"
            );
            assert_eq!(a["findings"][0]["events"][0]["op"], "b");
            docs.push(a);
        }
        assert!(docs.windows(2).all(|w| w[0] == w[1]));
    }
}
