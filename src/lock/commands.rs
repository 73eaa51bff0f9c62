//! What the `lock-manager` subcommands share below the command layer: the
//! acquire request built from typed arguments, the owner a call acts for,
//! and the audited acquire (one `acquire` event, one `takeover` event per
//! stale holder replaced) that both `acquire` and `run` make. Nothing here
//! prints; `crate::cmd::lock` renders.
//!
//! Refusals (bad name, bad metadata, hierarchy) are audited like any other
//! acquire, with exit code 4, and write nothing under `.locks/`.

use std::time::Duration;

use serde_json::{Value, json};

use super::manager::{self, Acquired, Attend, Request, WaitLog};
use super::name;
use super::process::{self, Identity};
use super::record::LockType;
use crate::audit::Recorder;
use crate::config::{self, Config};
use crate::error::{Error, Result};

/// The binary's name, as audit events and error lines carry it.
pub const TOOL: &str = "lock-manager";

/// The arguments of `acquire`, as typed.
#[derive(Clone, Debug, Default)]
pub struct AcquireArgs {
    pub name: String,
    /// Seconds, fractions allowed; `None`: the configured LOCK_TIMEOUT.
    pub timeout: Option<String>,
    /// `shared` or `exclusive`; `None`: exclusive.
    pub kind: Option<String>,
    /// A JSON value (an object, preferably) stored with the holder.
    pub metadata: Option<String>,
    /// `--owner PID`; `None`: LOCK_OWNER_PID, else the parent process.
    pub owner: Option<u32>,
    /// How long the hold lasts at most, such as `30`, `10m`.
    pub ttl: Option<String>,
    /// `--timeout S`, the flag twin of TIMEOUT (both given: exit 4).
    pub flag_timeout: Option<String>,
    /// `--nonblock`: try once, the same as a timeout of 0.
    pub nonblock: bool,
    /// `--shared` / `--exclusive`, the flag twin of TYPE (both given and
    /// different: exit 4).
    pub flag_kind: Option<LockType>,
}

/// The usage line the refusals of a misplaced argument quote.
const ACQUIRE_ORDER: &str = "the order is acquire NAME [TIMEOUT] [TYPE] [METADATA]";

/// The timeout an `acquire` asks for, from TIMEOUT, `--timeout` or
/// `--nonblock`: at most one of them (exit 4 otherwise), else `None`.
fn chosen_timeout(a: &AcquireArgs) -> Result<Option<Duration>> {
    let given: Vec<&str> = [
        a.timeout.as_ref().map(|_| "TIMEOUT"),
        a.flag_timeout.as_ref().map(|_| "--timeout"),
        a.nonblock.then_some("--nonblock"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if given.len() > 1 {
        return Err(Error::validation(format!(
            "the timeout is given twice: {}",
            given.join(" and ")
        ))
        .hint("give one of them"));
    }
    if a.nonblock {
        return Ok(Some(Duration::ZERO));
    }
    let Some(text) = a.timeout.as_deref().or(a.flag_timeout.as_deref()) else {
        return Ok(None);
    };
    match config::parse_duration(text, "timeout") {
        Ok(d) => Ok(Some(d)),
        Err(e) if a.timeout.is_some() => Err(misplaced(a, text).unwrap_or(e)),
        Err(e) => Err(e),
    }
}

/// Why a TIMEOUT that is not a duration is in that place, when it is plain:
/// NAME and TIMEOUT swapped (`acquire 10 build`: a name that reads as a
/// duration, then a valid name), or a TYPE given without a TIMEOUT.
fn misplaced(a: &AcquireArgs, timeout: &str) -> Option<Error> {
    let name_is_duration = config::parse_duration(&a.name, "timeout").is_ok();
    if name_is_duration && LockType::parse(timeout).is_ok() {
        // `acquire 5 shared`: the name is missing, not misplaced.
        return Some(
            Error::validation(format!(
                "'{}' looks like a timeout, not a lock name: {ACQUIRE_ORDER}",
                a.name
            ))
            .hint(format!(
                "give the lock's name first: 'acquire NAME {} {timeout}'",
                a.name
            )),
        );
    }
    if name_is_duration && name::validate(timeout).is_ok() {
        return Some(
            Error::validation(format!(
                "'{}' looks like a timeout, not a lock name: {ACQUIRE_ORDER}",
                a.name
            ))
            .hint(format!("did you mean 'acquire {timeout} {}'?", a.name)),
        );
    }
    let kind = LockType::parse(timeout).ok()?;
    Some(
        Error::validation(format!(
            "'{timeout}' is a lock type, not a timeout: {ACQUIRE_ORDER}"
        ))
        .hint(format!(
            "give a timeout first ('acquire {} 30 {timeout}') or use --{}",
            a.name,
            kind.as_str()
        )),
    )
}

/// The type an `acquire` asks for, from TYPE or `--shared`/`--exclusive`
/// (exit 4 when they disagree); exclusive when neither is given.
fn chosen_kind(a: &AcquireArgs) -> Result<LockType> {
    let positional = a.kind.as_deref().map(LockType::parse).transpose()?;
    match (positional, a.flag_kind) {
        (Some(p), Some(f)) if p != f => Err(Error::validation(format!(
            "the lock type is given twice: TYPE '{}' and --{}",
            p.as_str(),
            f.as_str()
        ))
        .hint("give one of them")),
        (p, f) => Ok(p.or(f).unwrap_or(LockType::Exclusive)),
    }
}

/// Writes `TOOL: LINE` on stderr in one write(2), so that the lines of
/// processes sharing one stderr (recipes under `make -j`) never
/// interleave. TOOL is this binary's name (a `state-manager` waiting for
/// the `state` lock says so as itself). For warnings and progress, never
/// for data.
pub fn say(line: &str) {
    use std::io::Write;
    let arg0 = std::env::args_os().next();
    let tool = arg0
        .as_deref()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map_or(TOOL.into(), |f| f.to_string_lossy());
    let text = format!("{tool}: {line}\n");
    let _ = std::io::stderr().write_all(text.as_bytes());
}

/// Builds the request from typed arguments; every refusal is exit 4.
/// `locks` is the registry the owner is looked up in ([`owner_for`]).
pub fn request(
    cfg: &Config,
    locks: &dyn crate::backend::LockRegistry,
    a: &AcquireArgs,
) -> Result<Request> {
    name::validate(&a.name)?;
    let timeout = chosen_timeout(a)?.unwrap_or(cfg.lock_timeout);
    let kind = chosen_kind(a)?;
    let metadata = a.metadata.as_deref().map(parse_metadata).transpose()?;
    let ttl = a
        .ttl
        .as_deref()
        .map(|t| config::parse_duration(t, "--ttl").map(|d| d.as_secs_f64()))
        .transpose()?;
    Ok(Request {
        name: a.name.clone(),
        kind,
        owner: owner_for(locks, &a.name, a.owner)?,
        ttl,
        metadata,
        timeout,
    })
}

/// The owner of this invocation for lock `name`: `--owner`, else
/// `LOCK_OWNER_PID`, else the parent process — unless this very process
/// already holds `name`. That happens when a shell runs `lock-manager` as the
/// last command of `bash -c '...'`: bash then execs it in place, so it has
/// the shell's pid and start time, and its parent is not the shell.
/// The record is read from `locks`, the backend's registry.
pub fn owner_for(
    locks: &dyn crate::backend::LockRegistry,
    name: &str,
    flag: Option<u32>,
) -> Result<Identity> {
    let implicit =
        flag.is_none() && std::env::var_os("LOCK_OWNER_PID").is_none_or(|v| v.is_empty());
    if implicit
        && let Ok(Some(rec)) = locks.read(name)
        && !rec.holders.is_empty()
    {
        let me = Identity::current();
        if rec.holder(&me).is_some() {
            return Ok(me);
        }
    }
    process::resolve_owner(flag)
}

/// Why the owner `resolve_owner` chose by itself (no `--owner`, no
/// `LOCK_OWNER_PID`) is unlikely to be the one meant, if it is: a parent
/// that is not a shell — make, xargs, timeout, a script interpreter — whose
/// every child would share one re-entrant hold (under `make -j2`, two
/// recipes inside the same exclusive lock at once). A warning, not a
/// refusal. Costs one read of `/proc/PID/comm`, and none when the owner was
/// given or is this very process (a shell that exec'd us in place).
pub fn owner_note(a: &AcquireArgs, owner: &Identity) -> Option<String> {
    let given =
        a.owner.is_some() || std::env::var_os("LOCK_OWNER_PID").is_some_and(|v| !v.is_empty());
    if given || owner.pid == std::process::id() {
        return None;
    }
    let comm = process::comm(owner.pid)?;
    if process::is_shell(&comm) {
        return None;
    }
    Some(format!(
        "the owner of lock '{}' is pid {} ({comm}), which is not a shell: every command it starts shares this hold — use 'lock-manager run {} -- CMD' to hold it for one command, or --owner PID (LOCK_OWNER_PID) to name the shell that releases it",
        a.name, owner.pid, a.name
    ))
}

/// Parses METADATA: any JSON value nested at most
/// [`MAX_DEPTH`](crate::state::document::MAX_DEPTH) deep (exit 4 otherwise),
/// stored as given.
pub fn parse_metadata(text: &str) -> Result<Value> {
    let value = serde_json::from_str(text).map_err(|e| {
        Error::validation("bad metadata: it is not JSON")
            .because(e)
            .hint(r#"pass a JSON object such as '{"step":"build"}' (quote it for the shell)"#)
    })?;
    crate::state::document::check_depth(&value, 0, "the lock metadata")?;
    Ok(value)
}

/// Acquires with one `acquire` audit event (and one `takeover` event per
/// stale holder replaced). `build` makes the request; its errors are
/// audited as refusals. `grant` is the registry's acquire
/// ([`manager::acquire`] for the file backend).
pub fn audited_acquire(
    cfg: &Config,
    target: &str,
    attend: Attend,
    build: impl FnOnce() -> Result<Request>,
    grant: impl FnOnce(&Request, &mut WaitLog) -> Result<Acquired>,
) -> (Result<Acquired>, WaitLog, Option<Request>) {
    let rec = Recorder::start(cfg, TOOL, "acquire", target);
    let mut log = WaitLog::attended(attend);
    let (req, result) = match build() {
        Ok(req) => {
            let result = grant(&req, &mut log);
            (Some(req), result)
        }
        Err(e) => (None, Err(e)),
    };
    let mut detail = json!({
        "lock_type": req.as_ref().map(|r| r.kind.as_str()),
        "wait_ms": log.wait_ms(),
        "owner_pid": req.as_ref().map(|r| r.owner.pid),
        "holders_while_waiting": log.holders,
    });
    if let (Ok(got), Some(req)) = (&result, &req) {
        detail["already_held"] = json!(got.already_held);
        detail["upgraded"] = json!(got.upgraded);
        for t in &got.takeovers {
            Recorder::start(cfg, TOOL, "takeover", target).finish_with(
                0,
                "ok",
                json!({"stale_pid": t.stale_pid, "owner_pid": req.owner.pid, "reason": t.reason}),
            );
        }
    }
    match (&result, super::wait::interrupted()) {
        // Ended by a signal: the process ends by it too (128+N to its shell).
        (Err(e), Some(sig)) => {
            detail["error"] = json!(e.summary());
            rec.finish_with(128 + sig, "interrupted", detail);
        }
        _ => rec.finish(&result, detail),
    }
    (result, log, req)
}

/// Acquires `name` for this very process (the holder of `run`), audited.
pub(crate) fn acquire_for_self(
    cfg: &Config,
    name: &str,
    kind: LockType,
    timeout: Duration,
    attend: Attend,
) -> (Result<Acquired>, WaitLog) {
    let (result, log, _) = audited_acquire(
        cfg,
        name,
        attend,
        || {
            name::validate(name)?;
            Ok(Request {
                name: name.to_string(),
                kind,
                owner: Identity::current(),
                ttl: None,
                metadata: None,
                timeout,
            })
        },
        |req, log| manager::acquire(cfg, req, log),
    );
    (result, log)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(name: &str, timeout: &str) -> AcquireArgs {
        AcquireArgs {
            name: name.into(),
            timeout: Some(timeout.into()),
            ..AcquireArgs::default()
        }
    }

    fn refusal(name: &str, timeout: &str) -> String {
        let e = chosen_timeout(&args(name, timeout)).unwrap_err();
        assert_eq!(e.code(), crate::exit::Code::ValidationFailed);
        e.to_string()
    }

    #[test]
    fn swapped_name_and_timeout_are_named_as_such() {
        for (name, timeout) in [("10", "build"), ("0.5", "state"), ("2m", "x.y-z")] {
            let text = refusal(name, timeout);
            assert!(text.contains("looks like a timeout"), "{text}");
            assert!(
                text.contains(&format!("'acquire {timeout} {name}'")),
                "{text}"
            );
        }
        // A missing name is not a swap.
        let text = refusal("5", "shared");
        assert!(text.contains("give the lock's name first"), "{text}");
        // A type where the timeout goes.
        let text = refusal("build", "exclusive");
        assert!(text.contains("is a lock type, not a timeout"), "{text}");
        // Neither: the plain message about a bad timeout.
        let text = refusal("build", "soon!");
        assert!(text.contains("bad timeout 'soon!'"), "{text}");
        // A name of digits with a real timeout is fine.
        assert!(chosen_timeout(&args("10", "20")).is_ok());
    }

    #[test]
    fn a_timeout_or_type_in_two_spellings_is_refused() {
        let mut a = args("x", "5");
        a.nonblock = true;
        assert!(chosen_timeout(&a).is_err());
        a.timeout = None;
        assert_eq!(chosen_timeout(&a).unwrap(), Some(Duration::ZERO));
        a.flag_timeout = Some("1".into());
        assert!(chosen_timeout(&a).is_err());
        let mut a = args("x", "5");
        a.kind = Some("shared".into());
        a.flag_kind = Some(LockType::Exclusive);
        assert!(chosen_kind(&a).is_err());
        a.flag_kind = Some(LockType::Shared);
        assert_eq!(chosen_kind(&a).unwrap(), LockType::Shared);
        a.kind = None;
        a.flag_kind = None;
        assert_eq!(chosen_kind(&a).unwrap(), LockType::Exclusive);
    }
}
