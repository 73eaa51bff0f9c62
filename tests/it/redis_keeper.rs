//! The keeper and `lock-manager run` on Redis (issue 14), with real shells,
//! a real server and faults injected: the keeper renews the leases of a
//! shell that keeps nothing open, gives them back the instant that shell
//! dies, and when the keeper itself dies or stalls the lease lapses, the
//! next host takes over and the old owner's writes are refused by their
//! fencing token. `run` renews its child's lease and stops the child when a
//! renewal is not confirmed in time.
//!
//! Two "hosts" on one machine: `WFSTATE_TEST_HOST_ID=b` makes a group of
//! processes look like another host, whose view of host a's holders comes
//! from leases only. Every wait polls a condition with a deadline.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Env, bin_dir, read};

/// How long any awaited condition may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// A shell (`sh -s`) fed one command line at a time: the lock owner, as
/// in a real script. It stays alive between commands; its lock-manager
/// calls act for it. Killed when dropped.
struct Shell {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
    /// The shell's own pid (`timeout` is its parent).
    pid: u32,
}

impl Shell {
    /// A shell of host `host` (a: this host's real name) whose grants last
    /// `lease` unless renewed.
    fn new(env: &Env, host: Option<&str>, lease: &str) -> Shell {
        // `timeout` bounds the shell's life: a test that hangs fails.
        let mut cmd = Command::new("timeout");
        cmd.args(["120", "sh", "-s"]);
        env.clean_env(&mut cmd);
        let path = format!(
            "{}:{}",
            bin_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        cmd.env("PATH", path).env("WFSTATE_LEASE", lease);
        match host {
            Some(h) => cmd.env("WFSTATE_TEST_HOST_ID", h),
            None => cmd.env_remove("WFSTATE_TEST_HOST_ID"),
        };
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("timeout and sh");
        let stdin = child.stdin.take().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut sh = Shell {
            child,
            stdin,
            out,
            pid: 0,
        };
        let (_, pid) = sh.run("echo $$");
        sh.pid = pid.trim().parse().expect("the shell's pid");
        sh
    }

    /// Runs one command line in the shell; its exit code and its output
    /// (stdout and stderr).
    fn run(&mut self, line: &str) -> (i32, String) {
        writeln!(self.stdin, "{{ {line}\n}} 2>&1; echo \"::rc=$?\"").expect("the shell reads");
        self.stdin.flush().unwrap();
        let mut text = String::new();
        loop {
            let mut l = String::new();
            let n = self.out.read_line(&mut l).expect("the shell writes");
            assert!(n > 0, "the shell ended; output so far: {text}");
            if let Some(rc) = l.trim_end().strip_prefix("::rc=") {
                return (rc.parse().unwrap(), text);
            }
            text.push_str(&l);
        }
    }

    /// Runs `line`, asserting exit 0; its output.
    fn ok(&mut self, line: &str) -> String {
        let (rc, text) = self.run(line);
        assert_eq!(rc, 0, "`{line}` exited {rc}: {text}");
        text
    }

    /// SIGKILL: no trap, no exit path of its own.
    fn kill(&mut self) {
        signal(self.pid, libc::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        signal(self.pid, libc::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a pid this test started.
    unsafe { libc::kill(pid as i32, sig) };
}

/// Whether `pid` no longer runs (gone, or a zombie).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Polls `done` until it holds; fails the test after [`PATIENCE`].
fn await_that(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "still not the case: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The keeper processes of owner `pid` on this machine: `lock-manager
/// keeper HOLDER` whose holder id names that pid.
fn keepers_of(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{p}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.len() >= 3
            && args[0] == b"lock-manager"
            && args[1] == b"keeper"
            && String::from_utf8_lossy(args[2]).split(':').nth(1) == Some(&pid.to_string())
            && !gone(p)
        {
            found.push(p);
        }
    }
    found
}

/// The one keeper of owner `pid`, once it runs.
fn keeper_of(pid: u32) -> u32 {
    await_that(&format!("a keeper runs for pid {pid}"), || {
        !keepers_of(pid).is_empty()
    });
    let ks = keepers_of(pid);
    assert_eq!(ks.len(), 1, "one keeper per owner: {ks:?}");
    ks[0]
}

/// The holders of lock `name` on the server: holder id → lease end (ms).
fn leases(env: &Env, name: &str) -> Vec<(String, i64)> {
    let key = format!("wfstate:{{default}}:lock:{name}:h");
    let text = env.server().cli(&["ZRANGE", &key, "0", "-1", "WITHSCORES"]);
    let lines: Vec<&str> = text.lines().collect();
    lines
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (c[0].to_string(), c[1].parse().unwrap()))
        .collect()
}

/// The server's clock, in ms.
fn server_ms(env: &Env) -> i64 {
    let text = env.server().cli(&["TIME"]);
    let mut it = text.lines().map(|l| l.trim().parse::<i64>().unwrap());
    let (s, us) = (it.next().unwrap(), it.next().unwrap());
    s * 1000 + us / 1000
}

/// Whether a holder id names process `pid`.
fn names_pid(id: &str, pid: u32) -> bool {
    id.split(':').nth(1) == Some(&pid.to_string())
}

#[test]
fn acquire_from_a_shell_starts_one_keeper_that_renews_the_lease_past_its_first_end() {
    let env = Env::redis();
    let mut sh = Shell::new(&env, None, "2s");
    sh.ok("lock-manager acquire build");
    let keeper = keeper_of(sh.pid);
    let first = leases(&env, "build");
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(names_pid(&first[0].0, sh.pid), "{first:?}");
    let first_end = first[0].1;
    // Past the first lease end, the shell (which keeps nothing open)
    // still holds it, with a later lease end.
    await_that("the server's clock passes the first lease end", || {
        server_ms(&env) > first_end + 300
    });
    let now = leases(&env, "build");
    assert_eq!(now.len(), 1, "{now:?}");
    assert!(names_pid(&now[0].0, sh.pid), "{now:?}");
    assert!(now[0].1 > first_end, "renewed: {now:?} vs {first_end}");
    // A second lock of the same shell: still one keeper, renewing both.
    sh.ok("lock-manager acquire deploy");
    assert_eq!(keepers_of(sh.pid), vec![keeper]);
    let deploy_end = leases(&env, "deploy")[0].1;
    await_that("the second lease is renewed too", || {
        leases(&env, "deploy")
            .first()
            .is_some_and(|l| l.1 > deploy_end)
    });
    // Nothing held: the keeper exits.
    sh.ok("lock-manager release build && lock-manager release deploy");
    await_that("the keeper exits once nothing is held", || gone(keeper));
    // A later acquire of the same shell gets a keeper again.
    sh.ok("lock-manager acquire build");
    let again = keeper_of(sh.pid);
    assert_ne!(again, keeper);
}

#[test]
fn acquire_in_a_command_substitution_returns_at_once_and_the_keeper_holds_no_descriptor_of_its_caller()
 {
    let env = Env::redis();
    let mut sh = Shell::new(&env, None, "30s");
    // A script that ignores the signals that end processes (as nohup
    // does): its keeper still ends by SIGTERM, as a daemon should.
    sh.ok("trap '' TERM INT HUP");
    // Fd 3 and stdout are the substitution's pipe: the shell waits for its
    // end, which a keeper holding either would never let come.
    let text = sh.ok(
        "v=$(exec 3>&1; lock-manager acquire build --json -c); echo \"token=$(echo \"$v\" | tr -d ' ' | grep -o '\"fencing_token\":[0-9]*')\"",
    );
    assert!(text.contains("token=\"fencing_token\":1"), "{text}");
    let keeper = keeper_of(sh.pid);
    // The keeper is in a session of its own, so the caller's terminal and
    // process group never signal it.
    let stat = std::fs::read_to_string(format!("/proc/{keeper}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let (pgrp, session) = (fields[2], fields[3]);
    assert_eq!(session, keeper.to_string(), "setsid: {stat}");
    assert_eq!(pgrp, keeper.to_string(), "{stat}");
    // Its descriptors 0-2 are /dev/null, and it has none of its caller's.
    for fd in 0..3 {
        let target = std::fs::read_link(format!("/proc/{keeper}/fd/{fd}")).unwrap();
        assert_eq!(target.to_str(), Some("/dev/null"), "fd {fd}");
    }
    for entry in std::fs::read_dir(format!("/proc/{keeper}/fd"))
        .unwrap()
        .flatten()
    {
        let target = std::fs::read_link(entry.path()).unwrap_or_default();
        assert!(
            !target.to_string_lossy().starts_with("pipe:"),
            "the keeper holds a pipe: fd {:?} -> {target:?}",
            entry.file_name()
        );
    }
    signal(keeper, libc::SIGTERM);
    await_that("SIGTERM ends the keeper", || gone(keeper));
}

#[test]
fn a_killed_owner_is_released_by_its_keeper_at_once_and_another_host_gets_the_lock() {
    let env = Env::redis();
    // A lease far longer than host b waits: only the keeper's release
    // lets b in.
    let mut owner = Shell::new(&env, None, "60s");
    owner.ok("lock-manager acquire deploy");
    let keeper = keeper_of(owner.pid);
    owner.kill();
    let mut b = Shell::new(&env, Some("b"), "60s");
    let (rc, text) = b.run("lock-manager acquire deploy 20");
    assert_eq!(rc, 0, "host b got the lock released by the keeper: {text}");
    await_that("the keeper exits after releasing", || gone(keeper));
    let holders = leases(&env, "deploy");
    assert_eq!(holders.len(), 1, "{holders:?}");
    assert!(holders[0].0.starts_with("b:"), "{holders:?}");
    // Audited, with why.
    let events = env
        .server()
        .cli(&["XRANGE", "wfstate:{default}:audit", "-", "+"]);
    assert!(events.contains("owner-exited"), "{events}");
}

/// Host a's shell holds `state` with a short lease; `stall` takes its
/// keeper out of the game; host b then gets `state` once the lease lapsed,
/// and the old owner's write is refused by its fencing token (exit 6),
/// the state unchanged.
fn old_owner_is_fenced_after(stall: impl FnOnce(u32)) -> (Env, Shell, Shell, u32) {
    let env = Env::redis();
    env.init();
    env.sm(&["set", ".phase", "\"before\""]);
    let mut a = Shell::new(&env, None, "1s");
    a.ok("lock-manager acquire state");
    let keeper = keeper_of(a.pid);
    stall(keeper);
    let mut b = Shell::new(&env, Some("b"), "30s");
    let (rc, text) = b.run("lock-manager acquire state 20");
    assert_eq!(rc, 0, "host b takes over once the lease lapsed: {text}");
    b.ok("state-manager set .phase '\"b-wrote\"'");
    let (rc, text) = a.run("state-manager set .phase '\"stale-write\"'");
    assert_eq!(rc, 6, "the old owner's write is refused: {text}");
    assert!(text.contains("taken over"), "{text}");
    assert_eq!(read(&env, ".phase"), json!("b-wrote"));
    (env, a, b, keeper)
}

#[test]
fn a_killed_keeper_lets_the_lease_lapse_and_the_old_owner_write_is_refused() {
    let (env, _a, _b, keeper) = old_owner_is_fenced_after(|keeper| {
        signal(keeper, libc::SIGKILL);
        await_that("the keeper is dead", || gone(keeper));
    });
    assert!(gone(keeper));
    let events = env
        .server()
        .cli(&["XRANGE", "wfstate:{default}:audit", "-", "+"]);
    assert!(events.contains("lease-expired"), "{events}");
}

/// Sends SIGCONT to the process it names when dropped, so that a failed
/// test leaves no stopped keeper behind.
struct ContinueOnDrop(std::cell::Cell<Option<u32>>);

impl Drop for ContinueOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0.get() {
            signal(pid, libc::SIGCONT);
        }
    }
}

#[test]
fn a_keeper_paused_past_the_lease_does_not_revive_the_old_hold_when_it_resumes() {
    let stopped = ContinueOnDrop(std::cell::Cell::new(None));
    let (env, mut a, _b, keeper) = old_owner_is_fenced_after(|keeper| {
        stopped.0.set(Some(keeper));
        signal(keeper, libc::SIGSTOP);
    });
    // Kleppmann's paused client: it wakes up and renews late.
    signal(keeper, libc::SIGCONT);
    await_that("the resumed keeper finds its hold lapsed and exits", || {
        gone(keeper)
    });
    let holders = leases(&env, "state");
    assert_eq!(holders.len(), 1, "{holders:?}");
    assert!(
        holders[0].0.starts_with("b:"),
        "only host b holds it: {holders:?}"
    );
    let (rc, text) = a.run("state-manager set .phase '\"stale-again\"'");
    assert_eq!(rc, 6, "{text}");
    assert!(text.contains("taken over by pid"), "{text}");
    assert_eq!(read(&env, ".phase"), json!("b-wrote"));
}

#[test]
fn run_exports_the_fencing_token_and_its_command_writes_with_it() {
    let env = Env::redis();
    env.init();
    let mut sh = Shell::new(&env, None, "30s");
    let epoch_and_tokens: Vec<(String, String)> = (0..2)
        .map(|_| {
            let text = sh.ok(
                "lock-manager run build -- sh -c 'echo \"$WFSTATE_FENCING_EPOCH $WFSTATE_FENCING_TOKEN\"'",
            );
            let (e, t) = text.trim().split_once(' ').expect("epoch and token");
            (e.to_string(), t.to_string())
        })
        .collect();
    let epoch = env.server().cli(&["GET", "wfstate:{default}:epoch"]);
    let fence = env
        .server()
        .cli(&["HGET", "wfstate:{default}:lock:build", "fence"]);
    assert_eq!(epoch_and_tokens[0].0, epoch);
    assert_eq!(epoch_and_tokens[1].0, epoch);
    // One grant each: the second token is the counter now, one above the first.
    assert_eq!(epoch_and_tokens[1].1, fence);
    let first: u64 = epoch_and_tokens[0].1.parse().unwrap();
    assert_eq!(epoch_and_tokens[1].1, (first + 1).to_string());
    // The command holds `state` itself: its own writes go through.
    sh.ok("lock-manager run state -- state-manager set .phase '\"by-run\"'");
    assert_eq!(read(&env, ".phase"), json!("by-run"));
    assert!(
        leases(&env, "state").is_empty(),
        "released after the command"
    );
    // `run` renews for itself: no keeper is left behind for it.
    assert!(keepers_of(sh.pid).is_empty());
}

/// `run NAME -- CMD` whose renewals stop reaching the server: `fault`
/// (given the server) breaks it once the command started; `run` must end
/// the command's whole process group and exit 6 or 8, never 0.
fn run_stops_its_command_when(fault: impl FnOnce(&mut Env)) -> (Env, i32, String) {
    let mut env = Env::redis();
    let mut cmd = env.cmd("lock-manager");
    cmd.env("WFSTATE_LEASE", "1s")
        .args([
            "run",
            "build",
            "--",
            "sh",
            "-c",
            "sleep 300 & echo \"$$ $!\"; wait",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // A file, not a pipe: a survivor of the command holding it must
        // not make the test wait for it.
        .stderr(std::fs::File::create(env.path("run.err")).unwrap());
    let mut run = cmd.spawn().unwrap();
    let mut out = BufReader::new(run.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let pids: Vec<u32> = line
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2, "{line}");
    fault(&mut env);
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(s) = run.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = run.kill();
            panic!("run did not stop its command");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The command and what it started in the background are gone.
    for &pid in &pids {
        assert!(gone(pid), "pid {pid} outlived the lost lock");
    }
    let stderr = std::fs::read_to_string(env.path("run.err")).unwrap();
    let code = status.code();
    assert!(
        matches!(code, Some(6) | Some(8)),
        "exit 6 or 8, never 0: {status:?} {stderr}"
    );
    assert!(stderr.contains("was stopped"), "{stderr}");
    (env, code.unwrap(), stderr)
}

#[test]
fn run_whose_server_pauses_past_the_lease_stops_its_command_and_no_one_holds_twice() {
    let (env, code, stderr) = run_stops_its_command_when(|env| env.server().pause());
    env.server().resume();
    assert_eq!(code, 8, "{stderr}");
    assert!(stderr.contains("no renewal confirmed"), "{stderr}");
    // After the pause, the old hold is not renewed back to life: another
    // host gets the lock at once.
    let mut b = Shell::new(&env, Some("b"), "30s");
    let (rc, text) = b.run("lock-manager acquire build 0");
    assert_eq!(rc, 0, "{text}");
    let holders = leases(&env, "build");
    assert_eq!(holders.len(), 1, "{holders:?}");
    assert!(holders[0].0.starts_with("b:"), "{holders:?}");
}

#[test]
fn run_whose_server_is_killed_stops_its_command_and_exits_8() {
    let (_env, code, stderr) = run_stops_its_command_when(|env| env.server_mut().kill());
    assert_eq!(code, 8, "{stderr}");
    assert!(stderr.contains("no renewal confirmed"), "{stderr}");
}

#[test]
fn run_whose_lock_is_taken_over_stops_its_command_and_exits_6() {
    let (_env, code, stderr) = run_stops_its_command_when(|env| {
        // An operator forces the lock away; the next renewal learns it.
        let mut c = env.cmd("lock-manager");
        let out = c.args(["release", "build", "--force"]).output().unwrap();
        assert!(out.status.success(), "{out:?}");
    });
    assert_eq!(code, 6, "{stderr}");
    assert!(stderr.contains("taken over"), "{stderr}");
}

#[test]
fn run_whose_lock_is_taken_while_its_command_runs_has_the_command_s_writes_refused_and_never_exits_0()
 {
    let env = Env::redis();
    env.init();
    env.sm(&["set", ".phase", "\"before\""]);
    let sm = crate::harness::bin_path("state-manager");
    let script = format!(
        "echo ready; read go; '{}' set .phase '\"child\"'; echo \"rc=$?\"",
        sm.display()
    );
    let mut run = env
        .cmd("lock-manager")
        .env("WFSTATE_LEASE", "30s")
        .env("LOCK_TIMEOUT", "2")
        .args(["run", "state", "--", "sh", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(env.path("run.err")).unwrap())
        .spawn()
        .unwrap();
    let mut stdin = run.stdin.take().unwrap();
    let mut out = BufReader::new(run.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    // Taken from the command while it runs: an operator's force, then
    // another host's grant, long before run's next renewal.
    env.run("lock-manager", &["release", "state", "--force"])
        .ok();
    let mut b = Shell::new(&env, Some("b"), "30s");
    b.ok("lock-manager acquire state 5");
    writeln!(stdin, "go").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    // The command's write presents the token it was handed: refused.
    assert_eq!(
        line.trim(),
        "rc=6",
        "{}",
        std::fs::read_to_string(env.path("run.err")).unwrap()
    );
    assert_eq!(read(&env, ".phase"), json!("before"));
    drop(stdin);
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(s) = run.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "run did not end");
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(env.path("run.err")).unwrap();
    assert_eq!(
        status.code(),
        Some(6),
        "never 0 after losing the lock: {stderr}"
    );
    assert!(stderr.contains("taken over"), "{stderr}");
}

#[test]
fn a_sigkilled_run_leaves_the_lease_with_its_command_which_its_keeper_renews_until_it_exits() {
    let env = Env::redis();
    let mut run = env
        .cmd("lock-manager")
        .env("WFSTATE_LEASE", "2s")
        .args(["run", "k", "--", "sh", "-c", "echo $$; exec sleep 300"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(run.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let child: u32 = line.trim().parse().unwrap();
    // Whatever happens below, the command does not outlive the test.
    struct Kill(u32);
    impl Drop for Kill {
        fn drop(&mut self) {
            signal(self.0, libc::SIGKILL);
        }
    }
    let _kill = Kill(child);
    // `run` starts the command's keeper just after the command: kill it
    // once that keeper runs (see docs/redis.md for the window before).
    let keeper = keeper_of(child);
    run.kill().unwrap();
    run.wait().unwrap();
    let end = leases(&env, "k")
        .first()
        .map(|l| l.1)
        .expect("held after the wrapper died");
    // Long past the lease in force when the wrapper died, the command
    // still holds it: its keeper renews it.
    await_that("the server's clock passes that lease end", || {
        server_ms(&env) > end + 300
    });
    let now = leases(&env, "k");
    assert_eq!(now.len(), 1, "{now:?}");
    assert!(names_pid(&now[0].0, child), "{now:?}");
    assert!(now[0].1 > end, "renewed: {now:?}");
    assert_eq!(keepers_of(child), vec![keeper]);
    // The command exits: its keeper gives the lock back and exits.
    signal(child, libc::SIGTERM);
    await_that("the lock is free once the command exited", || {
        leases(&env, "k").is_empty()
    });
    await_that("the keeper exits", || gone(keeper));
}

#[test]
fn a_keeper_that_cannot_reach_the_server_gives_up_once_the_lease_could_have_lapsed() {
    let env = Env::redis();
    env.init();
    env.sm(&["set", ".phase", "\"before\""]);
    let mut a = Shell::new(&env, None, "1s");
    a.ok("lock-manager acquire state");
    let keeper = keeper_of(a.pid);
    env.server().pause();
    struct Resume<'a>(&'a Env);
    impl Drop for Resume<'_> {
        fn drop(&mut self) {
            self.0.server().resume();
        }
    }
    let resume = Resume(&env);
    // It retries, then leaves the lease to lapse on the server by itself.
    await_that("the keeper gives up while the server is paused", || {
        gone(keeper)
    });
    drop(resume);
    // No double grant after the pause: the old hold lapsed, another host
    // gets the lock at once, and the old owner's write is refused.
    let mut b = Shell::new(&env, Some("b"), "30s");
    let (rc, text) = b.run("lock-manager acquire state 0");
    assert_eq!(rc, 0, "{text}");
    let (rc, text) = a.run("state-manager set .phase '\"stale\"'");
    assert_eq!(rc, 6, "{text}");
    assert_eq!(read(&env, ".phase"), json!("before"));
}
