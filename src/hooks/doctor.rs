//! `state-manager hook doctor`: is this installation of the hooks one that
//! works? And the notice by which `user-prompt-submit` makes a broken one
//! visible in the session.
//!
//! A hook that cannot record never fails the session, so its warning goes
//! to stderr, which Claude Code shows only in verbose mode: a missing
//! binary or an unwritable state root would go unseen for weeks. The doctor
//! checks what a hook call needs — the binary, `state-manager` on `PATH`,
//! both hooks registered in a settings file Claude Code reads, the state
//! location and its root's permissions — one line per check (ok, warn,
//! fail) with what to do. It reads and stats; it never writes.
//!
//! [`state_problem`] is the part of it cheap enough for every prompt (two
//! or three stat/access calls); [`Notice`] remembers, in a small file per
//! state outside the state root (which may be the thing that is broken),
//! which problem was last shown, so a problem is told once, not on every
//! prompt, and told again when it changes or comes back after a fix.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::durable::{self, Durability};
use crate::error::{Error, Kind};
use crate::exit::Code;

/// How one check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One line of the doctor's report.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// What was checked: `binary`, `path`, `post-tool-use`,
    /// `user-prompt-submit`, `state`, `root`.
    pub check: &'static str,
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do; null when there is nothing to do.
    pub fix: Option<String>,
    /// The exit code this check alone would give (0 unless it failed).
    pub exit_code: i32,
}

impl Check {
    fn ok(check: &'static str, detail: String) -> Check {
        Check {
            check,
            status: Status::Ok,
            detail,
            fix: None,
            exit_code: 0,
        }
    }
    fn warn(check: &'static str, detail: String, fix: &str) -> Check {
        Check {
            check,
            status: Status::Warn,
            detail,
            fix: Some(fix.to_string()),
            exit_code: 0,
        }
    }
    fn fail(check: &'static str, e: &Error) -> Check {
        Check {
            check,
            status: Status::Fail,
            detail: e.summary(),
            fix: e.hint_text().map(str::to_string),
            exit_code: e.code().as_i32(),
        }
    }
}

/// The doctor's report: every check, and the exit code of the first that
/// failed (0 when none did).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub ok: bool,
    pub exit_code: i32,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn code(&self) -> Code {
        Code::ALL
            .iter()
            .copied()
            .find(|c| c.as_i32() == self.exit_code)
            .unwrap_or(Code::GeneralError)
    }
    pub fn failures(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .count()
    }
}

/// What the doctor looks at besides the configuration.
pub struct Setup<'a> {
    /// The project folder (`--project-dir`/`CLAUDE_PROJECT_DIR`, else the
    /// state's project root).
    pub project: &'a Path,
    /// `HOME`, for `~/.claude/settings.json`.
    pub home: Option<&'a Path>,
    /// `PATH`.
    pub path: Option<&'a std::ffi::OsStr>,
    /// `WFSTATE_BIN`, where the wrappers look first.
    pub wfstate_bin: Option<&'a Path>,
    /// Whether the state is in files (not a server: then the state checks
    /// are `state-manager health`'s).
    pub file_backend: bool,
}

/// Runs every check.
pub fn examine(cfg: &Config, setup: &Setup) -> Report {
    let mut checks = vec![binary(), on_path(setup)];
    let settings = settings_files(setup);
    for (check, event, markers) in [
        (
            "post-tool-use",
            "PostToolUse",
            [
                "state-manager hook post-tool-use",
                "post-tool-use-tracker.sh",
            ],
        ),
        (
            "user-prompt-submit",
            "UserPromptSubmit",
            [
                "state-manager hook user-prompt-submit",
                "skill-activation-prompt.sh",
            ],
        ),
    ] {
        checks.push(registered(check, event, &markers, &settings, setup.project));
    }
    if setup.file_backend {
        checks.push(Check::ok(
            "state",
            format!("{} ({})", cfg.state_file.display(), cfg.found_by.describe()),
        ));
        checks.push(match state_problem(cfg) {
            None => Check::ok("root", format!("{} is writable", cfg.root.display())),
            Some(e) => Check::fail("root", &e),
        });
    } else {
        checks.push(Check::ok(
            "state",
            "on a server backend: see 'state-manager health'".into(),
        ));
    }
    let exit_code = checks
        .iter()
        .find(|c| c.status == Status::Fail)
        .map_or(0, |c| c.exit_code);
    Report {
        ok: exit_code == 0,
        exit_code,
        checks,
    }
}

fn binary() -> Check {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "state-manager".into());
    Check::ok(
        "binary",
        format!("state-manager {} at {exe}", env!("CARGO_PKG_VERSION")),
    )
}

/// `state-manager` on `PATH`: what Claude Code runs when settings name the
/// binary, and the wrappers' second choice.
fn on_path(setup: &Setup) -> Check {
    let found = setup
        .path
        .into_iter()
        .flat_map(std::env::split_paths)
        .filter(|d| !d.as_os_str().is_empty())
        .map(|d| d.join("state-manager"))
        .find(|p| is_executable(p));
    if let Some(p) = found {
        return Check::ok("path", format!("state-manager on PATH: {}", p.display()));
    }
    let fix = "put the folder holding state-manager on PATH (e.g. cp target/release/state-manager ~/.local/bin/), in the environment Claude Code starts from";
    match setup.wfstate_bin.map(|d| d.join("state-manager")) {
        Some(p) if is_executable(&p) => Check::warn(
            "path",
            format!(
                "state-manager is not on PATH; only the wrappers find it (WFSTATE_BIN: {})",
                p.display()
            ),
            fix,
        ),
        _ => Check::fail(
            "path",
            &Error::new(Kind::DependencyMissing, "state-manager is not on PATH").hint(fix),
        ),
    }
}

fn is_executable(p: &Path) -> bool {
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A settings file: its path and, when it exists, its JSON (or why not).
type Settings = (PathBuf, Option<Result<Value, String>>);

/// The settings files Claude Code reads hooks from, project first.
fn settings_files(setup: &Setup) -> Vec<Settings> {
    let mut paths = vec![
        setup.project.join(".claude/settings.json"),
        setup.project.join(".claude/settings.local.json"),
    ];
    if let Some(home) = setup.home {
        paths.push(home.join(".claude/settings.json"));
    }
    paths
        .into_iter()
        .map(|p| {
            let parsed = match durable::read_limited(&p, crate::config::MAX_INPUT_BYTES) {
                Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => None,
                Err(e) => Some(Err(e.summary())),
                Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| e.to_string())),
            };
            (p, parsed)
        })
        .collect()
}

/// Whether some settings file registers, under `event`, a command naming
/// one of `markers`; a registered wrapper script must exist.
fn registered(
    check: &'static str,
    event: &str,
    markers: &[&str],
    settings: &[Settings],
    project: &Path,
) -> Check {
    let mut broken = Vec::new();
    for (path, parsed) in settings {
        let doc = match parsed {
            None => continue,
            Some(Err(why)) => {
                broken.push(format!("{} is not readable JSON: {why}", path.display()));
                continue;
            }
            Some(Ok(doc)) => doc,
        };
        let commands = doc
            .pointer(&format!("/hooks/{event}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|group| group.get("hooks").and_then(Value::as_array))
            .flatten()
            .filter_map(|h| h.get("command").and_then(Value::as_str));
        for command in commands {
            let Some(marker) = markers.iter().find(|m| command.contains(**m)) else {
                continue;
            };
            if marker.ends_with(".sh") {
                let script = script_path(command, marker, project);
                if !script.is_file() {
                    return Check::fail(
                        check,
                        &Error::new(
                            Kind::DependencyMissing,
                            format!(
                                "{} registers {event} as {command}, but {} does not exist",
                                path.display(),
                                script.display()
                            ),
                        )
                        .hint(format!(
                            "copy hooks/{marker} there, or register the binary itself: state-manager hook {check}"
                        )),
                    );
                }
            }
            return Check::ok(
                check,
                format!("{event} registered in {}: {command}", path.display()),
            );
        }
    }
    let looked: Vec<String> = settings
        .iter()
        .map(|(p, _)| p.display().to_string())
        .collect();
    let mut what = format!("{event} hook not registered in {}", looked.join(", "));
    for b in broken {
        what.push_str(&format!("; {b}"));
    }
    Check::fail(
        check,
        &Error::new(Kind::DependencyMissing, what).hint(format!(
            "add the {event} entry of hooks/settings.example.json to {}",
            settings[0].0.display()
        )),
    )
}

/// The script a hook command runs: the word ending in `name`, with
/// `$CLAUDE_PROJECT_DIR` (however quoted) replaced by `project`.
fn script_path(command: &str, name: &str, project: &Path) -> PathBuf {
    let end = command.find(name).map_or(command.len(), |i| i + name.len());
    let start = command[..end]
        .rfind(char::is_whitespace)
        .map_or(0, |i| i + 1);
    let word = command[start..end]
        .replace("${CLAUDE_PROJECT_DIR}", "$CLAUDE_PROJECT_DIR")
        .replace(['"', '\''], "");
    let expanded = word.replace("$CLAUDE_PROJECT_DIR", &project.display().to_string());
    let p = PathBuf::from(expanded);
    if p.is_absolute() { p } else { project.join(p) }
}

/// Why a hook could not write the state of `cfg`, if it could not: the
/// state root is not a folder (nor can be made one), or is not writable, or
/// the state file is not a writable regular file. A few stat/access calls:
/// cheap enough for every prompt.
pub fn state_problem(cfg: &Config) -> Option<Error> {
    let root = &cfg.root;
    let fix = "make it a folder you can write to, or point STATE_FILE at a writable place";
    let perm = |what: String, path: &Path| {
        Some(
            Error::new(Kind::PermissionDenied, what)
                .with_path(path)
                .hint(fix),
        )
    };
    match fs::metadata(root) {
        Ok(m) if !m.is_dir() => {
            return perm("the state root is not a folder".into(), root);
        }
        Ok(_) => {
            if let Err(e) = rustix::fs::access(
                root,
                rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
            ) {
                return perm(format!("the state root is not writable ({e})"), root);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Made by the first write, one level deep: its parent must be a
            // writable folder.
            let parent = root.parent().filter(|p| !p.as_os_str().is_empty());
            let parent = parent.unwrap_or(Path::new("."));
            if !parent.is_dir() {
                return perm(
                    "the state root does not exist and cannot be made (its parent is not a folder)"
                        .into(),
                    root,
                );
            }
            if let Err(e) = rustix::fs::access(parent, rustix::fs::Access::WRITE_OK) {
                return perm(
                    format!("the state root does not exist and its parent is not writable ({e})"),
                    root,
                );
            }
            return None;
        }
        Err(e) => {
            return perm(format!("the state root cannot be inspected ({e})"), root);
        }
    }
    match fs::symlink_metadata(&cfg.state_file) {
        Ok(m) if m.file_type().is_symlink() || m.is_file() => {
            match rustix::fs::access(&cfg.state_file, rustix::fs::Access::WRITE_OK) {
                Ok(()) => None,
                Err(e) => perm(
                    format!("the state file is not writable ({e})"),
                    &cfg.state_file,
                ),
            }
        }
        Ok(m) => perm(
            format!(
                "the state file is {}, not a regular file",
                durable::describe(m.file_type())
            ),
            &cfg.state_file,
        ),
        Err(_) => None,
    }
}

/// What `user-prompt-submit` last told the session about one state, kept in
/// `$XDG_STATE_HOME/wfstate/notices/` (else `~/.local/state/wfstate/notices/`),
/// one small file per state file, named by a hash of its path.
pub struct Notice {
    marker: Option<PathBuf>,
}

impl Notice {
    /// The notice record of `state_file` (none when neither `XDG_STATE_HOME`
    /// nor `HOME` is set: every prompt then tells the problem again).
    pub fn of(state_file: &Path) -> Notice {
        let var = |n| {
            std::env::var_os(n)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let dir = var("XDG_STATE_HOME")
            .map(|d| d.join("wfstate"))
            .or_else(|| var("HOME").map(|h| h.join(".local/state/wfstate")));
        let absolute = std::path::absolute(state_file).unwrap_or_else(|_| state_file.to_path_buf());
        let hash = Sha256::digest(absolute.as_os_str().as_encoded_bytes());
        let name: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
        Notice {
            marker: dir.map(|d| d.join("notices").join(format!("{name}.notice"))),
        }
    }

    /// The text for the session when `problem` is new (not the one told
    /// last), remembering it; `None` when it was told already or there is
    /// no problem (which forgets the last one, so it is told again should it
    /// come back).
    pub fn tell(&self, problem: Option<&Error>) -> Option<String> {
        let Some(problem) = problem else {
            if let Some(m) = self.marker.as_deref().filter(|m| m.exists()) {
                let _ = fs::remove_file(m);
            }
            return None;
        };
        let text = notice_text(problem);
        if let Some(m) = &self.marker {
            if fs::read(m).is_ok_and(|told| told == text.as_bytes()) {
                return None;
            }
            // Not remembered (no writable home): told again next time,
            // which is better than never.
            let _ = remember(m, &text);
        }
        Some(text)
    }
}

fn remember(marker: &Path, text: &str) -> crate::error::Result<()> {
    let dir = marker.parent().expect("a marker has a folder");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(e, "cannot create folder", dir))?;
    durable::replace(marker, text.as_bytes(), Durability::Atomic)
}

/// The notice as Claude Code adds it to the session's context.
pub fn notice_text(problem: &Error) -> String {
    format!(
        "[wfstate] The workflow state is NOT being recorded by the hooks: {problem}. Run 'state-manager hook doctor' in the project to check the installation. (Told once; tell the user.)\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapper_commands_script_is_found_however_quoted() {
        let p = Path::new("/p");
        for cmd in [
            "\"$CLAUDE_PROJECT_DIR\"/.claude/hooks/x.sh",
            "$CLAUDE_PROJECT_DIR/.claude/hooks/x.sh",
            "bash '${CLAUDE_PROJECT_DIR}/.claude/hooks/x.sh' --flag",
            ".claude/hooks/x.sh",
        ] {
            assert_eq!(
                script_path(cmd, "x.sh", p),
                Path::new("/p/.claude/hooks/x.sh"),
                "{cmd}"
            );
        }
    }
}
