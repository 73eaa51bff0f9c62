//! Lock requests that reach the Redis server after their client gave up
//! (issue 14; faults-findings 2): an acquire-try sent to a paused server
//! sits in its socket buffer while the client times out (exit 8); on
//! SIGCONT the server runs it. A try carries the latest server time it
//! may be granted at, so that such a late try grants nothing: otherwise
//! the lock would be held, for one lease, by a client that has exited
//! and started no keeper.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::{Env, Owner, Run, await_cond, wait_at_most};

/// A lease short enough that a lapse happens within a test.
const LEASE: &str = "1s";
const LEASE_MS: u64 = 1000;

/// `lock-manager ARGS` as a process of host `host`, replies awaited at
/// most `timeout`.
fn lm_cmd(env: &Env, host: &str, timeout: &str, args: &[&str]) -> std::process::Command {
    let mut c = env.cmd("lock-manager");
    c.env("WFSTATE_TEST_HOST_ID", host)
        .env("WFSTATE_LEASE", LEASE)
        .env("WFSTATE_REDIS_TIMEOUT", timeout)
        .args(args);
    c
}

fn lm(env: &Env, host: &str, args: &[&str]) -> Run {
    Run::of(lm_cmd(env, host, "2s", args).output().expect("spawn"))
}

/// A waiter's try sent while the server is stopped times out (exit 8);
/// when the server resumes, past the holder's lease, that try must not be
/// granted: the lock is free, and the next request gets it at once.
#[test]
fn a_try_that_reaches_a_resumed_server_after_its_client_gave_up_grants_nothing() {
    let env = Env::redis();
    let a = Owner::new();
    lm(&env, "a", &["acquire", "x", "0", "--owner", &a.pid()]).ok();
    // W waits for x (as a writer: it is listed in lock:x:w); with a 1 s
    // lease it tries again within half a lease, whatever happens.
    let w = Owner::new();
    let mut waiter = lm_cmd(
        &env,
        "b",
        "300ms",
        &["acquire", "x", "60", "--owner", &w.pid()],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    await_cond(Duration::from_secs(10), "the waiter queued", || {
        env.server().cli(&["ZCARD", "wfstate:{default}:lock:x:w"]) == "1"
    });
    env.server().pause();
    let stopped = Instant::now();
    // Its next try sits in the stopped server's socket: it gives up.
    let status = wait_at_most(&mut waiter, Duration::from_secs(15))
        .expect("the waiter hangs while the server is stopped");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut waiter.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(8), "the waiter: {err}");
    // The stop lasts past A's lease (the fault's length, not a wait for
    // an event): when the server runs W's try, x is free to grant.
    let past = Duration::from_millis(LEASE_MS * 5 / 2);
    if let Some(rest) = past.checked_sub(stopped.elapsed()) {
        std::thread::sleep(rest);
    }
    env.server().resume();
    // The late try ran before any request of ours (its bytes were there
    // first). W's client is gone: it must hold nothing.
    let r = lm(&env, "b", &["check", "x"]);
    assert!(
        !r.stdout.contains(&format!(":{}", w.pid())),
        "the late try was granted to W, which exited 8: {}",
        r.stdout
    );
    r.code(1).stdout_has("unlocked");
    // And the next request is granted at once.
    let c = Owner::new();
    lm(&env, "b", &["acquire", "x", "0", "--owner", &c.pid()]).ok();
    lm(&env, "b", &["check", "x"])
        .ok()
        .stdout_has(&format!("locked:exclusive:{}", c.pid()));
}
