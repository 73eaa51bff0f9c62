//! The `--json` output of the commands not covered elsewhere, run for real
//! and validated against schemas/output/; the error object every failing
//! command prints under `--json`, across all three binaries; and every
//! schema file parsing, compiling and being used by some test.

use std::fs;

use serde_json::{Value, json};

use crate::harness::{
    Env, Owner, Run, assert_schema, camel_case_keys, repo_root, schema_errors, schema_validator,
};

const SM: &str = "state-manager";
const ER: &str = "error-recovery";
const LM: &str = "lock-manager";

/// Runs `bin args` expecting exit `code`; validates stdout against schema
/// `name` and that it has no camelCase key; returns stdout as JSON.
#[track_caller]
fn checked(env: &Env, bin: &str, args: &[&str], code: i32, name: &str) -> Value {
    let v = env.run(bin, args).code(code).json();
    assert_schema(name, &v);
    let camel = camel_case_keys(&v);
    assert!(camel.is_empty(), "{bin} {args:?}: camelCase keys {camel:?}");
    v
}

/// The file names of the backups, newest first.
fn backups(env: &Env) -> Vec<String> {
    let mut v: Vec<String> = env
        .list(".state-backups")
        .into_iter()
        .filter(|n| n.starts_with("state-") && n.ends_with(".json"))
        .collect();
    v.reverse();
    v
}

fn set_phase(env: &Env, phase: &str) {
    env.sm(&["set", ".phase", &format!("\"{phase}\"")]);
}

#[test]
fn init_output_fresh_existing_and_over_a_corrupt_state() {
    const S: &str = "state-manager-init.schema.json";
    let env = Env::new();
    let v = checked(&env, SM, &["init", "--json"], 0, S);
    assert_eq!(v["initialized"], true);
    assert_eq!(v["revision"], 1);
    let v = checked(&env, SM, &["init", "--json", "-c"], 0, S);
    assert_eq!(v["initialized"], false);
    assert_eq!(v["recovered_from"], Value::Null);

    // Corrupt, with a backup to recover from.
    set_phase(&env, "a");
    fs::write(env.state_file(), b"{").unwrap();
    let v = checked(&env, SM, &["init", "--json"], 0, S);
    assert_eq!(v["initialized"], true);
    assert!(v["recovered_from"].as_str().unwrap().starts_with("state-"));
    assert!(v["corrupt_kept_at"].as_str().unwrap().contains(".corrupt-"));

    // Corrupt, with no backup: a fresh state.
    fs::remove_dir_all(env.path(".state-backups")).unwrap();
    fs::write(env.state_file(), b"{").unwrap();
    let v = checked(&env, SM, &["init", "--json"], 0, S);
    assert_eq!(v["recovered_from"], Value::Null);
    assert!(v["corrupt_kept_at"].is_string());
    assert_eq!(v["revision"], 1);
}

#[test]
fn backup_output_has_its_own_schema_not_the_commit_one() {
    let env = Env::new();
    env.init();
    let v = checked(
        &env,
        SM,
        &["backup", "--json"],
        0,
        "state-manager-backup.schema.json",
    );
    let path = v["backup"].as_str().unwrap();
    assert!(fs::metadata(path).is_ok(), "{path} does not exist");
    let v = checked(
        &env,
        SM,
        &["backup", "before-deploy", "--json", "-c"],
        0,
        "state-manager-backup.schema.json",
    );
    assert!(
        v["backup"]
            .as_str()
            .unwrap()
            .ends_with("-before-deploy.json")
    );
    // {"backup"} alone lacks the revision a commit has.
    let commit = schema_validator("schemas/output/state-manager-commit.schema.json");
    assert!(!schema_errors(&commit, &v).is_empty());
}

#[test]
fn recover_output_after_two_writes_by_pattern_over_corrupt_and_missing() {
    const S: &str = "state-manager-recover.schema.json";
    let env = Env::new();
    env.init();
    env.sm(&["backup", "mine"]);
    set_phase(&env, "a");
    set_phase(&env, "b");
    let v = checked(&env, SM, &["recover", "--json"], 0, S);
    assert_eq!(v["revision"], 4);
    assert!(v["backup"].is_string());
    assert_eq!(v["corrupt_kept_at"], Value::Null);
    assert_eq!(env.state()["phase"], "a");

    let v = checked(&env, SM, &["recover", "mine", "--json"], 0, S);
    assert!(
        v["recovered_from"]
            .as_str()
            .unwrap()
            .ends_with("-mine.json")
    );

    fs::write(env.state_file(), b"{").unwrap();
    let v = checked(&env, SM, &["recover", "--json"], 0, S);
    assert_eq!(v["backup"], Value::Null);
    assert!(v["corrupt_kept_at"].is_string());

    fs::remove_file(env.state_file()).unwrap();
    let v = checked(&env, SM, &["recover", "--json"], 0, S);
    assert_eq!(v["backup"], Value::Null);
    assert_eq!(v["corrupt_kept_at"], Value::Null);

    // No match: the error object.
    checked(
        &env,
        SM,
        &["recover", "no-such", "--json"],
        3,
        "error.schema.json",
    );
}

#[test]
fn migrate_output_current_and_older_document() {
    const S: &str = "state-manager-migrate.schema.json";
    let env = Env::new();
    env.init();
    let v = checked(&env, SM, &["migrate", "--json"], 0, S);
    assert_eq!(v["migrated"], false);

    fs::write(
        env.state_file(),
        br#"{"phase": "impl", "signals": {"A": 1.0}}"#,
    )
    .unwrap();
    let v = checked(&env, SM, &["migrate", "--json"], 0, S);
    assert_eq!(v["migrated"], true);
    assert!(v["changes"].as_array().unwrap().len() >= 2);
    assert_eq!(v["schema_version"], env.state()["schemaVersion"]);

    fs::write(env.state_file(), br#"{"schemaVersion": "2.0"}"#).unwrap();
    checked(&env, SM, &["migrate", "--json"], 4, "error.schema.json");
}

#[test]
fn export_summary_with_output_file_json_and_yaml() {
    const S: &str = "state-manager-export.schema.json";
    let env = Env::new();
    env.init();
    set_phase(&env, "a");
    let v = checked(
        &env,
        SM,
        &["export", "--output", "out.json", "--json"],
        0,
        S,
    );
    assert_eq!(v["format"], "json");
    assert_eq!(v["revision"], 2);
    assert_eq!(v["bytes"], json!(env.bytes("out.json").len()));
    let v = checked(
        &env,
        SM,
        &["export", "-o", "out.yaml", "--json", "-c"],
        0,
        S,
    );
    assert_eq!(v["format"], "yaml");
    assert_eq!(v["bytes"], json!(env.bytes("out.yaml").len()));
}

#[test]
fn audit_export_summary_with_output_file() {
    let env = Env::new();
    env.init();
    set_phase(&env, "a");
    env.run(SM, &["read", ".nope.x.y"]);
    let v = checked(
        &env,
        SM,
        &["audit", "export", "--output", "audit.json", "--json"],
        0,
        "state-manager-audit-export.schema.json",
    );
    let doc: Value = serde_json::from_slice(&env.bytes("audit.json")).unwrap();
    assert_eq!(
        v["event_count"],
        json!(doc["events"].as_array().unwrap().len())
    );
}

#[test]
fn diagnostics_output_empty_busy_and_verbose() {
    const S: &str = "state-manager-diagnostics.schema.json";
    let env = Env::new();
    let v = checked(&env, SM, &["diagnostics", "--json"], 0, S);
    assert_eq!(v["audit"]["event_count"], 0);
    assert_eq!(v["audit"]["first"], Value::Null);

    env.init();
    set_phase(&env, "a");
    env.sm(&["backup"]);
    env.run(ER, &["checkpoint", "op1"]).ok();
    env.run(SM, &["set", ".phase", "not json"]).code(4);
    fs::OpenOptions::new()
        .append(true)
        .open(env.audit_log())
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"{broken\n"))
        .unwrap();
    let v = checked(&env, SM, &["diagnostics", "--json"], 0, S);
    assert!(v["audit"]["failed"].as_u64().unwrap() >= 1);
    assert_eq!(v["audit"]["malformed_lines"], 1);
    assert_eq!(v["disk"]["checkpoint_count"], 1);
    let ops = v["audit"]["operations"].as_array().unwrap();
    assert!(ops.iter().all(|o| o.get("by_exit").is_none()));

    let v = checked(&env, SM, &["diagnostics", "-v", "--json", "-c"], 0, S);
    let set = v["audit"]["operations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["op"] == "set")
        .cloned()
        .unwrap();
    assert_eq!(set["by_exit"]["4"], 1);
}

#[test]
fn benchmark_output_with_few_operations() {
    let env = Env::new();
    env.init();
    let v = checked(
        &env,
        SM,
        &["benchmark", "--operations", "3", "--json"],
        0,
        "state-manager-benchmark.schema.json",
    );
    assert_eq!(v["operation_count"], 3);
    for kind in ["read", "write", "set", "lock"] {
        assert_eq!(v["results"][kind]["ops"], 3, "{kind}");
    }
    assert!(!env.path(v["dir"].as_str().unwrap()).exists());
    checked(
        &env,
        SM,
        &["benchmark", "--operations", "0", "--json"],
        4,
        "error.schema.json",
    );
}

#[test]
fn validate_backup_output_valid_corrupt_invalid() {
    const S: &str = "state-manager-validate-backup.schema.json";
    let env = Env::new();
    env.init();
    set_phase(&env, "a");
    set_phase(&env, "b");
    let names = backups(&env);
    let v = checked(&env, SM, &["validate-backup", &names[0], "--json"], 0, S);
    assert_eq!(v["clean"], true);
    // Also what verify-integrity's schema says of it.
    assert_schema("state-manager-verify-integrity.schema.json", &v);

    let dir = env.path(".state-backups");
    fs::write(dir.join(&names[0]), b"{").unwrap();
    let v = checked(&env, SM, &["validate-backup", &names[0], "--json"], 3, S);
    assert_eq!(v["files"][0]["status"], "corrupt");
    fs::write(dir.join(&names[1]), br#"{"x": 1}"#).unwrap();
    let v = checked(&env, SM, &["validate-backup", &names[1], "--json"], 4, S);
    assert_eq!(v["files"][0]["status"], "invalid");
    checked(
        &env,
        SM,
        &["validate-backup", "state-nope", "--json"],
        1,
        "error.schema.json",
    );
}

#[test]
fn restore_output_plain_and_over_a_corrupt_state_with_folders() {
    const S: &str = "error-recovery-restore.schema.json";
    let env = Env::new();
    env.init();
    env.sm(&["signal", "A"]);
    let id = env.run(ER, &["checkpoint", "op1"]).ok().stdout;
    let id = id.trim();
    set_phase(&env, "b");
    let v = checked(&env, ER, &["restore", id, "--json"], 0, S);
    assert_eq!(v["id"], id);
    assert!(v["backup"].is_string());

    env.sm(&["signal", "B"]);
    fs::create_dir_all(env.path("config")).unwrap();
    fs::write(env.path("config/extra.txt"), "x").unwrap();
    fs::write(env.state_file(), b"{").unwrap();
    let v = checked(&env, ER, &["restore", "--json", "-c"], 0, S);
    assert_eq!(v["backup"], Value::Null);
    assert!(v["corrupt_kept_at"].is_string());
    assert!(v["kept_at"].is_string());
    let removed: Vec<&str> = v["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(removed.contains(&".signals/B.json"), "{removed:?}");
    assert!(removed.contains(&"config/extra.txt"), "{removed:?}");

    checked(
        &env,
        ER,
        &["restore", "checkpoint-nope", "--json"],
        1,
        "error.schema.json",
    );
}

#[test]
fn checkpoint_cleanup_output_with_old_checkpoints_and_a_leftover() {
    const S: &str = "error-recovery-cleanup.schema.json";
    let env = Env::new();
    env.init();
    env.run(ER, &["checkpoint", "one"]).ok();
    env.run(ER, &["checkpoint", "two"]).ok();
    // The temp folder of a checkpoint whose writer was killed.
    let dead = {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    };
    fs::create_dir_all(env.path(&format!(
        ".checkpoints/.tmp-checkpoint-20260101-000000Z-000009-x-{dead}/signals"
    )))
    .unwrap();

    let v = checked(
        &env,
        ER,
        &["cleanup", "0", "--keep", "1", "--dry-run", "--json"],
        0,
        S,
    );
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["removed"].as_array().unwrap().len(), 1);
    assert_eq!(v["temps"].as_array().unwrap().len(), 1);
    assert_eq!(v["kept_count"], 1);

    let v = checked(&env, ER, &["cleanup", "0", "--json"], 0, S);
    assert_eq!(v["dry_run"], false);
    assert_eq!(v["removed"].as_array().unwrap().len(), 2);
    assert_eq!(v["kept_count"], 0);
    let v = checked(&env, ER, &["cleanup", "--json", "-c"], 0, S);
    assert_eq!(v["removed"], json!([]));
    assert_eq!(v["temps"], json!([]));
}

#[test]
fn degrade_and_recover_mode_output() {
    let env = Env::new();
    env.init();
    let v = checked(
        &env,
        ER,
        &["degrade", "disk slow", r#"["hooks","sync"]"#, "--json"],
        0,
        "error-recovery-degrade.schema.json",
    );
    assert_eq!(v["features"], json!(["hooks", "sync"]));
    let v = checked(
        &env,
        ER,
        &["degrade", "again", "--json", "-c"],
        0,
        "error-recovery-degrade.schema.json",
    );
    assert_eq!(v["features"], json!([]));

    let v = checked(
        &env,
        ER,
        &["recover-mode", "--json"],
        0,
        "error-recovery-recover-mode.schema.json",
    );
    assert_eq!(v["changed"], true);
    assert_eq!(v["reason"], "again");
    let v = checked(
        &env,
        ER,
        &["recover-mode", "--json"],
        0,
        "error-recovery-recover-mode.schema.json",
    );
    assert_eq!(v["changed"], false);
    assert_eq!(v["revision"], env.state()["metadata"]["revision"]);

    checked(
        &env,
        ER,
        &["degrade", "r", r#"["a""#, "--json"],
        4,
        "error.schema.json",
    );
}

#[test]
fn suggest_output_for_every_code() {
    let env = Env::new();
    for code in 0..=10 {
        let c = code.to_string();
        let v = checked(
            &env,
            ER,
            &["suggest", &c, "--json"],
            0,
            "error-recovery-suggest.schema.json",
        );
        assert_eq!(v["code"], code);
    }
    checked(
        &env,
        ER,
        &["suggest", "11", "--json"],
        4,
        "error.schema.json",
    );
}

#[test]
fn handle_output_without_and_with_apply() {
    const S: &str = "error-recovery-handle.schema.json";
    let env = Env::new();
    env.init();
    set_phase(&env, "a");
    // Without --apply: the suggestion, exit CODE.
    for code in 0..=10 {
        let c = code.to_string();
        let v = checked(&env, ER, &["handle", &c, "what failed", "--json"], code, S);
        assert_eq!(v["applied"], false);
        assert_eq!(v.get("suggestion").is_some(), code != 0, "{v}");
    }
    // --apply where there is nothing to repair: exit CODE, nothing changed.
    for code in [0, 2, 3, 4, 7] {
        let c = code.to_string();
        let v = checked(&env, ER, &["handle", &c, "--apply", "--json"], code, S);
        assert_eq!(v["applied"], true);
        assert_eq!(v["recovered"], false);
    }
    // --apply on a code with no strategy: the suggestion.
    let v = checked(&env, ER, &["handle", "5", "--apply", "--json", "-c"], 5, S);
    assert!(v["suggestion"].is_object());
    // --apply on a stale lock: recovered.
    let owner = Owner::new();
    env.run(LM, &["--owner", &owner.pid(), "acquire", "job"])
        .ok();
    drop(owner);
    let v = checked(&env, ER, &["handle", "2", "--apply", "--json"], 0, S);
    assert_eq!(v["recovered"], true);
    // --apply on a corrupt state: recovered from the newest backup.
    fs::write(env.state_file(), b"{").unwrap();
    let v = checked(&env, ER, &["handle", "3", "--apply", "--json"], 0, S);
    assert_eq!(v["recovered"], true);
    // The newest backup holds the version before the last set.
    assert_eq!(env.state()["phase"], "pre-init");

    checked(
        &env,
        ER,
        &["handle", "11", "--json"],
        4,
        "error.schema.json",
    );
}

#[test]
fn every_failure_under_json_prints_the_error_object() {
    let env = Env::new();
    env.init();
    let holder = Owner::new();
    env.run(LM, &["--owner", &holder.pid(), "acquire", "held"])
        .ok();
    let cases: Vec<(&str, Vec<&str>, i32)> = vec![
        (LM, vec!["acquire", "bad/name", "--json"], 4),
        (LM, vec!["check", "../x", "--json"], 4),
        (LM, vec!["--lock-timeout=-1", "acquire", "foo", "--json"], 4),
        (
            LM,
            vec!["--lock-timeout", "0.2", "acquire", "held", "--json"],
            2,
        ),
        (LM, vec!["release", "held", "--json"], 6),
        (LM, vec!["list", "--bogus", "--json"], 1),
        (ER, vec!["restore", "checkpoint-missing", "--json"], 1),
        (
            ER,
            vec!["--lock-timeout", "nope", "degrade", "x", "--json"],
            4,
        ),
        (ER, vec!["status", "--nope", "--json"], 1),
        (
            SM,
            vec!["--lock-timeout", "abc", "set", ".phase", "\"x\"", "--json"],
            4,
        ),
        (SM, vec!["read", "--bogus", "--json"], 1),
        (SM, vec!["validate-backup", "state-nope", "--json"], 1),
    ];
    let run = |bin: &str, args: &[&str], code: i32| {
        let r: Run = env.run(bin, args).code(code);
        let v = r.json();
        assert_schema("error.schema.json", &v);
        assert_eq!(v["error"]["code"], code, "{bin} {args:?}");
        assert!(!r.stderr.is_empty(), "{bin} {args:?}: nothing on stderr");
    };
    for (bin, args, code) in &cases {
        run(bin, args, *code);
    }
    // A state that does not parse, read by each binary.
    fs::write(env.state_file(), b"{").unwrap();
    run(SM, &["read", "--json"], 3);
    run(SM, &["set", ".phase", "\"x\"", "--json"], 3);
    run(ER, &["degrade", "x", "--json"], 3);
    run(ER, &["checkpoint", "op", "--json"], 3);
    // No state at all.
    fs::remove_file(env.state_file()).unwrap();
    run(ER, &["recover-mode", "--json"], 1);
    drop(holder);
}

#[test]
fn every_schema_parses_compiles_and_is_used_by_a_test() {
    let root = repo_root();
    let mut sources = String::new();
    for entry in fs::read_dir(root.join("tests/it")).unwrap().flatten() {
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "rs") {
            sources.push_str(&fs::read_to_string(&p).unwrap());
        }
    }
    let mut output_schemas = 0;
    for dir in ["schemas", "schemas/output"] {
        let mut names: Vec<String> = fs::read_dir(root.join(dir))
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            let rel = format!("{dir}/{name}");
            assert!(
                name.ends_with(".schema.json"),
                "{rel}: not NAME.schema.json"
            );
            let text = fs::read(root.join(&rel)).unwrap();
            let schema: Value =
                serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{rel} is not JSON: {e}"));
            assert_eq!(
                schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
                "{rel}"
            );
            let id = schema["$id"].as_str().unwrap_or_default();
            assert!(id.ends_with(&format!("/{rel}")), "{rel}: $id {id:?}");
            jsonschema::draft202012::options()
                .should_validate_formats(true)
                .build(&schema)
                .unwrap_or_else(|e| panic!("{rel} does not compile: {e}"));
            if dir == "schemas/output" {
                output_schemas += 1;
                assert!(
                    sources.contains(&name),
                    "{rel} is named by no test in tests/it/"
                );
            }
        }
    }
    assert!(output_schemas > 0);
}

/// Runs `audit monitor ARGS` for about two seconds while a set and a failing
/// set happen; returns every line it printed, as JSON.
fn monitor_lines(env: &Env, args: &[&str]) -> Vec<Value> {
    use std::io::{BufRead, BufReader};
    let mut c = env.cmd(SM);
    c.args(["audit", "monitor", "--interval", "1", "--duration", "2"])
        .args(args)
        .stdout(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    // Following starts at the log's end: write only once it has begun.
    set_phase(env, "watched");
    env.run(SM, &["set", ".phase", "not json"]).code(4);
    let mut lines = vec![first];
    lines.extend(out.lines().map(Result::unwrap));
    assert!(child.wait().unwrap().success());
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn audit_monitor_json_lines() {
    const S: &str = "state-manager-audit-monitor.schema.json";
    let env = Env::new();
    env.init();
    let lines = monitor_lines(
        &env,
        &[
            "--jsonl",
            "--alert-latency-ms",
            "0",
            "--alert-failures-per-min",
            "1",
            "--export-alerts",
            "alerts.jsonl",
        ],
    );
    for l in &lines {
        assert_schema(S, l);
        assert!(camel_case_keys(l).is_empty(), "{l}");
        if l["type"] == "event" {
            crate::harness::assert_audit_event(&l["event"]);
        }
    }
    let types: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"start"));
    assert_eq!(types.last(), Some(&"session"));
    for t in ["event", "alert", "summary"] {
        assert!(types.contains(&t), "no {t} line: {types:?}");
    }
    let exported = String::from_utf8(env.bytes("alerts.jsonl")).unwrap();
    assert!(!exported.is_empty());
    for l in exported.lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["type"], "alert");
        assert_schema(S, &v);
    }

    // --json: the same without the event lines.
    let lines = monitor_lines(&env, &["--json"]);
    for l in &lines {
        assert_schema(S, l);
        assert_ne!(l["type"], "event");
    }
    assert_eq!(lines.last().unwrap()["stopped_by"], "duration");
}
