//! lock-manager: locks held by real shells across commands, SIGKILLed
//! holders taken over, shared/exclusive and writer preference, hierarchy,
//! `run` exit codes, handoff, 16 concurrent incrementers, pid reuse,
//! corruption, and the refusals that must leave `.locks/` untouched.
//!
//! One suite on both backends (issue 14): every `fn NAME(env: Env)` below
//! sees only the command line, exit codes and outputs, and [`both!`] runs it
//! as `lock::file::NAME` and `lock::redis::NAME`. Where the backends
//! legitimately differ (on Redis a dead local holder is released by its
//! keeper instead of being judged stale by its pid) the assertion asks
//! [`on_redis`]. The `#[test]`s at the bottom are file-only: they write or
//! inspect `.locks/` itself.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Env, Owner, Run, bin_path, both};

both!(
    a_lock_taken_by_a_shell_outlives_the_command_and_blocks_others,
    a_sigkilled_holder_wakes_its_waiter_at_once,
    a_sigkilled_holder_is_stale_and_taken_over_by_the_next_acquirer,
    shared_holders_coexist_and_an_exclusive_request_times_out_leaving_no_trace,
    new_shared_requests_queue_behind_a_waiting_exclusive_request,
    a_waiter_gets_the_lock_soon_after_release,
    a_lower_priority_request_by_a_holder_of_a_higher_one_is_refused_with_4,
    holding_a_lower_number_first_then_a_higher_one_is_allowed,
    run_passes_the_exit_code_through,
    run_holds_the_lock_as_the_child_and_gives_it_no_lock_fd,
    run_reports_a_conflict_with_2_or_the_chosen_code,
    a_sigkilled_run_leaves_the_lock_with_its_child_until_the_child_exits,
    sixteen_processes_times_fifty_increments_lose_none,
    the_same_owner_again_counts_once_and_a_sole_shared_holder_upgrades,
    release_by_another_owner_is_refused_with_6_and_force_is_audited,
    bad_names_and_metadata_exit_4_and_create_nothing,
    clean_removes_stale_records_and_keeps_live_ones,
    a_ttl_lapses_and_its_waiter_takes_over_when_it_does,
    status_is_the_default_and_shows_holders_and_waiters,
    verbose_acquire_names_who_held_the_lock_meanwhile,
    a_state_write_waits_behind_a_lock_manager_holder_and_queues_shared_requests,
);

const LM: &str = "lock-manager";

/// A bash shell that runs `lock-manager acquire NAME ARGS...` itself (so the
/// shell is the owner), reports the exit code, and lives on until told to
/// release (a line on stdin) or killed.
struct Shell {
    child: Child,
    stdin: Option<ChildStdin>,
    /// The exit code of its acquire.
    acquired: i32,
}

impl Shell {
    fn acquire(env: &Env, name: &str, args: &[&str]) -> Shell {
        let mut c = Command::new("bash");
        env.clean_env(&mut c);
        c.arg("-c")
            .arg(r#""$LM" acquire "$@"; echo "rc=$?"; read -r _; "$LM" release "$1""#)
            .arg("bash")
            .arg(name)
            .args(args)
            .env("LM", bin_path(LM))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = c.spawn().expect("spawn bash");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let acquired = line
            .trim()
            .strip_prefix("rc=")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected output of the holder shell: {line:?}"));
        let stdin = child.stdin.take();
        Shell {
            child,
            stdin,
            acquired,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lets the shell run its `lock-manager release` and exit.
    fn release(mut self) {
        let mut stdin = self.stdin.take().unwrap();
        stdin.write_all(b"\n").unwrap();
        drop(stdin);
        assert!(
            self.child.wait().unwrap().success(),
            "release in the shell failed"
        );
    }

    /// SIGKILL; returns once it has died, leaving its zombie unreaped as a
    /// crashed shell's would be for a while.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        let pid = rustix::process::Pid::from_raw(self.pid() as i32).unwrap();
        rustix::process::waitid(
            rustix::process::WaitId::Pid(pid),
            rustix::process::WaitIdOptions::EXITED | rustix::process::WaitIdOptions::NOWAIT,
        )
        .unwrap();
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (in the test, not the product) until `cond` holds, at most 10 s.
#[track_caller]
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < until, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `env` runs on the Redis backend.
fn on_redis(env: &Env) -> bool {
    env.redis.is_some()
}

/// The record of lock `name` as `list json` shows it (on any backend),
/// `Null` when there is none.
fn record(env: &Env, name: &str) -> Value {
    let list = env.run(LM, &["list", "json"]).ok().json();
    list.as_array()
        .expect("list json prints an array")
        .iter()
        .find(|r| r["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

fn waiters(env: &Env, name: &str) -> usize {
    record(env, name)["waiters"].as_array().map_or(0, Vec::len)
}

/// lock-manager's audit events of operation `op`, oldest first, read
/// through `state-manager audit recent` (the log file or the stream).
fn events(env: &Env, op: &str) -> Vec<Value> {
    let args = [
        "audit", "recent", "--tool", LM, "--op", op, "-n", "1000000", "--json", "-c",
    ];
    let got = env.run("state-manager", &args).ok().json();
    got.as_array()
        .expect("audit recent prints an array")
        .clone()
}

/// `lock-manager ARGS` spawned in the background with piped output.
fn spawn(env: &Env, args: &[&str]) -> Child {
    env.cmd(LM)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child) -> Run {
    Run::of(child.wait_with_output().unwrap())
}

fn a_lock_taken_by_a_shell_outlives_the_command_and_blocks_others(env: Env) {
    let shell = Shell::acquire(&env, "x", &[]);
    assert_eq!(shell.acquired, 0);
    // The acquire command has exited; the shell still holds the lock.
    env.run(LM, &["check", "x"])
        .ok()
        .stdout_has(&format!("locked:exclusive:{}\n", shell.pid()));
    let other = Owner::new();
    let started = Instant::now();
    env.run(LM, &["acquire", "x", "0.3", "--owner", &other.pid()])
        .code(2)
        .one_line_error(LM)
        .stderr_has(&format!("pid {}", shell.pid()));
    assert!(started.elapsed() < Duration::from_secs(5));
    // Nor may anyone share an exclusive lock.
    env.run(
        LM,
        &["acquire", "x", "0", "shared", "--owner", &other.pid()],
    )
    .code(2)
    .stderr_has("held exclusive");
    shell.release();
    env.run(LM, &["check", "x"]).code(1).stdout_has("unlocked");
    assert_eq!(
        record(&env, "x"),
        Value::Null,
        "a released lock is not listed"
    );
    if !on_redis(&env) {
        assert!(
            !env.path(".locks/x.lock").exists(),
            "a released lock leaves no record"
        );
    }
}

fn a_sigkilled_holder_wakes_its_waiter_at_once(env: Env) {
    let mut shell = Shell::acquire(&env, "x", &[]);
    let owner = Owner::new();
    let waiter = spawn(
        &env,
        &["acquire", "x", "30", "--owner", &owner.pid(), "--json"],
    );
    eventually("the waiter registers", || waiters(&env, "x") == 1);
    let killed = Instant::now();
    shell.kill();
    let run = finish(waiter).ok();
    // Woken by the holder's pidfd, not by its 30 s timeout.
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "{:?}",
        killed.elapsed()
    );
    let got = run.json();
    assert_eq!(got["holders"][0]["pid"], json!(owner.0.id()));
    assert_eq!(got["holders_while_waiting"], json!([shell.pid()]));
    if on_redis(&env) {
        // Redis: the dead shell's keeper releases its hold (a release, not
        // a takeover); a waiter that met the dead holder first says why.
        let takeovers = got["takeovers"].as_array().map_or(&[][..], Vec::as_slice);
        assert!(takeovers.iter().all(|t| t["reason"] == "dead"), "{got}");
    } else {
        assert_eq!(got["takeovers"][0]["reason"], "dead");
    }
    assert_eq!(got["waiters"], Value::Null, "the waiter entry is gone");
}

fn a_sigkilled_holder_is_stale_and_taken_over_by_the_next_acquirer(env: Env) {
    let mut shell = Shell::acquire(&env, "x", &[]);
    let dead = shell.pid();
    shell.kill();
    if on_redis(&env) {
        // Redis: the dead shell's keeper releases its hold at once, so
        // nothing is left stale for the next acquirer to take over.
        eventually("the keeper releases the dead shell's hold", || {
            env.run(LM, &["check", "x"]).code == 1
        });
        assert!(events(&env, "takeover").is_empty());
        let owner = Owner::new();
        env.run(LM, &["acquire", "x", "0", "--owner", &owner.pid()])
            .ok();
        env.run(LM, &["check", "x"])
            .ok()
            .stdout_has(&format!("locked:exclusive:{}", owner.pid()));
        return;
    }
    env.run(LM, &["check", "x"]).code(2).stdout_has("stale\n");
    env.run(LM, &["list"]).ok().stdout_has("STALE");
    let owner = Owner::new();
    env.run(LM, &["acquire", "x", "0", "--owner", &owner.pid()])
        .ok();
    env.run(LM, &["check", "x"])
        .ok()
        .stdout_has(&format!("locked:exclusive:{}", owner.pid()));
    let takeover = &events(&env, "takeover")[0];
    assert_eq!(takeover["target"], "x");
    assert_eq!(takeover["detail"]["stale_pid"], json!(dead));
    assert_eq!(takeover["detail"]["owner_pid"], json!(owner.0.id()));
    assert_eq!(takeover["detail"]["reason"], "dead");
}

fn shared_holders_coexist_and_an_exclusive_request_times_out_leaving_no_trace(env: Env) {
    let a = Shell::acquire(&env, "s", &["5", "shared"]);
    let b = Shell::acquire(&env, "s", &["5", "shared"]);
    assert_eq!((a.acquired, b.acquired), (0, 0));
    let list = env.run(LM, &["list", "json"]).ok().json();
    let pids: Vec<u64> = list[0]["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(pids, vec![a.pid() as u64, b.pid() as u64]);
    assert_eq!(list[0]["status"], "valid");
    let table = env.run(LM, &["list"]).ok().stdout;
    assert_eq!(
        table.lines().filter(|l| l.starts_with("s ")).count(),
        2,
        "{table}"
    );

    let other = Owner::new();
    let started = Instant::now();
    let refused = env
        .run(
            LM,
            &["acquire", "s", "1", "exclusive", "--owner", &other.pid()],
        )
        .code(2)
        .one_line_error(LM);
    if on_redis(&env) {
        // Redis names the first holder with its holder id (for `release
        // --force --holder ID`) and counts the others.
        refused
            .stderr_has(&format!("held shared by pid {}", a.pid()))
            .stderr_has("holder id")
            .stderr_has("and 1 more");
    } else {
        refused.stderr_has("held shared by pids");
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // The timed-out waiter removed its entry; the holders are untouched.
    assert_eq!(waiters(&env, "s"), 0, "{}", record(&env, "s"));
    assert_eq!(record(&env, "s")["holders"].as_array().unwrap().len(), 2);
    let timeout = events(&env, "acquire")
        .into_iter()
        .find(|e| e["exit_code"] == 2)
        .expect("a timeout event");
    assert!(timeout["detail"]["wait_ms"].as_f64().unwrap() >= 900.0);
    let seen = &timeout["detail"]["holders_while_waiting"];
    assert!(seen.as_array().unwrap().contains(&json!(a.pid())), "{seen}");
    a.release();
    b.release();
}

fn new_shared_requests_queue_behind_a_waiting_exclusive_request(env: Env) {
    let reader = Shell::acquire(&env, "doc", &["5", "shared"]);
    let writer = Owner::new();
    let waiting = spawn(&env, &["acquire", "doc", "30", "--owner", &writer.pid()]);
    eventually("the exclusive request registers", || {
        waiters(&env, "doc") == 1
    });
    let late = Owner::new();
    env.run(
        LM,
        &["acquire", "doc", "0.3", "shared", "--owner", &late.pid()],
    )
    .code(2)
    // Files: "queued behind exclusive waiter pid N"; Redis: "queued
    // behind an exclusive waiter (pid N)".
    .stderr_has("queued behind")
    .stderr_has("exclusive waiter");
    // A shared holder asking again is re-entrant, not queued.
    env.run(
        LM,
        &[
            "acquire",
            "doc",
            "0",
            "shared",
            "--owner",
            &reader.pid().to_string(),
        ],
    )
    .ok();
    reader.release();
    finish(waiting).ok();
    env.run(LM, &["check", "doc"])
        .ok()
        .stdout_has(&format!("locked:exclusive:{}", writer.pid()));
}

fn a_waiter_gets_the_lock_soon_after_release(env: Env) {
    let shell = Shell::acquire(&env, "h", &[]);
    let owner = Owner::new();
    let mut waiter = spawn(&env, &["acquire", "h", "30", "--owner", &owner.pid()]);
    eventually("the waiter registers", || waiters(&env, "h") == 1);
    assert!(
        waiter.try_wait().unwrap().is_none(),
        "the waiter must still wait"
    );
    env.run(LM, &["release", "h", "--owner", &shell.pid().to_string()])
        .ok();
    let released = Instant::now();
    let status = waiter.wait().unwrap();
    let handoff = released.elapsed();
    assert!(status.success());
    // Generous: the handoff itself takes milliseconds (bench/ measures it).
    assert!(handoff < Duration::from_secs(1), "handoff took {handoff:?}");
    env.run(LM, &["check", "h"])
        .ok()
        .stdout_has(&format!("locked:exclusive:{}", owner.pid()));
}

fn a_lower_priority_request_by_a_holder_of_a_higher_one_is_refused_with_4(env: Env) {
    let shell = Shell::acquire(&env, "user", &[]);
    let pid = shell.pid().to_string();
    env.run(LM, &["acquire", "state", "0", "--owner", &pid])
        .code(4)
        .one_line_error(LM)
        .stderr_has("'user'")
        .stderr_has("'state'");
    assert_eq!(record(&env, "state"), Value::Null);
    env.run(LM, &["acquire", "temp", "0", "--owner", &pid])
        .code(4);
    // The same lock again, and locks ranked after it, are fine.
    env.run(LM, &["acquire", "user", "0", "--owner", &pid]).ok();
    env.run(LM, &["acquire", "build", "0", "--owner", &pid])
        .ok();
    // Another owner is not bound by this one's holds.
    let other = Owner::new();
    env.run(LM, &["acquire", "state", "0", "--owner", &other.pid()])
        .ok();
    let refusal = events(&env, "acquire")
        .into_iter()
        .find(|e| e["exit_code"] == 4)
        .expect("the refusal is audited");
    assert_eq!(refusal["target"], "state");
}

fn holding_a_lower_number_first_then_a_higher_one_is_allowed(env: Env) {
    let owner = Owner::new();
    for name in [
        "state", "config", "signals", "backup", "temp", "user", "zzz",
    ] {
        env.run(LM, &["acquire", name, "0", "--owner", &owner.pid()])
            .ok();
    }
    // And re-requesting one already held, whatever is held after it.
    env.run(LM, &["acquire", "state", "0", "--owner", &owner.pid()])
        .ok();
}

fn run_passes_the_exit_code_through(env: Env) {
    env.run(LM, &["run", "r", "--", "sh", "-c", "exit 0"]).ok();
    env.run(LM, &["run", "r", "--", "sh", "-c", "exit 7"])
        .code(7);
    env.run(LM, &["run", "r", "--", "sh", "-c", "kill -TERM $$"])
        .code(143);
    env.run(LM, &["run", "r", "--", "no-such-command-wfstate"])
        .code(5)
        .one_line_error(LM)
        .stderr_has("command not found");
    // The lock is released after every one of them.
    env.run(LM, &["check", "r"]).code(1);
    let runs = events(&env, "run");
    assert_eq!(runs.len(), 4);
    assert_eq!(runs[1]["detail"]["child_exit"], 7);
    assert_eq!(runs[2]["exit_code"], 143);
}

fn run_holds_the_lock_as_the_child_and_gives_it_no_lock_fd(env: Env) {
    // The hold follows the child (issue #11): `check` names the child itself.
    let script = r#"echo "me=$$ name=$WFSTATE_LOCK_NAME"; "$LM" check r; ls -l /proc/self/fd/"#;
    let out = env
        .run(
            LM,
            &[
                "run",
                "r",
                "--",
                "bash",
                "-c",
                &format!("LM={} ; {script}", bin_path(LM).display()),
            ],
        )
        .ok()
        .stdout;
    let first = out.lines().next().unwrap();
    let me = first
        .strip_prefix("me=")
        .and_then(|r| r.split(' ').next())
        .unwrap();
    assert!(first.ends_with("name=r"), "{out}");
    assert!(out.contains(&format!("locked:exclusive:{me}\n")), "{out}");
    assert!(
        !out.contains(".locks"),
        "the child inherited a lock descriptor:\n{out}"
    );
    assert!(!out.contains("inotify") && !out.contains("pidfd"), "{out}");
    // Nor a connection to the server (Redis) or any other socket.
    assert!(!out.contains("socket:"), "{out}");
}

fn run_reports_a_conflict_with_2_or_the_chosen_code(env: Env) {
    let shell = Shell::acquire(&env, "r", &[]);
    let marker = env.path("ran");
    let touch = format!("touch {}", marker.display());
    env.run(LM, &["run", "r", "-w", "0.2", "--", "sh", "-c", &touch])
        .code(2)
        .one_line_error(LM);
    env.run(
        LM,
        &[
            "run",
            "r",
            "-w",
            "0",
            "--conflict-exit-code",
            "75",
            "--",
            "sh",
            "-c",
            &touch,
        ],
    )
    .code(75);
    assert!(!marker.exists(), "the command ran without the lock");
    shell.release();
    env.run(LM, &["run", "r", "-w", "0", "--", "sh", "-c", &touch])
        .ok();
    assert!(marker.exists());
}

fn a_sigkilled_run_leaves_the_lock_with_its_child_until_the_child_exits(env: Env) {
    let mut run = env.cmd(LM);
    if on_redis(&env) {
        // A short lease: the hold must outlive several of them below.
        run.env("WFSTATE_LEASE", "1s");
    }
    let mut run = run
        .args(["run", "k", "--", "sh", "-c", "echo $$; exec sleep 300"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(run.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let child_pid: i32 = line.trim().parse().unwrap();
    // The child holds the lock, not the wrapper (issue #11), so killing
    // the wrapper leaves it held; it is stale the moment the child is gone.
    let held = format!("locked:exclusive:{child_pid}");
    env.run(LM, &["check", "k"]).ok().stdout_has(&held);
    run.kill().unwrap();
    run.wait().unwrap();
    env.run(LM, &["check", "k"]).ok().stdout_has(&held);
    if on_redis(&env) {
        // No event to await: let more than two leases pass. A hold that
        // nobody renews once the wrapper is gone would have lapsed.
        std::thread::sleep(Duration::from_millis(2500));
        env.run(LM, &["check", "k"]).ok().stdout_has(&held);
    }
    let _ = Command::new("kill").arg(child_pid.to_string()).status();
    if on_redis(&env) {
        // Redis: the child's hold is released (by a keeper) or its lease
        // lapses; either way nobody holds it once the child is gone.
        eventually("the dead child's hold ends", || {
            env.run(LM, &["check", "k"]).code != 0
        });
        return;
    }
    let t = Instant::now();
    while env.run(LM, &["check", "k"]).code != 2 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "not stale after the child died"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sixteen_processes_times_fifty_increments_lose_none(env: Env) {
    fs::write(env.path("counter"), "0\n").unwrap();
    let script = r#"
        for _ in $(seq 50); do
          "$LM" acquire c 120 --owner $$ || exit 1
          n=$(<counter)
          echo $((n + 1)) > counter
          "$LM" release c --owner $$ || exit 1
        done"#;
    let workers: Vec<Child> = (0..16)
        .map(|_| {
            let mut c = Command::new("bash");
            env.clean_env(&mut c);
            c.arg("-c")
                .arg(script)
                .env("LM", bin_path(LM))
                .spawn()
                .unwrap()
        })
        .collect();
    // Meanwhile `clean` keeps removing the idle mutex file under their feet
    // (files) or sweeping the lock's keys (Redis).
    let mut cleaner = Command::new("bash");
    env.clean_env(&mut cleaner);
    let cleaner = cleaner
        .arg("-c")
        .arg(r#"while [[ ! -e done ]]; do "$LM" clean >/dev/null || exit 1; done"#)
        .env("LM", bin_path(LM))
        .spawn()
        .unwrap();
    for mut w in workers {
        assert!(w.wait().unwrap().success(), "a worker failed");
    }
    fs::write(env.path("done"), "").unwrap();
    assert!(finish(cleaner).code == 0, "clean failed");
    assert_eq!(fs::read_to_string(env.path("counter")).unwrap(), "800\n");
    assert_eq!(events(&env, "acquire").len(), 800);
    assert_eq!(record(&env, "c"), Value::Null);
    if !on_redis(&env) {
        assert!(!env.path(".locks/c.lock").exists());
    }
}

// File-only: writes records into `.locks/` (a pid with another start time).
#[test]
fn a_reused_pid_is_judged_stale_and_taken_over() {
    let env = Env::new();
    // A record naming a live pid, but with another start time: the process
    // that took the lock is gone and its pid now belongs to someone else.
    let live = Owner::new();
    let id = wfstate::lock::Identity::of_pid(live.0.id()).unwrap();
    let rec = json!({
        "name": "p", "type": "exclusive", "timestamp": "2026-01-01T00:00:00Z",
        "holders": [{"pid": id.pid, "start_time": id.start_time + 1, "boot_id": id.boot_id,
                     "host": id.host, "acquired": "2026-01-01T00:00:00Z"}]
    });
    fs::create_dir_all(env.path(".locks")).unwrap();
    fs::write(env.path(".locks/p.lock"), rec.to_string()).unwrap();
    env.run(LM, &["check", "p"]).code(2).stdout_has("stale");
    let other = Owner::new();
    env.run(LM, &["acquire", "p", "0", "--owner", &other.pid()])
        .ok();
    assert_eq!(
        events(&env, "takeover")[0]["detail"]["reason"],
        "pid-reused"
    );
    // With the right start time, the same pid is a live holder.
    let rec = json!({
        "name": "q", "type": "exclusive", "timestamp": "2026-01-01T00:00:00Z",
        "holders": [{"pid": id.pid, "start_time": id.start_time, "boot_id": id.boot_id,
                     "host": id.host, "acquired": "2000-01-01T00:00:00Z"}]
    });
    fs::write(env.path(".locks/q.lock"), rec.to_string()).unwrap();
    // Old, but live: never broken for its age.
    env.run(LM, &["check", "q"])
        .ok()
        .stdout_has(&format!("locked:exclusive:{}", id.pid));
    env.run(LM, &["acquire", "q", "0", "--owner", &other.pid()])
        .code(2);
}

fn the_same_owner_again_counts_once_and_a_sole_shared_holder_upgrades(env: Env) {
    let owner = Owner::new();
    let pid = owner.pid();
    env.run(LM, &["acquire", "u", "0", "shared", "--owner", &pid])
        .ok();
    env.run(LM, &["acquire", "u", "0", "shared", "--owner", &pid])
        .ok();
    assert_eq!(record(&env, "u")["holders"].as_array().unwrap().len(), 1);
    let up = env
        .run(
            LM,
            &["acquire", "u", "0", "exclusive", "--owner", &pid, "--json"],
        )
        .ok()
        .json();
    assert_eq!(up["upgraded"], true);
    assert_eq!(up["type"], "exclusive");
    assert_eq!(up["holders"].as_array().unwrap().len(), 1);
    // An exclusive holder asking for shared keeps its exclusive hold.
    env.run(LM, &["acquire", "u", "0", "shared", "--owner", &pid])
        .ok();
    assert_eq!(record(&env, "u")["type"], "exclusive");
    // One release frees it: nothing was counted twice.
    env.run(LM, &["release", "u", "--owner", &pid]).ok();
    env.run(LM, &["check", "u"]).code(1);

    // Not the sole holder: the upgrade waits, and times out.
    let other = Owner::new();
    env.run(LM, &["acquire", "v", "0", "shared", "--owner", &pid])
        .ok();
    env.run(
        LM,
        &["acquire", "v", "0", "shared", "--owner", &other.pid()],
    )
    .ok();
    env.run(LM, &["acquire", "v", "0.2", "exclusive", "--owner", &pid])
        .code(2);
    assert_eq!(record(&env, "v")["type"], "shared");
}

fn release_by_another_owner_is_refused_with_6_and_force_is_audited(env: Env) {
    let holder = Owner::new();
    let other = Owner::new();
    env.run(LM, &["acquire", "z", "0", "--owner", &holder.pid()])
        .ok();
    env.run(LM, &["release", "z", "--owner", &other.pid()])
        .code(6)
        .one_line_error(LM)
        .stderr_has(&format!("held exclusive by pid {}", holder.pid()));
    env.run(LM, &["check", "z"]).ok();
    env.run(LM, &["release", "z", "--owner", &other.pid(), "--force"])
        .ok();
    env.run(LM, &["check", "z"]).code(1);
    let forced = events(&env, "release")
        .into_iter()
        .find(|e| e["detail"]["forced"] == true)
        .expect("forced release audited");
    assert_eq!(forced["detail"]["forced_pids"], json!([holder.0.id()]));
    // Releasing a lock nobody holds is a quiet no-op.
    env.run(LM, &["release", "never-held", "--owner", &other.pid()])
        .ok();
}

fn bad_names_and_metadata_exit_4_and_create_nothing(env: Env) {
    for name in [
        "a/b",
        "..",
        ".x",
        "",
        "a b",
        "../../etc/x",
        &"n".repeat(129),
    ] {
        env.run(LM, &["acquire", name, "0"])
            .code(4)
            .one_line_error(LM);
        env.run(LM, &["check", name]).code(4);
        env.run(LM, &["release", name]).code(4);
        env.run(LM, &["run", name, "--", "true"]).code(4);
    }
    env.run(LM, &["acquire", "ok", "0", "exclusive", "{not json"])
        .code(4)
        .stderr_has("metadata");
    env.run(LM, &["acquire", "ok", "0", "sideways"]).code(4);
    env.run(LM, &["acquire", "ok", "soon"]).code(4);
    env.run(LM, &["acquire", "ok", "0", "--ttl", "0"]).code(4);
    assert_eq!(env.run(LM, &["list", "json"]).ok().json(), json!([]));
    if !on_redis(&env) {
        assert!(!env.path(".locks").exists(), "{:?}", env.list(".locks"));
    }
    let refusals = events(&env, "acquire");
    assert!(refusals.iter().all(|e| e["exit_code"] == 4), "{refusals:?}");
    // Valid metadata is kept as given.
    let owner = Owner::new();
    env.run(
        LM,
        &[
            "acquire",
            "ok",
            "0",
            "shared",
            r#"{"step":"build","n":[1,2]}"#,
            "--owner",
            &owner.pid(),
        ],
    )
    .ok();
    assert_eq!(
        record(&env, "ok")["holders"][0]["metadata"],
        json!({"step":"build","n":[1,2]})
    );
}

// File-only: a half-written record file in `.locks/`.
#[test]
fn a_corrupt_record_is_reported_never_stolen() {
    let env = Env::new();
    fs::create_dir_all(env.path(".locks")).unwrap();
    fs::write(env.path(".locks/bad.lock"), b"{\"name\": \"bad\", \"hold").unwrap();
    env.run(LM, &["check", "bad"])
        .code(3)
        .one_line_error(LM)
        .stderr_has("clean --force");
    let owner = Owner::new();
    env.run(LM, &["acquire", "bad", "0", "--owner", &owner.pid()])
        .code(3);
    env.run(LM, &["release", "bad", "--owner", &owner.pid()])
        .code(3);
    assert_eq!(env.bytes(".locks/bad.lock"), b"{\"name\": \"bad\", \"hold");
    env.run(LM, &["list"]).ok().stdout_has("CORRUPT");
    assert_eq!(
        env.run(LM, &["list", "json"]).ok().json()[0]["status"],
        "corrupt"
    );
    env.run(LM, &["clean"]).ok().stdout_has("removed 0");
    assert!(env.path(".locks/bad.lock").exists());
    env.run(LM, &["clean", "--force"])
        .ok()
        .stdout_has("removed 1 ");
    assert!(!env.path(".locks/bad.lock").exists());
}

fn clean_removes_stale_records_and_keeps_live_ones(env: Env) {
    let live = Owner::new();
    let mut dying = Owner::new();
    env.run(LM, &["acquire", "keep", "0", "--owner", &live.pid()])
        .ok();
    env.run(LM, &["acquire", "gone1", "0", "--owner", &dying.pid()])
        .ok();
    env.run(
        LM,
        &["acquire", "gone2", "0", "shared", "--owner", &dying.pid()],
    )
    .ok();
    env.run(
        LM,
        &["acquire", "mixed", "0", "shared", "--owner", &dying.pid()],
    )
    .ok();
    env.run(
        LM,
        &["acquire", "mixed", "0", "shared", "--owner", &live.pid()],
    )
    .ok();
    dying.0.kill().unwrap();
    dying.0.wait().unwrap();
    if on_redis(&env) {
        // Redis: the dead owner's keeper releases its holds at once, so
        // nothing is left stale for `clean`, and the live holds stay.
        eventually("the keeper releases the dead owner's holds", || {
            env.run(LM, &["check", "gone1"]).code == 1
                && env.run(LM, &["check", "gone2"]).code == 1
                && record(&env, "mixed")["holders"]
                    .as_array()
                    .is_some_and(|h| h.len() == 1)
        });
        let status = env.run(LM, &["status", "--json"]).ok().json();
        assert_eq!(
            (status["held"].clone(), status["stale"].clone()),
            (json!(2), json!(0))
        );
        env.run(LM, &["clean"]).ok().stdout_has("removed 0");
        env.run(LM, &["check", "keep"]).ok();
        assert_eq!(
            record(&env, "mixed")["holders"][0]["pid"],
            json!(live.0.id())
        );
        assert_eq!(events(&env, "clean")[0]["detail"]["removed"], 0);
        return;
    }
    let status = env.run(LM, &["status", "--json"]).ok().json();
    assert_eq!(
        (status["held"].clone(), status["stale"].clone()),
        (json!(2), json!(2))
    );
    env.run(LM, &["clean"])
        .ok()
        .stdout_has("removed 2 stale lock records");
    // Only the records (and mutex files) of live locks remain, beside the
    // index of who holds what (issue 16).
    assert_eq!(
        env.list(".locks"),
        [
            "keep.lock",
            "keep.mutex",
            "mixed.lock",
            "mixed.mutex",
            "owners"
        ]
    );
    assert_eq!(
        record(&env, "mixed")["holders"].as_array().unwrap().len(),
        1
    );
    env.run(LM, &["check", "keep"]).ok();
    assert_eq!(events(&env, "clean")[0]["detail"]["removed"], 2);
}

fn a_ttl_lapses_and_its_waiter_takes_over_when_it_does(env: Env) {
    let holder = Owner::new();
    env.run(
        LM,
        &["acquire", "t", "0", "--owner", &holder.pid(), "--ttl", "1"],
    )
    .ok();
    env.run(LM, &["check", "t"]).ok();
    let other = Owner::new();
    let started = Instant::now();
    let got = env
        .run(
            LM,
            &["acquire", "t", "30", "--owner", &other.pid(), "--json"],
        )
        .ok()
        .json();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(got["takeovers"][0]["reason"], "ttl-expired");
}

fn status_is_the_default_and_shows_holders_and_waiters(env: Env) {
    env.run(LM, &[]).ok().stdout_has("locks: 0 held");
    let holder = Owner::new();
    env.run(
        LM,
        &["acquire", "w", "0", "shared", "--owner", &holder.pid()],
    )
    .ok();
    let writer = Owner::new();
    let waiting = spawn(&env, &["acquire", "w", "30", "--owner", &writer.pid()]);
    eventually("the waiter registers", || waiters(&env, "w") == 1);
    let text = env.run(LM, &["status"]).ok().stdout;
    assert!(
        text.contains("1 held") && text.contains("1 waiting"),
        "{text}"
    );
    assert!(text.contains(&format!("pid {}", holder.pid())), "{text}");
    assert!(
        text.contains(&format!("waiting: pid {} (exclusive)", waiting.id())),
        "{text}"
    );
    env.run(LM, &["release", "w", "--owner", &holder.pid()])
        .ok();
    finish(waiting).ok();
    env.run(LM, &["acquire"]).code(1);
    env.run(LM, &["list", "yaml"]).code(1);
}

fn verbose_acquire_names_who_held_the_lock_meanwhile(env: Env) {
    let shell = Shell::acquire(&env, "v", &[]);
    let owner = Owner::new();
    let waiter = spawn(
        &env,
        &["acquire", "v", "30", "--owner", &owner.pid(), "--verbose"],
    );
    eventually("the waiter registers", || waiters(&env, "v") == 1);
    shell.release();
    let out = finish(waiter).ok().stdout;
    assert!(out.contains("lock 'v' acquired: exclusive"), "{out}");
    assert!(out.contains("waited for: pid"), "{out}");
}

fn a_state_write_waits_behind_a_lock_manager_holder_and_queues_shared_requests(env: Env) {
    env.init();
    // Held shared: only the waiting state write keeps new shared requests out.
    let shell = Shell::acquire(&env, "state", &["5", "shared"]);
    let mut sm = env.cmd("state-manager");
    let setter = sm
        .args(["--lock-timeout", "30", "set", ".phase", "--string", "impl"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    eventually("the state write registers as a waiter", || {
        waiters(&env, "state") == 1
    });
    let reader = Owner::new();
    env.run(
        LM,
        &[
            "acquire",
            "state",
            "0.2",
            "shared",
            "--owner",
            &reader.pid(),
        ],
    )
    .code(2)
    .stderr_has("queued behind");
    shell.release();
    finish(setter).ok();
    assert_eq!(env.state()["phase"], "impl");
    assert_eq!(record(&env, "state"), Value::Null);
}

// File-only: the `.locks/` folder itself.
#[test]
fn a_locks_folder_symlinked_out_of_the_root_is_refused_with_6() {
    let env = Env::new();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), env.path(".locks")).unwrap();
    env.run(LM, &["acquire", "x", "0"])
        .code(6)
        .one_line_error(LM);
    env.run(LM, &["check", "x"]).code(6);
    env.run(LM, &["list"]).code(6);
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
}
