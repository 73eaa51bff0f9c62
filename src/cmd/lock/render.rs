//! What `lock-manager list` and `status` print: the table, the status
//! summary and their JSON, rendered from the registry's typed values. The
//! standing of each record is [`Record::standing`]'s, the one rule.

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::cmd::table::Table;
use crate::cmd::{Output, Paint};
use crate::lock::manager::Entry;
use crate::lock::record::{Holder, LockType, Record, Standing, Waiter};
use crate::lock::report::Status;

/// Why holder `h` cannot be checked from here, if it cannot: never on a
/// registry whose holds are leases (`leased`, Redis), where a holder of
/// another host is alive while its lease runs and is taken over after.
fn unverified(h: &Holder, leased: bool) -> Option<&'static str> {
    if leased { None } else { h.id.unverifiable() }
}

/// The STATUS column of one holder; a holder that cannot be checked from
/// here says why (it is never taken over).
fn holder_status(h: &Holder, leased: bool) -> String {
    match (h.is_live(), unverified(h, leased)) {
        (false, _) => "STALE".into(),
        (true, Some(why)) => format!("VALID (cannot verify: {why})"),
        (true, None) => "VALID".into(),
    }
}

/// The table of `list`: NAME, TYPE, PID, TIMESTAMP, STATUS, one row per
/// holder (every shared holder shown); an unparseable record is one CORRUPT
/// row. Single-word titles, so `awk` and `cut` see one field per column;
/// `--no-header` leaves the title line out.
pub fn table(entries: &[Entry], out: &Output, leased: bool) -> String {
    let mut t = Table::for_output(&["name", "type", "pid", "timestamp", "status"], out);
    // The last column: colour cannot break the alignment.
    let status = |cell: String| {
        let paint = match cell.split(' ').next() {
            Some("STALE") => Paint::Warn,
            Some("CORRUPT") => Paint::Bad,
            _ => Paint::Good,
        };
        out.paint(&cell, paint)
    };
    for e in entries {
        match &e.record {
            Ok(rec) => {
                for h in &rec.holders {
                    t.row(vec![
                        e.name.clone(),
                        rec.kind.as_str().into(),
                        h.id.pid.to_string(),
                        h.acquired.clone(),
                        status(holder_status(h, leased)),
                    ]);
                }
            }
            Err(_) => t.row(vec![
                e.name.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                status("CORRUPT".into()),
            ]),
        }
    }
    t.render()
}

/// A record as JSON with `status` added: `valid` (a live holder), `stale`
/// (holders, none live) or `unlocked` (only waiters); each holder gets its
/// own `status` and, when stale, `stale_reason`.
pub fn record_json(rec: &Record, leased: bool) -> Value {
    let mut v = serde_json::to_value(rec).expect("a record always serializes");
    let status = record_status(rec);
    if let Some(holders) = v.get_mut("holders").and_then(Value::as_array_mut) {
        for (hv, h) in holders.iter_mut().zip(&rec.holders) {
            let reason = h.staleness();
            hv["status"] = json!(if reason.is_some() { "stale" } else { "valid" });
            if let Some(r) = reason {
                hv["stale_reason"] = json!(r);
            }
            if let Some(why) = unverified(h, leased) {
                hv["unverifiable"] = json!(format!("cannot verify: {why}"));
            }
        }
    }
    v["status"] = json!(status);
    v
}

/// The whole `list json` array at once, for unit tests (the command
/// streams it through [`JsonStream`]).
#[cfg(test)]
pub fn json_list(entries: &[Entry]) -> Vec<Value> {
    entries.iter().map(|e| entry_json(e, false)).collect()
}

/// One element of `list json`'s array, typed: what [`entry_json`] builds,
/// serialized straight from the record (no `Value` tree to build and free
/// per record), key for key in the same order.
#[derive(Serialize)]
#[serde(untagged)]
pub enum ListItem<'a> {
    Record {
        name: &'a str,
        #[serde(rename = "type")]
        kind: LockType,
        timestamp: &'a str,
        holders: Vec<HolderItem<'a>>,
        #[serde(skip_serializing_if = "<[_]>::is_empty")]
        waiters: &'a [Waiter],
        status: &'static str,
    },
    Corrupt(Value),
}

/// A holder in a [`ListItem`]: the holder plus its `status`, and why it is
/// stale or cannot be verified.
#[derive(Serialize)]
pub struct HolderItem<'a> {
    #[serde(flatten)]
    holder: &'a Holder,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    stale_reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unverifiable: Option<String>,
}

impl<'a> ListItem<'a> {
    pub fn of(e: &'a Entry, leased: bool) -> ListItem<'a> {
        let rec = match &e.record {
            Ok(rec) => rec,
            Err(_) => return ListItem::Corrupt(entry_json(e, leased)),
        };
        ListItem::Record {
            name: &e.name,
            kind: rec.kind,
            timestamp: &rec.timestamp,
            holders: rec
                .holders
                .iter()
                .map(|h| {
                    let reason = h.staleness();
                    HolderItem {
                        holder: h,
                        status: if reason.is_some() { "stale" } else { "valid" },
                        stale_reason: reason,
                        unverifiable: unverified(h, leased)
                            .map(|why| format!("cannot verify: {why}")),
                    }
                })
                .collect(),
            waiters: &rec.waiters,
            status: record_status(rec),
        }
    }
}

/// A record's `status`: `valid`, `stale` or `unlocked`.
fn record_status(rec: &Record) -> &'static str {
    match rec.standing() {
        Standing::Held => "valid",
        Standing::Stale => "stale",
        Standing::Waited | Standing::Vacant => "unlocked",
    }
}

/// One element of `list json`'s array: a lock record plus `name` and
/// `status` (`corrupt` elements carry `error` instead).
pub fn entry_json(e: &Entry, leased: bool) -> Value {
    match &e.record {
        Ok(rec) => {
            let mut v = record_json(rec, leased);
            v["name"] = json!(e.name);
            v
        }
        Err(err) => json!({"name": e.name, "status": "corrupt", "error": err.summary()}),
    }
}

/// A JSON listing printed one element at a time, so that `list json` holds
/// one record in memory, not all of them: the same bytes [`Output::list`]
/// prints for the whole array (pretty, `-c` or `--jsonl`), in chunks of
/// about 64 KiB. Nothing is printed until the first element or [`finish`].
///
/// [`finish`]: JsonStream::finish
pub struct JsonStream<'a> {
    out: &'a Output,
    buf: String,
    items: usize,
}

impl<'a> JsonStream<'a> {
    pub fn new(out: &'a Output) -> JsonStream<'a> {
        JsonStream {
            out,
            buf: String::new(),
            items: 0,
        }
    }

    /// Adds one element.
    pub fn push(&mut self, item: &impl Serialize) {
        let text = if self.out.compact || self.out.jsonl {
            serde_json::to_string(item).expect("JSON values always serialize")
        } else {
            // Pretty inside an array, as serde_json indents its elements:
            // `[\n  {…}\n]` without the brackets.
            let whole =
                serde_json::to_string_pretty(&[item]).expect("JSON values always serialize");
            whole[2..whole.len() - 2].to_string()
        };
        if self.out.jsonl {
            self.buf.push_str(&text);
            self.buf.push('\n');
        } else {
            self.buf.push_str(match (self.items, self.out.compact) {
                (0, true) => "[",
                (0, false) => "[\n",
                (_, true) => ",",
                (_, false) => ",\n",
            });
            self.buf.push_str(&text);
        }
        self.items += 1;
        if self.buf.len() >= 1 << 16 {
            crate::cmd::print(&self.buf);
            self.buf.clear();
        }
    }

    /// What [`finish`](JsonStream::finish) would print, for unit tests.
    #[cfg(test)]
    fn buf_for_test(mut self) -> String {
        self.close();
        self.buf
    }

    /// The end of the array (nothing for `--jsonl`).
    fn close(&mut self) {
        match (self.out.jsonl, self.items, self.out.compact) {
            (true, _, _) => {}
            (false, 0, _) => self.buf.push_str("[]\n"),
            (false, _, true) => self.buf.push_str("]\n"),
            (false, _, false) => self.buf.push_str("\n]\n"),
        }
    }

    /// Closes the array and prints what is left; returns how many elements.
    pub fn finish(mut self) -> usize {
        self.close();
        if !self.buf.is_empty() {
            crate::cmd::print(&self.buf);
        }
        self.items
    }
}

/// `status --json`: the held locks with holders and waiters, the stale and
/// the corrupt ones, and the counts.
pub fn status_json(status: &Status, leased: bool) -> Value {
    let c = status.counts;
    let entries = &status.entries;
    let mut held = Vec::new();
    let mut stale = Vec::new();
    let mut corrupt = Vec::new();
    for e in entries {
        match &e.record {
            Ok(rec) => {
                let list = match rec.standing() {
                    Standing::Held | Standing::Waited => &mut held,
                    Standing::Stale => &mut stale,
                    Standing::Vacant => continue,
                };
                let mut v = record_json(rec, leased);
                v["name"] = json!(e.name);
                list.push(v);
            }
            Err(err) => corrupt.push(json!({"name": e.name, "error": err.summary()})),
        }
    }
    let mut m = Map::new();
    m.insert("held".into(), json!(c.held));
    m.insert("stale".into(), json!(c.stale));
    m.insert("waiting".into(), json!(c.waiting));
    m.insert("corrupt".into(), json!(c.corrupt));
    m.insert("locks".into(), Value::Array(held));
    m.insert("stale_locks".into(), Value::Array(stale));
    m.insert("corrupt_locks".into(), Value::Array(corrupt));
    Value::Object(m)
}

/// `status`: a summary line, then each held lock with its holders and waiters,
/// then the stale and corrupt records with what to do about them.
pub fn status_text(status: &Status, paint: &Output, leased: bool) -> String {
    let c = status.counts;
    let entries = &status.entries;
    let mut out = format!(
        "locks: {} held, {} stale, {} waiting, {} corrupt\n",
        c.held, c.stale, c.waiting, c.corrupt
    );
    let width = entries.iter().map(|e| e.name.len()).max().unwrap_or(0);
    for e in entries {
        let standing = e.record.as_ref().map(Record::standing);
        match (&e.record, standing) {
            (Ok(rec), Ok(Standing::Held | Standing::Waited)) => {
                let holders: Vec<String> = rec
                    .live_holders()
                    .map(|h| {
                        let why = unverified(h, leased).map_or(String::new(), |w| {
                            format!(" (cannot verify: {w}; only 'release --force' removes it)")
                        });
                        format!("pid {} since {}{why}", h.id.pid, h.acquired)
                    })
                    .collect();
                let holders = if holders.is_empty() {
                    "free".to_string()
                } else {
                    holders.join(", ")
                };
                out.push_str(&format!(
                    "  {:<width$}  {:<9}  {holders}\n",
                    e.name,
                    rec.kind.as_str(),
                ));
                for w in rec.waiters.iter().filter(|w| w.id.is_live()) {
                    out.push_str(&format!(
                        "    waiting: pid {} ({}) since {}\n",
                        w.id.pid,
                        w.kind.as_str(),
                        w.since
                    ));
                }
            }
            (Ok(rec), Ok(Standing::Stale)) => {
                let gone: Vec<String> = rec
                    .holders
                    .iter()
                    .map(|h| format!("pid {} {}", h.id.pid, h.staleness().unwrap_or("live")))
                    .collect();
                out.push_str(&format!(
                    "  {:<width$}  {} ({}) — taken over by the next acquire, or run 'lock-manager clean'\n",
                    e.name,
                    paint.paint("stale", Paint::Warn),
                    gone.join(", ")
                ));
            }
            (Ok(_), _) => {}
            (Err(_), _) => out.push_str(&format!(
                "  {:<width$}  {} — inspect .locks/{}.lock, then run 'lock-manager clean --force'\n",
                e.name,
                paint.paint("corrupt", Paint::Bad),
                e.name
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::report::tests::entries;

    #[test]
    fn table_has_a_row_per_holder_and_aligned_columns() {
        let t = table(&entries(), &Output::default(), false);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 5, "{t}");
        assert!(lines[0].starts_with("NAME  TYPE"), "{t}");
        assert!(lines[1].starts_with("bad") && lines[1].ends_with("CORRUPT"));
        assert_eq!(lines.iter().filter(|l| l.starts_with("docs")).count(), 2);
        assert!(lines[4].starts_with("old") && lines[4].ends_with("STALE"));
        let col = lines[0].find("TYPE").unwrap();
        assert_eq!(&lines[2][col..col + 6], "shared");
        let no_header = Output {
            no_header: true,
            ..Output::default()
        };
        let bare = table(&entries(), &no_header, false);
        assert_eq!(bare.lines().count(), 4, "{bare}");
        assert!(bare.starts_with("bad"), "{bare}");
    }

    #[test]
    fn a_streamed_listing_prints_what_the_whole_array_prints() {
        let mut all = entries();
        // Every optional field: a TTL, metadata, an unverifiable holder, a waiter.
        let mut rich = all[1].record.as_ref().unwrap().clone();
        rich.name = "rich".into();
        rich.holders[0].ttl = Some(30.5);
        rich.holders[0].acquired_boottime = Some(12.25);
        rich.holders[0].metadata = Some(json!({"job": [1, {"k": "v\nw"}], "e": {}}));
        rich.holders[1].id.host = "elsewhere".into();
        rich.waiters.push(Waiter {
            id: rich.holders[0].id.clone(),
            kind: LockType::Exclusive,
            since: "2026-01-01T00:00:00Z".into(),
        });
        all.push(Entry {
            name: "rich".into(),
            record: Ok(rich),
        });
        // The typed elements the command streams against the whole array
        // of `Value`s that `list json` printed before it streamed.
        let items = json_list(&all);
        for (compact, jsonl) in [(false, false), (true, false), (false, true)] {
            let out = Output {
                json: true,
                compact,
                jsonl,
                ..Output::default()
            };
            for n in [0, 1, items.len()] {
                let mut s = JsonStream::new(&out);
                for e in &all[..n] {
                    s.push(&ListItem::of(e, false));
                }
                let whole = if jsonl {
                    items[..n]
                        .iter()
                        .map(|v| serde_json::to_string(v).unwrap() + "\n")
                        .collect::<String>()
                } else if compact {
                    serde_json::to_string(&items[..n]).unwrap() + "\n"
                } else {
                    serde_json::to_string_pretty(&items[..n]).unwrap() + "\n"
                };
                assert_eq!(
                    s.buf_for_test(),
                    whole,
                    "compact {compact} jsonl {jsonl} n {n}"
                );
            }
        }
    }

    #[test]
    fn counts_and_json_agree() {
        let e = entries();
        let j = json_list(&e);
        assert_eq!(j[0]["status"], "corrupt");
        assert_eq!(j[1]["status"], "valid");
        assert_eq!(j[2]["status"], "stale");
        assert_eq!(j[2]["holders"][0]["stale_reason"], "pid-reused");
        let s = status_json(&Status::of(e), false);
        assert_eq!(s["held"], 1);
        assert_eq!(s["locks"][0]["name"], "docs");
    }
}
