//! `audit missing TARGET`: the investigation a "state GET failed" incident
//! needs, in one report — is the thing there now (and what it is, its size,
//! a TTL it should not have on Redis), what is related to it (its files or
//! keys), what the audit log says was done to it (newest first, at most
//! `-n`), the event that removed it, and which other hosts touched it in
//! the last `--window`.
//!
//! TARGET is one of six kinds, said with `--kind` or guessed in this order:
//!
//! 1. `wfstate:…` — a Redis key;
//! 2. `.a.b` (a dot first, no `/`, no such file) — a path in the state
//!    document, such as `.signals.build`;
//! 3. `checkpoint-…` — a checkpoint id;
//! 4. `state-….json` — a backup name;
//! 5. a name with a `/`, or of a file that exists — a file;
//! 6. any other plain name — a lock.
//!
//! A state path is traced through the `path` (`from`, `to` for `mv`) that
//! `set`, `append`, `del`, `mv` and `signal` record in their events: an
//! event on the path itself, a parent of it (deleting `.signals` removes
//! `.signals.build`) or a child of it. When no event deleted or moved it,
//! the newest change of the whole document (`write`, `import`, `recover`,
//! `restore`, `init`) is named as what may have dropped it.
//!
//! Reading is newest first where the log allows it (the file backend: from
//! the end of the live log back, stopping once the `-n` newest events, the
//! removal and the window are found), else one forward pass keeping only
//! the newest `-n` (the Redis stream): memory is bounded by `-n` and the
//! number of hosts, never by the log's size. A log that does not exist is
//! an empty one: a target never seen is a report, not an error.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::event::{hostname, is_read_only};
use super::scan::{Events, Filter, Line, Target, Totals, format_micros};
use crate::backend::Backend;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::state::path::{self, Seg};

/// What kind of thing TARGET is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "kebab-case")]
pub enum Kind {
    /// A path in the state document (`.signals.build`).
    Path,
    /// A named lock.
    Lock,
    /// A checkpoint id.
    Checkpoint,
    /// A backup name.
    Backup,
    /// A Redis key (the whole name, `wfstate:{NS}:…`).
    Key,
    /// A file.
    File,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Path => "path",
            Kind::Lock => "lock",
            Kind::Checkpoint => "checkpoint",
            Kind::Backup => "backup",
            Kind::Key => "key",
            Kind::File => "file",
        }
    }
}

/// What `audit missing` is asked.
pub struct Options<'a> {
    pub target: &'a str,
    /// Said by `--kind`; else guessed (see the module docs).
    pub kind: Option<Kind>,
    /// How far back "other hosts" look, in µs.
    pub window_us: i64,
    /// At most this many operations are shown.
    pub count: usize,
    /// The target the state's own events carry (the state file's path, or
    /// the server and namespace).
    pub state_target: &'a str,
}

/// A file or key related to the target.
#[derive(Clone, Debug, Serialize)]
pub struct Related {
    pub name: String,
    /// `file` or `key`.
    pub place: &'static str,
    /// `file`, `folder`, `symlink`, …; a key's `TYPE`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Bytes (a key's `MEMORY USAGE`); null for a folder or when refused.
    pub size: Option<u64>,
    /// A key's TTL (null: none, as every wfstate key; and for files).
    pub ttl_ms: Option<i64>,
}

/// One event on the target: what it did, in a word, and the event.
#[derive(Clone, Debug, Serialize)]
pub struct Operation {
    /// `removed`, `failed`, `created`, `changed`, `locked`, `read`, …
    pub what: String,
    pub event: Value,
}

/// Another host seen on the target within the window.
#[derive(Clone, Debug, Serialize)]
pub struct HostSeen {
    pub host: String,
    pub event_count: u64,
    /// Its newest event's time.
    pub last: String,
    /// The operations it ran, sorted.
    pub ops: Vec<String>,
}

/// The report of `audit missing` (`--json` prints it as is).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub target: String,
    /// `path`, `lock`, `checkpoint`, `backup`, `key` or `file`.
    pub kind: &'static str,
    /// Why it was taken for that kind.
    pub guessed: String,
    /// `file` or `redis`.
    pub backend: &'static str,
    pub exists: bool,
    /// What is there now, in words.
    pub now: String,
    /// Its type now (a JSON type, a lock type, a key's TYPE, `file`, …).
    #[serde(rename = "type")]
    pub kind_now: Option<String>,
    /// Its size now, in bytes.
    pub size: Option<u64>,
    /// The TTL of its key on Redis (none should have one).
    pub ttl_ms: Option<i64>,
    pub related: Vec<Related>,
    /// Newest first, at most `-n`.
    pub operations: Vec<Operation>,
    /// The event that removed it (when it is missing now).
    pub removed_by: Option<Operation>,
    /// This host's name, as events record it.
    pub this_host: String,
    pub window_ms: i64,
    pub other_hosts: Vec<HostSeen>,
    /// One sentence summing up.
    pub verdict: String,
    /// Lines of the log that did not parse (among those read).
    pub malformed: u64,
}

/// What a removal-capable event refers to, beyond its target.
#[derive(Default, Deserialize)]
struct Refs<'a> {
    #[serde(borrow, default)]
    path: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    from: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    to: Option<Cow<'a, str>>,
    /// Names removed (`lock-manager clean`).
    #[serde(borrow, default)]
    names: Option<Vec<Cow<'a, str>>>,
    /// Names removed, or their count.
    #[serde(default)]
    removed: Option<Value>,
}

#[derive(Deserialize)]
struct WithRefs<'a> {
    #[serde(borrow, default)]
    detail: Option<Refs<'a>>,
}

/// Ops whose events may name a path or removed names in their detail.
const REFERRING: &[&str] = &[
    "set", "append", "del", "mv", "signal", "clean", "cleanup", "prune", "delete", "remove", "rm",
];
/// Ops that remove what they name (a state path's `del` and `mv` are
/// judged by the path they record: on the state file they edit it).
const REMOVING: &[&str] = &[
    "delete", "remove", "rm", "release", "clean", "cleanup", "prune",
];
/// Ops that replace the whole state document.
const REPLACING: &[&str] = &["write", "import", "recover", "restore", "init"];

/// How one event relates to the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Touch {
    No,
    /// On the target: shown; `removes` when it removed it.
    On {
        removes: bool,
    },
    /// It replaced the whole state document (a state path may have gone with it).
    Replaced,
}

/// TARGET's kind, and why.
pub fn guess(cfg: &Config, target: &str, said: Option<Kind>) -> (Kind, String) {
    if let Some(k) = said {
        return (k, "said by --kind".into());
    }
    let is_file = |t: &str| {
        let p = Path::new(t);
        p.symlink_metadata().is_ok() || cfg.root.join(p).symlink_metadata().is_ok()
    };
    if target.starts_with("wfstate:") {
        (Kind::Key, "starts with 'wfstate:': a Redis key".into())
    } else if target.starts_with('.') && !target.contains('/') && !is_file(target) {
        (
            Kind::Path,
            "starts with '.': a path in the state document".into(),
        )
    } else if target.starts_with("checkpoint-") {
        (
            Kind::Checkpoint,
            "starts with 'checkpoint-': a checkpoint id".into(),
        )
    } else if target.starts_with("state-") && target.ends_with(".json") && !target.contains('/') {
        (Kind::Backup, "state-….json: a backup name".into())
    } else if target.contains('/') || is_file(target) {
        (Kind::File, "a path with '/', or a file that exists".into())
    } else if crate::lock::name::validate_as("lock name", target).is_ok() {
        (
            Kind::Lock,
            "a plain name: a lock (--kind says otherwise)".into(),
        )
    } else {
        (Kind::File, "not a lock name: a file".into())
    }
}

/// Runs `audit missing` (see the module docs).
pub fn investigate(
    cfg: &Config,
    backend: &dyn Backend,
    events: &dyn Events,
    opts: &Options,
) -> Result<Report> {
    let (kind, guessed) = guess(cfg, opts.target, opts.kind);
    let segs = if kind == Kind::Path {
        Some(path::parse(opts.target).map_err(|e| {
            Error::validation(format!(
                "'{}' is not a state path: {}",
                opts.target,
                e.summary()
            ))
            .hint("give a path like .signals.build, or --kind lock|checkpoint|backup|key|file")
        })?)
    } else {
        None
    };
    let now = look(cfg, backend, kind, opts.target, segs.as_deref())?;
    let related = related(cfg, backend, kind, opts.target, segs.as_deref())?;
    let mut c = Collect {
        matcher: Matcher::new(kind, opts, segs),
        filter: Filter::default(),
        this_host: hostname(),
        window_start: super::scan::now_micros() - opts.window_us,
        count: opts.count,
        exists: now.exists,
        shown: VecDeque::new(),
        removal: None,
        replaced: None,
        hosts: BTreeMap::new(),
    };
    let totals = match events.scan_events_back(&mut |line| {
        c.visit(line, true);
        !c.enough(line)
    }) {
        Some(t) => t?,
        None => events.scan_events(&mut |line| c.visit(line, false))?,
    };
    Ok(c.report(opts, kind, guessed, backend.kind(), now, related, &totals))
}

/// What the scan keeps: bounded by `count` and the number of hosts.
struct Collect<'a> {
    matcher: Matcher<'a>,
    filter: Filter,
    this_host: String,
    window_start: i64,
    count: usize,
    exists: bool,
    /// The newest `count` events on the target, newest first.
    shown: VecDeque<Vec<u8>>,
    /// The newest event that removed it.
    removal: Option<Vec<u8>>,
    /// The newest replacement of the whole document (state paths).
    replaced: Option<Vec<u8>>,
    /// Other hosts in the window: events, newest time, ops.
    hosts: BTreeMap<String, (u64, i64, BTreeSet<String>)>,
}

impl Collect<'_> {
    /// Takes one event, handed newest first or (`newest_first` false) oldest first.
    fn visit(&mut self, line: &Line, newest_first: bool) {
        if !self.filter.matches(line) {
            return;
        }
        // Newest first, the first one found is the newest; oldest first, the last.
        let keep = |slot: &mut Option<Vec<u8>>| {
            if !newest_first || slot.is_none() {
                *slot = Some(line.raw.to_vec());
            }
        };
        match self.matcher.touch(line) {
            Touch::No => return,
            Touch::Replaced => {
                keep(&mut self.replaced);
                return;
            }
            Touch::On { removes } => {
                if removes {
                    keep(&mut self.removal);
                }
            }
        }
        if newest_first {
            if self.shown.len() < self.count {
                self.shown.push_back(line.raw.to_vec());
            }
        } else if self.count > 0 {
            if self.shown.len() == self.count {
                self.shown.pop_back();
            }
            self.shown.push_front(line.raw.to_vec());
        }
        let host = &*line.ev.host;
        if line.at >= self.window_start && host != self.this_host {
            let e = self.hosts.entry(host.to_string()).or_default();
            e.0 += 1;
            e.1 = e.1.max(line.at);
            e.2.insert(line.ev.op.to_string());
        }
    }

    /// Reading newest first, whether older events can change nothing: the
    /// `count` newest are found, the window is passed, and the removal is
    /// found or not needed.
    fn enough(&self, line: &Line) -> bool {
        self.shown.len() >= self.count
            && line.at < self.window_start
            && (self.exists || self.removal.is_some())
    }

    #[allow(clippy::too_many_arguments)]
    fn report(
        self,
        opts: &Options,
        kind: Kind,
        guessed: String,
        backend: &'static str,
        now: Now,
        related: Vec<Related>,
        totals: &Totals,
    ) -> Report {
        let op = |raw: &[u8]| {
            let event: Value = serde_json::from_slice(raw).unwrap_or(Value::Null);
            Operation {
                what: what(&event, self.matcher.removes_value(&event)),
                event,
            }
        };
        let operations: Vec<Operation> = self.shown.iter().map(|r| op(r)).collect();
        let removed_by = if now.exists {
            None
        } else {
            match (&self.removal, &self.replaced) {
                (Some(r), _) => Some(op(r)),
                (None, Some(r)) => Some(Operation {
                    what: "replaced".into(),
                    event: serde_json::from_slice(r).unwrap_or(Value::Null),
                }),
                (None, None) => None,
            }
        };
        let mut other_hosts: Vec<HostSeen> = self
            .hosts
            .into_iter()
            .map(|(host, (n, last, ops))| HostSeen {
                host,
                event_count: n,
                last: format_micros(last),
                ops: ops.into_iter().collect(),
            })
            .collect();
        other_hosts.sort_by(|a, b| b.last.cmp(&a.last));
        let ttl_note = now.ttl_ms.map(|t| {
            format!(" — its key carries a TTL ({t} ms left): it will vanish; wfstate never sets one, so something else did")
        });
        let verdict = match (&removed_by, now.exists, operations.is_empty()) {
            (_, true, _) => now.text.clone(),
            (Some(r), false, _) => {
                let e = &r.event;
                let how = if r.what == "replaced" {
                    "the whole document was last replaced by"
                } else {
                    "removed by"
                };
                format!(
                    "{}; {how} {} {} at {} on host {} (pid {}, user {})",
                    now.text,
                    e["tool"].as_str().unwrap_or("?"),
                    e["op"].as_str().unwrap_or("?"),
                    e["ts"].as_str().unwrap_or("?"),
                    e["host"].as_str().unwrap_or("?"),
                    e["pid"],
                    e["user"].as_str().unwrap_or("?"),
                )
            }
            (None, false, true) => {
                let log = if totals.lines == 0 {
                    "the audit log is empty or does not exist"
                } else {
                    "no event in the audit log names it"
                };
                format!("never seen: {}; {log}", now.text)
            }
            (None, false, false) => format!(
                "{}; no event in the audit log removed it (removed by hand, by an automatic prune, or its events rotated away)",
                now.text
            ),
        } + ttl_note.as_deref().unwrap_or("");
        Report {
            target: opts.target.to_string(),
            kind: kind.name(),
            guessed,
            backend,
            exists: now.exists,
            now: now.text,
            kind_now: now.kind,
            size: now.size,
            ttl_ms: now.ttl_ms,
            related,
            operations,
            removed_by,
            this_host: self.this_host,
            window_ms: opts.window_us / 1000,
            other_hosts,
            verdict,
            malformed: totals.malformed,
        }
    }
}

/// What an event did to the target, in a word.
fn what(event: &Value, removes: bool) -> String {
    let op = event["op"].as_str().unwrap_or("");
    if event["exit_code"].as_i64().unwrap_or(0) != 0 {
        "failed".into()
    } else if removes {
        if op == "release" {
            "released".into()
        } else if op == "mv" {
            "moved".into()
        } else {
            "removed".into()
        }
    } else {
        match op {
            "init" | "checkpoint" | "backup" | "create" | "signal" => "created".into(),
            "acquire" | "run" => "locked".into(),
            "takeover" => "taken over".into(),
            o if is_read_only(o) => "read".into(),
            _ => "changed".into(),
        }
    }
}

/// Decides how an event relates to the target.
struct Matcher<'a> {
    kind: Kind,
    target: &'a str,
    state_target: &'a str,
    /// A file's target, compared as paths.
    file: Option<Target>,
    /// A state path's segments.
    segs: Option<Vec<Seg>>,
    /// A key of the lock namespace (`wfstate:{NS}:lock:NAME…`): NAME.
    key_lock: Option<String>,
    /// The key is the state's own (`wfstate:{NS}:state`).
    key_state: bool,
}

impl<'a> Matcher<'a> {
    fn new(kind: Kind, opts: &Options<'a>, segs: Option<Vec<Seg>>) -> Matcher<'a> {
        let rest = opts
            .target
            .strip_prefix("wfstate:{")
            .and_then(|r| r.split_once("}:"))
            .map(|(_, rest)| rest);
        let key_lock = rest
            .and_then(|r| r.strip_prefix("lock:"))
            .map(|n| n.split(':').next().unwrap_or(n).to_string());
        Matcher {
            kind,
            target: opts.target,
            state_target: opts.state_target,
            file: matches!(kind, Kind::File | Kind::Checkpoint | Kind::Backup)
                .then(|| Target::new(opts.target)),
            segs,
            key_lock: if kind == Kind::Key { key_lock } else { None },
            key_state: kind == Kind::Key && rest == Some("state"),
        }
    }

    /// Whether `name` (from an event's target or detail) is the target.
    fn names(&self, name: &str) -> bool {
        if name == self.target {
            return true;
        }
        match (&self.file, self.kind) {
            (Some(t), Kind::File) => t.names(name),
            // A checkpoint or backup shown by its path.
            (Some(t), _) => {
                t.names(name)
                    || Path::new(name).file_name().and_then(|n| n.to_str()) == Some(self.target)
            }
            _ => false,
        }
    }

    fn touch(&self, line: &Line) -> Touch {
        let ev = &line.ev;
        let ok = ev.exit_code == 0;
        let refs = || -> Option<Refs> {
            if REFERRING.contains(&&*ev.op) {
                serde_json::from_slice::<WithRefs>(line.raw)
                    .ok()
                    .and_then(|w| w.detail)
            } else {
                None
            }
        };
        let listed = |r: &Refs, name: &dyn Fn(&str) -> bool| {
            r.names.iter().flatten().any(|n| name(n))
                || r.removed
                    .as_ref()
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|n| n.as_str().is_some_and(name)))
        };
        match self.kind {
            Kind::Path => {
                if ev.target != self.state_target {
                    return Touch::No;
                }
                let segs = self.segs.as_deref().unwrap_or(&[]);
                if let Some(r) = refs() {
                    let rel =
                        |p: &Option<Cow<str>>| p.as_deref().map_or(Rel::None, |p| relate(segs, p));
                    let (at, from, to) = (rel(&r.path), rel(&r.from), rel(&r.to));
                    let removes = ok
                        && ((ev.op == "del" && matches!(at, Rel::Same | Rel::Parent))
                            || (ev.op == "mv" && matches!(from, Rel::Same | Rel::Parent)));
                    if [at, from, to].iter().any(|r| *r != Rel::None) {
                        return Touch::On { removes };
                    }
                    return Touch::No;
                }
                if ok && REPLACING.contains(&&*ev.op) {
                    Touch::Replaced
                } else {
                    Touch::No
                }
            }
            Kind::Lock => self.lock_touch(line, self.target, ok, refs),
            Kind::Key => {
                if let Some(lock) = &self.key_lock {
                    return self.lock_touch(line, lock, ok, refs);
                }
                if ev.target == self.target || (self.key_state && ev.target == self.state_target) {
                    Touch::On {
                        removes: ok && REMOVING.contains(&&*ev.op),
                    }
                } else {
                    Touch::No
                }
            }
            Kind::Checkpoint | Kind::Backup | Kind::File => {
                if self.names(&ev.target) {
                    return Touch::On {
                        removes: ok && REMOVING.contains(&&*ev.op),
                    };
                }
                match refs() {
                    Some(r) if listed(&r, &|n| self.names(n)) => Touch::On { removes: ok },
                    _ => Touch::No,
                }
            }
        }
    }

    fn lock_touch<'r>(
        &self,
        line: &'r Line,
        lock: &str,
        ok: bool,
        refs: impl FnOnce() -> Option<Refs<'r>>,
    ) -> Touch {
        let ev = &line.ev;
        if ev.target == lock {
            return Touch::On {
                removes: ok && REMOVING.contains(&&*ev.op),
            };
        }
        match refs() {
            Some(r)
                if r.names.iter().flatten().any(|n| n == lock)
                    || r.removed
                        .as_ref()
                        .and_then(Value::as_array)
                        .is_some_and(|a| a.iter().any(|n| n == lock)) =>
            {
                Touch::On { removes: ok }
            }
            _ => Touch::No,
        }
    }

    /// Whether a shown event is the kind that removes (for its word).
    fn removes_value(&self, event: &Value) -> bool {
        let op = event["op"].as_str().unwrap_or("");
        if event["exit_code"].as_i64().unwrap_or(0) != 0 {
            return false;
        }
        match self.kind {
            Kind::Path => {
                let segs = self.segs.as_deref().unwrap_or(&[]);
                let rel = |k: &str| {
                    event["detail"][k]
                        .as_str()
                        .map_or(Rel::None, |p| relate(segs, p))
                };
                (op == "del" && matches!(rel("path"), Rel::Same | Rel::Parent))
                    || (op == "mv" && matches!(rel("from"), Rel::Same | Rel::Parent))
            }
            _ => {
                REMOVING.contains(&op)
                    || (event["target"].as_str() != Some(self.target)
                        && ["clean", "cleanup", "prune"].contains(&op))
            }
        }
    }
}

/// How a path named by an event relates to the target's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rel {
    None,
    Same,
    /// The event's path holds the target (deleting it deletes the target).
    Parent,
    /// The event's path is inside the target.
    Child,
}

fn relate(target: &[Seg], other: &str) -> Rel {
    let Ok(o) = path::parse(other) else {
        return Rel::None;
    };
    let common = target.iter().zip(&o).take_while(|(a, b)| a == b).count();
    if common == target.len() && common == o.len() {
        Rel::Same
    } else if common == o.len() {
        Rel::Parent
    } else if common == target.len() {
        Rel::Child
    } else {
        Rel::None
    }
}

/// What is there now.
struct Now {
    exists: bool,
    text: String,
    kind: Option<String>,
    size: Option<u64>,
    ttl_ms: Option<i64>,
}

fn absent(text: impl Into<String>) -> Now {
    Now {
        exists: false,
        text: text.into(),
        kind: None,
        size: None,
        ttl_ms: None,
    }
}

/// The TTL of key `name` of the namespace (Redis only; None elsewhere or without one).
fn ttl_of(backend: &dyn Backend, name: &str) -> Result<Option<i64>> {
    #[cfg(feature = "redis")]
    if let Some(r) = backend.redis() {
        return Ok(r.key_facts(&r.key_name(name))?.and_then(|f| f.ttl_ms));
    }
    let _ = (backend, name);
    Ok(None)
}

fn look(
    cfg: &Config,
    backend: &dyn Backend,
    kind: Kind,
    target: &str,
    segs: Option<&[Seg]>,
) -> Result<Now> {
    Ok(match kind {
        Kind::Path => {
            let Some(bytes) = backend.state().load_bytes()? else {
                return Ok(absent(format!(
                    "absent: there is no state ({})",
                    backend.location()
                )));
            };
            let doc: Value = serde_json::from_slice(&bytes).map_err(|e| {
                Error::new(
                    crate::error::Kind::Corruption,
                    format!("the state does not parse: {e}"),
                )
                .hint("run 'state-manager recover' to restore the newest valid backup")
            })?;
            let revision = crate::state::document::revision(&doc);
            let ttl_ms = ttl_of(backend, "state")?;
            match path::get(&doc, segs.unwrap_or(&[])) {
                Some(v) => {
                    let size = serde_json::to_vec(v).map_or(0, |b| b.len() as u64);
                    Now {
                        exists: true,
                        text: format!(
                            "present in the state (revision {revision}): {}, {size} bytes",
                            path::type_name(v)
                        ),
                        kind: Some(json_type(v).into()),
                        size: Some(size),
                        ttl_ms,
                    }
                }
                None => Now {
                    ttl_ms,
                    ..absent(format!("absent from the state (revision {revision})"))
                },
            }
        }
        Kind::Lock => {
            use crate::lock::manager::Check;
            let ttl_ms = ttl_of(backend, &format!("lock:{target}"))?;
            match backend.locks().check(target)? {
                Check::Locked { kind, pid } => Now {
                    exists: true,
                    text: format!("held now ({}) by pid {pid}", kind.as_str()),
                    kind: Some(kind.as_str().into()),
                    size: None,
                    ttl_ms,
                },
                Check::Stale => Now {
                    ttl_ms,
                    ..absent("not held now: a stale record (its holders are gone)")
                },
                Check::Unlocked => Now {
                    ttl_ms,
                    ..absent("not held now")
                },
            }
        }
        Kind::Checkpoint => {
            let ttl_ms = ttl_of(backend, "checkpoints")?;
            match backend
                .checkpoints()
                .entries()?
                .into_iter()
                .find(|c| c.id == target)
            {
                Some(c) => Now {
                    exists: true,
                    text: format!("present: checkpoint made {}, {} bytes", c.made, c.size),
                    kind: Some("checkpoint".into()),
                    size: Some(c.size),
                    ttl_ms,
                },
                None => Now {
                    ttl_ms,
                    ..absent("no such checkpoint now")
                },
            }
        }
        Kind::Backup => {
            let ttl_ms = ttl_of(backend, "backups")?;
            match backend
                .state()
                .list_backups()?
                .into_iter()
                .find(|b| b.name == target)
            {
                Some(b) => Now {
                    exists: true,
                    text: format!("present: backup of {} bytes", b.size),
                    kind: Some("backup".into()),
                    size: Some(b.size),
                    ttl_ms,
                },
                None => Now {
                    ttl_ms,
                    ..absent("no such backup now")
                },
            }
        }
        Kind::Key => {
            #[cfg(feature = "redis")]
            if let Some(r) = backend.redis() {
                return Ok(match r.key_facts(target)? {
                    Some(f) => Now {
                        exists: true,
                        text: format!(
                            "present: a {}{}",
                            f.kind,
                            f.size.map(|s| format!(", {s} bytes")).unwrap_or_default()
                        ),
                        kind: Some(f.kind),
                        size: f.size,
                        ttl_ms: f.ttl_ms,
                    },
                    None => absent("no such key now"),
                });
            }
            absent("absent: the backend is not Redis (WFSTATE_BACKEND)")
        }
        Kind::File => {
            let p = file_path(cfg, target);
            match p.symlink_metadata() {
                Ok(m) => Now {
                    exists: true,
                    text: format!(
                        "present at {}: {}, {} bytes",
                        p.display(),
                        file_type(&m),
                        m.len()
                    ),
                    kind: Some(file_type(&m).into()),
                    size: Some(m.len()),
                    ttl_ms: None,
                },
                Err(_) => absent(format!("absent now (no {})", p.display())),
            }
        }
    })
}

/// A relative file name is looked for in the current folder, then the state root.
fn file_path(cfg: &Config, target: &str) -> PathBuf {
    let p = PathBuf::from(target);
    if p.is_absolute() || p.symlink_metadata().is_ok() {
        p
    } else {
        let in_root = cfg.root.join(&p);
        if in_root.symlink_metadata().is_ok() {
            in_root
        } else {
            p
        }
    }
}

fn file_type(m: &std::fs::Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_symlink() {
        "symlink"
    } else if t.is_dir() {
        "folder"
    } else if t.is_file() {
        "file"
    } else {
        "special file"
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// At most this many related files or keys are listed.
const RELATED_MAX: usize = 50;

fn related(
    cfg: &Config,
    backend: &dyn Backend,
    kind: Kind,
    target: &str,
    segs: Option<&[Seg]>,
) -> Result<Vec<Related>> {
    let mut out = Vec::new();
    let mut file = |p: PathBuf| {
        if let Ok(m) = p.symlink_metadata() {
            out.push(Related {
                name: p.display().to_string(),
                place: "file",
                kind: file_type(&m).into(),
                size: (!m.is_dir()).then_some(m.len()),
                ttl_ms: None,
            });
        }
    };
    let redis = backend.kind() == "redis";
    let mut keys: Vec<String> = Vec::new();
    match kind {
        Kind::Path => {
            if let Some([Seg::Key(s), Seg::Key(name), ..]) = segs
                && s == "signals"
            {
                file(cfg.signals_dir().join(format!("{name}.json")));
            }
            if redis {
                keys.push("state".into());
            } else {
                file(cfg.state_file.clone());
            }
        }
        Kind::Lock => {
            let dir = cfg.locks_dir();
            for ext in ["lock", "mutex"] {
                file(dir.join(format!("{target}.{ext}")));
            }
            // The per-owner index: .locks/owners/PID-START/NAME.
            if let Ok(owners) = std::fs::read_dir(dir.join("owners")) {
                for o in owners.flatten().take(RELATED_MAX) {
                    file(o.path().join(target));
                }
            }
            if redis {
                keys.push(format!("lock:{target}"));
                keys.push(format!("lock:{target}:"));
            }
        }
        Kind::Checkpoint => {
            if redis {
                keys.push("checkpoints".into());
            } else {
                file(cfg.checkpoints_dir().join(target));
            }
        }
        Kind::Backup => {
            if redis {
                keys.extend([
                    "backups".into(),
                    "backups:seq".into(),
                    "backups:made".into(),
                ]);
            } else {
                file(cfg.backups_dir().join(target));
            }
        }
        Kind::Key => keys.push(format!("={target}")),
        Kind::File => {
            // Files beside it whose names start with its name (NAME.lock,
            // NAME.tmp-…, NAME.1 of a rotated log).
            let p = file_path(cfg, target);
            if let (Some(dir), Some(name)) = (p.parent(), p.file_name().and_then(|n| n.to_str())) {
                let dir = if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir
                };
                if let Ok(rd) = std::fs::read_dir(dir) {
                    let mut names: Vec<PathBuf> = rd
                        .flatten()
                        .filter(|e| {
                            e.file_name()
                                .to_str()
                                .is_some_and(|n| n != name && n.starts_with(name))
                        })
                        .map(|e| e.path())
                        .collect();
                    names.sort();
                    for n in names.into_iter().take(RELATED_MAX) {
                        file(n);
                    }
                }
            }
        }
    }
    #[cfg(feature = "redis")]
    if let Some(r) = backend.redis() {
        for k in keys {
            // `=NAME`: a whole key name, and those it prefixes; `NAME:`:
            // the namespace's keys under it; `NAME`: that one key.
            let names = if let Some(whole) = k.strip_prefix('=') {
                r.keys_with_prefix(whole, RELATED_MAX + 1)?
                    .into_iter()
                    .filter(|n| n != whole)
                    .take(RELATED_MAX)
                    .collect()
            } else if k.ends_with(':') {
                r.keys_with_prefix(&r.key_name(&k), RELATED_MAX)?
            } else {
                vec![r.key_name(&k)]
            };
            for name in names {
                if let Some(f) = r.key_facts(&name)? {
                    out.push(Related {
                        name,
                        place: "key",
                        kind: f.kind,
                        size: f.size,
                        ttl_ms: f.ttl_ms,
                    });
                }
            }
        }
    }
    #[cfg(not(feature = "redis"))]
    let _ = keys;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_relates_to_its_parents_and_children_only() {
        let t = path::parse(".signals.build").unwrap();
        assert_eq!(relate(&t, ".signals.build"), Rel::Same);
        assert_eq!(relate(&t, ".signals"), Rel::Parent);
        assert_eq!(relate(&t, ".signals.build.at"), Rel::Child);
        assert_eq!(relate(&t, ".signals.builder"), Rel::None);
        assert_eq!(relate(&t, ".phase"), Rel::None);
        assert_eq!(relate(&t, "not a path["), Rel::None);
    }

    #[test]
    fn the_kind_is_guessed_from_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::new(dir.path().join("s.json"));
        let kind = |t: &str| guess(&cfg, t, None).0;
        assert_eq!(kind("wfstate:{ci}:state"), Kind::Key);
        assert_eq!(kind(".signals.build"), Kind::Path);
        assert_eq!(kind("checkpoint-20250101-000000-deploy"), Kind::Checkpoint);
        assert_eq!(kind("state-20250101-000000-0001-manual.json"), Kind::Backup);
        assert_eq!(kind("/etc/hostname"), Kind::File);
        assert_eq!(kind("deploy"), Kind::Lock);
        assert_eq!(guess(&cfg, "deploy", Some(Kind::File)).0, Kind::File);
    }
}
