//! Reliability: writers SIGKILLed at random instants, and faults (disk
//! full, permission denied, read-only folders, file-descriptor exhaustion,
//! symlinks, oversized and malformed input). After each: the state still
//! validates, nothing is lost, the next write succeeds, temp files do not
//! accumulate. The long variants run with WFSTATE_LONG=1 (1,000 iterations).
//!
//! One suite on both backends (issue 14): the crash loops, the lock faults,
//! the soak and the bad input are `fn NAME(env: Env)` that see only the
//! command line, run by [`both!`] as `reliability::file::NAME` and
//! `reliability::redis::NAME`. The `#[test]`s left are file-only: they break
//! the file system under the state (permissions, a read-only folder, the
//! descriptor limit on its files) or inspect `.checkpoints/`, `.signals/`
//! and the restore journal.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::harness::{Env, Owner as Sleeper, Run, bin_path, both};

both!(
    sigkilled_set_never_leaves_a_broken_state,
    sigkilled_write_never_leaves_a_broken_state,
    sigkilled_backup_never_leaves_a_broken_state,
    sigkilled_append_loses_nothing_that_was_acknowledged,
    malformed_input_gets_a_clear_error_and_exit_4,
    random_bytes_fed_to_every_json_input_never_panic,
    sigkilled_acquire_and_release_never_corrupt_or_wedge_a_lock,
    a_sigkilled_exclusive_waiter_does_not_block_later_requests,
    sixteen_mixed_workers_lose_nothing,
);

/// Iterations per kind: 100 by default, 1,000 with WFSTATE_LONG=1.
pub fn iterations() -> usize {
    if std::env::var_os("WFSTATE_LONG").is_some() {
        1000
    } else {
        100
    }
}

/// A small pseudo-random sequence (xorshift), seeded from the clock; the
/// seed is printed so a failure can be replayed with WFSTATE_SEED.
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Rng {
        let seed = std::env::var("WFSTATE_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("seed: WFSTATE_SEED={seed}");
        Rng(seed)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Starts `bin args`, SIGKILLs it after a random 0–`max_us` µs, reaps it.
pub fn kill_at_random(env: &Env, rng: &mut Rng, bin: &str, args: &[&str], max_us: u64) {
    let mut c = Command::new(bin_path(bin));
    env.clean_env(&mut c);
    let mut child = c
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_micros(rng.below(max_us)));
    let _ = child.kill();
    let _ = child.wait();
}

/// The invariants after a crash: the state parses and validates, no live
/// lock is held by a dead owner, the next write succeeds, and afterwards no
/// temp file is left beside the state or in the backups.
#[track_caller]
pub fn assert_recovered(env: &Env, next_value: &str) {
    env.run("state-manager", &["validate"]).ok();
    for name in &lock_names(env) {
        let check = Run::of(
            env.cmd("lock-manager")
                .args(["check", name])
                .output()
                .unwrap(),
        );
        assert_ne!(
            check.code, 0,
            "lock {name} reported live after its holder was killed: {}",
            check.stdout
        );
    }
    env.run(
        "state-manager",
        &[
            "--lock-timeout",
            "5",
            "set",
            ".phase",
            "--string",
            next_value,
        ],
    )
    .ok();
    assert_eq!(env.state()["phase"], Value::String(next_value.into()));
    for dir in [".", ".state-backups", ".locks", ".signals"] {
        let temps: Vec<String> = env
            .list(dir)
            .into_iter()
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(temps.is_empty(), "temp files left in {dir}: {temps:?}");
    }
}

/// The names of the locks there are records of: `.locks/*.lock` on files,
/// what `lock-manager list json` shows on Redis.
fn lock_names(env: &Env) -> Vec<String> {
    if env.redis.is_none() {
        return env
            .list(".locks")
            .iter()
            .filter_map(|n| n.strip_suffix(".lock").map(String::from))
            .collect();
    }
    let list = env.run("lock-manager", &["list", "json"]).ok().json();
    list.as_array()
        .expect("list json prints an array")
        .iter()
        .map(|r| r["name"].as_str().expect("a lock name").to_string())
        .collect()
}

/// The stored state as it is, to compare before and after a refused
/// change: the file's bytes, or the document on the server.
fn stored(env: &Env) -> Vec<u8> {
    if env.redis.is_none() {
        return env.bytes(".workflow-state.json");
    }
    env.sm(&["read", "-c"]).into_bytes()
}

/// How long one uninterrupted run of `bin args` takes, in µs: kills are
/// spread over that window, so they land in every phase of the operation.
pub fn run_time_us(env: &Env, bin: &str, args: &[&str]) -> u64 {
    let started = std::time::Instant::now();
    Run::of(env.cmd(bin).args(args).output().unwrap()).ok();
    started.elapsed().as_micros() as u64
}

fn crash_loop(env: &Env, kind: &str, args_for: impl Fn(usize) -> Vec<String>) {
    env.init();
    let mut rng = Rng::new();
    let first = args_for(0);
    let window = run_time_us(
        env,
        "state-manager",
        &first.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    for i in 0..iterations() {
        let args = args_for(i);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        kill_at_random(env, &mut rng, "state-manager", &args, window);
        assert_recovered(env, &format!("{kind}-after-{i}"));
    }
}

fn sigkilled_set_never_leaves_a_broken_state(env: Env) {
    crash_loop(&env, "set", |i| {
        vec![
            "set".into(),
            ".phase".into(),
            "--string".into(),
            format!("set-{i}"),
        ]
    });
}

fn sigkilled_write_never_leaves_a_broken_state(env: Env) {
    env.init();
    let mut doc = env.state();
    doc["context"] = serde_json::json!({"blob": "x".repeat(64 * 1024)});
    let text = doc.to_string();
    crash_loop(&env, "write", move |_| vec!["write".into(), text.clone()]);
}

fn sigkilled_backup_never_leaves_a_broken_state(env: Env) {
    crash_loop(&env, "backup", |i| vec!["backup".into(), format!("b{i}")]);
}

fn sigkilled_append_loses_nothing_that_was_acknowledged(env: Env) {
    env.init();
    let mut rng = Rng::new();
    let mut acknowledged = Vec::new();
    let window = run_time_us(
        &env,
        "state-manager",
        &["append", ".completedTasks", "--string", "first"],
    );
    for i in 0..iterations() / 2 {
        kill_at_random(
            &env,
            &mut rng,
            "state-manager",
            &[
                "append",
                ".completedTasks",
                "--string",
                &format!("killed-{i}"),
            ],
            window,
        );
        env.run(
            "state-manager",
            &["append", ".completedTasks", "--string", &format!("ok-{i}")],
        )
        .ok();
        acknowledged.push(format!("ok-{i}"));
    }
    let tasks = env.state()["completedTasks"].clone();
    for t in &acknowledged {
        assert!(
            tasks
                .as_array()
                .unwrap()
                .contains(&Value::String(t.clone())),
            "lost {t}"
        );
    }
}

/// Runs `script` in bash as the unprivileged user `nobody`.
fn as_nobody(env: &Env, args: &[&str]) -> Option<Run> {
    let ok = Command::new("setpriv")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok || !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root and setpriv to run as an unprivileged user");
        return None;
    }
    let mut c = Command::new("setpriv");
    env.clean_env(&mut c);
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin_path("state-manager"))
        .args(args);
    Some(Run::of(c.output().unwrap()))
}

// File-only: the permissions of the state file.
#[test]
fn permission_denied_is_exit_6_and_the_state_is_intact() {
    let env = Env::new();
    env.init();
    // The root folder must be traversable by nobody; the state stays root's 0600.
    fs::set_permissions(env.root(), fs::Permissions::from_mode(0o755)).unwrap();
    let before = env.bytes(".workflow-state.json");
    let Some(r) = as_nobody(&env, &["set", ".phase", "--string", "x"]) else {
        return;
    };
    r.code(6).one_line_error("state-manager");
    let Some(r) = as_nobody(&env, &["read"]) else {
        return;
    };
    r.code(6);
    assert_eq!(env.bytes(".workflow-state.json"), before);
}

// File-only: a folder the state cannot be written in.
#[test]
fn a_read_only_folder_is_exit_6_and_the_state_is_intact() {
    let env = Env::new();
    env.init();
    fs::set_permissions(env.root(), fs::Permissions::from_mode(0o755)).unwrap();
    // nobody may read the state but not write the folder.
    fs::set_permissions(env.state_file(), fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(env.path(".locks"), fs::Permissions::from_mode(0o777)).ok();
    let before = env.bytes(".workflow-state.json");
    let Some(r) = as_nobody(&env, &["set", ".phase", "--string", "x"]) else {
        return;
    };
    r.code(6);
    assert_eq!(env.bytes(".workflow-state.json"), before);
    let Some(r) = as_nobody(&env, &["read", ".phase", "--raw"]) else {
        return;
    };
    assert_eq!(r.ok().stdout, "pre-init\n");
}

// File-only: the state's files need more than 4 descriptors; on Redis one
// socket is all a `set` needs, and it succeeds under `ulimit -n 4`.
#[test]
fn too_many_open_files_is_exit_10_and_the_state_is_intact() {
    let env = Env::new();
    env.init();
    let before = env.bytes(".workflow-state.json");
    let mut c = Command::new("bash");
    env.clean_env(&mut c);
    let r = Run::of(
        c.env("SM", bin_path("state-manager"))
            .args(["-c", "ulimit -n 4; exec \"$SM\" set .phase --string x"])
            .output()
            .unwrap(),
    );
    r.code(10)
        .one_line_error("state-manager")
        .stderr_has("ulimit");
    assert_eq!(env.bytes(".workflow-state.json"), before);
}

fn malformed_input_gets_a_clear_error_and_exit_4(env: Env) {
    env.init();
    let before = stored(&env);
    let deep = format!("{}{}", "[".repeat(500), "]".repeat(500));
    env.run_stdin("state-manager", &["write", "-"], &deep)
        .code(4)
        .one_line_error("state-manager")
        .stderr_has("100 levels");
    let mut c = env.cmd("state-manager");
    c.args(["write", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"phase\":\"\xff\xfe\"}")
        .unwrap();
    Run::of(child.wait_with_output().unwrap())
        .code(4)
        .stderr_has("not UTF-8");
    env.run_stdin("state-manager", &["write", "-"], "{\"phase\":\0}")
        .code(4);
    env.run("state-manager", &["set", ".phase", "{\"a\":"])
        .code(4)
        .one_line_error("state-manager");
    assert_eq!(stored(&env), before);
}

fn random_bytes_fed_to_every_json_input_never_panic(env: Env) {
    env.init();
    let mut rng = Rng::new();
    for _ in 0..iterations() / 4 {
        let len = rng.below(64) as usize;
        let alphabet = b"{}[]\":,0123abc\\ \x00\xff.-e";
        let bytes: Vec<u8> = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
            .collect();
        let text = String::from_utf8_lossy(&bytes).replace('\0', "");
        for args in [
            vec!["write", "--", text.as_str()],
            vec!["merge", "--", text.as_str()],
            vec!["set", "--", ".context.x", text.as_str()],
            vec!["read", "--", text.as_str()],
        ] {
            let r = env.run("state-manager", &args);
            assert!(!r.stderr.contains("panicked"), "{args:?}: {}", r.stderr);
            assert!(
                r.code == 0 || r.code == 4,
                "{args:?} exit {}: {}",
                r.code,
                r.stderr
            );
        }
        let r = env.run_stdin("state-manager", &["write", "-"], &text);
        assert!(!r.stderr.contains("panicked"));
    }
    // Only valid documents or values were accepted, so the state still validates.
    env.run("state-manager", &["validate"]).ok();
}

/// Checkpoints that exist are whole (metadata.json present and parsing); no
/// temp folder of a killed checkpoint survives the next checkpoint.
#[track_caller]
fn assert_checkpoints_whole(env: &Env) {
    for name in env.list(".checkpoints") {
        assert!(
            name.starts_with("checkpoint-"),
            "leftover in .checkpoints: {name}"
        );
        let meta = env.bytes(&format!(".checkpoints/{name}/metadata.json"));
        serde_json::from_slice::<Value>(&meta)
            .unwrap_or_else(|e| panic!("{name}/metadata.json: {e}"));
    }
}

// File-only: inspects `.checkpoints/` on disk.
#[test]
fn sigkilled_checkpoint_never_leaves_a_half_made_checkpoint() {
    let env = Env::new();
    env.init();
    env.sm(&["signal", "S1"]);
    fs::create_dir(env.path("config")).unwrap();
    fs::write(env.path("config/skill-rules.json"), "{}").unwrap();
    let mut rng = Rng::new();
    let window = run_time_us(&env, "error-recovery", &["checkpoint", "first"]);
    for i in 0..iterations() {
        kill_at_random(
            &env,
            &mut rng,
            "error-recovery",
            &["checkpoint", &format!("op{i}")],
            window,
        );
        env.run("error-recovery", &["checkpoint", "next"]).ok();
        assert_checkpoints_whole(&env);
        assert_recovered(&env, &format!("cp-{i}"));
        if i % 10 == 9 {
            env.run("error-recovery", &["cleanup", "0", "--keep", "2"])
                .ok();
        }
    }
}

// File-only: inspects `.signals/` and the restore journal on disk.
#[test]
fn sigkilled_restore_is_finished_by_the_next_run() {
    let env = Env::new();
    env.init();
    env.sm(&["set", ".phase", "--string", "checkpointed"]);
    env.sm(&["signal", "S1"]);
    let id = env
        .run("error-recovery", &["checkpoint", "base"])
        .ok()
        .stdout
        .trim()
        .to_string();
    let mut rng = Rng::new();
    let window = run_time_us(&env, "error-recovery", &["restore", &id]);
    for i in 0..iterations() {
        env.sm(&["set", ".phase", "--string", &format!("moved-{i}")]);
        env.sm(&["signal", &format!("LATER{i}")]);
        kill_at_random(&env, &mut rng, "error-recovery", &["restore", &id], window);
        env.run("state-manager", &["validate"]).ok();
        env.run("error-recovery", &["restore", &id]).ok();
        assert_eq!(env.state()["phase"], "checkpointed");
        assert_eq!(env.list(".signals"), ["S1.json"]);
        assert!(!env.path(".wfstate-restore.journal").exists());
        assert_recovered(&env, &format!("restore-{i}"));
    }
}

fn sigkilled_acquire_and_release_never_corrupt_or_wedge_a_lock(env: Env) {
    env.init();
    let owner = Sleeper::new();
    let mut rng = Rng::new();
    let acquire = ["acquire", "L", "5", "exclusive", "--owner", &owner.pid()];
    let release = ["release", "L", "--owner", &owner.pid()];
    let window = run_time_us(&env, "lock-manager", &acquire);
    env.run("lock-manager", &release).ok();
    for i in 0..iterations() {
        let args: &[&str] = if i % 2 == 0 { &acquire } else { &release };
        if i % 2 == 1 {
            env.run("lock-manager", &acquire).ok();
        }
        kill_at_random(&env, &mut rng, "lock-manager", args, window);
        // Whatever instant it died at, the record is whole and says one of two things.
        let check = Run::of(
            env.cmd("lock-manager")
                .args(["check", "L"])
                .output()
                .unwrap(),
        );
        let held = format!("locked:exclusive:{}\n", owner.pid());
        assert!(
            check.stdout == held || check.stdout == "unlocked\n",
            "iteration {i}: {check:?}"
        );
        // And the owner can always finish the job: the next write of the
        // record and its removal both succeed (and sweep a killed writer's temp).
        if check.stdout != held {
            env.run("lock-manager", &acquire).ok();
        }
        env.run("lock-manager", &release).ok();
        assert_recovered(&env, &format!("lock-{i}"));
    }
}

fn a_sigkilled_exclusive_waiter_does_not_block_later_requests(env: Env) {
    env.init();
    let holder = Sleeper::new();
    let waiter_owner = Sleeper::new();
    let reader = Sleeper::new();
    env.run(
        "lock-manager",
        &["acquire", "W", "5", "exclusive", "--owner", &holder.pid()],
    )
    .ok();
    let mut c = env.cmd("lock-manager");
    let mut waiter = c
        .args([
            "acquire",
            "W",
            "30",
            "exclusive",
            "--owner",
            &waiter_owner.pid(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed while it waits: once `list json` shows its waiter entry.
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let list = env.run("lock-manager", &["list", "json"]).ok().json();
        if list[0]["waiters"].as_array().is_some_and(|w| w.len() == 1) {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "the waiter never waited: {list}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    waiter.kill().unwrap();
    waiter.wait().unwrap();
    drop(waiter_owner); // the waiting request's owner is gone too
    env.run("lock-manager", &["release", "W", "--owner", &holder.pid()])
        .ok();
    env.run(
        "lock-manager",
        &["acquire", "W", "2", "shared", "--owner", &reader.pid()],
    )
    .ok();
}

/// 16 processes mixing reads, appends, shared reads of a counter, exclusive
/// increments and checkpoints for a few seconds (30 with WFSTATE_LONG=1);
/// then: no acknowledged append lost, the counter exact, every audit line parses.
fn sixteen_mixed_workers_lose_nothing(env: Env) {
    env.init();
    fs::write(env.path("counter"), "0").unwrap();
    let seconds = if std::env::var_os("WFSTATE_LONG").is_some() {
        30
    } else {
        4
    };
    let script = r#"
        w=$1; end=$((SECONDS + $2)); i=0
        while ((SECONDS < end)); do
          i=$((i + 1))
          case $((i % 6)) in
            0) "$SM" append .completedTasks --string "w$w-$i" && echo "w$w-$i" >>"acked-$w" ;;
            1) "$SM" read .phase --raw >/dev/null || exit 11 ;;
            2) "$LM" run counter -w 30 -- sh -c 'n=$(cat counter); echo $((n + 1)) > counter' && echo x >>"incs-$w" ;;
            3) "$LM" run counter --shared -w 30 -- cat counter >/dev/null || exit 12 ;;
            4) "$SM" set ".context.w$w" "$i" || exit 13 ;;
            5) if ((i % 24 == 5)); then "$ER" checkpoint "soak$w" >/dev/null || exit 14; fi ;;
          esac
        done"#;
    let children: Vec<_> = (0..16)
        .map(|w| {
            let mut c = Command::new("bash");
            env.clean_env(&mut c);
            c.env("SM", bin_path("state-manager"))
                .env("LM", bin_path("lock-manager"))
                .env("ER", bin_path("error-recovery"))
                .env("LOCK_TIMEOUT", "30")
                .args(["-c", script, "worker", &w.to_string(), &seconds.to_string()])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "a worker failed");
    }
    let tasks = env.state()["completedTasks"].as_array().unwrap().clone();
    let mut acked = 0;
    let mut incs = 0;
    for w in 0..16 {
        for line in String::from_utf8(env.bytes(&format!("acked-{w}")))
            .unwrap()
            .lines()
        {
            acked += 1;
            assert!(
                tasks.contains(&Value::String(line.into())),
                "lost append {line}"
            );
        }
        incs += env.bytes(&format!("incs-{w}")).len() / 2;
    }
    assert_eq!(
        tasks.len(),
        acked,
        "appends that were not acknowledged appeared"
    );
    assert!(incs > 0 && acked > 0, "the soak did nothing");
    assert_eq!(
        String::from_utf8(env.bytes("counter")).unwrap().trim(),
        incs.to_string()
    );
    env.run("state-manager", &["validate"]).ok();
    let events = env
        .run(
            "state-manager",
            &["audit", "recent", "-n", "1000000", "--json", "-c"],
        )
        .ok()
        .json();
    assert!(events.as_array().unwrap().len() > acked + incs);
}
