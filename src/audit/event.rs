//! Writing audit events.
//!
//! An event is serialized whole and appended with one write(2) to a file
//! opened with `O_APPEND`, so the lines of concurrent writers never
//! interleave. Fields: `ts` (RFC 3339, µs), `tool`, `op`, `target`, `pid`,
//! `ppid`, `host`, `user`, `duration_ms`, `exit_code`, `outcome`, `detail`
//! and `run_id` (from `WFSTATE_RUN_ID`) when set. See
//! schemas/audit-event.schema.json. After its write, a writer that finds the
//! log at `AUDIT_MAX_BYTES` rotates it ([`super::rotate`]).
//!
//! Where events may go: the audit log is a regular file, or a symlink to one
//! inside the log's own folder (for the default log, the state root) — the
//! rule the state file follows. A symlink leading anywhere else (or to
//! nothing), a FIFO, socket or device is refused: a warning, the event is
//! skipped, and nothing is opened for writing or created outside. No open
//! blocks. The one exception is `AUDIT_LOG=/dev/null`, the usual way to turn
//! auditing off: events are dropped silently (`health` reports it).
//!
//! Who creates the log: an operation that changes something creates it (in
//! a state root that exists). An operation that only looks ([`only_looked`]:
//! the ops of [`READ_ONLY_OPS`], dry runs, a `handle` not applied) appends
//! to a log that exists and never creates one (no `O_CREAT`), so
//! `read`, `status` or `lock-manager list` run in the wrong folder leave it
//! as it was. The exception: a log rotated away (`LOG.1` exists) is started
//! anew by whoever writes next, reads included, so no event is lost there.

use std::cell::RefCell;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::rotate;
use crate::config::Config;
use crate::durable;
use crate::error::{Error, Result};

/// Operations that only look at their target, by their `op` name in the
/// log. The one list: the sink creates no log for them ([`append`]), `audit
/// history` leaves them out unless `--all`, and two of them overlapping is
/// not a race (`audit races`). Answers (`check`, `is-degraded`, `read -e`)
/// are reads too.
pub const READ_ONLY_OPS: &[&str] = &[
    "read",
    "status",
    "check",
    "list",
    "validate",
    "suggest",
    "is-degraded",
    "verify-integrity",
    "validate-backup",
    "export",
    "list-backups",
    "list-states",
    "health",
    "diagnostics",
    "audit-recent",
    "audit-stats",
    "audit-races",
    "audit-history",
    "audit-missing",
    "audit-export",
    "audit-monitor",
    // Names older logs may hold.
    "get",
    "show",
    "diagnose",
    "doctor",
];

/// Whether operation `op` only looks ([`READ_ONLY_OPS`]).
pub fn is_read_only(op: &str) -> bool {
    READ_ONLY_OPS.contains(&op)
}

/// Whether the operation `event` records only looked: a read-only op
/// ([`is_read_only`]), or one that says in its detail that it changed
/// nothing by request — a dry run (`repair`/`cleanup --dry-run`,
/// `"dry_run": true`) or a suggestion not applied (`handle` without
/// `--apply`, `"applied": false`). The sink creates no log for it.
pub fn only_looked(event: &Event) -> bool {
    is_read_only(&event.op)
        || event.detail["dry_run"] == Value::Bool(true)
        || event.detail["applied"] == Value::Bool(false)
}

/// One line of the audit log.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    pub ts: String,
    pub tool: String,
    pub op: String,
    pub target: String,
    pub pid: u32,
    pub ppid: u32,
    pub host: String,
    pub user: String,
    pub duration_ms: f64,
    pub exit_code: i32,
    pub outcome: String,
    #[serde(default)]
    pub detail: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

/// Where an event goes instead of the audit file (a backend's own log);
/// returns an error when it could not take it.
pub type RemoteSink = Box<dyn FnMut(&[u8]) -> Result<()>>;

/// An operation being recorded, as a backend's commit script may log it.
struct Pending {
    id: u64,
    tool: &'static str,
    op: String,
    target: String,
    started: Instant,
    run_id: Option<String>,
    /// Its success was logged by the commit that made it.
    logged: bool,
    /// Fields the command knew before the commit (the path it edits),
    /// added to the detail of the event the commit writes.
    noted: serde_json::Map<String, Value>,
}

thread_local! {
    static REMOTE: RefCell<Option<RemoteSink>> = const { RefCell::new(None) };
    static UNREACHED: RefCell<Option<Error>> = const { RefCell::new(None) };
    static PENDING: RefCell<Vec<Pending>> = const { RefCell::new(Vec::new()) };
}

/// Sends every later event of this process to `sink` (the Redis stream);
/// an event it cannot take goes to the audit file, and [`take_unreached`]
/// says so.
pub fn set_remote(sink: RemoteSink) {
    REMOTE.with(|r| *r.borrow_mut() = Some(sink));
}

/// The first failure of the remote sink, if an event went to the local
/// file instead (the command then exits 8).
pub fn take_unreached() -> Option<Error> {
    UNREACHED.with(|u| u.borrow_mut().take())
}

/// Adds `key: value` to the detail of the event a backend's commit script
/// writes for the operation being recorded (the innermost [`Recorder`]),
/// as the recorder's own detail would hold it: what `audit missing` traces a
/// state path by. Nothing happens when no commit script logs events (files:
/// the recorder writes the event, with the command's detail).
pub fn note_for_commit(key: &str, value: Value) {
    PENDING.with(|p| {
        if let Some(pending) = p.borrow_mut().last_mut() {
            pending.noted.insert(key.to_string(), value);
        }
    })
}

/// The success event of the operation being recorded (the innermost
/// [`Recorder`]), for a backend that writes it in the same script as the
/// change it describes; that recorder then logs only a failure. `None`
/// when nothing is being recorded.
pub fn commit_event(mut detail: Value) -> Option<Vec<u8>> {
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        let pending = p.last_mut()?;
        pending.logged = true;
        if let Some(d) = detail.as_object_mut() {
            for (k, v) in &pending.noted {
                d.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        let event = event_of(
            pending.tool,
            pending.op.clone(),
            pending.target.clone(),
            pending.started,
            pending.run_id.clone(),
            (0, "ok", detail),
        );
        serde_json::to_vec(&event).ok()
    })
}

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Times one operation and appends its event when done.
pub struct Recorder<'a> {
    cfg: &'a Config,
    tool: &'static str,
    op: String,
    target: String,
    started: Instant,
    id: u64,
}

impl<'a> Recorder<'a> {
    /// Starts timing operation `op` of `tool` on `target`.
    pub fn start(
        cfg: &'a Config,
        tool: &'static str,
        op: impl Into<String>,
        target: impl Into<String>,
    ) -> Self {
        let rec = Recorder {
            cfg,
            tool,
            op: op.into(),
            target: target.into(),
            started: Instant::now(),
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        };
        // Only a backend with its own log (a remote sink) writes events in
        // its commit scripts; on files nothing is registered.
        if REMOTE.with(|r| r.borrow().is_some()) {
            PENDING.with(|p| {
                p.borrow_mut().push(Pending {
                    id: rec.id,
                    tool,
                    op: rec.op.clone(),
                    target: rec.target.clone(),
                    started: rec.started,
                    run_id: cfg.run_id.clone(),
                    logged: false,
                    noted: serde_json::Map::new(),
                })
            });
        }
        rec
    }

    /// Changes the target once it is known (e.g. the id of a new checkpoint).
    pub fn set_target(&mut self, target: impl Into<String>) {
        self.target = target.into();
        let (id, target) = (self.id, self.target.clone());
        PENDING.with(|p| {
            if let Some(e) = p.borrow_mut().iter_mut().find(|e| e.id == id) {
                e.target = target;
            }
        });
    }

    /// Appends the event for a finished operation; `detail` adds fields of the operation's own.
    pub fn finish<T>(self, result: &Result<T, Error>, detail: Value) {
        let (exit_code, outcome, detail) = match result {
            Ok(_) => (0, "ok", detail),
            Err(e) => {
                let mut d = match detail {
                    Value::Object(m) => m,
                    Value::Null => serde_json::Map::new(),
                    other => {
                        let mut m = serde_json::Map::new();
                        m.insert("info".into(), other);
                        m
                    }
                };
                d.insert("error".into(), Value::String(e.summary()));
                (e.code().as_i32(), "error", Value::Object(d))
            }
        };
        self.finish_with(exit_code, outcome, detail);
    }

    /// Appends the event with an explicit exit code and outcome.
    pub fn finish_with(self, exit_code: i32, outcome: &str, detail: Value) {
        // `detail` is always an object in the log (schemas/audit-event.schema.json).
        let detail = match detail {
            Value::Object(_) => detail,
            Value::Null => Value::Object(serde_json::Map::new()),
            other => serde_json::json!({ "info": other }),
        };
        let id = self.id;
        let logged = PENDING.with(|p| {
            let mut p = p.borrow_mut();
            let at = p.iter().position(|e| e.id == id)?;
            Some(p.remove(at).logged)
        });
        if logged == Some(true) && exit_code == 0 {
            // The commit that made the change logged it, in the same script.
            return;
        }
        let event = event_of(
            self.tool,
            self.op,
            self.target,
            self.started,
            self.cfg.run_id.clone(),
            (exit_code, outcome, detail),
        );
        append(self.cfg, &event);
    }
}

fn event_of(
    tool: &str,
    op: String,
    target: String,
    started: Instant,
    run_id: Option<String>,
    (exit_code, outcome, detail): (i32, &str, Value),
) -> Event {
    Event {
        ts: now_rfc3339_micros(),
        tool: tool.to_string(),
        op,
        target,
        pid: std::process::id(),
        ppid: rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32),
        host: hostname(),
        user: user_name(),
        duration_ms: ms(started.elapsed()),
        exit_code,
        outcome: outcome.to_string(),
        detail,
        run_id,
    }
}

/// Appends one event; a failure is a warning on stderr, never an error.
pub fn append(cfg: &Config, event: &Event) {
    let mut line = match serde_json::to_vec(event) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{}: warning: cannot encode audit event: {e}", event.tool);
            return;
        }
    };
    let remote = REMOTE.with(|r| r.borrow_mut().as_mut().map(|send| send(&line)));
    match remote {
        None => {}
        Some(Ok(())) => return,
        Some(Err(e)) => {
            eprintln!(
                "{}: warning: {e}; the audit event goes to {} instead",
                event.tool,
                cfg.audit_log.display()
            );
            UNREACHED.with(|u| {
                u.borrow_mut().get_or_insert(e);
            });
        }
    }
    line.push(b'\n');
    let res = match sink(&cfg.audit_log) {
        Ok(None) => return,
        Ok(Some(path)) if only_looked(event) => {
            match durable::open_kept_append_existing(&path) {
                Ok(Some(f)) => Ok(f),
                // A log rotated away is started anew (see the module docs).
                Ok(None) if rotate::rotated(&cfg.audit_log, 1).exists() => {
                    durable::open_kept_append(&path)
                }
                Ok(None) => return,
                Err(e) => Err(e),
            }
        }
        Ok(Some(path)) => durable::open_kept_append(&path),
        Err(e) => Err(e),
    }
    .and_then(|mut f| {
        // One write(2): O_APPEND makes it atomic with respect to other appenders.
        let n = f
            .write(&line)
            .map_err(|e| Error::io(e, "cannot append", &cfg.audit_log))?;
        if n != line.len() {
            return Err(Error::general(format!(
                "short write ({n} of {} bytes)",
                line.len()
            )));
        }
        Ok(f)
    });
    match res {
        // The size is checked on the fd we wrote to, after the write, so the
        // writer that crosses the limit is the one that rotates.
        Ok(f) => {
            if let Err(e) = rotate::after_append(&cfg.audit_log, &f, rotate::max_bytes()) {
                eprintln!(
                    "{}: warning: cannot rotate audit log {}: {e} (the event was written)",
                    event.tool,
                    cfg.audit_log.display()
                );
            }
        }
        Err(e) => eprintln!(
            "{}: warning: cannot write audit log {}: {e} (the operation itself was not affected)",
            event.tool,
            cfg.audit_log.display()
        ),
    }
}

/// The file events for `log` go to (see the module docs): `log` itself, or
/// the target of a symlink that stays within the log's folder; `None` for
/// `/dev/null`. Exit 6 for a symlink leading elsewhere or a file that is not
/// a regular file.
pub fn sink(log: &Path) -> Result<Option<PathBuf>> {
    match fs::symlink_metadata(log) {
        Ok(m) if m.file_type().is_symlink() => {
            let dir = match log.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            durable::check_not_escaping(log, dir)?;
            let target = fs::canonicalize(log).map_err(|e| Error::io(e, "cannot resolve", log))?;
            Ok(Some(target))
        }
        Ok(m) if is_dev_null(&m) => Ok(None),
        _ => Ok(Some(log.to_path_buf())),
    }
}

fn is_dev_null(m: &fs::Metadata) -> bool {
    m.file_type().is_char_device()
        && rustix::fs::major(m.rdev()) == 1
        && rustix::fs::minor(m.rdev()) == 3
}

/// A duration as a number of milliseconds with microsecond precision: the
/// one way a duration becomes `*_ms` in audit events and reports.
pub fn ms(d: std::time::Duration) -> f64 {
    round_ms(d.as_secs_f64() * 1e3)
}

/// Milliseconds rounded to the microsecond (three decimals), as reports print them.
pub fn round_ms(v: f64) -> f64 {
    (v * 1e3).round() / 1e3
}

/// Milliseconds for people: `0.412`, `12.3`, `1503`; `-` when unknown.
pub fn ms_text(v: Option<f64>) -> String {
    match v {
        None => "-".to_string(),
        Some(v) if v < 10.0 => format!("{v:.3}"),
        Some(v) if v < 1000.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.0}"),
    }
}

/// Now, as RFC 3339 UTC with microseconds.
pub fn now_rfc3339_micros() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// This machine's host name.
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// The user running this process: `$USER`, else `$LOGNAME`, else the uid.
pub fn user_name() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| rustix::process::getuid().as_raw().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn milliseconds_are_numbers_to_the_microsecond_and_text_for_tables() {
        assert_eq!(ms(Duration::from_nanos(1_500_400)), 1.5);
        assert_eq!(ms(Duration::from_nanos(1_500_600)), 1.501);
        assert_eq!(round_ms(0.123_456), 0.123);
        assert_eq!(ms_text(None), "-");
        assert_eq!(ms_text(Some(0.4123)), "0.412");
        assert_eq!(ms_text(Some(12.34)), "12.3");
        assert_eq!(ms_text(Some(1503.4)), "1503");
    }
}
