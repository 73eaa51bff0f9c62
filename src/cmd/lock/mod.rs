//! The `lock-manager` subcommands (all but `run`): one function each, over
//! the context's lock registry, printing the typed result as text or JSON
//! and returning the exit code, with one audit event per operation
//! (`acquire`, `takeover`, `release`, `check`, `list`, `clean`, `status`).

pub mod render;

use serde_json::{Value, json};

use crate::audit::Recorder;
use crate::cmd::{self as cli, Ctx};
use crate::error::Result;
use crate::exit::Code;
use crate::lock::commands::{self, AcquireArgs};
use crate::lock::manager::{self, Acquired, Attend, Check, Entry, Progress, Request, WaitLog};
use crate::lock::{name, process};

/// `acquire NAME [TIMEOUT] [TYPE] [METADATA]`: 0 held, 2 timed out, 3 corrupt
/// record, 4 bad name/metadata/type or hierarchy violation. Prints nothing
/// unless `--verbose` or `--json`.
pub fn acquire(ctx: &Ctx, a: &AcquireArgs, verbose: bool) -> Result<Code> {
    let locks = ctx.backend.locks();
    let attend = Attend {
        signals: true,
        progress: Progress::choose(verbose),
    };
    let (result, log, req) = commands::audited_acquire(
        &ctx.cfg,
        &a.name,
        attend,
        || {
            let req = commands::request(&ctx.cfg, locks, a)?;
            if let Some(note) = commands::owner_note(a, &req.owner) {
                commands::say(&format!("warning: {note}"));
            }
            Ok(req)
        },
        |req, log| locks.acquire(req, log),
    );
    let got = result?;
    if ctx.output.json || verbose {
        let req = req.expect("a granted request");
        if ctx.output.json {
            ctx.output.json(&acquired_json(&got, &req, &log));
        } else {
            cli::print(&verbose_text(&got, &req, &log));
        }
    }
    Ok(Code::Success)
}

/// Ends this process by `sig`, as a program stopped by Ctrl-C should (a
/// calling shell or make then stops too, and reads 128+N); the exit code
/// 128+N if the signal does not end it (it is blocked by the caller).
pub fn end_by_signal(sig: i32) -> std::process::ExitCode {
    // SAFETY: restores the default action of a signal and raises it; no
    // handler of ours runs.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
    std::process::ExitCode::from((128 + sig) as u8)
}

/// `acquire --json`: the record as stored, with the wait and who held it meanwhile.
fn acquired_json(got: &Acquired, req: &Request, log: &WaitLog) -> Value {
    let mut v = serde_json::to_value(&got.record).expect("a record always serializes");
    v["owner_pid"] = json!(req.owner.pid);
    v["wait_ms"] = json!(log.wait_ms());
    v["holders_while_waiting"] = json!(log.holders);
    v["already_held"] = json!(got.already_held);
    v["upgraded"] = json!(got.upgraded);
    if let Some((token, epoch)) = &got.fencing {
        v["fencing_token"] = json!(token);
        v["fencing_epoch"] = json!(epoch);
    }
    v["takeovers"] = got
        .takeovers
        .iter()
        .map(|t| json!({"stale_pid": t.stale_pid, "reason": t.reason}))
        .collect();
    v
}

/// The human form of `acquire --verbose`.
fn verbose_text(got: &Acquired, req: &Request, log: &WaitLog) -> String {
    let rec = &got.record;
    let how = if got.upgraded {
        "upgraded to exclusive"
    } else if got.already_held {
        "already held"
    } else {
        "acquired"
    };
    let mut out = format!(
        "lock '{}' {how}: {} for pid {} after {:.1} ms\n",
        rec.name,
        rec.kind.as_str(),
        req.owner.pid,
        log.wait_ms()
    );
    if !log.holders.is_empty() {
        let pids: Vec<String> = log.holders.iter().map(u32::to_string).collect();
        out.push_str(&format!("  waited for: pid {}\n", pids.join(", ")));
    }
    for t in &got.takeovers {
        out.push_str(&format!(
            "  took over from stale pid {} ({})\n",
            t.stale_pid, t.reason
        ));
    }
    for h in &rec.holders {
        out.push_str(&format!("  holder: pid {} since {}", h.id.pid, h.acquired));
        if let Some(ttl) = h.ttl {
            out.push_str(&format!(", ttl {ttl}s"));
        }
        if let Some(m) = &h.metadata {
            out.push_str(&format!(", metadata {m}"));
        }
        out.push('\n');
    }
    out
}

/// `release NAME [--force [--holder ID]]`: 0 released (or not held), 6
/// held by another owner. Prints nothing unless `--json`.
pub fn release(ctx: &Ctx, name: &str, force: bool, holder: Option<&str>) -> Result<Code> {
    let rec = Recorder::start(&ctx.cfg, ctx.tool, "release", name);
    let (owner, result) = match name::validate(name)
        .and_then(|()| commands::owner_for(ctx.backend.locks(), name, ctx.owner))
    {
        Ok(o) => {
            let result = ctx.backend.locks().release_holder(name, &o, force, holder);
            (Some(o), result)
        }
        Err(e) => (None, Err(e)),
    };
    let mut detail = json!({
        "owner_pid": owner.as_ref().map(|o| o.pid),
        "forced": force,
    });
    if let Some(h) = holder {
        detail["holder"] = json!(h);
    }
    if let Ok(r) = &result {
        detail["held"] = json!(r.held);
        if force {
            detail["forced_pids"] = json!(r.forced_pids);
        }
    }
    rec.finish(&result, detail.clone());
    result?;
    if ctx.output.json {
        // `held` is a count in `status`: here it is whether it was held.
        let was_held = detail.as_object_mut().and_then(|d| d.remove("held"));
        detail["was_held"] = was_held.unwrap_or(json!(false));
        detail["name"] = json!(name);
        detail["forced_pids"] = detail.get("forced_pids").cloned().unwrap_or(json!([]));
        ctx.output.json(&detail);
    }
    Ok(Code::Success)
}

/// The one-line text answer of `check`: `locked:TYPE:PID`, `unlocked` or `stale`.
pub fn check_line(answer: &Check) -> String {
    match answer {
        Check::Locked { kind, pid } => format!("locked:{}:{pid}", kind.as_str()),
        other => other.status().to_string(),
    }
}

/// `check NAME`: prints `locked:TYPE:PID` (0), `unlocked` (1) or `stale` (2);
/// a record that does not parse is exit 3.
pub fn check(ctx: &Ctx, name: &str) -> Result<Code> {
    let rec = Recorder::start(&ctx.cfg, ctx.tool, "check", name);
    let answer = match ctx.backend.locks().check(name) {
        Ok(a) => a,
        Err(e) => {
            let result: Result<()> = Err(e);
            rec.finish(&result, json!({}));
            return result.map(|()| Code::Success);
        }
    };
    let line = check_line(&answer);
    let code = answer.code();
    // An answer, not a failure: the event says 0 whatever the answer, which
    // `answer_exit` keeps, so audit failure counts stay true.
    rec.finish_with(
        0,
        "ok",
        json!({ "state": line, "answer_exit": code.as_i32() }),
    );
    let note = match answer {
        Check::Locked { .. } if leased(ctx) => None,
        Check::Locked { .. } => ctx
            .backend
            .locks()
            .read(name)
            .ok()
            .flatten()
            .and_then(|r| manager::unverified_note(&r)),
        _ => None,
    };
    if ctx.output.json {
        let (kind, pid) = match answer {
            Check::Locked { kind, pid } => (Some(kind.as_str()), Some(pid)),
            _ => (None, None),
        };
        ctx.output.json(&json!({
            "name": name,
            "status": answer.status(),
            "type": kind,
            "pid": pid,
            "exit_code": code.as_i32(),
            "note": note,
        }));
    } else {
        cli::println(&line);
    }
    if let Some(note) = note {
        eprintln!("{}: note: {note}", ctx.tool);
    }
    Ok(code)
}

/// `list [table|json] [--json|--jsonl]`: every lock record, one table row
/// per holder, or one JSON array (one object per line with `--jsonl`).
pub fn list(ctx: &Ctx) -> Result<Code> {
    let rec = Recorder::start(&ctx.cfg, ctx.tool, "list", "*");
    process::snapshot(|| {
        if ctx.output.json {
            // One record at a time: memory stays flat in the number of records.
            let mut stream = render::JsonStream::new(&ctx.output);
            let mut corrupt = Vec::new();
            let result = ctx.backend.locks().each(&mut |e| {
                stream.push(&render::ListItem::of(&e, leased(ctx)));
                if let Err(err) = e.record {
                    corrupt.push(err);
                }
            });
            rec.finish(
                &result,
                json!({ "count": result.as_ref().map_or(0, |n| *n) }),
            );
            result?;
            stream.finish();
            for err in corrupt {
                eprintln!("{}: warning: {err}", ctx.tool);
            }
            return Ok(Code::Success);
        }
        let result = ctx.backend.locks().list();
        rec.finish(
            &result,
            json!({ "count": result.as_ref().map_or(0, Vec::len) }),
        );
        let entries = result?;
        cli::print(&render::table(&entries, &ctx.output, leased(ctx)));
        warn_corrupt(ctx, &entries);
        Ok(Code::Success)
    })
}

/// Whether the registry's holds are leases (Redis): a holder of another
/// host is then alive while its lease runs, and is not "unverifiable".
fn leased(ctx: &Ctx) -> bool {
    ctx.backend.locks().leased()
}

/// One warning line per record that does not parse.
fn warn_corrupt(ctx: &Ctx, entries: &[Entry]) {
    for e in entries {
        if let Err(err) = &e.record {
            eprintln!("{}: warning: {err}", ctx.tool);
        }
    }
}

/// `clean [--force] [--json]`: removes stale records (with `--force`, also
/// records that do not parse) and prints how many.
pub fn clean(ctx: &Ctx, force: bool) -> Result<Code> {
    let rec = Recorder::start(&ctx.cfg, ctx.tool, "clean", "*");
    let result = ctx.backend.locks().clean(force);
    // The audit event keeps its count and names; the report, one field one type.
    let detail = match &result {
        Ok(c) => json!({
            "removed": c.removed.len(),
            "names": c.removed,
            "pruned": c.pruned,
            "corrupt_kept": c.corrupt,
            "forced": force,
        }),
        Err(_) => json!({ "forced": force }),
    };
    rec.finish(&result, detail);
    let cleaned = result?;
    if ctx.output.json {
        ctx.output.json(&json!({
            "removed": cleaned.removed,
            "removed_count": cleaned.removed.len(),
            "pruned": cleaned.pruned,
            "corrupt_kept": cleaned.corrupt,
            "forced": force,
        }));
    } else {
        let n = cleaned.removed.len();
        cli::println(&format!(
            "removed {n} stale lock record{}",
            if n == 1 { "" } else { "s" }
        ));
    }
    for name in &cleaned.corrupt {
        eprintln!(
            "{}: warning: kept lock record '{name}', which does not parse — inspect it, then run 'lock-manager clean --force'",
            ctx.tool
        );
    }
    Ok(Code::Success)
}

/// `status [--json]`: locks held and by whom, waiting requests, stale and
/// corrupt records.
pub fn status(ctx: &Ctx) -> Result<Code> {
    let rec = Recorder::start(&ctx.cfg, ctx.tool, "status", "*");
    process::snapshot(|| {
        let result = ctx.backend.locks().status();
        let counts = result.as_ref().map(|s| s.counts).unwrap_or_default();
        rec.finish(
            &result,
            json!({"held": counts.held, "stale": counts.stale, "waiting": counts.waiting, "corrupt": counts.corrupt}),
        );
        let status = result?;
        if ctx.output.json {
            ctx.output.json(&render::status_json(&status, leased(ctx)));
        } else {
            cli::print(&render::status_text(&status, &ctx.output, leased(ctx)));
        }
        Ok(Code::Success)
    })
}

/// The hidden `keeper HOLDER`: keeps the leases of one owner on Redis
/// (src/backend/redis/keeper.rs). Started detached by `acquire`, with
/// nothing to print to; exit 1 on another backend.
pub fn keeper(ctx: &Ctx, holder: &str) -> Result<Code> {
    #[cfg(feature = "redis")]
    if let Some(redis) = ctx.backend.redis() {
        crate::backend::redis::keeper::keep(redis, holder)?;
        return Ok(Code::Success);
    }
    let _ = holder;
    Err(crate::error::Error::general(format!(
        "the lease keeper runs on a Redis backend, not on {}",
        ctx.backend.kind()
    ))
    .hint("it is started by 'lock-manager acquire' on Redis; it is not for direct use"))
}
