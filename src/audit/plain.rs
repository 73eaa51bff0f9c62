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

/// Nesting in `detail` beyond which a line is left to `serde_json`.
const MAX_DEPTH: u32 = 16;
/// Keys of `detail` at most (each checked against the others for repeats).
const MAX_KEYS: usize = 24;

/// Reads `text`, one line without its newline, if it is in the toolkit's
/// own shape (see the module docs); `None` otherwise.
pub fn read(text: &str) -> Option<Plain<'_>> {
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

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Takes `l` if the line goes on with it.
    fn lit(&mut self, l: &[u8]) -> Option<()> {
        if self.b[self.i..].starts_with(l) {
            self.i += l.len();
            Some(())
        } else {
            None
        }
    }

    /// A string whose raw text (between the quotes) holds no escape and no
    /// control character.
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
