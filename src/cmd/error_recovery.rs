//! `error-recovery`: checkpoints and restore, degraded mode, retry with
//! backoff, and recovery strategies per exit code. A thin front: every
//! subcommand is one call into `crate::recovery`.

use std::process::ExitCode;

use crate::cmd::recovery::{TOOL, checkpoints, degraded, suggest};
use crate::cmd::{self as cli, Ctx, JsonArgs, StreamArgs};
use crate::recovery::checkpoint::Request;
use crate::recovery::retry;
use crate::recovery::retry::RetryArgs;
use crate::{Code, Result};
use clap::Subcommand;

cli::binary_cli! {
    /// Checkpoints, restore, degraded mode, retry with backoff, recovery per exit code.
    ///
    /// `retry` exits with its command's own code; `is-degraded` and `handle`
    /// have their own (see their --help).
    "error-recovery",
    Command
}

#[derive(Subcommand)]
enum Command {
    /// Save the state, .signals/ and config/ as a checkpoint; prints its id
    ///
    /// Exit 4 for a bad OPERATION or METADATA_JSON (nothing is created),
    /// 1 when there is no state, 3 when it does not parse.
    Checkpoint(CheckpointArgs),
    /// Put a checkpoint's state, .signals/ and config/ back (atomically)
    ///
    /// Every checksum is verified first: exit 3 if one fails (nothing is
    /// touched). Exit 1 for an unknown id, 4 if its state breaks the schema.
    /// The live state is backed up first and the restored one gets the next revision.
    Restore(RestoreArgs),
    /// List checkpoints, newest first, with whether each verifies
    List {
        /// table or json (json is the same as --json)
        #[arg(default_value = "table")]
        format: String,
        #[command(flatten)]
        json: StreamArgs,
    },
    /// Remove checkpoints older than DAYS (and leftover temp folders)
    Cleanup {
        /// Remove checkpoints older than this: 7d, 12h, 30m; a bare number is seconds
        #[arg(default_value = "7d", value_name = "AGE")]
        days: String,
        /// Always keep the newest N checkpoints
        #[arg(long, default_value = "0", value_name = "N")]
        keep: usize,
        /// Print what would be removed; remove nothing
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        json: JsonArgs,
    },
    /// Turn degraded mode on in the state
    Degrade(DegradeArgs),
    /// Turn degraded mode off
    RecoverMode(RecoverModeArgs),
    /// Exit 0 when degraded mode is on, 1 when it is off (for `if`)
    ///
    /// Prints nothing (with --json: {"degraded": BOOL}). Exit 1 also when
    /// there is no state; 3 if it does not parse.
    IsDegraded(IsDegradedArgs),
    /// Degraded mode, checkpoints and recent failures (default)
    Status(StatusArgs),
    /// Run a command until it succeeds, with exponential backoff and jitter
    ///
    /// Exits with the last attempt's own code (128+N after signal N), 9 when
    /// --timeout ended it (the command's process group gets SIGTERM, then
    /// SIGKILL 2 s later), 5 when the command is not found, 4 for bad
    /// options. Every non-zero exit is retried, except that exit codes 4, 6
    /// and 7 of wfstate's own binaries (or of any command under --codes
    /// wfstate) are not: retrying cannot fix bad input, a refused permission
    /// or a full disk. --no-retry-on adds codes not to retry; --retry-on
    /// retries only the codes it lists (not both). Each attempt sees
    /// WFSTATE_ATTEMPT=1, 2, ...
    Retry(RetryArgs),
    /// What an exit code means and what to run about it
    ///
    /// Exit 4 for a code outside 0-10.
    Suggest {
        /// An exit code, 0-10
        #[arg(allow_negative_numbers = true)]
        code: String,
        #[command(flatten)]
        json: JsonArgs,
    },
    /// Print the suggestion for an exit code; with --apply, recover automatically
    ///
    /// --apply first looks for the damage CODE names and acts only on that:
    /// 2 removes stale locks; 3 restores a corrupt state from the newest
    /// valid backup (kept aside first) and moves corrupt backups to
    /// .state-backups/corrupt/ (corrupt checkpoints and lock records are
    /// reported, not touched); 4 restores the newest valid backup only if the
    /// live state breaks the schema; 7 prunes backups and checkpoints beyond
    /// retention and leftover temp files. Other codes have no strategy.
    /// Exits 0 when damage was found and repaired, else CODE with the reason
    /// (e.g. none found: nothing changed); 4 for a code outside 0-10.
    Handle {
        /// An exit code, 0-10
        #[arg(allow_negative_numbers = true)]
        code: String,
        /// What failed, for the audit log
        message: Option<String>,
        /// Run the automatic strategy
        #[arg(long)]
        apply: bool,
        #[command(flatten)]
        json: JsonArgs,
    },
    #[command(flatten)]
    Docs(cli::docs::Docs),
}

// The arguments of `Command::Checkpoint` (a type of its own so that
// `one_subcommand` can build its parser alone).
#[derive(clap::Args)]
struct CheckpointArgs {
    /// What is about to happen: letters, digits, '.', '_', '-'
    operation: String,
    /// The workflow phase [default: the state's phase]
    phase: Option<String>,
    /// Any JSON value, stored exactly as given [default: {}]
    metadata_json: Option<String>,
    #[command(flatten)]
    json: JsonArgs,
}

// The arguments of `Command::Restore` (a type of its own so that
// `one_subcommand` can build its parser alone).
#[derive(clap::Args)]
struct RestoreArgs {
    /// A checkpoint id from 'error-recovery list', or latest
    #[arg(default_value = "latest")]
    id: String,
    /// Restore a checkpoint of another state's lineage too
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    json: JsonArgs,
}

// The arguments of `Command::Degrade` (a type of its own so that
// `one_subcommand` can build its parser alone).
#[derive(clap::Args)]
struct DegradeArgs {
    /// Why
    reason: String,
    /// The features turned off, as a JSON array of strings
    features_json: Option<String>,
    #[command(flatten)]
    json: JsonArgs,
}

// The arguments of `Command::RecoverMode` (a type of its own so that
// `one_subcommand` can build its parser alone).
#[derive(clap::Args)]
struct RecoverModeArgs {
    #[command(flatten)]
    json: JsonArgs,
}

// The arguments of `Command::IsDegraded` (a type of its own so that
// `one_subcommand` can build its parser alone).
#[derive(clap::Args)]
struct IsDegradedArgs {
    #[command(flatten)]
    json: JsonArgs,
}

// The arguments of `Command::Status` (a type of its own so that
// `one_subcommand` can build its parser alone).
#[derive(clap::Args)]
struct StatusArgs {
    #[command(flatten)]
    json: JsonArgs,
}

impl Command {
    /// How this subcommand prints (`--json`, `-c`, `--jsonl`).
    fn output(&self) -> JsonArgs {
        match self {
            Command::Checkpoint(CheckpointArgs { json, .. })
            | Command::Restore(RestoreArgs { json, .. })
            | Command::Cleanup { json, .. }
            | Command::Degrade(DegradeArgs { json, .. })
            | Command::RecoverMode(RecoverModeArgs { json })
            | Command::IsDegraded(IsDegradedArgs { json })
            | Command::Status(StatusArgs { json })
            | Command::Suggest { json, .. }
            | Command::Handle { json, .. } => *json,
            Command::List { json, format } => {
                let mut args = JsonArgs::from(*json);
                // The shell library's `list json`.
                args.json |= format == "json";
                args
            }
            _ => JsonArgs::default(),
        }
    }
}

fn run(ctx: Ctx, command: Command) -> Result<ExitCode> {
    let ctx = ctx.with_output(&command.output());
    let code: Code = match command {
        Command::Checkpoint(CheckpointArgs {
            operation,
            phase,
            metadata_json,
            ..
        }) => checkpoints::create(
            &ctx,
            &Request {
                operation: &operation,
                phase: phase.as_deref(),
                metadata: metadata_json.as_deref(),
            },
        )?,
        Command::Restore(RestoreArgs { id, force, .. }) => {
            checkpoints::restore(&ctx, Some(&id), force)?
        }
        Command::List { format, .. } => checkpoints::list(&ctx, &format)?,
        Command::Cleanup {
            days,
            keep,
            dry_run,
            ..
        } => checkpoints::cleanup(&ctx, Some(&days), keep, dry_run)?,
        Command::Degrade(DegradeArgs {
            reason,
            features_json,
            ..
        }) => degraded::degrade(&ctx, &reason, features_json.as_deref())?,
        Command::RecoverMode(RecoverModeArgs { .. }) => degraded::recover_mode(&ctx)?,
        Command::IsDegraded(IsDegradedArgs { .. }) => degraded::is_degraded(&ctx)?,
        Command::Status(StatusArgs { .. }) => degraded::status(&ctx)?,
        Command::Retry(args) => return retry::run(&ctx.cfg, &args).map(ExitCode::from),
        Command::Suggest { code, .. } => suggest::suggest(&ctx, &code)?,
        Command::Handle {
            code,
            message,
            apply,
            ..
        } => suggest::handle(&ctx, &code, message.as_deref(), apply)?,
        Command::Docs(docs) => docs.run::<Cli>()?,
    };
    Ok(code.into())
}

/// The parser of the subcommand `name` alone, for the commands scripts and
/// hooks call (see [`cli::parse_with`]); the others are parsed by the whole tree.
fn one_subcommand(name: &str) -> Option<clap::Command> {
    use clap::{Args, Command as Sub};
    Some(match name {
        "checkpoint" => CheckpointArgs::augment_args(Sub::new("checkpoint")),
        "restore" => RestoreArgs::augment_args(Sub::new("restore")),
        "degrade" => DegradeArgs::augment_args(Sub::new("degrade")),
        "recover-mode" => RecoverModeArgs::augment_args(Sub::new("recover-mode")),
        "is-degraded" => IsDegradedArgs::augment_args(Sub::new("is-degraded")),
        "status" => StatusArgs::augment_args(Sub::new("status")),
        "retry" => RetryArgs::augment_args(Sub::new("retry")),
        _ => return None,
    })
}

pub fn main() -> ExitCode {
    match cli::parse_with::<Cli>(
        |sub| {
            (sub == "retry").then_some(cli::RunsCommand {
                positionals: 0,
                valued: &[
                    "--attempts",
                    "--delay",
                    "--max-delay",
                    "--multiplier",
                    "--jitter",
                    "--retry-on",
                    "--no-retry-on",
                    "--codes",
                    "--timeout",
                ],
            })
        },
        one_subcommand,
    ) {
        Ok(cli) => {
            let command = cli.command.unwrap_or(Command::Status(StatusArgs {
                json: JsonArgs::default(),
            }));
            // How a failure prints: as the command prints (`list json`
            // included; `retry` prints no JSON of its own).
            let output = cli::Output::of(&command.output());
            match Ctx::new(TOOL, &cli.global).and_then(|ctx| run(ctx, command)) {
                Ok(code) => code,
                Err(e) => cli::finish(TOOL, output, Err(e)),
            }
        }
        Err(code) => code.into(),
    }
}
