//! What each exit code means, what to do about it (`suggest CODE`), and
//! the automatic strategy `handle CODE --apply` runs. A strategy first
//! looks for the damage its code names and acts only on that:
//!
//! | code | damage looked for | what is done |
//! | --- | --- | --- |
//! | 2 | stale lock records (holders dead, pid reused, TTL passed, other boot) | removed |
//! | 3 | a live state that does not parse or fails its checksum; corrupt backups, checkpoints, lock records | the state restored from the newest valid backup (the damaged file kept aside); corrupt backups moved to `.state-backups/corrupt/`; checkpoints and lock records reported, not touched |
//! | 4 | a live state that breaks the schema | restored from the newest valid backup (the invalid one kept as a backup) |
//! | 7 | backups and checkpoints beyond retention, leftover temp files | removed |
//! | others | — | none: the suggestion is printed |
//!
//! `handle` exits 0 only when the damage was there and is repaired; else
//! it exits with CODE and says why (no such damage found, or what is left),
//! so `cmd || error-recovery handle $? --apply` keeps a script's failure
//! visible and never undoes good work: exit 4 for a typo finds a valid
//! state and changes nothing. A strategy never touches a live lock, never
//! discards a corrupt file (it is kept aside), and never removes the newest
//! checkpoint.

use crate::error::{Error, Result};
use crate::exit::Code;

/// Parses CODE: one of the toolkit's exit codes 0–10 (exit 4 otherwise).
pub fn parse_code(text: &str) -> Result<Code> {
    text.trim()
        .parse::<i32>()
        .ok()
        .and_then(Code::from_i32)
        .ok_or_else(|| {
            Error::validation(format!("unknown exit code '{}'", text.escape_debug())).hint(
                "give one of the toolkit's exit codes, 0-10 (the table is in 'error-recovery --help')",
            )
        })
}

/// What happened and what to run, for one exit code.
pub fn suggestion(code: Code) -> (&'static str, &'static [&'static str]) {
    match code {
        Code::Success => ("nothing failed", &[]),
        Code::GeneralError => (
            "the command failed for a reason not covered by a specific code (often a usage error or a missing state file)",
            &[
                "read the error line above: it says what to do",
                "state-manager status",
                "state-manager init   # if there is no state file yet",
            ],
        ),
        Code::LockTimeout => (
            "a lock was not acquired in time: another process holds it, or a dead one left it behind",
            &[
                "lock-manager list                      # who holds what",
                "error-recovery handle 2 --apply        # remove stale locks",
                "LOCK_TIMEOUT=60 <your command>         # wait longer for a live holder",
            ],
        ),
        Code::StateCorruption => (
            "the state, a backup or a checkpoint does not parse or fails its checksum",
            &[
                "state-manager verify-integrity         # which file is damaged (changes nothing)",
                "error-recovery handle 3 --apply        # repair only what is found damaged",
            ],
        ),
        Code::ValidationFailed => (
            "the input or the document breaks the schema or a rule (bad JSON, bad name, lock hierarchy)",
            &[
                "read the error line above: it names what was refused; nothing was changed",
                "state-manager validate                 # is the live state itself valid? (changes nothing)",
                "state-manager migrate                  # for an older document",
            ],
        ),
        Code::DependencyMissing => (
            "something the operation needs is absent (a command to run, a schema file)",
            &[
                "command -v <the command>               # is it on PATH?",
                "check the file named in the error exists",
            ],
        ),
        Code::PermissionDenied => (
            "access was refused, a symlink leading out of the state root was refused, or you are not the lock owner",
            &[
                "ls -la \"$(dirname \"$STATE_FILE\")\"  # owner and mode of the state root",
                "lock-manager list                      # whose lock it is",
                "run as the user who owns the state root",
            ],
        ),
        Code::DiskFull => (
            "no space left on the device, or the quota is exceeded",
            &[
                "df -h .",
                "error-recovery handle 7 --apply        # prune backups, checkpoints, temp files",
                "error-recovery cleanup 1 --keep 1      # remove checkpoints older than a day",
            ],
        ),
        Code::NetworkError => (
            "a network backend failed (reserved: the toolkit itself uses no network)",
            &["error-recovery retry --attempts 5 -- <your command>"],
        ),
        Code::Timeout => (
            "an overall deadline passed (retry --timeout, run --timeout)",
            &[
                "raise --timeout, or find out why the command is slow",
                "error-recovery status                  # recent failures",
            ],
        ),
        Code::ResourceExhausted => (
            "out of file descriptors or memory, or an input over the 16 MiB limit",
            &[
                "ulimit -n                              # raise the file limit",
                "keep large data outside the state file",
                "error-recovery retry --delay 5 -- <your command>",
            ],
        ),
    }
}

/// The strategy `handle --apply` runs for a code, in words.
pub fn strategy(code: Code) -> Option<&'static str> {
    match code {
        Code::LockTimeout => Some("remove stale locks"),
        Code::StateCorruption => Some(
            "restore a corrupt state from the newest valid backup and move corrupt backups aside, if it finds any",
        ),
        Code::ValidationFailed => Some(
            "restore the newest valid backup if the live state breaks the schema (a refused input changes nothing)",
        ),
        Code::DiskFull => Some(
            "prune backups and checkpoints beyond retention and leftover temp files, if there are any",
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_outside_the_table_are_refused() {
        assert_eq!(parse_code("3").unwrap(), Code::StateCorruption);
        assert_eq!(parse_code(" 10 ").unwrap(), Code::ResourceExhausted);
        for bad in ["11", "-1", "x", "", "137"] {
            assert_eq!(
                parse_code(bad).unwrap_err().code(),
                Code::ValidationFailed,
                "{bad}"
            );
        }
    }

    #[test]
    fn every_failure_code_has_a_suggestion() {
        for code in Code::ALL.into_iter().skip(1) {
            let (what, steps) = suggestion(code);
            assert!(!what.is_empty() && !steps.is_empty(), "{code:?}");
        }
    }

    #[test]
    fn strategies_exist_for_2_3_4_7_only() {
        let with: Vec<i32> = Code::ALL
            .into_iter()
            .filter(|c| strategy(*c).is_some())
            .map(Code::as_i32)
            .collect();
        assert_eq!(with, vec![2, 3, 4, 7]);
    }
}
