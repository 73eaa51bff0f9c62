//! What the three binaries share at their edge: parsing with clap while
//! keeping the toolkit's exit codes (usage errors are 1, not clap's 2, which
//! would read as LOCK_TIMEOUT), printing errors once, and writing to stdout
//! without treating a closed pipe as a failure.

pub mod error_recovery;
pub mod lock_manager;
pub mod state_manager;

use std::io::{self, Write};
use std::process::ExitCode;

use crate::error::Error;
use crate::exit::Code;

/// Parses the command line; on `--help`/`--version` prints and returns
/// `Err(Success)`, on a usage error prints it and returns `Err(GeneralError)`.
pub fn parse<C: clap::Parser>() -> Result<C, Code> {
    C::try_parse().map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            Code::GeneralError
        } else {
            Code::Success
        }
    })
}

/// Turns a subcommand's outcome into the process exit status, printing an
/// error once as `tool: what failed: why — what to do`.
pub fn finish(tool: &str, result: Result<Code, Error>) -> ExitCode {
    match result {
        Ok(code) => code.into(),
        Err(e) => {
            eprintln!("{tool}: {e}");
            e.code().into()
        }
    }
}

/// Writes `text` to stdout; a closed pipe (`| head`) is not an error.
pub fn print(text: &str) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

/// Writes `text` and a newline to stdout.
pub fn println(text: &str) {
    let mut out = io::stdout().lock();
    let _ = out
        .write_all(text.as_bytes())
        .and_then(|_| out.write_all(b"\n"))
        .and_then(|_| out.flush());
}

/// Writes a JSON value, pretty-printed, to stdout.
pub fn print_json(value: &serde_json::Value) {
    println(&serde_json::to_string_pretty(value).expect("JSON values always serialize"));
}
