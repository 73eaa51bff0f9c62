//! state-manager's jq, git and Terraform habits (issue 15): `read -e` as
//! `jq -e`, `-c` on one line for every kind of value, `del` and `mv` as
//! transactions on both backends, tables for `awk` (`--no-header`, one word
//! per title), and read-only commands that create nothing where there is no
//! state.

use std::fs;

use serde_json::{Value, json};

use crate::harness::{Env, assert_schema, read, revision};

const SM: &str = "state-manager";

use crate::harness::both;

both!(
    read_e_exits_1_for_null_false_and_missing_as_an_answer,
    del_removes_keys_and_elements_in_one_commit,
    del_refuses_what_it_must_and_changes_nothing,
    mv_moves_in_one_commit_and_refuses_what_it_must,
    concurrent_dels_and_mvs_lose_no_update,
);

/// The audit events of the state, oldest first, on either backend.
fn events(env: &Env) -> Vec<Value> {
    let v = env
        .run(SM, &["audit", "recent", "-n", "1000", "--json"])
        .ok()
        .json();
    v.as_array().expect("an array").clone()
}

/// A state with a little of everything for the value kinds `read` prints.
fn populated(env: &Env) {
    env.init();
    env.sm(&["merge", r#"{"context": {"s": "text", "n": 0, "f": false, "t": true, "o": {"k": [1, {"x": "y"}]}, "e": ""}}"#]);
    // (A merge patch's null deletes: set stores one.)
    env.sm(&["set", ".context.z", "null"]);
    for task in ["a", "b", "c", "d"] {
        env.sm(&["append", ".completedTasks", "--string", task]);
    }
}

// See: issue 15 — `if state-manager read -e .signals.DONE; then` as with jq -e.
fn read_e_exits_1_for_null_false_and_missing_as_an_answer(env: Env) {
    populated(&env);
    // jq's manual: -e sets the exit status to 1 if the last output value
    // was false or null; every other value (0, "", [], {}) is 0.
    for (path, code, printed) in [
        (".signals.DONE", 1, "null"),
        (".context.z", 1, "null"),
        (".context.f", 1, "false"),
        (".context.o.k[9]", 1, "null"),
        (".nope.deeper", 1, "null"),
        (".context.t", 0, "true"),
        (".context.n", 0, "0"),
        (".context.e", 0, "\"\""),
        (".completedTasks", 0, r#"["a","b","c","d"]"#),
        (".signals", 0, "{}"),
        (".", 0, ""),
    ] {
        let run = env.run(SM, &["read", "-e", path, "-c"]).code(code);
        assert_eq!(run.stderr, "", "{path}: an answer says nothing on stderr");
        if !printed.is_empty() {
            assert_eq!(run.stdout.trim_end(), printed, "{path}");
        }
        // The long form and the pretty output answer alike.
        env.run(SM, &["read", path, "--exit-status"]).code(code);
    }
    // Without -e a missing value is null and exit 0, as before.
    env.run(SM, &["read", ".signals.DONE"])
        .ok()
        .stdout_has("null");
    env.sm(&["signal", "DONE"]);
    env.run(SM, &["read", "-e", ".signals.DONE"]).ok();
    // A failure stays a failure: a bad path is 4, whatever -e says.
    env.run(SM, &["read", "-e", ".a["]).code(4);

    // Answers are not failures in the audit log (design.md §12): exit 0,
    // outcome ok, the answer in detail.answer_exit.
    let reads: Vec<Value> = events(&env)
        .into_iter()
        .filter(|e| e["op"] == "read" && e["detail"].get("answer_exit").is_some())
        .collect();
    assert!(reads.len() >= 20, "{reads:?}");
    assert!(
        reads
            .iter()
            .all(|e| e["exit_code"] == 0 && e["outcome"] == "ok"),
        "{reads:#?}"
    );
    assert!(reads.iter().any(|e| e["detail"]["answer_exit"] == 1));
    assert!(reads.iter().any(|e| e["detail"]["answer_exit"] == 0));
    let stats = env
        .run(SM, &["audit", "stats", "--by", "op", "--json"])
        .ok()
        .json();
    let failed: Vec<&String> = stats["failures"]["by_exit"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(failed, ["4"], "only the bad path failed: {stats:#}");
    let read_group = stats["groups"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["key"] == "read"))
        .unwrap_or_else(|| panic!("no read group in {stats:#}"));
    assert_eq!(read_group["failed"], 1, "{read_group}");
}

fn del_removes_keys_and_elements_in_one_commit(env: Env) {
    populated(&env);
    let before = env.run(SM, &["list-backups", "--json"]).ok().json();
    let r0 = revision(&env);
    let out = env
        .run(SM, &["del", ".context.o.k[1].x", "--json"])
        .ok()
        .json();
    assert_schema("state-manager-del.schema.json", &out);
    assert_eq!(out["path"], ".context.o.k[1].x");
    assert_eq!(out["deleted"], true);
    assert_eq!(out["revision"], r0 + 1);
    assert!(out["backup"].is_string(), "{out}");
    assert_eq!(read(&env, ".context.o"), json!({"k": [1, {}]}));
    // Elements: by index and from the end, as jq; later ones move up.
    assert_eq!(env.sm(&["del", ".completedTasks[1]"]), "", "quiet in text");
    env.sm(&["del", ".completedTasks[-1]"]);
    assert_eq!(read(&env, ".completedTasks"), json!(["a", "c"]));
    // A key of any value, other keys and their order kept.
    env.sm(&["del", ".context.s"]);
    env.sm(&["del", r#".context["e"]"#]);
    assert_eq!(
        read(&env, ".context"),
        json!({"n": 0, "f": false, "t": true, "z": null, "o": {"k": [1, {}]}})
    );
    // A key holding null is a value: deleted, not "missing".
    env.sm(&["del", ".context.z"]);
    assert!(read(&env, ".context").get("z").is_none());
    // One revision, one backup and one audit event per del.
    assert_eq!(revision(&env), r0 + 6);
    let after = env.run(SM, &["list-backups", "--json"]).ok().json();
    let made = after.as_array().unwrap().len() - before.as_array().unwrap().len();
    // Retention keeps 5 by default: count the newest names instead when pruned.
    let newest: Vec<&str> = after
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert!(
        made == 6 || newest.iter().filter(|n| n.contains("-del")).count() == 5,
        "{newest:?}"
    );
    let dels: Vec<Value> = events(&env)
        .into_iter()
        .filter(|e| e["op"] == "del")
        .collect();
    assert_eq!(dels.len(), 6, "{dels:#?}");
    assert!(dels.iter().all(|e| e["exit_code"] == 0), "{dels:#?}");
    assert_eq!(dels[0]["detail"]["revision"], r0 + 1);
    if env.redis.is_none() {
        // (Redis: the commit script writes the event, with the revision.)
        assert_eq!(dels[0]["detail"]["path"], ".context.o.k[1].x");
    }
    assert_eq!(env.run(SM, &["validate"]).code, 0);
}

fn del_refuses_what_it_must_and_changes_nothing(env: Env) {
    populated(&env);
    let doc = read(&env, ".");
    // Nothing there: exit 1 with what to do, nothing committed.
    for missing in [
        ".nope",
        ".context.nope",
        ".context.o.k[7]",
        ".completedTasks[-9]",
        ".nope.deeper[0]",
    ] {
        let run = env.run(SM, &["del", missing]).code(1).one_line_error(SM);
        assert!(
            run.stderr
                .contains(&format!("no value at {missing}; nothing changed")),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("--missing-ok"), "{}", run.stderr);
        // --missing-ok: exit 0, still nothing committed.
        let ok = env
            .run(SM, &["del", missing, "--missing-ok", "--json"])
            .ok()
            .json();
        assert_schema("state-manager-del.schema.json", &ok);
        assert_eq!(ok["deleted"], false);
        assert_eq!(ok["backup"], Value::Null);
        assert_eq!(ok["revision"], doc["metadata"]["revision"]);
    }
    // Refused with exit 4: the document itself, the toolkit's metadata,
    // fields the schema requires, a step into a value of the wrong kind.
    for (path, says) in [
        (".", "cannot delete the whole document"),
        (".metadata", "metadata.* belongs to the toolkit"),
        (".metadata.revision", "metadata.* belongs to the toolkit"),
        (".metadata.checksum", "metadata.* belongs to the toolkit"),
        (".phase", "\"phase\" is a required property"),
        (".schemaVersion", "required"),
        (".signals", "required"),
        (".degradedMode.enabled", "required"),
        (".context.s.x", "it is a string, not an object"),
        (".context.o[0]", "it is an object, not an array"),
    ] {
        for extra in [&[][..], &["--missing-ok"][..]] {
            let mut args = vec!["del", path];
            args.extend_from_slice(extra);
            env.run(SM, &args)
                .code(4)
                .one_line_error(SM)
                .stderr_has(says);
        }
    }
    // A bad path is 4, and --json prints the error object.
    let run = env.run(SM, &["del", ".a[", "--json"]).code(4);
    assert_eq!(run.json()["error"]["code"], 4);
    assert_eq!(read(&env, "."), doc, "nothing changed");
}

fn mv_moves_in_one_commit_and_refuses_what_it_must(env: Env) {
    populated(&env);
    let r0 = revision(&env);
    let out = env
        .run(SM, &["mv", ".context.o", ".moved.here", "--json"])
        .ok()
        .json();
    assert_schema("state-manager-mv.schema.json", &out);
    assert_eq!(
        (&out["from"], &out["to"], &out["replaced"], &out["revision"]),
        (
            &json!(".context.o"),
            &json!(".moved.here"),
            &json!(false),
            &json!(r0 + 1)
        )
    );
    assert!(out["backup"].is_string());
    assert_eq!(
        read(&env, ".moved"),
        json!({"here": {"k": [1, {"x": "y"}]}})
    );
    assert!(read(&env, ".context").get("o").is_none());
    // An element out of an array into a key; the array closes up.
    assert_eq!(env.sm(&["mv", ".completedTasks[-1]", ".context.last"]), "");
    assert_eq!(read(&env, ".completedTasks"), json!(["a", "b", "c"]));
    assert_eq!(read(&env, ".context.last"), json!("d"));
    let doc = read(&env, ".");

    // Refusals change nothing.
    let run = env
        .run(SM, &["mv", ".context.nope", ".context.x"])
        .code(1)
        .one_line_error(SM);
    assert!(
        run.stderr.contains("no value at .context.nope"),
        "{}",
        run.stderr
    );
    for (from, to, says) in [
        (".context.s", ".context.n", "already holds a value"),
        (".context.s", ".context.z", "already holds a value"),
        (".context", ".context.inner", "is inside .context"),
        (".context", ".context", "the same place"),
        (
            ".completedTasks[2]",
            ".completedTasks[-1]",
            "the same place",
        ),
        (".context.s", ".metadata.s", "belongs to the toolkit"),
        (".metadata.lineage", ".context.l", "belongs to the toolkit"),
        (".phase", ".context.phase", "required"),
        (
            ".context.s",
            ".context.n.x",
            "it is a number, not an object",
        ),
        (".", ".x", "cannot move the whole document"),
        (".context", ".", "cannot move to the whole document"),
    ] {
        env.run(SM, &["mv", from, to])
            .code(4)
            .one_line_error(SM)
            .stderr_has(says);
    }
    assert_eq!(read(&env, "."), doc, "nothing changed");

    // --force replaces TO, in one commit.
    let out = env
        .run(
            SM,
            &["mv", ".context.s", ".context.n", "--force", "--json", "-c"],
        )
        .ok();
    assert_eq!(out.stdout.lines().count(), 1);
    let out = out.json();
    assert_eq!(out["replaced"], true);
    assert_eq!(
        out["revision"],
        doc["metadata"]["revision"].as_u64().unwrap() + 1
    );
    assert_eq!(read(&env, ".context.n"), json!("text"));
    assert!(read(&env, ".context").get("s").is_none());

    let mvs: Vec<Value> = events(&env)
        .into_iter()
        .filter(|e| e["op"] == "mv")
        .collect();
    let ok: Vec<&Value> = mvs.iter().filter(|e| e["exit_code"] == 0).collect();
    assert_eq!(ok.len(), 3, "one event per move: {mvs:#?}");
    assert_eq!(ok[0]["detail"]["revision"], r0 + 1);
    if env.redis.is_none() {
        assert_eq!(ok[0]["detail"]["from"], ".context.o");
        assert_eq!(ok[0]["detail"]["to"], ".moved.here");
        assert_eq!(ok[2]["detail"]["replaced"], true);
    }
    assert_eq!(mvs.len(), 3 + 12, "and one per refusal");
}

/// Every command that only reads, of all three binaries: the command line,
/// and the `op` of its audit event (`None`: it writes no event).
const READ_ONLY: &[(&str, &[&str], Option<&str>)] = &[
    (SM, &["read"], Some("read")),
    (SM, &["read", ".phase", "-c"], Some("read")),
    (SM, &["read", "-e", ".signals.DONE"], Some("read")),
    (SM, &["validate"], Some("validate")),
    (SM, &["validate", "--json"], Some("validate")),
    (SM, &["status"], None),
    (SM, &["status", "--json"], None),
    (SM, &["list-backups"], None),
    (SM, &["verify-integrity"], Some("verify-integrity")),
    (SM, &["validate-backup", "no-such"], Some("validate-backup")),
    (SM, &["health"], None),
    (SM, &["diagnostics", "-v"], None),
    (SM, &["list-states"], None),
    (SM, &["export"], Some("export")),
    (SM, &["audit", "recent"], Some("audit-recent")),
    // (Text: its table has titles of two words, which debug builds refuse.)
    (SM, &["audit", "stats", "--json"], Some("audit-stats")),
    (SM, &["audit", "races"], Some("audit-races")),
    (
        SM,
        &["audit", "history", ".workflow-state.json"],
        Some("audit-history"),
    ),
    (SM, &["audit", "export"], Some("audit-export")),
    (
        SM,
        &["audit", "monitor", "--duration", "0.1"],
        Some("audit-monitor"),
    ),
    // Dry runs and a suggestion not applied change nothing either.
    (SM, &["repair", "--dry-run"], Some("repair")),
    (SM, &["cleanup", "--dry-run"], Some("cleanup")),
    (LM, &["list"], Some("list")),
    (LM, &["list", "json"], Some("list")),
    (LM, &["check", "deploy"], Some("check")),
    (LM, &["status"], Some("status")),
    (ER, &["list"], Some("list")),
    (ER, &["status"], None),
    (ER, &["is-degraded"], Some("is-degraded")),
    (ER, &["suggest", "3"], Some("suggest")),
    (ER, &["cleanup", "--dry-run"], Some("cleanup")),
    (ER, &["handle", "3"], Some("handle")),
];

const LM: &str = "lock-manager";
const ER: &str = "error-recovery";

/// The names in `dir`, sorted.
fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

// See: issue 15 — a read in the wrong folder left an audit log behind.
#[test]
fn read_only_commands_create_nothing_where_there_is_no_state() {
    for (bin, args, _) in READ_ONLY {
        let env = Env::new();
        let run = env.run(bin, args);
        assert!(
            [0, 1, 3, 4].contains(&run.code),
            "{bin} {args:?}: exit {}: {}",
            run.code,
            run.stderr
        );
        let left = names(env.root());
        // (.locks/ is another change's: lock-manager's reads, and the lock
        // error-recovery's cleanup takes even for a dry run. Only the log here.)
        if *bin == LM || (*bin == ER && args[0] == "cleanup") {
            assert!(
                !left.iter().any(|n| n.contains("audit")),
                "{bin} {args:?} left {left:?}"
            );
        } else {
            assert_eq!(left, Vec::<String>::new(), "{bin} {args:?} left files");
        }
    }
    // The same holds from the folder itself, with no variable set: the
    // default state file and log are in the current folder.
    let dir = tempfile::tempdir().unwrap();
    for (bin, args, _) in READ_ONLY
        .iter()
        .filter(|(b, a, _)| *b != LM && !(*b == ER && a[0] == "cleanup"))
    {
        let env = Env::new();
        let mut c = env.cmd(bin);
        c.env_remove("STATE_FILE")
            .env_remove("AUDIT_LOG")
            .current_dir(dir.path());
        let out = c.args(*args).output().unwrap();
        assert!(out.status.code().is_some(), "{bin} {args:?}");
        assert_eq!(names(dir.path()), Vec::<String>::new(), "{bin} {args:?}");
    }
}

#[test]
fn read_only_commands_still_append_their_event_to_a_log_that_exists() {
    let env = Env::new();
    env.init();
    let log = env.audit_log();
    for (bin, args, op) in READ_ONLY {
        let before = env.audit_events().len();
        env.run(bin, args);
        let events = env.audit_events();
        match op {
            Some(op) => {
                assert_eq!(events.len(), before + 1, "{bin} {args:?}");
                let e = events.last().unwrap();
                assert_eq!((&e["tool"], &e["op"]), (&json!(bin), &json!(op)));
            }
            None => assert_eq!(events.len(), before, "{bin} {args:?}"),
        }
    }
    // A log rotated away is started anew by the next event, a read's too.
    fs::rename(&log, env.path(".workflow-audit.jsonl.1")).unwrap();
    env.sm(&["read", ".phase"]);
    let events = env.audit_events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["op"], "read");
    // A write creates the log where there is none, as it always did.
    fs::remove_file(&log).unwrap();
    fs::remove_file(env.path(".workflow-audit.jsonl.1")).unwrap();
    env.sm(&["set", ".phase", "\"impl\""]);
    assert_eq!(env.audit_events().len(), 1);
    let empty = Env::new();
    empty.run(
        LM,
        &["acquire", "job", "--owner", &std::process::id().to_string()],
    );
    assert_eq!(empty.audit_events()[0]["op"], "acquire");
}

/// The whitespace-separated fields of each line, as `awk` splits them.
fn fields(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// Runs `state-manager args` with and without `--no-header` (given after
/// the subcommand, a global option); returns both stdouts.
fn with_and_without_header(env: &Env, args: &[&str]) -> (String, String) {
    let with = env.sm(args);
    let mut bare = args.to_vec();
    bare.push("--no-header");
    (with, env.sm(&bare))
}

// See: issue 15 — tables for awk and cut: one word per title and per cell,
// and --no-header.
#[test]
fn list_backups_and_list_states_are_tables_for_awk() {
    let env = Env::new();
    env.init();
    // Empty: a message for people, no line for a script.
    let (with, bare) = with_and_without_header(&env, &["list-backups"]);
    assert!(with.starts_with("no backups in"), "{with}");
    assert_eq!(bare, "");
    env.sm(&["set", ".phase", "\"impl\""]);
    env.sm(&["backup", "manual"]);
    env.sm(&["set", ".context.x", "1"]);

    let listed = env.run(SM, &["list-backups", "--json"]).ok().json();
    let names: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect();
    assert!(names.len() >= 3, "{names:?}");
    let (with, bare) = with_and_without_header(&env, &["list-backups"]);
    let (with, bare) = (fields(&with), fields(&bare));
    assert_eq!(with[0], ["NAME", "SIZE", "MADE", "VALID"]);
    assert_eq!(&with[1..], &bare[..], "--no-header drops only the titles");
    for (row, b) in bare.iter().zip(listed.as_array().unwrap()) {
        assert_eq!(row.len(), 4, "{row:?}");
        assert_eq!(row[0], b["name"].as_str().unwrap());
        assert_eq!(row[1], b["size"].to_string());
        assert_eq!(row[2], b["made"].as_str().unwrap(), "MADE is one word");
        assert_eq!(row[3], "yes");
    }
    // The global flag before the subcommand too.
    assert_eq!(
        fields(&env.sm(&["--no-header", "list-backups"])),
        bare,
        "before the subcommand"
    );

    // list-states: a phase with a space would be two fields, so keep to
    // one-word values here and check the shape.
    let (with, bare) = with_and_without_header(&env, &["list-states"]);
    let (with, bare) = (fields(&with), fields(&bare));
    assert_eq!(
        with[0],
        [
            "NAME",
            "CONDITION",
            "PHASE",
            "REVISION",
            "MODIFIED",
            "LOCKS"
        ]
    );
    assert_eq!(&with[1..], &bare[..]);
    assert_eq!(bare.len(), 1, "{bare:?}");
    let state = env.state();
    assert_eq!(bare[0][1], "valid");
    assert_eq!(bare[0][2], "impl");
    assert_eq!(bare[0][3], state["metadata"]["revision"].to_string());
    assert_eq!(
        bare[0][4],
        state["metadata"]["lastModified"].as_str().unwrap()
    );
    let empty = tempfile::tempdir().unwrap();
    let dir = empty.path().to_str().unwrap();
    let (with, bare) = with_and_without_header(&env, &["list-states", dir]);
    assert!(with.starts_with("no states in"), "{with}");
    assert_eq!(bare, "");
}

#[test]
fn diagnostics_and_benchmark_tables_have_one_word_titles_and_drop_them_on_request() {
    let env = Env::new();
    env.init();
    env.sm(&["set", ".phase", "\"impl\""]);
    env.run(SM, &["set", ".phase", "bad"]).code(4);

    for (args, titles) in [
        (
            &["diagnostics"][..],
            &["OPERATION", "EVENTS", "ERR%", "P50_MS", "P95_MS", "MAX_MS"][..],
        ),
        (
            &["diagnostics", "-v"][..],
            &[
                "OPERATION",
                "EVENTS",
                "ERR%",
                "P50_MS",
                "P95_MS",
                "MAX_MS",
                "FAILURES",
            ][..],
        ),
    ] {
        let (with, bare) = with_and_without_header(&env, args);
        let rows = fields(&with);
        let at = rows
            .iter()
            .position(|r| r == titles)
            .unwrap_or_else(|| panic!("{args:?}: no title line {titles:?} in\n{with}"));
        let table: Vec<&Vec<String>> = rows[at + 1..]
            .iter()
            .take_while(|r| !r.is_empty())
            .collect();
        assert!(table.len() >= 2, "{with}");
        assert!(table.iter().all(|r| r.len() == titles.len()), "{with}");
        let set = table.iter().find(|r| r[0] == "set").expect("a set row");
        if args.len() == 2 {
            assert_eq!(set[6], "VALIDATION_FAILED×1", "{with}");
        }
        // --no-header: the same report without the title line.
        let mut want: Vec<&str> = with.lines().collect();
        want.remove(at);
        let got: Vec<&str> = bare.lines().collect();
        assert_eq!(got.len(), want.len(), "{bare}");
        let same = |a: &str, b: &str| {
            // (A duration or a size may differ between the two runs.)
            a.split_whitespace().next() == b.split_whitespace().next()
        };
        assert!(got.iter().zip(&want).all(|(a, b)| same(a, b)), "{bare}");
    }

    let (with, bare) = with_and_without_header(&env, &["benchmark", "--operations", "2"]);
    let rows = fields(&with);
    let at = rows
        .iter()
        .position(|r| r == &["KIND", "OPS_PER_S", "P50_MS", "P95_MS", "MAX_MS"])
        .unwrap_or_else(|| panic!("{with}"));
    assert!(rows[at + 1..at + 5].iter().all(|r| r.len() == 5), "{with}");
    // --no-header: the rows only, no caption or note.
    let bare = fields(&bare);
    let kinds: Vec<&str> = bare.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(kinds, ["read", "write", "set", "lock"], "{bare:?}");
    assert!(bare.iter().all(|r| r.len() == 5), "{bare:?}");
}

#[test]
fn read_c_prints_one_line_for_every_kind_of_value_with_or_without_json() {
    let env = Env::new();
    populated(&env);
    env.sm(&["set", ".context.lines", "--string", "one\ntwo"]);
    for path in [
        ".",
        ".context",
        ".completedTasks",
        ".context.s",
        ".context.lines",
        ".context.n",
        ".context.f",
        ".context.z",
        ".nope",
    ] {
        let want: Value = {
            let doc = env.state();
            let mut v = &doc;
            for k in path.split('.').filter(|k| !k.is_empty()) {
                v = v.get(k).unwrap_or(&Value::Null);
            }
            v.clone()
        };
        for flags in [&["-c"][..], &["--json", "-c"], &["--compact", "--json"]] {
            let mut args = vec!["read", path];
            args.extend_from_slice(flags);
            let out = env.run(SM, &args).ok().stdout;
            assert_eq!(out.lines().count(), 1, "{args:?}: {out}");
            assert_eq!(
                serde_json::from_str::<Value>(&out).unwrap(),
                want,
                "{args:?}"
            );
        }
        // Pretty without -c: the same value.
        let out = env.run(SM, &["read", path, "--json"]).ok().stdout;
        assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), want, "{path}");
    }
    // --raw prints a string as it is, as jq -r does (its newline included).
    assert_eq!(env.sm(&["read", ".context.lines", "-r"]), "one\ntwo\n");
}

#[test]
fn audit_history_names_del_and_mv_as_changes_and_leaves_reads_out() {
    let env = Env::new();
    env.init();
    env.sm(&["set", ".context.a", "1"]);
    env.sm(&["mv", ".context.a", ".context.b"]);
    env.sm(&["del", ".context.b"]);
    env.sm(&["read", ".phase"]);
    env.run(SM, &["read", "-e", ".nope"]).code(1);
    env.sm(&["verify-integrity"]);
    let target = env.state_file().display().to_string();
    let steps = |all: bool| -> Vec<(String, String)> {
        let mut args = vec!["audit", "history", target.as_str(), "--json"];
        if all {
            args.push("--all");
        }
        env.run(SM, &args).ok().json()["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["what"].as_str().unwrap().to_string(),
                    s["detail"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let changes: Vec<(String, String)> = steps(false);
    let ops: Vec<(&str, &str)> = changes
        .iter()
        .map(|(w, d)| (w.as_str(), d.as_str()))
        .collect();
    assert_eq!(
        ops,
        [
            ("created", ""),
            ("changed", "by set, revision 2"),
            ("changed", "by mv, revision 3"),
            ("changed", "by del, revision 4"),
        ],
        "reads (read, read -e, verify-integrity) are left out"
    );
    let all = steps(true);
    assert_eq!(all.len(), changes.len() + 3, "{all:?}");
    assert!(all.contains(&("read".into(), "by verify-integrity".into())));
}

/// Runs `script` in bash with lib/state-manager.sh sourced from the repo.
fn sourced(env: &Env, script: &str) -> crate::harness::Run {
    let mut c = std::process::Command::new("bash");
    env.clean_env(&mut c);
    let lib = crate::harness::repo_root().join("lib/state-manager.sh");
    c.env("WFSTATE_BIN", crate::harness::bin_dir())
        .env("LOCK_TIMEOUT", "5")
        .arg("-c")
        .arg(format!("source '{}'; {script}", lib.display()));
    crate::harness::Run::of(c.output().unwrap())
}

#[test]
fn the_shim_s_delete_state_and_move_state_act_for_the_sourcing_shell() {
    let env = Env::new();
    env.init();
    env.sm(&["set", ".context.a", "1"]);
    env.sm(&["append", ".completedTasks", "\"t\""]);
    // Under the shell's own state lock, from a subshell too (the functions
    // act for $$, as every function of the shim does): no wait, no timeout;
    // the binary's exit codes come back.
    let run = sourced(
        &env,
        r#"set -e
        lock_state 5
        x=$(move_state .context.a .context.b --json -c)
        echo "$x"
        delete_state '.completedTasks[-1]'
        delete_state .context.nope --missing-ok
        rc=0; delete_state .context.nope 2>/dev/null || rc=$?
        echo "missing:$rc"
        rc=0; move_state .context.b 2>/dev/null || rc=$?
        echo "usage:$rc"
        unlock_state"#,
    )
    .ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    let moved: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(moved["to"], ".context.b");
    assert_eq!(&lines[1..], ["missing:1", "usage:1"], "{}", run.stderr);
    assert_eq!(env.state()["context"], json!({"b": 1}));
    assert_eq!(env.state()["completedTasks"], json!([]));
}

/// Read-modify-write under the `state` lock (file) or an optimistic
/// transaction (Redis): N processes at once lose nothing.
fn concurrent_dels_and_mvs_lose_no_update(env: Env) {
    env.init();
    const N: usize = 6;
    let keys: serde_json::Map<String, Value> =
        (0..N).map(|i| (format!("k{i}"), json!(i))).collect();
    env.sm(&["merge", &json!({"context": keys, "from": keys}).to_string()]);
    let r0 = revision(&env);
    let children: Vec<std::process::Child> = (0..N)
        .flat_map(|i| {
            let del = env
                .cmd(SM)
                .args(["del", &format!(".context.k{i}")])
                .spawn()
                .unwrap();
            let mv = env
                .cmd(SM)
                .args(["mv", &format!(".from.k{i}"), &format!(".to.k{i}")])
                .spawn()
                .unwrap();
            [del, mv]
        })
        .collect();
    for mut c in children {
        // Each waits for the lock at most LOCK_TIMEOUT (30 s): bounded.
        assert!(c.wait().unwrap().success());
    }
    let doc = env.state();
    assert_eq!(doc["context"], json!({}));
    assert_eq!(doc["from"], json!({}));
    assert_eq!(doc["to"].as_object().unwrap().len(), N, "{doc}");
    assert_eq!(revision(&env), r0 + 2 * N as u64);
}
