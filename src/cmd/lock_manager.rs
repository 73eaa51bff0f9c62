//! `lock-manager`: named shared/exclusive locks that outlive one command.
//! A thin front: every subcommand is one call into `crate::lock`.

use std::ffi::OsString;
use std::process::ExitCode;

use crate::cmd::{self as cli, Ctx};
use crate::config::GlobalArgs;
use crate::lock::commands;
use crate::lock::record::LockType;
use crate::lock::run;
use crate::{Code, Kind, Result};
use clap::{Subcommand, ValueEnum};

use super::lock as cmd;

cli::binary_cli! {
    /// Named locks for shell scripts: acquire in one command, release in another.
    ///
    /// The owner of a lock is the calling shell: --owner PID, else LOCK_OWNER_PID,
    /// else the parent process. A lock is held while its owner runs (same pid,
    /// same start time, same boot) and its --ttl, if any, has not passed; a dead
    /// owner's lock is taken over by the next acquirer, a live one is never
    /// broken for being old.
    ///
    /// `check` exits 0 locked, 1 unlocked, 2 stale; `run` with its command's own
    /// code.
    "lock-manager",
    Command
}

#[derive(Subcommand)]
enum Command {
    /// Take a lock and keep it after this command exits
    ///
    /// Waits up to TIMEOUT seconds (fractions allowed; 0 tries once). Once an
    /// exclusive request waits, new shared requests queue behind it. The same
    /// owner asking again succeeds without counting twice; a sole shared
    /// holder asking for exclusive is upgraded. --timeout, --nonblock,
    /// --shared and --exclusive are the flag twins of TIMEOUT and TYPE (give
    /// one spelling of each, not both).
    ///
    /// The owner is the calling process. When that is not a shell (make,
    /// xargs, timeout, a script interpreter, ...), every command it starts
    /// would share one hold: the lock is still taken, with a warning that
    /// names the owner; use 'lock-manager run NAME -- CMD', or --owner PID.
    ///
    /// On a terminal, a wait longer than a second says who holds the lock,
    /// and then when it was had. SIGINT, SIGTERM or SIGHUP during the wait
    /// end it at once (the process ends by that signal: 128+N to a shell),
    /// and the request leaves the record.
    ///
    /// Exit 0 held, 2 not had within TIMEOUT, 3 the record does not parse,
    /// 4 bad name, type or metadata, arguments given twice or out of order,
    /// or a hierarchy violation (an owner holding 'user' may not then ask for
    /// 'state': order state, config, signals, backup, temp, user, others).
    Acquire(AcquireArgs),
    /// Give a lock back
    ///
    /// Exit 0 released (also when nobody held it), 3 the record does not
    /// parse, 4 --holder without --force (or on the file backend), 6 another
    /// owner holds it (the message names it, and on Redis the holder id that
    /// --force --holder takes).
    Release(ReleaseArgs),
    /// Print locked:TYPE:PID, unlocked or stale
    ///
    /// Exit 0 locked, 1 unlocked, 2 stale (its holder is gone), 3 the record
    /// does not parse. --json: {"name", "status", "type", "pid", ...}, the
    /// same exit codes.
    Check(CheckArgs),
    /// List lock records: NAME, TYPE, PID, TIMESTAMP, STATUS (--no-header: rows only)
    ///
    /// One row per holder (every shared holder shown), STATUS VALID or STALE
    /// (CORRUPT for a record that does not parse). json (or --json): one array
    /// of records with `name` and `status`; --jsonl: one record per line.
    List(ListArgs),
    /// Remove stale lock records and print how many
    ///
    /// --json: {"removed": N, "names": [...], "pruned", "corrupt_kept", "forced"}.
    Clean {
        /// Also remove records that do not parse
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        json: cli::JsonArgs,
    },
    /// Show locks held and by whom, waiting requests, stale records (default)
    Status(StatusArgs),
    /// Run a command holding a lock for its whole life, like flock(1)
    ///
    /// The command itself holds the lock: killing lock-manager neither frees
    /// it nor stops the command, and its own state-manager/lock-manager calls
    /// act as the holder (it gets LOCK_OWNER_PID and WFSTATE_LOCK_NAME, and no
    /// lock descriptor). SIGINT, SIGTERM and SIGHUP are forwarded to it; the
    /// same signals while waiting for the lock end the wait at once.
    ///
    /// flock(1)'s spellings work, so 'flock' can be swapped for 'lock-manager
    /// run' in a script: -n, -w, -s, -x (-e), -E, -c 'shell command' (run
    /// by sh -c), -o (accepted: the command holds no lock descriptor to
    /// close), --verbose. In a Makefile, use it on each recipe line that
    /// needs the lock: 'lock-manager run NAME -- CMD'.
    ///
    /// Exit: the command's own code (128+N if signal N ended it, or ended
    /// the wait for the lock); 2 if the lock was not had in time (or
    /// --conflict-exit-code); 4 bad name or timeout, or -n with -w; 5 the
    /// command is not found.
    Run(RunArgs),
    /// The lease keeper of one lock owner on Redis (started by acquire; not for direct use)
    #[command(hide = true)]
    Keeper {
        /// The owner's holder id, HOST:PID:START:BOOT:PIDNS
        holder: String,
    },
    #[command(flatten)]
    Docs(cli::docs::Docs),
}

// The arguments of `Command::Acquire` (a type of its own so that
// `one_subcommand` can build its parser alone).
#[derive(clap::Args)]
struct AcquireArgs {
    /// Lock name: 1-128 of [A-Za-z0-9._-], not starting with '.'
    name: String,
    /// Seconds to wait [default: LOCK_TIMEOUT, else 30]
    timeout: Option<String>,
    /// shared or exclusive [default: exclusive]
    #[arg(value_name = "TYPE")]
    kind: Option<String>,
    /// JSON stored with the holder, such as '{"step":"build"}'
    metadata: Option<String>,
    /// Seconds to wait, as TIMEOUT (flock's -w)
    #[arg(short = 'w', long = "timeout", value_name = "SECONDS")]
    wait: Option<String>,
    /// Try once and fail at once (exit 2) if the lock is busy: TIMEOUT 0
    #[arg(short, long)]
    nonblock: bool,
    /// Take a shared lock, as TYPE shared
    #[arg(short, long, overrides_with = "exclusive")]
    shared: bool,
    /// Take an exclusive lock, as TYPE exclusive (the default)
    #[arg(short = 'x', short_alias = 'e', long, overrides_with = "shared")]
    exclusive: bool,
    /// Let the hold lapse after this long even if the owner lives (30, 10m, 1h)
    #[arg(long, value_name = "DURATION")]
    ttl: Option<String>,
    /// Print what was acquired, after how long, and who held it meanwhile
    #[arg(short, long)]
    verbose: bool,
    /// Print the record as JSON (--json), with the wait and who held it meanwhile
    #[command(flatten)]
    json: cli::JsonArgs,
}

// The arguments of `Command::Release` (a type of its own so that
// `one_subcommand` can build its parser alone).
#[derive(clap::Args)]
struct ReleaseArgs {
    name: String,
    /// Release whoever holds it (audited)
    #[arg(long)]
    force: bool,
    /// With --force, remove only this holder (Redis: the holder id a
    /// conflict names, HOST:PID:START:BOOT:PIDNS)
    #[arg(long, value_name = "ID", requires = "force")]
    holder: Option<String>,
    #[command(flatten)]
    json: cli::JsonArgs,
}

// The arguments of `Command::Check` (a type of its own so that
// `one_subcommand` can build its parser alone).
#[derive(clap::Args)]
struct CheckArgs {
    name: String,
    #[command(flatten)]
    json: cli::JsonArgs,
}

// The arguments of `Command::List` (a type of its own so that
// `one_subcommand` can build its parser alone).
#[derive(clap::Args)]
struct ListArgs {
    /// table or json (the same as --json) [default: table]
    #[arg(value_enum)]
    format: Option<ListFormat>,
    #[command(flatten)]
    json: cli::StreamArgs,
}

// The arguments of `Command::Status` (a type of its own so that
// `one_subcommand` can build its parser alone).
#[derive(clap::Args)]
struct StatusArgs {
    #[command(flatten)]
    json: cli::JsonArgs,
}

// The arguments of `Command::Run` (a type of its own so that
// `one_subcommand` can build its parser alone).
#[derive(clap::Args)]
struct RunArgs {
    /// Lock name: 1-128 of [A-Za-z0-9._-], not starting with '.'
    name: String,
    /// Take a shared lock [default: exclusive]
    #[arg(short, long, overrides_with = "exclusive")]
    shared: bool,
    /// Take an exclusive lock (the default)
    #[arg(short = 'x', short_alias = 'e', long, overrides_with = "shared")]
    exclusive: bool,
    /// Seconds to wait for the lock [default: LOCK_TIMEOUT, else 30]
    #[arg(short = 'w', long, value_name = "SECONDS")]
    timeout: Option<String>,
    /// Fail at once (exit 2, or -E's code) if the lock is busy
    #[arg(short, long)]
    nonblock: bool,
    /// Exit with N instead of 2 when the lock is not had in time
    #[arg(short = 'E', long, value_name = "N")]
    conflict_exit_code: Option<u8>,
    /// Run this shell command by 'sh -c' instead of CMD
    #[arg(
        short = 'c',
        long = "command",
        value_name = "SHELL_COMMAND",
        conflicts_with = "command"
    )]
    shell: Option<OsString>,
    /// Accepted for flock(1), and nothing to do: the command holds no lock descriptor
    #[arg(short = 'o', long)]
    close: bool,
    /// Say on stderr how long getting the lock took, and what is executed
    #[arg(long)]
    verbose: bool,
    /// The command and its arguments (after --)
    #[arg(
        required_unless_present = "shell",
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    command: Vec<OsString>,
}

const TOOL: &str = "lock-manager";

#[derive(Clone, Copy, ValueEnum)]
enum ListFormat {
    Table,
    Json,
}

fn dispatch(global: &GlobalArgs, command: Command) -> ExitCode {
    let mut output = cli::Output::from_args(std::env::args_os());
    match &command {
        Command::List(ListArgs {
            format: Some(ListFormat::Json),
            ..
        }) => output.json = true,
        // `run` prints no JSON: a --json on its command line is the command's.
        Command::Run(_) => output = cli::Output::default(),
        _ => {}
    }
    let ctx = match Ctx::new(TOOL, global) {
        Ok(ctx) => ctx,
        Err(e) => return cli::finish(TOOL, output, Err(e)),
    };
    let result: Result<Code> = match command {
        Command::Acquire(AcquireArgs {
            name,
            timeout,
            kind,
            metadata,
            wait,
            nonblock,
            shared,
            exclusive,
            ttl,
            verbose,
            json,
        }) => {
            let owner = ctx.owner;
            let flag_kind = match (shared, exclusive) {
                (true, _) => Some(LockType::Shared),
                (_, true) => Some(LockType::Exclusive),
                _ => None,
            };
            cmd::acquire(
                &ctx.with_output(&json),
                &commands::AcquireArgs {
                    name,
                    timeout,
                    kind,
                    metadata,
                    owner,
                    ttl,
                    flag_timeout: wait,
                    nonblock,
                    flag_kind,
                },
                verbose,
            )
        }
        Command::Release(ReleaseArgs {
            name,
            force,
            holder,
            json,
        }) => cmd::release(&ctx.with_output(&json), &name, force, holder.as_deref()),
        Command::Check(CheckArgs { name, json }) => cmd::check(&ctx.with_output(&json), &name),
        Command::List(ListArgs { format, json }) => {
            let mut args = cli::JsonArgs::from(json);
            if matches!(format, Some(ListFormat::Json)) {
                args.json = true;
            }
            cmd::list(&ctx.with_output(&args))
        }
        Command::Clean { force, json } => cmd::clean(&ctx.with_output(&json), force),
        Command::Status(StatusArgs { json }) => cmd::status(&ctx.with_output(&json)),
        Command::Docs(docs) => docs.run::<Cli>(),
        Command::Keeper { holder } => cmd::keeper(&ctx, &holder),
        Command::Run(RunArgs {
            name,
            shared,
            exclusive: _,
            timeout,
            nonblock,
            conflict_exit_code,
            shell,
            close: _,
            verbose,
            command,
        }) => {
            // flock's -c: one shell command line, run as flock runs it.
            let command = match shell {
                Some(line) => vec!["sh".into(), "-c".into(), line],
                None => command,
            };
            let args = run::RunArgs {
                name,
                shared,
                timeout,
                nonblock,
                verbose,
                command,
            };
            // `run` exits with the child's code, which is outside the toolkit's table.
            return match run::run(&ctx.cfg, ctx.backend.as_ref(), &args) {
                Ok(code) => ExitCode::from(code),
                Err(e) if crate::lock::wait::interrupted().is_some() => {
                    let sig = crate::lock::wait::interrupted().unwrap_or(libc::SIGINT);
                    let _ = cli::finish(TOOL, output, Err(e));
                    cmd::end_by_signal(sig)
                }
                Err(e) if e.kind() == Kind::LockTimeout && conflict_exit_code.is_some() => {
                    eprintln!("{TOOL}: {e}");
                    ExitCode::from(conflict_exit_code.unwrap_or(2))
                }
                Err(e) => cli::finish(TOOL, output, Err(e)),
            };
        }
    };
    let code = cli::finish(TOOL, output, result);
    match crate::lock::wait::interrupted() {
        // A wait ended by Ctrl-C: said once above, then ended by the signal.
        Some(sig) => cmd::end_by_signal(sig),
        None => code,
    }
}

/// The parser of the subcommand `name` alone, for the commands scripts and
/// hooks call (see [`cli::parse_with`]); the others are parsed by the whole tree.
fn one_subcommand(name: &str) -> Option<clap::Command> {
    use clap::{Args, Command as Sub};
    Some(match name {
        "acquire" => AcquireArgs::augment_args(Sub::new("acquire")),
        "release" => ReleaseArgs::augment_args(Sub::new("release")),
        "check" => CheckArgs::augment_args(Sub::new("check")),
        "list" => ListArgs::augment_args(Sub::new("list")),
        "status" => StatusArgs::augment_args(Sub::new("status")),
        "run" => RunArgs::augment_args(Sub::new("run")),
        _ => return None,
    })
}

pub fn main() -> ExitCode {
    match cli::parse_with::<Cli>(
        |sub| {
            (sub == "run").then_some(cli::RunsCommand {
                positionals: 1,
                valued: &[
                    "-w",
                    "--timeout",
                    "-E",
                    "--conflict-exit-code",
                    "-c",
                    "--command",
                ],
            })
        },
        one_subcommand,
    ) {
        Ok(cli) => dispatch(
            &cli.global,
            cli.command.unwrap_or(Command::Status(StatusArgs {
                json: cli::JsonArgs::default(),
            })),
        ),
        Err(code) => code.into(),
    }
}
