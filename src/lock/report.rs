//! What `lock-manager list` and `status` print, built from a [`scan`] of
//! `.locks/`. Pure formatting: liveness is judged once per holder, here, at
//! the moment of printing, so a report is a snapshot and may be out of date
//! by the time it is read.
//!
//! [`scan`]: super::manager::scan

use serde_json::{Map, Value, json};

use super::manager::Entry;
use super::record::{Holder, Record};

/// The STATUS column of one holder; a holder that cannot be checked from
/// here says why (it is never taken over).
fn holder_status(h: &Holder) -> String {
    match (h.is_live(), h.id.unverifiable()) {
        (false, _) => "STALE".into(),
        (true, Some(why)) => format!("VALID (cannot verify: {why})"),
        (true, None) => "VALID".into(),
    }
}

/// The table of `list`: LOCK NAME, TYPE, PID, TIMESTAMP, STATUS, one row per
/// holder (every shared holder shown); an unparseable record is one CORRUPT row.
pub fn table(entries: &[Entry]) -> String {
    let mut rows: Vec<[String; 5]> = vec![[
        "LOCK NAME".into(),
        "TYPE".into(),
        "PID".into(),
        "TIMESTAMP".into(),
        "STATUS".into(),
    ]];
    for e in entries {
        match &e.record {
            Ok(rec) => {
                for h in &rec.holders {
                    rows.push([
                        e.name.clone(),
                        rec.kind.as_str().into(),
                        h.id.pid.to_string(),
                        h.acquired.clone(),
                        holder_status(h),
                    ]);
                }
            }
            Err(_) => rows.push([
                e.name.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "CORRUPT".into(),
            ]),
        }
    }
    let mut widths = [0usize; 5];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A record as JSON with `status` added: `valid` (a live holder), `stale`
/// (holders, none live) or `unlocked` (only waiters); each holder gets its
/// own `status` and, when stale, `stale_reason`.
fn record_json(rec: &Record) -> Value {
    let mut v = serde_json::to_value(rec).expect("a record always serializes");
    let status = if rec.is_held() {
        "valid"
    } else if rec.holders.is_empty() {
        "unlocked"
    } else {
        "stale"
    };
    if let Some(holders) = v.get_mut("holders").and_then(Value::as_array_mut) {
        for (hv, h) in holders.iter_mut().zip(&rec.holders) {
            let reason = h.staleness();
            hv["status"] = json!(if reason.is_some() { "stale" } else { "valid" });
            if let Some(r) = reason {
                hv["stale_reason"] = json!(r);
            }
            if let Some(why) = h.id.unverifiable() {
                hv["unverifiable"] = json!(format!("cannot verify: {why}"));
            }
        }
    }
    v["status"] = json!(status);
    v
}

/// The JSON of `list json`: one array, each element a lock record plus
/// `name` and `status` (`corrupt` elements carry `error` instead).
pub fn json_list(entries: &[Entry]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|e| match &e.record {
                Ok(rec) => {
                    let mut v = record_json(rec);
                    v["name"] = json!(e.name);
                    v
                }
                Err(err) => json!({"name": e.name, "status": "corrupt", "error": err.summary()}),
            })
            .collect(),
    )
}

/// Counts for `status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub held: usize,
    pub stale: usize,
    pub waiting: usize,
    pub corrupt: usize,
}

/// Counts held and stale locks, live waiting requests and corrupt records.
pub fn counts(entries: &[Entry]) -> Counts {
    let mut c = Counts::default();
    for e in entries {
        match &e.record {
            Ok(rec) => {
                if rec.is_held() {
                    c.held += 1;
                } else if !rec.holders.is_empty() {
                    c.stale += 1;
                }
                c.waiting += rec.waiters.iter().filter(|w| w.id.is_live()).count();
            }
            Err(_) => c.corrupt += 1,
        }
    }
    c
}

/// `status --json`: the held locks with holders and waiters, the stale and
/// the corrupt ones, and the counts.
pub fn status_json(entries: &[Entry]) -> Value {
    let c = counts(entries);
    let mut held = Vec::new();
    let mut stale = Vec::new();
    let mut corrupt = Vec::new();
    for e in entries {
        match &e.record {
            Ok(rec) if rec.is_held() || rec.waiters.iter().any(|w| w.id.is_live()) => {
                let mut v = record_json(rec);
                v["name"] = json!(e.name);
                held.push(v);
            }
            Ok(rec) if !rec.holders.is_empty() => {
                let mut v = record_json(rec);
                v["name"] = json!(e.name);
                stale.push(v);
            }
            Ok(_) => {}
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
pub fn status_text(entries: &[Entry]) -> String {
    let c = counts(entries);
    let mut out = format!(
        "locks: {} held, {} stale, {} waiting, {} corrupt\n",
        c.held, c.stale, c.waiting, c.corrupt
    );
    let width = entries.iter().map(|e| e.name.len()).max().unwrap_or(0);
    for e in entries {
        match &e.record {
            Ok(rec) if rec.is_held() => {
                let holders: Vec<String> = rec
                    .live_holders()
                    .map(|h| {
                        let why = h.id.unverifiable().map_or(String::new(), |w| {
                            format!(" (cannot verify: {w}; only 'release --force' removes it)")
                        });
                        format!("pid {} since {}{why}", h.id.pid, h.acquired)
                    })
                    .collect();
                out.push_str(&format!(
                    "  {:<width$}  {:<9}  {}\n",
                    e.name,
                    rec.kind.as_str(),
                    holders.join(", ")
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
            Ok(rec) if !rec.holders.is_empty() => {
                let gone: Vec<String> = rec
                    .holders
                    .iter()
                    .map(|h| format!("pid {} {}", h.id.pid, h.staleness().unwrap_or("live")))
                    .collect();
                out.push_str(&format!(
                    "  {:<width$}  stale ({}) — taken over by the next acquire, or run 'lock-manager clean'\n",
                    e.name,
                    gone.join(", ")
                ));
            }
            Ok(_) => {}
            Err(_) => out.push_str(&format!(
                "  {:<width$}  corrupt — inspect .locks/{}.lock, then run 'lock-manager clean --force'\n",
                e.name, e.name
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::now_rfc3339_micros;
    use crate::error::Error;
    use crate::lock::process::Identity;
    use crate::lock::record::LockType;

    fn entries() -> Vec<Entry> {
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
    fn table_has_a_row_per_holder_and_aligned_columns() {
        let t = table(&entries());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 5, "{t}");
        assert!(lines[0].starts_with("LOCK NAME  TYPE"), "{t}");
        assert!(lines[1].starts_with("bad") && lines[1].ends_with("CORRUPT"));
        assert_eq!(lines.iter().filter(|l| l.starts_with("docs")).count(), 2);
        assert!(lines[4].starts_with("old") && lines[4].ends_with("STALE"));
        let col = lines[0].find("TYPE").unwrap();
        assert_eq!(&lines[2][col..col + 6], "shared");
    }

    #[test]
    fn counts_and_json_agree() {
        let e = entries();
        let c = counts(&e);
        assert_eq!((c.held, c.stale, c.waiting, c.corrupt), (1, 1, 0, 1));
        let j = json_list(&e);
        assert_eq!(j[0]["status"], "corrupt");
        assert_eq!(j[1]["status"], "valid");
        assert_eq!(j[2]["status"], "stale");
        assert_eq!(j[2]["holders"][0]["stale_reason"], "pid-reused");
        let s = status_json(&e);
        assert_eq!(s["held"], 1);
        assert_eq!(s["locks"][0]["name"], "docs");
    }
}
