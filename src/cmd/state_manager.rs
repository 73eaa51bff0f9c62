//! `state-manager`: reads, validates, atomically writes, backs up, recovers
//! and migrates the workflow state file. A thin front: every subcommand is
//! one call into `crate::cmd::state`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cmd as cli;
use crate::cmd::Ctx;
use crate::cmd::state::{backups, check, document, maintain, metrics, states};
use crate::hooks::{self, HookArgs};
use crate::state::exchange;
use crate::{Code, Result};
use clap::Subcommand;

const TOOL: &str = "state-manager";

cli::binary_cli! {
    /// Keeps .workflow-state.json valid, atomic and backed up.
    "state-manager",
    Command
}

#[derive(Subcommand)]
enum Command {
    /// Create the state (idempotent); repair a corrupt one from backups
    Init(InitArgs),
    /// Print the document, or one value by a jq-style path
    ///
    /// A missing path prints null. With -e (as jq -e), exit 1 when the value is
    /// null, false or missing, so `if state-manager read -e .signals.DONE; then`
    /// works; that answer is not a failure (the audit event records exit 0).
    /// Exit 1 also when there is no state (a message on stderr says so), 3 if
    /// the state does not parse (run `state-manager recover`).
    Read(ReadArgs),
    /// Replace the document (validated first)
    ///
    /// Exit 4 if it breaks the schema, --expect-revision does not match, or
    /// the document carries a metadata.revision older than the live state's
    /// (it was read before someone else wrote: read again, or --force).
    Write(WriteArgs),
    /// Set one value (atomic read-modify-write under the state lock)
    Set(SetArgs),
    /// Apply an RFC 7396 merge patch (atomic, under the state lock)
    Merge(MergeArgs),
    /// Append a value to an array (created if missing; atomic)
    Append(AppendArgs),
    /// Delete a key or an array element (atomic, under the state lock), as jq's del
    ///
    /// `.completedTasks[2]` and `.completedTasks[-1]` name elements (later ones move
    /// up). Exit 1 when there is no value at PATH (nothing changed; --missing-ok
    /// accepts that), 4 for `.`, `.metadata…` (the toolkit's) or a field the
    /// schema requires.
    Del(DelArgs),
    /// Move a value to another path (atomic, under the state lock), as terraform state mv
    ///
    /// FROM is removed first, then TO is set in what remains (missing objects on
    /// the way are created, as `set` does). One backup, one revision, one audit
    /// event. Exit 1 when there is no value at FROM; 4 when TO holds a value
    /// (unless --force), TO is FROM or inside it, or either is `.` or `.metadata…`.
    /// Nothing changes when refused.
    Mv(MvArgs),
    /// Record a signal: signals.NAME = now (epoch seconds), and .signals/NAME.json
    Signal(SignalArgs),
    /// Check the state against the schema
    ///
    /// Exit 0 valid, 3 does not parse, 4 schema violations (each printed with its JSON pointer).
    Validate(ValidateArgs),
    /// Back up the current state
    Backup {
        /// Why, recorded in the backup's name [default: manual]
        reason: Option<String>,
        #[command(flatten)]
        json: cli::JsonArgs,
    },
    /// List backups, newest first
    ListBackups {
        #[command(flatten)]
        json: cli::JsonArgs,
    },
    /// Restore the newest valid backup (whose name contains PATTERN)
    ///
    /// The current file is kept first: as a backup, or aside as .corrupt-* if it does not parse.
    /// Exit 3 if no valid backup matches.
    Recover {
        /// Only backups whose name contains this
        pattern: Option<String>,
        /// Restore a backup of another state's lineage too
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        json: cli::JsonArgs,
    },
    /// Upgrade an older document to the current schema version (backed up first)
    ///
    /// Exit 4 for a schemaVersion newer than this toolkit's.
    Migrate {
        #[command(flatten)]
        json: cli::JsonArgs,
    },
    /// Check the state, every backup, checkpoint and lock record: parses, schema, checksum
    ///
    /// Lists each problem with its file. A document whose checksum does not match its
    /// content is reported as changed outside the toolkit or corrupted; one without a
    /// checksum as unverified. Exit 0 clean, 3 anything corrupt (incl. a checksum
    /// mismatch), 4 only schema problems.
    VerifyIntegrity {
        #[command(flatten)]
        json: cli::JsonArgs,
    },
    /// Check one backup like verify-integrity does
    ///
    /// Exit 0 valid, 1 no such backup, 3 corrupt or checksum mismatch, 4 schema problems.
    ValidateBackup {
        /// The backup's file name (with or without .json), as list-backups shows it
        id: String,
        #[command(flatten)]
        json: cli::JsonArgs,
    },
    /// Fix what can be fixed without guessing content (the state is backed up first)
    ///
    /// Missing required fields get defaults, invalid timestamps become now, toolkit-owned
    /// fields of the wrong type are reset, a missing or mismatched checksum is recorded
    /// anew; each change is printed. Unknown keys are never dropped. A state that does not
    /// parse is recovered from the newest valid backup. Exit 0 repaired (or nothing to do),
    /// 1 no state, 3 does not parse and no valid backup, 4 problems only a person can fix
    /// (listed; nothing written).
    Repair {
        /// Print what would change; change nothing
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        json: cli::JsonArgs,
    },
    /// Write the state as JSON or YAML, to stdout or a file
    ///
    /// The document is exported as stored, metadata included. --output replaces FILE
    /// atomically and durably and prints a summary (JSON with --json); without it the
    /// document goes to stdout and --json means --format json.
    Export {
        /// json or yaml [default: json, or by FILE's extension]
        #[arg(long, value_enum)]
        format: Option<exchange::Format>,
        /// Write here instead of stdout
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        json: cli::JsonArgs,
    },
    /// Replace the state with a JSON or YAML document (validated, backed up first)
    ///
    /// The format is told by FILE's extension (.json, .yaml, .yml), else by its first
    /// character. Refused, with nothing changed: a document that breaks the schema (exit 4);
    /// one whose metadata.revision is older than the live state's (exit 4, unless --force);
    /// replacing a live state that does not parse (exit 3, unless --force).
    Import {
        /// The document, or - for standard input
        #[arg(short, long, value_name = "FILE")]
        file: String,
        /// Import even an older revision, or over a state that does not parse
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        json: cli::JsonArgs,
    },
    /// Remove old backups and checkpoints, temp files of killed writers, stale lock records
    ///
    /// No selector means all four. --keep and --older-than choose backups and checkpoints
    /// (either one removes when both are given); with neither, backups follow the retention
    /// settings (BACKUP_KEEP, BACKUP_MAX_AGE) and checkpoints go after 7 days. Prints each
    /// thing removed. Exit 4 bad duration.
    Cleanup(maintain::CleanupCommand),
    /// Say at a glance whether all is well: state, locks, backups, disk, audit log, degraded mode
    ///
    /// Each check is healthy, degraded or unhealthy. Read-only: takes no lock, creates and
    /// writes nothing. Exit 0 healthy or degraded, else the exit code of the worst unhealthy
    /// check (3 corrupt, 7 disk full, 6 permission, 4 schema, 1 no state, ...).
    Health {
        #[command(flatten)]
        json: cli::JsonArgs,
        /// Redis: how many PINGs the latency figures (p50/p95) are taken from
        #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=10000))]
        pings: u16,
    },
    /// What the audit log and the disk say: operations by kind, error rate, p50/p95/max
    /// duration per operation, lock waits, stale takeovers, sizes and disk free
    ///
    /// Read-only.
    Diagnostics {
        #[command(flatten)]
        json: cli::JsonArgs,
        /// Also failures by exit code per operation and the log files read
        #[arg(short, long)]
        verbose: bool,
        /// Redis: how many PINGs the latency figures (p50/p95) are taken from
        #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=10000))]
        pings: u16,
    },
    /// Print the figures for Prometheus: operations, durations, lock waits, state, backups, locks
    ///
    /// The Prometheus text exposition format, for node_exporter's textfile collector or any
    /// scraper: operations by tool, op and exit code; duration and lock-wait histograms;
    /// stale-lock takeovers; the state's size, revision and condition; backups, checkpoints,
    /// held and stale locks; degraded mode. Counts come from the audit log, so they go down
    /// when rotation drops its oldest file. Read-only: takes no lock, creates and writes
    /// nothing but --output. --json prints the same samples as an array of
    /// {name, type, help, labels, value}. Exit 0 whatever the state's condition (it is a
    /// figure), 4 bad --label.
    Metrics {
        /// Write to FILE instead of stdout, replacing it atomically (a *.prom file of the
        /// textfile collector is never seen half-written)
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Add NAME="VALUE" to every sample, to tell apart several states scraped on one
        /// host (repeatable; exit 4 for a bad or repeated NAME)
        #[arg(long = "label", value_name = "NAME=VALUE")]
        labels: Vec<String>,
        #[command(flatten)]
        json: cli::JsonArgs,
    },
    /// Time reads, writes, sets and lock cycles on a temporary copy of the state
    ///
    /// The copy lives in .benchmark-PID/ in the state root (same filesystem, so fsync costs
    /// count) and is removed afterwards; the live state is never touched. Prints ops/s and
    /// p50/p95/max per kind, measured in-process (process start-up not included).
    /// Exit 4 for N out of 1..=100000.
    Benchmark {
        /// Operations of each kind
        #[arg(long, value_name = "N", default_value_t = 100)]
        operations: usize,
        #[command(flatten)]
        json: cli::JsonArgs,
    },
    /// List the states: the namespaces on a Redis server, or the state files under a folder
    ListStates {
        /// The folder to search (file backend; default: the current one)
        dir: Option<std::path::PathBuf>,
        #[command(flatten)]
        json: cli::StreamArgs,
    },
    /// Copy the state, its backups and checkpoints to another backend, and verify them
    ///
    /// Exit 4 when the target has a state already (unless --force), 3 when a
    /// copy does not read back equal, 8 when a server cannot be reached.
    MigrateBackend {
        /// The backend to copy to: redis://HOST:PORT/DB, redis+unix:///PATH?db=N, or file
        #[arg(long, value_name = "URL")]
        to: String,
        /// Replace a state the target has already (it is backed up there first)
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        json: cli::JsonArgs,
    },
    /// Summarize the state (default)
    ///
    /// Exit 0 valid, 1 missing, 3 corrupt, 4 invalid.
    Status(StatusArgs),
    /// Review the audit log
    #[command(subcommand)]
    Audit(cli::audit::AuditCommand),
    /// Run as a Claude Code hook, with the hook's JSON payload on stdin
    ///
    /// post-tool-use records workflow signals and the phase by the tracker rules;
    /// user-prompt-submit prints the [ACTIVATE:CODE] block of the skill the prompt
    /// calls for (and a status section when the prompt asks for the status) and
    /// records lastActivation. The state is STATE_FILE, else the nearest
    /// .workflow-state.json up from the payload's cwd, else a new one at the
    /// project root (CLAUDE_PROJECT_DIR); created when missing. doctor checks an
    /// installation.
    ///
    /// Always exits 0 so the session goes on: bad input, a bad rules file or a
    /// lock timeout leaves the state unchanged, prints one line on stderr and is
    /// recorded in the audit log (op hook, outcome error). See README.md, 'Claude Code hooks'.
    Hook(HookArgs),
    #[command(flatten)]
    Docs(cli::docs::Docs),
}

// The arguments of `Command::Init` (a type of its own so that
// `one_subcommand` can build its parser alone).
#[derive(clap::Args)]
struct InitArgs {
    #[command(flatten)]
    json: cli::JsonArgs,
}

// The arguments of `Command::Read` (a type of its own so that
// `one_subcommand` can build its parser alone).
#[derive(clap::Args)]
struct ReadArgs {
    /// A path such as .phase or .degradedMode.enabled [default: .]
    path: Option<String>,
    /// Print strings without quotes
    #[arg(short, long)]
    raw: bool,
    /// Exit 1 when the value is null, false or missing (as jq -e)
    #[arg(short = 'e', long)]
    exit_status: bool,
    /// Accepted for symmetry: the output is JSON already (unless --raw)
    #[arg(long)]
    json: bool,
    /// The value as JSON on one line
    #[arg(short = 'c', long)]
    compact: bool,
}

// The arguments of `Command::Write` (a type of its own so that
// `one_subcommand` can build its parser alone).
#[derive(clap::Args)]
struct WriteArgs {
    /// The JSON document, or - for standard input
    #[arg(value_name = "JSON")]
    document: String,
    /// Why, recorded in the backup's name
    reason: Option<String>,
    /// Refuse unless the stored metadata.revision is N
    #[arg(long, value_name = "N")]
    expect_revision: Option<u64>,
    /// Write even if the document's metadata.revision is older than the
    /// live state's (the live version is backed up first)
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    json: cli::JsonArgs,
}

// The arguments of `Command::Set` (a type of its own so that
// `one_subcommand` can build its parser alone).
#[derive(clap::Args)]
struct SetArgs {
    /// A path such as .phase
    path: String,
    /// A JSON value such as '"impl"', 3 or '{"a":1}'
    value: String,
    /// Take VALUE as a plain string
    #[arg(short, long)]
    string: bool,
    #[command(flatten)]
    json: cli::JsonArgs,
}

// The arguments of `Command::Merge` (a type of its own so that
// `one_subcommand` can build its parser alone).
#[derive(clap::Args)]
struct MergeArgs {
    /// A JSON object; null deletes a key
    patch: String,
    #[command(flatten)]
    json: cli::JsonArgs,
}

// The arguments of `Command::Append` (a type of its own so that
// `one_subcommand` can build its parser alone).
#[derive(clap::Args)]
struct AppendArgs {
    /// A path such as .completedTasks
    path: String,
    /// A JSON value such as '"task-1"'
    value: String,
    /// Take VALUE as a plain string
    #[arg(short, long)]
    string: bool,
    #[command(flatten)]
    json: cli::JsonArgs,
}

// The arguments of `Command::Del` (a type of its own so that
// `one_subcommand` can build its parser alone).
#[derive(clap::Args)]
struct DelArgs {
    /// A path such as .context.ticket or .completedTasks[0]
    path: String,
    /// Exit 0 when there is nothing at PATH (nothing is changed or committed)
    #[arg(long)]
    missing_ok: bool,
    #[command(flatten)]
    json: cli::JsonArgs,
}

// The arguments of `Command::Mv` (a type of its own so that
// `one_subcommand` can build its parser alone).
#[derive(clap::Args)]
struct MvArgs {
    /// The path of the value, such as .context.old
    from: String,
    /// Where it goes, such as .context.new
    to: String,
    /// Replace a value TO holds already
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    json: cli::JsonArgs,
}

// The arguments of `Command::Signal` (a type of its own so that
// `one_subcommand` can build its parser alone).
#[derive(clap::Args)]
struct SignalArgs {
    /// The signal, such as PHASE1_START
    name: String,
    #[command(flatten)]
    json: cli::JsonArgs,
}

// The arguments of `Command::Validate` (a type of its own so that
// `one_subcommand` can build its parser alone).
#[derive(clap::Args)]
struct ValidateArgs {
    #[command(flatten)]
    json: cli::JsonArgs,
}

// The arguments of `Command::Status` (a type of its own so that
// `one_subcommand` can build its parser alone).
#[derive(clap::Args)]
struct StatusArgs {
    #[command(flatten)]
    json: cli::JsonArgs,
}

fn run(cli: Cli) -> Result<Code> {
    if let Some(Command::Hook(args)) = &cli.command {
        // Before the settings are checked: a hook reports a bad setting in the
        // audit log and exits 0 rather than fail the session it serves.
        let done = hooks::call(args, &cli.global);
        if !done.stdout.is_empty() {
            cli::print(&done.stdout);
        }
        return Ok(done.code);
    }
    let ctx = Ctx::new(TOOL, &cli.global)?;
    let command = cli.command.unwrap_or(Command::Status(StatusArgs {
        json: cli::JsonArgs::default(),
    }));
    match command {
        Command::Init(InitArgs { json }) => document::init(&ctx.with_output(&json)),
        Command::Read(ReadArgs {
            path,
            raw,
            exit_status,
            json,
            compact,
        }) => {
            let out = cli::JsonArgs {
                json,
                compact,
                jsonl: false,
            };
            document::read(&ctx.with_output(&out), path.as_deref(), raw, exit_status)
        }
        Command::Write(WriteArgs {
            document: doc,
            reason,
            expect_revision,
            force,
            json,
        }) => document::write(
            &ctx.with_output(&json),
            &doc,
            reason.as_deref(),
            expect_revision,
            force,
        ),
        Command::Set(SetArgs {
            path,
            value,
            string,
            json,
        }) => document::set(&ctx.with_output(&json), &path, &value, string),
        Command::Merge(MergeArgs { patch, json }) => {
            document::merge(&ctx.with_output(&json), &patch)
        }
        Command::Append(AppendArgs {
            path,
            value,
            string,
            json,
        }) => document::append(&ctx.with_output(&json), &path, &value, string),
        Command::Del(DelArgs {
            path,
            missing_ok,
            json,
        }) => document::del(&ctx.with_output(&json), &path, missing_ok),
        Command::Mv(MvArgs {
            from,
            to,
            force,
            json,
        }) => document::mv(&ctx.with_output(&json), &from, &to, force),
        Command::Signal(SignalArgs { name, json }) => {
            document::signal(&ctx.with_output(&json), &name)
        }
        Command::Validate(ValidateArgs { json }) => check::validate(&ctx.with_output(&json)),
        Command::Backup { reason, json } => {
            backups::backup(&ctx.with_output(&json), reason.as_deref())
        }
        Command::ListBackups { json } => backups::list_backups(&ctx.with_output(&json)),
        Command::Recover {
            pattern,
            force,
            json,
        } => backups::recover(&ctx.with_output(&json), pattern.as_deref(), force),
        Command::Migrate { json } => document::migrate(&ctx.with_output(&json)),
        Command::Status(StatusArgs { json }) => check::status(&ctx.with_output(&json)),
        Command::MigrateBackend { to, force, json } => {
            states::migrate_backend(&ctx.with_output(&json), &to, force)
        }
        Command::ListStates { dir, json } => {
            states::list_states(&ctx.with_output(&json.into()), dir.as_deref())
        }
        Command::Audit(cmd) => cli::audit::run(&ctx, cmd),
        Command::VerifyIntegrity { json } => check::verify_integrity(&ctx.with_output(&json)),
        Command::ValidateBackup { id, json } => {
            check::validate_backup(&ctx.with_output(&json), &id)
        }
        Command::Repair { dry_run, json } => maintain::repair(&ctx.with_output(&json), dry_run),
        Command::Export {
            format,
            output,
            json,
        } => maintain::export(&ctx.with_output(&json), format, output.as_deref()),
        Command::Import { file, force, json } => {
            maintain::import(&ctx.with_output(&json), &file, force)
        }
        Command::Cleanup(args) => maintain::cleanup(&ctx.with_output(&args.json), &args.what),
        Command::Health { json, pings } => check::health(&ctx.with_output(&json), pings.into()),
        Command::Diagnostics {
            json,
            verbose,
            pings,
        } => maintain::diagnostics(&ctx.with_output(&json), verbose, pings.into()),
        Command::Metrics {
            output,
            labels,
            json,
        } => metrics::metrics(&ctx.with_output(&json), output.as_deref(), &labels),
        Command::Benchmark { operations, json } => {
            maintain::benchmark(&ctx.with_output(&json), operations)
        }
        Command::Hook(_) => unreachable!("handled before the context is built"),
        Command::Docs(docs) => docs.run::<Cli>(),
    }
}

/// The parser of the subcommand `name` alone, for the commands every hook
/// and script calls (see [`cli::parse_with`]); the others are parsed by the
/// whole tree.
fn one_subcommand(name: &str) -> Option<clap::Command> {
    use clap::{Args, Command as Sub};
    Some(match name {
        "init" => InitArgs::augment_args(Sub::new("init")),
        "read" => ReadArgs::augment_args(Sub::new("read")),
        "write" => WriteArgs::augment_args(Sub::new("write")),
        "set" => SetArgs::augment_args(Sub::new("set")),
        "merge" => MergeArgs::augment_args(Sub::new("merge")),
        "append" => AppendArgs::augment_args(Sub::new("append")),
        "del" => DelArgs::augment_args(Sub::new("del")),
        "mv" => MvArgs::augment_args(Sub::new("mv")),
        "signal" => SignalArgs::augment_args(Sub::new("signal")),
        "validate" => ValidateArgs::augment_args(Sub::new("validate")),
        "status" => StatusArgs::augment_args(Sub::new("status")),
        "hook" => HookArgs::augment_args(Sub::new("hook")),
        _ => return None,
    })
}

pub fn main() -> ExitCode {
    match cli::parse_with::<Cli>(|_| None, one_subcommand) {
        Ok(cli) => {
            let output = cli::Output::from_args(std::env::args_os());
            cli::finish(TOOL, output, run(cli))
        }
        Err(code) => code.into(),
    }
}
