//! `checkpoint`, `restore`, `list`, `cleanup`: through the checkpoint store.

use serde_json::{Value, json};

use super::{TOOL, access, to_json};
use crate::audit::Recorder;
use crate::backend::checkpoints::Pruned;
use crate::cmd::table::Table;
use crate::cmd::{self as cli, Ctx, Paint};
use crate::error::{Error, Result};
use crate::exit::Code;
use crate::recovery::checkpoint::{Entry, Request};
use crate::recovery::restore::Restored;

/// `checkpoint OPERATION [PHASE] [METADATA_JSON]`: prints the new id (with
/// `--json`, an object of what was made).
pub fn create(ctx: &Ctx, req: &Request<'_>) -> Result<Code> {
    let mut rec = Recorder::start(&ctx.cfg, TOOL, "checkpoint", req.operation);
    let mut detail = json!({ "operation": req.operation });
    let result = ctx.owner_identity().and_then(|owner| {
        ctx.backend
            .checkpoints()
            .create(req, access(ctx, owner.as_ref()))
    });
    if let Ok(made) = &result {
        rec.set_target(made.id.as_str());
        detail["phase"] = json!(made.phase);
        detail["files"] = json!(made.files);
        detail["revision"] = json!(made.revision);
    }
    rec.finish(&result, detail);
    let made = result?;
    if ctx.output.json {
        ctx.print_json(&made);
    } else {
        cli::println(&made.id);
    }
    Ok(Code::Success)
}

/// `restore [ID|latest]`.
pub fn restore(ctx: &Ctx, id: Option<&str>, force: bool) -> Result<Code> {
    let mut rec = Recorder::start(&ctx.cfg, TOOL, "restore", id.unwrap_or("latest"));
    let result = ctx.owner_identity().and_then(|owner| {
        ctx.backend
            .checkpoints()
            .restore(id, access(ctx, owner.as_ref()), force)
    });
    let detail = match &result {
        Ok(done) => {
            rec.set_target(done.id.as_str());
            done.detail()
        }
        Err(_) => json!({}),
    };
    rec.finish(&result, detail);
    let done = result?;
    if ctx.output.json {
        ctx.print_json(&done);
    } else {
        cli::print(&summary(&done));
    }
    Ok(Code::Success)
}

/// What a restore did, as text: the new revision, where the replaced state
/// and folders are kept, and every file it removed.
pub fn summary(done: &Restored) -> String {
    let mut out = format!("restored {} (state revision {})\n", done.id, done.revision);
    if let Some(b) = &done.backup {
        out.push_str(&format!(
            "  the replaced state is kept as {}\n",
            b.display()
        ));
    }
    if let Some(aside) = &done.corrupt_kept_at {
        out.push_str(&format!(
            "  the corrupt state is kept at {}\n",
            aside.display()
        ));
    }
    let folders: Vec<String> = done
        .folders
        .iter()
        .map(|f| {
            if f == "signals" {
                ".signals/".into()
            } else {
                format!("{f}/")
            }
        })
        .collect();
    if let Some(kept) = &done.kept_at {
        out.push_str(&format!(
            "  replaced {}; the previous files are kept in {}\n",
            folders.join(", "),
            kept.display()
        ));
    } else if !folders.is_empty() {
        out.push_str(&format!("  replaced {}\n", folders.join(", ")));
    }
    for f in &done.removed {
        out.push_str(&format!("  removed {f}\n"));
    }
    out
}

/// `list [table|json] [--json|--jsonl]`: every checkpoint, newest first,
/// with whether it verifies. `json` as FORMAT is the legacy spelling of `--json`.
pub fn list(ctx: &Ctx, format: &str) -> Result<Code> {
    ctx.audited("list", ctx.checkpoints_target(), |detail| {
        let as_json = match format {
            "json" => true,
            "table" => ctx.output.json,
            other => {
                return Err(Error::validation(format!("bad list format '{other}'"))
                    .hint("use 'table' or 'json' (or --json, --jsonl)"));
            }
        };
        let all = ctx.backend.checkpoints().entries()?;
        detail["count"] = json!(all.len());
        if as_json {
            let rows: Vec<Value> = all.iter().map(to_json).collect();
            ctx.output.list(&rows);
            return Ok(Code::Success);
        }
        if all.is_empty() {
            cli::println(&format!("no checkpoints in {}", ctx.checkpoints_target()));
            return Ok(Code::Success);
        }
        cli::print(&table(ctx, &all));
        Ok(Code::Success)
    })
}

/// The checkpoints as the toolkit's one table: single-word titles (one
/// field per column for `awk`), times in RFC 3339 (one field too), the
/// header left out under `--no-header`.
fn table(ctx: &Ctx, all: &[Entry]) -> String {
    // An empty cell would shift every later field for awk.
    let dash = |v: Option<String>| v.filter(|s| !s.is_empty()).unwrap_or_else(|| "-".into());
    let mut t = Table::for_output(
        &[
            "id",
            "operation",
            "phase",
            "made",
            "revision",
            "size",
            "files",
            "valid",
        ],
        &ctx.output,
    );
    for col in [4, 5, 6] {
        t.right(col);
    }
    for c in all {
        t.row(vec![
            c.id.clone(),
            dash(c.operation.clone()),
            dash(c.phase.clone()),
            c.made.clone(),
            dash(c.revision.map(|r| r.to_string())),
            c.size.to_string(),
            dash(c.files.map(|f| f.to_string())),
            // The last column: its colour codes pad nothing after it.
            if c.valid {
                ctx.output.paint("yes", Paint::Good)
            } else {
                ctx.output.paint("NO", Paint::Bad)
            },
        ]);
    }
    t.render()
}

/// `cleanup [AGE=7d] [--keep N] [--dry-run]`: AGE is any duration
/// [`crate::config::parse_duration`] reads (a bare number is seconds).
pub fn cleanup(ctx: &Ctx, age: Option<&str>, keep: usize, dry_run: bool) -> Result<Code> {
    ctx.audited("cleanup", ctx.checkpoints_target(), |detail| {
        let max_age = crate::config::parse_duration(age.unwrap_or("7d"), "age")?;
        let owner = ctx.owner_identity()?;
        let done = ctx.backend.checkpoints().cleanup(
            max_age,
            keep,
            dry_run,
            access(ctx, owner.as_ref()),
        )?;
        detail["removed"] = json!(done.cleaned.checkpoints.len());
        detail["temps"] = json!(done.cleaned.temps.len());
        detail["dry_run"] = json!(dry_run);
        if ctx.output.json {
            ctx.print_json(&done);
        } else {
            cli::print(&cleanup_text(&done));
        }
        Ok(Code::Success)
    })
}

fn cleanup_text(done: &Pruned) -> String {
    let verb = if done.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let mut out = String::new();
    for id in &done.cleaned.checkpoints {
        out.push_str(&format!("{verb} {id}\n"));
    }
    for t in &done.cleaned.temps {
        out.push_str(&format!("{verb} leftover {}\n", t.display()));
    }
    out.push_str(&format!(
        "{verb} {} checkpoint(s) and {} leftover temp folder(s); {} kept\n",
        done.cleaned.checkpoints.len(),
        done.cleaned.temps.len(),
        done.kept_count
    ));
    out
}
