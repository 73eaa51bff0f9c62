//! `state-manager metrics`: a real session, then its figures read back by
//! real Prometheus parsers — `promtool check metrics` (Debian's
//! `prometheus` package) must accept the text without a lint, and the
//! Python client's parser (`python3-prometheus-client`) gives back the
//! values, which must equal what was done. Neither tool missing is a skip:
//! the test fails and says what to install.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::harness::{Env, Owner, assert_schema, dead_record, er, event, hold, stage};

const SM: &str = "state-manager";
const LM: &str = "lock-manager";

/// The Debian Python, where `python3-prometheus-client` installs its module.
const PYTHON: &str = "/usr/bin/python3";

/// One sample as the Python client's parser read it.
#[derive(Clone, Debug, PartialEq)]
struct Sample {
    name: String,
    family_type: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Runs `program args` with `input` on stdin; returns (exit status, stdout + stderr).
fn pipe(program: &str, args: &[&str], input: &str) -> (bool, String, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): install it (see the module docs)"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Fails unless promtool accepts `text` with no problem at all (parse
/// errors and lint findings alike).
#[track_caller]
fn promtool_accepts(text: &str) {
    let (ok, out, err) = pipe("promtool", &["check", "metrics"], text);
    assert!(
        ok && out.trim().is_empty() && err.trim().is_empty(),
        "promtool check metrics rejects the output:\n{out}{err}\n--- text:\n{text}"
    );
}

const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        print(json.dumps({"name": s.name, "type": fam.type, "labels": s.labels, "value": s.value}))
"#;

/// `text` parsed by the Python client's parser (fails if it rejects it).
#[track_caller]
fn parse(text: &str) -> Vec<Sample> {
    let (ok, out, err) = pipe(PYTHON, &["-c", PARSE], text);
    assert!(
        ok,
        "the Python Prometheus parser rejects the output (or python3-prometheus-client is missing):\n{err}\n--- text:\n{text}"
    );
    out.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            Sample {
                name: v["name"].as_str().unwrap().to_string(),
                family_type: v["type"].as_str().unwrap().to_string(),
                labels: v["labels"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect(),
                value: v["value"].as_f64().unwrap(),
            }
        })
        .collect()
}

/// `metrics` of `env`, checked by both parsers; returns the samples.
#[track_caller]
fn scrape(env: &Env) -> Vec<Sample> {
    let text = env.run(SM, &["metrics"]).ok().stdout;
    promtool_accepts(&text);
    parse(&text)
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The value of the sample `name` with exactly the labels `pairs`.
#[track_caller]
fn value(samples: &[Sample], name: &str, pairs: &[(&str, &str)]) -> f64 {
    let want = labels(pairs);
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name && s.labels == want)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{name}{want:?}: {} samples\n{samples:#?}",
        found.len()
    );
    found[0].value
}

/// Every `wfstate_operations_total` sample as (tool, op, exit code) → count.
fn operations(samples: &[Sample]) -> BTreeMap<(String, String, String), f64> {
    samples
        .iter()
        .filter(|s| s.name == "wfstate_operations_total")
        .map(|s| {
            (
                (
                    s.labels["tool"].clone(),
                    s.labels["op"].clone(),
                    s.labels["exit_code"].clone(),
                ),
                s.value,
            )
        })
        .collect()
}

/// Every series of histogram `family` is cumulative up to `+Inf`, which equals its `_count`.
#[track_caller]
fn histograms_are_whole(samples: &[Sample], family: &str) {
    let mut series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
    for s in samples
        .iter()
        .filter(|s| s.name == format!("{family}_bucket"))
    {
        assert_eq!(s.family_type, "histogram");
        let mut l = s.labels.clone();
        let le = l.remove("le").expect("a bucket has le");
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap()
        };
        series.entry(l).or_default().push((le, s.value));
    }
    assert!(!series.is_empty(), "no series of {family}");
    for (l, buckets) in &series {
        assert!(
            buckets
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
            "{family}{l:?}: not cumulative: {buckets:?}"
        );
        let (le, inf) = *buckets.last().unwrap();
        assert_eq!(le, f64::INFINITY, "{family}{l:?}: no +Inf bucket");
        let pairs: Vec<(&str, &str)> = l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(value(samples, &format!("{family}_count"), &pairs), inf);
        let sum = value(samples, &format!("{family}_sum"), &pairs);
        assert!(sum >= 0.0, "{family}{l:?}: sum {sum}");
    }
}

fn backups_on_disk(env: &Env) -> usize {
    env.list(".state-backups")
        .iter()
        .filter(|n| n.starts_with("state-") && n.ends_with(".json"))
        .count()
}

/// What each (tool, op, exit code) should count after [`session`].
fn expected_session_ops() -> BTreeMap<(String, String, String), f64> {
    [
        ("state-manager", "init", "0", 1.0),
        ("state-manager", "set", "0", 2.0),
        ("state-manager", "set", "4", 1.0),
        // job by one owner, deploy by a dead owner, deploy taken over.
        ("lock-manager", "acquire", "0", 3.0),
        ("lock-manager", "acquire", "2", 1.0),
        ("lock-manager", "release", "0", 1.0),
        ("lock-manager", "takeover", "0", 1.0),
        ("error-recovery", "checkpoint", "0", 1.0),
    ]
    .into_iter()
    .map(|(t, o, c, n)| ((t.to_string(), o.to_string(), c.to_string()), n))
    .collect()
}

/// A real session: init, two sets and one refused, a lock taken and given
/// back, a dead owner's lock taken over (and kept by its live taker), a
/// lock wait that times out, a checkpoint, a review of the log. Returns
/// the live owner.
fn session(env: &Env) -> Owner {
    env.init();
    env.sm(&["set", ".phase", r#""build""#]);
    env.sm(&["set", ".phase", r#""test""#]);
    env.run(SM, &["set", ".phase", "5"]).code(4);
    let a = Owner::new();
    hold(env, "job", &a, &[]);
    env.run(LM, &["release", "job", "--owner", &a.pid()]).ok();
    dead_record(env, "deploy");
    let live = Owner::new();
    hold(env, "deploy", &live, &[]);
    env.run(
        LM,
        &[
            "--lock-timeout",
            "0.2",
            "acquire",
            "deploy",
            "--owner",
            &a.pid(),
        ],
    )
    .code(2);
    er(env, &["checkpoint", "release-1"]).ok();
    // A review logs itself, and is left out of the counts.
    env.sm(&["audit", "stats", "--json"]);
    live
}

#[test]
fn a_real_session_reads_back_through_a_real_parser_as_what_was_done() {
    let env = Env::new();
    let _live = session(&env);
    let log_before = env.bytes(".workflow-audit.jsonl");
    let s = scrape(&env);
    // metrics records nothing itself.
    assert_eq!(env.bytes(".workflow-audit.jsonl"), log_before);

    assert_eq!(operations(&s), expected_session_ops());
    assert_eq!(value(&s, "wfstate_lock_takeovers_total", &[]), 1.0);
    for family in [
        "wfstate_operation_duration_seconds",
        "wfstate_lock_wait_seconds",
    ] {
        histograms_are_whole(&s, family);
    }
    let set = [("tool", "state-manager"), ("op", "set")];
    assert_eq!(
        value(&s, "wfstate_operation_duration_seconds_count", &set),
        3.0
    );
    // The acquire that timed out waited its 0.2 s: over the 0.1 s bound.
    let acquire = [("tool", "lock-manager"), ("op", "acquire")];
    let waits = value(&s, "wfstate_lock_wait_seconds_count", &acquire);
    let mut under = acquire.to_vec();
    under.push(("le", "0.1"));
    assert!(value(&s, "wfstate_lock_wait_seconds_bucket", &under) < waits);
    assert!(value(&s, "wfstate_lock_wait_seconds_sum", &acquire) >= 0.2);

    let state = env.state();
    assert_eq!(value(&s, "wfstate_state_revision", &[]), 3.0);
    assert_eq!(state["metadata"]["revision"], 3);
    assert_eq!(
        value(&s, "wfstate_state_bytes", &[]),
        fs::metadata(env.state_file()).unwrap().len() as f64
    );
    assert_eq!(value(&s, "wfstate_state_valid", &[]), 1.0);
    assert_eq!(
        value(&s, "wfstate_state_condition", &[("condition", "valid")]),
        1.0
    );
    assert_eq!(
        value(&s, "wfstate_state_condition", &[("condition", "corrupt")]),
        0.0
    );
    assert_eq!(backups_on_disk(&env), 2);
    assert_eq!(value(&s, "wfstate_backups", &[]), 2.0);
    assert_eq!(value(&s, "wfstate_checkpoints", &[]), 1.0);
    assert!(value(&s, "wfstate_checkpoint_bytes", &[]) > 0.0);
    assert_eq!(
        value(&s, "wfstate_locks_held", &[("type", "exclusive")]),
        1.0
    );
    assert_eq!(value(&s, "wfstate_locks_held", &[("type", "shared")]), 0.0);
    assert_eq!(value(&s, "wfstate_locks_stale", &[]), 0.0);
    assert_eq!(
        value(&s, "wfstate_audit_log_bytes", &[]),
        log_before.len() as f64
    );
    assert_eq!(value(&s, "wfstate_audit_malformed_lines", &[]), 0.0);
    assert_eq!(
        value(
            &s,
            "wfstate_info",
            &[("backend", "file"), ("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert_eq!(value(&s, "wfstate_degraded_mode", &[]), 0.0);

    // Degraded mode on: 1, one more revision, one more degrade operation.
    er(&env, &["degrade", "disk slow"]).ok();
    let s = scrape(&env);
    assert_eq!(value(&s, "wfstate_degraded_mode", &[]), 1.0);
    assert_eq!(value(&s, "wfstate_state_revision", &[]), 4.0);
    let mut ops = expected_session_ops();
    ops.insert(("error-recovery".into(), "degrade".into(), "0".into()), 1.0);
    assert_eq!(operations(&s), ops);
    assert_eq!(
        value(&s, "wfstate_backups", &[]),
        backups_on_disk(&env) as f64
    );
    // A second held lock, shared this time.
    let reader = Owner::new();
    hold(&env, "report", &reader, &["5", "shared"]);
    let s = scrape(&env);
    assert_eq!(value(&s, "wfstate_locks_held", &[("type", "shared")]), 1.0);
    // Its owner gone: stale, no longer held.
    drop(reader);
    let s = scrape(&env);
    assert_eq!(value(&s, "wfstate_locks_held", &[("type", "shared")]), 0.0);
    assert_eq!(value(&s, "wfstate_locks_stale", &[]), 1.0);
}

#[test]
fn json_holds_the_same_samples_as_the_text_and_follows_its_schema() {
    let env = Env::new();
    let _live = session(&env);
    let text = env.run(SM, &["metrics"]).ok().stdout;
    let v = env.run(SM, &["metrics", "--json"]).ok().json();
    assert_schema("state-manager-metrics.schema.json", &v);
    let parsed = parse(&text);
    let items = v.as_array().unwrap();
    assert_eq!(items.len(), parsed.len(), "{v:#}");
    for (j, p) in items.iter().zip(&parsed) {
        assert_eq!(j["name"], json!(p.name));
        assert_eq!(j["type"], json!(p.family_type), "{}", p.name);
        let l: BTreeMap<String, String> = j["labels"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        assert_eq!(l, p.labels, "{}", p.name);
        if p.name != "wfstate_metrics_generated_timestamp_seconds" {
            assert_eq!(j["value"].as_f64().unwrap(), p.value, "{}", p.name);
        }
        assert!(!j["help"].as_str().unwrap().is_empty());
    }
    let compact = env.run(SM, &["metrics", "--json", "-c"]).ok().stdout;
    assert_eq!(compact.lines().count(), 1);
}

// The class: any byte a label value may carry from a hand-edited log.
#[test]
fn label_values_from_a_hand_edited_log_are_escaped_and_read_back_whole() {
    let env = Env::new();
    env.init();
    let odd = [
        r#"quo"te"#,
        r"back\slash",
        "line\nfeed",
        r#"all\"of\n"them"#,
        "ünïcode ✓",
        "trailing\\",
    ];
    let events: Vec<Value> = odd
        .iter()
        .map(|op| event(json!({"tool": "hand\"made", "op": op, "exit_code": 3})))
        .collect();
    stage(&env, &events);
    let s = scrape(&env);
    for op in odd {
        assert_eq!(
            value(
                &s,
                "wfstate_operations_total",
                &[("tool", "hand\"made"), ("op", op), ("exit_code", "3")]
            ),
            1.0,
            "{op:?}"
        );
    }
    // A line that is not an event is counted, not fatal.
    crate::harness::append(&env.audit_log(), &["{not json"]);
    let s = scrape(&env);
    assert_eq!(value(&s, "wfstate_audit_malformed_lines", &[]), 1.0);
}

#[test]
fn metrics_only_reads_and_reports_a_missing_or_corrupt_state() {
    let env = Env::new();
    // Nothing there: figures all the same, and nothing created.
    let s = scrape(&env);
    assert_eq!(env.list("."), Vec::<String>::new());
    assert_eq!(
        value(&s, "wfstate_state_condition", &[("condition", "missing")]),
        1.0
    );
    assert_eq!(value(&s, "wfstate_state_valid", &[]), 0.0);
    assert!(!s.iter().any(|x| x.name == "wfstate_state_revision"));
    assert!(!s.iter().any(|x| x.name == "wfstate_operations_total"));

    // A state that does not parse: reported, exit 0, left as it is.
    env.init();
    fs::write(env.state_file(), b"{\"phase\": ").unwrap();
    let (before, locks) = (env.list("."), env.list(".locks"));
    let log = env.bytes(".workflow-audit.jsonl");
    let s = scrape(&env);
    assert_eq!(
        value(&s, "wfstate_state_condition", &[("condition", "corrupt")]),
        1.0
    );
    assert_eq!(value(&s, "wfstate_state_bytes", &[]), 10.0);
    assert!(!s.iter().any(|x| x.name == "wfstate_state_revision"));
    assert_eq!(env.list("."), before);
    assert_eq!(env.list(".locks"), locks);
    assert_eq!(env.bytes(".workflow-audit.jsonl"), log);
    assert_eq!(env.bytes(".workflow-state.json"), b"{\"phase\": ");
}

#[test]
fn output_replaces_the_file_whole_and_readable_by_a_scraper_s_user() {
    let env = Env::new();
    env.init();
    let out = env.path("wfstate.prom");
    let sm = crate::harness::bin_path(SM);
    let write = |umask: &str| {
        let mut c = Command::new("sh");
        env.clean_env(&mut c);
        let r = c
            .args([
                "-c",
                &format!("umask {umask}; exec \"$0\" metrics --output wfstate.prom"),
            ])
            .arg(&sm)
            .output()
            .unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        assert!(r.stdout.is_empty(), "--output prints nothing");
    };
    write("022");
    let first = fs::read_to_string(&out).unwrap();
    promtool_accepts(&first);
    assert!(first.ends_with('\n'));
    assert_eq!(value(&parse(&first), "wfstate_state_revision", &[]), 1.0);
    // Readable by node_exporter's own user, as `> FILE` would make it.
    let meta = fs::metadata(&out).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o644);

    // Replaced, not rewritten in place: a reader of the old file reads it
    // whole; the new one holds the new figures; the mode chosen is kept.
    fs::set_permissions(&out, fs::Permissions::from_mode(0o640)).unwrap();
    let mut reader = fs::File::open(&out).unwrap();
    env.sm(&["set", ".phase", r#""next""#]);
    write("077");
    let mut old = String::new();
    reader.read_to_string(&mut old).unwrap();
    assert_eq!(old, first);
    let meta2 = fs::metadata(&out).unwrap();
    assert_ne!(meta2.ino(), meta.ino());
    assert_eq!(meta2.permissions().mode() & 0o777, 0o640);
    let second = fs::read_to_string(&out).unwrap();
    promtool_accepts(&second);
    assert_eq!(value(&parse(&second), "wfstate_state_revision", &[]), 2.0);
    // No temp file left beside it.
    assert!(
        env.list(".").iter().all(|n| !n.ends_with(".tmp")),
        "{:?}",
        env.list(".")
    );

    // A folder that does not exist: one line naming it, nothing written.
    env.run(SM, &["metrics", "--output", "no/such/dir/m.prom"])
        .code(1)
        .one_line_error(SM)
        .stderr_has("no/such/dir");
}

#[test]
fn on_redis_the_figures_come_from_the_server() {
    let env = Env::redis();
    env.init();
    env.sm(&["set", ".phase", r#""build""#]);
    env.run(SM, &["set", ".phase", "5"]).code(4);
    er(&env, &["checkpoint", "release-1"]).ok();
    let owner = Owner::new();
    hold(&env, "deploy", &owner, &[]);
    let s = scrape(&env);
    assert_eq!(
        value(
            &s,
            "wfstate_info",
            &[("backend", "redis"), ("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    let ops = operations(&s);
    let count = |t: &str, o: &str, c: &str| ops.get(&(t.into(), o.into(), c.into())).copied();
    assert_eq!(count("state-manager", "init", "0"), Some(1.0));
    assert_eq!(count("state-manager", "set", "0"), Some(1.0));
    assert_eq!(count("state-manager", "set", "4"), Some(1.0));
    assert_eq!(count("error-recovery", "checkpoint", "0"), Some(1.0));
    assert_eq!(count("lock-manager", "acquire", "0"), Some(1.0));
    histograms_are_whole(&s, "wfstate_operation_duration_seconds");
    let listed = env.run(SM, &["list-backups", "--json"]).ok().json();
    assert_eq!(
        value(&s, "wfstate_backups", &[]),
        listed.as_array().unwrap().len() as f64
    );
    assert_eq!(value(&s, "wfstate_backups", &[]), 1.0);
    assert_eq!(value(&s, "wfstate_state_revision", &[]), 2.0);
    assert_eq!(value(&s, "wfstate_checkpoints", &[]), 1.0);
    // Sized on the server: nothing of them is on this host's disk.
    assert!(value(&s, "wfstate_checkpoint_bytes", &[]) > 0.0);
    assert!(value(&s, "wfstate_backup_bytes", &[]) > 0.0);
    assert_eq!(env.list(".checkpoints"), Vec::<String>::new());
    assert_eq!(
        value(&s, "wfstate_locks_held", &[("type", "exclusive")]),
        1.0
    );
    assert!(value(&s, "wfstate_audit_log_bytes", &[]) > 0.0);
    assert_eq!(value(&s, "wfstate_degraded_mode", &[]), 0.0);
    er(&env, &["degrade", "redis slow"]).ok();
    let s = scrape(&env);
    assert_eq!(value(&s, "wfstate_degraded_mode", &[]), 1.0);
    assert_eq!(value(&s, "wfstate_state_revision", &[]), 3.0);
}

#[test]
fn labels_given_go_on_every_sample_and_bad_ones_are_refused() {
    let env = Env::new();
    env.init();
    let text = env
        .run(
            SM,
            &[
                "metrics",
                "--label",
                "pipeline=deploy",
                "--label",
                "team=a\"b\\c",
            ],
        )
        .ok()
        .stdout;
    promtool_accepts(&text);
    let s = parse(&text);
    assert!(!s.is_empty());
    for x in &s {
        assert_eq!(
            x.labels.get("pipeline").map(String::as_str),
            Some("deploy"),
            "{x:?}"
        );
        assert_eq!(
            x.labels.get("team").map(String::as_str),
            Some("a\"b\\c"),
            "{x:?}"
        );
    }
    let v = env
        .run(SM, &["metrics", "--json", "--label", "pipeline=deploy"])
        .ok()
        .json();
    assert_schema("state-manager-metrics.schema.json", &v);
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .all(|x| x["labels"]["pipeline"] == "deploy")
    );

    // The class of bad names: each refused with exit 4, one line, no output.
    for bad in [
        &["noequals"][..],
        &["=v"],
        &["1x=v"],
        &["a-b=v"],
        &["__name__=v"],
        &["le=v"],
        &["op=v"],
        &["p=1", "p=2"],
    ] {
        let mut args = vec!["metrics", "--output", "m.prom"];
        for b in bad {
            args.extend(["--label", b]);
        }
        let r = env
            .run(SM, &args)
            .code(4)
            .one_line_error(SM)
            .stderr_has("--label");
        assert!(r.stdout.is_empty(), "{bad:?}");
        assert!(!env.path("m.prom").exists(), "{bad:?}");
    }
}
