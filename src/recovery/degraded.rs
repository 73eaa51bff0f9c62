//! Degraded mode and the `status` report.
//!
//! Degraded mode is the state's `degradedMode` object `{enabled, reason,
//! timestamp, disabledFeatures}`; `degrade` and `recover-mode` change it as
//! one read-modify-write under the `state` lock (validated, backed up, next
//! revision), so they never lose a concurrent update. `is-degraded` only
//! reads, for `if error-recovery is-degraded; then …` in scripts.
//!
//! `status` reports degraded mode, checkpoints and the most recent failures
//! in the audit log. The log is read line by line (streaming, any size);
//! lines that do not parse are skipped, since the log is a record, not
//! state this tool relies on.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::checkpoint;
use crate::audit::scan::Events;
use crate::backend::{Access, StateStore};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::exit::Code;
use crate::state::{document, schema};

/// Parses FEATURES_JSON: a JSON array of strings (exit 4 otherwise).
pub fn parse_features(text: Option<&str>) -> Result<Vec<String>> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    let hint = "pass a JSON array of strings, e.g. '[\"notifications\", \"sync\"]'";
    let value = crate::state::commands::parse_json_arg(text, "FEATURES_JSON")
        .map_err(|e| checkpoint::json_hint(e, hint))?;
    serde_json::from_value(value)
        .map_err(|_| Error::validation("FEATURES_JSON is not an array of strings").hint(hint))
}

/// The degraded-mode object of every report: the state document's.
pub use crate::state::document::DegradedMode;

/// What `degrade` or `recover-mode` did.
#[derive(Clone, Debug, Serialize)]
pub struct Switched {
    /// Degraded mode is on now.
    pub enabled: bool,
    /// Whether the state was written (`recover-mode` when already off: no).
    pub changed: bool,
    /// The reason given (`degrade`) or the one it had (`recover-mode`).
    pub reason: Option<String>,
    pub features: Vec<String>,
    /// The state's revision after the change.
    pub revision: Option<u64>,
    /// How long the `state` lock took (ms).
    #[serde(skip)]
    pub lock_wait_ms: f64,
}

/// `degrade REASON [FEATURES_JSON]`: turns degraded mode on, one commit
/// under the `state` lock taken for `owner`.
pub fn degrade(
    state: &dyn StateStore,
    access: Access<'_>,
    reason: &str,
    features: Option<&str>,
) -> Result<Switched> {
    let features = parse_features(features)?;
    let mut lock_wait_ms = 0.0;
    let commit = state.update(
        access,
        "degrade",
        &mut |doc| {
            doc["degradedMode"] = json!({
                "enabled": true,
                "reason": reason,
                "timestamp": document::now_rfc3339(),
                "disabledFeatures": features,
            });
            Ok(())
        },
        &mut |w| lock_wait_ms = crate::audit::event::ms(w),
    )?;
    Ok(Switched {
        enabled: true,
        changed: true,
        // An empty reason is no reason, as DegradedMode reads it back.
        reason: Some(reason.to_string()).filter(|r| !r.is_empty()),
        features,
        revision: Some(commit.revision),
        lock_wait_ms,
    })
}

/// Turns degraded mode off, as one transaction (nothing is written when it
/// is off already).
pub fn recover_mode(state: &dyn StateStore, access: Access<'_>) -> Result<Switched> {
    let mut done = Switched {
        enabled: false,
        changed: false,
        reason: None,
        features: Vec::new(),
        revision: None,
        lock_wait_ms: 0.0,
    };
    let commit = state.transact(
        access,
        "recover-mode",
        &mut |old| {
            let old = old.ok_or_else(|| state.missing())?;
            let was = DegradedMode::of(Some(old));
            done.reason = was.reason;
            done.revision = Some(document::revision(old));
            if !was.enabled {
                return Ok(None);
            }
            let mut new = old.clone();
            new["degradedMode"] = json!({
                "enabled": false,
                "reason": "",
                "timestamp": "",
                "disabledFeatures": [],
            });
            Ok(Some(new))
        },
        &mut |w| done.lock_wait_ms = crate::audit::event::ms(w),
    )?;
    if let Some(c) = commit {
        done.changed = true;
        done.revision = Some(c.revision);
    }
    Ok(done)
}

/// The answer of `is-degraded`: its exit code is the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Degraded {
    /// Degraded mode is on: exit 0.
    Yes,
    /// It is off, or there is no state: exit 1.
    No,
}

impl Degraded {
    /// The documented exit code: 0 degraded, 1 not.
    pub fn code(self) -> Code {
        match self {
            Degraded::Yes => Code::Success,
            Degraded::No => Code::GeneralError,
        }
    }
}

/// `is-degraded`: whether degraded mode is on (no state: not); exit 3 when
/// the state does not parse.
pub fn is_degraded(state: &dyn StateStore) -> Result<Degraded> {
    let on = match state.load_bytes()? {
        Some(bytes) => DegradedMode::of(Some(&state.parse(&bytes)?)).enabled,
        None => false,
    };
    Ok(if on { Degraded::Yes } else { Degraded::No })
}

/// One failed event of the audit log, as `status` reports it.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Failure {
    pub ts: String,
    pub tool: String,
    pub op: String,
    #[serde(default)]
    pub target: String,
    pub exit_code: i32,
    #[serde(default, skip_serializing)]
    pub outcome: String,
    /// The event's error message, if it has one.
    #[serde(default, skip_serializing)]
    pub detail: Value,
    #[serde(default, skip_deserializing)]
    pub error: Option<String>,
}

/// The last `n` failed events of the audit log (oldest first) and how many
/// failures it holds in all.
pub fn recent_failures(cfg: &Config, n: usize) -> (Vec<Failure>, usize) {
    let Ok(file) = crate::durable::open_kept(&cfg.audit_log) else {
        return (Vec::new(), 0);
    };
    let mut tally = Failures::new(n);
    for line in BufReader::new(file).split(b'\n').map_while(|l| l.ok()) {
        tally.add(&line);
    }
    tally.done()
}

/// [`recent_failures`] of any backend's audit log.
pub fn recent_failures_in(events: &dyn Events, n: usize) -> Result<(Vec<Failure>, usize)> {
    let mut tally = Failures::new(n);
    events.scan_events(&mut |l| tally.add(l.raw))?;
    Ok(tally.done())
}

/// The last `n` failures seen, and how many there were.
struct Failures {
    n: usize,
    last: VecDeque<Failure>,
    total: usize,
}

impl Failures {
    fn new(n: usize) -> Failures {
        Failures {
            n,
            last: VecDeque::with_capacity(n + 1),
            total: 0,
        }
    }

    fn add(&mut self, line: &[u8]) {
        // Most events succeeded: skip them without parsing the whole line.
        if line.windows(14).any(|w| w == b"\"outcome\":\"ok\"") {
            return;
        }
        let Ok(mut ev) = serde_json::from_slice::<Failure>(line) else {
            return;
        };
        if ev.exit_code == 0 && ev.outcome == "ok" {
            return;
        }
        ev.error = ev
            .detail
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_owned);
        self.total += 1;
        self.last.push_back(ev);
        if self.last.len() > self.n {
            self.last.pop_front();
        }
    }

    fn done(self) -> (Vec<Failure>, usize) {
        (self.last.into(), self.total)
    }
}

/// The state as `status` reports it.
#[derive(Clone, Debug, Serialize)]
pub struct StateSummary {
    pub path: PathBuf,
    /// `missing`, `corrupt`, `invalid` (breaks the schema) or `valid`.
    pub condition: &'static str,
    pub phase: Option<String>,
    pub revision: Option<u64>,
    #[serde(skip)]
    pub degraded_mode: DegradedMode,
}

/// The state file's condition, phase, revision and degraded mode.
pub fn state_summary(state: &dyn StateStore, location: String) -> Result<StateSummary> {
    let bytes = match state.load_bytes() {
        Ok(b) => b,
        // Bytes that fail their checksum: corrupt, which is the answer.
        Err(e) if e.code() == Code::StateCorruption => Some(Vec::new()),
        Err(e) => return Err(e),
    };
    let doc = bytes
        .as_ref()
        .and_then(|b| serde_json::from_slice::<Value>(b).ok());
    let condition = match (&bytes, &doc) {
        (None, _) => "missing",
        (Some(_), None) => "corrupt",
        (_, Some(d)) if !schema::violations(d).is_empty() => "invalid",
        _ => "valid",
    };
    let get = |p: &str| doc.as_ref().and_then(|d| d.pointer(p));
    Ok(StateSummary {
        path: location.into(),
        condition,
        // A phase that is not a string (the schema would say so) is shown as it is.
        phase: get("/phase").filter(|v| !v.is_null()).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }),
        revision: get("/metadata/revision").and_then(Value::as_u64),
        degraded_mode: DegradedMode::of(doc.as_ref()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_an_array_of_strings() {
        assert_eq!(parse_features(None).unwrap(), Vec::<String>::new());
        assert_eq!(
            parse_features(Some(r#"["a","b"]"#)).unwrap(),
            vec!["a".to_string(), "b".to_string()]
        );
        for bad in ["[1]", "{}", "nope", "\"a\""] {
            assert_eq!(
                parse_features(Some(bad)).unwrap_err().code(),
                Code::ValidationFailed,
                "{bad}"
            );
        }
    }

    #[test]
    fn the_answer_is_the_documented_exit_code() {
        assert_eq!(Degraded::Yes.code(), Code::Success);
        assert_eq!(Degraded::No.code(), Code::GeneralError);
    }

    #[test]
    fn degraded_mode_reads_the_state_with_snake_case_keys() {
        assert_eq!(DegradedMode::of(None), DegradedMode::default());
        let doc = json!({"degradedMode": {"enabled": true, "reason": "r",
            "timestamp": "2026-01-01T00:00:00Z", "disabledFeatures": ["a"]}});
        let dm = DegradedMode::of(Some(&doc));
        assert_eq!(
            serde_json::to_value(&dm).unwrap(),
            json!({"enabled": true, "reason": "r", "since": "2026-01-01T00:00:00Z", "features": ["a"]})
        );
    }
}
