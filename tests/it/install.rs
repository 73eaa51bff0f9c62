//! scripts/install: the one documented command that puts the binaries, their
//! manual pages and their completions in place, creating every folder.

use std::process::Command;

use crate::harness::{Env, Run, bin_dir, repo_root};

fn install(env: &Env, args: &[&str]) -> Run {
    let home = env.path("home");
    let out = Command::new(repo_root().join("scripts/install"))
        .args(args)
        .env("HOME", &home)
        .env_remove("XDG_DATA_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("CARGO_INSTALL_ROOT")
        .env_remove("CARGO_HOME")
        .env("WFSTATE_BIN", bin_dir())
        .current_dir(env.root())
        .output()
        .expect("run scripts/install");
    Run::of(out)
}

// See: issue 15 — `install … ~/.local/bin/` failed when the folder did not exist.
#[test]
fn install_creates_every_folder_and_installs_binaries_pages_and_completions() {
    let env = Env::new();
    let root = env.path("deep/not/yet/there");
    install(&env, &["--no-build", "--root", root.to_str().unwrap()]).ok();
    for b in ["state-manager", "lock-manager", "error-recovery"] {
        let bin = root.join("bin").join(b);
        let out = Command::new(&bin).arg("--version").output().unwrap();
        assert!(out.status.success(), "{} --version", bin.display());
        assert!(root.join("share/man/man1").join(format!("{b}.1")).is_file());
        let bash = root.join("share/bash-completion/completions").join(b);
        let text = std::fs::read_to_string(&bash).unwrap();
        assert!(text.contains("complete") && text.contains(b), "{text}");
        assert!(
            root.join("share/zsh/site-functions")
                .join(format!("_{b}"))
                .is_file()
        );
        assert!(
            root.join("share/fish/vendor_completions.d")
                .join(format!("{b}.fish"))
                .is_file()
        );
    }
    // One page per subcommand, as `man state-manager-set` expects.
    assert!(root.join("share/man/man1/state-manager-set.1").is_file());
    assert!(root.join("share/man/man1/lock-manager-run.1").is_file());
    // The install itself leaves nothing in the folder it ran from.
    let mut left: Vec<String> = std::fs::read_dir(env.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["deep"]);
}

#[test]
fn install_without_root_uses_the_cargo_root_and_the_users_data_folders() {
    let env = Env::new();
    let home = env.path("home");
    std::fs::create_dir(&home).unwrap();
    install(&env, &["--no-build"]).ok();
    assert!(home.join(".cargo/bin/lock-manager").is_file());
    assert!(home.join(".cargo/share/man/man1/lock-manager.1").is_file());
    assert!(
        home.join(".local/share/bash-completion/completions/lock-manager")
            .is_file()
    );
    assert!(
        home.join(".config/fish/completions/lock-manager.fish")
            .is_file()
    );
}

#[test]
fn install_names_a_missing_build_and_an_unknown_argument() {
    let env = Env::new();
    let out = Command::new(repo_root().join("scripts/install"))
        .args(["--no-build", "--root"])
        .arg(env.path("r"))
        .env("HOME", env.path("home"))
        .env("WFSTATE_BIN", env.path("nothing-built-here"))
        .output()
        .unwrap();
    let run = Run::of(out).code(5).stderr_has("cargo build --release");
    assert!(!env.path("r/share").exists(), "{}", run.stderr);
    install(&env, &["--frobnicate"])
        .code(1)
        .stderr_has("--frobnicate");
}
