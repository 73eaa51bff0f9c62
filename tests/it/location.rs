//! One state location for the CLI, the Claude Code hooks and the shims
//! (issue 15): without `STATE_FILE`, each finds the nearest
//! `.workflow-state.json` up the tree, else makes one at the project root,
//! and `status` says which and why.
//!
//! Every command here runs with `STATE_FILE` and `AUDIT_LOG` unset and
//! `HOME` at the temp folder, so the walk never leaves it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::harness::{Env, Owner, Run, assert_schema, bin_dir, bin_path, repo_root};

/// A temp folder with a project `proj/` (a git top level: `proj/.git/`) and
/// a subfolder `proj/src/deep/`.
struct Tree {
    env: Env,
}

impl Tree {
    fn new() -> Tree {
        let env = Env::new();
        fs::create_dir_all(env.path("proj/src/deep")).unwrap();
        fs::create_dir(env.path("proj/.git")).unwrap();
        Tree { env }
    }

    /// Canonical, as the binaries print paths.
    fn path(&self, rel: &str) -> PathBuf {
        fs::canonicalize(self.env.root()).unwrap().join(rel)
    }

    fn sub(&self) -> PathBuf {
        self.path("proj/src/deep")
    }

    /// Points `c` at nothing but the folder `dir`.
    fn scrub(&self, c: &mut Command, dir: &Path) {
        self.env.clean_env(c);
        c.env_remove("STATE_FILE")
            .env_remove("AUDIT_LOG")
            .env("HOME", self.path(""))
            .current_dir(dir);
    }

    /// Binary `name` with `args`, run in `dir`.
    fn run_in(&self, dir: &Path, name: &str, args: &[&str]) -> Run {
        let mut c = Command::new(bin_path(name));
        self.scrub(&mut c, dir);
        Run::of(c.args(args).output().unwrap())
    }

    fn status_json(&self, dir: &Path) -> Value {
        let v = self
            .run_in(dir, "state-manager", &["status", "--json"])
            .ok()
            .json();
        assert_schema("state-manager-status.schema.json", &v);
        v
    }
}

fn doc(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

#[test]
fn from_a_subfolder_the_cli_finds_the_roots_state() {
    let t = Tree::new();
    t.run_in(&t.path("proj"), "state-manager", &["init"]).ok();
    let state = t.path("proj/.workflow-state.json");
    assert!(state.is_file());
    t.run_in(&t.sub(), "state-manager", &["set", ".phase", "build", "-s"])
        .ok();
    assert_eq!(doc(&state)["phase"], "build");
    assert!(!t.sub().join(".workflow-state.json").exists());
    let v = t.status_json(&t.sub());
    assert_eq!(v["path"], json!(state));
    assert_eq!(v["found_by"], "up_tree");
    // The text says it too.
    t.run_in(&t.sub(), "state-manager", &["status"])
        .ok()
        .stdout_has(&format!("state file:     {}\n", state.display()))
        .stdout_has("found by:       the nearest state up from the current folder\n");
    // And so do error-recovery and the audit log beside the state.
    t.run_in(&t.sub(), "error-recovery", &["checkpoint", "deploy"])
        .ok();
    assert!(t.path("proj/.checkpoints").is_dir());
    assert!(t.path("proj/.workflow-audit.jsonl").is_file());
    assert!(!t.sub().join(".checkpoints").exists());
}

#[test]
fn a_state_the_old_hooks_made_under_claude_is_found() {
    let t = Tree::new();
    let legacy = t.path("proj/.claude/.workflow-state.json");
    let mut c = Command::new(bin_path("state-manager"));
    t.scrub(&mut c, &t.path("proj"));
    let run = Run::of(
        c.env("STATE_FILE", &legacy)
            .args(["init"])
            .output()
            .unwrap(),
    );
    run.ok();
    t.run_in(&t.sub(), "state-manager", &["set", ".phase", "x", "-s"])
        .ok();
    assert_eq!(doc(&legacy)["phase"], "x");
    assert_eq!(t.status_json(&t.sub())["path"], json!(legacy));
    assert!(!t.path("proj/.workflow-state.json").exists());
}

#[test]
fn a_new_state_goes_to_the_git_top_level() {
    let t = Tree::new();
    let v = t
        .run_in(&t.sub(), "state-manager", &["status", "--json"])
        .code(1)
        .stderr_has("no state at")
        .json();
    assert_eq!(v["path"], json!(t.path("proj/.workflow-state.json")));
    assert_eq!(v["found_by"], "git_top");
    t.run_in(&t.sub(), "state-manager", &["init"]).ok();
    assert!(t.path("proj/.workflow-state.json").is_file());
    // A .git file (a worktree, a submodule) marks a top level too.
    fs::remove_dir(t.path("proj/.git")).unwrap();
    fs::write(t.path("proj/src/.git"), "gitdir: /elsewhere\n").unwrap();
    let v = t
        .run_in(&t.sub(), "state-manager", &["status", "--json"])
        .code(1)
        .json();
    assert_eq!(v["path"], json!(t.path("proj/src/.workflow-state.json")));
}

#[test]
fn without_a_project_root_a_new_state_is_made_here() {
    let t = Tree::new();
    fs::remove_dir(t.path("proj/.git")).unwrap();
    let v = t
        .run_in(&t.sub(), "state-manager", &["status", "--json"])
        .code(1)
        .json();
    assert_eq!(v["path"], json!(t.sub().join(".workflow-state.json")));
    assert_eq!(v["found_by"], "cwd");
}

#[test]
fn claude_project_dir_is_the_root_when_the_folder_is_inside_it() {
    let t = Tree::new();
    let project = t.path("proj/src");
    let mut c = Command::new(bin_path("state-manager"));
    t.scrub(&mut c, &t.sub());
    let run = Run::of(
        c.env("CLAUDE_PROJECT_DIR", &project)
            .args(["init", "--json"])
            .output()
            .unwrap(),
    );
    run.ok();
    assert!(project.join(".workflow-state.json").is_file());
    assert!(!t.path("proj/.workflow-state.json").exists());
    // The walk stops there: a state above the project dir is not its.
    fs::write(t.path("proj/.workflow-state.json"), "{}").unwrap();
    fs::remove_file(project.join(".workflow-state.json")).unwrap();
    let mut c = Command::new(bin_path("state-manager"));
    t.scrub(&mut c, &t.sub());
    let v = Run::of(
        c.env("CLAUDE_PROJECT_DIR", &project)
            .args(["status", "--json"])
            .output()
            .unwrap(),
    )
    .code(1)
    .json();
    assert_eq!(v["path"], json!(project.join(".workflow-state.json")));
    assert_eq!(v["found_by"], "project_dir");
    // Outside the project dir it does not apply.
    let mut c = Command::new(bin_path("state-manager"));
    t.scrub(&mut c, &t.path(""));
    let v = Run::of(
        c.env("CLAUDE_PROJECT_DIR", &project)
            .args(["status", "--json"])
            .output()
            .unwrap(),
    )
    .code(1)
    .json();
    assert_eq!(v["found_by"], "cwd");
}

#[test]
fn state_file_wins_over_the_walk() {
    let t = Tree::new();
    t.run_in(&t.path("proj"), "state-manager", &["init"]).ok();
    let own = t.path("own.json");
    for (var, flag) in [(true, false), (false, true)] {
        let mut c = Command::new(bin_path("state-manager"));
        t.scrub(&mut c, &t.sub());
        if var {
            c.env("STATE_FILE", &own);
        }
        if flag {
            c.args(["--state-file", own.to_str().unwrap()]);
        }
        let v = Run::of(c.args(["status", "--json"]).output().unwrap())
            .code(1)
            .json();
        assert_eq!(v["path"], json!(own));
        assert_eq!(v["found_by"], "given");
    }
    // An empty STATE_FILE is unset.
    let mut c = Command::new(bin_path("state-manager"));
    t.scrub(&mut c, &t.sub());
    let v = Run::of(
        c.env("STATE_FILE", "")
            .args(["status", "--json"])
            .output()
            .unwrap(),
    )
    .ok()
    .json();
    assert_eq!(v["found_by"], "up_tree");
}

/// `state-manager hook post-tool-use` with a payload whose cwd is `cwd`.
fn post_tool_use(t: &Tree, cwd: &Path, project_dir: Option<&Path>) -> Run {
    let payload = json!({
        "session_id": "s1",
        "cwd": cwd,
        "hook_event_name": "PostToolUse",
        "tool_name": "Bash",
        "tool_input": {"command": "npm test"},
        "tool_response": {"stdout": "ok"}
    });
    let mut c = Command::new(bin_path("state-manager"));
    // The hook runs wherever Claude Code runs it: not in the project.
    t.scrub(&mut c, &t.path(""));
    c.env_remove("CLAUDE_PROJECT_DIR");
    if let Some(p) = project_dir {
        c.env("CLAUDE_PROJECT_DIR", p);
    }
    let mut child = c
        .args(["hook", "post-tool-use"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The hook reads its whole input; the payload fits in the pipe's buffer.
    let _ = child
        .stdin
        .take()
        .unwrap()
        .write_all(payload.to_string().as_bytes());
    Run::of(child.wait_with_output().unwrap())
}

#[test]
fn the_hook_the_shims_and_the_cli_land_on_one_file() {
    let t = Tree::new();
    // The hook, from a subfolder, makes the state at the project root.
    let run = post_tool_use(&t, &t.sub(), Some(&t.path("proj")));
    assert_eq!(run.stderr, "", "the hook warned");
    let state = t.path("proj/.workflow-state.json");
    assert!(doc(&state)["signals"]["TESTS_EXECUTED"].is_number());
    assert!(!t.path("proj/.claude").exists());
    // The CLI from the root and from the subfolder sees it.
    for dir in [t.path("proj"), t.sub()] {
        let v = t.status_json(&dir);
        assert_eq!(v["path"], json!(state));
        assert_eq!(v["valid"], true);
    }
    // A sourced shim, in real bash, from the subfolder reads and writes it.
    let mut c = Command::new("bash");
    t.scrub(&mut c, &t.sub());
    c.env("WFSTATE_BIN", bin_dir()).args([
        "-c",
        &format!(
            "source '{}/lib/state-manager.sh' && read_state && write_state \"$(read_state | sed 's/\"phase\": *\"[^\"]*\"/\"phase\": \"shimmed\", \"by\": \"shim\"/')\" shim",
            repo_root().display()
        ),
    ]);
    let run = Run::of(c.output().unwrap()).ok();
    assert!(run.stdout.contains("TESTS_EXECUTED"), "{}", run.stdout);
    assert_eq!(doc(&state)["phase"], "shimmed");
    assert!(!t.sub().join(".workflow-state.json").exists());
    assert!(!repo_root().join("lib/.workflow-state.json").exists());
    // The hook again, now without CLAUDE_PROJECT_DIR: found up the tree
    // (it records into that very document: the shim's change is kept).
    let before = doc(&state)["metadata"]["revision"].as_u64().unwrap();
    post_tool_use(&t, &t.sub(), None).ok();
    let after = doc(&state);
    assert_eq!(after["metadata"]["revision"].as_u64().unwrap(), before + 1);
    assert_eq!(after["by"], "shim");
    assert!(!t.sub().join(".workflow-state.json").exists());
}

#[test]
fn a_hook_whose_cwd_is_outside_the_project_records_into_the_project() {
    let t = Tree::new();
    fs::create_dir(t.path("elsewhere")).unwrap();
    post_tool_use(&t, &t.path("elsewhere"), Some(&t.path("proj/src"))).ok();
    assert!(t.path("proj/src/.workflow-state.json").is_file());
    assert!(!t.path("elsewhere/.workflow-state.json").exists());
}

#[test]
fn lock_manager_in_a_subfolder_uses_the_roots_locks() {
    let t = Tree::new();
    t.run_in(&t.path("proj"), "state-manager", &["init"]).ok();
    let owner = Owner::new();
    t.run_in(
        &t.sub(),
        "lock-manager",
        &["--owner", &owner.pid(), "acquire", "deploy", "1"],
    )
    .ok();
    assert!(t.path("proj/.locks/deploy.lock").is_file());
    assert!(!t.sub().join(".locks").exists());
    t.run_in(&t.path("proj"), "lock-manager", &["check", "deploy"])
        .ok()
        .stdout_has("locked:exclusive:");
    // Another owner from the root waits for the same record and times out.
    let other = Owner::new();
    t.run_in(
        &t.path("proj"),
        "lock-manager",
        &["--owner", &other.pid(), "acquire", "deploy", "0.2"],
    )
    .code(2);
    t.run_in(
        &t.path("proj"),
        "lock-manager",
        &["--owner", &owner.pid(), "release", "deploy"],
    )
    .ok();
    t.run_in(&t.sub(), "lock-manager", &["check", "deploy"])
        .code(1);
}
