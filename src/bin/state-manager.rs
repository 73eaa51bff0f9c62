//! `state-manager`: the whole program is `wfstate::cmd::state_manager`.

fn main() -> std::process::ExitCode {
    wfstate::cmd::state_manager::main()
}
