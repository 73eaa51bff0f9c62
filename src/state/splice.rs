//! `set PATH VALUE` on a large state without building the whole document
//! (issue 16): the members the path does not touch are copied as stored.
//!
//! [`prepare`] scans the stored text once ([`members::split`], which
//! accepts only the toolkit's own pretty form) and, in that pass, feeds
//! the checksum's SHA-256 the new document's compact text: each member the
//! set leaves alone from its stored text less the layout, the member the
//! path goes into and the stamped `metadata` from their new values (the
//! change made on that member alone, as `StateStore::set` allows). Then it
//! builds a *skeleton* — the new document with each untouched member the
//! schema lets the scan judge (any member the schema has no rule for, an
//! array of strings where the schema asks for one; [`schema::member_rules`])
//! replaced by a placeholder the same rule accepts, the small typed ones
//! parsed — and runs on it the stamp and the schema check the whole-tree
//! path runs on the document. The new text is the skeleton's members as
//! `to_vec_pretty` prints them, each untouched member's stored text in its
//! place (the scan showed it is that member's pretty form). The result is
//! byte for byte what the whole-tree path writes.
//!
//! Errors are left to the whole-tree path: on any failure (a change that
//! is refused, a stamp or schema error, a member that does not parse)
//! [`prepare`] declines, and the caller parses the document and runs the
//! same change, which fails with the message it always had.

use std::io::Write;
use std::ops::Range;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::members;
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
/// `set` into top-level member `key`), stamped at `now` and sealed, or why
/// this path declines (see the module docs).
pub fn prepare(
    stored: &[u8],
    key: &str,
    change: &mut dyn FnMut(&mut Value) -> Result<()>,
    now: &str,
) -> std::result::Result<Spliced, String> {
    if stored.len() < MIN_BYTES {
        return Err("the state is smaller than 64 KiB".into());
    }
    if std::str::from_utf8(stored).is_err() {
        return Err("the state is not UTF-8".into());
    }
    let rules = schema::member_rules().ok_or("the schema judges members together")?;
    let mut sealing = Sealing {
        stored,
        key,
        change,
        now,
        hash: Sha256::new(),
        buf: Vec::with_capacity(HASH_BUF + 4096),
        first: true,
        changed: None,
        meta: None,
        refused: None,
    };
    let Some(split) = members::split(stored, &mut sealing) else {
        return Err(sealing.refused.unwrap_or_else(|| {
            "the state is not exactly as the toolkit writes it (layout, escapes, numbers or repeated keys)".into()
        }));
    };
    let meta = sealing.meta.take().ok_or("the state has no metadata")?;
    let changed = match sealing.changed.take() {
        Some(v) => v,
        // A new member: the set adds it after the others, as to a whole document.
        None => {
            let v = sealing.change_member(None)?;
            sealing.member_text(key, &v);
            v
        }
    };
    sealing.buf.push(b'}');
    sealing.hash.update(&sealing.buf);
    let sum = format!(
        "{}{}",
        document::PREFIX,
        document::hex(&sealing.hash.finalize())
    );

    // The skeleton: what the whole-tree path would check, with the copied
    // members that the schema's rules let the scan judge as placeholders.
    let mut top = Map::with_capacity(split.len() + 1);
    let mut old_meta = None;
    for m in &split {
        let value = if m.key == key {
            changed.clone()
        } else if m.key == "metadata" {
            let v: Value = parse(stored, m)?;
            old_meta = Some(v.clone());
            v
        } else {
            let rule = rules
                .iter()
                .find(|(k, _)| *k == m.key)
                .map_or(MemberRule::Anything, |(_, r)| *r);
            let judged = match rule {
                MemberRule::Anything => true,
                MemberRule::ArrayOfStrings => m.all_strings,
                MemberRule::Parse => false,
            };
            match schema::placeholder(rule).filter(|_| judged) {
                Some(p) => p,
                None => parse(stored, m)?,
            }
        };
        top.insert(m.key.clone(), value);
    }
    if !top.contains_key(key) {
        top.insert(key.to_string(), changed);
    }
    let mut doc = Value::Object(top);
    let basis = serde_json::json!({ "metadata": old_meta });
    document::stamp_at(&mut doc, Some(&basis), now.to_string())
        .map_err(|e| format!("the stamp fails ({e})"))?;
    store::check_schema(&doc).map_err(|e| format!("the schema refuses it ({e})"))?;
    // The metadata hashed in the scan is the one the stamp made here.
    let Some(Value::Object(stamped)) = doc.get_mut("metadata") else {
        return Err("the new document has no metadata".into());
    };
    stamped.shift_remove("checksum");
    if Value::Object(stamped.clone()) != meta {
        return Err("the metadata stamped differs from the one hashed".into());
    }
    stamped.insert("checksum".into(), Value::String(sum));

    // The text `to_vec_pretty` writes, with the members not changed as stored.
    let Value::Object(top) = &doc else {
        unreachable!("built as an object");
    };
    let mut own = Vec::with_capacity(4096);
    let mut pieces = Vec::new();
    let mut from = 0;
    own.extend_from_slice(b"{\n");
    let n = top.len();
    let mut copied = 0;
    for (i, (k, v)) in top.iter().enumerate() {
        own.extend_from_slice(b"  ");
        serde_json::to_writer(&mut own, k).map_err(|e| e.to_string())?;
        own.extend_from_slice(b": ");
        match split
            .get(i)
            .filter(|m| m.key == *k && m.key != key && m.key != "metadata")
        {
            Some(m) => {
                pieces.push(Piece::Own(from..own.len()));
                pieces.push(Piece::Stored(m.value.clone()));
                from = own.len();
                copied += 1;
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
        copied,
        members: n,
    })
}

/// The value of member `m` of `stored`.
fn parse(stored: &[u8], m: &members::Member) -> std::result::Result<Value, String> {
    serde_json::from_slice(&stored[m.value.clone()])
        .map_err(|e| format!("member {:?} does not parse ({e})", m.key))
}

/// How much compact text is gathered before it is hashed.
const HASH_BUF: usize = 1 << 16;

/// The [`members::Sink`] of [`prepare`]: hashes the new document's compact
/// text (without `metadata.checksum`) as the scan goes, each member the
/// set leaves as it is from its stored text, the changed member and the
/// stamped metadata from their new values.
struct Sealing<'a> {
    stored: &'a [u8],
    key: &'a str,
    change: &'a mut dyn FnMut(&mut Value) -> Result<()>,
    now: &'a str,
    hash: Sha256,
    buf: Vec<u8>,
    first: bool,
    /// The new value of member `key`, once made.
    changed: Option<Value>,
    /// The stamped metadata, without a checksum, once made.
    meta: Option<Value>,
    /// Why the split was stopped.
    refused: Option<String>,
}

impl Sealing<'_> {
    fn spill(&mut self) {
        if self.buf.len() >= HASH_BUF {
            self.hash.update(&self.buf);
            self.buf.clear();
        }
    }

    /// `,"key":` (`{"key":` first).
    fn member_key(&mut self, key: &str) {
        self.buf.push(if self.first { b'{' } else { b',' });
        self.first = false;
        serde_json::to_writer(&mut self.buf, key).expect("a string serializes");
        self.buf.push(b':');
    }

    /// A whole member, from its value.
    fn member_text(&mut self, key: &str, v: &Value) {
        self.member_key(key);
        serde_json::to_writer(&mut self.buf, v).expect("a JSON value serializes");
        self.spill();
    }

    /// Member `key` after the change: `old` its value (`None`: there is none).
    fn change_member(&mut self, old: Option<Value>) -> std::result::Result<Value, String> {
        // The change goes into this member alone (StateStore::set's contract):
        // made on a document of this member, it makes what it makes in the whole.
        let mut mini = Map::new();
        if let Some(v) = old {
            mini.insert(self.key.to_string(), v);
        }
        let mut mini = Value::Object(mini);
        (self.change)(&mut mini).map_err(|e| format!("the change is refused ({e})"))?;
        match mini {
            Value::Object(mut m) if m.len() == 1 => m
                .shift_remove(self.key)
                .ok_or_else(|| "the change made another member".into()),
            _ => Err("the change made another member".into()),
        }
    }

    fn end_member(&mut self, m: &members::Member) -> std::result::Result<(), String> {
        if m.key == self.key {
            let v = self.change_member(Some(parse(self.stored, m)?))?;
            self.member_text(&m.key, &v);
            self.changed = Some(v);
        } else if m.key == "metadata" {
            let old = parse(self.stored, m)?;
            let basis = serde_json::json!({ "metadata": old });
            let mut mini = basis.clone();
            document::stamp_at(&mut mini, Some(&basis), self.now.to_string())
                .map_err(|e| format!("the stamp fails ({e})"))?;
            let mut meta = mini["metadata"].take();
            if let Some(o) = meta.as_object_mut() {
                o.shift_remove("checksum");
            }
            self.member_text("metadata", &meta);
            self.meta = Some(meta);
        } else {
            self.spill();
        }
        Ok(())
    }
}

impl members::Sink for Sealing<'_> {
    fn start(&mut self, key: &str) -> bool {
        if key == self.key || key == "metadata" {
            return false; // hashed from its new value at its end
        }
        self.member_key(key);
        true
    }

    #[inline]
    fn compact(&mut self, run: &[u8]) {
        self.buf.extend_from_slice(run);
        if self.buf.len() >= HASH_BUF {
            self.spill();
        }
    }

    fn end(&mut self, m: &members::Member) -> Option<()> {
        match self.end_member(m) {
            Ok(()) => Some(()),
            Err(why) => {
                self.refused = Some(why);
                None
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::path;
    use proptest::prelude::*;
    use serde_json::json;

    /// What the whole-tree path writes: parse, change, stamp, seal.
    fn whole(
        stored: &[u8],
        change: &mut dyn FnMut(&mut Value) -> Result<()>,
        now: &str,
    ) -> Option<Vec<u8>> {
        let mut doc: Value = serde_json::from_slice(stored).ok()?;
        let basis = document::stamp_basis(&doc);
        change(&mut doc).ok()?;
        document::stamp_at(&mut doc, Some(&basis), now.to_string()).ok()?;
        let bytes = document::seal_pretty(&mut doc);
        store::check_schema(&doc).ok()?;
        Some(bytes)
    }

    fn spliced(
        stored: &[u8],
        key: &str,
        change: &mut dyn FnMut(&mut Value) -> Result<()>,
        now: &str,
    ) -> Option<Vec<u8>> {
        let s = prepare(stored, key, change, now).ok()?;
        let mut out = Vec::new();
        s.write(stored, &mut out).unwrap();
        assert_eq!(out.len(), s.len());
        Some(out)
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            (-1e6f64..1e6).prop_map(|f| json!(f)),
            "[ -~\u{0}-\u{1f}é😀]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 20, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec(("[a-c\"]{0,2}", inner), 0..4)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// A state of more than 64 KiB with `extra` members mixed in.
    fn state(extra: Vec<(String, Value)>, tasks: Vec<String>) -> Vec<u8> {
        let mut doc = document::fresh();
        let pad: Vec<String> = (0..6000).map(|i| format!("pad-{i:05}")).collect();
        doc["pad"] = json!(pad);
        doc["completedTasks"] = json!(tasks);
        for (k, v) in extra {
            doc[k] = v;
        }
        let mut b = serde_json::to_vec_pretty(&doc).unwrap();
        b.push(b'\n');
        b
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever a set does to a large state, the member path writes
        /// what the whole-tree path writes, or declines where that one fails.
        #[test]
        fn writes_what_the_whole_tree_path_writes(
            extra in proptest::collection::vec(
                (prop_oneof![Just("x".to_string()), Just("phase".to_string()),
                    Just("signals".to_string()), Just("lastActivation".to_string()),
                    Just("completedTasks".to_string()), "[a-z]{1,2}"], value()),
                0..4),
            tasks in proptest::collection::vec("[a-z\"]{0,4}", 0..4),
            key in prop_oneof![Just("phase"), Just("x"), Just("new"), Just("completedTasks"),
                Just("signals"), Just("pad")],
            rest in prop_oneof![Just(""), Just(".a"), Just("[0]"), Just("[-1]"), Just(".S")],
            v in value(),
        ) {
            let stored = state(extra, tasks);
            let segs = path::parse(&format!(".{key}{rest}")).unwrap();
            let mut change = |doc: &mut Value| path::set(doc, &segs, v.clone());
            let now = "2026-12-05T00:00:00Z";
            let want = whole(&stored, &mut change, now);
            let got = spliced(&stored, key, &mut change, now);
            prop_assert_eq!(got.is_some(), want.is_some());
            if let (Some(got), Some(want)) = (got, want) {
                prop_assert!(got == want, "{}\n---\n{}", String::from_utf8_lossy(&got), String::from_utf8_lossy(&want));
            }
        }
    }

    #[test]
    fn declines_small_odd_or_invalid_states() {
        let now = "2026-12-05T00:00:00Z";
        let mut set_phase = |doc: &mut Value| {
            doc["phase"] = json!("p");
            Ok(())
        };
        let good = state(vec![], vec!["a".into()]);
        assert!(spliced(&good, "phase", &mut set_phase, now).is_some());
        let small = state(vec![], vec![]);
        let small = &small[..1000];
        assert!(prepare(small, "phase", &mut set_phase, now).is_err());
        let tabs = String::from_utf8(good.clone())
            .unwrap()
            .replace("\n  \"", "\n\t\"");
        assert!(prepare(tabs.as_bytes(), "phase", &mut set_phase, now).is_err());
        // A task that is not a string: completedTasks is parsed, the schema refuses it.
        let bad = state(vec![("completedTasks".into(), json!(["a", 1]))], vec![]);
        let why = prepare(&bad, "phase", &mut set_phase, now).err().unwrap();
        assert!(why.contains("schema"), "{why}");
    }
}
