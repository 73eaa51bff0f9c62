//! A small harness in the manner of just's tests/lib.rs: a temp state root,
//! the real binaries run with a clean environment pointed at it, and
//! assertions on exit code, stdout and stderr together.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tempfile::TempDir;

/// A live process that only sleeps, to act as a lock owner via `--owner`;
/// killed when dropped.
pub struct Owner(pub std::process::Child);

impl Owner {
    pub fn new() -> Owner {
        Owner(Command::new("sleep").arg("600").spawn().unwrap())
    }
    pub fn pid(&self) -> String {
        self.0.id().to_string()
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A temp state root with the toolkit's environment pointed at it.
pub struct Env {
    pub dir: TempDir,
}

/// The path of a built binary, for spawning many at once.
pub fn bin_path(name: &str) -> PathBuf {
    match name {
        "state-manager" => PathBuf::from(env!("CARGO_BIN_EXE_state-manager")),
        "lock-manager" => PathBuf::from(env!("CARGO_BIN_EXE_lock-manager")),
        "error-recovery" => PathBuf::from(env!("CARGO_BIN_EXE_error-recovery")),
        other => panic!("no binary {other}"),
    }
}

/// The folder holding the built binaries.
pub fn bin_dir() -> PathBuf {
    bin_path("state-manager").parent().unwrap().to_path_buf()
}

/// The repository root (lib/, hooks/, schemas/ live there).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn state_file(&self) -> PathBuf {
        self.root().join(".workflow-state.json")
    }

    pub fn audit_log(&self) -> PathBuf {
        self.root().join(".workflow-audit.jsonl")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    /// A command for binary `name` with a clean environment pointed at this root.
    pub fn cmd(&self, name: &str) -> Command {
        // A std Command (not assert_cmd's) so tests can spawn, signal and wait on it.
        let mut c = Command::new(bin_path(name));
        self.clean_env(&mut c);
        c
    }

    /// Points any command (bash, a binary by path) at this root.
    pub fn clean_env(&self, c: &mut Command) {
        for var in [
            "STATE_FILE",
            "AUDIT_LOG",
            "LOCK_TIMEOUT",
            "DEBUG",
            "LOCK_OWNER_PID",
            "WFSTATE_RUN_ID",
            "WFSTATE_BIN",
            "NO_COLOR",
            "CLAUDE_PROJECT_DIR",
        ] {
            c.env_remove(var);
        }
        c.env("STATE_FILE", self.state_file())
            .env("AUDIT_LOG", self.audit_log())
            .env("NO_COLOR", "1")
            .current_dir(self.root());
    }

    /// Runs binary `name` with `args` and returns what happened.
    pub fn run(&self, name: &str, args: &[&str]) -> Run {
        Run::of(self.cmd(name).args(args).output().expect("spawn"))
    }

    /// Runs binary `name` with `args` and `stdin` as its input.
    pub fn run_stdin(&self, name: &str, args: &[&str], stdin: &str) -> Run {
        let mut c = self.cmd(name);
        c.args(args);
        let out = assert_cmd::Command::from_std(c)
            .write_stdin(stdin)
            .output()
            .expect("spawn");
        Run::of(out)
    }

    /// `state-manager ARGS`, asserting success; returns stdout.
    pub fn sm(&self, args: &[&str]) -> String {
        self.run("state-manager", args).ok().stdout
    }

    /// `state-manager init`.
    pub fn init(&self) -> &Env {
        self.sm(&["init"]);
        self
    }

    /// The state document as JSON.
    pub fn state(&self) -> Value {
        serde_json::from_slice(&fs::read(self.state_file()).expect("state file"))
            .expect("state parses")
    }

    /// The raw bytes of a file under the root (empty if missing).
    pub fn bytes(&self, rel: &str) -> Vec<u8> {
        fs::read(self.path(rel)).unwrap_or_default()
    }

    /// Every audit event written so far.
    pub fn audit_events(&self) -> Vec<Value> {
        fs::read_to_string(self.audit_log())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l:?}: {e}")))
            .collect()
    }

    /// File names in a folder under the root, sorted.
    pub fn list(&self, rel: &str) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.path(rel))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// The outcome of one run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn of(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts exit 0.
    #[track_caller]
    pub fn ok(self) -> Run {
        self.code(0)
    }

    /// Asserts the exit code.
    #[track_caller]
    pub fn code(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "exit code\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts stderr holds `text`.
    #[track_caller]
    pub fn stderr_has(self, text: &str) -> Run {
        assert!(
            self.stderr.contains(text),
            "stderr lacks {text:?}: {}",
            self.stderr
        );
        self
    }

    /// Asserts stdout holds `text`.
    #[track_caller]
    pub fn stdout_has(self, text: &str) -> Run {
        assert!(
            self.stdout.contains(text),
            "stdout lacks {text:?}: {}",
            self.stdout
        );
        self
    }

    /// Asserts an error went to stderr as one line prefixed with the binary's name.
    #[track_caller]
    pub fn one_line_error(self, tool: &str) -> Run {
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.contains("warning:"))
            .collect();
        assert_eq!(lines.len(), 1, "want one error line, got: {}", self.stderr);
        assert!(
            lines[0].starts_with(&format!("{tool}: ")),
            "unprefixed error: {}",
            self.stderr
        );
        self
    }

    /// stdout parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

/// Every line of an audit log and its rotated files (`LOG.1` … `LOG.5`) that
/// breaks schemas/audit-event.schema.json or is not JSON, as `file:line: why`.
pub fn audit_schema_errors(log: &Path) -> Vec<String> {
    let schema: Value = serde_json::from_slice(
        &fs::read(repo_root().join("schemas/audit-event.schema.json")).expect("audit schema"),
    )
    .expect("audit schema parses");
    let validator = jsonschema::validator_for(&schema).expect("audit schema compiles");
    let mut files: Vec<PathBuf> = (1..=5)
        .rev()
        .map(|n| PathBuf::from(format!("{}.{n}", log.display())))
        .collect();
    files.push(log.to_path_buf());
    let mut errors = Vec::new();
    for file in files.iter().filter(|f| f.exists()) {
        let text = fs::read_to_string(file).expect("audit log is UTF-8");
        for (i, line) in text.lines().enumerate() {
            let at = format!("{}:{}", file.display(), i + 1);
            match serde_json::from_str::<Value>(line) {
                Err(e) => errors.push(format!("{at}: not JSON ({e}): {line}")),
                Ok(event) => errors.extend(
                    validator
                        .iter_errors(&event)
                        .map(|e| format!("{at}: {e}: {line}")),
                ),
            }
        }
    }
    errors
}

/// Asserts that every line the binaries wrote to this root's audit log
/// (rotated files included) validates against schemas/audit-event.schema.json.
#[track_caller]
pub fn assert_audit_valid(env: &Env) {
    let errors = audit_schema_errors(&env.audit_log());
    assert!(
        errors.is_empty(),
        "audit events break the schema:\n{}",
        errors.join("\n")
    );
}
