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
/// The folder of backups in the state root (see [`Config::backups_dir`]).
pub const BACKUPS_FOLDER: &str = ".state-backups";
/// The folder of checkpoints in the state root (see [`Config::checkpoints_dir`]).
pub const CHECKPOINTS_FOLDER: &str = ".checkpoints";
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

    /// Print tables without their header line (for awk, cut, while read)
    #[arg(long)]
    pub no_header: bool,

    /// Act for this lock owner [default: LOCK_OWNER_PID, else the calling shell]
    #[arg(long, value_name = "PID")]
    pub owner: Option<u32>,

    /// Where state and locks live: file [default], or a server URL (WFSTATE_BACKEND)
    #[arg(long, env = "WFSTATE_BACKEND", value_name = "URL")]
    pub backend: Option<String>,

    #[command(flatten)]
    pub retention: crate::state::backup::RetentionArgs,
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
            cfg.lock_timeout = parse_duration(t, "lock timeout")?;
        }
        cfg.debug = self.debug || crate::debug::from_env();
        Ok(cfg)
    }

    /// The backup retention these flags and the environment describe.
    pub fn retention(&self) -> Result<crate::state::backup::Retention> {
        self.retention.retention()
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

    /// Where this state file's backups live: `.state-backups/` for the
    /// default `.workflow-state.json`, `.state-backups/NAME/` for a state
    /// file named NAME, so two state files in one folder never see (recover
    /// from, prune, list) each other's backups.
    pub fn backups_dir(&self) -> PathBuf {
        self.own_folder(BACKUPS_FOLDER)
    }
    /// `.locks/`
    pub fn locks_dir(&self) -> PathBuf {
        self.root.join(".locks")
    }
    /// Where this state file's checkpoints live: `.checkpoints/`, or
    /// `.checkpoints/NAME/` for a state file named NAME (see [`Self::backups_dir`]).
    pub fn checkpoints_dir(&self) -> PathBuf {
        self.own_folder(CHECKPOINTS_FOLDER)
    }

    /// `folder` in the root, and below it the state file's own subfolder
    /// unless the state file has the default name.
    fn own_folder(&self, folder: &str) -> PathBuf {
        let shared = self.root.join(folder);
        match self.state_file.file_name() {
            Some(name) if name != DEFAULT_STATE_FILE => shared.join(name),
            _ => shared,
        }
    }
    /// `.signals/`
    pub fn signals_dir(&self) -> PathBuf {
        self.root.join(".signals")
    }
    /// `config/`, copied into checkpoints when present.
    pub fn config_dir(&self) -> PathBuf {
        self.root.join("config")
    }
}

/// The longest duration any flag, variable or argument may give: 100 years.
/// Longer values are refused (exit 4) rather than saturated, so a typo such
/// as `99999999999999999999d` is reported instead of meaning "forever".
pub const MAX_DURATION: Duration = Duration::from_secs(36_525 * 86_400);

/// Parses a duration such as `30`, `0.5`, `7d`, `12h`, `30m`, `45s` or
/// `1500ms`; `what` names the input in the error (`--timeout`, `lock
/// timeout`).
///
/// The one parser behind every duration the toolkit reads (flags,
/// environment variables, positional arguments, in every binary and the
/// hooks). A bare number is seconds everywhere, as for sleep(1),
/// timeout(1) and `flock -w`; the units are `ms`, `s`, `m`, `h`, `d` and
/// `w`. Negative, non-finite and over-long values (beyond [`MAX_DURATION`])
/// are refused with exit 4 and never panic.
pub fn parse_duration(text: &str, what: &str) -> Result<Duration> {
    let t = text.trim();
    let shown = text.escape_debug();
    let bad = || {
        Error::validation(format!("bad {what} '{shown}'"))
            .hint("give seconds (30, 0.5) or a number with a unit: 500ms, 45s, 30m, 12h, 7d, 2w")
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
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if d <= MAX_DURATION => Ok(d),
        _ => Err(
            Error::validation(format!("bad {what} '{shown}': longer than 100 years"))
                .hint("give a duration of at most 100 years, e.g. 7d or 12h"),
        ),
    }
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
    fn each_state_file_has_its_own_backups_and_checkpoints() {
        let default = Config::new("a/.workflow-state.json");
        assert_eq!(default.backups_dir(), Path::new("a/.state-backups"));
        assert_eq!(default.checkpoints_dir(), Path::new("a/.checkpoints"));
        let other = Config::new("a/build.json");
        assert_eq!(
            other.backups_dir(),
            Path::new("a/.state-backups/build.json")
        );
        assert_eq!(
            other.checkpoints_dir(),
            Path::new("a/.checkpoints/build.json")
        );
    }

    #[test]
    fn huge_or_odd_durations_are_refused_not_panics() {
        for bad in [
            "99999999999999999999d",
            "99999999999999999999",
            "36526d",
            &"9".repeat(400),
            "1e400",
            "inf",
            "NaN",
            "-1",
            "-0.5s",
            ".",
            "1.2.3",
            "5 d",
            "d",
        ] {
            let e = parse_duration(bad, "duration").unwrap_err();
            assert_eq!(e.code(), crate::exit::Code::ValidationFailed, "{bad:?}");
            assert!(parse_duration(bad, "--timeout").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(
            parse_duration("7d", "duration").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        assert_eq!(
            parse_duration("12h", "duration").unwrap(),
            Duration::from_secs(12 * 3600)
        );
        assert_eq!(
            parse_duration("30m", "duration").unwrap(),
            Duration::from_secs(1800)
        );
        assert_eq!(
            parse_duration("500ms", "duration").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(
            parse_duration("45", "duration").unwrap(),
            Duration::from_secs(45)
        );
        assert!(parse_duration("7x", "duration").is_err());
        assert_eq!(
            parse_duration("2w", "duration").unwrap(),
            Duration::from_secs(14 * 86400)
        );
        assert_eq!(
            parse_duration("0.5", "duration").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(parse_duration("36525d", "duration").unwrap(), MAX_DURATION);
        assert!(parse_duration("", "duration").is_err());
        assert!(parse_duration("-1", "t").is_err());
        assert_eq!(
            parse_duration("0.25", "t").unwrap(),
            Duration::from_millis(250)
        );
    }
}
