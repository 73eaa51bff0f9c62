//! `degrade`, `recover-mode`, `is-degraded`, `status`.

use serde::Serialize;
use serde_json::json;

use crate::cmd::{self as cli, Ctx, Paint};
use crate::error::Result;
use crate::exit::Code;
use crate::recovery::degraded::{self, DegradedMode, Failure, StateSummary};

/// How many recent failures `status` shows.
pub const RECENT_FAILURES: usize = 5;

/// `degrade REASON [FEATURES_JSON]`: turns degraded mode on.
pub fn degrade(ctx: &Ctx, reason: &str, features: Option<&str>) -> Result<Code> {
    ctx.audited("degrade", ctx.state_target(), |detail| {
        detail["reason"] = json!(reason);
        let owner = ctx.owner_identity()?;
        let done = degraded::degrade(
            ctx.backend.state(),
            ctx.access(owner.as_ref()),
            reason,
            features,
        );
        if let Ok(d) = &done {
            detail["disabled_features"] = json!(d.features);
            detail["lock_wait_ms"] = json!(d.lock_wait_ms);
            detail["revision"] = json!(d.revision);
        }
        let done = done?;
        if ctx.output.json {
            ctx.print_json(&done);
        } else {
            cli::println(&format!("degraded mode on: {reason}"));
        }
        Ok(Code::Success)
    })
}

/// `recover-mode`: turns degraded mode off (nothing is written when it is off).
pub fn recover_mode(ctx: &Ctx) -> Result<Code> {
    ctx.audited("recover-mode", ctx.state_target(), |detail| {
        let owner = ctx.owner_identity()?;
        let done = degraded::recover_mode(ctx.backend.state(), ctx.access(owner.as_ref()))?;
        detail["lock_wait_ms"] = json!(done.lock_wait_ms);
        detail["changed"] = json!(done.changed);
        if done.changed {
            detail["was_reason"] = json!(done.reason.clone().unwrap_or_default());
            detail["revision"] = json!(done.revision);
        }
        if ctx.output.json {
            ctx.print_json(&done);
        } else if done.changed {
            cli::println("degraded mode off");
        } else {
            cli::println("degraded mode already off");
        }
        Ok(Code::Success)
    })
}

/// `is-degraded`: 0 when degraded, 1 when not (or when there is no state);
/// 3 when the state does not parse. Prints nothing. Audited as an answer:
/// outcome `ok` and exit 0 in the event either way, the answer in `detail`.
pub fn is_degraded(ctx: &Ctx) -> Result<Code> {
    ctx.audited("is-degraded", ctx.state_target(), |detail| {
        let answer = degraded::is_degraded(ctx.backend.state())?;
        detail["degraded"] = json!(answer == degraded::Degraded::Yes);
        detail["answer_exit"] = json!(answer.code().as_i32());
        if ctx.output.json {
            ctx.output
                .json(&json!({"degraded": answer == degraded::Degraded::Yes}));
        }
        Ok(answer.code())
    })
}

/// The latest checkpoint, as `status` shows it.
#[derive(Debug, Serialize)]
struct Latest {
    id: String,
    phase: Option<String>,
    valid: bool,
}

#[derive(Debug, Serialize)]
struct Checkpoints {
    count: usize,
    latest: Option<Latest>,
}

/// The `status` report.
#[derive(Debug, Serialize)]
struct Status {
    state: StateSummary,
    degraded_mode: DegradedMode,
    checkpoints: Checkpoints,
    /// The checkpoint of an interrupted restore.
    interrupted_restore: Option<String>,
    audit_log: String,
    /// Failed events in the audit log, in all.
    failure_count: usize,
    /// The last few, oldest first.
    recent_failures: Vec<Failure>,
}

/// `status [--json]`: degraded mode, checkpoints and recent failures.
pub fn status(ctx: &Ctx) -> Result<Code> {
    let state = degraded::state_summary(ctx.backend.state(), ctx.state_target())?;
    let store = ctx.backend.checkpoints();
    let all = store.list()?;
    let latest = all.first().map(|c| Latest {
        id: c.id.clone(),
        phase: c.meta.as_ref().map(|m| m.phase.clone()),
        valid: store.verify(c).is_ok(),
    });
    let (recent_failures, failure_count) = match ctx.backend.kind() {
        // The file's own reader skips successful events without parsing them.
        "file" => degraded::recent_failures(&ctx.cfg, RECENT_FAILURES),
        _ => degraded::recent_failures_in(ctx.backend.audit(), RECENT_FAILURES)?,
    };
    let report = Status {
        degraded_mode: state.degraded_mode.clone(),
        state,
        checkpoints: Checkpoints {
            count: all.len(),
            latest,
        },
        interrupted_restore: store.interrupted_restore(),
        audit_log: match ctx.backend.kind() {
            "file" => ctx.cfg.audit_log.display().to_string(),
            _ => format!("{} audit stream", ctx.backend.location()),
        },
        failure_count,
        recent_failures,
    };
    if ctx.output.json {
        ctx.print_json(&report);
    } else {
        cli::print(&status_text(ctx, &report));
    }
    Ok(Code::Success)
}

fn status_text(ctx: &Ctx, r: &Status) -> String {
    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let dm = &r.degraded_mode;
    let degraded = if dm.enabled {
        format!(
            "{} since {} ({}){}",
            ctx.output.paint("ON", Paint::Warn),
            dash(dm.since.clone()),
            dash(dm.reason.clone()),
            if dm.features.is_empty() {
                String::new()
            } else {
                format!("; disabled: {}", dm.features.join(", "))
            }
        )
    } else {
        "off".into()
    };
    let cps = match &r.checkpoints.latest {
        None => "none".to_string(),
        Some(l) => format!(
            "{} (latest {}{})",
            r.checkpoints.count,
            l.id,
            if l.valid {
                String::new()
            } else {
                format!(", {}", ctx.output.paint("FAILS VERIFICATION", Paint::Bad))
            }
        ),
    };
    let mut out = format!(
        "state:          {} ({}, phase {}, revision {})\ndegraded mode:  {degraded}\ncheckpoints:    {cps}\n",
        r.state.path.display(),
        r.state.condition,
        dash(r.state.phase.clone()),
        dash(r.state.revision.map(|n| n.to_string())),
    );
    if let Some(id) = &r.interrupted_restore {
        out.push_str(&format!(
            "restore:        interrupted restore of {id} (the next restore, checkpoint or cleanup finishes it)\n"
        ));
    }
    if r.recent_failures.is_empty() {
        out.push_str("failures:       none in the audit log\n");
    } else {
        out.push_str(&format!(
            "failures:       {} in the audit log; the last {}:\n",
            r.failure_count,
            r.recent_failures.len()
        ));
        for f in &r.recent_failures {
            let err = f
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            out.push_str(&format!(
                "  {}  {} {} {}  exit {}{err}\n",
                f.ts, f.tool, f.op, f.target, f.exit_code
            ));
        }
    }
    out
}
