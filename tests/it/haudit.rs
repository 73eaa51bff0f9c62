//! `state-manager audit …` under the machine-output conventions: `recent`
//! is an array (and JSON Lines with `--jsonl`), `stats`, `races` and
//! `history` take `-c`, every report validates against its schema in
//! schemas/output/, keys are snake_case and every `*_ms` is a number, a
//! failure under `--json` is a JSON error object; `monitor --jsonl` streams
//! events as they arrive; `export` writes through the one atomic write;
//! `--debug` says what the review read and how long it took.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{
    Env, append, assert_audit_event, assert_schema, camel_case_keys, event, json_lines, keys,
    stage, ts_ago,
};

const SM: &str = "state-manager";

/// A log with something for every review: a race, a lock's life, failures, a bad line.
fn staged() -> Env {
    let env = Env::new();
    let t = |ms: u64| ts_ago(Duration::from_secs(600) - Duration::from_millis(ms));
    let state = "/w/.workflow-state.json";
    stage(
        &env,
        &[
            event(
                json!({"pid": 11, "ppid": 301, "op": "write", "target": state, "ts": t(100), "duration_ms": 80.0}),
            ),
            event(
                json!({"pid": 12, "ppid": 302, "op": "set", "target": state, "ts": t(150), "duration_ms": 100.0}),
            ),
            event(
                json!({"pid": 21, "tool": "lock-manager", "op": "acquire", "target": "deploy", "ts": t(1000),
                         "duration_ms": 801.0, "detail": {"wait_ms": 800.0, "owner_pid": 402, "lock_type": "exclusive"}}),
            ),
            event(
                json!({"pid": 22, "tool": "lock-manager", "op": "takeover", "target": "deploy", "ts": t(2000),
                         "detail": {"stale_pid": 999, "owner_pid": 401, "reason": "dead"}}),
            ),
            event(
                json!({"pid": 23, "tool": "lock-manager", "op": "release", "target": "deploy", "ts": t(3000),
                         "detail": {"owner_pid": 401}}),
            ),
            event(
                json!({"pid": 24, "op": "merge", "target": state, "ts": t(4000), "exit_code": 2, "duration_ms": 30.0}),
            ),
        ],
    );
    append(&env.audit_log(), &["{broken"]);
    env
}

/// The report commands, each with `--json`, and the schema of its output.
const REPORTS: &[(&[&str], &str)] = &[
    (
        &["audit", "recent", "--json"],
        "state-manager-audit-recent.schema.json",
    ),
    (
        &["audit", "stats", "--json"],
        "state-manager-audit-stats.schema.json",
    ),
    (
        &["audit", "stats", "--by", "op", "--json"],
        "state-manager-audit-stats.schema.json",
    ),
    (
        &["audit", "races", "--json"],
        "state-manager-audit-races.schema.json",
    ),
    (
        &["audit", "history", "deploy", "--all", "--json"],
        "state-manager-audit-history.schema.json",
    ),
    (
        &["audit", "history", "never-there", "--json"],
        "state-manager-audit-history.schema.json",
    ),
];

#[test]
fn reports_validate_against_their_schemas() {
    let env = staged();
    for (args, schema) in REPORTS {
        let out = env.run(SM, args).ok().json();
        assert_schema(schema, &out);
    }
    // An empty log: the reports are still whole.
    let empty = Env::new();
    for (args, schema) in REPORTS {
        let out = empty.run(SM, args).ok().json();
        assert_schema(schema, &out);
    }
    // The events inside the reports are audit events as the log holds them.
    let recent = env.run(SM, &["audit", "recent", "--json"]).ok().json();
    let races = env.run(SM, &["audit", "races", "--json"]).ok().json();
    let history = env
        .run(SM, &["audit", "history", "deploy", "--json"])
        .ok()
        .json();
    let mut all: Vec<&Value> = recent.as_array().unwrap().iter().collect();
    for f in races["findings"].as_array().unwrap() {
        all.extend(f["events"].as_array().unwrap());
    }
    for s in history["steps"].as_array().unwrap() {
        all.push(&s["event"]);
    }
    assert!(all.len() > 8);
    for e in all {
        assert_audit_event(e);
    }
}

#[test]
fn recent_json_is_an_array_and_jsonl_one_event_per_line() {
    let env = staged();
    let r = env.run(SM, &["audit", "recent", "--json"]).ok();
    let arr = r.json();
    let pids: Vec<u64> = arr
        .as_array()
        .expect("recent --json is an array")
        .iter()
        .map(|e| e["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(pids, [11, 12, 21, 22, 23, 24]);
    assert!(
        r.stderr.contains("1 malformed line skipped"),
        "{}",
        r.stderr
    );

    let lines = env.run(SM, &["audit", "recent", "--jsonl"]).ok().stdout;
    let objs = json_lines(&lines);
    assert_eq!(objs.len(), 6, "{lines}");
    assert!(objs.iter().all(Value::is_object));
    assert_eq!(objs, *arr.as_array().unwrap());

    // No match: an empty array, and no line at all.
    let none = env.run(SM, &["audit", "recent", "--op", "nothing", "--json"]);
    assert_eq!(none.ok().json(), json!([]));
    let none = env.run(SM, &["audit", "recent", "--op", "nothing", "--jsonl"]);
    assert_eq!(none.ok().stdout, "");
}

#[test]
fn compact_prints_one_line() {
    let env = staged();
    for args in [
        &["audit", "recent", "--json", "-c"][..],
        &["audit", "stats", "--json", "-c"],
        &["audit", "stats", "--json", "--compact"],
        &["audit", "races", "--json", "-c"],
        &["audit", "history", "deploy", "--json", "-c"],
    ] {
        let out = env.run(SM, args).ok().stdout;
        assert_eq!(out.lines().count(), 1, "{args:?}: {out}");
        serde_json::from_str::<Value>(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"));
        // Without -c: pretty, on many lines, the same value.
        let pretty = env.run(SM, &args[..args.len() - 1]).ok();
        assert!(pretty.stdout.lines().count() > 1, "{args:?}");
        // The reviews logged in between are left out: the same value.
        assert_eq!(
            serde_json::from_str::<Value>(&out).unwrap(),
            pretty.json(),
            "{args:?}"
        );
    }
}

/// Asserts that no key below `v` holds an upper-case letter (event records
/// included: their keys are snake_case too) and that every `*_ms` is a number.
#[track_caller]
fn assert_snake_case_with_ms_numbers(v: &Value, what: &str) {
    let camel = camel_case_keys(v);
    assert!(camel.is_empty(), "{what}: camelCase keys {camel:?}");
    for (path, key, value) in keys(v, &[]) {
        if key.ends_with("_ms") {
            assert!(
                value.is_number() || value.is_null(),
                "{what}: {path} is not a number of milliseconds: {value}"
            );
        }
    }
}

#[test]
fn report_keys_are_snake_case_and_every_ms_is_a_number() {
    let env = staged();
    for (args, _) in REPORTS {
        let out = env.run(SM, args).ok().json();
        assert_snake_case_with_ms_numbers(&out, &format!("{args:?}"));
        for (path, key, value) in keys(&out, &[]) {
            // A count is a number (`*_count`), `events` always a list of events.
            if key.ends_with("_count") || ["failed", "malformed", "count", "total"].contains(&key) {
                assert!(value.is_u64(), "{args:?}: {path} is not a count: {value}");
            }
            if key == "events" {
                assert!(value.is_array(), "{args:?}: {path} is not a list: {value}");
            }
        }
    }
}

#[test]
fn a_failure_under_json_is_an_error_object_on_stdout() {
    let env = staged();
    for args in [
        &["audit", "stats", "--since", "soon", "--json"][..],
        &["audit", "stats", "--since", "soon", "--json", "-c"],
        &["audit", "races", "--window=-5", "--json", "-c"],
        &["audit", "recent", "--since", "soon", "--jsonl"],
        &["audit", "export", "--output", ".", "--json", "-c"],
    ] {
        let r = env.run(SM, args);
        assert_ne!(r.code, 0, "{args:?}");
        let v: Value = serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: stdout is not JSON ({e}): {}", r.stdout));
        let err = &v["error"];
        assert_eq!(err["code"], r.code, "{args:?}: {v}");
        assert!(err["name"].is_string() && err["message"].is_string(), "{v}");
        assert_eq!(
            r.stderr.lines().filter(|l| !l.contains("warning:")).count(),
            1,
            "{args:?}: {}",
            r.stderr
        );
        if args.contains(&"-c") {
            assert_eq!(r.stdout.lines().count(), 1, "{args:?}: {}", r.stdout);
        }
    }
    let r = env.run(SM, &["audit", "stats", "--since", "soon", "--json"]);
    assert_eq!(r.code, 4);
    assert_eq!(r.json()["error"]["name"], "VALIDATION_FAILED");
}

#[test]
fn monitor_jsonl_streams_each_event_as_it_arrives() {
    let env = Env::new();
    let mut child = env
        .cmd(SM)
        .args([
            "audit",
            "monitor",
            "--interval",
            "1",
            "--duration",
            "3",
            "--jsonl",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let start: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(start["type"], "start", "{first}");
    assert_eq!(start["interval_ms"], 1000.0, "{first}");
    stage(
        &env,
        &[
            event(json!({"pid": 71, "op": "write"})),
            event(json!({"pid": 72, "exit_code": 4})),
        ],
    );
    let mut next = String::new();
    out.read_line(&mut next).unwrap();
    let ev: Value = serde_json::from_str(&next).unwrap();
    assert_eq!(
        (ev["type"].as_str(), ev["event"]["pid"].as_u64()),
        (Some("event"), Some(71)),
        "{next}"
    );
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "monitor did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    let records = json_lines(&rest);
    assert!(
        records
            .iter()
            .any(|r| r["type"] == "event" && r["event"]["pid"] == 72),
        "{rest}"
    );
    let session = records.last().unwrap();
    assert_eq!(session["type"], "session", "{rest}");
    assert_eq!(session["event_count"], 2);
    assert!(
        session["elapsed_ms"].as_f64().unwrap() >= 3000.0,
        "{session}"
    );
    for r in std::iter::once(&start).chain(&records) {
        assert_snake_case_with_ms_numbers(r, &r.to_string());
    }
    let summary = records.iter().find(|r| r["type"] == "summary").unwrap();
    assert!(summary["duration"]["p50_ms"].is_number(), "{summary}");
}

#[test]
fn export_writes_through_the_one_atomic_write() {
    let env = staged();
    let out = env.path("out/export.json");
    fs::create_dir_all(env.path("out")).unwrap();
    // A temp file a killed writer left, named as the one atomic write names them.
    let leftover = env.path("out/.export.json.999999.0.tmp");
    fs::write(&leftover, "half an export").unwrap();
    fs::write(&out, "the previous export").unwrap();
    let before = fs::metadata(&out).unwrap().ino();
    env.run(SM, &["audit", "export", "--output", out.to_str().unwrap()])
        .ok()
        .stdout_has("exported 6 events");
    let doc: Value = serde_json::from_slice(&fs::read(&out).unwrap()).unwrap();
    assert_eq!(doc["events"].as_array().unwrap().len(), 6);
    assert_eq!(doc["stats"]["event_count"], 6);
    assert!(doc["races"]["findings"].is_array());
    assert_ne!(
        fs::metadata(&out).unwrap().ino(),
        before,
        "replaced by rename, not rewritten in place"
    );
    assert_eq!(
        env.list("out"),
        ["export.json"],
        "no temp file left, the leftover swept"
    );
    // The export's stats are the stats report.
    assert_schema("state-manager-audit-stats.schema.json", &doc["stats"]);

    // --json -c: the summary on one line.
    let s = env
        .run(
            SM,
            &[
                "audit",
                "export",
                "--output",
                out.to_str().unwrap(),
                "--json",
                "-c",
            ],
        )
        .ok()
        .stdout;
    assert_eq!(s.lines().count(), 1, "{s}");
    let s: Value = serde_json::from_str(&s).unwrap();
    assert_eq!(
        (
            s["event_count"].as_u64(),
            s["finding_count"].as_u64(),
            s["malformed"].as_u64()
        ),
        (Some(6), Some(4), Some(1))
    );
}

#[test]
fn debug_says_what_the_review_read_and_how_long_it_took() {
    let env = staged();
    let r = env.run(SM, &["--debug", "audit", "stats"]).ok();
    let log = env.audit_log().display().to_string();
    assert!(
        r.stderr
            .lines()
            .any(|l| l.contains("debug:") && l.contains(&format!("scanning {log}"))),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.lines().any(|l| l.contains("debug:")
            && l.contains("scanned 7 lines (1 malformed)")
            && l.contains(" ms")),
        "{}",
        r.stderr
    );
    // Off by default.
    let quiet = env.run(SM, &["audit", "stats"]).ok();
    assert!(!quiet.stderr.contains("debug:"), "{}", quiet.stderr);
}
