//! What the binaries' own start-up (`wfstate::cmd::start`, in place of
//! std's) must still do: standard descriptors that are closed are not
//! reused for the toolkit's files, a closed stdout pipe is not a failure,
//! and commands run by `retry` start with SIGPIPE at its default. Also the
//! light parse (`cmd::parse_with`): what it accepts, the whole tree accepts
//! the same way, and the light parse of one subcommand never hides another.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use crate::harness::{Env, assert_audit_valid, bin_path};

/// `name ARGS` run by sh with fds 0, 1 and 2 closed.
fn closed_fds(env: &Env, name: &str, args: &[&str]) -> std::process::ExitStatus {
    let mut c = Command::new("sh");
    env.clean_env(&mut c);
    c.arg("-c")
        .arg(r#"exec "$0" "$@" <&- >&- 2>&-"#)
        .arg(bin_path(name))
        .args(args)
        .status()
        .unwrap()
}

#[test]
fn closed_standard_fds_are_never_reused_for_the_toolkits_files() {
    let env = Env::new();
    env.init();
    let owner = crate::harness::Owner::new();
    let pid = owner.pid();
    // --debug writes to stderr and --json to stdout after the files are
    // opened: were fd 1 or 2 a state, lock or audit file, these lines would
    // land in it.
    for (name, args) in [
        (
            "state-manager",
            vec!["--debug", "set", ".phase", "\"x\"", "--json"],
        ),
        ("state-manager", vec!["--debug", "signal", "DONE", "--json"]),
        (
            "lock-manager",
            vec![
                "--debug", "acquire", "deploy", "0", "--owner", &pid, "--json",
            ],
        ),
        (
            "error-recovery",
            vec!["--debug", "checkpoint", "op", "--json"],
        ),
    ] {
        let status = closed_fds(&env, name, &args);
        assert_eq!(status.code(), Some(0), "{name} {args:?}: {status:?}");
    }
    // What a closed fd became is what the commands `retry` runs inherit:
    // /dev/null, not a closed descriptor (nor one of our files: they are all
    // close-on-exec).
    let seen = env.path("fds");
    let script = format!(
        "printf '%s\\n' $(readlink /proc/$$/fd/0 /proc/$$/fd/1 /proc/$$/fd/2) > '{}'",
        seen.display()
    );
    let status = closed_fds(
        &env,
        "error-recovery",
        &["retry", "--attempts", "1", "--", "sh", "-c", &script],
    );
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap(),
        "/dev/null\n/dev/null\n/dev/null\n"
    );
    assert_eq!(env.state()["phase"], "x");
    env.run("state-manager", &["verify-integrity"]).ok();
    assert_audit_valid(&env);
    env.run("lock-manager", &["check", "deploy"])
        .ok()
        .stdout_has("locked:exclusive:");
}

#[test]
fn a_closed_stdout_pipe_is_not_a_failure() {
    let env = Env::new();
    env.init();
    for (name, args) in [
        ("state-manager", vec!["read"]),
        ("state-manager", vec!["--help"]),
        ("state-manager", vec!["--version"]),
        ("error-recovery", vec!["status", "--json"]),
        ("lock-manager", vec!["list", "--json"]),
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = env
            .cmd(name)
            .args(&args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(
            (out.status.code(), out.status.signal()),
            (Some(0), None),
            "{name} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{name} {args:?}");
    }
}

#[test]
fn commands_run_by_retry_start_with_sigpipe_at_its_default() {
    let env = Env::new();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    // `yes` into a closed pipe: killed by SIGPIPE (128+13), as from a shell;
    // were SIGPIPE still ignored, it would print an error and exit 1.
    let out = env
        .cmd("error-recovery")
        .args(["retry", "--attempts", "1", "--", "yes"])
        .stdout(writer)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(128 + 13), "{out:?}");
}

#[test]
fn what_the_light_parse_accepts_the_whole_tree_reads_the_same_way() {
    let env = Env::new();
    env.init();
    // Global options after the subcommand, `--`, a repeated option (the last
    // one wins), and a value that looks like another subcommand's name.
    env.run(
        "state-manager",
        &[
            "set",
            "--no-color",
            ".phase",
            "--string",
            "status",
            "--state-file",
            &env.state_file().display().to_string(),
        ],
    )
    .ok();
    assert_eq!(env.state()["phase"], "status");
    env.run("state-manager", &["set", "-s", "--", ".phase", "-x"])
        .ok();
    assert_eq!(env.state()["phase"], "-x");
    let out = env
        .run(
            "state-manager",
            &["read", "-r", "-r", ".phase", "--json", "-c"],
        )
        .ok();
    assert_eq!(out.stdout, "-x\n");
    // A subcommand the light parse builds alone, then one it does not:
    // the second is still known (no "unrecognized subcommand").
    env.run("state-manager", &["read", "list-backups"])
        .code(4)
        .stderr_has("bad path 'list-backups'");
    env.run("state-manager", &["list-backups", "--json"]).ok();
    env.run("error-recovery", &["list", "json"]).ok();
    // Wrong use of a light subcommand is the whole tree's error, one line.
    env.run("state-manager", &["set", ".phase"])
        .code(1)
        .stderr_has("required arguments were not provided");
    env.run("state-manager", &["reed"])
        .code(1)
        .stderr_has("tip: a similar subcommand exists: 'read'");
}

/// The shared libraries a binary loads, as the dynamic loader lists them
/// for `ldd` (LD_TRACE_LOADED_OBJECTS): each line's first word.
fn loaded_libraries(name: &str) -> Vec<String> {
    let out = Command::new(bin_path(name))
        .env("LD_TRACE_LOADED_OBJECTS", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{name}: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Each binary loads libc and nothing else at start-up: libgcc's unwinder
/// is linked in (build.rs) and no function comes from libm (audit stats'
/// logarithm is computed in Rust), since loading each of those libraries
/// cost every call ~20k instructions, an eighth of /bin/true. Where the C
/// compiler has no libgcc_eh.a, build.rs keeps libgcc_s and so does this.
#[test]
fn binaries_load_only_libc() {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let archive = Command::new(cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let unwinder_linked_in = std::path::Path::new(&archive).is_absolute();
    for name in ["state-manager", "lock-manager", "error-recovery"] {
        let libs = loaded_libraries(name);
        assert!(
            libs.iter().any(|l| l.starts_with("libc.so")),
            "{name}: {libs:?}"
        );
        assert!(
            !libs.iter().any(|l| l.starts_with("libm.so")),
            "{name}: {libs:?}"
        );
        if unwinder_linked_in {
            assert!(
                !libs.iter().any(|l| l.starts_with("libgcc_s")),
                "{name}: {libs:?}"
            );
        }
    }
}
