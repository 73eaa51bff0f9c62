//! `cleanup`: keeps the state root tidy — old backups and checkpoints,
//! temp files left by killed writers, stale lock records.
//!
//! What is removed, by selector (no selector means all four):
//!
//! - `--backups`, `--checkpoints`: by `--keep N` (all but the newest N) and
//!   `--older-than DUR` (made longer ago than DUR, by the time in the name).
//!   With both, either condition removes; with one, only that one applies.
//!   With neither, the usual policy applies: backups by the retention
//!   settings (`BACKUP_KEEP`, default 5; `BACKUP_MAX_AGE`, default 7d),
//!   checkpoints older than 7 days.
//! - `--temp`: `.NAME.PID.SEQ.tmp` files whose writer is gone (no flock held
//!   on them: see [`crate::durable`]), temp folders of killed checkpoints and
//!   of interrupted checkpoint removals (`.checkpoints/.tmp-checkpoint-*`,
//!   `.checkpoints/.removing-checkpoint-*`) and folders of killed benchmarks
//!   (`.benchmark-PID` whose process is gone). Age and count do not apply.
//! - `--stale`: lock records with no live holder and no live waiter,
//!   checked again and removed under the lock's mutex, so a lock acquired in
//!   between is never removed. A lock is never removed for being old, and a
//!   record that does not parse is reported, not removed.
//!
//! Backups and checkpoints are this state file's own ([`Config::backups_dir`],
//! [`Config::checkpoints_dir`]), listed and ordered by [`backup::list`] and
//! [`checkpoint::list`]. Backups and checkpoints are removed under the
//! `state` lock (the lock `checkpoint`, `restore` and `error-recovery
//! cleanup` hold; `--temp` alone takes none and then sweeps a checkpoint's
//! temp folder only once the process named in it is gone), and a
//! checkpoint through [`checkpoint::remove`], which renames it aside before
//! deleting it, so neither a kill part-way nor a concurrent
//! `verify-integrity` ever sees a half-deleted checkpoint under its name.
//! `--dry-run` lists what would go, changes nothing and takes no lock.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use super::backup::{self, Retention};
use crate::backend::{Access, Backend, CheckpointStore, StateStore};
use crate::config::{self, Config};
use crate::durable;
use crate::error::{Error, Result};
use crate::lock::Identity;
use crate::lock::{self, record};
use crate::recovery::checkpoint;
use crate::state::Store;
use crate::state::backup::Backup;

/// Checkpoints are kept 7 days unless told otherwise.
const CHECKPOINT_MAX_AGE: Duration = Duration::from_secs(7 * 86400);

/// What to clean up.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct CleanupArgs {
    /// Old backups in .state-backups/
    #[arg(long)]
    pub backups: bool,
    /// Old checkpoints in .checkpoints/
    #[arg(long)]
    pub checkpoints: bool,
    /// Temp files of killed writers, half-removed checkpoints, killed benchmarks
    #[arg(long)]
    pub temp: bool,
    /// Lock records with no live holder
    #[arg(long)]
    pub stale: bool,
    /// Remove backups/checkpoints made longer ago than this, e.g. 7d, 12h, 30m (a bare number is seconds)
    #[arg(long, value_name = "DURATION")]
    pub older_than: Option<String>,
    /// Keep the newest N backups/checkpoints, remove the rest
    #[arg(long, value_name = "N")]
    pub keep: Option<usize>,
    /// Print what would be removed; remove nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// One thing removed (or that would be), or kept with a reason.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Item {
    pub kind: &'static str,
    pub path: PathBuf,
    pub reason: String,
    pub bytes: u64,
}

/// What `cleanup` removed (or would), and what it kept.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Outcome {
    pub dry_run: bool,
    pub removed: Vec<Item>,
    pub kept: Vec<Item>,
    /// Bytes removed.
    pub bytes: u64,
}

/// Which backups or checkpoints go: the newest `keep` stay; older than `max_age` go.
#[derive(Clone, Debug)]
struct Policy {
    keep: Option<usize>,
    max_age: Option<(Duration, String)>,
}

impl Policy {
    fn why(&self, index: usize, age: Duration) -> Option<String> {
        if let Some(k) = self.keep
            && index >= k
        {
            return Some(format!("beyond the newest {k}"));
        }
        if let Some((d, text)) = &self.max_age
            && age > *d
        {
            return Some(format!("older than {text}"));
        }
        None
    }
}

/// Writes a duration the way `parse_duration` reads it.
fn show_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        s if s % 86400 == 0 => format!("{}d", s / 86400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Bytes of every file below `path` (0 when it does not exist).
pub(crate) fn size_of(path: &Path) -> u64 {
    walkdir::WalkDir::new(path)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

fn plan_backups(state: &dyn StateStore, policy: &Policy) -> Result<Vec<(Item, Backup)>> {
    Ok(state
        .list_backups()?
        .into_iter()
        .enumerate()
        .filter_map(|(i, b)| {
            policy.why(i, backup::age_of(b.made)).map(|reason| {
                let item = Item {
                    kind: "backup",
                    bytes: b.size,
                    path: b.path.clone(),
                    reason,
                };
                (item, b)
            })
        })
        .collect())
}

fn plan_checkpoints(
    store: &dyn CheckpointStore,
    policy: &Policy,
) -> Result<Vec<(Item, checkpoint::Checkpoint)>> {
    let sizes = store.entries()?;
    Ok(store
        .list()?
        .into_iter()
        .enumerate()
        .filter_map(|(i, c)| {
            policy.why(i, backup::age_of(c.made)).map(|reason| {
                let item = Item {
                    kind: "checkpoint",
                    bytes: sizes.iter().find(|e| e.id == c.id).map_or(0, |e| e.size),
                    path: c.path.clone(),
                    reason,
                };
                (item, c)
            })
        })
        .collect())
}

/// Whether process `pid` exists (for the folders of killed benchmarks).
fn pid_runs(pid: u32) -> bool {
    rustix::process::Pid::from_raw(pid as i32).is_some_and(|p| {
        !matches!(
            rustix::process::test_kill_process(p),
            Err(rustix::io::Errno::SRCH)
        )
    })
}

/// `locked`: whether the `state` lock is held, so no checkpoint is being
/// made or removed; without it, a checkpoint's temp folder is planned only
/// when the process named in it (`…-PID`) is gone.
fn plan_temp(cfg: &Config, locked: bool) -> Vec<Item> {
    let mut dirs = vec![
        cfg.root.clone(),
        cfg.backups_dir(),
        cfg.locks_dir(),
        cfg.checkpoints_dir(),
        cfg.signals_dir(),
        cfg.config_dir(),
    ];
    dirs.extend(
        checkpoint::list(cfg)
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.path),
    );
    let mut items: Vec<Item> = dirs
        .iter()
        .flat_map(|d| durable::leftover_temps(d))
        .filter(|p| p.is_file())
        .map(|p| Item {
            kind: "temp",
            bytes: fs::metadata(&p).map_or(0, |m| m.len()),
            path: p,
            reason: "temp file left by a writer that was killed".into(),
        })
        .collect();
    let _ = locked;
    for path in checkpoint::leftovers(&cfg.checkpoints_dir()) {
        // Never one whose writer runs, with the lock or without.
        if checkpoint::in_progress(&path) {
            continue;
        }
        let removing = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(".removing-"));
        items.push(Item {
            kind: "temp",
            bytes: size_of(&path),
            reason: if removing {
                "checkpoint whose removal was interrupted"
            } else {
                "checkpoint whose making was interrupted"
            }
            .into(),
            path,
        });
    }
    if let Ok(entries) = fs::read_dir(&cfg.root) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix(".benchmark-")
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if e.file_type().is_ok_and(|t| t.is_dir()) && !pid_runs(pid) {
                items.push(Item {
                    kind: "temp",
                    bytes: size_of(&e.path()),
                    path: e.path(),
                    reason: format!("left by a benchmark that was killed (pid {pid})"),
                });
            }
        }
    }
    items
}

/// Why a record is stale, or `None` when it is held or waited for.
fn stale_reason(rec: &record::Record) -> Option<String> {
    if !rec.standing().is_removable() {
        return None;
    }
    let pids: Vec<String> = rec.holders.iter().map(|h| h.id.pid.to_string()).collect();
    Some(if pids.is_empty() {
        "stale lock: no holder".into()
    } else {
        format!("stale lock: no live holder (pid {})", pids.join(", "))
    })
}

/// Stale records to remove, and records kept with a reason.
fn plan_stale(cfg: &Config) -> (Vec<Item>, Vec<Item>) {
    let mut remove = Vec::new();
    let mut kept = Vec::new();
    for e in lock::manager::scan(cfg).unwrap_or_default() {
        let path = record::record_path(cfg, &e.name);
        let bytes = fs::metadata(&path).map_or(0, |m| m.len());
        match e.record {
            Ok(rec) => {
                if let Some(reason) = stale_reason(&rec) {
                    remove.push(Item {
                        kind: "lock",
                        path,
                        reason,
                        bytes,
                    });
                }
            }
            Err(e) => kept.push(Item {
                kind: "lock",
                path,
                reason: format!(
                    "not removed: does not parse ({}); inspect it, then remove it with 'lock-manager clean --force'",
                    e.summary()
                ),
                bytes,
            }),
        }
    }
    (remove, kept)
}

/// Removes one planned item; `Ok(false)` when it was gone already or is no
/// longer stale. The caller holds the `state` lock unless only locks are planned.
fn remove(cfg: &Config, item: &Item) -> Result<bool> {
    let gone = |e: &io::Error| e.kind() == io::ErrorKind::NotFound;
    match item.kind {
        "lock" => {
            let name = item
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if lock::name::validate(&name).is_err() {
                return Ok(false);
            }
            // Judged again under the record's mutex by the one sweep `clean` uses.
            Ok(lock::manager::sweep(cfg, &name, false, false)? == lock::manager::Swept::Removed)
        }
        _ if checkpoint::leftovers(&cfg.checkpoints_dir()).contains(&item.path) => {
            checkpoint::remove_leftover(&item.path)
        }
        _ if item.path.is_dir() => {
            remove_tree(&item.path)?;
            Ok(true)
        }
        _ => match fs::remove_file(&item.path) {
            Ok(()) => Ok(true),
            Err(e) if gone(&e) => Ok(false),
            Err(e) => Err(Error::io(e, "cannot remove", &item.path)),
        },
    }
}

fn remove_tree(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(Error::io(e, "cannot remove folder", path))
        }
        _ => Ok(()),
    }
}

/// `cleanup`: see the module docs. Exit 4 bad duration, 6 a file could not
/// be removed for lack of permission.
///
/// `owner` is asked for the `state` lock's owner only when the lock is taken.
pub fn cleanup(
    backend: &dyn Backend,
    cfg: &Config,
    retention: Retention,
    owner: impl FnOnce() -> Result<Option<Identity>>,
    args: &CleanupArgs,
    detail: &mut Value,
) -> Result<Outcome> {
    {
        detail["dry_run"] = json!(args.dry_run);
        let older_than = match args.older_than.as_deref() {
            Some(t) => Some((
                config::parse_duration(t, "--older-than")?,
                t.trim().to_string(),
            )),
            None => None,
        };
        let all = !(args.backups || args.checkpoints || args.temp || args.stale);
        let given = args.keep.is_some() || older_than.is_some();
        let policy_for = |default: Policy| {
            if given {
                Policy {
                    keep: args.keep,
                    max_age: older_than.clone(),
                }
            } else {
                default
            }
        };
        let file = backend.kind() == "file";
        // Under the `state` lock, like checkpoint, restore and
        // `error-recovery cleanup`: nothing is made, restored or removed
        // meanwhile. Stale lock records need only their own mutex.
        // `--temp` alone needs no lock (see `plan_temp`), so a shell holding
        // a lower-priority lock can still sweep temp files. On a shared
        // backend each removal is one step on the server.
        let locked = !args.dry_run && (all || args.backups || args.checkpoints);
        let owner = if locked { owner()? } else { None };
        let store = if file {
            Some(Store::open(cfg, retention)?)
        } else {
            None
        };
        let txn = match &store {
            Some(st) if locked => Some(st.begin(owner.as_ref())?),
            _ => None,
        };
        let access = Access {
            owner: owner.as_ref(),
            retention,
        };
        let mut plan = Vec::new();
        let mut backups = Vec::new();
        let mut checkpoints = Vec::new();
        let mut kept = Vec::new();
        if all || args.backups {
            let Retention { keep, max_age } = retention;
            let policy = policy_for(Policy {
                keep: Some(keep),
                max_age: Some((max_age, show_duration(max_age))),
            });
            for (item, b) in plan_backups(backend.state(), &policy)? {
                plan.push(item);
                backups.push(b);
            }
        }
        if all || args.checkpoints {
            let policy = policy_for(Policy {
                keep: None,
                max_age: Some((CHECKPOINT_MAX_AGE, show_duration(CHECKPOINT_MAX_AGE))),
            });
            for (item, cp) in plan_checkpoints(backend.checkpoints(), &policy)? {
                plan.push(item);
                checkpoints.push(cp);
            }
        }
        if file && (all || args.temp) {
            plan.extend(plan_temp(cfg, txn.is_some()));
        }
        if all || args.stale {
            let (stale, corrupt) = plan_stale(cfg);
            plan.extend(stale);
            kept.extend(corrupt);
        }
        let mut removed = Vec::new();
        if args.dry_run {
            removed = plan;
        } else {
            for item in plan {
                let done = match item.kind {
                    "backup" => match backups.iter().find(|b| b.path == item.path) {
                        Some(b) => backend.state().remove_backup(b)?,
                        None => false,
                    },
                    "checkpoint" => match checkpoints.iter().find(|c| c.path == item.path) {
                        // On files this call already holds the `state` lock
                        // that the store's `remove` would take again.
                        Some(cp) if file => checkpoint::remove(cp)?,
                        Some(cp) => backend.checkpoints().remove(cp, access)?,
                        None => false,
                    },
                    _ => remove(cfg, &item)?,
                };
                if done {
                    removed.push(item);
                }
            }
            if file && removed.iter().any(|i| i.kind == "backup") {
                durable::sync_dir(&cfg.backups_dir())?;
            }
        }
        drop(txn);
        let bytes: u64 = removed.iter().map(|i| i.bytes).sum();
        detail["removed"] = json!(removed.len());
        detail["bytes"] = json!(bytes);
        Ok(Outcome {
            dry_run: args.dry_run,
            removed,
            kept,
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_shown_as_they_are_written() {
        assert_eq!(show_duration(Duration::from_secs(7 * 86400)), "7d");
        assert_eq!(show_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(show_duration(Duration::from_secs(90)), "90s");
        assert_eq!(show_duration(Duration::from_millis(500)), "500ms");
    }

    #[test]
    fn policy_keeps_the_newest_and_drops_the_old() {
        let p = Policy {
            keep: Some(2),
            max_age: Some((Duration::from_secs(3600), "1h".into())),
        };
        let young = Duration::from_secs(60);
        let old = Duration::from_secs(7200);
        assert_eq!(p.why(0, young), None);
        assert_eq!(p.why(2, young).as_deref(), Some("beyond the newest 2"));
        assert_eq!(p.why(1, old).as_deref(), Some("older than 1h"));
    }
}
