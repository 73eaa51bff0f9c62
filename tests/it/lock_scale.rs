//! Lock operations flat in the number of records (issue 16): the per-owner
//! index that the hierarchy check reads instead of every record, its crash
//! safety (a SIGKILL at every file-system call of acquire and release), mutex
//! files that do not pile up, and `list json` streamed record by record with
//! the same answer as the whole array.

use std::fs;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::harness::{Env, Owner, bin_path};

const LM: &str = "lock-manager";

/// The start time of `pid` (field 22 of /proc/PID/stat): with the pid, the
/// name of the owner's index folder.
fn start_time(pid: &str) -> String {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    rest.split_ascii_whitespace().nth(19).unwrap().to_string()
}

/// Whether the record of `name` names `pid` as a holder.
fn holds(env: &Env, name: &str, pid: &str) -> bool {
    let Ok(bytes) = fs::read(env.path(&format!(".locks/{name}.lock"))) else {
        return false;
    };
    let rec: Value = serde_json::from_slice(&bytes).expect("a record always parses");
    rec["holders"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h["pid"].as_u64().is_some_and(|p| p.to_string() == pid))
}

/// The hierarchy follows the record, whatever a crash left: an owner whose
/// record of `foo` names it may not then take `user` (exit 4), and one whose
/// record does not is not refused.
#[track_caller]
fn assert_hierarchy_follows_the_record(env: &Env, owner: &str, after: &str) {
    let held = holds(env, "foo", owner);
    let r = env.run(LM, &["acquire", "user", "0", "--owner", owner]);
    if held {
        r.code(4).stderr_has("lock hierarchy");
    } else {
        assert_eq!(
            r.code, 0,
            "{after}: the record does not name the owner, yet 'user' was refused: {}",
            r.stderr
        );
        env.run(LM, &["release", "user", "--owner", owner]).ok();
    }
}

/// Whether strace can run here and inject a signal (ptrace allowed).
fn strace_works() -> bool {
    Command::new("strace")
        .args(["-o", "/dev/null", "-e", "trace=none", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `lock-manager ARGS` SIGKILLed by strace at the `k`-th `syscall`;
/// whether it was killed (else it ran to its end).
fn killed_at(env: &Env, syscall: &str, k: usize, args: &[&str]) -> bool {
    let mut c = Command::new("strace");
    env.clean_env(&mut c);
    let status = c
        .args(["-f", "-o", "/dev/null", "-e"])
        .arg(format!("inject={syscall}:signal=KILL:when={k}"))
        .arg(bin_path(LM))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    // strace ends as its tracee did: by SIGKILL, or its exit code.
    !status.success()
}

// See: issue 16 — the per-owner index is written before the record and
// removed after it, so a kill between the two never hides a hold.
#[test]
fn a_kill_at_any_file_call_of_acquire_or_release_leaves_the_hierarchy_true_to_the_record() {
    let env = Env::new();
    let owner = Owner::new();
    let pid = owner.pid();
    let acquire = ["acquire", "foo", "0", "--owner", &pid];
    let release = ["release", "foo", "--owner", &pid];
    if !strace_works() {
        // No ptrace here: random instants instead of every call.
        let mut rng = crate::reliability::Rng::new();
        for i in 0..100 {
            let args: &[&str] = if i % 2 == 0 { &acquire } else { &release };
            crate::reliability::kill_at_random(&env, &mut rng, LM, args, 3000);
            assert_hierarchy_follows_the_record(&env, &pid, "random kill");
        }
        return;
    }
    let mut kills = 0;
    let plans: [(&str, &[&str]); 2] = [("acquire", &acquire), ("release", &release)];
    for (op, args) in plans {
        for syscall in ["openat", "mkdir", "rename", "unlink", "rmdir"] {
            for k in 1..=40 {
                // Start from the state the command expects.
                if op == "release" {
                    env.run(LM, &acquire).ok();
                } else {
                    env.run(LM, &release).ok();
                }
                if !killed_at(&env, syscall, k, args) {
                    break;
                }
                kills += 1;
                let after = format!("{op} killed at {syscall} #{k}");
                assert_hierarchy_follows_the_record(&env, &pid, &after);
                // The next acquire gets past whatever the kill left.
                env.run(LM, &acquire).ok();
                assert_hierarchy_follows_the_record(&env, &pid, &after);
                assert!(holds(&env, "foo", &pid), "{after}");
            }
        }
    }
    assert!(kills > 10, "only {kills} kills: strace injected nothing?");
    env.run(LM, &release).ok();
    env.run(LM, &["check", "foo"]).code(1);
}

// The index may say more than the owner holds, never less: entries the
// records do not confirm refuse nothing.
#[test]
fn index_entries_the_records_do_not_confirm_refuse_nothing() {
    let env = Env::new();
    let owner = Owner::new();
    let other = Owner::new();
    let pid = owner.pid();
    let dir = env.path(&format!(".locks/owners/{pid}-{}", start_time(&pid)));
    fs::create_dir_all(&dir).unwrap();
    // A lock without a record, and one held by someone else.
    fs::write(dir.join("ghost"), b"").unwrap();
    env.run(LM, &["acquire", "theirs", "0", "--owner", &other.pid()])
        .ok();
    fs::write(dir.join("theirs"), b"").unwrap();
    env.run(LM, &["acquire", "user", "0", "--owner", &pid]).ok();
    env.run(LM, &["release", "user", "--owner", &pid]).ok();
    env.run(LM, &["acquire", "state", "0", "--owner", &pid])
        .ok();
    env.run(LM, &["release", "state", "--owner", &pid]).ok();
    // A hold that lapsed (TTL passed) no longer counts either.
    env.run(
        LM,
        &["acquire", "lapsed", "0", "--ttl", "0.001", "--owner", &pid],
    )
    .ok();
    assert!(dir.join("lapsed").exists());
    env.run(LM, &["acquire", "user", "0", "--owner", &pid]).ok();
    // ...while a real hold, found through the index, does.
    env.run(LM, &["acquire", "mine", "0", "--owner", &pid]).ok();
    env.run(LM, &["acquire", "config", "0", "--owner", &pid])
        .code(4)
        .stderr_has("holds 'mine' (priority 999)");
    // `clean` drops the entries of owners that are gone, not of live ones.
    drop(owner);
    env.run(LM, &["clean"]).ok();
    assert!(!dir.exists(), "{:?}", env.list(".locks/owners"));
}

// See: issue 16 — `NAME.mutex` files piled up, one per name ever used.
#[test]
fn distinct_names_leave_no_files_behind() {
    let env = Env::new();
    let owner = Owner::new();
    let pid = owner.pid();
    for i in 0..150 {
        let name = format!("n{i}");
        env.run(LM, &["acquire", &name, "0", "--owner", &pid]).ok();
        env.run(LM, &["release", &name, "--owner", &pid]).ok();
    }
    // Shared holders, a stale holder taken over, a timed-out waiter.
    let second = Owner::new();
    for i in 0..20 {
        let name = format!("s{i}");
        for p in [&pid, &second.pid()] {
            env.run(LM, &["acquire", &name, "0", "shared", "--owner", p])
                .ok();
        }
        env.run(LM, &["acquire", &name, "0.05", "--owner", &pid])
            .code(2);
        for p in [&pid, &second.pid()] {
            env.run(LM, &["release", &name, "--owner", p]).ok();
        }
    }
    let mut dying = Owner::new();
    for i in 0..20 {
        env.run(
            LM,
            &["acquire", &format!("d{i}"), "0", "--owner", &dying.pid()],
        )
        .ok();
    }
    dying.0.kill().unwrap();
    dying.0.wait().unwrap();
    for i in 0..10 {
        let name = format!("d{i}");
        env.run(LM, &["acquire", &name, "0", "--owner", &pid]).ok();
        env.run(LM, &["release", &name, "--owner", &pid]).ok();
    }
    // Left: the dead owner's ten stale records, their mutex files, and its
    // index entries (a live owner's index goes with its last hold).
    let mut left: Vec<String> = (10..20)
        .flat_map(|i| [format!("d{i}.lock"), format!("d{i}.mutex")])
        .collect();
    left.push("owners".into());
    left.sort();
    assert_eq!(env.list(".locks"), left);
    assert_eq!(env.list(".locks/owners").len(), 1);
    // `clean` takes those, and leaves nothing behind but the index's folder.
    env.run(LM, &["clean"]).ok().stdout_has("removed 10 ");
    assert_eq!(env.list(".locks"), ["owners"]);
    assert_eq!(env.list(".locks/owners"), Vec::<String>::new());
}

// `list json` prints one record at a time: the same bytes the whole array
// printed pretty, one line compact (-c), one line a record (--jsonl).
#[test]
fn list_json_at_many_records_is_the_array_of_its_records() {
    let env = Env::new();
    let owner = Owner::new();
    env.run(LM, &["acquire", "t", "0", "--owner", &owner.pid()])
        .ok();
    let template: Value = serde_json::from_slice(&env.bytes(".locks/t.lock")).unwrap();
    env.run(LM, &["release", "t", "--owner", &owner.pid()]).ok();
    let n = 1500;
    for i in 0..n {
        let mut rec = template.clone();
        rec["name"] = format!("r{i:04}").into();
        if i % 3 == 1 {
            // The same pid with another start time: a stale, reused pid.
            let t = rec["holders"][0]["start_time"].as_u64().unwrap();
            rec["holders"][0]["start_time"] = (t + 1).into();
        }
        let path = env.path(&format!(".locks/r{i:04}.lock"));
        fs::write(path, serde_json::to_vec_pretty(&rec).unwrap()).unwrap();
    }
    fs::write(env.path(".locks/r9999.lock"), b"{ half a rec").unwrap();
    let pretty = env.run(LM, &["list", "json"]).ok();
    let list: Value = serde_json::from_str(&pretty.stdout).unwrap();
    assert_eq!(
        pretty.stdout,
        serde_json::to_string_pretty(&list).unwrap() + "\n"
    );
    pretty.stderr_has("r9999.lock");
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), n + 1);
    for (i, item) in list[..n].iter().enumerate() {
        assert_eq!(item["name"], format!("r{i:04}"));
        let (status, holder) = if i % 3 == 1 {
            ("stale", "stale")
        } else {
            ("valid", "valid")
        };
        assert_eq!(item["status"], status, "{item}");
        assert_eq!(item["holders"][0]["status"], holder, "{item}");
        assert_eq!(item["holders"][0]["pid"], template["holders"][0]["pid"]);
    }
    assert_eq!(list[n]["name"], "r9999");
    assert_eq!(list[n]["status"], "corrupt");
    let compact = env.run(LM, &["list", "json", "-c"]).ok();
    assert_eq!(compact.stdout.lines().count(), 1);
    assert_eq!(
        serde_json::from_str::<Value>(&compact.stdout).unwrap(),
        Value::Array(list.clone())
    );
    let lines = env.run(LM, &["list", "json", "--jsonl"]).ok();
    let each: Vec<Value> = lines
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(&each, list);
    // No records: an empty array, as before.
    let empty = Env::new();
    let out = empty.run(LM, &["list", "json"]).ok();
    assert_eq!(out.stdout, "[]\n");
}
