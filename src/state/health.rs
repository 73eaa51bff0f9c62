//! `health`: whether all is well, at a glance, for people and monitoring.
//!
//! Six checks, each `healthy`, `degraded` (works, but needs attention) or
//! `unhealthy` (an operation will fail; carries the exit code it would fail
//! with), or `unknown` when it could not be judged:
//!
//! - `state`: parses, checksum, schema (unverified — no checksum — is degraded);
//! - `locks`: records parse; stale ones are degraded;
//! - `backups`: each passes the checks of `verify-integrity`;
//! - `disk`: free space and inodes on the state root's filesystem (statvfs);
//! - `audit_log`: can be opened for appending (without creating it), and
//!   its filesystem has room (a log on `/dev/full` is unhealthy, one on
//!   `/dev/null` degraded: events are lost);
//! - `degraded_mode`: the state's `degradedMode.enabled`.
//!
//! The overall status is the worst check's; the exit code is 0 for healthy
//! or degraded, else that of the worst unhealthy check, ranked: corruption
//! (3), disk full (7), permission (6), resources (10), lock timeout (2),
//! dependency (5), validation (4), general (1).
//!
//! Health is read-only: it takes no lock, writes no audit event and creates
//! no file or folder, so it is safe to run from a monitor every few seconds,
//! and it reports a full disk instead of failing on it.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Value, json};

use super::backup;
use super::document;
use super::integrity::{self, Seal};
use super::schema;
use super::store;
use crate::config::Config;
use crate::error::Error;
use crate::exit::Code;
use crate::lock::record::Standing;

/// Below this much free space a write of the state can fail (plus twice the state's size).
const MIN_FREE: u64 = 64 * 1024;
/// Below this fraction of the filesystem (and under 1 GiB) free space is low.
const LOW_FREE_PERCENT: u64 = 10;
const LOW_FREE_BYTES: u64 = 1024 * 1024 * 1024;

/// How one check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Healthy,
    Degraded,
    Unhealthy(Code),
    Unknown,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Healthy => "healthy",
            Status::Degraded => "degraded",
            Status::Unhealthy(_) => "unhealthy",
            Status::Unknown => "unknown",
        }
    }
}

/// One check: its status, what it saw and what to do.
#[derive(Clone, Debug)]
pub struct Check {
    pub status: Status,
    pub detail: String,
    pub hint: Option<String>,
}

pub(crate) fn healthy(detail: impl Into<String>) -> Check {
    Check {
        status: Status::Healthy,
        detail: detail.into(),
        hint: None,
    }
}

pub(crate) fn degraded(detail: impl Into<String>, hint: &str) -> Check {
    Check {
        status: Status::Degraded,
        detail: detail.into(),
        hint: Some(hint.into()),
    }
}

pub(crate) fn unhealthy(code: Code, detail: impl Into<String>, hint: &str) -> Check {
    Check {
        status: Status::Unhealthy(code),
        detail: detail.into(),
        hint: Some(hint.into()),
    }
}

/// Bytes as people read them.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The state check, and the document when it could be read.
fn check_state(cfg: &Config) -> (Check, Option<Value>, u64) {
    let store = match store::Store::open(cfg, Default::default()) {
        Ok(s) => s,
        Err(e) => return (unhealthy(e.code(), e.summary(), "see the error"), None, 0),
    };
    let where_ = format!("no state file at {}", store.path().display());
    check_document(store.load_bytes(), &where_, |b| {
        store::parse_state(b, store.path())
    })
}

/// The `state` check of a backend's stored document: `loaded` as the
/// backend's `load_bytes` gave it, `missing` what to say when there is
/// none, `parse` its parser. Also returns the document and its size.
pub fn check_document(
    loaded: crate::error::Result<Option<Vec<u8>>>,
    missing: &str,
    parse: impl Fn(&[u8]) -> crate::error::Result<Value>,
) -> (Check, Option<Value>, u64) {
    let bytes = match loaded {
        Ok(Some(b)) => b,
        Ok(None) => {
            return (
                unhealthy(Code::GeneralError, missing, "run 'state-manager init'"),
                None,
                0,
            );
        }
        Err(e) => {
            let hint = if e.code() == Code::StateCorruption {
                "run 'state-manager recover' to restore the newest valid backup"
            } else {
                "see the error"
            };
            return (unhealthy(e.code(), e.summary(), hint), None, 0);
        }
    };
    let size = bytes.len() as u64;
    let doc = match parse(&bytes) {
        Ok(d) => d,
        Err(e) => {
            return (
                unhealthy(
                    Code::StateCorruption,
                    e.summary(),
                    "run 'state-manager recover' to restore the newest valid backup",
                ),
                None,
                size,
            );
        }
    };
    let revision = super::document::revision(&doc);
    let check = match integrity::check_seal(&doc) {
        Seal::Mismatch { recorded, actual } => unhealthy(
            Code::StateCorruption,
            integrity::mismatch_message(&recorded, &actual),
            "run 'state-manager verify-integrity'; 'state-manager recover' restores the newest valid backup, 'state-manager repair' keeps the content",
        ),
        seal => match schema::violations(&doc).as_slice() {
            [] if seal == Seal::Missing => degraded(
                format!("valid, revision {revision}, {size} bytes, but unverified: no checksum"),
                "any write, or 'state-manager repair', records one",
            ),
            [] => healthy(format!(
                "valid, revision {revision}, checksum verified, {size} bytes"
            )),
            v => unhealthy(
                Code::ValidationFailed,
                format!("breaks the schema in {} place(s), first {}", v.len(), v[0]),
                "run 'state-manager repair'",
            ),
        },
    };
    (check, Some(doc), size)
}

fn check_locks(cfg: &Config) -> Check {
    let mut held = Vec::new();
    let mut stale = Vec::new();
    let mut corrupt = Vec::new();
    for e in crate::lock::manager::scan(cfg).unwrap_or_default() {
        match (&e.record, e.standing()) {
            (Ok(r), Some(Standing::Held)) => {
                let pids: Vec<String> = r.live_holders().map(|h| h.id.pid.to_string()).collect();
                held.push(format!(
                    "{} ({}, pid {})",
                    e.name,
                    r.kind.as_str(),
                    pids.join(",")
                ));
            }
            (Ok(_), Some(Standing::Stale)) => stale.push(e.name),
            (Ok(_), _) => {}
            (Err(_), _) => corrupt.push(e.name),
        }
    }
    if !corrupt.is_empty() {
        unhealthy(
            Code::StateCorruption,
            format!(
                "{} lock record(s) do not parse: {}",
                corrupt.len(),
                corrupt.join(", ")
            ),
            "inspect them, then remove them with 'lock-manager clean --force'",
        )
    } else if !stale.is_empty() {
        degraded(
            format!(
                "{} stale lock record(s) (no live holder): {}",
                stale.len(),
                stale.join(", ")
            ),
            "run 'state-manager cleanup --stale' (the next acquirer also takes them over)",
        )
    } else if held.is_empty() {
        healthy("no lock held")
    } else {
        healthy(format!("{} held: {}", held.len(), held.join("; ")))
    }
}

fn check_backups(cfg: &Config) -> Check {
    let list = match backup::list(cfg) {
        Ok(l) => l,
        Err(e) => return unhealthy(e.code(), e.summary(), "check the backups folder"),
    };
    if list.is_empty() {
        return healthy("none yet (every write makes one)");
    }
    let bad: Vec<String> = list
        .iter()
        .filter(|b| {
            !integrity::check_document_file(&b.path, "backup")
                .problems
                .is_empty()
        })
        .map(|b| b.name.clone())
        .collect();
    if bad.len() == list.len() {
        degraded(
            format!(
                "none of {} backup(s) is valid: nothing to recover from",
                list.len()
            ),
            "run 'state-manager verify-integrity' for details, then 'state-manager backup' once the state is sound",
        )
    } else if !bad.is_empty() {
        degraded(
            format!(
                "{} of {} backup(s) fail their checks: {}",
                bad.len(),
                list.len(),
                bad.join(", ")
            ),
            "run 'state-manager verify-integrity' for details; 'state-manager cleanup --backups' prunes old ones",
        )
    } else {
        healthy(format!(
            "{} backup(s), all valid; newest {}",
            list.len(),
            list[0].name
        ))
    }
}

/// The nearest existing folder at or above `path` (statvfs needs one).
pub(crate) fn existing_ancestor(path: &Path) -> PathBuf {
    let mut p = if path.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        path.to_path_buf()
    };
    while !p.exists() {
        match p.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => p = parent.to_path_buf(),
            _ => return PathBuf::from("."),
        }
    }
    p
}

/// Judges free space on a filesystem that `needed` more bytes must fit on.
fn judge_space(vfs: &rustix::fs::StatVfs, what: &str, needed: u64) -> Check {
    let free = vfs.f_bavail.saturating_mul(vfs.f_frsize);
    let total = vfs.f_blocks.saturating_mul(vfs.f_frsize);
    if vfs.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY) {
        return unhealthy(
            Code::PermissionDenied,
            format!("{what} is on a read-only filesystem"),
            "remount it read-write or move the state",
        );
    }
    if free < needed {
        return unhealthy(
            Code::DiskFull,
            format!("{what}: only {} free, writes will fail", human_bytes(free)),
            "free space on that filesystem",
        );
    }
    if vfs.f_files > 0 && vfs.f_favail == 0 {
        return unhealthy(
            Code::DiskFull,
            format!("{what}: no free inodes, new files cannot be created"),
            "remove files on that filesystem",
        );
    }
    let percent = free.saturating_mul(100).checked_div(total).unwrap_or(100);
    let detail = format!(
        "{what}: {} free of {} ({percent}%)",
        human_bytes(free),
        human_bytes(total)
    );
    if percent < LOW_FREE_PERCENT && free < LOW_FREE_BYTES {
        degraded(detail, "free space on that filesystem soon")
    } else {
        healthy(detail)
    }
}

fn check_disk(cfg: &Config, state_size: u64) -> Check {
    let dir = existing_ancestor(&cfg.root);
    match rustix::fs::statvfs(&dir) {
        Ok(vfs) => judge_space(
            &vfs,
            &format!("state root {}", cfg.root.display()),
            MIN_FREE + 2 * state_size,
        ),
        Err(e) => {
            let e = Error::io(e.into(), "cannot statvfs", &dir);
            unhealthy(e.code(), e.summary(), "check the state root")
        }
    }
}

fn check_audit_log(cfg: &Config) -> Check {
    let log = &cfg.audit_log;
    let shown = log.display();
    // The writer's own rule: a symlink leading out of the log's folder is refused.
    if let Err(e) = crate::audit::event::sink(log) {
        return unhealthy(
            e.code(),
            e.summary(),
            "replace it with a regular file; operations still run, but their events are skipped",
        );
    }
    let meta = match fs::metadata(log) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = match log.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            if !dir.is_dir() {
                return unhealthy(
                    Code::GeneralError,
                    format!("{shown}: its folder does not exist"),
                    "create the folder or point AUDIT_LOG elsewhere",
                );
            }
            if let Err(e) = rustix::fs::access(&dir, rustix::fs::Access::WRITE_OK) {
                let e = Error::io(e.into(), "cannot create the audit log in", &dir);
                return unhealthy(
                    e.code(),
                    e.summary(),
                    "fix the folder's mode or point AUDIT_LOG elsewhere",
                );
            }
            let ok = || healthy(format!("{shown}: not created yet; its folder is writable"));
            return match rustix::fs::statvfs(&dir) {
                Ok(vfs) => {
                    let c = judge_space(&vfs, "its folder's filesystem", 4096);
                    match c.status {
                        Status::Unhealthy(_) => Check {
                            detail: format!("{shown}: {}", c.detail),
                            ..c
                        },
                        _ => ok(),
                    }
                }
                Err(_) => ok(),
            };
        }
        Err(e) => {
            let e = Error::io(e, "cannot inspect the audit log", log);
            return unhealthy(
                e.code(),
                e.summary(),
                "check the audit log's owner and mode",
            );
        }
    };
    let ft = meta.file_type();
    if ft.is_dir() {
        return unhealthy(
            Code::GeneralError,
            format!("{shown} is a folder"),
            "point AUDIT_LOG at a file",
        );
    }
    if ft.is_char_device() {
        let dev = meta.rdev();
        return match (rustix::fs::major(dev), rustix::fs::minor(dev)) {
            (1, 7) => unhealthy(
                Code::DiskFull,
                format!(
                    "{shown}: the full device (/dev/full), every audit event fails with ENOSPC"
                ),
                "point AUDIT_LOG at a file",
            ),
            (1, 3) => degraded(
                format!("{shown} is /dev/null: audit events are discarded"),
                "point AUDIT_LOG at a file to keep them",
            ),
            _ => unhealthy(
                Code::PermissionDenied,
                format!("{shown} is a character device: audit events are refused"),
                "point AUDIT_LOG at a regular file",
            ),
        };
    }
    if !ft.is_file() {
        // Never opened: a FIFO's open would wait for a reader.
        return unhealthy(
            Code::PermissionDenied,
            format!(
                "{shown} is {}: audit events are refused",
                crate::durable::describe(ft)
            ),
            "point AUDIT_LOG at a regular file",
        );
    }
    // Opened for appending without O_CREAT: nothing is created or written.
    let file = match OpenOptions::new().append(true).open(log) {
        Ok(f) => f,
        Err(e) => {
            let e = Error::io(e, "cannot open the audit log for appending", log);
            return unhealthy(
                e.code(),
                e.summary(),
                "fix its owner and mode; operations still run, but their events are lost",
            );
        }
    };
    match rustix::fs::fstatvfs(&file) {
        Ok(vfs) => {
            let c = judge_space(&vfs, "its filesystem", 4096);
            let lost = if matches!(c.status, Status::Unhealthy(_)) {
                "; audit events are being lost"
            } else {
                ""
            };
            Check {
                detail: format!("{shown}: {} bytes; {}{lost}", meta.len(), c.detail),
                ..c
            }
        }
        Err(_) => healthy(format!("{shown}: writable, {} bytes", meta.len())),
    }
}

pub(crate) fn check_degraded_mode(doc: Option<&Value>) -> Check {
    let Some(doc) = doc else {
        return Check {
            status: Status::Unknown,
            detail: "the state could not be read".into(),
            hint: None,
        };
    };
    let dm = &doc["degradedMode"];
    if dm["enabled"] == json!(true) {
        let s = |k: &str| dm[k].as_str().unwrap_or("").to_string();
        let features = dm["disabledFeatures"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let mut detail = format!("on since {}: {}", s("timestamp"), s("reason"));
        if !features.is_empty() {
            detail.push_str(&format!(" (disabled: {features})"));
        }
        degraded(
            detail,
            "'error-recovery recover-mode' turns it off once the cause is fixed",
        )
    } else {
        healthy("off")
    }
}

/// Every check, in report order.
pub fn checks(cfg: &Config) -> Vec<(&'static str, Check)> {
    let (state, doc, size) = check_state(cfg);
    vec![
        ("state", state),
        ("locks", check_locks(cfg)),
        ("backups", check_backups(cfg)),
        ("disk", check_disk(cfg, size)),
        ("audit_log", check_audit_log(cfg)),
        ("degraded_mode", check_degraded_mode(doc.as_ref())),
    ]
}

fn rank(code: Code) -> u8 {
    match code {
        Code::StateCorruption => 9,
        Code::DiskFull => 8,
        Code::PermissionDenied => 7,
        Code::ResourceExhausted => 6,
        Code::LockTimeout => 5,
        Code::DependencyMissing => 4,
        Code::ValidationFailed => 3,
        _ => 1,
    }
}

/// One check as `health --json` prints it.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    /// `healthy`, `degraded`, `unhealthy` or `unknown`.
    pub status: &'static str,
    /// What it saw (`detail` is an object everywhere else: audit events).
    #[serde(rename = "message")]
    pub detail: String,
    /// The exit code an operation would fail with (unhealthy only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// What `health` found: the overall status and each check, in order.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The worst check's: `healthy`, `degraded` or `unhealthy`.
    pub status: &'static str,
    /// The storage engine: `file` or `redis`.
    pub backend: &'static str,
    /// The namespace of a shared backend (`WFSTATE_NAMESPACE`); null on files.
    pub namespace: Option<String>,
    /// By name, in report order (a JSON object).
    #[serde(serialize_with = "as_map")]
    pub checks: Vec<(&'static str, CheckReport)>,
    /// The worst unhealthy check, by rank: its name, exit code, detail, hint.
    #[serde(skip)]
    pub worst: Option<(&'static str, Code, String, Option<String>)>,
}

impl Report {
    /// 0 healthy or degraded, else the exit code of the worst unhealthy check.
    pub fn code(&self) -> Code {
        self.worst.as_ref().map_or(Code::Success, |w| w.1)
    }

    /// The failure `health` ends with when a check is unhealthy.
    pub fn error(&self) -> Option<Error> {
        let (name, code, detail, hint) = self.worst.as_ref()?;
        Some(
            Error::new(
                integrity::kind_of(*code),
                format!("unhealthy: {name}: {detail}"),
            )
            .hint(hint.clone().unwrap_or_default()),
        )
    }
}

fn as_map<S: serde::Serializer>(
    checks: &[(&'static str, CheckReport)],
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_map(checks.iter().map(|(k, v)| (k, v)))
}

/// Runs every check (see the module docs).
pub fn report(cfg: &Config) -> Report {
    summarize(checks(cfg), "file", None)
}

/// The report of `checks` run on backend `backend` (namespace `namespace`).
pub fn summarize(
    checks: Vec<(&'static str, Check)>,
    backend: &'static str,
    namespace: Option<String>,
) -> Report {
    let worst = checks
        .iter()
        .filter_map(|(name, c)| match c.status {
            Status::Unhealthy(code) => Some((rank(code), code, *name, c)),
            _ => None,
        })
        .max_by_key(|(r, ..)| *r)
        .map(|(_, code, name, c)| (name, code, c.detail.clone(), c.hint.clone()));
    let status = if worst.is_some() {
        "unhealthy"
    } else if checks.iter().any(|(_, c)| c.status == Status::Degraded) {
        "degraded"
    } else {
        "healthy"
    };
    Report {
        status,
        backend,
        namespace,
        checks: checks
            .into_iter()
            .map(|(name, c)| {
                let exit_code = match c.status {
                    Status::Unhealthy(code) => Some(code.as_i32()),
                    _ => None,
                };
                (
                    name,
                    CheckReport {
                        status: c.status.name(),
                        detail: c.detail,
                        exit_code,
                        hint: c.hint,
                    },
                )
            })
            .collect(),
        worst,
    }
}

// `status`: the summary `state-manager status` prints.

/// How the state is, as `status` answers: its exit code is the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    Valid,
    /// There is no state file (exit 1).
    Missing,
    /// It does not parse (exit 3).
    Corrupt,
    /// It breaks the schema (exit 4).
    Invalid,
}

impl Condition {
    pub fn code(self) -> Code {
        match self {
            Condition::Valid => Code::Success,
            Condition::Missing => Code::GeneralError,
            Condition::Corrupt => Code::StateCorruption,
            Condition::Invalid => Code::ValidationFailed,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Condition::Valid => "valid",
            Condition::Missing => "missing",
            Condition::Corrupt => "corrupt",
            Condition::Invalid => "invalid",
        }
    }
}

/// What `status` reports.
#[derive(Clone, Debug, Serialize)]
pub struct StatusReport {
    /// The state file, or the server (password masked) and namespace.
    pub path: String,
    /// The storage engine: `file` or `redis`.
    pub backend: &'static str,
    /// The namespace of a shared backend; null on files.
    pub namespace: Option<String>,
    /// valid, missing, corrupt or invalid: what `error-recovery status`
    /// calls `state.condition`.
    pub condition: Condition,
    /// Bytes of the state file.
    pub size: Option<usize>,
    pub schema_version: Value,
    pub phase: Value,
    pub last_modified: Value,
    pub revision: Value,
    pub valid: bool,
    pub violations: Vec<schema::Violation>,
    pub violation_count: usize,
    /// How many backups there are.
    pub backups: usize,
    pub live_locks: Vec<String>,
    pub degraded_mode: document::DegradedMode,
}

impl StatusReport {
    /// 0 valid, 1 missing, 3 corrupt, 4 invalid.
    pub fn code(&self) -> Code {
        self.condition.code()
    }
}

/// Where a state is kept, as `status` names it.
pub struct Place {
    pub backend: &'static str,
    pub namespace: Option<String>,
    pub location: String,
}

/// The summary of the state at `place` whose bytes are `bytes`, with
/// `backups` backups.
pub fn status(cfg: &Config, place: Place, bytes: Option<&[u8]>, backups: usize) -> StatusReport {
    let doc = bytes.and_then(|b| serde_json::from_slice::<Value>(b).ok());
    let violations = doc.as_ref().map(schema::violations).unwrap_or_default();
    let state = match (bytes, &doc) {
        (None, _) => Condition::Missing,
        (Some(_), None) => Condition::Corrupt,
        (Some(_), Some(_)) if !violations.is_empty() => Condition::Invalid,
        _ => Condition::Valid,
    };
    let get = |p: &str| {
        doc.as_ref()
            .and_then(|d| d.pointer(p))
            .cloned()
            .unwrap_or(Value::Null)
    };
    StatusReport {
        path: place.location,
        backend: place.backend,
        namespace: place.namespace,
        condition: state,
        size: bytes.map(<[u8]>::len),
        schema_version: get("/schemaVersion"),
        phase: get("/phase"),
        last_modified: get("/metadata/lastModified"),
        revision: get("/metadata/revision"),
        valid: state == Condition::Valid,
        violation_count: violations.len(),
        violations,
        backups,
        live_locks: live_locks(cfg),
        degraded_mode: document::DegradedMode::of(doc.as_ref()),
    }
}

/// Live lock records in `.locks/`, by name.
pub fn live_locks(cfg: &Config) -> Vec<String> {
    crate::lock::manager::scan(cfg)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.standing() == Some(Standing::Held))
        .map(|e| e.name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_like_df() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(64 * 1024), "64.0 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024 / 2), "1.5 GiB");
    }

    #[test]
    fn corruption_outranks_a_full_disk_which_outranks_the_rest() {
        assert!(rank(Code::StateCorruption) > rank(Code::DiskFull));
        assert!(rank(Code::DiskFull) > rank(Code::PermissionDenied));
        assert!(rank(Code::ValidationFailed) > rank(Code::GeneralError));
    }
}
