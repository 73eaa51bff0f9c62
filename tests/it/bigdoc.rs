//! `set` on a large state (issue 16): a state of 64 KiB or more in the
//! toolkit's own form is written without building its untouched members
//! (src/state/splice.rs), and that changes nothing anyone can see: the same
//! bytes, the same checksum, the same refusals with the same words and exit
//! codes, the same crash safety. `--debug` says which path a `set` took.

use std::fs;

use serde_json::{Value, json};

use crate::harness::{Env, Run};
use crate::reliability::{Rng, assert_recovered, kill_at_random, run_time_us};

const MEMBER_PATH: &str = "set: member path";
const WHOLE_PATH: &str = "set: whole-tree path";

/// A large document with every oddity the scan must copy exactly: escapes,
/// non-ASCII, numbers of every kind, nested and empty containers, user
/// members before and after `metadata`.
fn big_doc(env: &Env, tasks: usize) -> Value {
    let mut doc = env.state();
    let tasks: Vec<String> = (0..tasks)
        .map(|i| format!("task-{i:06}\t\"é€😀\\\u{1}"))
        .collect();
    doc["completedTasks"] = json!(tasks);
    doc["aa"] =
        json!({"n": [1, -2, 2.5, 1e300, u64::MAX, i64::MIN, 0.1], "e": {}, "l": [], "s/": "a/b"});
    doc["zz"] = json!({"deep": [[[{"x": null, "y": true}]]], "ctl": "\u{0}\u{1f}\u{7f}"});
    doc
}

/// `doc` pretty, as the toolkit writes it.
fn pretty(doc: &Value) -> Vec<u8> {
    let mut b = serde_json::to_vec_pretty(doc).unwrap();
    b.push(b'\n');
    b
}

/// Two states holding `doc`: `fast` in the toolkit's form, `slow` on one
/// line (the same document, which a `set` must take the whole-tree path for).
fn twins(doc: &Value) -> (Env, Env) {
    let (fast, slow) = (Env::new(), Env::new());
    fs::write(fast.state_file(), pretty(doc)).unwrap();
    fs::write(slow.state_file(), serde_json::to_vec(doc).unwrap()).unwrap();
    (fast, slow)
}

/// A made state of `tasks` tasks, made the toolkit's own by one `set`.
fn made_state(tasks: usize) -> Value {
    let env = Env::new();
    env.init();
    let doc = big_doc(&env, tasks);
    env.run_stdin("state-manager", &["write", "-"], &doc.to_string())
        .ok();
    env.sm(&["set", ".phase", "--string", "made"]);
    env.state()
}

fn debug_set(env: &Env, args: &[&str]) -> Run {
    let mut all = vec!["--debug", "set"];
    all.extend_from_slice(args);
    env.run("state-manager", &all)
}

#[test]
fn member_path_writes_the_bytes_of_the_whole_tree_path() {
    let doc = made_state(5000);
    assert!(pretty(&doc).len() > 64 * 1024);
    let cases: [&[&str]; 6] = [
        &[".phase", "--string", "p1"],
        &[".aa.n[1]", "7"],
        &[".zz.new", r#"{"k": ["\u00e9", 1.5e10]}"#],
        &[".newMember", "[1, {}]"],
        &[".completedTasks[3]", "--string", "changed"],
        &[".signals.DONE", "12.5"],
    ];
    for args in cases {
        // Both within one second, so `lastModified` (and the checksum) agree.
        for attempt in 0.. {
            let (fast, slow) = twins(&doc);
            let f = debug_set(&fast, args).ok();
            let s = debug_set(&slow, args).ok();
            assert!(f.stderr.contains(MEMBER_PATH), "{args:?}: {}", f.stderr);
            assert!(s.stderr.contains(WHOLE_PATH), "{args:?}: {}", s.stderr);
            let (fb, sb) = (
                fast.bytes(".workflow-state.json"),
                slow.bytes(".workflow-state.json"),
            );
            let time = |e: &Env| e.state()["metadata"]["lastModified"].clone();
            if time(&fast) != time(&slow) && attempt < 5 {
                continue;
            }
            assert!(fb == sb, "{args:?}: the member path wrote other bytes");
            // One audit event, as ever.
            let events = fast.audit_events();
            assert_eq!(events.len(), 1);
            assert_eq!(events[0]["op"], "set");
            let out = fast.run("state-manager", &["verify-integrity"]).ok().stdout;
            assert!(
                out.contains("verified") && !out.contains("CORRUPT"),
                "{out}"
            );
            // The old version is the backup, as stored.
            let backups = fast.list(".state-backups");
            assert_eq!(backups.len(), 1, "{backups:?}");
            let backup = fast.bytes(&format!(".state-backups/{}", backups[0]));
            assert!(backup == pretty(&doc));
            break;
        }
    }
}

#[test]
fn only_large_states_take_the_member_path() {
    let env = Env::new();
    env.init();
    let run = debug_set(&env, &[".phase", "--string", "x"]).ok();
    assert!(run.stderr.contains("smaller than 64 KiB"), "{}", run.stderr);
    let doc = made_state(5000);
    let (fast, _) = twins(&doc);
    // A path into the document itself (not a member) takes the whole-tree path.
    let run = debug_set(&fast, &[".[0]", "1"]);
    assert!(!run.stderr.contains(MEMBER_PATH), "{}", run.stderr);
}

/// Exit code, stdout and stderr of a run, with the state's folder left out.
fn outcome(env: &Env, run: &Run) -> (i32, String, String) {
    let root = env.root().display().to_string();
    let clean = |s: &str| {
        s.lines()
            .filter(|l| !l.contains(": debug: "))
            .collect::<Vec<_>>()
            .join("\n")
            .replace(&root, "ROOT")
    };
    (run.code, clean(&run.stdout), clean(&run.stderr))
}

#[test]
fn refusals_are_the_whole_tree_paths_and_change_nothing() {
    let doc = made_state(5000);
    let mut deep = json!(1);
    for _ in 0..100 {
        deep = json!([deep]);
    }
    let deep = deep.to_string();
    let cases: [&[&str]; 7] = [
        &[".phase", "5"],                     // the schema
        &[".phase", "--string", ""],          // the schema (minLength)
        &[".phase.x", "1"],                   // a step into a string
        &[".completedTasks[2]", "5"],         // the schema, inside the big member
        &[".signals[\".bad\"]", "1"],         // a property name
        &[".context", &deep],                 // too deep
        &[".completedTasks[99999]", "\"x\""], // past the end
    ];
    for args in cases {
        let (fast, slow) = twins(&doc);
        let before = fast.bytes(".workflow-state.json");
        let f = debug_set(&fast, args);
        let s = debug_set(&slow, args);
        assert_ne!(f.code, 0, "{args:?}");
        assert_eq!(outcome(&fast, &f), outcome(&slow, &s), "{args:?}");
        assert!(fast.bytes(".workflow-state.json") == before, "{args:?}");
        assert!(fast.list(".state-backups").is_empty());
        // A valid value on the same state takes the member path.
        let run = debug_set(&fast, &[".phase", "--string", "fine"]).ok();
        assert!(run.stderr.contains(MEMBER_PATH), "{}", run.stderr);
    }
}

#[test]
fn invalid_large_documents_are_refused_alike() {
    let doc = made_state(5000);
    let mut bad = doc.clone();
    bad["completedTasks"][4000] = json!(17);
    let mut big_signals = doc.clone();
    big_signals["signals"] = json!(
        (0..5000)
            .map(|i| (format!("S{i}"), json!(i)))
            .collect::<serde_json::Map<_, _>>()
    );
    let mut bad_signals = big_signals.clone();
    bad_signals["signals"]["S4000"] = json!(-1);
    for (d, ok) in [(&bad, false), (&big_signals, true), (&bad_signals, false)] {
        let (fast, slow) = twins(d);
        let before = fast.bytes(".workflow-state.json");
        let f = debug_set(&fast, &[".phase", "--string", "x"]);
        let s = debug_set(&slow, &[".phase", "--string", "x"]);
        assert_eq!(outcome(&fast, &f), outcome(&slow, &s));
        assert_eq!(f.code == 0, ok, "{}", f.stderr);
        // A large signals member is parsed and checked, not copied blind.
        assert_eq!(f.stderr.contains(MEMBER_PATH), ok, "{}", f.stderr);
        if !ok {
            assert_eq!(f.code, 4);
            assert!(fast.bytes(".workflow-state.json") == before);
        }
    }
}

#[test]
fn hand_edited_large_files_take_the_whole_tree_path_and_still_work() {
    let doc = made_state(5000);
    let text = String::from_utf8(pretty(&doc)).unwrap();
    let mut four = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    serde::Serialize::serialize(
        &doc,
        &mut serde_json::Serializer::with_formatter(&mut four, fmt),
    )
    .unwrap();
    let edits = [
        String::from_utf8(four).unwrap(),
        text.replace("\n  \"", "\n\t\""),
        text.replacen(
            "\"phase\": \"made\",",
            "\"phase\": \"dup\",\n  \"phase\": \"made\",",
            1,
        ),
        text.replace("é", "\\u00e9"),
        text.replace("a/b", "a\\/b"),
        text.replacen("2.5", "25e-1", 1),
        text.trim_end().to_string(),
    ];
    for edited in edits {
        let env = Env::new();
        fs::write(env.state_file(), &edited).unwrap();
        let run = debug_set(&env, &[".lastActivation", "--string", "now"]).ok();
        assert!(run.stderr.contains(WHOLE_PATH), "{}", run.stderr);
        let after = env.state();
        let mut want = doc.clone();
        want["lastActivation"] = json!("now");
        want["metadata"] = json!(null);
        let mut got = after.clone();
        got["metadata"] = json!(null);
        assert_eq!(got, want);
        // Now in the toolkit's form again: the next set takes the member path.
        assert!(env.bytes(".workflow-state.json") == pretty(&after));
        let run = debug_set(&env, &[".phase", "--string", "again"]).ok();
        assert!(run.stderr.contains(MEMBER_PATH), "{}", run.stderr);
        let out = env.run("state-manager", &["verify-integrity"]).ok().stdout;
        assert!(out.contains("verified"), "{out}");
    }
}

#[test]
fn a_sigkilled_large_set_never_leaves_a_broken_state() {
    let doc = made_state(20_000);
    let (env, _) = twins(&doc);
    // The sets killed here take the member path.
    let run = debug_set(&env, &[".phase", "--string", "first"]).ok();
    assert!(run.stderr.contains(MEMBER_PATH), "{}", run.stderr);
    let mut rng = Rng::new();
    let window = run_time_us(&env, "state-manager", &["set", ".phase", "--string", "w"]);
    for i in 0..20 {
        let value = format!("v{i}");
        kill_at_random(
            &env,
            &mut rng,
            "state-manager",
            &["set", ".phase", "--string", &value],
            window,
        );
        assert_recovered(&env, &format!("after-{i}"));
        let state = env.state();
        assert_eq!(state["completedTasks"], doc["completedTasks"]);
        assert_eq!(state["zz"], doc["zz"]);
    }
    let out = env.run("state-manager", &["verify-integrity"]).ok().stdout;
    assert!(out.contains("verified"), "{out}");
}
