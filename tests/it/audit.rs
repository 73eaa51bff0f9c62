//! `state-manager audit …` and the audit log itself: whole lines under
//! concurrent writers, rotation that loses nothing, the review commands on
//! staged logs, and the schema of every event the binaries write.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{
    Env, append, assert_audit_valid, audit_schema_errors, event, json_lines, stage, ts_ago,
};

/// The `pid`s of `audit recent --json ARGS`, in order.
fn recent_pids(env: &Env, args: &[&str]) -> Vec<u64> {
    let mut all = vec!["audit", "recent", "--json"];
    if !args.contains(&"-n") {
        all.extend(["-n", "1000"]);
    }
    all.extend_from_slice(args);
    let out = env.run("state-manager", &all).ok().json();
    out.as_array()
        .unwrap()
        .iter()
        .map(|e| e["pid"].as_u64().unwrap())
        .collect()
}

/// Runs `state-manager audit recent` `runs` times in each of `writers`
/// concurrent processes chains, each writer with its own WFSTATE_RUN_ID.
fn concurrent_reviews(env: &Env, writers: usize, runs: usize, extra_env: &[(&str, &str)]) {
    // A review only reads: it appends to a log that exists and creates none
    // (issue 15), so the log is there before the writers start.
    fs::write(env.audit_log(), "").unwrap();
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let mut cmds: Vec<Command> = (0..runs)
                .map(|_| {
                    let mut c = env.cmd("state-manager");
                    c.args(["audit", "recent", "-n", "1"])
                        .env("WFSTATE_RUN_ID", format!("writer-{w}"))
                        .envs(extra_env.iter().copied())
                        .stdout(Stdio::null());
                    c
                })
                .collect();
            std::thread::spawn(move || {
                for c in &mut cmds {
                    let out = c.output().expect("spawn");
                    assert!(
                        out.status.success(),
                        "{}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// Waits for `child` to exit, killing it and failing the test after `limit`.
fn wait_within(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads the rest of `out` in a thread, so a child that does not exit cannot hang the test.
fn read_rest(mut out: BufReader<std::process::ChildStdout>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        rest
    })
}

/// Every line of the log and its rotated files, oldest file first.
fn all_lines(log: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = (1..=5)
        .rev()
        .map(|n| PathBuf::from(format!("{}.{n}", log.display())))
        .collect();
    files.push(log.to_path_buf());
    files
        .iter()
        .filter(|f| f.exists())
        .flat_map(|f| {
            fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn events_of_eight_concurrent_writers_are_whole_lines() {
    let env = Env::new();
    concurrent_reviews(&env, 8, 25, &[]);
    let events = env.audit_events(); // panics on a line that does not parse
    assert_eq!(events.len(), 200);
    for w in 0..8 {
        let run = format!("writer-{w}");
        let mine = events
            .iter()
            .filter(|e| e["run_id"] == run.as_str() && e["op"] == "audit-recent")
            .count();
        assert_eq!(mine, 25, "events of {run}");
    }
    // The review events are found when asked for by op, and by run id.
    let found = recent_pids(&env, &["--op", "audit-recent", "--run-id", "writer-3"]);
    assert_eq!(found.len(), 25);
    assert_audit_valid(&env);
}

#[test]
fn recent_filters_by_run_tool_op_target_time_and_failure() {
    let env = Env::new();
    let old = ts_ago(Duration::from_secs(3 * 3600));
    stage(
        &env,
        &[
            event(json!({"pid": 1, "ts": old, "run_id": "r1"})),
            event(
                json!({"pid": 2, "tool": "lock-manager", "op": "acquire", "target": "deploy", "run_id": "r1",
                         "detail": {"owner_pid": 77, "wait_ms": 0.2, "lock_type": "exclusive"}}),
            ),
            event(json!({"pid": 3, "op": "write", "run_id": "r2", "exit_code": 4})),
            event(
                json!({"pid": 4, "tool": "error-recovery", "op": "checkpoint", "target": "checkpoint-1"}),
            ),
        ],
    );
    append(
        &env.audit_log(),
        &[
            "this is not JSON".to_string(),
            "{\"ts\": \"yesterday\"}".to_string(),
        ],
    );
    stage(
        &env,
        &[event(
            json!({"pid": 5, "ts": ts_ago(Duration::from_secs(1)), "op": "set"}),
        )],
    );

    assert_eq!(recent_pids(&env, &[]), [1, 2, 3, 4, 5]);
    assert_eq!(
        recent_pids(&env, &["-n", "2"]),
        [4, 5],
        "newest, oldest first"
    );
    assert_eq!(recent_pids(&env, &["--run-id", "r1"]), [1, 2]);
    assert_eq!(recent_pids(&env, &["--tool", "lock-manager"]), [2]);
    assert_eq!(recent_pids(&env, &["--op", "write"]), [3]);
    assert_eq!(recent_pids(&env, &["--target", "deploy"]), [2]);
    assert_eq!(
        recent_pids(&env, &["--target", "/w/../w/.workflow-state.json"]),
        [1, 3, 5]
    );
    assert_eq!(recent_pids(&env, &["--since", "1h"]), [2, 3, 4, 5]);
    assert_eq!(recent_pids(&env, &["--since", "30s"]), [5]);
    assert_eq!(recent_pids(&env, &["--failed"]), [3]);
    assert_eq!(
        recent_pids(&env, &["--run-id", "r1", "--tool", "state-manager"]),
        [1]
    );

    // Malformed lines are counted and skipped, never fatal (under --json
    // the count is a warning on stderr: the output is the array of events).
    env.run("state-manager", &["audit", "recent", "--json"])
        .ok()
        .stderr_has("2 malformed lines skipped");
    // Text output: a header and one aligned row per event.
    let text = env
        .run(
            "state-manager",
            &["audit", "recent", "--tool", "lock-manager"],
        )
        .ok()
        .stdout;
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("TIME") && lines[0].contains("TARGET"),
        "{text}"
    );
    assert!(
        lines[1].contains("lock-manager")
            && lines[1].contains("deploy")
            && lines[1].contains(" 77 "),
        "{text}"
    );
    assert_eq!(
        lines[0].find("TOOL"),
        lines[1].find("lock-manager"),
        "columns line up:\n{text}"
    );

    env.run("state-manager", &["audit", "recent", "--since", "soon"])
        .code(4)
        .one_line_error("state-manager");
}

#[test]
fn stats_count_failures_percentiles_and_rate() {
    let env = Env::new();
    let mut events = Vec::new();
    for i in 1..=100u32 {
        let (tool, op) = if i % 2 == 0 {
            ("lock-manager", "acquire")
        } else {
            ("state-manager", "set")
        };
        let exit = match i {
            10 | 20 => 2,
            33 => 4,
            _ => 0,
        };
        let detail = if tool == "lock-manager" {
            json!({"wait_ms": f64::from(i) / 10.0})
        } else {
            json!({"lock_wait_ms": 0.5})
        };
        events.push(event(json!({"pid": i, "tool": tool, "op": op, "duration_ms": f64::from(i), "exit_code": exit,
                                 "detail": detail, "ts": ts_ago(Duration::from_secs(u64::from(200 - i) * 10))})));
    }
    stage(&env, &events);
    append(&env.audit_log(), &["{broken".to_string()]);
    // A review before stats must not be counted by stats.
    env.run("state-manager", &["audit", "recent"]).ok();

    let s = env
        .run("state-manager", &["audit", "stats", "--json"])
        .ok()
        .json();
    assert_eq!(s["event_count"], 100);
    assert_eq!(s["malformed"], 1);
    assert_eq!(s["failures"]["total"], 3);
    assert_eq!(s["failures"]["by_exit"]["2"]["count"], 2);
    assert_eq!(s["failures"]["by_exit"]["2"]["name"], "LOCK_TIMEOUT");
    assert_eq!(s["failures"]["by_exit"]["4"]["count"], 1);
    let p50 = s["duration"]["p50_ms"].as_f64().unwrap();
    let p95 = s["duration"]["p95_ms"].as_f64().unwrap();
    assert!((p50 - 50.0).abs() <= 0.5, "p50 {p50}");
    assert!((p95 - 95.0).abs() <= 0.95, "p95 {p95}");
    assert_eq!(s["duration"]["max_ms"], 100.0);
    assert_eq!(s["lock_wait"]["count"], 100);
    // 100 events over 990 s.
    let rate = s["events_per_min"].as_f64().unwrap();
    assert!((rate - 100.0 * 60.0 / 990.0).abs() < 0.01, "rate {rate}");
    let groups = s["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    assert!(groups.iter().all(|g| g["event_count"] == 50));
    let lm = groups.iter().find(|g| g["key"] == "lock-manager").unwrap();
    assert_eq!(lm["failed"], 2);
    assert_eq!(lm["lock_wait"]["max_ms"], 10.0);

    let by_op = env
        .run("state-manager", &["audit", "stats", "--by", "op", "--json"])
        .ok()
        .json();
    let keys: Vec<&str> = by_op["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["acquire", "set"]);
    let recent = env
        .run(
            "state-manager",
            &["audit", "stats", "--since", "1495s", "--json"],
        )
        .ok()
        .json();
    assert_eq!(recent["event_count"], 50);

    let text = env
        .run("state-manager", &["audit", "stats", "--by", "host"])
        .ok()
        .stdout;
    assert!(
        text.starts_with("events     100 (1 malformed line skipped)"),
        "{text}"
    );
    assert!(text.contains("exit 2 LOCK_TIMEOUT ×2"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("HOST") && l.contains("EVENTS")),
        "{text}"
    );
}

#[test]
fn races_show_a_staged_overlap_a_stale_takeover_and_the_rest() {
    let env = Env::new();
    let t = |ms: u64| ts_ago(Duration::from_secs(600) - Duration::from_millis(ms));
    let state = "/w/.workflow-state.json";
    stage(
        &env,
        &[
            // Owner 301 writes during [20, 100] ms; owner 302 during [50, 150]: they overlap.
            event(
                json!({"pid": 11, "ppid": 301, "op": "write", "target": state, "ts": t(100), "duration_ms": 80.0}),
            ),
            event(
                json!({"pid": 12, "ppid": 302, "op": "set", "target": state, "ts": t(150), "duration_ms": 100.0}),
            ),
            // Later, one after the other: no overlap.
            event(
                json!({"pid": 13, "ppid": 301, "op": "write", "target": state, "ts": t(2000), "duration_ms": 10.0}),
            ),
            event(
                json!({"pid": 14, "ppid": 302, "op": "write", "target": state, "ts": t(3000), "duration_ms": 10.0}),
            ),
            // Two reads overlapping are no race.
            event(
                json!({"pid": 15, "ppid": 303, "op": "read", "target": state, "ts": t(4000), "duration_ms": 50.0}),
            ),
            event(
                json!({"pid": 16, "ppid": 304, "op": "read", "target": state, "ts": t(4010), "duration_ms": 50.0}),
            ),
            // A stale lock taken over.
            event(
                json!({"pid": 21, "tool": "lock-manager", "op": "takeover", "target": "deploy", "ts": t(5000),
                         "detail": {"stale_pid": 999, "owner_pid": 401, "reason": "dead"}}),
            ),
            // A long lock wait, a revision conflict, a write refused for a lock timeout.
            event(
                json!({"pid": 22, "tool": "lock-manager", "op": "acquire", "target": "deploy", "ts": t(6000),
                         "duration_ms": 801.0, "detail": {"wait_ms": 800.0, "owner_pid": 402, "holders_while_waiting": [401]}}),
            ),
            event(
                json!({"pid": 23, "op": "write", "target": state, "ts": t(7000), "exit_code": 4,
                         "detail": {"conflict": "revision", "expected": 3, "actual": 4}}),
            ),
            event(
                json!({"pid": 24, "op": "merge", "target": state, "ts": t(8000), "exit_code": 2, "duration_ms": 30.0}),
            ),
        ],
    );
    let r = env
        .run("state-manager", &["audit", "races", "--json"])
        .ok()
        .json();
    let findings = r["findings"].as_array().unwrap();
    let pids = |f: &Value| -> Vec<u64> {
        f["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["pid"].as_u64().unwrap())
            .collect()
    };
    let kinds: Vec<&str> = findings
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "overlap",
            "takeover",
            "lock-wait",
            "revision-conflict",
            "refused"
        ],
        "{r:#}"
    );
    assert_eq!(pids(&findings[0]), [11, 12]);
    assert_eq!(findings[0]["owners"], json!([301, 302]));
    assert_eq!(findings[0]["target"], state);
    assert_eq!(pids(&findings[1]), [21]);
    assert!(
        findings[1]["summary"].as_str().unwrap().contains("999"),
        "{r:#}"
    );
    assert_eq!(pids(&findings[2]), [22]);
    assert_eq!(pids(&findings[3]), [23]);
    assert_eq!(pids(&findings[4]), [24]);

    // A wider window drops the lock wait; --target narrows to one target.
    let wide = env
        .run(
            "state-manager",
            &["audit", "races", "--window", "1000", "--json"],
        )
        .ok()
        .json();
    assert_eq!(wide["counts"].get("lock-wait"), None);
    let deploy = env
        .run(
            "state-manager",
            &["audit", "races", "--target", "deploy", "--json"],
        )
        .ok()
        .json();
    assert_eq!(deploy["findings"].as_array().unwrap().len(), 2);

    let text = env.run("state-manager", &["audit", "races"]).ok().stdout;
    assert!(
        text.contains(
            "overlap  /w/.workflow-state.json: 2 operations (write, set) by owners 301, 302"
        ),
        "{text}"
    );
    assert!(
        text.contains("takeover  deploy: stale lock of pid 999 (dead) taken over by pid 401"),
        "{text}"
    );
    assert!(text.contains("5 findings"), "{text}");
}

#[test]
fn history_of_a_released_lock_and_a_deleted_checkpoint() {
    let env = Env::new();
    let t = |s: u64| ts_ago(Duration::from_secs(900 - s));
    let cp = "checkpoint-20240501-100000-build";
    stage(
        &env,
        &[
            event(
                json!({"tool": "lock-manager", "op": "acquire", "target": "deploy", "ts": t(1), "pid": 31,
                         "detail": {"owner_pid": 501, "lock_type": "exclusive", "wait_ms": 0.3}}),
            ),
            event(
                json!({"tool": "lock-manager", "op": "acquire", "target": "other", "ts": t(2), "pid": 32}),
            ),
            event(
                json!({"tool": "lock-manager", "op": "check", "target": "deploy", "ts": t(3), "pid": 33}),
            ),
            event(
                json!({"tool": "lock-manager", "op": "release", "target": "deploy", "ts": t(4), "pid": 34,
                         "detail": {"owner_pid": 501, "forced": false}}),
            ),
            event(
                json!({"tool": "error-recovery", "op": "checkpoint", "target": cp, "ts": t(5), "pid": 35}),
            ),
            event(
                json!({"tool": "error-recovery", "op": "restore", "target": cp, "ts": t(6), "pid": 36}),
            ),
            event(
                json!({"tool": "error-recovery", "op": "cleanup", "target": "", "ts": t(7), "pid": 37,
                         "detail": {"removed": [cp, "checkpoint-x"]}}),
            ),
            event(
                json!({"tool": "error-recovery", "op": "checkpoint", "target": "checkpoint-kept", "ts": t(8), "pid": 38}),
            ),
        ],
    );
    fs::create_dir_all(env.path(".checkpoints/checkpoint-kept")).unwrap();

    let h = env
        .run("state-manager", &["audit", "history", "deploy", "--json"])
        .ok()
        .json();
    assert_eq!(h["kind"], "lock");
    assert_eq!(h["present"], false);
    let whats: Vec<&str> = h["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["what"].as_str().unwrap())
        .collect();
    assert_eq!(whats, ["locked", "released"], "reads are left out");
    assert_eq!(h["removed_by"]["event"]["pid"], 34);
    assert!(
        h["verdict"]
            .as_str()
            .unwrap()
            .contains("removed by lock-manager release"),
        "{h:#}"
    );
    let all = env
        .run(
            "state-manager",
            &["audit", "history", "deploy", "--all", "--json"],
        )
        .ok()
        .json();
    assert_eq!(all["steps"].as_array().unwrap().len(), 3);

    let h = env
        .run("state-manager", &["audit", "history", cp, "--json"])
        .ok()
        .json();
    assert_eq!(h["kind"], "checkpoint");
    let whats: Vec<&str> = h["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["what"].as_str().unwrap())
        .collect();
    assert_eq!(whats, ["created", "restored", "deleted"]);
    assert_eq!(h["removed_by"]["event"]["pid"], 37);

    let kept = env
        .run(
            "state-manager",
            &["audit", "history", "checkpoint-kept", "--json"],
        )
        .ok()
        .json();
    assert_eq!(kept["present"], true);
    assert_eq!(kept["removed_by"], Value::Null);

    let never = env
        .run("state-manager", &["audit", "history", "nothing-here"])
        .ok()
        .stdout;
    assert!(never.contains("never created here"), "{never}");

    let text = env
        .run("state-manager", &["audit", "history", "deploy"])
        .ok()
        .stdout;
    assert!(
        text.starts_with("history of lock 'deploy': not held now; removed by lock-manager release"),
        "{text}"
    );
    assert!(text.contains("owner 501 (pid 31, ci@h1)"), "{text}");
    assert!(
        text.contains("removed by: lock-manager release at"),
        "{text}"
    );
}

#[test]
fn rotation_under_concurrent_writers_loses_no_event() {
    let env = Env::new();
    // About 70 KB of events in files of 20 KB: three or four rotations, within the five kept.
    concurrent_reviews(&env, 8, 25, &[("AUDIT_MAX_BYTES", "20000")]);
    let log = env.audit_log();
    let rotated: Vec<usize> = (1..=6)
        .filter(|n| Path::new(&format!("{}.{n}", log.display())).exists())
        .collect();
    assert!(
        rotated.len() >= 2 && !rotated.contains(&6),
        "rotated files: {rotated:?}"
    );
    let lines = all_lines(&log);
    assert_eq!(lines.len(), 200, "every event is somewhere");
    for l in &lines {
        serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
    for n in &rotated {
        let size = fs::metadata(format!("{}.{n}", log.display()))
            .unwrap()
            .len();
        assert!(
            size >= 20000,
            "a rotated file reached the limit: .{n} is {size} bytes"
        );
    }
    // The review commands read the rotated files too.
    let mut c = env.cmd("state-manager");
    c.args([
        "audit",
        "recent",
        "--op",
        "audit-recent",
        "-n",
        "1000",
        "--json",
    ])
    .env("AUDIT_MAX_BYTES", "0");
    let found = crate::harness::Run::of(c.output().unwrap()).ok().json();
    assert_eq!(found.as_array().unwrap().len(), 200);
    assert_audit_valid(&env);
}

#[test]
fn monitor_alerts_on_a_slow_event_and_stops_at_its_duration() {
    let env = Env::new();
    stage(&env, &[event(json!({"pid": 40, "duration_ms": 5000.0}))]); // before the start: not counted
    let alerts = env.path("alerts.jsonl");
    let started = Instant::now();
    let mut child = env
        .cmd("state-manager")
        .args([
            "audit",
            "monitor",
            "--interval",
            "1",
            "--duration",
            "3",
            "--alert-latency-ms",
            "500",
            "--export-alerts",
        ])
        .arg(&alerts)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.starts_with("monitoring "), "{first}");
    stage(
        &env,
        &[
            event(json!({"pid": 41, "op": "write", "target": "slow-target", "duration_ms": 900.0})),
            event(json!({"pid": 42, "duration_ms": 2.0})),
        ],
    );
    let rest = read_rest(out);
    let status = wait_within(&mut child, Duration::from_secs(20));
    let rest = rest.join().unwrap();
    assert!(status.success());
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "monitor ran {:?}",
        started.elapsed()
    );
    let alert_lines: Vec<&str> = rest.lines().filter(|l| l.contains("ALERT")).collect();
    assert_eq!(alert_lines.len(), 1, "{rest}");
    assert!(
        alert_lines[0].contains("ALERT latency: state-manager write slow-target took 900.0 ms"),
        "{rest}"
    );
    let session = rest.lines().last().unwrap();
    assert!(
        session.starts_with("session: ")
            && session.contains("2 events")
            && session.contains("1 latency"),
        "{rest}"
    );
    assert!(
        rest.lines().any(|l| l.contains("events ")),
        "summary lines: {rest}"
    );
    let exported = json_lines(&fs::read_to_string(&alerts).unwrap());
    assert_eq!(exported.len(), 1);
    assert_eq!(exported[0]["kind"], "latency");
    assert_eq!(exported[0]["value"], 900.0);
    assert_eq!(exported[0]["event"]["pid"], 41);
}

#[test]
fn monitor_ends_with_its_summary_on_sigint() {
    let env = Env::new();
    let mut child = env
        .cmd("state-manager")
        // --duration only bounds the test should the signal be ignored.
        .args([
            "audit",
            "monitor",
            "--interval",
            "60",
            "--duration",
            "30",
            "--json",
            "--alert-failures-per-min",
            "2",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&first).unwrap()["type"],
        "start"
    );
    stage(
        &env,
        &[
            event(json!({"exit_code": 1})),
            event(json!({"exit_code": 1})),
            event(json!({"exit_code": 1})),
        ],
    );
    // The alert shows the events were read before the signal is sent.
    let mut alert = String::new();
    out.read_line(&mut alert).unwrap();
    let alert: Value = serde_json::from_str(&alert).unwrap();
    assert_eq!(
        (alert["type"].as_str(), alert["kind"].as_str()),
        (Some("alert"), Some("failures"))
    );
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let rest = read_rest(out);
    assert!(wait_within(&mut child, Duration::from_secs(20)).success());
    let rest = rest.join().unwrap();
    let session: Value = serde_json::from_str(rest.lines().last().unwrap()).unwrap();
    assert_eq!(session["type"], "session");
    assert_eq!(session["stopped_by"], "signal");
    assert_eq!(session["event_count"], 3);
    assert_eq!(
        session["alerts"]["failures"], 1,
        "one alert per crossing: {rest}"
    );
}

#[test]
fn export_holds_environment_events_stats_and_races() {
    let env = Env::new();
    stage(
        &env,
        &[
            event(json!({"pid": 51, "ts": ts_ago(Duration::from_secs(7200))})),
            event(
                json!({"pid": 52, "tool": "lock-manager", "op": "takeover", "target": "deploy",
                         "detail": {"stale_pid": 9, "owner_pid": 10, "reason": "pid-reused"}}),
            ),
        ],
    );
    append(&env.audit_log(), &["garbage".to_string()]);
    let out = env.path("out/export.json");
    fs::create_dir_all(env.path("out")).unwrap();
    env.run(
        "state-manager",
        &["audit", "export", "--output", out.to_str().unwrap()],
    )
    .ok()
    .stdout_has("exported 2 events and 1 race findings");
    let doc: Value = serde_json::from_slice(&fs::read(&out).unwrap()).unwrap();
    assert_eq!(doc["events"].as_array().unwrap().len(), 2);
    assert_eq!(doc["stats"]["event_count"], 2);
    assert_eq!(doc["stats"]["malformed"], 1);
    assert_eq!(doc["races"]["findings"][0]["kind"], "takeover");
    assert!(
        doc["environment"]["host"]
            .as_str()
            .is_some_and(|h| !h.is_empty())
    );
    assert!(doc["environment"]["disk"]["free_bytes"].as_u64().is_some());
    assert_eq!(
        doc["environment"]["paths"]["audit_log"],
        env.audit_log().to_str().unwrap()
    );
    assert_eq!(env.list("out"), ["export.json"], "no temp file left");

    let doc = env
        .run("state-manager", &["audit", "export", "--since", "1h"])
        .ok()
        .json();
    assert_eq!(doc["events"].as_array().unwrap().len(), 1);

    // A bad argument changes nothing.
    let before = fs::read(&out).unwrap();
    env.run(
        "state-manager",
        &[
            "audit",
            "export",
            "--since",
            "x",
            "--output",
            out.to_str().unwrap(),
        ],
    )
    .code(4)
    .one_line_error("state-manager");
    assert_eq!(fs::read(&out).unwrap(), before);
}

#[test]
fn every_event_the_binaries_write_validates_against_the_schema() {
    let env = Env::new();
    stage(&env, &[event(json!({"pid": 61}))]);
    for args in [
        &["audit", "recent"][..],
        &["audit", "recent", "--since", "bad"],
        &["audit", "stats", "--by", "target"],
        &["audit", "races"],
        &["audit", "history", "deploy"],
        &["audit", "export"],
        &["audit", "monitor", "--interval", "1", "--duration", "0.2"],
    ] {
        let mut c = env.cmd("state-manager");
        c.args(args).env("WFSTATE_RUN_ID", "schema-run");
        c.output().unwrap();
    }
    let events = env.audit_events();
    assert_eq!(events.len(), 8, "one event per review, the failed one too");
    assert!(events[1..].iter().all(|e| e["run_id"] == "schema-run"));
    assert_eq!(events[2]["exit_code"], 4);
    assert_audit_valid(&env);

    // The check itself catches a bad event.
    append(
        &env.audit_log(),
        &[json!({"ts": "now", "tool": "x"}).to_string()],
    );
    let errors = audit_schema_errors(&env.audit_log());
    assert!(
        errors.len() >= 2,
        "missing fields and a bad ts are errors: {errors:?}"
    );
}
