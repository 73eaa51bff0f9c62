//! `backup`, `list-backups`, `recover`: the backups of the state, through
//! the backend.

use serde::Serialize;
use serde_json::json;

use crate::cmd::table::Table;
use crate::cmd::{self as cli, Ctx, Paint};
use crate::error::Result;
use crate::exit::Code;
use crate::state::backup::Backup;
use crate::state::integrity;

/// `backup [REASON]`: a backup of the current state; prints its path
/// (`{"backup": PATH}` under `--json`).
pub fn backup(ctx: &Ctx, reason: Option<&str>) -> Result<Code> {
    let made = ctx.audited_state("backup", |detail| {
        let made = ctx
            .backend
            .state()
            .backup(reason.unwrap_or("manual"), ctx.retention)?;
        detail["backup"] = json!(made.display().to_string());
        Ok(made)
    })?;
    if ctx.output.json {
        ctx.print_json(&json!({"backup": made.display().to_string()}));
    } else {
        cli::println(&made.display().to_string());
    }
    Ok(Code::Success)
}

/// One backup as `list-backups --json` prints it.
#[derive(Serialize)]
pub struct Listed {
    pub name: String,
    pub path: String,
    /// When it was made, RFC 3339 in UTC.
    pub made: String,
    pub size: u64,
    /// Parses, satisfies the schema, and its checksum (if any) matches.
    pub valid: bool,
}

impl Listed {
    fn of(b: &Backup, state: &dyn crate::backend::StateStore) -> Listed {
        Listed {
            name: b.name.clone(),
            path: b.path.display().to_string(),
            made: b.made.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            size: b.size,
            valid: state.backup_bytes(b).is_ok_and(|bytes| {
                integrity::check_document_bytes(&b.path, "backup", &bytes)
                    .problems
                    .is_empty()
            }),
        }
    }
}

/// `list-backups [--json]`: newest first; a JSON array under `--json`.
pub fn list_backups(ctx: &Ctx) -> Result<Code> {
    let backups = ctx.backend.state().list_backups()?;
    if ctx.output.json {
        let items: Vec<serde_json::Value> = backups
            .iter()
            .map(|b| serde_json::to_value(Listed::of(b, ctx.backend.state())).expect("serializes"))
            .collect();
        ctx.output.list(&items);
    } else if backups.is_empty() {
        // Under --no-header a script reads rows only: an empty table is no line.
        if !ctx.output.no_header {
            cli::println(&format!(
                "no backups in {}",
                ctx.cfg.backups_dir().display()
            ));
        }
    } else {
        let mut table = Table::for_output(&["name", "size", "made", "valid"], &ctx.output);
        table.right(1);
        for b in &backups {
            let l = Listed::of(b, ctx.backend.state());
            table.row(vec![
                l.name,
                l.size.to_string(),
                // One word, so `awk` sees one column: RFC 3339, UTC.
                l.made,
                if l.valid {
                    "yes".to_string()
                } else {
                    ctx.output.paint("NO", Paint::Bad)
                },
            ]);
        }
        cli::print(&table.render());
    }
    Ok(Code::Success)
}

/// `recover [PATTERN]`: restores the newest valid (matching) backup.
pub fn recover(ctx: &Ctx, pattern: Option<&str>, force: bool) -> Result<Code> {
    let done = ctx.audited_state("recover", |detail| {
        let owner = ctx.owner_identity()?;
        let done = ctx
            .backend
            .state()
            .recover(ctx.access(owner.as_ref()), pattern, force)?;
        detail["recovered_from"] = json!(done.recovered_from);
        if let Some(aside) = &done.corrupt_kept_at {
            detail["corrupt_kept_at"] = json!(aside);
        }
        super::note_corrupt_kept(detail);
        detail["revision"] = json!(done.revision);
        Ok(done)
    })?;
    if ctx.output.json {
        ctx.print_json(&done);
    } else {
        cli::println(&format!(
            "recovered {} from {} (revision {})",
            done.path, done.recovered_from, done.revision
        ));
    }
    Ok(Code::Success)
}
