//! `state-manager health` on Redis: the server answers, the state is
//! sound, and the server's settings keep it — no eviction of our keys, no
//! TTL on them, and an append-only file synced on every write.

use std::time::Instant;

use super::RedisBackend;
use crate::backend::{Backend, StateStore};
use crate::exit::Code;
use crate::state::health::{self, Check, check_degraded_mode, degraded, healthy, unhealthy};

/// How many PINGs the latency figure is the median of.
const PINGS: usize = 5;

impl RedisBackend {
    /// The checks of `health`, in report order.
    pub fn health_checks(&self) -> Vec<(&'static str, Check)> {
        let server = self.check_server();
        if server.status != health::Status::Healthy {
            // Nothing else can be asked of a server that does not answer.
            return vec![("server", server)];
        }
        let missing = format!("no state in {}", self.location());
        let (state, doc, _) =
            health::check_document(self.load_bytes(), &missing, |b| self.parse(b));
        vec![
            ("server", server),
            ("state", state),
            ("persistence", self.check_persistence()),
            ("eviction", self.check_eviction()),
            ("backups", self.check_backups()),
            ("audit_log", self.check_stream()),
            ("degraded_mode", check_degraded_mode(doc.as_ref())),
        ]
    }

    fn check_server(&self) -> Check {
        let mut times = Vec::with_capacity(PINGS);
        for _ in 0..PINGS {
            let started = Instant::now();
            if let Err(e) = self.with("PING", |c| redis::cmd("PING").query::<String>(c)) {
                return unhealthy(
                    e.code(),
                    e.summary(),
                    "check that redis-server runs there and that WFSTATE_BACKEND names it",
                );
            }
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        let info = self.info("server").unwrap_or_default();
        let version = info
            .iter()
            .find(|(k, _)| k == "redis_version")
            .map_or("?", |(_, v)| v.as_str());
        healthy(format!(
            "{} answers (Redis {version}, PING median {:.3} ms)",
            self.shown_url(),
            times[PINGS / 2]
        ))
    }

    fn check_persistence(&self) -> Check {
        let aof = self.config_get("appendonly");
        let fsync = self.config_get("appendfsync");
        match (aof.as_deref(), fsync.as_deref()) {
            (Some("yes"), Some("always")) => {
                healthy("append-only file on, synced on every write: an acknowledged write survives a crash")
            }
            (Some("yes"), Some(f)) => degraded(
                format!("append-only file on, appendfsync {f}: a crash of the server's host loses up to {} of acknowledged writes", if f == "everysec" { "1 s" } else { "~30 s (the OS's flush)" }),
                "CONFIG SET appendfsync always (and in redis.conf)",
            ),
            (Some(_), _) => degraded(
                "append-only file off: a crash loses every write since the last RDB snapshot (or all of them without one)",
                "CONFIG SET appendonly yes and appendfsync always (and in redis.conf)",
            ),
            (None, _) => Check {
                status: health::Status::Unknown,
                detail: "the server does not answer CONFIG GET (a managed service?): persistence unknown".into(),
                hint: Some("check that the service keeps an append-only file synced on every write".into()),
            },
        }
    }

    fn check_eviction(&self) -> Check {
        let ttl = match self.keys_with_ttl() {
            Ok(keys) => keys,
            Err(e) => return unhealthy(e.code(), e.summary(), "see the error"),
        };
        if let Some(k) = ttl.first() {
            return unhealthy(
                Code::StateCorruption,
                format!(
                    "{} key(s) of this namespace carry a TTL ({k}…): they will vanish",
                    ttl.len()
                ),
                "PERSIST them (wfstate never sets one); find what set it in the server's clients",
            );
        }
        match self.config_get("maxmemory-policy").as_deref() {
            Some(p) if p.starts_with("allkeys-") => unhealthy(
                Code::ResourceExhausted,
                format!(
                    "maxmemory-policy {p}: at maxmemory the server may evict the state, its backups and the audit stream"
                ),
                "CONFIG SET maxmemory-policy noeviction (writes then fail with exit 10 instead of losing data)",
            ),
            Some(p) => healthy(format!(
                "maxmemory-policy {p}: our keys have no TTL, so none can be evicted"
            )),
            None => Check {
                status: health::Status::Unknown,
                detail: "the server does not answer CONFIG GET: eviction policy unknown".into(),
                hint: Some("make sure the policy is noeviction or volatile-*".into()),
            },
        }
    }

    fn check_backups(&self) -> Check {
        match self.list_backups() {
            Ok(b) if b.is_empty() => healthy("none yet (the first change makes one)"),
            Ok(b) => healthy(format!(
                "{} kept on the server, newest {}",
                b.len(),
                b[0].name
            )),
            Err(e) => unhealthy(e.code(), e.summary(), "see the error"),
        }
    }

    fn check_stream(&self) -> Check {
        let key = self.keys.key("audit");
        match self.with("read the audit stream's length", |c| {
            redis::cmd("XLEN").arg(&key).query::<u64>(c)
        }) {
            Ok(n) => healthy(format!("{n} event(s) in {key}")),
            Err(e) => unhealthy(e.code(), e.summary(), "see the error"),
        }
    }
}
