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

use super::commands::{self, Ctx};
use super::document;
use super::integrity::{self, Seal};
use super::store;
use crate::cmd as cli;
use crate::config::MAX_INPUT_BYTES;
use crate::durable;
use crate::error::{Error, Result};
use crate::exit::Code;

const TOOL: &str = "state-manager";

/// A document format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Yaml,
}

impl Format {
    fn name(self) -> &'static str {
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

/// `export [--format json|yaml] [--output FILE] [--json]`.
///
/// Without `--output`, the document goes to stdout (and `--json` means
/// `--format json`); with it, the file is replaced atomically and durably
/// (a device or FIFO is written through) and a summary is printed (as JSON
/// with `--json`).
pub fn export(
    ctx: &Ctx,
    format: Option<Format>,
    output: Option<&Path>,
    as_json: bool,
) -> Result<Code> {
    ctx.audited_state("export", |detail| {
        let format = match (format, as_json, output) {
            (Some(Format::Yaml), true, None) => {
                return Err(Error::validation("--json asks for JSON on stdout, --format yaml for YAML")
                    .hint("drop one of them, or add --output FILE to get a JSON summary of a YAML export"));
            }
            (Some(f), _, _) => f,
            (None, _, Some(p)) => Format::detect(Some(p), b"{"),
            (None, _, None) => Format::Json,
        };
        detail["format"] = json!(format.name());
        let store = ctx.store()?;
        let doc = store.load()?;
        if let Seal::Mismatch { .. } = integrity::check_seal(&doc) {
            eprintln!(
                "{TOOL}: warning: the state's checksum does not match its content (changed outside the toolkit or corrupted); exporting it as it is — see 'state-manager verify-integrity'"
            );
        }
        let bytes = render(&doc, format)?;
        let Some(out) = output else {
            cli::print(&String::from_utf8_lossy(&bytes));
            return Ok(Code::Success);
        };
        durable::write_output(out, |w| {
            w.write_all(&bytes)
                .map_err(|e| Error::io(e, "cannot write the export", out))
        })?;
        detail["output"] = json!(out.display().to_string());
        let revision = document::revision(&doc);
        if durable::is_stdout(out) {
            // `--output /dev/stdout`: the document is the output, whole.
        } else if as_json {
            cli::print_json(&json!({
                "output": out.display().to_string(),
                "format": format.name(),
                "bytes": bytes.len(),
                "revision": revision,
            }));
        } else {
            cli::println(&format!(
                "exported revision {revision} of {} to {} ({}, {} bytes)",
                store.path().display(),
                out.display(),
                format.name(),
                bytes.len()
            ));
        }
        Ok(Code::Success)
    })
}

/// `import --file FILE|- [--force] [--json]`: see the module docs. Exit 3 the
/// live state does not parse (without --force), 4 invalid document or
/// older revision (without --force).
pub fn import(ctx: &Ctx, file: &str, force: bool, as_json: bool) -> Result<Code> {
    ctx.audited_state("import", |detail| {
        detail["file"] = json!(file);
        detail["force"] = json!(force);
        let (bytes, path, source) = if file == "-" {
            (
                durable::read_stdin_limited(MAX_INPUT_BYTES)?,
                None,
                "the document on standard input".to_string(),
            )
        } else {
            let p = Path::new(file);
            (
                durable::read_input_limited(p, MAX_INPUT_BYTES)?,
                Some(p),
                file.to_string(),
            )
        };
        let format = Format::detect(path, &bytes);
        detail["format"] = json!(format.name());
        let doc = parse(&bytes, format, &source)?;
        document::check_depth(&doc, 0, &source)?;
        document::check_metadata(&doc, &format!("{source}'s"))?;
        store::check_schema(&doc).map_err(|e| {
            e.hint(format!(
                "fix {source} ('state-manager validate' on a copy lists every problem); nothing was changed"
            ))
        })?;
        if let Seal::Mismatch { .. } = integrity::check_seal(&doc) {
            eprintln!(
                "{TOOL}: note: {source} was edited after export (its checksum no longer matches); importing it as it is"
            );
        }
        let incoming = document::revision(&doc);
        let store = ctx.store()?;
        let owner = ctx.owner_identity()?;
        let txn = store.begin(owner.as_ref())?;
        detail["lock_wait_ms"] = json!(crate::audit::event::ms(txn.waited));
        let live = match txn.load_opt() {
            Ok(live) => live,
            Err(e) if e.code() == Code::StateCorruption && !force => {
                return Err(e.hint(
                    "pass --force to replace it with the import (the damaged file is kept aside), or run 'state-manager recover'",
                ));
            }
            Err(e) if e.code() == Code::StateCorruption => {
                let commit = commands::recover_into(&txn, &store, doc, detail)?;
                return done(detail, &source, &store, None, commit, as_json);
            }
            Err(e) => return Err(e),
        };
        let live_revision = live.as_ref().map(document::revision);
        if let Some(lr) = live_revision
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
        let commit = txn.commit(live.as_ref(), doc, "pre-import")?;
        done(detail, &source, &store, live_revision, commit, as_json)
    })
}

fn done(
    detail: &mut Value,
    source: &str,
    store: &super::Store<'_>,
    previous: Option<u64>,
    commit: super::Commit,
    as_json: bool,
) -> Result<Code> {
    detail["revision"] = json!(commit.revision);
    let backup = commit
        .backup
        .map(|p| p.display().to_string())
        .or_else(|| detail["corrupt_kept_at"].as_str().map(str::to_owned));
    if as_json {
        cli::print_json(&json!({
            "path": store.path().display().to_string(),
            "from": source,
            "format": detail["format"],
            "previous_revision": previous,
            "revision": commit.revision,
            "backup": backup,
        }));
    } else {
        let kept = backup.map_or(String::new(), |b| {
            format!("; the previous version is kept as {b}")
        });
        cli::println(&format!(
            "imported {source} into {} (revision {}{kept})",
            store.path().display(),
            commit.revision
        ));
    }
    Ok(Code::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

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
