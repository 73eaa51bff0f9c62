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

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Ctx, checkpoint, restore};
use crate::cmd as cli;
use crate::error::{Error, Result};
use crate::exit::Code;
use crate::state::{document, schema, store};

/// How many recent failures `status` shows.
pub const RECENT_FAILURES: usize = 5;

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

/// `degrade REASON [FEATURES_JSON]`: turns degraded mode on.
pub fn degrade(ctx: &Ctx, reason: &str, features: Option<&str>) -> Result<Code> {
    ctx.audited("degrade", ctx.state_target(), |detail| {
        let features = parse_features(features)?;
        detail["reason"] = json!(reason);
        detail["disabledFeatures"] = json!(features);
        let st = ctx.store()?;
        let owner = ctx.owner_identity()?;
        let txn = st.begin(owner.as_ref())?;
        detail["lock_wait_ms"] = json!(crate::audit::event::ms(txn.waited));
        let old = txn.load()?;
        let mut new = old.clone();
        new["degradedMode"] = json!({
            "enabled": true,
            "reason": reason,
            "timestamp": document::now_rfc3339(),
            "disabledFeatures": features,
        });
        let commit = txn.commit(Some(&old), new, "degrade")?;
        detail["revision"] = json!(commit.revision);
        cli::println(&format!("degraded mode on: {reason}"));
        Ok(Code::Success)
    })
}

/// `recover-mode`: turns degraded mode off (nothing is written when it is off).
pub fn recover_mode(ctx: &Ctx) -> Result<Code> {
    ctx.audited("recover-mode", ctx.state_target(), |detail| {
        let st = ctx.store()?;
        let owner = ctx.owner_identity()?;
        let txn = st.begin(owner.as_ref())?;
        detail["lock_wait_ms"] = json!(crate::audit::event::ms(txn.waited));
        let old = txn.load()?;
        if !is_on(&old) {
            detail["changed"] = json!(false);
            cli::println("degraded mode already off");
            return Ok(Code::Success);
        }
        detail["was_reason"] = old["degradedMode"]["reason"].clone();
        let mut new = old.clone();
        new["degradedMode"] = json!({
            "enabled": false,
            "reason": "",
            "timestamp": "",
            "disabledFeatures": [],
        });
        let commit = txn.commit(Some(&old), new, "recover-mode")?;
        detail["changed"] = json!(true);
        detail["revision"] = json!(commit.revision);
        cli::println("degraded mode off");
        Ok(Code::Success)
    })
}

fn is_on(doc: &Value) -> bool {
    doc.pointer("/degradedMode/enabled") == Some(&json!(true))
}

/// `is-degraded`: 0 when degraded, 1 when not (or when there is no state);
/// 3 when the state does not parse. Prints nothing. Audited as an answer:
/// outcome `ok` and exit 0 in the event either way (design.md §12), the
/// answer in `detail`.
pub fn is_degraded(ctx: &Ctx) -> Result<Code> {
    ctx.audited("is-degraded", ctx.state_target(), |detail| {
        let st = ctx.store()?;
        let on = st.load_opt()?.is_some_and(|doc| is_on(&doc));
        detail["degraded"] = json!(on);
        detail["answer_exit"] = json!(if on { 0 } else { 1 });
        Ok(if on {
            Code::Success
        } else {
            Code::GeneralError
        })
    })
}

/// The fields of an audit event that `status` reports.
#[derive(Debug, Deserialize)]
struct Failure {
    ts: String,
    tool: String,
    op: String,
    #[serde(default)]
    target: String,
    exit_code: i32,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    detail: Value,
}

/// The last `n` failed events of the audit log (oldest first) and how many
/// failures it holds in all.
fn recent_failures(ctx: &Ctx, n: usize) -> (Vec<Failure>, usize) {
    let Ok(file) = crate::durable::open_kept(&ctx.cfg.audit_log) else {
        return (Vec::new(), 0);
    };
    let mut last: VecDeque<Failure> = VecDeque::with_capacity(n + 1);
    let mut total = 0;
    for line in BufReader::new(file).split(b'\n').map_while(|l| l.ok()) {
        // Most events succeeded: skip them without parsing the whole line.
        if line.windows(14).any(|w| w == b"\"outcome\":\"ok\"") {
            continue;
        }
        let Ok(ev) = serde_json::from_slice::<Failure>(&line) else {
            continue;
        };
        if ev.exit_code == 0 && ev.outcome == "ok" {
            continue;
        }
        total += 1;
        last.push_back(ev);
        if last.len() > n {
            last.pop_front();
        }
    }
    (last.into(), total)
}

/// `status [--json]`: degraded mode, checkpoints and recent failures.
pub fn status(ctx: &Ctx, as_json: bool) -> Result<Code> {
    let st = ctx.store()?;
    let bytes = st.load_bytes()?;
    let doc = bytes
        .as_ref()
        .and_then(|b| store::parse_state(b, st.path()).ok());
    let condition = match (&bytes, &doc) {
        (None, _) => "missing",
        (Some(_), None) => "corrupt",
        (_, Some(d)) if !schema::violations(d).is_empty() => "invalid",
        _ => "valid",
    };
    let get = |p: &str| {
        doc.as_ref()
            .and_then(|d| d.pointer(p))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let checkpoints = checkpoint::list(&ctx.cfg)?;
    let latest = checkpoints.first().map(|c| {
        json!({
            "id": c.id,
            "phase": c.meta.as_ref().map(|m| m.phase.clone()),
            "valid": checkpoint::verify(c).is_ok(),
        })
    });
    let (failures, total) = recent_failures(ctx, RECENT_FAILURES);
    let report = json!({
        "state": {
            "path": st.path().display().to_string(),
            "condition": condition,
            "phase": get("/phase"),
            "revision": get("/metadata/revision"),
        },
        "degradedMode": {
            "enabled": get("/degradedMode/enabled").as_bool().unwrap_or(false),
            "reason": get("/degradedMode/reason"),
            "timestamp": get("/degradedMode/timestamp"),
            "disabledFeatures": get("/degradedMode/disabledFeatures"),
        },
        "checkpoints": { "count": checkpoints.len(), "latest": latest },
        "interruptedRestore": restore::interrupted(&ctx.cfg),
        "auditLog": ctx.cfg.audit_log.display().to_string(),
        "failures": total,
        "recentFailures": failures.iter().map(|f| json!({
            "ts": f.ts, "tool": f.tool, "op": f.op, "target": f.target,
            "exit_code": f.exit_code,
            "error": f.detail.get("error").cloned().unwrap_or(Value::Null),
        })).collect::<Vec<_>>(),
    });
    if as_json {
        cli::print_json(&report);
        return Ok(Code::Success);
    }
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    let dm = &report["degradedMode"];
    let degraded = if dm["enabled"] == json!(true) {
        let features: Vec<String> = dm["disabledFeatures"]
            .as_array()
            .map(|a| a.iter().map(&s).collect())
            .unwrap_or_default();
        format!(
            "ON since {} ({}){}",
            s(&dm["timestamp"]),
            s(&dm["reason"]),
            if features.is_empty() {
                String::new()
            } else {
                format!("; disabled: {}", features.join(", "))
            }
        )
    } else {
        "off".into()
    };
    let cps = match checkpoints.first() {
        None => "none".to_string(),
        Some(c) => format!(
            "{} (latest {}{})",
            checkpoints.len(),
            c.id,
            if report["checkpoints"]["latest"]["valid"] == json!(true) {
                ""
            } else {
                ", FAILS VERIFICATION"
            }
        ),
    };
    let mut out = format!(
        "state:          {} ({condition}, phase {}, revision {})\ndegraded mode:  {degraded}\ncheckpoints:    {cps}\n",
        st.path().display(),
        s(&get("/phase")),
        s(&get("/metadata/revision")),
    );
    if let Some(id) = restore::interrupted(&ctx.cfg) {
        out.push_str(&format!(
            "restore:        interrupted restore of {id} (the next restore, checkpoint or cleanup finishes it)\n"
        ));
    }
    if failures.is_empty() {
        out.push_str("failures:       none in the audit log\n");
    } else {
        out.push_str(&format!(
            "failures:       {total} in the audit log; the last {}:\n",
            failures.len()
        ));
        for f in &failures {
            let err = f
                .detail
                .get("error")
                .and_then(Value::as_str)
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            out.push_str(&format!(
                "  {}  {} {} {}  exit {}{err}\n",
                f.ts, f.tool, f.op, f.target, f.exit_code
            ));
        }
    }
    cli::print(&out);
    Ok(Code::Success)
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
}
