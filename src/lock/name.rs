//! Lock names and the hierarchy that orders them.
//!
//! A name is 1–128 of `[A-Za-z0-9._-]`, not starting with `.`, so it is always
//! a plain file name inside `.locks/`. The hierarchy (state=1, config=2,
//! signals=3, backup=4, temp=5, user=10, others 999) prevents deadlocks: an
//! owner holding a lock may not ask for one with a smaller number.

use crate::error::{Error, Result};

/// Checks a lock name; bad names are exit 4.
pub fn validate(name: &str) -> Result<()> {
    validate_as("lock name", name)
}

/// The one name rule, for every name that becomes a file or folder name
/// (lock names, signal names, checkpoint operations); `what` names the input
/// in the error: `bad WHAT 'NAME': why — what to use`.
pub fn validate_as(what: &str, name: &str) -> Result<()> {
    let bad = |why: &str| {
        Error::validation(format!("bad {what} '{}'", name.escape_debug()))
            .because(why)
            .hint("use 1-128 letters, digits, '.', '_' or '-', not starting with '.'")
    };
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if name.len() > 128 {
        return Err(bad("it is longer than 128 characters"));
    }
    if name.starts_with('.') {
        return Err(bad("it starts with '.'"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(bad(&format!("it contains {c:?}")));
    }
    Ok(())
}

/// The names the hierarchy ranks, with their priority; any other name is
/// [`OTHER`].
pub const RANKED: [(&str, u32); 6] = [
    ("state", 1),
    ("config", 2),
    ("signals", 3),
    ("backup", 4),
    ("temp", 5),
    ("user", 10),
];

/// The priority of a name [`RANKED`] does not list.
pub const OTHER: u32 = 999;

/// The refusal (exit 4) of a request for `wanted` by owner `pid`, which
/// holds `held`, a lock ranked after it: every backend and every
/// transaction says it in these words.
pub fn hierarchy_error(pid: u32, held: &str, wanted: &str) -> Error {
    Error::validation(format!(
        "lock hierarchy: pid {pid} holds '{held}' (priority {}) and may not then request '{wanted}' (priority {})",
        priority(held),
        priority(wanted)
    ))
    .hint(format!(
        "take '{wanted}' before '{held}' (order: state, config, signals, backup, temp, user, others), or release '{held}' first"
    ))
}

/// The priority of a lock in the hierarchy: lower numbers are taken first.
pub fn priority(name: &str) -> u32 {
    RANKED
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(OTHER, |&(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["state", "a", "my-lock_1.x", &"x".repeat(128)] {
            assert!(validate(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".hidden",
            "a/b",
            "..",
            "a b",
            "a\0b",
            &"x".repeat(129),
            "é",
        ] {
            assert_eq!(
                validate(bad).unwrap_err().code(),
                crate::exit::Code::ValidationFailed,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn hierarchy() {
        assert!(priority("state") < priority("config"));
        assert!(priority("temp") < priority("user"));
        assert_eq!(priority("anything"), 999);
    }
}
