//! Where things live and how long to wait: the state file, its root and the
//! folders beside it, the audit log, the lock timeout and debug output.
//!
//! Every binary takes the same global flags, each with an environment twin
//! (`--state-file`/`STATE_FILE`, `--audit-log`/`AUDIT_LOG`,
//! `--lock-timeout`/`LOCK_TIMEOUT`, `--debug`/`DEBUG`). Nothing here writes
//! to the disk: folders are created by the operations that need them.
//!
//! # Where the state is
//!
//! One rule, [`locate_state`], used by every binary, by the Claude Code hooks
//! (starting from the payload's `cwd`) and so by the shims (which leave it to
//! the binaries):
//!
//! 1. `--state-file`/`STATE_FILE`, when set and not empty;
//! 2. else the nearest state up the tree: from the start folder up to the
//!    project root, in each folder the first existing of
//!    `.workflow-state.json` and `.claude/.workflow-state.json` (where the
//!    hooks of earlier versions made it);
//! 3. else a new `.workflow-state.json` at the project root:
//!    `CLAUDE_PROJECT_DIR` when the start folder is inside it, else the git
//!    top level (the nearest folder holding `.git`), else the start folder.
//!
//! The walk stops (after looking in it) at `CLAUDE_PROJECT_DIR`, at the first
//! folder holding `.git` (a file or a folder: no git process is run) and at
//! `HOME`; and it stops before a folder on another filesystem (as git does
//! without `GIT_DISCOVERY_ACROSS_FILESYSTEM`) and before a shared temp folder
//! (world-writable and sticky, such as `/tmp`), so a state that someone else
//! left in `/tmp` is never picked up by a walk from a temp folder. It costs a
//! few stat(2) calls per folder climbed.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

/// The state file used when neither `--state-file` nor `STATE_FILE` names one.
pub const DEFAULT_STATE_FILE: &str = ".workflow-state.json";
/// Where the hooks of earlier versions made the state, below a project
/// folder; still found by the walk up the tree.
pub const LEGACY_HOOK_STATE_FILE: &str = ".claude/.workflow-state.json";
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
    /// The state file [default: the nearest .workflow-state.json up to the
    /// project root, else a new one at the project root]
    // Any text, the empty one too: an empty STATE_FILE is unset (as the
    // shims' `${STATE_FILE:-...}` always treated it), not a usage error.
    #[arg(long, env = "STATE_FILE", value_name = "FILE", value_parser = any_path())]
    pub state_file: Option<PathBuf>,

    /// The audit log [default: .workflow-audit.jsonl beside the state file]
    #[arg(long, env = "AUDIT_LOG", value_name = "FILE", value_parser = any_path())]
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

/// A path flag that takes any text, the empty one meaning "unset".
fn any_path() -> impl clap::builder::TypedValueParser<Value = PathBuf> {
    use clap::builder::TypedValueParser;
    clap::builder::OsStringValueParser::new().map(PathBuf::from)
}

impl GlobalArgs {
    /// The configuration these flags and the environment describe.
    /// The state file is found by [`locate_state`] from the current folder.
    pub fn config(&self) -> Result<Config> {
        if self.names_state_file() {
            // No walk, so no search: nothing to stat.
            return self.config_from(&Search::default());
        }
        self.config_from(&Search::from_env(None, None))
    }

    /// Whether `--state-file`/`STATE_FILE` names the state (set, not empty).
    pub fn names_state_file(&self) -> bool {
        self.state_file
            .as_ref()
            .is_some_and(|p| !p.as_os_str().is_empty())
    }

    /// The configuration these flags and the environment describe, the state
    /// file found by [`locate_state`] with `search` (the hooks start from the
    /// payload's folder).
    pub fn config_from(&self, search: &Search) -> Result<Config> {
        let (state_file, found_by) = locate_state(self.state_file.as_deref(), search);
        let mut cfg = Config::new(state_file);
        cfg.found_by = found_by;
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
    /// How the state file was chosen (see [`locate_state`]).
    pub found_by: Found,
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
            found_by: Found::Given,
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

/// How [`locate_state`] chose the state file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Found {
    /// `--state-file` or `STATE_FILE`.
    Given,
    /// An existing state, the nearest up the tree from the start folder.
    UpTree,
    /// None found: a new one at `CLAUDE_PROJECT_DIR`.
    ProjectDir,
    /// None found: a new one at the git top level.
    GitTop,
    /// None found, no project root: a new one in the start folder.
    Cwd,
}

impl Found {
    /// The name in `status --json` (`found_by`).
    pub fn name(self) -> &'static str {
        match self {
            Found::Given => "given",
            Found::UpTree => "up_tree",
            Found::ProjectDir => "project_dir",
            Found::GitTop => "git_top",
            Found::Cwd => "cwd",
        }
    }

    /// Why this file, in words, for `status` and `--debug`.
    pub fn describe(self) -> &'static str {
        match self {
            Found::Given => "named by --state-file / STATE_FILE",
            Found::UpTree => "the nearest state up from the current folder",
            Found::ProjectDir => "none found: new at the project root (CLAUDE_PROJECT_DIR)",
            Found::GitTop => "none found: new at the git top level",
            Found::Cwd => "none found: new in the current folder (no project root)",
        }
    }
}

/// Where [`locate_state`] starts and what bounds its walk.
#[derive(Clone, Debug, Default)]
pub struct Search {
    /// The folder the walk starts from (absolute and canonical when it exists).
    pub start: PathBuf,
    /// `CLAUDE_PROJECT_DIR` (canonical), when set and existing.
    pub project_dir: Option<PathBuf>,
    /// `HOME` (canonical), when set and existing: the walk never climbs above it.
    pub home: Option<PathBuf>,
}

impl Search {
    /// A search from `start` (default: the current folder) with the project
    /// folder `project_dir` (default: `CLAUDE_PROJECT_DIR`) and `HOME` from
    /// the environment.
    pub fn from_env(start: Option<PathBuf>, project_dir: Option<PathBuf>) -> Search {
        let var = |name| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let project_dir = project_dir
            .filter(|p| !p.as_os_str().is_empty())
            .or_else(|| var("CLAUDE_PROJECT_DIR"))
            .and_then(|p| std::fs::canonicalize(p).ok());
        let start = match start.filter(|p| !p.as_os_str().is_empty()) {
            Some(p) => std::fs::canonicalize(&p).unwrap_or_else(|_| absolute(&p)),
            None => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        };
        Search {
            start,
            project_dir,
            home: var("HOME").and_then(|p| std::fs::canonicalize(p).ok()),
        }
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The state file and how it was chosen: `given` when set and not empty,
/// else the rule in the module docs (walk up from `search.start`, else new
/// at the project root). Only stat(2) calls; never fails (a folder it cannot
/// read is a folder without a state).
pub fn locate_state(given: Option<&Path>, search: &Search) -> (PathBuf, Found) {
    if let Some(p) = given.filter(|p| !p.as_os_str().is_empty()) {
        return (p.to_path_buf(), Found::Given);
    }
    let start = search.start.as_path();
    let project = search
        .project_dir
        .as_deref()
        .filter(|p| start.starts_with(p));
    let mut git_top = None;
    let mut dir = start;
    let mut meta = std::fs::metadata(dir).ok();
    loop {
        for name in [DEFAULT_STATE_FILE, LEGACY_HOOK_STATE_FILE] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return (candidate, Found::UpTree);
            }
        }
        if Some(dir) == project || search.home.as_deref() == Some(dir) {
            break;
        }
        if std::fs::symlink_metadata(dir.join(".git")).is_ok() {
            git_top = Some(dir);
            break;
        }
        let Some(parent) = dir.parent() else { break };
        let parent_meta = std::fs::metadata(parent).ok();
        if !climbable(meta.as_ref(), parent_meta.as_ref()) {
            break;
        }
        dir = parent;
        meta = parent_meta;
    }
    let (root, found) = match (project, git_top) {
        (Some(p), _) => (p, Found::ProjectDir),
        (None, Some(g)) => (g, Found::GitTop),
        (None, None) => (start, Found::Cwd),
    };
    (root.join(DEFAULT_STATE_FILE), found)
}

/// Whether the walk may go on from a folder (`here`, absent when it does
/// not exist) to its parent: not onto another filesystem, not into a shared
/// temp folder (world-writable and sticky, such as `/tmp`).
fn climbable(here: Option<&Metadata>, parent: Option<&Metadata>) -> bool {
    let Some(parent) = parent else { return false };
    if parent.mode() & 0o1002 == 0o1002 {
        return false;
    }
    // A start folder that does not exist (a hook's cwd that is gone) is on
    // no filesystem: climb to the first one that exists.
    here.is_none_or(|h| h.dev() == parent.dev())
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

    /// A search from `start` bounded by `home` (a temp folder, so the walk
    /// never leaves it whatever the machine holds above).
    fn search(start: &Path, home: &Path, project: Option<&Path>) -> Search {
        Search {
            start: start.to_path_buf(),
            project_dir: project.map(Path::to_path_buf),
            home: Some(home.to_path_buf()),
        }
    }

    #[test]
    fn the_state_is_found_up_the_tree_or_made_at_the_project_root() {
        let tmp = tempfile::tempdir().unwrap();
        let home = std::fs::canonicalize(tmp.path()).unwrap();
        let proj = home.join("proj");
        let sub = proj.join("a/b");
        std::fs::create_dir_all(&sub).unwrap();
        // Nothing anywhere, no project root: here.
        assert_eq!(
            locate_state(None, &search(&sub, &home, None)),
            (sub.join(DEFAULT_STATE_FILE), Found::Cwd)
        );
        // A git top level (a .git folder or file) is the root of a new state.
        std::fs::write(proj.join(".git"), "gitdir: elsewhere").unwrap();
        assert_eq!(
            locate_state(None, &search(&sub, &home, None)),
            (proj.join(DEFAULT_STATE_FILE), Found::GitTop)
        );
        // CLAUDE_PROJECT_DIR wins over git when the start is inside it...
        let a = proj.join("a");
        assert_eq!(
            locate_state(None, &search(&sub, &home, Some(&a))),
            (a.join(DEFAULT_STATE_FILE), Found::ProjectDir)
        );
        // ...and is ignored when it is not.
        let other = home.join("other");
        std::fs::create_dir(&other).unwrap();
        assert_eq!(
            locate_state(None, &search(&sub, &home, Some(&other))).1,
            Found::GitTop
        );
        // The old hooks' place is found, and the plain name wins in one folder.
        std::fs::create_dir(proj.join(".claude")).unwrap();
        std::fs::write(proj.join(LEGACY_HOOK_STATE_FILE), "{}").unwrap();
        assert_eq!(
            locate_state(None, &search(&sub, &home, None)),
            (proj.join(LEGACY_HOOK_STATE_FILE), Found::UpTree)
        );
        std::fs::write(proj.join(DEFAULT_STATE_FILE), "{}").unwrap();
        assert_eq!(
            locate_state(None, &search(&sub, &home, None)),
            (proj.join(DEFAULT_STATE_FILE), Found::UpTree)
        );
        // The nearest wins.
        std::fs::write(a.join(DEFAULT_STATE_FILE), "{}").unwrap();
        assert_eq!(
            locate_state(None, &search(&sub, &home, None)).0,
            a.join(DEFAULT_STATE_FILE)
        );
        // A folder named like the state is not a state.
        std::fs::create_dir(sub.join(DEFAULT_STATE_FILE)).unwrap();
        assert_eq!(
            locate_state(None, &search(&sub, &home, None)).0,
            a.join(DEFAULT_STATE_FILE)
        );
        // STATE_FILE wins; an empty one is unset.
        let given = Path::new("x/given.json");
        assert_eq!(
            locate_state(Some(given), &search(&sub, &home, None)),
            (given.to_path_buf(), Found::Given)
        );
        assert_eq!(
            locate_state(Some(Path::new("")), &search(&sub, &home, None)).1,
            Found::UpTree
        );
    }

    #[test]
    fn the_walk_stops_at_home_the_git_top_and_shared_temp_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let top = std::fs::canonicalize(tmp.path()).unwrap();
        let home = top.join("home");
        let sub = home.join("w");
        std::fs::create_dir_all(&sub).unwrap();
        // A state above HOME is not the user's.
        std::fs::write(top.join(DEFAULT_STATE_FILE), "{}").unwrap();
        assert_eq!(
            locate_state(None, &search(&sub, &home, None)),
            (sub.join(DEFAULT_STATE_FILE), Found::Cwd)
        );
        // Nor one above a git top level.
        let unbounded = Search {
            start: sub.clone(),
            project_dir: None,
            home: None,
        };
        std::fs::create_dir(home.join(".git")).unwrap();
        assert_eq!(
            locate_state(None, &unbounded),
            (home.join(DEFAULT_STATE_FILE), Found::GitTop)
        );
        // Nor one in or above a world-writable sticky folder such as /tmp.
        std::fs::remove_dir(home.join(".git")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o1777)).unwrap();
        std::fs::write(home.join(DEFAULT_STATE_FILE), "{}").unwrap();
        assert_eq!(
            locate_state(None, &unbounded),
            (sub.join(DEFAULT_STATE_FILE), Found::Cwd)
        );
        // A start folder that does not exist: a new state there.
        let gone = sub.join("gone");
        assert_eq!(
            locate_state(None, &search(&gone, &home, None)),
            (gone.join(DEFAULT_STATE_FILE), Found::Cwd)
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
