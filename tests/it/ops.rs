//! Integrity and operations: checksums caught by verify-integrity and
//! validate-backup, repair of each kind of damage, export/import round
//! trips and the serial rule, cleanup's selectors, health (read-only,
//! unhealthy on corruption and on a full disk), benchmark on a copy.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use wfstate::lock::Identity;

use crate::harness::{Env, Run};

/// Every file and folder under `root` with its size, mode, inode and mtime.
fn snapshot(root: &Path) -> Vec<(PathBuf, u64, u32, u64, i64, i64)> {
    let mut out: Vec<_> = walk(root)
        .into_iter()
        .map(|p| {
            let m = fs::symlink_metadata(&p).unwrap();
            let size = if m.is_dir() { 0 } else { m.len() };
            (p, size, m.mode(), m.ino(), m.mtime(), m.mtime_nsec())
        })
        .collect();
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

/// The document without the toolkit-stamped metadata.
fn content(mut doc: Value) -> Value {
    doc.as_object_mut().unwrap().remove("metadata");
    doc
}

/// A state with some history: a signal, tasks, user keys of every JSON type.
fn busy_env() -> Env {
    let env = Env::new();
    env.init();
    env.sm(&["signal", "PHASE1_START"]);
    env.sm(&["set", ".phase", "\"implementation\""]);
    env.sm(&["append", ".completedTasks", "\"1.1\""]);
    env.sm(&["append", ".completedTasks", "\"yes\""]);
    env.sm(&[
        "set",
        ".context",
        r#"{"activeSkills":["tdd","2023-11-01"],"n":null,"f":1.5,"i":-3,"t":true,"s":"a: 'b'\n#c"}"#,
    ]);
    env
}

/// The newest backup's name, as list-backups orders them.
fn newest_backup(env: &Env) -> String {
    let j = env
        .run("state-manager", &["list-backups", "--json"])
        .ok()
        .json();
    j[0]["name"].as_str().unwrap().to_string()
}

/// Rewrites the state (or any JSON file) by hand, as an editor would, without a checksum update.
fn edit_by_hand(path: &Path, f: impl FnOnce(&mut Value)) {
    let mut doc: Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    f(&mut doc);
    fs::write(path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
}

#[test]
fn every_write_records_a_checksum_of_the_content() {
    let env = busy_env();
    let sum = env.state()["metadata"]["checksum"].clone();
    let s = sum.as_str().unwrap();
    assert!(s.starts_with("sha256:") && s.len() == 71, "{sum}");
    env.run("state-manager", &["verify-integrity"])
        .ok()
        .stdout_has("verified");
    env.sm(&["set", ".phase", "\"review\""]);
    assert_ne!(env.state()["metadata"]["checksum"], sum);
}

#[test]
fn a_backup_with_one_changed_byte_that_still_parses_is_caught_and_named() {
    let env = busy_env();
    let backups = env.list(".state-backups");
    assert!(backups.len() >= 2, "{backups:?}");
    // The newest backup: "implementation" becomes "implementatioN", one byte.
    let newest = newest_backup(&env);
    let path = env.path(&format!(".state-backups/{newest}"));
    let mut bytes = fs::read(&path).unwrap();
    let at = bytes
        .windows(14)
        .position(|w| w == b"implementation")
        .expect("the newest backup has the phase");
    bytes[at + 13] = b'N';
    // Replace, not rewrite in place: the backup is a hard link of an old state.
    fs::remove_file(&path).unwrap();
    fs::write(&path, &bytes).unwrap();
    serde_json::from_slice::<Value>(&bytes).expect("still parses");

    let run = env
        .run("state-manager", &["verify-integrity"])
        .code(3)
        .stdout_has(&newest)
        .stdout_has("changed outside the toolkit or corrupted")
        .one_line_error("state-manager");
    let bad_lines: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("CORRUPT"))
        .collect();
    assert_eq!(bad_lines.len(), 1, "{}", run.stdout);

    let json = env
        .run("state-manager", &["verify-integrity", "--json"])
        .code(3)
        .json();
    let flagged: Vec<&Value> = json["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["status"] != "ok")
        .collect();
    assert_eq!(flagged.len(), 1, "{json:#}");
    assert!(flagged[0]["path"].as_str().unwrap().ends_with(&newest));
    assert_eq!(flagged[0]["checksum"], "mismatch");

    env.run("state-manager", &["validate-backup", &newest])
        .code(3)
        .stdout_has("changed outside the toolkit");
    let other = backups.iter().find(|n| **n != newest).unwrap();
    env.run("state-manager", &["validate-backup", other])
        .ok()
        .stdout_has("valid");
    env.run("state-manager", &["validate-backup", "state-nope"])
        .code(1)
        .stderr_has("list-backups");

    // Never silently trusted: recover passes over it.
    let r = env.run("state-manager", &["recover"]).ok();
    assert!(!r.stdout.contains(&newest), "{}", r.stdout);
    assert_ne!(env.state()["phase"], "implementatioN");
}

#[test]
fn verify_integrity_checks_checkpoints_and_lock_records() {
    let env = busy_env();
    // A checkpoint as error-recovery writes it: metadata.json lists each file's SHA-256.
    let cp = env.path(".checkpoints/checkpoint-20260101-120000-deploy");
    fs::create_dir_all(cp.join("signals")).unwrap();
    let state = fs::read(env.state_file()).unwrap();
    fs::write(cp.join("state.json"), &state).unwrap();
    fs::write(cp.join("signals/A.json"), b"{\"signal\":\"A\"}\n").unwrap();
    let meta = json!({
        "id": "checkpoint-20260101-120000-deploy", "operation": "deploy",
        "files": {
            "state.json": wfstate::state::integrity::sha256_hex(&state),
            "signals/A.json": wfstate::state::integrity::sha256_hex(b"{\"signal\":\"A\"}\n"),
        }
    });
    fs::write(cp.join("metadata.json"), meta.to_string()).unwrap();
    // A sound lock record of a live holder (this test process).
    let me = Identity::current();
    let record = json!({
        "name": "deploy", "type": "exclusive", "timestamp": "2026-01-01T12:00:00Z",
        "holders": [{"pid": me.pid, "start_time": me.start_time, "boot_id": me.boot_id,
                     "host": me.host, "acquired": "2026-01-01T12:00:00Z"}]
    });
    fs::create_dir_all(env.path(".locks")).unwrap();
    fs::write(env.path(".locks/deploy.lock"), record.to_string()).unwrap();
    let clean = env
        .run("state-manager", &["verify-integrity", "--json"])
        .ok()
        .json();
    assert_eq!(clean["clean"], true, "{clean:#}");
    let kinds: Vec<&str> = clean["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    for k in ["state", "backup", "checkpoint", "checkpoint-file", "lock"] {
        assert!(kinds.contains(&k), "{k} not checked: {kinds:?}");
    }

    // A lock record that breaks its schema alone: exit 4, named.
    let mut bad = record.clone();
    bad["type"] = json!("weird");
    fs::write(env.path(".locks/deploy.lock"), bad.to_string()).unwrap();
    env.run("state-manager", &["verify-integrity"])
        .code(4)
        .stdout_has("INVALID")
        .stdout_has("deploy.lock");
    fs::write(env.path(".locks/deploy.lock"), record.to_string()).unwrap();

    // One changed byte in a checkpointed signal file: exit 3, named.
    fs::write(cp.join("signals/A.json"), b"{\"signal\":\"B\"}\n").unwrap();
    env.run("state-manager", &["verify-integrity"])
        .code(3)
        .stdout_has("signals/A.json")
        .stdout_has("checksum mismatch");
    // A listed file that is gone.
    fs::remove_file(cp.join("signals/A.json")).unwrap();
    env.run("state-manager", &["verify-integrity"])
        .code(3)
        .stdout_has("missing");
    // A lock record that does not parse is corruption.
    fs::write(env.path(".locks/deploy.lock"), b"{\"name\": \"dep").unwrap();
    env.run("state-manager", &["verify-integrity"])
        .code(3)
        .stdout_has("deploy.lock: does not parse");
}

#[test]
fn a_hand_written_state_is_unverified_not_corrupt_and_a_hand_edit_is_caught() {
    let env = busy_env();
    let mut doc = env.state();
    doc["metadata"].as_object_mut().unwrap().remove("checksum");
    fs::write(env.state_file(), doc.to_string()).unwrap();
    env.run("state-manager", &["verify-integrity"])
        .ok()
        .stdout_has("UNVERIFIED");
    let h = env.run("state-manager", &["health", "--json"]).ok().json();
    assert_eq!(h["checks"]["state"]["status"], "degraded", "{h:#}");

    let env = busy_env();
    edit_by_hand(&env.state_file(), |d| d["phase"] = json!("shipped"));
    env.run("state-manager", &["verify-integrity"])
        .code(3)
        .stdout_has(
            ".workflow-state.json: checksum mismatch: changed outside the toolkit or corrupted",
        );
    // Only schema problems, no corruption: exit 4.
    let env = busy_env();
    let mut doc = env.state();
    doc["metadata"].as_object_mut().unwrap().remove("checksum");
    doc["phase"] = json!(5);
    fs::write(env.state_file(), doc.to_string()).unwrap();
    env.run("state-manager", &["verify-integrity"])
        .code(4)
        .stdout_has("/phase");
}

/// Runs `repair`, asserting exit 0 and that a pre-repair backup holds `damaged`.
#[track_caller]
fn repaired(env: &Env, damaged: &[u8]) -> Run {
    let before = env.list(".state-backups");
    let run = env.run("state-manager", &["repair"]).ok();
    let new: Vec<String> = env
        .list(".state-backups")
        .into_iter()
        .filter(|n| !before.contains(n))
        .collect();
    assert_eq!(new.len(), 1, "one backup made first: {new:?}");
    assert!(new[0].contains("pre-repair"), "{new:?}");
    assert_eq!(env.bytes(&format!(".state-backups/{}", new[0])), damaged);
    env.run("state-manager", &["validate"]).ok();
    env.run("state-manager", &["verify-integrity", "--json"])
        .json()["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "state")
        .for_each(|f| assert_eq!(f["status"], "ok", "{f}"));
    run
}

#[test]
fn repair_fills_missing_required_fields_and_keeps_unknown_keys() {
    let env = busy_env();
    edit_by_hand(&env.state_file(), |d| {
        let o = d.as_object_mut().unwrap();
        o.remove("completedTasks");
        o.remove("schemaVersion");
        o.remove("degradedMode");
        o.insert("myTool".into(), json!({"keep": [1, 2]}));
    });
    let damaged = env.bytes(".workflow-state.json");
    let r = repaired(&env, &damaged)
        .stdout_has("added missing completedTasks = []")
        .stdout_has("added missing schemaVersion = \"1.0\"")
        .stdout_has("added missing degradedMode");
    assert!(r.stdout.contains("checksum"), "{}", r.stdout);
    let doc = env.state();
    assert_eq!(doc["myTool"], json!({"keep": [1, 2]}));
    assert_eq!(doc["context"]["activeSkills"], json!(["tdd", "2023-11-01"]));
    assert_eq!(doc["phase"], "implementation");
    assert_eq!(doc["completedTasks"], json!([]));
}

#[test]
fn repair_replaces_invalid_timestamps_and_reports_them() {
    let env = busy_env();
    edit_by_hand(&env.state_file(), |d| {
        d["metadata"]["created"] = json!("yesterday");
        d["signals"]["PHASE1_START"] = json!("soon");
        d["degradedMode"]["timestamp"] = json!("later");
    });
    let damaged = env.bytes(".workflow-state.json");
    repaired(&env, &damaged)
        .stdout_has("replaced invalid timestamp metadata.created = \"yesterday\" with now")
        .stdout_has("replaced invalid timestamp signals.PHASE1_START = \"soon\" with now")
        .stdout_has("replaced invalid timestamp degradedMode.timestamp = \"later\" with now");
    let doc = env.state();
    assert!(doc["signals"]["PHASE1_START"].is_f64());
    assert_ne!(doc["metadata"]["created"], "yesterday");
}

#[test]
fn repair_resets_toolkit_owned_fields_of_the_wrong_type() {
    let env = busy_env();
    let rev = env.state()["metadata"]["revision"].as_u64().unwrap();
    edit_by_hand(&env.state_file(), |d| {
        d["metadata"]["revision"] = json!("five");
        d["degradedMode"] = json!({"enabled": "yes", "reason": 3, "disabledFeatures": "all"});
        d["schemaVersion"] = json!(1);
    });
    let damaged = env.bytes(".workflow-state.json");
    repaired(&env, &damaged)
        .stdout_has("reset metadata.revision \"five\"")
        .stdout_has("reset degradedMode.enabled \"yes\"")
        .stdout_has("reset degradedMode.reason 3")
        .stdout_has("reset degradedMode.disabledFeatures \"all\"")
        .stdout_has("reset schemaVersion 1");
    let doc = env.state();
    // The revision goes on from the backups, never back.
    assert!(
        doc["metadata"]["revision"].as_u64().unwrap() >= rev,
        "{doc}"
    );
    assert_eq!(doc["degradedMode"]["enabled"], false);
}

#[test]
fn repair_of_a_state_that_does_not_parse_falls_back_to_recover() {
    let env = busy_env();
    fs::write(env.state_file(), b"{\"phase\": \"impl").unwrap();
    env.run("state-manager", &["repair"])
        .ok()
        .stdout_has("does not parse")
        .stdout_has("restored the newest valid backup");
    env.run("state-manager", &["validate"]).ok();
    let aside: Vec<String> = env
        .list(".")
        .into_iter()
        .filter(|n| n.contains(".corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "the damaged file is kept aside");
    assert_eq!(env.bytes(&aside[0]), b"{\"phase\": \"impl");
}

#[test]
fn repair_leaves_user_content_it_cannot_fix_and_dry_run_changes_nothing() {
    let env = busy_env();
    edit_by_hand(&env.state_file(), |d| {
        d["phase"] = json!(5);
        d["metadata"]["created"] = json!("yesterday");
    });
    let before = snapshot(env.root());
    env.run("state-manager", &["repair"])
        .code(4)
        .stdout_has("cannot fix: /phase")
        .stdout_has("would fix: replaced invalid timestamp metadata.created")
        .one_line_error("state-manager");
    let after: Vec<_> = snapshot(env.root())
        .into_iter()
        .filter(|(p, ..)| {
            !p.ends_with(".workflow-audit.jsonl") && !p.starts_with(env.path(".locks"))
        })
        .collect();
    let before: Vec<_> = before
        .into_iter()
        .filter(|(p, ..)| {
            !p.ends_with(".workflow-audit.jsonl") && !p.starts_with(env.path(".locks"))
        })
        .collect();
    assert_eq!(after, before, "a refused repair changed files");

    let env = busy_env();
    edit_by_hand(&env.state_file(), |d| {
        d["metadata"]["created"] = json!("soon")
    });
    let before = snapshot(env.root());
    env.run("state-manager", &["repair", "--dry-run"])
        .ok()
        .stdout_has("would fix: replaced invalid timestamp metadata.created")
        .stdout_has("dry run");
    let after: Vec<_> = snapshot(env.root())
        .into_iter()
        .filter(|(p, ..)| !p.ends_with(".workflow-audit.jsonl"))
        .collect();
    let before: Vec<_> = before
        .into_iter()
        .filter(|(p, ..)| !p.ends_with(".workflow-audit.jsonl"))
        .collect();
    assert_eq!(after, before, "a dry run changed files");
    let j = env
        .run("state-manager", &["repair", "--dry-run", "--json"])
        .ok()
        .json();
    assert_eq!(j["changed"], false);
    assert!(!j["changes"].as_array().unwrap().is_empty());
    env.run("state-manager", &["repair"]).ok();
    env.run("state-manager", &["repair"])
        .ok()
        .stdout_has("nothing to repair");
}

#[test]
fn export_then_import_round_trips_in_json_and_yaml() {
    for format in ["json", "yaml"] {
        let env = busy_env();
        let original = env.state();
        let file = env.path(&format!("export.{format}"));
        let file_s = file.to_str().unwrap();
        env.run(
            "state-manager",
            &["export", "--format", format, "--output", file_s],
        )
        .ok()
        .stdout_has("exported");
        // stdout export equals the file.
        let stdout = env.sm(&["export", "--format", format]);
        assert_eq!(stdout.as_bytes(), fs::read(&file).unwrap());
        if format == "yaml" {
            assert!(stdout.contains("phase: implementation"), "{stdout}");
        }
        env.run("state-manager", &["import", "--file", file_s])
            .ok()
            .stdout_has("imported");
        let back = env.state();
        assert_eq!(content(back.clone()), content(original.clone()), "{format}");
        assert!(back["metadata"]["revision"].as_u64() > original["metadata"]["revision"].as_u64());
        // And from stdin, the format told by the content.
        let stdout = env.sm(&["export", "--format", format]);
        let run = env.run_stdin("state-manager", &["import", "-f", "-", "--json"], &stdout);
        let j = run.ok().json();
        assert_eq!(j["format"], format);
        assert_eq!(
            content(env.state()),
            content(original),
            "{format} via stdin"
        );
        env.run("state-manager", &["verify-integrity"]).ok();
    }
}

#[test]
fn import_refuses_an_older_revision_or_an_invalid_document_and_changes_nothing() {
    let env = busy_env();
    let original = env.state();
    let file = env.path("old.yaml");
    let file_s = file.to_str().unwrap();
    env.sm(&["export", "--output", file_s]);
    env.sm(&["set", ".phase", "\"review\""]);
    let refused = |args: &[&str], code: i32| {
        let state = env.bytes(".workflow-state.json");
        let backups = env.list(".state-backups");
        let run = env
            .run("state-manager", args)
            .code(code)
            .one_line_error("state-manager");
        assert_eq!(env.bytes(".workflow-state.json"), state, "{args:?}");
        assert_eq!(env.list(".state-backups"), backups, "{args:?}");
        run
    };
    refused(&["import", "--file", file_s], 4)
        .stderr_has("older than the live state's")
        .stderr_has("--force");
    let bad = env.path("bad.json");
    fs::write(&bad, br#"{"phase": 5}"#).unwrap();
    refused(&["import", "--file", bad.to_str().unwrap()], 4).stderr_has("schema");
    fs::write(&bad, b"{\"phase\": ").unwrap();
    refused(&["import", "--file", bad.to_str().unwrap()], 4).stderr_has("not valid JSON");
    let yaml = env.path("bad.yaml");
    fs::write(&yaml, b"- a\n- b\n").unwrap();
    refused(&["import", "--file", yaml.to_str().unwrap()], 4).stderr_has("not an object");
    refused(&["import", "--file", "/no/such/file.json"], 1);

    // --force overrides the serial rule, backing the live state up first.
    let before = env.list(".state-backups");
    env.run("state-manager", &["import", "--file", file_s, "--force"])
        .ok();
    assert_eq!(content(env.state()), content(original));
    let made: Vec<String> = env
        .list(".state-backups")
        .into_iter()
        .filter(|n| !before.contains(n))
        .collect();
    assert!(made.iter().any(|n| n.contains("pre-import")), "{made:?}");
}

/// Copies the newest backup under names with older timestamps.
fn aged_backups(env: &Env, stamps: &[&str]) -> Vec<String> {
    let src = env.list(".state-backups").pop().unwrap();
    stamps
        .iter()
        .map(|s| {
            let name = format!("state-{s}-old.json");
            fs::copy(
                env.path(&format!(".state-backups/{src}")),
                env.path(&format!(".state-backups/{name}")),
            )
            .unwrap();
            name
        })
        .collect()
}

#[test]
fn cleanup_honours_older_than_keep_and_dry_run() {
    let env = busy_env();
    let recent = env.list(".state-backups");
    assert!(recent.len() >= 3, "{recent:?}");
    let newest = newest_backup(&env);
    let old = aged_backups(&env, &["20200101-000000", "20200102-000000"]);
    for cp in [
        "checkpoint-20200101-000000-old",
        "checkpoint-20990101-000000-new",
    ] {
        fs::create_dir_all(env.path(&format!(".checkpoints/{cp}"))).unwrap();
        fs::write(env.path(&format!(".checkpoints/{cp}/state.json")), b"{}").unwrap();
    }

    // --dry-run lists and removes nothing.
    let before = snapshot(env.root());
    let r = env
        .run(
            "state-manager",
            &["cleanup", "--backups", "--older-than", "30d", "--dry-run"],
        )
        .ok();
    for n in &old {
        assert!(
            r.stdout.contains("would remove backup") && r.stdout.contains(n.as_str()),
            "{}",
            r.stdout
        );
    }
    for n in &recent {
        assert!(!r.stdout.contains(n.as_str()), "{}", r.stdout);
    }
    let after: Vec<_> = snapshot(env.root())
        .into_iter()
        .filter(|(p, ..)| !p.ends_with(".workflow-audit.jsonl"))
        .collect();
    let before: Vec<_> = before
        .into_iter()
        .filter(|(p, ..)| !p.ends_with(".workflow-audit.jsonl"))
        .collect();
    assert_eq!(after, before, "a dry run changed files");

    // --older-than removes exactly the old ones.
    env.run(
        "state-manager",
        &["cleanup", "--backups", "--older-than", "30d"],
    )
    .ok()
    .stdout_has("older than 30d");
    assert_eq!(env.list(".state-backups"), recent);
    assert_eq!(
        env.list(".checkpoints").len(),
        2,
        "--backups alone leaves checkpoints"
    );

    // --keep N keeps the newest N.
    env.run("state-manager", &["cleanup", "--backups", "--keep", "1"])
        .ok()
        .stdout_has("beyond the newest 1");
    let left = env.list(".state-backups");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0], newest);

    env.run(
        "state-manager",
        &["cleanup", "--checkpoints", "--older-than", "7d", "--json"],
    )
    .ok();
    assert_eq!(env.list(".checkpoints"), ["checkpoint-20990101-000000-new"]);
    env.run("state-manager", &["cleanup", "--older-than", "7x"])
        .code(4)
        .one_line_error("state-manager");
}

#[test]
fn cleanup_removes_temp_leftovers_and_stale_locks_but_not_live_ones() {
    let env = busy_env();
    let leftover = env.path("..workflow-state.json.424242.0.tmp");
    fs::write(&leftover, b"half").unwrap();
    let temp = env.path(".state-backups/.x.json.424242.1.tmp");
    fs::write(&temp, b"half").unwrap();
    fs::create_dir_all(env.path(".locks")).unwrap();
    let me = Identity::current();
    let holder = |start_time: u64| {
        json!({"pid": me.pid, "start_time": start_time, "boot_id": me.boot_id,
               "host": me.host, "acquired": "2026-01-01T12:00:00Z"})
    };
    let record = |name: &str, h: Value| json!({"name": name, "type": "exclusive", "timestamp": "2026-01-01T12:00:00Z", "holders": [h]});
    // A holder whose pid now belongs to another process is dead; this test process is live.
    fs::write(
        env.path(".locks/dead.lock"),
        record("dead", holder(me.start_time + 1)).to_string(),
    )
    .unwrap();
    fs::write(
        env.path(".locks/live.lock"),
        record("live", holder(me.start_time)).to_string(),
    )
    .unwrap();
    fs::write(env.path(".locks/broken.lock"), b"{\"na").unwrap();

    env.run("state-manager", &["cleanup", "--stale", "--dry-run"])
        .ok()
        .stdout_has("would remove lock")
        .stdout_has("dead.lock");
    assert!(env.path(".locks/dead.lock").exists());
    let r = env
        .run("state-manager", &["cleanup", "--temp", "--stale"])
        .ok();
    assert!(!env.path(".locks/dead.lock").exists(), "{}", r.stdout);
    assert!(env.path(".locks/live.lock").exists());
    assert!(
        env.path(".locks/broken.lock").exists(),
        "corrupt records are reported, not removed"
    );
    assert!(r.stdout.contains("broken.lock"), "{}", r.stdout);
    assert!(!leftover.exists() && !temp.exists(), "{}", r.stdout);
    assert!(!r.stdout.contains("live.lock"), "{}", r.stdout);
    env.run("state-manager", &["validate"]).ok();
}

/// Mounts a tmpfs of `size` at `dir`; false (test skipped) where mounting is not allowed.
fn mount_tmpfs(dir: &Path, size: &str) -> bool {
    fs::create_dir_all(dir).unwrap();
    let ok = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
        ])
        .arg(dir)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: cannot mount a tmpfs here (needs root and mount rights)");
    }
    ok
}

/// Unmounts on drop, so a failed assertion leaves no mount behind.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Fills the filesystem of `dir` until writes fail with ENOSPC.
fn fill(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let mut f = fs::File::create(&filler).unwrap();
    let block = vec![0u8; 4096];
    use std::io::Write;
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
    filler
}

fn health(env: &Env) -> (i32, Value) {
    let r = env.run("state-manager", &["health", "--json"]);
    let code = r.code;
    (code, r.json())
}

#[test]
fn health_is_healthy_then_unhealthy_on_a_corrupt_state_and_healthy_after_recover() {
    let env = busy_env();
    let (code, h) = health(&env);
    assert_eq!(code, 0, "{h:#}");
    for check in ["state", "locks", "backups", "audit_log", "degraded_mode"] {
        assert_eq!(h["checks"][check]["status"], "healthy", "{check}: {h:#}");
    }
    assert_ne!(h["status"], "unhealthy");

    fs::write(env.state_file(), b"{\"phase\": ").unwrap();
    let (code, h) = health(&env);
    assert_eq!(code, 3, "{h:#}");
    assert_eq!(h["status"], "unhealthy");
    assert_eq!(h["checks"]["state"]["status"], "unhealthy");
    assert_eq!(h["checks"]["state"]["exit_code"], 3);
    env.run("state-manager", &["health"])
        .code(3)
        .stdout_has("status: unhealthy")
        .one_line_error("state-manager");

    env.sm(&["recover"]);
    let (code, h) = health(&env);
    assert_eq!(code, 0, "{h:#}");
    assert_eq!(h["checks"]["state"]["status"], "healthy");

    // A changed byte that still parses is unhealthy too; degraded mode is degraded.
    edit_by_hand(&env.state_file(), |d| d["phase"] = json!("hand-edited"));
    assert_eq!(health(&env).0, 3);
    env.sm(&["recover"]);
    env.sm(&["merge", r#"{"degradedMode":{"enabled":true,"reason":"api down","timestamp":"2026-01-01T00:00:00Z"}}"#]);
    let (code, h) = health(&env);
    assert_eq!(code, 0);
    assert_eq!(h["status"], "degraded");
    assert_eq!(h["checks"]["degraded_mode"]["status"], "degraded");
}

#[test]
fn health_is_unhealthy_with_exit_7_on_a_full_disk_and_healthy_once_space_returns() {
    let env = Env::new();
    let mnt = env.path("small");
    if !mount_tmpfs(&mnt, "256k") {
        return;
    }
    let _m = Mounted(mnt.clone());
    let state = mnt.join("s.json");
    let run = |args: &[&str]| {
        Run::of(
            env.cmd("state-manager")
                .env("STATE_FILE", &state)
                .env("AUDIT_LOG", mnt.join("audit.jsonl"))
                .args(args)
                .output()
                .unwrap(),
        )
    };
    run(&["init"]).ok();
    run(&["set", ".phase", "\"x\""]).ok();
    run(&["health"]).ok();
    let filler = fill(&mnt);
    let r = run(&["health", "--json"]);
    let h = r.json();
    assert_eq!(r.code, 7, "{h:#}");
    assert_eq!(h["status"], "unhealthy");
    assert_eq!(h["checks"]["disk"]["status"], "unhealthy", "{h:#}");
    assert_eq!(h["checks"]["disk"]["exit_code"], 7);
    assert_eq!(h["checks"]["audit_log"]["status"], "unhealthy", "{h:#}");
    assert_eq!(h["checks"]["state"]["status"], "healthy");
    fs::remove_file(filler).unwrap();
    let r = run(&["health", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.json()["status"], "healthy");
}

#[test]
fn health_reports_an_audit_log_on_dev_full_as_unhealthy() {
    let env = busy_env();
    let r = Run::of(
        env.cmd("state-manager")
            .env("AUDIT_LOG", "/dev/full")
            .args(["health", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 7, "{}", r.stdout);
    let h = r.json();
    assert_eq!(h["checks"]["audit_log"]["status"], "unhealthy");
    assert_eq!(h["checks"]["state"]["status"], "healthy");
}

#[test]
fn health_is_read_only() {
    // An empty root: nothing is created, not even the audit log.
    let env = Env::new();
    let (code, h) = health(&env);
    assert_eq!(code, 1, "{h:#}");
    assert_eq!(h["checks"]["state"]["status"], "unhealthy");
    assert!(
        env.list(".").is_empty(),
        "health created {:?}",
        env.list(".")
    );
    // A busy root: nothing changes at all.
    let env = busy_env();
    let before = snapshot(env.root());
    health(&env);
    env.run("state-manager", &["health"]).ok();
    assert_eq!(snapshot(env.root()), before);
}

#[test]
fn benchmark_runs_on_a_copy_and_leaves_the_live_state_alone() {
    let env = busy_env();
    let state = env.bytes(".workflow-state.json");
    let backups = env.list(".state-backups");
    let events = env.audit_events().len();
    let j = env
        .run(
            "state-manager",
            &["benchmark", "--operations", "5", "--json"],
        )
        .ok()
        .json();
    for kind in ["read", "write", "set", "lock"] {
        assert_eq!(j["results"][kind]["ops"], 5, "{j:#}");
        assert!(j["results"][kind]["ops_per_sec"].as_f64().unwrap() > 0.0);
        assert!(j["results"][kind]["p95_ms"].as_f64() >= j["results"][kind]["p50_ms"].as_f64());
    }
    assert_eq!(env.bytes(".workflow-state.json"), state);
    assert_eq!(env.list(".state-backups"), backups);
    assert!(!env.path(".locks/benchmark.lock").exists());
    assert!(
        !env.list(".").iter().any(|n| n.starts_with(".benchmark-")),
        "{:?}",
        env.list(".")
    );
    let ev = env.audit_events();
    assert_eq!(ev.len(), events + 1, "one event in the live log");
    assert_eq!(ev[events]["op"], "benchmark");
    env.run("state-manager", &["benchmark", "--operations", "0"])
        .code(4);
    env.run("state-manager", &["benchmark", "--operations", "2"])
        .ok()
        .stdout_has("OPS_PER_S");
}

#[test]
fn diagnostics_reports_operations_errors_takeovers_and_sizes() {
    let env = Env::new();
    env.init();
    env.sm(&["set", ".phase", "--string", "a"]);
    env.sm(&["set", ".phase", "--string", "b"]);
    env.run("state-manager", &["set", ".phase", "5"]).code(4);
    env.run("error-recovery", &["checkpoint", "diag"]).ok();
    // A stale takeover as lock-manager records it.
    let takeover = serde_json::json!({"ts": "2026-11-23T10:00:00.000000Z", "tool": "lock-manager", "op": "takeover",
        "target": "build", "pid": 1, "ppid": 1, "host": "h", "user": "u", "duration_ms": 0.1, "exit_code": 0,
        "outcome": "ok", "detail": {"stale_pid": 42, "owner_pid": 7, "reason": "dead"}});
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(env.audit_log())
        .unwrap();
    std::io::Write::write_all(&mut log, format!("{takeover}\nnot json\n").as_bytes()).unwrap();
    let before = env.bytes(".workflow-state.json");
    let j = env
        .run("state-manager", &["diagnostics", "--json"])
        .ok()
        .json();
    assert_eq!(j["audit"]["stale_takeovers"], 1);
    assert_eq!(j["audit"]["malformed_lines"], 1);
    assert_eq!(j["audit"]["failed"], 1);
    let set = j["audit"]["operations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["op"] == "set")
        .unwrap()
        .clone();
    assert_eq!(set["event_count"], 3);
    assert_eq!(set["failed"], 1);
    assert!(set["duration"]["p95_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(j["disk"]["backups"], 2);
    assert_eq!(j["disk"]["checkpoint_count"], 1);
    assert!(j["disk"]["checkpoint_bytes"].as_u64().unwrap() > 0);
    assert_eq!(
        j["disk"]["state_bytes"].as_u64().unwrap(),
        before.len() as u64
    );
    let text = env
        .run("state-manager", &["diagnostics", "--verbose"])
        .ok()
        .stdout;
    assert!(
        text.contains("stale takeovers:  1") && text.contains("VALIDATION_FAILED×1"),
        "{text}"
    );
    assert_eq!(
        env.bytes(".workflow-state.json"),
        before,
        "diagnostics is read-only"
    );
}
