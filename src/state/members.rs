//! A stored state document as its top-level members: byte ranges of the
//! stored text, for a `set` that copies the members it does not touch
//! instead of building the whole document (issue 16).
//!
//! [`split`] accepts only text that is exactly what the toolkit writes
//! (`serde_json::to_vec_pretty` of the document and a final newline): the
//! layout (two-space indents, `": "`, one member or element a line, `[]`
//! and `{}` empty), serde_json's escapes (`\"`, `\\`, `\b\f\n\r\t`, other
//! control characters as `\u00xx`, nothing else), numbers in the form
//! serde_json prints the value they parse to, no key twice in an object,
//! nesting within [`document::MAX_DEPTH`]. Such text is, member for member,
//! the pretty form of its parsed value, so a member copied verbatim is the
//! member a whole-tree write would print, and the same text without its
//! layout whitespace is the compact form the checksum covers ([`split`]
//! hands it to a [`Sink`] a line at a time, from the same pass). Anything else — a hand
//! edit, tabs, `\/`, `\u00e9`, `1E5`, `-0`, a repeated key — gives `None`:
//! the caller then takes the whole-tree path, which reads any JSON.
//!
//! The caller has checked that the text is UTF-8.

use std::ops::Range;

use super::document;

/// What a JSON value is, as its first byte tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Object,
    Array,
    String,
    Number,
    Literal,
}

/// One top-level member of a split document.
#[derive(Clone, Debug)]
pub struct Member {
    /// The key, decoded.
    pub key: String,
    /// The value's pretty text in the stored bytes (as printed one level down).
    pub value: Range<usize>,
    pub kind: Kind,
    /// An array whose every element is a string (true of `[]`).
    pub all_strings: bool,
}

/// What [`split`] tells as it scans, member by member, in stored order.
pub trait Sink {
    /// Member `key` starts; whether its compact text is wanted.
    fn start(&mut self, key: &str) -> bool;
    /// The next run of the current member's compact text (when wanted).
    fn compact(&mut self, run: &[u8]);
    /// The member ends; `None` stops the split.
    fn end(&mut self, member: &Member) -> Option<()>;
}

/// Splits `text` (the stored bytes of a document) into its top-level
/// members, in stored order, when it is exactly the toolkit's pretty form
/// (see the module docs); `None` otherwise, or when `sink` stops it.
pub fn split<S: Sink>(text: &[u8], sink: &mut S) -> Option<Vec<Member>> {
    // The end first: a file with something after the document costs no scan.
    if !text.ends_with(b"\n}\n") {
        return None;
    }
    let mut s = Scanner {
        b: text,
        i: 0,
        run: 0,
        sink,
        wanted: false,
        keys: Vec::new(),
        all_strings: false,
    };
    s.byte(b'{')?;
    if s.b.get(s.i) == Some(&b'}') {
        return None; // an empty document: not a state
    }
    let mut members = Vec::new();
    loop {
        s.indent(1)?;
        let key_start = s.i;
        s.string()?;
        let key_end = s.i;
        s.keys.push(key_start..key_end);
        let key: String = serde_json::from_slice(&text[key_start..key_end]).ok()?;
        s.byte(b':')?;
        s.byte(b' ')?;
        s.wanted = s.sink.start(&key);
        let value_start = s.i;
        s.run = s.i;
        s.all_strings = false;
        let kind = s.value(1)?;
        s.flush();
        let member = Member {
            key,
            value: value_start..s.i,
            kind,
            all_strings: kind == Kind::Array && s.all_strings,
        };
        s.sink.end(&member)?;
        members.push(member);
        if s.b.get(s.i) == Some(&b',') {
            s.i += 1;
            continue;
        }
        s.indent(0)?;
        s.byte(b'}')?;
        break;
    }
    s.unique_keys(0)?;
    s.byte(b'\n')?;
    (s.i == text.len()).then_some(members)
}

/// Indents as deep as [`document::MAX_DEPTH`] allows, and one more level.
const SPACES: [u8; 2 * (document::MAX_DEPTH + 1)] = [b' '; 2 * (document::MAX_DEPTH + 1)];

/// The bytes that end a run of plain string content: `"`, `\\` and the
/// control characters (which JSON does not allow raw).
static STOPS: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = true;
        c += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

struct Scanner<'b, 's, S> {
    b: &'b [u8],
    i: usize,
    /// Where the text not yet handed to the sink starts: the compact text
    /// is the stored text less its layout, handed over a run (a line) at a time.
    run: usize,
    sink: &'s mut S,
    /// Whether the sink wants the current member's compact text.
    wanted: bool,
    /// The raw keys of the objects open now, innermost last.
    keys: Vec<Range<usize>>,
    /// Set by an array: whether each of its elements was a string.
    all_strings: bool,
}

impl<S: Sink> Scanner<'_, '_, S> {
    fn byte(&mut self, c: u8) -> Option<()> {
        (self.b.get(self.i) == Some(&c)).then(|| self.i += 1)
    }

    /// Hands the run scanned since the last layout to the sink.
    #[inline]
    fn flush(&mut self) {
        if self.wanted {
            self.sink.compact(&self.b[self.run..self.i]);
        }
    }

    /// A line break and the indent of `level`.
    #[inline]
    fn indent(&mut self, level: usize) -> Option<()> {
        self.byte(b'\n')?;
        let end = self.i + 2 * level;
        let spaces = self.b.get(self.i..end)?;
        let ok = if level <= 4 {
            spaces.iter().all(|&c| c == b' ')
        } else {
            spaces == &SPACES[..2 * level]
        };
        ok.then(|| self.i = end)
    }

    /// One value printed at indent `level` (its members one level deeper).
    fn value(&mut self, level: usize) -> Option<Kind> {
        match *self.b.get(self.i)? {
            b'"' => {
                self.string()?;
                Some(Kind::String)
            }
            b'{' => {
                self.container(level, b'}', true)?;
                Some(Kind::Object)
            }
            b'[' => {
                self.container(level, b']', false)?;
                Some(Kind::Array)
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => {
                self.number()?;
                Some(Kind::Number)
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<Kind> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then_some(())?;
        self.i = end;
        Some(Kind::Literal)
    }

    /// An object or array opening at `self.i`, printed at indent `level`.
    fn container(&mut self, level: usize, close: u8, object: bool) -> Option<()> {
        // Its depth counted as `document::depth` does, the document being 1.
        if level + 1 > document::MAX_DEPTH {
            return None;
        }
        self.i += 1;
        if self.b.get(self.i) == Some(&close) {
            self.i += 1;
            self.all_strings = true;
            return Some(());
        }
        let key_mark = self.keys.len();
        let mut strings = true;
        loop {
            self.flush();
            self.indent(level + 1)?;
            self.run = self.i;
            if object {
                let start = self.i;
                self.string()?;
                self.keys.push(start..self.i);
                self.byte(b':')?;
                self.flush();
                self.byte(b' ')?;
                self.run = self.i;
            }
            strings &= self.value(level + 1)? == Kind::String;
            if self.b.get(self.i) == Some(&b',') {
                self.i += 1;
                continue;
            }
            self.flush();
            self.indent(level)?;
            self.run = self.i;
            self.byte(close)?;
            break;
        }
        if object {
            self.unique_keys(key_mark)?;
        }
        self.all_strings = strings;
        Some(())
    }

    /// Refuses an object (its keys from `mark` on) that repeats a key, and
    /// forgets its keys. The escapes are serde_json's, one form per
    /// character, so two keys are the same string when their bytes are.
    fn unique_keys(&mut self, mark: usize) -> Option<()> {
        let b = self.b;
        let keys = &mut self.keys[mark..];
        let unique = if keys.len() <= 16 {
            (1..keys.len()).all(|j| (0..j).all(|k| b[keys[j].clone()] != b[keys[k].clone()]))
        } else {
            keys.sort_unstable_by(|x, y| b[x.clone()].cmp(&b[y.clone()]));
            keys.windows(2).all(|w| b[w[0].clone()] != b[w[1].clone()])
        };
        self.keys.truncate(mark);
        unique.then_some(())
    }

    /// A string as serde_json escapes it, from its opening quote on.
    #[inline]
    fn string(&mut self) -> Option<()> {
        self.byte(b'"')?;
        let b = self.b;
        let mut j = self.i;
        loop {
            j = plain_run(b, j);
            match *b.get(j)? {
                b'"' => {
                    self.i = j + 1;
                    return Some(());
                }
                b'\\' => j = escape(b, j)?,
                _ => return None, // a raw control character
            }
        }
    }

    /// A number as serde_json prints the value it parses to.
    fn number(&mut self) -> Option<()> {
        let start = self.i;
        let len = self.b[start..]
            .iter()
            .position(|&c| !matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
            .unwrap_or(self.b.len() - start);
        let text = &self.b[start..start + len];
        let digits = text.strip_prefix(b"-").unwrap_or(text);
        // An integer of up to 18 digits is an i64 or u64 printed as written
        // (but `-0` parses to -0.0).
        let plain = !digits.is_empty()
            && digits.len() <= 18
            && digits.iter().all(u8::is_ascii_digit)
            && (digits[0] != b'0' || digits.len() == 1)
            && text != b"-0";
        if !plain {
            let parsed: serde_json::Value = serde_json::from_slice(text).ok()?;
            if !parsed.is_number() || serde_json::to_vec(&parsed).ok()? != text {
                return None;
            }
        }
        self.i += len;
        Some(())
    }
}

/// The end of the run of plain string bytes (not `"`, `\\` nor a control
/// character) that starts at `b[j]`: eight bytes a step, then one.
#[inline]
fn plain_run(b: &[u8], mut j: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The high bit of each byte that is zero (exact for the lowest one).
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    while let Some(chunk) = b.get(j..j + 8) {
        let w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let stops = zero(w ^ (ONES * u64::from(b'"')))
            | zero(w ^ (ONES * u64::from(b'\\')))
            | (w.wrapping_sub(ONES * 0x20) & !w & HIGH);
        if stops != 0 {
            return j + (stops.trailing_zeros() / 8) as usize;
        }
        j += 8;
    }
    while j < b.len() && !STOPS[b[j] as usize] {
        j += 1;
    }
    j
}

/// The escape at `b[at]` (a backslash) when it is one serde_json writes;
/// returns the index after it.
fn escape(b: &[u8], at: usize) -> Option<usize> {
    match *b.get(at + 1)? {
        b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => Some(at + 2),
        b'u' => {
            let hex = b.get(at + 2..at + 6)?;
            let digit = |c: u8| match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                _ => None,
            };
            if &hex[..2] != b"00" {
                return None;
            }
            let c = (digit(hex[2])? << 4) | digit(hex[3])?;
            // serde_json writes these five short and nothing at or above 0x20 as \u.
            if c >= 0x20 || matches!(c, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                return None;
            }
            Some(at + 6)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn pretty(v: &Value) -> Vec<u8> {
        let mut b = serde_json::to_vec_pretty(v).unwrap();
        b.push(b'\n');
        b
    }

    /// Every member's compact text.
    #[derive(Default)]
    struct Collect(Vec<(String, Vec<u8>)>);

    impl Sink for Collect {
        fn start(&mut self, key: &str) -> bool {
            self.0.push((key.to_string(), Vec::new()));
            true
        }
        fn compact(&mut self, run: &[u8]) {
            self.0.last_mut().unwrap().1.extend_from_slice(run);
        }
        fn end(&mut self, member: &Member) -> Option<()> {
            assert_eq!(self.0.last().unwrap().0, member.key);
            Some(())
        }
    }

    fn split_all(text: &[u8]) -> Option<(Vec<Member>, Collect)> {
        let mut c = Collect::default();
        split(text, &mut c).map(|m| (m, c))
    }

    /// `split` of the pretty form of `doc` gives each member's pretty and compact text.
    fn splits_exactly(doc: &Value) {
        let text = pretty(doc);
        let (members, compact) = split_all(&text)
            .unwrap_or_else(|| panic!("refused {}", String::from_utf8_lossy(&text)));
        let obj = doc.as_object().unwrap();
        assert_eq!(members.len(), obj.len());
        assert_eq!(compact.0.len(), obj.len());
        for ((member, (k, v)), (_, c)) in members.iter().zip(obj).zip(&compact.0) {
            assert_eq!(&member.key, k);
            let mut want = serde_json::to_vec_pretty(&json!({ k: v })).unwrap();
            // The value as printed one level down: the text between `": ` and the closing line.
            let head = serde_json::to_vec(k).unwrap().len() + 6;
            want = want[head..want.len() - 2].to_vec();
            assert_eq!(text[member.value.clone()], want[..], "{k}");
            assert_eq!(c[..], serde_json::to_vec(v).unwrap()[..], "{k}");
            assert_eq!(
                member.all_strings,
                v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
            );
        }
    }

    #[test]
    fn plain_runs_end_at_the_first_quote_backslash_or_control_character() {
        let stops: Vec<u8> = (0u8..0x20).chain([b'"', b'\\']).collect();
        for len in 0..20 {
            for at in 0..=len {
                for &stop in &stops {
                    // Plain bytes (ASCII and UTF-8) with `stop` at `at`, more stops after it.
                    let mut b: Vec<u8> = "aé~ #\x7f€😀".bytes().cycle().take(len).collect();
                    if at < len {
                        b[at] = stop;
                        b.extend_from_slice(&[b'"', 0, b'\\']);
                    }
                    let want = b.iter().position(|&c| STOPS[c as usize]).unwrap_or(b.len());
                    assert_eq!(plain_run(&b, 0), want, "{b:?}");
                }
            }
        }
    }

    #[test]
    fn splits_what_the_toolkit_writes() {
        let mut doc = crate::state::document::fresh();
        doc["completedTasks"] = json!(["a", "b\"\\\n\t\u{1}\u{7f}é😀", ""]);
        doc["ctx"] = json!({"k\"q": [10, -3, 2.5, 1e300, u64::MAX, i64::MIN, {"c": "x"}, [[]], {}],
            "e": {}, "l": [], "t": true, "f": false, "n": null, "s/": "a/b"});
        splits_exactly(&doc);
        splits_exactly(&json!({"only": 1}));
    }

    #[test]
    fn refuses_any_other_form() {
        let doc = json!({"a": [1, "x", {"b": null}], "c": {"d": 2.5}});
        let good = String::from_utf8(pretty(&doc)).unwrap();
        assert!(split_all(good.as_bytes()).is_some());
        // (edit, whether the result is still the toolkit's form)
        let edits = [
            (("\n  \"a\"", "\n   \"a\""), false), // indent
            (("\n  \"a\"", "\n\t\"a\""), false),  // tab
            (("\": [", "\":["), false),           // no space
            (("\"x\"", "\"\\u0078\""), false),    // an escape serde_json does not write
            (("\"x\"", "\"\\/\""), false),
            (("2.5", "2.50"), false), // number forms
            (("2.5", "25e-1"), false),
            (("1,", "-0,"), false),
            (("1,", "01,"), false),
            (("null", "nul"), false),
            (("\"c\"", "\"a\""), false), // a repeated key
            (("\"d\"", "\"b\""), true),  // the same key in another object
            (("2.5", "-7"), true),
        ];
        for ((from, to), kept) in edits {
            let text = good.replacen(from, to, 1);
            assert_ne!(text, good, "{from}");
            assert_eq!(split_all(text.as_bytes()).is_some(), kept, "{text}");
        }
        for text in [
            good.trim_end().to_string(),
            format!("{good}\n"),
            format!(" {good}"),
            "{}\n".into(),
            "[]\n".into(),
            good.replace("\n}\n", "}\n"),
        ] {
            assert!(split_all(text.as_bytes()).is_none(), "{text}");
        }
        // Too deep for the toolkit: refused here, the whole-tree path says why.
        let mut deep = json!(1);
        for _ in 0..document::MAX_DEPTH {
            deep = json!([deep]);
        }
        assert!(split_all(&pretty(&json!({ "d": deep }))).is_none());
        let mut ok = json!(1);
        for _ in 0..document::MAX_DEPTH - 1 {
            ok = json!([ok]);
        }
        assert!(split_all(&pretty(&json!({ "d": ok }))).is_some());
    }

    /// A JSON value of every kind, nested a few levels.
    fn arb_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            "[ -~\u{0}-\u{1f}é€😀\u{7f}]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec(("[a-c\"\\\\\n]{0,3}", inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// Whatever serde_json pretty-prints splits into exactly its members.
        #[test]
        fn pretty_printed_json_splits_exactly(
            members in proptest::collection::vec(("[a-z\"é]{1,4}", arb_value()), 1..6),
        ) {
            let doc = Value::Object(members.into_iter().collect());
            splits_exactly(&doc);
        }

        /// A byte changed anywhere: refused, or the text is still the pretty
        /// form of what it parses to, member for member.
        #[test]
        fn mutated_layout_is_refused_or_still_exact(
            members in proptest::collection::vec(("[a-z]{1,3}", arb_value()), 1..5),
            at in 0usize..10_000,
            with in proptest::prop_oneof![
                proptest::strategy::Just(b' '), proptest::strategy::Just(b'\n'),
                proptest::strategy::Just(b'\t'), proptest::strategy::Just(b','),
                proptest::strategy::Just(b'"'), proptest::strategy::Just(b'0'),
                proptest::strategy::Just(b'\\'), proptest::strategy::Just(b'e'),
            ],
            insert in proptest::bool::ANY,
        ) {
            let doc = Value::Object(members.into_iter().collect());
            let mut text = pretty(&doc);
            let at = at % text.len();
            if insert { text.insert(at, with) } else { text[at] = with }
            if std::str::from_utf8(&text).is_err() {
                return Ok(());
            }
            if split_all(&text).is_some() {
                let parsed: Value = serde_json::from_slice(&text).unwrap();
                proptest::prop_assert_eq!(pretty(&parsed), text.clone());
                splits_exactly(&parsed);
            }
        }
    }
}
