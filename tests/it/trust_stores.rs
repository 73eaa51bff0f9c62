//! Issue #11, "Trust": backups and checkpoints.
//!
//! - Time and naming: "newest", `latest` and retention follow a sequence
//!   number, not the local time a caller's `TZ` puts in a name; times in
//!   JSON carry an offset; names of earlier versions are still read and
//!   never preferred over newer ones.
//! - Two state files in one folder never see each other's backups or
//!   checkpoints.
//! - Every duration input refuses a value too large to represent (exit 4,
//!   no panic, nothing changed), and a bare number is seconds everywhere.
//! - Removing a checkpoint renames it aside first: a SIGKILL part-way, or a
//!   concurrent `verify-integrity`, never sees a half-deleted checkpoint.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::harness::{Env, Run};

/// A zone 14 hours east of UTC and one 12 hours west (POSIX signs are inverted).
const EAST: &str = "EAST-14";
const WEST: &str = "WEST+12";

fn with_tz(env: &Env, tz: &str, bin: &str, args: &[&str]) -> Run {
    Run::of(env.cmd(bin).env("TZ", tz).args(args).output().unwrap())
}

fn set_phase(env: &Env, tz: &str, phase: &str) {
    with_tz(
        env,
        tz,
        "state-manager",
        &["set", ".phase", "--string", phase],
    )
    .ok();
}

fn checkpoint_in(env: &Env, tz: &str, op: &str) -> String {
    with_tz(env, tz, "error-recovery", &["checkpoint", op])
        .ok()
        .stdout
        .trim()
        .to_string()
}

fn phase_of(path: &Path) -> String {
    let doc: Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    doc["phase"].as_str().unwrap_or_default().to_string()
}

/// Runs `bin args` with STATE_FILE set to `state` (a name in the root).
fn on(env: &Env, state: &str, bin: &str, args: &[&str]) -> Run {
    Run::of(
        env.cmd(bin)
            .env("STATE_FILE", env.path(state))
            .args(args)
            .output()
            .unwrap(),
    )
}

/// Every file under the root but the audit log: relative path → bytes.
fn snapshot(env: &Env) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            if rel.starts_with(".workflow-audit.jsonl") {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                walk(base, &p, out);
            } else {
                out.insert(rel, fs::read(&p).unwrap_or_default());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(env.root(), env.root(), &mut out);
    out
}

// See: issue #11, "Time and naming".
#[test]
fn recover_and_retention_follow_the_sequence_not_the_callers_time_zone() {
    let env = Env::new();
    with_tz(&env, EAST, "state-manager", &["init"]).ok();
    set_phase(&env, EAST, "a");
    set_phase(&env, EAST, "b");
    // Made last, but its local time is 26 hours "earlier" than the others'.
    set_phase(&env, WEST, "c");
    let list = env
        .run("state-manager", &["list-backups", "--json"])
        .ok()
        .json();
    let newest = env.root().join(list[0]["path"].as_str().unwrap());
    assert_eq!(phase_of(&newest), "b", "{list:#}");
    // Times in JSON carry their offset.
    for b in list.as_array().unwrap() {
        let made = b["made"].as_str().unwrap();
        assert!(made.ends_with('Z'), "{made}");
        assert!(chrono::DateTime::parse_from_rfc3339(made).is_ok(), "{made}");
    }

    // recover takes the newest version, whatever the zone it runs in.
    fs::write(env.state_file(), b"{ broken").unwrap();
    with_tz(&env, EAST, "state-manager", &["recover"]).ok();
    assert_eq!(env.state()["phase"], "b");

    // Retention keeps the newest two, not the two with the latest local times.
    let env = Env::new();
    with_tz(&env, EAST, "state-manager", &["init"]).ok();
    set_phase(&env, EAST, "p1");
    set_phase(&env, EAST, "p2");
    set_phase(&env, WEST, "p3");
    with_tz(
        &env,
        WEST,
        "state-manager",
        &["--keep-backups", "2", "set", ".phase", "--string", "p4"],
    )
    .ok();
    let mut kept: Vec<String> = env
        .list(".state-backups")
        .iter()
        .map(|n| phase_of(&env.path(&format!(".state-backups/{n}"))))
        .collect();
    kept.sort();
    assert_eq!(kept, ["p2", "p3"]);
}

#[test]
fn restore_latest_follows_the_sequence_not_the_callers_time_zone() {
    let env = Env::new();
    env.init();
    set_phase(&env, EAST, "first");
    checkpoint_in(&env, EAST, "one");
    set_phase(&env, WEST, "second");
    let two = checkpoint_in(&env, WEST, "two");
    set_phase(&env, EAST, "later");
    let list = with_tz(&env, EAST, "error-recovery", &["list", "json"])
        .ok()
        .json();
    assert_eq!(list[0]["id"], json!(two), "{list:#}");
    for c in list.as_array().unwrap() {
        for key in ["made", "timestamp"] {
            let t = c[key].as_str().unwrap();
            assert!(
                chrono::DateTime::parse_from_rfc3339(t).is_ok(),
                "{key}: {t}"
            );
            assert!(t.ends_with('Z') || t.ends_with("+00:00"), "{key}: {t}");
        }
    }
    with_tz(&env, EAST, "error-recovery", &["restore", "latest"]).ok();
    assert_eq!(env.state()["phase"], "second");

    // Cleanup's --keep keeps the newest by sequence too.
    with_tz(
        &env,
        EAST,
        "error-recovery",
        &["cleanup", "0", "--keep", "1"],
    )
    .ok();
    assert_eq!(env.list(".checkpoints"), [two]);
}

#[test]
fn same_second_entries_are_ordered_as_numbers() {
    let env = Env::new();
    env.init();
    // Earlier versions' names: `.10` is newer than `.2` (same second, same mtime).
    let src = env.path(".state-backups/state-20200101-000000-x.2.json");
    fs::copy(env.state_file(), &src).unwrap();
    let ten = env.path(".state-backups/state-20200101-000000-x.10.json");
    fs::hard_link(&src, &ten).unwrap();
    let list = env
        .run("state-manager", &["list-backups", "--json"])
        .ok()
        .json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "state-20200101-000000-x.10.json",
            "state-20200101-000000-x.2.json"
        ]
    );

    // New names: a sequence past its zero padding still sorts as a number.
    let doc = fs::read(env.state_file()).unwrap();
    for name in [
        "state-20200101T000000Z-999999-x.json",
        "state-20200101T000000Z-1000000-x.json",
    ] {
        fs::write(env.path(&format!(".state-backups/{name}")), &doc).unwrap();
    }
    let list = env
        .run("state-manager", &["list-backups", "--json"])
        .ok()
        .json();
    assert_eq!(list[0]["name"], "state-20200101T000000Z-1000000-x.json");
    assert_eq!(list[1]["name"], "state-20200101T000000Z-999999-x.json");
    // And the next backup takes the next number.
    env.sm(&["set", ".phase", "--string", "next"]);
    assert!(
        env.list(".state-backups")
            .iter()
            .any(|n| n.contains("Z-1000001-set")),
        "{:?}",
        env.list(".state-backups")
    );
}

#[test]
fn an_earlier_versions_name_is_never_preferred_over_a_new_one() {
    let env = Env::new();
    env.init();
    env.sm(&["set", ".phase", "--string", "new"]);
    env.sm(&["set", ".phase", "--string", "live"]);
    // A backup in the old format whose local time and mtime are both in the future.
    let mut legacy = env.state();
    legacy["phase"] = json!("legacy");
    if let Some(m) = legacy["metadata"].as_object_mut() {
        m.remove("checksum");
    }
    let old = env.path(".state-backups/state-20990101-000000-x.json");
    fs::write(&old, serde_json::to_vec(&legacy).unwrap()).unwrap();
    fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(SystemTime::now() + Duration::from_secs(86400 * 365))
        .unwrap();
    fs::write(env.state_file(), b"{ broken").unwrap();
    env.run("state-manager", &["recover"]).ok();
    assert_eq!(env.state()["phase"], "new");
    // Retention drops the old-format one first.
    env.run("state-manager", &["cleanup", "--backups", "--keep", "2"])
        .ok();
    assert!(!old.exists());

    // A checkpoint in the old format, made after the new one and named in 2099.
    let env = Env::new();
    env.init();
    env.sm(&["set", ".phase", "--string", "new"]);
    let new = env
        .run("error-recovery", &["checkpoint", "new"])
        .ok()
        .stdout
        .trim()
        .to_string();
    env.sm(&["set", ".phase", "--string", "legacy"]);
    let made = env
        .run("error-recovery", &["checkpoint", "legacy"])
        .ok()
        .stdout
        .trim()
        .to_string();
    fs::rename(
        env.path(&format!(".checkpoints/{made}")),
        env.path(".checkpoints/checkpoint-20990101-000000-legacy"),
    )
    .unwrap();
    let list = env.run("error-recovery", &["list", "json"]).ok().json();
    assert_eq!(list[0]["id"], json!(new));
    assert_eq!(list[1]["id"], "checkpoint-20990101-000000-legacy");
    env.run("error-recovery", &["restore", "latest"]).ok();
    assert_eq!(env.state()["phase"], "new");
    // Old-format checkpoints are still restorable by name.
    env.run(
        "error-recovery",
        &["restore", "checkpoint-20990101-000000-legacy"],
    )
    .ok();
    assert_eq!(env.state()["phase"], "legacy");
}

// See: issue #11, two state files in one folder.
#[test]
fn two_state_files_in_one_folder_never_see_each_others_backups_or_checkpoints() {
    let env = Env::new();
    for s in ["build.json", "deploy.json"] {
        on(&env, s, "state-manager", &["init"]).ok();
    }
    env.init();
    on(
        &env,
        "build.json",
        "state-manager",
        &["set", ".phase", "--string", "b1"],
    )
    .ok();
    on(
        &env,
        "build.json",
        "state-manager",
        &["set", ".phase", "--string", "b2"],
    )
    .ok();
    let build_cp = on(&env, "build.json", "error-recovery", &["checkpoint", "bcp"])
        .ok()
        .stdout
        .trim()
        .to_string();
    for i in 0..6 {
        let p = format!("d{i}");
        on(
            &env,
            "deploy.json",
            "state-manager",
            &["set", ".phase", "--string", &p],
        )
        .ok();
    }
    let deploy_cp = on(
        &env,
        "deploy.json",
        "error-recovery",
        &["checkpoint", "dcp"],
    )
    .ok()
    .stdout
    .trim()
    .to_string();

    // list-backups: each its own (deploy's retention pruned only deploy's).
    let names = |state: &str| -> Vec<String> {
        on(&env, state, "state-manager", &["list-backups", "--json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["path"].as_str().unwrap().to_string())
            .collect()
    };
    let build = names("build.json");
    let deploy = names("deploy.json");
    assert_eq!(build.len(), 2, "{build:?}");
    assert_eq!(deploy.len(), 5, "{deploy:?}");
    assert!(build.iter().all(|p| !deploy.contains(p)));
    assert!(
        build
            .iter()
            .all(|p| p.contains(".state-backups/build.json/"))
    );
    assert!(names(".workflow-state.json").is_empty());

    // error-recovery list: each its own.
    let ids = |state: &str| -> Vec<String> {
        on(&env, state, "error-recovery", &["list", "json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids("build.json"), vec![build_cp.clone()]);
    assert_eq!(ids("deploy.json"), vec![deploy_cp.clone()]);
    assert!(ids(".workflow-state.json").is_empty());

    // recover: build's newest backup (made when b2 was written), not
    // deploy's (which is newer).
    fs::write(env.path("build.json"), b"{ broken").unwrap();
    on(&env, "build.json", "state-manager", &["recover"]).ok();
    assert_eq!(phase_of(&env.path("build.json")), "b1");

    // restore latest: build's checkpoint, not deploy's (which is newer).
    on(
        &env,
        "build.json",
        "state-manager",
        &["set", ".phase", "--string", "b3"],
    )
    .ok();
    on(&env, "build.json", "error-recovery", &["restore", "latest"]).ok();
    assert_eq!(phase_of(&env.path("build.json")), "b2");

    // verify-integrity: a broken checkpoint of deploy's is not build's problem.
    fs::write(
        env.path(&format!(".checkpoints/deploy.json/{deploy_cp}/state.json")),
        b"{}",
    )
    .unwrap();
    on(&env, "build.json", "state-manager", &["verify-integrity"]).ok();
    env.run("state-manager", &["verify-integrity"]).ok();
    on(&env, "deploy.json", "state-manager", &["verify-integrity"]).code(3);
    let report = on(
        &env,
        "build.json",
        "state-manager",
        &["verify-integrity", "--json"],
    )
    .ok()
    .json();
    for f in report["files"].as_array().unwrap() {
        let p = f["path"].as_str().unwrap();
        assert!(!p.contains("deploy"), "build's report lists {p}");
    }

    // cleanup (both commands) removes only the caller's own.
    let build = names("build.json");
    on(
        &env,
        "deploy.json",
        "state-manager",
        &["cleanup", "--backups", "--checkpoints", "--keep", "0"],
    )
    .ok();
    assert!(names("deploy.json").is_empty());
    assert!(ids("deploy.json").is_empty());
    assert_eq!(names("build.json"), build);
    assert_eq!(ids("build.json"), vec![build_cp.clone()]);
    on(
        &env,
        "deploy.json",
        "error-recovery",
        &["checkpoint", "again"],
    )
    .ok();
    on(&env, "build.json", "error-recovery", &["cleanup", "0"]).ok();
    assert!(ids("build.json").is_empty());
    assert_eq!(ids("deploy.json").len(), 1);
    // The default state's cleanup never touches the others' subfolders.
    env.run("state-manager", &["cleanup", "--keep", "0"]).ok();
    env.run("error-recovery", &["cleanup", "0"]).ok();
    assert_eq!(ids("deploy.json").len(), 1);
    assert_eq!(names("build.json"), build);
}

// See: issue #11, durations.
#[test]
fn every_duration_input_refuses_a_huge_value_with_exit_4_and_no_panic() {
    let env = Env::new();
    env.init();
    env.sm(&["set", ".phase", "--string", "x"]);
    env.run("error-recovery", &["checkpoint", "c"]).ok();
    let hook = env.path("hook.json");
    fs::write(
        &hook,
        json!({"hook_event_name": "PostToolUse", "session_id": "s", "cwd": env.root(),
               "tool_name": "Write", "tool_input": {"file_path": "a.md"}, "tool_response": {}})
        .to_string(),
    )
    .unwrap();
    let before = snapshot(&env);
    let huge = [
        "99999999999999999999d",
        "99999999999999999999",
        "36526d",
        "1e400",
        "inf",
        "NaN",
    ];
    // (binary, args with @V for the value, environment variable to carry it).
    let cases: &[(&str, &[&str], Option<&str>)] = &[
        (
            "lock-manager",
            &["acquire", "x", "1", "exclusive", "{}", "--ttl", "@V"],
            None,
        ),
        ("lock-manager", &["acquire", "x", "@V"], None),
        (
            "lock-manager",
            &["run", "x", "--timeout", "@V", "--", "true"],
            None,
        ),
        (
            "lock-manager",
            &["--lock-timeout", "@V", "acquire", "x"],
            None,
        ),
        ("lock-manager", &["acquire", "x"], Some("LOCK_TIMEOUT")),
        (
            "state-manager",
            &["set", ".phase", "--string", "y"],
            Some("LOCK_TIMEOUT"),
        ),
        (
            "state-manager",
            &["set", ".phase", "--string", "y"],
            Some("BACKUP_MAX_AGE"),
        ),
        (
            "state-manager",
            &["--backup-max-age", "@V", "set", ".phase", "--string", "y"],
            None,
        ),
        ("state-manager", &["cleanup", "--older-than", "@V"], None),
        ("state-manager", &["cleanup"], Some("BACKUP_MAX_AGE")),
        ("state-manager", &["audit", "recent", "--since", "@V"], None),
        ("state-manager", &["audit", "stats", "--since", "@V"], None),
        ("state-manager", &["audit", "races", "--since", "@V"], None),
        ("state-manager", &["audit", "export", "--since", "@V"], None),
        (
            "state-manager",
            &["audit", "monitor", "--duration", "@V"],
            None,
        ),
        (
            "state-manager",
            &["audit", "monitor", "--interval", "@V"],
            None,
        ),
        ("error-recovery", &["cleanup", "@V"], None),
        (
            "error-recovery",
            &["degrade", "why"],
            Some("BACKUP_MAX_AGE"),
        ),
        (
            "error-recovery",
            &["checkpoint", "c2"],
            Some("LOCK_TIMEOUT"),
        ),
        (
            "error-recovery",
            &["retry", "--delay", "@V", "--", "false"],
            None,
        ),
        (
            "error-recovery",
            &["retry", "--max-delay", "@V", "--", "false"],
            None,
        ),
        (
            "error-recovery",
            &["retry", "--timeout", "@V", "--", "true"],
            None,
        ),
    ];
    for value in huge {
        for (bin, args, var) in cases {
            let args: Vec<String> = args.iter().map(|a| a.replace("@V", value)).collect();
            let mut c = env.cmd(bin);
            c.args(&args);
            if let Some(var) = var {
                c.env(var, value);
            }
            let run = Run::of(c.output().unwrap());
            let what = format!("{bin} {args:?} {var:?}={value}");
            assert!(!run.stderr.contains("panicked"), "{what}: {}", run.stderr);
            assert_eq!(run.code, 4, "{what}: {}", run.stderr);
            assert_eq!(
                run.stderr.trim().lines().count(),
                1,
                "{what}: {}",
                run.stderr
            );
            assert_eq!(snapshot(&env), before, "{what} changed the disk");
        }
        // Hooks never fail the session: exit 0, one line, nothing changed.
        for var in ["BACKUP_MAX_AGE", "LOCK_TIMEOUT"] {
            let mut c = env.cmd("state-manager");
            c.args(["hook", "post-tool-use"])
                .env(var, value)
                .stdin(fs::File::open(&hook).unwrap());
            let run = Run::of(c.output().unwrap());
            assert!(
                !run.stderr.contains("panicked"),
                "hook {var}={value}: {}",
                run.stderr
            );
            assert_eq!(run.code, 0, "hook {var}={value}: {}", run.stderr);
            assert!(
                run.stderr.contains(var) || run.stderr.contains("lock timeout"),
                "{}",
                run.stderr
            );
            assert_eq!(
                snapshot(&env),
                before,
                "hook {var}={value} changed the disk"
            );
        }
    }
}

#[test]
fn a_bare_number_is_seconds_for_both_cleanup_commands() {
    let env = Env::new();
    env.init();
    env.run("error-recovery", &["checkpoint", "a"]).ok();
    std::thread::sleep(Duration::from_millis(2100));
    // 2 seconds, not 2 days: the checkpoint is older than that.
    env.run("error-recovery", &["cleanup", "2"])
        .ok()
        .stdout_has("removed 1 checkpoint");
    assert!(env.list(".checkpoints").is_empty());

    env.run("error-recovery", &["checkpoint", "b"]).ok();
    std::thread::sleep(Duration::from_millis(2100));
    env.run(
        "state-manager",
        &["cleanup", "--checkpoints", "--older-than", "2"],
    )
    .ok();
    assert!(env.list(".checkpoints").is_empty());
    // The default is still a week.
    env.run("error-recovery", &["checkpoint", "c"]).ok();
    env.run("error-recovery", &["cleanup"]).ok();
    assert_eq!(env.list(".checkpoints").len(), 1);
}

fn count_files(dir: &Path) -> usize {
    fs::read_dir(dir).map_or(0, |d| d.count())
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

// See: issue #11, "Crash and resume".
#[test]
fn a_sigkilled_checkpoint_removal_never_leaves_a_half_checkpoint() {
    let env = Env::new();
    env.init();
    // One real checkpoint of a config/ with thousands of files (so deleting
    // it takes a while), kept aside and copied back for each round.
    let config = env.path("config");
    fs::create_dir_all(&config).unwrap();
    for i in 0..3000 {
        fs::write(
            config.join(format!("f{i:05}.json")),
            format!("{{\"i\": {i}}}"),
        )
        .unwrap();
    }
    let id = env
        .run("error-recovery", &["checkpoint", "big"])
        .ok()
        .stdout
        .trim()
        .to_string();
    let template = env.path("template");
    fs::rename(env.path(&format!(".checkpoints/{id}")), &template).unwrap();
    let live = env.path(&format!(".checkpoints/{id}"));
    let copied = live.join("config");
    let mut interrupted = 0;
    for round in 0..6 {
        copy_tree(&template, &live);
        env.run("state-manager", &["verify-integrity"]).ok();
        let total = count_files(&copied);
        let (bin, args): (&str, &[&str]) = if round % 2 == 0 {
            ("error-recovery", &["cleanup", "0"])
        } else {
            (
                "state-manager",
                &["cleanup", "--checkpoints", "--keep", "0"],
            )
        };
        let mut child = env
            .cmd(bin)
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        // Kill it as soon as deletion has visibly begun: renamed aside, or
        // (before the fix) files gone from under the real name.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let aside = env
                .list(".checkpoints")
                .iter()
                .any(|n| n.starts_with(".removing-"));
            if aside || (copied.exists() && count_files(&copied) < total) {
                break;
            }
            if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
                break;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        if !env.list(".checkpoints").is_empty() {
            interrupted += 1;
        }
        // Nothing half-deleted under a checkpoint's name: integrity is clean.
        env.run("state-manager", &["verify-integrity"]).ok();
        let listed = env.run("error-recovery", &["list", "json"]).ok().json();
        assert!(
            listed
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["valid"] == true),
            "{listed:#}"
        );
        // The next cleanup sweeps what was renamed aside.
        env.run("error-recovery", &["cleanup", "0"]).ok();
        assert!(
            env.list(".checkpoints").is_empty(),
            "{:?}",
            env.list(".checkpoints")
        );
    }
    assert!(interrupted > 0, "no removal was ever interrupted");
}

#[test]
fn verify_integrity_never_reports_corruption_while_cleanup_removes_checkpoints() {
    let env = Env::new();
    env.init();
    let config = env.path("config");
    fs::create_dir_all(&config).unwrap();
    for i in 0..300 {
        fs::write(config.join(format!("f{i:04}.json")), "{}").unwrap();
    }
    let stop = AtomicBool::new(false);
    /// Stops the churn however the checks end (a failed assert included).
    struct Stop<'a>(&'a AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    std::thread::scope(|s| {
        let churn = s.spawn(|| {
            let mut rounds = 0;
            while !stop.load(Ordering::Relaxed) {
                env.run("error-recovery", &["checkpoint", "c"]).ok();
                env.run("error-recovery", &["checkpoint", "d"]).ok();
                env.sm(&["set", ".phase", "--string", &format!("p{rounds}")]);
                env.run(
                    "state-manager",
                    &["cleanup", "--checkpoints", "--keep", "0"],
                )
                .ok();
                rounds += 1;
            }
            rounds
        });
        let stopper = Stop(&stop);
        let started = Instant::now();
        let mut checks = 0;
        while started.elapsed() < Duration::from_secs(8) || checks < 20 {
            let run = Run::of(
                Command::new(crate::harness::bin_path("state-manager"))
                    .env("STATE_FILE", env.state_file())
                    .env("AUDIT_LOG", env.audit_log())
                    .current_dir(env.root())
                    .arg("verify-integrity")
                    .output()
                    .unwrap(),
            );
            assert_eq!(
                run.code, 0,
                "verify-integrity: {}{}",
                run.stdout, run.stderr
            );
            let list = env.run("error-recovery", &["list", "json"]).ok().json();
            assert!(
                list.as_array().unwrap().iter().all(|c| c["valid"] == true),
                "{list:#}"
            );
            checks += 1;
        }
        drop(stopper);
        assert!(churn.join().unwrap() > 0);
    });
}
