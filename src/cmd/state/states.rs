//! `list-states`: every state a backend holds — the namespaces on a Redis
//! server, or the state files under a folder — with its phase, revision,
//! last change and live locks (the `state list` of the pipelines we replace).

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::backend::StateStore;
use crate::cmd::{self as cli, Ctx};
use crate::config::Config;
use crate::error::Result;
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
        cli::println(&format!(
            "no states in {}",
            match ctx.backend.kind() {
                "file" => dir.unwrap_or(Path::new(".")).display().to_string(),
                _ => ctx.backend.location(),
            }
        ));
        return Ok(Code::Success);
    }
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let mut out = format!(
        "{:<width$}  {:<9}  {:<16}  {:>8}  {:<20}  LOCKS\n",
        "NAME", "CONDITION", "PHASE", "REVISION", "MODIFIED"
    );
    for r in &rows {
        out.push_str(&format!(
            "{:<width$}  {:<9}  {:<16}  {:>8}  {:<20}  {}\n",
            r.name,
            r.condition,
            dash(r.phase.clone()),
            dash(r.revision.map(|n| n.to_string())),
            dash(r.last_modified.clone()),
            match &r.live_locks {
                None => "-".to_string(),
                Some(l) if l.is_empty() => "none".to_string(),
                Some(l) => l.join(","),
            }
        ));
    }
    cli::print(&out);
    Ok(Code::Success)
}
