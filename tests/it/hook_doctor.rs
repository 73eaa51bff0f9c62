//! Claude Code hooks that can be seen to work (issue 15): `state-manager
//! hook doctor` checks an installation and names each broken thing with its
//! fix; a broken one is told to the session, once, on the stdout of the
//! UserPromptSubmit hook (the binary's, or the wrapper's when the binary is
//! missing).
//!
//! Every command runs with `HOME` at the temp folder (no real
//! ~/.claude/settings.json, notices kept there) and `STATE_FILE` unset.

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::harness::{Env, Run, assert_schema, bin_dir, bin_path, repo_root};

/// A project `proj/` (a git top level) installed as docs/hooks.md says:
/// hooks/settings.example.json as `.claude/settings.json`, the wrappers in
/// `.claude/hooks/`; the built binaries on PATH.
struct Install {
    env: Env,
    path: String,
}

impl Install {
    fn new() -> Install {
        let env = Env::new();
        let proj = env.path("proj");
        fs::create_dir_all(proj.join(".git")).unwrap();
        fs::create_dir_all(proj.join(".claude/hooks")).unwrap();
        fs::copy(
            repo_root().join("hooks/settings.example.json"),
            proj.join(".claude/settings.json"),
        )
        .unwrap();
        for f in [
            "skill-activation-prompt.sh",
            "post-tool-use-tracker.sh",
            "tracker-rules.json",
        ] {
            fs::copy(
                repo_root().join("hooks").join(f),
                proj.join(".claude/hooks").join(f),
            )
            .unwrap();
        }
        Install {
            path: format!("{}:/usr/bin:/bin", bin_dir().display()),
            env,
        }
    }

    fn proj(&self) -> PathBuf {
        fs::canonicalize(self.env.path("proj")).unwrap()
    }

    fn scrub(&self, c: &mut Command) {
        self.env.clean_env(c);
        c.env_remove("STATE_FILE")
            .env_remove("AUDIT_LOG")
            .env_remove("XDG_STATE_HOME")
            .env("HOME", self.env.root())
            .env("PATH", &self.path)
            .current_dir(self.proj());
    }

    fn doctor_with(&self, args: &[&str], extra: impl FnOnce(&mut Command)) -> Run {
        let mut c = Command::new(bin_path("state-manager"));
        self.scrub(&mut c);
        extra(&mut c);
        Run::of(c.args(["hook", "doctor"]).args(args).output().unwrap())
    }

    fn doctor(&self, args: &[&str]) -> Run {
        self.doctor_with(args, |_| {})
    }

    /// The doctor's report as JSON (validated), expecting exit `code`.
    fn report(&self, code: i32, extra: impl FnOnce(&mut Command)) -> Value {
        let v = self.doctor_with(&["--json"], extra).code(code).json();
        assert_schema("state-manager-hook-doctor.schema.json", &v);
        v
    }

    fn settings(&self, v: &Value) {
        fs::write(
            self.proj().join(".claude/settings.json"),
            serde_json::to_vec_pretty(v).unwrap(),
        )
        .unwrap();
    }
}

/// The check named `name` of a report.
fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report}"))
}

/// The names of the checks that failed.
fn failed(report: &Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["check"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_good_install_is_all_ok() {
    let i = Install::new();
    let run = i.doctor(&[]).ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["STATUS", "CHECK", "DETAIL"]
    );
    assert_eq!(lines.len(), 7, "{}", run.stdout);
    for line in &lines[1..] {
        assert!(line.starts_with("ok "), "{line}");
    }
    assert_eq!(run.stderr, "");
    let v = i.report(0, |_| {});
    assert_eq!(v["ok"], true);
    assert!(failed(&v).is_empty(), "{v}");
    assert!(
        check(&v, "state")["detail"]
            .as_str()
            .unwrap()
            .starts_with(&i.proj().join(".workflow-state.json").display().to_string())
    );
    // --no-header drops the header line only.
    let bare = i.doctor(&["--no-header"]).ok();
    assert_eq!(bare.stdout.lines().count(), 6);
    // From a subfolder: the same project, the same settings.
    fs::create_dir_all(i.proj().join("src/deep")).unwrap();
    let v = i.report(0, |c| {
        c.current_dir(i.proj().join("src/deep"));
    });
    assert!(failed(&v).is_empty(), "{v}");
    // The hooks registered in ~/.claude/settings.json count too.
    fs::create_dir(i.env.path(".claude")).unwrap();
    fs::rename(
        i.proj().join(".claude/settings.json"),
        i.env.path(".claude/settings.json"),
    )
    .unwrap();
    // ...with the binary registered directly for both events.
    let direct = json!({"hooks": {
        "UserPromptSubmit": [{"hooks": [{"type": "command", "command": "state-manager hook user-prompt-submit"}]}],
        "PostToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "state-manager hook post-tool-use"}]}]
    }});
    fs::write(i.env.path(".claude/settings.json"), direct.to_string()).unwrap();
    let v = i.report(0, |_| {});
    assert!(failed(&v).is_empty(), "{v}");
}

#[test]
fn a_binary_missing_from_path_is_named_with_its_fix() {
    let i = Install::new();
    let run = i
        .doctor_with(&[], |c| {
            c.env("PATH", "/usr/bin:/bin");
        })
        .code(5);
    run.stdout_has("fail    path")
        .stdout_has("state-manager is not on PATH — put the folder holding state-manager on PATH")
        .stderr_has("1 check(s) failed");
    let v = i.report(5, |c| {
        c.env("PATH", "/usr/bin:/bin");
    });
    assert_eq!(failed(&v), ["path"]);
    assert_eq!(check(&v, "path")["exit_code"], 5);
    // Only the wrappers' WFSTATE_BIN has it: a warning, not a failure.
    let v = i.report(0, |c| {
        c.env("PATH", "/usr/bin:/bin").env("WFSTATE_BIN", bin_dir());
    });
    assert_eq!(check(&v, "path")["status"], "warn");
    // A file that is not executable is not a binary.
    let fake = i.env.path("fakebin");
    fs::create_dir(&fake).unwrap();
    fs::write(fake.join("state-manager"), "").unwrap();
    let v = i.report(5, |c| {
        c.env("PATH", format!("{}:/usr/bin:/bin", fake.display()));
    });
    assert_eq!(failed(&v), ["path"]);
}

#[test]
fn settings_that_miss_a_hook_are_named_with_their_fix() {
    let i = Install::new();
    let example: Value =
        serde_json::from_slice(&fs::read(repo_root().join("hooks/settings.example.json")).unwrap())
            .unwrap();
    // Each event missing in turn.
    for (event, check_name) in [
        ("PostToolUse", "post-tool-use"),
        ("UserPromptSubmit", "user-prompt-submit"),
    ] {
        let mut s = example.clone();
        s["hooks"].as_object_mut().unwrap().remove(event);
        i.settings(&s);
        let v = i.report(5, |_| {});
        assert_eq!(failed(&v), [check_name], "{v}");
        let c = check(&v, check_name);
        assert!(
            c["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("{event} hook not registered")),
            "{c}"
        );
        assert!(
            c["fix"].as_str().unwrap().contains(&format!(
                "add the {event} entry of hooks/settings.example.json"
            )),
            "{c}"
        );
    }
    // No settings at all: both.
    fs::remove_file(i.proj().join(".claude/settings.json")).unwrap();
    let v = i.report(5, |_| {});
    assert_eq!(failed(&v), ["post-tool-use", "user-prompt-submit"]);
    // Settings that are not JSON: named.
    fs::write(i.proj().join(".claude/settings.json"), "{ nope").unwrap();
    i.doctor(&[])
        .code(5)
        .stdout_has("settings.json is not readable JSON");
    // A registered wrapper that is not there.
    i.settings(&example);
    fs::remove_file(i.proj().join(".claude/hooks/skill-activation-prompt.sh")).unwrap();
    let v = i.report(5, |_| {});
    assert_eq!(failed(&v), ["user-prompt-submit"]);
    let c = check(&v, "user-prompt-submit");
    assert!(
        c["detail"].as_str().unwrap().contains("does not exist"),
        "{c}"
    );
    assert!(
        c["fix"]
            .as_str()
            .unwrap()
            .contains("copy hooks/skill-activation-prompt.sh there"),
        "{c}"
    );
}

/// A state whose root cannot be a folder (a regular file stands where the
/// root would be): fails as root too, unlike a chmod.
fn under_a_file(i: &Install) -> PathBuf {
    let file = i.env.path("plain-file");
    fs::write(&file, "not a folder").unwrap();
    file.join(".workflow-state.json")
}

#[test]
fn an_unwritable_state_root_is_named_with_its_fix() {
    let i = Install::new();
    let state = under_a_file(&i);
    let v = i.report(6, |c| {
        c.env("STATE_FILE", &state);
    });
    assert_eq!(failed(&v), ["root"], "{v}");
    let root = check(&v, "root");
    assert_eq!(root["exit_code"], 6);
    assert!(
        root["detail"]
            .as_str()
            .unwrap()
            .contains("the state root is not a folder")
    );
    assert!(
        root["fix"]
            .as_str()
            .unwrap()
            .contains("point STATE_FILE at a writable place")
    );
    i.doctor_with(&[], |c| {
        c.env("STATE_FILE", &state);
    })
    .code(6)
    .stdout_has("fail    root");
    // A folder where the state file should be.
    fs::create_dir(i.proj().join(".workflow-state.json")).unwrap();
    let v = i.report(6, |_| {});
    assert_eq!(failed(&v), ["root"], "{v}");
    assert!(
        check(&v, "root")["detail"]
            .as_str()
            .unwrap()
            .contains("the state file is a folder")
    );
    // A root whose parent is missing cannot be made.
    let v = i.report(6, |c| {
        c.env("STATE_FILE", i.env.path("gone/deeper/s.json"));
    });
    assert_eq!(failed(&v), ["root"], "{v}");
}

/// `state-manager hook user-prompt-submit` (the binary, as settings may
/// register it) with a plain prompt.
fn prompt(i: &Install, extra: impl FnOnce(&mut Command)) -> Run {
    let mut c = Command::new(bin_path("state-manager"));
    i.scrub(&mut c);
    c.env("CLAUDE_PROJECT_DIR", i.proj());
    extra(&mut c);
    let payload = json!({
        "session_id": "s1",
        "cwd": i.proj(),
        "hook_event_name": "UserPromptSubmit",
        "prompt": "tidy the README"
    });
    feed(
        c.args(["hook", "user-prompt-submit"]),
        payload.to_string().as_bytes(),
    )
}

fn feed(c: &mut Command, input: &[u8]) -> Run {
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A hook may exit without reading (the wrapper without a binary): a
    // closed pipe is not a failure. The payload fits in the pipe's buffer.
    let _ = child.stdin.take().unwrap().write_all(input);
    Run::of(child.wait_with_output().unwrap())
}

#[test]
fn the_prompt_hook_tells_the_session_of_an_unwritable_state_once() {
    let i = Install::new();
    let state = under_a_file(&i);
    let broken = |c: &mut Command| {
        c.env("STATE_FILE", &state);
    };
    let first = prompt(&i, broken)
        .ok()
        .stdout_has("[wfstate] The workflow state is NOT being recorded")
        .stdout_has("the state root is not a folder")
        .stdout_has("state-manager hook doctor");
    assert_eq!(first.stdout.lines().count(), 1, "{}", first.stdout);
    // Told already: not again.
    let second = prompt(&i, broken).ok();
    assert_eq!(second.stdout, "");
    // Fixed (the root is a folder now): nothing to tell, and the state is
    // made; broken again later: told again.
    let root = state.parent().unwrap();
    fs::remove_file(root).unwrap();
    fs::create_dir(root).unwrap();
    let fine = prompt(&i, broken).ok();
    assert_eq!(fine.stdout, "");
    assert!(state.is_file());
    fs::remove_dir_all(root).unwrap();
    fs::write(root, "a file again").unwrap();
    prompt(&i, broken)
        .ok()
        .stdout_has("the state root is not a folder");
    // Another problem is news.
    let other = i.env.path("gone/deeper/s.json");
    prompt(&i, |c| {
        c.env("STATE_FILE", &other);
    })
    .ok()
    .stdout_has("NOT being recorded");
    // A good install says nothing of the kind.
    let ok = prompt(&i, |_| {}).ok();
    assert!(!ok.stdout.contains("wfstate]"), "{}", ok.stdout);
}

/// The UserPromptSubmit wrapper, as the example settings register it.
fn wrapper(i: &Install, path: &str) -> Run {
    let mut c = Command::new("bash");
    i.scrub(&mut c);
    c.env("PATH", path)
        .env("CLAUDE_PROJECT_DIR", i.proj())
        .arg(i.proj().join(".claude/hooks/skill-activation-prompt.sh"));
    let payload = json!({"cwd": i.proj(), "hook_event_name": "UserPromptSubmit", "prompt": "hi"});
    feed(&mut c, payload.to_string().as_bytes())
}

#[test]
fn the_prompt_wrapper_without_the_binary_tells_the_session_once() {
    let i = Install::new();
    let first = wrapper(&i, "/usr/bin:/bin")
        .ok()
        .stdout_has("[wfstate] The workflow state is NOT being recorded")
        .stdout_has("state-manager is not found")
        .stderr_has("warning: state-manager not found");
    assert_eq!(first.stdout.lines().count(), 1, "{}", first.stdout);
    let second = wrapper(&i, "/usr/bin:/bin").ok();
    assert_eq!(second.stdout, "");
    second.stderr_has("warning: state-manager not found");
    // Installed: the hook runs (and makes the state); missing again: told again.
    let found = wrapper(&i, &i.path).ok();
    assert!(!found.stdout.contains("[wfstate]"), "{}", found.stdout);
    assert!(i.proj().join(".workflow-state.json").is_file());
    wrapper(&i, "/usr/bin:/bin")
        .ok()
        .stdout_has("state-manager is not found");
}
