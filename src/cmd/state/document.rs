//! `init`, `read`, `write`, `set`, `merge`, `append`, `del`, `mv`,
//! `signal`, `migrate`: the commands that read or change the document. A
//! change prints nothing in text; under `--json` it prints what it
//! committed (`{"revision": N, "backup": PATH|null, ...}`).

use serde::Serialize;
use serde_json::{Value, json};

use super::{Committed, TOOL};
use crate::audit::event::ms;
use crate::cmd::{self as cli, Ctx};
use crate::config::MAX_INPUT_BYTES;
use crate::durable;
use crate::error::{Error, Result};
use crate::exit::Code;
use crate::lock;
use crate::state::commands::{
    edited_path, move_value, no_value, non_root_path, parse_json_arg, toolkit_owned, value_arg,
    value_at, write_signal_file,
};
use crate::state::merge::merge_patch;
use crate::state::{document, path, store};

/// `init`: creates the state, or repairs a corrupt one from backups.
pub fn init(ctx: &Ctx) -> Result<Code> {
    let done = ctx.audited_state("init", |detail| {
        let owner = ctx.owner_identity()?;
        let done = ctx.backend.state().init(ctx.access(owner.as_ref()))?;
        if let Some(aside) = &done.corrupt_kept_at {
            detail["corrupt_kept_at"] = json!(aside);
            eprintln!("{TOOL}: the state did not parse; kept it at {aside}");
            match &done.recovered_from {
                Some(b) => {
                    detail["recovered_from"] = json!(b);
                    eprintln!("{TOOL}: restored the newest valid backup {b}");
                }
                None => eprintln!("{TOOL}: no valid backup found; started a fresh state"),
            }
        }
        if done.initialized || done.corrupt_kept_at.is_some() {
            detail["revision"] = json!(done.revision);
        }
        Ok(done)
    })?;
    if ctx.output.json {
        ctx.print_json(&done);
    } else if done.initialized {
        cli::println(&format!("initialized {}", done.path));
    } else {
        cli::println(&format!(
            "already initialized: {} (revision {})",
            done.path, done.revision
        ));
    }
    Ok(Code::Success)
}

/// `read [PATH] [--raw] [-c] [-e]`: the document or one value, as JSON
/// (`--json` changes nothing); `-c` on one line, `--raw` strings without
/// quotes. With `-e`, as `jq -e`: exit 1 when the value is `null`, `false`
/// or missing — an answer, audited as a success with `answer_exit` in its
/// detail (as `check` and `is-degraded` are).
pub fn read(ctx: &Ctx, path_expr: Option<&str>, raw: bool, exit_status: bool) -> Result<Code> {
    ctx.audited_state("read", |detail| {
        let segs = path::parse(path_expr.unwrap_or("."))?;
        let state = ctx.backend.state();
        let bytes = state.load_bytes()?.ok_or_else(|| state.missing())?;
        if segs.is_empty() && !ctx.output.compact {
            // The whole document: check that it parses without building it,
            // then print the bytes as stored (the toolkit writes them pretty).
            // A document is an object, so it is never falsy for `-e`.
            serde_json::from_slice::<serde::de::IgnoredAny>(&bytes)
                .map_err(|_| state.parse(&bytes).unwrap_err())?;
            // std's UTF-8 check reads ASCII a word at a time; the lossy
            // conversion alone goes byte by byte (a third of a large read).
            let text = match std::str::from_utf8(&bytes) {
                Ok(text) => std::borrow::Cow::Borrowed(text),
                Err(_) => String::from_utf8_lossy(&bytes),
            };
            cli::println(text.trim_end());
            if exit_status {
                detail["answer_exit"] = json!(0);
            }
            return Ok(Code::Success);
        }
        // Only the value asked for is built (the rest is checked as it is
        // skipped); a document that does not parse gets the error of a whole parse.
        let value = match path::extract(&bytes, &segs) {
            Ok(v) => v,
            Err(_) => path::get(&state.parse(&bytes)?, &segs).cloned(),
        };
        let value = &value.unwrap_or(Value::Null);
        match value {
            Value::String(s) if raw => cli::println(s),
            v if ctx.output.compact => {
                cli::println(&serde_json::to_string(v).expect("JSON serializes"))
            }
            v => cli::println(&serde_json::to_string_pretty(v).expect("JSON serializes")),
        }
        if !exit_status {
            return Ok(Code::Success);
        }
        let code = match value {
            Value::Null | Value::Bool(false) => Code::GeneralError,
            _ => Code::Success,
        };
        detail["answer_exit"] = json!(code.as_i32());
        Ok(code)
    })
}

/// `write JSON|- [REASON] [--expect-revision N] [--force]`: replaces the
/// document. Exit 4 when the document carries a `metadata.revision` older
/// than the live state's (the serial rule of `import`), unless `--force` or
/// `--expect-revision` (which names the revision the change is based on).
pub fn write(
    ctx: &Ctx,
    input: &str,
    reason: Option<&str>,
    expect_revision: Option<u64>,
    force: bool,
) -> Result<Code> {
    // This process ends after its one commit: see leak_documents_at_exit.
    store::leak_documents_at_exit();
    let commit = ctx.audited_state("write", |detail| {
        let text = if input == "-" {
            let bytes = durable::read_stdin_limited(MAX_INPUT_BYTES)?;
            String::from_utf8(bytes).map_err(|_| {
                Error::validation("the document on standard input is not UTF-8")
                    .hint("pass a UTF-8 JSON document")
            })?
        } else {
            input.to_owned()
        };
        let new = parse_json_arg(&text, "the document")?;
        if !new.is_object() {
            return Err(Error::validation(format!(
                "the document is {}, not an object",
                path::type_name(&new)
            ))
            .hint("pass a JSON object like {\"phase\": \"...\", ...}"));
        }
        document::check_metadata(&new, "the document's")?;
        let incoming = new.pointer("/metadata/revision").and_then(Value::as_u64);
        let owner = ctx.owner_identity()?;
        // Handed over whole on the first attempt; an optimistic backend's
        // retry parses the input again rather than every write cloning it.
        let mut new = Some(new);
        let mut lock_wait = None;
        let commit = ctx.backend.state().transact(
            ctx.access(owner.as_ref()),
            reason.unwrap_or("write"),
            &mut |old| {
                let actual = old.map(document::revision).unwrap_or(0);
                if let Some(expected) = expect_revision
                    && expected != actual
                {
                    detail["conflict"] = json!("revision");
                    detail["expected"] = json!(expected);
                    detail["actual"] = json!(actual);
                    return Err(Error::validation(format!(
                        "revision conflict: expected revision {expected}, the state is at {actual}"
                    ))
                    .hint("someone else wrote first: read the state again and reapply your change"));
                }
                // The serial rule of `import`: a document read at an older revision
                // would silently undo whatever was committed since. An explicit
                // --expect-revision already says which revision the change is based on.
                if let Some(inc) = incoming
                    && inc < actual
                    && old.is_some()
                    && expect_revision.is_none()
                {
                    detail["conflict"] = json!("revision");
                    detail["incoming"] = json!(inc);
                    detail["live"] = json!(actual);
                    if !force {
                        return Err(Error::validation(format!(
                            "the document is at revision {inc}, older than the live state's {actual}"
                        ))
                        .hint("the state changed since you read it: read it again and reapply your change, or pass --force to overwrite it (it is backed up first)"));
                    }
                }
                detail["force"] = json!(force);
                match new.take() {
                    Some(doc) => Ok(Some(doc)),
                    None => parse_json_arg(&text, "the document").map(Some),
                }
            },
            &mut |waited| lock_wait = Some(waited),
        );
        if let Some(w) = lock_wait {
            detail["lock_wait_ms"] = json!(ms(w));
        }
        let commit = commit?.expect("write always commits");
        detail["revision"] = json!(commit.revision);
        Ok(commit)
    })?;
    committed(ctx, &commit)
}

/// Prints what a mutation committed under `--json` (nothing in text).
fn committed(ctx: &Ctx, commit: &crate::state::Commit) -> Result<Code> {
    if ctx.output.json {
        ctx.print_json(&Committed::from(commit));
    }
    Ok(Code::Success)
}

/// `set PATH VALUE`
pub fn set(ctx: &Ctx, path_expr: &str, value: &str, as_string: bool) -> Result<Code> {
    // This process ends after its one commit: see leak_documents_at_exit.
    store::leak_documents_at_exit();
    let segs = non_root_path(path_expr);
    let value = value_arg(value, as_string);
    let shown = segs
        .as_ref()
        .map_or(path_expr.to_string(), |s| path::display(s));
    // The top-level member the path goes into: a large state is then
    // written without building its other members.
    let member = match segs.as_ref().map(|s| s.first()) {
        Ok(Some(path::Seg::Key(k))) => Some(k.as_str()),
        _ => None,
    };
    let commit = ctx.update_member("set", Some(&shown), member, |doc| {
        let segs = segs.clone()?;
        path::set(doc, &segs, value_at(&segs, value.clone()?)?)
    })?;
    committed(ctx, &commit)
}

/// `append PATH VALUE`
pub fn append(ctx: &Ctx, path_expr: &str, value: &str, as_string: bool) -> Result<Code> {
    // This process ends after its one commit: see leak_documents_at_exit.
    store::leak_documents_at_exit();
    let segs = non_root_path(path_expr);
    let value = value_arg(value, as_string);
    let shown = segs
        .as_ref()
        .map_or(path_expr.to_string(), |s| path::display(s));
    let commit = ctx.update_at("append", Some(&shown), |doc| {
        let (segs, value) = (segs.clone()?, value.clone()?);
        // An element sits one level below the array at `segs`.
        document::check_depth(&value, segs.len() + 1, "the appended value")?;
        path::append(doc, &segs, value)
    })?;
    committed(ctx, &commit)
}

/// What `del` did.
#[derive(Serialize)]
struct Deleted {
    path: String,
    /// False only under `--missing-ok` when there was nothing to delete.
    deleted: bool,
    /// The revision committed (or, when nothing was deleted, the current one).
    revision: u64,
    backup: Option<String>,
}

/// `del PATH [--missing-ok]`: removes a key or an array element, as jq's
/// `del` does, in one transaction under the `state` lock. Exit 1 when there
/// is no value at PATH (unless `--missing-ok`: then nothing is committed),
/// 4 for `.`, `.metadata…` or a field the schema requires.
pub fn del(ctx: &Ctx, path_expr: &str, missing_ok: bool) -> Result<Code> {
    // This process ends after its one commit: see leak_documents_at_exit.
    store::leak_documents_at_exit();
    let segs = edited_path(path_expr, "delete");
    let done = ctx.audited_state("del", |detail| {
        let segs = segs?;
        let shown = path::display(&segs);
        super::note_path(detail, "path", &shown);
        let state = ctx.backend.state();
        let owner = ctx.owner_identity()?;
        let (mut current, mut lock_wait) = (0, None);
        let commit = state.transact(
            ctx.access(owner.as_ref()),
            "del",
            &mut |old| {
                let old = old.ok_or_else(|| state.missing())?;
                current = document::revision(old);
                let mut new = old.clone();
                match path::remove(&mut new, &segs)? {
                    Some(_) => Ok(Some(new)),
                    None if missing_ok => Ok(None),
                    None => Err(no_value(&segs)),
                }
            },
            &mut |waited| lock_wait = Some(waited),
        );
        if let Some(w) = lock_wait {
            detail["lock_wait_ms"] = json!(ms(w));
        }
        let commit = commit?;
        detail["deleted"] = json!(commit.is_some());
        Ok(match commit {
            Some(commit) => {
                detail["revision"] = json!(commit.revision);
                let c = Committed::from(&commit);
                Deleted {
                    path: shown,
                    deleted: true,
                    revision: c.revision,
                    backup: c.backup,
                }
            }
            None => Deleted {
                path: shown,
                deleted: false,
                revision: current,
                backup: None,
            },
        })
    })?;
    if ctx.output.json {
        ctx.print_json(&done);
    }
    Ok(Code::Success)
}

/// What `mv` did.
#[derive(Serialize)]
struct Moved {
    from: String,
    to: String,
    /// Whether TO held a value that was replaced (`--force`).
    replaced: bool,
    revision: u64,
    backup: Option<String>,
}

/// `mv FROM TO [--force]`: moves a value, as `terraform state mv` does an
/// address, in one transaction under the `state` lock (one backup, one
/// revision, one audit event). See [`move_value`] for what is refused.
pub fn mv(ctx: &Ctx, from: &str, to: &str, force: bool) -> Result<Code> {
    // This process ends after its one commit: see leak_documents_at_exit.
    store::leak_documents_at_exit();
    let paths = edited_path(from, "move").and_then(|f| Ok((f, edited_path(to, "move to")?)));
    let mut replaced = false;
    let commit = ctx.audited_state("mv", |detail| {
        let (from, to) = paths.clone()?;
        super::note_path(detail, "from", &path::display(&from));
        super::note_path(detail, "to", &path::display(&to));
        let owner = ctx.owner_identity()?;
        let commit = ctx.backend.state().update(
            ctx.access(owner.as_ref()),
            "mv",
            &mut |doc| {
                replaced = move_value(doc, &from, &to, force)?;
                Ok(())
            },
            &mut |waited| detail["lock_wait_ms"] = json!(ms(waited)),
        )?;
        detail["replaced"] = json!(replaced);
        detail["revision"] = json!(commit.revision);
        Ok(commit)
    })?;
    if ctx.output.json {
        let (from, to) = paths?;
        let c = Committed::from(&commit);
        ctx.print_json(&Moved {
            from: path::display(&from),
            to: path::display(&to),
            replaced,
            revision: c.revision,
            backup: c.backup,
        });
    }
    Ok(Code::Success)
}

/// `merge PATCH`: RFC 7396 merge patch.
pub fn merge(ctx: &Ctx, patch: &str) -> Result<Code> {
    // This process ends after its one commit: see leak_documents_at_exit.
    store::leak_documents_at_exit();
    let patch = parse_json_arg(patch, "the merge patch").and_then(|p| {
        if p.get("metadata").is_some() {
            Err(toolkit_owned("metadata"))
        } else if p.is_object() {
            Ok(p)
        } else {
            Err(Error::validation("a merge patch must be a JSON object")
                .hint("pass an object like {\"phase\": \"impl\"}; use 'write' to replace the document"))
        }
    });
    let commit = ctx.update("merge", |doc| {
        merge_patch(doc, patch.as_ref().map_err(Clone::clone)?);
        Ok(())
    })?;
    committed(ctx, &commit)
}

/// What `signal` recorded.
#[derive(Serialize)]
struct Signalled {
    signal: String,
    /// Epoch seconds, as `signals.NAME` holds it.
    /// signals.NAME: epoch seconds (`timestamp` is a time string everywhere else).
    epoch: f64,
    revision: u64,
    backup: Option<String>,
}

/// `signal NAME`: records `signals.NAME` = now and `.signals/NAME.json`.
pub fn signal(ctx: &Ctx, name: &str) -> Result<Code> {
    // This process ends after its one commit: see leak_documents_at_exit.
    store::leak_documents_at_exit();
    let valid = lock::name::validate_as("signal name", name);
    let now = document::now_epoch();
    let at = path::display(&[
        path::Seg::Key("signals".into()),
        path::Seg::Key(name.into()),
    ]);
    let commit = ctx.update_at("signal", Some(&at), |doc| {
        valid.clone()?;
        path::set(
            doc,
            &[
                path::Seg::Key("signals".into()),
                path::Seg::Key(name.into()),
            ],
            json!(now),
        )?;
        Ok(())
    })?;
    if ctx.backend.kind() == "file" {
        // The shell library's mirror of a signal; a shared backend keeps
        // signals in the document only (one host's files are not shared).
        write_signal_file(&ctx.cfg, name, now, json!({}))?;
    }
    if ctx.output.json {
        let c = Committed::from(&commit);
        ctx.print_json(&Signalled {
            signal: name.to_string(),
            epoch: now,
            revision: c.revision,
            backup: c.backup,
        });
    }
    Ok(Code::Success)
}

/// What `migrate` did.
#[derive(Serialize)]
struct Migrated {
    /// Whether the document changed (false: it was current).
    migrated: bool,
    schema_version: &'static str,
    changes: Vec<String>,
    revision: Option<u64>,
    backup: Option<String>,
}

/// `migrate`: upgrades an older document to the current schema version.
pub fn migrate(ctx: &Ctx) -> Result<Code> {
    let done = ctx.audited_state("migrate", |detail| {
        let owner = ctx.owner_identity()?;
        let mut changes = Vec::new();
        let commit = ctx.backend.state().transact(
            ctx.access(owner.as_ref()),
            "migrate",
            &mut |old| {
                let old = old.ok_or_else(|| ctx.backend.state().missing())?;
                Ok(document::migrate(old)?.map(|(new, c)| {
                    changes = c;
                    new
                }))
            },
            &mut |_| {},
        )?;
        let mut done = Migrated {
            migrated: false,
            schema_version: document::SCHEMA_VERSION,
            changes: Vec::new(),
            revision: None,
            backup: None,
        };
        if let Some(commit) = commit {
            detail["changes"] = json!(changes);
            detail["revision"] = json!(commit.revision);
            let c = Committed::from(&commit);
            done = Migrated {
                migrated: true,
                changes,
                revision: Some(c.revision),
                backup: c.backup,
                ..done
            };
        }
        Ok(done)
    })?;
    if ctx.output.json {
        ctx.print_json(&done);
    } else if let Some(revision) = done.revision {
        let mut out = String::new();
        for c in &done.changes {
            out.push_str(c);
            out.push('\n');
        }
        out.push_str(&format!(
            "migrated to schema version {} (revision {revision}; previous version backed up)\n",
            document::SCHEMA_VERSION
        ));
        cli::print(&out);
    } else {
        cli::println(&format!(
            "already at schema version {}",
            document::SCHEMA_VERSION
        ));
    }
    Ok(Code::Success)
}
