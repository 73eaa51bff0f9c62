//! Reading the audit log back, as a stream: the rotated files oldest first,
//! then the live log, one line at a time into a reused buffer, each line
//! deserialized into a borrowed [`Light`] view that copies no string it does
//! not have to. Memory does not grow with the log.
//!
//! A line that is not a JSON object with `ts`, `tool` and `op` (and a `ts`
//! that is RFC 3339) is counted as malformed and skipped, never fatal: a log
//! cut by a full disk or edited by hand must still be reviewable.
//!
//! Review commands log themselves (op `audit-recent`, `audit-stats`, …); the
//! [`Filter`] leaves those events out unless asked for, so a review never
//! counts the reviews that came before it.
//!
//! A scan can report how far it has read through a [`Progress`] the caller
//! passes ([`Metered`]): the bytes read of the bytes the files held when it
//! began, at most once per [`PROGRESS_STEP`]. What to show, if anything, is
//! the command layer's choice; nothing here prints.

use std::borrow::Cow;
use std::cell::RefCell;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::rotate;
use crate::config::Config;
use crate::error::{Error, Result};

/// The fields of an event the review commands read, borrowed from the line.
#[derive(Debug, Deserialize)]
pub struct Light<'a> {
    #[serde(borrow)]
    pub ts: Cow<'a, str>,
    #[serde(borrow)]
    pub tool: Cow<'a, str>,
    #[serde(borrow)]
    pub op: Cow<'a, str>,
    #[serde(borrow, default)]
    pub target: Cow<'a, str>,
    #[serde(default)]
    pub pid: u32,
    #[serde(default)]
    pub ppid: u32,
    #[serde(borrow, default)]
    pub host: Cow<'a, str>,
    #[serde(default)]
    pub duration_ms: f64,
    #[serde(default)]
    pub exit_code: i32,
    #[serde(borrow, default)]
    pub run_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub detail: Option<Detail<'a>>,
}

/// The detail fields the review commands read (audit vocabulary of the brief).
#[derive(Debug, Default, Deserialize)]
pub struct Detail<'a> {
    #[serde(default)]
    pub wait_ms: Option<f64>,
    #[serde(default)]
    pub lock_wait_ms: Option<f64>,
    #[serde(default)]
    pub owner_pid: Option<u32>,
    #[serde(borrow, default)]
    pub conflict: Option<Cow<'a, str>>,
    #[serde(default)]
    pub expected: Option<i64>,
    #[serde(default)]
    pub actual: Option<i64>,
    #[serde(default)]
    pub stale_pid: Option<u32>,
    #[serde(borrow, default)]
    pub reason: Option<Cow<'a, str>>,
    #[serde(default)]
    pub holders_while_waiting: Option<Vec<u32>>,
}

impl Light<'_> {
    /// Who performed the operation: `detail.owner_pid` (lock ops) else the calling shell (`ppid`).
    pub fn owner(&self) -> u32 {
        self.detail
            .as_ref()
            .and_then(|d| d.owner_pid)
            .unwrap_or(self.ppid)
    }

    /// How long the operation waited for a lock, if it says.
    pub fn lock_wait_ms(&self) -> Option<f64> {
        let d = self.detail.as_ref()?;
        d.wait_ms.or(d.lock_wait_ms)
    }

    /// Whether this is a review command's own event.
    pub fn is_review(&self) -> bool {
        is_review_op(&self.op)
    }
}

/// Whether `op` is one of the review commands' own (`audit-…`).
pub fn is_review_op(op: &str) -> bool {
    op.starts_with("audit-")
}

/// One parsed line: its fields, its time and its raw text.
pub struct Line<'a> {
    pub ev: Light<'a>,
    /// `ts` as microseconds since the Unix epoch.
    pub at: i64,
    /// The line as written (no newline), for commands that show whole events.
    pub raw: &'a [u8],
    /// Its `detail` object as written, when the line is in the toolkit's
    /// own shape ([`super::plain`]): its other members can then be read
    /// without parsing the line again.
    pub detail: Option<&'a str>,
}

/// What a scan went through.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Totals {
    /// The files read, oldest first.
    pub files: Vec<PathBuf>,
    /// Lines read (blank lines excluded).
    pub lines: u64,
    /// Lines counted and skipped because they do not parse.
    pub malformed: u64,
}

/// Which events a review command looks at.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub run_id: Option<String>,
    pub tool: Option<String>,
    pub op: Option<String>,
    pub target: Option<Target>,
    /// Events at or after this instant (µs since the epoch).
    pub since: Option<i64>,
    /// Only events whose exit code is not 0.
    pub failed: bool,
}

impl Filter {
    /// Whether `line` passes the filter.
    pub fn matches(&self, line: &Line) -> bool {
        let ev = &line.ev;
        // Reviews are left out unless the filter names their op.
        if ev.is_review() && self.op.as_deref() != Some(&*ev.op) {
            return false;
        }
        if let Some(s) = self.since
            && line.at < s
        {
            return false;
        }
        if self.failed && ev.exit_code == 0 {
            return false;
        }
        if let Some(t) = &self.tool
            && *t != ev.tool
        {
            return false;
        }
        if let Some(o) = &self.op
            && *o != ev.op
        {
            return false;
        }
        if let Some(r) = &self.run_id
            && ev.run_id.as_deref() != Some(r.as_str())
        {
            return false;
        }
        if let Some(t) = &self.target
            && !t.names(&ev.target)
        {
            return false;
        }
        true
    }
}

/// Whether a target asked for names an event's target: equal, or the same
/// path once both are made absolute against the current folder.
pub fn same_target(asked: &str, target: &str) -> bool {
    Target::new(asked).names(target)
}

/// A target asked for, made ready to be compared with the target of every
/// event of a log: its absolute form and the current folder are found once,
/// not once per event.
#[derive(Clone, Debug, Default)]
pub struct Target {
    asked: String,
    /// The current folder (for relative targets).
    cwd: Option<PathBuf>,
    /// `asked`, absolute, `.` and `..` taken out lexically.
    abs: Option<PathBuf>,
}

impl Target {
    pub fn new(asked: impl Into<String>) -> Target {
        let asked = asked.into();
        let cwd = std::env::current_dir().ok();
        let abs = cwd.as_deref().and_then(|c| absolute_in(c, &asked));
        Target { asked, cwd, abs }
    }

    /// The target as asked.
    pub fn as_str(&self) -> &str {
        &self.asked
    }

    /// Whether an event's `target` is this one (see [`same_target`]).
    pub fn names(&self, target: &str) -> bool {
        if self.asked == target {
            return true;
        }
        if !(self.asked.contains('/') || target.contains('/')) {
            return false;
        }
        let Some(abs) = &self.abs else {
            return false;
        };
        // The common case, an absolute path without `..`: `Path` equality
        // already compares component by component (`//` and `.` left out).
        if target.starts_with('/') && !target.contains("..") {
            return Path::new(target) == abs;
        }
        self.cwd
            .as_deref()
            .and_then(|c| absolute_in(c, target))
            .is_some_and(|t| t == *abs)
    }
}

/// `p` made absolute against `cwd`, with `.` and `..` taken out lexically,
/// without touching the disk; `None` for an empty path.
fn absolute_in(cwd: &Path, p: &str) -> Option<PathBuf> {
    if p.is_empty() {
        return None;
    }
    let mut out = PathBuf::new();
    for c in cwd.join(p).components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    Some(out)
}

/// A place audit events are read back from, in log order: what the review
/// commands scan. The backends' audit sinks are one
/// ([`crate::backend::AuditSink`]); so is a [`Config`], whose audit log is
/// read with [`scan`].
pub trait Events {
    /// Hands every event to `each`, oldest first; returns what was read.
    fn scan_events(&self, each: &mut dyn FnMut(&Line)) -> Result<Totals>;

    /// [`Events::scan_events`], but `each` may be spared the events whose
    /// line does not hold `needle`: those are only checked to be events and
    /// counted ([`Prefilter`]). Every event by default.
    fn scan_events_naming(&self, _needle: &str, each: &mut dyn FnMut(&Line)) -> Result<Totals> {
        self.scan_events(each)
    }

    /// Hands events to `each` newest first, until it returns `false` or the
    /// oldest has been handed; returns what was read (only the lines read
    /// are counted). `None` when this place is read forward only: the
    /// caller then uses [`Events::scan_events`].
    fn scan_events_back(&self, _each: &mut dyn FnMut(&Line) -> bool) -> Option<Result<Totals>> {
        None
    }
}

impl Events for Config {
    fn scan_events(&self, each: &mut dyn FnMut(&Line)) -> Result<Totals> {
        scan(&self.audit_log, each)
    }

    fn scan_events_naming(&self, needle: &str, each: &mut dyn FnMut(&Line)) -> Result<Totals> {
        scan_told(&self.audit_log, None, Prefilter::new(needle).as_ref(), each)
    }

    fn scan_events_back(&self, each: &mut dyn FnMut(&Line) -> bool) -> Option<Result<Totals>> {
        Some(scan_back(&self.audit_log, each))
    }
}

/// How far a scan has read, told to the caller (who may show it).
pub trait Progress {
    /// `read` bytes of `total` have been read (`total`: what the files held
    /// when the scan began; a log that grows meanwhile may pass it).
    fn advance(&mut self, read: u64, total: u64);
    /// The scan is over, read to the end or failed.
    fn finish(&mut self);
}

/// The bytes read between two calls of [`Progress::advance`]: often enough
/// for a line redrawn a few times a second, rare enough to cost nothing.
pub const PROGRESS_STEP: u64 = 1 << 20;

/// The audit log at a path, scanned with a [`Progress`] told along the way:
/// the file backend's events ([`scan`]) for a command that shows progress.
pub struct Metered<'a> {
    log: &'a Path,
    progress: RefCell<&'a mut dyn Progress>,
}

impl<'a> Metered<'a> {
    pub fn new(log: &'a Path, progress: &'a mut dyn Progress) -> Metered<'a> {
        Metered {
            log,
            progress: RefCell::new(progress),
        }
    }
}

impl Events for Metered<'_> {
    fn scan_events(&self, each: &mut dyn FnMut(&Line)) -> Result<Totals> {
        let mut progress = self.progress.borrow_mut();
        scan_files(self.log, Some(&mut **progress), None, each)
    }

    fn scan_events_naming(&self, needle: &str, each: &mut dyn FnMut(&Line)) -> Result<Totals> {
        let mut progress = self.progress.borrow_mut();
        scan_files(
            self.log,
            Some(&mut **progress),
            Prefilter::new(needle).as_ref(),
            each,
        )
    }

    fn scan_events_back(&self, each: &mut dyn FnMut(&Line) -> bool) -> Option<Result<Totals>> {
        let mut progress = self.progress.borrow_mut();
        let result = scan_back_told(self.log, Some(&mut **progress), each);
        progress.finish();
        Some(result)
    }
}

/// The bytes the log and its rotated files hold now (0 when there is none).
pub fn log_bytes(log: &Path) -> u64 {
    rotate::open_log_files(log)
        .iter()
        .filter_map(|(_, f)| f.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Streams every event of `log` (rotated files first) to `each`, in log order.
/// Returns what was read. A missing log is an empty one.
pub fn scan(log: &Path, mut each: impl FnMut(&Line)) -> Result<Totals> {
    scan_files(log, None, None, &mut each)
}

/// [`scan`], telling `progress` (if any) how far it has read, and handing
/// over only the lines `prefilter` lets through.
fn scan_files(
    log: &Path,
    mut progress: Option<&mut dyn Progress>,
    prefilter: Option<&Prefilter>,
    each: &mut dyn FnMut(&Line),
) -> Result<Totals> {
    match progress.as_mut() {
        Some(p) => {
            let result = scan_told(log, Some(&mut **p), prefilter, each);
            p.finish();
            result
        }
        None => scan_told(log, None, prefilter, each),
    }
}

/// The lines worth parsing whole when only the events naming one target
/// matter (`audit history`): those that hold its last path component, or
/// an escape that could spell it. Any other line is only checked to be an
/// event ([`check_line`]), so malformed lines are still counted.
pub struct Prefilter {
    finder: memchr::memmem::Finder<'static>,
}

impl Prefilter {
    /// The prefilter of `target`, `None` when it has no last component
    /// to look for (empty, `..`).
    pub fn new(target: &str) -> Option<Prefilter> {
        let last = Path::new(target).file_name()?.to_str()?;
        (!last.is_empty()).then(|| Prefilter {
            finder: memchr::memmem::Finder::new(last.as_bytes()).into_owned(),
        })
    }

    /// Whether `line` may name the target.
    fn passes(&self, line: &[u8]) -> bool {
        self.finder.find(line).is_some() || memchr::memchr(b'\\', line).is_some()
    }
}

fn scan_told(
    log: &Path,
    mut progress: Option<&mut dyn Progress>,
    prefilter: Option<&Prefilter>,
    each: &mut dyn FnMut(&Line),
) -> Result<Totals> {
    let started = std::time::Instant::now();
    crate::debug::log(|| format!("audit: scanning {}", log.display()));
    let mut totals = Totals::default();
    let mut buf = Vec::new();
    let files = rotate::open_log_files(log);
    let total: u64 = match progress {
        Some(_) => files
            .iter()
            .filter_map(|(_, f)| f.metadata().ok())
            .map(|m| m.len())
            .sum(),
        None => 0,
    };
    let (mut read, mut told) = (0u64, 0u64);
    for (path, file) in files {
        let mut lines = Blocks::new(file, &mut buf);
        while let Some(line) = lines
            .next()
            .map_err(|e| Error::io(e, "cannot read the audit log", &path))?
        {
            if prefilter.is_none_or(|p| p.passes(line)) {
                if let Some(line) = parse_line(line, &mut totals) {
                    each(&line);
                }
            } else {
                check_line(line, &mut totals);
            }
            read += line.len() as u64;
            if let Some(p) = progress.as_deref_mut()
                && read - told >= PROGRESS_STEP
            {
                told = read;
                p.advance(read, total);
            }
        }
        totals.files.push(path);
    }
    crate::debug::log(|| {
        format!(
            "audit: scanned {} lines ({} malformed) in {} files in {} ms",
            totals.lines,
            totals.malformed,
            totals.files.len(),
            super::event::ms_text(Some(super::event::ms(started.elapsed())))
        )
    });
    Ok(totals)
}

/// Bytes read from a log file at a time by [`Blocks`].
const BLOCK: usize = 1 << 20;

/// The lines of a file, each with its newline (the last one may have
/// none), read a block of [`BLOCK`] bytes at a time into one buffer and
/// handed out as slices of it: no copy per line. A line longer than the
/// buffer grows it.
struct Blocks<'b> {
    file: std::fs::File,
    buf: &'b mut Vec<u8>,
    /// The bytes not handed out yet: `buf[start..end]`.
    start: usize,
    end: usize,
    eof: bool,
}

impl<'b> Blocks<'b> {
    fn new(file: std::fs::File, buf: &'b mut Vec<u8>) -> Blocks<'b> {
        if buf.len() < BLOCK {
            buf.resize(BLOCK, 0);
        }
        Blocks {
            file,
            buf,
            start: 0,
            end: 0,
            eof: false,
        }
    }

    /// The next line, `None` at the end of the file.
    fn next(&mut self) -> std::io::Result<Option<&[u8]>> {
        loop {
            let from = self.start;
            if let Some(p) = memchr::memchr(b'\n', &self.buf[from..self.end]) {
                self.start = from + p + 1;
                return Ok(Some(&self.buf[from..self.start]));
            }
            if self.eof {
                self.start = self.end;
                return Ok((from < self.end).then(|| &self.buf[from..self.end]));
            }
            self.buf.copy_within(from..self.end, 0);
            self.end -= from;
            self.start = 0;
            if self.end == self.buf.len() {
                self.buf.resize(2 * self.buf.len(), 0);
            }
            match self.file.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Streams the events of `log` to `each` newest first — the live log read
/// backwards from its end ([`super::backward`]), then `LOG.1`, `LOG.2`, …
/// only while `each` asks for more (returns `true`). The events are those
/// [`scan`] gives, in reverse order. Counts only the lines read; the files
/// listed are those read, oldest first. A missing log is an empty one.
pub fn scan_back(log: &Path, mut each: impl FnMut(&Line) -> bool) -> Result<Totals> {
    scan_back_told(log, None, &mut each)
}

fn scan_back_told(
    log: &Path,
    mut progress: Option<&mut dyn Progress>,
    each: &mut dyn FnMut(&Line) -> bool,
) -> Result<Totals> {
    let started = std::time::Instant::now();
    crate::debug::log(|| format!("audit: reading {} from its end", log.display()));
    let mut totals = Totals::default();
    let mut files = rotate::open_log_files(log);
    files.reverse();
    let sizes: Vec<u64> = files
        .iter()
        .map(|(_, f)| f.metadata().map_or(0, |m| m.len()))
        .collect();
    let total: u64 = sizes.iter().sum();
    let (mut before, mut told) = (0u64, 0u64);
    let mut more = true;
    for ((path, file), size) in files.iter().zip(sizes) {
        if !more {
            break;
        }
        let mut lines = super::backward::RevLines::with_block(file, size, super::backward::BLOCK);
        let cannot = |e| Error::io(e, "cannot read the audit log", path);
        while let Some(raw) = lines.next().map_err(cannot)? {
            if let Some(line) = parse_line(raw, &mut totals)
                && !each(&line)
            {
                more = false;
                break;
            }
            let read = before + lines.bytes_read();
            if let Some(p) = progress.as_deref_mut()
                && read - told >= PROGRESS_STEP
            {
                told = read;
                p.advance(read, total);
            }
        }
        before += lines.bytes_read();
        totals.files.push(path.clone());
    }
    totals.files.reverse();
    crate::debug::log(|| {
        format!(
            "audit: read {} lines ({} malformed) back from the end of {} files in {} ms",
            totals.lines,
            totals.malformed,
            totals.files.len(),
            super::event::ms_text(Some(super::event::ms(started.elapsed())))
        )
    });
    Ok(totals)
}

/// Parses one line (with or without its newline), counting it in `totals`.
/// Returns `None` for a blank line or a malformed one (counted).
pub fn parse_line<'a>(buf: &'a [u8], totals: &mut Totals) -> Option<Line<'a>> {
    let raw = buf.strip_suffix(b"\n").unwrap_or(buf);
    if raw.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    totals.lines += 1;
    // One UTF-8 check of the whole line, then a parse that trusts it:
    // `from_slice` checks every string on its own, at several times the
    // cost per byte.
    let parsed = std::str::from_utf8(raw)
        .ok()
        .and_then(|text| match super::plain::read(text) {
            Some(p) => Some((p.ev, Some(p.detail))),
            None => serde_json::from_str::<Light>(text)
                .ok()
                .map(|ev| (ev, None)),
        })
        .and_then(|(ev, detail)| {
            parse_ts(&ev.ts).map(|at| Line {
                ev,
                at,
                raw,
                detail,
            })
        });
    if parsed.is_none() {
        totals.malformed += 1;
    }
    parsed
}

/// Counts one line as [`parse_line`] would, checking only what makes it an
/// event — a JSON object with a `ts` that parses, a `tool` and an `op` —
/// without reading its other fields: for lines no command will look at.
pub fn check_line(buf: &[u8], totals: &mut Totals) {
    #[derive(Deserialize)]
    struct Skeleton<'a> {
        #[serde(borrow)]
        ts: Cow<'a, str>,
        #[allow(dead_code)]
        tool: serde::de::IgnoredAny,
        #[allow(dead_code)]
        op: serde::de::IgnoredAny,
    }
    let raw = buf.strip_suffix(b"\n").unwrap_or(buf);
    if raw.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    totals.lines += 1;
    // A line the fast reader takes is an event for serde_json too.
    let ok = std::str::from_utf8(raw)
        .ok()
        .is_some_and(|text| match super::plain::read(text) {
            Some(p) => parse_ts(&p.ev.ts).is_some(),
            None => serde_json::from_str::<Skeleton>(text)
                .ok()
                .is_some_and(|ev| parse_ts(&ev.ts).is_some()),
        });
    if !ok {
        totals.malformed += 1;
    }
}

/// Parses an RFC 3339 time (`2024-05-01T10:00:00.123456Z`, any fraction,
/// `Z` or `±HH:MM`) into microseconds since the Unix epoch.
pub fn parse_ts(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let mut n = 0i64;
        for &c in &b[from..to] {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + i64::from(c - b'0');
        }
        Some(n)
    };
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, sec) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut micros = 0i64;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 6 {
                micros = micros * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return None;
        }
        for _ in digits..6 {
            micros *= 10;
        }
    }
    let offset_s = match b.get(i..)? {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), rest @ ..] if rest.len() == 5 && rest[2] == b':' => {
            let oh = num(i + 1, i + 3)?;
            let om = num(i + 4, i + 6)?;
            let o = oh * 3600 + om * 60;
            if *sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86400 + h * 3600 + mi * 60 + sec - offset_s;
    Some(secs * 1_000_000 + micros)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Now, in microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Microseconds since the epoch as RFC 3339 UTC with microseconds
/// (`2024-05-01T10:00:00.123456Z`), as chrono writes it. Years 0 to 9999
/// are written here (`races` writes one per finding); any other instant is
/// left to chrono.
pub fn format_micros(at: i64) -> String {
    // 0000-01-01T00:00:00Z and 10000-01-01T00:00:00Z, in µs.
    const FROM: i64 = -62_167_219_200_000_000;
    const TO: i64 = 253_402_300_800_000_000;
    if !(FROM..TO).contains(&at) {
        return format_micros_chrono(at);
    }
    let (days, us) = (at.div_euclid(86_400_000_000), at.rem_euclid(86_400_000_000));
    let (y, m, d) = civil_from_days(days);
    let secs = us / 1_000_000;
    let mut out = [0u8; 27];
    let mut put = |at: usize, n: i64, width: usize| {
        let mut n = n;
        for i in (at..at + width).rev() {
            out[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, y, 4);
    put(5, m, 2);
    put(8, d, 2);
    put(11, secs / 3600, 2);
    put(14, secs / 60 % 60, 2);
    put(17, secs % 60, 2);
    put(20, us % 1_000_000, 6);
    for (i, c) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (26, b'Z'),
    ] {
        out[i] = c;
    }
    String::from_utf8(out.to_vec()).expect("ASCII")
}

fn format_micros_chrono(at: i64) -> String {
    chrono::DateTime::from_timestamp_micros(at)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_else(|| at.to_string())
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard
/// Hinnant's algorithm, the inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The instant `--since DUR` names: now minus the duration.
pub fn since(dur: &str) -> Result<i64> {
    let d = crate::config::parse_duration(dur, "--since")?;
    Ok(now_micros() - i64::try_from(d.as_micros()).unwrap_or(i64::MAX / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_like_chrono() {
        for s in [
            "2024-05-01T10:00:00.123456Z",
            "1999-12-31T23:59:59Z",
            "2024-02-29T00:00:00.5+02:00",
            "2030-07-04T12:34:56.000001-05:30",
            "1970-01-01T00:00:00.000000Z",
        ] {
            let want = chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_micros();
            assert_eq!(parse_ts(s), Some(want), "{s}");
        }
        for bad in [
            "",
            "2024-05-01",
            "2024-13-01T00:00:00Z",
            "2024-05-01T00:00:00",
            "2024-05-01T00:00:00.Z",
            "x024-05-01T00:00:00Z",
        ] {
            assert_eq!(parse_ts(bad), None, "{bad}");
        }
    }

    proptest::proptest! {
        /// Instants written by hand read as chrono writes them: any µs from
        /// year 0 to 9999 (and past both ends, where chrono writes them).
        #[test]
        fn instants_are_written_as_chrono_writes_them(
            at in proptest::prop_oneof![
                -62_167_219_200_000_000i64..253_402_300_800_000_000,
                proptest::num::i64::ANY,
                -62_167_219_200_000_010i64..-62_167_219_199_999_990,
                253_402_300_799_999_990i64..253_402_300_800_000_010,
                -10i64..10,
            ]
        ) {
            proptest::prop_assert_eq!(format_micros(at), format_micros_chrono(at));
        }
    }

    #[test]
    fn instants_at_the_edges_of_days_and_years_are_written_as_chrono_writes_them() {
        for day in [-719_528i64, -1, 0, 1, 11_016, 19_844, 2_932_896] {
            for us in [0, 1, 999_999, 86_399_999_999] {
                let at = day * 86_400_000_000 + us;
                assert_eq!(format_micros(at), format_micros_chrono(at), "{at}");
            }
        }
        assert_eq!(
            format_micros(1_714_557_600_123_456),
            "2024-05-01T10:00:00.123456Z"
        );
    }

    #[test]
    fn malformed_lines_are_counted_not_fatal() {
        let mut t = Totals::default();
        assert!(
            parse_line(
                b"{\"ts\":\"2024-05-01T10:00:00Z\",\"tool\":\"a\",\"op\":\"b\"}\n",
                &mut t
            )
            .is_some()
        );
        assert!(parse_line(b"{\"ts\":\"2024-05-01T10:00", &mut t).is_none());
        assert!(parse_line(b"not json\n", &mut t).is_none());
        assert!(parse_line(b"\n", &mut t).is_none());
        assert_eq!((t.lines, t.malformed), (3, 2));
    }

    #[test]
    fn owner_is_the_lock_owner_else_the_calling_shell() {
        let mut t = Totals::default();
        let l = parse_line(br#"{"ts":"2024-05-01T10:00:00Z","tool":"a","op":"b","ppid":7,"detail":{"owner_pid":9}}"#, &mut t).unwrap();
        assert_eq!(l.ev.owner(), 9);
        let l = parse_line(
            br#"{"ts":"2024-05-01T10:00:00Z","tool":"a","op":"b","ppid":7,"detail":null}"#,
            &mut t,
        )
        .unwrap();
        assert_eq!(l.ev.owner(), 7);
    }

    #[test]
    fn progress_is_told_in_steps_up_to_the_files_size_then_finished() {
        #[derive(Default)]
        struct Told {
            steps: Vec<(u64, u64)>,
            finished: u32,
        }
        impl Progress for Told {
            fn advance(&mut self, read: u64, total: u64) {
                self.steps.push((read, total));
            }
            fn finish(&mut self) {
                self.finished += 1;
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.jsonl");
        let line = "{\"ts\":\"2024-05-01T10:00:00Z\",\"tool\":\"a\",\"op\":\"b\"}\n";
        let n = 3 * PROGRESS_STEP as usize / line.len() + 10;
        std::fs::write(&log, line.repeat(n)).unwrap();
        std::fs::write(dir.path().join("a.jsonl.1"), line.repeat(n)).unwrap();
        let size = log_bytes(&log);
        assert_eq!(size, 2 * (n * line.len()) as u64);
        let mut told = Told::default();
        let mut seen = 0;
        let totals = Metered::new(&log, &mut told)
            .scan_events(&mut |_| seen += 1)
            .unwrap();
        assert_eq!((seen, totals.lines), (2 * n, 2 * n as u64));
        assert_eq!(told.finished, 1);
        assert!(told.steps.len() >= 5, "{:?}", told.steps);
        for w in told.steps.windows(2) {
            assert!(w[1].0 - w[0].0 >= PROGRESS_STEP);
        }
        assert!(told.steps.iter().all(|&(r, t)| t == size && r <= size));
        // A missing log is told nothing but its end.
        let mut none = Told::default();
        Metered::new(&dir.path().join("none"), &mut none)
            .scan_events(&mut |_| {})
            .unwrap();
        assert_eq!((none.steps.len(), none.finished), (0, 1));
    }

    #[test]
    fn paths_name_the_same_target() {
        assert!(same_target("a/../b/s.json", "b/s.json"));
        assert!(same_target("deploy", "deploy"));
        assert!(!same_target("deploy", "deploy2"));
        let cwd = std::env::current_dir().unwrap();
        let here = cwd.join("s.json").display().to_string();
        for (asked, target, same) in [
            ("s.json", here.as_str(), true),
            (here.as_str(), "s.json", true),
            (here.as_str(), "./s.json", true),
            ("/w/s.json", "/w//s.json", true),
            ("/w/s.json", "/w/./s.json", true),
            ("/w/s.json", "/w/x/../s.json", true),
            ("/w/s.json", "/w/s.json/", true),
            ("/w/s.json", "/w/t.json", false),
            ("/w/s.json", "", false),
            ("", "", true),
            ("/w/s.json", "w/s.json", cwd == Path::new("/")),
        ] {
            assert_eq!(same_target(asked, target), same, "{asked} vs {target}");
            // The same answer as std's own absolute path, cleaned the same way.
            let std_abs = |p: &str| {
                std::path::absolute(p).ok().map(|a| {
                    let mut out = PathBuf::new();
                    for c in a.components() {
                        match c {
                            std::path::Component::ParentDir => {
                                out.pop();
                            }
                            std::path::Component::CurDir => {}
                            o => out.push(o),
                        }
                    }
                    out
                })
            };
            let want = asked == target
                || ((asked.contains('/') || target.contains('/'))
                    && std_abs(asked).is_some()
                    && std_abs(asked) == std_abs(target));
            assert_eq!(same_target(asked, target), want, "{asked} vs {target}");
        }
    }
}
