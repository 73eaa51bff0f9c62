//! `audit monitor`'s output: each report of the session as a text line, or
//! as one JSON object per line (`--json`: start, summary, alert, session;
//! `--jsonl`: those and every event as it arrives).

use serde::Serialize;
use serde_json::Value;

use crate::audit::event::{ms, ms_text};
use crate::audit::monitor::{Options, Report};
use crate::cmd;

/// How the session prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Text,
    /// JSON Lines of the session's records.
    Json,
    /// JSON Lines of the session's records and of every event.
    Jsonl,
}

/// The first line of a session.
#[derive(Serialize)]
struct Start<'a> {
    #[serde(rename = "type")]
    record: &'static str,
    log: &'a std::path::Path,
    interval_ms: f64,
    duration_ms: Option<f64>,
    alert_latency_ms: f64,
    alert_failures_per_min: u64,
    message: String,
}

/// One event as it arrives (`--jsonl`).
#[derive(Serialize)]
struct Arrived {
    #[serde(rename = "type")]
    record: &'static str,
    event: Value,
}

fn line(v: &impl Serialize) {
    cmd::println(&serde_json::to_string(v).expect("monitor records serialize"));
}

fn start_message(log: &std::path::Path, opts: &Options) -> String {
    format!(
        "monitoring {} every {} s{} (alerts: latency over {} ms, {} failures per minute)",
        log.display(),
        opts.interval.as_secs_f64(),
        opts.duration
            .map(|d| format!(" for {} s", d.as_secs_f64()))
            .unwrap_or_default(),
        opts.alert_latency_ms,
        opts.alert_failures_per_min
    )
}

/// Prints one report of the session.
pub fn print(mode: Mode, report: Report) {
    match report {
        Report::Start { log, opts } => {
            let message = start_message(log, opts);
            if mode == Mode::Text {
                cmd::println(&message);
            } else {
                line(&Start {
                    record: "start",
                    log,
                    interval_ms: ms(opts.interval),
                    duration_ms: opts.duration.map(ms),
                    alert_latency_ms: opts.alert_latency_ms,
                    alert_failures_per_min: opts.alert_failures_per_min,
                    message,
                });
            }
        }
        Report::Event { raw } => {
            if mode == Mode::Jsonl {
                line(&Arrived {
                    record: "event",
                    event: serde_json::from_slice(raw).unwrap_or(Value::Null),
                });
            }
        }
        Report::Alert(a) => {
            if mode == Mode::Text {
                cmd::println(&format!("{}  ALERT {}: {}", a.ts, a.kind, a.message));
            } else {
                line(a);
            }
        }
        Report::Summary(i) => {
            if mode == Mode::Text {
                cmd::println(&format!(
                    "{}  events {:>5}  failed {:>4}  slow {:>4}  p50 {:>7} ms  p95 {:>7} ms  max {:>7} ms  wait p95 {:>7} ms",
                    i.ts,
                    i.event_count,
                    i.failed,
                    i.slow,
                    ms_text(i.duration.p50_ms),
                    ms_text(i.duration.p95_ms),
                    ms_text(i.duration.max_ms),
                    ms_text(i.lock_wait.p95_ms),
                ));
            } else {
                line(i);
            }
        }
        Report::Session(s) => {
            if mode == Mode::Text {
                cmd::println(&format!(
                    "session: {:.1} s, {} intervals, {} events, {} failed, alerts: {} latency, {} failures; duration p50 {} ms, p95 {} ms, max {} ms{}",
                    s.elapsed_ms / 1e3,
                    s.intervals,
                    s.event_count,
                    s.failed,
                    s.alerts.latency,
                    s.alerts.failures,
                    ms_text(s.duration.p50_ms),
                    ms_text(s.duration.p95_ms),
                    ms_text(s.duration.max_ms),
                    if s.stopped_by == "signal" {
                        " (stopped by signal)"
                    } else {
                        ""
                    }
                ));
            } else {
                line(s);
            }
        }
    }
}
