//! `error-recovery`: the whole program is `wfstate::cmd::error_recovery`.

fn main() -> std::process::ExitCode {
    wfstate::cmd::error_recovery::main()
}
