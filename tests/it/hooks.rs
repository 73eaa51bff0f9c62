//! The Claude Code hooks: hooks/*.sh run in real bash on recorded payloads
//! (tests/fixtures/hooks/), against the real state-manager binary. Signals,
//! phase and lastActivation land in the state; `[ACTIVATE:...]` and the
//! status section reach stdout; malformed input exits 0 with the state
//! byte-for-byte unchanged and an audit event with outcome error; the
//! session id is every event's run_id.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::harness::{Env, Run, bin_dir, repo_root};

const SESSION: &str = "6b1f0c2e-8d4a-4e37-9f15-3c2a7d9e41b8";
const TRACKER: &str = "post-tool-use-tracker.sh";
const SKILLS: &str = "skill-activation-prompt.sh";

/// A recorded payload.
fn fixture(name: &str) -> Vec<u8> {
    let path = repo_root().join("tests/fixtures/hooks").join(name);
    fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A recorded payload with `cwd` replaced.
fn fixture_with_cwd(name: &str, cwd: &Path) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fixture(name)).unwrap();
    v["cwd"] = json!(cwd);
    serde_json::to_vec(&v).unwrap()
}

/// `bash hooks/SCRIPT` pointed at the env's root and the built binaries.
fn hook_cmd(env: &Env, script: &str) -> Command {
    let mut c = Command::new("bash");
    c.arg(repo_root().join("hooks").join(script));
    env.clean_env(&mut c);
    c.env("WFSTATE_BIN", bin_dir())
        .env_remove("WFSTATE_TRACKER_RULES")
        .env_remove("WFSTATE_SKILL_RULES");
    c
}

/// Runs `cmd` with `input` on stdin (a reader that stops early is fine).
fn feed(mut cmd: Command, input: &[u8]) -> Run {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bash");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().unwrap();
    Run::of(out)
}

fn hook(env: &Env, script: &str, input: &[u8]) -> Run {
    feed(hook_cmd(env, script), input)
}

/// The audit events of op `hook`.
fn hook_events(env: &Env) -> Vec<Value> {
    env.audit_events()
        .into_iter()
        .filter(|e| e["op"] == "hook")
        .collect()
}

fn last_hook_event(env: &Env) -> Value {
    hook_events(env).pop().expect("a hook audit event")
}

fn signal_names(doc: &Value) -> Vec<String> {
    doc["signals"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn revision(env: &Env) -> u64 {
    env.state()["metadata"]["revision"].as_u64().unwrap()
}

/// An env with config/skill-rules.json (the shipped example) in the project.
fn env_with_skill_rules() -> Env {
    let env = Env::new();
    fs::create_dir(env.path("config")).unwrap();
    fs::copy(
        repo_root().join("config/skill-rules.example.json"),
        env.path("config/skill-rules.json"),
    )
    .unwrap();
    env
}

fn skills_cmd(env: &Env) -> Command {
    let mut c = hook_cmd(env, SKILLS);
    c.env("CLAUDE_PROJECT_DIR", env.root());
    c
}

#[test]
fn tracker_turns_recorded_tool_events_into_signals_and_phase() {
    let env = Env::new();
    env.init();
    assert_eq!(revision(&env), 1);

    let run = hook(&env, TRACKER, &fixture("write-tasks-json.json")).ok();
    assert_eq!(run.stdout, "", "the tracker prints nothing on stdout");
    let doc = env.state();
    assert_eq!(signal_names(&doc), ["PHASE1_START", "PHASE1_COMPLETE"]);
    assert!(doc["signals"]["PHASE1_START"].as_f64().unwrap() > 1.6e9);
    assert_eq!(doc["phase"], "phase1-complete");
    // Two signals and a phase: one commit.
    assert_eq!(revision(&env), 2);
    assert_eq!(
        env.list(".signals"),
        ["PHASE1_COMPLETE.json", "PHASE1_START.json"]
    );
    let sig: Value = serde_json::from_slice(&env.bytes(".signals/PHASE1_START.json")).unwrap();
    assert_eq!(sig["signal"], "PHASE1_START");
    assert_eq!(sig["timestamp"], doc["signals"]["PHASE1_START"]);

    hook(&env, TRACKER, &fixture("edit-src.json")).ok();
    let doc = env.state();
    assert!(doc["signals"]["IMPLEMENTATION_COMPLETE"].is_number());
    assert!(doc["signals"].get("TESTS_WRITTEN").is_none());
    assert_eq!(doc["phase"], "phase3");

    hook(&env, TRACKER, &fixture("write-test-file.json")).ok();
    assert!(env.state()["signals"]["TESTS_WRITTEN"].is_number());

    hook(&env, TRACKER, &fixture("bash-npm-test.json")).ok();
    assert!(env.state()["signals"]["TESTS_EXECUTED"].is_number());

    hook(&env, TRACKER, &fixture("read-architecture.json")).ok();
    let doc = env.state();
    assert!(doc["signals"]["ARCHITECTURE_REVIEWED"].is_number());
    assert_eq!(doc["phase"], "phase4");
    assert_eq!(revision(&env), 6, "one commit per hook call");

    let events = hook_events(&env);
    assert_eq!(events.len(), 5);
    for e in &events {
        assert_eq!(e["tool"], "state-manager");
        assert_eq!(e["outcome"], "ok", "{e}");
        assert_eq!(e["detail"]["event"], "PostToolUse");
        assert_eq!(e["run_id"], SESSION, "the session id is the run id: {e}");
    }
    assert_eq!(
        events[0]["detail"]["signals"],
        json!(["PHASE1_START", "PHASE1_COMPLETE"])
    );
    assert_eq!(events[0]["detail"]["file"], ".taskmaster/tasks/tasks.json");
    assert_eq!(events[0]["detail"]["revision"], 2);
}

#[test]
fn a_tool_call_no_rule_matches_changes_nothing() {
    let env = Env::new();
    env.init();
    let before = env.bytes(".workflow-state.json");
    let backups = env.list(".state-backups");
    hook(&env, TRACKER, &fixture("grep.json")).ok();
    assert_eq!(env.bytes(".workflow-state.json"), before);
    assert_eq!(env.list(".state-backups"), backups);
    let e = last_hook_event(&env);
    assert_eq!(e["outcome"], "ok");
    assert_eq!(e["detail"]["signals"], json!([]));
    assert!(
        e["detail"].get("lock_wait_ms").is_none(),
        "no lock taken: {e}"
    );
}

#[test]
fn the_state_is_created_under_the_claude_project_dir() {
    let env = Env::new();
    let project = env.path("shop");
    fs::create_dir(&project).unwrap();
    let mut c = hook_cmd(&env, TRACKER);
    c.env_remove("STATE_FILE")
        .env_remove("AUDIT_LOG")
        .env("CLAUDE_PROJECT_DIR", &project);
    feed(c, &fixture("bash-npm-test.json")).ok();
    // At the project root, where the CLI and the shims look (issue 15; it
    // was .claude/.workflow-state.json).
    let state = project.join(".workflow-state.json");
    let doc: Value = serde_json::from_slice(&fs::read(&state).unwrap()).unwrap();
    assert_eq!(doc["schemaVersion"], "1.0");
    assert_eq!(
        doc["metadata"]["revision"], 1,
        "created and signalled in one commit"
    );
    assert!(doc["signals"]["TESTS_EXECUTED"].is_number());
    assert!(project.join(".workflow-audit.jsonl").exists());
    env.run(
        "state-manager",
        &["--state-file", state.to_str().unwrap(), "validate"],
    )
    .ok();
}

#[test]
fn without_a_project_dir_the_payloads_cwd_is_the_project() {
    let env = Env::new();
    let project = env.path("app");
    fs::create_dir(&project).unwrap();
    let mut c = hook_cmd(&env, TRACKER);
    c.env_remove("STATE_FILE").env_remove("AUDIT_LOG");
    feed(c, &fixture_with_cwd("read-architecture.json", &project)).ok();
    let doc: Value =
        serde_json::from_slice(&fs::read(project.join(".workflow-state.json")).unwrap()).unwrap();
    assert!(doc["signals"]["ARCHITECTURE_REVIEWED"].is_number());
}

#[test]
fn skill_hook_activates_by_prompt_and_then_by_new_signals() {
    let env = env_with_skill_rules();
    env.init();
    let run = feed(skills_cmd(&env), &fixture("prompt-generate-tasks.json")).ok();
    assert!(
        run.stdout.starts_with("[ACTIVATE:PRD_TO_TASKS_V1]\n"),
        "{}",
        run.stdout
    );
    run.stdout_has("Skill: prd-to-tasks")
        .stdout_has("Reason: the prompt matches \"generate tasks\"")
        .stdout_has("Turn the PRD into tasks.json");
    let doc = env.state();
    assert_eq!(doc["lastActivation"], "PRD_TO_TASKS_V1");
    assert_eq!(doc["phase"], "phase1");
    assert_eq!(doc["context"]["activeSkills"], json!(["PRD_TO_TASKS_V1"]));
    let e = last_hook_event(&env);
    assert_eq!(e["detail"]["activation"], "PRD_TO_TASKS_V1");
    assert_eq!(e["run_id"], SESSION);

    // The tracker records PHASE1_START and PHASE1_COMPLETE; the next prompt,
    // whatever it says, hands over to the skill PHASE1_COMPLETE leads to.
    hook(&env, TRACKER, &fixture("write-tasks-json.json")).ok();
    let run = feed(skills_cmd(&env), &fixture("prompt-plain.json")).ok();
    assert!(
        run.stdout.starts_with("[ACTIVATE:SPEC_GEN_V1]\n"),
        "{}",
        run.stdout
    );
    run.stdout_has("signal PHASE1_COMPLETE");
    assert_eq!(env.state()["lastActivation"], "SPEC_GEN_V1");
    assert_eq!(env.state()["phase"], "phase2");

    // Nothing new since: no activation, no write.
    let before = env.bytes(".workflow-state.json");
    let run = feed(skills_cmd(&env), &fixture("prompt-plain.json")).ok();
    assert_eq!(run.stdout, "");
    assert_eq!(env.bytes(".workflow-state.json"), before);
}

#[test]
fn status_prompt_prints_the_pipeline_status() {
    let env = env_with_skill_rules();
    env.init();
    env.sm(&["append", ".completedTasks", "\"1.1\""]);
    env.sm(&[
        "merge",
        r#"{"degradedMode":{"enabled":true,"reason":"api down","disabledFeatures":["deploy"]}}"#,
    ]);
    hook(&env, TRACKER, &fixture("bash-npm-test.json")).ok();
    let run = feed(skills_cmd(&env), &fixture("prompt-status.json")).ok();
    run.stdout_has("## Pipeline status")
        .stdout_has("Phase:           phase3")
        .stdout_has("Completed tasks: 1 (1.1)")
        .stdout_has("Degraded mode:   ON (api down); disabled: deploy")
        .stdout_has("  TESTS_EXECUTED  ")
        .stdout_has("(revision 4)");
    assert_eq!(last_hook_event(&env)["detail"]["status"], true);
}

#[test]
fn legacy_payload_shapes_are_understood() {
    let env = env_with_skill_rules();
    env.init();
    hook(&env, TRACKER, &fixture("legacy-tool-input.json")).ok();
    assert_eq!(
        signal_names(&env.state()),
        ["PHASE1_START", "PHASE1_COMPLETE"]
    );
    // A legacy payload has no session id: WFSTATE_RUN_ID stays the run id.
    let mut c = skills_cmd(&env);
    c.env("WFSTATE_RUN_ID", "run-7");
    // contextFiles match PRD_TO_TASKS_V1's file patterns; but the new
    // PHASE1_COMPLETE signal hands over first.
    let run = feed(c, &fixture("legacy-message.json")).ok();
    run.stdout_has("[ACTIVATE:SPEC_GEN_V1]");
    assert_eq!(last_hook_event(&env)["run_id"], "run-7");
    let run = feed(skills_cmd(&env), &fixture("legacy-message.json")).ok();
    run.stdout_has("[ACTIVATE:PRD_TO_TASKS_V1]")
        .stdout_has("file docs/PRD.md matches \"PRD.md\"");
}

#[test]
fn the_session_id_wins_over_wfstate_run_id() {
    let env = Env::new();
    env.init();
    let mut c = hook_cmd(&env, TRACKER);
    c.env("WFSTATE_RUN_ID", "from-env");
    feed(c, &fixture("edit-src.json")).ok();
    assert_eq!(last_hook_event(&env)["run_id"], SESSION);
}

/// Runs `script` on `input` and asserts: exit 0, nothing on stdout, one
/// line on stderr, state and backups unchanged, an error audit event.
#[track_caller]
fn ignored(env: &Env, script: &str, input: &[u8], exit_code: i32) -> Value {
    let before = env.bytes(".workflow-state.json");
    let backups = env.list(".state-backups");
    let signals = env.list(".signals");
    let events = hook_events(env).len();
    let run = hook(env, script, input).ok();
    assert_eq!(run.stdout, "", "no output for bad input");
    assert_eq!(run.stderr.lines().count(), 1, "one line: {}", run.stderr);
    assert!(
        run.stderr.starts_with("state-manager: hook "),
        "{}",
        run.stderr
    );
    assert_eq!(env.bytes(".workflow-state.json"), before, "state changed");
    assert_eq!(env.list(".state-backups"), backups);
    assert_eq!(env.list(".signals"), signals);
    let all = hook_events(env);
    assert_eq!(all.len(), events + 1, "one audit event");
    let e = all.last().unwrap().clone();
    assert_eq!(e["outcome"], "error", "{e}");
    assert_eq!(e["exit_code"], exit_code, "{e}");
    assert!(e["detail"]["error"].is_string(), "{e}");
    e
}

#[test]
fn malformed_input_exits_0_leaves_the_state_and_is_audited() {
    let env = env_with_skill_rules();
    env.init();
    for script in [TRACKER, SKILLS] {
        ignored(&env, script, b"this is not json", 4);
        ignored(&env, script, b"", 4);
        ignored(&env, script, b"[1, 2, 3]", 4);
        ignored(&env, script, br#"{"session_id": 42}"#, 4);
        ignored(&env, script, b"{\"tool_name\": \"Wri", 4);
    }
    ignored(&env, TRACKER, br#"{"tool_name": ["Write"]}"#, 4);
    ignored(
        &env,
        TRACKER,
        br#"{"tool_name": "Write", "tool_input": [1]}"#,
        4,
    );
    ignored(
        &env,
        TRACKER,
        br#"{"tool_name": "Write", "tool_input": {"file_path": 7}}"#,
        4,
    );
    ignored(
        &env,
        TRACKER,
        br#"{"tool_name": "MultiEdit", "tool_input": {"file_path": "src/a.ts", "edits": {"new_string": "x"}}}"#,
        4,
    );
    ignored(&env, TRACKER, br#"{"hook_event_name": "PostToolUse"}"#, 4);
    ignored(&env, SKILLS, br#"{"prompt": 5}"#, 4);
    ignored(
        &env,
        SKILLS,
        br#"{"message": "x", "contextFiles": "a.md"}"#,
        4,
    );
    // A payload for the other event.
    let e = ignored(&env, TRACKER, &fixture("prompt-status.json"), 4);
    assert_eq!(e["run_id"], SESSION);
    ignored(&env, SKILLS, &fixture("edit-src.json"), 4);
}

#[test]
fn huge_input_is_refused_without_being_read_whole() {
    let env = Env::new();
    env.init();
    let mut big =
        br#"{"tool_name":"Write","tool_input":{"file_path":"src/a.ts","content":""#.to_vec();
    big.resize(17 * 1024 * 1024, b'a');
    big.extend_from_slice(b"\"}}");
    let e = ignored(&env, TRACKER, &big, 10);
    assert!(
        e["detail"]["error"]
            .as_str()
            .unwrap()
            .contains("over the limit"),
        "{e}"
    );
}

#[test]
fn a_corrupt_state_is_left_for_recover() {
    let env = Env::new();
    fs::write(env.state_file(), b"{\"phase\": ").unwrap();
    ignored(&env, TRACKER, &fixture("edit-src.json"), 3);
    assert_eq!(env.bytes(".workflow-state.json"), b"{\"phase\": ");
}

#[test]
fn tracker_rules_come_from_wfstate_tracker_rules() {
    let env = Env::new();
    env.init();
    let rules = env.path("rules.json");
    fs::write(
        &rules,
        r#"{"rules": [
            {"name": "ts", "tools": ["Edit"], "files": ["src/*.ts"], "except_files": ["*.test.*"],
             "signals": ["TS_EDITED"], "phase": "typescript"},
            {"name": "after", "tools": ["Edit"], "files": ["**/*.ts"], "requires_signals": ["TESTS_EXECUTED"],
             "signals": ["AFTER_TESTS"]}
        ]}"#,
    )
    .unwrap();
    let run_with = |input: &[u8]| {
        let mut c = hook_cmd(&env, TRACKER);
        c.env("WFSTATE_TRACKER_RULES", &rules);
        feed(c, input).ok()
    };
    run_with(&fixture("edit-src.json"));
    let doc = env.state();
    assert_eq!(signal_names(&doc), ["TS_EDITED"], "built-in rules not used");
    assert_eq!(doc["phase"], "typescript");
    env.sm(&["signal", "TESTS_EXECUTED"]);
    run_with(&fixture("edit-src.json"));
    assert!(env.state()["signals"]["AFTER_TESTS"].is_number());

    // A bad rules file: nothing recorded, exit 0, audited.
    fs::write(
        &rules,
        r#"{"rules": [{"name": "x", "signals": ["NO SPACES"]}]}"#,
    )
    .unwrap();
    let before = env.bytes(".workflow-state.json");
    let run = run_with(&fixture("edit-src.json"));
    run.stderr_has("bad tracker rule 'x'");
    assert_eq!(env.bytes(".workflow-state.json"), before);
    assert_eq!(last_hook_event(&env)["exit_code"], 4);
    // A missing one is a missing dependency (5).
    fs::remove_file(&rules).unwrap();
    run_with(&fixture("edit-src.json"));
    assert_eq!(last_hook_event(&env)["exit_code"], 5);
    assert_eq!(env.bytes(".workflow-state.json"), before);
}

#[test]
fn the_hook_folder_rules_file_is_the_default() {
    // A copy of hooks/ whose tracker-rules.json says something else.
    let env = Env::new();
    env.init();
    let hooks = env.path("hooks");
    fs::create_dir(&hooks).unwrap();
    fs::copy(repo_root().join("hooks").join(TRACKER), hooks.join(TRACKER)).unwrap();
    fs::write(
        hooks.join("tracker-rules.json"),
        r#"{"rules": [{"name": "any", "signals": ["ANY_TOOL"]}]}"#,
    )
    .unwrap();
    let mut c = Command::new("bash");
    c.arg(hooks.join(TRACKER));
    env.clean_env(&mut c);
    c.env("WFSTATE_BIN", bin_dir())
        .env_remove("WFSTATE_TRACKER_RULES");
    feed(c, &fixture("grep.json")).ok();
    assert_eq!(signal_names(&env.state()), ["ANY_TOOL"]);
}

#[test]
fn a_hooks_folder_without_rules_uses_the_built_in_ones() {
    let env = Env::new();
    env.init();
    let hooks = env.path("hooks");
    fs::create_dir(&hooks).unwrap();
    fs::copy(repo_root().join("hooks").join(TRACKER), hooks.join(TRACKER)).unwrap();
    let mut c = Command::new("bash");
    c.arg(hooks.join(TRACKER));
    env.clean_env(&mut c);
    c.env("WFSTATE_BIN", bin_dir())
        .env_remove("WFSTATE_TRACKER_RULES");
    feed(c, &fixture("edit-src.json")).ok();
    assert_eq!(signal_names(&env.state()), ["IMPLEMENTATION_COMPLETE"]);
    assert_eq!(last_hook_event(&env)["outcome"], "ok");
}

#[test]
fn bad_skill_rules_are_audited_and_print_nothing() {
    let env = Env::new();
    env.init();
    fs::create_dir(env.path("config")).unwrap();
    fs::write(env.path("config/skill-rules.json"), "{\"skills\": [").unwrap();
    let before = env.bytes(".workflow-state.json");
    let run = feed(skills_cmd(&env), &fixture("prompt-status.json")).ok();
    assert_eq!(run.stdout, "");
    run.stderr_has("skill rules do not parse");
    assert_eq!(env.bytes(".workflow-state.json"), before);
    assert_eq!(last_hook_event(&env)["outcome"], "error");
}

#[test]
fn concurrent_tracker_calls_lose_no_update() {
    let env = Env::new();
    env.init();
    let n = 8;
    let children: Vec<_> = (0..n)
        .map(|i| {
            let name = if i % 2 == 0 {
                "edit-src.json"
            } else {
                "bash-npm-test.json"
            };
            let input = fixture(name);
            let mut c = hook_cmd(&env, TRACKER);
            std::thread::spawn(move || {
                c.env("LOCK_TIMEOUT", "60");
                feed(c, &input)
            })
        })
        .collect();
    for c in children {
        c.join().unwrap().ok();
    }
    assert_eq!(revision(&env), 1 + n, "every call committed once");
    let doc = env.state();
    assert!(doc["signals"]["IMPLEMENTATION_COMPLETE"].is_number());
    assert!(doc["signals"]["TESTS_EXECUTED"].is_number());
    assert!(hook_events(&env).iter().all(|e| e["outcome"] == "ok"));
}

#[test]
fn without_the_binary_the_hooks_warn_and_exit_0() {
    let env = Env::new();
    let hooks = env.path("hooks");
    fs::create_dir(&hooks).unwrap();
    for script in [TRACKER, SKILLS] {
        fs::copy(repo_root().join("hooks").join(script), hooks.join(script)).unwrap();
        let mut c = Command::new("bash");
        c.arg(hooks.join(script));
        env.clean_env(&mut c);
        c.env("PATH", "/usr/bin:/bin");
        c.env("HOME", env.root()).env_remove("XDG_STATE_HOME");
        let mut run = feed(c, &fixture("prompt-status.json")).ok();
        // The session is told on stdout by the UserPromptSubmit wrapper
        // only (issue 15); tests/it/hook_doctor.rs checks it says so once.
        if script == TRACKER {
            assert_eq!(run.stdout, "");
        } else {
            run = run.stdout_has("state-manager is not found");
        }
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
        run.stderr_has("warning: state-manager not found");
    }
    assert!(!env.state_file().exists());
}

#[test]
fn the_settings_example_registers_both_hooks() {
    let text = fs::read_to_string(repo_root().join("hooks/settings.example.json")).unwrap();
    let settings: Value = serde_json::from_str(&text).unwrap();
    // PostToolUse, on every tool call, runs the binary itself (no bash);
    // UserPromptSubmit keeps the wrapper, which tells the session when the
    // binary is missing (issue 15). Both wrappers still ship.
    for script in [TRACKER, SKILLS] {
        assert!(repo_root().join("hooks").join(script).exists(), "{script}");
    }
    let command = |event: &str| {
        let groups = settings["hooks"][event].as_array().expect(event);
        let cmd = &groups[0]["hooks"][0];
        assert_eq!(cmd["type"], "command");
        cmd["command"].as_str().unwrap().to_string()
    };
    assert_eq!(command("PostToolUse"), "state-manager hook post-tool-use");
    let prompt = command("UserPromptSubmit");
    assert!(prompt.ends_with(&format!("/{SKILLS}")), "{prompt}");
    let matcher = settings["hooks"]["PostToolUse"][0]["matcher"]
        .as_str()
        .unwrap();
    for tool in ["Write", "Edit", "Read", "Bash"] {
        assert!(
            matcher.split('|').any(|t| t == tool),
            "{matcher} lacks {tool}"
        );
    }
}

#[test]
fn a_missing_project_folder_is_not_created() {
    let env = Env::new();
    let gone = env.path("gone/deeper");
    let mut c = hook_cmd(&env, TRACKER);
    c.env_remove("STATE_FILE").env_remove("AUDIT_LOG");
    let run = feed(c, &fixture_with_cwd("edit-src.json", &gone)).ok();
    run.stderr_has("cannot create the state folder");
    assert!(!env.path("gone").exists());
}
