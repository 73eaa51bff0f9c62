//! `set PATH VALUE` on a large state without building the whole document
//! (issue 16): the members the path does not touch are copied as stored.
//!
//! [`prepare`] splits the stored text into top-level members
//! ([`members::split`], which accepts only the toolkit's own pretty form)
//! and builds a *skeleton*: the document with each member the schema lets
//! it judge from the scan (any member the schema has no rule for, an
//! array of strings where the schema asks for one; [`schema::member_rules`])
//! replaced by a placeholder the same rule accepts, and the others — the
//! member `PATH` goes into, `metadata`, the small typed ones — parsed. The
//! change, the stamp and the schema check run on the skeleton exactly as
//! the whole-tree path runs them on the document; the checksum is the
//! SHA-256 of the compact text, fed from the skeleton's members and the
//! copied members' compact text (kept by the scan); the new text is the
//! skeleton's members printed as `to_vec_pretty` prints them, with the
//! copied members' stored text in their place. The result is byte for
//! byte what the whole-tree path writes.
//!
//! Errors are left to the whole-tree path: on any failure (a change that
//! is refused, a stamp or schema error, a member that does not parse)
//! [`prepare`] declines, and the caller parses the document and runs the
//! same change, which fails with the message it always had.

use std::io::Write;
use std::ops::Range;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::members::{self, Members};
use super::schema::{self, MemberRule};
use super::{document, store};
use crate::error::Result;

/// The smallest stored state [`prepare`] splits: below it, building the
/// whole document costs less than the scan saves.
pub const MIN_BYTES: usize = 64 * 1024;

/// A new version ready to write: its pieces, in order.
pub struct Spliced {
    pieces: Vec<Piece>,
    /// The text of the [`Piece::Own`] pieces.
    own: Vec<u8>,
    /// The new version's `metadata.revision`.
    pub revision: u64,
    copied: usize,
    members: usize,
}

enum Piece {
    /// A range of [`Spliced::own`].
    Own(Range<usize>),
    /// A range of the stored text.
    Stored(Range<usize>),
}

impl Spliced {
    /// The length of the new text.
    pub fn len(&self) -> usize {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Own(r) | Piece::Stored(r) => r.len(),
            })
            .sum()
    }

    /// Whether the new text is empty (never: it is a document).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many members are copied as stored, of how many.
    pub fn copied(&self) -> usize {
        self.copied
    }

    /// How many top-level members the new version has.
    pub fn members(&self) -> usize {
        self.members
    }

    /// Writes the new text; `stored` is the text [`prepare`] was given.
    pub fn write(&self, stored: &[u8], w: &mut dyn Write) -> std::io::Result<()> {
        for p in &self.pieces {
            match p {
                Piece::Own(r) => w.write_all(&self.own[r.clone()])?,
                Piece::Stored(r) => w.write_all(&stored[r.clone()])?,
            }
        }
        Ok(())
    }
}

/// The next version of the stored document `stored` after `change` (a
/// `set` into top-level member `key`), stamped and sealed, or why this
/// path declines (see the module docs).
pub fn prepare(
    stored: &[u8],
    key: &str,
    change: &mut dyn FnMut(&mut Value) -> Result<()>,
) -> std::result::Result<Spliced, String> {
    if stored.len() < MIN_BYTES {
        return Err("the state is smaller than 64 KiB".into());
    }
    if std::str::from_utf8(stored).is_err() {
        return Err("the state is not UTF-8".into());
    }
    let split = members::split(stored)
        .ok_or("the state is not exactly as the toolkit writes it (layout, escapes, numbers or repeated keys)")?;
    let rules = schema::member_rules().ok_or("the schema judges members together")?;
    let (mut doc, copied) = skeleton(stored, &split, key, rules)?;
    let basis = document::stamp_basis(&doc);
    change(&mut doc).map_err(|e| format!("the change is refused ({e})"))?;
    document::stamp(&mut doc, Some(&basis)).map_err(|e| format!("the stamp fails ({e})"))?;
    store::check_schema(&doc).map_err(|e| format!("the schema refuses it ({e})"))?;
    let Value::Object(top) = &mut doc else {
        return Err("the new document is not an object".into());
    };
    // Copied members keep their places: a set replaces a value in place or
    // adds its key at the end, the stamp adds `metadata` at the end.
    let copied_at = |i: usize, k: &str| {
        copied
            .get(i)
            .copied()
            .flatten()
            .filter(|_| split.members[i].key == k)
    };
    let meta = top
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or("the new document has no metadata")?;
    meta.shift_remove("checksum");
    let mut hash = Hashing(Sha256::new());
    hash.0.update(b"{");
    for (i, (k, v)) in top.iter().enumerate() {
        if i > 0 {
            hash.0.update(b",");
        }
        serde_json::to_writer(&mut hash, k).map_err(|e| e.to_string())?;
        hash.0.update(b":");
        match copied_at(i, k) {
            Some(m) => hash
                .0
                .update(&split.compact[split.members[m].compact.clone()]),
            None => serde_json::to_writer(&mut hash, v).map_err(|e| e.to_string())?,
        }
    }
    hash.0.update(b"}");
    let sum = format!("{}{}", document::PREFIX, document::hex(&hash.0.finalize()));
    let meta = top
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or("the new document has no metadata")?;
    meta.insert("checksum".into(), Value::String(sum));

    // The text `to_vec_pretty` writes, with the copied members as stored.
    let mut own = Vec::with_capacity(4096);
    let mut pieces = Vec::new();
    let mut from = 0;
    own.extend_from_slice(b"{\n");
    let n = top.len();
    for (i, (k, v)) in top.iter().enumerate() {
        own.extend_from_slice(b"  ");
        serde_json::to_writer(&mut own, k).map_err(|e| e.to_string())?;
        own.extend_from_slice(b": ");
        match copied_at(i, k) {
            Some(m) => {
                pieces.push(Piece::Own(from..own.len()));
                pieces.push(Piece::Stored(split.members[m].value.clone()));
                from = own.len();
            }
            None => pretty_one_down(v, &mut own),
        }
        own.extend_from_slice(if i + 1 < n { b",\n" } else { b"\n" });
    }
    own.extend_from_slice(b"}\n");
    pieces.push(Piece::Own(from..own.len()));
    Ok(Spliced {
        pieces,
        own,
        revision: document::revision(&doc),
        copied: copied.iter().flatten().count(),
        members: n,
    })
}

/// The document with the members the schema's rules let the scan judge
/// replaced by placeholders, and which member of `split` each one of its
/// first members copies.
fn skeleton(
    stored: &[u8],
    split: &Members,
    key: &str,
    rules: &[(String, MemberRule)],
) -> std::result::Result<(Value, Vec<Option<usize>>), String> {
    let mut top = Map::with_capacity(split.members.len() + 1);
    let mut copied = Vec::with_capacity(split.members.len());
    for (i, m) in split.members.iter().enumerate() {
        let rule = rules
            .iter()
            .find(|(k, _)| *k == m.key)
            .map_or(MemberRule::Anything, |(_, r)| *r);
        let judged = match rule {
            MemberRule::Anything => true,
            MemberRule::ArrayOfStrings => m.all_strings,
            MemberRule::Parse => false,
        };
        let placeholder = schema::placeholder(rule).filter(|_| judged);
        let value = match placeholder {
            Some(p) if m.key != key && m.key != "metadata" => {
                copied.push(Some(i));
                p
            }
            _ => {
                copied.push(None);
                serde_json::from_slice(&stored[m.value.clone()])
                    .map_err(|e| format!("member {:?} does not parse ({e})", m.key))?
            }
        };
        top.insert(m.key.clone(), value);
    }
    Ok((Value::Object(top), copied))
}

/// `v` as `to_vec_pretty` prints it one level down in an object: each line
/// after the first indented two more spaces (no string holds a raw line break).
fn pretty_one_down(v: &Value, out: &mut Vec<u8>) {
    let text = serde_json::to_vec_pretty(v).expect("a JSON value always serializes");
    for &b in &text {
        out.push(b);
        if b == b'\n' {
            out.extend_from_slice(b"  ");
        }
    }
}

/// A writer into a SHA-256.
struct Hashing(Sha256);

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
