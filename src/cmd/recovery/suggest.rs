//! `suggest` and `handle`: what an exit code means, and the automatic
//! strategy of `handle --apply` ([`crate::recovery::suggest`] has the table
//! and runs the strategies). Every line a strategy says is collected, then
//! printed as text or, with `--json`, as one object.

use serde_json::{Value, json};

use super::TOOL;
use crate::audit::Recorder;
use crate::cmd::{self as cli, Ctx};
use crate::error::Result;
use crate::exit::Code;
use crate::recovery::suggest::{self, Caller, parse_code, strategy, suggestion};

fn suggestion_text(code: Code) -> String {
    let (what, steps) = suggestion(code);
    let mut out = format!("exit {} {}: {what}\n", code.as_i32(), code.name());
    if !steps.is_empty() {
        out.push_str("try:\n");
        for s in steps {
            out.push_str(&format!("  {s}\n"));
        }
    }
    match strategy(code) {
        Some(s) => out.push_str(&format!(
            "automatic: 'error-recovery handle {} --apply' will {s}\n",
            code.as_i32()
        )),
        None if code != Code::Success => out.push_str("automatic: none for this code\n"),
        None => {}
    }
    out
}

/// What `suggest` prints, as one JSON object.
fn suggestion_json(code: Code) -> Value {
    let (what, steps) = suggestion(code);
    json!({
        "code": code.as_i32(),
        "name": code.name(),
        "meaning": what,
        "steps": steps,
        "automatic": strategy(code),
    })
}

/// `suggest CODE`: prints what the code means and what to run.
pub fn suggest(ctx: &Ctx, code: &str) -> Result<Code> {
    ctx.audited("suggest", code.trim(), |detail| {
        let code = parse_code(code)?;
        detail["code"] = json!(code.as_i32());
        if ctx.output.json {
            ctx.output.json(&suggestion_json(code));
        } else {
            cli::print(&suggestion_text(code));
        }
        Ok(Code::Success)
    })
}

/// `handle CODE [MESSAGE] [--apply]`: prints the suggestion; with `--apply`
/// runs the strategy. Exit 0 when recovery succeeded (or CODE is 0), else CODE.
pub fn handle(ctx: &Ctx, code: &str, message: Option<&str>, apply: bool) -> Result<Code> {
    let rec = Recorder::start(&ctx.cfg, TOOL, "handle", code.trim());
    let mut detail = json!({});
    let mut said = Said::default();
    let result = handle_inner(ctx, code, message, apply, &mut detail, &mut said);
    match &result {
        // Not recovered is this command's exit CODE, and so the event's.
        Ok(c) if *c != Code::Success => rec.finish_with(c.as_i32(), "error", detail.clone()),
        _ => rec.finish(&result, detail.clone()),
    }
    let exit = result?;
    if ctx.output.json {
        let mut out = json!({
            "code": detail["code"],
            "applied": apply,
            "recovered": detail.get("recovered").cloned().unwrap_or(json!(false)),
            "exit_code": exit.as_i32(),
            "messages": said.lines,
        });
        if let Some(s) = said.suggestion {
            out["suggestion"] = suggestion_json(s);
        }
        ctx.output.json(&out);
    } else {
        let mut text = String::new();
        if let Some(s) = said.suggestion {
            text.push_str(&suggestion_text(s));
        }
        for l in &said.lines {
            text.push_str(l);
            text.push('\n');
        }
        if !text.is_empty() {
            cli::print(&text);
        }
    }
    Ok(exit)
}

/// What `handle` says: the suggestion it shows, the lines its strategy says.
#[derive(Default)]
struct Said {
    suggestion: Option<Code>,
    lines: Vec<String>,
}

fn handle_inner(
    ctx: &Ctx,
    code: &str,
    message: Option<&str>,
    apply: bool,
    detail: &mut Value,
    said: &mut Said,
) -> Result<Code> {
    let code = parse_code(code)?;
    detail["code"] = json!(code.as_i32());
    detail["applied"] = json!(apply);
    if let Some(m) = message {
        detail["message"] = json!(m);
        eprintln!("{TOOL}: handling exit {}: {m}", code.as_i32());
    }
    if code == Code::Success {
        said.lines.push("exit 0: nothing to recover".into());
        return Ok(Code::Success);
    }
    if !apply || strategy(code).is_none() {
        said.suggestion = Some(code);
        detail["recovered"] = json!(false);
        return Ok(code);
    }
    if code != Code::LockTimeout {
        // The strategies for 3, 4 and 7 repair files (locks are on this
        // host on every backend).
        ctx.file_only()?;
    }
    let caller = Caller {
        cfg: &ctx.cfg,
        retention: ctx.retention,
        owner: ctx.owner,
    };
    let outcome = suggest::apply(&caller, code, detail, &mut said.lines);
    let recovered = match outcome {
        Ok(done) => done,
        Err(e) => {
            eprintln!("{TOOL}: {e}");
            detail["error"] = json!(e.summary());
            false
        }
    };
    detail["recovered"] = json!(recovered);
    if recovered {
        Ok(Code::Success)
    } else {
        Ok(code)
    }
}
