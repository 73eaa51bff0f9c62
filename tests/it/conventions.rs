//! The conventions shared by all three binaries: global options before or
//! after the subcommand, `--debug`, colour, the exit-code table in `--help`
//! and README, completions and manual pages, failures as JSON.

use std::fs;

use serde_json::Value;
use wfstate::exit::{Code, HELP_TABLE};

use crate::harness::{Env, Owner, dead_record, hold, on_a_tty, repo_root};

const BINARIES: [&str; 3] = ["state-manager", "lock-manager", "error-recovery"];

#[test]
fn a_global_option_after_the_subcommand_means_the_same_as_before_it() {
    let env = Env::new();
    let other = env.path("other.json");
    let other = other.to_str().unwrap();
    env.run("state-manager", &["init", "--state-file", other])
        .ok();
    env.run(
        "state-manager",
        &["set", ".phase", "x", "--string", "--state-file", other],
    )
    .ok();
    // The default state (STATE_FILE) was never created: both calls used the flag.
    assert!(!env.state_file().exists());
    let after = env.run(
        "state-manager",
        &["read", "-r", ".phase", "--state-file", other],
    );
    let before = env.run(
        "state-manager",
        &["--state-file", other, "read", "-r", ".phase"],
    );
    let equals = env.run(
        "state-manager",
        &["read", "-r", ".phase", &format!("--state-file={other}")],
    );
    for run in [after, before, equals] {
        assert_eq!(run.ok().stdout, "x\n");
    }
}

#[test]
fn lock_manager_and_error_recovery_take_global_options_after_the_subcommand() {
    let env = Env::new();
    let owner = Owner::new();
    let pid = owner.pid();
    env.run("lock-manager", &["acquire", "build", "0", "--owner", &pid])
        .ok();
    let check = env.run("lock-manager", &["check", "build"]).ok();
    assert_eq!(check.stdout.trim(), format!("locked:exclusive:{pid}"));
    env.run("lock-manager", &["release", "build", "--owner", &pid])
        .ok();
    env.run("lock-manager", &["check", "build"]).code(1);

    let other = env.path("elsewhere.json");
    let other = other.to_str().unwrap();
    env.run("state-manager", &["init", "--state-file", other])
        .ok();
    env.run(
        "error-recovery",
        &["degrade", "disk", "--state-file", other],
    )
    .ok();
    env.run("error-recovery", &["is-degraded", "--state-file", other])
        .code(0);
    // The default state was not touched.
    assert!(!env.state_file().exists());
}

#[test]
fn options_of_the_command_run_by_run_and_retry_are_left_to_it() {
    let env = Env::new();
    let out = env
        .run(
            "lock-manager",
            &["run", "job", "--", "echo", "--state-file", "x", "--debug"],
        )
        .ok();
    assert_eq!(out.stdout, "--state-file x --debug\n");
    assert!(!out.stderr.contains("debug:"), "{}", out.stderr);
    let out = env
        .run(
            "lock-manager",
            &["run", "job", "echo", "--no-color", "--owner", "1"],
        )
        .ok();
    assert_eq!(out.stdout, "--no-color --owner 1\n");
    let out = env
        .run(
            "error-recovery",
            &["retry", "--", "echo", "--state-file", "y"],
        )
        .ok();
    assert_eq!(out.stdout, "--state-file y\n");
}

#[test]
fn a_global_option_after_run_s_and_retry_s_own_valued_options_is_still_global() {
    let env = Env::new();
    let other = env.path("other.json");
    let other = other.to_str().unwrap();
    // `--timeout 5` is run's own option: its value does not start the command.
    let run = env
        .run(
            "lock-manager",
            &[
                "run",
                "job",
                "--timeout",
                "5",
                "--state-file",
                other,
                "--",
                "true",
            ],
        )
        .ok();
    assert_eq!(run.stderr, "");
    let run = env
        .run(
            "lock-manager",
            &["run", "-w", "5", "job", "--debug", "true"],
        )
        .ok();
    assert!(
        run.stderr.contains("lock-manager: debug:"),
        "{}",
        run.stderr
    );
    let retry = env
        .run(
            "error-recovery",
            &[
                "retry",
                "--attempts",
                "2",
                "--delay",
                "0",
                "--debug",
                "--state-file",
                other,
                "--",
                "true",
            ],
        )
        .ok();
    assert!(
        retry.stderr.contains("error-recovery: debug:"),
        "{}",
        retry.stderr
    );
    assert!(
        retry.stderr.contains(other),
        "names the state file given after: {}",
        retry.stderr
    );
}

#[test]
fn a_repeated_global_option_takes_the_last_value() {
    let env = Env::new();
    let a = env.path("a.json");
    let b = env.path("b.json");
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    env.run(
        "state-manager",
        &["--state-file", a, "init", "--state-file", b],
    )
    .ok();
    assert!(!std::path::Path::new(a).exists());
    assert!(std::path::Path::new(b).exists());
}

#[test]
fn debug_lines_go_to_stderr_only_when_asked() {
    let env = Env::new();
    env.init();
    let quiet = env.run("state-manager", &["read", ".phase"]).ok();
    assert!(!quiet.stderr.contains("debug:"), "{}", quiet.stderr);
    let state = env.state_file().display().to_string();
    for args in [
        &["--debug", "read", ".phase"][..],
        &["read", ".phase", "--debug"][..],
    ] {
        let loud = env.run("state-manager", args).ok();
        assert_eq!(loud.stdout, "\"pre-init\"\n", "stdout keeps only the data");
        assert!(
            loud.stderr.contains("state-manager: debug:"),
            "{}",
            loud.stderr
        );
        assert!(
            loud.stderr.contains(&state),
            "names the state file: {}",
            loud.stderr
        );
    }
    let mut c = env.cmd("state-manager");
    c.env("DEBUG", "1").args(["read", ".phase"]);
    let out = c.output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("debug:"));
    for bin in ["lock-manager", "error-recovery"] {
        let args: &[&str] = if bin == "lock-manager" {
            &["list", "--debug"]
        } else {
            &["status", "--debug"]
        };
        let run = env.run(bin, args).ok();
        assert!(
            run.stderr.contains(&format!("{bin}: debug:")),
            "{bin}: {}",
            run.stderr
        );
    }
}

#[test]
fn a_lock_wait_shows_in_the_debug_lines() {
    let env = Env::new();
    let owner = Owner::new();
    hold(&env, "res", &owner, &["0"]);
    let other = Owner::new();
    let run = env
        .run(
            "lock-manager",
            &["acquire", "res", "0.2", "--owner", &other.pid(), "--debug"],
        )
        .code(2);
    assert!(run.stderr.contains("debug:"), "{}", run.stderr);
    assert!(
        run.stderr.contains(&owner.pid()),
        "names the holder: {}",
        run.stderr
    );
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    let env = Env::new();
    env.init();
    // A stale lock shows in colour in the list.
    dead_record(&env, "old");
    let tty = on_a_tty(&env, false, "state-manager health; lock-manager list");
    assert!(tty.contains("\x1b["), "colour on a terminal: {tty:?}");
    let no_color = on_a_tty(&env, true, "state-manager health; lock-manager list");
    assert!(!no_color.contains("\x1b["), "NO_COLOR: {no_color:?}");
    let flag = on_a_tty(
        &env,
        false,
        "state-manager health --no-color; lock-manager --no-color list",
    );
    assert!(!flag.contains("\x1b["), "--no-color: {flag:?}");
    let mut c = env.cmd("state-manager");
    c.env_remove("NO_COLOR").arg("health");
    let piped = c.output().unwrap();
    assert!(
        !String::from_utf8_lossy(&piped.stdout).contains('\x1b'),
        "never into a pipe"
    );
}

#[test]
fn every_binary_s_help_ends_with_the_exit_code_table_of_code_all() {
    assert_eq!(HELP_TABLE, Code::help_table());
    let env = Env::new();
    for bin in BINARIES {
        for flag in ["-h", "--help"] {
            let help = env.run(bin, &[flag]).ok().stdout;
            assert!(help.contains(HELP_TABLE), "{bin} {flag}:\n{help}");
        }
    }
}

#[test]
fn the_readme_exit_code_table_is_code_all() {
    let readme = fs::read_to_string(repo_root().join("README.md")).unwrap();
    let rows: Vec<Vec<String>> = readme
        .lines()
        .skip_while(|l| !l.starts_with("## Exit codes"))
        .filter(|l| l.starts_with("| ") && l.chars().nth(2).is_some_and(|c| c.is_ascii_digit()))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .take_while(|r: &Vec<String>| r.len() == 3)
        .collect();
    let want: Vec<Vec<String>> = Code::ALL
        .iter()
        .map(|c| {
            vec![
                c.as_i32().to_string(),
                c.name().to_string(),
                c.meaning().to_string(),
            ]
        })
        .collect();
    assert_eq!(rows, want);
}

#[test]
fn completions_are_generated_for_each_binary_and_shell() {
    let env = Env::new();
    for bin in BINARIES {
        for shell in ["bash", "zsh", "fish"] {
            let script = env.run(bin, &["completions", shell]).ok().stdout;
            assert!(script.contains(bin), "{bin} {shell}");
            assert!(
                script.contains("state-file"),
                "{bin} {shell} completes the globals"
            );
        }
        let bash = env.run(bin, &["completions", "bash"]).ok().stdout;
        let path = env.path(&format!("{bin}.bash"));
        fs::write(&path, &bash).unwrap();
        let syntax = std::process::Command::new("bash")
            .arg("-n")
            .arg(&path)
            .status()
            .unwrap();
        assert!(syntax.success(), "{bin}: bash -n");
        let bad = env.run(bin, &["completions", "tcsh"]).code(1);
        assert!(
            bad.stderr.contains("possible values: bash, zsh, fish"),
            "{}",
            bad.stderr
        );
    }
    let sm = env
        .run("state-manager", &["completions", "bash"])
        .ok()
        .stdout;
    for sub in ["read", "list-backups", "verify-integrity", "audit"] {
        assert!(sm.contains(sub), "state-manager completes {sub}");
    }
}

#[test]
fn man_pages_are_generated_for_each_binary_and_subcommand() {
    let env = Env::new();
    for bin in BINARIES {
        let page = env.run(bin, &["man"]).ok().stdout;
        assert!(
            page.starts_with(".ie") || page.contains(".TH"),
            "{bin}: roff"
        );
        assert!(
            page.contains(&bin.replace('-', "\\-")),
            "{bin}: names itself"
        );
    }
    let dir = env.path("man1");
    fs::create_dir(&dir).unwrap();
    env.run("state-manager", &["man", "--dir", dir.to_str().unwrap()])
        .ok();
    let pages = env.list("man1");
    for page in [
        "state-manager.1",
        "state-manager-read.1",
        "state-manager-audit-recent.1",
    ] {
        assert!(pages.contains(&page.to_string()), "{page} in {pages:?}");
    }
    assert!(
        pages.iter().all(|p| p.ends_with(".1")),
        "no temp files left: {pages:?}"
    );
    let missing = env.path("nope");
    env.run(
        "state-manager",
        &["man", "--dir", missing.to_str().unwrap()],
    )
    .code(4)
    .one_line_error("state-manager");
}

#[test]
fn under_json_a_failure_is_also_a_json_object_on_stdout() {
    let env = Env::new();
    // A bad setting fails before any command runs.
    let run = env
        .run(
            "state-manager",
            &["status", "--json", "--lock-timeout", "soon"],
        )
        .code(4);
    let v: Value = serde_json::from_str(&run.stdout).expect("one JSON value on stdout");
    assert_eq!(v["error"]["code"], 4);
    assert_eq!(v["error"]["name"], "VALIDATION_FAILED");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("lock timeout")
    );
    assert!(
        run.stderr.starts_with("state-manager: "),
        "and once on stderr"
    );
    // Under --jsonl the error is one line, as the rest of the stream.
    for bin in ["lock-manager", "error-recovery"] {
        let run = env
            .run(bin, &["list", "--jsonl", "--lock-timeout", "soon"])
            .code(4);
        assert_eq!(run.stdout.lines().count(), 1, "{bin}: {}", run.stdout);
        let v: Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(v["error"]["name"], "VALIDATION_FAILED");
    }
    // Without --json, stdout stays empty.
    let plain = env
        .run("state-manager", &["status", "--lock-timeout", "soon"])
        .code(4);
    assert_eq!(plain.stdout, "");
}

/// The JSON type of a value, for comparing fields across outputs.
fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[test]
fn one_field_has_one_type_in_every_report() {
    use crate::harness::{dead_record, keys};
    use std::collections::BTreeMap;
    let env = Env::new();
    env.init();
    env.sm(&["set", ".phase", "build", "--string"]);
    env.sm(&["backup", "manual"]);
    env.run("error-recovery", &["checkpoint", "pre-deploy"])
        .ok();
    env.run("error-recovery", &["degrade", "disk", "[\"a\"]"])
        .ok();
    dead_record(&env, "gone");
    let owner = Owner::new();
    env.run(
        "lock-manager",
        &["acquire", "held", "0", "--owner", &owner.pid()],
    )
    .ok();
    let runs: &[(&str, &[&str])] = &[
        ("state-manager", &["status"]),
        ("state-manager", &["validate"]),
        ("state-manager", &["list-backups"]),
        ("state-manager", &["verify-integrity"]),
        ("state-manager", &["health"]),
        ("state-manager", &["diagnostics"]),
        ("state-manager", &["cleanup", "--dry-run"]),
        ("state-manager", &["repair", "--dry-run"]),
        ("state-manager", &["audit", "recent"]),
        ("state-manager", &["audit", "stats"]),
        ("state-manager", &["audit", "races"]),
        ("state-manager", &["audit", "history", "state"]),
        ("state-manager", &["audit", "missing", "state"]),
        ("lock-manager", &["list"]),
        ("lock-manager", &["status"]),
        ("lock-manager", &["check", "held"]),
        ("error-recovery", &["status"]),
        ("error-recovery", &["list"]),
        ("error-recovery", &["suggest", "3"]),
        ("error-recovery", &["is-degraded"]),
        // What the changes print.
        ("state-manager", &["set", ".phase", "next", "--string"]),
        (
            "state-manager",
            &["append", ".completedTasks", "t1", "--string"],
        ),
        ("state-manager", &["merge", "{\"x\":1}"]),
        ("state-manager", &["signal", "DONE"]),
        ("state-manager", &["backup", "mark"]),
        ("state-manager", &["migrate"]),
        ("state-manager", &["recover", "mark"]),
        ("state-manager", &["init"]),
        ("state-manager", &["export", "--output", "out.json"]),
        ("state-manager", &["import", "out.json", "--force"]),
        ("state-manager", &["repair"]),
        ("state-manager", &["cleanup", "--stale"]),
        ("state-manager", &["benchmark", "--operations", "2"]),
        ("lock-manager", &["clean"]),
        ("lock-manager", &["acquire", "other", "0"]),
        ("lock-manager", &["release", "other"]),
        ("error-recovery", &["checkpoint", "again"]),
        ("error-recovery", &["restore", "latest"]),
        ("error-recovery", &["cleanup", "0", "--keep", "1"]),
        ("error-recovery", &["recover-mode"]),
        ("error-recovery", &["degrade", "again"]),
        ("error-recovery", &["handle", "2"]),
        ("error-recovery", &["handle", "2", "--apply"]),
        (
            "state-manager",
            &["audit", "export", "--output", "audit.json"],
        ),
    ];
    // Key name → (type, where first seen). Null is "unknown", any type's twin.
    let mut seen: BTreeMap<String, (&'static str, String)> = BTreeMap::new();
    let mut clashes = Vec::new();
    for (bin, args) in runs {
        let mut all = args.to_vec();
        all.push("--json");
        let run = env.run(bin, &all);
        let v: Value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("{bin} {args:?}: not one JSON value ({e}): {}", run.stdout));
        // Audit events and the state document are data, not report fields.
        for (at, key, value) in keys(&v, &["detail", "event", "events", "document", "doc"]) {
            let t = type_of(value);
            // Keys of a map (health's checks by name, failures by exit code)
            // are names, not fields.
            let parent = at.rsplit('/').nth(1).unwrap_or_default();
            if t == "null" || ["checks", "by_exit", "by_op", "by_tool"].contains(&parent) {
                continue;
            }
            let here = format!("{bin} {} {at}", args.join(" "));
            match seen.get(key) {
                Some((first, there)) if *first != t => {
                    clashes.push(format!("'{key}': {first} at {there}, {t} at {here}"))
                }
                Some(_) => {}
                None => {
                    seen.insert(key.to_string(), (t, here));
                }
            }
        }
    }
    assert!(
        clashes.is_empty(),
        "fields with two types:\n{}",
        clashes.join("\n")
    );
}

#[test]
fn is_degraded_answers_in_json_too_and_its_exit_code_stays_the_answer() {
    let env = Env::new();
    env.init();
    let off = env
        .run("error-recovery", &["is-degraded", "--json", "-c"])
        .code(1);
    assert_eq!(off.stdout, "{\"degraded\":false}\n");
    env.run("error-recovery", &["degrade", "disk"]).ok();
    let on = env
        .run("error-recovery", &["is-degraded", "--json"])
        .code(0);
    assert_eq!(on.json()["degraded"], true);
    let plain = env.run("error-recovery", &["is-degraded"]).code(0);
    assert_eq!(plain.stdout, "", "prints nothing without --json");
}

#[test]
fn a_valued_global_option_given_last_without_its_value_is_a_usage_error() {
    let env = Env::new();
    env.init();
    for (bin, args) in [
        ("lock-manager", &["list", "--audit-log"][..]),
        ("state-manager", &["read", "--state-file"][..]),
        ("error-recovery", &["status", "--state-file"][..]),
        ("state-manager", &["set", ".note", "-s", "--owner"][..]),
    ] {
        let run = env.run(bin, args).code(1);
        assert!(
            run.stderr.contains(args[args.len() - 1]),
            "{bin} {args:?}: {}",
            run.stderr
        );
    }
    // Nothing was taken for the missing value: no file named after a subcommand.
    for name in ["list", "read", "status", ".note"] {
        assert!(!env.path(name).exists(), "{name} created");
    }
}

#[test]
fn the_json_flags_of_the_command_run_or_retry_execute_are_the_command_s() {
    let env = Env::new();
    for (bin, args) in [
        (
            "lock-manager",
            &["run", "job", "no-such-command-x", "--json"][..],
        ),
        (
            "lock-manager",
            &["run", "job", "--", "no-such-command-x", "--json"][..],
        ),
        (
            "error-recovery",
            &[
                "retry",
                "--attempts",
                "1",
                "no-such-command-x",
                "-c",
                "--jsonl",
            ][..],
        ),
    ] {
        let run = env.run(bin, args).code(5);
        assert_eq!(run.stdout, "", "{bin} {args:?} prints no JSON of its own");
        assert!(run.stderr.contains("no-such-command-x"), "{}", run.stderr);
    }
}

#[test]
fn a_bundle_of_run_s_short_flags_ending_in_one_that_takes_a_value() {
    let env = Env::new();
    let run = env
        .run(
            "lock-manager",
            &["run", "-sw", "5", "job", "--debug", "echo", "child"],
        )
        .ok();
    assert_eq!(run.stdout, "child\n");
    assert!(
        run.stderr.contains("lock-manager: debug:"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_legacy_list_json_prints_its_failure_as_json_too() {
    let env = Env::new();
    env.init();
    fs::write(env.path(".checkpoints"), "not a folder").unwrap();
    let run = env.run("error-recovery", &["list", "json"]).code(1);
    let v: Value = serde_json::from_str(&run.stdout).expect("one JSON value");
    assert_eq!(v["error"]["code"], 1);
}

#[test]
fn a_debug_line_that_cannot_be_written_changes_nothing() {
    let env = Env::new();
    env.init();
    let mut c = env.cmd("state-manager");
    c.args(["set", ".note", "-s", "kept", "--debug"])
        .stderr(fs::File::create("/dev/full").unwrap());
    assert_eq!(c.status().unwrap().code(), Some(0));
    assert_eq!(env.state()["note"], "kept");
}

#[test]
fn every_message_carries_the_name_of_the_binary_that_printed_it() {
    let env = Env::new();
    env.init();
    env.sm(&["set", ".phase", "a", "--string"]);
    fs::write(env.state_file(), b"{").unwrap();
    let handled = env.run("error-recovery", &["handle", "3", "--apply"]).ok();
    assert!(
        !handled.stderr.contains("state-manager:"),
        "{}",
        handled.stderr
    );
    assert!(
        handled.stdout.contains("kept the damaged state"),
        "{}",
        handled.stdout
    );
    fs::write(env.state_file(), b"{").unwrap();
    let recovered = env.run("state-manager", &["recover"]).ok();
    assert!(
        recovered
            .stderr
            .contains("state-manager: kept the corrupt state at"),
        "{}",
        recovered.stderr
    );
}
