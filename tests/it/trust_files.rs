//! Issue #11, "never damage what is not ours": every file the toolkit keeps
//! (state, backups, checkpoints, lock records, the audit log) is a regular
//! file or is refused; nothing is renamed over a device, FIFO or socket; no
//! open(2) blocks; `--output` writes through a device or FIFO; the audit log
//! never follows a symlink out of its folder. And the shims under `set -e`,
//! in `$( )` and in pipelines.
//!
//! Every run goes through `timeout`, so a regression that hangs in open(2)
//! fails the test (exit 137) instead of hanging the suite.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, symlink};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::harness::{Env, Run, bin_dir, bin_path, repo_root};

/// Seconds a run may take before it counts as hung.
const PROMPT: &str = "20";

/// Runs binary `name` with `args` (and optional `extra` environment), killed
/// after [`PROMPT`] seconds.
fn run(env: &Env, name: &str, args: &[&str], extra: &[(&str, &Path)]) -> Run {
    let mut c = Command::new("timeout");
    env.clean_env(&mut c);
    c.args(["-s", "KILL", PROMPT])
        .arg(bin_path(name))
        .args(args);
    for (k, v) in extra {
        c.env(k, v);
    }
    let r = Run::of(c.stdin(Stdio::null()).output().unwrap());
    assert_ne!(r.code, 137, "{name} {args:?} hung: {}", r.stderr);
    r
}

/// The kinds of non-regular file a user or an attacker can leave where the
/// toolkit expects its own.
#[derive(Clone, Copy, Debug)]
enum Special {
    Fifo,
    Socket,
    /// A symlink (inside the root) to a FIFO.
    LinkToFifo,
    /// A character device with /dev/null's numbers, made in the temp dir (root only).
    CharDevice,
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The kinds this test run can make (a device node needs root).
fn specials() -> Vec<Special> {
    let mut v = vec![Special::Fifo, Special::Socket, Special::LinkToFifo];
    if is_root() {
        v.push(Special::CharDevice);
    }
    v
}

/// What is made; the listener keeps a socket bound.
struct Made {
    kind: Special,
    path: PathBuf,
    _listener: Option<UnixListener>,
}

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo").arg(path).status().unwrap().success();
    assert!(ok, "mkfifo {}", path.display());
}

fn make(kind: Special, path: &Path) -> Made {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).unwrap();
    }
    let mut listener = None;
    match kind {
        Special::Fifo => mkfifo(path),
        Special::Socket => listener = Some(UnixListener::bind(path).unwrap()),
        Special::LinkToFifo => {
            let target = path.with_file_name(format!(
                "{}.fifo-target",
                path.file_name().unwrap().to_string_lossy()
            ));
            mkfifo(&target);
            symlink(&target, path).unwrap();
        }
        Special::CharDevice => {
            let ok = Command::new("mknod")
                .arg(path)
                .args(["c", "1", "3"])
                .status()
                .unwrap()
                .success();
            assert!(ok, "mknod {}", path.display());
        }
    }
    Made {
        kind,
        path: path.to_path_buf(),
        _listener: listener,
    }
}

impl Made {
    /// Asserts the special file is still there, of the same kind.
    #[track_caller]
    fn intact(&self) {
        let link = fs::symlink_metadata(&self.path)
            .unwrap_or_else(|e| panic!("{:?} at {} is gone: {e}", self.kind, self.path.display()));
        let t = fs::metadata(&self.path).unwrap().file_type();
        let ok = match self.kind {
            Special::Fifo => t.is_fifo() && !link.file_type().is_symlink(),
            Special::Socket => t.is_socket(),
            Special::LinkToFifo => link.file_type().is_symlink() && t.is_fifo(),
            Special::CharDevice => t.is_char_device(),
        };
        assert!(
            ok,
            "{:?} at {} was replaced",
            self.kind,
            self.path.display()
        );
    }
}

/// A root with a state whose `phase` is "before", a backup and a checkpoint.
fn seeded() -> Env {
    let env = Env::new();
    env.init();
    env.sm(&["set", ".phase", "\"before\""]);
    env
}

// --- STATE_FILE ---------------------------------------------------------

#[test]
fn a_state_file_that_is_not_a_regular_file_is_refused_with_6_by_every_command() {
    // See: #11 (as root, `STATE_FILE=/dev/null state-manager init` replaced
    // /dev/null; a FIFO hung every command).
    let commands: &[(&str, &[&str])] = &[
        ("state-manager", &["init"]),
        ("state-manager", &["read"]),
        ("state-manager", &["read", ".phase"]),
        ("state-manager", &["set", ".phase", "\"x\""]),
        ("state-manager", &["write", "{}"]),
        ("state-manager", &["validate"]),
        ("state-manager", &["backup"]),
        ("state-manager", &["migrate"]),
        ("state-manager", &["export"]),
        ("state-manager", &["verify-integrity"]),
        ("error-recovery", &["checkpoint", "op"]),
    ];
    for kind in specials() {
        let env = Env::new();
        let made = make(kind, &env.state_file());
        for (bin, args) in commands {
            let r = run(&env, bin, args, &[]);
            assert_eq!(
                r.code, 6,
                "{kind:?}: {bin} {args:?}\nstdout: {}\nstderr: {}",
                r.stdout, r.stderr
            );
            let r = r.one_line_error(bin);
            assert!(
                r.stderr.contains("not a regular file") || r.stdout.contains("not a regular file"),
                "{kind:?}: {bin} {args:?}: {}",
                r.stderr
            );
            made.intact();
        }
        assert!(
            env.list(".state-backups").is_empty(),
            "{kind:?}: {:?}",
            env.list(".state-backups")
        );
    }
}

#[test]
fn init_never_keeps_aside_or_replaces_a_device_node() {
    // See: #11. A device node was "kept aside" (hard-linked) and replaced by
    // a regular file. Needs root to make the node; skipped otherwise.
    if !is_root() {
        return;
    }
    let env = Env::new();
    let made = make(Special::CharDevice, &env.state_file());
    run(&env, "state-manager", &["init"], &[])
        .code(6)
        .stderr_has("character device");
    made.intact();
    let names = env.list(".");
    assert!(
        !names.iter().any(|n| n.contains(".corrupt-")),
        "kept aside: {names:?}"
    );
}

// --- Backups, checkpoints, lock records, journal ------------------------

#[test]
fn a_special_file_among_the_backups_is_never_read_nor_removed() {
    for kind in specials() {
        let env = seeded();
        // Named as the newest backup, so recover would try it first.
        let made = make(
            kind,
            &env.path(".state-backups/state-29991231-235959-planted.json"),
        );
        run(&env, "state-manager", &["list-backups"], &[]).ok();
        run(&env, "state-manager", &["recover"], &[]).ok();
        // Enough writes to prune past it (the default keeps 5).
        for i in 0..7 {
            run(
                &env,
                "state-manager",
                &["set", ".phase", &format!("\"p{i}\"")],
                &[],
            )
            .ok();
        }
        made.intact();
        assert_eq!(env.state()["phase"], "p6");
    }
}

#[test]
fn a_special_file_in_a_checkpoint_is_refused_without_hanging() {
    for kind in specials() {
        let env = seeded();
        let id = run(&env, "error-recovery", &["checkpoint", "op"], &[])
            .ok()
            .stdout
            .trim()
            .to_string();
        env.sm(&["set", ".phase", "\"after\""]);
        for file in ["state.json", "metadata.json"] {
            let p = env.path(&format!(".checkpoints/{id}/{file}"));
            let keep = p.with_extension("real");
            fs::rename(&p, &keep).unwrap();
            let made = make(kind, &p);
            run(&env, "error-recovery", &["list"], &[]).ok();
            let r = run(&env, "error-recovery", &["restore", &id], &[]);
            assert!(
                r.code == 6 || r.code == 3,
                "{kind:?} {file}: exit {}: {}",
                r.code,
                r.stderr
            );
            made.intact();
            assert_eq!(env.state()["phase"], "after");
            fs::remove_file(&p).unwrap();
            fs::rename(&keep, &p).unwrap();
        }
    }
}

#[test]
fn a_special_lock_record_or_mutex_is_refused_with_6_without_hanging() {
    for kind in specials() {
        for file in ["build.lock", "build.mutex"] {
            let env = Env::new();
            fs::create_dir(env.path(".locks")).unwrap();
            let made = make(kind, &env.path(&format!(".locks/{file}")));
            let r = run(&env, "lock-manager", &["acquire", "build", "1"], &[]);
            assert_eq!(r.code, 6, "{kind:?} {file}: {}", r.stderr);
            // A mutex is opened O_NOFOLLOW: a symlink there is refused as ELOOP.
            assert!(
                r.stderr.contains("not a regular file") || r.stderr.contains("symbolic links"),
                "{kind:?} {file}: {}",
                r.stderr
            );
            run(&env, "lock-manager", &["check", "build"], &[]);
            run(&env, "lock-manager", &["list", "json"], &[]);
            run(&env, "lock-manager", &["release", "build"], &[]);
            made.intact();
        }
    }
}

#[test]
fn a_fifo_as_the_state_lock_record_does_not_hang_writes() {
    let env = seeded();
    let made = make(Special::Fifo, &env.path(".locks/state.lock"));
    let r = run(&env, "state-manager", &["set", ".phase", "\"x\""], &[]);
    assert_eq!(r.code, 6, "{}", r.stderr);
    made.intact();
    assert_eq!(env.state()["phase"], "before");
}

#[test]
fn a_fifo_as_the_restore_journal_or_a_leftover_temp_does_not_hang() {
    let env = seeded();
    // A planted FIFO named like a temp file of the state: writers clean
    // leftovers of killed writers, and must not open it blockingly.
    let tmp = make(
        Special::Fifo,
        &env.path("..workflow-state.json.999999.0.tmp"),
    );
    run(&env, "state-manager", &["set", ".phase", "\"x\""], &[]).ok();
    tmp.intact();
    run(&env, "state-manager", &["cleanup", "--dry-run"], &[]);
    tmp.intact();
    assert_eq!(env.state()["phase"], "x");
}

// --- AUDIT_LOG ------------------------------------------------------------

#[test]
fn a_special_audit_log_is_skipped_with_a_warning_and_the_operation_succeeds() {
    for kind in specials() {
        let env = seeded();
        let log = env.path("special-audit");
        let made = make(kind, &log);
        let r = run(
            &env,
            "state-manager",
            &["set", ".phase", "\"x\""],
            &[("AUDIT_LOG", &log)],
        );
        let r = r.ok();
        if matches!(kind, Special::CharDevice) {
            // Numbers 1:3 are /dev/null: the usual way to turn auditing off.
            assert_eq!(r.stderr, "", "{kind:?}");
        } else {
            r.stderr_has("warning: cannot write audit log");
        }
        made.intact();
        assert_eq!(env.state()["phase"], "x");
        // Readers do not hang either.
        for args in [
            &["audit", "recent"][..],
            &["audit", "stats"],
            &["health", "--json"],
        ] {
            run(&env, "state-manager", args, &[("AUDIT_LOG", &log)]);
            made.intact();
        }
        run(&env, "error-recovery", &["status"], &[("AUDIT_LOG", &log)]);
        made.intact();
    }
}

#[test]
fn a_device_audit_log_other_than_dev_null_is_refused() {
    if !is_root() {
        return;
    }
    let env = seeded();
    let log = env.path("zero");
    // /dev/zero's numbers: writable, but not a place for events.
    assert!(
        Command::new("mknod")
            .arg(&log)
            .args(["c", "1", "5"])
            .status()
            .unwrap()
            .success()
    );
    run(
        &env,
        "state-manager",
        &["set", ".phase", "\"x\""],
        &[("AUDIT_LOG", &log)],
    )
    .ok()
    .stderr_has("character device");
    assert!(fs::metadata(&log).unwrap().file_type().is_char_device());
}

#[test]
fn an_audit_log_symlinked_out_of_the_root_writes_and_creates_nothing_outside() {
    // See: #11. The log followed a planted symlink and appended there (a
    // dangling one created its target).
    let outside = tempfile::tempdir().unwrap();
    let existing = outside.path().join("victim");
    fs::write(&existing, "precious\n").unwrap();
    let dangling = outside.path().join("created");
    for target in [&existing, &dangling] {
        let env = seeded();
        fs::remove_file(env.audit_log()).unwrap();
        symlink(target, env.audit_log()).unwrap();
        run(&env, "state-manager", &["set", ".phase", "\"x\""], &[])
            .ok()
            .stderr_has("warning: cannot write audit log")
            .stderr_has("symlink");
        run(&env, "lock-manager", &["acquire", "build", "1"], &[]).ok();
        assert_eq!(env.state()["phase"], "x");
        assert_eq!(fs::read_to_string(&existing).unwrap(), "precious\n");
        assert!(!dangling.exists(), "created {}", dangling.display());
        assert!(
            fs::symlink_metadata(env.audit_log())
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let r = run(&env, "state-manager", &["health", "--json"], &[]);
        assert_eq!(
            r.json()["checks"]["audit_log"]["status"],
            "unhealthy",
            "{}",
            r.stdout
        );
    }
}

#[test]
fn an_audit_log_symlinked_inside_its_folder_is_written_through() {
    // Decided as for the state file (docs/architecture.md, "On disk"): a symlink that stays in
    // the log's folder is followed.
    let env = seeded();
    let real = env.path("logs/audit.jsonl");
    fs::create_dir(env.path("logs")).unwrap();
    fs::rename(env.audit_log(), &real).unwrap();
    symlink(&real, env.audit_log()).unwrap();
    run(&env, "state-manager", &["set", ".phase", "\"x\""], &[]).ok();
    let last = fs::read_to_string(&real).unwrap();
    assert!(
        last.lines().last().unwrap().contains("\"op\":\"set\""),
        "{last}"
    );
    let recent = run(&env, "state-manager", &["audit", "recent", "--json"], &[]).ok();
    assert!(recent.stdout.contains("\"set\""), "{}", recent.stdout);
}

// --- --output ----------------------------------------------------------------

/// The `--output` commands: `state-manager export` and `audit export`.
const OUTPUTS: &[&[&str]] = &[&["export", "--output"], &["audit", "export", "--output"]];

fn with_output<'a>(cmd: &[&'a str], out: &'a str) -> Vec<&'a str> {
    let mut v = cmd.to_vec();
    v.push(out);
    v
}

#[test]
fn output_to_a_symlinked_stdout_writes_through_and_keeps_the_link() {
    // See: #11 (`export --output /dev/stdout` replaced the symlink). A link
    // of our own to /proc/self/fd/1, which is what /dev/stdout is.
    for cmd in OUTPUTS {
        let env = seeded();
        let link = env.path("stdout");
        symlink("/proc/self/fd/1", &link).unwrap();
        let r = run(&env, "state-manager", &with_output(cmd, "stdout"), &[]).ok();
        // One JSON document and nothing else (no summary line inside it).
        let doc = r.json();
        assert!(
            doc.get("phase").is_some() || doc.get("events").is_some(),
            "{cmd:?}: {doc}"
        );
        let m = fs::symlink_metadata(&link).unwrap();
        assert!(m.file_type().is_symlink(), "{cmd:?}: the link was replaced");
        assert_eq!(fs::read_link(&link).unwrap(), Path::new("/proc/self/fd/1"));
    }
}

#[test]
fn output_to_a_fifo_with_a_reader_writes_through() {
    for cmd in OUTPUTS {
        let env = seeded();
        let fifo = env.path("out.fifo");
        let made = make(Special::Fifo, &fifo);
        // Bounded: without the fix nothing ever writes to the FIFO.
        let mut reader = Command::new("timeout")
            .args(["-s", "KILL", PROMPT, "cat"])
            .arg(&fifo)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // Until cat has opened its end, a writer's non-blocking open fails:
        // retry briefly (the reader, not the writer, is what is slow here).
        let mut r = run(&env, "state-manager", &with_output(cmd, "out.fifo"), &[]);
        for _ in 0..100 {
            if r.code == 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            r = run(&env, "state-manager", &with_output(cmd, "out.fifo"), &[]);
        }
        r.ok();
        let mut got = String::new();
        reader
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut got)
            .unwrap();
        reader.wait().unwrap();
        assert!(
            got.starts_with('{') && got.trim_end().ends_with('}'),
            "{cmd:?}: {got}"
        );
        made.intact();
    }
}

#[test]
fn output_to_a_fifo_without_a_reader_fails_at_once_and_keeps_it() {
    for cmd in OUTPUTS {
        let env = seeded();
        let made = make(Special::Fifo, &env.path("out.fifo"));
        let r = run(&env, "state-manager", &with_output(cmd, "out.fifo"), &[]);
        assert_ne!(r.code, 0, "{cmd:?}");
        let r = r.one_line_error("state-manager");
        r.stderr_has("reading");
        made.intact();
        assert!(env.list(".").iter().all(|n| !n.ends_with(".tmp")));
    }
}

#[test]
fn output_to_a_device_or_socket_never_replaces_it() {
    for cmd in OUTPUTS {
        for kind in [Special::Socket, Special::LinkToFifo, Special::CharDevice] {
            if matches!(kind, Special::CharDevice) && !is_root() {
                continue;
            }
            let env = seeded();
            let made = make(kind, &env.path("out"));
            let r = run(&env, "state-manager", &with_output(cmd, "out"), &[]);
            match kind {
                // Written through, like `> /dev/null`.
                Special::CharDevice => {
                    r.ok();
                }
                _ => {
                    assert_ne!(r.code, 0, "{cmd:?} {kind:?}");
                    r.one_line_error("state-manager");
                }
            }
            made.intact();
        }
    }
}

#[test]
fn output_to_a_symlink_to_a_regular_file_replaces_the_target_and_keeps_the_link() {
    for cmd in OUTPUTS {
        let env = seeded();
        fs::write(env.path("real.json"), "old").unwrap();
        symlink("real.json", env.path("link.json")).unwrap();
        run(&env, "state-manager", &with_output(cmd, "link.json"), &[]).ok();
        assert!(
            fs::symlink_metadata(env.path("link.json"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let got = fs::read_to_string(env.path("real.json")).unwrap();
        assert!(got.starts_with('{'), "{cmd:?}: {got}");
    }
}

// --- Shims ---------------------------------------------------------------------

/// Runs `script` in bash against a vendored copy of lib/, like tests/it/shims.rs.
fn bash(env: &Env, script: &str) -> Run {
    let lib = env.path("lib");
    if !lib.exists() {
        fs::create_dir(&lib).unwrap();
        for f in [
            "common.sh",
            "state-manager.sh",
            "lock-manager.sh",
            "error-recovery.sh",
        ] {
            fs::copy(repo_root().join("lib").join(f), lib.join(f)).unwrap();
        }
    }
    let mut c = Command::new("timeout");
    env.clean_env(&mut c);
    c.env_remove("STATE_FILE")
        .env("WFSTATE_BIN", bin_dir())
        .args(["-s", "KILL", PROMPT, "bash", "-c", script]);
    let r = Run::of(c.stdin(Stdio::null()).output().unwrap());
    assert_ne!(r.code, 137, "hung: {}", r.stderr);
    r
}

const SOURCE_ALL: &str =
    "source lib/state-manager.sh; source lib/lock-manager.sh; source lib/error-recovery.sh";

#[test]
fn retry_with_backoff_retries_under_set_e() {
    // See: #11. Under `set -e` the first failure exited the script.
    let env = Env::new();
    for opts in ["true", "set -e", "set -euo pipefail"] {
        let r = bash(
            &env,
            &format!(
                r#"{opts}; {SOURCE_ALL}
                n=0; flaky() {{ n=$((n+1)); ((n >= 3)); }}
                retry_with_backoff flaky 5 0.01; echo "ok n=$n"
                n=0; never() {{ n=$((n+1)); return 3; }}
                rc=0; retry_with_backoff never 3 0.01 || rc=$?; echo "rc=$rc n=$n"
                out=$(retry_with_backoff never 1 0.01) || echo "in-subst=$?"
                echo done"#
            ),
        );
        assert_eq!(
            r.ok().stdout,
            "ok n=3\nrc=3 n=3\nin-subst=3\ndone\n",
            "with {opts:?}"
        );
    }
}

#[test]
fn read_state_outfile_leaves_no_temp_file_and_writes_through_specials() {
    // See: #11. A failing `read_state OUTFILE` under set -e left OUTFILE.XXXXXX.
    let env = Env::new();
    let r = bash(
        &env,
        r#"set -e; source lib/state-manager.sh
        rc=0; read_state out.json || rc=$?; echo "missing=$rc"
        ls -a | grep -c 'out.json' || true"#,
    );
    assert_eq!(r.ok().stdout, "missing=1\n0\n");
    // Through a symlinked stdout, and never replacing it.
    symlink("/proc/self/fd/1", env.path("stdout")).unwrap();
    let made = make(Special::Fifo, &env.path("nobody.fifo"));
    let r = bash(
        &env,
        r#"set -euo pipefail; source lib/state-manager.sh
        init_state_manager
        read_state stdout | grep -c '"phase"'
        read_state out.json; grep -q pre-init out.json
        rc=0; read_state nobody.fifo || rc=$?; echo "fifo=$rc"
        [[ -L stdout ]] && echo link-kept"#,
    );
    assert_eq!(r.ok().stdout, "1\nfifo=1\nlink-kept\n");
    made.intact();
    let names = env.list(".");
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("out.json.") || n.ends_with(".tmp")),
        "{names:?}"
    );
}

#[test]
fn error_recovery_functions_act_for_the_shell_inside_subshells_and_pipelines() {
    // See: #11. Without --owner $$ they waited for the caller's own lock
    // and failed with exit 2.
    let env = Env::new();
    let r = bash(
        &env,
        &format!(
            r#"set -euo pipefail; {SOURCE_ALL}
            init_state_manager
            create_checkpoint before >/dev/null
            lock_state 5
            export LOCK_TIMEOUT=1
            ./lib/state-manager.sh --owner $$ set .phase '"changed"'
            out=$(restore_checkpoint "$CHECKPOINT_ID"); echo "restore=$?"
            enable_degraded_mode "disk slow" '["backups"]' | cat >/dev/null; echo "degrade=$?"
            ( is_degraded_mode ); echo "is=$?"
            disable_degraded_mode | cat >/dev/null; echo "recover=$?"
            id=$(create_checkpoint inside); [[ -n "$id" ]] && echo "checkpoint=0"
            x=$(backup_state inner); echo "backup=$?"
            x=$(init_state_manager); echo "init=$?"
            unlock_state"#
        ),
    );
    assert_eq!(
        r.ok().stdout,
        "restore=0\ndegrade=0\nis=0\nrecover=0\ncheckpoint=0\nbackup=0\ninit=0\n"
    );
    assert_eq!(env.state()["phase"], "pre-init");
}

#[test]
fn handle_error_behaves_the_same_under_set_e() {
    // Under set -e an unknown code's name lookup (status 1) ended the script
    // before the message, with 1 instead of the code.
    let env = Env::new();
    for opts in ["true", "set -euo pipefail"] {
        for (code, name) in [(42, "UNKNOWN"), (2, "LOCK_TIMEOUT")] {
            let r = bash(
                &env,
                &format!("{opts}; source lib/error-recovery.sh; handle_error {code} 'odd' deploy"),
            );
            let r = r.code(code);
            assert!(
                r.stderr
                    .contains(&format!("ERROR [{code}/{name}] in deploy: odd")),
                "with {opts:?}: {}",
                r.stderr
            );
        }
    }
}
