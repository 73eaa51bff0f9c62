//! `retry`: runs a command until it succeeds, with capped exponential
//! backoff and jitter, under an optional overall deadline.
//!
//! Guarantees:
//! - The exit status is the last attempt's own code (128+N when a signal
//!   killed it), never 0 after a failure; 9 when `--timeout` ended the run;
//!   5 when the command is not found.
//! - Which codes are retried depends on whose codes they are ([`Codes`]).
//!   A command that is one of wfstate's binaries (its file name, after the
//!   PATH lookup and with symlinks resolved, is `state-manager`,
//!   `lock-manager` or `error-recovery`), or any command under
//!   `--codes wfstate`, speaks wfstate's table: 4, 6 and 7 are not retried
//!   (retrying cannot fix bad input, a refused permission or a full disk).
//!   Any other command (or `--codes any`) has codes of its own — curl's 6
//!   and 7 are its most common transient failures — so every non-zero exit
//!   is retried. `--no-retry-on` adds codes that are not retried;
//!   `--retry-on` retries only the codes it lists, whoever's they are. The
//!   two cannot be given together (exit 4): one names what is retried, the
//!   other what is not.
//! - Between attempts a line says what happened: on a terminal (stderr is
//!   a TTY) or with `--verbose`, `attempt 2/5 failed (exit 7); next in
//!   1.4 s`; otherwise the line it always printed, `attempt 2 of 5 exited
//!   7; retrying in 1.400s`.
//! - The wait after failed attempt n (0-based) is [`delay`]: with `full`
//!   jitter (the default, as AWS recommends) uniform in [0, cap], with
//!   `equal` in [cap/2, cap], with `none` exactly cap, where
//!   cap = min(max_delay, delay × multiplier^n). Randomness comes from
//!   /dev/urandom.
//! - Each attempt runs in its own process group with `WFSTATE_ATTEMPT` set
//!   (1, 2, …). When the deadline passes, the group gets SIGTERM, then
//!   SIGKILL after a grace period (2 s), so no child outlives the run. A wait
//!   that would end after the deadline is not started. SIGINT, SIGTERM,
//!   SIGHUP and SIGQUIT sent to `retry` are passed on to the child's group,
//!   and no further attempt is made.
//! - Every attempt is an audit event (`retry`, detail `attempt`,
//!   `child_exit`, `delay_ms` = the wait that follows it), and so is the
//!   outcome (detail `attempts`, `outcome`).
//!
//! Not guaranteed: a child in its own process group is not in the
//! terminal's foreground group, so it cannot read from the terminal; use
//! `--foreground` for interactive commands (then only the child itself, not
//! its children, is signalled at the deadline). A `retry` killed with
//! SIGKILL cannot stop its child.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{IsTerminal, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use serde_json::json;

use super::TOOL;
use crate::audit::Recorder;
use crate::child::{self, Running, exit_code, poll_until};
use crate::config::{Config, parse_duration};
use crate::error::{Error, Kind, Result};

/// How long a child has between SIGTERM and SIGKILL at the deadline.
pub const GRACE: Duration = child::GRACE;

/// Exit codes of wfstate's table that retrying cannot help: bad input,
/// refused permission, full disk.
pub const NOT_RETRIED: [i32; 3] = [4, 6, 7];

/// The file names of wfstate's own binaries, whose exit codes are its table.
pub const OUR_BINARIES: [&str; 3] = ["state-manager", "lock-manager", "error-recovery"];

/// Whose meanings the command's exit codes have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Codes {
    /// wfstate's when the command is one of its binaries, else any
    Auto,
    /// wfstate's table: 4, 6 and 7 are not retried (for a script that speaks it)
    Wfstate,
    /// The command's own: every non-zero exit is retried
    Any,
}

/// Which exit codes are retried, once the command is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    /// `--retry-on`: only these.
    Only(Vec<i32>),
    /// Every non-zero code except `except` (`--no-retry-on`) and, when
    /// `ours` says why wfstate's table applies, 4, 6 and 7.
    AllBut {
        ours: Option<&'static str>,
        except: Vec<i32>,
    },
}

impl Rule {
    /// The rule for `program` under these options: `--retry-on` wins, else
    /// `--codes`, else whether `program` is one of wfstate's binaries.
    pub fn of(opts: &Options, program: &OsStr) -> Rule {
        if let Some(only) = &opts.retry_on {
            return Rule::Only(only.clone());
        }
        let ours = match opts.codes {
            Codes::Wfstate => Some("--codes wfstate"),
            Codes::Any => None,
            Codes::Auto => is_ours(program, std::env::var_os("PATH").as_deref())
                .then_some("it is a wfstate binary"),
        };
        Rule::AllBut {
            ours,
            except: opts.no_retry_on.clone(),
        }
    }

    /// Whether exit `code` is retried.
    pub fn retries(&self, code: i32) -> bool {
        match self {
            Rule::Only(list) => list.contains(&code),
            Rule::AllBut { ours, except } => {
                code != 0
                    && !except.contains(&code)
                    && !(ours.is_some() && NOT_RETRIED.contains(&code))
            }
        }
    }

    /// Whose codes: `wfstate` or `any` (`--retry-on`: `listed`), for the audit log.
    pub fn codes(&self) -> &'static str {
        match self {
            Rule::Only(_) => "listed",
            Rule::AllBut { ours: Some(_), .. } => "wfstate",
            Rule::AllBut { ours: None, .. } => "any",
        }
    }

    /// Why exit `code` (not retried) is not retried, with what to do.
    pub fn why_not(&self, code: i32) -> String {
        match self {
            Rule::Only(_) => format!("it is not in --retry-on; add {code} to retry it"),
            Rule::AllBut { except, .. } if except.contains(&code) => {
                "it is in --no-retry-on".to_string()
            }
            Rule::AllBut { ours, .. } => {
                let name = crate::exit::Code::from_i32(code).map_or("?", |c| c.name());
                format!(
                    "exit {code} is {name} in wfstate's table ({}), which retrying cannot fix; pass --retry-on {code} to retry anyway",
                    ours.unwrap_or("--codes wfstate")
                )
            }
        }
    }
}

/// Whether `program` is one of wfstate's binaries: its file name, after
/// the lookup in `path` (when it names no folder) and with every symlink
/// resolved, is one of [`OUR_BINARIES`]. A copy or a link named after one
/// is judged by what it really is.
pub fn is_ours(program: &OsStr, path: Option<&OsStr>) -> bool {
    let Some(found) = locate(program, path) else {
        return false;
    };
    std::fs::canonicalize(&found)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_os_string()))
        .is_some_and(|n| OUR_BINARIES.iter().any(|b| n == OsStr::new(b)))
}

/// The file `program` runs, as execvp(3) finds it: as given when it names a
/// folder, else the first executable regular file of that name in `path`
/// (an empty entry is the current folder).
fn locate(program: &OsStr, path: Option<&OsStr>) -> Option<PathBuf> {
    if program.as_encoded_bytes().contains(&b'/') {
        return Some(PathBuf::from(program));
    }
    std::env::split_paths(path?)
        .map(|dir| {
            if dir.as_os_str().is_empty() {
                Path::new(".").join(program)
            } else {
                dir.join(program)
            }
        })
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// How the wait is randomized.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Jitter {
    /// Uniform in [0, cap] (AWS "full jitter").
    Full,
    /// Uniform in [cap/2, cap].
    Equal,
    /// Exactly cap.
    None,
}

/// The wait after failed attempt `n` (0-based), given `random` in [0, 1]:
/// see the module docs. Never more than `max`, never negative.
pub fn delay(
    n: u32,
    base: Duration,
    multiplier: f64,
    max: Duration,
    jitter: Jitter,
    random: f64,
) -> Duration {
    let base = base.as_secs_f64();
    let max = max.as_secs_f64();
    let grown = base * multiplier.powi(n.min(i32::MAX as u32) as i32);
    // base 0 × an overflowed multiplier is NaN: no growth, no wait.
    let cap = if base == 0.0 || grown.is_nan() {
        0.0
    } else {
        grown.min(max)
    };
    let r = if random.is_finite() {
        random.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let secs = match jitter {
        Jitter::Full => cap * r,
        Jitter::Equal => cap / 2.0 + cap / 2.0 * r,
        Jitter::None => cap,
    };
    Duration::from_secs_f64(secs.clamp(0.0, max))
}

/// The `retry` options, as given on the command line.
#[derive(Clone, Debug, clap::Args)]
pub struct RetryArgs {
    /// Attempts in all, at least 1
    #[arg(long, default_value = "3", value_name = "N")]
    pub attempts: u32,
    /// The first wait in seconds, before jitter
    #[arg(long, default_value = "1", value_name = "SECONDS")]
    pub delay: String,
    /// The longest wait in seconds
    #[arg(long, default_value = "60", value_name = "SECONDS")]
    pub max_delay: String,
    /// How much each wait grows, at least 1
    #[arg(long, default_value = "2", value_name = "FACTOR")]
    pub multiplier: f64,
    /// How waits are randomized
    #[arg(long, value_enum, default_value = "full")]
    pub jitter: Jitter,
    /// Retry only on these exit codes, e.g. 1,2,4 or 1-3,75
    #[arg(long, value_name = "CODES")]
    pub retry_on: Option<String>,
    /// Never retry these exit codes, e.g. 6 or 2,64-78 (not with --retry-on)
    #[arg(long, value_name = "CODES")]
    pub no_retry_on: Option<String>,
    /// Whose exit codes the command returns: wfstate's table (4, 6, 7 are
    /// not retried) or its own (every non-zero exit is retried); auto:
    /// wfstate's when the command is state-manager, lock-manager or
    /// error-recovery (after PATH lookup, symlinks resolved)
    #[arg(long, value_enum, default_value = "auto", value_name = "WHOSE")]
    pub codes: Codes,
    /// Say after each failed attempt what happened and when the next one
    /// starts, also when stderr is not a terminal
    #[arg(short, long)]
    pub verbose: bool,
    /// Give up after this many seconds in all: exit 9, the child terminated
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<String>,
    /// Keep the child in this process group (it may read the terminal; only
    /// the child itself is signalled at the deadline)
    #[arg(long)]
    pub foreground: bool,
    /// The command and its arguments (put `--` before it)
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<OsString>,
}

/// Checked `retry` options.
#[derive(Clone, Debug)]
pub struct Options {
    pub attempts: u32,
    pub delay: Duration,
    pub max_delay: Duration,
    pub multiplier: f64,
    pub jitter: Jitter,
    pub retry_on: Option<Vec<i32>>,
    pub no_retry_on: Vec<i32>,
    pub codes: Codes,
    pub timeout: Option<Duration>,
    pub foreground: bool,
    pub verbose: bool,
}

impl RetryArgs {
    /// Checks the options (exit 4 for a bad one).
    pub fn options(&self) -> Result<Options> {
        if self.attempts == 0 {
            return Err(Error::validation("--attempts must be at least 1")
                .hint("give the number of attempts in all, e.g. --attempts 3"));
        }
        if !self.multiplier.is_finite() || self.multiplier < 1.0 {
            return Err(
                Error::validation(format!("bad --multiplier '{}'", self.multiplier))
                    .hint("give a factor of 1 or more, e.g. 2"),
            );
        }
        if self.retry_on.is_some() && self.no_retry_on.is_some() {
            return Err(Error::validation(
                "--retry-on and --no-retry-on cannot be given together",
            )
            .hint("use --retry-on for the only codes to retry, or --no-retry-on for the codes not to retry"));
        }
        Ok(Options {
            attempts: self.attempts,
            delay: parse_duration(&self.delay, "--delay")?,
            max_delay: parse_duration(&self.max_delay, "--max-delay")?,
            multiplier: self.multiplier,
            jitter: self.jitter,
            retry_on: self
                .retry_on
                .as_deref()
                .map(|t| parse_codes(t, "--retry-on"))
                .transpose()?,
            no_retry_on: self
                .no_retry_on
                .as_deref()
                .map(|t| parse_codes(t, "--no-retry-on"))
                .transpose()?
                .unwrap_or_default(),
            codes: self.codes,
            timeout: self
                .timeout
                .as_deref()
                .map(|t| parse_duration(t, "--timeout"))
                .transpose()?,
            foreground: self.foreground,
            verbose: self.verbose,
        })
    }
}

/// Parses `1,2,4` or `1-3,75` (the value of option `what`) into exit codes
/// 1–255 (exit 4 otherwise).
pub fn parse_codes(text: &str, what: &str) -> Result<Vec<i32>> {
    let bad = || {
        Error::validation(format!("bad {what} '{text}'"))
            .hint("list exit codes 1-255 separated by commas, ranges allowed: 1,2,4-6")
    };
    let code = |s: &str| -> Result<i32> {
        match s.trim().parse::<i32>() {
            Ok(n) if (1..=255).contains(&n) => Ok(n),
            _ => Err(bad()),
        }
    };
    let mut out = Vec::new();
    for part in text.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (code(a)?, code(b)?);
                if a > b {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(code(part)?),
        }
    }
    Ok(out)
}

/// Random numbers in [0, 1] from /dev/urandom (falling back to the clock,
/// which is enough to spread retries apart).
struct Random(Option<File>);

impl Random {
    fn open() -> Random {
        Random(File::open("/dev/urandom").ok())
    }

    fn next(&mut self) -> f64 {
        let mut buf = [0u8; 8];
        let bits = match self.0.as_mut().map(|f| f.read_exact(&mut buf)) {
            Some(Ok(())) => u64::from_le_bytes(buf),
            _ => {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                (t.subsec_nanos() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    ^ std::process::id() as u64
            }
        };
        (bits >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What ended a wait.
enum Waited {
    Exited(ExitStatus),
    Signal(i32),
    Deadline,
}

/// Waits until `child` exits, a signal arrives or `deadline` passes.
fn wait(
    child: &mut Running,
    signals: &signals::Forwarder,
    deadline: Option<Instant>,
) -> Result<Waited> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Waited::Exited(status));
        }
        if let Some(sig) = signals.take() {
            return Ok(Waited::Signal(sig));
        }
        match poll_until(&[child.pidfd(), signals.fd()], deadline)? {
            true => continue,
            false => return Ok(Waited::Deadline),
        }
    }
}

/// How a run ended, for the final audit event.
struct Outcome {
    code: i32,
    outcome: &'static str,
    attempts: u32,
    /// [`Rule::codes`].
    codes: &'static str,
}

/// `retry [OPTIONS] -- CMD [ARGS...]`: returns the exit status to exit with.
pub fn run(cfg: &Config, args: &RetryArgs) -> Result<u8> {
    let opts = args.options()?;
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| Error::validation("no command given").hint("put it after --"))?;
    let target = program.to_string_lossy().into_owned();
    let rec = Recorder::start(cfg, TOOL, "retry", target.as_str());
    let result = run_attempts(cfg, &opts, program, rest, &target);
    match &result {
        Ok(o) => rec.finish_with(
            o.code,
            if o.code == 0 { "ok" } else { "error" },
            json!({ "attempts": o.attempts, "outcome": o.outcome, "codes": o.codes }),
        ),
        Err(e) => {
            let outcome = if e.kind() == Kind::DependencyMissing {
                "not-found"
            } else {
                "error"
            };
            rec.finish(&result, json!({ "outcome": outcome }));
        }
    }
    result.map(|o| o.code.clamp(0, 255) as u8)
}

fn run_attempts(
    cfg: &Config,
    opts: &Options,
    program: &OsString,
    rest: &[OsString],
    target: &str,
) -> Result<Outcome> {
    let started = Instant::now();
    let deadline = opts.timeout.map(|t| started + t);
    let signals = signals::Forwarder::install(opts.foreground)?;
    if !opts.foreground {
        // Orphans of the child's group become our children, so at the
        // deadline they can be reaped and counted as gone (see wait_group).
        let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
    }
    let mut random = Random::open();
    let rule = Rule::of(opts, program);
    let codes = rule.codes();
    // The friendly line between attempts is for a person watching.
    let feedback = opts.verbose || std::io::stderr().is_terminal();
    crate::debug::log(|| format!("retry: codes {codes}: {rule:?}"));
    let mut attempt = 0;
    loop {
        attempt += 1;
        let rec = Recorder::start(cfg, TOOL, "retry", target);
        let mut cmd = Command::new(program);
        cmd.args(rest).env("WFSTATE_ATTEMPT", attempt.to_string());
        let mut running = match Running::spawn(&mut cmd, !opts.foreground) {
            Ok(r) => r,
            Err(e) => {
                let failed: Result<Outcome> = Err(child::not_found_hint(
                    e,
                    "check the command's name and PATH",
                ));
                rec.finish(
                    &failed,
                    json!({ "attempt": attempt, "child_exit": null, "delay_ms": 0 }),
                );
                return failed;
            }
        };
        crate::debug::log(|| {
            format!(
                "retry: attempt {attempt} of {}: pid {}",
                opts.attempts,
                running.id()
            )
        });
        let code = match wait(&mut running, &signals, deadline)? {
            Waited::Exited(status) => exit_code(status),
            Waited::Signal(sig) => {
                // Pass it on, then let the child decide how to end.
                running.signal(signals::as_signal(sig));
                let code = loop {
                    match wait(&mut running, &signals, deadline)? {
                        Waited::Exited(status) => break exit_code(status),
                        Waited::Signal(again) => running.signal(signals::as_signal(again)),
                        Waited::Deadline => break exit_code(running.terminate()?),
                    }
                };
                let code = if code == 0 { 128 + sig } else { code };
                finish_attempt(rec, attempt, code, 0.0);
                eprintln!("{TOOL}: interrupted by signal {sig}; not retrying");
                return Ok(Outcome {
                    code,
                    outcome: "interrupted",
                    attempts: attempt,
                    codes,
                });
            }
            Waited::Deadline => {
                let status = running.terminate()?;
                finish_attempt(rec, attempt, exit_code(status), 0.0);
                eprintln!(
                    "{TOOL}: timed out after {:.1}s (attempt {attempt} of {}); the command was terminated",
                    started.elapsed().as_secs_f64(),
                    opts.attempts
                );
                return Ok(Outcome {
                    code: 9,
                    outcome: "timeout",
                    attempts: attempt,
                    codes,
                });
            }
        };
        if code == 0 {
            finish_attempt(rec, attempt, 0, 0.0);
            return Ok(Outcome {
                code: 0,
                outcome: "success",
                attempts: attempt,
                codes,
            });
        }
        if !rule.retries(code) {
            finish_attempt(rec, attempt, code, 0.0);
            eprintln!(
                "{TOOL}: {target} exited {code}; not retried: {}",
                rule.why_not(code)
            );
            return Ok(Outcome {
                code,
                outcome: "not-retried",
                attempts: attempt,
                codes,
            });
        }
        if attempt >= opts.attempts {
            finish_attempt(rec, attempt, code, 0.0);
            eprintln!("{TOOL}: {target} failed {attempt} attempt(s); the last exited {code}");
            return Ok(Outcome {
                code,
                outcome: "exhausted",
                attempts: attempt,
                codes,
            });
        }
        let wait = delay(
            attempt - 1,
            opts.delay,
            opts.multiplier,
            opts.max_delay,
            opts.jitter,
            random.next(),
        );
        if deadline.is_some_and(|d| Instant::now() + wait >= d) {
            finish_attempt(rec, attempt, code, 0.0);
            eprintln!(
                "{TOOL}: timed out: attempt {attempt} exited {code} and the next would start after the --timeout deadline"
            );
            return Ok(Outcome {
                code: 9,
                outcome: "timeout",
                attempts: attempt,
                codes,
            });
        }
        finish_attempt(rec, attempt, code, crate::audit::event::ms(wait));
        if feedback {
            eprintln!(
                "{TOOL}: attempt {attempt}/{} failed (exit {code}); next in {}",
                opts.attempts,
                seconds(wait)
            );
        } else {
            eprintln!(
                "{TOOL}: attempt {attempt} of {} exited {code}; retrying in {:.3}s",
                opts.attempts,
                wait.as_secs_f64()
            );
        }
        if poll_until(&[signals.fd()], Some(Instant::now() + wait))?
            && let Some(sig) = signals.take()
        {
            eprintln!("{TOOL}: interrupted by signal {sig}; not retrying");
            return Ok(Outcome {
                code: 128 + sig,
                outcome: "interrupted",
                attempts: attempt,
                codes,
            });
        }
    }
}

/// A wait for a person to read: `0.25 s`, `1.4 s`, `42 s`.
fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 10.0 {
        format!("{s:.0} s")
    } else if s >= 1.0 {
        format!("{s:.1} s")
    } else {
        format!("{s:.2} s")
    }
}

fn finish_attempt(rec: Recorder<'_>, attempt: u32, code: i32, delay_ms: f64) {
    crate::debug::log(|| {
        format!("retry: attempt {attempt} exited {code}; next wait {delay_ms:.3}ms")
    });
    rec.finish_with(
        code,
        if code == 0 { "ok" } else { "error" },
        json!({ "attempt": attempt, "child_exit": code, "delay_ms": delay_ms }),
    );
}

/// Passing signals sent to `retry` on to the child: a handler writes the
/// signal number to a self-pipe that the waits poll, so no signal is lost
/// between checks. rustix has no sigaction, hence libc here.
mod signals {
    use std::io::{PipeReader, PipeWriter};
    use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
    use std::sync::atomic::{AtomicI32, Ordering};

    use rustix::process::Signal;

    use crate::error::{Error, Kind, Result};

    static PIPE: AtomicI32 = AtomicI32::new(-1);

    extern "C" fn on_signal(sig: libc::c_int) {
        let fd = PIPE.load(Ordering::Relaxed);
        if fd >= 0 {
            let b = sig as u8;
            // SAFETY: write(2) is async-signal-safe; the pipe is non-blocking,
            // so a full pipe drops the byte instead of hanging.
            unsafe {
                libc::write(fd, (&b as *const u8).cast(), 1);
            }
        }
    }

    /// The installed handlers and their pipe.
    pub struct Forwarder {
        rd: PipeReader,
        _wr: PipeWriter,
    }

    impl Forwarder {
        /// Catches SIGTERM and SIGHUP, and SIGINT and SIGQUIT unless
        /// `foreground` (then the terminal already sends those to the child).
        /// Signals the caller ignores stay ignored.
        pub fn install(foreground: bool) -> Result<Forwarder> {
            let (rd, wr) = std::io::pipe()
                .map_err(|e| Error::new(Kind::of_io(&e), "cannot create a pipe").because(e))?;
            for fd in [rd.as_fd(), wr.as_fd()] {
                let _ = rustix::fs::fcntl_setfl(fd, rustix::fs::OFlags::NONBLOCK);
            }
            PIPE.store(wr.as_raw_fd(), Ordering::Relaxed);
            let mut sigs = vec![libc::SIGTERM, libc::SIGHUP];
            if !foreground {
                sigs.extend([libc::SIGINT, libc::SIGQUIT]);
            }
            for sig in sigs {
                // SAFETY: a zeroed sigaction is valid; the handler only calls
                // write(2) and reads an atomic.
                unsafe {
                    let mut old: libc::sigaction = std::mem::zeroed();
                    libc::sigaction(sig, std::ptr::null(), &mut old);
                    if old.sa_sigaction == libc::SIG_IGN {
                        continue;
                    }
                    let mut act: libc::sigaction = std::mem::zeroed();
                    act.sa_sigaction = on_signal as *const () as libc::sighandler_t;
                    act.sa_flags = libc::SA_RESTART;
                    libc::sigemptyset(&mut act.sa_mask);
                    libc::sigaction(sig, &act, std::ptr::null_mut());
                }
            }
            Ok(Forwarder { rd, _wr: wr })
        }

        /// The pipe to poll.
        pub fn fd(&self) -> BorrowedFd<'_> {
            self.rd.as_fd()
        }

        /// A signal received since the last call, if any.
        pub fn take(&self) -> Option<i32> {
            let mut b = [0u8; 1];
            match rustix::io::read(&self.rd, &mut b) {
                Ok(1) => Some(b[0] as i32),
                _ => None,
            }
        }
    }

    /// The rustix signal for a number caught by [`Forwarder`].
    pub fn as_signal(sig: i32) -> Signal {
        match sig {
            libc::SIGINT => Signal::INT,
            libc::SIGHUP => Signal::HUP,
            libc::SIGQUIT => Signal::QUIT,
            _ => Signal::TERM,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_within_their_bounds() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        let mut rng = Random::open();
        for n in 0..80 {
            let cap = (0.1 * 2f64.powi(n as i32)).min(5.0);
            for _ in 0..50 {
                let r = rng.next();
                assert!((0.0..=1.0).contains(&r));
                let full = delay(n, base, 2.0, max, Jitter::Full, r).as_secs_f64();
                assert!((0.0..=cap + 1e-9).contains(&full), "full {n} {full}");
                let eq = delay(n, base, 2.0, max, Jitter::Equal, r).as_secs_f64();
                assert!(
                    (cap / 2.0 - 1e-9..=cap + 1e-9).contains(&eq),
                    "equal {n} {eq}"
                );
            }
            let none = delay(n, base, 2.0, max, Jitter::None, 0.3).as_secs_f64();
            assert!((none - cap).abs() < 1e-6, "none {n} {none} {cap}");
        }
        // Overflow, zero base and nonsense randomness stay in range.
        assert_eq!(delay(u32::MAX, base, 1e300, max, Jitter::None, 0.5), max);
        assert_eq!(
            delay(5000, Duration::ZERO, 2.0, max, Jitter::None, 0.5),
            Duration::ZERO
        );
        assert!(delay(3, base, 2.0, max, Jitter::Full, f64::NAN) <= max);
        assert!(delay(3, base, 2.0, max, Jitter::Full, 7.0) <= max);
    }

    #[test]
    fn codes_parse_with_ranges() {
        assert_eq!(parse_codes("1,2,4-6", "x").unwrap(), vec![1, 2, 4, 5, 6]);
        assert_eq!(parse_codes("75", "x").unwrap(), vec![75]);
        for bad in ["", "0", "256", "a", "3-1", "1,,2"] {
            assert!(parse_codes(bad, "x").is_err(), "{bad}");
        }
    }

    #[test]
    fn four_six_and_seven_are_not_retried_only_under_wfstate_s_table() {
        let ours = Rule::AllBut {
            ours: Some("--codes wfstate"),
            except: vec![],
        };
        let any = Rule::AllBut {
            ours: None,
            except: vec![],
        };
        for c in [1, 2, 3, 5, 9, 137] {
            assert!(ours.retries(c), "{c}");
            assert!(any.retries(c), "{c}");
        }
        for c in [4, 6, 7] {
            assert!(!ours.retries(c), "{c}");
            assert!(any.retries(c), "{c}");
        }
        assert!(!ours.retries(0) && !any.retries(0));
        let except = Rule::AllBut {
            ours: None,
            except: vec![6, 9],
        };
        assert!(!except.retries(6) && !except.retries(9) && except.retries(7));
        assert!(Rule::Only(vec![4]).retries(4));
        assert!(!Rule::Only(vec![4]).retries(1));
    }

    #[test]
    fn our_binaries_are_known_by_their_real_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let exe = |name: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            p
        };
        let real = exe("state-manager");
        let other = exe("curl");
        std::os::unix::fs::symlink(&real, dir.path().join("sm")).unwrap();
        std::os::unix::fs::symlink(&other, dir.path().join("lock-manager")).unwrap();
        let path = Some(dir.path().as_os_str());
        assert!(is_ours(OsStr::new("state-manager"), path));
        assert!(is_ours(OsStr::new("sm"), path), "a link to one is one");
        assert!(is_ours(real.as_os_str(), None));
        assert!(
            !is_ours(OsStr::new("lock-manager"), path),
            "a link named like one is not"
        );
        assert!(!is_ours(OsStr::new("curl"), path));
        assert!(!is_ours(OsStr::new("state-manager"), None));
        assert!(!is_ours(OsStr::new("no-such"), path));
    }
}
