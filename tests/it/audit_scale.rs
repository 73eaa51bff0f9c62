//! Audit review that stays flat as the log grows (issue 16): `audit recent`
//! read from the end of the log gives exactly what a forward scan gives,
//! over a family of logs (rotated files, malformed and blank lines, CRLF, a
//! last line without newline) and filters, and reads only what it needs;
//! `history` and `races` keep their reports whole and in order when what
//! they find is more than they hold in memory.

use std::fs;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Env, append, event, ts_ago};

/// A small deterministic generator (xorshift), so a failure names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, of: &[&'a str]) -> &'a str {
        of[self.below(of.len() as u64) as usize]
    }
}

const TOOLS: &[&str] = &["state-manager", "lock-manager", "error-recovery"];
const OPS: &[&str] = &["set", "acquire", "write", "audit-recent"];
const TARGETS: &[&str] = &["deploy", "/w/s.json", "ck-1"];

/// One generated line: an event (its `pid` numbers it), or a malformed or
/// blank line. `old`: from 2 hours ago, else from the last 10 minutes
/// (`--since 1h` splits them, far from the edge).
fn gen_line(rng: &mut Rng, pid: u64) -> (String, Option<Value>) {
    let ago = if rng.below(3) == 0 { 7200 } else { 600 } - rng.below(300);
    match rng.below(12) {
        0 => ("not json".to_string(), None),
        1 => (
            format!(
                "{{\"ts\":\"{}\",\"tool\":\"x\"}}",
                ts_ago(Duration::from_secs(ago))
            ),
            None,
        ),
        2 => (String::new(), None),
        _ => {
            let ev = event(json!({
                "ts": ts_ago(Duration::from_secs(ago)),
                "tool": rng.pick(TOOLS), "op": rng.pick(OPS), "target": rng.pick(TARGETS),
                "pid": pid, "exit_code": rng.below(3), "run_id": rng.pick(&["r1", "r2"]),
            }));
            let mut text = ev.to_string();
            if rng.below(8) == 0 {
                text.push('\r');
            }
            (text, Some(ev))
        }
    }
}

/// Writes a live log and 0–3 rotated files (the live log may lack its last
/// newline, any file may be empty) and returns the events oldest first.
fn write_family(env: &Env, rng: &mut Rng) -> Vec<Value> {
    let rotated = rng.below(4);
    let mut events = Vec::new();
    let mut pid = 1;
    for n in (0..=rotated).rev() {
        let path = if n == 0 {
            env.audit_log()
        } else {
            env.path(&format!(".workflow-audit.jsonl.{n}"))
        };
        let mut text = String::new();
        let lines = rng.below(30);
        for i in 0..lines {
            let (line, ev) = gen_line(rng, pid);
            pid += 1;
            events.extend(ev);
            text.push_str(&line);
            if !(n == 0 && i + 1 == lines && rng.below(2) == 0) {
                text.push('\n');
            }
        }
        fs::write(path, text).unwrap();
    }
    for n in rotated + 1..=5 {
        let _ = fs::remove_file(env.path(&format!(".workflow-audit.jsonl.{n}")));
    }
    events
}

/// The filter arguments, and the same filter as a predicate.
type Pred = Box<dyn Fn(&Value) -> bool>;

fn gen_filter(rng: &mut Rng) -> (Vec<String>, Pred) {
    let mut args = Vec::new();
    let mut preds: Vec<Pred> = Vec::new();
    let op = (rng.below(3) == 0).then(|| rng.pick(OPS).to_string());
    {
        // Reviews' own events are left out unless --op names them.
        let op = op.clone();
        preds.push(Box::new(move |e| {
            !e["op"].as_str().unwrap().starts_with("audit-") || op.as_deref() == e["op"].as_str()
        }));
    }
    if let Some(op) = op {
        args.extend(["--op".to_string(), op.clone()]);
        preds.push(Box::new(move |e| e["op"] == op.as_str()));
    }
    for (flag, key, of) in [
        ("--tool", "tool", TOOLS),
        ("--target", "target", TARGETS),
        ("--run-id", "run_id", &["r1", "r2", "r3"][..]),
    ] {
        if rng.below(3) == 0 {
            let v = rng.pick(of).to_string();
            args.extend([flag.to_string(), v.clone()]);
            preds.push(Box::new(move |e| e[key] == v.as_str()));
        }
    }
    if rng.below(3) == 0 {
        args.extend(["--since".to_string(), "1h".to_string()]);
        let cut = ts_ago(Duration::from_secs(3600));
        preds.push(Box::new(move |e| e["ts"].as_str().unwrap() >= cut.as_str()));
    }
    if rng.below(4) == 0 {
        args.push("--failed".to_string());
        preds.push(Box::new(|e| e["exit_code"] != 0));
    }
    (args, Box::new(move |e| preds.iter().all(|p| p(e))))
}

fn pids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| e["pid"].as_u64().unwrap())
        .collect()
}

// See: issue 16 (recent read from the end must answer as the forward scan did).
#[test]
fn recent_from_the_end_shows_what_a_forward_scan_shows() {
    let env = Env::new();
    let mut shown = 0;
    for seed in 1..=40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        for _ in 0..3 {
            // Written again for every run: each review appends its own event.
            let mut again = Rng(rng.0);
            let events = write_family(&env, &mut again);
            rng = again;
            let (filter, pred) = gen_filter(&mut rng);
            let n = [1, 2, 3, 7, 100][rng.below(5) as usize];
            let matching: Vec<u64> = events
                .iter()
                .filter(|e| pred(e))
                .map(|e| e["pid"].as_u64().unwrap())
                .collect();
            let want = &matching[matching.len().saturating_sub(n)..];
            let n_text = n.to_string();
            let mut args = vec!["audit", "recent", "--json", "-n", &n_text];
            args.extend(filter.iter().map(String::as_str));
            let got = pids(&env.run("state-manager", &args).ok().json());
            assert_eq!(got, want, "seed {seed}: {args:?}");
            shown += got.len();
        }
    }
    assert!(shown > 100, "the family shows events: {shown}");
}

/// `--debug`'s account of a backwards read: (lines read, files read).
fn read_back(env: &Env, args: &[&str]) -> (u64, u64) {
    let mut all = vec!["--debug", "audit", "recent", "--json"];
    all.extend_from_slice(args);
    let r = env.run("state-manager", &all).ok();
    let line = r
        .stderr
        .lines()
        .find(|l| l.contains("back from the end of"))
        .unwrap_or_else(|| panic!("no account of the read: {}", r.stderr))
        .to_string();
    let num = |after: &str| -> u64 {
        let rest = &line[line.find(after).unwrap() + after.len()..];
        rest.split(' ').next().unwrap().parse().unwrap()
    };
    (num("read "), num("end of "))
}

#[test]
fn recent_reads_the_newest_file_only_as_far_back_as_it_needs() {
    let env = Env::new();
    // Three files of 3000 events each: LOG.2, LOG.1, LOG.
    let mut pid = 0;
    for name in [
        ".workflow-audit.jsonl.2",
        ".workflow-audit.jsonl.1",
        ".workflow-audit.jsonl",
    ] {
        let lines: Vec<String> = (0..3000)
            .map(|i| {
                pid += 1;
                let op = if i == 10 { "checkpoint" } else { "set" };
                event(json!({"pid": pid, "op": op, "target": "t"})).to_string()
            })
            .collect();
        append(&env.path(name), &lines);
    }
    let (lines, files) = read_back(&env, &["-n", "3"]);
    assert_eq!(files, 1, "only the live log");
    assert!(lines < 3000, "{lines} lines read for 3 events");
    // The newest checkpoint is early in the live log: most of it is read, no older file.
    let (lines, files) = read_back(&env, &["-n", "1", "--op", "checkpoint"]);
    assert_eq!(files, 1);
    assert!(lines < 3000, "{lines}");
    // Two checkpoints: the second is in LOG.1.
    let (_, files) = read_back(&env, &["-n", "2", "--op", "checkpoint"]);
    assert_eq!(files, 2);
    // Fewer matches than asked: every file is read.
    // (Plus the events the reviews above appended to the live log.)
    let (lines, files) = read_back(&env, &["-n", "5", "--op", "checkpoint"]);
    assert!(lines >= 9000 && files == 3, "{lines} lines, {files} files");
    let got = pids(
        &env.run(
            "state-manager",
            &["audit", "recent", "--json", "--op", "checkpoint"],
        )
        .ok()
        .json(),
    );
    assert_eq!(got, [11, 3011, 6011]);
}

/// A log in which `deploy` has `n` steps, each event about 1 KiB (so the
/// steps pass what a review holds in memory), and a few other events.
fn busy_target(env: &Env, n: u64) {
    let pad = "p".repeat(900);
    let lines: Vec<String> = (1..=n)
        .map(|i| {
            let op = if i % 2 == 1 { "acquire" } else { "release" };
            let ev = event(json!({
                "pid": i, "tool": "lock-manager", "op": op, "target": "deploy",
                "ts": format!("2024-05-01T10:{:02}:{:02}.000000Z", (i / 60) % 60, i % 60),
                "detail": {"owner_pid": 7, "note": pad},
            }));
            ev.to_string()
        })
        .chain((0..5).map(|i| event(json!({"pid": 100_000 + i, "target": "other"})).to_string()))
        .collect();
    append(&env.audit_log(), &lines);
}

#[test]
fn a_long_history_is_written_whole_and_in_order() {
    let env = Env::new();
    // 6000 steps of ~1 KiB: more than the 4 MiB kept in memory.
    busy_target(&env, 6000);
    for args in [&["--json"][..], &["--json", "-c"][..]] {
        let mut all = vec!["audit", "history", "deploy"];
        all.extend_from_slice(args);
        let r = env.run("state-manager", &all).ok();
        assert_eq!(
            r.stdout.lines().count() == 1,
            args.contains(&"-c"),
            "{args:?}"
        );
        let h = r.json();
        assert_eq!(h["step_count"], 6000);
        let steps = h["steps"].as_array().unwrap();
        let order: Vec<u64> = steps
            .iter()
            .map(|s| s["event"]["pid"].as_u64().unwrap())
            .collect();
        assert_eq!(order, (1..=6000).collect::<Vec<_>>(), "{args:?}");
        assert_eq!(steps[0]["what"], "locked");
        assert_eq!(steps[1]["what"], "released");
        assert_eq!(h["removed_by"]["event"]["pid"], 6000);
        assert_eq!(h["kind"], "lock");
        let verdict = h["verdict"].as_str().unwrap();
        assert!(
            verdict.contains("removed by lock-manager release"),
            "{verdict}"
        );
        // Pretty output is what serde_json prints for the same value.
        if !args.contains(&"-c") {
            let want = format!("{}\n", serde_json::to_string_pretty(&h).unwrap());
            assert!(r.stdout == want, "not as serde_json prints the value");
        }
    }
    // Text: one aligned row per step, after the verdict and a header.
    let text = env
        .run("state-manager", &["audit", "history", "deploy"])
        .ok()
        .stdout;
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("history of lock 'deploy': "),
        "{}",
        lines[0]
    );
    assert!(
        lines[2].starts_with("TIME") && lines[2].contains("DETAIL"),
        "{}",
        lines[2]
    );
    let rows: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("2024-05-01T"))
        .collect();
    assert_eq!(rows.len(), 6000);
    let col = lines[2].find("WHAT").unwrap();
    assert!(
        rows.iter()
            .all(|r| r[col..].starts_with("locked") || r[col..].starts_with("released"))
    );
    assert!(
        text.contains("\nremoved by: lock-manager release"),
        "{}",
        &text[text.len() - 300..]
    );
    // An empty history is still one JSON value.
    let none = env
        .run(
            "state-manager",
            &["audit", "history", "nothing-here", "--json"],
        )
        .ok();
    assert_eq!(none.json()["steps"], json!([]));
    assert_eq!(none.json()["step_count"], 0);
}

#[test]
fn many_races_are_listed_earliest_first_however_late_they_are_found() {
    let env = Env::new();
    let pad = "p".repeat(600);
    let mut lines = Vec::new();
    // 4000 overlapping pairs on distinct targets (each finding ~2 KiB in
    // JSON: more than the 4 MiB held in memory), one every second…
    for i in 0..4000u64 {
        let ts = |ms: u64| {
            format!(
                "2024-05-01T{:02}:{:02}:{:02}.{ms:03}000Z",
                10 + i / 3600,
                (i / 60) % 60,
                i % 60
            )
        };
        for (owner, ms) in [(1, 100), (2, 200)] {
            lines.push(
                event(
                    json!({"pid": i, "ppid": owner, "op": "set", "target": format!("t{i}"),
                                  "ts": ts(ms), "duration_ms": 150.0, "detail": {"note": pad}}),
                )
                .to_string(),
            );
        }
    }
    // …and, logged last, a lock wait that began before all of them.
    lines.push(
        event(
            json!({"pid": 99_999, "tool": "lock-manager", "op": "acquire", "target": "late",
                     "ts": "2024-05-01T12:00:00.000000Z", "duration_ms": 9_000_000.0,
                     "detail": {"owner_pid": 5, "wait_ms": 9_000_000.0}}),
        )
        .to_string(),
    );
    append(&env.audit_log(), &lines);
    let mut docs = Vec::new();
    for args in [&["--json"][..], &["--json", "-c"][..]] {
        let mut all = vec!["audit", "races"];
        all.extend_from_slice(args);
        let r = env.run("state-manager", &all).ok();
        let v = r.json();
        assert_eq!(v["finding_count"], 4001);
        assert_eq!(v["counts"], json!({"lock-wait": 1, "overlap": 4000}));
        let f = v["findings"].as_array().unwrap();
        assert_eq!(
            f[0]["kind"], "lock-wait",
            "the earliest first, though found last"
        );
        let at: Vec<&str> = f.iter().map(|x| x["at"].as_str().unwrap()).collect();
        assert!(at.windows(2).all(|w| w[0] <= w[1]), "earliest first");
        assert_eq!(f[1]["target"], "t0");
        assert_eq!(f[4000]["target"], "t3999");
        assert_eq!(f[4000]["events"].as_array().unwrap().len(), 2);
        assert_eq!(r.stdout.lines().count() == 1, args.contains(&"-c"));
        docs.push(v);
    }
    assert!(docs[0] == docs[1], "pretty and compact hold the same value");
    let text = env.run("state-manager", &["audit", "races"]).ok().stdout;
    let heads: Vec<&str> = text.lines().filter(|l| l.starts_with("2024-")).collect();
    assert_eq!(heads.len(), 4001);
    assert!(heads[0].contains("  lock-wait  late: "), "{}", heads[0]);
    assert!(
        heads[1].contains("  overlap  t0: 2 operations (set)"),
        "{}",
        heads[1]
    );
    assert!(
        text.ends_with("4001 findings: 1 lock-wait, 4000 overlap\n"),
        "{}",
        &text[text.len() - 200..]
    );
}

// See: issue 16 (history parses whole only the lines that may name its
// target; every other line is still checked, so the malformed count and
// the steps are those of a full parse).
#[test]
fn history_counts_every_malformed_line_and_finds_every_step_over_the_family() {
    let env = Env::new();
    let mut steps_seen = 0;
    for seed in 1..=25u64 {
        let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let mut events = write_family(&env, &mut rng);
        // The target spelled with an escape: still its event.
        let mut escaped = event(json!({"op": "set", "target": "deploy", "pid": 99_999}));
        escaped["ts"] = json!(ts_ago(Duration::from_secs(30)));
        let text = escaped
            .to_string()
            .replace("\"deploy\"", "\"d\\u0065ploy\"");
        // (After a newline: the family's last line may lack its own.)
        append(&env.audit_log(), &[format!("\n{text}")]);
        events.push(escaped);
        let malformed = env
            .run("state-manager", &["audit", "stats", "--json"])
            .ok()
            .json()["malformed"]
            .as_u64()
            .expect("stats counts malformed lines");
        for target in TARGETS {
            let h = env
                .run("state-manager", &["audit", "history", target, "--json"])
                .ok()
                .json();
            assert_eq!(h["malformed"], malformed, "seed {seed}, {target}: {h}");
            let want = events
                .iter()
                .filter(|e| e["target"] == *target && e["op"] != "audit-recent")
                .count();
            assert_eq!(h["step_count"], want, "seed {seed}, {target}: {h}");
            steps_seen += want;
        }
    }
    assert!(steps_seen > 100, "the family has steps: {steps_seen}");
}

/// One event of an awkward log (escaped and unicode targets, huge and
/// exponent numbers, nested details), `i` its place, ~2 ms apart with
/// overlapping durations so that `races` finds things.
fn awkward_event(rng: &mut Rng, i: u64) -> Value {
    let ms = i * 2 + rng.below(3);
    let (tool, op) = [
        ("lock-manager", "acquire"),
        ("lock-manager", "release"),
        ("lock-manager", "takeover"),
        ("state-manager", "set"),
        ("state-manager", "write"),
        ("state-manager", "read"),
        ("state-manager", "init"),
        ("lock-manager", "clean"),
        ("error-recovery", "checkpoint"),
    ][rng.below(9) as usize];
    let owner = 100 + rng.below(3);
    let detail = match rng.below(7) {
        0 => json!({"lock_type": "shared", "wait_ms": ([0.5, 612.25, 1e-7][rng.below(3) as usize]),
                    "owner_pid": owner, "holders_while_waiting": [7, 8]}),
        1 => json!({"owner_pid": owner, "forced": rng.below(2) == 0}),
        2 => json!({"stale_pid": 9, "reason": "caf\u{e9} \"gone\"", "owner_pid": owner}),
        3 => json!({"conflict": "revision", "expected": -3, "actual": 7, "error": "tab\there ✓"}),
        4 => json!({"revision": 18446744073709551615u64, "lock_wait_ms": 700.125}),
        5 => json!({"removed": ["deploy", "a\"b"], "nested": {"a": [1, {"b": null}]}}),
        _ => json!({}),
    };
    let mut ev = event(json!({
        "ts": format!("2024-05-01T10:00:{:02}.{:03}{:03}Z", ms / 1000 % 60, ms % 1000, rng.below(1000)),
        "tool": tool, "op": op,
        "target": TARGETS_AWKWARD[rng.below(TARGETS_AWKWARD.len() as u64) as usize],
        "pid": 4000 + rng.below(50), "ppid": owner,
        "duration_ms": ([1.5, 0.412, 3.731, 1e-7, 4.0][rng.below(5) as usize]),
        "exit_code": ([0, 0, 0, 2, 4][rng.below(5) as usize]), "detail": detail,
    }));
    if rng.below(2) == 0 {
        ev["run_id"] = json!("r\u{e9}");
    }
    ev
}

const TARGETS_AWKWARD: &[&str] = &[
    "deploy",
    "/srv/p/.workflow-state.json",
    "caf\u{e9} ✓",
    "a\"b",
];

/// The same event with its fields in reverse order.
fn reversed(ev: &Value) -> String {
    let mut fields: Vec<(String, Value)> = ev.as_object().unwrap().clone().into_iter().collect();
    fields.reverse();
    Value::Object(fields.into_iter().collect()).to_string()
}

// See: issue 16. The toolkit's own lines are read by a fast reader, any
// other shape by serde_json: the reviews must not tell them apart.
#[test]
fn history_and_races_read_the_toolkits_lines_as_any_field_order() {
    let (ours, other) = (Env::new(), Env::new());
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut i = 0;
    for n in [2, 1, 0] {
        let name = match n {
            0 => ".workflow-audit.jsonl".to_string(),
            n => format!(".workflow-audit.jsonl.{n}"),
        };
        let (mut a, mut b) = (String::new(), String::new());
        for _ in 0..400 {
            let ev = awkward_event(&mut rng, i);
            i += 1;
            let (x, y) = match rng.below(30) {
                0 => ("not json".to_string(), "not json".to_string()),
                1 => (String::new(), String::new()),
                2 => (format!("{ev}\r"), format!("{}\r", reversed(&ev))),
                _ => (ev.to_string(), reversed(&ev)),
            };
            a.push_str(&x);
            a.push('\n');
            b.push_str(&y);
            b.push('\n');
        }
        fs::write(ours.path(&name), a).unwrap();
        fs::write(other.path(&name), b).unwrap();
    }
    for args in [
        &["audit", "history", "deploy"][..],
        &["audit", "history", "deploy", "--all"],
        &["audit", "history", "/srv/p/.workflow-state.json"],
        &["audit", "history", "a\"b"],
        &["audit", "races"],
        &["audit", "races", "--window", "100"],
    ] {
        let a = ours.run("state-manager", args).ok();
        let b = other.run("state-manager", args).ok();
        assert_eq!(a.stdout, b.stdout, "{args:?}");
        assert!(a.stdout.lines().count() > 20, "{args:?}: {}", a.stdout);
        // JSON: the same values (the events' fields in their own order).
        let mut json = args.to_vec();
        json.push("--json");
        let (mut a, mut b) = (
            ours.run("state-manager", &json).ok().json(),
            other.run("state-manager", &json).ok().json(),
        );
        // The files read are named by their own folder.
        for v in [&mut a, &mut b] {
            if let Some(m) = v.as_object_mut() {
                m.remove("files");
            }
        }
        assert!(a == b, "{json:?}:\n{a}\n---- other field order ----\n{b}");
    }
}
