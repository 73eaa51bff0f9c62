//! `state-manager`: the whole program is `wfstate::cmd::state_manager`.
//!
//! No std `main`: `wfstate::cmd::start` says what std's start-up did that is
//! kept and what it cost.
#![no_main]

/// The C entry point.
#[unsafe(no_mangle)]
pub extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    wfstate::cmd::start(wfstate::cmd::state_manager::main)
}
