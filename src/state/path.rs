//! jq-style paths into the state document: `.`, `.phase`,
//! `.degradedMode.enabled`, `.completedTasks[0]`, `.signals["A B"]`,
//! `."odd key"`, negative indexes from the end (`[-1]`).
//!
//! Only paths, not jq's language: enough for scripts to read and set values
//! without a jq dependency.
//!
//! [`extract`] reads one value out of a document's bytes without building
//! the rest of it: `read PATH` on a large state pays for a scan, not a tree.

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// One step of a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(i64),
}

/// Parses a path; exit 4 with the position of the problem when it is not one.
pub fn parse(path: &str) -> Result<Vec<Seg>> {
    let bad = |at: usize, why: &str| {
        Error::validation(format!("bad path '{path}' at character {}", at + 1))
            .because(why)
            .hint("write paths like .phase, .metadata.revision, .completedTasks[0] or .signals[\"NAME\"]")
    };
    let b = path.as_bytes();
    if b.first() != Some(&b'.') {
        return Err(bad(0, "a path starts with '.'"));
    }
    let mut segs = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'.' => {
                i += 1;
                if i == b.len() {
                    if segs.is_empty() {
                        break; // "." alone is the document
                    }
                    return Err(bad(i - 1, "a path does not end with '.'"));
                }
                match b[i] {
                    b'[' => continue,
                    b'"' => {
                        let (s, next) =
                            quoted(path, i).ok_or_else(|| bad(i, "unterminated string"))?;
                        segs.push(Seg::Key(s));
                        i = next;
                    }
                    _ => {
                        let start = i;
                        while i < b.len() && is_ident(b[i]) {
                            i += 1;
                        }
                        if i == start {
                            return Err(bad(i, "expected a key after '.'"));
                        }
                        segs.push(Seg::Key(path[start..i].to_string()));
                    }
                }
            }
            b'[' => {
                i += 1;
                if i < b.len() && b[i] == b'"' {
                    let (s, next) = quoted(path, i).ok_or_else(|| bad(i, "unterminated string"))?;
                    i = next;
                    if b.get(i) != Some(&b']') {
                        return Err(bad(i, "expected ']'"));
                    }
                    segs.push(Seg::Key(s));
                } else {
                    let start = i;
                    while i < b.len() && (b[i] == b'-' || b[i].is_ascii_digit()) {
                        i += 1;
                    }
                    let n: i64 = path[start..i]
                        .parse()
                        .map_err(|_| bad(start, "expected an index"))?;
                    if b.get(i) != Some(&b']') {
                        return Err(bad(i, "expected ']'"));
                    }
                    segs.push(Seg::Index(n));
                }
                i += 1;
            }
            _ => return Err(bad(i, "expected '.' or '['")),
        }
    }
    Ok(segs)
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'$'
}

/// A JSON string starting at byte `at`; returns it and the index after it.
fn quoted(path: &str, at: usize) -> Option<(String, usize)> {
    let b = path.as_bytes();
    let mut i = at + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => {
                let s: String = serde_json::from_str(&path[at..=i]).ok()?;
                return Some((s, i + 1));
            }
            _ => i += 1,
        }
    }
    None
}

fn index_of(n: i64, len: usize) -> Option<usize> {
    if n >= 0 {
        Some(n as usize)
    } else {
        len.checked_sub(n.unsigned_abs() as usize)
    }
}

/// The value at `segs`, if there is one.
pub fn get<'v>(doc: &'v Value, segs: &[Seg]) -> Option<&'v Value> {
    segs.iter().try_fold(doc, |v, seg| match (seg, v) {
        (Seg::Key(k), Value::Object(m)) => m.get(k),
        (Seg::Index(n), Value::Array(a)) => index_of(*n, a.len()).and_then(|i| a.get(i)),
        _ => None,
    })
}

/// The value at `segs` in the JSON document `bytes`, as parsing it whole
/// and taking [`get`] would give (`None`: no value there), building only
/// that value: everything else is checked as it is skipped, with the same
/// errors as a whole parse (syntax, nesting, numbers out of range, trailing
/// bytes). A key repeated in an object counts once, its last value, as in
/// a parsed [`Value`]. A negative index keeps only the last |n| elements of
/// its array while scanning it.
pub fn extract(bytes: &[u8], segs: &[Seg]) -> serde_json::Result<Option<Value>> {
    use serde::de::DeserializeSeed;
    // UTF-8 checked once for the whole input, not once per string (as
    // `store::parse_json`); invalid UTF-8 gets from_slice's error.
    if let Ok(text) = std::str::from_utf8(bytes) {
        let mut de = serde_json::Deserializer::from_str(text);
        let found = At(segs).deserialize(&mut de)?;
        de.end()?;
        return Ok(found);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let found = At(segs).deserialize(&mut de)?;
    de.end()?;
    Ok(found)
}

/// The value at the path below the one being read (see [`extract`]).
struct At<'s>(&'s [Seg]);

/// A value skipped by [`extract`]: read through `deserialize_any` (not
/// `IgnoredAny`), so nesting is limited as for a [`Value`]; nothing is kept.
struct Skip;

/// Whether an object key is the one wanted.
struct KeyIs<'k>(&'k str);

impl<'de> serde::de::DeserializeSeed<'de> for At<'_> {
    type Value = Option<Value>;
    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Self::Value, D::Error> {
        if self.0.is_empty() {
            return serde::Deserialize::deserialize(d).map(Some);
        }
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for At<'_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let Seg::Key(want) = &self.0[0] else {
            while map.next_key_seed(Skip)?.is_some() {
                map.next_value_seed(Skip)?;
            }
            return Ok(None);
        };
        let mut found = None;
        while let Some(hit) = map.next_key_seed(KeyIs(want))? {
            if hit {
                found = map.next_value_seed(At(&self.0[1..]))?;
            } else {
                map.next_value_seed(Skip)?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let (n, rest) = match &self.0[0] {
            Seg::Index(n) => (*n, &self.0[1..]),
            Seg::Key(_) => {
                while seq.next_element_seed(Skip)?.is_some() {}
                return Ok(None);
            }
        };
        if n >= 0 {
            let mut found = None;
            let mut i = 0i64;
            loop {
                if i == n {
                    match seq.next_element_seed(At(rest))? {
                        Some(v) => found = v,
                        None => break,
                    }
                } else if seq.next_element_seed(Skip)?.is_none() {
                    break;
                }
                i += 1;
            }
            return Ok(found);
        }
        // From the end: the last |n| elements, the first of them wanted.
        let keep = n.unsigned_abs() as usize;
        let mut last = std::collections::VecDeque::new();
        while let Some(v) = seq.next_element::<Value>()? {
            if last.len() == keep {
                last.pop_front();
            }
            last.push_back(v);
        }
        if last.len() < keep {
            return Ok(None);
        }
        Ok(last.pop_front().and_then(|v| get(&v, rest).cloned()))
    }

    fn visit_bool<E>(self, _: bool) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Skip {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Skip {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<(), A::Error> {
        while map.next_key_seed(Skip)?.is_some() {
            map.next_value_seed(Skip)?;
        }
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<(), A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> std::result::Result<(), E> {
        Ok(())
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E>(self, key: &str) -> std::result::Result<bool, E> {
        Ok(key == self.0)
    }
}

/// Sets the value at `segs`, creating missing objects on the way; an index
/// may name an existing element or the one just past the end.
pub fn set(doc: &mut Value, segs: &[Seg], value: Value) -> Result<()> {
    let slot = slot(doc, segs, true)?;
    *slot = value;
    Ok(())
}

/// Appends `value` to the array at `segs`, creating it when missing.
pub fn append(doc: &mut Value, segs: &[Seg], value: Value) -> Result<()> {
    let slot = slot(doc, segs, true)?;
    match slot {
        Value::Null => *slot = Value::Array(vec![value]),
        Value::Array(a) => a.push(value),
        other => {
            return Err(Error::validation(format!(
                "cannot append to {} at {}: it is {}",
                "the value",
                display(segs),
                type_name(other)
            ))
            .hint("append only to an array (or a path that does not exist yet)"));
        }
    }
    Ok(())
}

/// Removes the value at `segs` and returns it, as jq's `del` does: a key
/// leaves its object, an element its array (later elements move up one).
/// `Ok(None)` when there is no value there (a missing key, an index out of
/// range, a step into null); exit 4 when a step goes into a value that is
/// neither null nor of the kind the step needs (`.phase.x` of a string).
pub fn remove(doc: &mut Value, segs: &[Seg]) -> Result<Option<Value>> {
    let Some((last, parents)) = segs.split_last() else {
        return Err(Error::validation("cannot delete the whole document")
            .hint("name a path such as .context.NAME; nothing was changed"));
    };
    let mut cur = doc;
    for (depth, seg) in parents.iter().enumerate() {
        cur = match (seg, cur) {
            (_, Value::Null) => return Ok(None),
            (Seg::Key(k), Value::Object(m)) => match m.get_mut(k) {
                Some(v) => v,
                None => return Ok(None),
            },
            (Seg::Index(n), Value::Array(a)) => {
                let len = a.len();
                match index_of(*n, len).filter(|&i| i < len) {
                    Some(i) => &mut a[i],
                    None => return Ok(None),
                }
            }
            (seg, other) => return Err(step_error(segs, depth, seg, other)),
        };
    }
    match (last, cur) {
        (_, Value::Null) => Ok(None),
        (Seg::Key(k), Value::Object(m)) => Ok(m.shift_remove(k)),
        (Seg::Index(n), Value::Array(a)) => {
            let len = a.len();
            Ok(index_of(*n, len).filter(|&i| i < len).map(|i| a.remove(i)))
        }
        (seg, other) => Err(step_error(segs, parents.len(), seg, other)),
    }
}

/// `segs` with each negative index made absolute against `doc` as far as
/// the path exists there (`.a[-1]` of a 3-element `a` is `.a[2]`), so two
/// spellings of one place compare equal.
pub fn resolve(doc: &Value, segs: &[Seg]) -> Vec<Seg> {
    let mut out = Vec::with_capacity(segs.len());
    let mut cur = Some(doc);
    for seg in segs {
        let seg = match (seg, cur) {
            (Seg::Index(n), Some(Value::Array(a))) if *n < 0 => {
                index_of(*n, a.len()).map_or(seg.clone(), |i| Seg::Index(i as i64))
            }
            _ => seg.clone(),
        };
        cur = cur.and_then(|v| get(v, std::slice::from_ref(&seg)));
        out.push(seg);
    }
    out
}

/// The refusal of a step into a value of the wrong kind.
fn step_error(segs: &[Seg], depth: usize, seg: &Seg, other: &Value) -> Error {
    let want = if matches!(seg, Seg::Key(_)) {
        "an object"
    } else {
        "an array"
    };
    Error::validation(format!(
        "cannot step into {} at {}: it is {}, not {want}",
        display(&segs[..=depth]),
        display(&segs[..depth]),
        type_name(other)
    ))
    .hint("check the path against 'state-manager read'")
}

/// The slot at `segs`, created as null when missing (if `create`).
fn slot<'v>(doc: &'v mut Value, segs: &[Seg], create: bool) -> Result<&'v mut Value> {
    let mut cur = doc;
    for (depth, seg) in segs.iter().enumerate() {
        let here = &segs[..depth];
        if cur.is_null() && create {
            *cur = match seg {
                Seg::Key(_) => Value::Object(Map::new()),
                Seg::Index(_) => Value::Array(Vec::new()),
            };
        }
        cur = match (seg, cur) {
            (Seg::Key(k), Value::Object(m)) => m.entry(k.clone()).or_insert(Value::Null),
            (Seg::Index(n), Value::Array(a)) => {
                let len = a.len();
                match index_of(*n, len) {
                    Some(i) if i < len => &mut a[i],
                    Some(i) if i == len && create => {
                        a.push(Value::Null);
                        &mut a[i]
                    }
                    _ => {
                        return Err(Error::validation(format!(
                            "index {n} is out of range at {} (length {len})",
                            display(here)
                        ))
                        .hint("use an index of an existing element, or 'append'"));
                    }
                }
            }
            (seg, other) => return Err(step_error(segs, depth, seg, other)),
        };
    }
    Ok(cur)
}

/// A path written back in jq form.
pub fn display(segs: &[Seg]) -> String {
    if segs.is_empty() {
        return ".".into();
    }
    let mut s = String::new();
    for seg in segs {
        if s.is_empty() && !matches!(seg, Seg::Key(k) if !k.is_empty() && k.bytes().all(is_ident)) {
            s.push('.'); // jq's form: .["odd key"], .[0]
        }
        match seg {
            Seg::Key(k) if !k.is_empty() && k.bytes().all(is_ident) => {
                s.push('.');
                s.push_str(k);
            }
            Seg::Key(k) => s.push_str(&format!("[{}]", Value::String(k.clone()))),
            Seg::Index(n) => s.push_str(&format!("[{n}]")),
        }
    }
    s
}

/// "a string", "an object", … for messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extract_finds_what_a_whole_parse_finds_and_fails_where_it_fails() {
        let text = r#"{"a": {"b": [10, {"c": "x"}, [1, 2]], "d\"e": null},
            "dup": 1, "n": 1.5e3, "s": "t\u00e9", "dup": {"k": [true]}, "l": []}"#;
        let doc: Value = serde_json::from_str(text).unwrap();
        let paths = [
            ".",
            ".a",
            ".a.b",
            ".a.b[1].c",
            ".a.b[-1]",
            ".a.b[-1][0]",
            ".a.b[-3]",
            ".a.b[-4]",
            ".a.b[3]",
            ".a.b[0].x",
            ".a[\"d\\\"e\"]",
            ".dup",
            ".dup.k[0]",
            ".n",
            ".s",
            ".s.x",
            ".l[0]",
            ".l[-1]",
            ".missing",
            ".a.b.c",
            ".dup[0]",
        ];
        for p in paths {
            let segs = parse(p).unwrap();
            assert_eq!(
                extract(text.as_bytes(), &segs).unwrap(),
                get(&doc, &segs).cloned(),
                "{p}"
            );
        }
        let deep = format!(
            "{{\"a\": 1, \"b\": {}{}}}",
            "[".repeat(200),
            "]".repeat(200)
        );
        for bad in [
            "{\"a\": 1,}",
            "{\"a\": 1} x",
            "{\"b\": [1, 2e999], \"a\": 1}",
            "{\"b\": \"\\q\", \"a\": 1}",
            deep.as_str(),
        ] {
            assert!(serde_json::from_str::<Value>(bad).is_err(), "{bad}");
            assert!(
                extract(bad.as_bytes(), &parse(".a").unwrap()).is_err(),
                "{bad}"
            );
        }
    }
    use serde_json::json;

    #[test]
    fn parses_jq_style_paths() {
        assert_eq!(parse(".").unwrap(), vec![]);
        assert_eq!(
            parse(".a.b[0][\"c d\"].\"e\"[-1]").unwrap(),
            vec![
                Seg::Key("a".into()),
                Seg::Key("b".into()),
                Seg::Index(0),
                Seg::Key("c d".into()),
                Seg::Key("e".into()),
                Seg::Index(-1)
            ]
        );
        assert_eq!(parse(".[2]").unwrap(), vec![Seg::Index(2)]);
        for bad in ["", "a", ".a.", "..", ".a[", ".a[x]", ".\"x", ".a b"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn get_set_append() {
        let mut d = json!({"a": {"b": [1, 2]}});
        assert_eq!(get(&d, &parse(".a.b[-1]").unwrap()), Some(&json!(2)));
        assert_eq!(get(&d, &parse(".nope.x").unwrap()), None);
        set(&mut d, &parse(".x.y").unwrap(), json!(true)).unwrap();
        assert_eq!(d["x"]["y"], json!(true));
        set(&mut d, &parse(".a.b[2]").unwrap(), json!(3)).unwrap();
        assert!(set(&mut d, &parse(".a.b[9]").unwrap(), json!(3)).is_err());
        append(&mut d, &parse(".a.b").unwrap(), json!(4)).unwrap();
        append(&mut d, &parse(".new").unwrap(), json!("n")).unwrap();
        assert_eq!(d["a"]["b"], json!([1, 2, 3, 4]));
        assert_eq!(d["new"], json!(["n"]));
        assert!(append(&mut d, &parse(".x.y").unwrap(), json!(1)).is_err());
        assert!(set(&mut d, &parse(".a.b.c").unwrap(), json!(1)).is_err());
        assert_eq!(display(&parse(".a[\"c d\"][0]").unwrap()), ".a[\"c d\"][0]");
        assert_eq!(display(&parse(".[\"c d\"]").unwrap()), ".[\"c d\"]");
        assert_eq!(display(&parse(".[1]").unwrap()), ".[1]");
    }

    #[test]
    fn remove_as_jq_del_and_resolve_negative_indexes() {
        let mut d = json!({"a": {"b": [1, 2, 3], "k": "v"}, "s": "x"});
        let p = |t: &str| parse(t).unwrap();
        assert_eq!(remove(&mut d, &p(".a.b[-1]")).unwrap(), Some(json!(3)));
        assert_eq!(remove(&mut d, &p(".a.b[0]")).unwrap(), Some(json!(1)));
        assert_eq!(d["a"]["b"], json!([2]));
        assert_eq!(remove(&mut d, &p(".a.b[5]")).unwrap(), None);
        assert_eq!(remove(&mut d, &p(".a.b[-5]")).unwrap(), None);
        assert_eq!(remove(&mut d, &p(".a.nope")).unwrap(), None);
        assert_eq!(remove(&mut d, &p(".x.y.z")).unwrap(), None);
        assert!(remove(&mut d, &p(".s.k")).is_err(), "a key of a string");
        assert!(
            remove(&mut d, &p(".a[0]")).is_err(),
            "an index of an object"
        );
        assert!(remove(&mut d, &p(".")).is_err());
        assert_eq!(remove(&mut d, &p(".a.k")).unwrap(), Some(json!("v")));
        assert_eq!(d, json!({"a": {"b": [2]}, "s": "x"}));
        let mut d = json!({"x": 1, "y": 2, "z": 3});
        remove(&mut d, &p(".x")).unwrap();
        let keys: Vec<&String> = d.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["y", "z"], "the other keys keep their order");
        let d = json!({"a": [[0, 1], 2]});
        assert_eq!(resolve(&d, &p(".a[-2][-1]")), p(".a[0][1]"));
        assert_eq!(resolve(&d, &p(".a[-9].x[-1]")), p(".a[-9].x[-1]"));
    }
}
