//! The state document itself: a fresh one, the toolkit-owned metadata, the
//! nesting limit of everything the toolkit accepts, and upgrading older
//! documents to the current schema version.
//!
//! Nesting: serde_json refuses to parse JSON nested 128 levels or more, so a
//! value accepted deeper than that would make a file no later command can
//! read. Every JSON input (state values and documents, lock and checkpoint
//! metadata, merge patches) is held to [`MAX_DEPTH`], counted on the
//! document it ends up in; the margin to 128 covers the wrapping the
//! toolkit adds around a value (a lock record puts metadata 3 levels down,
//! a checkpoint's metadata.json 1, an audit event its detail 1).
//!
//! Metadata: `metadata.*` belongs to the toolkit (docs/architecture.md, "The document"). `set`,
//! `append` and `merge` may not touch it; a whole document (`write`,
//! `import`) may carry it, but `metadata` must be an object and
//! `metadata.revision`, when present, an integer in 0..=[`MAX_REVISION`].

use serde_json::{Map, Value, json};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The schema version this toolkit writes.
pub const SCHEMA_VERSION: &str = "1.0";

/// The deepest nesting accepted anywhere: `[]` and `{}` are 1 deep, a
/// scalar 0; a state document counts from its top object, so a value set
/// at `.a.b` may nest `MAX_DEPTH - 2` levels.
pub const MAX_DEPTH: usize = 100;

/// The largest `metadata.revision`: 2^53 - 1, the largest integer every JSON
/// reader (jq, JavaScript) holds exactly.
pub const MAX_REVISION: u64 = (1 << 53) - 1;

/// How deeply `v` nests (see [`MAX_DEPTH`]); iterative, so any depth is safe.
pub fn depth(v: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 1usize)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Array(a) => {
                deepest = deepest.max(d);
                stack.extend(a.iter().map(|x| (x, d + 1)));
            }
            Value::Object(m) => {
                deepest = deepest.max(d);
                stack.extend(m.values().map(|x| (x, d + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// Refuses (exit 4) `what` when, placed `base` levels down in what the
/// toolkit stores, it would nest deeper than [`MAX_DEPTH`].
pub fn check_depth(v: &Value, base: usize, what: &str) -> Result<()> {
    let d = base + depth(v);
    if d <= MAX_DEPTH {
        return Ok(());
    }
    Err(Error::validation(format!(
        "{what} nests {d} levels deep, more than the {MAX_DEPTH} the toolkit accepts"
    ))
    .hint(format!(
        "store flatter data (at most {MAX_DEPTH} levels; in the state, counted from the top of the document); nothing was changed"
    )))
}

/// Refuses (exit 4) a document whose `metadata` is not an object or whose
/// `metadata.revision` is not an integer in 0..=[`MAX_REVISION`]; `whose`
/// names the document in the message.
pub fn check_metadata(doc: &Value, whose: &str) -> Result<()> {
    let Some(meta) = doc.get("metadata") else {
        return Ok(());
    };
    if !meta.is_object() {
        return Err(Error::validation(format!(
            "{whose} metadata is {}, not an object",
            super::path::type_name(meta)
        ))
        .hint("metadata.* belongs to the toolkit: leave it as 'state-manager read' printed it, or drop it"));
    }
    match meta.get("revision") {
        None => Ok(()),
        Some(r) if r.as_u64().is_some_and(|n| n <= MAX_REVISION) => Ok(()),
        Some(r) => Err(Error::validation(format!(
            "{whose} metadata.revision {r} is not a revision number"
        ))
        .because(format!("a revision is an integer from 0 to {MAX_REVISION}"))
        .hint("leave metadata.revision as 'state-manager read' printed it, or drop it")),
    }
}

/// Now, as RFC 3339 UTC with seconds.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Now, as epoch seconds with a fraction (the form of `signals.*`).
pub fn now_epoch() -> f64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_micros() as f64 / 1000.0).round() / 1000.0
}

/// A new document as `init` writes it.
pub fn fresh() -> Value {
    let now = now_rfc3339();
    json!({
        "schemaVersion": SCHEMA_VERSION,
        "phase": "pre-init",
        "completedTasks": [],
        "signals": {},
        "lastActivation": null,
        "metadata": { "created": now, "lastModified": now, "revision": 0, "lineage": new_lineage() },
        "degradedMode": { "enabled": false, "reason": "", "timestamp": "", "disabledFeatures": [] }
    })
}

/// A new lineage: a random (version 4) UUID naming one state's history, as
/// Terraform's state has. `init` sets it; every later version keeps it, on
/// every backend, so `import`, `recover` and `restore` can tell a document
/// of another state from an older version of this one.
pub fn new_lineage() -> String {
    use std::io::Read;
    let mut b = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    if read.is_err() {
        // No /dev/urandom (a bare container): the clock, the pid and the
        // address of a stack value are enough to keep two states apart.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let mix = t ^ (u128::from(std::process::id()) << 64) ^ (&b as *const _ as usize as u128);
        b = mix.to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// `bytes` as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from_digit(u32::from(b >> 4), 16).expect("a nibble"));
        out.push(char::from_digit(u32::from(b & 0xf), 16).expect("a nibble"));
    }
    out
}

/// `metadata.lineage`, when the document has one.
pub fn lineage(doc: &Value) -> Option<&str> {
    doc.pointer("/metadata/lineage").and_then(Value::as_str)
}

/// Refuses (exit 4) `incoming`, named `what`, when it carries another
/// lineage than `live` — a document of another state, not an older version
/// of this one — unless `force`. A side without a lineage (written before
/// lineages existed) passes.
pub fn check_lineage(
    live: Option<&Value>,
    incoming: &Value,
    what: &str,
    force: bool,
) -> Result<()> {
    let (Some(ours), Some(theirs)) = (live.and_then(lineage), lineage(incoming)) else {
        return Ok(());
    };
    if ours == theirs || force {
        return Ok(());
    }
    Err(Error::validation(format!(
        "{what} belongs to another state (lineage {theirs}; this state's is {ours})"
    ))
    .hint("check that you picked the right file or state; pass --force to replace this state with it anyway"))
}

/// `metadata.revision`, 0 when absent.
pub fn revision(doc: &Value) -> u64 {
    doc.pointer("/metadata/revision")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// Stamps a document about to replace `old`: keeps `created`, bumps
/// `revision` past the old one and sets `lastModified`. Exit 4 when `doc`
/// or `old` breaks [`check_metadata`] (an unreadable revision is never taken
/// for 0) or `doc` nests deeper than [`MAX_DEPTH`].
pub fn stamp(doc: &mut Value, old: Option<&Value>) -> Result<()> {
    stamp_at(doc, old, now_rfc3339())
}

/// [`stamp`] with `now` (RFC 3339, seconds) as the time: a backend whose
/// server keeps the time passes the server's.
pub fn stamp_at(doc: &mut Value, old: Option<&Value>, now: String) -> Result<()> {
    if !doc.is_object() {
        return Err(Error::validation("the state must be a JSON object")
            .hint("pass a document like {\"phase\": \"...\", ...}"));
    }
    if let Some(old) = old {
        check_metadata(old, "the live state's").map_err(|e| {
            e.hint("run 'state-manager repair' (it resets toolkit-owned fields of the wrong type), then try again")
        })?;
    }
    check_metadata(doc, "the new document's")?;
    check_depth(doc, 0, "the new document")?;
    let Value::Object(top) = doc else {
        unreachable!("checked above");
    };
    let old_rev = old.map(revision).unwrap_or(0);
    let created = old
        .and_then(|o| o.pointer("/metadata/created"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let meta = top
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let m = meta.as_object_mut().expect("checked by check_metadata");
    let created = created
        .or_else(|| m.get("created").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| now.clone());
    m.insert("created".into(), Value::String(created));
    m.insert("lastModified".into(), Value::String(now));
    m.insert("revision".into(), json!(old_rev.max(revision_of(m)) + 1));
    // The lineage stays with the state: the document's own (an import of
    // another state's, let through by --force), else the old one's, else a
    // new one (a document from before lineages existed gets one now).
    if !m.get("lineage").is_some_and(Value::is_string) {
        let kept = old
            .and_then(lineage)
            .map_or_else(new_lineage, str::to_owned);
        m.insert("lineage".into(), Value::String(kept));
    }
    Ok(())
}

/// What [`stamp`] reads of the version a document replaces: its `metadata`
/// alone. A transaction that edits the loaded document in place keeps this
/// instead of a copy of the whole document.
pub fn stamp_basis(old: &Value) -> Value {
    match old.get("metadata") {
        Some(m) => json!({ "metadata": m.clone() }),
        None => json!({}),
    }
}

fn revision_of(m: &Map<String, Value>) -> u64 {
    m.get("revision").and_then(Value::as_u64).unwrap_or(0)
}

/// What `migrate` would do to `doc`: `Ok(None)` when it is current, the
/// upgraded document and a list of changes otherwise, exit 4 for a newer version.
pub fn migrate(doc: &Value) -> Result<Option<(Value, Vec<String>)>> {
    let Value::Object(top) = doc else {
        return Err(
            Error::validation("the state is not a JSON object, so it cannot be migrated")
                .hint("run 'state-manager recover' to restore a backup"),
        );
    };
    if let Some(v) = top.get("schemaVersion") {
        let known = v
            .as_str()
            .and_then(|s| s.split_once('.'))
            .and_then(|(major, _)| major.parse::<u32>().ok());
        match known {
            Some(1) => {}
            Some(major) if major > 1 => {
                return Err(Error::validation(format!(
                    "schemaVersion {v} is newer than this toolkit's {SCHEMA_VERSION}"
                ))
                .hint("upgrade wfstate; nothing was changed"));
            }
            _ => {
                return Err(Error::validation(format!("unknown schemaVersion {v}"))
                    .hint("set schemaVersion to \"1.0\" or remove it, then migrate again"));
            }
        }
    }
    let mut out = doc.clone();
    let o = out.as_object_mut().expect("checked above");
    let fresh = fresh();
    let mut changes = Vec::new();
    for key in [
        "schemaVersion",
        "phase",
        "completedTasks",
        "signals",
        "lastActivation",
        "degradedMode",
    ] {
        if !o.contains_key(key) {
            o.insert(key.into(), fresh[key].clone());
            changes.push(format!("added {key} = {}", fresh[key]));
        }
    }
    if let Some(Value::Object(dm)) = o.get_mut("degradedMode") {
        for key in ["enabled", "reason", "timestamp", "disabledFeatures"] {
            if !dm.contains_key(key) {
                dm.insert(key.into(), fresh["degradedMode"][key].clone());
                changes.push(format!("added degradedMode.{key}"));
            }
        }
    }
    let meta = o.entry("metadata").or_insert_with(|| json!({}));
    if let Value::Object(m) = meta {
        for key in ["created", "lastModified"] {
            if !m.contains_key(key) {
                m.insert(key.into(), fresh["metadata"][key].clone());
                changes.push(format!("added metadata.{key}"));
            }
        }
    }
    if changes.is_empty() {
        Ok(None)
    } else {
        Ok(Some((out, changes)))
    }
}

/// Degraded mode as a report shows it: the document's `degradedMode`
/// object with snake_case keys (`since` is its `timestamp`, `features` its
/// `disabledFeatures`; an empty string is `None`). Off when there is no
/// state. The same shape in every report (`status`, `error-recovery status`).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct DegradedMode {
    pub enabled: bool,
    pub reason: Option<String>,
    /// When it was turned on (RFC 3339).
    pub since: Option<String>,
    /// The features turned off.
    pub features: Vec<String>,
}

impl DegradedMode {
    /// The degraded mode document `doc` records.
    pub fn of(doc: Option<&Value>) -> DegradedMode {
        let dm = doc.and_then(|d| d.get("degradedMode"));
        let text = |k: &str| {
            dm.and_then(|m| m.get(k))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        DegradedMode {
            enabled: dm.and_then(|m| m.get("enabled")) == Some(&Value::Bool(true)),
            reason: text("reason"),
            since: text("timestamp"),
            features: dm
                .and_then(|m| m.get("disabledFeatures"))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

// The checksum every document carries (see `super::integrity` for the rules).

/// The prefix of every checksum the toolkit writes.
pub const PREFIX: &str = "sha256:";

/// The lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The checksum of a document with no `metadata.checksum` in it.
fn content_checksum(unsealed: &Value) -> String {
    let bytes = serde_json::to_vec(unsealed).expect("a JSON value always serializes");
    format!("{PREFIX}{}", sha256_hex(&bytes))
}

/// Sets `metadata.checksum` to the checksum of the rest of `doc` (see the
/// module docs). A document without a `metadata` object is left alone: the
/// schema refuses it anyway.
pub fn seal(doc: &mut Value) {
    let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    // shift_remove keeps the other keys in place: the order is part of the content.
    meta.shift_remove("checksum");
    let sum = content_checksum(doc);
    if let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("checksum".into(), Value::String(sum));
    }
}

/// `doc` sealed (as [`seal`]) and serialized as the state file holds it:
/// pretty, with a final newline. One serialization pass writes the pretty
/// bytes and feeds the compact form the checksum covers to the hash (see
/// [`Tee`]); the checksum is then put in place in those bytes. The result
/// is byte for byte `to_vec_pretty` of the sealed document, without
/// serializing it twice or holding its compact form in memory.
pub fn seal_pretty(doc: &mut Value) -> Vec<u8> {
    let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut) else {
        return pretty_line(doc);
    };
    meta.shift_remove("checksum");
    if meta.is_empty() {
        // No member to put the checksum after (a stamped document always has some).
        seal(doc);
        return pretty_line(doc);
    }
    let mut tee = Tee::default();
    let mut bytes = Vec::with_capacity(4096);
    {
        let mut ser = serde_json::Serializer::with_formatter(&mut bytes, &mut tee);
        serde::Serialize::serialize(&*doc, &mut ser).expect("a JSON value always serializes");
    }
    let (hash, meta_end) = tee.finish();
    let sum = format!("{PREFIX}{}", hex(&hash));
    let Some(at) = meta_end else {
        unreachable!("a top-level metadata object always ends");
    };
    // The member `to_vec_pretty` writes last in `metadata` (at depth 2).
    let member = format!(",\n    \"checksum\": \"{sum}\"");
    bytes.splice(at..at, member.into_bytes());
    bytes.push(b'\n');
    if let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("checksum".into(), Value::String(sum));
    }
    bytes
}

fn pretty_line(doc: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(doc).expect("a JSON value always serializes");
    bytes.push(b'\n');
    bytes
}

/// A serde_json formatter that writes the pretty form (to the serializer's
/// writer) and the compact form (to a SHA-256, through a 64 KiB buffer) of
/// one pass over a document, and notes where in the pretty bytes the
/// top-level `metadata` object's closing starts (where [`seal_pretty`]
/// puts the checksum). Every method of `Formatter` is forwarded to both
/// sides: one left to its default would write the pretty side only.
#[derive(Default)]
struct Tee {
    pretty: serde_json::ser::PrettyFormatter<'static>,
    compact: Vec<u8>,
    hash: Sha256,
    /// Bytes written to the pretty side so far.
    at: usize,
    /// Nesting of arrays and objects at this point (the document is 1 inside).
    depth: usize,
    /// Inside a key of the top-level object, and its text so far.
    in_top_key: bool,
    top_key: Vec<u8>,
    /// Whether the current top-level member is `metadata`.
    in_meta: bool,
    meta_end: Option<usize>,
}

impl Tee {
    fn finish(mut self) -> (Vec<u8>, Option<usize>) {
        self.hash.update(&self.compact);
        (self.hash.finalize().to_vec(), self.meta_end)
    }

    fn spill(&mut self) {
        if self.compact.len() >= 1 << 16 {
            self.hash.update(&self.compact);
            self.compact.clear();
        }
    }
}

/// A writer that counts what passes through it into `n`.
struct Counted<'w, W: ?Sized> {
    inner: &'w mut W,
    n: &'w mut usize,
}

impl<W: ?Sized + std::io::Write> std::io::Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let k = self.inner.write(buf)?;
        *self.n += k;
        Ok(k)
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.inner.write_all(buf)?;
        *self.n += buf.len();
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Forwards one `Formatter` method to both sides of a [`Tee`].
macro_rules! tee {
    ($name:ident $(, $arg:ident : $ty:ty)*) => {
        fn $name<W: ?Sized + std::io::Write>(&mut self, w: &mut W $(, $arg: $ty)*) -> std::io::Result<()> {
            let mut w = Counted { inner: w, n: &mut self.at };
            self.pretty.$name(&mut w $(, $arg)*)?;
            serde_json::ser::CompactFormatter.$name(&mut self.compact $(, $arg)*)?;
            self.spill();
            Ok(())
        }
    };
}

impl serde_json::ser::Formatter for &mut Tee {
    tee!(write_null);
    tee!(write_bool, v: bool);
    tee!(write_i8, v: i8);
    tee!(write_i16, v: i16);
    tee!(write_i32, v: i32);
    tee!(write_i64, v: i64);
    tee!(write_i128, v: i128);
    tee!(write_u8, v: u8);
    tee!(write_u16, v: u16);
    tee!(write_u32, v: u32);
    tee!(write_u64, v: u64);
    tee!(write_u128, v: u128);
    tee!(write_f32, v: f32);
    tee!(write_f64, v: f64);
    tee!(write_number_str, v: &str);
    tee!(begin_string);
    tee!(end_string);
    tee!(write_raw_fragment, v: &str);
    tee!(write_byte_array, v: &[u8]);
    tee!(end_array_value);
    tee!(begin_object_value);
    tee!(end_object_value);
    tee!(begin_array_value, first: bool);

    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        if self.in_top_key && self.top_key.len() <= 8 {
            self.top_key.extend_from_slice(fragment.as_bytes());
        }
        let mut w = Counted {
            inner: w,
            n: &mut self.at,
        };
        self.pretty.write_string_fragment(&mut w, fragment)?;
        self.compact.extend_from_slice(fragment.as_bytes());
        self.spill();
        Ok(())
    }

    fn write_char_escape<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        escape: serde_json::ser::CharEscape,
    ) -> std::io::Result<()> {
        use serde_json::ser::CharEscape;
        if self.in_top_key {
            // No escape is in "metadata": this key is another one.
            self.top_key.push(0);
        }
        // CharEscape is not Copy: make the same escape for the second side.
        let again = match &escape {
            CharEscape::Quote => CharEscape::Quote,
            CharEscape::ReverseSolidus => CharEscape::ReverseSolidus,
            CharEscape::Solidus => CharEscape::Solidus,
            CharEscape::Backspace => CharEscape::Backspace,
            CharEscape::FormFeed => CharEscape::FormFeed,
            CharEscape::LineFeed => CharEscape::LineFeed,
            CharEscape::CarriageReturn => CharEscape::CarriageReturn,
            CharEscape::Tab => CharEscape::Tab,
            CharEscape::AsciiControl(b) => CharEscape::AsciiControl(*b),
        };
        let mut w = Counted {
            inner: w,
            n: &mut self.at,
        };
        self.pretty.write_char_escape(&mut w, escape)?;
        serde_json::ser::CompactFormatter.write_char_escape(&mut self.compact, again)?;
        self.spill();
        Ok(())
    }

    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.depth += 1;
        let mut w = Counted {
            inner: w,
            n: &mut self.at,
        };
        self.pretty.begin_array(&mut w)?;
        serde_json::ser::CompactFormatter.begin_array(&mut self.compact)
    }

    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.depth -= 1;
        let mut w = Counted {
            inner: w,
            n: &mut self.at,
        };
        self.pretty.end_array(&mut w)?;
        serde_json::ser::CompactFormatter.end_array(&mut self.compact)?;
        self.spill();
        Ok(())
    }

    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.depth += 1;
        let mut w = Counted {
            inner: w,
            n: &mut self.at,
        };
        self.pretty.begin_object(&mut w)?;
        serde_json::ser::CompactFormatter.begin_object(&mut self.compact)
    }

    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        if self.depth == 2 && self.in_meta && self.meta_end.is_none() {
            self.meta_end = Some(self.at);
        }
        self.depth -= 1;
        let mut w = Counted {
            inner: w,
            n: &mut self.at,
        };
        self.pretty.end_object(&mut w)?;
        serde_json::ser::CompactFormatter.end_object(&mut self.compact)?;
        self.spill();
        Ok(())
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if self.depth == 1 {
            self.in_top_key = true;
            self.top_key.clear();
        }
        let mut w = Counted {
            inner: w,
            n: &mut self.at,
        };
        self.pretty.begin_object_key(&mut w, first)?;
        serde_json::ser::CompactFormatter.begin_object_key(&mut self.compact, first)
    }

    fn end_object_key<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        if self.depth == 1 {
            self.in_top_key = false;
            self.in_meta = self.top_key == b"metadata";
        }
        let mut w = Counted {
            inner: w,
            n: &mut self.at,
        };
        self.pretty.end_object_key(&mut w)?;
        serde_json::ser::CompactFormatter.end_object_key(&mut self.compact)
    }
}

/// What a document's embedded checksum says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seal {
    /// The checksum matches the content.
    Verified,
    /// There is no checksum: written by hand or by an older toolkit.
    Missing,
    /// The content is not what was checksummed: changed outside the toolkit or corrupted.
    Mismatch { recorded: String, actual: String },
}

/// Checks `doc`'s `metadata.checksum` against its content.
pub fn check_seal(doc: &Value) -> Seal {
    let Some(recorded) = doc.pointer("/metadata/checksum") else {
        return Seal::Missing;
    };
    let recorded = match recorded {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut unsealed = doc.clone();
    if let Some(meta) = unsealed.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.shift_remove("checksum");
    }
    let actual = content_checksum(&unsealed);
    if actual == recorded {
        Seal::Verified
    } else {
        Seal::Mismatch { recorded, actual }
    }
}

/// The message for a checksum that does not match.
pub fn mismatch_message(recorded: &str, actual: &str) -> String {
    format!(
        "checksum mismatch: changed outside the toolkit or corrupted (recorded {}, content is {})",
        short(recorded),
        short(actual)
    )
}

fn short(sum: &str) -> String {
    let s: String = sum.chars().take(PREFIX.len() + 12).collect();
    if s.len() < sum.len() { s + "…" } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `seal` then `to_vec_pretty`: the two passes `seal_pretty` replaces.
    fn sealed_twice(doc: &Value) -> (Value, Vec<u8>) {
        let mut d = doc.clone();
        seal(&mut d);
        let mut bytes = serde_json::to_vec_pretty(&d).unwrap();
        bytes.push(b'\n');
        (d, bytes)
    }

    #[test]
    fn seal_pretty_writes_the_bytes_and_checksum_of_seal_then_pretty() {
        let docs = [
            fresh(),
            json!({"metadata": {"revision": 1, "checksum": "stale"}, "phase": "x"}),
            // metadata first, last, nested deeper, keys that escape, a key
            // that starts like it, numbers of every kind, empty containers.
            json!({"metadata": {"a": 1}, "z": [1, -2, 2.5, 1e300, u64::MAX, {"metadata": {}}]}),
            json!({"metadatax": {"q": "\"\\\n\t\u{1}é€😀"}, "meta\ndata": 1, "metadata": {"k\"": [[], {}]}}),
            json!({"a": {"metadata": {"b": 1}}, "metadata": {"created": "t", "checksum": 5}}),
            json!({"x": [[[{"y": null, "z": true}]]], "metadata": {"m": {"n": [false]}}, "w": ""}),
        ];
        for doc in docs {
            let (want_doc, want_bytes) = sealed_twice(&doc);
            let mut got = doc.clone();
            let bytes = seal_pretty(&mut got);
            assert_eq!(
                String::from_utf8(bytes).unwrap(),
                String::from_utf8(want_bytes).unwrap()
            );
            assert_eq!(got, want_doc);
            assert_eq!(check_seal(&got), Seal::Verified);
        }
        // Without a metadata object (or with an empty one) it still writes what seal would.
        for doc in [
            json!({"a": 1}),
            json!({"metadata": {}}),
            json!({"metadata": 3}),
        ] {
            let mut got = doc.clone();
            assert_eq!(seal_pretty(&mut got), sealed_twice(&doc).1);
        }
    }

    #[test]
    fn stamp_keeps_created_and_bumps_revision() {
        let old = fresh();
        let mut new = json!({"phase": "x", "metadata": {"revision": 0, "created": "bogus"}});
        stamp(&mut new, Some(&old)).unwrap();
        assert_eq!(revision(&new), 1);
        assert_eq!(new["metadata"]["created"], old["metadata"]["created"]);
        assert!(stamp(&mut json!([1]), None).is_err());
    }

    #[test]
    fn migrate_fills_missing_fields_and_refuses_newer_versions() {
        let (doc, changes) = migrate(&json!({"phase": "impl", "signals": {"A": 1.0}}))
            .unwrap()
            .unwrap();
        assert_eq!(doc["schemaVersion"], "1.0");
        assert_eq!(doc["phase"], "impl");
        assert_eq!(doc["signals"]["A"], 1.0);
        assert!(changes.iter().any(|c| c.contains("schemaVersion")));
        assert!(migrate(&fresh()).unwrap().is_none());
        assert_eq!(
            migrate(&json!({"schemaVersion": "2.0"}))
                .unwrap_err()
                .code(),
            crate::exit::Code::ValidationFailed
        );
    }
}
