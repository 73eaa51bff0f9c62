//! The command layer: the clap definitions of the three binaries (and the
//! hook), the subcommand functions that print and audit, and what they share
//! — [`Ctx`], [`Output`], parsing, exit statuses.
//!
//! Parsing keeps the toolkit's exit codes (usage errors are 1, not clap's 2,
//! which would read as LOCK_TIMEOUT) and accepts the global options before
//! *and* after the subcommand: [`hoist_globals`] moves those found after it
//! to the front in one pass over argv, so clap never propagates them (which
//! cost a quarter of a call's instructions). Errors are printed once, as
//! `tool: what failed: why — what to do`, and under `--json` also as a JSON
//! object on stdout. A closed stdout (`| head`) is not a failure.
//!
//! Domain modules (`state`, `lock`, `recovery`, `audit`, `hooks`) do not
//! print and do not import this module: they return values, and the
//! functions here render them.

use std::ffi::{OsStr, OsString};
use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};

use crate::audit::Recorder;
use crate::backend::{self, Backend};
use crate::config::{Config, GlobalArgs};
use crate::error::{Error, Result};
use crate::exit::Code;
use crate::lock::Identity;
use crate::state::Store;
use crate::state::backup::Retention;

/// Declares a binary's parser, `pub struct Cli { global, command }`: the
/// global options, the subcommands `$command` (none: the binary's default),
/// and what all three share — the name, `--version`, usage errors exit 1
/// (see [`parse`]), a repeated option keeps its last value, and `--help`
/// ends with the exit-code table. Doc comments before the name become the
/// binary's about text.
macro_rules! binary_cli {
    ($(#[$doc:meta])* $name:literal, $command:ty) => {
        $(#[$doc])*
        #[derive(clap::Parser)]
        #[command(
            name = $name,
            after_help = crate::exit::HELP_TABLE,
            version,
            max_term_width = 100,
            args_override_self = true
        )]
        pub struct Cli {
            #[command(flatten)]
            global: crate::config::GlobalArgs,

            #[command(subcommand)]
            command: Option<$command>,
        }

        impl crate::cmd::LightCli for Cli {
            fn top() -> clap::Command {
                // What the derive's top level parses (not its help: see `parse_with`).
                <crate::config::GlobalArgs as clap::Args>::augment_args(
                    clap::Command::new($name)
                        .version(env!("CARGO_PKG_VERSION"))
                        .args_override_self(true),
                )
            }
        }
    };
}

/// The top level of a binary's parser alone — its global options,
/// `--version` and no subcommand — for [`parse_with`]'s light parse.
/// [`binary_cli!`] implements it.
pub trait LightCli {
    fn top() -> clap::Command;
}

/// The parser of one subcommand by name, alone (`read`: its arguments), or
/// None when the binary does not build that one alone: see [`parse_with`].
pub type OneSubcommand = fn(&str) -> Option<clap::Command>;
pub(crate) use binary_cli;

pub mod audit;
pub mod docs;
pub mod error_recovery;
pub mod lock;
pub mod lock_manager;
pub mod recovery;
pub mod state;
pub mod state_manager;
pub mod table;

/// What every subcommand of every binary needs.
pub struct Ctx {
    /// The binary's name, in messages and audit events.
    pub tool: &'static str,
    pub cfg: Config,
    /// Backup retention for the state commits this call makes.
    pub retention: Retention,
    /// `--owner`: the lock owner this invocation acts for.
    pub owner: Option<u32>,
    /// Where the state, locks, checkpoints and audit live.
    pub backend: Box<dyn Backend>,
    /// How to print.
    pub output: Output,
}

impl Ctx {
    /// The context the global options describe (`--state-file`, `--owner`,
    /// `--backend`, retention, `--debug`, `--no-color`, ...). Turns debug
    /// lines on when asked.
    pub fn new(tool: &'static str, global: &GlobalArgs) -> Result<Ctx> {
        let cfg = global.config()?;
        if cfg.debug {
            crate::debug::enable(tool);
        }
        let backend = backend::open(&cfg, global.backend.as_deref())?;
        crate::debug::log(|| {
            format!(
                "backend {} at {} ({}); audit log {}",
                backend.kind(),
                backend.location(),
                cfg.found_by.describe(),
                cfg.audit_log.display()
            )
        });
        Ok(Ctx {
            tool,
            retention: global.retention()?,
            owner: global.owner,
            output: Output {
                color: !global.no_color,
                no_header: global.no_header,
                ..Output::default()
            },
            backend,
            cfg,
        })
    }

    /// The file store of the state (the file backend's own view; commands
    /// that work on any backend go through [`Ctx::backend`]).
    /// Exit 5 on another backend: the command has no implementation there.
    pub fn store(&self) -> Result<Store<'_>> {
        self.file_only()?;
        Store::open(&self.cfg, self.retention)
    }

    /// Exit 5 unless the backend is the file backend: for the commands that
    /// work on the state file itself.
    pub fn file_only(&self) -> Result<()> {
        if self.backend.kind() == "file" {
            return Ok(());
        }
        Err(Error::new(
            crate::error::Kind::DependencyMissing,
            format!(
                "this command works on the file backend only, not on {}",
                self.backend.location()
            ),
        )
        .hint("see docs/redis.md for what the Redis backend does; 'state-manager export' then work on a copy, or unset WFSTATE_BACKEND"))
    }

    /// The owner for the `state` lock: `--owner`, `LOCK_OWNER_PID`, else the
    /// calling shell. A caller that has already exited owns nothing.
    pub fn owner_identity(&self) -> Result<Option<Identity>> {
        crate::lock::process::caller(self.owner)
    }

    /// Who asks, for a backend operation that takes the `state` lock.
    pub fn access<'a>(&self, owner: Option<&'a Identity>) -> backend::Access<'a> {
        backend::Access {
            owner,
            retention: self.retention,
        }
    }

    /// The state file as configured (on Redis: the server and namespace),
    /// the audit target of state operations.
    pub fn state_target(&self) -> String {
        match self.backend.kind() {
            "file" => self.cfg.state_file.display().to_string(),
            _ => self.backend.location(),
        }
    }

    /// Where checkpoints are, as messages and audit events name them.
    pub fn checkpoints_target(&self) -> String {
        match self.backend.kind() {
            "file" => self.cfg.checkpoints_dir().display().to_string(),
            _ => format!("{} checkpoints", self.backend.location()),
        }
    }

    /// Runs `f` as operation `op` on `target`, recording one audit event.
    pub fn audited<T>(
        &self,
        op: &str,
        target: impl Into<String>,
        f: impl FnOnce(&mut Value) -> Result<T>,
    ) -> Result<T> {
        let rec = Recorder::start(&self.cfg, self.tool, op, target);
        let mut detail = json!({});
        let result = f(&mut detail);
        rec.finish(&result, detail);
        result
    }

    /// Sets how this call prints its data (`--json`, `-c`, `--jsonl`).
    pub fn with_output(mut self, args: &JsonArgs) -> Ctx {
        self.output = Output {
            color: self.output.color,
            no_header: self.output.no_header,
            ..Output::of(args)
        };
        self
    }

    /// Prints a typed report as one JSON value (`--json`; `-c` on one line).
    pub fn print_json(&self, value: &impl serde::Serialize) {
        self.output
            .json(&serde_json::to_value(value).expect("reports serialize"));
    }
}

/// `--json` and `-c/--compact`, for every command that prints data.
#[derive(Clone, Copy, Debug, Default, clap::Args)]
pub struct JsonArgs {
    /// Print one JSON value
    #[arg(long)]
    pub json: bool,
    /// With --json: on one line
    #[arg(short = 'c', long)]
    pub compact: bool,
    /// One JSON object per line (streams and listings)
    #[arg(skip)]
    pub jsonl: bool,
}

/// `--json`, `-c/--compact` and `--jsonl`, for event streams and listings.
#[derive(Clone, Copy, Debug, Default, clap::Args)]
pub struct StreamArgs {
    /// Print one JSON array
    #[arg(long)]
    pub json: bool,
    /// With --json: on one line
    #[arg(short = 'c', long)]
    pub compact: bool,
    /// Print one JSON object per line
    #[arg(long, conflicts_with = "json")]
    pub jsonl: bool,
}

impl From<StreamArgs> for JsonArgs {
    fn from(a: StreamArgs) -> JsonArgs {
        JsonArgs {
            json: a.json,
            compact: a.compact,
            jsonl: a.jsonl,
        }
    }
}

/// How a call prints: human text, one JSON value, or JSON Lines; colour.
#[derive(Clone, Copy, Debug, Default)]
pub struct Output {
    /// `--json` (or `--jsonl`): data as JSON, failures also as a JSON object on stdout.
    pub json: bool,
    /// `-c/--compact`: JSON on one line.
    pub compact: bool,
    /// `--jsonl`: one object per line.
    pub jsonl: bool,
    /// ANSI colour unless `--no-color`; [`Output::paint`] also asks that
    /// stdout be a terminal and `NO_COLOR` unset, the first time it paints
    /// (a call that prints no colour never checks).
    pub color: bool,
    /// `--no-header`: tables without their header line. Every table's header
    /// is single words (NAME, TYPE, PID, ...), so `awk '{print $1}'` and
    /// `cut` see one column per word either way.
    pub no_header: bool,
}

/// Colours for human output.
#[derive(Clone, Copy, Debug)]
pub enum Paint {
    Good,
    Warn,
    Bad,
    Dim,
}

impl Output {
    /// What `--json`, `-c` and `--jsonl` ask for (no colour).
    pub fn of(args: &JsonArgs) -> Output {
        Output {
            json: args.json || args.jsonl,
            compact: args.compact,
            jsonl: args.jsonl,
            color: false,
            no_header: false,
        }
    }

    /// The output a command line asks for, read from argv before (or
    /// without) a [`Ctx`]: how a failure is printed when parsing the
    /// settings fails.
    pub fn from_args(args: impl IntoIterator<Item = OsString>) -> Output {
        let args: Vec<OsString> = args.into_iter().collect();
        Output {
            json: wants_json(&args),
            compact: args
                .iter()
                .take_while(|a| *a != "--")
                .any(|a| a == "-c" || a == "--compact"),
            jsonl: args
                .iter()
                .take_while(|a| *a != "--")
                .any(|a| a == "--jsonl"),
            color: false,
            no_header: false,
        }
    }

    /// Whether colour may be used: never with `--no-color` or a non-empty
    /// `NO_COLOR` (no-color.org), never when stdout is not a terminal.
    pub fn color_allowed(no_color_flag: bool) -> bool {
        !no_color_flag
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            && io::stdout().is_terminal()
    }

    /// `text` in colour `p` when colour is on, else as it is.
    pub fn paint(&self, text: &str, p: Paint) -> String {
        static ALLOWED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if !self.color || !*ALLOWED.get_or_init(|| Output::color_allowed(false)) {
            return text.to_string();
        }
        let code = match p {
            Paint::Good => "32",
            Paint::Warn => "33",
            Paint::Bad => "31",
            Paint::Dim => "2",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }

    /// Prints one JSON value: pretty, or on one line with `-c`.
    pub fn json(&self, value: &Value) {
        println(&self.render(value));
    }

    /// A listing: a JSON array, or with `--jsonl` one line per item.
    pub fn list(&self, items: &[Value]) {
        if self.jsonl {
            let mut text = String::new();
            for item in items {
                text.push_str(&serde_json::to_string(item).expect("JSON values always serialize"));
                text.push('\n');
            }
            print(&text);
        } else {
            self.json(&Value::Array(items.to_vec()));
        }
    }

    /// One event of a stream, as one line (`--jsonl`, `monitor`).
    pub fn line(&self, item: &Value) {
        println(&serde_json::to_string(item).expect("JSON values always serialize"));
    }

    fn render(&self, value: &Value) -> String {
        if self.compact {
            serde_json::to_string(value)
        } else {
            serde_json::to_string_pretty(value)
        }
        .expect("JSON values always serialize")
    }
}

/// The global options that take a value, as `--name` (also `--name=V`).
const GLOBAL_VALUED: &[&str] = &[
    "--state-file",
    "--audit-log",
    "--lock-timeout",
    "--owner",
    "--backend",
    "--keep-backups",
    "--backup-max-age",
];
/// The global flags.
const GLOBAL_FLAGS: &[&str] = &["--debug", "--no-color", "--no-header"];

/// The command line of a subcommand that runs a command (`run NAME CMD…`,
/// `retry CMD…`): how many positionals come before the command, and which of
/// its own options take a value (so that value is not taken for the command).
#[derive(Clone, Copy, Debug)]
pub struct RunsCommand {
    pub positionals: usize,
    pub valued: &'static [&'static str],
}

/// Moves the global options found after the subcommand to just before it,
/// so `state-manager read --state-file F` means `state-manager --state-file F
/// read`. One pass, no allocation beyond the new vector. Nothing is moved
/// from after `--`, nor from the command line of a subcommand that runs a
/// command (`runs_command(sub)` describes its command line: `run NAME CMD…`
/// has 1 positional) — those belong to the command.
pub fn hoist_globals(
    args: Vec<OsString>,
    runs_command: impl Fn(&str) -> Option<RunsCommand>,
) -> Vec<OsString> {
    let Some(sub) = subcommand_at(&args) else {
        return args;
    };
    let limit = args[sub].to_str().and_then(&runs_command);
    let mut front: Vec<OsString> = Vec::new();
    let mut rest: Vec<OsString> = Vec::with_capacity(args.len() - sub);
    let mut positionals = 0;
    let mut j = sub;
    let mut tail_from = args.len();
    while j < args.len() {
        let a = &args[j];
        if j == sub {
            rest.push(a.clone());
            j += 1;
            continue;
        }
        if a == "--"
            || limit.is_some_and(|r| {
                positionals >= r.positionals && !a.as_encoded_bytes().starts_with(b"-")
            })
        {
            tail_from = j;
            break;
        }
        if is_global(a) && !(takes_value(a) && j + 1 >= args.len()) {
            // (A valued one with nothing after it stays, for clap to say so.)
            let n = if takes_value(a) { 2 } else { 1 };
            front.extend(args[j..(j + n).min(args.len())].iter().cloned());
            j += n;
            continue;
        }
        if limit.is_some_and(|r| r.valued.iter().any(|v| takes_next(a, v))) {
            // The subcommand's own option and its value (`--timeout 5`).
            rest.extend(args[j..(j + 2).min(args.len())].iter().cloned());
            j += 2;
            continue;
        }
        if !a.as_encoded_bytes().starts_with(b"-") {
            // Nested subcommands (`audit recent`) count as positionals too:
            // that only makes `runs_command` stop earlier, never later.
            positionals += 1;
        }
        rest.push(a.clone());
        j += 1;
    }
    if front.is_empty() {
        return args;
    }
    let mut out = Vec::with_capacity(args.len());
    out.extend(args[..sub].iter().cloned());
    out.extend(front);
    out.extend(rest);
    out.extend(args[tail_from..].iter().cloned());
    out
}

/// Where the subcommand is in `args`: the first token after the program that
/// is not a global option or its value (none before `--` or the end).
fn subcommand_at(args: &[OsString]) -> Option<usize> {
    let mut i = 1;
    while i < args.len() {
        let a = args[i].as_encoded_bytes();
        if a == b"--" || !a.starts_with(b"-") {
            break;
        }
        i += if takes_value(&args[i]) { 2 } else { 1 };
    }
    (i < args.len() && args[i] != "--").then_some(i)
}

/// Whether token `a` is the subcommand's valued option `v` waiting for its
/// value in the next token: `--timeout`, `-w`, or `-w` ending a bundle of
/// short flags (`-sw`).
fn takes_next(a: &OsStr, v: &str) -> bool {
    let (a, v) = (a.as_encoded_bytes(), v.as_bytes());
    if a == v {
        return true;
    }
    v.len() == 2
        && v[0] == b'-'
        && a.len() > 2
        && a[0] == b'-'
        && a[1] != b'-'
        && a[1..].iter().all(u8::is_ascii_alphabetic)
        && a.last() == v.last()
}

fn flag_name(a: &OsStr) -> &[u8] {
    let b = a.as_encoded_bytes();
    match b.iter().position(|&c| c == b'=') {
        Some(eq) => &b[..eq],
        None => b,
    }
}

fn is_global(a: &OsStr) -> bool {
    let name = flag_name(a);
    GLOBAL_VALUED
        .iter()
        .chain(GLOBAL_FLAGS)
        .any(|g| g.as_bytes() == name)
}

/// Whether `a` is a valued global option given without `=VALUE`.
fn takes_value(a: &OsStr) -> bool {
    let b = a.as_encoded_bytes();
    !b.contains(&b'=') && GLOBAL_VALUED.iter().any(|g| g.as_bytes() == b)
}

/// Parses the command line, global options before or after the subcommand;
/// on `--help`/`--version` prints and returns `Err(Success)`, on a usage
/// error prints it and returns `Err(GeneralError)`.
pub fn parse<C: clap::Parser + LightCli>(
    runs_command: impl Fn(&str) -> Option<RunsCommand>,
) -> std::result::Result<C, Code> {
    parse_with(runs_command, |_| None)
}

/// [`parse`], first with a light parser: the top level ([`LightCli::top`])
/// and, when the command line names a subcommand, that one alone from
/// `one_subcommand`. Building clap's tree of every subcommand, only to use
/// one, was a third of a short call's instructions.
///
/// The light parse decides only what it decides as the whole tree would: a
/// command line it accepts (the same arguments, so the same values), and
/// `--version`. Anything else — help, `help SUB`, completions, man pages, a
/// usage error with its suggestions — is parsed again by the whole tree,
/// which prints exactly what it always did.
pub fn parse_with<C: clap::Parser + LightCli>(
    runs_command: impl Fn(&str) -> Option<RunsCommand>,
    one_subcommand: OneSubcommand,
) -> std::result::Result<C, Code> {
    let args = hoist_globals(std::env::args_os().collect(), runs_command);
    let light = match subcommand_at(&args) {
        None => Some(C::top()),
        Some(i) => args[i]
            .to_str()
            .and_then(one_subcommand)
            .map(|sub| C::top().subcommand(sub)),
    };
    if let Some(mut cmd) = light {
        match cmd.try_get_matches_from_mut(&args) {
            Ok(mut m) => {
                if let Ok(c) = C::from_arg_matches_mut(&mut m) {
                    // Not freed, as below.
                    std::mem::forget(m);
                    std::mem::forget(cmd);
                    return Ok(c);
                }
            }
            Err(e) if e.kind() == clap::error::ErrorKind::DisplayVersion => {
                let _ = e.print();
                return Err(Code::Success);
            }
            Err(_) => {}
        }
    }
    // Clap's parser and matches live until the process exits: they are not
    // freed (dropping the tree of every subcommand cost more than parsing).
    let mut cmd = C::command();
    let parsed = cmd.try_get_matches_from_mut(&args).and_then(|mut m| {
        let c = C::from_arg_matches_mut(&mut m);
        std::mem::forget(m);
        c.map_err(|e| e.format(&mut cmd))
    });
    std::mem::forget(cmd);
    parsed.map_err(|e| {
        let _ = e.print();
        if !e.use_stderr() {
            return Code::Success;
        }
        let output = Output::from_args(args.iter().cloned());
        if output.json {
            // A usage error is a failure too: one object, as any other under --json.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            let message = first.strip_prefix("error: ").unwrap_or(first);
            let code = Code::GeneralError;
            let value =
                json!({"error": {"code": code.as_i32(), "name": code.name(), "message": message}});
            Output {
                compact: output.compact || output.jsonl,
                ..output
            }
            .json(&value);
        }
        Code::GeneralError
    })
}

/// Runs a binary's `main` in place of std's start-up, and exits with its
/// status: what each `src/bin/*.rs` C `main` calls (they are `#![no_main]`).
///
/// std's own start-up (`lang_start`) also sets up a guard for the main
/// thread's stack, which parses /proc/self/maps with sscanf: a sixth of a
/// short call's instructions, for a message on stack overflow (without it, an
/// overflow is a plain SIGSEGV). What else it did that matters here is
/// done the same way: standard descriptors 0–2 that are closed are opened on
/// /dev/null (else the first file we open, say a state temp file, would get
/// fd 1 and receive what we print), and SIGPIPE is ignored, so a closed
/// stdout is an `EPIPE` that [`print`] ignores rather than a kill (children
/// of `run` and `retry` get the default back, as std does for them). Command
/// line arguments need nothing: std reads them on glibc from `.init_array`.
/// The exit goes through [`std::process::exit`], which flushes stdout.
pub fn start(main: fn() -> ExitCode) -> ! {
    reopen_closed_standard_fds();
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let code = main();
    // `ExitCode` keeps its number private (`exit_process` is unstable): find it.
    let status = (0..=u8::MAX)
        .find(|&n| ExitCode::from(n) == code)
        .unwrap_or(1);
    std::process::exit(i32::from(status))
}

/// Opens /dev/null on each of fds 0, 1 and 2 that is closed, as std's
/// start-up does; aborts if it cannot (as std does: nothing is safe to open).
fn reopen_closed_standard_fds() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: `fds` is a valid array of 3 pollfd; a zero timeout never blocks.
    while unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) } == -1 {
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            // Too many descriptors or no memory for poll: ask each one.
            Some(libc::EINVAL | libc::EAGAIN | libc::ENOMEM) => {
                for fd in fds.iter_mut() {
                    // SAFETY: F_GETFD on any number is harmless.
                    let closed = unsafe { libc::fcntl(fd.fd, libc::F_GETFD) } == -1
                        && io::Error::last_os_error().raw_os_error() == Some(libc::EBADF);
                    fd.revents = if closed { libc::POLLNVAL } else { 0 };
                }
                break;
            }
            _ => std::process::abort(),
        }
    }
    for _ in fds.iter().filter(|fd| fd.revents & libc::POLLNVAL != 0) {
        // SAFETY: a NUL-terminated path. open returns the lowest free fd:
        // this one, since the lower ones are open or were just opened.
        if unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) } == -1 {
            std::process::abort();
        }
    }
}

/// Turns a subcommand's outcome into the process exit status, printing an
/// error once as `tool: what failed: why — what to do` on stderr, and under
/// `--json` also as `{"error": {"code", "name", "message"}}` on stdout.
pub fn finish(tool: &str, output: Output, result: Result<Code>) -> ExitCode {
    // An audit event that could not reach the backend's log went to the
    // local file: the operation is done, but its record is not where every
    // host reads it.
    let result = match (result, crate::audit::event::take_unreached()) {
        (Ok(_), Some(e)) => Err(Error::new(
            crate::error::Kind::Network,
            format!("the operation is done, but its audit event could not be written: {e}"),
        )
        .hint("the event is in the local audit file; check the server")),
        (result, _) => result,
    };
    match result {
        Ok(code) => code.into(),
        Err(e) => {
            eprintln!("{tool}: {e}");
            if output.json && !PRINTED.load(Ordering::Relaxed) {
                // One line for JSON Lines readers, as the rest of a --jsonl stream.
                let output = Output {
                    compact: output.compact || output.jsonl,
                    ..output
                };
                output.json(&error_json(&e));
            }
            e.code().into()
        }
    }
}

/// The JSON form of a failure, as `--json` prints it on stdout.
pub fn error_json(e: &Error) -> Value {
    let code = e.code();
    json!({"error": {"code": code.as_i32(), "name": code.name(), "message": e.to_string()}})
}

/// Whether `args` asks for JSON output (`--json`, `--jsonl`, or the
/// shell library's `list json`): used to print a failure as JSON when it
/// happens before a [`Ctx`] exists.
pub fn wants_json(args: &[OsString]) -> bool {
    // Nothing after `--` is ours: it is the command `run` or `retry` executes.
    args.iter()
        .take_while(|a| *a != "--")
        .any(|a| a == "--json" || a == "--jsonl")
}

/// Whether this call has printed anything on stdout: a failure is printed
/// as JSON only when it is the call's one value (a report that ends in a
/// failing exit code, such as `validate --json`, already was).
static PRINTED: AtomicBool = AtomicBool::new(false);

/// Writes `text` to stdout; a closed pipe (`| head`) is not an error.
pub fn print(text: &str) {
    PRINTED.store(true, Ordering::Relaxed);
    let mut out = io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

/// Writes `text` and a newline to stdout.
pub fn println(text: &str) {
    PRINTED.store(true, Ordering::Relaxed);
    let mut out = io::stdout().lock();
    let _ = out
        .write_all(text.as_bytes())
        .and_then(|_| out.write_all(b"\n"))
        .and_then(|_| out.flush());
}
