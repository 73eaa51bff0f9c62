//! The Redis backend: the state, its backups, checkpoints and the audit log
//! on a Redis server, so that CI runners on several hosts share one state.
//!
//! Selected by `--backend` / `WFSTATE_BACKEND` = `redis://[user:pass@]host:port/db`
//! or `redis+unix:///path/redis.sock?db=N`; `WFSTATE_NAMESPACE` (default
//! `default`) names the pipeline. Every key lives under `wfstate:{NS}:` (the
//! braces keep one pipeline in one Redis Cluster slot), and none has a TTL:
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `state` | hash | `doc` (the bytes a state file would hold), `rev`, `lineage`, `sum` (SHA-256 of `doc`), `modified` (server µs), `last_txn`, `backup_seq` |
//! | `backups` | hash | backup name → the document it holds |
//! | `backups:seq`, `backups:made` | sorted sets | backup name → its SEQ / when it was made (server µs) |
//! | `corrupt` | hash | a document that did not parse, kept aside by `init`/`recover` |
//! | `checkpoints` | hash | checkpoint id → its JSON (metadata, state, signals, config) |
//! | `audit` | stream | one entry per event: `event` (JSON), `us` (server µs), `MAXLEN ~` trimmed |
//!
//! Every change is one Lua script that checks the revision it was computed
//! from, writes the document, keeps the version it replaces as a backup,
//! prunes backups and appends the audit event — one order for every host,
//! times from the server's `TIME`. Locks are on the server too, as leases
//! with fencing tokens (locks.rs, renewed by the owner's keeper, keeper.rs); see
//! docs/redis.md, "Locks".
//!
//! Failures map onto the exit-code table: unreachable, timeout, `READONLY`,
//! `LOADING` exit 8; `OOM` 10; `NOAUTH`/`WRONGPASS` 6; a key of the wrong
//! type or a document that fails its checksum 3. Messages name the URL
//! without its password.

pub mod audit;
mod bench;
mod checkpoints;
mod health;
pub(crate) mod keeper;
pub(crate) mod local;
mod locks;
mod state;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use redis::{Connection, RedisError};

use super::{AuditSink, Backend, CheckpointStore, LockRegistry, StateStore};
use crate::config::Config;
use crate::error::{Error, Kind, Result};

/// How long a connect, a read or a write may take by default
/// (`WFSTATE_REDIS_TIMEOUT`).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// The keys of the state and its backups, in the order the scripts take
/// them as KEYS.
pub(crate) const STATE_KEYS: [&str; 6] = [
    "state",
    "backups",
    "backups:seq",
    "backups:made",
    "audit",
    "corrupt",
];

/// The keys of one namespace.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    fn new(ns: &str) -> Keys {
        Keys {
            prefix: format!("wfstate:{{{ns}}}:"),
        }
    }
    pub(crate) fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

/// The connection shared by the backend and the audit sink it installs.
#[derive(Default)]
struct Link {
    conn: Option<Connection>,
    /// Set when the server could not be reached: later calls of this
    /// process fail at once with it instead of waiting out the timeout again.
    down: Option<Error>,
}

type Shared = Rc<RefCell<Link>>;

/// The Redis backend of one namespace on one server.
pub struct RedisBackend {
    pub(crate) cfg: Config,
    /// The URL as given (it may hold a password: never printed).
    url: String,
    /// The URL with its password masked, for messages.
    shown: String,
    ns: String,
    keys: Keys,
    timeout: Duration,
    conn: Shared,
}

/// The Redis backend `url` names, for namespace `WFSTATE_NAMESPACE`. Nothing
/// is connected until the first command that needs the server.
pub fn open(cfg: &Config, url: &str) -> Result<RedisBackend> {
    let shown = crate::backend::mask_url(url);
    if url.starts_with("rediss://") {
        return Err(Error::new(
            Kind::DependencyMissing,
            format!("backend {shown}: this build has no TLS"),
        )
        .hint("reach the server through a TLS tunnel (stunnel, spiped, an SSH forward) and use redis:// or redis+unix:// to its local end"));
    }
    let ns = std::env::var("WFSTATE_NAMESPACE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".to_string());
    crate::lock::name::validate_as("namespace (WFSTATE_NAMESPACE)", &ns)?;
    let timeout = match std::env::var("WFSTATE_REDIS_TIMEOUT") {
        Ok(t) if !t.trim().is_empty() => {
            crate::config::parse_duration(&t, "WFSTATE_REDIS_TIMEOUT")?
                .max(Duration::from_millis(1))
        }
        _ => DEFAULT_TIMEOUT,
    };
    Ok(RedisBackend {
        cfg: cfg.clone(),
        url: url.to_string(),
        shown,
        keys: Keys::new(&ns),
        ns,
        timeout,
        conn: Rc::new(RefCell::new(Link::default())),
    })
}

impl RedisBackend {
    /// The namespace (`WFSTATE_NAMESPACE`).
    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// The URL with its password masked.
    pub fn shown_url(&self) -> &str {
        &self.shown
    }

    /// Runs `f` on the connection, connecting first when there is none. A
    /// failure drops the connection (it may be half-way through a reply),
    /// so a later call starts afresh.
    pub(crate) fn with<T>(
        &self,
        doing: &str,
        f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        with_conn(&self.conn, &self.url, &self.shown, self.timeout, doing, f)
    }

    /// Routes every audit event of this process to the stream, falling
    /// back to the local audit file (and exit 8) when it cannot be reached.
    pub(crate) fn install_audit_sink(&self) {
        let conn = self.conn.clone();
        let (url, shown, timeout) = (self.url.clone(), self.shown.clone(), self.timeout);
        let key = self.keys.key("audit");
        crate::audit::event::set_remote(Box::new(move |line: &[u8]| {
            with_conn(&conn, &url, &shown, timeout, "append an audit event", |c| {
                audit::append_script()
                    .key(&key)
                    .arg(line)
                    .arg(audit::MAX_EVENTS)
                    .invoke::<()>(c)
            })
        }));
    }

    /// `INFO` section `section` as name → value pairs.
    pub fn info(&self, section: &str) -> Result<Vec<(String, String)>> {
        let text: String = self.with("read INFO", |c| redis::cmd("INFO").arg(section).query(c))?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect())
    }

    /// `CONFIG GET name` (None when the server refuses CONFIG, as managed
    /// services do).
    pub fn config_get(&self, name: &str) -> Option<String> {
        let pairs: Vec<String> = self
            .with("read CONFIG", |c| {
                redis::cmd("CONFIG").arg("GET").arg(name).query(c)
            })
            .ok()?;
        pairs.get(1).cloned()
    }

    /// Every key matching `pattern` (`SCAN`, so the server is never
    /// blocked the way `KEYS` would block it).
    fn scan(&self, pattern: &str) -> Result<Vec<String>> {
        self.with("list keys", |c| {
            let mut out = Vec::new();
            let mut cursor = 0u64;
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(500)
                    .query(c)?;
                out.extend(batch);
                if next == 0 {
                    return Ok(out);
                }
                cursor = next;
            }
        })
    }

    /// The keys of this namespace that carry a TTL (none should).
    pub fn keys_with_ttl(&self) -> Result<Vec<String>> {
        let pattern = format!(
            "{}*",
            self.keys.prefix.replace('{', "\\{").replace('}', "\\}")
        );
        let mut with_ttl = Vec::new();
        for k in self.scan(&pattern)? {
            let ttl: i64 = self.with("read a TTL", |c| redis::cmd("PTTL").arg(&k).query(c))?;
            if ttl >= 0 {
                with_ttl.push(k);
            }
        }
        Ok(with_ttl)
    }

    /// The namespaces that have a state on this server.
    pub fn namespaces(&self) -> Result<Vec<String>> {
        let mut out: Vec<String> = self
            .scan("wfstate:{*}:state")?
            .into_iter()
            .filter_map(|k| {
                k.strip_prefix("wfstate:{")
                    .and_then(|r| r.strip_suffix("}:state"))
                    .map(str::to_owned)
            })
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The same server, another namespace.
    pub fn for_namespace(&self, ns: &str) -> RedisBackend {
        RedisBackend {
            cfg: self.cfg.clone(),
            url: self.url.clone(),
            shown: self.shown.clone(),
            ns: ns.to_string(),
            keys: Keys::new(ns),
            timeout: self.timeout,
            conn: self.conn.clone(),
        }
    }
}

fn with_conn<T>(
    conn: &Shared,
    url: &str,
    shown: &str,
    timeout: Duration,
    doing: &str,
    f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>,
) -> Result<T> {
    let mut link = conn.borrow_mut();
    if let Some(e) = &link.down {
        return Err(e.clone());
    }
    let slot = &mut link.conn;
    if slot.is_none() {
        let started = std::time::Instant::now();
        let c = connect(url, timeout).map_err(|e| fail(e, shown, "connect", timeout, false));
        let c = match c {
            Ok(c) => c,
            Err(e) => {
                if e.kind() == Kind::Network {
                    link.down = Some(e.clone());
                }
                return Err(e);
            }
        };
        crate::debug::log(|| {
            format!(
                "redis: connected to {shown} in {:.3}ms",
                started.elapsed().as_secs_f64() * 1e3
            )
        });
        *slot = Some(c);
    }
    let c = slot.as_mut().expect("connected above");
    f(c).map_err(|e| {
        let sent = !e.is_connection_refusal();
        let lost = e.is_io_error() || e.is_timeout() || e.is_connection_dropped();
        let err = fail(e, shown, doing, timeout, sent);
        if lost {
            link.conn = None;
            link.down = Some(err.clone());
        }
        err
    })
}

fn connect(url: &str, timeout: Duration) -> redis::RedisResult<Connection> {
    use redis::IntoConnectionInfo;
    let info = url.into_connection_info()?;
    let settings = info.redis_settings().clone().set_skip_set_lib_name();
    let client = redis::Client::open(info.set_redis_settings(settings))?;
    let c = client.get_connection_with_timeout(timeout)?;
    c.set_read_timeout(Some(timeout))?;
    c.set_write_timeout(Some(timeout))?;
    Ok(c)
}

/// The toolkit's error for a failed Redis call: the exit code of its class,
/// the URL (password masked) and what to check.
fn fail(e: RedisError, shown: &str, doing: &str, timeout: Duration, sent: bool) -> Error {
    // A pipeline's failure wraps the server's error: its code is in the text.
    let text = e.to_string();
    let code = e.code().unwrap_or_else(|| {
        const CODES: [&str; 10] = [
            "WRONGTYPE",
            "OOM",
            "NOAUTH",
            "WRONGPASS",
            "NOPERM",
            "READONLY",
            "LOADING",
            "MASTERDOWN",
            "BUSY",
            "TRYAGAIN",
        ];
        CODES
            .into_iter()
            .find(|c| text.contains(&format!("\"{c}\"")) || text.starts_with(c))
            .unwrap_or("")
    });
    let (kind, hint) = match code {
        "OOM" => (
            Kind::ResourceExhausted,
            "the server is at its maxmemory: free memory or raise maxmemory; nothing was changed",
        ),
        "NOAUTH" | "WRONGPASS" | "NOPERM" => (
            Kind::PermissionDenied,
            "put the right user and password in the URL (redis://USER:PASS@HOST:PORT/DB), or grant this user the commands and keys wfstate:* (ACL)",
        ),
        "READONLY" => (
            Kind::Network,
            "this server is a read-only replica: point WFSTATE_BACKEND at the primary",
        ),
        "LOADING" | "MASTERDOWN" | "BUSY" | "TRYAGAIN" => (
            Kind::Network,
            "the server is not ready (loading its data, or busy): try again in a moment",
        ),
        "WRONGTYPE" => (
            Kind::Corruption,
            "a key under wfstate:{NS}: holds another type: something else wrote it; rename it away (RENAME) — wfstate does not overwrite it",
        ),
        _ if e.kind() == redis::ErrorKind::AuthenticationFailed => (
            Kind::PermissionDenied,
            "put the right user and password in the URL (redis://USER:PASS@HOST:PORT/DB)",
        ),
        _ if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() => (
            Kind::Network,
            "check that redis-server runs there and that WFSTATE_BACKEND names it",
        ),
        _ if e.kind() == redis::ErrorKind::InvalidClientConfig => (
            Kind::Validation,
            "use redis://[USER:PASS@]HOST:PORT/DB or redis+unix:///PATH/redis.sock?db=N",
        ),
        _ => (Kind::General, "see the server's log"),
    };
    if e.is_timeout() {
        let secs = timeout.as_secs_f64();
        let outcome = if sent && doing.starts_with("commit") {
            " — the write may or may not have been applied: read the state to see which (running the same command again never applies it twice)"
        } else {
            ""
        };
        return Error::new(
            Kind::Network,
            format!("redis {shown}: {doing}: no answer within {secs}s{outcome}"),
        )
        .hint("check that the server is up and not paused; WFSTATE_REDIS_TIMEOUT sets the limit");
    }
    let detail = e.detail().map(str::to_owned).unwrap_or(text);
    Error::new(kind, format!("redis {shown}: cannot {doing}: {detail}")).hint(hint)
}

impl Backend for RedisBackend {
    fn kind(&self) -> &'static str {
        "redis"
    }
    fn location(&self) -> String {
        format!("{} (namespace {})", self.shown, self.ns)
    }
    fn namespace(&self) -> Option<&str> {
        Some(&self.ns)
    }
    fn redis(&self) -> Option<&RedisBackend> {
        Some(self)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_one_cluster_slot() {
        assert_eq!(Keys::new("ci").key("state"), "wfstate:{ci}:state");
    }
}
