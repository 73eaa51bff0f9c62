//! error-recovery: checkpoints and restore (state, signals, config),
//! refusal of tampered checkpoints, retry's attempt counting, exit codes,
//! deadline and child cleanup, degraded mode, suggest/handle strategies.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Env, er, schema_validator};

const ER: &str = "error-recovery";

/// Makes a checkpoint and returns its id.
fn checkpoint(env: &Env, args: &[&str]) -> String {
    let mut all = vec!["checkpoint"];
    all.extend_from_slice(args);
    er(env, &all).ok().stdout.trim().to_string()
}

/// Everything under a folder of the root: relative path → bytes.
fn tree(env: &Env, rel: &str) -> Vec<(String, Vec<u8>)> {
    let base = env.path(rel);
    let mut out: Vec<(String, Vec<u8>)> = walkdir::WalkDir::new(&base)
        .min_depth(1)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            (
                e.path()
                    .strip_prefix(&base)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Whether a process runs (a zombie has ended).
fn running(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
        .is_some_and(|zombie| !zombie)
}

fn events(env: &Env, op: &str) -> Vec<Value> {
    env.audit_events()
        .into_iter()
        .filter(|e| e["tool"] == ER && e["op"] == op)
        .collect()
}

#[test]
fn checkpoint_change_restore_brings_back_state_signals_and_config() {
    let env = Env::new();
    env.init();
    env.sm(&["set", ".phase", "\"impl\""]);
    env.sm(&["signal", "PHASE1_START"]);
    fs::create_dir_all(env.path("config/nested")).unwrap();
    fs::write(env.path("config/app.toml"), "mode = 1\n").unwrap();
    fs::write(env.path("config/nested/x"), "deep").unwrap();
    let state_then = env.state();
    let signals_then = tree(&env, ".signals");
    let config_then = tree(&env, "config");

    let id = checkpoint(&env, &["before-deploy"]);
    assert!(
        id.starts_with("checkpoint-") && id.ends_with("-before-deploy"),
        "{id}"
    );
    let meta: Value =
        serde_json::from_slice(&env.bytes(&format!(".checkpoints/{id}/metadata.json"))).unwrap();
    assert_eq!(meta["id"], json!(id));
    assert_eq!(meta["phase"], "impl");
    assert_eq!(meta["operation"], "before-deploy");
    assert!(meta["pid"].as_u64().is_some());
    assert!(meta["files"]["state.json"].as_str().unwrap().len() == 64);
    assert!(meta["files"]["config/nested/x"].is_string());

    env.sm(&["set", ".phase", "\"broken\""]);
    env.sm(&["signal", "LATER"]);
    fs::write(env.path("config/app.toml"), "mode = 2\n").unwrap();
    fs::remove_file(env.path("config/nested/x")).unwrap();
    fs::write(env.path("config/new"), "new").unwrap();
    let rev_before = env.state()["metadata"]["revision"].as_u64().unwrap();

    er(&env, &["restore", &id])
        .ok()
        .stdout_has(&format!("restored {id}"));
    let now = env.state();
    assert_eq!(now["phase"], "impl");
    assert_eq!(now["signals"], state_then["signals"]);
    assert!(now["signals"].get("LATER").is_none());
    assert_eq!(tree(&env, ".signals"), signals_then);
    assert_eq!(tree(&env, "config"), config_then);
    // Restored content, with a revision that never goes backwards.
    assert_eq!(
        now["metadata"]["revision"].as_u64().unwrap(),
        rev_before + 1
    );
    // The live state was backed up first; no temp folder or journal is left.
    assert!(
        env.list(".state-backups")
            .iter()
            .any(|n| n.contains("pre-restore"))
    );
    assert!(
        env.list(".")
            .iter()
            .all(|n| !n.starts_with(".wfstate-restore")),
        "{:?}",
        env.list(".")
    );
    let ev = events(&env, "restore");
    assert_eq!(ev.last().unwrap()["target"], json!(id));
    assert_eq!(ev.last().unwrap()["exit_code"], 0);
}

#[test]
fn restore_defaults_to_the_latest_and_removes_folders_the_checkpoint_lacked() {
    let env = Env::new();
    env.init();
    checkpoint(&env, &["first"]);
    env.sm(&["set", ".phase", "\"second\""]);
    let second = checkpoint(&env, &["second"]);
    env.sm(&["set", ".phase", "\"third\""]);
    env.sm(&["signal", "S"]);
    fs::create_dir(env.path("config")).unwrap();
    fs::write(env.path("config/c"), "c").unwrap();
    er(&env, &["restore"]).ok().stdout_has(&second);
    assert_eq!(env.state()["phase"], "second");
    // Neither folder existed at the checkpoint: restored as absent.
    assert!(!env.path(".signals").exists());
    assert!(!env.path("config").exists());
}

#[test]
fn tampered_checkpoint_is_refused_with_exit_3_and_nothing_changes() {
    let env = Env::new();
    env.init();
    env.sm(&["signal", "A"]);
    let id = checkpoint(&env, &["op"]);
    env.sm(&["set", ".phase", "\"later\""]);
    let state = env.bytes(".workflow-state.json");
    let signals = tree(&env, ".signals");
    let backups = env.list(".state-backups");

    // One byte of state.json changed.
    let p = env.path(&format!(".checkpoints/{id}/state.json"));
    let mut bytes = fs::read(&p).unwrap();
    let i = bytes.iter().position(|&b| b == b'p').unwrap();
    bytes[i] = b'q';
    fs::write(&p, &bytes).unwrap();
    er(&env, &["restore", &id])
        .code(3)
        .one_line_error(ER)
        .stderr_has("state.json does not match its checksum");
    er(&env, &["restore"]).code(3);
    assert_eq!(env.bytes(".workflow-state.json"), state);
    assert_eq!(tree(&env, ".signals"), signals);
    assert_eq!(env.list(".state-backups"), backups);
    assert!(
        er(&env, &["list", "json"]).ok().json()[0]["valid"] == json!(false),
        "list shows it fails verification"
    );
}

#[test]
fn checkpoints_with_missing_unlisted_or_unparseable_parts_are_refused() {
    let env = Env::new();
    env.init();
    env.sm(&["signal", "A"]);
    let state = env.bytes(".workflow-state.json");
    type Break = fn(&Path);
    let cases: [(&str, Break); 3] = [
        ("A.json is missing", |d| {
            fs::remove_file(d.join("signals/A.json")).unwrap()
        }),
        ("unlisted file", |d| {
            fs::write(d.join("signals/B.json"), "{}").unwrap()
        }),
        ("metadata.json does not parse", |d| {
            fs::write(d.join("metadata.json"), "{").unwrap()
        }),
    ];
    for (why, break_it) in cases {
        let id = checkpoint(&env, &["op"]);
        break_it(&env.path(&format!(".checkpoints/{id}")));
        er(&env, &["restore", &id]).code(3).stderr_has(why);
        assert_eq!(env.bytes(".workflow-state.json"), state, "{why}");
    }
}

#[test]
fn two_checkpoints_in_one_second_are_both_kept() {
    let env = Env::new();
    env.init();
    // Checkpoint until two fall in one second (the first pair almost always does).
    // `checkpoint-YYYYMMDD-HHMMSSZ` is the second; SEQ then tells them apart.
    let second = |id: &String| id[..27].to_string();
    let mut ids: Vec<String> = Vec::new();
    let same_second = |ids: &[String]| ids.windows(2).any(|w| second(&w[0]) == second(&w[1]));
    while ids.len() < 40 && !same_second(&ids) {
        ids.push(checkpoint(&env, &["same"]));
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");
    assert!(same_second(&ids), "no two in one second: {ids:?}");
    for id in &ids {
        let meta: Value =
            serde_json::from_slice(&env.bytes(&format!(".checkpoints/{id}/metadata.json")))
                .unwrap();
        assert_eq!(meta["id"], json!(id));
    }
    assert_eq!(env.list(".checkpoints").len(), ids.len());
}

#[test]
fn bad_operation_or_metadata_is_refused_with_exit_4_and_nothing_created() {
    let env = Env::new();
    env.init();
    for args in [
        &["checkpoint", "a/b"][..],
        &["checkpoint", "../x"],
        &["checkpoint", ".hidden"],
        &["checkpoint", ""],
        &["checkpoint", "has space"],
        &["checkpoint", "ok", "phase", "{not json"],
        &["checkpoint", "ok", "phase", "'single'"],
    ] {
        er(&env, args).code(4).one_line_error(ER);
        assert!(env.list(".checkpoints").is_empty(), "{args:?}");
    }
    assert!(!env.path("x").exists());
}

// See docs/migrating.md — the old library corrupted metadata arguments.
#[test]
fn checkpoint_metadata_round_trips_exactly() {
    let env = Env::new();
    env.init();
    let given = r#"{"note": "it's \"quoted\" with $HOME and `cmd` and \\ back\\slash", "u": "héllo ✓ 日本", "n": [1, -2.5, null, true], "nested": {"a b": "c\nd\te"}}"#;
    let id = checkpoint(&env, &["meta", "impl", given]);
    let meta: Value =
        serde_json::from_slice(&env.bytes(&format!(".checkpoints/{id}/metadata.json"))).unwrap();
    let want: Value = serde_json::from_str(given).unwrap();
    assert_eq!(meta["metadata"], want);
    assert_eq!(
        meta["metadata"]["note"].as_str().unwrap(),
        "it's \"quoted\" with $HOME and `cmd` and \\ back\\slash"
    );
    let listed = er(&env, &["list", "json"]).ok().json();
    assert_eq!(listed[0]["metadata"], want);
    assert_eq!(listed[0]["phase"], "impl");
}

#[test]
fn unknown_restore_id_exits_1_naming_list_and_changes_nothing() {
    let env = Env::new();
    env.init();
    let state = env.bytes(".workflow-state.json");
    er(&env, &["restore"])
        .code(1)
        .one_line_error(ER)
        .stderr_has("error-recovery checkpoint");
    checkpoint(&env, &["one"]);
    for id in ["checkpoint-20200101-000000-nope", "../.state-backups", ""] {
        er(&env, &["restore", id])
            .code(1)
            .one_line_error(ER)
            .stderr_has("error-recovery list");
    }
    assert_eq!(env.bytes(".workflow-state.json"), state);
}

#[test]
fn restore_over_a_corrupt_state_keeps_it_aside() {
    let env = Env::new();
    env.init();
    env.sm(&["set", ".phase", "\"good\""]);
    let id = checkpoint(&env, &["good"]);
    fs::write(env.state_file(), b"{ torn").unwrap();
    er(&env, &["restore", &id]).ok();
    assert_eq!(env.state()["phase"], "good");
    let aside: Vec<String> = env
        .list(".")
        .into_iter()
        .filter(|n| n.contains(".corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(env.bytes(&aside[0]), b"{ torn");
}

#[test]
fn checkpoint_of_a_missing_or_corrupt_state_is_refused() {
    let env = Env::new();
    er(&env, &["checkpoint", "x"])
        .code(1)
        .stderr_has("state-manager init");
    env.init();
    fs::write(env.state_file(), b"nope").unwrap();
    er(&env, &["checkpoint", "x"]).code(3).one_line_error(ER);
    assert!(env.list(".checkpoints").is_empty());
}

#[test]
fn an_interrupted_restore_is_finished_by_the_next_run() {
    let env = Env::new();
    env.init();
    env.sm(&["signal", "A"]);
    let id = checkpoint(&env, &["target"]);
    env.sm(&["set", ".phase", "\"moved-on\""]);
    env.sm(&["signal", "B"]);
    // What a restore killed after writing its journal leaves behind: the
    // journal (naming the revision it began at) and a half-built temp folder.
    let rev = env.state()["metadata"]["revision"].clone();
    fs::write(
        env.path(".wfstate-restore.journal"),
        format!(
            r#"{{"id": "{id}", "pid": 999999, "started": "2026-01-01T00:00:00Z", "from_revision": {rev}}}"#
        ),
    )
    .unwrap();
    fs::create_dir(env.path(".wfstate-restore-999999-new-signals")).unwrap();
    er(&env, &["status"]).ok().stdout_has("interrupted restore");
    er(&env, &["cleanup"])
        .ok()
        .stderr_has("finishing the interrupted restore");
    assert_eq!(env.state()["phase"], "pre-init");
    assert!(env.state()["signals"].get("B").is_none());
    assert_eq!(env.list(".signals"), vec!["A.json"]);
    assert!(!env.path(".wfstate-restore.journal").exists());
    assert!(!env.path(".wfstate-restore-999999-new-signals").exists());
}

#[test]
fn list_shows_checkpoints_newest_first_as_table_or_json() {
    let env = Env::new();
    er(&env, &["list"]).ok().stdout_has("no checkpoints");
    env.init();
    let a = checkpoint(&env, &["alpha", "p1"]);
    let b = checkpoint(&env, &["beta", "p2", r#"{"k":1}"#]);
    let rows = er(&env, &["list", "json"]).ok().json();
    assert_eq!(rows[0]["id"], json!(b));
    assert_eq!(rows[1]["id"], json!(a));
    assert_eq!(rows[0]["valid"], json!(true));
    assert_eq!(rows[0]["metadata"], json!({"k": 1}));
    let table = er(&env, &["list"]).ok().stdout;
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.find(&b).unwrap() < table.find(&a).unwrap());
    er(&env, &["list", "yaml"]).code(4).one_line_error(ER);
}

#[test]
fn cleanup_removes_old_checkpoints_and_leftovers_but_keeps_the_newest() {
    let env = Env::new();
    env.init();
    // Made in the order their (earlier-version, local-time) names say: such
    // names are ordered by their metadata's UTC timestamp.
    let older = checkpoint(&env, &["older"]);
    let old = checkpoint(&env, &["old"]);
    let recent = checkpoint(&env, &["recent"]);
    fs::rename(
        env.path(&format!(".checkpoints/{old}")),
        env.path(".checkpoints/checkpoint-20200102-000000-old"),
    )
    .unwrap();
    fs::rename(
        env.path(&format!(".checkpoints/{older}")),
        env.path(".checkpoints/checkpoint-20200101-000000-older"),
    )
    .unwrap();
    // A temp folder of a killed checkpoint.
    fs::create_dir(env.path(".checkpoints/.tmp-checkpoint-20200101-000000-x-999999")).unwrap();

    let dry = er(&env, &["cleanup", "--dry-run"]).ok();
    assert!(
        dry.stdout
            .contains("would remove checkpoint-20200102-000000-old")
    );
    assert_eq!(env.list(".checkpoints").len(), 4);

    er(&env, &["cleanup", "7", "--keep", "2"])
        .ok()
        .stdout_has("removed checkpoint-20200101-000000-older");
    assert_eq!(
        env.list(".checkpoints"),
        vec!["checkpoint-20200102-000000-old".to_string(), recent.clone()]
    );
    er(&env, &["cleanup"]).ok();
    assert_eq!(env.list(".checkpoints"), vec![recent]);
    let ev = events(&env, "cleanup");
    assert_eq!(ev.last().unwrap()["detail"]["removed"], 1);
    er(&env, &["cleanup", "soon"]).code(4);
}

#[test]
fn a_killed_checkpoints_temp_folder_is_removed_by_the_next_checkpoint() {
    let env = Env::new();
    env.init();
    fs::create_dir_all(env.path(".checkpoints/.tmp-checkpoint-20200101-000000-x-999999/signals"))
        .unwrap();
    checkpoint(&env, &["next"]);
    assert!(
        env.list(".checkpoints")
            .iter()
            .all(|n| !n.starts_with(".tmp-"))
    );
}

#[test]
fn is_degraded_flips_with_degrade_and_recover_mode() {
    let env = Env::new();
    env.init();
    er(&env, &["is-degraded"]).code(1);
    er(&env, &["degrade", "db down", r#"["sync", "notify"]"#])
        .ok()
        .stdout_has("degraded mode on");
    er(&env, &["is-degraded"]).ok();
    let dm = &env.state()["degradedMode"];
    assert_eq!(dm["enabled"], json!(true));
    assert_eq!(dm["reason"], "db down");
    assert_eq!(dm["disabledFeatures"], json!(["sync", "notify"]));
    assert!(dm["timestamp"].as_str().unwrap().ends_with('Z'));
    let st = er(&env, &["status", "--json"]).ok().json();
    assert_eq!(st["degraded_mode"]["enabled"], json!(true));
    er(&env, &["status"]).ok().stdout_has("ON since");
    er(&env, &["recover-mode"]).ok().stdout_has("off");
    er(&env, &["is-degraded"]).code(1);
    assert_eq!(env.state()["degradedMode"]["enabled"], json!(false));
    assert_eq!(events(&env, "degrade").len(), 1);
    assert_eq!(events(&env, "recover-mode").len(), 1);
}

#[test]
fn degrade_with_bad_features_is_refused_and_changes_nothing() {
    let env = Env::new();
    env.init();
    let before = env.bytes(".workflow-state.json");
    for bad in ["[1, 2]", "{\"a\": 1}", "not json"] {
        er(&env, &["degrade", "x", bad]).code(4).one_line_error(ER);
    }
    assert_eq!(env.bytes(".workflow-state.json"), before);
    er(&env, &["is-degraded"]).code(1);
}

#[test]
fn status_reports_recent_failures_from_the_audit_log() {
    let env = Env::new();
    env.init();
    er(&env, &["restore", "nope"]).code(1);
    env.run("state-manager", &["set", ".phase", "1"]).code(4);
    let st = er(&env, &["status", "--json"]).ok().json();
    let f = st["recent_failures"].as_array().unwrap();
    assert_eq!(st["failure_count"], 2);
    assert_eq!(f.len(), 2);
    assert_eq!(f[0]["op"], "restore");
    assert_eq!(f[1]["tool"], "state-manager");
    assert_eq!(f[1]["exit_code"], 4);
    er(&env, &[]).ok().stdout_has("failures:       2");
}

/// A shell command that appends `$WFSTATE_ATTEMPT` to `log` and exits with
/// the code `codes` gives for that attempt (a shell `case`).
fn counting(log: &Path, case: &str) -> String {
    format!(
        "echo \"$WFSTATE_ATTEMPT\" >> '{}'; case \"$WFSTATE_ATTEMPT\" in {case}; esac",
        log.display()
    )
}

fn attempts(log: &Path) -> Vec<String> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn retry_counts_attempts_exactly_and_returns_the_last_code() {
    let env = Env::new();
    let log = env.path("log");
    // See docs/migrating.md — the old library returned 0 after failing every attempt.
    er(
        &env,
        &[
            "retry",
            "--attempts",
            "4",
            "--delay",
            "0.01",
            "--",
            "sh",
            "-c",
            &counting(&log, "*) exit $((10 + WFSTATE_ATTEMPT))"),
        ],
    )
    .code(14)
    .stderr_has("failed 4 attempt(s)");
    assert_eq!(attempts(&log), ["1", "2", "3", "4"]);

    let ev = events(&env, "retry");
    assert_eq!(ev.len(), 5, "4 attempts and the outcome");
    for (i, e) in ev[..4].iter().enumerate() {
        assert_eq!(e["detail"]["attempt"], i + 1);
        assert_eq!(e["detail"]["child_exit"], 11 + i);
        assert!(e["detail"]["delay_ms"].as_f64().is_some());
    }
    assert_eq!(ev[3]["detail"]["delay_ms"], 0.0);
    assert_eq!(ev[4]["detail"]["attempts"], 4);
    assert_eq!(ev[4]["detail"]["outcome"], "exhausted");
    assert_eq!(ev[4]["exit_code"], 14);
}

#[test]
fn retry_stops_at_the_first_success() {
    let env = Env::new();
    let log = env.path("log");
    er(
        &env,
        &[
            "retry",
            "--attempts",
            "5",
            "--delay",
            "0.01",
            "--",
            "sh",
            "-c",
            &counting(&log, "1|2) exit 1;; *) exit 0"),
        ],
    )
    .ok();
    assert_eq!(attempts(&log), ["1", "2", "3"]);
    let ev = events(&env, "retry");
    assert_eq!(ev.last().unwrap()["detail"]["outcome"], "success");
    // Without options: one attempt that succeeds, child's output passed through.
    er(&env, &["retry", "echo", "hello"])
        .ok()
        .stdout_has("hello");
}

#[test]
fn retry_does_not_retry_4_6_7_unless_retry_on_lists_them() {
    let env = Env::new();
    for code in ["4", "6", "7"] {
        let log = env.path(&format!("log{code}"));
        // See issue 15: only a command that speaks wfstate's codes (one of
        // its binaries, or --codes wfstate) keeps 4, 6 and 7 final.
        er(
            &env,
            &[
                "retry",
                "--delay",
                "0.01",
                "--codes",
                "wfstate",
                "--",
                "sh",
                "-c",
                &counting(&log, &format!("*) exit {code}")),
            ],
        )
        .code(code.parse().unwrap())
        .stderr_has("not retried");
        assert_eq!(attempts(&log), ["1"], "exit {code}");
    }
    let log = env.path("log-on");
    er(
        &env,
        &[
            "retry",
            "--delay",
            "0.01",
            "--retry-on",
            "4",
            "--",
            "sh",
            "-c",
            &counting(&log, "*) exit 4"),
        ],
    )
    .code(4);
    assert_eq!(attempts(&log), ["1", "2", "3"]);
    // --retry-on lists what is retried: 1 is not in it.
    let log = env.path("log-only");
    er(
        &env,
        &[
            "retry",
            "--delay",
            "0.01",
            "--retry-on",
            "2-3",
            "--",
            "sh",
            "-c",
            &counting(&log, "*) exit 1"),
        ],
    )
    .code(1);
    assert_eq!(attempts(&log), ["1"]);
}

#[test]
fn retry_passes_a_signal_death_through_as_128_plus_n() {
    let env = Env::new();
    er(
        &env,
        &[
            "retry",
            "--attempts",
            "2",
            "--delay",
            "0.01",
            "--",
            "sh",
            "-c",
            "kill -9 $$",
        ],
    )
    .code(137);
}

#[test]
fn retry_timeout_exits_9_and_leaves_no_child_running() {
    let env = Env::new();
    let pids = env.path("pids");
    let script = format!(
        "echo $$ >> '{p}'; sleep 60 & echo $! >> '{p}'; trap '' TERM; sleep 60 & echo $! >> '{p}'; wait",
        p = pids.display()
    );
    let started = Instant::now();
    er(
        &env,
        &["retry", "--timeout", "0.5", "--", "sh", "-c", &script],
    )
    .code(9)
    .stderr_has("timed out");
    assert!(started.elapsed() < Duration::from_secs(10));
    let pids: Vec<u32> = attempts(&pids).iter().map(|p| p.parse().unwrap()).collect();
    assert_eq!(pids.len(), 3);
    for pid in pids {
        assert!(!running(pid), "pid {pid} still runs");
    }
    let ev = events(&env, "retry");
    assert_eq!(ev.last().unwrap()["detail"]["outcome"], "timeout");
    assert_eq!(ev.last().unwrap()["exit_code"], 9);
}

#[test]
fn retry_waits_never_overshoot_the_timeout() {
    let env = Env::new();
    let started = Instant::now();
    er(
        &env,
        &[
            "retry",
            "--attempts",
            "5",
            "--delay",
            "30",
            "--jitter",
            "none",
            "--timeout",
            "1",
            "--",
            "false",
        ],
    )
    .code(9);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn retry_of_a_missing_command_exits_5_and_bad_options_4() {
    let env = Env::new();
    er(&env, &["retry", "--", "no-such-command-wfstate"])
        .code(5)
        .one_line_error(ER)
        .stderr_has("not found");
    er(&env, &["retry", "--attempts", "0", "--", "true"]).code(4);
    er(&env, &["retry", "--retry-on", "x", "--", "true"]).code(4);
    er(&env, &["retry", "--delay", "-1", "--", "true"]).code(4);
    er(&env, &["retry", "--multiplier", "0.5", "--", "true"]).code(4);
    er(&env, &["retry"]).code(1);
}

#[test]
fn handle_3_apply_repairs_a_corrupt_state() {
    let env = Env::new();
    env.init();
    env.sm(&["set", ".phase", "\"impl\""]);
    env.sm(&["set", ".phase", "\"review\""]);
    fs::write(env.state_file(), b"{\"phase\": ").unwrap();
    env.run("state-manager", &["read"]).code(3);
    er(&env, &["handle", "3", "--apply"])
        .ok()
        .stdout_has("recovered");
    env.run("state-manager", &["validate"]).ok();
    assert_eq!(env.state()["phase"], "impl");
    assert!(env.list(".").iter().any(|n| n.contains(".corrupt-")));
    let ev = events(&env, "handle");
    assert_eq!(ev.last().unwrap()["detail"]["recovered"], json!(true));
    // A valid state needs nothing: no damage found, so exit 3 stays (issue #11).
    er(&env, &["handle", "3", "--apply"])
        .code(3)
        .stdout_has("nothing was changed");
}

#[test]
fn handle_3_without_a_valid_backup_exits_3_and_changes_nothing() {
    let env = Env::new();
    fs::write(env.state_file(), b"garbage").unwrap();
    er(&env, &["handle", "3", "--apply"])
        .code(3)
        .stderr_has("no valid backup");
    assert_eq!(env.bytes(".workflow-state.json"), b"garbage");
}

/// Exit 4 is a refused input, not damage: restoring the latest checkpoint
/// (what this test used to assert) discarded every commit since (issue #11).
#[test]
fn handle_4_apply_on_a_valid_state_keeps_every_commit() {
    let env = Env::new();
    env.init();
    env.sm(&["set", ".phase", "\"checked\""]);
    checkpoint(&env, &["safe"]);
    env.sm(&["set", ".phase", "\"later\""]);
    er(&env, &["handle", "4", "--apply"])
        .code(4)
        .stdout_has("nothing to recover");
    assert_eq!(env.state()["phase"], "later");
}

/// The start time of a process (field 22 of /proc/PID/stat).
fn start_time(pid: u32) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &s[s.rfind(')').unwrap() + 2..];
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

fn lock_record(name: &str, pid: u32, start: u64, boot: &str) -> String {
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    json!({
        "name": name, "type": "exclusive", "timestamp": "2026-01-01T00:00:00Z",
        "holders": [{
            "pid": pid, "start_time": start, "boot_id": boot, "host": host.trim(),
            "acquired": "2026-01-01T00:00:00Z"
        }]
    })
    .to_string()
}

#[test]
fn handle_2_apply_removes_stale_locks_only() {
    let env = Env::new();
    let boot = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let boot = boot.trim();
    fs::create_dir(env.path(".locks")).unwrap();
    let me = std::process::id();
    fs::write(
        env.path(".locks/stale.lock"),
        lock_record("stale", me, start_time(me) + 1, boot),
    )
    .unwrap();
    fs::write(
        env.path(".locks/old-boot.lock"),
        lock_record("old-boot", me, start_time(me), "another-boot"),
    )
    .unwrap();
    fs::write(
        env.path(".locks/live.lock"),
        lock_record("live", me, start_time(me), boot),
    )
    .unwrap();
    er(&env, &["handle", "2", "--apply"])
        .ok()
        .stdout_has("removed 2 stale lock(s)");
    let left: Vec<String> = env
        .list(".locks")
        .into_iter()
        .filter(|n| n.ends_with(".lock"))
        .collect();
    assert_eq!(left, vec!["live.lock"]);
    // Nothing stale left: the timeout was a live holder's, exit 2.
    er(&env, &["handle", "2", "--apply"])
        .code(2)
        .stdout_has("no stale lock");
}

#[test]
fn handle_7_apply_prunes_backups_checkpoints_and_temp_files() {
    let env = Env::new();
    env.init();
    for i in 0..4 {
        env.sm(&["set", ".phase", &format!("\"p{i}\"")]);
    }
    let keep = checkpoint(&env, &["keep"]);
    let old = checkpoint(&env, &["old"]);
    fs::rename(
        env.path(&format!(".checkpoints/{old}")),
        env.path(".checkpoints/checkpoint-20200101-000000-old"),
    )
    .unwrap();
    fs::write(env.path("..workflow-state.json.999999.0.tmp"), "x").unwrap();
    fs::write(env.path(".state-backups/.x.999999.0.tmp"), "x").unwrap();
    er(&env, &["--keep-backups", "2", "handle", "7", "--apply"])
        .ok()
        .stdout_has("removed");
    assert_eq!(env.list(".state-backups").len(), 2);
    assert_eq!(env.list(".checkpoints"), vec![keep]);
    assert!(!env.path("..workflow-state.json.999999.0.tmp").exists());
    assert!(!env.path(".state-backups/.x.999999.0.tmp").exists());
}

#[test]
fn handle_and_suggest_cover_every_code_and_refuse_others() {
    let env = Env::new();
    for code in 1..=10 {
        let c = code.to_string();
        er(&env, &["suggest", &c])
            .ok()
            .stdout_has(&format!("exit {code} "));
    }
    er(&env, &["suggest", "0"])
        .ok()
        .stdout_has("nothing failed");
    for bad in ["11", "-1", "x", "255"] {
        er(&env, &["suggest", bad]).code(4).one_line_error(ER);
        er(&env, &["handle", bad]).code(4).one_line_error(ER);
    }
    // No strategy, or not applied: the suggestion, and exit CODE.
    er(&env, &["handle", "9", "--apply"])
        .code(9)
        .stdout_has("automatic: none");
    assert_eq!(events(&env, "handle").last().unwrap()["exit_code"], 9);
    er(&env, &["handle", "10", "--apply"]).code(10);
    er(&env, &["handle", "3"])
        .code(3)
        .stdout_has("handle 3 --apply");
    er(&env, &["handle", "0"]).ok();
    er(&env, &["handle", "5", "cannot find jq"])
        .code(5)
        .stderr_has("cannot find jq");
    assert_eq!(
        events(&env, "handle").last().unwrap()["detail"]["message"],
        "cannot find jq"
    );
}

#[test]
fn checkpoint_metadata_satisfies_its_schema() {
    let env = Env::new();
    env.init();
    env.sm(&["signal", "A"]);
    fs::create_dir(env.path("config")).unwrap();
    fs::write(env.path("config/c"), "c").unwrap();
    let validator = schema_validator("schemas/checkpoint.schema.json");
    for _ in 0..2 {
        let id = checkpoint(&env, &["op.x", "phase", r#"["any", 1]"#]);
        let meta: Value =
            serde_json::from_slice(&env.bytes(&format!(".checkpoints/{id}/metadata.json")))
                .unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&meta)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{id}: {errors:?}");
        let mut broken = meta.clone();
        broken["files"]["state.json"] = json!("not-a-sha");
        assert!(!validator.is_valid(&broken));
    }
}
