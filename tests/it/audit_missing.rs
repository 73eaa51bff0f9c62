//! `state-manager audit missing TARGET` on both backends (issue 14): a
//! signal set then deleted (and the family: its parent deleted, it moved
//! away), a lock acquired and released, targets of every kind never seen
//! (with no audit log at all), and events of other hosts within the window.
//!
//! Other hosts: an audit event records the host from uname(2), which a test
//! cannot change; so a real event written by the binary is copied with its
//! `host` changed (and, for the old one, its time moved back 2 h) and
//! appended where the backend keeps its log — the file, or the Redis stream
//! (with the server's time, as the append script stores it).

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Env, Owner, append, assert_schema, both, ts_ago};

const SM: &str = "state-manager";
const SCHEMA: &str = "state-manager-audit-missing.schema.json";

both!(
    a_signal_set_then_deleted_names_the_delete_with_its_host,
    a_path_removed_with_its_parent_or_moved_away_names_that_event,
    a_lock_acquired_then_released_names_the_release,
    a_target_never_seen_is_a_report_not_a_crash,
    other_hosts_that_touched_it_within_the_window_are_listed,
    backups_checkpoints_and_keys_are_looked_up_where_the_backend_keeps_them,
);

/// `audit missing ARGS --json`: its exit code and report (schema-checked).
fn missing(env: &Env, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["audit", "missing"];
    all.extend_from_slice(args);
    all.push("--json");
    let run = env.run(SM, &all);
    let code = run.code;
    let report = run.json();
    assert_schema(SCHEMA, &report);
    (code, report)
}

fn ops(report: &Value) -> Vec<&str> {
    report["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["event"]["op"].as_str().unwrap())
        .collect()
}

fn a_signal_set_then_deleted_names_the_delete_with_its_host(env: Env) {
    env.init();
    env.sm(&["signal", "build"]);
    let (code, r) = missing(&env, &[".signals.build"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["kind"], json!("path"));
    assert_eq!(r["exists"], json!(true), "{r:#}");
    assert_eq!(r["type"], json!("number"), "{r:#}");
    assert_eq!(r["removed_by"], Value::Null);
    assert_eq!(ops(&r), ["signal"], "{r:#}");

    env.sm(&["del", ".signals.build"]);
    let (code, r) = missing(&env, &[".signals.build"]);
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(r["exists"], json!(false), "{r:#}");
    let removal = &r["removed_by"]["event"];
    assert_eq!(removal["op"], json!("del"), "{r:#}");
    assert_eq!(removal["detail"]["path"], json!(".signals.build"), "{r:#}");
    let host = r["this_host"].as_str().unwrap();
    assert!(!host.is_empty());
    assert_eq!(removal["host"], json!(host), "{r:#}");
    assert_eq!(ops(&r), ["del", "signal"], "newest first: {r:#}");
    assert_eq!(r["operations"][0]["what"], json!("removed"));
    assert_eq!(r["other_hosts"], json!([]));
    if env.redis.is_some() {
        assert!(
            r["related"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["name"] == json!("wfstate:{default}:state") && x["ttl_ms"].is_null()),
            "{r:#}"
        );
    } else {
        assert!(
            r["related"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["name"].as_str().unwrap().ends_with(".signals/build.json")),
            "{r:#}"
        );
    }

    // The text says it in one line, with the host.
    let run = env.run(SM, &["audit", "missing", ".signals.build"]).code(1);
    run.stdout_has("removed by state-manager del")
        .stdout_has(&format!("on host {host}"));

    // Set again: there, and no removal to name.
    env.sm(&["set", ".signals.build", "2"]);
    let (code, r) = missing(&env, &[".signals.build", "-n", "1"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(ops(&r), ["set"], "-n 1 keeps the newest: {r:#}");
    assert_eq!(r["removed_by"], Value::Null);
}

fn a_path_removed_with_its_parent_or_moved_away_names_that_event(env: Env) {
    env.init();
    env.sm(&["set", ".tasks.x", "{\"done\":false}"]);
    env.sm(&["set", ".tasks.x.done", "true"]);
    env.sm(&["set", ".other", "1"]);
    env.sm(&["del", ".tasks"]);
    let (code, r) = missing(&env, &[".tasks.x"]);
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(r["removed_by"]["event"]["op"], json!("del"), "{r:#}");
    assert_eq!(
        r["removed_by"]["event"]["detail"]["path"],
        json!(".tasks"),
        "{r:#}"
    );
    // Its own set, its child's, its parent's del; not .other's.
    assert_eq!(ops(&r), ["del", "set", "set"], "{r:#}");

    env.sm(&["set", ".signals.y", "1"]);
    env.sm(&["mv", ".signals.y", ".archive"]);
    let (code, r) = missing(&env, &[".signals.y"]);
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(r["removed_by"]["event"]["op"], json!("mv"), "{r:#}");
    assert_eq!(r["removed_by"]["what"], json!("moved"), "{r:#}");

    // Gone with a whole document written over it: that write is named.
    env.sm(&["set", ".signals.z", "1"]);
    let mut doc = crate::harness::read(&env, ".");
    doc["signals"] = json!({});
    env.sm(&["write", &doc.to_string()]);
    let (code, r) = missing(&env, &[".signals.z"]);
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(r["removed_by"]["what"], json!("replaced"), "{r:#}");
    assert_eq!(r["removed_by"]["event"]["op"], json!("write"), "{r:#}");

    // Not a path: exit 4, one line naming it.
    env.run(SM, &["audit", "missing", ".a[", "--kind", "path"])
        .code(4)
        .stderr_has("not a state path")
        .one_line_error(SM);
}

fn a_lock_acquired_then_released_names_the_release(env: Env) {
    env.init();
    let owner = Owner::new();
    env.run(
        "lock-manager",
        &["acquire", "deploy", "0", "--owner", &owner.pid()],
    )
    .ok();
    let (code, r) = missing(&env, &["deploy"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["kind"], json!("lock"));
    assert_eq!(r["type"], json!("exclusive"), "{r:#}");
    assert!(
        r["related"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"].as_str().unwrap().contains("deploy")),
        "{r:#}"
    );
    env.run(
        "lock-manager",
        &["release", "deploy", "--owner", &owner.pid()],
    )
    .ok();
    let (code, r) = missing(&env, &["deploy"]);
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(r["removed_by"]["event"]["op"], json!("release"), "{r:#}");
    assert_eq!(r["removed_by"]["what"], json!("released"), "{r:#}");
    assert_eq!(ops(&r), ["release", "acquire"], "{r:#}");
    assert_eq!(r["operations"][1]["what"], json!("locked"), "{r:#}");
    // The answer is not a failure in the log.
    let events = env
        .run(SM, &["audit", "recent", "--op", "audit-missing", "--json"])
        .ok()
        .json();
    let last = events.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["exit_code"], json!(0), "{last:#}");
    assert_eq!(last["detail"]["answer_exit"], json!(1), "{last:#}");
}

fn a_target_never_seen_is_a_report_not_a_crash(env: Env) {
    // No state, no audit log: the first command is the question.
    assert!(!env.audit_log().exists());
    for (target, kind) in [
        (".signals.never", "path"),
        ("ghost", "lock"),
        ("checkpoint-20200101-000000-x", "checkpoint"),
        ("state-20200101-000000-1-x.json", "backup"),
        ("no/such/file", "file"),
        ("wfstate:{default}:nope", "key"),
    ] {
        let (code, r) = missing(&env, &[target]);
        assert_eq!(code, 1, "{target}: {r:#}");
        assert_eq!(r["kind"], json!(kind), "{target}: {r:#}");
        assert_eq!(r["exists"], json!(false), "{target}: {r:#}");
        assert_eq!(r["operations"], json!([]), "{target}: {r:#}");
        assert_eq!(r["removed_by"], Value::Null, "{target}: {r:#}");
        assert!(
            r["verdict"].as_str().unwrap().starts_with("never seen"),
            "{target}: {r:#}"
        );
    }
    env.run(SM, &["audit", "missing", "ghost"])
        .code(1)
        .stdout_has("never seen");
    // A question creates nothing: no audit log, no state.
    assert!(!env.audit_log().exists(), "audit missing created the log");
    assert!(!env.state_file().exists());
    // --kind overrides the guess; a bad --window is a usage error.
    let (_, r) = missing(&env, &["ghost", "--kind", "file"]);
    assert_eq!(r["kind"], json!("file"));
    env.run(SM, &["audit", "missing", "ghost", "--window", "soon"])
        .code(4)
        .stderr_has("--window");
}

/// Copies the newest `op` event of this environment's log with its host
/// set to `host` and its time `ago` back, appended where the backend keeps
/// its log.
fn copy_from_host(env: &Env, op: &str, host: &str, ago: Duration) {
    let recent = env
        .run(SM, &["audit", "recent", "-n", "1", "--op", op, "--json"])
        .ok()
        .json();
    let mut event = recent[0].clone();
    assert_eq!(event["op"], json!(op), "{recent}");
    event["host"] = json!(host);
    event["ts"] = json!(ts_ago(ago));
    match &env.redis {
        None => append(&env.audit_log(), &[event]),
        Some(server) => {
            let time = server.cli(&["TIME"]);
            let mut parts = time.lines().map(|l| l.trim().parse::<u64>().unwrap());
            let us =
                parts.next().unwrap() * 1_000_000 + parts.next().unwrap() - ago.as_micros() as u64;
            let id = server.cli(&[
                "XADD",
                "wfstate:{default}:audit",
                "*",
                "us",
                &us.to_string(),
                "event",
                &event.to_string(),
            ]);
            assert!(id.contains('-'), "XADD: {id}");
        }
    }
}

fn other_hosts_that_touched_it_within_the_window_are_listed(env: Env) {
    env.init();
    env.sm(&["set", ".signals.remote", "1"]);
    let (_, r) = missing(&env, &[".signals.remote"]);
    assert_eq!(r["other_hosts"], json!([]), "{r:#}");

    copy_from_host(&env, "set", "ci-runner-7", Duration::from_secs(5));
    copy_from_host(&env, "set", "old-runner", Duration::from_secs(2 * 3600));
    let (code, r) = missing(&env, &[".signals.remote"]);
    assert_eq!(code, 0, "{r:#}");
    let hosts = r["other_hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 1, "only the last hour by default: {r:#}");
    assert_eq!(hosts[0]["host"], json!("ci-runner-7"));
    assert_eq!(hosts[0]["event_count"], json!(1));
    assert_eq!(hosts[0]["ops"], json!(["set"]));
    assert_eq!(r["window_ms"], json!(3_600_000));

    let (_, r) = missing(&env, &[".signals.remote", "--window", "3h"]);
    let names: Vec<&str> = r["other_hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ci-runner-7", "old-runner"], "newest first: {r:#}");
    env.run(SM, &["audit", "missing", ".signals.remote"])
        .ok()
        .stdout_has("ci-runner-7");

    // Another host's removal is named with that host.
    env.sm(&["del", ".signals.remote"]);
    copy_from_host(&env, "del", "ci-runner-9", Duration::ZERO);
    let (code, r) = missing(&env, &[".signals.remote"]);
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(
        r["removed_by"]["event"]["host"],
        json!("ci-runner-9"),
        "{r:#}"
    );
}

fn backups_checkpoints_and_keys_are_looked_up_where_the_backend_keeps_them(env: Env) {
    env.init();
    env.sm(&["backup", "manual"]);
    let backups = env.run(SM, &["list-backups", "--json"]).ok().json();
    let name = backups[0]["name"].as_str().unwrap().to_string();
    let (code, r) = missing(&env, &[&name]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["kind"], json!("backup"), "{r:#}");
    assert!(r["size"].as_u64().unwrap() > 0, "{r:#}");
    assert!(!r["related"].as_array().unwrap().is_empty(), "{r:#}");

    let cp = env
        .run("error-recovery", &["checkpoint", "deploy", "--json"])
        .ok()
        .json();
    let id = cp["id"].as_str().unwrap().to_string();
    let (code, r) = missing(&env, &[&id]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["kind"], json!("checkpoint"), "{r:#}");
    assert_eq!(ops(&r), ["checkpoint"], "{r:#}");
    assert_eq!(r["operations"][0]["what"], json!("created"), "{r:#}");
    env.run("error-recovery", &["cleanup", "0", "--keep", "0"])
        .ok();
    let (code, r) = missing(&env, &[&id]);
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(r["exists"], json!(false), "{r:#}");

    let Some(server) = &env.redis else {
        // A key on files: not there, and said why.
        let (code, r) = missing(&env, &["wfstate:{default}:state"]);
        assert_eq!(code, 1, "{r:#}");
        assert!(r["now"].as_str().unwrap().contains("not Redis"), "{r:#}");
        return;
    };
    let (code, r) = missing(&env, &["wfstate:{default}:state"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["type"], json!("hash"), "{r:#}");
    assert_eq!(r["ttl_ms"], Value::Null, "{r:#}");
    // A TTL on a wfstate key is said, in the figures and the verdict.
    server.cli(&["EXPIRE", "wfstate:{default}:backups", "1000"]);
    let (_, r) = missing(&env, &["wfstate:{default}:backups"]);
    let ttl = r["ttl_ms"].as_i64().unwrap();
    assert!(ttl > 0 && ttl <= 1_000_000, "{r:#}");
    assert!(r["verdict"].as_str().unwrap().contains("TTL"), "{r:#}");
    let (_, r) = missing(&env, &[&name]);
    assert!(r["ttl_ms"].as_i64().is_some(), "the backup's key: {r:#}");
    assert!(
        r["related"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["name"] == json!("wfstate:{default}:backups") && k["ttl_ms"].is_i64()),
        "{r:#}"
    );
}
