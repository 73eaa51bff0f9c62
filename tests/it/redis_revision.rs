//! A Redis server that comes back with fewer writes than it acknowledged —
//! a failover to a replica that had not received them, a restored dump —
//! is noticed by the next command on a host that saw the newer revision:
//! exit 3, and nothing is written over it (issue 14, "a revision seen going
//! backwards is exit 3, never overwritten").
//!
//! The loss is made the way a failover makes it: the state key is put back
//! to an older copy of itself (`COPY … REPLACE`), keys and all.

use crate::harness::{Env, read, revision};

const STATE: &str = "wfstate:{default}:state";
const OLD: &str = "test:older-state";

/// A state at revision r, an exact copy of it kept aside, then two more
/// writes acknowledged to this host; returns (r, the newer revision).
fn lose_two_writes(env: &Env) -> (u64, u64) {
    env.sm(&["init"]);
    env.sm(&["set", ".phase", "\"build\""]);
    let older = revision(env);
    assert_eq!(env.server().cli(&["COPY", STATE, OLD]), "1");
    env.sm(&["set", ".phase", "\"test\""]);
    env.sm(&["set", ".phase", "\"deploy\""]);
    let newer = revision(env);
    assert!(newer > older);
    assert_eq!(env.server().cli(&["COPY", OLD, STATE, "REPLACE"]), "1");
    (older, newer)
}

#[test]
fn a_read_after_the_server_lost_writes_exits_3_naming_both_revisions() {
    let env = Env::redis();
    let (older, newer) = lose_two_writes(&env);
    for args in [&["read", ".phase"][..], &["read"][..], &["export"][..]] {
        env.run("state-manager", args)
            .code(3)
            .stderr_has(&format!("went back from revision {newer} to {older}"))
            .stderr_has("lost writes");
    }
    // `status` reports the state as corrupt, as for any state it cannot trust.
    env.run("state-manager", &["status"])
        .code(3)
        .stdout_has("corrupt");
}

#[test]
fn a_write_after_the_server_lost_writes_is_refused_and_leaves_the_server_as_it_is() {
    let env = Env::redis();
    let (older, _) = lose_two_writes(&env);
    let before = env.server().cli(&["HGET", STATE, "doc"]);
    for args in [
        &["set", ".phase", "\"release\""][..],
        &["merge", "{\"x\": 1}"][..],
        &["del", ".phase"][..],
    ] {
        env.run("state-manager", args)
            .code(3)
            .stderr_has("went back");
    }
    assert_eq!(env.server().cli(&["HGET", STATE, "doc"]), before);
    assert_eq!(env.server().cli(&["HGET", STATE, "rev"]), older.to_string());
}

#[test]
fn removing_the_note_named_in_the_hint_accepts_the_servers_state() {
    let env = Env::redis();
    let (older, _) = lose_two_writes(&env);
    let run = env.run("state-manager", &["read", ".phase"]).code(3);
    let stderr = run.stderr;
    let note = stderr
        .split_whitespace()
        .find(|w| w.ends_with("/seen") || w.ends_with("/seen,"))
        .expect("the hint names the note")
        .trim_end_matches(',');
    std::fs::remove_file(note).expect("the note exists where the hint says");
    assert_eq!(read(&env, ".phase"), "build");
    env.sm(&["set", ".phase", "\"again\""]);
    assert_eq!(revision(&env), older + 1);
}

#[test]
fn a_new_lineage_on_the_same_server_starts_afresh() {
    let env = Env::redis();
    env.sm(&["init"]);
    for i in 0..3 {
        env.sm(&["set", ".n", &i.to_string()]);
    }
    // The server lost everything (no persistence); a new `init` is a new
    // state, not an old one gone back.
    env.server().cli(&["FLUSHALL"]);
    env.sm(&["init"]);
    env.sm(&["set", ".n", "7"]);
    assert_eq!(read(&env, ".n"), 7);
}

#[test]
fn the_revision_a_host_only_wrote_is_remembered_too() {
    let env = Env::redis();
    env.sm(&["init"]);
    assert_eq!(env.server().cli(&["COPY", STATE, OLD]), "1");
    // This host's only sight of the newer revision is its own commit.
    env.sm(&["set", ".phase", "\"only-written\""]);
    assert_eq!(env.server().cli(&["COPY", OLD, STATE, "REPLACE"]), "1");
    env.run("state-manager", &["set", ".phase", "\"x\""])
        .code(3)
        .stderr_has("went back");
}

#[test]
fn recovering_over_a_corrupt_state_keeps_the_revision_growing() {
    let env = Env::redis();
    env.sm(&["init"]);
    for i in 0..4 {
        env.sm(&["set", ".n", &i.to_string()]);
    }
    let seen = revision(&env);
    // Another tool breaks the document: it fails its checksum.
    let raw = env.server().cli(&["HGET", STATE, "doc"]);
    env.server()
        .cli(&["HSET", STATE, "doc", &raw.replace("\"n\"", "\"m\"")]);
    env.run("state-manager", &["recover"]).ok();
    // The backup recovered holds an older revision; the state's goes on
    // from the one replaced, so no host mistakes it for lost writes.
    assert!(revision(&env) > seen, "{} > {seen}", revision(&env));
    env.sm(&["set", ".n", "9"]);
}
