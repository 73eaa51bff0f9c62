//! error-recovery's output conventions (issue 12): `--json`, `-c`,
//! `--jsonl` on the data commands, snake_case keys, real output validated
//! against schemas/output/, failures under `--json` as a JSON object on
//! stdout, `is-degraded` answering by exit code, and one 128+N for a child
//! killed by a signal in both `retry` and `lock-manager run`.

use std::fs;

use serde_json::{Value, json};

use crate::harness::{Env, assert_schema, er, json_lines, keys};

const ER: &str = "error-recovery";
const LM: &str = "lock-manager";

/// Asserts that every key is snake_case, but inside `metadata` (the caller's
/// own METADATA_JSON, stored as given).
#[track_caller]
fn assert_snake_case(v: &Value) {
    for (_, k, _) in keys(v, &["metadata"]) {
        assert!(
            k.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "key {k:?} is not snake_case in {v:#}"
        );
    }
}

/// A root with a state, a signal, a config file and two checkpoints.
fn with_checkpoints() -> (Env, String, String) {
    let env = Env::new();
    env.init();
    env.sm(&["signal", "A"]);
    fs::create_dir(env.path("config")).unwrap();
    fs::write(env.path("config/c.json"), "{}").unwrap();
    let a = er(
        &env,
        &["checkpoint", "first", "build", r#"{"camelCase": 1}"#],
    )
    .ok()
    .stdout
    .trim()
    .to_string();
    let b = er(&env, &["checkpoint", "second"])
        .ok()
        .stdout
        .trim()
        .to_string();
    (env, a, b)
}

#[test]
fn checkpoint_json_names_what_was_made_and_satisfies_its_schema() {
    let env = Env::new();
    env.init();
    let made = er(&env, &["checkpoint", "deploy", "ship", "--json"]).ok();
    let v = made.json();
    assert!(made.stdout.contains("\n  \""), "pretty by default");
    assert_schema("error-recovery-checkpoint.schema.json", &v);
    assert_snake_case(&v);
    assert_eq!(v["operation"], "deploy");
    assert_eq!(v["phase"], "ship");
    let id = v["id"].as_str().unwrap();
    assert!(
        env.path(&format!(".checkpoints/{id}/metadata.json"))
            .is_file()
    );
    assert_eq!(
        v["path"],
        env.path(&format!(".checkpoints/{id}"))
            .display()
            .to_string()
    );
    // -c: the same object on one line.
    let c = er(&env, &["checkpoint", "again", "-c", "--json"]).ok();
    assert_eq!(c.stdout.lines().count(), 1, "{}", c.stdout);
    assert_schema("error-recovery-checkpoint.schema.json", &c.json());
}

#[test]
fn list_json_is_an_array_valid_by_its_schema_in_every_spelling() {
    let (env, a, b) = with_checkpoints();
    let legacy = er(&env, &["list", "json"]).ok();
    let flag = er(&env, &["list", "--json"]).ok();
    assert_eq!(legacy.stdout, flag.stdout, "list json is --json");
    let v = flag.json();
    assert_schema("error-recovery-list.schema.json", &v);
    assert_snake_case(&v);
    let ids: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![b.as_str(), a.as_str()], "newest first");
    assert_eq!(
        v[1]["metadata"],
        json!({"camelCase": 1}),
        "user data kept as given"
    );
    assert_eq!(v[0]["valid"], true);

    let compact = er(&env, &["list", "--json", "-c"]).ok();
    assert_eq!(compact.stdout.lines().count(), 1);
    assert_eq!(compact.json(), v);

    let lines = er(&env, &["list", "--jsonl"]).ok();
    let items = json_lines(&lines.stdout);
    assert_eq!(Value::Array(items), v, "--jsonl: one item per line");

    // The table is still the default, and a bad FORMAT still exit 4.
    er(&env, &["list"]).ok().stdout_has("VALID").stdout_has(&a);
    er(&env, &["list", "yaml"]).code(4);
    er(&env, &["list", "--json", "--jsonl"]).code(1);
}

#[test]
fn an_empty_list_is_an_empty_array() {
    let env = Env::new();
    env.init();
    let v = er(&env, &["list", "--json"]).ok().json();
    assert_eq!(v, json!([]));
    assert_schema("error-recovery-list.schema.json", &v);
    assert_eq!(er(&env, &["list", "--jsonl"]).ok().stdout, "");
}

#[test]
fn status_json_is_snake_case_with_degraded_mode_an_object() {
    let (env, _, b) = with_checkpoints();
    let off = er(&env, &["status", "--json"]).ok().json();
    assert_schema("error-recovery-status.schema.json", &off);
    assert_snake_case(&off);
    assert_eq!(
        off["degraded_mode"],
        json!({"enabled": false, "reason": null, "since": null, "features": []})
    );
    assert_eq!(off["checkpoints"]["count"], 2);
    assert_eq!(off["checkpoints"]["latest"]["id"], b.as_str());

    er(&env, &["degrade", "db down", r#"["sync", "mail"]"#]).ok();
    er(&env, &["restore", "nope"]).code(1);
    let on = er(&env, &["status", "--json", "-c"]).ok();
    assert_eq!(on.stdout.lines().count(), 1);
    let on = on.json();
    assert_schema("error-recovery-status.schema.json", &on);
    assert_snake_case(&on);
    let dm = &on["degraded_mode"];
    assert_eq!(dm["enabled"], true);
    assert_eq!(dm["reason"], "db down");
    assert_eq!(dm["features"], json!(["sync", "mail"]));
    assert!(dm["since"].as_str().unwrap().ends_with('Z'));
    assert_eq!(on["failure_count"], 1);
    assert_eq!(on["recent_failures"][0]["op"], "restore");

    // Without a state: still a report, valid by the schema.
    let none = Env::new();
    let v = er(&none, &["status", "--json"]).ok().json();
    assert_eq!(v["state"]["condition"], "missing");
    assert_schema("error-recovery-status.schema.json", &v);
}

#[test]
fn mutations_print_a_small_object_under_json() {
    let (env, _, b) = with_checkpoints();
    let d = er(&env, &["degrade", "slow", r#"["x"]"#, "--json"])
        .ok()
        .json();
    assert_eq!(d["enabled"], true);
    assert_eq!(d["changed"], true);
    assert_eq!(d["features"], json!(["x"]));
    assert_snake_case(&d);
    let r = er(&env, &["recover-mode", "--json"]).ok().json();
    assert_eq!(
        (r["enabled"].clone(), r["changed"].clone()),
        (json!(false), json!(true))
    );
    let again = er(&env, &["recover-mode", "--json"]).ok().json();
    assert_eq!(again["changed"], false);

    let restored = er(&env, &["restore", &b, "--json"]).ok().json();
    assert_snake_case(&restored);
    assert_eq!(restored["id"], b.as_str());
    assert!(restored["revision"].as_u64().unwrap() > 1);
    assert!(restored["backup"].is_string());

    let dry = er(
        &env,
        &["cleanup", "0", "--keep", "1", "--dry-run", "--json"],
    )
    .ok()
    .json();
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["removed"].as_array().unwrap().len(), 1);
    assert!(dry["temps"].is_array());
    assert_eq!(dry["kept_count"], 1);
    assert_snake_case(&dry);

    let s = er(&env, &["suggest", "3", "--json"]).ok().json();
    assert_eq!(
        (s["code"].clone(), s["name"].clone()),
        (json!(3), json!("STATE_CORRUPTION"))
    );
    assert!(!s["steps"].as_array().unwrap().is_empty());
    let h = er(&env, &["handle", "4", "--json"]).code(4).json();
    assert_eq!(h["recovered"], false);
    assert_eq!(h["suggestion"]["code"], 4);
    let h = er(&env, &["handle", "7", "--apply", "--json"])
        .code(7)
        .json();
    assert_eq!(h["applied"], true);
    assert!(
        h["messages"][0]
            .as_str()
            .unwrap()
            .contains("nothing to free")
    );
}

#[test]
fn a_failure_under_json_is_an_error_object_on_stdout() {
    let env = Env::new();
    env.init();
    let r = er(&env, &["restore", "no-such-checkpoint", "--json"])
        .code(1)
        .one_line_error(ER);
    let v = r.json();
    assert_eq!(v["error"]["code"], 1);
    assert_eq!(v["error"]["name"], "GENERAL_ERROR");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no-such-checkpoint")
    );
    assert_eq!(v.as_object().unwrap().len(), 1);
    // A bad request before anything runs: exit 4, and the same object.
    let bad = er(&env, &["checkpoint", ".hidden", "--json"])
        .code(4)
        .json();
    assert_eq!(bad["error"]["name"], "VALIDATION_FAILED");
    // Without --json, stdout stays empty.
    assert_eq!(
        er(&env, &["restore", "no-such-checkpoint"]).code(1).stdout,
        ""
    );
}

#[test]
fn is_degraded_answers_by_its_exit_code_and_prints_nothing() {
    let env = Env::new();
    // No state: not degraded.
    let r = er(&env, &["is-degraded"]).code(1);
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("", ""));
    env.init();
    assert_eq!(er(&env, &["is-degraded"]).code(1).stdout, "");
    er(&env, &["degrade", "x"]).ok();
    let r = er(&env, &["is-degraded"]).ok();
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("", ""));
    // The answer is not a failure in the audit log.
    let ev: Vec<Value> = env
        .audit_events()
        .into_iter()
        .filter(|e| e["op"] == "is-degraded")
        .collect();
    // The first call, with no state, created no audit log (a read creates
    // none, issue 15): two events.
    assert_eq!(ev.len(), 2);
    assert!(
        ev.iter()
            .all(|e| e["outcome"] == "ok" && e["exit_code"] == 0)
    );
    assert_eq!(ev[1]["detail"]["degraded"], true);
    assert_eq!(ev[1]["detail"]["answer_exit"], 0);
    assert_eq!(ev[0]["detail"]["answer_exit"], 1);
    // A corrupt state is exit 3, not an answer.
    fs::write(env.state_file(), "{not json").unwrap();
    er(&env, &["is-degraded"]).code(3);
}

#[test]
fn retry_and_run_both_exit_128_plus_n_for_a_child_killed_by_signal_n() {
    let env = Env::new();
    let term = ["sh", "-c", "kill -TERM $$"];
    let mut retry = vec!["retry", "--attempts", "2", "--delay", "0", "--"];
    retry.extend(term);
    er(&env, &retry).code(128 + 15);
    let attempts: Vec<Value> = env
        .audit_events()
        .into_iter()
        .filter(|e| e["op"] == "retry" && e["detail"]["attempt"].is_number())
        .collect();
    assert_eq!(attempts.len(), 2, "143 is retried");
    assert!(attempts.iter().all(|e| e["detail"]["child_exit"] == 143));

    let mut run = vec!["run", "job", "--"];
    run.extend(term);
    env.run(LM, &run).code(128 + 15);
    env.run(LM, &["run", "job", "--", "sh", "-c", "kill -INT $$"])
        .code(128 + 2);
}

#[test]
fn debug_names_checkpoint_paths_restore_steps_and_retry_attempts() {
    let (env, _, b) = with_checkpoints();
    er(&env, &["--debug", "checkpoint", "third"])
        .ok()
        .stderr_has("debug")
        .stderr_has(".checkpoints/");
    er(&env, &["restore", &b, "--debug"])
        .ok()
        .stderr_has("restore: verifying")
        .stderr_has("committed revision");
    er(
        &env,
        &[
            "--debug",
            "retry",
            "--attempts",
            "2",
            "--delay",
            "0",
            "--",
            "sh",
            "-c",
            "exit 3",
        ],
    )
    .code(3)
    .stderr_has("attempt 1 exited 3")
    .stderr_has("attempt 2 exited 3");
    // Off by default.
    let quiet = er(&env, &["checkpoint", "fourth"]).ok();
    assert!(!quiet.stderr.contains("debug"), "{}", quiet.stderr);
}
