//! `lock-manager`: placeholder front; its issue fills in the subcommands.

use std::process::ExitCode;

use clap::Parser;
use wfstate::cli;
use wfstate::config::GlobalArgs;

/// Part of wfstate.
#[derive(Parser)]
#[command(name = "lock-manager", version)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
}

fn main() -> ExitCode {
    match cli::parse::<Cli>() {
        Ok(_) => ExitCode::SUCCESS,
        Err(code) => code.into(),
    }
}
