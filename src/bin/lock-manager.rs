//! `lock-manager`: the whole program is `wfstate::cmd::lock_manager`.

fn main() -> std::process::ExitCode {
    wfstate::cmd::lock_manager::main()
}
