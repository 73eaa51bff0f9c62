//! `repair`: fixes what can be fixed in the state without guessing content.
//!
//! What it fixes, each change printed: a missing required field gets its
//! default (`schemaVersion` "1.0", `phase` "pre-init", empty `completedTasks`
//! and `signals`, `degradedMode` off, `metadata`); an invalid timestamp
//! (`metadata.created`/`lastModified`, `degradedMode.timestamp`, a signal that
//! is not a non-negative number) becomes now; a toolkit-owned field of the
//! wrong type (`schemaVersion`, `metadata`, `metadata.revision`,
//! `degradedMode.*`) is reset; a missing or mismatched `metadata.checksum`
//! is recorded anew (the content is kept: the previous version stays in the
//! backup). `metadata.revision`, when unusable, is reset to the highest
//! revision among the backups, so the revision never goes back.
//!
//! What it never does: drop a key it does not know, or invent user content.
//! A user field of the wrong type (`phase: 5`, `completedTasks: "a"`) is
//! listed as unrepairable and nothing is written (exit 4). A state that does
//! not parse, or is not a JSON object, is handed to `recover`: the newest
//! valid backup is restored and the damaged file kept aside.
//!
//! The previous version is backed up before anything is written (the
//! commit's own hard-link backup, reason `pre-repair`); `--dry-run` prints
//! what would change and changes nothing (it does not even take the lock).

use serde_json::{Map, Value, json};

use super::backup;
use super::commands;
use super::document;
use super::integrity::{self, Seal};
use super::schema;
use super::store::{Store, Txn};
use crate::config::{Config, MAX_INPUT_BYTES};
use crate::durable;
use crate::error::{Error, Result};

/// What `repair` did or would do.
#[derive(Debug, Default, serde::Serialize)]
pub struct Outcome {
    pub path: String,
    pub dry_run: bool,
    /// Whether a new revision was written.
    pub changed: bool,
    pub changes: Vec<String>,
    /// Problems left that only a person can fix.
    pub unfixable: Vec<String>,
    /// The backup restored when the state did not parse.
    pub recovered_from: Option<String>,
    pub revision: Option<u64>,
    pub backup: Option<String>,
}

/// A value shown in a change message, shortened.
fn shown(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

/// Whether `v` is a timestamp the schema accepts (the schema is the judge,
/// so repair and validation never disagree).
fn is_datetime(v: &Value) -> bool {
    let mut probe = document::fresh();
    probe["metadata"]["created"] = v.clone();
    !schema::violations(&probe)
        .iter()
        .any(|x| x.pointer == "/metadata/created")
}

fn is_version(s: &str) -> bool {
    s.split_once('.').is_some_and(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && a.bytes().all(|c| c.is_ascii_digit())
            && b.bytes().all(|c| c.is_ascii_digit())
    })
}

/// The highest `metadata.revision` among the backups that parse.
fn highest_backup_revision(cfg: &Config) -> u64 {
    backup::list(cfg)
        .unwrap_or_default()
        .iter()
        .filter_map(|b| durable::read_limited(&b.path, MAX_INPUT_BYTES).ok())
        .filter_map(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .map(|d| document::revision(&d))
        .max()
        .unwrap_or(0)
}

/// Repairs the object `top` in place (see the module docs); returns each
/// change. Exit 4 for a `schemaVersion` newer than this toolkit's.
pub fn repair_document(top: &mut Map<String, Value>, base_revision: u64) -> Result<Vec<String>> {
    let fresh = document::fresh();
    let now = document::now_rfc3339();
    let epoch = document::now_epoch();
    let mut changes = Vec::new();

    match top.get("schemaVersion") {
        None => {
            top.insert("schemaVersion".into(), fresh["schemaVersion"].clone());
            changes.push(format!(
                "added missing schemaVersion = {}",
                fresh["schemaVersion"]
            ));
        }
        Some(Value::String(s)) if is_version(s) => {
            let major: u64 = s.split('.').next().unwrap_or("0").parse().unwrap_or(0);
            if major > 1 {
                return Err(Error::validation(format!(
                    "schemaVersion \"{s}\" is newer than this toolkit's {}",
                    document::SCHEMA_VERSION
                ))
                .hint("upgrade wfstate; nothing was changed"));
            }
        }
        Some(other) => {
            changes.push(format!(
                "reset schemaVersion {} (not a version like \"1.0\") to {}",
                shown(other),
                fresh["schemaVersion"]
            ));
            top.insert("schemaVersion".into(), fresh["schemaVersion"].clone());
        }
    }

    for key in ["phase", "completedTasks", "signals"] {
        if !top.contains_key(key) {
            top.insert(key.into(), fresh[key].clone());
            changes.push(format!("added missing {key} = {}", fresh[key]));
        }
    }

    if let Some(Value::Object(signals)) = top.get_mut("signals") {
        for (name, v) in signals.iter_mut() {
            if !v.as_f64().is_some_and(|f| f >= 0.0) {
                changes.push(format!(
                    "replaced invalid timestamp signals.{name} = {} with now ({epoch})",
                    shown(v)
                ));
                *v = json!(epoch);
            }
        }
    }

    match top.get("metadata") {
        None => {
            top.insert("metadata".into(), json!({}));
            changes.push("added missing metadata".into());
        }
        Some(Value::Object(_)) => {}
        Some(other) => {
            changes.push(format!(
                "reset metadata {} (not an object) to a new one",
                shown(other)
            ));
            top.insert("metadata".into(), json!({}));
        }
    }
    let meta = top
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .expect("made an object above");
    for key in ["created", "lastModified"] {
        match meta.get(key) {
            None => {
                meta.insert(key.into(), Value::String(now.clone()));
                changes.push(format!("added missing metadata.{key} = now ({now})"));
            }
            Some(v) if !is_datetime(v) => {
                changes.push(format!(
                    "replaced invalid timestamp metadata.{key} = {} with now ({now})",
                    shown(v)
                ));
                meta.insert(key.into(), Value::String(now.clone()));
            }
            Some(_) => {}
        }
    }
    if let Some(v) = meta.get("revision")
        && v.as_u64().is_none_or(|n| n > document::MAX_REVISION)
    {
        changes.push(format!(
            "reset metadata.revision {} (not a whole number from 0) to {base_revision}, the highest among the backups",
            shown(v)
        ));
        meta.insert("revision".into(), json!(base_revision));
    }

    match top.get("degradedMode") {
        None => {
            top.insert("degradedMode".into(), fresh["degradedMode"].clone());
            changes.push("added missing degradedMode (off)".into());
        }
        Some(Value::Object(_)) => {}
        Some(other) => {
            changes.push(format!(
                "reset degradedMode {} (not an object) to off",
                shown(other)
            ));
            top.insert("degradedMode".into(), fresh["degradedMode"].clone());
        }
    }
    let dm = top
        .get_mut("degradedMode")
        .and_then(Value::as_object_mut)
        .expect("made an object above");
    let reset = |dm: &mut Map<String, Value>, key: &str, ok: bool, to: Value, why: &str| {
        if ok {
            return None;
        }
        let was = dm.get(key).map_or("missing".into(), shown);
        let msg = format!("reset degradedMode.{key} {was} ({why}) to {to}");
        dm.insert(key.into(), to);
        Some(msg)
    };
    let enabled_ok = dm.get("enabled").is_some_and(Value::is_boolean);
    changes.extend(reset(
        dm,
        "enabled",
        enabled_ok,
        json!(false),
        "not true or false",
    ));
    let reason_ok = dm.get("reason").is_none_or(Value::is_string);
    changes.extend(reset(dm, "reason", reason_ok, json!(""), "not a string"));
    let features_ok = dm
        .get("disabledFeatures")
        .is_none_or(|f| f.as_array().is_some_and(|a| a.iter().all(Value::is_string)));
    changes.extend(reset(
        dm,
        "disabledFeatures",
        features_ok,
        json!([]),
        "not a list of strings",
    ));
    if let Some(ts) = dm.get("timestamp")
        && *ts != json!("")
        && !is_datetime(ts)
    {
        changes.push(format!(
            "replaced invalid timestamp degradedMode.timestamp = {} with now ({now})",
            shown(ts)
        ));
        dm.insert("timestamp".into(), Value::String(now.clone()));
    }
    Ok(changes)
}

/// `repair [--dry-run] [--json]`: see the module docs. Exit 0 repaired or
/// nothing to do, 1 no state, 3 does not parse and no valid backup, 4
/// problems only a person can fix (nothing written).
pub fn repair(
    cfg: &Config,
    store: &Store<'_>,
    txn: Option<&Txn<'_, '_>>,
    detail: &mut Value,
) -> Result<Outcome> {
    {
        let dry_run = txn.is_none();
        detail["dry_run"] = json!(dry_run);
        let bytes = store.load_bytes()?.ok_or_else(|| store.missing())?;
        let mut out = Outcome {
            path: store.path().display().to_string(),
            dry_run,
            ..Outcome::default()
        };
        let parsed: std::result::Result<Value, String> =
            serde_json::from_slice(&bytes).map_err(|e| e.to_string());
        let old = match parsed {
            Ok(doc @ Value::Object(_)) => doc,
            other => {
                let why = match other {
                    Err(e) => format!("the state does not parse ({e})"),
                    Ok(v) => format!("the state is {}, not an object", super::path::type_name(&v)),
                };
                let Some((b, doc)) = commands::newest_valid_backup(cfg, None)? else {
                    return Err(
                        Error::corruption(format!("{why} and no valid backup exists"))
                            .with_path(store.path())
                            .hint("'state-manager init' keeps it aside and starts a fresh state"),
                    );
                };
                out.recovered_from = Some(b.name.clone());
                detail["recovered_from"] = json!(b.name);
                if let Some(txn) = txn {
                    out.changes.push(format!(
                        "{why}: restored the newest valid backup {} (as 'recover' does)",
                        b.name
                    ));
                    let commit = commands::recover_into(txn, store, doc, detail)?;
                    out.revision = Some(commit.revision);
                    out.backup = commit
                        .backup
                        .map(|p| p.display().to_string())
                        .or_else(|| detail["corrupt_kept_at"].as_str().map(str::to_owned));
                } else {
                    out.changes.push(format!(
                        "{why}: would restore the newest valid backup {} (as 'recover' does)",
                        b.name
                    ));
                }
                return Ok(finish(out, detail));
            }
        };
        let Some(new) = plan_into(&mut out, &old, highest_backup_revision(cfg), detail)? else {
            return Ok(out);
        };
        if let (Some(txn), false) = (txn, out.changes.is_empty()) {
            let repaired = new.clone();
            let commit = txn.commit(Some(&repaired), new, "pre-repair")?;
            out.revision = Some(commit.revision);
            out.backup = commit.backup.map(|p| p.display().to_string());
        }
        Ok(finish(out, detail))
    }
}

/// The repair of the object `old`: the repaired document, each change, and
/// the problems left that only a person can fix. `base`: the highest
/// revision among the backups.
fn plan(old: &Value, base: u64) -> Result<(Value, Vec<String>, Vec<String>)> {
    let mut changes = Vec::new();
    let mut new = old.clone();
    match integrity::check_seal(old) {
        Seal::Verified => {}
        Seal::Missing => changes.push("added metadata.checksum (there was none)".into()),
        Seal::Mismatch { .. } => changes.push(
            "metadata.checksum did not match the content (changed outside the toolkit or corrupted): recorded a new one for the content as it is; the previous version stays in the backup".into(),
        ),
    }
    let top = new.as_object_mut().expect("an object");
    changes.extend(repair_document(top, base)?);
    // Judge what is left on the document exactly as it would be written.
    // Stamped against the repaired document, so a repaired `created`
    // is kept rather than the broken one copied back.
    let mut preview = new.clone();
    document::stamp(&mut preview, Some(&new))?;
    integrity::seal(&mut preview);
    let unfixable = schema::violations(&preview)
        .iter()
        .map(ToString::to_string)
        .collect();
    Ok((new, changes, unfixable))
}

/// [`plan`] recorded in `out` and `detail`: the repaired document, or
/// `None` when problems are left that only a person can fix (nothing is
/// written then: reported as a dry run).
fn plan_into(
    out: &mut Outcome,
    old: &Value,
    base: u64,
    detail: &mut Value,
) -> Result<Option<Value>> {
    let (new, changes, unfixable) = plan(old, base)?;
    out.changes = changes;
    out.unfixable = unfixable;
    detail["changes"] = json!(out.changes.len());
    if out.unfixable.is_empty() {
        return Ok(Some(new));
    }
    detail["unfixable"] = json!(out.unfixable.len());
    out.dry_run = true;
    Ok(None)
}

/// `repair` on a backend that keeps documents rather than files (Redis):
/// the same plan, committed as one transaction; a stored document that does
/// not parse or fails the server's checksum is replaced by the newest valid
/// backup, as `recover` does.
pub fn repair_stored(
    state: &dyn crate::backend::StateStore,
    access: crate::backend::Access<'_>,
    location: String,
    dry_run: bool,
    detail: &mut Value,
) -> Result<Outcome> {
    detail["dry_run"] = json!(dry_run);
    let mut out = Outcome {
        path: location,
        dry_run,
        ..Outcome::default()
    };
    let loaded = state
        .load_bytes()
        .and_then(|b| b.ok_or_else(|| state.missing()))
        .and_then(|b| state.parse(&b));
    let old = match loaded {
        Ok(doc @ Value::Object(_)) => doc,
        Err(e) if e.code() != crate::exit::Code::StateCorruption => return Err(e),
        other => {
            let why = match other {
                Err(e) => e.summary(),
                Ok(v) => format!("the state is {}, not an object", super::path::type_name(&v)),
            };
            let backups = state.list_backups()?;
            let Some((b, _)) = commands::newest_valid(backups, None, |b| state.backup_bytes(b))?
            else {
                return Err(
                    Error::corruption(format!("{why}, and no valid backup exists"))
                        .hint("'state-manager init' keeps it aside and starts a fresh state"),
                );
            };
            detail["recovered_from"] = json!(b.name);
            out.recovered_from = Some(b.name.clone());
            if dry_run {
                out.changes.push(format!(
                    "{why}: would restore the newest valid backup {} (as 'recover' does)",
                    b.name
                ));
            } else {
                out.changes.push(format!(
                    "{why}: restored the newest valid backup {} (as 'recover' does)",
                    b.name
                ));
                let done = state.recover(access, Some(&b.name), false)?;
                out.revision = Some(done.revision);
                out.backup = done.backup.or(done.corrupt_kept_at);
            }
            return Ok(finish(out, detail));
        }
    };
    let base = state
        .list_backups()?
        .iter()
        .filter_map(|b| state.backup_bytes(b).ok())
        .filter_map(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .map(|d| document::revision(&d))
        .max()
        .unwrap_or(0);
    if plan_into(&mut out, &old, base, detail)?.is_none() {
        return Ok(out);
    }
    if !dry_run && !out.changes.is_empty() {
        // Planned again on the document as it is when the commit runs.
        let commit = state.transact(
            access,
            "pre-repair",
            &mut |live| {
                let live = live.ok_or_else(|| state.missing())?;
                Ok(Some(plan(live, base)?.0))
            },
            &mut |_| {},
        )?;
        if let Some(c) = commit {
            out.revision = Some(c.revision);
            out.backup = c.backup.map(|p| p.display().to_string());
        }
    }
    Ok(finish(out, detail))
}

fn finish(mut out: Outcome, detail: &mut Value) -> Outcome {
    if let Some(r) = out.revision {
        detail["revision"] = json!(r);
    }
    out.changed = out.revision.is_some();
    out
}

impl Outcome {
    /// The failure when problems are left that only a person can fix
    /// (nothing was written then).
    pub fn error(&self) -> Option<Error> {
        if self.unfixable.is_empty() {
            return None;
        }
        Some(Error::validation(format!(
                "{} problem(s) cannot be repaired without guessing content; nothing was changed",
                self.unfixable.len()
            ))
            .with_path(&self.path)
            .hint("fix the listed values with 'state-manager set', then run 'state-manager repair' again"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::Code;

    fn repaired(doc: Value) -> (Value, Vec<String>) {
        let mut doc = doc;
        let changes = repair_document(doc.as_object_mut().unwrap(), 7).unwrap();
        (doc, changes)
    }

    #[test]
    fn missing_fields_get_defaults_and_unknown_keys_stay() {
        let (doc, changes) = repaired(json!({"phase": "impl", "context": {"x": 1}}));
        assert_eq!(doc["phase"], "impl");
        assert_eq!(doc["context"], json!({"x": 1}));
        assert_eq!(doc["schemaVersion"], "1.0");
        assert_eq!(doc["completedTasks"], json!([]));
        assert!(changes.iter().any(|c| c.contains("schemaVersion")));
        assert!(!changes.iter().any(|c| c.contains("phase")));
    }

    #[test]
    fn bad_timestamps_become_now_and_bad_toolkit_fields_are_reset() {
        let mut d = document::fresh();
        d["metadata"]["created"] = json!("yesterday");
        d["metadata"]["revision"] = json!("5");
        d["signals"] = json!({"A": "soon", "B": 2.5});
        d["degradedMode"] =
            json!({"enabled": "yes", "timestamp": "later", "disabledFeatures": "x"});
        let (doc, changes) = repaired(d);
        assert!(is_datetime(&doc["metadata"]["created"]));
        assert_eq!(doc["metadata"]["revision"], 7);
        assert!(doc["signals"]["A"].is_f64());
        assert_eq!(doc["signals"]["B"], 2.5);
        assert_eq!(doc["degradedMode"]["enabled"], false);
        assert_eq!(doc["degradedMode"]["disabledFeatures"], json!([]));
        assert!(is_datetime(&doc["degradedMode"]["timestamp"]));
        assert_eq!(changes.len(), 6, "{changes:#?}");
        assert!(schema::violations(&doc).is_empty());
    }

    #[test]
    fn user_fields_of_the_wrong_type_are_left_alone() {
        let mut d = document::fresh();
        d["phase"] = json!(5);
        let (doc, changes) = repaired(d);
        assert_eq!(doc["phase"], 5);
        assert!(changes.is_empty());
    }

    #[test]
    fn newer_schema_versions_are_refused() {
        let mut d = document::fresh();
        d["schemaVersion"] = json!("2.0");
        let e = repair_document(d.as_object_mut().unwrap(), 0).unwrap_err();
        assert_eq!(e.code(), Code::ValidationFailed);
    }
}
