//! The output conventions of `state-manager` (but `audit` and `hook`):
//! every data command takes `--json` and prints exactly one JSON value
//! (`-c` on one line), keys are snake_case, the reports match their schemas
//! in schemas/output/, mutations print what they committed, and a failure
//! under `--json` is a JSON error object on stdout.

use std::fs;

use serde_json::{Value, json};

use crate::harness::{Env, Run, assert_schema, camel_case_keys, on_a_tty};

const SM: &str = "state-manager";

/// An initialized state with a few revisions and backups, and an export
/// beside it to import.
fn populated() -> Env {
    let env = Env::new();
    env.init();
    env.sm(&["set", ".phase", r#""impl""#]);
    env.sm(&["append", ".completedTasks", r#""t1""#]);
    env.sm(&["export", "--output", "exported.json"]);
    env
}

fn newest_backup(env: &Env) -> String {
    let list = env.run(SM, &["list-backups", "--json"]).ok().json();
    list[0]["name"].as_str().expect("a backup").to_string()
}

/// Every data command of `state-manager` but `read`, with its arguments.
fn data_commands(env: &Env) -> Vec<Vec<String>> {
    let backup = newest_backup(env);
    let mut doc = env.state();
    doc["phase"] = json!("w");
    let doc = doc.to_string();
    let cmds: Vec<Vec<&str>> = vec![
        vec!["status"],
        vec!["validate"],
        vec!["list-backups"],
        vec!["verify-integrity"],
        vec!["validate-backup", &backup],
        vec!["repair", "--dry-run"],
        vec!["repair"],
        vec!["export", "--output", "again.json"],
        vec!["import", "--file", "exported.json", "--force"],
        vec!["cleanup", "--dry-run"],
        vec!["cleanup", "--temp"],
        vec!["health"],
        vec!["diagnostics"],
        vec!["diagnostics", "--verbose"],
        vec!["benchmark", "--operations", "2"],
        // Mutations
        vec!["init"],
        vec!["write", &doc, "--force"],
        vec!["set", ".phase", r#""x""#],
        vec!["merge", r#"{"context":{"a":1}}"#],
        vec!["append", ".completedTasks", r#""t2""#],
        vec!["signal", "PHASE1_START"],
        vec!["backup", "why"],
        vec!["recover"],
        vec!["migrate"],
    ];
    cmds.into_iter()
        .map(|c| c.into_iter().map(String::from).collect())
        .collect()
}

fn run(env: &Env, args: &[String], extra: &[&str]) -> Run {
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    all.extend_from_slice(extra);
    env.run(SM, &all)
}

/// The whole of stdout as one JSON value (fails on none, or on more than one).
#[track_caller]
fn one_value(r: &Run, what: &str) -> Value {
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: stdout is not exactly one JSON value ({e}):\n{}\nstderr: {}",
            r.stdout, r.stderr
        )
    })
}

#[test]
fn every_data_command_prints_exactly_one_json_value_with_snake_case_keys() {
    let env = populated();
    for cmd in data_commands(&env) {
        let what = cmd.join(" ");
        let r = run(&env, &cmd, &["--json"]);
        assert_eq!(
            r.code, 0,
            "{what}: exit code\nstdout: {}\nstderr: {}",
            r.stdout, r.stderr
        );
        let v = one_value(&r, &what);
        assert!(v.is_object() || v.is_array(), "{what}: {v}");
        let bad = camel_case_keys(&v);
        assert!(bad.is_empty(), "{what}: camelCase keys {bad:?} in {v:#}");
    }
}

#[test]
fn compact_prints_the_same_value_on_one_line() {
    let env = populated();
    for cmd in data_commands(&env) {
        let what = cmd.join(" ");
        let r = run(&env, &cmd, &["--json", "-c"]);
        assert_eq!(
            r.code, 0,
            "{what}: exit code\nstdout: {}\nstderr: {}",
            r.stdout, r.stderr
        );
        assert_eq!(
            r.stdout.lines().count(),
            1,
            "{what}: not one line:\n{}",
            r.stdout
        );
        one_value(&r, &what);
    }
}

#[test]
fn mutations_under_json_print_what_they_committed_and_nothing_in_text() {
    let env = Env::new();
    let init = env.run(SM, &["init", "--json"]).ok().json();
    assert_eq!(init["initialized"], json!(true));
    assert_eq!(init["revision"], json!(1));
    assert_eq!(
        env.run(SM, &["init", "--json"]).ok().json()["initialized"],
        json!(false)
    );
    // Text output of a change stays empty, as before.
    assert_eq!(env.sm(&["set", ".phase", r#""a""#]), "");
    let set = env
        .run(SM, &["set", ".phase", r#""b""#, "--json"])
        .ok()
        .json();
    assert_eq!(set["revision"], json!(3));
    let kept = set["backup"]
        .as_str()
        .expect("the replaced version's backup");
    assert!(std::path::Path::new(kept).exists(), "{kept}");
    let sig = env.run(SM, &["signal", "GO", "--json"]).ok().json();
    assert_eq!(sig["signal"], "GO");
    assert_eq!(sig["revision"], json!(4));
    assert!(sig["epoch"].is_number());
    let b = env.run(SM, &["backup", "--json"]).ok().json();
    assert!(
        b["backup"]
            .as_str()
            .is_some_and(|p| p.ends_with("-manual.json")),
        "{b}"
    );
    let rec = env.run(SM, &["recover", "--json"]).ok().json();
    assert_eq!(rec["revision"], json!(5));
    assert!(rec["recovered_from"].is_string());
    let m = env.run(SM, &["migrate", "--json"]).ok().json();
    assert_eq!(m["migrated"], json!(false));
    assert_eq!(m["schema_version"], "1.0");
}

#[test]
fn read_takes_json_as_a_no_op_and_compact_prints_one_line() {
    let env = populated();
    let plain = env.sm(&["read"]);
    assert_eq!(env.sm(&["read", "--json"]), plain);
    let one = env.sm(&["read", "-c"]);
    assert_eq!(one.lines().count(), 1, "{one}");
    let a: Value = serde_json::from_str(&one).unwrap();
    let b: Value = serde_json::from_str(&plain).unwrap();
    assert_eq!(a, b);
    assert_eq!(env.sm(&["read", ".completedTasks", "-c"]), "[\"t1\"]\n");
    assert_eq!(env.sm(&["read", ".phase", "--json"]), "\"impl\"\n");
    assert_eq!(env.sm(&["read", ".phase", "-r"]), "impl\n");
    // export prints the document too: --json is --format json, -c one line.
    assert_eq!(env.sm(&["export", "--json"]), plain);
    assert_eq!(env.sm(&["export", "--json", "-c"]), one);
}

#[test]
fn a_failure_under_json_is_one_error_object_on_stdout() {
    let env = Env::new();
    let check = |args: &[&str], code: i32, name: &str| {
        let r = env.run(SM, args).code(code);
        let v = one_value(&r, &args.join(" "));
        assert_eq!(v["error"]["code"], json!(code), "{v}");
        assert_eq!(v["error"]["name"], name, "{v}");
        assert!(v["error"]["message"].is_string(), "{v}");
        assert!(!r.stderr.is_empty());
    };
    check(&["read", "--json"], 1, "GENERAL_ERROR");
    check(&["set", ".phase", "1", "--json"], 1, "GENERAL_ERROR");
    env.init();
    check(
        &["set", ".phase", "{oops", "--json"],
        4,
        "VALIDATION_FAILED",
    );
    fs::write(env.state_file(), b"{").unwrap();
    check(&["read", "--json"], 3, "STATE_CORRUPTION");
    check(&["read", "-c", ".phase", "--json"], 3, "STATE_CORRUPTION");
    check(&["validate", "--json"], 3, "STATE_CORRUPTION");
    check(&["export", "--json"], 3, "STATE_CORRUPTION");
}

#[test]
fn status_output_matches_its_schema_whatever_the_state() {
    let env = Env::new();
    let r = env.run(SM, &["status", "--json"]).code(1);
    assert_schema("state-manager-status.schema.json", &r.json());
    assert_eq!(r.json()["condition"], "missing");
    env.init();
    env.sm(&[
        "merge",
        r#"{"degradedMode":{"enabled":true,"reason":"api down","timestamp":"2026-01-01T00:00:00Z"}}"#,
    ]);
    let v = env.run(SM, &["status", "--json"]).ok().json();
    assert_schema("state-manager-status.schema.json", &v);
    assert_eq!(v["degraded_mode"]["enabled"], json!(true));
    assert_eq!(v["degraded_mode"]["reason"], "api down");
    assert_eq!(v["degraded_mode"]["since"], "2026-01-01T00:00:00Z");
    assert_eq!(v["degraded_mode"]["features"], json!([]));
    assert_eq!(v["violations"], json!([]));
    assert_eq!(v["violation_count"], json!(0));
    let mut doc = env.state();
    doc["phase"] = json!(7);
    doc["completedTasks"] = json!("no");
    fs::write(env.state_file(), serde_json::to_vec(&doc).unwrap()).unwrap();
    let v = env.run(SM, &["status", "--json"]).code(4).json();
    assert_schema("state-manager-status.schema.json", &v);
    assert_eq!(v["violation_count"], json!(2));
    assert_eq!(v["violations"].as_array().unwrap().len(), 2);
    fs::write(env.state_file(), b"{").unwrap();
    let v = env.run(SM, &["status", "--json"]).code(3).json();
    assert_schema("state-manager-status.schema.json", &v);
}

#[test]
fn validate_and_list_backups_output_match_their_schemas() {
    let env = Env::new();
    env.init();
    assert_schema(
        "state-manager-list-backups.schema.json",
        &env.run(SM, &["list-backups", "--json"]).ok().json(),
    );
    assert_schema(
        "state-manager-validate.schema.json",
        &env.run(SM, &["validate", "--json"]).ok().json(),
    );
    env.sm(&["set", ".phase", r#""a""#]);
    env.sm(&["set", ".phase", r#""b""#]);
    let backups = env.run(SM, &["list-backups", "--json"]).ok().json();
    assert_eq!(backups.as_array().unwrap().len(), 2);
    assert_schema("state-manager-list-backups.schema.json", &backups);
    let mut doc = env.state();
    doc["phase"] = json!(7);
    fs::write(env.state_file(), serde_json::to_vec(&doc).unwrap()).unwrap();
    let v = env.run(SM, &["validate", "--json"]).code(4).json();
    assert_schema("state-manager-validate.schema.json", &v);
    assert_eq!(v["violation_count"], json!(1));
}

#[test]
fn health_and_verify_integrity_output_match_their_schemas() {
    let env = Env::new();
    env.init();
    env.sm(&["set", ".phase", r#""a""#]);
    let h = env.run(SM, &["health", "--json"]).json();
    assert_schema("state-manager-health.schema.json", &h);
    assert_schema(
        "state-manager-verify-integrity.schema.json",
        &env.run(SM, &["verify-integrity", "--json"]).ok().json(),
    );
    let b = newest_backup(&env);
    assert_schema(
        "state-manager-verify-integrity.schema.json",
        &env.run(SM, &["validate-backup", &b, "--json"]).ok().json(),
    );
    // A backup changed outside the toolkit, then a corrupt state.
    let path = env.run(SM, &["list-backups", "--json"]).ok().json()[0]["path"]
        .as_str()
        .unwrap()
        .to_string();
    let mut doc: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    doc["phase"] = json!("tampered");
    fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
    let v = env.run(SM, &["verify-integrity", "--json"]).code(3).json();
    assert_schema("state-manager-verify-integrity.schema.json", &v);
    assert_schema(
        "state-manager-verify-integrity.schema.json",
        &env.run(SM, &["validate-backup", &b, "--json"])
            .code(3)
            .json(),
    );
    fs::write(env.state_file(), b"{").unwrap();
    let h = env.run(SM, &["health", "--json"]).code(3).json();
    assert_schema("state-manager-health.schema.json", &h);
    assert_eq!(h["checks"]["state"]["exit_code"], json!(3));
    fs::remove_file(env.state_file()).unwrap();
    let v = env.run(SM, &["verify-integrity", "--json"]).code(3).json();
    assert_schema("state-manager-verify-integrity.schema.json", &v);
    assert_eq!(v["state_status"], "missing");
}

#[test]
fn debug_lines_name_the_state_file_the_lock_wait_and_the_commit() {
    let env = Env::new();
    env.init();
    let r = env.run(SM, &["set", ".phase", r#""a""#, "--debug"]).ok();
    assert!(r.stderr.contains("state lock taken after"), "{}", r.stderr);
    assert!(r.stderr.contains("backup made: "), "{}", r.stderr);
    assert!(r.stderr.contains("committed revision 2"), "{}", r.stderr);
    let r = env.run(SM, &["read", "--debug"]).ok();
    assert!(
        r.stderr
            .contains(&format!("state file {}", env.state_file().display())),
        "{}",
        r.stderr
    );
    // Off by default.
    assert_eq!(env.run(SM, &["set", ".phase", r#""b""#]).ok().stderr, "");
}

#[test]
fn repair_cleanup_import_and_changes_match_their_schemas() {
    let env = populated();
    for args in [
        &["set", ".phase", r#""s""#][..],
        &["merge", r#"{"context":{"k":1}}"#],
        &["append", ".completedTasks", r#""t9""#],
        &["signal", "DONE"],
    ] {
        let mut a = args.to_vec();
        a.push("--json");
        assert_schema(
            "state-manager-commit.schema.json",
            &env.run(SM, &a).ok().json(),
        );
    }
    assert_schema(
        "state-manager-repair.schema.json",
        &env.run(SM, &["repair", "--json"]).ok().json(),
    );
    let mut doc = env.state();
    doc["metadata"].as_object_mut().unwrap().remove("checksum");
    doc["phase"] = json!(7);
    fs::write(env.state_file(), serde_json::to_vec(&doc).unwrap()).unwrap();
    let v = env.run(SM, &["repair", "--json"]).code(4).json();
    assert_schema("state-manager-repair.schema.json", &v);
    doc["phase"] = json!("p");
    fs::write(env.state_file(), serde_json::to_vec(&doc).unwrap()).unwrap();
    let v = env.run(SM, &["repair", "--json"]).ok().json();
    assert_schema("state-manager-repair.schema.json", &v);
    assert_eq!(v["changed"], json!(true));
    assert_schema(
        "state-manager-cleanup.schema.json",
        &env.run(SM, &["cleanup", "--keep", "1", "--dry-run", "--json"])
            .ok()
            .json(),
    );
    let v = env
        .run(SM, &["cleanup", "--keep", "1", "--json"])
        .ok()
        .json();
    assert_schema("state-manager-cleanup.schema.json", &v);
    assert!(!v["removed"].as_array().unwrap().is_empty(), "{v}");
    let v = env
        .run(
            SM,
            &["import", "--file", "exported.json", "--force", "--json"],
        )
        .ok()
        .json();
    assert_schema("state-manager-import.schema.json", &v);
    fs::write(env.state_file(), b"{").unwrap();
    let v = env
        .run(
            SM,
            &["import", "--file", "exported.json", "--force", "--json"],
        )
        .ok()
        .json();
    assert_schema("state-manager-import.schema.json", &v);
    assert_eq!(v["previous_revision"], Value::Null);
}

#[test]
fn health_status_and_verify_integrity_are_coloured_only_on_a_terminal() {
    let env = Env::new();
    env.init();
    for cmd in ["state-manager health", "state-manager status"] {
        let tty = on_a_tty(&env, false, cmd);
        assert!(
            tty.contains("\x1b[32m"),
            "{cmd}: colour on a terminal: {tty:?}"
        );
        let plain = on_a_tty(&env, true, cmd);
        assert!(!plain.contains('\x1b'), "{cmd}: NO_COLOR: {plain:?}");
        let flag = on_a_tty(&env, false, &format!("{cmd} --no-color"));
        assert!(!flag.contains('\x1b'), "{cmd}: --no-color: {flag:?}");
    }
    // The columns line up as without colour (free space aside, which moves).
    let steady = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.contains("free of"))
            .map(str::to_owned)
            .collect()
    };
    let tty = on_a_tty(&env, false, "state-manager health").replace("\r\n", "\n");
    assert_eq!(steady(&strip_ansi(&tty)), steady(&env.sm(&["health"])));
    fs::write(env.state_file(), b"{").unwrap();
    let tty = on_a_tty(&env, false, "state-manager verify-integrity");
    assert!(tty.contains("\x1b[31mCORRUPT"), "{tty:?}");
    let mut c = env.cmd(SM);
    c.env_remove("NO_COLOR").arg("health");
    let piped = c.output().unwrap();
    assert!(
        !String::from_utf8_lossy(&piped.stdout).contains('\x1b'),
        "never into a pipe"
    );
}

/// `text` without ANSI colour sequences.
fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
