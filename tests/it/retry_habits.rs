//! Issue 15: `retry` fits commands that are not wfstate's (curl's 6 and 7
//! are retried; wfstate's own 4, 6 and 7 are not), says between attempts
//! what happened when someone watches, every suggestion names a command
//! that exists with those flags, and the review commands show progress
//! over a big log on a terminal.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::harness::{Env, Run, bin_dir, bin_path, er, on_a_tty, repo_root};

const ER: &str = "error-recovery";

/// An executable script `name` in the root that appends its attempt number
/// to `NAME.attempts` and exits `codes[n-1]` on attempt n (the last code
/// on every later attempt).
fn flaky(env: &Env, name: &str, codes: &[i32]) -> PathBuf {
    let script = env.path(name);
    let mut cases = String::new();
    for (i, c) in codes.iter().enumerate() {
        cases.push_str(&format!("{}) exit {c};; ", i + 1));
    }
    fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"${{WFSTATE_ATTEMPT:-shim}}\" >> '{log}'\ncase \"$WFSTATE_ATTEMPT\" in {cases}*) exit {last};; esac\n",
            log = attempts_log(env, name).display(),
            last = codes.last().unwrap()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    script
}

fn attempts_log(env: &Env, name: &str) -> PathBuf {
    env.path(&format!("{name}.attempts"))
}

/// How many times script `name` ran.
fn ran(env: &Env, name: &str) -> usize {
    fs::read_to_string(attempts_log(env, name))
        .unwrap_or_default()
        .lines()
        .count()
}

/// A PATH with the root (for the scripts) and the built binaries first.
fn path_with_root(env: &Env) -> String {
    format!(
        "{}:{}:/usr/bin:/bin",
        env.root().display(),
        bin_dir().display()
    )
}

/// `error-recovery ARGS` with [`path_with_root`] as PATH.
fn retry(env: &Env, args: &[&str]) -> Run {
    let mut c = env.cmd(ER);
    c.env("PATH", path_with_root(env)).args(args);
    Run::of(c.output().unwrap())
}

/// The retry attempt events of the audit log (not the outcome events).
fn attempt_events(env: &Env) -> Vec<Value> {
    env.audit_events()
        .into_iter()
        .filter(|e| e["tool"] == ER && e["op"] == "retry" && e["detail"]["attempt"].is_number())
        .collect()
}

/// The last retry outcome event.
fn outcome(env: &Env) -> Value {
    env.audit_events()
        .into_iter()
        .rfind(|e| e["tool"] == ER && e["op"] == "retry" && e["detail"]["outcome"].is_string())
        .expect("a retry outcome event")
}

#[test]
fn a_command_that_is_not_wfstate_s_is_retried_on_every_failing_code() {
    // See issue 15: curl's 6 (cannot resolve) and 7 (cannot connect) are
    // its most common transient failures, and were never retried.
    let env = Env::new();
    for code in [1, 4, 6, 7, 75] {
        let name = format!("curl{code}");
        flaky(&env, &name, &[code, code, 0]);
        retry(&env, &["retry", "--delay", "0", "--", &name, "-s", "url"]).ok();
        assert_eq!(ran(&env, &name), 3, "exit {code} through PATH");
        assert_eq!(outcome(&env)["detail"]["codes"], "any");
        // The same by its path, and exhausted: the last code comes back.
        let again = format!("again{code}");
        let script = flaky(&env, &again, &[code]);
        retry(
            &env,
            &["retry", "--delay", "0", "--", script.to_str().unwrap()],
        )
        .code(code)
        .stderr_has("failed 3 attempt(s)");
        assert_eq!(ran(&env, &again), 3, "exit {code} by path");
    }
    // A link named like a wfstate binary is judged by what it leads to.
    flaky(&env, "fetch", &[6, 0]);
    std::os::unix::fs::symlink(env.path("fetch"), env.path("lock-manager")).unwrap();
    retry(&env, &["retry", "--delay", "0", "--", "./lock-manager"]).ok();
    assert_eq!(ran(&env, "fetch"), 2);
}

#[test]
fn wfstate_s_own_binaries_keep_4_and_6_final_however_they_are_called() {
    let env = Env::new();
    // Exit 4, found through PATH.
    retry(
        &env,
        &[
            "retry",
            "--delay",
            "0",
            "--",
            "lock-manager",
            "acquire",
            "bad name",
        ],
    )
    .code(4)
    .stderr_has("not retried")
    .stderr_has("it is a wfstate binary");
    assert_eq!(attempt_events(&env).len(), 1);
    assert_eq!(outcome(&env)["detail"]["outcome"], "not-retried");
    assert_eq!(outcome(&env)["detail"]["codes"], "wfstate");

    // Exit 6 (a state file that is a symlink out of the root), by path and
    // through a link with another name.
    std::os::unix::fs::symlink("/etc/passwd", env.path("out.json")).unwrap();
    std::os::unix::fs::symlink(bin_path("state-manager"), env.path("sm")).unwrap();
    let sm = bin_path("state-manager");
    for program in [sm.to_str().unwrap(), "./sm"] {
        let before = attempt_events(&env).len();
        retry(
            &env,
            &[
                "retry",
                "--delay",
                "0",
                "--",
                program,
                "--state-file",
                "./out.json",
                "read",
            ],
        )
        .code(6)
        .stderr_has("not retried");
        assert_eq!(attempt_events(&env).len(), before + 1, "{program}");
    }

    // Other codes of ours are still retried: no state file is exit 1.
    let before = attempt_events(&env).len();
    retry(
        &env,
        &[
            "retry",
            "--delay",
            "0",
            "--",
            "state-manager",
            "--state-file",
            "./none.json",
            "read",
        ],
    )
    .code(1)
    .stderr_has("failed 3 attempt(s)");
    assert_eq!(attempt_events(&env).len(), before + 3);
}

#[test]
fn codes_wfstate_and_codes_any_say_whose_codes_they_are() {
    let env = Env::new();
    for code in [4, 6, 7] {
        let name = format!("speaks{code}");
        flaky(&env, &name, &[code, 0]);
        retry(
            &env,
            &["retry", "--codes", "wfstate", "--delay", "0", "--", &name],
        )
        .code(code)
        .stderr_has("--codes wfstate");
        assert_eq!(ran(&env, &name), 1, "exit {code}");
    }
    let before = attempt_events(&env).len();
    retry(
        &env,
        &[
            "retry",
            "--codes",
            "any",
            "--delay",
            "0",
            "--",
            "lock-manager",
            "acquire",
            "bad name",
        ],
    )
    .code(4);
    assert_eq!(attempt_events(&env).len(), before + 3);
    assert_eq!(outcome(&env)["detail"]["codes"], "any");
    // An unknown value is a usage error that names the choices.
    retry(&env, &["retry", "--codes", "curl", "--", "true"])
        .code(1)
        .stderr_has("wfstate");
}

#[test]
fn no_retry_on_leaves_out_the_codes_it_lists_and_refuses_retry_on_beside_it() {
    let env = Env::new();
    flaky(&env, "six", &[6, 0]);
    retry(
        &env,
        &["retry", "--no-retry-on", "6", "--delay", "0", "--", "six"],
    )
    .code(6)
    .stderr_has("in --no-retry-on");
    assert_eq!(ran(&env, "six"), 1);
    // Codes it does not list are still retried.
    flaky(&env, "seven", &[7, 0]);
    retry(
        &env,
        &["retry", "--no-retry-on", "6", "--delay", "0", "--", "seven"],
    )
    .ok();
    assert_eq!(ran(&env, "seven"), 2);
    // Ranges, as --retry-on.
    for code in [5, 6, 7, 75] {
        let name = format!("range{code}");
        flaky(&env, &name, &[code, 0]);
        retry(
            &env,
            &[
                "retry",
                "--no-retry-on",
                "5-7,75",
                "--delay",
                "0",
                "--",
                &name,
            ],
        )
        .code(code);
        assert_eq!(ran(&env, &name), 1, "exit {code}");
    }
    // Also for wfstate's binaries: 1 (no state) is then final.
    retry(
        &env,
        &[
            "retry",
            "--no-retry-on",
            "1",
            "--delay",
            "0",
            "--",
            "state-manager",
            "--state-file",
            "./none.json",
            "read",
        ],
    )
    .code(1)
    .stderr_has("in --no-retry-on");
    assert_eq!(outcome(&env)["detail"]["attempts"], 1);
    // Refused before anything runs: both rules at once, or a bad list.
    flaky(&env, "never", &[0]);
    for bad in [
        &["--retry-on", "1", "--no-retry-on", "6"][..],
        &["--no-retry-on", "x"],
        &["--no-retry-on", "0"],
        &["--no-retry-on", "9-3"],
    ] {
        let mut args = vec!["retry"];
        args.extend_from_slice(bad);
        args.extend(["--", "never"]);
        retry(&env, &args).code(4).one_line_error(ER);
    }
    assert_eq!(ran(&env, "never"), 0);
}

#[test]
fn between_attempts_a_terminal_is_told_the_attempt_the_exit_and_the_next_wait() {
    let env = Env::new();
    flaky(&env, "down", &[7]);
    let cmdline = "error-recovery retry --attempts 3 --delay 0.01 -- ./down";
    let tty = on_a_tty(&env, true, cmdline);
    for n in [1, 2] {
        assert!(
            tty.contains(&format!("attempt {n}/3 failed (exit 7); next in ")),
            "{tty}"
        );
    }
    assert!(
        !tty.contains("attempt 3/3"),
        "no wait after the last: {tty}"
    );
    assert!(!tty.contains("retrying in"), "{tty}");
    // Not a terminal: the lines it always printed, unchanged.
    let piped = er(
        &env,
        &[
            "retry",
            "--attempts",
            "3",
            "--delay",
            "0.01",
            "--",
            "./down",
        ],
    )
    .code(7)
    .stderr_has("attempt 1 of 3 exited 7; retrying in ")
    .stderr_has("attempt 2 of 3 exited 7; retrying in ");
    assert!(!piped.stderr.contains("failed (exit"), "{}", piped.stderr);
    // --verbose asks for the terminal's lines anywhere.
    er(
        &env,
        &[
            "retry",
            "--verbose",
            "--attempts",
            "2",
            "--delay",
            "0.01",
            "--",
            "./down",
        ],
    )
    .code(7)
    .stderr_has("attempt 1/2 failed (exit 7); next in ");
}

/// Runs `script` in bash with lib/error-recovery.sh sourced from the repo,
/// the root and the binaries on PATH.
fn shim(env: &Env, script: &str) -> Run {
    let mut c = Command::new("bash");
    env.clean_env(&mut c);
    c.env("PATH", path_with_root(env))
        .env("WFSTATE_BIN", bin_dir())
        .arg("-c")
        .arg(format!(
            "source '{}'; {script}",
            repo_root().join("lib/error-recovery.sh").display()
        ));
    Run::of(c.output().unwrap())
}

#[test]
fn the_shim_retries_a_foreign_command_s_6_and_keeps_our_codes_final() {
    let env = Env::new();
    // A command that is not ours: its 6 is retried.
    flaky(&env, "curl", &[6, 6, 0]);
    let r = shim(&env, "retry_with_backoff curl 5 0.01 -s url; echo rc=$?").ok();
    assert_eq!(r.stdout, "rc=0\n");
    assert_eq!(ran(&env, "curl"), 3);
    // One of our binaries: its 4 is final.
    let r = shim(
        &env,
        "retry_with_backoff lock-manager 5 0.01 acquire 'bad name'; echo rc=$?",
    )
    .ok();
    assert_eq!(r.stdout, "rc=4\n");
    let acquires = env
        .audit_events()
        .into_iter()
        .filter(|e| e["tool"] == "lock-manager" && e["op"] == "acquire")
        .count();
    assert_eq!(acquires, 1);
    // A function of the script speaks our codes: its 6 is final.
    let r = shim(
        &env,
        "n=0; f() { n=$((n+1)); return 6; }; retry_with_backoff f 5 0.01; echo rc=$? n=$n",
    )
    .ok();
    assert_eq!(r.stdout, "rc=6 n=1\n");
}

/// Every `state-manager …`, `lock-manager …` and `error-recovery …` command
/// named in `text`: the binary and its words, up to a comment, a closing
/// quote or bracket, `--` before the user's command, or a `<placeholder>`.
fn named_commands(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut rest = line;
        while let Some((at, bin)) = ["state-manager", "lock-manager", "error-recovery"]
            .iter()
            .filter_map(|b| rest.find(b).map(|i| (i, *b)))
            .min()
        {
            let before = rest[..at].chars().last();
            let after = &rest[at + bin.len()..];
            rest = after;
            if before.is_some_and(|c| !matches!(c, ' ' | '\'' | '`' | '(' | '"'))
                || !after.starts_with(' ')
            {
                continue;
            }
            let end = after
                .find(['#', '\'', '`', ')', ';', '"'])
                .unwrap_or(after.len());
            let words: Vec<String> = after[..end]
                .split_whitespace()
                .take_while(|w| *w != "--" && !w.starts_with('<'))
                .map(str::to_owned)
                .collect();
            out.push((bin.to_string(), words));
        }
    }
    out
}

#[test]
fn every_command_a_suggestion_names_exists_with_those_flags() {
    // See issue 15: `handle 9` suggested `run --timeout`, which exits 2.
    let env = Env::new();
    let mut checked = 0;
    for code in 0..=10 {
        let c = code.to_string();
        let json = er(&env, &["suggest", &c, "--json"]).ok().json();
        let text = er(&env, &["handle", &c]).code(code).stdout;
        let mut all = vec![json["meaning"].as_str().unwrap().to_string(), text];
        for s in json["steps"].as_array().unwrap() {
            all.push(s.as_str().unwrap().to_string());
        }
        for (bin, words) in named_commands(&all.join("\n")) {
            assert!(!words.is_empty(), "exit {code}: a bare {bin}");
            let mut args: Vec<&str> = words.iter().map(String::as_str).collect();
            args.push("--help");
            let r = env.run(&bin, &args);
            assert_eq!(
                r.code,
                0,
                "exit {code}: `{bin} {}` does not parse: {}",
                words.join(" "),
                r.stderr
            );
            assert!(r.stdout.contains("Usage:"), "{bin} {args:?}: {}", r.stdout);
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} commands found");
}

#[test]
fn the_timeout_suggestion_names_the_command_that_exits_9_and_says_run_exits_2() {
    let env = Env::new();
    let s = er(&env, &["suggest", "9", "--json"]).ok().json();
    let steps: Vec<&str> = s["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        steps
            .iter()
            .any(|s| s.starts_with("error-recovery retry --timeout ")),
        "{steps:?}"
    );
    let meaning = s["meaning"].as_str().unwrap();
    assert!(meaning.contains("exit 2"), "{meaning}");
    // And they do: retry's deadline is 9, run's lock wait is 2.
    er(&env, &["retry", "--timeout", "0.2", "--", "sleep", "30"]).code(9);
    let holder = crate::harness::Owner::new();
    crate::harness::hold(&env, "busy", &holder, &[]);
    env.run("lock-manager", &["run", "-w", "0.2", "busy", "--", "true"])
        .code(2);
}

/// The lines of `text` split into fields as awk splits them.
fn fields(text: &str) -> Vec<Vec<&str>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect()
}

#[test]
fn checkpoint_and_audit_tables_have_one_word_titles_and_drop_them_under_no_header() {
    let env = Env::new();
    env.init();
    er(&env, &["checkpoint", "pre-deploy"]).ok();
    er(&env, &["checkpoint", "second", "build"]).ok();
    // `list`: a title per column, as many fields in each row, none empty.
    let table = er(&env, &["list"]).ok().stdout;
    let rows = fields(&table);
    assert_eq!(
        rows[0],
        [
            "ID",
            "OPERATION",
            "PHASE",
            "MADE",
            "REVISION",
            "SIZE",
            "FILES",
            "VALID"
        ]
    );
    assert_eq!(rows.len(), 3, "{table}");
    for r in &rows[1..] {
        assert_eq!(r.len(), rows[0].len(), "{table}");
        assert!(r[0].starts_with("checkpoint-"), "{table}");
    }
    let bare = er(&env, &["--no-header", "list"]).ok().stdout;
    assert_eq!(fields(&bare), rows[1..].to_vec(), "{bare}");
    let after = er(&env, &["list", "--no-header"]).ok().stdout;
    assert_eq!(after, bare);

    // The audit tables: the header is one word per column, and goes.
    for (args, title) in [
        (&["audit", "recent"][..], "TIME"),
        (&["audit", "stats"], "TOOL"),
        (&["audit", "stats", "--by", "op"], "OP"),
        (&["audit", "history", ".workflow-state.json"], "TIME"),
    ] {
        let with = env.run("state-manager", args).ok().stdout;
        let header = with
            .lines()
            .find(|l| l.starts_with(title))
            .unwrap_or_else(|| panic!("{args:?}: no header: {with}"));
        let titles = header.split_whitespace().count();
        let table_rows: Vec<&str> = with
            .lines()
            .skip_while(|l| !l.starts_with(title))
            .skip(1)
            .filter(|l| !l.is_empty())
            .collect();
        assert!(!table_rows.is_empty(), "{args:?}: {with}");
        if title != "TIME" || args[1] == "recent" {
            for r in &table_rows {
                assert_eq!(r.split_whitespace().count(), titles, "{args:?}: {with}");
            }
        }
        let mut no_header = args.to_vec();
        no_header.push("--no-header");
        let without = env.run("state-manager", &no_header).ok().stdout;
        assert!(
            !without.lines().any(|l| l.starts_with(title)),
            "{args:?}: {without}"
        );
        for r in &table_rows {
            assert!(without.contains(r.split_whitespace().next().unwrap()));
        }
    }
}
/// A log of about `mib` MiB of valid events.
fn big_log(path: &Path, mib: usize) {
    let line = crate::harness::event(serde_json::json!({})).to_string();
    let n = mib * (1 << 20) / (line.len() + 1) + 1;
    let mut text = String::with_capacity(n * (line.len() + 1));
    for _ in 0..n {
        text.push_str(&line);
        text.push('\n');
    }
    fs::write(path, text).unwrap();
}

/// The size of a log and its rotated files, as the progress line shows it.
fn shown_size(env: &Env) -> String {
    let mut bytes = 0;
    for p in [env.audit_log(), env.path(".workflow-audit.jsonl.1")] {
        bytes += fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    }
    format!("of {:.1} MB)", bytes as f64 / 1e6)
}

#[test]
fn reviews_of_a_big_log_show_progress_on_a_terminal_only() {
    let env = Env::new();
    // 18 MiB in all, over the live log and a rotated file (both are read).
    big_log(&env.path(".workflow-audit.jsonl.1"), 9);
    big_log(&env.audit_log(), 9);
    let size = shown_size(&env);
    let tty = on_a_tty(&env, true, "state-manager audit stats > stats.out");
    assert!(tty.contains("reading audit log: "), "{tty:?}");
    assert!(tty.contains(&size), "{size} in {tty:?}");
    // Redrawn in place and erased at the end: the last thing drawn is the erase.
    assert!(tty.contains('%') && tty.contains('\r'), "{tty:?}");
    assert!(
        tty.trim_end_matches(['\n', '\r']).ends_with("\r\x1b[K"),
        "{tty:?}"
    );
    let report = fs::read_to_string(env.path("stats.out")).unwrap();
    assert!(report.starts_with("events "), "{report}");
    assert!(!report.contains("reading audit log"), "on stdout: {report}");
    // Every review that reads the log shows it. (`recent` reads from the
    // end back and stops at its n-th match: `-n 1` reads one block and has
    // nothing to show; one that matches nothing reads the whole log back.)
    for review in [
        "audit recent -n 1 --op no-such-op",
        "audit races",
        "audit history deploy",
        "audit export -o export.json",
        "audit stats --json",
    ] {
        let tty = on_a_tty(&env, true, &format!("state-manager {review} > review.out"));
        assert!(tty.contains("reading audit log: "), "{review}: {tty:?}");
        let out = fs::read_to_string(env.path("review.out")).unwrap();
        assert!(!out.contains("reading audit log"), "{review}: {out}");
    }
    // Not a terminal: nothing on stderr.
    let piped = env.run("state-manager", &["audit", "stats"]).ok();
    assert!(
        !piped.stderr.contains("reading audit log"),
        "{}",
        piped.stderr
    );
    assert!(!piped.stdout.contains("reading audit log"));
}

#[test]
fn reviews_of_a_small_log_show_no_progress_even_on_a_terminal() {
    let env = Env::new();
    big_log(&env.audit_log(), 2);
    let tty = on_a_tty(&env, true, "state-manager audit stats > stats.out");
    assert!(!tty.contains("reading audit log"), "{tty:?}");
    let report = fs::read_to_string(env.path("stats.out")).unwrap();
    assert!(report.starts_with("events "), "{report}");
}
