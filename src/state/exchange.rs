//! `export` and `import`: moving the state between machines, as JSON or YAML,
//! in the manner of Terraform's `state pull` / `state push`.
//!
//! Export writes the document as it is stored (metadata included), to stdout
//! or to a file ([`durable::write_output`]: a regular file is replaced
//! atomically and durably; a device or FIFO such as `/dev/stdout` is written
//! through, never renamed over). Import reads
//! JSON or YAML (by the file's extension, else by its first character),
//! validates it against the schema before touching anything (exit 4,
//! nothing changed), then commits it like any write: under the `state` lock,
//! the live version backed up first (reason `pre-import`), a new revision,
//! time and checksum stamped.
//!
//! The serial rule: a document whose `metadata.revision` is older than the
//! live state's is refused (exit 4) unless `--force`, because the live state
//! has changed since it was exported and importing would silently undo
//! those changes. An equal revision passes (export, edit, import). A live
//! state that does not parse is only replaced with `--force` (and is kept
//! aside first).
//!
//! YAML goes through `serde_norway` (see README.md for the choice).
//! YAML keys must be strings and values JSON-compatible; the round trip
//! JSON → YAML → JSON gives back the same document.

use std::path::Path;

use serde_json::{Value, json};

use super::commands;
use super::document;
use super::store::{Commit, Store, Txn};
use crate::exit::Code;

use crate::error::{Error, Result};

/// A document format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Yaml,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Yaml => "yaml",
        }
    }

    /// The format of `bytes` read from `path`: by extension, else by content
    /// (JSON documents start with `{`).
    pub fn detect(path: Option<&Path>, bytes: &[u8]) -> Format {
        let ext = path
            .and_then(Path::extension)
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("yaml" | "yml") => Format::Yaml,
            Some("json") => Format::Json,
            _ => match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
                Some(b'{') | Some(b'[') => Format::Json,
                _ => Format::Yaml,
            },
        }
    }
}

/// The document as bytes in `format`.
pub fn render(doc: &Value, format: Format) -> Result<Vec<u8>> {
    match format {
        Format::Json => {
            let mut bytes = serde_json::to_vec_pretty(doc).expect("a JSON value always serializes");
            bytes.push(b'\n');
            Ok(bytes)
        }
        Format::Yaml => serde_norway::to_string(doc)
            .map(String::into_bytes)
            .map_err(|e| Error::general("cannot write the state as YAML").because(e)),
    }
}

/// Parses a document in `format`; exit 4 saying where it broke.
pub fn parse(bytes: &[u8], format: Format, source: &str) -> Result<Value> {
    let doc: Value = match format {
        Format::Json => serde_json::from_slice(bytes).map_err(|e| {
            Error::validation(format!("{source} is not valid JSON"))
                .because(e)
                .hint("fix the document (or pass a .yaml file for YAML); nothing was changed")
        })?,
        Format::Yaml => serde_norway::from_slice(bytes).map_err(|e| {
            Error::validation(format!(
                "{source} is not a YAML document the state can hold"
            ))
            .because(e)
            .hint("fix the document (keys must be strings); nothing was changed")
        })?,
    };
    if !doc.is_object() {
        return Err(Error::validation(format!(
            "{source} is {}, not an object",
            super::path::type_name(&doc)
        ))
        .hint("a state document is a mapping like {\"phase\": ..., ...}; nothing was changed"));
    }
    Ok(doc)
}

/// What `import` did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Imported {
    /// The state file.
    pub path: String,
    /// The document's source: its file, or standard input.
    pub from: String,
    pub format: &'static str,
    /// The live state's revision before (`None`: there was none, or it did not parse).
    pub previous_revision: Option<u64>,
    pub revision: u64,
    /// Where the replaced version is kept: its backup, or the corrupt copy.
    pub backup: Option<String>,
}

/// Replaces the state under `txn` with `doc` (already checked against the
/// schema), read from `source`: refused (exit 4) when it is at an older
/// revision than the live state, and (exit 3) over a live state that does
/// not parse, unless `force` — which then keeps the damaged file aside.
pub fn import(
    txn: &Txn<'_, '_>,
    store: &Store<'_>,
    doc: Value,
    source: &str,
    format: Format,
    force: bool,
    detail: &mut Value,
) -> Result<Imported> {
    let done = |previous_revision, commit: Commit, detail: &Value| Imported {
        path: store.path().display().to_string(),
        from: source.to_string(),
        format: format.name(),
        previous_revision,
        revision: commit.revision,
        backup: commit
            .backup
            .map(|p| p.display().to_string())
            .or_else(|| detail["corrupt_kept_at"].as_str().map(str::to_owned)),
    };
    let live = match txn.load_opt() {
        Ok(live) => live,
        Err(e) if e.code() == Code::StateCorruption && !force => {
            return Err(e.hint(
                "pass --force to replace it with the import (the damaged file is kept aside), or run 'state-manager recover'",
            ));
        }
        Err(e) if e.code() == Code::StateCorruption => {
            let commit = commands::recover_into(txn, store, doc, detail)?;
            return Ok(done(None, commit, detail));
        }
        Err(e) => return Err(e),
    };
    admit(live.as_ref(), &doc, source, force, detail)?;
    let commit = txn.commit(live.as_ref(), doc, "pre-import")?;
    Ok(done(live.as_ref().map(document::revision), commit, detail))
}

/// The rules an import passes on any backend: `doc` (from `source`) must
/// be of the live state's lineage and not older than it, unless `force`
/// (exit 4 otherwise; `detail` says why).
pub fn admit(
    live: Option<&Value>,
    doc: &Value,
    source: &str,
    force: bool,
    detail: &mut Value,
) -> Result<()> {
    if let Err(e) = document::check_lineage(live, doc, source, force) {
        detail["conflict"] = json!("lineage");
        return Err(e);
    }
    let incoming = document::revision(doc);
    if let Some(lr) = live.map(document::revision)
        && incoming < lr
    {
        detail["conflict"] = json!("revision");
        detail["incoming"] = json!(incoming);
        detail["live"] = json!(lr);
        if !force {
            return Err(Error::validation(format!(
                "{source} is at revision {incoming}, older than the live state's {lr}"
            ))
            .hint("the state changed since that export: export it again and reapply your edits, or pass --force to overwrite it (it is backed up first)"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::integrity::{self, Seal};

    #[test]
    fn yaml_round_trip_gives_back_the_same_document() {
        let mut doc = document::fresh();
        doc["signals"] = json!({"PHASE1_START": 1635789123.456, "B": 0, "C": 1.0});
        doc["completedTasks"] = json!(["1.0", "yes", "2023-11-01", "", "null", "~"]);
        doc["context"] = json!({"n": null, "big": u64::MAX, "neg": -5, "s": "a: b\n'c'"});
        integrity::seal(&mut doc);
        let yaml = render(&doc, Format::Yaml).unwrap();
        let back = parse(&yaml, Format::Yaml, "t").unwrap();
        assert_eq!(back, doc, "{}", String::from_utf8_lossy(&yaml));
        assert_eq!(integrity::check_seal(&back), Seal::Verified);
    }

    #[test]
    fn formats_are_told_by_extension_then_content() {
        assert_eq!(Format::detect(Some(Path::new("a.yml")), b"{"), Format::Yaml);
        assert_eq!(
            Format::detect(Some(Path::new("a.json")), b"x"),
            Format::Json
        );
        assert_eq!(Format::detect(None, b"  {\"a\":1}"), Format::Json);
        assert_eq!(Format::detect(None, b"a: 1"), Format::Yaml);
    }
}
