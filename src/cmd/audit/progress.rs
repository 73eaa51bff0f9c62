//! The progress line of the review commands over a big audit log:
//! `reading audit log: 45% (120.3 MB of 270.1 MB)` on stderr, redrawn in
//! place (`\r`) at most every [`EVERY`], erased when the scan ends so the
//! report starts on a clean line.
//!
//! Shown only to a person: stderr must be a terminal, the log (its rotated
//! files included) must hold at least [`MIN_BYTES`] — smaller logs are read
//! in well under a second — and the backend must be the file backend (the
//! only one whose size is known before reading). Never on stdout, never in
//! a pipe or a log file. The domain ([`crate::audit::scan`]) only says how
//! far it has read; this module decides what, if anything, to draw.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::audit::scan::{self, Progress};
use crate::cmd::Ctx;

/// Logs smaller than this are read without a progress line.
pub const MIN_BYTES: u64 = 16 << 20;

/// The shortest time between two redraws.
pub const EVERY: Duration = Duration::from_millis(100);

/// Draws the progress line on stderr.
pub struct Meter {
    last: Option<Instant>,
    shown: bool,
}

impl Meter {
    /// A meter when the log is worth one and someone watches stderr:
    /// see the module docs. `stdout_streams`: the command writes its report
    /// while it reads (`export` to stdout), so a terminal on stdout would
    /// get the line in the middle of the report — no meter then.
    pub fn for_review(ctx: &Ctx, stdout_streams: bool) -> Option<Meter> {
        let watched =
            std::io::stderr().is_terminal() && !(stdout_streams && std::io::stdout().is_terminal());
        (watched
            && ctx.backend.kind() == "file"
            && scan::log_bytes(&ctx.cfg.audit_log) >= MIN_BYTES)
            .then_some(Meter {
                last: None,
                shown: false,
            })
    }
}

/// `120.3 MB`.
fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// The line for `read` of `total` bytes.
pub fn line(read: u64, total: u64) -> String {
    let pct = (read.saturating_mul(100) / total.max(1)).min(100);
    format!(
        "reading audit log: {pct}% ({} of {})",
        mb(read.min(total)),
        mb(total)
    )
}

impl Progress for Meter {
    fn advance(&mut self, read: u64, total: u64) {
        if self.last.is_some_and(|t| t.elapsed() < EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        let mut err = std::io::stderr().lock();
        // `\r` back to the start, ESC[K clears what a longer line left.
        let _ = write!(err, "\r\x1b[K{}", line(read, total));
        let _ = err.flush();
        self.shown = true;
    }

    fn finish(&mut self) {
        if std::mem::take(&mut self.shown) {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_percent_and_megabytes_and_never_passes_100() {
        assert_eq!(
            line(120_300_000, 270_100_000),
            "reading audit log: 44% (120.3 MB of 270.1 MB)"
        );
        assert_eq!(line(0, 0), "reading audit log: 0% (0.0 MB of 0.0 MB)");
        // A log that grew while it was read.
        assert_eq!(
            line(30_000_000, 20_000_000),
            "reading audit log: 100% (20.0 MB of 20.0 MB)"
        );
    }
}
