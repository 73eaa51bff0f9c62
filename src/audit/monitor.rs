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

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::scan::{self, Filter, Line, Totals};
use super::stats::{By, Histogram, Stats};
use super::table::ms;
use crate::cmd as cli;
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
    pub json: bool,
}

/// What a monitoring session saw.
#[derive(Clone, Debug, Default)]
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

struct Monitor<'a> {
    opts: &'a Options,
    filter: Filter,
    interval: Interval,
    session: Session,
    all: Stats,
    recent_failures: VecDeque<Instant>,
    failure_alert_armed: bool,
    alerts_file: Option<File>,
    alerts_path: Option<PathBuf>,
}

impl Monitor<'_> {
    fn line(&mut self, raw: &[u8]) {
        let mut totals = Totals::default();
        let Some(line) = scan::parse_line(raw, &mut totals) else {
            self.session.malformed += totals.malformed;
            return;
        };
        if !self.filter.matches(&line) {
            return;
        }
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
                    ms(Some(ev.duration_ms)),
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

    fn alert(&mut self, kind: &str, threshold: f64, value: f64, message: String, event: Value) {
        let record = json!({
            "type": "alert",
            "ts": scan::format_micros(scan::now_micros()),
            "kind": kind,
            "threshold": threshold,
            "value": value,
            "message": message,
            "event": event,
        });
        if self.opts.json {
            cli::println(&record.to_string());
        } else {
            cli::println(&format!(
                "{}  ALERT {kind}: {message}",
                scan::format_micros(scan::now_micros())
            ));
        }
        if let Some(f) = self.alerts_file.as_mut() {
            let mut line = record.to_string().into_bytes();
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

    /// Prints the interval's summary line and starts the next interval.
    fn summary(&mut self) {
        let i = std::mem::take(&mut self.interval);
        self.session.intervals += 1;
        let now = scan::format_micros(scan::now_micros());
        if self.opts.json {
            cli::println(
                &json!({
                    "type": "summary",
                    "ts": now,
                    "events": i.events,
                    "failed": i.failed,
                    "slow": i.slow,
                    "duration_ms": { "p50": i.duration.quantile(0.5), "p95": i.duration.quantile(0.95), "max": i.duration.max() },
                    "lock_wait_ms": { "p95": i.wait.quantile(0.95), "max": i.wait.max() },
                })
                .to_string(),
            );
        } else {
            cli::println(&format!(
                "{now}  events {:>5}  failed {:>4}  slow {:>4}  p50 {:>7} ms  p95 {:>7} ms  max {:>7} ms  wait p95 {:>7} ms",
                i.events,
                i.failed,
                i.slow,
                ms(i.duration.quantile(0.5)),
                ms(i.duration.quantile(0.95)),
                ms(i.duration.max()),
                ms(i.wait.quantile(0.95)),
            ));
        }
    }

    fn session_summary(&self, elapsed: Duration, stopped_by_signal: bool) {
        let s = &self.session;
        let d = &self.all.total.duration;
        if self.opts.json {
            cli::println(
                &json!({
                    "type": "session",
                    "ts": scan::format_micros(scan::now_micros()),
                    "seconds": elapsed.as_secs_f64(),
                    "stopped_by": if stopped_by_signal { "signal" } else { "duration" },
                    "intervals": s.intervals,
                    "events": s.events,
                    "failed": s.failed,
                    "malformed": s.malformed,
                    "alerts": { "latency": s.latency_alerts, "failures": s.failure_alerts },
                    "duration_ms": { "p50": d.quantile(0.5), "p95": d.quantile(0.95), "max": d.max() },
                })
                .to_string(),
            );
        } else {
            cli::println(&format!(
                "session: {:.1} s, {} intervals, {} events, {} failed, alerts: {} latency, {} failures; duration p50 {} ms, p95 {} ms, max {} ms{}",
                elapsed.as_secs_f64(),
                s.intervals,
                s.events,
                s.failed,
                s.latency_alerts,
                s.failure_alerts,
                ms(d.quantile(0.5)),
                ms(d.quantile(0.95)),
                ms(d.max()),
                if stopped_by_signal {
                    " (stopped by signal)"
                } else {
                    ""
                }
            ));
        }
    }
}

/// Runs a monitoring session until `--duration` passes or a signal arrives.
pub fn run(cfg: &Config, opts: &Options) -> Result<Session> {
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
    let mut follower = Follower::at_end(&cfg.audit_log);
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
    };
    let start_msg = format!(
        "monitoring {} every {} s{} (alerts: latency over {} ms, {} failures per minute)",
        cfg.audit_log.display(),
        opts.interval.as_secs_f64(),
        opts.duration
            .map(|d| format!(" for {} s", d.as_secs_f64()))
            .unwrap_or_default(),
        opts.alert_latency_ms,
        opts.alert_failures_per_min
    );
    if opts.json {
        cli::println(
            &json!({ "type": "start", "log": cfg.audit_log, "message": start_msg }).to_string(),
        );
    } else {
        cli::println(&start_msg);
    }
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
        nap(wake.saturating_duration_since(now));
    }
    follower.read_new(&mut |raw| m.line(raw));
    // The last, partial interval gets its line too when anything happened in it.
    if m.interval.events > 0 || m.session.intervals == 0 {
        m.summary();
    }
    let stopped = STOP.load(Ordering::SeqCst);
    m.session_summary(start.elapsed(), stopped);
    Ok(m.session)
}
