//! A fast reader for the lines the toolkit itself writes.
//!
//! Every event line [`super::event::append`] writes has one shape: the
//! fields of [`super::Event`] in their declared order, compact, `detail` an
//! object, `run_id` last when set. [`read`] walks such a line once and
//! fills a [`Light`] straight from its bytes: strings without escapes are
//! borrowed, numbers are read digit by digit, and nothing else is built.
//!
//! What it guarantees: when [`read`] returns a value, it is the value
//! `serde_json` would give for that line, field for field. Anything that is
//! not exactly that shape — other field order, whitespace or CRLF, an
//! unknown top-level field, a key repeated in `detail`, an escape it does
//! not decode, a number it cannot read exactly (exponents, negative or long
//! floats), a surrogate escape, deep nesting — makes it return `None`, and
//! the caller parses the line with `serde_json` as before. The line is
//! also then one that `serde_json` reads as a whole `Value`, so a review
//! that looks at other detail fields ([`member`] and the `as_…` readers,
//! with `Value`'s own semantics) sees what a `Value` would show.
//!
//! What it does not do: judge a line. A line it refuses is not malformed;
//! only `serde_json` decides that.

use std::borrow::Cow;

use serde_json::Value;

use super::scan::{Detail, Light};

/// A line in the toolkit's own shape, read by [`read`].
#[derive(Debug)]
pub struct Plain<'a> {
    pub ev: Light<'a>,
    pub user: Cow<'a, str>,
    pub outcome: Cow<'a, str>,
    /// The `detail` object as written, `{…}`: its members are found with
    /// [`member`].
    pub detail: &'a str,
}

#[cfg(test)]
thread_local! {
    static FORCE_SERDE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Unit tests: takes no line in this thread (`true`), so every review
/// goes the `serde_json` way alone; `false`, the default, undoes it.
#[cfg(test)]
pub fn force_serde(on: bool) {
    FORCE_SERDE.with(|f| f.set(on));
}

/// Nesting in `detail` beyond which a line is left to `serde_json`.
const MAX_DEPTH: u32 = 16;
/// Keys of `detail` at most (each checked against the others for repeats).
const MAX_KEYS: usize = 24;

/// Reads `text`, one line without its newline, if it is in the toolkit's
/// own shape (see the module docs); `None` otherwise.
pub fn read(text: &str) -> Option<Plain<'_>> {
    #[cfg(test)]
    if FORCE_SERDE.with(std::cell::Cell::get) {
        return None;
    }
    let mut c = Cur::new(text);
    c.lit(b"{\"ts\":")?;
    let ts = c.string()?;
    c.lit(b",\"tool\":")?;
    let tool = c.string()?;
    c.lit(b",\"op\":")?;
    let op = c.string()?;
    c.lit(b",\"target\":")?;
    let target = c.string()?;
    c.lit(b",\"pid\":")?;
    let pid = c.u32()?;
    c.lit(b",\"ppid\":")?;
    let ppid = c.u32()?;
    c.lit(b",\"host\":")?;
    let host = c.string()?;
    c.lit(b",\"user\":")?;
    let user = c.string()?;
    c.lit(b",\"duration_ms\":")?;
    let duration_ms = c.f64()?;
    c.lit(b",\"exit_code\":")?;
    let exit_code = i32::try_from(c.i64()?).ok()?;
    c.lit(b",\"outcome\":")?;
    let outcome = c.string()?;
    c.lit(b",\"detail\":")?;
    let from = c.i;
    let detail = c.detail()?;
    let detail_text = &text[from..c.i];
    let run_id = if c.lit(b",\"run_id\":").is_some() {
        Some(c.string()?)
    } else {
        None
    };
    c.lit(b"}")?;
    if c.i != c.b.len() {
        return None;
    }
    Some(Plain {
        ev: Light {
            ts,
            tool,
            op,
            target,
            pid,
            ppid,
            host,
            duration_ms,
            exit_code,
            run_id,
            detail: Some(detail),
        },
        user,
        outcome,
        detail: detail_text,
    })
}

/// The value of member `key` of a `detail` object that [`read`] accepted,
/// as written; `None` when it has none.
pub fn member<'a>(detail: &'a str, key: &str) -> Option<&'a str> {
    let mut c = Cur::new(detail);
    c.lit(b"{")?;
    if c.lit(b"}").is_some() {
        return None;
    }
    loop {
        let k = c.raw_string()?;
        c.lit(b":")?;
        let from = c.i;
        c.skip_value(0)?;
        if k == key {
            return Some(&detail[from..c.i]);
        }
        c.lit(b",")?;
    }
}

/// `Value::as_str` of the value written as `raw` (one that [`read`] accepted).
pub fn as_str(raw: &str) -> Option<Cow<'_, str>> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(inner))
    }
}

/// `Value::as_bool` of the value written as `raw`.
pub fn as_bool(raw: &str) -> Option<bool> {
    match raw {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// An integer written plainly (no fraction, no exponent, at most 18
/// digits, not `-0`): read here; anything else is read as a `Value`.
fn small_int(raw: &str) -> Option<Option<i64>> {
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    if digits.is_empty()
        || digits.len() > 18
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || raw.starts_with("-0")
    {
        return None;
    }
    Some(raw.parse().ok())
}

fn is_number(raw: &str) -> bool {
    raw.starts_with(|c: char| c == '-' || c.is_ascii_digit())
}

fn value(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap_or(Value::Null)
}

/// `Value::as_i64` of the value written as `raw`.
pub fn as_i64(raw: &str) -> Option<i64> {
    if !is_number(raw) {
        return None;
    }
    match small_int(raw) {
        Some(n) => n,
        None => value(raw).as_i64(),
    }
}

/// `Value::as_u64` of the value written as `raw`.
pub fn as_u64(raw: &str) -> Option<u64> {
    if !is_number(raw) {
        return None;
    }
    match small_int(raw) {
        Some(n) => n.and_then(|n| u64::try_from(n).ok()),
        None => value(raw).as_u64(),
    }
}

/// `Value::as_f64` of the value written as `raw`.
pub fn as_f64(raw: &str) -> Option<f64> {
    if !is_number(raw) {
        return None;
    }
    if let Some(n) = small_int(raw) {
        return n.map(|n| n as f64);
    }
    let mut c = Cur::new(raw);
    match c.f64() {
        Some(v) if c.i == raw.len() => Some(v),
        _ => value(raw).as_f64(),
    }
}

/// Powers of ten a float of at most 15 digits is divided by: exact, so the
/// quotient is the correctly rounded value, as `serde_json` computes it.
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// The index of the first byte of `b` that ends a plain run of string
/// text — a quote, a backslash or a control character — eight bytes at a
/// time; `None` when there is none.
#[inline]
fn special(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A bit set on the high bit of each byte that is zero (or, above the
    // first such byte, possibly not: only the lowest set bit is used).
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut i = 0;
    while i + 8 <= b.len() {
        let x = u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let hit = zero(x ^ (ONES * u64::from(b'"')))
            | zero(x ^ (ONES * u64::from(b'\\')))
            | (x.wrapping_sub(ONES * 0x20) & !x & HIGH);
        if hit != 0 {
            return Some(i + (hit.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b[i..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|p| i + p)
}

/// A position in a line being read.
struct Cur<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Cur<'a> {
    fn new(s: &'a str) -> Cur<'a> {
        Cur {
            s,
            b: s.as_bytes(),
            i: 0,
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Takes `l` if the line goes on with it.
    #[inline]
    fn lit(&mut self, l: &[u8]) -> Option<()> {
        // Byte by byte: the literals are short, and a slice comparison
        // would call memcmp.
        let rest = self.b.get(self.i..self.i + l.len())?;
        if rest.iter().zip(l).all(|(a, b)| a == b) {
            self.i += l.len();
            Some(())
        } else {
            None
        }
    }

    /// A string whose raw text (between the quotes) holds no escape and no
    /// control character.
    #[inline]
    fn raw_string(&mut self) -> Option<&'a str> {
        self.lit(b"\"")?;
        let from = self.i;
        self.i += special(&self.b[from..])?;
        if self.b[self.i] != b'"' {
            return None;
        }
        self.i += 1;
        Some(&self.s[from..self.i - 1])
    }

    /// A string, its escapes decoded (a surrogate escape: `None`).
    #[inline]
    fn string(&mut self) -> Option<Cow<'a, str>> {
        let from = self.i;
        if self.peek()? != b'"' {
            return None;
        }
        if let Some(s) = self.raw_string() {
            return Some(Cow::Borrowed(s));
        }
        self.i = from + 1;
        let mut out = String::new();
        let mut run = self.i;
        loop {
            match *self.b.get(self.i)? {
                b'"' => {
                    out.push_str(&self.s[run..self.i]);
                    self.i += 1;
                    return Some(Cow::Owned(out));
                }
                b'\\' => {
                    out.push_str(&self.s[run..self.i]);
                    self.i += 1;
                    out.push(self.escape()?);
                    run = self.i;
                }
                c if c < 0x20 => return None,
                _ => self.i += 1,
            }
        }
    }

    /// The character an escape stands for (after its `\`).
    fn escape(&mut self) -> Option<char> {
        let c = *self.b.get(self.i)?;
        self.i += 1;
        Some(match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hex = self.s.get(self.i..self.i + 4)?;
                if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                self.i += 4;
                let code = u32::from_str_radix(hex, 16).ok()?;
                // Surrogates (pairs or lone) are left to serde_json.
                char::from_u32(code)?
            }
            _ => return None,
        })
    }

    /// Skips a string, checking its escapes as serde_json does (surrogate
    /// escapes: `None`).
    fn skip_string(&mut self) -> Option<()> {
        self.lit(b"\"")?;
        loop {
            self.i += special(&self.b[self.i..])?;
            match self.b[self.i] {
                b'"' => {
                    self.i += 1;
                    return Some(());
                }
                b'\\' => {
                    self.i += 1;
                    self.escape()?;
                }
                _ => return None,
            }
        }
    }

    /// Digits of an integer part: their value and count (none, or a
    /// leading zero before another digit: `None`). At most 19 digits.
    #[inline]
    fn digits(&mut self) -> Option<(u64, usize)> {
        let from = self.i;
        let mut n = 0u64;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            if self.i - from == 19 {
                return None;
            }
            n = n * 10 + u64::from(d - b'0');
            self.i += 1;
        }
        let count = self.i - from;
        if count == 0 || (count > 1 && self.b[from] == b'0') {
            return None;
        }
        Some((n, count))
    }

    /// After an integer: no fraction or exponent follows.
    fn integer_ends(&self) -> Option<()> {
        match self.peek() {
            Some(b'.' | b'e' | b'E') => None,
            _ => Some(()),
        }
    }

    fn u32(&mut self) -> Option<u32> {
        let (n, _) = self.digits()?;
        self.integer_ends()?;
        u32::try_from(n).ok()
    }

    /// An integer of at most 18 digits, not `-0`.
    fn i64(&mut self) -> Option<i64> {
        let negative = self.lit(b"-").is_some();
        let (n, count) = self.digits()?;
        self.integer_ends()?;
        if count > 18 || (negative && n == 0) {
            return None;
        }
        let n = n as i64;
        Some(if negative { -n } else { n })
    }

    /// A number of at most 15 digits, not negative, no exponent.
    fn f64(&mut self) -> Option<f64> {
        let (mut sig, mut count) = self.digits()?;
        let mut frac = 0;
        if self.lit(b".").is_some() {
            while let Some(d @ b'0'..=b'9') = self.peek() {
                if count == 15 {
                    return None;
                }
                sig = sig * 10 + u64::from(d - b'0');
                count += 1;
                frac += 1;
                self.i += 1;
            }
            if frac == 0 {
                return None;
            }
        }
        if count > 15 || matches!(self.peek(), Some(b'e' | b'E')) {
            return None;
        }
        Some(sig as f64 / POW10[frac])
    }

    /// Skips a number written plainly: JSON's grammar, no exponent, at most
    /// 30 digits (one any `Value` holds).
    fn skip_number(&mut self) -> Option<()> {
        self.lit(b"-");
        let from = self.i;
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                while let Some(b'0'..=b'9') = self.peek() {
                    self.i += 1;
                }
            }
            _ => return None,
        }
        if self.lit(b".").is_some() {
            let at = self.i;
            while let Some(b'0'..=b'9') = self.peek() {
                self.i += 1;
            }
            if self.i == at {
                return None;
            }
        }
        if self.i - from > 31 || matches!(self.peek(), Some(b'e' | b'E' | b'0'..=b'9')) {
            return None;
        }
        Some(())
    }

    /// Skips any value (see [`Cur::skip_number`] and [`Cur::skip_string`]).
    fn skip_value(&mut self, depth: u32) -> Option<()> {
        match self.peek()? {
            b'"' => self.skip_string(),
            b'{' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.i += 1;
                if self.lit(b"}").is_some() {
                    return Some(());
                }
                loop {
                    self.skip_string()?;
                    self.lit(b":")?;
                    self.skip_value(depth + 1)?;
                    if self.lit(b",").is_none() {
                        return self.lit(b"}");
                    }
                }
            }
            b'[' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.i += 1;
                if self.lit(b"]").is_some() {
                    return Some(());
                }
                loop {
                    self.skip_value(depth + 1)?;
                    if self.lit(b",").is_none() {
                        return self.lit(b"]");
                    }
                }
            }
            b't' => self.lit(b"true"),
            b'f' => self.lit(b"false"),
            b'n' => self.lit(b"null"),
            _ => self.skip_number(),
        }
    }

    /// `null` (`Some(None)`), or a value read by `read` (`Some(Some)`).
    fn nullable<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.lit(b"null").is_some() {
            Some(None)
        } else {
            read(self).map(Some)
        }
    }

    /// The `detail` object: the fields [`Detail`] reads, every other member
    /// skipped; no key repeated, none escaped.
    fn detail(&mut self) -> Option<Detail<'a>> {
        let mut d = Detail::default();
        self.lit(b"{")?;
        if self.lit(b"}").is_some() {
            return Some(d);
        }
        let mut keys: [&str; MAX_KEYS] = [""; MAX_KEYS];
        let mut n = 0;
        loop {
            let key = self.raw_string()?;
            if n == MAX_KEYS || keys[..n].contains(&key) {
                return None;
            }
            keys[n] = key;
            n += 1;
            self.lit(b":")?;
            match key {
                "wait_ms" => d.wait_ms = self.nullable(Cur::f64)?,
                "lock_wait_ms" => d.lock_wait_ms = self.nullable(Cur::f64)?,
                "owner_pid" => d.owner_pid = self.nullable(Cur::u32)?,
                "conflict" => d.conflict = self.nullable(Cur::string)?,
                "expected" => d.expected = self.nullable(Cur::i64)?,
                "actual" => d.actual = self.nullable(Cur::i64)?,
                "stale_pid" => d.stale_pid = self.nullable(Cur::u32)?,
                "reason" => d.reason = self.nullable(Cur::string)?,
                "holders_while_waiting" => d.holders_while_waiting = self.nullable(Cur::pids)?,
                _ => self.skip_value(0)?,
            }
            if self.lit(b",").is_none() {
                self.lit(b"}")?;
                return Some(d);
            }
        }
    }

    /// An array of pids.
    fn pids(&mut self) -> Option<Vec<u32>> {
        self.lit(b"[")?;
        let mut v = Vec::new();
        if self.lit(b"]").is_some() {
            return Some(v);
        }
        loop {
            v.push(self.u32()?);
            if self.lit(b",").is_none() {
                self.lit(b"]")?;
                return Some(v);
            }
        }
    }
}

/// Writes the JSON value `text` holds as `serde_json` writes the `Value`
/// it parses to — compact (`indent` `None`), or pretty (two spaces a
/// level) with the value's own lines at `indent` levels — and returns
/// `true`. Returns `false`, having written nothing, when `text` is not a
/// value this copies exactly: an object below the second level (where a
/// repeated key would be merged), a repeated or escaped key, a surrogate
/// escape, a number it cannot read exactly, whitespace, bytes after it.
/// The caller then goes through a `Value`.
pub fn write_value(text: &str, indent: Option<usize>, out: &mut Vec<u8>) -> bool {
    #[cfg(test)]
    if FORCE_SERDE.with(std::cell::Cell::get) {
        return false;
    }
    let start = out.len();
    let mut c = Cur::new(text);
    let ok = c.emit(0, indent, out).is_some() && c.i == text.len();
    if !ok {
        out.truncate(start);
    }
    ok
}

/// A newline and `level` indents, when pretty.
fn newline(out: &mut Vec<u8>, level: Option<usize>) {
    if let Some(l) = level {
        out.push(b'\n');
        out.resize(out.len() + 2 * l, b' ');
    }
}

impl Cur<'_> {
    /// Copies one value to `out` (see [`write_value`]); `depth` counts the
    /// containers around it, `level` its indentation.
    fn emit(&mut self, depth: u32, level: Option<usize>, out: &mut Vec<u8>) -> Option<()> {
        let inner = level.map(|l| l + 1);
        match self.peek()? {
            b'{' => {
                if depth >= 2 {
                    return None;
                }
                self.i += 1;
                out.push(b'{');
                if self.lit(b"}").is_some() {
                    out.push(b'}');
                    return Some(());
                }
                let mut keys: [&str; MAX_KEYS] = [""; MAX_KEYS];
                let mut n = 0;
                loop {
                    let from = self.i;
                    let key = self.raw_string()?;
                    if n == MAX_KEYS || keys[..n].contains(&key) {
                        return None;
                    }
                    keys[n] = key;
                    n += 1;
                    newline(out, inner);
                    out.extend_from_slice(&self.b[from..self.i]);
                    self.lit(b":")?;
                    out.extend_from_slice(if level.is_some() { b": " } else { b":" });
                    self.emit(depth + 1, inner, out)?;
                    if self.lit(b",").is_none() {
                        self.lit(b"}")?;
                        newline(out, level);
                        out.push(b'}');
                        return Some(());
                    }
                    out.push(b',');
                }
            }
            b'[' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.i += 1;
                out.push(b'[');
                if self.lit(b"]").is_some() {
                    out.push(b']');
                    return Some(());
                }
                loop {
                    newline(out, inner);
                    self.emit(depth + 1, inner, out)?;
                    if self.lit(b",").is_none() {
                        self.lit(b"]")?;
                        newline(out, level);
                        out.push(b']');
                        return Some(());
                    }
                    out.push(b',');
                }
            }
            b'"' => {
                let from = self.i;
                if self.raw_string().is_some() {
                    out.extend_from_slice(&self.b[from..self.i]);
                } else {
                    self.i = from;
                    let s = self.string()?;
                    serde_json::to_writer(&mut *out, &*s).ok()?;
                }
                Some(())
            }
            b't' | b'f' | b'n' => {
                let from = self.i;
                self.skip_value(depth)?;
                out.extend_from_slice(&self.b[from..self.i]);
                Some(())
            }
            _ => {
                let from = self.i;
                self.skip_number()?;
                let token = &self.s[from..self.i];
                if !token.contains('.') {
                    // An integer: a `Value` holds it exactly and prints
                    // its digits as they are.
                    let digits = token.strip_prefix('-').unwrap_or(token);
                    if digits.len() > 18 || token == "-0" {
                        return None;
                    }
                    out.extend_from_slice(token.as_bytes());
                    return Some(());
                }
                let mut c = Cur::new(token);
                let v = c.f64()?;
                if c.i != token.len() {
                    return None;
                }
                serde_json::to_writer(&mut *out, &v).ok()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Event;
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use serde_json::json;

    /// What serde_json reads of a line, shown whole (`Debug` prints every
    /// field, floats to the last bit).
    fn serde_light(text: &str) -> Option<String> {
        serde_json::from_str::<Light>(text)
            .ok()
            .map(|l| format!("{l:?}"))
    }

    /// Checks everything the reader promises about `text`; returns whether
    /// it took the line.
    fn agrees(text: &str) -> bool {
        let Some(p) = read(text) else {
            return false;
        };
        assert_eq!(Some(format!("{:?}", p.ev)), serde_light(text), "{text}");
        let v: Value = serde_json::from_str(text).expect("a line read plainly is a value");
        assert_eq!(v["user"].as_str(), Some(&*p.user), "{text}");
        assert_eq!(v["outcome"].as_str(), Some(&*p.outcome), "{text}");
        let d = &v["detail"];
        assert_eq!(
            serde_json::from_str::<Value>(p.detail).ok().as_ref(),
            Some(d)
        );
        for (k, want) in d.as_object().unwrap() {
            let raw = member(p.detail, k).expect("every member is found");
            assert_eq!(as_str(raw).as_deref(), want.as_str(), "{k} in {text}");
            assert_eq!(as_bool(raw), want.as_bool(), "{k} in {text}");
            assert_eq!(as_i64(raw), want.as_i64(), "{k} in {text}");
            assert_eq!(as_u64(raw), want.as_u64(), "{k} in {text}");
            assert_eq!(
                as_f64(raw).map(f64::to_bits),
                want.as_f64().map(f64::to_bits),
                "{k} in {text}"
            );
        }
        assert_eq!(member(p.detail, "no such key"), None);
        true
    }

    /// Checks [`write_value`] against serde_json writing the `Value`:
    /// compact, and pretty at levels 0 to 2. Returns whether it copied.
    fn copies(text: &str) -> bool {
        let mut out = b"x".to_vec();
        if !write_value(text, None, &mut out) {
            assert_eq!(out, b"x", "nothing written: {text}");
            for level in 0..3 {
                assert!(!write_value(text, Some(level), &mut out));
            }
            return false;
        }
        let v: Value = serde_json::from_str(text).expect("a value copied is a value");
        assert_eq!(
            &out[1..],
            serde_json::to_string(&v).unwrap().as_bytes(),
            "{text}"
        );
        let pretty = serde_json::to_string_pretty(&v).unwrap();
        for level in 0..3 {
            let mut out = Vec::new();
            assert!(write_value(text, Some(level), &mut out));
            let want = pretty.replace('\n', &format!("\n{}", "  ".repeat(level)));
            assert_eq!(
                String::from_utf8(out).unwrap(),
                want,
                "level {level}: {text}"
            );
        }
        true
    }

    fn event(target: &str, duration_ms: f64, detail: Value, run_id: Option<&str>) -> String {
        serde_json::to_string(&Event {
            ts: "2024-05-01T10:00:00.123456Z".into(),
            tool: "lock-manager".into(),
            op: "acquire".into(),
            target: target.into(),
            pid: 4242,
            ppid: 1,
            host: "build-01".into(),
            user: "ci".into(),
            duration_ms,
            exit_code: 0,
            outcome: "ok".into(),
            detail,
            run_id: run_id.map(str::to_string),
        })
        .unwrap()
    }

    #[test]
    fn the_toolkits_own_lines_read_as_serde_json_reads_them() {
        let details = [
            json!({}),
            json!({"lock_type": "shared", "wait_ms": 24.958, "owner_pid": 1003, "holders_while_waiting": []}),
            json!({"owner_pid": 7, "forced": false, "holders_while_waiting": [1, 2, 4294967295u32]}),
            json!({"stale_pid": 9, "reason": "dead", "owner_pid": null}),
            json!({"conflict": "revision", "expected": -3, "actual": 123456789012345678i64, "error": "x"}),
            json!({"revision": 12, "lock_wait_ms": 0, "nested": {"a": [1, {"b": null}]}}),
            json!({"removed": ["a", "deploy"], "dry_run": true, "child_exit": -1}),
            json!({"error": "line\nbreak \"quoted\" \\ tab\t \u{1} é ✓ 😀"}),
            json!({"wait_ms": 1e-7, "big": 1e300, "neg": -2.5, "u": 18446744073709551615u64}),
        ];
        let targets = [
            "deploy",
            "/srv/a b/.workflow-state.json",
            "caf\u{e9} ✓",
            "a\"b\\c\n\r\t\u{8}\u{c}\u{1}\u{7f}",
            "",
        ];
        let durations = [0.0, 0.412, 1.0, 12.345, 1503.25, 123456.789, 1e-7, 5e20];
        let mut taken = 0;
        for (i, d) in details.iter().enumerate() {
            for (j, t) in targets.iter().enumerate() {
                let ms = durations[(i + j) % durations.len()];
                for run_id in [None, Some("run-0001"), Some("é\"")] {
                    let line = event(t, ms, d.clone(), run_id);
                    taken += usize::from(agrees(&line));
                    copies(&line);
                }
            }
        }
        // Most of them are taken: all but those with an exponent, in the
        // duration (1e-7, 5e20) or in a field the reviews read (wait_ms).
        assert!(taken >= 80, "{taken} of 135 read plainly");
        let plain = event("deploy", 1.5, details[1].clone(), Some("r"));
        assert!(agrees(&plain) && copies(&plain));
        // Not the shape: left to serde_json, whatever it makes of them.
        for other in [
            plain.replace(",\"pid\":", ", \"pid\":"),
            format!("{plain}\r"),
            format!("{plain} "),
            plain.replace(
                "\"tool\":\"lock-manager\",\"op\":\"acquire\"",
                "\"op\":\"acquire\",\"tool\":\"lock-manager\"",
            ),
            plain
                .replace("\"deploy\"", "\"dep\\u006coy\"")
                .replace("\"target\"", "\"t\\u0061rget\""),
            plain.replace("\"wait_ms\":24.958", "\"wait_ms\":24.958,\"wait_ms\":1"),
            plain.replace("\"lock_type\":\"shared\"", "\"lock_type\":\"\\ud800\""),
            plain.replace("\"run_id\":\"r\"", "\"run_id\":null"),
            plain.replace("\"detail\":{", "\"detail\":{\"x\":1e999,"),
        ] {
            assert!(read(&other).is_none(), "{other}");
        }
    }

    /// A JSON value's text: mostly well formed and simple, sometimes
    /// escaped, long, nested, or not JSON at all.
    fn token() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => prop::sample::select(vec![
                "0", "7", "-1", "-0", "01", "1.", ".5", "1.5", "0.412", "1.50", "2.0", "1e3",
                "1E-7", "-2.25", "0.1", "123456789012345.6", "1234567890123456", "4294967295",
                "4294967296", "9223372036854775807", "18446744073709551615",
                "18446744073709551616", "99999999999999999999999999", "1e999", "-0.0",
                "true", "false", "null", "nul", "[]", "[1,2]", "[1, 2]", "[4294967296]", "[-1]",
                "{}", "{\"a\":1,\"a\":2}", "[{\"a\":1}]", "{\"k\":[1,{\"z\":null}]}", "[[[]]]",
                "\"\"", "\"deploy\"", "\"shared\"", "\"revision\"", "\"caf\u{e9}\"",
                "\"caf\\u00e9\"", "\"a\\\"b\"", "\"a\\\\b\"", "\"tab\\there\"", "\"a\\/b\"",
        "\"a\\bc\\f\\n\\r\\t\\u0041\\u00e9\\u2713\\u0001\"",
                "\"\\ud83d\\ude00\"", "\"\\ud800\"", "\"ctl\u{1}\"", "\"x\\q\"", "\"\\u00\"",
            ]).prop_map(str::to_string),
            1 => any::<u32>().prop_map(|n| n.to_string()),
            1 => any::<i64>().prop_map(|n| n.to_string()),
            1 => (0u64..10_000_000, 0usize..8).prop_map(|(n, k)| {
                let s = format!("{n:0>9}");
                format!("{}.{}", s[..9 - k].trim_start_matches('0').to_string() + if s[..9 - k].trim_start_matches('0').is_empty() { "0" } else { "" }, &s[9 - k..]).trim_end_matches('.').to_string()
            }),
            1 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| serde_json::to_string(&f).unwrap()),
            1 => "[a-z\\\\\"é✓/ ]{0,6}".prop_map(|s| format!("\"{s}\"")),
        ]
    }

    const DETAIL_KEYS: &[&str] = &[
        "wait_ms",
        "lock_wait_ms",
        "owner_pid",
        "conflict",
        "expected",
        "actual",
        "stale_pid",
        "reason",
        "holders_while_waiting",
        "error",
        "forced",
        "lock_type",
        "child_exit",
        "revision",
        "removed",
        "x",
    ];

    /// A line: the toolkit's fields in their order with generated values,
    /// then perhaps bent out of shape.
    fn line() -> impl Strategy<Value = String> {
        let detail = prop::collection::vec((prop::sample::select(DETAIL_KEYS), token()), 0..5);
        let ts = prop::sample::select(vec![
            "\"2024-05-01T10:00:00.123456Z\"",
            "\"2024-05-01T10:00:00Z\"",
            "\"2024-05-01T10:00:00+02:00\"",
            "\"2024-13-01T10:00:00Z\"",
            "\"yesterday\"",
            "\"2024-05-01T10:00:00\\u002e5Z\"",
            "17",
        ]);
        let top = prop::collection::vec(token(), 12);
        (ts, top, detail, any::<u8>(), 0u8..24).prop_map(|(ts, top, detail, pick, bend)| {
            let names = [
                "tool",
                "op",
                "target",
                "pid",
                "ppid",
                "host",
                "user",
                "duration_ms",
                "exit_code",
                "outcome",
                "run_id",
            ];
            let mut fields: Vec<(String, String)> = vec![("ts".into(), ts.to_string())];
            for (i, n) in names.iter().enumerate() {
                // Strings where strings belong, most of the time.
                let v = match (*n, pick % 8) {
                    ("pid" | "ppid" | "exit_code" | "duration_ms", 0) => top[i].clone(),
                    ("pid" | "ppid", _) => format!("{}", 1000 + u32::from(pick)),
                    ("exit_code", _) => format!("{}", i32::from(pick % 5) - 1),
                    ("duration_ms", _) => format!("{}.{}", pick / 10, pick % 10),
                    (_, 0) => top[i].clone(),
                    (_, _) => format!("\"{n}-{pick}\""),
                };
                fields.push(((*n).into(), v));
            }
            let d: Vec<String> = detail.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            let detail = format!("{{{}}}", d.join(","));
            fields.insert(11, ("detail".into(), detail));
            match bend {
                0 => fields.swap(1, 2),
                1 => {
                    fields.pop();
                }
                2 => fields[12].1 = "null".into(),
                3 => fields[11].1 = ["null", "[]", "\"s\"", "{\"x\":1 }"][pick as usize % 4].into(),
                4 => fields.push(("extra".into(), "1".into())),
                5 => fields.push(("op".into(), "\"again\"".into())),
                6 => {
                    fields.remove(3);
                }
                _ => {}
            }
            let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            let mut text = format!("{{{}}}", body.join(","));
            match bend {
                7 => text.push('\r'),
                8 => text = text.replacen(":", ": ", 1),
                9 => text.push_str(" x"),
                _ => {}
            }
            text
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Over generated lines, in and out of the toolkit's shape: a line
        /// the reader takes reads as serde_json reads it, its detail members
        /// as `Value`'s accessors give them, and a value copied is what
        /// serde_json writes of its `Value`.
        #[test]
        fn the_reader_agrees_with_serde_json(text in line()) {
            agrees(&text);
            copies(&text);
            if let Some(d) = read(&text).map(|p| p.detail.to_string()) {
                copies(&d);
            }
        }
    }

    /// The family above is not vacuous: many of its lines are taken, and
    /// copied, the others left to serde_json.
    #[test]
    fn generated_lines_are_often_taken() {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let (mut taken, mut copied, n) = (0, 0, 2000);
        for _ in 0..n {
            let text = line().new_tree(&mut runner).unwrap().current();
            taken += usize::from(agrees(&text));
            copied += usize::from(copies(&text));
        }
        assert!(taken > n / 10 && taken < n * 9 / 10, "{taken} of {n} taken");
        assert!(
            copied > n / 10 && copied < n * 9 / 10,
            "{copied} of {n} copied"
        );
    }

    #[test]
    fn special_finds_the_first_quote_backslash_or_control_character() {
        for len in 0..40 {
            for at in 0..=len {
                for c in [b'"', b'\\', 0, 0x1f, b'x', 0x7f, 0xc3] {
                    let mut b = vec![b'a'; len];
                    if at < len {
                        b[at] = c;
                    }
                    let want = b.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
                    assert_eq!(special(&b), want, "{b:?}");
                }
            }
        }
    }
}
