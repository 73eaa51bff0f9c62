//! A small harness in the manner of just's tests/lib.rs: a temp state root,
//! the real binaries run with a clean environment pointed at it, and
//! assertions on exit code, stdout and stderr together.

#![allow(dead_code)]

use std::fmt::Display;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};
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

/// A temp state root with the toolkit's environment pointed at it, and,
/// for the Redis backend, a server of its own.
pub struct Env {
    pub dir: TempDir,
    pub redis: Option<crate::server::Server>,
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
            redis: None,
        }
    }

    /// An environment whose backend is a fresh redis-server of its own
    /// (`WFSTATE_BACKEND` set in every command).
    pub fn redis() -> Env {
        Env {
            redis: Some(crate::server::Server::start()),
            ..Env::new()
        }
    }

    /// The Redis server of a Redis environment.
    pub fn server(&self) -> &crate::server::Server {
        self.redis.as_ref().expect("a Redis environment")
    }

    pub fn server_mut(&mut self) -> &mut crate::server::Server {
        self.redis.as_mut().expect("a Redis environment")
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
            "WFSTATE_BACKEND",
            "WFSTATE_NAMESPACE",
            "WFSTATE_REDIS_TIMEOUT",
        ] {
            c.env_remove(var);
        }
        if let Some(r) = &self.redis {
            c.env("WFSTATE_BACKEND", r.url());
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
        if self.redis.is_some() {
            return serde_json::from_str(&self.sm(&["read"])).expect("state parses");
        }
        serde_json::from_slice(&fs::read(self.state_file()).expect("state file"))
            .expect("state parses")
    }

    /// The raw bytes of a file under the root (empty if missing).
    pub fn bytes(&self, rel: &str) -> Vec<u8> {
        fs::read(self.path(rel)).unwrap_or_default()
    }

    /// Every audit event written so far.
    pub fn audit_events(&self) -> Vec<Value> {
        json_lines(&fs::read_to_string(self.audit_log()).unwrap_or_default())
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

/// `error-recovery ARGS`.
pub fn er(env: &Env, args: &[&str]) -> Run {
    env.run("error-recovery", args)
}

/// Acquires lock `name` for `owner` (extra args after the name), asserting success.
pub fn hold(env: &Env, name: &str, owner: &Owner, args: &[&str]) {
    let pid = owner.pid();
    let mut all = vec!["acquire", name];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--owner", &pid]);
    env.run("lock-manager", &all).ok();
}

/// A record of lock `name` whose owner has died; returns the dead pid.
pub fn dead_record(env: &Env, name: &str) -> u32 {
    let owner = Owner::new();
    let pid = owner.0.id();
    hold(env, name, &owner, &["0"]);
    drop(owner);
    pid
}

/// stdout of `cmdline` run by script(1) on a pseudo-terminal, NO_COLOR set only if `no_color`.
pub fn on_a_tty(env: &Env, no_color: bool, cmdline: &str) -> String {
    let mut c = Command::new("script");
    env.clean_env(&mut c);
    c.env_remove("NO_COLOR");
    if no_color {
        c.env("NO_COLOR", "1");
    }
    c.env("PATH", format!("{}:/usr/bin:/bin", bin_dir().display()));
    c.args(["-qec", cmdline, "/dev/null"]);
    let out = c.output().expect("script(1)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Each line of `text` (JSON Lines) parsed as JSON; fails on a line that is not.
pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect()
}

/// Every key below `v` as (JSON pointer, key, value), not entering the values of `opaque` keys.
pub fn keys<'a>(v: &'a Value, opaque: &[&str]) -> Vec<(String, &'a str, &'a Value)> {
    fn walk<'a>(
        v: &'a Value,
        at: &str,
        opaque: &[&str],
        out: &mut Vec<(String, &'a str, &'a Value)>,
    ) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    let path = format!("{at}/{k}");
                    out.push((path.clone(), k.as_str(), x));
                    if !opaque.contains(&k.as_str()) {
                        walk(x, &path, opaque, out);
                    }
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    walk(x, &format!("{at}/{i}"), opaque, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, "", opaque, &mut out);
    out
}

/// The JSON pointer of every key below `v` holding an upper-case letter.
pub fn camel_case_keys(v: &Value) -> Vec<String> {
    keys(v, &[])
        .into_iter()
        .filter(|(_, k, _)| k.chars().any(|c| c.is_ascii_uppercase()))
        .map(|(path, _, _)| path)
        .collect()
}

/// The JSON Schema of one audit event, under the repository root.
const AUDIT_EVENT_SCHEMA: &str = "schemas/audit-event.schema.json";

/// The JSON Schema at `rel` under the repository root, compiled with formats checked.
pub fn schema_validator(rel: &str) -> jsonschema::Validator {
    let path = repo_root().join(rel);
    let text = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let schema: Value =
        serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{rel} does not compile: {e}"))
}

/// Every way `value` breaks `validator`, as `instance path: why`.
pub fn schema_errors(validator: &jsonschema::Validator, value: &Value) -> Vec<String> {
    validator
        .iter_errors(value)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// Asserts that `value` validates against schemas/output/`name`, formats included.
#[track_caller]
pub fn assert_schema(name: &str, value: &Value) {
    let errors = schema_errors(&schema_validator(&format!("schemas/output/{name}")), value);
    assert!(errors.is_empty(), "{name}: {errors:#?}\n{value:#}");
}

/// Asserts that `value` is one audit event by schemas/audit-event.schema.json, formats included.
#[track_caller]
pub fn assert_audit_event(value: &Value) {
    let errors = schema_errors(&schema_validator(AUDIT_EVENT_SCHEMA), value);
    assert!(
        errors.is_empty(),
        "not an audit event: {errors:#?}\n{value:#}"
    );
}

/// An RFC 3339 time `ago` before now (µs, UTC), as the writer formats it.
pub fn ts_ago(ago: Duration) -> String {
    let t = chrono::Utc::now() - chrono::Duration::from_std(ago).unwrap();
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// A staged audit event: the required fields with plausible values, overridden by `fields`.
pub fn event(fields: Value) -> Value {
    let mut ev = json!({
        "ts": ts_ago(Duration::from_secs(60)),
        "tool": "state-manager",
        "op": "read",
        "target": "/w/.workflow-state.json",
        "pid": 4000,
        "ppid": 300,
        "host": "h1",
        "user": "ci",
        "duration_ms": 1.5,
        "exit_code": 0,
        "outcome": "ok",
        "detail": {},
    });
    for (k, v) in fields.as_object().expect("fields are an object") {
        ev[k] = v.clone();
    }
    if ev["exit_code"] != 0 {
        ev["outcome"] = json!("error");
    }
    ev
}

/// Appends lines (events, or raw text) to a log as the writers would.
pub fn append(log: &Path, lines: &[impl Display]) {
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)
        .unwrap();
    for l in lines {
        f.write_all(format!("{l}\n").as_bytes()).unwrap();
    }
}

/// Appends staged `events` to this root's audit log.
pub fn stage(env: &Env, events: &[Value]) {
    append(&env.audit_log(), events);
}

/// Every line of an audit log and its rotated files (`LOG.1` … `LOG.5`) that
/// breaks schemas/audit-event.schema.json or is not JSON, as `file:line: why`.
pub fn audit_schema_errors(log: &Path) -> Vec<String> {
    let validator = schema_validator(AUDIT_EVENT_SCHEMA);
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
                    schema_errors(&validator, &event)
                        .into_iter()
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

/// Generates `file::NAME` and `redis::NAME` for every suite function NAME
/// (`fn NAME(env: Env)`): the same command lines on both backends.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod file {
            $( #[test] fn $name() { super::$name(crate::harness::Env::new()) } )*
        }
        mod redis {
            $( #[test] fn $name() { super::$name(crate::harness::Env::redis()) } )*
        }
    };
}
pub(crate) use both;

/// `state-manager read PATH -c`, parsed: the value as any backend stores it.
pub fn read(env: &Env, path: &str) -> Value {
    serde_json::from_str(&env.sm(&["read", path, "-c"])).expect("read prints JSON")
}

/// The state's `metadata.revision`, read through the binary (any backend).
pub fn revision(env: &Env) -> u64 {
    read(env, ".metadata.revision")
        .as_u64()
        .expect("a revision")
}

/// Waits for `child` to end, at most `limit`; `None` (and the child
/// killed) if it did not: a hang.
pub fn wait_at_most(
    child: &mut std::process::Child,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some(status);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `cond` until it holds, at most `limit`.
#[track_caller]
pub fn await_cond(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not happen within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
