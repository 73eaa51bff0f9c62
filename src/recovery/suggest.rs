//! What each exit code means, what to do about it (`suggest CODE`), and
//! the automatic strategy `handle CODE --apply` runs. A strategy first
//! looks for the damage its code names and acts only on that:
//!
//! | code | damage looked for | what is done |
//! | --- | --- | --- |
//! | 2 | stale lock records (holders dead, pid reused, TTL passed, other boot) | removed |
//! | 3 | a live state that does not parse or fails its checksum; corrupt backups, checkpoints, lock records | the state restored from the newest valid backup (the damaged file kept aside); corrupt backups moved to `.state-backups/corrupt/`; checkpoints and lock records reported, not touched |
//! | 4 | a live state that breaks the schema | restored from the newest valid backup (the invalid one kept as a backup) |
//! | 7 | backups and checkpoints beyond retention, leftover temp files | removed |
//! | others | — | none: the suggestion is printed |
//!
//! `handle` exits 0 only when the damage was there and is repaired; else
//! it exits with CODE and says why (no such damage found, or what is left),
//! so `cmd || error-recovery handle $? --apply` keeps a script's failure
//! visible and never undoes good work: exit 4 for a typo finds a valid
//! state and changes nothing. A strategy never touches a live lock, never
//! discards a corrupt file (it is kept aside), and never removes the newest
//! checkpoint.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use super::{checkpoint, restore};
use crate::config::Config;
use crate::durable;
use crate::error::{Error, Result};
use crate::exit::Code;
use crate::lock::Identity;
use crate::state::backup::{self, Retention};
use crate::state::integrity::{self, FileCheck};
use crate::state::{Store, Txn, commands};

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
                "state-manager verify-integrity         # which file is damaged (changes nothing)",
                "error-recovery handle 3 --apply        # repair only what is found damaged",
            ],
        ),
        Code::ValidationFailed => (
            "the input or the document breaks the schema or a rule (bad JSON, bad name, lock hierarchy)",
            &[
                "read the error line above: it names what was refused; nothing was changed",
                "state-manager validate                 # is the live state itself valid? (changes nothing)",
                "state-manager migrate                  # for an older document",
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
                "error-recovery cleanup 1d --keep 1     # remove checkpoints older than a day",
            ],
        ),
        Code::NetworkError => (
            "the Redis backend (WFSTATE_BACKEND) could not be reached, did not answer in time, or is a read-only or loading server",
            &[
                "state-manager health                   # is the backend reachable?",
                "error-recovery retry --attempts 5 -- <your command>   # ride out a short outage",
            ],
        ),
        Code::Timeout => (
            "an overall deadline passed: 'error-recovery retry --timeout S' stopped the command at S seconds (a lock not had in time is exit 2, also in 'lock-manager run -w S')",
            &[
                "error-recovery retry --timeout 600 -- <your command>   # a longer deadline; exit 9 again if it passes",
                "state-manager audit recent --failed    # what failed before, and how long it ran",
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
        Code::StateCorruption => Some(
            "restore a corrupt state from the newest valid backup and move corrupt backups aside, if it finds any",
        ),
        Code::ValidationFailed => Some(
            "restore the newest valid backup if the live state breaks the schema (a refused input changes nothing)",
        ),
        Code::DiskFull => Some(
            "prune backups and checkpoints beyond retention and leftover temp files, if there are any",
        ),
        _ => None,
    }
}

/// Who runs a strategy: the configuration, the backup retention of the
/// commits it makes, and `--owner` for the `state` lock.
pub struct Caller<'a> {
    pub cfg: &'a Config,
    pub retention: Retention,
    pub owner: Option<u32>,
}

impl Caller<'_> {
    fn store(&self) -> Result<Store<'_>> {
        Store::open(self.cfg, self.retention)
    }

    fn owner_identity(&self) -> Result<Option<Identity>> {
        crate::lock::process::caller(self.owner)
    }
}

/// Runs the strategy of `code` (one [`strategy`] names): looks for the
/// damage, repairs what it finds. `Ok(true)` when damage was found and
/// repaired; every line to show the user is added to `say`, the audit
/// detail to `detail`.
pub fn apply(
    ctx: &Caller<'_>,
    code: Code,
    detail: &mut Value,
    say: &mut Vec<String>,
) -> Result<bool> {
    match code {
        Code::LockTimeout => handle_locks(ctx, detail, say),
        Code::StateCorruption => handle_corruption(ctx, detail, say),
        Code::ValidationFailed => handle_validation(ctx, detail, say),
        Code::DiskFull => handle_disk_full(ctx, detail, say),
        _ => Err(Error::validation(format!(
            "exit {} has no automatic strategy",
            code.as_i32()
        ))),
    }
}

fn handle_locks(ctx: &Caller<'_>, detail: &mut Value, say: &mut Vec<String>) -> Result<bool> {
    let removed = crate::lock::manager::clean(ctx.cfg, false)?.removed.len();
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

fn handle_corruption(ctx: &Caller<'_>, detail: &mut Value, say: &mut Vec<String>) -> Result<bool> {
    let st = ctx.store()?;
    let owner = ctx.owner_identity()?;
    let txn = st.begin(owner.as_ref())?;
    let report = integrity::verify_all(ctx.cfg, st.path());
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

fn handle_validation(ctx: &Caller<'_>, detail: &mut Value, say: &mut Vec<String>) -> Result<bool> {
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
    ctx: &Caller<'_>,
    txn: &Txn<'_, '_>,
    st: &Store<'_>,
    detail: &mut Value,
    say: &mut Vec<String>,
) -> Result<()> {
    let Some((b, doc)) = commands::newest_valid_backup(ctx.cfg, None)? else {
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
fn quarantine_backup(ctx: &Caller<'_>, path: &std::path::Path) -> Result<PathBuf> {
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

fn handle_disk_full(ctx: &Caller<'_>, detail: &mut Value, say: &mut Vec<String>) -> Result<bool> {
    let cfg = ctx.cfg;
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
