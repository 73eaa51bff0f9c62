//! `suggest` and `handle`: what an exit code means, and the automatic
//! strategy of `handle --apply` (the table is in [`crate::recovery::suggest`]).
//! Every line a strategy says is collected, then printed as text or, with
//! `--json`, as one object.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use super::TOOL;
use crate::audit::Recorder;
use crate::cmd::{self as cli, Ctx};
use crate::durable;
use crate::error::{Error, Result};
use crate::exit::Code;
use crate::recovery::suggest::{parse_code, strategy, suggestion};
use crate::recovery::{checkpoint, restore};
use crate::state::integrity::{self, FileCheck};
use crate::state::{Store, Txn, backup, commands};

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
    let say = &mut said.lines;
    let outcome = match code {
        Code::LockTimeout => handle_locks(ctx, detail, say),
        Code::StateCorruption => handle_corruption(ctx, detail, say),
        Code::ValidationFailed => handle_validation(ctx, detail, say),
        Code::DiskFull => handle_disk_full(ctx, detail, say),
        _ => unreachable!("only codes with a strategy get here"),
    };
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

fn handle_locks(ctx: &Ctx, detail: &mut Value, say: &mut Vec<String>) -> Result<bool> {
    let removed = crate::lock::manager::clean(&ctx.cfg, false)?.removed.len();
    detail["removed"] = json!(removed);
    if removed > 0 {
        say.push(format!("removed {removed} stale lock(s)"));
        Ok(true)
    } else {
        say.push(
            "no stale lock found: a lock that still times out has a live holder (see 'lock-manager list'); wait for it, or raise LOCK_TIMEOUT".into(),
        );
        Ok(false)
    }
}

fn handle_corruption(ctx: &Ctx, detail: &mut Value, say: &mut Vec<String>) -> Result<bool> {
    let st = ctx.store()?;
    let owner = ctx.owner_identity()?;
    let txn = st.begin(owner.as_ref())?;
    let report = integrity::verify_all(&ctx.cfg, st.path());
    let corrupt = |f: &&FileCheck| f.code() == Code::StateCorruption;
    let mut fixed = Vec::new();
    let mut left = Vec::new();
    if report.state.as_ref().is_some_and(|s| corrupt(&s)) {
        recover_state(ctx, &txn, &st, detail, say)?;
        fixed.push("state");
    }
    let mut quarantined = Vec::new();
    let mut checkpoints: Vec<String> = Vec::new();
    for f in report.files.iter().filter(corrupt) {
        match f.kind {
            "backup" => {
                let to = quarantine_backup(ctx, &f.path)?;
                say.push(format!(
                    "moved the corrupt backup {} to {}",
                    f.path.display(),
                    to.display()
                ));
                quarantined.push(to.display().to_string());
            }
            "lock" => {
                let name = f.path.file_stem().map(|n| n.to_string_lossy().into_owned());
                left.push(format!(
                    "the lock record {} is corrupt: not removed, since who holds it cannot be known; once no one does, run 'lock-manager release {} --force'",
                    f.path.display(),
                    name.unwrap_or_default()
                ));
            }
            _ => {
                let dir = if f.kind == "checkpoint" {
                    f.path.clone()
                } else {
                    f.path.parent().map(PathBuf::from).unwrap_or_default()
                };
                let dir = dir.display().to_string();
                if !checkpoints.contains(&dir) {
                    left.push(format!(
                        "the checkpoint {dir} is corrupt: not touched ('error-recovery restore' refuses it); remove it with 'rm -r', or keep it to inspect"
                    ));
                    checkpoints.push(dir);
                }
            }
        }
    }
    if !quarantined.is_empty() {
        fixed.push("backups");
        detail["quarantined"] = json!(quarantined);
    }
    detail["fixed"] = json!(fixed);
    detail["left"] = json!(left);
    if fixed.is_empty() && left.is_empty() {
        detail["strategy"] = json!("no-damage-found");
        say.push(
            "no corruption found: the state, its backups, checkpoints and lock records all check out, so nothing was changed (see the error line of the command that exited 3)".into(),
        );
        return Ok(false);
    }
    say.extend(left.iter().cloned());
    Ok(left.is_empty())
}

fn handle_validation(ctx: &Ctx, detail: &mut Value, say: &mut Vec<String>) -> Result<bool> {
    let st = ctx.store()?;
    let owner = ctx.owner_identity()?;
    let txn = st.begin(owner.as_ref())?;
    let check = st
        .exists()
        .then(|| integrity::check_document_file(st.path(), "state"));
    match check.map(|c| c.code()) {
        Some(Code::ValidationFailed) => {
            recover_state(ctx, &txn, &st, detail, say)?;
            Ok(true)
        }
        Some(Code::StateCorruption) => {
            detail["strategy"] = json!("not-this-code");
            say.push(
                "the state is corrupt, which is exit 3, not 4: nothing was changed; run 'error-recovery handle 3 --apply'".into(),
            );
            Ok(false)
        }
        _ => {
            detail["strategy"] = json!("no-damage-found");
            say.push(format!(
                "the state is valid ({}): exit 4 means an input or a rule was refused, and nothing was changed — fix the command (its error line says what); nothing to recover",
                st.path().display()
            ));
            Ok(false)
        }
    }
}

/// Replaces a damaged live state with the newest valid backup, keeping the
/// damaged one (as a backup when it parses, aside as `.corrupt-*` when not).
fn recover_state(
    ctx: &Ctx,
    txn: &Txn<'_, '_>,
    st: &Store<'_>,
    detail: &mut Value,
    say: &mut Vec<String>,
) -> Result<()> {
    let Some((b, doc)) = commands::newest_valid_backup(&ctx.cfg, None)? else {
        return Err(Error::corruption("no valid backup to recover from")
            .with_path(ctx.cfg.backups_dir())
            .hint("restore a checkpoint with 'error-recovery restore', or start fresh with 'state-manager init'"));
    };
    let commit = commands::recover_into(txn, st, doc, detail)?;
    if let Some(aside) = detail["corrupt_kept_at"].as_str() {
        say.push(format!("kept the damaged state at {aside}"));
    } else if let Some(kept) = &commit.backup {
        say.push(format!("kept the damaged state as {}", kept.display()));
    }
    detail["recovered_from"] = json!(b.name);
    detail["revision"] = json!(commit.revision);
    say.push(format!(
        "recovered {} from {} (revision {})",
        st.path().display(),
        b.name,
        commit.revision
    ));
    Ok(())
}

/// Moves a corrupt backup to `.state-backups/corrupt/`, out of the backups
/// `recover` and `list-backups` see (the caller holds the `state` lock).
fn quarantine_backup(ctx: &Ctx, path: &std::path::Path) -> Result<PathBuf> {
    let dir = ctx.cfg.backups_dir().join("corrupt");
    durable::ensure_dir(&dir, &ctx.cfg.root)?;
    let name = path.file_name().unwrap_or_default();
    let to = dir.join(name);
    checkpoint::rename_noreplace(path, &to)
        .map_err(|e| Error::io(e, "cannot move the corrupt backup aside", &to))?;
    durable::sync_dir(&dir)?;
    durable::sync_dir(&ctx.cfg.backups_dir())?;
    Ok(to)
}

fn handle_disk_full(ctx: &Ctx, detail: &mut Value, say: &mut Vec<String>) -> Result<bool> {
    let cfg = &ctx.cfg;
    let backups = backup::prune(cfg, ctx.retention)?;
    let st = ctx.store()?;
    let owner = ctx.owner_identity()?;
    let txn = st.begin(owner.as_ref())?;
    let mut temps: Vec<PathBuf> = Vec::new();
    // Temp folders of killed restores only: a pending journal is no disk
    // space, and is finished (or dropped) by the next restore or checkpoint.
    for p in restore::leftovers(cfg) {
        if fs::remove_dir_all(&p).is_ok() {
            temps.push(p);
        }
    }
    // Keep the newest checkpoint: a full disk is no reason to lose the way back.
    let cleaned = checkpoint::prune(cfg, Duration::from_secs(7 * 86400), 1, false)?;
    drop(txn);
    for dir in [
        cfg.root.clone(),
        cfg.backups_dir(),
        cfg.locks_dir(),
        cfg.checkpoints_dir(),
        cfg.signals_dir(),
        cfg.config_dir(),
    ] {
        for t in durable::leftover_temps(&dir) {
            if fs::remove_file(&t).is_ok() {
                temps.push(t);
            }
        }
    }
    temps.extend(cleaned.temps);
    detail["backups_removed"] = json!(backups.len());
    detail["checkpoints_removed"] = json!(cleaned.checkpoints.len());
    detail["temps_removed"] = json!(temps.len());
    if backups.is_empty() && cleaned.checkpoints.is_empty() && temps.is_empty() {
        detail["strategy"] = json!("no-damage-found");
        say.push(
            "nothing to free: no backup or checkpoint beyond retention and no leftover temp file, so nothing was changed; see 'df -h' for what fills the disk".into(),
        );
        return Ok(false);
    }
    say.push(format!(
        "removed {} old backup(s), {} old checkpoint(s) and {} leftover temp file(s)",
        backups.len(),
        cleaned.checkpoints.len(),
        temps.len()
    ));
    Ok(true)
}
