//! The storage seam: everything the commands keep — the state document and
//! its backups and signals, lock records, checkpoints, the audit log — is
//! reached through one [`Backend`], so a second backend changes no command.
//!
//! A backend is four stores, each a trait of its own file:
//!
//! - [`state::StateStore`]: the document, its transactions, backups, signals.
//! - [`locks::LockRegistry`]: named shared/exclusive locks and their holders.
//! - [`checkpoints::CheckpointStore`]: checkpoints: create, list, verify,
//!   restore, remove.
//! - [`audit::AuditSink`]: appending audit events and reading them back.
//!
//! [`FileBackend`] is the default: the state file and the folders beside it
//! (`.state-backups/`, `.locks/`, `.checkpoints/`, `.signals/`, the audit
//! file), as docs/architecture.md describes. [`redis::RedisBackend`] keeps
//! the state, backups, checkpoints and audit on a Redis server
//! (docs/redis.md). [`open`] chooses the backend from `--backend` /
//! `WFSTATE_BACKEND`.

pub mod audit;
pub mod checkpoints;
pub mod locks;
#[cfg(feature = "redis")]
pub mod redis;
pub mod state;

use crate::config::Config;
use crate::error::{Error, Result};

pub use audit::AuditSink;
pub use checkpoints::CheckpointStore;
pub use locks::LockRegistry;
pub use state::StateStore;

/// Who asks, for the operations that take the `state` lock.
#[derive(Clone, Copy, Debug, Default)]
pub struct Access<'a> {
    /// The lock owner (`--owner`, `LOCK_OWNER_PID`, the calling shell).
    pub owner: Option<&'a crate::lock::Identity>,
    /// Backup retention for the state commits the operation makes.
    pub retention: crate::state::backup::Retention,
}

/// One storage engine: where the state, locks, checkpoints and audit live.
pub trait Backend {
    /// The engine's name as `status` and `health` print it: `file`.
    fn kind(&self) -> &'static str;
    /// Where it keeps things, for people: the state file's path, or the
    /// server (password masked) and namespace.
    fn location(&self) -> String;
    /// The namespace (`WFSTATE_NAMESPACE`) of a shared backend.
    fn namespace(&self) -> Option<&str> {
        None
    }
    /// The Redis backend's own view (health, list-states, migrate-backend).
    #[cfg(feature = "redis")]
    fn redis(&self) -> Option<&redis::RedisBackend> {
        None
    }
    fn state(&self) -> &dyn StateStore;
    fn locks(&self) -> &dyn LockRegistry;
    fn checkpoints(&self) -> &dyn CheckpointStore;
    fn audit(&self) -> &dyn AuditSink;
}

/// The file backend: the state file and the folders beside it.
pub struct FileBackend {
    pub(crate) cfg: Config,
}

impl FileBackend {
    pub fn new(cfg: &Config) -> FileBackend {
        FileBackend { cfg: cfg.clone() }
    }
}

impl Backend for FileBackend {
    fn kind(&self) -> &'static str {
        "file"
    }
    fn location(&self) -> String {
        self.cfg.state_file.display().to_string()
    }
    fn state(&self) -> &dyn StateStore {
        self
    }
    fn locks(&self) -> &dyn LockRegistry {
        self
    }
    fn checkpoints(&self) -> &dyn CheckpointStore {
        self
    }
    fn audit(&self) -> &dyn AuditSink {
        self
    }
}

/// The backend `spec` names (`--backend` / `WFSTATE_BACKEND`; empty or
/// `file` is the file backend). Exit 5 for an engine this build lacks, 4 for
/// a spec that names no engine.
pub fn open(cfg: &Config, spec: Option<&str>) -> Result<Box<dyn Backend>> {
    open_as(cfg, spec, true)
}

/// A second backend, beside the one this process's audit events go to
/// (`migrate-backend --to`).
pub fn open_other(cfg: &Config, spec: &str) -> Result<Box<dyn Backend>> {
    open_as(cfg, Some(spec), false)
}

fn open_as(cfg: &Config, spec: Option<&str>, audit_here: bool) -> Result<Box<dyn Backend>> {
    match spec.map(str::trim).filter(|s| !s.is_empty()) {
        None | Some("file") => Ok(Box::new(FileBackend::new(cfg))),
        Some(s)
            if s.starts_with("redis://")
                || s.starts_with("rediss://")
                || s.starts_with("redis+unix://") =>
        {
            open_redis(cfg, s, audit_here)
        }
        Some(s) => Err(Error::validation(format!("unknown backend '{s}'"))
            .hint("use file, redis://HOST:PORT/DB or redis+unix:///PATH?db=N")),
    }
}

#[cfg(feature = "redis")]
fn open_redis(cfg: &Config, url: &str, audit_here: bool) -> Result<Box<dyn Backend>> {
    let backend = redis::open(cfg, url)?;
    if audit_here {
        backend.install_audit_sink();
    }
    Ok(Box::new(backend))
}

#[cfg(not(feature = "redis"))]
fn open_redis(_cfg: &Config, url: &str, _audit_here: bool) -> Result<Box<dyn Backend>> {
    Err(Error::new(
        crate::error::Kind::DependencyMissing,
        format!("backend {}: this build has no Redis backend", mask_url(url)),
    )
    .hint("build with the default features (cargo install --path .), or leave WFSTATE_BACKEND unset to use the state file"))
}

/// `url` with any password masked, for messages and audit events: between
/// `:` and `@` after the scheme, and a `pass=` / `password=` query
/// parameter (`redis+unix://…?pass=`).
pub fn mask_url(url: &str) -> String {
    let (url, query) = match url.split_once('?') {
        Some((u, q)) => (u, Some(q)),
        None => (url, None),
    };
    let masked = mask_authority(url);
    match query {
        None => masked,
        Some(q) => {
            let q: Vec<String> = q
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k == "pass" || k == "password" => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{masked}?{}", q.join("&"))
        }
    }
}

fn mask_authority(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            let masked = if rest[..at].contains(':') {
                format!("{user}:***")
            } else {
                // `redis://secret@host`: the one part is the password.
                "***".to_string()
            };
            format!("{scheme}://{masked}{}", &rest[at..])
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            mask_url("redis://u:s3cret@h:6379/0"),
            "redis://u:***@h:6379/0"
        );
        assert_eq!(mask_url("redis://s3cret@h:1/2"), "redis://***@h:1/2");
        assert_eq!(mask_url("redis://:p@h"), "redis://:***@h");
        assert_eq!(mask_url("redis://h:6379/0"), "redis://h:6379/0");
        assert_eq!(
            mask_url("redis+unix:///tmp/r.sock?db=1"),
            "redis+unix:///tmp/r.sock?db=1"
        );
        assert_eq!(
            mask_url("redis+unix:///tmp/r.sock?db=1&pass=s3cret"),
            "redis+unix:///tmp/r.sock?db=1&pass=***"
        );
    }
}
