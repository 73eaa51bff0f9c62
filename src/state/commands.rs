//! What the `state-manager` subcommands share below the command layer:
//! parsing JSON arguments, the paths `set`/`append`/`del`/`mv` may change,
//! moving a value (`mv`), keeping a corrupt state aside, finding the newest
//! valid backup, restoring one, and the signal files. Nothing here prints
//! on stdout; the subcommands themselves are in `crate::cmd::state`.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::backup::{self, Backup};
use super::document;
use super::path;
use super::schema;
use super::store::{self, Store, Txn};
use crate::config::{Config, MAX_INPUT_BYTES};
use crate::durable::{self, Durability};
use crate::error::{Error, Result};
use crate::exit::Code;

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
pub fn value_arg(text: &str, as_string: bool) -> Result<Value> {
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
pub fn non_root_path(p: &str) -> Result<Vec<path::Seg>> {
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

/// A path `del` or `mv` (`verb`) may change: as [`non_root_path`], with
/// the verb in the refusal of `.`.
pub fn edited_path(p: &str, verb: &str) -> Result<Vec<path::Seg>> {
    if path::parse(p)?.is_empty() {
        return Err(
            Error::validation(format!("cannot {verb} the whole document"))
                .hint("name a path below it, such as .context.NAME; 'state-manager write' replaces the document"),
        );
    }
    non_root_path(p)
}

/// The refusal of a change to `metadata.*`, which the toolkit sets itself.
pub fn toolkit_owned(what: &str) -> Error {
    Error::validation(format!(
        "cannot change {what}: metadata.* belongs to the toolkit"
    ))
    .because("the toolkit sets created, lastModified, revision and checksum on every write")
    .hint("keep your own fields elsewhere, e.g. .context.NAME; nothing was changed")
}

/// The refusal of `del`/`mv` of a path that holds nothing (exit 1, as
/// `terraform state rm` of a missing address).
pub fn no_value(segs: &[path::Seg]) -> Error {
    Error::general(format!(
        "no value at {}; nothing changed",
        path::display(segs)
    ))
    .hint("check the path with 'state-manager read'; 'del --missing-ok' accepts a missing path")
}

/// `mv`: moves the value at `from` to `to` in `doc`; returns whether `to`
/// held a value that was replaced. `from` is removed first (as `del`), then
/// `to` is set (as `set`) in what remains, so `to` names a place in the
/// document without `from`. Refused, `doc` then left as it was: `to` the
/// same place as `from` or inside it (exit 4), nothing at `from` (exit 1),
/// a value at `to` unless `force` (exit 4), a `to` that cannot be set
/// (exit 4). After a refusal `doc` may be half changed: callers edit a copy
/// (a transaction's next document) and drop it.
pub fn move_value(
    doc: &mut Value,
    from: &[path::Seg],
    to: &[path::Seg],
    force: bool,
) -> Result<bool> {
    let (f, t) = (path::resolve(doc, from), path::resolve(doc, to));
    if t.starts_with(&f) {
        let why = if t.len() == f.len() {
            "FROM and TO are the same place".to_string()
        } else {
            format!("{} is inside {}", path::display(to), path::display(from))
        };
        return Err(Error::validation(format!(
            "cannot move {} to {}",
            path::display(from),
            path::display(to)
        ))
        .because(why)
        .hint("name a TO outside FROM; nothing was changed"));
    }
    let value = path::remove(doc, from)?.ok_or_else(|| no_value(from))?;
    let replaced = path::get(doc, to).is_some();
    if replaced && !force {
        return Err(
            Error::validation(format!("{} already holds a value", path::display(to))).hint(
                "pass --force to replace it, or 'state-manager del' it first; nothing was changed",
            ),
        );
    }
    path::set(doc, to, value_at(to, value)?)?;
    Ok(replaced)
}

/// A value for `segs`: exit 4 when it would nest deeper than
/// [`document::MAX_DEPTH`] in the document (the path counts).
pub fn value_at(segs: &[path::Seg], value: Value) -> Result<Value> {
    document::check_depth(&value, segs.len(), "the value at that path")?;
    Ok(value)
}

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
    newest_valid(backup::list(cfg)?, pattern, |b| {
        durable::read_limited(&b.path, MAX_INPUT_BYTES)
    })
}

/// [`newest_valid_backup`] among `backups` (newest first), each read by `read`.
pub fn newest_valid(
    backups: Vec<Backup>,
    pattern: Option<&str>,
    read: impl Fn(&Backup) -> Result<Vec<u8>>,
) -> Result<Option<(Backup, Value)>> {
    for b in backups {
        if pattern.is_some_and(|p| !b.name.contains(p)) {
            continue;
        }
        let Ok(bytes) = read(&b) else {
            continue;
        };
        let Ok(doc) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        // A backup changed outside the toolkit is never restored silently.
        let sealed = !matches!(document::check_seal(&doc), document::Seal::Mismatch { .. });
        if sealed && schema::violations(&doc).is_empty() {
            return Ok(Some((b, doc)));
        }
    }
    Ok(None)
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
            // The command says so, with its own name (`detail` tells it where).
            detail["corrupt_kept_at"] = json!(aside.display().to_string());
            txn.commit_over_corrupt(doc, "recover")
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::Code;

    fn p(t: &str) -> Vec<path::Seg> {
        path::parse(t).unwrap()
    }

    #[test]
    fn move_value_removes_then_sets_and_refuses_what_mv_refuses() {
        let base = json!({"a": {"x": 1}, "b": 2, "l": ["p", "q", "r"]});
        let mut d = base.clone();
        assert!(!move_value(&mut d, &p(".a.x"), &p(".c.y"), false).unwrap());
        assert_eq!(
            d,
            json!({"a": {}, "b": 2, "l": ["p", "q", "r"], "c": {"y": 1}})
        );
        let mut d = base.clone();
        assert!(move_value(&mut d, &p(".b"), &p(".a"), true).unwrap());
        assert_eq!(d, json!({"a": 2, "l": ["p", "q", "r"]}));
        // TO is set in what remains after FROM is removed.
        let mut d = base.clone();
        move_value(&mut d, &p(".l[0]"), &p(".l[2]"), false).unwrap();
        assert_eq!(d["l"], json!(["q", "r", "p"]));
        let code = |from: &str, to: &str, force: bool| {
            let mut d = base.clone();
            move_value(&mut d, &p(from), &p(to), force)
                .unwrap_err()
                .code()
        };
        assert_eq!(code(".nope", ".z", false), Code::GeneralError);
        assert_eq!(code(".b", ".a", false), Code::ValidationFailed);
        assert_eq!(code(".a", ".a.x2", true), Code::ValidationFailed);
        assert_eq!(code(".a", ".a", true), Code::ValidationFailed);
        assert_eq!(code(".l[2]", ".l[-1]", true), Code::ValidationFailed);
        assert_eq!(code(".a", ".b.c", true), Code::ValidationFailed);
    }
}
