//! Where things live and how long to wait: the state file, its root and the
//! folders beside it, the audit log, the lock timeout and debug output.
//!
//! Every binary takes the same global flags, each with an environment twin
//! (`--state-file`/`STATE_FILE`, `--audit-log`/`AUDIT_LOG`,
//! `--lock-timeout`/`LOCK_TIMEOUT`, `--debug`/`DEBUG`). Nothing here touches
//! the disk: folders are created by the operations that need them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

/// The state file used when neither `--state-file` nor `STATE_FILE` names one.
pub const DEFAULT_STATE_FILE: &str = ".workflow-state.json";
/// The audit log's name in the state root when `AUDIT_LOG` is not set.
pub const DEFAULT_AUDIT_LOG: &str = ".workflow-audit.jsonl";
/// The largest state, argument or import the toolkit reads (16 MiB).
pub const MAX_INPUT_BYTES: u64 = 16 * 1024 * 1024;

/// The global options every binary accepts.
#[derive(Clone, Debug, clap::Args)]
pub struct GlobalArgs {
    /// The state file [default: ./.workflow-state.json]
    #[arg(long, env = "STATE_FILE", value_name = "FILE")]
    pub state_file: Option<PathBuf>,

    /// The audit log [default: .workflow-audit.jsonl beside the state file]
    #[arg(long, env = "AUDIT_LOG", value_name = "FILE")]
    pub audit_log: Option<PathBuf>,

    /// Seconds to wait for a lock [default: 30]
    #[arg(long, env = "LOCK_TIMEOUT", value_name = "SECONDS")]
    pub lock_timeout: Option<String>,

    /// Print debug lines on stderr (also DEBUG=1)
    #[arg(long)]
    pub debug: bool,

    /// Never colour output (also NO_COLOR)
    #[arg(long)]
    pub no_color: bool,
}

impl GlobalArgs {
    /// The configuration these flags and the environment describe.
    pub fn config(&self) -> Result<Config> {
        let state_file = self
            .state_file
            .clone()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_FILE));
        let mut cfg = Config::new(state_file);
        if let Some(log) = self.audit_log.clone().filter(|p| !p.as_os_str().is_empty()) {
            cfg.audit_log = log;
        }
        if let Some(t) = self.lock_timeout.as_deref().filter(|t| !t.is_empty()) {
            cfg.lock_timeout = parse_seconds(t, "lock timeout")?;
        }
        cfg.debug =
            self.debug || std::env::var_os("DEBUG").is_some_and(|v| v == "1" || v == "true");
        Ok(cfg)
    }
}

/// Where the toolkit reads and writes, and how long it waits.
#[derive(Clone, Debug)]
pub struct Config {
    /// The state file.
    pub state_file: PathBuf,
    /// The folder holding the state file; every other file lives beside it.
    pub root: PathBuf,
    /// The audit log (JSON Lines).
    pub audit_log: PathBuf,
    /// How long lock waits last by default.
    pub lock_timeout: Duration,
    /// Whether to print debug lines on stderr.
    pub debug: bool,
    /// The run this invocation belongs to (`WFSTATE_RUN_ID`), for the audit log.
    pub run_id: Option<String>,
}

impl Config {
    /// A configuration for `state_file` with every other setting at its default.
    pub fn new(state_file: impl Into<PathBuf>) -> Config {
        let state_file = state_file.into();
        let root = match state_file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Config {
            audit_log: root.join(DEFAULT_AUDIT_LOG),
            state_file,
            root,
            lock_timeout: Duration::from_secs(30),
            debug: false,
            run_id: std::env::var("WFSTATE_RUN_ID")
                .ok()
                .filter(|s| !s.is_empty()),
        }
    }

    /// `.state-backups/`
    pub fn backups_dir(&self) -> PathBuf {
        self.root.join(".state-backups")
    }
    /// `.locks/`
    pub fn locks_dir(&self) -> PathBuf {
        self.root.join(".locks")
    }
    /// `.checkpoints/`
    pub fn checkpoints_dir(&self) -> PathBuf {
        self.root.join(".checkpoints")
    }
    /// `.signals/`
    pub fn signals_dir(&self) -> PathBuf {
        self.root.join(".signals")
    }
    /// `config/`, copied into checkpoints when present.
    pub fn config_dir(&self) -> PathBuf {
        self.root.join("config")
    }

    /// Prints a debug line on stderr when debugging is on.
    pub fn debug(&self, tool: &str, msg: impl AsRef<str>) {
        if self.debug {
            eprintln!("{tool}: debug: {}", msg.as_ref());
        }
    }
}

/// Parses a number of seconds such as `30`, `0.5` or `0`.
pub fn parse_seconds(text: &str, what: &str) -> Result<Duration> {
    let secs: f64 = text.trim().parse().map_err(|_| {
        Error::validation(format!("bad {what} '{text}'"))
            .hint("give a number of seconds, such as 30 or 0.5")
    })?;
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(Error::validation(format!("bad {what} '{text}'"))
            .hint("give a number of seconds from 0 up"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a duration such as `7d`, `12h`, `30m`, `45s` or `1500ms` (bare numbers are seconds).
pub fn parse_duration(text: &str) -> Result<Duration> {
    let t = text.trim();
    let bad = || {
        Error::validation(format!("bad duration '{text}'"))
            .hint("write it as a number with a unit: 7d, 12h, 30m, 45s or 500ms")
    };
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let mult = match unit {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        "w" => 7.0 * 86400.0,
        _ => return Err(bad()),
    };
    let secs = n * mult;
    if !secs.is_finite() || secs < 0.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Whether `path` is `root` itself or lies below it (both already canonical).
pub fn is_within(path: &Path, root: &Path) -> bool {
    path.starts_with(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_the_state_files_folder() {
        assert_eq!(Config::new("a/b/s.json").root, Path::new("a/b"));
        assert_eq!(Config::new("s.json").root, Path::new("."));
        assert_eq!(
            Config::new("s.json").audit_log,
            Path::new("./.workflow-audit.jsonl")
        );
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        assert_eq!(
            parse_duration("12h").unwrap(),
            Duration::from_secs(12 * 3600)
        );
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        assert!(parse_duration("7x").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_seconds("-1", "t").is_err());
        assert_eq!(
            parse_seconds("0.25", "t").unwrap(),
            Duration::from_millis(250)
        );
    }
}
