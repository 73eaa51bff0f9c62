//! `state-manager audit …`: the review commands' arguments and the one
//! function the binary calls, [`run`].
//!
//! Each command reads the log (rotated files included, oldest first),
//! prints aligned text or, with `--json`, JSON on stdout, and then logs
//! itself as one event (op `audit-recent`, `audit-stats`, …, target the
//! audit log). Those events are left out of every review unless asked for by
//! `--op`, so a review never counts the reviews before it.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use super::event::Recorder;
use super::scan::{self, Filter};
use super::stats::By;
use super::{export, history, monitor, races, recent, stats};
use crate::cmd as cli;
use crate::config::{self, Config};
use crate::error::{Error, Result};
use crate::exit::Code;

const TOOL: &str = "state-manager";

/// Review the audit log.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// The newest matching events, oldest first
    Recent(RecentArgs),
    /// Counts, failures by exit code, duration and lock-wait percentiles, events per minute
    ///
    /// Percentiles are estimates within 1% of the true value (a bounded
    /// log-bucketed histogram, so memory does not grow with the log); the
    /// maximum is exact.
    Stats(StatsArgs),
    /// Timing conflicts between owners, each with the events behind it
    ///
    /// Overlapping operations on one target by different owners, lock waits
    /// over --window, stale-lock takeovers, revision conflicts, and writes
    /// refused because the state lock timed out.
    Races(RacesArgs),
    /// The life of one state file, lock, checkpoint or backup, and who did what to it
    History(HistoryArgs),
    /// One JSON document: environment, events, stats and races
    Export(ExportArgs),
    /// Follow the log live: a summary line per interval, alerts, a session summary at the end
    ///
    /// Ends at --duration, or on Ctrl-C (SIGINT) or SIGTERM, with the session
    /// summary; exit 0 either way.
    Monitor(MonitorArgs),
}

/// Filters shared by recent.
#[derive(Debug, clap::Args)]
pub struct RecentArgs {
    /// How many events to show
    #[arg(short = 'n', long = "count", default_value_t = 20, value_name = "N")]
    pub count: usize,
    /// Only events of this run (WFSTATE_RUN_ID)
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
    /// Only events of this binary (state-manager, lock-manager, error-recovery)
    #[arg(long, value_name = "TOOL")]
    pub tool: Option<String>,
    /// Only events of this operation (acquire, write, checkpoint, …)
    #[arg(long, value_name = "OP")]
    pub op: Option<String>,
    /// Only events on this target (state file path, lock name, checkpoint id)
    #[arg(long, value_name = "NAME")]
    pub target: Option<String>,
    /// Only events newer than this (7d, 12h, 30m, 45s, 500ms)
    #[arg(long, value_name = "DUR")]
    pub since: Option<String>,
    /// Only events that failed (exit code not 0)
    #[arg(long)]
    pub failed: bool,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Only events newer than this (7d, 12h, 30m, 45s, 500ms)
    #[arg(long, value_name = "DUR")]
    pub since: Option<String>,
    /// Group the table by
    #[arg(long, value_enum, default_value_t = By::Tool)]
    pub by: By,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RacesArgs {
    /// Only events of this run (WFSTATE_RUN_ID)
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
    /// Only this target (state file path, lock name, checkpoint id)
    #[arg(long, value_name = "NAME")]
    pub target: Option<String>,
    /// Report lock waits longer than this many milliseconds
    #[arg(long, value_name = "MS", default_value_t = races::DEFAULT_WINDOW_MS)]
    pub window: f64,
    /// Only events newer than this (7d, 12h, 30m, 45s, 500ms)
    #[arg(long, value_name = "DUR")]
    pub since: Option<String>,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// The state file path, lock name, checkpoint id or backup file name
    pub target: String,
    /// Include reads (read, status, check, …)
    #[arg(long)]
    pub all: bool,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Write the document here (atomically) instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Only events newer than this (7d, 12h, 30m, 45s, 500ms)
    #[arg(long, value_name = "DUR")]
    pub since: Option<String>,
    /// Lock waits longer than this many milliseconds count as races
    #[arg(long, value_name = "MS", default_value_t = races::DEFAULT_WINDOW_MS)]
    pub window: f64,
    /// With --output: print the summary as JSON (the document itself is always JSON)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct MonitorArgs {
    /// Seconds between summary lines
    #[arg(long, value_name = "S", default_value = "60")]
    pub interval: String,
    /// Stop after this many seconds [default: until Ctrl-C]
    #[arg(long, value_name = "S")]
    pub duration: Option<String>,
    /// Alert on an operation slower than this
    #[arg(long, value_name = "N", default_value_t = 500.0)]
    pub alert_latency_ms: f64,
    /// Alert when this many events fail within a minute
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub alert_failures_per_min: u64,
    /// Also append each alert to FILE as a JSON line
    #[arg(long, value_name = "FILE")]
    pub export_alerts: Option<PathBuf>,
    /// Print JSON Lines (start, summary, alert, session)
    #[arg(long)]
    pub json: bool,
}

fn since(s: &Option<String>) -> Result<Option<i64>> {
    s.as_deref().map(scan::since).transpose()
}

fn malformed_detail(totals: &scan::Totals) -> serde_json::Value {
    json!({ "malformed": totals.malformed, "lines": totals.lines })
}

/// Runs one review command; the binary maps the result to its exit code.
pub fn run(cfg: &Config, cmd: AuditCommand) -> Result<Code> {
    match cmd {
        AuditCommand::Recent(a) => {
            let rec = Recorder::start(
                cfg,
                TOOL,
                "audit-recent",
                cfg.audit_log.display().to_string(),
            );
            let result = (|| {
                let filter = Filter {
                    run_id: a.run_id,
                    tool: a.tool,
                    op: a.op,
                    target: a.target,
                    since: since(&a.since)?,
                    failed: a.failed,
                };
                let (lines, totals) = recent::collect(cfg, &filter, a.count)?;
                if a.json {
                    cli::print_json(&recent::to_json(&lines, &totals));
                } else {
                    cli::print(&recent::to_text(&lines, &totals));
                }
                Ok((lines.len(), totals))
            })();
            let detail = match &result {
                Ok((n, t)) => json!({ "shown": n, "malformed": t.malformed, "lines": t.lines }),
                Err(_) => json!({}),
            };
            rec.finish(&result, detail);
            result.map(|_| Code::Success)
        }
        AuditCommand::Stats(a) => {
            let rec = Recorder::start(
                cfg,
                TOOL,
                "audit-stats",
                cfg.audit_log.display().to_string(),
            );
            let result = (|| {
                let filter = Filter {
                    since: since(&a.since)?,
                    ..Filter::default()
                };
                let (st, totals) = stats::collect(cfg, &filter, a.by)?;
                if a.json {
                    cli::print_json(&st.to_json(&totals));
                } else {
                    cli::print(&st.to_text(&totals));
                }
                Ok(totals)
            })();
            let detail = result
                .as_ref()
                .map(malformed_detail)
                .unwrap_or_else(|_| json!({}));
            rec.finish(&result, detail);
            result.map(|_| Code::Success)
        }
        AuditCommand::Races(a) => {
            let rec = Recorder::start(
                cfg,
                TOOL,
                "audit-races",
                cfg.audit_log.display().to_string(),
            );
            let result = (|| {
                if !(a.window.is_finite() && a.window >= 0.0) {
                    return Err(Error::validation(format!("bad --window '{}'", a.window))
                        .hint("give a number of milliseconds from 0 up"));
                }
                let filter = Filter {
                    run_id: a.run_id,
                    target: a.target,
                    since: since(&a.since)?,
                    ..Filter::default()
                };
                let (findings, totals) = races::collect(cfg, &filter, a.window)?;
                if a.json {
                    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                    // A closed pipe (`| head`) is not a failure.
                    let _ = races::write_json(&findings, &totals, true, &mut out)
                        .and_then(|_| out.write_all(b"\n"))
                        .and_then(|_| out.flush());
                } else {
                    cli::print(&races::to_text(&findings, &totals));
                }
                Ok((findings.len(), totals))
            })();
            let detail = match &result {
                Ok((n, t)) => json!({ "findings": n, "malformed": t.malformed, "lines": t.lines }),
                Err(_) => json!({}),
            };
            rec.finish(&result, detail);
            result.map(|_| Code::Success)
        }
        AuditCommand::History(a) => {
            let rec = Recorder::start(cfg, TOOL, "audit-history", a.target.clone());
            let result = (|| {
                let (h, totals) = history::collect(cfg, &a.target, a.all)?;
                if a.json {
                    cli::print_json(&history::to_json(&h, &totals));
                } else {
                    cli::print(&history::to_text(&h, &totals));
                }
                Ok(h.steps.len())
            })();
            let detail = result
                .as_ref()
                .map(|n| json!({ "steps": n }))
                .unwrap_or_else(|_| json!({}));
            rec.finish(&result, detail);
            result.map(|_| Code::Success)
        }
        AuditCommand::Export(a) => {
            let target = a
                .output
                .as_ref()
                .map_or("-".to_string(), |p| p.display().to_string());
            let rec = Recorder::start(cfg, TOOL, "audit-export", target);
            let result = (|| {
                if !(a.window.is_finite() && a.window >= 0.0) {
                    return Err(Error::validation(format!("bad --window '{}'", a.window))
                        .hint("give a number of milliseconds from 0 up"));
                }
                let filter = Filter {
                    since: since(&a.since)?,
                    ..Filter::default()
                };
                match &a.output {
                    Some(path) => {
                        let s = export::write_file(cfg, &filter, a.window, path)?;
                        if crate::durable::is_stdout(path) {
                            // `--output /dev/stdout`: the document is the output, whole.
                        } else if a.json {
                            cli::print_json(&json!({
                                "output": path, "events": s.events, "findings": s.findings, "malformed": s.malformed,
                            }));
                        } else {
                            cli::println(&format!(
                                "exported {} events and {} race findings to {}{}",
                                s.events,
                                s.findings,
                                path.display(),
                                if s.malformed > 0 {
                                    format!(" ({})", super::table::malformed_note(s.malformed))
                                } else {
                                    String::new()
                                }
                            ));
                        }
                        Ok(s)
                    }
                    None => {
                        let stdout = std::io::stdout();
                        let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
                        match export::write_to(cfg, &filter, a.window, &mut out) {
                            // `| head` closing the pipe is not a failure.
                            Err(e) if e.io_kind() == Some(std::io::ErrorKind::BrokenPipe) => {
                                Ok(export::Summary::default())
                            }
                            other => other,
                        }
                    }
                }
            })();
            let detail = result
                .as_ref()
                .map(|s| json!({ "events": s.events, "findings": s.findings, "malformed": s.malformed }))
                .unwrap_or_else(|_| json!({}));
            rec.finish(&result, detail);
            result.map(|_| Code::Success)
        }
        AuditCommand::Monitor(a) => {
            let rec = Recorder::start(
                cfg,
                TOOL,
                "audit-monitor",
                cfg.audit_log.display().to_string(),
            );
            let result = (|| {
                let opts = monitor::Options {
                    interval: seconds(&a.interval, "--interval")?,
                    duration: a
                        .duration
                        .as_deref()
                        .map(|d| seconds(d, "--duration"))
                        .transpose()?,
                    alert_latency_ms: a.alert_latency_ms,
                    alert_failures_per_min: a.alert_failures_per_min,
                    export_alerts: a.export_alerts,
                    json: a.json,
                };
                monitor::run(cfg, &opts)
            })();
            let detail = result
                .as_ref()
                .map(|s| {
                    json!({
                        "events": s.events, "failed": s.failed, "intervals": s.intervals,
                        "latency_alerts": s.latency_alerts, "failure_alerts": s.failure_alerts,
                    })
                })
                .unwrap_or_else(|_| json!({}));
            rec.finish(&result, detail);
            result.map(|_| Code::Success)
        }
    }
}

/// Seconds, or a duration with a unit (`90`, `1.5`, `2m`).
fn seconds(text: &str, what: &str) -> Result<Duration> {
    config::parse_duration(text).map_err(|_| {
        Error::validation(format!("bad {what} '{text}'"))
            .hint("give seconds, such as 60 or 0.5, or a unit: 2m, 1h")
    })
}
