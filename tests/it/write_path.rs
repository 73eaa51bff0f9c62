//! The durable write path and large documents (issue 16): `read PATH`
//! builds only the value asked for yet answers (and fails) as a whole parse
//! does; a commit's checksum, computed in the pass that serializes the
//! document, is the documented one (compact, keys in order, without
//! itself), so states and backups written before and after verify alike.

use std::fs;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::harness::Env;

/// A state whose every oddity `read PATH` must see through: a repeated key
/// (the last one counts), escaped keys and strings, nested arrays, numbers.
const ODD: &str = r#"{"schemaVersion": "1.0", "phase": "first", "completedTasks": ["a", "b", "c"],
  "signals": {"S": 1.5}, "metadata": {"created": "2026-01-01T00:00:00Z", "lastModified": "2026-01-01T00:00:00Z"},
  "ctx": {"k\"q": [10, {"c": "x\u00e9\n"}, [1, 2]], "big": 12345678901234567890, "e": {}, "l": []},
  "phase": "last", "dup": {"x": 1}, "dup": [true, null]}"#;

#[test]
fn read_path_answers_what_a_whole_parse_answers() {
    let env = Env::new();
    fs::write(env.state_file(), ODD).unwrap();
    let cases = [
        (".phase", r#""last""#),
        (".completedTasks[0]", r#""a""#),
        (".completedTasks[-1]", r#""c""#),
        (".completedTasks[-3]", r#""a""#),
        (".completedTasks[-4]", "null"),
        (".completedTasks[3]", "null"),
        (".signals.S", "1.5"),
        (".ctx[\"k\\\"q\"][1].c", r#""xé\n""#),
        (".ctx[\"k\\\"q\"][-1][1]", "2"),
        (".ctx[\"k\\\"q\"][-1]", "[1,2]"),
        (".ctx.big", "12345678901234567890"),
        (".ctx.e", "{}"),
        (".ctx.l[0]", "null"),
        (".dup", "[true,null]"),
        (".dup.x", "null"),
        (".dup[0]", "true"),
        (".phase.x", "null"),
        (".nope.deeper", "null"),
        (".completedTasks.a", "null"),
    ];
    for (path, want) in cases {
        let got = env.run("state-manager", &["read", path, "-c"]).ok().stdout;
        assert_eq!(got.trim_end(), want, "read {path}");
    }
    // -e and --raw keep their meaning.
    env.run("state-manager", &["read", ".dup[1]", "-e"]).code(1);
    env.run("state-manager", &["read", ".nope", "-e"]).code(1);
    let raw = env.run("state-manager", &["read", ".phase", "--raw"]).ok();
    assert_eq!(raw.stdout, "last\n");
}

#[test]
fn read_path_refuses_what_a_whole_parse_refuses_anywhere_in_the_file() {
    let env = Env::new();
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let bad = [
        format!(r#"{{"phase": "p", "x": {deep}}}"#),
        r#"{"phase": "p", "x": [1, 2e999]}"#.to_string(),
        r#"{"phase": "p", "x": "\q"}"#.to_string(),
        r#"{"phase": "p", "x": [1,]}"#.to_string(),
        r#"{"phase": "p"} trailing"#.to_string(),
        r#"{"phase": "p", "x": "#.to_string(),
    ];
    for text in bad {
        assert!(serde_json::from_str::<Value>(&text).is_err());
        fs::write(env.state_file(), &text).unwrap();
        env.run("state-manager", &["read", ".phase"])
            .code(3)
            .stderr_has("does not parse")
            .one_line_error("state-manager");
    }
}

/// The checksum docs/operations.md documents: SHA-256 of the document
/// serialized compactly, keys in their stored order, without itself.
fn documented_checksum(doc: &Value) -> String {
    let mut unsealed = doc.clone();
    unsealed["metadata"]
        .as_object_mut()
        .unwrap()
        .shift_remove("checksum");
    let hex: String = Sha256::digest(serde_json::to_vec(&unsealed).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

#[test]
fn commits_of_large_and_odd_documents_carry_the_documented_checksum() {
    let env = Env::new();
    env.init();
    // Large, with escapes, non-ASCII, numbers of every kind and a user key
    // named like the toolkit's own, before and after `metadata`.
    let tasks: Vec<String> = (0..50_000)
        .map(|i| format!("task-{i:06}\t\"é€😀\\"))
        .collect();
    let mut doc = env.state();
    doc["completedTasks"] = serde_json::json!(tasks);
    doc["aa"] = serde_json::json!({"metadata": {"checksum": "not ours"}, "n": [1, -2, 2.5, 1e300, u64::MAX]});
    doc["zz"] = serde_json::json!({"metadata": {}, "ctl": "\u{1}\u{1f}"});
    // Too large for an argument: the document goes on standard input.
    env.run_stdin("state-manager", &["write", "-"], &doc.to_string())
        .ok();
    for args in [
        &["set", ".phase", "--string", "p1"][..],
        &["append", ".completedTasks", "\"last\""],
        &["signal", "DONE"],
        &["del", ".zz.ctl"],
    ] {
        env.sm(args);
        let bytes = env.bytes(".workflow-state.json");
        let doc: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            doc["metadata"]["checksum"].as_str().unwrap(),
            documented_checksum(&doc),
            "after {args:?}"
        );
        // What the file holds is the document, pretty, as serde_json writes it.
        let mut pretty = serde_json::to_vec_pretty(&doc).unwrap();
        pretty.push(b'\n');
        assert!(
            pretty == bytes,
            "after {args:?}: the file is not the canonical pretty form"
        );
    }
    assert_eq!(env.state()["phase"], "p1");
    assert_eq!(env.state()["completedTasks"][50_000], "last");
    // The live state and every backup (each a former state) verify.
    let out = env.run("state-manager", &["verify-integrity"]).ok().stdout;
    assert!(
        !out.contains("CORRUPT") && out.contains("verified"),
        "{out}"
    );
}
