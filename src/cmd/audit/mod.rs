//! `state-manager audit …`: the review commands' arguments, and the
//! functions that run them over the backend's audit sink and print the
//! result as text or JSON.
//!
//! Each command reads the log (rotated files included, oldest first),
//! prints aligned text or, with `--json`, one JSON value on stdout
//! (`-c`: on one line; `recent --jsonl`: one event per line), and then logs
//! itself as one event (op `audit-recent`, `audit-stats`, …, target the
//! audit log). Those events are left out of every review unless asked for by
//! `--op`, so a review never counts the reviews before it.
//!
//! Over a big log (16 MiB or more) on the file backend, a person watching
//! stderr on a terminal sees how far the reading has got ([`progress`]).

pub mod monitor;
pub mod progress;
pub mod text;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use crate::audit::scan::{self, Events, Filter, Metered, Totals};
use crate::audit::stats::By;
use crate::audit::{export, history, missing, races, recent, stats};
use crate::cmd::{self as cli, Ctx, JsonArgs, Output, StreamArgs};
use crate::config;
use crate::error::{Error, Result};
use crate::exit::Code;

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
    /// Why a state path, lock, checkpoint, backup, Redis key or file is missing
    ///
    /// Whether TARGET exists now (type, size; a TTL on Redis, which none
    /// should have), its related files or keys, the operations on it from the
    /// audit log (newest first, at most -n), the event that removed it, and
    /// the other hosts that touched it within --window. TARGET's kind is
    /// guessed (--kind says it): wfstate:… a Redis key; .a.b a state path;
    /// checkpoint-… a checkpoint; state-….json a backup; a path with / or an
    /// existing file a file; any other name a lock. Exit 0 when it exists,
    /// 1 when it does not (an answer, like check), 4 a bad state path or
    /// --window.
    Missing(MissingArgs),
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
    #[command(flatten)]
    pub out: StreamArgs,
}

#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Only events newer than this (7d, 12h, 30m, 45s, 500ms)
    #[arg(long, value_name = "DUR")]
    pub since: Option<String>,
    /// Group the table by
    #[arg(long, value_enum, default_value_t = By::Tool)]
    pub by: By,
    #[command(flatten)]
    pub json: JsonArgs,
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
    #[command(flatten)]
    pub json: JsonArgs,
}

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// The state file path, lock name, checkpoint id or backup file name
    pub target: String,
    /// Include reads (read, status, check, …)
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub json: JsonArgs,
}

#[derive(Debug, clap::Args)]
pub struct MissingArgs {
    /// A state path (.signals.build), lock name, checkpoint id, backup name, Redis key or file
    pub target: String,
    /// What TARGET is, when the guess is wrong
    #[arg(long, value_enum, value_name = "KIND")]
    pub kind: Option<missing::Kind>,
    /// How far back other hosts' events count (7d, 12h, 30m, 45s)
    #[arg(long, value_name = "DUR", default_value = "1h")]
    pub window: String,
    /// How many operations to show, newest first
    #[arg(short = 'n', long = "count", default_value_t = 20, value_name = "N")]
    pub count: usize,
    #[command(flatten)]
    pub json: JsonArgs,
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
    /// With --json: on one line
    #[arg(short = 'c', long)]
    pub compact: bool,
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
    /// Print JSON Lines: start, summary, alert, session, and every event as it arrives
    #[arg(long)]
    pub jsonl: bool,
}

/// Runs one review command; the binary maps the result to its exit code.
pub fn run(ctx: &Ctx, cmd: AuditCommand) -> Result<Code> {
    let log = ctx.cfg.audit_log.display().to_string();
    // A big log on the file backend, read while a person watches stderr,
    // gets a progress line (see `progress`); `monitor` follows the log live.
    let streams = matches!(&cmd, AuditCommand::Export(a) if a.output.is_none());
    let mut meter = match &cmd {
        AuditCommand::Monitor(_) => None,
        _ => progress::Meter::for_review(ctx, streams),
    };
    let metered;
    // The backend's audit sink is where the reviews read the events back.
    let events: &dyn Events = match meter.as_mut() {
        Some(m) => {
            metered = Metered::new(&ctx.cfg.audit_log, m);
            &metered
        }
        None => ctx.backend.audit(),
    };
    match cmd {
        AuditCommand::Recent(a) => ctx.audited("audit-recent", log, |detail| {
            recent_cmd(output(ctx, a.out.into()), events, a, detail)
        }),
        AuditCommand::Stats(a) => ctx.audited("audit-stats", log, |detail| {
            stats_cmd(output(ctx, a.json), events, a, detail)
        }),
        AuditCommand::Races(a) => ctx.audited("audit-races", log, |detail| {
            races_cmd(output(ctx, a.json), events, a, detail)
        }),
        AuditCommand::History(a) => ctx.audited("audit-history", a.target.clone(), |detail| {
            history_cmd(ctx, output(ctx, a.json), events, a, detail)
        }),
        AuditCommand::Missing(a) => ctx.audited("audit-missing", a.target.clone(), |detail| {
            missing_cmd(ctx, output(ctx, a.json), events, a, detail)
        }),
        AuditCommand::Export(a) => {
            let target = a
                .output
                .as_ref()
                .map_or("-".to_string(), |p| p.display().to_string());
            ctx.audited("audit-export", target, |detail| {
                export_cmd(ctx, events, a, detail)
            })
        }
        AuditCommand::Monitor(a) => {
            ctx.audited("audit-monitor", log, |detail| monitor_cmd(ctx, a, detail))
        }
    }
}

/// The call's output, as these arguments ask.
fn output(ctx: &Ctx, args: JsonArgs) -> Output {
    Output {
        json: args.json || args.jsonl,
        compact: args.compact,
        jsonl: args.jsonl,
        ..ctx.output
    }
}

fn since(s: &Option<String>) -> Result<Option<i64>> {
    s.as_deref().map(scan::since).transpose()
}

fn check_window(window: f64) -> Result<()> {
    if window.is_finite() && window >= 0.0 {
        Ok(())
    } else {
        Err(Error::validation(format!("bad --window '{window}'"))
            .hint("give a number of milliseconds from 0 up"))
    }
}

/// Under `--json` the malformed-line count is not part of the value (a
/// listing is an array): it goes to stderr, as a warning.
fn warn_malformed(out: &Output, totals: &Totals) {
    if out.json && totals.malformed > 0 {
        eprintln!(
            "state-manager: warning: {}",
            malformed_note(totals.malformed)
        );
    }
}

fn recent_cmd(
    out: Output,
    events: &dyn Events,
    a: RecentArgs,
    detail: &mut serde_json::Value,
) -> Result<Code> {
    let filter = Filter {
        run_id: a.run_id,
        tool: a.tool,
        op: a.op,
        target: a.target.map(scan::Target::new),
        since: since(&a.since)?,
        failed: a.failed,
    };
    let (lines, totals) = recent::collect(events, &filter, a.count)?;
    crate::debug::log(|| format!("audit recent: {} events shown", lines.len()));
    if out.json {
        out.list(&recent::values(&lines));
        warn_malformed(&out, &totals);
    } else {
        cli::print(&text::recent(&lines, &totals, &out));
    }
    *detail = json!({ "shown": lines.len(), "malformed": totals.malformed, "lines": totals.lines });
    Ok(Code::Success)
}

fn stats_cmd(
    out: Output,
    events: &dyn Events,
    a: StatsArgs,
    detail: &mut serde_json::Value,
) -> Result<Code> {
    let filter = Filter {
        since: since(&a.since)?,
        ..Filter::default()
    };
    let (st, totals) = stats::collect(events, &filter, a.by)?;
    if out.json {
        out.json(&serde_json::to_value(st.report(&totals)).expect("the stats report serializes"));
    } else {
        cli::print(&text::stats(&st, &totals, &out));
    }
    *detail = json!({ "malformed": totals.malformed, "lines": totals.lines });
    Ok(Code::Success)
}

fn races_cmd(
    out: Output,
    events: &dyn Events,
    a: RacesArgs,
    detail: &mut serde_json::Value,
) -> Result<Code> {
    check_window(a.window)?;
    let filter = Filter {
        run_id: a.run_id,
        target: a.target.map(scan::Target::new),
        since: since(&a.since)?,
        ..Filter::default()
    };
    // Each finding is rendered as it is found and kept out of memory
    // (`races::Findings`), then written out earliest first.
    let render: races::Render = if out.json {
        races::json_render(!out.compact)
    } else {
        Box::new(text::race)
    };
    let (findings, totals) = races::collect(events, &filter, a.window, render)?;
    let mut w = std::io::BufWriter::with_capacity(REPORT_BUFFER, std::io::stdout().lock());
    let written = if out.json {
        races::write_json(&findings, &totals, !out.compact, &mut w).and_then(|_| w.write_all(b"\n"))
    } else {
        text::races(&findings, &totals, &mut w)
    };
    report_written(written.and_then(|_| w.flush()), "race")?;
    *detail =
        json!({ "findings": findings.len(), "malformed": totals.malformed, "lines": totals.lines });
    Ok(Code::Success)
}

fn history_cmd(
    ctx: &Ctx,
    out: Output,
    events: &dyn Events,
    a: HistoryArgs,
    detail: &mut serde_json::Value,
) -> Result<Code> {
    let (h, totals) = history::collect(&ctx.cfg, events, &a.target, a.all)?;
    let mut w = std::io::BufWriter::with_capacity(REPORT_BUFFER, std::io::stdout().lock());
    let written = if out.json {
        h.write_json(&totals, !out.compact, &mut w)
            .and_then(|_| w.write_all(b"\n"))
    } else {
        text::history(&h, &totals, &out, &mut w)
    };
    report_written(written.and_then(|_| w.flush()), "history")?;
    *detail = json!({ "steps": h.steps.len() });
    Ok(Code::Success)
}

/// `audit missing`: exit 0 when the target exists, 1 when it does not —
/// an answer, recorded as a success.
fn missing_cmd(
    ctx: &Ctx,
    out: Output,
    events: &dyn Events,
    a: MissingArgs,
    detail: &mut serde_json::Value,
) -> Result<Code> {
    let window = seconds(&a.window, "--window")?;
    let state_target = ctx.state_target();
    let opts = missing::Options {
        target: &a.target,
        kind: a.kind,
        window_us: i64::try_from(window.as_micros()).unwrap_or(i64::MAX / 2),
        count: a.count,
        state_target: &state_target,
    };
    let r = missing::investigate(&ctx.cfg, ctx.backend.as_ref(), events, &opts)?;
    if out.json {
        out.json(&serde_json::to_value(&r).expect("the missing report serializes"));
    } else {
        cli::print(&text::missing(&r, &a.window, &out));
    }
    let code = if r.exists {
        Code::Success
    } else {
        Code::GeneralError
    };
    *detail = json!({
        "kind": r.kind, "exists": r.exists, "answer_exit": code.as_i32(),
        "shown": r.operations.len(), "malformed": r.malformed,
    });
    Ok(code)
}

fn export_cmd(
    ctx: &Ctx,
    events: &dyn Events,
    a: ExportArgs,
    detail: &mut serde_json::Value,
) -> Result<Code> {
    check_window(a.window)?;
    let filter = Filter {
        since: since(&a.since)?,
        ..Filter::default()
    };
    let s = match &a.output {
        Some(path) => {
            crate::debug::log(|| format!("audit export: writing {}", path.display()));
            let s = export::write_file(&ctx.cfg, events, &filter, a.window, path)?;
            if crate::durable::is_stdout(path) {
                // `--output /dev/stdout`: the document is the output, whole.
            } else if a.json {
                output(
                    ctx,
                    JsonArgs {
                        json: true,
                        compact: a.compact,
                        jsonl: false,
                    },
                )
                .json(&json!({
                    "output": path, "event_count": s.events, "finding_count": s.findings, "malformed": s.malformed,
                }));
            } else {
                cli::println(&format!(
                    "exported {} events and {} race findings to {}{}",
                    s.events,
                    s.findings,
                    path.display(),
                    if s.malformed > 0 {
                        format!(" ({})", malformed_note(s.malformed))
                    } else {
                        String::new()
                    }
                ));
            }
            s
        }
        None => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
            match export::write_to(&ctx.cfg, events, &filter, a.window, &mut out) {
                // `| head` closing the pipe is not a failure.
                Err(e) if e.io_kind() == Some(std::io::ErrorKind::BrokenPipe) => {
                    export::Summary::default()
                }
                other => other?,
            }
        }
    };
    *detail = json!({ "events": s.events, "findings": s.findings, "malformed": s.malformed });
    Ok(Code::Success)
}

fn monitor_cmd(ctx: &Ctx, a: MonitorArgs, detail: &mut serde_json::Value) -> Result<Code> {
    let opts = crate::audit::monitor::Options {
        interval: seconds(&a.interval, "--interval")?,
        duration: a
            .duration
            .as_deref()
            .map(|d| seconds(d, "--duration"))
            .transpose()?,
        alert_latency_ms: a.alert_latency_ms,
        alert_failures_per_min: a.alert_failures_per_min,
        export_alerts: a.export_alerts,
    };
    let mode = if a.jsonl {
        monitor::Mode::Jsonl
    } else if a.json {
        monitor::Mode::Json
    } else {
        monitor::Mode::Text
    };
    let print: &mut dyn FnMut(crate::audit::monitor::Report) = &mut |r| monitor::print(mode, r);
    #[cfg(feature = "redis")]
    let s = match ctx.backend.redis() {
        Some(r) => {
            let mut feed = crate::backend::redis::audit::StreamFeed::at_end(r)?;
            let name = feed.name();
            crate::audit::monitor::run_on(&mut feed, &name, &opts, print)?
        }
        None => crate::audit::monitor::run(&ctx.cfg, &opts, print)?,
    };
    #[cfg(not(feature = "redis"))]
    let s = crate::audit::monitor::run(&ctx.cfg, &opts, print)?;
    *detail = json!({
        "events": s.events, "failed": s.failed, "intervals": s.intervals,
        "latency_alerts": s.latency_alerts, "failure_alerts": s.failure_alerts,
    });
    Ok(Code::Success)
}

/// Seconds, or a duration with a unit (`90`, `1.5`, `2m`).
fn seconds(text: &str, what: &str) -> Result<Duration> {
    config::parse_duration(text, what)
}

/// Bytes of a long report (`races`, `history`) gathered before each write
/// to stdout: one write(2) per MiB, not one per finding or step.
const REPORT_BUFFER: usize = 1 << 20;

/// The end of a report written to stdout as it streams: a closed pipe
/// (`| head`) is not a failure, any other error is.
fn report_written(written: std::io::Result<()>, what: &str) -> Result<()> {
    match written {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::io(e, format!("cannot write the {what} report"), "-"))
        }
        _ => Ok(()),
    }
}

/// `1 malformed line skipped`, `3 malformed lines skipped`.
pub fn malformed_note(n: u64) -> String {
    format!(
        "{n} malformed line{} skipped",
        if n == 1 { "" } else { "s" }
    )
}
