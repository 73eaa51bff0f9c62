//! The `state-manager` subcommands: one function each, printing their result
//! on stdout and returning the exit code, with one audit event per call.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::backup::{self, Backup, Retention};
use super::document;
use super::integrity;
use super::merge::merge_patch;
use super::path;
use super::schema;
use super::store::{self, Store, Txn};
use crate::audit::event::ms;
use crate::cmd as cli;
use crate::config::{Config, MAX_INPUT_BYTES};
use crate::durable::{self, Durability};
use crate::error::{Error, Result};
use crate::exit::Code;
use crate::lock::{self};

const TOOL: &str = "state-manager";

pub use crate::cmd::Ctx;

impl Ctx {
    /// Runs `f` as operation `op`, recording one audit event.
    pub(crate) fn audited_state<T>(
        &self,
        op: &str,
        f: impl FnOnce(&mut Value) -> Result<T>,
    ) -> Result<T> {
        self.audited(op, self.state_target(), f)
    }

    /// A read-modify-write under the `state` lock: `change` edits the current
    /// document; the result is committed as the next revision.
    fn update(&self, op: &str, change: impl FnOnce(&mut Value) -> Result<()>) -> Result<u64> {
        self.audited_state(op, |detail| {
            let store = self.store()?;
            let owner = self.owner_identity()?;
            let txn = store.begin(owner.as_ref())?;
            detail["lock_wait_ms"] = json!(ms(txn.waited));
            let old = txn.load()?;
            let mut new = old.clone();
            change(&mut new)?;
            let commit = txn.commit(Some(&old), new, op)?;
            detail["revision"] = json!(commit.revision);
            Ok(commit.revision)
        })
    }
}

/// Parses a JSON argument (exit 4 with where it broke).
pub fn parse_json_arg(text: &str, what: &str) -> Result<Value> {
    if text.len() as u64 > MAX_INPUT_BYTES {
        return Err(durable::too_large(text.len() as u64, MAX_INPUT_BYTES));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| {
        if e.to_string().contains("recursion limit") {
            return Error::validation(format!(
                "{what} nests more than the {} levels the toolkit accepts",
                document::MAX_DEPTH
            ))
            .hint("store flatter data; nothing was changed");
        }
        Error::validation(format!("{what} is not valid JSON"))
            .because(e)
            .hint("quote strings as JSON, e.g. '\"text\"', or pass --string")
    })?;
    document::check_depth(&value, 0, what)?;
    Ok(value)
}

/// A value argument: JSON, or a plain string with `--string`.
fn value_arg(text: &str, as_string: bool) -> Result<Value> {
    if as_string {
        if text.len() as u64 > MAX_INPUT_BYTES {
            return Err(durable::too_large(text.len() as u64, MAX_INPUT_BYTES));
        }
        Ok(Value::String(text.to_owned()))
    } else {
        parse_json_arg(text, "the value")
    }
}

/// A path that `set`/`append` may change: not the document itself, and not
/// the toolkit-owned `metadata` (see [`document`]).
fn non_root_path(p: &str) -> Result<Vec<path::Seg>> {
    let segs = path::parse(p)?;
    if segs.is_empty() {
        return Err(
            Error::validation("cannot replace the whole document this way")
                .hint("use 'state-manager write' to replace the document"),
        );
    }
    if segs[0] == path::Seg::Key("metadata".into()) {
        return Err(toolkit_owned(&path::display(&segs)));
    }
    Ok(segs)
}

/// The refusal of a change to `metadata.*`, which the toolkit sets itself.
fn toolkit_owned(what: &str) -> Error {
    Error::validation(format!(
        "cannot change {what}: metadata.* belongs to the toolkit"
    ))
    .because("the toolkit sets created, lastModified, revision and checksum on every write")
    .hint("keep your own fields elsewhere, e.g. .context.NAME; nothing was changed")
}

/// A value for `segs`: exit 4 when it would nest deeper than
/// [`document::MAX_DEPTH`] in the document (the path counts).
fn value_at(segs: &[path::Seg], value: Value) -> Result<Value> {
    document::check_depth(&value, segs.len(), "the value at that path")?;
    Ok(value)
}

/// `init`: creates the state, or repairs a corrupt one from backups.
pub fn init(ctx: &Ctx) -> Result<Code> {
    ctx.audited_state("init", |detail| {
        if !ctx.cfg.root.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&ctx.cfg.root)
                .map_err(|e| Error::io(e, "cannot create state folder", &ctx.cfg.root))?;
        }
        let store = ctx.store()?;
        let owner = ctx.owner_identity()?;
        let txn = store.begin(owner.as_ref())?;
        backup::ensure_dir(&ctx.cfg)?;
        let Some(bytes) = store.load_bytes()? else {
            let commit = txn.commit(None, document::fresh(), "init")?;
            detail["revision"] = json!(commit.revision);
            cli::println(&format!("initialized {}", store.path().display()));
            return Ok(Code::Success);
        };
        match store::parse_state(&bytes, store.path()) {
            Ok(doc) => {
                store::check_schema(&doc).map_err(|e| {
                    e.hint("the state exists but is not valid: run 'state-manager migrate' (older documents) or 'state-manager repair'")
                })?;
                cli::println(&format!(
                    "already initialized: {} (revision {})",
                    store.path().display(),
                    document::revision(&doc)
                ));
                Ok(Code::Success)
            }
            Err(_) => {
                let aside = keep_aside(store.path())?;
                detail["corrupt_kept_at"] = json!(aside.display().to_string());
                eprintln!("{TOOL}: the state did not parse; kept it at {}", aside.display());
                match newest_valid_backup(&ctx.cfg, None)? {
                    Some((b, doc)) => {
                        let commit = txn.commit_over_corrupt(doc, "init-recover")?;
                        detail["recovered_from"] = json!(b.name);
                        detail["revision"] = json!(commit.revision);
                        eprintln!("{TOOL}: restored the newest valid backup {}", b.name);
                    }
                    None => {
                        let commit = txn.commit_over_corrupt(document::fresh(), "init")?;
                        detail["revision"] = json!(commit.revision);
                        eprintln!("{TOOL}: no valid backup found; started a fresh state");
                    }
                }
                cli::println(&format!("initialized {}", store.path().display()));
                Ok(Code::Success)
            }
        }
    })
}

use std::os::unix::fs::DirBuilderExt;

/// Keeps a corrupt state file aside as `NAME.corrupt-YYYYMMDDTHHMMSSZ[.N]`
/// (a hard link: the live name is replaced afterwards, atomically). Only a
/// regular file is ever kept aside (and so replaced): a device, FIFO or
/// socket is refused with exit 6 — it is not ours to replace.
pub fn keep_aside(path: &Path) -> Result<PathBuf> {
    let meta = fs::symlink_metadata(path).map_err(|e| Error::io(e, "cannot inspect", path))?;
    if !meta.is_file() {
        return Err(durable::not_regular(path, meta.file_type()));
    }
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    for seq in 0..1000 {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".corrupt-{stamp}"));
        if seq > 0 {
            name.push(format!(".{seq}"));
        }
        let aside = PathBuf::from(name);
        match fs::hard_link(path, &aside) {
            Ok(()) => {
                let dir = aside
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                durable::sync_dir(dir)?;
                return Ok(aside);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(e, "cannot keep the corrupt state aside", &aside)),
        }
    }
    Err(Error::general("too many corrupt copies in one second").with_path(path))
}

/// The newest backup (whose name contains `pattern`, if given) that parses,
/// satisfies the schema and whose checksum, if it has one, matches.
pub fn newest_valid_backup(cfg: &Config, pattern: Option<&str>) -> Result<Option<(Backup, Value)>> {
    for b in backup::list(cfg)? {
        if pattern.is_some_and(|p| !b.name.contains(p)) {
            continue;
        }
        let Ok(bytes) = durable::read_limited(&b.path, MAX_INPUT_BYTES) else {
            continue;
        };
        let Ok(doc) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        // A backup changed outside the toolkit is never restored silently.
        let sealed = !matches!(
            integrity::check_seal(&doc),
            integrity::Seal::Mismatch { .. }
        );
        if sealed && schema::violations(&doc).is_empty() {
            return Ok(Some((b, doc)));
        }
    }
    Ok(None)
}

/// `read [PATH] [--raw]`: the document or one value.
pub fn read(ctx: &Ctx, path_expr: Option<&str>, raw: bool) -> Result<Code> {
    ctx.audited_state("read", |_| {
        let segs = path::parse(path_expr.unwrap_or("."))?;
        let store = ctx.store()?;
        let bytes = store.load_bytes()?.ok_or_else(|| store.missing())?;
        if segs.is_empty() {
            // The whole document: check that it parses without building it,
            // then print the bytes as stored (the toolkit writes them pretty).
            serde_json::from_slice::<serde::de::IgnoredAny>(&bytes)
                .map_err(|_| store::parse_state(&bytes, store.path()).unwrap_err())?;
            let text = String::from_utf8_lossy(&bytes);
            cli::println(text.trim_end());
            return Ok(Code::Success);
        }
        let doc = store::parse_state(&bytes, store.path())?;
        let value = path::get(&doc, &segs).unwrap_or(&Value::Null);
        match value {
            Value::String(s) if raw => cli::println(s),
            v => cli::println(&serde_json::to_string_pretty(v).expect("JSON serializes")),
        }
        Ok(Code::Success)
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
    ctx.audited_state("write", |detail| {
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
        let store = ctx.store()?;
        let owner = ctx.owner_identity()?;
        let txn = store.begin(owner.as_ref())?;
        detail["lock_wait_ms"] = json!(ms(txn.waited));
        let old = txn.load_opt()?;
        let actual = old.as_ref().map(document::revision).unwrap_or(0);
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
        let commit = txn.commit(old.as_ref(), new, reason.unwrap_or("write"))?;
        detail["revision"] = json!(commit.revision);
        Ok(Code::Success)
    })
}

/// `set PATH VALUE`
pub fn set(ctx: &Ctx, path_expr: &str, value: &str, as_string: bool) -> Result<Code> {
    let segs = non_root_path(path_expr);
    let value = value_arg(value, as_string);
    ctx.update("set", |doc| {
        let segs = segs?;
        path::set(doc, &segs, value_at(&segs, value?)?)
    })?;
    Ok(Code::Success)
}

/// `append PATH VALUE`
pub fn append(ctx: &Ctx, path_expr: &str, value: &str, as_string: bool) -> Result<Code> {
    let segs = non_root_path(path_expr);
    let value = value_arg(value, as_string);
    ctx.update("append", |doc| {
        let (segs, value) = (segs?, value?);
        // An element sits one level below the array at `segs`.
        document::check_depth(&value, segs.len() + 1, "the appended value")?;
        path::append(doc, &segs, value)
    })?;
    Ok(Code::Success)
}

/// `merge PATCH`: RFC 7396 merge patch.
pub fn merge(ctx: &Ctx, patch: &str) -> Result<Code> {
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
    ctx.update("merge", |doc| {
        merge_patch(doc, &patch?);
        Ok(())
    })?;
    Ok(Code::Success)
}

/// `signal NAME`: records `signals.NAME` = now and `.signals/NAME.json`.
pub fn signal(ctx: &Ctx, name: &str) -> Result<Code> {
    let valid = lock::name::validate(name).map_err(|_| {
        Error::validation(format!("bad signal name '{}'", name.escape_debug()))
            .hint("use 1-128 letters, digits, '.', '_' or '-', not starting with '.'")
    });
    let now = document::now_epoch();
    ctx.update("signal", |doc| {
        valid?;
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
    write_signal_file(&ctx.cfg, name, now, json!({}))?;
    Ok(Code::Success)
}

/// Writes `.signals/NAME.json`: the signal, its epoch time `now`, the time
/// in RFC 3339, this pid, and the fields of `extra`. Atomic, not fsynced: it
/// mirrors `signals.NAME` of the state, which is the durable record.
pub fn write_signal_file(cfg: &Config, name: &str, now: f64, extra: Value) -> Result<()> {
    let dir = cfg.signals_dir();
    durable::ensure_dir(&dir, &cfg.root)?;
    let mut body = json!({
        "signal": name,
        "timestamp": now,
        "time": document::now_rfc3339(),
        "pid": std::process::id(),
    });
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    let mut bytes = serde_json::to_vec_pretty(&body).expect("JSON serializes");
    bytes.push(b'\n');
    durable::replace(
        &dir.join(format!("{name}.json")),
        &bytes,
        Durability::Atomic,
    )
}

/// `validate [--json]`: 0 valid, 3 unparseable, 4 schema violations.
pub fn validate(ctx: &Ctx, as_json: bool) -> Result<Code> {
    ctx.audited_state("validate", |detail| {
        let store = ctx.store()?;
        let doc = store.load()?;
        let v = schema::violations(&doc);
        detail["violations"] = json!(v.len());
        if as_json {
            cli::print_json(&json!({
                "valid": v.is_empty(),
                "path": store.path().display().to_string(),
                "violations": v.iter().map(|x| json!({"pointer": x.pointer, "message": x.message})).collect::<Vec<_>>(),
            }));
        } else {
            for x in &v {
                cli::println(&x.to_string());
            }
        }
        if v.is_empty() {
            if !as_json {
                cli::println(&format!("valid: {}", store.path().display()));
            }
            Ok(Code::Success)
        } else {
            Err(Error::validation(format!("the state breaks the schema in {} place(s)", v.len()))
                .with_path(store.path())
                .hint("fix them with 'state-manager set', or run 'state-manager migrate' for an older document"))
        }
    })
}

/// `backup [REASON]`: a backup of the current state.
pub fn backup(ctx: &Ctx, reason: Option<&str>) -> Result<Code> {
    ctx.audited_state("backup", |detail| {
        let store = ctx.store()?;
        // A backup that would not restore is no backup.
        store.load()?;
        let made = backup::create(&ctx.cfg, store.path(), reason.unwrap_or("manual"))?
            .ok_or_else(|| store.missing())?;
        detail["backup"] = json!(made.display().to_string());
        let keep = Retention {
            keep: ctx.retention.keep.max(1),
            ..ctx.retention
        };
        if let Err(e) = backup::prune(&ctx.cfg, keep) {
            eprintln!("{TOOL}: warning: cannot prune backups: {e}");
        }
        cli::println(&made.display().to_string());
        Ok(Code::Success)
    })
}

/// Whether a backup parses, satisfies the schema and its checksum (if any) matches.
fn backup_is_valid(b: &Backup) -> bool {
    integrity::check_document_file(&b.path, "backup")
        .problems
        .is_empty()
}

/// `list-backups [--json]`
pub fn list_backups(ctx: &Ctx, as_json: bool) -> Result<Code> {
    let backups = backup::list(&ctx.cfg)?;
    if as_json {
        let items: Vec<Value> = backups
            .iter()
            .map(|b| {
                json!({
                    "name": b.name,
                    "path": b.path.display().to_string(),
                    "made": b.made.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "size": b.size,
                    "valid": backup_is_valid(b),
                })
            })
            .collect();
        cli::print_json(&Value::Array(items));
    } else if backups.is_empty() {
        cli::println(&format!(
            "no backups in {}",
            ctx.cfg.backups_dir().display()
        ));
    } else {
        let width = backups
            .iter()
            .map(|b| b.name.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let mut out = format!("{:<width$}  {:>8}  {:<20}  VALID\n", "NAME", "SIZE", "MADE");
        for b in &backups {
            out.push_str(&format!(
                "{:<width$}  {:>8}  {:<20}  {}\n",
                b.name,
                b.size,
                b.made.format("%Y-%m-%d %H:%M:%SZ"),
                if backup_is_valid(b) { "yes" } else { "NO" }
            ));
        }
        cli::print(&out);
    }
    Ok(Code::Success)
}

/// `recover [PATTERN]`: restores the newest valid (matching) backup.
pub fn recover(ctx: &Ctx, pattern: Option<&str>) -> Result<Code> {
    ctx.audited_state("recover", |detail| {
        let store = ctx.store()?;
        let owner = ctx.owner_identity()?;
        let txn = store.begin(owner.as_ref())?;
        let Some((b, doc)) = newest_valid_backup(&ctx.cfg, pattern)? else {
            let what = match pattern {
                Some(p) => format!("no valid backup matches '{p}'"),
                None => "no valid backup to recover from".to_string(),
            };
            return Err(Error::corruption(what)
                .with_path(ctx.cfg.backups_dir())
                .hint(
                    "see 'state-manager list-backups'; 'state-manager init' starts a fresh state",
                ));
        };
        detail["recovered_from"] = json!(b.name);
        let commit = recover_into(&txn, &store, doc, detail)?;
        detail["revision"] = json!(commit.revision);
        cli::println(&format!(
            "recovered {} from {} (revision {})",
            store.path().display(),
            b.name,
            commit.revision
        ));
        Ok(Code::Success)
    })
}

/// Replaces the state with `doc`, keeping the current version first: as a
/// backup when it parses, aside as `.corrupt-*` when it does not.
pub(crate) fn recover_into(
    txn: &Txn<'_, '_>,
    store: &Store<'_>,
    doc: Value,
    detail: &mut Value,
) -> Result<store::Commit> {
    match txn.load_opt() {
        Ok(current) => txn.commit(current.as_ref(), doc, "pre-recover"),
        Err(e) if e.code() == Code::StateCorruption => {
            let aside = keep_aside(store.path())?;
            detail["corrupt_kept_at"] = json!(aside.display().to_string());
            eprintln!("{TOOL}: kept the corrupt state at {}", aside.display());
            txn.commit_over_corrupt(doc, "recover")
        }
        Err(e) => Err(e),
    }
}

/// `migrate`: upgrades an older document to the current schema version.
pub fn migrate(ctx: &Ctx) -> Result<Code> {
    ctx.audited_state("migrate", |detail| {
        let store = ctx.store()?;
        let owner = ctx.owner_identity()?;
        let txn = store.begin(owner.as_ref())?;
        let old = txn.load()?;
        match document::migrate(&old)? {
            None => {
                cli::println(&format!(
                    "already at schema version {}",
                    document::SCHEMA_VERSION
                ));
                Ok(Code::Success)
            }
            Some((new, changes)) => {
                let commit = txn.commit(Some(&old), new, "migrate")?;
                detail["changes"] = json!(changes);
                detail["revision"] = json!(commit.revision);
                for c in &changes {
                    cli::println(c);
                }
                cli::println(&format!(
                    "migrated to schema version {} (revision {}; previous version backed up)",
                    document::SCHEMA_VERSION,
                    commit.revision
                ));
                Ok(Code::Success)
            }
        }
    })
}

/// Live lock records in `.locks/`, by name.
fn live_locks(cfg: &Config) -> Vec<String> {
    let Ok(entries) = fs::read_dir(cfg.locks_dir()) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let name = n.strip_suffix(".lock")?.to_owned();
            let rec = lock::record::load(&e.path()).ok()??;
            rec.is_held().then_some(name)
        })
        .collect();
    names.sort();
    names
}

/// `status [--json]`: a summary; exit 0 valid, 1 missing, 3 corrupt, 4 invalid.
pub fn status(ctx: &Ctx, as_json: bool) -> Result<Code> {
    let store = ctx.store()?;
    let bytes = store.load_bytes()?;
    let parsed = bytes.as_ref().map(|b| store::parse_state(b, store.path()));
    let doc = parsed.as_ref().and_then(|p| p.as_ref().ok());
    let violations = doc.map(schema::violations).unwrap_or_default();
    let (state, code) = match (&bytes, doc) {
        (None, _) => ("missing", Code::GeneralError),
        (Some(_), None) => ("corrupt", Code::StateCorruption),
        (Some(_), Some(_)) if !violations.is_empty() => ("invalid", Code::ValidationFailed),
        _ => ("valid", Code::Success),
    };
    let get = |p: &str| {
        doc.and_then(|d| d.pointer(p))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let backups = backup::list(&ctx.cfg)?.len();
    let locks = live_locks(&ctx.cfg);
    let report = json!({
        "path": store.path().display().to_string(),
        "state": state,
        "size": bytes.as_ref().map(Vec::len),
        "schemaVersion": get("/schemaVersion"),
        "phase": get("/phase"),
        "lastModified": get("/metadata/lastModified"),
        "revision": get("/metadata/revision"),
        "valid": state == "valid",
        "violations": violations.len(),
        "backups": backups,
        "liveLocks": locks,
        "degradedMode": get("/degradedMode/enabled").as_bool().unwrap_or(false),
        "degradedReason": get("/degradedMode/reason"),
    });
    if as_json {
        cli::print_json(&report);
    } else {
        let s = |v: &Value| match v {
            Value::String(s) => s.clone(),
            Value::Null => "-".into(),
            other => other.to_string(),
        };
        let degraded = if report["degradedMode"] == json!(true) {
            format!("ON ({})", s(&report["degradedReason"]))
        } else {
            "off".into()
        };
        let locks_text = if locks.is_empty() {
            "none".to_string()
        } else {
            locks.join(", ")
        };
        let text = format!(
            "state file:     {}\nstate:          {}\nsize:           {}\nschema version: {}\nphase:          {}\nlast modified:  {}\nrevision:       {}\nbackups:        {}\nlive locks:     {}\ndegraded mode:  {}\n",
            report["path"].as_str().unwrap_or_default(),
            state,
            bytes
                .as_ref()
                .map_or("-".into(), |b| format!("{} bytes", b.len())),
            s(&report["schemaVersion"]),
            s(&report["phase"]),
            s(&report["lastModified"]),
            s(&report["revision"]),
            backups,
            locks_text,
            degraded
        );
        cli::print(&text);
    }
    if code == Code::GeneralError {
        eprintln!(
            "{TOOL}: no state file at {} — run 'state-manager init'",
            store.path().display()
        );
    }
    Ok(code)
}
