//! lib/*.sh in real bash against the real binaries: both ways of use
//! (executed and sourced), the function API, clean sourcing, and the defects
//! of the replaced shell library as regression tests.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use serde_json::json;

use crate::harness::{Env, Run, bin_dir, repo_root};

/// A project folder holding a copy of lib/, as a user would vendor it.
struct Project {
    env: Env,
}

impl Project {
    fn new() -> Project {
        let env = Env::new();
        let lib = env.path("lib");
        fs::create_dir(&lib).unwrap();
        for f in [
            "common.sh",
            "state-manager.sh",
            "lock-manager.sh",
            "error-recovery.sh",
        ] {
            fs::copy(repo_root().join("lib").join(f), lib.join(f)).unwrap();
        }
        Project { env }
    }

    /// Runs `script` in bash with the shims' environment (no STATE_FILE: the
    /// shims default it to <project>/.workflow-state.json).
    fn bash(&self, script: &str) -> Run {
        let mut c = Command::new("bash");
        self.env.clean_env(&mut c);
        c.env_remove("STATE_FILE")
            .env("WFSTATE_BIN", bin_dir())
            .args(["-c", script]);
        Run::of(c.output().unwrap())
    }

    fn state_file(&self) -> PathBuf {
        self.env.state_file()
    }
}

const SOURCE_ALL: &str =
    "source lib/state-manager.sh; source lib/lock-manager.sh; source lib/error-recovery.sh";

#[test]
fn exit_code_variables_equal_the_binaries_table() {
    let p = Project::new();
    let mut script = String::from("source lib/common.sh;");
    for code in wfstate::Code::ALL {
        script.push_str(&format!(
            " echo {n}=$EXIT_{n}:${{ERROR_CODES[{n}]}};",
            n = code.name()
        ));
    }
    let out = p.bash(&script).ok().stdout;
    let want: String = wfstate::Code::ALL
        .iter()
        .map(|c| format!("{}={}:{}\n", c.name(), c.as_i32(), c.as_i32()))
        .collect();
    assert_eq!(out, want);
    // Read-only, as the replaced library's were.
    p.bash("source lib/common.sh; EXIT_SUCCESS=5").code(1);
}

#[test]
fn sourcing_is_clean_and_idempotent() {
    let p = Project::new();
    let script = format!(
        "set +euo pipefail; trap 'echo mine' USR1; before=$(set +o; trap -p); {SOURCE_ALL}; {SOURCE_ALL}; \
         after=$(set +o; trap -p); [[ \"$before\" == \"$after\" ]] || {{ echo changed; exit 9; }}; \
         jobs -p | grep -q . && exit 8; type lock_state read_state write_state retry_with_backoff >/dev/null"
    );
    let r = p.bash(&script).ok();
    assert_eq!(r.stdout, "");
    assert_eq!(r.stderr, "");
}

#[test]
fn a_missing_binary_is_exit_5_naming_the_install_command() {
    let p = Project::new();
    let mut c = Command::new("bash");
    p.env.clean_env(&mut c);
    let r = Run::of(
        c.env("WFSTATE_BIN", "/nonexistent")
            .env("PATH", "/usr/bin:/bin")
            .args(["-c", "source lib/state-manager.sh; init_state_manager"])
            .output()
            .unwrap(),
    );
    r.code(5).stderr_has("cargo build --release");
}

#[test]
fn state_file_defaults_to_the_folder_holding_lib() {
    let p = Project::new();
    p.bash("source lib/state-manager.sh; init_state_manager")
        .ok();
    assert!(p.state_file().exists());
}

#[test]
fn executed_state_manager_shim_passes_arguments_and_exit_codes() {
    let p = Project::new();
    p.bash("./lib/state-manager.sh init").ok();
    assert_eq!(
        p.bash("./lib/state-manager.sh read .phase --raw")
            .ok()
            .stdout,
        "pre-init\n"
    );
    p.bash("./lib/state-manager.sh set .phase 5").code(4);
}

#[test]
fn state_functions_read_write_backup_validate_recover() {
    let p = Project::new();
    let r = p.bash(
        r#"source lib/state-manager.sh
        init_state_manager || exit 11
        doc=$(read_state) || exit 12
        doc=${doc/\"pre-init\"/\"implementation\"}
        write_state "$doc" handoff || exit 13
        read_state out.json || exit 14
        grep -q implementation out.json || exit 15
        backup_state checkpoint-a >/dev/null || exit 16
        validate_state >/dev/null || exit 17
        write_state '{"phase": 1}'; echo "bad=$?"
        recover_state handoff >/dev/null || exit 18
        echo ok"#,
    );
    let r = r.ok();
    assert!(
        r.stdout.contains("bad=4") && r.stdout.ends_with("ok\n"),
        "{}",
        r.stdout
    );
    // Recovering the backup taken by the handoff write restores the pre-init document.
    assert_eq!(p.env.state()["phase"], "pre-init");
}

#[test]
fn retry_with_backoff_returns_the_last_failure_not_zero() {
    // The replaced library returned 0 after every attempt had failed.
    let p = Project::new();
    let r = p.bash(
        r#"source lib/error-recovery.sh
        n=0; flaky() { n=$((n+1)); echo "attempt $WFSTATE_ATTEMPT" >>attempts; return 3; }
        retry_with_backoff flaky 4 0.01; echo "rc=$? n=$n""#,
    );
    assert_eq!(r.ok().stdout, "rc=3 n=4\n");
    assert_eq!(
        p.env.bytes("attempts"),
        b"attempt 1\nattempt 2\nattempt 3\nattempt 4\n"
    );
}

#[test]
fn retry_with_backoff_succeeds_late_and_passes_arguments() {
    let p = Project::new();
    let r = p.bash(
        r#"source lib/error-recovery.sh
        n=0; late() { n=$((n+1)); [[ "$1 $2" == "a b c" ]] || return 9; ((n >= 3)); }
        retry_with_backoff late 5 0.01 a "b c"; echo "rc=$? n=$n""#,
    );
    assert_eq!(r.ok().stdout, "rc=0 n=3\n");
}

#[test]
fn retry_with_backoff_does_not_retry_codes_retrying_cannot_help() {
    let p = Project::new();
    for code in [4, 6, 7] {
        let r = p.bash(&format!(
            "source lib/error-recovery.sh; n=0; f() {{ n=$((n+1)); return {code}; }}; retry_with_backoff f 5 0.01; echo \"rc=$? n=$n\""
        ));
        assert_eq!(r.ok().stdout, format!("rc={code} n=1\n"));
    }
    p.bash("source lib/error-recovery.sh; retry_with_backoff true x")
        .code(4)
        .stderr_has("bad MAX");
}

#[test]
fn lock_read_write_unlock_pattern_works_without_deadlock() {
    // The replaced library's locks were not re-entrant, so this deadlocked.
    let p = Project::new();
    let r = p.bash(
        r#"source lib/state-manager.sh
        init_state_manager || exit 11
        lock_state 5 || exit 12
        doc=$(read_state) || exit 13
        write_state "${doc/\"pre-init\"/\"locked-write\"}" || exit 14
        ./lib/state-manager.sh set .lastActivation '"inside"' || exit 15
        unlock_state || exit 16
        ./lib/lock-manager.sh check state"#,
    );
    assert_eq!(r.code(1).stdout, "unlocked\n");
    assert_eq!(p.env.state()["phase"], "locked-write");
    assert_eq!(p.env.state()["lastActivation"], "inside");
}

#[test]
fn executed_acquire_belongs_to_the_calling_script() {
    // The replaced library recorded its own short-lived pid and released on exit.
    let p = Project::new();
    let r = p.bash("./lib/lock-manager.sh acquire build 5 || exit 11; ./lib/lock-manager.sh check build; echo \"me=$$\"");
    let out = r.ok().stdout;
    let me = out.lines().last().unwrap().trim_start_matches("me=");
    assert_eq!(
        out.lines().next().unwrap(),
        format!("locked:exclusive:{me}")
    );
}

#[test]
fn lock_held_by_the_shell_excludes_other_writers() {
    let p = Project::new();
    let r = p.bash(
        r#"source lib/state-manager.sh
        init_state_manager; lock_state 5 || exit 11
        ( LOCK_TIMEOUT=0.3 ./lib/state-manager.sh --owner 1 set .phase '"other"' ); echo "other=$?"
        unlock_state"#,
    );
    assert!(r.ok().stdout.contains("other=2"));
    assert_eq!(p.env.state()["phase"], "pre-init");
}

#[test]
fn metadata_arguments_arrive_intact() {
    // The replaced library corrupted metadata through a quoting bug.
    let p = Project::new();
    let meta = r#"{"note":"it's \"quoted\" $HOME `x` \\ ünï","n":[1,2]}"#;
    let r = p.bash(&format!(
        "source lib/lock-manager.sh; acquire_lock meta 5 exclusive '{}' || exit 11; ./lib/lock-manager.sh list json",
        meta.replace('\'', r"'\''")
    ));
    let list = r.ok().json();
    let want: serde_json::Value = serde_json::from_str(meta).unwrap();
    let got = &list
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "meta")
        .unwrap()["holders"][0]["metadata"];
    assert_eq!(got, &want);
}

#[test]
fn checkpoint_functions_set_and_use_checkpoint_id() {
    let p = Project::new();
    let r = p.bash(
        r#"source lib/state-manager.sh; source lib/error-recovery.sh
        init_state_manager
        create_checkpoint before-change impl '{"by":"test"}' >/dev/null || exit 11
        [[ -n "$CHECKPOINT_ID" ]] || exit 12
        ./lib/state-manager.sh set .phase '"changed"'
        restore_checkpoint >/dev/null || exit 13
        echo "$CHECKPOINT_ID""#,
    );
    assert!(r.ok().stdout.starts_with("checkpoint-"));
    assert_eq!(p.env.state()["phase"], "pre-init");
}

#[test]
fn degraded_mode_functions() {
    let p = Project::new();
    let r = p.bash(
        r#"source lib/error-recovery.sh; source lib/state-manager.sh
        init_state_manager
        is_degraded_mode; echo "before=$?"
        enable_degraded_mode "disk slow" '["backups"]' >/dev/null
        is_degraded_mode; echo "during=$?"
        disable_degraded_mode >/dev/null
        is_degraded_mode; echo "after=$?""#,
    );
    assert_eq!(r.ok().stdout, "before=1\nduring=0\nafter=1\n");
    assert_eq!(p.env.state()["degradedMode"]["enabled"], json!(false));
}

#[test]
fn handle_error_names_the_code_and_returns_it() {
    let p = Project::new();
    let r = p.bash("source lib/error-recovery.sh; handle_error 2 'lock busy' deploy; echo rc=$?");
    let r = r.ok();
    assert_eq!(r.stdout, "rc=2\n");
    assert!(
        r.stderr
            .contains("ERROR [2/LOCK_TIMEOUT] in deploy: lock busy"),
        "{}",
        r.stderr
    );
}
