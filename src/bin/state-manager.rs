//! `state-manager`: reads, validates, atomically writes, backs up, recovers
//! and migrates the workflow state file. A thin front: every subcommand is
//! one call into `wfstate::state::commands`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wfstate::cli;
use wfstate::config::GlobalArgs;
use wfstate::hooks::{self, HookArgs};
use wfstate::state::backup::RetentionArgs;
use wfstate::state::commands::{self, Ctx};
use wfstate::{Code, Result};

/// Keeps .workflow-state.json valid, atomic and backed up.
///
/// Exit codes: 0 success, 1 general/usage error, 2 lock timeout, 3 state
/// corruption, 4 validation failed, 5 dependency missing, 6 permission
/// denied, 7 disk full, 9 timeout, 10 resource exhausted.
#[derive(Parser)]
#[command(name = "state-manager", version, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,

    #[command(flatten)]
    retention: RetentionArgs,

    /// Act for this lock owner (default: LOCK_OWNER_PID, else the calling shell)
    #[arg(long, global = true, value_name = "PID")]
    owner: Option<u32>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Create the state (idempotent); repair a corrupt one from backups
    Init,
    /// Print the document, or one value by a jq-style path
    ///
    /// Exit 3 if the state does not parse (run `state-manager recover`).
    Read {
        /// A path such as .phase or .degradedMode.enabled [default: .]
        path: Option<String>,
        /// Print strings without quotes
        #[arg(short, long)]
        raw: bool,
    },
    /// Replace the document (validated first)
    ///
    /// Exit 4 if it breaks the schema or --expect-revision does not match.
    Write {
        /// The JSON document, or - for standard input
        json: String,
        /// Why, recorded in the backup's name
        reason: Option<String>,
        /// Refuse unless the stored metadata.revision is N
        #[arg(long, value_name = "N")]
        expect_revision: Option<u64>,
    },
    /// Set one value (atomic read-modify-write under the state lock)
    Set {
        /// A path such as .phase
        path: String,
        /// A JSON value such as '"impl"', 3 or '{"a":1}'
        value: String,
        /// Take VALUE as a plain string
        #[arg(short, long)]
        string: bool,
    },
    /// Apply an RFC 7396 merge patch (atomic, under the state lock)
    Merge {
        /// A JSON object; null deletes a key
        patch: String,
    },
    /// Append a value to an array (created if missing; atomic)
    Append {
        /// A path such as .completedTasks
        path: String,
        /// A JSON value such as '"task-1"'
        value: String,
        /// Take VALUE as a plain string
        #[arg(short, long)]
        string: bool,
    },
    /// Record a signal: signals.NAME = now (epoch seconds), and .signals/NAME.json
    Signal {
        /// The signal, such as PHASE1_START
        name: String,
    },
    /// Check the state against the schema
    ///
    /// Exit 0 valid, 3 does not parse, 4 schema violations (each printed with its JSON pointer).
    Validate {
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Back up the current state
    Backup {
        /// Why, recorded in the backup's name [default: manual]
        reason: Option<String>,
    },
    /// List backups, newest first
    ListBackups {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Restore the newest valid backup (whose name contains PATTERN)
    ///
    /// The current file is kept first: as a backup, or aside as .corrupt-* if it does not parse.
    /// Exit 3 if no valid backup matches.
    Recover {
        /// Only backups whose name contains this
        pattern: Option<String>,
    },
    /// Upgrade an older document to the current schema version (backed up first)
    ///
    /// Exit 4 for a schemaVersion newer than this toolkit's.
    Migrate,
    /// Summarize the state (default)
    ///
    /// Exit 0 valid, 1 missing, 3 corrupt, 4 invalid.
    Status {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Run as a Claude Code hook, with the hook's JSON payload on stdin
    ///
    /// post-tool-use records workflow signals and the phase by the tracker rules;
    /// user-prompt-submit prints the [ACTIVATE:CODE] block of the skill the prompt
    /// calls for (and a status section when the prompt asks for the status) and
    /// records lastActivation. The state is STATE_FILE, else
    /// $CLAUDE_PROJECT_DIR/.claude/.workflow-state.json, created when missing.
    ///
    /// Always exits 0 so the session goes on: bad input, a bad rules file or a
    /// lock timeout leaves the state unchanged, prints one line on stderr and is
    /// recorded in the audit log (op hook, outcome error). See docs/hooks.md.
    Hook(HookArgs),
}

fn run(cli: Cli) -> Result<Code> {
    if let Some(Command::Hook(args)) = &cli.command {
        // Before the settings are checked: a hook reports a bad setting in the
        // audit log and exits 0 rather than fail the session it serves.
        return Ok(hooks::run(args, &cli.global, &cli.retention, cli.owner));
    }
    let ctx = Ctx {
        cfg: cli.global.config()?,
        retention: cli.retention.retention()?,
        owner: cli.owner,
    };
    match cli.command.unwrap_or(Command::Status { json: false }) {
        Command::Init => commands::init(&ctx),
        Command::Read { path, raw } => commands::read(&ctx, path.as_deref(), raw),
        Command::Write {
            json,
            reason,
            expect_revision,
        } => commands::write(&ctx, &json, reason.as_deref(), expect_revision),
        Command::Set {
            path,
            value,
            string,
        } => commands::set(&ctx, &path, &value, string),
        Command::Merge { patch } => commands::merge(&ctx, &patch),
        Command::Append {
            path,
            value,
            string,
        } => commands::append(&ctx, &path, &value, string),
        Command::Signal { name } => commands::signal(&ctx, &name),
        Command::Validate { json } => commands::validate(&ctx, json),
        Command::Backup { reason } => commands::backup(&ctx, reason.as_deref()),
        Command::ListBackups { json } => commands::list_backups(&ctx, json),
        Command::Recover { pattern } => commands::recover(&ctx, pattern.as_deref()),
        Command::Migrate => commands::migrate(&ctx),
        Command::Status { json } => commands::status(&ctx, json),
        Command::Hook(_) => unreachable!("handled before the context is built"),
    }
}

fn main() -> ExitCode {
    match cli::parse::<Cli>() {
        Ok(cli) => cli::finish("state-manager", run(cli)),
        Err(code) => code.into(),
    }
}
