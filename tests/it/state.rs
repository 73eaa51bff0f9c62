//! state-manager: every subcommand's success path, every exit code it can
//! return, refused input leaving the state byte-for-byte unchanged,
//! concurrent appends, backups in one second, recovery of a corrupt state.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Env, Run, bin_path};

/// Runs `args` and asserts it exits `code` with a one-line error and the
/// state file byte-for-byte as before.
#[track_caller]
fn refused(env: &Env, args: &[&str], code: i32) -> Run {
    let before = env.bytes(".workflow-state.json");
    let backups = env.list(".state-backups");
    let run = env
        .run("state-manager", args)
        .code(code)
        .one_line_error("state-manager");
    assert_eq!(
        env.bytes(".workflow-state.json"),
        before,
        "state changed by refused {args:?}"
    );
    assert_eq!(
        env.list(".state-backups"),
        backups,
        "backups changed by refused {args:?}"
    );
    run
}

#[test]
fn init_creates_a_private_valid_state_and_is_idempotent() {
    let env = Env::new();
    env.run("state-manager", &["init"])
        .ok()
        .stdout_has("initialized");
    let doc = env.state();
    assert_eq!(doc["schemaVersion"], "1.0");
    assert_eq!(doc["phase"], "pre-init");
    assert_eq!(doc["completedTasks"], json!([]));
    assert_eq!(doc["signals"], json!({}));
    assert_eq!(doc["degradedMode"]["enabled"], json!(false));
    assert!(doc["metadata"]["created"].is_string());
    assert_eq!(doc["metadata"]["revision"], json!(1));
    let mode = |p: &str| fs::metadata(env.path(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(".workflow-state.json"), 0o600);
    assert_eq!(mode(".state-backups"), 0o700);
    let before = env.bytes(".workflow-state.json");
    env.run("state-manager", &["init"])
        .ok()
        .stdout_has("already initialized");
    assert_eq!(env.bytes(".workflow-state.json"), before);
}

#[test]
fn init_creates_a_missing_state_folder() {
    let env = Env::new();
    let nested = env.path("a/b/state.json");
    env.cmd("state-manager")
        .env("STATE_FILE", &nested)
        .arg("init")
        .status()
        .unwrap();
    assert!(nested.exists());
}

#[test]
fn read_prints_the_document_or_one_value() {
    let env = Env::new();
    env.init();
    let doc: Value = serde_json::from_str(&env.sm(&["read"])).unwrap();
    assert_eq!(doc, env.state());
    assert_eq!(env.sm(&["read", ".phase"]), "\"pre-init\"\n");
    assert_eq!(env.sm(&["read", ".phase", "--raw"]), "pre-init\n");
    assert_eq!(env.sm(&["read", ".degradedMode.enabled"]), "false\n");
    assert_eq!(env.sm(&["read", ".no.such.key"]), "null\n");
    refused(&env, &["read", "phase"], 4).stderr_has("bad path");
}

#[test]
fn read_of_a_corrupt_state_exits_3_naming_recover() {
    let env = Env::new();
    env.init();
    fs::write(env.state_file(), b"{\"phase\": ").unwrap();
    env.run("state-manager", &["read"])
        .code(3)
        .one_line_error("state-manager")
        .stderr_has("state-manager recover");
}

#[test]
fn commands_without_a_state_exit_1_naming_init() {
    let env = Env::new();
    env.run("state-manager", &["read"])
        .code(1)
        .stderr_has("state-manager init");
    env.run("state-manager", &["set", ".phase", "\"x\""])
        .code(1)
        .stderr_has("state-manager init");
    assert!(!env.state_file().exists());
}

#[test]
fn write_replaces_the_document_from_an_argument_or_stdin() {
    let env = Env::new();
    env.init();
    let mut doc = env.state();
    doc["phase"] = json!("implementation");
    doc["context"] = json!({"activeSkills": ["tdd"]});
    env.run("state-manager", &["write", &doc.to_string(), "handoff"])
        .ok();
    assert_eq!(env.state()["phase"], "implementation");
    assert_eq!(env.state()["context"]["activeSkills"], json!(["tdd"]));
    assert_eq!(env.state()["metadata"]["revision"], json!(2));
    assert!(
        env.list(".state-backups")
            .iter()
            .any(|n| n.contains("-handoff"))
    );
    // Read again: a document read at revision 1 would now be refused (the
    // serial rule, issue #11), which this test used to rely on not happening.
    let mut doc = env.state();
    doc["phase"] = json!("review");
    env.run_stdin("state-manager", &["write", "-"], &doc.to_string())
        .ok();
    assert_eq!(env.state()["phase"], "review");
    assert_eq!(env.state()["metadata"]["revision"], json!(3));
}

#[test]
fn write_refuses_invalid_documents_and_changes_nothing() {
    let env = Env::new();
    env.init();
    let mut bad = env.state();
    bad["phase"] = json!(7);
    refused(&env, &["write", &bad.to_string()], 4).stderr_has("/phase");
    refused(&env, &["write", "{not json"], 4).stderr_has("not valid JSON");
    refused(&env, &["write", "[1,2]"], 4).stderr_has("not an object");
    refused(&env, &["write", "{\"phase\":\"x\"}"], 4).stderr_has("schemaVersion");
}

#[test]
fn write_with_expect_revision_refuses_a_stale_writer() {
    let env = Env::new();
    env.init();
    let doc = env.state();
    let rev = doc["metadata"]["revision"].as_u64().unwrap();
    env.sm(&["set", ".phase", "\"moved-on\""]);
    refused(
        &env,
        &[
            "write",
            &doc.to_string(),
            "--expect-revision",
            &rev.to_string(),
        ],
        4,
    )
    .stderr_has("revision conflict");
    let now = env.state()["metadata"]["revision"].as_u64().unwrap();
    env.run(
        "state-manager",
        &[
            "write",
            &doc.to_string(),
            "--expect-revision",
            &now.to_string(),
        ],
    )
    .ok();
    assert_eq!(
        env.state()["metadata"]["revision"].as_u64().unwrap(),
        now + 1
    );
    let conflict = env
        .audit_events()
        .into_iter()
        .find(|e| e["detail"]["conflict"] == "revision")
        .unwrap();
    assert_eq!(conflict["exit_code"], 4);
}

#[test]
fn set_merge_append_and_signal_change_the_state() {
    let env = Env::new();
    env.init();
    env.sm(&["set", ".phase", "\"implementation\""]);
    env.sm(&["set", ".context.activeSkills", "[\"a\"]"]);
    env.sm(&["set", ".lastActivation", "SPEC_GEN_V1", "--string"]);
    env.sm(&["append", ".completedTasks", "\"1.1\""]);
    env.sm(&["append", ".completedTasks", "1.2", "--string"]);
    env.sm(&[
        "merge",
        "{\"context\":{\"activeSkills\":null,\"mode\":\"fast\"}}",
    ]);
    env.sm(&["signal", "PHASE1_START"]);
    let doc = env.state();
    assert_eq!(doc["phase"], "implementation");
    assert_eq!(doc["lastActivation"], "SPEC_GEN_V1");
    assert_eq!(doc["completedTasks"], json!(["1.1", "1.2"]));
    assert_eq!(doc["context"], json!({"mode": "fast"}));
    let at = doc["signals"]["PHASE1_START"].as_f64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - at).abs() < 60.0, "signal time {at} vs now {now}");
    let file: Value = serde_json::from_slice(&env.bytes(".signals/PHASE1_START.json")).unwrap();
    assert_eq!(file["timestamp"].as_f64().unwrap(), at);
    assert_eq!(doc["metadata"]["revision"], json!(8));
}

#[test]
fn refused_changes_leave_the_state_byte_for_byte() {
    let env = Env::new();
    env.init();
    env.sm(&["set", ".phase", "\"p\""]);
    refused(&env, &["set", ".phase", "not-json"], 4).stderr_has("--string");
    refused(&env, &["set", ".phase", "5"], 4).stderr_has("/phase");
    refused(&env, &["set", ".", "{}"], 4).stderr_has("write");
    refused(&env, &["set", ".phase.x", "1"], 4).stderr_has("a string");
    refused(&env, &["append", ".phase", "\"x\""], 4).stderr_has("append only to an array");
    refused(&env, &["append", ".completedTasks", "5"], 4).stderr_has("/completedTasks/0");
    refused(&env, &["merge", "[1]"], 4).stderr_has("object");
    refused(&env, &["merge", "{\"signals\":{\"X\":\"later\"}}"], 4).stderr_has("/signals/X");
    for name in ["a/b", "..", ".hidden", "", "with space"] {
        refused(&env, &["signal", name], 4).stderr_has("bad signal name");
    }
    assert!(env.list(".signals").is_empty());
}

#[test]
fn validate_reports_each_violation_with_its_pointer() {
    let env = Env::new();
    env.init();
    env.run("state-manager", &["validate"])
        .ok()
        .stdout_has("valid");
    let mut doc = env.state();
    doc["phase"] = json!(1);
    doc["completedTasks"] = json!([true]);
    fs::write(env.state_file(), doc.to_string()).unwrap();
    let run = env.run("state-manager", &["validate"]).code(4);
    assert!(
        run.stdout.contains("/phase:") && run.stdout.contains("/completedTasks/0:"),
        "{}",
        run.stdout
    );
    let j = env
        .run("state-manager", &["validate", "--json"])
        .code(4)
        .json();
    assert_eq!(j["valid"], json!(false));
    assert_eq!(j["violations"].as_array().unwrap().len(), 2);
    fs::write(env.state_file(), b"{oops").unwrap();
    env.run("state-manager", &["validate"]).code(3);
}

#[test]
fn backup_list_and_recover_by_pattern() {
    let env = Env::new();
    env.init();
    env.sm(&["set", ".phase", "\"one\""]);
    let made = env.sm(&["backup", "before-two"]);
    assert!(made.trim().ends_with("-before-two.json"), "{made}");
    env.sm(&["set", ".phase", "\"two\""]);
    let list = env
        .run("state-manager", &["list-backups", "--json"])
        .ok()
        .json();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|b| b["valid"] == json!(true))
    );
    env.run("state-manager", &["list-backups"])
        .ok()
        .stdout_has("before-two");
    env.run("state-manager", &["recover", "before-two"])
        .ok()
        .stdout_has("recovered");
    assert_eq!(env.state()["phase"], "one");
    // The version it replaced was kept as a backup too.
    let newest = &env
        .run("state-manager", &["list-backups", "--json"])
        .ok()
        .json()[0];
    let kept: Value =
        serde_json::from_slice(&fs::read(newest["path"].as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(kept["phase"], "two");
    refused(&env, &["recover", "no-such-backup"], 3).stderr_has("no valid backup matches");
}

#[test]
fn two_backups_in_one_second_are_both_kept() {
    let env = Env::new();
    env.init();
    let a = env.sm(&["backup", "same"]);
    env.sm(&["set", ".phase", "\"b\""]);
    let b = env.sm(&["backup", "same"]);
    assert_ne!(a, b);
    let names = env.list(".state-backups");
    assert_eq!(
        names.iter().filter(|n| n.contains("-same")).count(),
        2,
        "{names:?}"
    );
}

#[test]
fn backups_are_pruned_to_the_configured_count() {
    let env = Env::new();
    env.init();
    for i in 0..8 {
        env.sm(&["set", ".phase", &format!("\"p{i}\"")]);
    }
    assert_eq!(env.list(".state-backups").len(), 5);
    env.cmd("state-manager")
        .env("BACKUP_KEEP", "2")
        .args(["set", ".phase", "\"last\""])
        .status()
        .unwrap();
    assert_eq!(env.list(".state-backups").len(), 2);
    env.run(
        "state-manager",
        &["--keep-backups", "3", "set", ".phase", "\"x\""],
    )
    .ok();
    assert_eq!(env.list(".state-backups").len(), 3);
}

#[test]
fn corrupt_state_is_recovered_by_init_with_the_corrupt_bytes_kept_aside() {
    let env = Env::new();
    env.init();
    env.sm(&["set", ".phase", "\"good\""]);
    env.sm(&["set", ".phase", "\"better\""]);
    let garbage = b"{\"phase\": \"better\", truncated";
    fs::write(env.state_file(), garbage).unwrap();
    env.run("state-manager", &["init"])
        .ok()
        .stderr_has("restored the newest valid backup");
    assert_eq!(env.state()["phase"], "good");
    let aside: Vec<String> = env
        .list(".")
        .into_iter()
        .filter(|n| n.contains(".corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(env.bytes(&aside[0]), garbage);
}

#[test]
fn corrupt_state_with_no_backup_is_replaced_by_a_fresh_one_on_init() {
    let env = Env::new();
    fs::write(env.state_file(), b"\x00\x01garbage").unwrap();
    env.run("state-manager", &["init"])
        .ok()
        .stderr_has("fresh state");
    assert_eq!(env.state()["phase"], "pre-init");
    assert!(env.list(".").iter().any(|n| n.contains(".corrupt-")));
}

#[test]
fn recover_restores_a_corrupt_state_and_keeps_it_aside() {
    let env = Env::new();
    env.init();
    env.sm(&["set", ".phase", "\"kept\""]);
    env.sm(&["set", ".phase", "\"lost\""]);
    fs::write(env.state_file(), b"not json").unwrap();
    env.run("state-manager", &["recover"])
        .ok()
        .stdout_has("recovered");
    assert_eq!(env.state()["phase"], "kept");
    let aside: Vec<String> = env
        .list(".")
        .into_iter()
        .filter(|n| n.contains(".corrupt-"))
        .collect();
    assert_eq!(env.bytes(&aside[0]), b"not json");
}

#[test]
fn recover_without_backups_exits_3_and_changes_nothing() {
    let env = Env::new();
    env.init();
    refused(&env, &["recover"], 3).stderr_has("no valid backup");
}

#[test]
fn migrate_upgrades_old_documents_and_refuses_newer_ones() {
    let env = Env::new();
    fs::write(
        env.state_file(),
        r#"{"phase":"impl","signals":{"A":1.5},"custom":{"x":1}}"#,
    )
    .unwrap();
    env.run("state-manager", &["validate"]).code(4);
    env.run("state-manager", &["migrate"])
        .ok()
        .stdout_has("migrated to schema version 1.0");
    let doc = env.state();
    assert_eq!(doc["schemaVersion"], "1.0");
    assert_eq!(doc["phase"], "impl");
    assert_eq!(doc["signals"]["A"], 1.5);
    assert_eq!(doc["custom"]["x"], 1);
    assert_eq!(env.list(".state-backups").len(), 1, "backed up first");
    env.run("state-manager", &["validate"]).ok();
    env.run("state-manager", &["migrate"])
        .ok()
        .stdout_has("already");
    let mut newer = env.state();
    newer["schemaVersion"] = json!("2.0");
    fs::write(env.state_file(), newer.to_string()).unwrap();
    refused(&env, &["migrate"], 4).stderr_has("newer");
}

#[test]
fn status_reports_the_state_and_its_exit_code_says_how_it_is() {
    let env = Env::new();
    env.run("state-manager", &[]).code(1).stdout_has("missing");
    env.init();
    env.run("state-manager", &[])
        .ok()
        .stdout_has("phase:          pre-init");
    let j = env.run("state-manager", &["status", "--json"]).ok().json();
    assert_eq!(j["valid"], json!(true));
    assert_eq!(j["revision"], json!(1));
    assert_eq!(j["degraded_mode"]["enabled"], json!(false));
    fs::write(env.state_file(), b"{").unwrap();
    assert_eq!(
        env.run("state-manager", &["status", "--json"])
            .code(3)
            .json()["condition"],
        "corrupt"
    );
}

#[test]
fn usage_errors_exit_1_not_2() {
    let env = Env::new();
    env.run("state-manager", &["no-such-command"]).code(1);
    env.run("state-manager", &["set", ".phase"]).code(1);
    env.run("state-manager", &["--help"])
        .ok()
        .stdout_has("Exit codes");
    env.run("state-manager", &["--version"]).ok();
}

#[test]
fn a_state_file_symlinked_out_of_the_root_is_refused_with_exit_6() {
    let env = Env::new();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("elsewhere.json");
    fs::write(&target, b"{}").unwrap();
    std::os::unix::fs::symlink(&target, env.state_file()).unwrap();
    env.run("state-manager", &["set", ".phase", "\"x\""])
        .code(6)
        .one_line_error("state-manager");
    env.run("state-manager", &["read"]).code(6);
    assert_eq!(fs::read(&target).unwrap(), b"{}");
}

#[test]
fn a_backup_folder_symlinked_out_of_the_root_is_refused_with_exit_6() {
    let env = Env::new();
    env.init();
    fs::remove_dir(env.path(".state-backups")).unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), env.path(".state-backups")).unwrap();
    refused(&env, &["set", ".phase", "\"x\""], 6);
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn input_over_16_mib_is_refused_with_exit_10() {
    let env = Env::new();
    env.init();
    let big = format!("{{\"phase\":\"{}\"}}", "x".repeat(17 * 1024 * 1024));
    let before = env.bytes(".workflow-state.json");
    env.run_stdin("state-manager", &["write", "-"], &big)
        .code(10)
        .one_line_error("state-manager");
    assert_eq!(env.bytes(".workflow-state.json"), before);
}

#[test]
fn a_state_held_by_another_owner_times_out_with_exit_2() {
    let env = Env::new();
    env.init();
    // A live holder that is not the caller (the caller is this test process).
    let mut holder = Command::new("sleep").arg("30").spawn().unwrap();
    let me = wfstate::lock::Identity::of_pid(holder.id()).unwrap();
    let record = json!({
        "name": "state", "type": "exclusive", "timestamp": "2026-01-01T00:00:00Z",
        "holders": [{"pid": me.pid, "start_time": me.start_time, "boot_id": me.boot_id, "host": me.host,
                     "acquired": "2026-01-01T00:00:00Z"}]
    });
    fs::create_dir_all(env.path(".locks")).unwrap();
    fs::write(env.path(".locks/state.lock"), record.to_string()).unwrap();
    let before = env.bytes(".workflow-state.json");
    let started = Instant::now();
    env.run(
        "state-manager",
        &["--lock-timeout", "0.3", "set", ".phase", "\"x\""],
    )
    .code(2)
    .one_line_error("state-manager")
    .stderr_has("lock-manager list");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(env.bytes(".workflow-state.json"), before);
    // Acting as that owner, the same call passes: no self-deadlock.
    env.run(
        "state-manager",
        &["--owner", &me.pid.to_string(), "set", ".phase", "\"x\""],
    )
    .ok();
    holder.kill().unwrap();
    holder.wait().unwrap();
    // Its holder gone, the lock is stale and no longer blocks anyone.
    env.run(
        "state-manager",
        &["--lock-timeout", "0.3", "set", ".phase", "\"y\""],
    )
    .ok();
}

#[test]
fn disk_full_is_exit_7_and_the_state_survives() {
    let env = Env::new();
    let mnt = env.path("small");
    fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&mnt)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot mount a tmpfs here (needs root and mount rights)");
        return;
    }
    let state = mnt.join("s.json");
    let run = |args: &[&str]| {
        Run::of(
            env.cmd("state-manager")
                .env("STATE_FILE", &state)
                .args(args)
                .output()
                .unwrap(),
        )
    };
    run(&["init"]).ok();
    let before = fs::read(&state).unwrap();
    let big = format!("\"{}\"", "x".repeat(100 * 1024));
    let r = run(&["set", ".phase", &big]);
    let after = fs::read(&state).unwrap();
    let _ = Command::new("umount").arg(&mnt).status();
    assert_eq!(r.code, 7, "stderr: {}", r.stderr);
    assert_eq!(after, before);
}

#[test]
fn every_operation_writes_one_audit_event() {
    let env = Env::new();
    env.init();
    env.sm(&["set", ".phase", "\"x\""]);
    env.sm(&["read", ".phase"]);
    env.run("state-manager", &["set", ".phase", "5"]).code(4);
    let events = env.audit_events();
    let ops: Vec<&str> = events.iter().map(|e| e["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["init", "set", "read", "set"]);
    let failed = &events[3];
    assert_eq!(failed["exit_code"], 4);
    assert_eq!(failed["outcome"], "error");
    assert_eq!(events[1]["detail"]["revision"], 2);
    for e in &events {
        for key in [
            "ts",
            "tool",
            "op",
            "target",
            "pid",
            "ppid",
            "host",
            "user",
            "duration_ms",
            "exit_code",
            "outcome",
        ] {
            assert!(!e[key].is_null(), "{key} missing in {e}");
        }
    }
}

#[test]
fn an_unwritable_audit_log_warns_but_never_fails_the_operation() {
    let env = Env::new();
    env.init();
    let r = Run::of(
        env.cmd("state-manager")
            .env("AUDIT_LOG", "/dev/full")
            .args(["set", ".phase", "\"x\""])
            .output()
            .unwrap(),
    );
    let r = r.ok();
    assert!(
        r.stderr.contains("warning: cannot write audit log"),
        "{}",
        r.stderr
    );
    assert_eq!(env.state()["phase"], "x");
}

fn spawn_appender(env: &Env, worker: usize, count: usize) -> Child {
    let script = format!(
        "for i in $(seq 1 {count}); do \"$SM\" append .completedTasks \"\\\"w{worker}-$i\\\"\" || exit 1; done"
    );
    let mut c = Command::new("bash");
    env.clean_env(&mut c);
    c.env("SM", bin_path("state-manager"))
        .args(["-c", &script])
        .spawn()
        .expect("spawn bash")
}

#[test]
fn eight_processes_times_fifty_concurrent_appends_keep_all_400() {
    let env = Env::new();
    env.init();
    let children: Vec<Child> = (0..8).map(|w| spawn_appender(&env, w, 50)).collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let tasks = env.state()["completedTasks"].as_array().unwrap().clone();
    assert_eq!(tasks.len(), 400);
    for w in 0..8 {
        for i in 1..=50 {
            assert!(tasks.contains(&json!(format!("w{w}-{i}"))), "lost w{w}-{i}");
        }
    }
    assert_eq!(env.state()["metadata"]["revision"], json!(401));
    // No temp files left behind.
    assert!(env.list(".").iter().all(|n| !n.ends_with(".tmp")));
}

#[test]
fn files_and_folders_are_private() {
    let env = Env::new();
    env.init();
    env.sm(&["set", ".phase", "\"x\""]);
    env.sm(&["signal", "S"]);
    for p in [
        ".workflow-state.json",
        ".workflow-audit.jsonl",
        ".signals/S.json",
    ] {
        assert_eq!(
            fs::metadata(env.path(p)).unwrap().mode() & 0o777,
            0o600,
            "{p}"
        );
    }
    for b in env.list(".state-backups") {
        assert_eq!(
            fs::metadata(env.path(&format!(".state-backups/{b}")))
                .unwrap()
                .mode()
                & 0o077,
            0,
            "{b}"
        );
    }
    for d in [".state-backups", ".signals", ".locks"] {
        assert_eq!(
            fs::metadata(env.path(d)).unwrap().mode() & 0o777,
            0o700,
            "{d}"
        );
    }
}
