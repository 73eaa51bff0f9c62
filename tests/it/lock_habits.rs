//! lock-manager fits the habits of flock(1) and make (issue 15): flock's
//! spellings on `run`, the flag twins of `acquire`, misplaced arguments,
//! a warning for an owner that is not a shell (with a real `make -j`),
//! SIGINT/SIGTERM during a wait, feedback on a terminal, the `list` table
//! for `awk`, and read-only commands that create nothing.
//!
//! What holds, waits or creates locks runs on both backends (issue 14): the
//! `fn NAME(env: Env)` below, run by [`both!`] as `lock_habits::file::NAME`
//! and `lock_habits::redis::NAME`. The `#[test]`s are about parsing the
//! command line and the owner warning, which no backend is asked about.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Output, Stdio};

use serde_json::Value;

use crate::harness::{Env, Owner, bin_dir, both, hold};

both!(
    run_nonblock_fails_at_once_with_2_or_the_conflict_code,
    run_takes_x_e_s_o_and_verbose,
    run_under_make_j4_keeps_recipes_apart,
    a_signal_during_a_wait_ends_it_with_128_plus_n_and_withdraws_the_request,
    an_ignored_sigint_is_said_under_verbose_and_the_wait_goes_on,
    a_long_wait_on_a_terminal_says_who_holds_the_lock_and_when_it_was_had,
    a_state_manager_write_waiting_on_a_terminal_says_so_too,
    a_wait_says_nothing_when_stderr_is_not_a_terminal,
    acquire_takes_flag_twins_of_timeout_and_type,
    read_only_lock_commands_create_no_locks_folder,
    list_has_single_word_titles_and_honours_no_header,
);

const LM: &str = "lock-manager";

// --- flock(1) spellings on `run` ------------------------------------------

// One backend: parsing `-c`, which no backend is asked about.
#[test]
fn run_takes_flocks_c_shell_command() {
    let env = Env::new();
    env.run(
        LM,
        &["run", "x", "-c", "echo \"in $WFSTATE_LOCK_NAME\"; exit 3"],
    )
    .code(3)
    .stdout_has("in x");
    env.run(
        LM,
        &["run", "x", "--command", "test -n \"$LOCK_OWNER_PID\""],
    )
    .ok();
    // -c takes one command line, not a command and its arguments too.
    env.run(LM, &["run", "x", "-c", "true", "extra"]).code(1);
}

fn run_nonblock_fails_at_once_with_2_or_the_conflict_code(env: Env) {
    let holder = Owner::new();
    hold(&env, "x", &holder, &["0"]);
    for args in [&["-n"][..], &["--nonblock"][..]] {
        let mut all = vec!["run", "x"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--", "true"]);
        env.run(LM, &all)
            .code(2)
            .stderr_has("held exclusive by pid");
    }
    env.run(LM, &["run", "x", "-n", "-E", "9", "--", "true"])
        .code(9);
    // Bundled, as flock users write it.
    env.run(LM, &["run", "x", "-nE", "7", "--", "true"]).code(7);
    // -n and -w together are contradictory: refused, not one picked.
    env.run(LM, &["run", "y", "-n", "-w", "3", "--", "true"])
        .code(4)
        .stderr_has("-n/--nonblock and -w/--timeout both given");
    drop(holder);
    env.run(LM, &["run", "x", "-n", "--", "true"]).ok();
}

fn run_takes_x_e_s_o_and_verbose(env: Env) {
    for flag in ["-x", "-e", "--exclusive", "-o", "--close"] {
        env.run(LM, &["run", "x", flag, "--", "true"]).ok();
    }
    // -s really takes a shared lock: a shared holder does not block it.
    let reader = Owner::new();
    hold(&env, "s", &reader, &["0", "shared"]);
    env.run(LM, &["run", "s", "-s", "-n", "--", "true"]).ok();
    env.run(LM, &["run", "s", "-x", "-n", "--", "true"]).code(2);
    // The last of -s / -x wins, as in flock(1).
    env.run(LM, &["run", "s", "-x", "-s", "-n", "--", "true"])
        .ok();
    env.run(LM, &["run", "x", "--verbose", "--", "echo", "ran"])
        .ok()
        .stdout_has("ran")
        .stderr_has("lock-manager: getting lock 'x' took ")
        .stderr_has("lock-manager: executing echo");
}

// --- make ------------------------------------------------------------------

/// Runs `make ARGS` in `env`'s root with the binaries on PATH, killed after
/// 60 s (a hang fails the test instead of stalling the suite).
fn make(env: &Env, makefile: &str, args: &[&str]) -> Output {
    fs::write(env.path("Makefile"), makefile).unwrap();
    let mut c = Command::new("timeout");
    env.clean_env(&mut c);
    c.env("PATH", format!("{}:/usr/bin:/bin", bin_dir().display()))
        .args(["-k", "5", "60", "make", "--no-print-directory"])
        .args(args);
    c.output().expect("make")
}

/// A recipe body that fails, saying OVERLAP, if another one is inside at
/// the same time (`mkdir` is atomic, so only one recipe can own `inside`),
/// staying inside for `secs`.
fn critical(secs: &str) -> String {
    format!("mkdir inside || {{ echo OVERLAP; exit 1; }}; sleep {secs}; rmdir inside")
}

// See: issue 15 — under make -j2 two recipes were inside one exclusive lock.
// One backend: the owner warning is decided before any backend is asked.
#[test]
fn acquire_under_make_warns_that_make_is_the_owner() {
    let env = Env::new();
    let makefile = "all: a b\n\
        a b:\n\
        \tlock-manager acquire res 10\n\
        \t@echo $@ done\n\
        \tlock-manager release res\n";
    let out = make(&env, makefile, &["-j2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("lock-manager: warning: the owner of lock 'res' is pid"))
        .collect();
    assert_eq!(warnings.len(), 2, "{stderr}");
    assert!(
        warnings[0].contains("(make), which is not a shell"),
        "{stderr}"
    );
    assert!(
        warnings[0].contains("lock-manager run res -- CMD"),
        "{stderr}"
    );
    assert!(warnings[0].contains("--owner"), "{stderr}");
}

// One backend: the owner warning is decided before any backend is asked.
#[test]
fn acquire_under_xargs_or_timeout_warns_too() {
    let env = Env::new();
    let lm = bin_dir().join(LM);
    let lm = lm.to_str().unwrap();
    for (parent, line) in [
        ("xargs", format!("echo one | xargs {lm} acquire")),
        ("timeout", format!("timeout 10 {lm} acquire two 0")),
    ] {
        let mut c = Command::new("bash");
        env.clean_env(&mut c);
        c.arg("-c").arg(&line);
        let r = crate::harness::Run::of(c.output().unwrap()).ok();
        assert!(
            r.stderr
                .contains(&format!("({parent}), which is not a shell")),
            "{line}: {}",
            r.stderr
        );
    }
}

fn run_under_make_j4_keeps_recipes_apart(env: Env) {
    let targets = ["t1", "t2", "t3", "t4", "t5", "t6"];
    let mut makefile = format!("all: {}\n", targets.join(" "));
    makefile.push_str(&format!(
        "{}:\n\t@lock-manager run res -w 30 -- sh -c '{}'\n",
        targets.join(" "),
        critical("0.05")
    ));
    let out = make(&env, &makefile, &["-j4"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(!stdout.contains("OVERLAP"), "{stdout}");
    // `run` names its holder itself: no warning about make.
    assert!(!stderr.contains("warning"), "{stderr}");
    // The same body without the lock does overlap: the detector works.
    // (Inside long enough that four recipes started at once surely meet.)
    let bare = format!(
        "all: {}\n{}:\n\t@sh -c '{}'\n",
        targets.join(" "),
        targets.join(" "),
        critical("1")
    );
    let out = make(&env, &bare, &["-j4", "-k"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("OVERLAP"),
        "without a lock the recipes should have met"
    );
}

// One backend: the owner warning is decided before any backend is asked.
#[test]
fn an_owner_given_or_a_shell_owner_gets_no_warning() {
    let env = Env::new();
    let owner = Owner::new();
    let r = env
        .run(LM, &["acquire", "a", "0", "--owner", &owner.pid()])
        .ok();
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
    let mut c = env.cmd(LM);
    c.env("LOCK_OWNER_PID", owner.pid())
        .args(["acquire", "b", "0"]);
    let r = crate::harness::Run::of(c.output().unwrap()).ok();
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
    // From a shell (bash runs it as a child here, not by exec).
    let mut c = Command::new("bash");
    env.clean_env(&mut c);
    c.arg("-c").arg(format!(
        "{} acquire c 0; {} release c",
        bin_dir().join(LM).display(),
        bin_dir().join(LM).display()
    ));
    let r = crate::harness::Run::of(c.output().unwrap()).ok();
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
    // The test process itself is no shell: warned, and the lock still taken.
    env.run(LM, &["acquire", "d", "0"])
        .ok()
        .stderr_has("which is not a shell");
    env.run(LM, &["check", "d"]).ok();
}

// --- signals during a wait ---------------------------------------------------

/// The exit status as a shell reads it: the code, or 128+N for signal N.
fn shell_code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().expect("a code or a signal"))
}

/// Spawns `lock-manager ARGS` with stderr piped and SIGINT as `sigint`
/// (`SIG_DFL`, or `SIG_IGN` as a shell gives its background jobs): a test
/// harness started in the background may itself have inherited it ignored.
fn spawn_waiter(env: &Env, args: &[&str], sigint: libc::sighandler_t) -> Child {
    let mut c = env.cmd(LM);
    c.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        c.pre_exec(move || {
            libc::signal(libc::SIGINT, sigint);
            Ok(())
        });
    }
    c.spawn().expect("spawn lock-manager")
}

/// Reads `child`'s stderr until a line holds `text`; returns what was read
/// (the child's own timeout bounds the wait).
fn read_until(child: &mut Child, text: &str) -> String {
    let mut reader = BufReader::new(child.stderr.as_mut().expect("piped stderr"));
    let mut seen = String::new();
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap_or(0) > 0 {
        seen.push_str(&line);
        if line.contains(text) {
            return seen;
        }
        line.clear();
    }
    panic!("stderr ended without {text:?}: {seen}");
}

/// The record of lock `name` as `list json` shows it (on any backend).
fn record(env: &Env, name: &str) -> Value {
    let list = env.run(LM, &["list", "json"]).ok().json();
    list.as_array()
        .expect("list json prints an array")
        .iter()
        .find(|r| r["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no lock {name} in {list}"))
}

// See: issue 15 — a killed waiter's entry stayed until a later writer swept it.
fn a_signal_during_a_wait_ends_it_with_128_plus_n_and_withdraws_the_request(env: Env) {
    let holder = Owner::new();
    hold(&env, "res", &holder, &["0"]);
    let me = Owner::new();
    let cases: [(&[&str], libc::c_int); 4] = [
        (
            &["acquire", "res", "30", "-v", "--owner", &me.pid()],
            libc::SIGINT,
        ),
        (
            &[
                "acquire",
                "res",
                "--timeout",
                "30",
                "--verbose",
                "--owner",
                &me.pid(),
            ],
            libc::SIGTERM,
        ),
        (
            &["run", "res", "-w", "30", "--verbose", "--", "true"],
            libc::SIGINT,
        ),
        (
            &["run", "res", "-w", "30", "--verbose", "--", "true"],
            libc::SIGHUP,
        ),
    ];
    for (args, sig) in cases {
        let mut waiter = spawn_waiter(&env, args, libc::SIG_DFL);
        read_until(&mut waiter, "waiting for lock 'res' held by pid");
        // Queued: an exclusive request is in the record, ahead of new readers.
        assert_eq!(record(&env, "res")["waiters"].as_array().unwrap().len(), 1);
        unsafe { libc::kill(waiter.id() as libc::pid_t, sig) };
        let status = waiter.wait().unwrap();
        let mut rest = String::new();
        waiter
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut rest)
            .unwrap();
        assert_eq!(shell_code(status), 128 + sig, "{args:?}: {rest}");
        assert!(rest.contains("interrupted by SIG"), "{args:?}: {rest}");
        // Left at once, by the waiter itself: no later writer needed.
        let rec = record(&env, "res");
        let waiters = rec.get("waiters").and_then(Value::as_array);
        assert!(waiters.is_none_or(Vec::is_empty), "{args:?}: {rec}");
        assert_eq!(
            rec["holders"][0]["pid"].as_u64(),
            Some(u64::from(holder.0.id()))
        );
        let status = env.run(LM, &["status", "--json"]).ok().json();
        assert_eq!(status["waiting"], 0, "{status}");
    }
    // The audit log tells an interruption from a failure.
    let events = env
        .run(
            "state-manager",
            &["audit", "recent", "-n", "1000", "--json", "-c"],
        )
        .ok()
        .json();
    let events = events.as_array().expect("an array");
    events.iter().for_each(crate::harness::assert_audit_event);
    let interrupted: Vec<&Value> = events
        .iter()
        .filter(|e| e["outcome"] == "interrupted")
        .collect();
    assert!(
        interrupted
            .iter()
            .any(|e| e["op"] == "acquire" && e["exit_code"] == 130)
    );
    assert!(
        interrupted
            .iter()
            .any(|e| e["op"] == "run" && e["exit_code"] == 129)
    );
    crate::harness::assert_audit_valid(&env);
}

fn an_ignored_sigint_is_said_under_verbose_and_the_wait_goes_on(env: Env) {
    let holder = Owner::new();
    hold(&env, "res", &holder, &["0"]);
    let me = Owner::new();
    for args in [
        &["acquire", "res", "2", "-v", "--owner", &me.pid()][..],
        &["run", "res", "-w", "2", "--verbose", "--", "true"][..],
    ] {
        let mut waiter = spawn_waiter(&env, args, libc::SIG_IGN);
        let seen = read_until(&mut waiter, "waiting for lock 'res'");
        assert!(
            seen.contains("SIGINT arrives ignored here")
                && seen.contains("Ctrl-C cannot end this wait"),
            "{seen}"
        );
        // Ctrl-C cannot reach it: it waits on to its timeout.
        unsafe { libc::kill(waiter.id() as libc::pid_t, libc::SIGINT) };
        assert_eq!(shell_code(waiter.wait().unwrap()), 2, "{args:?}");
    }
    // Not verbose: no note (the timeout error says the rest).
    let mut waiter = spawn_waiter(
        &env,
        &["acquire", "res", "0.2", "--owner", &me.pid()],
        libc::SIG_IGN,
    );
    let mut err = String::new();
    waiter
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(shell_code(waiter.wait().unwrap()), 2);
    assert!(!err.contains("ignored"), "{err}");
}

// --- feedback on waits ---------------------------------------------------------

/// Runs `cmdline` on a terminal (script(1)) while `holder` holds `state`:
/// once the waiter says it waits, `holder` ends; returns all the terminal
/// showed and whether the command succeeded.
fn wait_on_a_tty(env: &Env, cmdline: &str, holder: Owner) -> (String, bool) {
    let mut c = Command::new("script");
    env.clean_env(&mut c);
    c.env("PATH", format!("{}:/usr/bin:/bin", bin_dir().display()))
        .args(["-qec", cmdline, "/dev/null"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let mut script = c.spawn().expect("script(1)");
    let mut out = BufReader::new(script.stdout.take().unwrap());
    let mut seen = String::new();
    let mut line = String::new();
    while !seen.contains("waiting for lock") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "ended: {seen}");
        seen.push_str(&line);
    }
    // The holder ends: the waiter takes over at once, and says so.
    drop(holder);
    out.read_to_string(&mut seen).unwrap();
    (seen, script.wait().unwrap().success())
}

fn a_long_wait_on_a_terminal_says_who_holds_the_lock_and_when_it_was_had(env: Env) {
    let holder = Owner::new();
    let holder_pid = holder.pid();
    hold(&env, "state", &holder, &["0"]);
    let me = Owner::new();
    let (seen, ok) = wait_on_a_tty(
        &env,
        &format!("lock-manager acquire state 30 --owner {}", me.pid()),
        holder,
    );
    assert!(ok, "{seen}");
    assert!(
        seen.contains(&format!(
            "lock-manager: waiting for lock 'state' held by pid {holder_pid} (sleep, since "
        )),
        "{seen}"
    );
    assert!(
        seen.contains("lock-manager: got lock 'state' after "),
        "{seen}"
    );
    env.run(LM, &["check", "state"])
        .ok()
        .stdout_has(&format!("locked:exclusive:{}", me.pid()));
}

fn a_state_manager_write_waiting_on_a_terminal_says_so_too(env: Env) {
    env.init();
    let holder = Owner::new();
    let holder_pid = holder.pid();
    hold(&env, "state", &holder, &["0"]);
    let (seen, ok) = wait_on_a_tty(&env, "state-manager set .phase '\"built\"'", holder);
    assert!(ok, "{seen}");
    assert!(
        seen.contains(&format!(
            "state-manager: waiting for lock 'state' held by pid {holder_pid} (sleep, since "
        )),
        "{seen}"
    );
    assert!(
        seen.contains("state-manager: got lock 'state' after "),
        "{seen}"
    );
    assert_eq!(env.state()["phase"], "built");
}

fn a_wait_says_nothing_when_stderr_is_not_a_terminal(env: Env) {
    let holder = Owner::new();
    hold(&env, "state", &holder, &["0"]);
    let me = Owner::new();
    // Longer than the terminal's threshold, and then a timeout.
    let r = env
        .run(LM, &["acquire", "state", "1.5", "--owner", &me.pid()])
        .code(2)
        .one_line_error(LM);
    assert!(
        !r.stderr.contains("lock-manager: waiting for lock"),
        "{}",
        r.stderr
    );
    // --verbose says it without a terminal, at once.
    let mut waiter = spawn_waiter(
        &env,
        &["run", "state", "-w", "30", "--verbose", "--", "true"],
        libc::SIG_DFL,
    );
    read_until(&mut waiter, "waiting for lock 'state' held by pid");
    drop(holder);
    let seen = read_until(&mut waiter, "got lock 'state' after");
    assert!(waiter.wait().unwrap().success(), "{seen}");
}

// --- acquire: flag twins and misplaced arguments ---------------------------

fn acquire_takes_flag_twins_of_timeout_and_type(env: Env) {
    let a = Owner::new();
    let b = Owner::new();
    env.run(LM, &["acquire", "s", "--shared", "--owner", &a.pid()])
        .ok();
    env.run(LM, &["acquire", "s", "-s", "-w", "0", "--owner", &b.pid()])
        .ok();
    let list = env.run(LM, &["list", "--json"]).ok().json();
    assert_eq!(list[0]["type"], "shared", "{list}");
    assert_eq!(list[0]["holders"].as_array().unwrap().len(), 2, "{list}");
    let c = Owner::new();
    let c_pid = c.pid();
    for args in [
        &["--exclusive", "--nonblock"][..],
        &["-x", "-n"][..],
        &["--timeout", "0"][..],
        &["-w", "0.1"][..],
    ] {
        let mut all = vec!["acquire", "s"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--owner", &c_pid]);
        env.run(LM, &all).code(2);
    }
}

// One backend: refused while parsing, before any backend is asked.
#[test]
fn acquire_refuses_a_timeout_or_type_given_twice() {
    let env = Env::new();
    for (args, says) in [
        (
            &["x", "5", "--timeout", "7"][..],
            "the timeout is given twice",
        ),
        (&["x", "5", "-n"][..], "the timeout is given twice"),
        (
            &["x", "--timeout", "5", "--nonblock"][..],
            "--timeout and --nonblock",
        ),
        (
            &["x", "5", "shared", "--exclusive"][..],
            "the lock type is given twice",
        ),
        (
            &["x", "5", "exclusive", "-s"][..],
            "the lock type is given twice",
        ),
    ] {
        let mut all = vec!["acquire"];
        all.extend_from_slice(args);
        env.run(LM, &all)
            .code(4)
            .stderr_has(says)
            .one_line_error(LM);
    }
    // Nothing was taken, nothing created.
    assert!(!env.path(".locks").exists());
    assert_eq!(
        env.run(LM, &["list", "json"]).ok().json(),
        serde_json::json!([])
    );
    // The same type in both spellings is no conflict.
    env.run(LM, &["acquire", "x", "1", "shared", "--shared"])
        .ok();
}

// One backend: refused while parsing, before any backend is asked.
#[test]
fn acquire_says_when_name_and_timeout_are_swapped() {
    let env = Env::new();
    for (name, timeout) in [("10", "build"), ("0.5", "state"), ("2m", "my-lock")] {
        env.run(LM, &["acquire", name, timeout])
            .code(4)
            .stderr_has(&format!("'{name}' looks like a timeout, not a lock name"))
            .stderr_has("the order is acquire NAME [TIMEOUT] [TYPE]")
            .stderr_has(&format!("did you mean 'acquire {timeout} {name}'?"))
            .one_line_error(LM);
    }
    // A type where the timeout goes says so too.
    env.run(LM, &["acquire", "x", "shared"])
        .code(4)
        .stderr_has("'shared' is a lock type, not a timeout")
        .stderr_has("--shared");
    assert!(!env.path(".locks").exists());
    // A name made of digits alone is still a name.
    env.run(LM, &["acquire", "10", "1"]).ok();
    env.run(LM, &["check", "10"]).ok();
}

// --- tables -----------------------------------------------------------------

fn list_has_single_word_titles_and_honours_no_header(env: Env) {
    let a = Owner::new();
    hold(&env, "alpha", &a, &["0", "shared"]);
    let table = env.run(LM, &["list"]).ok().stdout;
    let lines: Vec<&str> = table.lines().collect();
    let titles: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(titles, ["NAME", "TYPE", "PID", "TIMESTAMP", "STATUS"]);
    // awk sees one field per column, in both places of the global flag.
    for args in [&["list", "--no-header"][..], &["--no-header", "list"][..]] {
        let bare = env.run(LM, args).ok().stdout;
        assert_eq!(bare.lines().count(), 1, "{bare}");
        let fields: Vec<&str> = bare.split_whitespace().collect();
        assert_eq!(fields[0], "alpha", "{bare}");
        assert_eq!(fields[1], "shared", "{bare}");
        assert_eq!(fields[2], a.pid(), "{bare}");
        assert_eq!(fields[4], "VALID", "{bare}");
    }
    // `check` keeps its exact shell-library line.
    env.run(LM, &["check", "alpha"])
        .ok()
        .stdout_has(&format!("locked:shared:{}\n", a.pid()));
}

// --- read-only commands create nothing --------------------------------------

fn read_only_lock_commands_create_no_locks_folder(env: Env) {
    env.run(LM, &["list"]).ok();
    env.run(LM, &["list", "--json"]).ok();
    env.run(LM, &["check", "x"]).code(1).stdout_has("unlocked");
    env.run(LM, &["status"]).ok();
    env.run(LM, &["status", "--json"]).ok();
    env.run(LM, &["release", "x"]).ok();
    assert!(!env.path(".locks").exists());
    // Whatever is there is only the audit log (its own rule decides that).
    for f in fs::read_dir(env.root()).unwrap().flatten() {
        assert_eq!(
            f.path(),
            env.audit_log(),
            "a read-only command created {}",
            f.path().display()
        );
    }
}
