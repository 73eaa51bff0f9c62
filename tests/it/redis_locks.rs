//! The lock registry on Redis (issue 14): holds are leases on the server,
//! shared by every host. Two "hosts" on one machine: the commands of each
//! run with `WFSTATE_TEST_HOST_ID=a` or `=b`, so a holder of the other
//! host cannot be checked by its pid and its liveness comes from its lease.
//!
//! A lease is made to end by `--ttl` (the cap on a whole hold), which no
//! keeper renewal extends, so these tests do not depend on whether the
//! owner's keeper runs.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Env, Owner, Run, assert_schema};

/// `BIN ARGS` on host `host`.
fn on(env: &Env, host: &str, bin: &str, args: &[&str]) -> Run {
    Run::of(cmd_on(env, host, bin).args(args).output().expect("spawn"))
}

fn cmd_on(env: &Env, host: &str, bin: &str) -> Command {
    let mut c = env.cmd(bin);
    c.env("WFSTATE_TEST_HOST_ID", host)
        .env_remove("WFSTATE_LEASE")
        .env_remove("WFSTATE_REDIS_REPLICAS");
    c
}

/// `lock-manager acquire NAME ARGS --owner OWNER --json` on `host`,
/// asserting success; the JSON.
fn grant(env: &Env, host: &str, name: &str, owner: &Owner, args: &[&str]) -> Value {
    let pid = owner.pid();
    let mut all = vec!["acquire", name];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--owner", &pid, "--json"]);
    let v = on(env, host, "lock-manager", &all).ok().json();
    assert_schema("lock-manager-acquire.schema.json", &v);
    v
}

fn key(name: &str) -> String {
    format!("wfstate:{{default}}:{name}")
}

/// The holder ids of lock `name`, as the server has them.
fn holder_ids(env: &Env, name: &str) -> Vec<String> {
    let out = env
        .server()
        .cli(&["ZRANGE", &key(&format!("lock:{name}:h")), "0", "-1"]);
    out.lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .collect()
}

/// The pid of the keeper of holder `id` (`lock-manager keeper ID`), if one runs.
fn keeper_of(id: &str) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_keeper = args.contains(&b"keeper".as_slice()) && args.contains(&id.as_bytes());
        let state = std::fs::read_to_string(e.path().join("stat")).ok()?;
        let zombie = state.rsplit(')').next()?.trim_start().starts_with('Z');
        (is_keeper && !zombie).then_some(pid)
    })
}

/// Waits (at most 20 s) until `cond` holds: for an event the test cannot
/// block on, such as a server-side registration by another process.
#[track_caller]
fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for `child` at most 20 s; its exit code.
#[track_caller]
fn wait_exit(child: &mut Child) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code().unwrap_or(-1);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("child did not exit within 20 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The audit events on the server's stream, as JSON.
fn stream_events(env: &Env) -> Vec<Value> {
    env.server()
        .cli(&["--no-raw", "XRANGE", &key("audit"), "-", "+"])
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let start = l.find("\"{")?;
            // redis-cli --no-raw quotes the value: unescape it.
            let quoted = &l[start..];
            let text: String = serde_json::from_str(quoted).ok()?;
            serde_json::from_str(&text).ok()
        })
        .collect()
}

#[test]
fn a_holder_on_one_host_blocks_the_other_and_is_named_with_its_holder_id() {
    let env = Env::redis();
    let owner = Owner::new();
    grant(&env, "a", "build", &owner, &[]);
    let ids = holder_ids(&env, "build");
    assert_eq!(ids.len(), 1);
    assert!(
        ids[0].starts_with(&format!("a:{}:", owner.pid())),
        "{ids:?}"
    );
    // Host b cannot see the pid, and the lease is live: it waits, then 2.
    on(&env, "b", "lock-manager", &["acquire", "build", "0.3"])
        .code(2)
        .one_line_error("lock-manager")
        .stderr_has(&format!("holder id {}", ids[0]))
        .stderr_has(&format!("--force --holder {}", ids[0]));
    let check = on(&env, "b", "lock-manager", &["check", "build"]).ok();
    assert_eq!(
        check.stdout.trim(),
        format!("locked:exclusive:{}", owner.pid())
    );
    // Its lease vouches for it: not "cannot verify", not "never taken over".
    assert_eq!(check.stderr, "", "no note on a leased holder");
    let list = on(&env, "b", "lock-manager", &["list"]).ok();
    assert!(
        list.stdout.contains("VALID") && !list.stdout.contains("cannot verify"),
        "{}",
        list.stdout
    );
    let status = on(&env, "b", "lock-manager", &["status"]).ok();
    assert!(
        !status.stdout.contains("release --force"),
        "{}",
        status.stdout
    );
    let json = on(&env, "b", "lock-manager", &["list", "--json"])
        .ok()
        .json();
    assert!(
        json[0]["holders"][0].get("unverifiable").is_none(),
        "{json}"
    );
    // Its own host releases it; host b gets it at once.
    on(
        &env,
        "a",
        "lock-manager",
        &["release", "build", "--owner", &owner.pid()],
    )
    .ok();
    on(&env, "b", "lock-manager", &["acquire", "build", "0"]).ok();
}

#[test]
fn shared_holders_share_and_exclude_an_exclusive_request() {
    let env = Env::redis();
    let (o1, o2) = (Owner::new(), Owner::new());
    grant(&env, "a", "data", &o1, &["--shared"]);
    let v = grant(&env, "b", "data", &o2, &["--shared"]);
    assert_eq!(v["type"], "shared");
    assert_eq!(v["holders"].as_array().unwrap().len(), 2);
    assert_eq!(holder_ids(&env, "data").len(), 2, "both on the server");
    on(
        &env,
        "b",
        "lock-manager",
        &["acquire", "data", "0", "exclusive"],
    )
    .code(2)
    .stderr_has("held shared by");
    let list = on(&env, "a", "lock-manager", &["list", "--json"])
        .ok()
        .json();
    assert_eq!(list[0]["holders"].as_array().unwrap().len(), 2, "{list}");
    assert_schema("lock-manager-list.schema.json", &list);
}

#[test]
fn a_waiting_writer_holds_back_new_readers_and_gets_the_lock_on_release() {
    let env = Env::redis();
    let reader = Owner::new();
    grant(&env, "a", "db", &reader, &["--shared"]);
    let writer = Owner::new();
    let mut waiting = cmd_on(&env, "b", "lock-manager")
        .args(["acquire", "db", "20", "exclusive", "--owner", &writer.pid()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let waiters = key("lock:db:w");
    until("the writer is registered as a waiter", || {
        env.server().cli(&["ZCARD", &waiters]) == "1"
    });
    // A new reader on either host queues behind the writer.
    let late = Owner::new();
    on(
        &env,
        "a",
        "lock-manager",
        &["acquire", "db", "0", "shared", "--owner", &late.pid()],
    )
    .code(2)
    .stderr_has("queued behind an exclusive waiter");
    on(
        &env,
        "a",
        "lock-manager",
        &["release", "db", "--owner", &reader.pid()],
    )
    .ok();
    assert_eq!(wait_exit(&mut waiting), 0);
    let check = on(&env, "a", "lock-manager", &["check", "db"]).ok();
    assert_eq!(
        check.stdout.trim(),
        format!("locked:exclusive:{}", writer.pid())
    );
    assert_eq!(env.server().cli(&["ZCARD", &waiters]), "0");
}

#[test]
fn the_same_owner_again_is_one_hold_with_one_token_and_a_sole_reader_upgrades() {
    let env = Env::redis();
    let owner = Owner::new();
    let first = grant(&env, "a", "cfg", &owner, &["--shared"]);
    let again = grant(&env, "a", "cfg", &owner, &["--shared"]);
    assert_eq!(again["already_held"], true);
    assert_eq!(again["fencing_token"], first["fencing_token"]);
    assert_eq!(holder_ids(&env, "cfg").len(), 1);
    // The sole shared holder asks for exclusive: upgraded, a new token.
    let up = grant(&env, "a", "cfg", &owner, &["--exclusive"]);
    assert_eq!(up["upgraded"], true);
    assert_eq!(up["type"], "exclusive");
    assert!(up["fencing_token"].as_u64() > first["fencing_token"].as_u64());
    // Not the sole holder: the upgrade waits for the other reader.
    let env = Env::redis();
    let (o1, o2) = (Owner::new(), Owner::new());
    grant(&env, "a", "cfg", &o1, &["--shared"]);
    grant(&env, "b", "cfg", &o2, &["--shared"]);
    on(
        &env,
        "a",
        "lock-manager",
        &["acquire", "cfg", "0.2", "exclusive", "--owner", &o1.pid()],
    )
    .code(2);
}

#[test]
fn the_hierarchy_is_checked_against_what_the_owner_holds_on_the_server() {
    let env = Env::redis();
    let owner = Owner::new();
    grant(&env, "a", "user", &owner, &[]);
    for lower in ["state", "config", "temp"] {
        on(
            &env,
            "a",
            "lock-manager",
            &["acquire", lower, "0", "--owner", &owner.pid()],
        )
        .code(4)
        .one_line_error("lock-manager")
        .stderr_has("holds 'user' (priority 10)")
        .stderr_has(&format!("request '{lower}'"));
    }
    // A higher one, and the same again, are fine; another owner is not bound.
    grant(&env, "a", "zzz", &owner, &[]);
    grant(&env, "a", "user", &owner, &[]);
    let other = Owner::new();
    grant(&env, "b", "state", &other, &[]);
    assert!(holder_ids(&env, "state").len() == 1);
}

#[test]
fn release_force_holder_removes_only_that_holder() {
    let env = Env::redis();
    let (o1, o2) = (Owner::new(), Owner::new());
    grant(&env, "a", "pool", &o1, &["--shared"]);
    grant(&env, "b", "pool", &o2, &["--shared"]);
    let ids = holder_ids(&env, "pool");
    let gone = ids.iter().find(|i| i.starts_with("a:")).unwrap().clone();
    let kept = ids.iter().find(|i| i.starts_with("b:")).unwrap().clone();
    // Not forced: another's hold is not ours to release.
    on(
        &env,
        "b",
        "lock-manager",
        &["release", "pool", "--holder", &gone],
    )
    .code(1)
    .stderr_has("--force");
    let v = on(
        &env,
        "b",
        "lock-manager",
        &["release", "pool", "--force", "--holder", &gone, "--json"],
    )
    .ok()
    .json();
    assert_schema("lock-manager-release.schema.json", &v);
    assert_eq!(v["forced_pids"], serde_json::json!([o1.0.id()]));
    assert_eq!(holder_ids(&env, "pool"), vec![kept]);
    // A holder id that does not hold it: nothing removed, exit 1.
    on(
        &env,
        "b",
        "lock-manager",
        &["release", "pool", "--force", "--holder", &gone],
    )
    .code(1)
    .one_line_error("lock-manager")
    .stderr_has("does not hold it");
    assert_eq!(holder_ids(&env, "pool").len(), 1);
    // Not the holder and not forced: 6, naming the id to pass.
    let stranger = Owner::new();
    on(
        &env,
        "a",
        "lock-manager",
        &["release", "pool", "--owner", &stranger.pid()],
    )
    .code(6)
    .stderr_has("--force --holder b:");
}

#[test]
fn every_grant_has_a_larger_fencing_token_and_the_servers_epoch() {
    let env = Env::redis();
    let owner = Owner::new();
    let mut last = 0;
    let mut epoch = None;
    for _ in 0..3 {
        let v = grant(&env, "a", "t", &owner, &[]);
        let tok = v["fencing_token"].as_u64().expect("a token");
        assert!(tok > last, "{tok} after {last}");
        last = tok;
        let e = v["fencing_epoch"].as_str().unwrap().to_string();
        assert_eq!(e.len(), 16);
        assert_eq!(*epoch.get_or_insert(e.clone()), e);
        on(
            &env,
            "a",
            "lock-manager",
            &["release", "t", "--owner", &owner.pid()],
        )
        .ok();
    }
    // The counter lives on the lock, whoever holds it next.
    let v = grant(&env, "b", "t", &Owner::new(), &[]);
    assert_eq!(v["fencing_token"].as_u64(), Some(last + 1));
}

#[test]
fn a_lapsed_hold_is_taken_over_audited_and_its_owners_writes_are_refused() {
    let env = Env::redis();
    on(&env, "a", "state-manager", &["init"]).ok();
    let old = Owner::new();
    let pid = old.pid();
    grant(&env, "a", "state", &old, &["--ttl", "0.4"]);
    // The holder writes with its token.
    on(
        &env,
        "a",
        "state-manager",
        &["set", ".phase", "\"mine\"", "--owner", &pid],
    )
    .ok();
    // Host b waits and takes over once the hold has ended on the server.
    let newer = Owner::new();
    let v = grant(&env, "b", "state", &newer, &["5"]);
    assert_eq!(v["takeovers"][0]["stale_pid"], old.0.id(), "{v}");
    let new_id = holder_ids(&env, "state").pop().unwrap();
    assert!(new_id.starts_with("b:"), "{new_id}");
    let lapsed: Vec<Value> = stream_events(&env)
        .into_iter()
        .filter(|e| e["op"] == "lease-expired")
        .collect();
    assert_eq!(lapsed.len(), 1, "{lapsed:?}");
    crate::harness::assert_audit_event(&lapsed[0]);
    assert_eq!(lapsed[0]["target"], "state");
    assert!(
        lapsed[0]["detail"]["holder"]
            .as_str()
            .unwrap()
            .starts_with(&format!("a:{pid}:"))
    );
    assert_eq!(lapsed[0]["detail"]["new_holder"], new_id.as_str());
    // The old owner's later write: refused, naming the new holder.
    on(
        &env,
        "a",
        "state-manager",
        &["set", ".phase", "\"late\"", "--owner", &pid],
    )
    .code(6)
    .one_line_error("state-manager")
    .stderr_has(&format!("taken over by pid {} on host b", newer.pid()))
    .stderr_has(&new_id);
    assert_eq!(crate::harness::read(&env, ".phase"), "mine");
    // Its release says who holds it now and drops its token: its next
    // write waits for that holder like any other (exit 2 here), no longer
    // presenting a hold it lost.
    on(
        &env,
        "a",
        "lock-manager",
        &["release", "state", "--owner", &pid],
    )
    .code(6)
    .stderr_has("on host b");
    let mut c = cmd_on(&env, "a", "state-manager");
    c.env("LOCK_TIMEOUT", "0.3")
        .args(["set", ".phase", "\"later\"", "--owner", &pid]);
    Run::of(c.output().unwrap())
        .code(2)
        .stderr_has("waiting for lock 'state'");
    // The new holder writes.
    on(
        &env,
        "b",
        "state-manager",
        &["set", ".phase", "\"new\"", "--owner", &newer.pid()],
    )
    .ok();
    assert_eq!(crate::harness::read(&env, ".phase"), "new");
}

#[test]
fn a_token_of_another_epoch_or_older_than_the_last_used_is_refused() {
    let env = Env::redis();
    on(&env, "a", "state-manager", &["init"]).ok();
    let owner = Owner::new();
    let pid = owner.pid();
    grant(&env, "a", "state", &owner, &[]);
    let set = |v: &str| {
        on(
            &env,
            "a",
            "state-manager",
            &["set", ".phase", v, "--owner", &pid],
        )
    };
    set("\"one\"").ok();
    // A later token was used (as by a newer holder before a failover).
    env.server().cli(&["HSET", &key("state"), "fence", "999"]);
    set("\"two\"")
        .code(6)
        .stderr_has("older than the last one used (999)");
    env.server().cli(&["HSET", &key("state"), "fence", "0"]);
    // The server lost its data and made a new epoch.
    env.server()
        .cli(&["SET", &key("epoch"), "0123456789abcdef"]);
    set("\"three\"")
        .code(6)
        .stderr_has("the server lost its data");
    assert_eq!(crate::harness::read(&env, ".phase"), "one");
}

#[test]
fn a_write_without_a_hold_waits_for_the_live_holder_of_state() {
    let env = Env::redis();
    on(&env, "a", "state-manager", &["init"]).ok();
    let holder = Owner::new();
    grant(&env, "b", "state", &holder, &[]);
    // Within its timeout: exit 2, naming the holder; nothing written.
    let writer = Owner::new();
    let mut c = cmd_on(&env, "a", "state-manager");
    c.env("LOCK_TIMEOUT", "0.3")
        .args(["set", ".phase", "\"early\"", "--owner", &writer.pid()]);
    Run::of(c.output().unwrap())
        .code(2)
        .one_line_error("state-manager")
        .stderr_has("waiting for lock 'state'")
        .stderr_has("host b");
    // A longer one waits on the wake channel, and writes once it is free.
    let mut waiting = cmd_on(&env, "a", "state-manager")
        .args(["set", ".phase", "\"after\"", "--owner", &writer.pid()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let channel = key("wake:state");
    until("the writer subscribes to the wake channel", || {
        env.server()
            .cli(&["PUBSUB", "NUMSUB", &channel])
            .ends_with("\n1")
    });
    assert!(waiting.try_wait().unwrap().is_none(), "wrote while held");
    assert_ne!(crate::harness::read(&env, ".phase"), "after");
    // The waiting write is an exclusive waiter: new readers queue behind it.
    until("the write is listed as a waiter", || {
        env.server().cli(&["ZCARD", &key("lock:state:w")]) == "1"
    });
    let reader = Owner::new();
    on(
        &env,
        "b",
        "lock-manager",
        &["acquire", "state", "0", "shared", "--owner", &reader.pid()],
    )
    .code(2)
    .stderr_has("queued behind an exclusive waiter");
    on(
        &env,
        "b",
        "lock-manager",
        &["release", "state", "--owner", &holder.pid()],
    )
    .ok();
    assert_eq!(wait_exit(&mut waiting), 0);
    assert_eq!(crate::harness::read(&env, ".phase"), "after");
}

#[test]
fn an_unconfirmed_grant_is_released_and_exits_8() {
    let env = Env::redis();
    let owner = Owner::new();
    let mut c = cmd_on(&env, "a", "lock-manager");
    c.env("WFSTATE_REDIS_REPLICAS", "1")
        .env("WFSTATE_REDIS_TIMEOUT", "0.4")
        .args(["acquire", "rep", "0", "--owner", &owner.pid()]);
    Run::of(c.output().unwrap())
        .code(8)
        .one_line_error("lock-manager")
        .stderr_has("0 of 1 replicas")
        .stderr_has("released");
    assert!(holder_ids(&env, "rep").is_empty());
    // A write not confirmed: 8, saying it may be lost.
    on(&env, "a", "state-manager", &["init"]).ok();
    let mut c = cmd_on(&env, "a", "state-manager");
    c.env("WFSTATE_REDIS_REPLICAS", "1")
        .env("WFSTATE_REDIS_TIMEOUT", "0.4")
        .args(["set", ".phase", "\"x\""]);
    Run::of(c.output().unwrap())
        .code(8)
        .stderr_has("may be lost on failover");
}

#[test]
fn no_key_of_the_namespace_has_a_ttl() {
    let env = Env::redis();
    on(&env, "a", "state-manager", &["init"]).ok();
    let (o1, o2) = (Owner::new(), Owner::new());
    grant(&env, "a", "state", &o1, &["--ttl", "0.3"]);
    grant(&env, "b", "state", &o2, &["5"]);
    grant(&env, "b", "user", &o2, &["--shared"]);
    on(
        &env,
        "b",
        "lock-manager",
        &["release", "user", "--owner", &o2.pid()],
    )
    .ok();
    let keys = env.server().cli(&["KEYS", "wfstate:*"]);
    assert!(keys.contains("lock:state:lost"), "{keys}");
    for k in keys.lines() {
        assert_eq!(env.server().cli(&["PTTL", k]), "-1", "{k} has a TTL");
    }
}

#[test]
fn a_shell_that_execs_its_last_command_still_releases_its_own_hold() {
    // `bash -c 'A; B'` runs B in place of the shell: B has the shell's pid
    // and its parent is not the shell; the hold is found on the server.
    let env = Env::redis();
    let lm = crate::harness::bin_path("lock-manager");
    let script = format!("{lm} acquire x 0 && {lm} release x", lm = lm.display());
    let mut c = Command::new("bash");
    env.clean_env(&mut c);
    c.env("WFSTATE_TEST_HOST_ID", "a").args(["-c", &script]);
    Run::of(c.output().unwrap()).ok();
    assert!(
        holder_ids(&env, "x").is_empty(),
        "{:?}",
        holder_ids(&env, "x")
    );
}

#[test]
fn a_waiter_ended_by_a_signal_leaves_the_waiters_and_ends_by_that_signal() {
    let env = Env::redis();
    let owner = Owner::new();
    grant(&env, "a", "job", &owner, &[]);
    for (sig, name) in [(libc::SIGINT, "SIGINT"), (libc::SIGTERM, "SIGTERM")] {
        let waiting = cmd_on(&env, "b", "lock-manager")
            .args(["acquire", "job", "20"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let waiters = key("lock:job:w");
        let channel = key("wake:job");
        until("the waiter is registered and subscribed", || {
            env.server().cli(&["ZCARD", &waiters]) == "1"
                && env
                    .server()
                    .cli(&["PUBSUB", "NUMSUB", &channel])
                    .ends_with("\n1")
        });
        unsafe { libc::kill(waiting.id() as i32, sig) };
        let out = waiting.wait_with_output().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(sig), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("interrupted by {name}")),
            "{stderr}"
        );
        assert_eq!(env.server().cli(&["ZCARD", &waiters]), "0");
        assert_eq!(holder_ids(&env, "job").len(), 1);
    }
}

#[test]
fn holder_ids_are_for_the_redis_backend_and_need_force() {
    let env = Env::new();
    let owner = Owner::new();
    crate::harness::hold(&env, "x", &owner, &[]);
    env.run(
        "lock-manager",
        &["release", "x", "--force", "--holder", "h:1:2:b:0"],
    )
    .code(4)
    .one_line_error("lock-manager")
    .stderr_has("Redis");
    env.run("lock-manager", &["release", "x", "--holder", "h:1:2:b:0"])
        .code(1)
        .stderr_has("--force");
    let check = env.run("lock-manager", &["check", "x"]).ok();
    assert_eq!(
        check.stdout.trim(),
        format!("locked:exclusive:{}", owner.pid())
    );
}

#[test]
fn many_shells_on_two_hosts_lose_no_increment() {
    // Waiters subscribe while releases are published all the time: a wake
    // that arrives with the subscription's confirmation must not be lost
    // (nor mistaken for a failure).
    let env = Env::redis();
    std::fs::write(env.path("counter"), "0\n").unwrap();
    let script = r#"
        for _ in $(seq 25); do
          "$LM" acquire c 60 --owner $$ || exit 1
          n=$(<counter)
          echo $((n + 1)) > counter
          "$LM" release c --owner $$ || exit 1
        done"#;
    let workers: Vec<Child> = (0..8)
        .map(|i| {
            let mut c = Command::new("bash");
            env.clean_env(&mut c);
            c.env("WFSTATE_TEST_HOST_ID", if i % 2 == 0 { "a" } else { "b" })
                .env("LM", crate::harness::bin_path("lock-manager"))
                .args(["-c", script])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for w in workers {
        let out = w.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a worker failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        std::fs::read_to_string(env.path("counter")).unwrap(),
        "200\n"
    );
    assert!(holder_ids(&env, "c").is_empty());
}

#[test]
fn a_sigkilled_waiter_of_this_host_does_not_hold_back_readers() {
    let env = Env::redis();
    let holder = Owner::new();
    grant(&env, "a", "w", &holder, &[]);
    let mut waiting = cmd_on(&env, "a", "lock-manager")
        .args(["acquire", "w", "30"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    until("the writer is listed as a waiter", || {
        env.server().cli(&["ZCARD", &key("lock:w:w")]) == "1"
    });
    waiting.kill().unwrap();
    waiting.wait().unwrap();
    on(
        &env,
        "a",
        "lock-manager",
        &["release", "w", "--owner", &holder.pid()],
    )
    .ok();
    // Its entry would last a lease; a reader of its host sees it is dead.
    let reader = Owner::new();
    grant(&env, "a", "w", &reader, &["0", "shared"]);
    assert_eq!(env.server().cli(&["ZCARD", &key("lock:w:w")]), "0");
}

#[test]
fn readers_queued_behind_a_writer_go_once_it_gives_up_or_its_entry_lapses() {
    let env = Env::redis();
    let holder = Owner::new();
    grant(&env, "a", "q", &holder, &["--shared"]);
    let waiters = key("lock:q:w");
    let reader = |n: usize| {
        let r = Owner::new();
        let mut c = cmd_on(&env, "a", "lock-manager");
        c.args(["acquire", "q", "60", "shared", "--owner", &r.pid()])
            .stderr(Stdio::null());
        let child = c.spawn().unwrap();
        until("the reader waits on the wake channel", || {
            env.server()
                .cli(&["PUBSUB", "NUMSUB", &key("wake:q")])
                .ends_with(&format!("\n{n}"))
        });
        (r, child)
    };
    // A writer on host b that gives up: its withdrawal wakes the reader
    // (which would otherwise sleep until a lease or its 60 s end: past the
    // 20 s this test allows).
    let mut writer = cmd_on(&env, "b", "lock-manager")
        .args(["acquire", "q", "30", "exclusive"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    until("the writer is listed", || {
        env.server().cli(&["ZCARD", &waiters]) == "1"
    });
    let (_r1, mut first) = reader(2);
    // Ended by SIGTERM: it withdraws before it ends.
    unsafe { libc::kill(writer.id() as i32, libc::SIGTERM) };
    writer.wait().unwrap();
    assert_eq!(wait_exit(&mut first), 0);
    // A writer on host b that is SIGKILLed: its entry lapses after its own
    // (short) lease, unannounced; the reader wakes then.
    let mut writer = cmd_on(&env, "b", "lock-manager")
        .env("WFSTATE_LEASE", "1s")
        .args(["acquire", "q", "30", "exclusive"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    until("the writer is listed", || {
        env.server().cli(&["ZCARD", &waiters]) == "1"
    });
    let (_r2, mut second) = reader(2);
    writer.kill().unwrap();
    writer.wait().unwrap();
    assert_eq!(wait_exit(&mut second), 0);
    assert_eq!(holder_ids(&env, "q").len(), 3);
}

#[test]
fn a_waiter_whose_subscription_the_server_closes_subscribes_again() {
    let env = Env::redis();
    let holder = Owner::new();
    grant(&env, "a", "s", &holder, &[]);
    let mut waiting = cmd_on(&env, "b", "lock-manager")
        .args(["acquire", "s", "30"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let channel = key("wake:s");
    let subscribed = || {
        env.server()
            .cli(&["PUBSUB", "NUMSUB", &channel])
            .ends_with("\n1")
    };
    until("the waiter subscribes", subscribed);
    env.server().cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    until("the waiter subscribes again", subscribed);
    on(
        &env,
        "a",
        "lock-manager",
        &["release", "s", "--owner", &holder.pid()],
    )
    .ok();
    assert_eq!(wait_exit(&mut waiting), 0);
}

#[test]
fn metadata_and_ttl_are_kept_with_the_hold_and_listed_on_every_host() {
    let env = Env::redis();
    let owner = Owner::new();
    let meta = r#"{"job":"deploy","ids":[1,2],"empty":[],"big":12345678901234}"#;
    grant(
        &env,
        "a",
        "m",
        &owner,
        &["10", "exclusive", meta, "--ttl", "5m"],
    );
    let list = on(&env, "b", "lock-manager", &["list", "--json"])
        .ok()
        .json();
    assert_schema("lock-manager-list.schema.json", &list);
    let h = &list[0]["holders"][0];
    assert_eq!(h["metadata"], serde_json::from_str::<Value>(meta).unwrap());
    assert_eq!(h["ttl"], 300.0);
    assert_eq!(h["host"], "a");
    assert!(h["acquired"].as_str().unwrap().ends_with('Z'), "{h}");
    // As the server keeps it: the metadata as given, the cap, the token.
    let id = holder_ids(&env, "m").pop().expect("held on the server");
    let stored: Value =
        serde_json::from_str(&env.server().cli(&["HGET", &key("lock:m:m"), &id])).unwrap();
    assert_eq!(stored["metadata"], h["metadata"]);
    assert_eq!(stored["token"], 1);
    let span = stored["ttl_end_ms"].as_i64().unwrap() - stored["acquired_ms"].as_i64().unwrap();
    assert_eq!(span, 300_000);
}

#[test]
fn a_dead_holder_of_this_host_is_taken_over_at_once_and_not_noted_as_lost() {
    let env = Env::redis();
    let owner = Owner::new();
    let pid = owner.0.id();
    grant(&env, "a", "d", &owner, &[]);
    let id = holder_ids(&env, "d").pop().unwrap();
    // Its keeper would release it the instant it exits: stop the keeper
    // first, so that the acquirer meets the dead holder itself.
    until("the owner's keeper runs", || keeper_of(&id).is_some());
    let keeper = keeper_of(&id).unwrap();
    unsafe { libc::kill(keeper, libc::SIGKILL) };
    until("the keeper is gone", || keeper_of(&id).is_none());
    drop(owner);
    // Its lease (30 s) still runs: only its exit frees the lock.
    let v = grant(&env, "a", "d", &Owner::new(), &["5"]);
    assert_eq!(v["takeovers"][0]["stale_pid"], pid);
    assert_eq!(v["takeovers"][0]["reason"], "dead");
    // An exited process makes no later call: nothing to refuse it by (and
    // a `run` whose command just exited must not read it as taken over).
    assert_eq!(
        env.server().cli(&["HEXISTS", &key("lock:d:lost"), &id]),
        "0"
    );
}
