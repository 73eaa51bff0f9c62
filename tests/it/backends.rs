//! One black-box suite run against both backends: every test below is a
//! `fn(Env)` that sees only the binaries' command line, exit codes and
//! outputs, and [`both!`] runs it once on the state file and once on a
//! redis-server of its own. What only one backend has (files on disk, a
//! server to kill) is tested in the suites of that backend.

use std::process::Command;

use serde_json::{Value, json};

use crate::harness::{Env, assert_schema, bin_dir, bin_path, er, read, repo_root, revision};

use crate::harness::both;

both!(
    init_sets_a_lineage_and_is_idempotent,
    edits_are_transactions_with_revisions,
    write_follows_the_serial_rule,
    bad_input_changes_nothing,
    backups_are_kept_listed_and_recovered,
    backups_follow_retention,
    export_import_round_trip_and_serial_rule,
    import_and_recover_refuse_another_lineage,
    checkpoints_restore_the_state,
    degraded_mode_switches,
    integrity_is_verified,
    audit_review_reads_every_change,
    status_and_health_name_the_backend,
    concurrent_appends_lose_nothing,
    shims_work_unchanged,
    hooks_work_unchanged,
    cleanup_prunes_backups_and_checkpoints,
);

fn init_sets_a_lineage_and_is_idempotent(env: Env) {
    let out = env.run("state-manager", &["init", "--json"]).ok().json();
    assert_schema("state-manager-init.schema.json", &out);
    assert_eq!(out["initialized"], json!(true));
    let lineage = read(&env, ".metadata.lineage");
    let text = lineage.as_str().expect("a lineage string");
    assert_eq!(text.len(), 36, "{text}");
    assert_eq!(&text[14..15], "4", "a version-4 UUID: {text}");
    let again = env.run("state-manager", &["init", "--json"]).ok().json();
    assert_eq!(again["initialized"], json!(false));
    assert_eq!(read(&env, ".metadata.lineage"), lineage);
    env.sm(&["set", ".phase", "\"impl\""]);
    assert_eq!(
        read(&env, ".metadata.lineage"),
        lineage,
        "kept by every write"
    );
}

fn edits_are_transactions_with_revisions(env: Env) {
    env.init();
    let r0 = revision(&env);
    env.sm(&["set", ".phase", "\"impl\""]);
    env.sm(&["merge", r#"{"context": {"ticket": "T-1"}}"#]);
    env.sm(&["append", ".completedTasks", "\"1.1\""]);
    env.sm(&["append", ".completedTasks", "--string", "1.2"]);
    env.sm(&["signal", "BUILD_DONE"]);
    assert_eq!(revision(&env), r0 + 5);
    assert_eq!(read(&env, ".phase"), json!("impl"));
    assert_eq!(read(&env, ".context.ticket"), json!("T-1"));
    assert_eq!(read(&env, ".completedTasks"), json!(["1.1", "1.2"]));
    assert!(read(&env, ".signals.BUILD_DONE").is_f64());
    assert_eq!(env.sm(&["read", ".phase", "-r"]).trim(), "impl");
    let doc = env.state();
    assert_eq!(doc["metadata"]["revision"], json!(r0 + 5));
    // The checksum covers what was written.
    env.run("state-manager", &["verify-integrity"]).ok();
}

fn write_follows_the_serial_rule(env: Env) {
    env.init();
    let doc = env.state();
    let rev = revision(&env);
    let mut next = doc.clone();
    next["phase"] = json!("review");
    let text = next.to_string();
    env.run(
        "state-manager",
        &["write", &text, "--expect-revision", &(rev + 7).to_string()],
    )
    .code(4)
    .stderr_has("revision conflict");
    assert_eq!(revision(&env), rev, "a refused write changes nothing");
    env.run(
        "state-manager",
        &["write", &text, "--expect-revision", &rev.to_string()],
    )
    .ok();
    assert_eq!(read(&env, ".phase"), json!("review"));
    // The old document again: older than the live state.
    env.run("state-manager", &["write", &doc.to_string()])
        .code(4)
        .stderr_has("older than");
    env.run("state-manager", &["write", &doc.to_string(), "--force"])
        .ok();
    assert_eq!(read(&env, ".phase"), doc["phase"]);
}

fn bad_input_changes_nothing(env: Env) {
    env.init();
    env.sm(&["set", ".phase", "\"impl\""]);
    let before = env.sm(&["read"]);
    let backups = env.sm(&["list-backups", "--json"]);
    for (args, code) in [
        (vec!["set", ".phase", "not json"], 4),
        (vec!["set", ".metadata.revision", "1"], 4),
        (vec!["set", ".phase", "5"], 4),
        (vec!["merge", "[1]"], 4),
        (vec!["append", ".phase", "\"x\""], 4),
        (vec!["write", "{\"phase\": 1}"], 4),
        (vec!["signal", "bad name!"], 4),
    ] {
        env.run("state-manager", &args)
            .code(code)
            .one_line_error("state-manager");
    }
    assert_eq!(env.sm(&["read"]), before);
    assert_eq!(env.sm(&["list-backups", "--json"]), backups);
}

fn backups_are_kept_listed_and_recovered(env: Env) {
    env.init();
    env.sm(&["set", ".phase", "\"one\""]);
    env.sm(&["set", ".phase", "\"two\""]);
    let made = env.sm(&["backup", "before-three"]);
    assert!(made.contains("before-three"), "{made}");
    env.sm(&["set", ".phase", "\"three\""]);
    let list = env
        .run("state-manager", &["list-backups", "--json"])
        .ok()
        .json();
    assert_schema("state-manager-list-backups.schema.json", &list);
    let list = list.as_array().unwrap().clone();
    assert!(list.len() >= 3, "{list:?}");
    assert!(list.iter().all(|b| b["valid"] == json!(true)), "{list:?}");
    // Newest first.
    let names: Vec<&str> = list.iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert!(names[0].contains("set"), "{names:?}");
    env.run("state-manager", &["validate-backup", names[0]])
        .ok();
    env.run("state-manager", &["validate-backup", "no-such-backup"])
        .code(1);

    let out = env.run("state-manager", &["recover", "--json"]).ok().json();
    assert_schema("state-manager-recover.schema.json", &out);
    assert_eq!(
        read(&env, ".phase"),
        json!("two"),
        "the newest backup held 'two'"
    );
    env.run("state-manager", &["recover", "before-three"]).ok();
    assert_eq!(read(&env, ".phase"), json!("two"));
    env.run("state-manager", &["recover", "no-such-pattern"])
        .code(3)
        .one_line_error("state-manager");
}

fn backups_follow_retention(env: Env) {
    env.init();
    for i in 0..6 {
        env.sm(&["--keep-backups", "2", "set", ".n", &i.to_string()]);
    }
    let list = env
        .run("state-manager", &["list-backups", "--json"])
        .ok()
        .json();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
}

fn export_import_round_trip_and_serial_rule(env: Env) {
    env.init();
    env.sm(&["set", ".phase", "\"impl\""]);
    let json_out = env.path("state.json");
    let yaml_out = env.path("state.yaml");
    env.sm(&["export", "--output", json_out.to_str().unwrap()]);
    env.sm(&[
        "export",
        "--format",
        "yaml",
        "--output",
        yaml_out.to_str().unwrap(),
    ]);
    let exported: Value = serde_json::from_slice(&std::fs::read(&json_out).unwrap()).unwrap();
    assert_eq!(exported, env.state());
    env.sm(&["set", ".phase", "\"later\""]);
    env.run(
        "state-manager",
        &["import", "--file", yaml_out.to_str().unwrap()],
    )
    .code(4)
    .stderr_has("older than");
    assert_eq!(read(&env, ".phase"), json!("later"));
    let out = env
        .run(
            "state-manager",
            &[
                "import",
                "--file",
                yaml_out.to_str().unwrap(),
                "--force",
                "--json",
            ],
        )
        .ok()
        .json();
    assert_schema("state-manager-import.schema.json", &out);
    assert_eq!(read(&env, ".phase"), json!("impl"));
}

fn import_and_recover_refuse_another_lineage(env: Env) {
    env.init();
    let other = Env::new();
    other.init();
    other.sm(&["set", ".phase", "\"theirs\""]);
    let theirs = other.path("theirs.json");
    other.sm(&["export", "--output", theirs.to_str().unwrap()]);
    let ours = read(&env, ".metadata.lineage");
    env.run(
        "state-manager",
        &["import", "--file", theirs.to_str().unwrap()],
    )
    .code(4)
    .stderr_has("lineage")
    .one_line_error("state-manager");
    assert_eq!(read(&env, ".metadata.lineage"), ours);
    env.run(
        "state-manager",
        &["import", "--file", theirs.to_str().unwrap(), "--force"],
    )
    .ok();
    assert_eq!(read(&env, ".phase"), json!("theirs"));
    // The newest backup now holds our lineage, the live state theirs.
    env.run("state-manager", &["recover"])
        .code(4)
        .stderr_has("lineage");
    env.run("state-manager", &["recover", "--force"]).ok();
    assert_eq!(read(&env, ".metadata.lineage"), ours);
    // A checkpoint of the other lineage: restore refuses it the same way.
    env.run(
        "state-manager",
        &["import", "--file", theirs.to_str().unwrap(), "--force"],
    )
    .ok();
    let id = er(&env, &["checkpoint", "theirs"])
        .ok()
        .stdout
        .trim()
        .to_string();
    env.run("state-manager", &["recover", "--force"]).ok();
    assert_eq!(read(&env, ".metadata.lineage"), ours);
    er(&env, &["restore", &id]).code(4).stderr_has("lineage");
    assert_eq!(read(&env, ".metadata.lineage"), ours);
    er(&env, &["restore", &id, "--force"]).ok();
    assert_eq!(read(&env, ".phase"), json!("theirs"));
}

fn checkpoints_restore_the_state(env: Env) {
    env.init();
    env.sm(&["set", ".phase", "\"built\""]);
    let id = er(&env, &["checkpoint", "build"])
        .ok()
        .stdout
        .trim()
        .to_string();
    assert!(
        id.starts_with("checkpoint-") && id.ends_with("-build"),
        "{id}"
    );
    env.sm(&["set", ".phase", "\"broken\""]);
    let list = er(&env, &["list", "--json"]).ok().json();
    assert_schema("error-recovery-list.schema.json", &list);
    assert_eq!(list[0]["id"], json!(id));
    assert_eq!(list[0]["valid"], json!(true));
    let out = er(&env, &["restore", &id, "--json"]).ok().json();
    assert_schema("error-recovery-restore.schema.json", &out);
    assert_eq!(read(&env, ".phase"), json!("built"));
    er(&env, &["restore", "checkpoint-nope"]).code(1);
    let status = er(&env, &["status", "--json"]).ok().json();
    assert_schema("error-recovery-status.schema.json", &status);
    assert_eq!(status["checkpoints"]["count"], json!(1));
    let cleaned = er(&env, &["cleanup", "0s", "--keep", "0", "--json"])
        .ok()
        .json();
    assert_eq!(cleaned["removed"], json!([id]));
    assert_eq!(er(&env, &["list", "--json"]).ok().json(), json!([]));
}

fn degraded_mode_switches(env: Env) {
    env.init();
    er(&env, &["is-degraded"]).code(1);
    er(&env, &["degrade", "redis slow", r#"["sync"]"#]).ok();
    er(&env, &["is-degraded"]).ok();
    assert_eq!(read(&env, ".degradedMode.reason"), json!("redis slow"));
    er(&env, &["recover-mode"]).ok();
    er(&env, &["is-degraded"]).code(1);
}

fn integrity_is_verified(env: Env) {
    env.init();
    env.sm(&["set", ".phase", "\"impl\""]);
    er(&env, &["checkpoint", "x"]).ok();
    let out = env
        .run("state-manager", &["verify-integrity", "--json"])
        .ok()
        .json();
    assert_schema("state-manager-verify-integrity.schema.json", &out);
    assert_eq!(out["clean"], json!(true));
    assert!(out["summary"]["checked"].as_u64().unwrap() >= 2, "{out}");
    env.run("state-manager", &["validate"]).ok();
}

fn audit_review_reads_every_change(env: Env) {
    env.init();
    env.sm(&["set", ".phase", "\"impl\""]);
    env.run("state-manager", &["set", ".phase", "bad"]).code(4);
    let recent = env
        .run("state-manager", &["audit", "recent", "-n", "10", "--json"])
        .ok()
        .json();
    assert_schema("state-manager-audit-recent.schema.json", &recent);
    let ops: Vec<(&str, i64)> = recent
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["op"].as_str().unwrap(), e["exit_code"].as_i64().unwrap()))
        .collect();
    assert!(ops.contains(&("init", 0)), "{ops:?}");
    assert!(ops.contains(&("set", 0)), "{ops:?}");
    assert!(ops.contains(&("set", 4)), "{ops:?}");
    // One event per operation: the commit's own, not a second one.
    assert_eq!(
        ops.iter().filter(|o| **o == ("set", 0)).count(),
        1,
        "{ops:?}"
    );
    let stats = env
        .run("state-manager", &["audit", "stats", "--json"])
        .ok()
        .json();
    assert_schema("state-manager-audit-stats.schema.json", &stats);
    let export = env.path("audit.jsonl");
    env.sm(&["audit", "export", "--output", export.to_str().unwrap()]);
    let lines = std::fs::read_to_string(&export).unwrap();
    assert!(lines.lines().count() >= 3, "{lines}");
}

fn status_and_health_name_the_backend(env: Env) {
    env.run("state-manager", &["status"]).code(1);
    env.init();
    let status = env.run("state-manager", &["status", "--json"]).ok().json();
    assert_schema("state-manager-status.schema.json", &status);
    let want = if env.redis.is_some() { "redis" } else { "file" };
    assert_eq!(status["backend"], json!(want));
    let health = env.run("state-manager", &["health", "--json"]).ok().json();
    assert_schema("state-manager-health.schema.json", &health);
    assert_eq!(health["backend"], json!(want));
    if env.redis.is_some() {
        assert_eq!(status["namespace"], json!("default"));
        assert_eq!(health["checks"]["persistence"]["status"], json!("healthy"));
    }
}

fn concurrent_appends_lose_nothing(env: Env) {
    env.init();
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let script = format!(
                "for i in $(seq 1 50); do \"$SM\" append .completedTasks '\"{w}-'$i'\"' || exit 1; done"
            );
            let mut c = Command::new("bash");
            env.clean_env(&mut c);
            c.env("SM", bin_path("state-manager"))
                .args(["-c", &script])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut w in workers {
        assert!(w.wait().unwrap().success());
    }
    let tasks = read(&env, ".completedTasks");
    let mut tasks: Vec<String> = tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    assert_eq!(tasks.len(), 400);
    tasks.sort();
    tasks.dedup();
    assert_eq!(tasks.len(), 400, "every append once");
}

fn shims_work_unchanged(env: Env) {
    let mut c = Command::new("bash");
    env.clean_env(&mut c);
    c.env("WFSTATE_BIN", bin_dir())
        .current_dir(repo_root())
        .args([
            "-c",
            r#"set -e
source lib/state-manager.sh; source lib/error-recovery.sh
init_state_manager
lock_state 5
doc=$(read_state)
write_state "${doc/\"pre-init\"/\"shimmed\"}" shim
unlock_state
create_checkpoint shim >/dev/null
validate_state >/dev/null
read_state | grep -q '"shimmed"'
echo done"#,
        ]);
    let out = crate::harness::Run::of(c.output().unwrap()).ok();
    assert!(out.stdout.contains("done"), "{out:?}");
    assert_eq!(read(&env, ".phase"), json!("shimmed"));
}

/// Mixed backends: a file state exported, imported into Redis, exported
/// again and imported back into a file keeps its content and lineage.
#[test]
fn file_and_redis_round_trips_are_equal() {
    let file = Env::new();
    file.init();
    file.sm(&[
        "merge",
        r#"{"phase": "impl", "context": {"n": 1.5, "s": "a: b"}}"#,
    ]);
    file.sm(&["append", ".completedTasks", "\"1.1\""]);
    let redis = Env::redis();
    let one = file.path("one.json");
    file.sm(&["export", "--output", one.to_str().unwrap()]);
    redis.sm(&["import", "--file", one.to_str().unwrap()]);
    let two = file.path("two.yaml");
    redis.sm(&[
        "export",
        "--format",
        "yaml",
        "--output",
        two.to_str().unwrap(),
    ]);
    let back = Env::new();
    back.sm(&["import", "--file", two.to_str().unwrap()]);
    let normal = |mut v: Value| {
        for k in ["lastModified", "revision", "checksum"] {
            v["metadata"].as_object_mut().unwrap().remove(k);
        }
        serde_json::to_vec_pretty(&v).unwrap()
    };
    let original = file.state();
    assert_eq!(normal(redis.state()), normal(original.clone()));
    assert_eq!(normal(back.state()), normal(original.clone()));
    assert_eq!(
        back.state()["metadata"]["lineage"],
        original["metadata"]["lineage"]
    );
    assert!(
        redis.state()["metadata"]["revision"].as_u64() > original["metadata"]["revision"].as_u64(),
        "an import is a new revision"
    );
}

/// `migrate-backend`: a file state with backups and checkpoints copied to
/// Redis and back, each copy verified; a target with a state is refused.
#[test]
fn migrate_backend_copies_state_backups_and_checkpoints_both_ways() {
    let file = Env::new();
    file.init();
    file.sm(&["set", ".phase", "\"one\""]);
    file.sm(&["set", ".phase", "\"two\""]);
    er(&file, &["checkpoint", "moved"]).ok();
    let redis = Env::redis();
    let url = redis.server().url();
    let out = file
        .run(
            "state-manager",
            &["migrate-backend", "--to", &url, "--json"],
        )
        .ok()
        .json();
    assert_schema("state-manager-migrate-backend.schema.json", &out);
    assert_eq!(out["backups"], json!(2));
    assert_eq!(out["checkpoints"], json!(1));
    assert_eq!(read(&redis, ".phase"), json!("two"));
    assert_eq!(
        read(&redis, ".metadata.lineage"),
        read(&file, ".metadata.lineage")
    );
    let names = |env: &Env| -> Vec<String> {
        let list = env
            .run("state-manager", &["list-backups", "--json"])
            .ok()
            .json();
        list.as_array()
            .unwrap()
            .iter()
            .map(|b| b["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&redis), names(&file));
    let ids = er(&redis, &["list", "--json"]).ok().json();
    assert_eq!(ids[0]["valid"], json!(true));
    // The copied checkpoint restores on Redis.
    redis.sm(&["set", ".phase", "\"three\""]);
    er(&redis, &["restore"]).ok();
    assert_eq!(read(&redis, ".phase"), json!("two"));
    // Again: the target has a state now.
    file.run("state-manager", &["migrate-backend", "--to", &url])
        .code(4)
        .stderr_has("--force");
    file.run(
        "state-manager",
        &["migrate-backend", "--to", &url, "--force"],
    )
    .ok();
    // And back, into a new folder.
    let back = Env::new();
    let to_file = format!("--state-file={}", back.state_file().display());
    let mut c = redis.cmd("state-manager");
    c.args(["migrate-backend", "--to", "file", &to_file]);
    let run = crate::harness::Run::of(c.output().unwrap()).ok();
    assert!(run.stdout.contains("verified"), "{run:?}");
    assert_eq!(read(&back, ".phase"), json!("two"));
    assert_eq!(
        er(&back, &["list", "--json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

fn hooks_work_unchanged(env: Env) {
    env.init();
    let payload =
        std::fs::read(repo_root().join("tests/fixtures/hooks/write-tasks-json.json")).unwrap();
    let mut c = Command::new("bash");
    c.arg(repo_root().join("hooks/post-tool-use-tracker.sh"));
    env.clean_env(&mut c);
    c.env("WFSTATE_BIN", bin_dir())
        .env_remove("WFSTATE_TRACKER_RULES")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&payload).unwrap();
    let out = crate::harness::Run::of(child.wait_with_output().unwrap()).ok();
    assert_eq!(out.stderr, "", "the hook worked silently");
    assert!(read(&env, ".signals.PHASE1_START").is_f64());
    assert_eq!(read(&env, ".phase"), json!("phase1-complete"));
    assert_eq!(revision(&env), 2, "two signals and a phase: one commit");
}

fn cleanup_prunes_backups_and_checkpoints(env: Env) {
    env.init();
    for i in 0..4 {
        env.sm(&["set", ".n", &i.to_string()]);
    }
    er(&env, &["checkpoint", "one"]).ok();
    er(&env, &["checkpoint", "two"]).ok();
    let count = |args: &[&str]| -> usize {
        let v = env.run(args[0], &args[1..]).ok().json();
        v.as_array().unwrap().len()
    };
    assert_eq!(count(&["state-manager", "list-backups", "--json"]), 4);
    let dry = env
        .run(
            "state-manager",
            &["cleanup", "--backups", "--keep", "1", "--dry-run", "--json"],
        )
        .ok()
        .json();
    assert_schema("state-manager-cleanup.schema.json", &dry);
    assert_eq!(dry["removed"].as_array().unwrap().len(), 3);
    assert_eq!(
        count(&["state-manager", "list-backups", "--json"]),
        4,
        "a dry run removes nothing"
    );
    let out = env
        .run(
            "state-manager",
            &[
                "cleanup",
                "--backups",
                "--checkpoints",
                "--keep",
                "1",
                "--json",
            ],
        )
        .ok()
        .json();
    let kinds: Vec<&str> = out["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "backup").count(), 3, "{out}");
    assert_eq!(
        kinds.iter().filter(|k| **k == "checkpoint").count(),
        1,
        "{out}"
    );
    assert_eq!(count(&["state-manager", "list-backups", "--json"]), 1);
    let left = er(&env, &["list", "--json"]).ok().json();
    assert!(left[0]["id"].as_str().unwrap().ends_with("-two"), "{left}");
    // What is left still restores.
    env.run("state-manager", &["recover"]).ok();
    assert_eq!(read(&env, ".n"), json!(2));
}
