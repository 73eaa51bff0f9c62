//! `list-states`: every state a backend holds — the namespaces on a Redis
//! server, or the state files under a folder — with its phase, revision,
//! last change and live locks (the `state list` of the pipelines we replace).

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::backend::StateStore;
use crate::cmd::table::Table;
use crate::cmd::{self as cli, Ctx};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::exit::Code;
use crate::state::document;

/// How deep `list-states` looks under the folder.
const MAX_DEPTH: usize = 6;

/// One state, as `list-states --json` prints it.
#[derive(Serialize)]
struct Listed {
    /// The namespace (Redis) or the state file's path (files).
    name: String,
    backend: &'static str,
    /// `valid`, `corrupt` or `invalid`.
    condition: &'static str,
    phase: Option<String>,
    revision: Option<u64>,
    last_modified: Option<String>,
    /// Held locks beside a state file; null on Redis, whose locks are held
    /// on each host.
    live_locks: Option<Vec<String>>,
}

fn listed(name: String, backend: &'static str, state: &dyn StateStore) -> Listed {
    let doc = state.load_bytes().ok().flatten().map(|b| state.parse(&b));
    let (condition, doc) = match doc {
        Some(Ok(d)) if crate::state::schema::violations(&d).is_empty() => ("valid", Some(d)),
        Some(Ok(d)) => ("invalid", Some(d)),
        _ => ("corrupt", None),
    };
    let get = |p: &str| doc.as_ref().and_then(|d| d.pointer(p)).cloned();
    Listed {
        name,
        backend,
        condition,
        phase: get("/phase").map(|v| match v {
            Value::String(s) => s,
            other => other.to_string(),
        }),
        revision: doc.as_ref().map(document::revision),
        last_modified: get("/metadata/lastModified").and_then(|v| v.as_str().map(str::to_owned)),
        live_locks: None,
    }
}

/// The state files under `dir` (named as `STATE_FILE` names them, default
/// `.workflow-state.json`), skipping toolkit folders and build trees.
fn files_under(cfg: &Config, dir: &Path) -> Vec<Listed> {
    let wanted = cfg
        .state_file
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| ".workflow-state.json".into());
    let skip = [
        ".git",
        ".locks",
        ".state-backups",
        ".checkpoints",
        ".signals",
        "node_modules",
        "target",
    ];
    let mut out = Vec::new();
    let walk = walkdir::WalkDir::new(dir)
        .max_depth(MAX_DEPTH)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| !(e.file_type().is_dir() && skip.iter().any(|s| e.file_name() == *s)));
    for entry in walk.flatten() {
        if !entry.file_type().is_file() || entry.file_name() != wanted.as_os_str() {
            continue;
        }
        let file_cfg = Config {
            state_file: entry.path().to_path_buf(),
            root: entry
                .path()
                .parent()
                .unwrap_or(Path::new("."))
                .to_path_buf(),
            ..cfg.clone()
        };
        let backend = crate::backend::FileBackend::new(&file_cfg);
        let mut l = listed(entry.path().display().to_string(), "file", &backend);
        l.live_locks = Some(crate::state::health::live_locks(&file_cfg));
        out.push(l);
    }
    out
}

/// `list-states [DIR] [--json|--jsonl]`.
pub fn list_states(ctx: &Ctx, dir: Option<&Path>) -> Result<Code> {
    #[cfg(feature = "redis")]
    let rows = match ctx.backend.redis() {
        Some(r) => r
            .namespaces()?
            .into_iter()
            .map(|ns| {
                let b = r.for_namespace(&ns);
                listed(ns, "redis", &b)
            })
            .collect(),
        None => files_under(&ctx.cfg, dir.unwrap_or(Path::new("."))),
    };
    #[cfg(not(feature = "redis"))]
    let rows = files_under(&ctx.cfg, dir.unwrap_or(Path::new(".")));
    if ctx.output.json {
        let items: Vec<Value> = rows
            .iter()
            .map(|r| serde_json::to_value(r).expect("serializes"))
            .collect();
        ctx.output.list(&items);
        return Ok(Code::Success);
    }
    if rows.is_empty() {
        // Under --no-header a script reads rows only: an empty table is no line.
        if !ctx.output.no_header {
            cli::println(&format!(
                "no states in {}",
                match ctx.backend.kind() {
                    "file" => dir.unwrap_or(Path::new(".")).display().to_string(),
                    _ => ctx.backend.location(),
                }
            ));
        }
        return Ok(Code::Success);
    }
    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let mut table = Table::for_output(
        &[
            "name",
            "condition",
            "phase",
            "revision",
            "modified",
            "locks",
        ],
        &ctx.output,
    );
    table.right(3);
    for r in &rows {
        table.row(vec![
            r.name.clone(),
            r.condition.to_string(),
            dash(r.phase.clone()),
            dash(r.revision.map(|n| n.to_string())),
            dash(r.last_modified.clone()),
            match &r.live_locks {
                None => "-".to_string(),
                Some(l) if l.is_empty() => "none".to_string(),
                Some(l) => l.join(","),
            },
        ]);
    }
    cli::print(&table.render());
    Ok(Code::Success)
}

/// What `migrate-backend` copied.
#[derive(Serialize)]
struct Migrated {
    from: String,
    to: String,
    /// The state's revision on the target (the source's plus one: a copy is
    /// a new version there).
    revision: u64,
    lineage: Option<String>,
    backups: usize,
    checkpoints: usize,
    /// Everything copied was read back from the target and found equal.
    verified: bool,
}

/// `migrate-backend --to URL [--force]`: copies the state, its backups and
/// checkpoints to another backend and verifies each copy. Exit 4 when the
/// target has a state already (unless `--force`: it is backed up there
/// first), 3 when a copy does not read back equal.
pub fn migrate_backend(ctx: &Ctx, to: &str, force: bool) -> Result<Code> {
    let done = ctx.audited_state("migrate-backend", |detail| {
        detail["to"] = serde_json::json!(crate::backend::mask_url(to));
        let target = crate::backend::open_other(&ctx.cfg, to)?;
        let (src, dst) = (ctx.backend.state(), target.state());
        if ctx.backend.location() == target.location() {
            return Err(Error::validation("--to names the backend in use")
                .hint("give another URL (or file, with --state-file) to migrate to"));
        }
        let bytes = src.load_bytes()?.ok_or_else(|| src.missing())?;
        let doc = src.parse(&bytes)?;
        crate::state::store::check_schema(&doc)?;
        if dst.load_bytes()?.is_some() && !force {
            return Err(Error::validation(format!(
                "{} has a state already",
                target.location()
            ))
            .hint("pass --force to replace it (it is backed up there first), or migrate to another namespace (WFSTATE_NAMESPACE)"));
        }
        // Backups first, oldest first, so the target's SEQ grows past them.
        let backups = src.list_backups()?;
        for b in backups.iter().rev() {
            let content = src.backup_bytes(b)?;
            dst.put_backup(b, &content)?;
        }
        let checkpoints = ctx.backend.checkpoints().list()?;
        let mut copied = Vec::new();
        for cp in checkpoints.iter().rev() {
            let v = ctx.backend.checkpoints().verify(cp)?;
            // One copied by an earlier run is checked below like the rest.
            if target.checkpoints().find(Some(&cp.id)).is_err() {
                target.checkpoints().adopt(&v)?;
            }
            copied.push((cp.id.clone(), v.files[crate::recovery::checkpoint::STATE].clone()));
        }
        let owner = ctx.owner_identity()?;
        let commit = dst
            .transact(
                ctx.access(owner.as_ref()),
                "migrate-backend",
                &mut |_| Ok(Some(doc.clone())),
                &mut |_| {},
            )?
            .expect("a copy always commits");
        // Read everything back from the target.
        let copy = dst.parse(&dst.load_bytes()?.ok_or_else(|| dst.missing())?)?;
        let same = |a: &Value, b: &Value| {
            let strip = |v: &Value| {
                let mut v = v.clone();
                if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                    for k in ["lastModified", "revision", "checksum"] {
                        m.shift_remove(k);
                    }
                }
                v
            };
            strip(a) == strip(b)
        };
        let mismatch = |what: String| {
            Error::corruption(format!("{what} does not read back equal from {}", target.location()))
                .hint("check the target server's health ('state-manager health' with WFSTATE_BACKEND set to it) and migrate again with --force")
        };
        if !same(&copy, &doc) {
            return Err(mismatch("the state".into()));
        }
        let there = dst.list_backups()?;
        for b in &backups {
            let found = there.iter().find(|t| t.name == b.name);
            let equal = found
                .map(|t| dst.backup_bytes(t))
                .transpose()?
                .is_some_and(|c| src.backup_bytes(b).is_ok_and(|o| o == c));
            if !equal {
                return Err(mismatch(format!("backup {}", b.name)));
            }
        }
        for (id, state) in &copied {
            let cp = target.checkpoints().find(Some(id))?;
            let v = target.checkpoints().verify(&cp)?;
            if v.files.get(crate::recovery::checkpoint::STATE) != Some(state) {
                return Err(mismatch(format!("checkpoint {id}")));
            }
        }
        detail["revision"] = serde_json::json!(commit.revision);
        detail["backups"] = serde_json::json!(backups.len());
        detail["checkpoints"] = serde_json::json!(copied.len());
        Ok(Migrated {
            from: ctx.backend.location(),
            to: target.location(),
            revision: commit.revision,
            lineage: document::lineage(&copy).map(str::to_owned),
            backups: backups.len(),
            checkpoints: copied.len(),
            verified: true,
        })
    })?;
    if ctx.output.json {
        ctx.print_json(&done);
    } else {
        cli::println(&format!(
            "migrated {} to {}: the state (revision {}), {} backup(s), {} checkpoint(s), each read back and verified",
            done.from, done.to, done.revision, done.backups, done.checkpoints
        ));
    }
    Ok(Code::Success)
}
