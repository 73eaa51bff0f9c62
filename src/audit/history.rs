//! `audit history TARGET`: the life of one state file, lock, checkpoint or
//! backup, from the log — created, changed, locked, released, taken over,
//! deleted, failed — with who did it, and what is there now.
//!
//! When the target is missing now, the history names the event that removed
//! it; when no event ever touched it and it is not there, it was "never
//! created here". Reads are left out unless `--all` asks for them.
//!
//! Only the target's own events (and `clean`/`cleanup` events that list it
//! in `detail.removed`) become steps, and the steps are kept in a
//! [`Spill`] as they are found, not in memory: what is held is the first
//! step, the last removal, and counts — the same whatever the log's size
//! or the target's share of it. The report is then written out step by step
//! ([`History::write_json`], or the text table in `cmd::audit::text`).

use std::borrow::Cow;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::event::{is_read_only, ms_text};
use super::plain;
use super::scan::{Events, Filter, Target, Totals};
use super::spill::Spill;
use crate::config::Config;
use crate::error::Result;
use crate::lock::record::{self, Standing};

/// Ops that change a state file or a checkpoint's target in place.
const CHANGES: &[&str] = &[
    "write",
    "set",
    "merge",
    "append",
    "signal",
    "recover",
    "migrate",
    "import",
    "repair",
    "degrade",
    "recover-mode",
    "del",
    "mv",
    "update",
    "complete",
    "phase",
];
/// Ops that delete what they name (or list in `detail.removed`).
const DELETES: &[&str] = &["clean", "cleanup", "delete", "remove", "prune", "rm"];

/// One step in the life of the target.
#[derive(Clone, Debug)]
pub struct Step {
    pub what: String,
    pub detail: String,
    /// The event as written: a long history is held as raw lines, parsed again only to print.
    pub raw: Vec<u8>,
}

impl Step {
    /// Writes the step as one spill record: two lengths, then the three parts.
    fn encode(&self, b: &mut Vec<u8>) {
        b.extend_from_slice(&(self.what.len() as u32).to_le_bytes());
        b.extend_from_slice(&(self.detail.len() as u32).to_le_bytes());
        b.extend_from_slice(self.what.as_bytes());
        b.extend_from_slice(self.detail.as_bytes());
        b.extend_from_slice(&self.raw);
    }

    /// The step [`Step::encode`] wrote.
    fn decode(rec: &[u8]) -> Step {
        let len =
            |at: usize| u32::from_le_bytes(rec[at..at + 4].try_into().expect("4 bytes")) as usize;
        let (w, d) = (len(0), len(4));
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Step {
            what: text(&rec[8..8 + w]),
            detail: text(&rec[8 + w..8 + w + d]),
            raw: rec[8 + w + d..].to_vec(),
        }
    }

    /// The whole event.
    pub fn event(&self) -> Value {
        serde_json::from_slice(&self.raw).unwrap_or(Value::Null)
    }
}

/// What kind of thing the target is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum What {
    StateFile,
    Lock,
    Checkpoint,
    Backup,
}

impl What {
    pub fn name(self) -> &'static str {
        match self {
            What::StateFile => "state file",
            What::Lock => "lock",
            What::Checkpoint => "checkpoint",
            What::Backup => "backup",
        }
    }
}

/// The steps of a history, in log order, kept in a [`Spill`].
pub struct Steps {
    spill: Spill,
    count: usize,
}

impl Steps {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Hands each step to `each`, in log order.
    pub fn each(&self, mut each: impl FnMut(&Step) -> io::Result<()>) -> io::Result<()> {
        self.spill.each_record(|rec| each(&Step::decode(rec)))
    }
}

/// The history of one target.
pub struct History {
    pub target: String,
    pub kind: Option<What>,
    /// What is on disk now, in words (`held by pid 42`, `present`, `absent`).
    pub now: String,
    pub present: bool,
    pub steps: Steps,
    /// The event that removed the target, when it is missing now.
    pub removed_by: Option<Step>,
    /// One sentence summing up.
    pub verdict: String,
}

/// Runs `audit history` over the events; `cfg` says where the target
/// would be on disk now.
pub fn collect(
    cfg: &Config,
    events: &dyn Events,
    target: &str,
    all: bool,
) -> Result<(History, Totals)> {
    let filter = Filter::default();
    let asked = Target::new(target);
    let mut steps = Steps {
        spill: Spill::default(),
        count: 0,
    };
    let (mut first, mut last_removal, mut created) = (None, None, false);
    let mut failed = None;
    let totals = events.scan_events_naming(target, &mut |line| {
        if failed.is_some() || !filter.matches(line) {
            return;
        }
        let ev = &line.ev;
        let own = asked.names(&ev.target);
        if !own && !DELETES.contains(&&*ev.op) {
            return;
        }
        // The toolkit's own lines are read from the detail as written
        // (`plain`); any other line as a whole value, as before.
        let event;
        let facts = match line.detail {
            Some(d) => Facts {
                op: &ev.op,
                code: i64::from(ev.exit_code),
                detail: Fields::Plain(d),
            },
            None => {
                let Ok(v) = serde_json::from_slice::<Value>(line.raw) else {
                    return;
                };
                event = v;
                Facts::of(&event)
            }
        };
        let listed = facts.detail.removed_names(|n| asked.names(n));
        if !own && !listed {
            return;
        }
        if let Some((what, detail)) = classify(&facts, listed && !own, all) {
            let step = Step {
                what,
                detail,
                raw: line.raw.to_vec(),
            };
            if let Err(e) = steps.spill.push_record(|b| step.encode(b)) {
                failed = Some(e);
                return;
            }
            steps.count += 1;
            created |= step.what == "created";
            if matches!(step.what.as_str(), "deleted" | "released") {
                last_removal = Some(step.clone());
            }
            if first.is_none() {
                first = Some(step);
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    let kind = kind_of(cfg, target, first.as_ref());
    let (present, now) = now_of(cfg, target, kind);
    let removed_by = if present { None } else { last_removal };
    let verdict = if steps.is_empty() && !present {
        "never created here".to_string()
    } else if steps.is_empty() {
        format!("{now}; no event in the audit log touched it")
    } else if present {
        now.clone()
    } else if let Some(r) = &removed_by {
        let e = r.event();
        format!(
            "{now}; removed by {} {} at {}",
            e["tool"].as_str().unwrap_or("?"),
            e["op"].as_str().unwrap_or("?"),
            e["ts"].as_str().unwrap_or("?")
        )
    } else if created {
        format!(
            "{now}; no event in the audit log removed it (removed by hand, or its events rotated away)"
        )
    } else {
        format!("{now}; never created here")
    };
    Ok((
        History {
            target: target.to_string(),
            kind,
            now,
            present,
            steps,
            removed_by,
            verdict,
        },
        totals,
    ))
}

/// What [`classify`] reads of an event: its op, its exit code and its
/// detail, each as `Value`'s accessors give it.
struct Facts<'a> {
    op: &'a str,
    /// `exit_code`, 0 when it is not an integer.
    code: i64,
    detail: Fields<'a>,
}

impl<'a> Facts<'a> {
    fn of(event: &'a Value) -> Facts<'a> {
        Facts {
            op: event["op"].as_str().unwrap_or(""),
            code: event["exit_code"].as_i64().unwrap_or(0),
            detail: Fields::Value(&event["detail"]),
        }
    }
}

/// An event's detail: a parsed value, or the object as written in a line
/// the fast reader took ([`plain`]), whose members read the same.
enum Fields<'a> {
    Value(&'a Value),
    Plain(&'a str),
}

impl Fields<'_> {
    fn str(&self, k: &str) -> Option<Cow<'_, str>> {
        match self {
            Fields::Value(d) => d[k].as_str().map(Cow::Borrowed),
            Fields::Plain(d) => plain::member(d, k).and_then(plain::as_str),
        }
    }

    fn bool(&self, k: &str) -> Option<bool> {
        match self {
            Fields::Value(d) => d[k].as_bool(),
            Fields::Plain(d) => plain::member(d, k).and_then(plain::as_bool),
        }
    }

    fn i64(&self, k: &str) -> Option<i64> {
        match self {
            Fields::Value(d) => d[k].as_i64(),
            Fields::Plain(d) => plain::member(d, k).and_then(plain::as_i64),
        }
    }

    fn u64(&self, k: &str) -> Option<u64> {
        match self {
            Fields::Value(d) => d[k].as_u64(),
            Fields::Plain(d) => plain::member(d, k).and_then(plain::as_u64),
        }
    }

    fn f64(&self, k: &str) -> Option<f64> {
        match self {
            Fields::Value(d) => d[k].as_f64(),
            Fields::Plain(d) => plain::member(d, k).and_then(plain::as_f64),
        }
    }

    /// Whether `removed` is an array listing a name that `names`.
    fn removed_names(&self, names: impl Fn(&str) -> bool) -> bool {
        let any = |v: &Value| {
            v.as_array()
                .is_some_and(|r| r.iter().any(|n| n.as_str().is_some_and(&names)))
        };
        match self {
            Fields::Value(d) => any(&d["removed"]),
            Fields::Plain(d) => plain::member(d, "removed")
                .filter(|r| r.starts_with('['))
                .and_then(|r| serde_json::from_str::<Value>(r).ok())
                .is_some_and(|v| any(&v)),
        }
    }
}

/// Names what an event did to the target; `None` for reads unless `all`.
fn classify(facts: &Facts, listed_in_removed: bool, all: bool) -> Option<(String, String)> {
    let op = facts.op.to_string();
    let d = &facts.detail;
    let code = facts.code;
    let num = |k: &str| d.f64(k);
    let (what, detail) = if code != 0 {
        let err = d.str("error").map(|e| format!(": {e}")).unwrap_or_default();
        (
            "failed".to_string(),
            format!(
                "{op} exit {code} {}{err}",
                super::stats::code_name(code as i32)
            ),
        )
    } else if listed_in_removed || DELETES.contains(&op.as_str()) {
        let forced = if d.bool("forced") == Some(true) {
            " (forced)"
        } else {
            ""
        };
        ("deleted".to_string(), format!("by {op}{forced}"))
    } else {
        match op.as_str() {
            "init" | "checkpoint" | "create" => ("created".to_string(), String::new()),
            "backup" => ("backed up".to_string(), String::new()),
            "acquire" => (
                "locked".to_string(),
                format!(
                    "{}{}",
                    d.str("lock_type").as_deref().unwrap_or("exclusive"),
                    num("wait_ms")
                        .map(|w| format!(", waited {} ms", ms_text(Some(w))))
                        .unwrap_or_default()
                ),
            ),
            "run" => (
                "locked".to_string(),
                format!(
                    "for a command{}",
                    d.i64("child_exit")
                        .map(|c| format!(", child exit {c}"))
                        .unwrap_or_default()
                ),
            ),
            "takeover" => (
                "taken over".to_string(),
                format!(
                    "from stale pid {} ({})",
                    d.u64("stale_pid")
                        .map_or("?".to_string(), |p| p.to_string()),
                    d.str("reason").as_deref().unwrap_or("stale")
                ),
            ),
            "release" => (
                "released".to_string(),
                if d.bool("forced") == Some(true) {
                    "forced".to_string()
                } else {
                    String::new()
                },
            ),
            "restore" => ("restored".to_string(), String::new()),
            o if CHANGES.contains(&o) => (
                "changed".to_string(),
                format!(
                    "by {o}{}",
                    d.u64("revision")
                        .map(|r| format!(", revision {r}"))
                        .unwrap_or_default()
                ),
            ),
            o if is_read_only(o) => {
                if !all {
                    return None;
                }
                ("read".to_string(), format!("by {o}"))
            }
            o => (o.to_string(), String::new()),
        }
    };
    Some((what, detail))
}

/// What kind of thing `target` is: from what exists now, else from its
/// events (the first step).
fn kind_of(cfg: &Config, target: &str, first: Option<&Step>) -> Option<What> {
    if let Some(k) = candidates(cfg, target)
        .into_iter()
        .find(|(_, p)| p.exists())
        .map(|(k, _)| k)
    {
        return Some(k);
    }
    let ev = &first?.event();
    let tool = ev["tool"].as_str().unwrap_or("");
    let op = ev["op"].as_str().unwrap_or("");
    Some(match (tool, op) {
        ("lock-manager", _) => What::Lock,
        ("error-recovery", "checkpoint" | "restore" | "cleanup") => What::Checkpoint,
        (_, "backup") => What::Backup,
        _ if target.contains(".state-backups") => What::Backup,
        _ => What::StateFile,
    })
}

/// Where each kind of target would be on disk.
fn candidates(cfg: &Config, target: &str) -> Vec<(What, PathBuf)> {
    let mut v = Vec::new();
    let plain = !target.is_empty() && !target.contains('/') && target != "." && target != "..";
    if plain {
        v.push((What::Lock, record::record_path(cfg, target)));
        v.push((What::Checkpoint, cfg.checkpoints_dir().join(target)));
        v.push((What::Backup, cfg.backups_dir().join(target)));
    }
    if !target.is_empty() && (!plain || Path::new(target) == cfg.state_file) {
        v.push((What::StateFile, PathBuf::from(target)));
    }
    v
}

/// Whether the target is there now, and in words.
fn now_of(cfg: &Config, target: &str, kind: Option<What>) -> (bool, String) {
    let Some(kind) = kind else {
        return (false, "absent".to_string());
    };
    let path = candidates(cfg, target)
        .into_iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, p)| p)
        .unwrap_or_else(|| PathBuf::from(target));
    if kind == What::Lock {
        return match record::load(&path) {
            Ok(Some(r)) if r.standing() == Standing::Held => {
                let pids: Vec<String> = r.live_holders().map(|h| h.id.pid.to_string()).collect();
                (
                    true,
                    format!("held now ({}) by pid {}", r.kind.as_str(), pids.join(", ")),
                )
            }
            Ok(Some(r)) if r.standing() == Standing::Stale => {
                (false, "not held now (stale record)".to_string())
            }
            Ok(Some(_)) => (false, "not held now".to_string()),
            Ok(None) => (false, "not held now".to_string()),
            Err(_) => (true, "its record does not parse now".to_string()),
        };
    }
    if path.exists() {
        (true, format!("present now at {}", path.display()))
    } else {
        (false, format!("absent now (no {})", path.display()))
    }
}

/// The head of `audit history --json`: what comes before the steps.
#[derive(Serialize)]
struct Head<'a> {
    target: &'a str,
    /// `state file`, `lock`, `checkpoint` or `backup`; null when nothing is known of it.
    kind: Option<&'static str>,
    present: bool,
    now: &'a str,
    verdict: &'a str,
}

/// What follows the steps.
#[derive(Serialize)]
struct Tail {
    step_count: usize,
    removed_by: Option<StepReport>,
    malformed: u64,
}

/// One step: what happened, in words, and the event behind it.
#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub what: String,
    pub detail: String,
    pub event: Value,
}

impl Step {
    /// The step as serde_json writes its [`StepReport`], the event copied
    /// from its line ([`plain::write_value`]) rather than parsed into a
    /// value and written out again; `None` when the line is not one that
    /// copies exactly.
    fn json(&self, pretty: bool) -> Option<String> {
        let event = std::str::from_utf8(&self.raw).ok()?;
        let text =
            |b: &mut Vec<u8>, s: &str| serde_json::to_writer(b, s).expect("strings serialize");
        let mut b = Vec::with_capacity(self.raw.len() * 2);
        let (open, sep): (&[u8], &[u8]) = if pretty {
            (b"\n  ", b": ")
        } else {
            (b"", b":")
        };
        for (name, value) in [("what", &self.what), ("detail", &self.detail)] {
            b.push(if name == "what" { b'{' } else { b',' });
            b.extend_from_slice(open);
            text(&mut b, name);
            b.extend_from_slice(sep);
            text(&mut b, value);
        }
        b.push(b',');
        b.extend_from_slice(open);
        text(&mut b, "event");
        b.extend_from_slice(sep);
        if !plain::write_value(event, pretty.then_some(1), &mut b) {
            return None;
        }
        if pretty {
            b.push(b'\n');
        }
        b.push(b'}');
        String::from_utf8(b).ok()
    }

    fn report(&self) -> StepReport {
        StepReport {
            what: self.what.clone(),
            detail: self.detail.clone(),
            event: self.event(),
        }
    }
}

impl History {
    /// Writes `audit history --json`: `{"target", "kind", "present", "now",
    /// "verdict", "steps": [...], "step_count", "removed_by", "malformed"}`,
    /// pretty (as `serde_json` prints it) or on one line, one step at a
    /// time: a busy target's history can be long.
    pub fn write_json(&self, totals: &Totals, pretty: bool, out: &mut dyn Write) -> io::Result<()> {
        fn enc(v: &impl Serialize, pretty: bool) -> String {
            if pretty {
                serde_json::to_string_pretty(v)
            } else {
                serde_json::to_string(v)
            }
            .expect("history reports serialize")
        }
        let head = enc(
            &Head {
                target: &self.target,
                kind: self.kind.map(What::name),
                present: self.present,
                now: &self.now,
                verdict: &self.verdict,
            },
            pretty,
        );
        let tail = enc(
            &Tail {
                step_count: self.steps.len(),
                removed_by: self.removed_by.as_ref().map(Step::report),
                malformed: totals.malformed,
            },
            pretty,
        );
        // The head without its closing brace, the steps, the tail without
        // its opening one. Pretty: the steps are one level deeper (four
        // spaces); a string in pretty JSON holds no raw newline, so
        // indenting line by line is exact.
        let head = head.trim_end_matches('}').trim_end();
        out.write_all(head.as_bytes())?;
        out.write_all(if pretty {
            b",\n  \"steps\": ["
        } else {
            b",\"steps\":["
        })?;
        let mut first = true;
        self.steps.each(|s| {
            if !std::mem::take(&mut first) {
                out.write_all(b",")?;
            }
            let step = s.json(pretty).unwrap_or_else(|| enc(&s.report(), pretty));
            if pretty {
                for line in step.lines() {
                    out.write_all(b"\n    ")?;
                    out.write_all(line.as_bytes())?;
                }
            } else {
                out.write_all(step.as_bytes())?;
            }
            Ok(())
        })?;
        if pretty && !self.steps.is_empty() {
            out.write_all(b"\n  ")?;
        }
        out.write_all(b"],")?;
        out.write_all(&tail.as_bytes()[1..])
    }
}
