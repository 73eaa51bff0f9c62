//! Kept for `state::diagnostics`, which formats milliseconds as the review
//! tables do; the tables themselves are in `crate::cmd::audit`. Name
//! [`crate::audit::event::ms_text`] directly and this module can go.

pub use super::event::ms_text as ms;
