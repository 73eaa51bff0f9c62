//! The Redis backend under faults, against a real redis-server: killed and
//! restarted mid-write, paused past the client's timeout, out of memory, a
//! wrong password, keys of the wrong type or changed behind our back, and
//! the server settings `health` must warn about.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Env, bin_path, read};

#[test]
fn an_unreachable_server_is_exit_8_naming_the_url_without_its_password() {
    let env = Env::new();
    for url in [
        "redis://ci:s3cret@127.0.0.1:1/0".to_string(),
        format!("redis+unix://{}?pass=s3cret", env.path("no.sock").display()),
    ] {
        let run = env
            .run("state-manager", &["--backend", &url, "read"])
            .code(8)
            .one_line_error("state-manager");
        assert!(!run.stderr.contains("s3cret"), "{}", run.stderr);
        assert!(run.stderr.contains("***"), "{}", run.stderr);
    }
    let run = env
        .run("state-manager", &["--backend", "rediss://h:1/0", "read"])
        .code(5);
    assert!(run.stderr.contains("TLS"), "{}", run.stderr);
}

#[test]
fn a_paused_server_is_exit_8_within_the_timeout_and_loses_nothing() {
    let env = Env::redis();
    env.init();
    env.sm(&["set", ".phase", "\"before\""]);
    env.server().pause();
    let started = Instant::now();
    let run = env
        .cmd("state-manager")
        .env("WFSTATE_REDIS_TIMEOUT", "300ms")
        .args(["set", ".phase", "\"during\""])
        .output()
        .unwrap();
    let took = started.elapsed();
    env.server().resume();
    assert_eq!(run.status.code(), Some(8), "{run:?}");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("no answer within"), "{stderr}");
    // One timeout for the call, not one per retry or per audit event.
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(read(&env, ".phase"), json!("before"));
}

#[test]
fn out_of_memory_is_exit_10_and_the_state_is_unchanged() {
    let env = Env::redis();
    env.init();
    env.sm(&["set", ".phase", "\"before\""]);
    env.server().cli(&["CONFIG", "SET", "maxmemory", "1"]);
    env.run("state-manager", &["set", ".phase", "\"after\""])
        .code(10)
        .stderr_has("maxmemory");
    env.server().cli(&["CONFIG", "SET", "maxmemory", "0"]);
    assert_eq!(read(&env, ".phase"), json!("before"));
}

#[test]
fn a_wrong_password_is_exit_6() {
    let env = Env::redis();
    env.init();
    env.server().cli(&["CONFIG", "SET", "requirepass", "right"]);
    let url = format!("{}?pass=wrong", env.server().url());
    env.run("state-manager", &["--backend", &url, "read"])
        .code(6);
    let no_password = env.server().url();
    env.run("state-manager", &["--backend", &no_password, "read"])
        .code(6);
    let right = format!("{}?pass=right", env.server().url());
    env.run("state-manager", &["--backend", &right, "read", ".phase"])
        .ok();
}

#[test]
fn a_key_of_another_type_or_a_changed_document_is_exit_3_and_never_overwritten() {
    let env = Env::redis();
    env.server()
        .cli(&["SET", "wfstate:{default}:state", "not ours"]);
    env.run("state-manager", &["read"]).code(3);
    env.run("state-manager", &["init"]).code(3);
    env.run("state-manager", &["set", ".phase", "\"x\""])
        .code(3);
    assert_eq!(
        env.server().cli(&["GET", "wfstate:{default}:state"]),
        "not ours"
    );

    let env = Env::redis();
    env.init();
    let doc = env
        .server()
        .cli(&["HGET", "wfstate:{default}:state", "doc"]);
    let tampered = doc.replace("pre-init", "tampered");
    env.server()
        .cli(&["HSET", "wfstate:{default}:state", "doc", &tampered]);
    env.run("state-manager", &["read"])
        .code(3)
        .stderr_has("checksum");
    env.run("state-manager", &["set", ".phase", "\"x\""])
        .code(3);
    env.run("state-manager", &["status"]).code(3);
    assert_eq!(
        env.server()
            .cli(&["HGET", "wfstate:{default}:state", "doc"]),
        tampered
    );
}

#[test]
fn no_key_has_a_ttl_and_health_warns_about_settings_that_lose_data() {
    let env = Env::redis();
    env.init();
    env.sm(&["set", ".phase", "\"impl\""]);
    crate::harness::er(&env, &["checkpoint", "x"]).ok();
    let keys = env.server().cli(&["KEYS", "wfstate:*"]);
    assert!(keys.lines().count() >= 5, "{keys}");
    for k in keys.lines() {
        assert_eq!(env.server().cli(&["PTTL", k]), "-1", "{k}");
    }
    let health = |env: &Env| env.run("state-manager", &["health", "--json"]);
    assert_eq!(health(&env).ok().json()["status"], json!("healthy"));

    env.server()
        .cli(&["CONFIG", "SET", "appendfsync", "everysec"]);
    let h = health(&env).ok().json();
    assert_eq!(h["status"], json!("degraded"), "{h}");
    assert!(
        h["checks"]["persistence"]["message"]
            .as_str()
            .unwrap()
            .contains("1 s")
    );
    env.server()
        .cli(&["CONFIG", "SET", "appendfsync", "always"]);

    env.server()
        .cli(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    let h = health(&env).code(10).json();
    assert_eq!(h["checks"]["eviction"]["status"], json!("unhealthy"), "{h}");
    env.server()
        .cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);

    env.server()
        .cli(&["EXPIRE", "wfstate:{default}:backups", "1000"]);
    let h = health(&env).code(3).json();
    assert!(
        h["checks"]["eviction"]["message"]
            .as_str()
            .unwrap()
            .contains("TTL"),
        "{h}"
    );
}

/// SIGKILL the server while 4 writers append, restart it on its AOF:
/// every append that was acknowledged (exit 0) is there, every call that
/// failed exited 8, and the state validates.
#[test]
fn a_killed_and_restarted_server_keeps_every_acknowledged_write() {
    let mut env = Env::redis();
    env.init();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let script = format!(
                r#"for i in $(seq 1 400); do
  "$SM" append .completedTasks '"{w}-'$i'"'; rc=$?
  echo "$i $rc"
done"#
            );
            let mut c = Command::new("bash");
            env.clean_env(&mut c);
            c.env("SM", bin_path("state-manager"))
                .env("WFSTATE_REDIS_TIMEOUT", "500ms")
                .args(["-c", &script])
                .stdout(Stdio::piped())
                // Each call during the outage says so on stderr: expected.
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    // Let some appends land, then kill the server mid-stream.
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let n = env
            .server()
            .cli(&["HGET", "wfstate:{default}:state", "rev"]);
        if n.parse::<u64>().unwrap_or(0) > 40 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    env.server_mut().kill();
    std::thread::sleep(Duration::from_millis(300));
    env.server_mut().restart();
    let mut acknowledged = Vec::new();
    let mut failed = 0;
    for (w, child) in writers.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let (i, rc) = line.split_once(' ').unwrap();
            match rc {
                "0" => acknowledged.push(format!("{w}-{i}")),
                "8" => failed += 1,
                other => panic!("an append exited {other}: only 0 or 8 expected"),
            }
        }
    }
    assert!(failed > 0, "the kill happened during the appends");
    env.run("state-manager", &["validate"]).ok();
    let tasks = read(&env, ".completedTasks");
    let tasks: Vec<&str> = tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for a in &acknowledged {
        assert!(
            tasks.contains(&a.as_str()),
            "acknowledged append {a} was lost"
        );
    }
}

#[test]
fn namespaces_keep_pipelines_apart_and_list_states_shows_them() {
    let env = Env::redis();
    env.init();
    env.sm(&["set", ".phase", "\"a\""]);
    let other = env
        .cmd("state-manager")
        .env("WFSTATE_NAMESPACE", "ci-2")
        .args(["init"])
        .output()
        .unwrap();
    assert!(other.status.success());
    assert_eq!(read(&env, ".phase"), json!("a"));
    let list = env
        .run("state-manager", &["list-states", "--json"])
        .ok()
        .json();
    crate::harness::assert_schema("state-manager-list-states.schema.json", &list);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ci-2", "default"]);
    assert_eq!(list[1]["phase"], json!("a"));
    env.run(
        "state-manager",
        &["--backend", "redis+unix:///x", "list-states"],
    )
    .code(8);
    let bad = env
        .cmd("state-manager")
        .env("WFSTATE_NAMESPACE", "a b")
        .args(["read"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(4));
}

#[test]
fn audit_monitor_follows_the_stream_without_polling_the_file() {
    let env = Env::redis();
    env.init();
    let mut monitor = env
        .cmd("state-manager")
        .args([
            "audit",
            "monitor",
            "--jsonl",
            "--duration",
            "3",
            "--interval",
            "1",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    env.sm(&["set", ".phase", "\"watched\""]);
    let out = monitor.wait().map(|_| ()).and_then(|()| {
        use std::io::Read;
        let mut s = String::new();
        monitor.stdout.take().unwrap().read_to_string(&mut s)?;
        Ok(s)
    });
    let out = out.unwrap();
    assert!(
        out.lines().any(|l| l.contains("\"op\":\"set\"")),
        "the monitor saw the set: {out}"
    );
    assert!(
        !env.audit_log().exists(),
        "nothing was written to a local log"
    );
}

/// The document stored as `doc` with its server-side checksum, as a tool
/// other than wfstate might write it.
fn store_raw(env: &Env, doc: &Value) {
    use sha2::Digest;
    let text = serde_json::to_string_pretty(doc).unwrap() + "\n";
    let sum: String = sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    env.server()
        .cli(&["HSET", "wfstate:{default}:state", "doc", &text, "sum", &sum]);
}

#[test]
fn repair_fixes_a_document_in_place_or_restores_a_backup() {
    let env = Env::redis();
    env.init();
    env.sm(&["set", ".phase", "\"impl\""]);
    // Toolkit fields broken by another tool: repaired as one transaction.
    let mut doc = env.state();
    doc.as_object_mut().unwrap().remove("degradedMode");
    store_raw(&env, &doc);
    let dry = env
        .run("state-manager", &["repair", "--dry-run", "--json"])
        .ok()
        .json();
    assert_eq!(dry["changed"], json!(false));
    assert!(!dry["changes"].as_array().unwrap().is_empty(), "{dry}");
    assert!(
        env.state().get("degradedMode").is_none(),
        "a dry run writes nothing"
    );
    let out = env.run("state-manager", &["repair", "--json"]).ok().json();
    crate::harness::assert_schema("state-manager-repair.schema.json", &out);
    assert_eq!(out["changed"], json!(true));
    env.run("state-manager", &["validate"]).ok();
    assert_eq!(read(&env, ".degradedMode.enabled"), json!(false));
    assert_eq!(read(&env, ".phase"), json!("impl"));
    // A document failing the server's checksum: the newest valid backup.
    let before = env.state();
    let raw = env
        .server()
        .cli(&["HGET", "wfstate:{default}:state", "doc"]);
    env.server().cli(&[
        "HSET",
        "wfstate:{default}:state",
        "doc",
        &raw.replace("impl", "tampered"),
    ]);
    let out = env.run("state-manager", &["repair", "--json"]).ok().json();
    assert!(out["recovered_from"].is_string(), "{out}");
    // (verify-integrity lists the backup of the tampered-with version: kept on purpose, as on files.)
    env.run("state-manager", &["validate"]).ok();
    assert_eq!(
        read(&env, ".metadata.lineage"),
        before["metadata"]["lineage"]
    );
}

#[test]
fn diagnostics_and_benchmark_run_on_redis_and_leave_no_trace() {
    let env = Env::redis();
    env.init();
    env.sm(&["set", ".phase", "\"impl\""]);
    let keys = |env: &Env| {
        let mut k: Vec<String> = env
            .server()
            .cli(&["KEYS", "*"])
            .lines()
            .map(str::to_owned)
            .collect();
        k.sort();
        k
    };
    let before = keys(&env);
    let d = env
        .run("state-manager", &["diagnostics", "--json"])
        .ok()
        .json();
    crate::harness::assert_schema("state-manager-diagnostics.schema.json", &d);
    let b = env
        .run(
            "state-manager",
            &["benchmark", "--operations", "5", "--json"],
        )
        .ok()
        .json();
    crate::harness::assert_schema("state-manager-benchmark.schema.json", &b);
    assert_eq!(b["results"]["set"]["ops"], json!(5));
    // The scratch namespace is gone; the live state only gained its event.
    assert_eq!(keys(&env), before);
    let recent = env
        .run("state-manager", &["audit", "recent", "-n", "1", "--json"])
        .ok()
        .json();
    assert_eq!(recent[0]["op"], json!("benchmark"), "{recent}");
    assert_eq!(read(&env, ".phase"), json!("impl"));
    assert!(!env.audit_log().exists());
}
