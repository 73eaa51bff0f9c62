//! `state-manager`: placeholder front; its issue fills in the subcommands.
//! This branch carries only the `audit` subcommand, for the lead to merge.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wfstate::cli;
use wfstate::config::GlobalArgs;

/// Part of wfstate.
#[derive(Parser)]
#[command(name = "state-manager", version)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Review the audit log
    #[command(subcommand)]
    Audit(wfstate::audit::cli::AuditCommand),
}

fn main() -> ExitCode {
    let args = match cli::parse::<Cli>() {
        Ok(a) => a,
        Err(code) => return code.into(),
    };
    let result = args.global.config().and_then(|cfg| match args.command {
        Command::Audit(cmd) => wfstate::audit::cli::run(&cfg, cmd),
    });
    cli::finish("state-manager", result)
}
