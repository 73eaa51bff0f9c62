//! `audit monitor`: follows the log live, like `tail -f`, and prints one
//! summary line per interval, an alert line when a threshold is crossed, and
//! a session summary at `--duration` or on SIGINT/SIGTERM.
//!
//! - Latency: the first event of an interval slower than `--alert-latency-ms`
//!   raises an alert at once; further slow events of that interval are
//!   counted in its summary line.
//! - Failures: when the failed events of the last 60 s reach
//!   `--alert-failures-per-min`, one alert is raised; it re-arms once the
//!   rate falls below the threshold.
//! - Alerts also go, as JSON Lines appended with one write(2) each, to
//!   `--export-alerts FILE`.
//!
//! The log is read from its end at start (only new events count), a few
//! times a second: this is not a hot path, so it sleeps between reads. When
//! the log rotates, the old file is read to its end before the new one is
//! followed from its start. Not guaranteed: a line appended to the old file
//! after that last read (a writer holding the old fd across the switch) is
//! missed. Review events (`audit-…`) are not counted.
//!
//! Nothing here prints: [`run`] hands each [`Report`] as it happens to the
//! caller, which renders it (`crate::cmd::audit`).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::event::ms_text;
use super::scan::{self, Filter, Line, Totals};
use super::stats::{By, Figures, Histogram, Stats};
use crate::config::Config;
use crate::error::{Error, Result};

/// How often the log is read for new lines.
const READ_EVERY: Duration = Duration::from_millis(200);

/// What to watch for.
#[derive(Clone, Debug)]
pub struct Options {
    pub interval: Duration,
    pub duration: Option<Duration>,
    pub alert_latency_ms: f64,
    pub alert_failures_per_min: u64,
    pub export_alerts: Option<PathBuf>,
}

/// What a monitoring session saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Session {
    pub events: u64,
    pub failed: u64,
    pub intervals: u64,
    pub latency_alerts: u64,
    pub failure_alerts: u64,
    pub malformed: u64,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::SeqCst);
}

/// Makes SIGINT and SIGTERM end the session (with its summary) instead of the process.
fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic; no SA_RESTART, so a
        // signal interrupts poll(2) and the loop sees the flag at once.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut act.sa_mask);
            act.sa_flags = 0;
            libc::sigaction(sig, &act, std::ptr::null_mut());
        }
    }
}

/// Sleeps up to `d`; a signal cuts it short.
fn nap(d: Duration) {
    let ts = rustix::event::Timespec {
        tv_sec: d.as_secs() as _,
        tv_nsec: d.subsec_nanos() as _,
    };
    let _ = rustix::event::poll(&mut [], Some(&ts));
}

/// Where a monitor's new events come from.
pub trait Feed {
    /// Hands every event appended since the last call to `each`.
    fn read_new(&mut self, each: &mut dyn FnMut(&[u8]));
    /// Waits up to `d` for more (a feed that can block on the source hands
    /// what arrives to `each` at once).
    fn wait(&mut self, d: Duration, each: &mut dyn FnMut(&[u8]));
}

impl Feed for Follower {
    fn read_new(&mut self, each: &mut dyn FnMut(&[u8])) {
        Follower::read_new(self, each)
    }
    fn wait(&mut self, d: Duration, _each: &mut dyn FnMut(&[u8])) {
        nap(d)
    }
}

/// Follows one path across rotations.
struct Follower {
    path: PathBuf,
    file: Option<File>,
    id: (u64, u64),
    partial: Vec<u8>,
}

impl Follower {
    /// Starts at the current end of the log (or at nothing, if it does not exist yet).
    fn at_end(path: &Path) -> Follower {
        let mut f = Follower {
            path: path.to_path_buf(),
            file: None,
            id: (0, 0),
            partial: Vec::new(),
        };
        if let Ok(mut file) = crate::durable::open_kept(path)
            && let Ok(m) = file.metadata()
        {
            let _ = file.seek(SeekFrom::End(0));
            f.id = (m.dev(), m.ino());
            f.file = Some(file);
        }
        f
    }

    /// Hands every complete new line to `each`.
    fn read_new(&mut self, each: &mut dyn FnMut(&[u8])) {
        for _ in 0..2 {
            // Which file the path names now, before draining ours: a line
            // written to ours before the rename is then read below.
            let now = std::fs::metadata(&self.path)
                .ok()
                .map(|m| (m.dev(), m.ino()));
            if let Some(file) = self.file.as_mut() {
                let mut chunk = Vec::new();
                let _ = file.read_to_end(&mut chunk);
                self.partial.extend_from_slice(&chunk);
                let end = self
                    .partial
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(0, |i| i + 1);
                for line in self.partial[..end].split(|b| *b == b'\n') {
                    if !line.is_empty() {
                        each(line);
                    }
                }
                self.partial.drain(..end);
            }
            match now {
                Some(id) if self.file.is_none() || id != self.id => {
                    // Rotated (or created): follow the new file from its start.
                    self.file = crate::durable::open_kept(&self.path).ok();
                    self.id = id;
                    self.partial.clear();
                }
                _ => return,
            }
        }
    }
}

/// The figures of the current interval.
#[derive(Default)]
struct Interval {
    events: u64,
    failed: u64,
    slow: u64,
    duration: Histogram,
    wait: Histogram,
}

/// What a session reports, as it happens.
pub enum Report<'a> {
    /// Following has begun (from the log's end).
    Start { log: &'a Path, opts: &'a Options },
    /// A new event was appended to the log (a whole line, as written).
    Event { raw: &'a [u8] },
    /// A threshold was crossed.
    Alert(&'a Alert),
    /// One interval ended.
    Summary(&'a IntervalReport),
    /// The session ended.
    Session(&'a SessionReport),
}

/// An alert, as printed and as appended to `--export-alerts`.
#[derive(Clone, Debug, Serialize)]
pub struct Alert {
    /// Always `alert`.
    #[serde(rename = "type")]
    pub record: &'static str,
    pub ts: String,
    /// `latency` or `failures`.
    pub kind: &'static str,
    /// The threshold crossed: milliseconds (latency) or failures per minute.
    pub threshold: f64,
    /// The value that crossed it, in the same unit.
    pub value: f64,
    pub message: String,
    /// The event behind a latency alert (null for a failure-rate alert).
    pub event: Value,
}

/// The figures of one interval.
#[derive(Clone, Debug, Serialize)]
pub struct IntervalReport {
    /// Always `summary`.
    #[serde(rename = "type")]
    pub record: &'static str,
    pub ts: String,
    pub event_count: u64,
    pub failed: u64,
    /// Events slower than `--alert-latency-ms`.
    pub slow: u64,
    pub duration: Figures,
    pub lock_wait: Figures,
}

/// The figures of a whole session.
#[derive(Clone, Debug, Serialize)]
pub struct SessionReport {
    /// Always `session`.
    #[serde(rename = "type")]
    pub record: &'static str,
    pub ts: String,
    pub elapsed_ms: f64,
    /// `duration` or `signal`.
    pub stopped_by: &'static str,
    pub intervals: u64,
    pub event_count: u64,
    pub failed: u64,
    pub malformed: u64,
    pub alerts: AlertCounts,
    pub duration: Figures,
}

/// Alerts raised in a session, by kind.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct AlertCounts {
    pub latency: u64,
    pub failures: u64,
}

struct Monitor<'a, 'r> {
    opts: &'a Options,
    filter: Filter,
    interval: Interval,
    session: Session,
    all: Stats,
    recent_failures: VecDeque<Instant>,
    failure_alert_armed: bool,
    alerts_file: Option<File>,
    alerts_path: Option<PathBuf>,
    report: &'r mut dyn FnMut(Report),
}

impl Monitor<'_, '_> {
    fn line(&mut self, raw: &[u8]) {
        let mut totals = Totals::default();
        let Some(line) = scan::parse_line(raw, &mut totals) else {
            self.session.malformed += totals.malformed;
            return;
        };
        if !self.filter.matches(&line) {
            return;
        }
        (self.report)(Report::Event { raw: line.raw });
        self.event(&line);
    }

    fn event(&mut self, line: &Line) {
        let ev = &line.ev;
        self.all.add(line);
        self.session.events += 1;
        self.interval.events += 1;
        self.interval.duration.add(ev.duration_ms);
        if let Some(w) = ev.lock_wait_ms() {
            self.interval.wait.add(w);
        }
        if ev.duration_ms > self.opts.alert_latency_ms {
            self.interval.slow += 1;
            if self.interval.slow == 1 {
                let message = format!(
                    "{} {} {} took {} ms (over {} ms), pid {} owner {}",
                    ev.tool,
                    ev.op,
                    ev.target,
                    ms_text(Some(ev.duration_ms)),
                    self.opts.alert_latency_ms,
                    ev.pid,
                    ev.owner()
                );
                let event = serde_json::from_slice::<Value>(line.raw).unwrap_or(Value::Null);
                self.session.latency_alerts += 1;
                self.alert(
                    "latency",
                    self.opts.alert_latency_ms,
                    ev.duration_ms,
                    message,
                    event,
                );
            }
        }
        if ev.exit_code != 0 {
            self.session.failed += 1;
            self.interval.failed += 1;
            self.recent_failures.push_back(Instant::now());
            self.check_failures();
        }
    }

    /// Raises the failure-rate alert when the last minute's failures reach the threshold.
    fn check_failures(&mut self) {
        let minute_ago = Instant::now().checked_sub(Duration::from_secs(60));
        while let (Some(front), Some(ago)) = (self.recent_failures.front(), minute_ago) {
            if *front >= ago {
                break;
            }
            self.recent_failures.pop_front();
        }
        let n = self.recent_failures.len() as u64;
        let limit = self.opts.alert_failures_per_min;
        if n < limit {
            self.failure_alert_armed = true;
        } else if self.failure_alert_armed && limit > 0 {
            self.failure_alert_armed = false;
            self.session.failure_alerts += 1;
            let message = format!("{n} failed events in the last minute (threshold {limit}/min)");
            self.alert("failures", limit as f64, n as f64, message, Value::Null);
        }
    }

    fn alert(
        &mut self,
        kind: &'static str,
        threshold: f64,
        value: f64,
        message: String,
        event: Value,
    ) {
        let alert = Alert {
            record: "alert",
            ts: scan::format_micros(scan::now_micros()),
            kind,
            threshold,
            value,
            message,
            event,
        };
        (self.report)(Report::Alert(&alert));
        if let Some(f) = self.alerts_file.as_mut() {
            let mut line = serde_json::to_vec(&alert).expect("an alert serializes");
            line.push(b'\n');
            if let Err(e) = f.write_all(&line) {
                eprintln!(
                    "state-manager: warning: cannot append to {}: {e}",
                    self.alerts_path
                        .as_deref()
                        .unwrap_or(Path::new("?"))
                        .display()
                );
            }
        }
    }

    /// Reports the interval's figures and starts the next interval.
    fn summary(&mut self) {
        let i = std::mem::take(&mut self.interval);
        self.session.intervals += 1;
        let r = IntervalReport {
            record: "summary",
            ts: scan::format_micros(scan::now_micros()),
            event_count: i.events,
            failed: i.failed,
            slow: i.slow,
            duration: i.duration.figures(),
            lock_wait: i.wait.figures(),
        };
        (self.report)(Report::Summary(&r));
    }

    fn session_summary(&mut self, elapsed: Duration, stopped_by_signal: bool) {
        let s = &self.session;
        let r = SessionReport {
            record: "session",
            ts: scan::format_micros(scan::now_micros()),
            elapsed_ms: super::event::ms(elapsed),
            stopped_by: if stopped_by_signal {
                "signal"
            } else {
                "duration"
            },
            intervals: s.intervals,
            event_count: s.events,
            failed: s.failed,
            malformed: s.malformed,
            alerts: AlertCounts {
                latency: s.latency_alerts,
                failures: s.failure_alerts,
            },
            duration: self.all.total.duration.figures(),
        };
        (self.report)(Report::Session(&r));
    }
}

/// Runs a monitoring session until `--duration` passes or a signal arrives,
/// handing what happens to `report` as it happens.
pub fn run(cfg: &Config, opts: &Options, report: &mut dyn FnMut(Report)) -> Result<Session> {
    crate::debug::log(|| format!("audit: following {}", cfg.audit_log.display()));
    let mut follower = Follower::at_end(&cfg.audit_log);
    run_on(&mut follower, &cfg.audit_log, opts, report)
}

/// [`run`] on events from `feed`, named `log` in the report.
pub fn run_on(
    follower: &mut dyn Feed,
    log: &Path,
    opts: &Options,
    report: &mut dyn FnMut(Report),
) -> Result<Session> {
    if opts.interval.is_zero() {
        return Err(
            Error::validation("bad --interval '0'").hint("give a number of seconds above 0")
        );
    }
    let alerts_file = match &opts.export_alerts {
        Some(p) => Some(
            OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(p)
                .map_err(|e| Error::io(e, "cannot open the alerts file", p))?,
        ),
        None => None,
    };
    catch_signals();
    report(Report::Start { log, opts });
    let mut m = Monitor {
        opts,
        filter: Filter::default(),
        interval: Interval::default(),
        session: Session::default(),
        all: Stats::new(By::Tool),
        recent_failures: VecDeque::new(),
        failure_alert_armed: true,
        alerts_file,
        alerts_path: opts.export_alerts.clone(),
        report,
    };
    let start = Instant::now();
    let end = opts.duration.map(|d| start + d);
    let mut tick = start + opts.interval;
    loop {
        follower.read_new(&mut |raw| m.line(raw));
        let now = Instant::now();
        if STOP.load(Ordering::SeqCst) || end.is_some_and(|e| now >= e) {
            break;
        }
        if now >= tick {
            m.summary();
            tick += opts.interval;
            if tick <= now {
                tick = now + opts.interval;
            }
        }
        let mut wake = tick.min(now + READ_EVERY);
        if let Some(e) = end {
            wake = wake.min(e);
        }
        follower.wait(wake.saturating_duration_since(now), &mut |raw| m.line(raw));
    }
    follower.read_new(&mut |raw| m.line(raw));
    // The last, partial interval gets its line too when anything happened in it.
    if m.interval.events > 0 || m.session.intervals == 0 {
        m.summary();
    }
    let stopped = STOP.load(Ordering::SeqCst);
    m.session_summary(start.elapsed(), stopped);
    crate::debug::log(|| {
        format!(
            "audit: monitored {} events in {} ms",
            m.session.events,
            ms_text(Some(super::event::ms(start.elapsed())))
        )
    });
    Ok(m.session)
}
