//! `state-manager health` and `diagnostics` on Redis: the server answers
//! quickly enough, the state is sound, and the server's settings keep it —
//! no eviction of our keys, no TTL on them, an append-only file synced on
//! every write, memory below `maxmemory` — plus every figure behind those
//! checks ([`ServerFigures`], what `diagnostics` prints).
//!
//! Alerts (a `degraded` check, exit 0): PING round trip p95 over
//! [`LATENCY_ALERT_MS`]; memory used over [`MEMORY_ALERT_PERCENT`] of
//! `maxmemory`; evictions over [`EVICTIONS_ALERT_PER_MIN`] a minute. The
//! eviction rate is `evicted_keys` over `uptime_in_seconds`: an average
//! since the server started, from one `INFO` — a rate over the last minute
//! would need two samples a minute apart, and health answers at once.
//!
//! Figures come from one `INFO` (memory, policy, AOF status, clients,
//! replication: allowed on managed services) and `CONFIG GET` for what
//! `INFO` does not hold (`appendfsync`, `save`); a server that refuses
//! `CONFIG` gets those as unknown, never as a failure.

use std::collections::HashMap;
use std::time::Instant;

use serde::Serialize;

use super::RedisBackend;
use crate::backend::{Backend, StateStore};
use crate::error::Result;
use crate::exit::Code;
use crate::state::health::{self, Check, check_degraded_mode, degraded, healthy, unhealthy};

/// A PING round trip (p95) slower than this is an alert.
pub const LATENCY_ALERT_MS: f64 = 500.0;
/// Memory used above this share of `maxmemory` is an alert.
pub const MEMORY_ALERT_PERCENT: f64 = 80.0;
/// More evictions a minute than this (since the server started) is an alert.
pub const EVICTIONS_ALERT_PER_MIN: f64 = 50.0;

/// PING round trips, in milliseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    /// How many PINGs.
    pub count: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// The figures of `times` (milliseconds, at least one).
    pub fn of(mut times: Vec<f64>) -> Latency {
        times.sort_by(f64::total_cmp);
        let at = |q: f64| {
            // Nearest rank: the smallest value with at least q of them at or below it.
            let rank = (q * times.len() as f64).ceil().max(1.0) as usize;
            round3(times[rank.min(times.len()) - 1])
        };
        Latency {
            count: times.len() as u64,
            p50_ms: at(0.50),
            p95_ms: at(0.95),
            max_ms: round3(*times.last().unwrap_or(&0.0)),
        }
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Memory used against `maxmemory`.
#[derive(Clone, Debug, Serialize)]
pub struct Memory {
    pub used_bytes: u64,
    /// 0: no limit.
    pub maxmemory_bytes: u64,
    /// used / maxmemory × 100; null when there is no limit.
    pub used_percent: Option<f64>,
    /// `noeviction`, `allkeys-lru`, …
    pub maxmemory_policy: Option<String>,
}

/// Keys the server evicted since it started.
#[derive(Clone, Debug, Serialize)]
pub struct Evictions {
    pub evicted_keys: u64,
    /// evicted_keys / uptime in minutes: an average since the server started.
    pub per_minute: f64,
}

/// How the server keeps what it acknowledged.
#[derive(Clone, Debug, Serialize)]
pub struct Persistence {
    /// `appendonly` (from INFO's `aof_enabled`).
    pub appendonly: Option<bool>,
    /// `always`, `everysec` or `no`; null when CONFIG GET is refused.
    pub appendfsync: Option<String>,
    /// `ok` or `err`: the last write to the append-only file.
    pub aof_last_write_status: Option<String>,
    /// The `save` setting (RDB snapshots: "SECONDS CHANGES …", "" for none);
    /// null when CONFIG GET is refused.
    pub rdb_save: Option<String>,
    pub rdb_last_bgsave_status: Option<String>,
    pub rdb_changes_since_last_save: Option<u64>,
}

/// One replica, as its primary sees it.
#[derive(Clone, Debug, Serialize)]
pub struct Replica {
    /// `IP:PORT`.
    pub address: String,
    /// `online`, `wait_bgsave`, … (INFO's `state`; `state` is an object in
    /// other reports, so the field has another name here).
    pub status: String,
    /// The replication offset it has acknowledged.
    pub offset: i64,
    /// The primary's offset minus the replica's.
    pub offset_behind: i64,
    /// Since its last acknowledgement (the `lag` of INFO, in seconds, × 1000).
    pub lag_ms: u64,
}

/// Where the server stands in replication.
#[derive(Clone, Debug, Serialize)]
pub struct Replication {
    /// `master` or `slave` (INFO's words).
    pub role: String,
    /// The server's replication offset.
    pub repl_offset: Option<i64>,
    /// A primary: how many replicas are connected.
    pub connected_slaves: Option<u64>,
    /// A primary: each connected replica.
    pub replicas: Vec<Replica>,
    /// A replica: `up` or `down`.
    pub master_link_status: Option<String>,
    /// A replica: since the last interaction with its primary (INFO's
    /// `master_last_io_seconds_ago` × 1000); null when the link is down.
    pub lag_ms: Option<u64>,
}

/// Every figure `diagnostics` prints about the server.
#[derive(Clone, Debug, Serialize)]
pub struct ServerFigures {
    /// The URL, password masked.
    pub url: String,
    pub version: Option<String>,
    pub uptime_ms: Option<u64>,
    pub latency: Latency,
    pub memory: Memory,
    pub evictions: Evictions,
    pub persistence: Persistence,
    pub connected_clients: Option<u64>,
    pub replication: Replication,
}

/// `INFO` as name → value.
struct Info(HashMap<String, String>);

impl Info {
    fn str(&self, k: &str) -> Option<String> {
        self.0.get(k).cloned()
    }
    fn num<T: std::str::FromStr>(&self, k: &str) -> Option<T> {
        self.0.get(k)?.parse().ok()
    }
}

/// `k1=v1,k2=v2` (a replica's line in INFO replication) as pairs.
fn fields(v: &str) -> HashMap<&str, &str> {
    v.split(',').filter_map(|p| p.split_once('=')).collect()
}

impl RedisBackend {
    /// The checks of `health`, in report order; `pings` PINGs make the
    /// latency figures.
    pub fn health_checks(&self, pings: usize) -> Vec<(&'static str, Check)> {
        let times = match self.ping_times(pings) {
            Ok(t) => t,
            // Nothing else can be asked of a server that does not answer.
            Err(e) => {
                return vec![(
                    "server",
                    unhealthy(
                        e.code(),
                        e.summary(),
                        "check that redis-server runs there and that WFSTATE_BACKEND names it",
                    ),
                )];
            }
        };
        let info = self.info_all();
        let version = info
            .as_ref()
            .ok()
            .and_then(|i| i.str("redis_version"))
            .unwrap_or_else(|| "?".into());
        let server = healthy(format!("{} answers (Redis {version})", self.shown_url()));
        let missing = format!("no state in {}", self.location());
        let (state, doc, _) =
            health::check_document(self.load_bytes(), &missing, |b| self.parse(b));
        let (memory, evictions) = match &info {
            Ok(i) => (
                check_memory(&memory_of(i)),
                check_evictions(&evictions_of(i)),
            ),
            Err(e) => (
                unhealthy(e.code(), e.summary(), "see the error"),
                unhealthy(e.code(), e.summary(), "see the error"),
            ),
        };
        vec![
            ("server", server),
            ("latency", check_latency(&Latency::of(times))),
            ("state", state),
            ("persistence", self.check_persistence(info.as_ref().ok())),
            ("eviction", self.check_eviction(info.as_ref().ok())),
            ("memory", memory),
            ("evictions", evictions),
            ("backups", self.check_backups()),
            ("audit_log", self.check_stream()),
            ("degraded_mode", check_degraded_mode(doc.as_ref())),
        ]
    }

    /// Every figure of the server (`diagnostics`); `pings` PINGs make the
    /// latency figures.
    pub fn server_figures(&self, pings: usize) -> Result<ServerFigures> {
        let latency = Latency::of(self.ping_times(pings)?);
        let i = self.info_all()?;
        Ok(ServerFigures {
            url: self.shown_url().to_string(),
            version: i.str("redis_version"),
            uptime_ms: i.num::<u64>("uptime_in_seconds").map(|s| s * 1000),
            latency,
            memory: memory_of(&i),
            evictions: evictions_of(&i),
            persistence: Persistence {
                appendonly: i.num::<u8>("aof_enabled").map(|a| a == 1),
                appendfsync: self.config_get("appendfsync"),
                aof_last_write_status: i.str("aof_last_write_status"),
                rdb_save: self.config_get("save"),
                rdb_last_bgsave_status: i.str("rdb_last_bgsave_status"),
                rdb_changes_since_last_save: i.num("rdb_changes_since_last_save"),
            },
            connected_clients: i.num("connected_clients"),
            replication: replication_of(&i),
        })
    }

    /// The round trips of `n` PINGs (at least one), in milliseconds.
    fn ping_times(&self, n: usize) -> Result<Vec<f64>> {
        let mut times = Vec::with_capacity(n.max(1));
        for _ in 0..n.max(1) {
            let started = Instant::now();
            self.with("PING", |c| redis::cmd("PING").query::<String>(c))?;
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
        Ok(times)
    }

    /// `INFO` (its default sections: server, clients, memory, persistence,
    /// stats, replication, …).
    fn info_all(&self) -> Result<Info> {
        Ok(Info(self.info("default")?.into_iter().collect()))
    }

    fn check_persistence(&self, info: Option<&Info>) -> Check {
        // CONFIG GET first; INFO's aof_enabled where CONFIG is refused.
        let aof = self.config_get("appendonly").or_else(|| {
            info?
                .num::<u8>("aof_enabled")
                .map(|a| if a == 1 { "yes" } else { "no" }.to_string())
        });
        let fsync = self.config_get("appendfsync");
        match (aof.as_deref(), fsync.as_deref()) {
            (Some("yes"), Some("always")) => {
                healthy("append-only file on, synced on every write (appendfsync always): an acknowledged write survives a crash")
            }
            (Some("yes"), Some(f)) => degraded(
                format!("append-only file on, appendfsync {f}: a crash of the server's host loses up to {} of acknowledged writes", if f == "everysec" { "1 s" } else { "~30 s (the OS's flush)" }),
                "run CONFIG SET appendfsync always (and set it in redis.conf, or CONFIG REWRITE)",
            ),
            (Some("yes"), None) => Check {
                status: health::Status::Unknown,
                detail: "append-only file on, but appendfsync could not be verified: the server refuses CONFIG GET (a managed service?)".into(),
                hint: Some("check in the service's settings that the append-only file is synced on every write (appendfsync always)".into()),
            },
            (Some(_), _) => degraded(
                "append-only file off: a crash loses every write since the last RDB snapshot (or all of them without one)",
                "run CONFIG SET appendonly yes and CONFIG SET appendfsync always (and set both in redis.conf, or CONFIG REWRITE)",
            ),
            (None, _) => Check {
                status: health::Status::Unknown,
                detail: "persistence could not be verified: the server refuses CONFIG GET and INFO (a managed service?)".into(),
                hint: Some("check in the service's settings that the append-only file is on and synced on every write (appendfsync always)".into()),
            },
        }
    }

    fn check_eviction(&self, info: Option<&Info>) -> Check {
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
        let policy = self
            .config_get("maxmemory-policy")
            .or_else(|| info?.str("maxmemory_policy"));
        match policy.as_deref() {
            Some(p) if p.starts_with("allkeys-") => unhealthy(
                Code::ResourceExhausted,
                format!(
                    "maxmemory-policy {p}: at maxmemory the server may evict the state, its backups and the audit stream"
                ),
                "run CONFIG SET maxmemory-policy noeviction (writes then fail with exit 10 instead of losing data)",
            ),
            Some(p) => healthy(format!(
                "maxmemory-policy {p}: our keys have no TTL, so none can be evicted"
            )),
            None => Check {
                status: health::Status::Unknown,
                detail: "the eviction policy could not be verified: the server refuses CONFIG GET and INFO".into(),
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

/// What `audit missing` reports of one key: its type, size and TTL.
#[derive(Clone, Debug)]
pub struct KeyFacts {
    /// `string`, `hash`, `stream`, … (`TYPE`).
    pub kind: String,
    /// Bytes it takes on the server (`MEMORY USAGE`); None when refused.
    pub size: Option<u64>,
    /// Its TTL in milliseconds; None when it has none (as every wfstate key).
    pub ttl_ms: Option<i64>,
}

impl RedisBackend {
    /// The full name of key `name` of this namespace (`wfstate:{NS}:name`).
    pub fn key_name(&self, name: &str) -> String {
        self.keys.key(name)
    }

    /// Type, size and TTL of `key`; None when there is no such key.
    pub fn key_facts(&self, key: &str) -> Result<Option<KeyFacts>> {
        let kind: String = self.with("read a key's type", |c| {
            redis::cmd("TYPE").arg(key).query(c)
        })?;
        if kind == "none" {
            return Ok(None);
        }
        let size = self
            .with("read a key's memory usage", |c| {
                redis::cmd("MEMORY")
                    .arg("USAGE")
                    .arg(key)
                    .query::<Option<u64>>(c)
            })
            .ok()
            .flatten();
        let ttl: i64 = self.with("read a TTL", |c| redis::cmd("PTTL").arg(key).query(c))?;
        Ok(Some(KeyFacts {
            kind,
            size,
            ttl_ms: (ttl >= 0).then_some(ttl),
        }))
    }

    /// Keys whose names start with `prefix` (SCAN, never KEYS), sorted, at
    /// most `limit`.
    pub fn keys_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<String>> {
        let mut glob = String::with_capacity(prefix.len() + 1);
        for ch in prefix.chars() {
            if matches!(ch, '*' | '?' | '[' | ']' | '\\') {
                glob.push('\\');
            }
            glob.push(ch);
        }
        glob.push('*');
        let mut keys = self.scan(&glob)?;
        keys.sort();
        keys.truncate(limit);
        Ok(keys)
    }
}

/// Where the server stands in replication, from INFO's replication section.
fn replication_of(i: &Info) -> Replication {
    let role = i.str("role").unwrap_or_else(|| "?".into());
    let repl_offset = i.num::<i64>("master_repl_offset");
    if role == "master" {
        let replicas = (0..i.num::<usize>("connected_slaves").unwrap_or(0))
            .filter_map(|n| i.str(&format!("slave{n}")))
            .map(|line| {
                let f = fields(&line);
                let offset = f.get("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
                Replica {
                    address: format!(
                        "{}:{}",
                        f.get("ip").unwrap_or(&"?"),
                        f.get("port").unwrap_or(&"?")
                    ),
                    status: f.get("state").unwrap_or(&"?").to_string(),
                    offset,
                    offset_behind: repl_offset.unwrap_or(offset) - offset,
                    lag_ms: f
                        .get("lag")
                        .and_then(|l| l.parse::<u64>().ok())
                        .unwrap_or(0)
                        * 1000,
                }
            })
            .collect();
        Replication {
            role,
            repl_offset,
            connected_slaves: i.num("connected_slaves"),
            replicas,
            master_link_status: None,
            lag_ms: None,
        }
    } else {
        Replication {
            role,
            repl_offset: i.num::<i64>("slave_repl_offset").or(repl_offset),
            connected_slaves: None,
            replicas: Vec::new(),
            master_link_status: i.str("master_link_status"),
            lag_ms: i
                .num::<i64>("master_last_io_seconds_ago")
                .filter(|s| *s >= 0)
                .map(|s| s as u64 * 1000),
        }
    }
}

fn memory_of(i: &Info) -> Memory {
    let used = i.num::<u64>("used_memory").unwrap_or(0);
    let max = i.num::<u64>("maxmemory").unwrap_or(0);
    Memory {
        used_bytes: used,
        maxmemory_bytes: max,
        used_percent: (max > 0).then(|| (used as f64 * 1000.0 / max as f64).round() / 10.0),
        maxmemory_policy: i.str("maxmemory_policy"),
    }
}

fn evictions_of(i: &Info) -> Evictions {
    let evicted = i.num::<u64>("evicted_keys").unwrap_or(0);
    // A server up for less than a second has been up for one, for the rate.
    let minutes = i.num::<u64>("uptime_in_seconds").unwrap_or(0).max(1) as f64 / 60.0;
    Evictions {
        evicted_keys: evicted,
        per_minute: (evicted as f64 / minutes * 10.0).round() / 10.0,
    }
}

fn check_latency(l: &Latency) -> Check {
    let detail = format!(
        "PING round trip p50 {:.3} ms, p95 {:.3} ms, max {:.3} ms over {} PINGs",
        l.p50_ms, l.p95_ms, l.max_ms, l.count
    );
    if l.p95_ms > LATENCY_ALERT_MS {
        degraded(
            format!("{detail}: p95 over {LATENCY_ALERT_MS} ms"),
            "every operation pays this several times: check the network path and the server's load (redis-cli --latency, SLOWLOG GET)",
        )
    } else {
        healthy(detail)
    }
}

fn check_memory(m: &Memory) -> Check {
    let used = health::human_bytes(m.used_bytes);
    match m.used_percent {
        None => healthy(format!(
            "{used} used, no maxmemory: the server grows until its host runs out"
        )),
        Some(p) if p > MEMORY_ALERT_PERCENT => degraded(
            format!(
                "{used} used of maxmemory {} ({p:.1}%, over {MEMORY_ALERT_PERCENT}%): at maxmemory writes fail with exit 10 (noeviction) or keys are evicted",
                health::human_bytes(m.maxmemory_bytes)
            ),
            "raise maxmemory (CONFIG SET maxmemory …) or free memory on the server (MEMORY USAGE, --bigkeys)",
        ),
        Some(p) => healthy(format!(
            "{used} used of maxmemory {} ({p:.1}%)",
            health::human_bytes(m.maxmemory_bytes)
        )),
    }
}

fn check_evictions(e: &Evictions) -> Check {
    let detail = format!(
        "{} key(s) evicted since the server started, {:.1}/min on average since then",
        e.evicted_keys, e.per_minute
    );
    if e.per_minute > EVICTIONS_ALERT_PER_MIN {
        degraded(
            format!("{detail}: over {EVICTIONS_ALERT_PER_MIN}/min"),
            "the server is short of memory: raise maxmemory, or move other data off it; with maxmemory-policy noeviction nothing is evicted (writes fail with exit 10 instead)",
        )
    } else {
        healthy(detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles_are_nearest_rank() {
        let l = Latency::of((1..=20).map(f64::from).collect());
        assert_eq!(
            (l.count, l.p50_ms, l.p95_ms, l.max_ms),
            (20, 10.0, 19.0, 20.0)
        );
        let one = Latency::of(vec![0.25]);
        assert_eq!((one.p50_ms, one.p95_ms, one.max_ms), (0.25, 0.25, 0.25));
    }

    #[test]
    fn alerts_start_above_their_thresholds() {
        let slow = Latency::of(vec![600.0; 20]);
        assert_eq!(check_latency(&slow).status, health::Status::Degraded);
        let fast = Latency::of(vec![0.2; 20]);
        assert_eq!(check_latency(&fast).status, health::Status::Healthy);
        let mem = |used, max| Memory {
            used_bytes: used,
            maxmemory_bytes: max,
            used_percent: (max > 0).then(|| used as f64 * 100.0 / max as f64),
            maxmemory_policy: None,
        };
        assert_eq!(check_memory(&mem(81, 100)).status, health::Status::Degraded);
        assert_eq!(check_memory(&mem(80, 100)).status, health::Status::Healthy);
        assert_eq!(check_memory(&mem(80, 0)).status, health::Status::Healthy);
        let info = |evicted: &str, up: &str| {
            Info(
                [("evicted_keys", evicted), ("uptime_in_seconds", up)]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        assert_eq!(evictions_of(&info("51", "60")).per_minute, 51.0);
        assert_eq!(
            check_evictions(&evictions_of(&info("51", "60"))).status,
            health::Status::Degraded
        );
        assert_eq!(
            check_evictions(&evictions_of(&info("50", "60"))).status,
            health::Status::Healthy
        );
    }

    fn info(pairs: &[(&str, &str)]) -> Info {
        Info(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn replication_is_read_for_a_primary_and_for_a_replica() {
        let primary = replication_of(&info(&[
            ("role", "master"),
            ("connected_slaves", "1"),
            (
                "slave0",
                "ip=10.0.0.2,port=6380,state=online,offset=90,lag=2",
            ),
            ("master_repl_offset", "100"),
        ]));
        assert_eq!(primary.connected_slaves, Some(1));
        let r = &primary.replicas[0];
        assert_eq!(
            (
                r.address.as_str(),
                r.status.as_str(),
                r.offset,
                r.offset_behind,
                r.lag_ms
            ),
            ("10.0.0.2:6380", "online", 90, 10, 2000)
        );
        assert_eq!(primary.master_link_status, None);
        let replica = replication_of(&info(&[
            ("role", "slave"),
            ("master_link_status", "up"),
            ("master_last_io_seconds_ago", "3"),
            ("slave_repl_offset", "77"),
        ]));
        assert_eq!(replica.master_link_status.as_deref(), Some("up"));
        assert_eq!(
            (replica.lag_ms, replica.repl_offset),
            (Some(3000), Some(77))
        );
        assert!(replica.replicas.is_empty() && replica.connected_slaves.is_none());
        let down = replication_of(&info(&[
            ("role", "slave"),
            ("master_link_status", "down"),
            ("master_last_io_seconds_ago", "-1"),
        ]));
        assert_eq!(down.lag_ms, None);
    }

    #[test]
    fn a_replica_line_splits_into_its_fields() {
        let f = fields("ip=10.0.0.2,port=6380,state=online,offset=42,lag=1");
        assert_eq!(f["ip"], "10.0.0.2");
        assert_eq!(f["lag"], "1");
    }
}
