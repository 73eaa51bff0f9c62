//! `--debug` / `DEBUG=1`: lines on stderr saying what a call does and how
//! long it takes — the paths it uses, lock waits, timings. Off by default,
//! and then costs one relaxed atomic load per call site.
//!
//! Any module may call [`log`]; the line is built only when debugging is on.

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

static ON: AtomicBool = AtomicBool::new(false);
static TOOL: OnceLock<(&'static str, Instant)> = OnceLock::new();

/// Turns debug lines on for this process; `tool` prefixes them.
pub fn enable(tool: &'static str) {
    let _ = TOOL.set((tool, Instant::now()));
    ON.store(true, Ordering::Relaxed);
}

/// Whether debug lines are on.
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Prints `tool: debug: +MS: LINE` on stderr when debugging is on; `line`
/// is only called then.
pub fn log(line: impl FnOnce() -> String) {
    if !enabled() {
        return;
    }
    let (tool, start) = TOOL.get().copied().unwrap_or(("wfstate", Instant::now()));
    let ms = crate::audit::event::ms(start.elapsed());
    // A debug line never changes the outcome: a closed or full stderr is ignored.
    let _ = writeln!(std::io::stderr(), "{tool}: debug: +{ms:.3}ms: {}", line());
}

/// Whether `DEBUG` in the environment asks for debug lines (`1` or `true`).
pub fn from_env() -> bool {
    std::env::var_os("DEBUG").is_some_and(|v| v == "1" || v == "true")
}
