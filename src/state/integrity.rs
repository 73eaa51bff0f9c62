//! Integrity: the checksum every state document carries, and the checks
//! behind `verify-integrity`, `validate-backup` and `health`.
//!
//! **The checksum lives inside the document.** `metadata.checksum` is
//! `sha256:` + the hex SHA-256 of the document serialized compactly by
//! serde_json (keys in their stored order) with `metadata.checksum` itself
//! removed. [`super::Txn::commit`] sets it right after stamping `revision` and
//! `lastModified`, so it reaches the disk in the same rename as the content it
//! covers: a sidecar file could not be replaced atomically with the state.
//! The cost is one compact serialization and one hash of a few KiB per
//! commit; no file is read again.
//!
//! Backups are hard links of former state files, so each carries the
//! checksum it was written with and needs no manifest. A checkpoint's
//! `metadata.json` lists the SHA-256 of each file it copied
//! (`files: {"state.json": "<hex>", ...}`, written by error-recovery); every
//! listed file is hashed and compared, and its `state.json` is also checked
//! like a backup.
//!
//! What a check says about a file: it does not parse, or its checksum does
//! not match (*changed outside the toolkit or corrupted* — never silently
//! trusted), both corruption (exit 3); it breaks its schema (exit 4); or it
//! is fine, *verified* when it carries a checksum and *unverified* when it
//! has none (written by hand or by an older toolkit: reported, not corrupt).
//!
//! What the checksum does not do: it covers content, not layout, so
//! re-indenting a file is not a change; it is not a signature, since whoever
//! can write the file can recompute it; and ordinary reads (`read`, `set`)
//! do not verify it, to keep the hot path to what it needs.

use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::backup;
pub use super::document::{PREFIX, Seal, check_seal, mismatch_message, seal, sha256_hex};
use super::schema;
use crate::config::{Config, MAX_INPUT_BYTES};
use crate::durable;
use crate::error::{Error, Kind};
use crate::exit::Code;
use crate::recovery::checkpoint;

/// The generated validator of schemas/lock.schema.json (built with the crate,
/// like the state schema: no schema is compiled at run time).
#[jsonschema::validator(path = "schemas/lock.schema.json", validate_formats = true)]
struct LockSchema;

/// One problem found in a file.
#[derive(Clone, Debug)]
pub struct Problem {
    /// 3 corrupt, 4 schema, or the exit code of the error that kept it from being read.
    pub code: Code,
    pub message: String,
}

impl Problem {
    fn corrupt(message: impl Into<String>) -> Problem {
        Problem {
            code: Code::StateCorruption,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> Problem {
        Problem {
            code: Code::ValidationFailed,
            message: message.into(),
        }
    }

    fn unreadable(e: &Error) -> Problem {
        Problem {
            code: if e.io_kind() == Some(io::ErrorKind::NotFound) {
                Code::StateCorruption
            } else {
                e.code()
            },
            message: format!("cannot read: {}", e.summary()),
        }
    }

    /// `corrupt`, `invalid` or `unreadable`.
    pub fn severity(&self) -> &'static str {
        match self.code {
            Code::StateCorruption => "corrupt",
            Code::ValidationFailed => "invalid",
            _ => "unreadable",
        }
    }
}

/// The outcome of checking one file.
#[derive(Clone, Debug)]
pub struct FileCheck {
    pub path: PathBuf,
    /// `state`, `backup`, `checkpoint`, `checkpoint-file` or `lock`.
    pub kind: &'static str,
    /// `verified`, `missing` or `mismatch` for documents carrying a checksum;
    /// `None` where none is expected (lock records).
    pub checksum: Option<&'static str>,
    pub problems: Vec<Problem>,
}

impl FileCheck {
    fn new(path: &Path, kind: &'static str) -> FileCheck {
        FileCheck {
            path: path.to_path_buf(),
            kind,
            checksum: None,
            problems: Vec::new(),
        }
    }

    /// `ok`, `unverified`, `corrupt`, `unreadable` or `invalid` (the worst problem).
    pub fn status(&self) -> &'static str {
        match worst(self.problems.iter().map(|p| p.code)) {
            Some(code) => Problem {
                code,
                message: String::new(),
            }
            .severity(),
            None if self.checksum == Some("missing") => "unverified",
            None => "ok",
        }
    }

    /// The exit code this file alone would give (0 when fine).
    pub fn code(&self) -> Code {
        worst(self.problems.iter().map(|p| p.code)).unwrap_or(Code::Success)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "path": self.path.display().to_string(),
            "kind": self.kind,
            "status": self.status(),
            "checksum": self.checksum,
            "problems": self.problems.iter().map(|p| json!({
                "severity": p.severity(),
                "message": p.message,
            })).collect::<Vec<_>>(),
        })
    }
}

impl serde::Serialize for FileCheck {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

/// Corruption first, then whatever kept a file from being read, then schema problems.
fn worst(codes: impl Iterator<Item = Code>) -> Option<Code> {
    codes.max_by_key(|c| match c {
        Code::StateCorruption => 3,
        Code::ValidationFailed => 1,
        _ => 2,
    })
}

/// Checks the bytes of a state document (the live state, a backup, a
/// checkpoint's copy): parses, checksum, schema.
pub fn check_document_bytes(path: &Path, kind: &'static str, bytes: &[u8]) -> FileCheck {
    let mut check = FileCheck::new(path, kind);
    let doc: Value = match serde_json::from_slice(bytes) {
        Ok(d) => d,
        Err(e) => {
            check
                .problems
                .push(Problem::corrupt(format!("does not parse: {e}")));
            return check;
        }
    };
    check_document(&mut check, &doc);
    check
}

fn check_document(check: &mut FileCheck, doc: &Value) {
    match check_seal(doc) {
        Seal::Verified => check.checksum = Some("verified"),
        Seal::Missing => check.checksum = Some("missing"),
        Seal::Mismatch { recorded, actual } => {
            check.checksum = Some("mismatch");
            check
                .problems
                .push(Problem::corrupt(mismatch_message(&recorded, &actual)));
        }
    }
    for v in schema::violations(doc) {
        check.problems.push(Problem::invalid(v.to_string()));
    }
}

/// Checks a state document file; see [`check_document_bytes`].
pub fn check_document_file(path: &Path, kind: &'static str) -> FileCheck {
    match durable::read_limited(path, MAX_INPUT_BYTES) {
        Ok(bytes) => check_document_bytes(path, kind, &bytes),
        Err(e) => {
            let mut check = FileCheck::new(path, kind);
            check.problems.push(Problem::unreadable(&e));
            check
        }
    }
}

/// Checks a lock record: parses, schemas/lock.schema.json, and names its own file.
pub fn check_lock_file(path: &Path) -> FileCheck {
    let mut check = FileCheck::new(path, "lock");
    let bytes = match durable::read_limited(path, MAX_INPUT_BYTES) {
        Ok(b) => b,
        Err(e) => {
            check.problems.push(Problem::unreadable(&e));
            return check;
        }
    };
    let record: Value = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => {
            check
                .problems
                .push(Problem::corrupt(format!("does not parse: {e}")));
            return check;
        }
    };
    for e in LockSchema::iter_errors(&record) {
        let pointer = e.instance_path().to_string();
        let pointer = if pointer.is_empty() {
            "/".into()
        } else {
            pointer
        };
        check
            .problems
            .push(Problem::invalid(format!("{pointer}: {e}")));
    }
    let stem = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".lock"));
    if let (Some(stem), Some(name)) = (stem, record.get("name").and_then(Value::as_str))
        && stem != name
    {
        check.problems.push(Problem::invalid(format!(
            "/name: the record names lock '{name}' but its file is {stem}.lock"
        )));
    }
    check
}

/// Checks one checkpoint folder: its metadata.json parses, each file it
/// lists hashes to the recorded SHA-256 ([`checkpoint::inspect`], the
/// checkpoint's own rule), and its state.json is a sound document.
pub fn check_checkpoint(dir: &Path) -> Vec<FileCheck> {
    use checkpoint::{Listed, MetaFile};
    let found = checkpoint::inspect(dir);
    let parsed = matches!(found.metadata, MetaFile::Parsed(_));
    let mut meta_check = FileCheck::new(&found.metadata_path, "checkpoint");
    match &found.metadata {
        MetaFile::Parsed(_) => {}
        MetaFile::Missing => meta_check.problems.push(Problem::corrupt(
            "missing: a checkpoint without metadata.json cannot be trusted",
        )),
        MetaFile::Unparsed(why) => meta_check
            .problems
            .push(Problem::corrupt(format!("does not parse: {why}"))),
        MetaFile::Unreadable(e) => meta_check.problems.push(Problem::unreadable(e)),
    }
    let mut state_check = found
        .has_state
        .then(|| check_document_file(&found.state_path, "checkpoint-file"));
    let mut out = Vec::new();
    match found.files {
        Some(Ok(files)) => {
            meta_check.checksum = Some("verified");
            for (rel, path, listed) in files {
                let mut check = FileCheck::new(&path, "checkpoint-file");
                match listed {
                    Listed::Verified => check.checksum = Some("verified"),
                    Listed::Mismatch { recorded, actual } => {
                        check.checksum = Some("mismatch");
                        check.problems.push(Problem::corrupt(mismatch_message(
                            &format!("{PREFIX}{recorded}"),
                            &format!("{PREFIX}{actual}"),
                        )));
                    }
                    Listed::Missing => check.problems.push(Problem::corrupt(
                        "missing: listed in the checkpoint's metadata.json",
                    )),
                    Listed::Unreadable(e) => check.problems.push(Problem::unreadable(&e)),
                    Listed::Outside => check.problems.push(Problem::corrupt(format!(
                        "metadata.json lists '{rel}', which is not a path inside the checkpoint"
                    ))),
                    Listed::NotASum(v) => check.problems.push(Problem::invalid(format!(
                        "metadata.json records {v} for it, not a SHA-256 string"
                    ))),
                }
                if rel == "state.json"
                    && let Some(sc) = state_check.as_mut()
                {
                    // One entry per file: merge the hash check into the document check.
                    sc.problems.append(&mut check.problems);
                    if sc.checksum == Some("missing") && sc.problems.is_empty() {
                        sc.checksum = Some("verified");
                    }
                    continue;
                }
                out.push(check);
            }
        }
        Some(Err(other)) => meta_check.problems.push(Problem::invalid(format!(
            "/files: expected an object of SHA-256 sums, found {other}"
        ))),
        None if parsed => meta_check.checksum = Some("missing"),
        None => {}
    }
    if parsed && state_check.is_none() {
        meta_check
            .problems
            .push(Problem::corrupt("the checkpoint has no state.json"));
    }
    let mut all = vec![meta_check];
    all.extend(state_check);
    all.extend(out);
    all
}

/// This state file's checkpoint folders, as [`checkpoint::list`] sees them
/// (no temp folder, no other state file's subfolder), in name order.
fn checkpoint_dirs(cfg: &Config) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = checkpoint::list(cfg)
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.path)
        .collect();
    dirs.sort();
    dirs
}

/// Every lock record file, in name order.
pub fn lock_files(cfg: &Config) -> Vec<PathBuf> {
    crate::lock::manager::record_files(cfg)
}

/// What `verify-integrity` found.
pub struct Report {
    /// `None` when there is no state file.
    pub state: Option<FileCheck>,
    pub files: Vec<FileCheck>,
}

impl Report {
    /// The state's check first, then every other file's.
    pub fn all(&self) -> impl Iterator<Item = &FileCheck> {
        self.state.iter().chain(self.files.iter())
    }

    /// 0 clean, 3 anything corrupt, else the code of an unreadable file, else 4 for schema problems.
    pub fn code(&self) -> Code {
        worst(
            self.all()
                .map(FileCheck::code)
                .filter(|c| *c != Code::Success),
        )
        .unwrap_or(Code::Success)
    }
}

/// Checks the live state, every backup, checkpoint and lock record.
pub fn verify_all(cfg: &Config, state_path: &Path) -> Report {
    let state = state_path
        .exists()
        .then(|| check_document_file(state_path, "state"));
    let mut files = Vec::new();
    match backup::list(cfg) {
        Ok(list) => {
            for b in list {
                let check = check_document_file(&b.path, "backup");
                // Pruned by a writer while it was being read: gone, not unreadable.
                if !check.problems.is_empty() && !b.path.exists() {
                    continue;
                }
                files.push(check);
            }
        }
        Err(e) => {
            let mut check = FileCheck::new(&cfg.backups_dir(), "backup");
            check.problems.push(Problem::unreadable(&e));
            files.push(check);
        }
    }
    for dir in checkpoint_dirs(cfg) {
        let checks = check_checkpoint(&dir);
        // Removal renames a checkpoint aside before deleting it (under the
        // `state` lock; this check takes none): one that is no longer there
        // was removed while it was being read, and is gone, not corrupt.
        if checks.iter().any(|c| !c.problems.is_empty()) && !dir.exists() {
            continue;
        }
        files.extend(checks);
    }
    for lock in lock_files(cfg) {
        files.push(check_lock_file(&lock));
    }
    Report { state, files }
}

impl Report {
    /// How many files have this status (`ok`, `unverified`, `corrupt`, ...).
    pub fn count(&self, status: &str) -> usize {
        self.all().filter(|f| f.status() == status).count()
    }

    /// The failure a check with problems ends with (`None` when clean).
    pub fn error(&self) -> Option<Error> {
        let checked = self.all().count();
        let bad = checked - self.count("ok") - self.count("unverified");
        let what = |n: usize, how: &str| {
            format!("integrity check failed: {n} {how} file(s), {bad} with problems in all")
        };
        match self.code() {
            Code::Success => None,
            Code::StateCorruption => Some(
                Error::corruption(what(self.count("corrupt"), "corrupt"))
                    .hint(corruption_hint(self)),
            ),
            Code::ValidationFailed => Some(
                Error::validation(what(self.count("invalid"), "invalid")).hint(
                    "see the list above; 'state-manager repair' fixes what it can without guessing",
                ),
            ),
            other => Some(
                Error::new(kind_of(other), what(self.count("unreadable"), "unreadable"))
                    .hint("see the list above; check the owner and mode of those files"),
            ),
        }
    }
}

/// What to run about the corrupt files of `report`, safe as written: only
/// a corrupt live state is a reason to replace the live state.
fn corruption_hint(report: &Report) -> String {
    let corrupt = |f: &FileCheck| f.code() == Code::StateCorruption;
    if report.state.as_ref().is_some_and(corrupt) {
        return "see the list above; 'error-recovery handle 3 --apply' restores the newest valid backup (the damaged state is kept aside), 'state-manager repair' fixes what it can".into();
    }
    let kinds = |k: &[&str]| {
        report
            .files
            .iter()
            .any(|f| corrupt(f) && k.contains(&f.kind))
    };
    let mut steps =
        vec!["see the list above; the live state is fine, leave it as it is".to_string()];
    if kinds(&["backup"]) {
        steps.push(
            "'error-recovery handle 3 --apply' moves corrupt backups to .state-backups/corrupt/"
                .into(),
        );
    }
    if kinds(&["checkpoint", "checkpoint-file"]) {
        steps.push("remove a corrupt checkpoint with 'rm -r' (restore refuses it anyway), or keep it to inspect".into());
    }
    if kinds(&["lock"]) {
        steps.push(
            "a corrupt lock record: inspect it, then remove it with 'lock-manager clean --force'"
                .into(),
        );
    }
    steps.join("; ")
}

/// The error kind that exits with `code`.
pub fn kind_of(code: Code) -> Kind {
    match code {
        Code::LockTimeout => Kind::LockTimeout,
        Code::StateCorruption => Kind::Corruption,
        Code::ValidationFailed => Kind::Validation,
        Code::DependencyMissing => Kind::DependencyMissing,
        Code::PermissionDenied => Kind::PermissionDenied,
        Code::DiskFull => Kind::DiskFull,
        Code::NetworkError => Kind::Network,
        Code::Timeout => Kind::Timeout,
        Code::ResourceExhausted => Kind::ResourceExhausted,
        Code::Success | Code::GeneralError => Kind::General,
    }
}

/// `verify-integrity` of a backend that keeps documents rather than files
/// (Redis): the state at `place`, every backup and every checkpoint, each
/// checked by its bytes as a file would be.
pub fn verify_stored(
    backend: &dyn crate::backend::Backend,
    place: &Path,
) -> crate::error::Result<Report> {
    let state = backend.state();
    let live = match state.load_bytes() {
        Ok(Some(bytes)) => Some(check_document_bytes(place, "state", &bytes)),
        Ok(None) => None,
        Err(e) => {
            let mut c = FileCheck::new(place, "state");
            c.problems.push(Problem::unreadable(&e));
            Some(c)
        }
    };
    let mut files = Vec::new();
    for b in state.list_backups()? {
        files.push(match state.backup_bytes(&b) {
            Ok(bytes) => check_document_bytes(&b.path, "backup", &bytes),
            Err(e) => {
                let mut c = FileCheck::new(&b.path, "backup");
                c.problems.push(Problem::unreadable(&e));
                c
            }
        });
    }
    let store = backend.checkpoints();
    for cp in store.list()? {
        let mut c = FileCheck::new(&cp.path, "checkpoint");
        match store.verify(&cp) {
            Ok(v) => {
                if let Some(bytes) = v.files.get("state.json") {
                    let doc = check_document_bytes(&cp.path, "checkpoint", bytes);
                    c.checksum = Some("verified");
                    c.problems = doc.problems;
                }
            }
            Err(e) => c.problems.push(Problem::corrupt(e.summary())),
        }
        files.push(c);
    }
    Ok(Report { state: live, files })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_documents_verify_and_any_content_change_is_a_mismatch() {
        let mut doc = crate::state::document::fresh();
        assert_eq!(check_seal(&doc), Seal::Missing);
        seal(&mut doc);
        let sum = doc["metadata"]["checksum"].as_str().unwrap().to_string();
        assert!(sum.starts_with("sha256:") && sum.len() == 7 + 64, "{sum}");
        assert_eq!(check_seal(&doc), Seal::Verified);
        // Sealing twice gives the same checksum: the old one is not hashed.
        seal(&mut doc);
        assert_eq!(doc["metadata"]["checksum"], json!(sum));
        // Re-indenting is not a change.
        let pretty = serde_json::to_vec_pretty(&doc).unwrap();
        let back: Value = serde_json::from_slice(&pretty).unwrap();
        assert_eq!(check_seal(&back), Seal::Verified);
        doc["phase"] = json!("pre-inis");
        assert!(matches!(check_seal(&doc), Seal::Mismatch { .. }));
    }

    #[test]
    fn sha256_matches_a_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn the_worst_problem_decides_the_code() {
        let codes = [Code::ValidationFailed, Code::StateCorruption];
        assert_eq!(worst(codes.into_iter()), Some(Code::StateCorruption));
        assert_eq!(
            worst([Code::ValidationFailed, Code::PermissionDenied].into_iter()),
            Some(Code::PermissionDenied)
        );
        assert_eq!(worst(std::iter::empty()), None);
    }
}
