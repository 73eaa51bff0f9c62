//! lock-manager fits the habits of flock(1) and make (issue 15): flock's
//! spellings on `run`, the flag twins of `acquire`, misplaced arguments,
//! a warning for an owner that is not a shell (with a real `make -j`),
//! SIGINT/SIGTERM during a wait, feedback on a terminal, the `list` table
//! for `awk`, and read-only commands that create nothing.

use std::fs;

use crate::harness::{Env, Owner, hold};

const LM: &str = "lock-manager";

// --- flock(1) spellings on `run` ------------------------------------------

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

#[test]
fn run_nonblock_fails_at_once_with_2_or_the_conflict_code() {
    let env = Env::new();
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

#[test]
fn run_takes_x_e_s_o_and_verbose() {
    let env = Env::new();
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

// --- acquire: flag twins and misplaced arguments ---------------------------

#[test]
fn acquire_takes_flag_twins_of_timeout_and_type() {
    let env = Env::new();
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
    // The same type in both spellings is no conflict.
    env.run(LM, &["acquire", "x", "1", "shared", "--shared"])
        .ok();
}

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

#[test]
fn list_has_single_word_titles_and_honours_no_header() {
    let env = Env::new();
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

#[test]
fn read_only_lock_commands_create_no_locks_folder() {
    let env = Env::new();
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
