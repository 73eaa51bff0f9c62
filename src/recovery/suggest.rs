//! What each exit code means, what to do about it (`suggest CODE`), and
//! the automatic strategy `handle CODE --apply` runs:
//!
//! | code | strategy |
//! | --- | --- |
//! | 2 | remove stale lock records (holders dead, pid reused, TTL passed, other boot) |
//! | 3 | restore the state from the newest valid backup (a valid state is left alone) |
//! | 4 | restore the latest checkpoint |
//! | 7 | prune backups and checkpoints by retention, remove leftover temp files |
//! | others | none: the suggestion is printed |
//!
//! `handle` exits 0 when the strategy succeeded, else with CODE, so
//! `cmd || error-recovery handle $? --apply` keeps a script's failure
//! visible. A strategy never touches a live lock, never discards a corrupt
//! state (it is kept aside), and never removes the newest checkpoint.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Ctx, TOOL, checkpoint, restore};
use crate::audit::Recorder;
use crate::cli;
use crate::durable;
use crate::error::{Error, Result};
use crate::exit::Code;

use crate::state::{backup, commands, schema};

/// Parses CODE: one of the toolkit's exit codes 0–10 (exit 4 otherwise).
pub fn parse_code(text: &str) -> Result<Code> {
    text.trim()
        .parse::<i32>()
        .ok()
        .and_then(Code::from_i32)
        .ok_or_else(|| {
            Error::validation(format!("unknown exit code '{}'", text.escape_debug())).hint(
                "give one of the toolkit's exit codes, 0-10 (the table is in 'error-recovery --help')",
            )
        })
}

/// What happened and what to run, for one exit code.
pub fn suggestion(code: Code) -> (&'static str, &'static [&'static str]) {
    match code {
        Code::Success => ("nothing failed", &[]),
        Code::GeneralError => (
            "the command failed for a reason not covered by a specific code (often a usage error or a missing state file)",
            &[
                "read the error line above: it says what to do",
                "state-manager status",
                "state-manager init   # if there is no state file yet",
            ],
        ),
        Code::LockTimeout => (
            "a lock was not acquired in time: another process holds it, or a dead one left it behind",
            &[
                "lock-manager list                      # who holds what",
                "error-recovery handle 2 --apply        # remove stale locks",
                "LOCK_TIMEOUT=60 <your command>         # wait longer for a live holder",
            ],
        ),
        Code::StateCorruption => (
            "the state, a backup or a checkpoint does not parse or fails its checksum",
            &[
                "state-manager validate",
                "error-recovery handle 3 --apply        # restore the newest valid backup",
                "state-manager list-backups; state-manager recover PATTERN",
                "error-recovery restore latest          # or go back to a checkpoint",
            ],
        ),
        Code::ValidationFailed => (
            "the input or the document breaks the schema or a rule (bad JSON, bad name, lock hierarchy)",
            &[
                "state-manager validate                 # every violation with its JSON pointer",
                "state-manager migrate                  # for an older document",
                "error-recovery handle 4 --apply        # go back to the latest checkpoint",
            ],
        ),
        Code::DependencyMissing => (
            "something the operation needs is absent (a command to run, a schema file)",
            &[
                "command -v <the command>               # is it on PATH?",
                "check the file named in the error exists",
            ],
        ),
        Code::PermissionDenied => (
            "access was refused, a symlink leading out of the state root was refused, or you are not the lock owner",
            &[
                "ls -la \"$(dirname \"$STATE_FILE\")\"  # owner and mode of the state root",
                "lock-manager list                      # whose lock it is",
                "run as the user who owns the state root",
            ],
        ),
        Code::DiskFull => (
            "no space left on the device, or the quota is exceeded",
            &[
                "df -h .",
                "error-recovery handle 7 --apply        # prune backups, checkpoints, temp files",
                "error-recovery cleanup 1 --keep 1      # remove checkpoints older than a day",
            ],
        ),
        Code::NetworkError => (
            "a network backend failed (reserved: the toolkit itself uses no network)",
            &["error-recovery retry --attempts 5 -- <your command>"],
        ),
        Code::Timeout => (
            "an overall deadline passed (retry --timeout, run --timeout)",
            &[
                "raise --timeout, or find out why the command is slow",
                "error-recovery status                  # recent failures",
            ],
        ),
        Code::ResourceExhausted => (
            "out of file descriptors or memory, or an input over the 16 MiB limit",
            &[
                "ulimit -n                              # raise the file limit",
                "keep large data outside the state file",
                "error-recovery retry --delay 5 -- <your command>",
            ],
        ),
    }
}

/// The strategy `handle --apply` runs for a code, in words.
pub fn strategy(code: Code) -> Option<&'static str> {
    match code {
        Code::LockTimeout => Some("remove stale locks"),
        Code::StateCorruption => Some("restore the state from the newest valid backup"),
        Code::ValidationFailed => Some("restore the latest checkpoint"),
        Code::DiskFull => Some("prune backups, checkpoints and leftover temp files"),
        _ => None,
    }
}

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

/// `suggest CODE`: prints what the code means and what to run.
pub fn suggest(ctx: &Ctx, code: &str) -> Result<Code> {
    ctx.audited("suggest", code.trim(), |detail| {
        let code = parse_code(code)?;
        detail["code"] = json!(code.as_i32());
        cli::print(&suggestion_text(code));
        Ok(Code::Success)
    })
}

/// `handle CODE [MESSAGE] [--apply]`: prints the suggestion; with `--apply`
/// runs the strategy. Exit 0 when recovery succeeded (or CODE is 0), else CODE.
pub fn handle(ctx: &Ctx, code: &str, message: Option<&str>, apply: bool) -> Result<Code> {
    let rec = Recorder::start(&ctx.cfg, TOOL, "handle", code.trim());
    let mut detail = json!({});
    let result = handle_inner(ctx, code, message, apply, &mut detail);
    match &result {
        // Not recovered is this command's exit CODE, and so the event's.
        Ok(c) if *c != Code::Success => rec.finish_with(c.as_i32(), "error", detail),
        _ => rec.finish(&result, detail),
    }
    result
}

fn handle_inner(
    ctx: &Ctx,
    code: &str,
    message: Option<&str>,
    apply: bool,
    detail: &mut Value,
) -> Result<Code> {
    let code = parse_code(code)?;
    detail["code"] = json!(code.as_i32());
    detail["applied"] = json!(apply);
    if let Some(m) = message {
        detail["message"] = json!(m);
        eprintln!("{TOOL}: handling exit {}: {m}", code.as_i32());
    }
    if code == Code::Success {
        cli::println("exit 0: nothing to recover");
        return Ok(Code::Success);
    }
    if !apply || strategy(code).is_none() {
        cli::print(&suggestion_text(code));
        detail["recovered"] = json!(false);
        return Ok(code);
    }
    let outcome = match code {
        Code::LockTimeout => handle_locks(ctx, detail),
        Code::StateCorruption => handle_corruption(ctx, detail),
        Code::ValidationFailed => handle_validation(ctx, detail),
        Code::DiskFull => handle_disk_full(ctx, detail),
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

fn handle_locks(ctx: &Ctx, detail: &mut Value) -> Result<bool> {
    let removed = crate::lock::manager::clean(&ctx.cfg, false)?.removed.len();
    detail["removed"] = json!(removed);
    if removed > 0 {
        cli::println(&format!("removed {removed} stale lock(s)"));
        Ok(true)
    } else {
        cli::println(
            "no stale lock found: a lock that still times out has a live holder (see 'lock-manager list'); wait for it, or raise LOCK_TIMEOUT",
        );
        Ok(false)
    }
}

fn handle_corruption(ctx: &Ctx, detail: &mut Value) -> Result<bool> {
    let st = ctx.store()?;
    let owner = ctx.owner()?;
    let txn = st.begin(owner.as_ref())?;
    let current = txn.load_opt();
    if let Ok(Some(doc)) = &current
        && schema::violations(doc).is_empty()
    {
        cli::println(&format!(
            "the state is valid: {} (nothing to recover)",
            st.path().display()
        ));
        detail["strategy"] = json!("none-needed");
        return Ok(true);
    }
    let Some((b, doc)) = commands::newest_valid_backup(&ctx.cfg, None)? else {
        return Err(Error::corruption("no valid backup to recover from")
            .with_path(ctx.cfg.backups_dir())
            .hint("restore a checkpoint with 'error-recovery restore', or start fresh with 'state-manager init'"));
    };
    let commit = match current {
        Ok(cur) => txn.commit(cur.as_ref(), doc, "pre-recover")?,
        Err(e) if e.code() == Code::StateCorruption => {
            let aside = commands::keep_aside(st.path())?;
            detail["corrupt_kept_at"] = json!(aside.display().to_string());
            cli::println(&format!("kept the corrupt state at {}", aside.display()));
            txn.commit_over_corrupt(doc, "recover")?
        }
        Err(e) => return Err(e),
    };
    detail["recovered_from"] = json!(b.name);
    detail["revision"] = json!(commit.revision);
    cli::println(&format!(
        "recovered {} from {} (revision {})",
        st.path().display(),
        b.name,
        commit.revision
    ));
    Ok(true)
}

fn handle_validation(ctx: &Ctx, detail: &mut Value) -> Result<bool> {
    let st = ctx.store()?;
    let owner = ctx.owner()?;
    let txn = st.begin(owner.as_ref())?;
    restore::repair(ctx, &txn, &st)?;
    let cp = checkpoint::find(&ctx.cfg, None)?;
    let v = checkpoint::verify(&cp)?;
    let commit = restore::apply(ctx, &txn, &st, &v, detail)?;
    detail["checkpoint"] = json!(cp.id);
    cli::println(&format!(
        "restored {} (state revision {})",
        cp.id, commit.revision
    ));
    Ok(true)
}

fn handle_disk_full(ctx: &Ctx, detail: &mut Value) -> Result<bool> {
    let cfg = &ctx.cfg;
    let backups = backup::prune(cfg, ctx.retention)?;
    let st = ctx.store()?;
    let owner = ctx.owner()?;
    let txn = st.begin(owner.as_ref())?;
    restore::repair(ctx, &txn, &st)?;
    // Keep the newest checkpoint: a full disk is no reason to lose the way back.
    let cleaned = checkpoint::prune(cfg, Duration::from_secs(7 * 86400), 1, false)?;
    drop(txn);
    let mut temps: Vec<PathBuf> = Vec::new();
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
    cli::println(&format!(
        "removed {} old backup(s), {} old checkpoint(s) and {} leftover temp file(s)",
        backups.len(),
        cleaned.checkpoints.len(),
        temps.len()
    ));
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_outside_the_table_are_refused() {
        assert_eq!(parse_code("3").unwrap(), Code::StateCorruption);
        assert_eq!(parse_code(" 10 ").unwrap(), Code::ResourceExhausted);
        for bad in ["11", "-1", "x", "", "137"] {
            assert_eq!(
                parse_code(bad).unwrap_err().code(),
                Code::ValidationFailed,
                "{bad}"
            );
        }
    }

    #[test]
    fn every_failure_code_has_a_suggestion() {
        for code in Code::ALL.into_iter().skip(1) {
            let (what, steps) = suggestion(code);
            assert!(!what.is_empty() && !steps.is_empty(), "{code:?}");
        }
    }

    #[test]
    fn strategies_exist_for_2_3_4_7_only() {
        let with: Vec<i32> = Code::ALL
            .into_iter()
            .filter(|c| strategy(*c).is_some())
            .map(Code::as_i32)
            .collect();
        assert_eq!(with, vec![2, 3, 4, 7]);
    }
}
