//! lock-manager's output conventions: `--json`, `-c`, `--jsonl` on the data
//! commands, each JSON output validated against its schema in
//! schemas/output/, `check`'s unchanged text and its exit codes as answers,
//! failures as a JSON error object, one staleness rule for check, list,
//! status and clean, and the `--debug` lines of a lock wait.
//!
//! The outputs are the same on both backends (issue 14): the `fn NAME(env:
//! Env)` below run by [`both!`] as `hlock::file::NAME` and
//! `hlock::redis::NAME`. A dead owner's hold is stale on files and released
//! by its keeper on Redis ([`on_redis`] says which); the `#[test]` left is
//! the file backend's staleness rule itself.

use serde_json::Value;

use crate::harness::{Env, Owner, Run, assert_schema, both, dead_record, hold, json_lines};

const LM: &str = "lock-manager";

both!(
    list_prints_one_array_compact_with_c_and_one_object_per_line_with_jsonl,
    check_keeps_its_text_and_answers_with_its_exit_code_also_under_json,
    a_failure_under_json_is_one_error_object_on_stdout,
    acquire_release_and_status_json_follow_their_schemas,
    no_colour_when_stdout_is_not_a_terminal,
    debug_lines_name_the_record_each_wait_round_and_the_timings,
);

/// Whether `env` runs on the Redis backend.
fn on_redis(env: &Env) -> bool {
    env.redis.is_some()
}

/// A fresh environment on the same backend as `env`.
fn another(env: &Env) -> Env {
    if on_redis(env) {
        Env::redis()
    } else {
        Env::new()
    }
}

/// Waits (in the test) until the dead owner's keeper has released lock
/// `name` on Redis, at most 10 s: there is then no stale record to show.
fn released_by_its_keeper(env: &Env, name: &str) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while env.run(LM, &["check", name]).code != 1 {
        assert!(
            std::time::Instant::now() < until,
            "the keeper never released {name}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn list_prints_one_array_compact_with_c_and_one_object_per_line_with_jsonl(env: Env) {
    let a = Owner::new();
    let b = Owner::new();
    hold(&env, "docs", &a, &["0", "shared"]);
    hold(&env, "docs", &b, &["0", "shared"]);
    hold(
        &env,
        "build",
        &a,
        &["0", "exclusive", r#"{"step":"compile"}"#],
    );
    dead_record(&env, "old");
    // Files keep the dead owner's record (stale); on Redis its keeper
    // releases the hold, so it is not listed.
    let expected: &[&str] = if on_redis(&env) {
        released_by_its_keeper(&env, "old");
        &["build", "docs"]
    } else {
        &["build", "docs", "old"]
    };

    let pretty = env.run(LM, &["list", "--json"]).ok();
    let list = pretty.json();
    assert_schema("lock-manager-list.schema.json", &list);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, expected);
    assert_eq!(list[1]["holders"].as_array().unwrap().len(), 2);
    assert!(pretty.stdout.lines().count() > 3, "pretty by default");

    // The legacy positional spelling prints the same document.
    assert_eq!(env.run(LM, &["list", "json"]).ok().json(), list);

    let compact = env.run(LM, &["list", "--json", "-c"]).ok();
    assert_eq!(compact.stdout.lines().count(), 1, "{}", compact.stdout);
    assert_eq!(compact.json(), list);
    let compact = env.run(LM, &["list", "json", "--compact"]).ok();
    assert_eq!(compact.stdout.lines().count(), 1, "{}", compact.stdout);

    let lines = env.run(LM, &["list", "--jsonl"]).ok().stdout;
    let items = json_lines(&lines);
    assert_eq!(items.len(), expected.len(), "{lines}");
    assert!(items.iter().all(Value::is_object));
    assert_eq!(Value::Array(items), list);

    // No locks: an empty array, and no line at all as JSON Lines.
    let empty = another(&env);
    assert_eq!(
        empty.run(LM, &["list", "--json"]).ok().json(),
        Value::Array(vec![])
    );
    assert_eq!(empty.run(LM, &["list", "--jsonl"]).ok().stdout, "");
}

fn check_keeps_its_text_and_answers_with_its_exit_code_also_under_json(env: Env) {
    let owner = Owner::new();
    hold(&env, "held", &owner, &["0", "shared"]);
    dead_record(&env, "gone");

    let r = env.run(LM, &["check", "held"]).ok();
    assert_eq!(r.stdout, format!("locked:shared:{}\n", owner.pid()));
    let r = env.run(LM, &["check", "nothing"]).code(1);
    assert_eq!(r.stdout, "unlocked\n");
    if on_redis(&env) {
        released_by_its_keeper(&env, "gone");
    } else {
        let r = env.run(LM, &["check", "gone"]).code(2);
        assert_eq!(r.stdout, "stale\n");
    }

    let held = env.run(LM, &["check", "held", "--json"]).ok().json();
    assert_schema("lock-manager-check.schema.json", &held);
    assert_eq!(held["name"], "held");
    assert_eq!(held["status"], "locked");
    assert_eq!(held["type"], "shared");
    assert_eq!(held["pid"], owner.0.id());

    let free = env.run(LM, &["check", "nothing", "--json"]).code(1).json();
    assert_schema("lock-manager-check.schema.json", &free);
    assert_eq!(free["status"], "unlocked");
    assert_eq!(free["pid"], Value::Null);

    let (code, status) = if on_redis(&env) {
        (1, "unlocked")
    } else {
        (2, "stale")
    };
    let gone = env.run(LM, &["check", "gone", "--json", "-c"]).code(code);
    assert_eq!(gone.stdout.lines().count(), 1, "{}", gone.stdout);
    let gone = gone.json();
    assert_schema("lock-manager-check.schema.json", &gone);
    assert_eq!(gone["status"], status);
}

fn a_failure_under_json_is_one_error_object_on_stdout(env: Env) {
    for args in [
        &["check", "bad/name", "--json"][..],
        &["release", "bad/name", "--json"][..],
        &["acquire", "bad/name", "0", "--json", "-c"][..],
        &["clean", "--json", "--lock-timeout", "nope"][..],
    ] {
        let v = env.run(LM, args).code(4).one_line_error(LM).json();
        assert_eq!(v["error"]["code"], 4, "{args:?}: {v}");
        assert!(v["error"]["name"].is_string(), "{args:?}: {v}");
        assert!(v["error"]["message"].is_string(), "{args:?}: {v}");
        assert_eq!(v.as_object().unwrap().len(), 1, "{args:?}: {v}");
    }
    let v = env.run(LM, &["check", "bad/name", "--json"]).code(4).json();
    assert_eq!(v["error"]["name"], "VALIDATION_FAILED");
}

// File-only: a dead owner's record stays, stale, until taken over or
// cleaned; on Redis the owner's keeper releases it (lock.rs's
// `clean_removes_stale_records_and_keeps_live_ones` runs there).
#[test]
fn a_dead_owners_record_is_stale_to_check_list_and_status_and_clean_removes_exactly_it() {
    let env = Env::new();
    let live = Owner::new();
    hold(&env, "live", &live, &["0"]);
    let dead = dead_record(&env, "gone");

    env.run(LM, &["check", "gone"]).code(2).stdout_has("stale");
    env.run(LM, &["check", "live"]).ok();

    let table = env.run(LM, &["list"]).ok().stdout;
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row {name}: {table}"))
            .to_string()
    };
    assert!(row("gone").ends_with("STALE"), "{table}");
    assert!(row("gone").contains(&dead.to_string()), "{table}");
    assert!(row("live").ends_with("VALID"), "{table}");

    let list = env.run(LM, &["list", "--json"]).ok().json();
    assert_eq!(list[0]["name"], "gone");
    assert_eq!(list[0]["status"], "stale");
    assert_eq!(list[0]["holders"][0]["status"], "stale");
    assert_eq!(list[1]["status"], "valid");

    let status = env.run(LM, &["status", "--json"]).ok().json();
    assert_schema("lock-manager-status.schema.json", &status);
    assert_eq!(
        (status["held"].as_u64(), status["stale"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(status["stale_locks"][0]["name"], "gone");
    assert_eq!(status["locks"][0]["name"], "live");

    let cleaned = env.run(LM, &["clean", "--json"]).ok().json();
    assert_schema("lock-manager-clean.schema.json", &cleaned);
    assert_eq!(cleaned["removed_count"], 1);
    assert_eq!(cleaned["removed"], serde_json::json!(["gone"]));
    assert!(!env.path(".locks/gone.lock").exists());
    assert!(env.path(".locks/live.lock").exists());
    env.run(LM, &["check", "live"]).ok();
    env.run(LM, &["check", "gone"])
        .code(1)
        .stdout_has("unlocked");

    // Nothing left to clean: the text form still says so.
    env.run(LM, &["clean"])
        .ok()
        .stdout_has("removed 0 stale lock records");
}

fn acquire_release_and_status_json_follow_their_schemas(env: Env) {
    let owner = Owner::new();
    let pid = owner.pid();
    let got = env
        .run(
            LM,
            &[
                "acquire",
                "job",
                "0",
                "exclusive",
                r#"{"n":1}"#,
                "--json",
                "--owner",
                &pid,
            ],
        )
        .ok();
    assert!(got.stdout.lines().count() > 1, "pretty by default");
    let got = got.json();
    assert_schema("lock-manager-acquire.schema.json", &got);
    assert_eq!(got["owner_pid"], owner.0.id());
    assert_eq!(got["holders"][0]["metadata"]["n"], 1);

    let again = env
        .run(
            LM,
            &["acquire", "job", "0", "--json", "-c", "--owner", &pid],
        )
        .ok();
    assert_eq!(again.stdout.lines().count(), 1, "{}", again.stdout);
    let again = again.json();
    assert_schema("lock-manager-acquire.schema.json", &again);
    assert_eq!(again["already_held"], true);

    let status = env.run(LM, &["status", "--json", "-c"]).ok();
    assert_eq!(status.stdout.lines().count(), 1);
    let status = status.json();
    assert_schema("lock-manager-status.schema.json", &status);
    assert_eq!(status["locks"][0]["holders"][0]["pid"], owner.0.id());

    let released = env
        .run(LM, &["release", "job", "--json", "--owner", &pid])
        .ok()
        .json();
    assert_schema("lock-manager-release.schema.json", &released);
    assert_eq!(released["name"], "job");
    assert_eq!(released["was_held"], true);
    // Without --json release prints nothing, as before.
    let r = env.run(LM, &["release", "job", "--owner", &pid]).ok();
    assert_eq!(r.stdout, "");
}

fn no_colour_when_stdout_is_not_a_terminal(env: Env) {
    dead_record(&env, "gone");
    for args in [&["list"][..], &["status"][..]] {
        let mut c = env.cmd(LM);
        c.env_remove("NO_COLOR").args(args);
        let r = Run::of(c.output().unwrap()).ok();
        assert!(!r.stdout.contains('\x1b'), "{args:?}: {:?}", r.stdout);
    }
}

fn debug_lines_name_the_record_each_wait_round_and_the_timings(env: Env) {
    let holder = Owner::new();
    hold(&env, "busy", &holder, &["0"]);
    let other = Owner::new();
    let r = env
        .run(
            LM,
            &["--debug", "acquire", "busy", "0.3", "--owner", &other.pid()],
        )
        .code(2);
    // The record: its file, or its key on the server.
    let (record, at) = if on_redis(&env) {
        ("lock key ", "lock:busy")
    } else {
        ("lock record ", ".locks/busy.lock")
    };
    assert!(r.stderr.contains(record), "{}", r.stderr);
    assert!(r.stderr.contains(at), "{}", r.stderr);
    assert!(
        r.stderr.contains("wait round") && r.stderr.contains(&format!("pid {}", holder.pid())),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("timed out after"), "{}", r.stderr);

    let r = env
        .run(
            LM,
            &["acquire", "free", "0", "--owner", &other.pid(), "--debug"],
        )
        .ok();
    assert!(r.stderr.contains("granted after"), "{}", r.stderr);
    let r = env
        .run(LM, &["release", "free", "--owner", &other.pid(), "--debug"])
        .ok();
    assert!(r.stderr.contains("release 'free'"), "{}", r.stderr);
    assert_eq!(r.stdout, "");

    // Off by default: not one debug line.
    let r = env.run(LM, &["check", "busy"]).ok();
    assert!(!r.stderr.contains("debug:"), "{}", r.stderr);
}
