//! Trust (issue #11): whatever is accepted reads back, a crashed restore
//! never reverts later work, `handle --apply` and every hint are safe to
//! follow, `write` keeps the serial rule, and answers are not failures.

use std::fs;
use std::path::Path;

use serde_json::{Value, json};

use crate::harness::Env;

const SM: &str = "state-manager";
const LM: &str = "lock-manager";
const ER: &str = "error-recovery";

/// The toolkit's nesting limit (src/state/document.rs MAX_DEPTH).
const MAX: usize = 100;

/// JSON arrays nested `n` deep: `[[…]]`.
fn nest(n: usize) -> String {
    format!("{}{}", "[".repeat(n), "]".repeat(n))
}

/// Every file under the root with its bytes, except the audit log: what
/// a refused or no-op command must leave exactly as it was.
fn snapshot(env: &Env) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = walkdir::WalkDir::new(env.root())
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e.path().strip_prefix(env.root()).unwrap();
            (rel.display().to_string(), fs::read(e.path()).unwrap())
        })
        .filter(|(rel, _)| !rel.starts_with(".workflow-audit.jsonl"))
        // Empty flock files of the lock registry: made on first use, hold no data.
        .filter(|(rel, bytes)| !(rel.ends_with(".mutex") && bytes.is_empty()))
        .collect();
    out.sort();
    out
}

/// Asserts nothing changed between two snapshots, naming what did.
#[track_caller]
fn unchanged(before: &[(String, Vec<u8>)], after: &[(String, Vec<u8>)], what: &str) {
    let differ: Vec<&str> = before
        .iter()
        .filter(|b| !after.contains(b))
        .chain(after.iter().filter(|a| !before.contains(a)))
        .map(|(n, _)| n.as_str())
        .collect();
    assert!(differ.is_empty(), "{what} changed {differ:?}");
}

/// Every command that reads the state back works.
#[track_caller]
fn everything_reads_back(env: &Env) {
    env.run(SM, &["read"]).ok();
    env.run(SM, &["read", ".phase"]).ok();
    env.run(SM, &["validate"]).ok();
    env.run(SM, &["status"]).ok();
    env.run(SM, &["verify-integrity"]).ok();
    env.run(SM, &["export"]).ok();
    let id = env.run(ER, &["checkpoint", "probe"]).ok().stdout;
    env.run(ER, &["restore", id.trim()]).ok();
    env.run(SM, &["read"]).ok();
}

#[test]
fn state_values_at_the_nesting_limit_round_trip_and_deeper_ones_are_refused() {
    // See: issue #11, "A value nested ~126 deep is accepted by set".
    let env = Env::new();
    env.init();
    // (arguments, nesting of the value that lands exactly at the limit)
    let cases: [(&[&str], usize); 4] = [
        (&["set", ".x"], MAX - 1),
        (&["set", ".a.b"], MAX - 2),
        (&["append", ".list"], MAX - 2),
        (&["set", ".arr[0]"], MAX - 2),
    ];
    for (args, at_limit) in cases {
        for deeper in [at_limit + 1, 126, 140] {
            let before = snapshot(&env);
            let v = nest(deeper);
            let mut a = args.to_vec();
            a.push(&v);
            env.run(SM, &a).code(4).one_line_error(SM);
            unchanged(&before, &snapshot(&env), &format!("{args:?} {deeper}"));
        }
        let v = nest(at_limit);
        let mut a = args.to_vec();
        a.push(&v);
        env.run(SM, &a).ok();
        everything_reads_back(&env);
    }
    // merge, write and import: the same limit, counted on the document.
    let before = snapshot(&env);
    env.run(SM, &["merge", &format!("{{\"m\": {}}}", nest(MAX))])
        .code(4)
        .one_line_error(SM);
    let mut deep = env.state();
    deep["w"] = serde_json::from_str(&nest(MAX)).unwrap();
    env.run_stdin(SM, &["write", "-"], &deep.to_string())
        .code(4)
        .one_line_error(SM);
    fs::write(env.path("deep.json"), deep.to_string()).unwrap();
    env.run(SM, &["import", "--file", "deep.json"])
        .code(4)
        .one_line_error(SM);
    fs::remove_file(env.path("deep.json")).unwrap();
    unchanged(&before, &snapshot(&env), "a refused input");
    env.run(SM, &["merge", &format!("{{\"m\": {}}}", nest(MAX - 1))])
        .ok();
    let mut at = env.state();
    at["w"] = serde_json::from_str(&nest(MAX - 1)).unwrap();
    env.run_stdin(SM, &["write", "-"], &at.to_string()).ok();
    everything_reads_back(&env);
}

#[test]
fn lock_and_checkpoint_metadata_at_the_nesting_limit_round_trip() {
    let env = Env::new();
    env.init();
    let me = std::process::id().to_string();
    let before = snapshot(&env);
    for deeper in [MAX + 1, 126] {
        env.run(
            LM,
            &[
                "acquire",
                "deep",
                "1",
                "exclusive",
                &nest(deeper),
                "--owner",
                &me,
            ],
        )
        .code(4)
        .one_line_error(LM);
        env.run(ER, &["checkpoint", "deep", "p", &nest(deeper)])
            .code(4)
            .one_line_error(ER);
        env.run(ER, &["degrade", "why", &nest(deeper)]).code(4);
    }
    unchanged(&before, &snapshot(&env), "a refused input");
    assert!(!env.path(".locks/deep.lock").exists());

    env.run(
        LM,
        &[
            "acquire",
            "deep",
            "1",
            "exclusive",
            &nest(MAX),
            "--owner",
            &me,
        ],
    )
    .ok();
    env.run(LM, &["check", "deep"])
        .ok()
        .stdout_has("locked:exclusive");
    env.run(LM, &["list", "json"]).ok();
    env.run(SM, &["verify-integrity"]).ok();
    env.run(LM, &["release", "deep", "--owner", &me]).ok();
    assert!(!env.path(".locks/deep.lock").exists());

    let id = env
        .run(ER, &["checkpoint", "deep", "p", &nest(MAX)])
        .ok()
        .stdout;
    env.run(ER, &["list", "json"]).ok();
    env.run(SM, &["verify-integrity"]).ok();
    env.run(ER, &["restore", id.trim()]).ok();
    env.run(SM, &["audit", "recent", "--json"]).ok();
}

#[test]
fn toolkit_owned_metadata_is_refused_never_discarded() {
    // See: issue #11, "set .metadata '\"v\"' exits 0 and is silently discarded".
    let env = Env::new();
    env.init();
    let before = snapshot(&env);
    for args in [
        &["set", ".metadata", "\"v\""][..],
        &["set", ".metadata", "{}"],
        &["set", ".metadata.revision", "5"],
        &["set", ".metadata.mine", "1"],
        &["set", ".metadata[\"created\"]", "\"x\""],
        &["append", ".metadata.list", "1"],
        &["merge", "{\"metadata\": {\"revision\": 9}}"],
        &["merge", "{\"metadata\": null}"],
    ] {
        env.run(SM, args)
            .code(4)
            .one_line_error(SM)
            .stderr_has("belongs to the toolkit");
        unchanged(&before, &snapshot(&env), &format!("{args:?}"));
    }
    // A whole document must keep metadata an object.
    let mut doc = env.state();
    doc["metadata"] = json!("v");
    env.run_stdin(SM, &["write", "-"], &doc.to_string())
        .code(4)
        .one_line_error(SM);
    unchanged(&before, &snapshot(&env), "a refused input");
}

#[test]
fn revisions_outside_the_integer_range_are_refused_on_input_and_never_read_as_0() {
    // See: issue #11, "a revision above the integer range ... is treated as 0".
    let env = Env::new();
    env.init();
    env.sm(&["set", ".phase", "\"one\""]);
    let before = snapshot(&env);
    let text = String::from_utf8(env.bytes(".workflow-state.json")).unwrap();
    let rev = env.state()["metadata"]["revision"].to_string();
    let field = format!("\"revision\": {rev}");
    assert!(text.contains(&field), "{text}");
    for bad in [
        "1e30",
        "18446744073709551616",
        "18446744073709551615",
        "9007199254740992",
        "-1",
        "1.5",
        "\"5\"",
        "null",
    ] {
        let doc = text.replace(&field, &format!("\"revision\": {bad}"));
        env.run_stdin(SM, &["write", "-"], &doc)
            .code(4)
            .one_line_error(SM);
        env.run_stdin(SM, &["write", "-", "--force"], &doc).code(4);
        fs::write(env.path("in.json"), &doc).unwrap();
        env.run(SM, &["import", "--file", "in.json", "--force"])
            .code(4)
            .one_line_error(SM);
        fs::remove_file(env.path("in.json")).unwrap();
        unchanged(&before, &snapshot(&env), bad);
    }
    // Such a revision already on disk: invalid, and a write refuses to
    // build on it rather than restart the count at 0.
    let edited = text.replace(&field, "\"revision\": 1e30");
    fs::write(env.state_file(), &edited).unwrap();
    env.run(SM, &["validate"]).code(4);
    assert_eq!(
        env.run(SM, &["status", "--json"]).json()["condition"],
        "invalid"
    );
    env.run(SM, &["set", ".phase", "\"two\""])
        .code(4)
        .one_line_error(SM)
        .stderr_has("repair");
    assert_eq!(fs::read_to_string(env.state_file()).unwrap(), edited);
    env.run(SM, &["repair"]).ok();
    assert!(env.state()["metadata"]["revision"].as_u64().unwrap() >= 2);
}

#[test]
fn write_of_an_older_revision_is_refused_unless_forced() {
    // See: issue #11, "read | jq … | write - loses a concurrent update".
    let env = Env::new();
    env.init();
    let stale = env.sm(&["read"]);
    env.sm(&["set", ".phase", "\"concurrent\""]);
    let edited = stale.replace("\"pre-init\"", "\"mine\"");
    let before = snapshot(&env);
    env.run_stdin(SM, &["write", "-"], &edited)
        .code(4)
        .one_line_error(SM)
        .stderr_has("--force");
    env.run(SM, &["write", &edited]).code(4);
    unchanged(&before, &snapshot(&env), "a refused input");
    assert_eq!(env.state()["phase"], "concurrent");
    // The same revision (read, edit, write) and no revision at all pass.
    let fresh = env.sm(&["read"]).replace("\"concurrent\"", "\"edited\"");
    env.run_stdin(SM, &["write", "-"], &fresh).ok();
    assert_eq!(env.state()["phase"], "edited");
    let mut bare: Value = serde_json::from_str(&fresh).unwrap();
    bare.as_object_mut().unwrap().remove("metadata");
    bare["phase"] = json!("bare");
    env.run_stdin(SM, &["write", "-"], &bare.to_string()).ok();
    // --force overwrites, and the version it replaced is a backup.
    env.run_stdin(SM, &["write", "-", "--force"], &edited).ok();
    assert_eq!(env.state()["phase"], "mine");
    let backups = env.run(SM, &["list-backups", "--json"]).json();
    let newest = backups[0]["path"].as_str().unwrap();
    let kept: Value = serde_json::from_slice(&fs::read(newest).unwrap()).unwrap();
    assert_eq!(kept["phase"], "bare", "{backups}");
}

#[test]
fn a_restore_killed_after_its_journal_never_reverts_later_work() {
    // See: issue #11, "A restore killed after writing its journal is
    // finished by the next checkpoint even after later set/append calls".
    let env = Env::new();
    env.init();
    env.sm(&["set", ".phase", "\"checkpointed\""]);
    let id = env.run(ER, &["checkpoint", "base"]).ok().stdout;
    let id = id.trim();
    env.sm(&["set", ".phase", "\"later\""]);

    // Killed (a real SIGKILL) right after the journal is durable: then a
    // set succeeds, then a checkpoint finds the journal.
    let killed = env
        .cmd(ER)
        .args(["restore", id])
        .env("WFSTATE_TEST_CRASH_AT", "restore-after-journal")
        .status()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(killed.signal(), Some(9), "the crash hook did not fire");
    assert!(env.path(".wfstate-restore.journal").exists());
    assert_eq!(env.state()["phase"], "later");
    env.sm(&["set", ".phase", "\"after-crash\""]);
    env.sm(&["append", ".completedTasks", "\"t1\""]);
    env.run(ER, &["checkpoint", "next"])
        .ok()
        .stderr_has("dropped the interrupted restore");
    assert_eq!(env.state()["phase"], "after-crash");
    assert_eq!(env.state()["completedTasks"], json!(["t1"]));
    assert!(!env.path(".wfstate-restore.journal").exists());
    let dropped = env
        .audit_events()
        .into_iter()
        .find(|e| e["op"] == "restore" && e["outcome"] == "dropped")
        .expect("a dropped event");
    assert_eq!(dropped["exit_code"], 0);
    crate::harness::assert_audit_valid(&env);

    // Killed the same way with nothing committed since: finished.
    env.cmd(ER)
        .args(["restore", id])
        .env("WFSTATE_TEST_CRASH_AT", "restore-after-journal")
        .status()
        .unwrap();
    assert!(env.path(".wfstate-restore.journal").exists());
    env.run(ER, &["checkpoint", "again"])
        .ok()
        .stderr_has("finishing the interrupted restore");
    assert_eq!(env.state()["phase"], "checkpointed");
    assert!(!env.path(".wfstate-restore.journal").exists());
}

/// A process that sleeps and holds a lock, killed when dropped.
struct LockOwner(std::process::Child);

impl Drop for LockOwner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A healthy root: a state with history, a checkpoint, config/ and
/// .signals/ files, and a lock held by a live process. Not this test
/// process: the commands it runs would then hold `build` and be refused
/// `state` by the hierarchy (issue #11, "Locks").
fn healthy() -> (Env, LockOwner) {
    let env = Env::new();
    env.init();
    fs::create_dir(env.path("config")).unwrap();
    fs::write(env.path("config/rules.json"), "{}").unwrap();
    env.sm(&["signal", "S1"]);
    env.run(ER, &["checkpoint", "base"]).ok();
    for i in 0..3 {
        env.sm(&["set", ".phase", &format!("\"p{i}\"")]);
    }
    let owner = LockOwner(
        std::process::Command::new("sleep")
            .arg("300")
            .spawn()
            .unwrap(),
    );
    let pid = owner.0.id().to_string();
    env.run(LM, &["acquire", "build", "1", "exclusive", "--owner", &pid])
        .ok();
    (env, owner)
}

#[test]
fn handle_apply_on_a_healthy_root_changes_nothing_and_keeps_the_code() {
    // See: issue #11, "handle $? --apply with exit 4 ... discards every commit".
    let (env, _owner) = healthy();
    for code in 0..=10 {
        let before = snapshot(&env);
        let r = env
            .run(ER, &["handle", &code.to_string(), "--apply"])
            .code(code);
        unchanged(
            &before,
            &snapshot(&env),
            &format!("handle {code} --apply ({})", r.stdout),
        );
        if [2, 3, 4, 7].contains(&code) {
            assert!(
                r.stdout.contains("nothing") || r.stdout.contains("no "),
                "handle {code} says no why: {}",
                r.stdout
            );
        }
    }
    assert_eq!(env.state()["phase"], "p2");
}

#[test]
fn handle_3_acts_only_on_what_is_corrupt() {
    // See: issue #11, "with a corrupt lock record, handle 3 --apply says
    // nothing to recover and exits 0".
    let (env, _owner) = healthy();
    fs::write(env.path(".locks/broken.lock"), "{\"holders\": [").unwrap();
    let before = snapshot(&env);
    env.run(ER, &["handle", "3", "--apply"])
        .code(3)
        .stdout_has("lock-manager release broken --force");
    unchanged(&before, &snapshot(&env), "a refused input");
    fs::remove_file(env.path(".locks/broken.lock")).unwrap();

    // Only a backup is corrupt: it is moved aside, the live state untouched.
    let backup = env
        .list(".state-backups")
        .into_iter()
        .find(|b| b.ends_with(".json"))
        .unwrap();
    fs::write(env.path(&format!(".state-backups/{backup}")), "{ broken").unwrap();
    let state = env.bytes(".workflow-state.json");
    let r = env
        .run(SM, &["verify-integrity"])
        .code(3)
        .one_line_error(SM);
    assert!(!r.stderr.contains("state-manager recover"), "{}", r.stderr);
    r.stderr_has("the live state is fine");
    env.run(ER, &["handle", "3", "--apply"])
        .ok()
        .stdout_has("moved the corrupt backup");
    assert_eq!(env.bytes(".workflow-state.json"), state);
    assert!(
        env.path(&format!(".state-backups/corrupt/{backup}"))
            .exists()
    );
    env.run(SM, &["verify-integrity"]).ok();

    // The live state is corrupt: restored from the newest valid backup, kept aside.
    fs::write(env.state_file(), "{ nope").unwrap();
    env.run(ER, &["handle", "3", "--apply"]).ok();
    env.run(SM, &["validate"]).ok();
    assert!(env.list(".").iter().any(|n| n.contains(".corrupt-")));
}

#[test]
fn handle_4_after_a_refused_input_keeps_every_commit() {
    let (env, _owner) = healthy();
    let before = snapshot(&env);
    let r = env
        .run(SM, &["set", ".phase", "5"])
        .code(4)
        .one_line_error(SM);
    // A refused input is about the input, not the live file.
    assert!(!r.stderr.contains("validate"), "{}", r.stderr);
    env.run(ER, &["handle", "4", "--apply"])
        .code(4)
        .stdout_has("nothing to recover");
    unchanged(&before, &snapshot(&env), "a refused input");
    assert_eq!(env.state()["phase"], "p2");
    // An invalid live state (edited by hand) is damage 4 acts on.
    let mut doc = env.state();
    doc["phase"] = json!(5);
    doc["metadata"].as_object_mut().unwrap().remove("checksum");
    fs::write(env.state_file(), doc.to_string()).unwrap();
    let invalid = env.bytes(".workflow-state.json");
    env.run(ER, &["handle", "4", "--apply"]).ok();
    env.run(SM, &["validate"]).ok();
    // The newest valid backup is the version before p2; the invalid one is kept.
    assert_eq!(env.state()["phase"], "p1");
    let backups = env.run(SM, &["list-backups", "--json"]).json();
    assert!(
        backups
            .as_array()
            .unwrap()
            .iter()
            .any(|b| fs::read(b["path"].as_str().unwrap()).unwrap() == invalid),
        "{backups}"
    );
}

#[test]
fn suggested_steps_never_replace_a_healthy_state() {
    let (env, _owner) = healthy();
    for code in ["3", "4"] {
        let out = env.run(ER, &["suggest", code]).ok().stdout;
        assert!(
            !out.contains("state-manager recover"),
            "suggest {code}: {out}"
        );
        assert!(!out.contains("restore latest"), "suggest {code}: {out}");
    }
}

#[test]
fn restore_keeps_what_it_replaces_and_says_what_it_removed() {
    // See: issue #11, "restore deletes config/ files made after the checkpoint".
    let (env, _owner) = healthy();
    let id = env
        .run(ER, &["list", "json"])
        .json()
        .as_array()
        .unwrap()
        .last()
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    fs::write(env.path("config/new.json"), "{\"made\": \"after\"}").unwrap();
    fs::write(env.path("config/rules.json"), "{\"changed\": true}").unwrap();
    let state = env.bytes(".workflow-state.json");
    let out = env
        .run(ER, &["restore", &id])
        .ok()
        .stdout_has("removed config/new.json")
        .stdout_has("kept")
        .stdout;
    assert!(!env.path("config/new.json").exists());
    let kept = env
        .list(".state-backups")
        .into_iter()
        .find(|n| n.starts_with("restore-"))
        .unwrap_or_else(|| panic!("no kept folder: {out}"));
    let dir = Path::new(".state-backups").join(kept);
    let read = |rel: &str| env.bytes(&dir.join(rel).display().to_string());
    assert_eq!(read("config/new.json"), b"{\"made\": \"after\"}");
    assert_eq!(read("config/rules.json"), b"{\"changed\": true}");
    // The state it replaced is a backup, byte for byte.
    let backups = env.list(".state-backups");
    assert!(
        backups
            .iter()
            .filter(|b| b.ends_with(".json"))
            .any(|b| env.bytes(&format!(".state-backups/{b}")) == state),
        "{backups:?}"
    );
}

#[test]
fn answers_are_not_failures_in_the_audit() {
    // See: issue #11, "check answering unlocked ... audited as failures".
    let env = Env::new();
    env.init();
    for _ in 0..3 {
        env.run(LM, &["check", "nobody"])
            .code(1)
            .stdout_has("unlocked");
        env.run(ER, &["is-degraded"]).code(1);
    }
    let stats = env.run(SM, &["audit", "stats", "--json"]).ok().json();
    assert_eq!(stats["failures"]["total"], 0, "{stats}");
    let recent = env
        .run(SM, &["audit", "recent", "--failed", "--json"])
        .ok()
        .json();
    assert_eq!(recent, json!([]), "{recent}");
    let diag = env.run(SM, &["diagnostics", "--json"]).ok().json();
    assert_eq!(diag["audit"]["failed"], 0, "{diag}");
    let answers: Vec<Value> = env
        .audit_events()
        .into_iter()
        .filter(|e| e["op"] == "check" || e["op"] == "is-degraded")
        .collect();
    assert_eq!(answers.len(), 6);
    for e in &answers {
        assert_eq!(e["outcome"], "ok", "{e}");
        assert_eq!(e["detail"]["answer_exit"], 1, "{e}");
    }
    crate::harness::assert_audit_valid(&env);
}
