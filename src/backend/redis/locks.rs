//! The lock registry on the Redis server: named shared/exclusive locks whose
//! holds are leases, shared by every host of one namespace (docs/redis.md,
//! "Locks").
//!
//! Keys (under `wfstate:{NS}:`, none with a TTL):
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `lock:N` | hash | `type` while held; `fence`, the grant counter, never deleted; `changed`, when a holder or waiter last came or went (ms: the record's `timestamp`) |
//! | `lock:N:h` | sorted set | holder id → lease end (server ms) |
//! | `lock:N:m` | hash | holder id → `{"acquired", "acquired_ms", "ttl_end_ms", "token", "metadata"}` |
//! | `lock:N:w` | sorted set | exclusive waiter id → when its entry lapses (writer preference) |
//! | `lock:N:lost` | hash | holder id → `MS NEW-HOLDER`: who took over once its lease lapsed (at most 64) |
//! | `owner:H` | set | the locks H holds: the hierarchy check and the keeper's renewal |
//! | `locks` | set | every name that has a `lock:N` hash |
//! | `epoch` | string | random, set by the first grant: part of every token |
//! | `wake:N` | channel | published on release, lapse and takeover |
//!
//! Guarantees:
//! - Every check-and-change is one Lua script (src/backend/redis/lua/),
//!   timed by the server's `TIME`: hosts whose clocks disagree agree on
//!   who holds what. A try is one round trip.
//! - A lease that has ended is removed by whichever script meets it first,
//!   audited as `lease-expired` (the holder, why, who took over) and
//!   published on `wake:N`; it is never renewed back to life.
//! - A grant increments `fence`: the token `acquire --json` prints, that
//!   `state-manager` presents with its writes (src/backend/redis/state.rs).
//!   `acquire` keeps it in this host's private folder ([`Local::hold_path`]).
//! - A waiter subscribes to `wake:N` on a second connection before it
//!   tries again, then blocks in poll(2) on that socket (and on SIGINT,
//!   SIGTERM, SIGHUP for `lock-manager`), until a wake, the earliest lease
//!   end or its deadline: no polling.
//! - A holder on this host whose process is gone is taken over at once (as
//!   on files), without waiting for its lease; a holder on another host only
//!   when its lease ends, or by `release --force [--holder ID]`.
//!
//! Not guaranteed: FIFO order among waiters; that a token file left by a
//! killed `release` is removed (it names a hold that no longer is, and the
//! server refuses it).

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use redis::Value as Reply;
use serde_json::{Value, json};

use super::RedisBackend;
use super::local::{self, holder_id, parse_holder_id};
use crate::audit::event::{Event, now_rfc3339_micros};
use crate::backend::LockRegistry;
use crate::durable::{self, Durability};
use crate::error::{Error, Kind, Result};
use crate::lock::Identity;
use crate::lock::manager::{
    Acquired, Attend, Check, Cleaned, Entry, Progress, Released, Request, Takeover, WaitLog,
    held_by, waiting_line_of,
};
use crate::lock::name;
use crate::lock::record::{Holder, LockType, Record, Waiter};
use crate::lock::report::Status;
use crate::lock::wait::Interrupts;

const LIB: &str = include_str!("lua/lib.lua");
const ACQUIRE: &str = include_str!("lua/acquire.lua");
const RELEASE: &str = include_str!("lua/release.lua");
const READ: &str = include_str!("lua/read.lua");
const DROP: &str = include_str!("lua/drop.lua");
const WAITER: &str = include_str!("lua/waiter.lua");
const HIERARCHY: &str = include_str!("lua/hierarchy.lua");
// The keeper's seam (src/backend/redis/keeper.rs, issue 14) until it lands.
#[allow(dead_code)]
const RENEW_OWNER: &str = include_str!("lua/renew_owner.lua");
#[allow(dead_code)]
const RELEASE_OWNER: &str = include_str!("lua/release_owner.lua");
#[allow(dead_code)]
const TRANSFER: &str = include_str!("lua/transfer.lua");
#[allow(dead_code)]
const TOKEN: &str = include_str!("lua/token.lua");

/// What one renewal of an owner's leases found ([`RedisBackend::renew_owner`]).
#[allow(dead_code)]
#[derive(Clone, Debug, Default)]
pub(crate) struct Renewal {
    /// The locks still held, renewed.
    pub held: Vec<String>,
    /// The locks whose lease had already ended (audited `lease-expired`).
    pub lost: Vec<String>,
    /// The server's time of the renewal (ms).
    pub server_ms: i64,
}

/// A token file: `{"epoch": E, "token": N}`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Token {
    pub epoch: String,
    pub token: u64,
}

/// One holder as the server has it.
struct Held {
    id: String,
    lease_end: i64,
    meta: Value,
}

/// One lock as the server has it (live holders only).
struct Snapshot {
    name: String,
    kind: Option<LockType>,
    holders: Vec<Held>,
    waiters: Vec<(String, i64)>,
    /// When a holder or waiter last came or went (server ms); `None` for a
    /// lock last changed by an earlier version.
    changed: Option<i64>,
}

/// The outcome of one acquire-try.
enum Try {
    Granted {
        token: u64,
        epoch: String,
        already: bool,
        upgraded: bool,
        lapsed: Vec<(String, String)>,
        /// The record after the grant, and the server's time.
        record: Record,
    },
    Blocked {
        kind: Option<LockType>,
        /// (id, lease end ms)
        holders: Vec<(String, i64)>,
        /// Exclusive waiters: (id, when the entry lapses, ms).
        waiters: Vec<(String, i64)>,
        now: i64,
    },
    /// The owner holds `held`, ranked after the lock it asks for.
    Hierarchy { held: String },
    /// The try reached the server after the moment it was to be decided
    /// by (a paused or slow server): refused, so that a client that has
    /// given up is never granted a hold nobody keeps.
    Late { now: i64 },
}

fn text(v: &Reply) -> String {
    match v {
        Reply::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Reply::SimpleString(s) => s.clone(),
        Reply::Int(i) => i.to_string(),
        Reply::Okay => "OK".into(),
        _ => String::new(),
    }
}

fn int(v: &Reply) -> i64 {
    match v {
        Reply::Int(i) => *i,
        other => text(other).parse::<f64>().map_or(0, |f| f as i64),
    }
}

fn items(v: &Reply) -> &[Reply] {
    match v {
        Reply::Array(a) => a,
        _ => &[],
    }
}

fn strings(v: &Reply) -> Vec<String> {
    items(v).iter().map(text).collect()
}

/// (member, score) pairs of a flat `WITHSCORES` reply.
fn scored(v: &Reply) -> Vec<(String, i64)> {
    items(v)
        .chunks(2)
        .filter(|p| p.len() == 2)
        .map(|p| (text(&p[0]), int(&p[1])))
        .collect()
}

fn bad_reply(doing: &str) -> Error {
    Error::general(format!(
        "redis: {doing}: the script's reply is not understood"
    ))
    .hint("the server runs another wfstate version's scripts? report this")
}

/// One lock of a script's reply: `{name, type, {id, end, meta...},
/// {waiter, end...}, changed}`.
fn snapshot_of(v: &Reply) -> Option<Snapshot> {
    let [name, kind, holders, waiters, changed] = items(v) else {
        return None;
    };
    let holders = items(holders)
        .chunks(3)
        .filter(|c| c.len() == 3)
        .map(|c| Held {
            id: text(&c[0]),
            lease_end: int(&c[1]),
            meta: serde_json::from_str(&text(&c[2])).unwrap_or(Value::Null),
        })
        .collect();
    Some(Snapshot {
        name: text(name),
        kind: LockType::parse(&text(kind)).ok(),
        holders,
        waiters: scored(waiters),
        changed: text(changed).parse().ok(),
    })
}

/// The ranks of the hierarchy as the acquire script takes them.
fn ranks() -> (String, u32) {
    let ranked: serde_json::Map<String, Value> = name::RANKED
        .iter()
        .map(|&(n, r)| (n.to_string(), json!(r)))
        .collect();
    (Value::Object(ranked).to_string(), name::OTHER)
}

/// The audit event the scripts fill in (`op`, `target`, `detail`); its
/// `ts` comes from the stream entry's server time when read.
fn base_event() -> String {
    let tool = std::env::args_os()
        .next()
        .as_deref()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map_or(crate::lock::commands::TOOL.into(), |f| {
            f.to_string_lossy().into_owned()
        });
    let event = Event {
        ts: now_rfc3339_micros(),
        tool,
        op: String::new(),
        target: String::new(),
        pid: std::process::id(),
        ppid: rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32),
        host: crate::audit::event::hostname(),
        user: crate::audit::event::user_name(),
        duration_ms: 0.0,
        exit_code: 0,
        outcome: "ok".into(),
        detail: json!({}),
        run_id: None,
    };
    serde_json::to_string(&event).expect("an event serializes")
}

/// A fresh epoch: 16 random hex digits.
fn fresh_epoch() -> String {
    crate::state::document::new_lineage()
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(16)
        .collect()
}

impl RedisBackend {
    /// Runs lock script `body` with the common arguments (prefix, audit
    /// event, stream length, `lease`) and `args` after them.
    fn lock_script(
        &self,
        doing: &str,
        body: &str,
        lease: Duration,
        args: &[&str],
    ) -> Result<Reply> {
        let script = redis::Script::new(&format!("{LIB}\n{body}"));
        let prefix = self.keys.key("");
        let base = base_event();
        let lease_ms = lease.as_millis().to_string();
        let maxlen = super::audit::MAX_EVENTS.to_string();
        self.with(doing, |c| {
            let mut inv = script.prepare_invoke();
            // The namespace's audit stream, so that a cluster routes the
            // script to the slot every key of the namespace is in.
            inv.key(self.keys.key("audit"));
            inv.arg(&prefix).arg(&base).arg(&maxlen).arg(&lease_ms);
            for a in args {
                inv.arg(*a);
            }
            inv.invoke(c)
        })
    }

    /// Renews every lease `owner` holds in this namespace (one script over
    /// `owner:H`), to now + `lease`, never past a hold's `--ttl`, never
    /// reviving a lapsed one. The names still held and those found lapsed
    /// (each audited as `lease-expired`).
    #[allow(dead_code)]
    pub(crate) fn renew_owner(&self, owner: &Identity, lease: Duration) -> Result<Renewal> {
        let doing = "renew the leases";
        let reply = self.lock_script(doing, RENEW_OWNER, lease, &[&holder_id(owner)])?;
        match items(&reply) {
            [now, held, lost] => Ok(Renewal {
                held: strings(held),
                lost: strings(lost),
                server_ms: int(now),
            }),
            _ => Err(bad_reply(doing)),
        }
    }

    /// Releases every hold of `owner` (one script), waking waiters: the
    /// keeper's work when the owner exits. The number released.
    #[allow(dead_code)]
    pub(crate) fn release_owner(&self, owner: &Identity, why: &str) -> Result<usize> {
        let reply = self.lock_script(
            "release the holds of an owner",
            RELEASE_OWNER,
            local::DEFAULT_LEASE,
            &[&holder_id(owner), why],
        )?;
        if let Ok(local) = self.local() {
            let _ = std::fs::remove_dir_all(local.holds_dir(owner));
        }
        Ok(usize::try_from(int(&reply)).unwrap_or(0))
    }

    /// Hands `from`'s hold of `name` to `to` (run's child), keeping lease,
    /// ttl, metadata and token. Exit 1 if `from` no longer holds it.
    #[allow(dead_code)]
    pub(crate) fn transfer_hold(&self, name: &str, from: &Identity, to: &Identity) -> Result<()> {
        let reply = self.lock_script(
            "hand a hold over",
            TRANSFER,
            local::DEFAULT_LEASE,
            &[name, &holder_id(from), &holder_id(to)],
        )?;
        if int(&reply) != 1 {
            return Err(Error::general(format!(
                "lock '{name}' is no longer held by pid {}: cannot hand it to pid {}",
                from.pid, to.pid
            ))
            .hint("its lease lapsed or it was released with --force: acquire it again"));
        }
        Ok(())
    }

    /// The live token of `owner`'s hold of `name` (epoch, token), if it
    /// holds it.
    #[allow(dead_code)]
    pub(crate) fn token_of(&self, name: &str, owner: &Identity) -> Result<Option<(String, u64)>> {
        let reply = self.lock_script(
            "read a fencing token",
            TOKEN,
            local::DEFAULT_LEASE,
            &[name, &holder_id(owner)],
        )?;
        Ok(match items(&reply) {
            [epoch, token] => Some((text(epoch), u64::try_from(int(token)).unwrap_or(0))),
            _ => None,
        })
    }

    /// The token file `acquire` left for `owner`'s hold of `name`, if any.
    pub(crate) fn token_file(&self, owner: &Identity, name: &str) -> Result<Option<Token>> {
        let path = self.local()?.hold_path(owner, name);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::corruption("a fencing token file does not parse")
                    .with_path(&path)
                    .because(e)
                    .hint("release the lock and acquire it again (that rewrites it)")
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(e, "cannot read", &path)),
        }
    }

    fn write_token(&self, owner: &Identity, name: &str, token: &Token) -> Result<()> {
        let local = self.local()?;
        let path = local.hold_path(owner, name);
        local.make_parents(&path)?;
        let bytes = serde_json::to_vec(token).expect("a token serializes");
        durable::replace(&path, &bytes, Durability::Atomic)
    }

    fn remove_token(&self, owner: &Identity, name: &str) {
        if let Ok(local) = self.local() {
            let _ = durable::remove(&local.hold_path(owner, name));
        }
    }

    /// One acquire-try for `req`, registering `waiter` as an exclusive
    /// waiter when blocked.
    fn try_acquire(
        &self,
        req: &Request,
        lease: Duration,
        waiter: &str,
        not_after: Option<i64>,
    ) -> Result<Try> {
        let doing = "acquire a lock";
        let not_after = not_after.map(|ms| ms.to_string()).unwrap_or_default();
        let (ranks, other) = ranks();
        let ttl = req
            .ttl
            .map(|s| ((s * 1000.0).ceil() as u64).max(1).to_string())
            .unwrap_or_default();
        let meta = req
            .metadata
            .as_ref()
            .map(Value::to_string)
            .unwrap_or_default();
        let reply = self.lock_script(
            doing,
            ACQUIRE,
            lease,
            &[
                &req.name,
                &holder_id(&req.owner),
                req.kind.as_str(),
                &ttl,
                &meta,
                waiter,
                &ranks,
                &other.to_string(),
                &fresh_epoch(),
                &not_after,
            ],
        )?;
        let r = items(&reply);
        match (r.first().map(text).as_deref(), r) {
            (Some("granted"), [_, token, epoch, already, upgraded, _kind, now, lapsed, lock]) => {
                let snap = snapshot_of(lock).ok_or_else(|| bad_reply(doing))?;
                let lapsed = strings(lapsed)
                    .chunks(2)
                    .filter(|c| c.len() == 2)
                    .map(|c| (c[0].clone(), c[1].clone()))
                    .collect();
                Ok(Try::Granted {
                    token: u64::try_from(int(token)).unwrap_or(0),
                    epoch: text(epoch),
                    already: int(already) == 1,
                    upgraded: int(upgraded) == 1,
                    lapsed,
                    record: RedisBackend::record_of(&snap, int(now)),
                })
            }
            (Some("blocked"), [_, kind, holders, waiters, now]) => Ok(Try::Blocked {
                kind: LockType::parse(&text(kind)).ok(),
                holders: scored(holders),
                waiters: scored(waiters),
                now: int(now),
            }),
            (Some("hierarchy"), [_, held, _rank]) => Ok(Try::Hierarchy { held: text(held) }),
            (Some("late"), [_, now]) => Ok(Try::Late { now: int(now) }),
            _ => Err(bad_reply(doing)),
        }
    }

    /// Reads `names` (none: every lock), live holders only.
    fn snapshots(&self, names: &[&str]) -> Result<(i64, Vec<Snapshot>)> {
        let doing = "read the locks";
        let reply = self.lock_script(doing, READ, local::DEFAULT_LEASE, names)?;
        let [now, locks] = items(&reply) else {
            return Err(bad_reply(doing));
        };
        let mut out = Vec::new();
        for l in items(locks) {
            out.push(snapshot_of(l).ok_or_else(|| bad_reply(doing))?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((int(now), out))
    }

    /// Takes over from `ids`, holders of `name` seen dead on this host.
    fn drop_dead(&self, name: &str, owner: &Identity, ids: &[String]) -> Result<Vec<String>> {
        let me = holder_id(owner);
        let mut args: Vec<&str> = vec![name, &me];
        args.extend(ids.iter().map(String::as_str));
        let reply = self.lock_script(
            "take over from a dead holder",
            DROP,
            local::DEFAULT_LEASE,
            &args,
        )?;
        Ok(strings(&reply))
    }

    /// The holders of `ids` that run on this host and have exited, with why.
    fn dead_here(ids: impl IntoIterator<Item = String>) -> Vec<(String, &'static str)> {
        ids.into_iter()
            .filter_map(|id| {
                let who = parse_holder_id(&id)?;
                let why = if who.is_local() { who.death() } else { None }?;
                Some((id, why))
            })
            .collect()
    }

    /// `WAIT n timeout` when `WFSTATE_REDIS_REPLICAS` asks for replicas:
    /// whether that many confirmed the writes so far.
    pub(crate) fn confirm_replicas(&self, doing: &str) -> Result<()> {
        let Some(n) = replicas()? else {
            return Ok(());
        };
        // Half the read timeout: the reply arrives before the socket gives up.
        let ms = (self.timeout.as_millis() / 2).max(1) as u64;
        let got: i64 = self.with(doing, |c| redis::cmd("WAIT").arg(n).arg(ms).query(c))?;
        if got < i64::from(n) {
            return Err(Error::new(
                Kind::Network,
                format!(
                    "redis {}: {doing}: {got} of {n} replicas confirmed within {}ms (WFSTATE_REDIS_REPLICAS)",
                    self.shown, ms
                ),
            )
            .hint("check the replicas (INFO replication), or lower WFSTATE_REDIS_REPLICAS"));
        }
        Ok(())
    }

    fn record_of(snap: &Snapshot, now: i64) -> Record {
        let lease_ms = local::lease().unwrap_or(local::DEFAULT_LEASE).as_millis() as i64;
        let holders = snap
            .holders
            .iter()
            .filter_map(|h| holder_of(h, now))
            .collect();
        let waiters = snap
            .waiters
            .iter()
            .filter_map(|(id, lapses)| {
                Some(Waiter {
                    id: parse_holder_id(id)?,
                    kind: LockType::Exclusive,
                    // Its last renewal: an entry lasts one lease.
                    since: ms_rfc3339(lapses - lease_ms),
                })
            })
            .collect();
        // When it last changed, as a file record's `timestamp` is; a lock
        // stamped by no script of this version: its latest grant.
        let changed = snap.changed.or_else(|| {
            snap.holders
                .iter()
                .filter_map(|h| h.meta.get("acquired_ms").and_then(Value::as_i64))
                .max()
        });
        Record {
            name: snap.name.clone(),
            kind: snap.kind.unwrap_or(LockType::Exclusive),
            timestamp: ms_rfc3339(changed.unwrap_or(now)),
            holders,
            waiters,
        }
    }
}

/// `WFSTATE_REDIS_REPLICAS`: how many replicas must confirm each grant and
/// write (exit 4 for a value that is not a count).
pub(crate) fn replicas() -> Result<Option<u32>> {
    match std::env::var("WFSTATE_REDIS_REPLICAS") {
        Ok(v) if !v.trim().is_empty() => match v.trim().parse::<u32>() {
            Ok(0) => Ok(None),
            Ok(n) => Ok(Some(n)),
            Err(_) => Err(Error::validation(format!(
                "bad WFSTATE_REDIS_REPLICAS '{}'",
                v.escape_debug()
            ))
            .hint("give the number of replicas that must confirm each write, such as 1")),
        },
        _ => Ok(None),
    }
}

/// Server ms as RFC 3339 (µs, UTC).
fn ms_rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// A [`Holder`] from what the server keeps: its `ttl` the `--ttl` cap in
/// seconds; a lease has no field of its own in the record.
fn holder_of(h: &Held, _now: i64) -> Option<Holder> {
    let id = parse_holder_id(&h.id)?;
    let acquired_ms = h.meta.get("acquired_ms").and_then(Value::as_i64);
    let ttl = match (
        acquired_ms,
        h.meta.get("ttl_end_ms").and_then(Value::as_i64),
    ) {
        (Some(a), Some(e)) => Some((e - a) as f64 / 1000.0),
        _ => None,
    };
    Some(Holder {
        id,
        acquired: h
            .meta
            .get("acquired")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| acquired_ms.map(ms_rfc3339))
            .unwrap_or_default(),
        acquired_boottime: None,
        ttl,
        metadata: h.meta.get("metadata").filter(|m| !m.is_null()).cloned(),
    })
}

/// Who a holder id is, for people: `pid P on host H (holder id ID)`.
pub(crate) fn describe_holder(id: &str) -> String {
    match parse_holder_id(id) {
        Some(who) => format!("pid {} on host {} (holder id {id})", who.pid, who.host),
        None => format!("holder id {id}"),
    }
}

/// The wake channel of one lock: a second connection subscribed to
/// `wake:N`, read in poll(2) beside the signals of [`Interrupts`].
struct Wakes {
    sock: Sock,
}

enum Sock {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Sock {
    fn io(&mut self) -> &mut dyn ReadWrite {
        match self {
            Sock::Tcp(s) => s,
            Sock::Unix(s) => s,
        }
    }
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Sock::Tcp(s) => s.as_fd(),
            Sock::Unix(s) => s.as_fd(),
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// One RESP command.
fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl Wakes {
    /// Subscribes to `channel`: returns once the server confirmed it, so a
    /// publish after this returns is never missed.
    fn subscribe(url: &str, timeout: Duration, channel: &str) -> redis::RedisResult<Wakes> {
        use redis::{ConnectionAddr, IntoConnectionInfo};
        let info = url.into_connection_info()?;
        let mut sock = match info.addr() {
            ConnectionAddr::Tcp(host, port) => {
                let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), *port))?
                    .next()
                    .ok_or_else(|| std::io::Error::other("no address"))?;
                let s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
                s.set_read_timeout(Some(timeout))?;
                s.set_nodelay(true)?;
                Sock::Tcp(s)
            }
            ConnectionAddr::Unix(path) => {
                let s = std::os::unix::net::UnixStream::connect(path)?;
                s.set_read_timeout(Some(timeout))?;
                Sock::Unix(s)
            }
            _ => return Err(std::io::Error::other("no TLS in this build").into()),
        };
        let settings = info.redis_settings();
        let mut out = Vec::new();
        if let Some(pass) = settings.password() {
            match settings.username() {
                Some(user) => out.extend(resp(&[b"AUTH", user.as_bytes(), pass.as_bytes()])),
                None => out.extend(resp(&[b"AUTH", pass.as_bytes()])),
            }
        }
        out.extend(resp(&[b"SUBSCRIBE", channel.as_bytes()]));
        sock.io().write_all(&out)?;
        // Until the confirmation `*3 subscribe CHANNEL :1` has arrived
        // (a message may follow it at once: the try after this looks anyway).
        let confirmed = format!(
            "*3\r\n$9\r\nsubscribe\r\n${}\r\n{channel}\r\n:1\r\n",
            channel.len()
        )
        .into_bytes();
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        while !got
            .windows(confirmed.len())
            .any(|w| w == confirmed.as_slice())
        {
            let n = sock.io().read(&mut buf)?;
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
            got.extend_from_slice(&buf[..n]);
            if got.starts_with(b"-") {
                let line = String::from_utf8_lossy(&got).trim().to_string();
                return Err(std::io::Error::other(line).into());
            }
        }
        match &sock {
            Sock::Tcp(s) => s.set_nonblocking(true)?,
            Sock::Unix(s) => s.set_nonblocking(true)?,
        }
        Ok(Wakes { sock })
    }

    /// Blocks until a message, a signal of `interrupts`, or `until`.
    /// `Ok(true)`: a message; an error: the subscription is gone (the
    /// caller subscribes again before it waits again).
    fn wait(&mut self, interrupts: Option<&Interrupts>, until: Instant) -> std::io::Result<bool> {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let ts = Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            let sock_fd = self.sock.fd();
            let mut fds = vec![PollFd::new(&sock_fd, PollFlags::IN)];
            let sig_fd = interrupts.map(AsFd::as_fd);
            if let Some(fd) = &sig_fd {
                fds.push(PollFd::new(fd, PollFlags::IN));
            }
            match poll(&mut fds, Some(&ts)) {
                Ok(0) => return Ok(false),
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let data = !fds[0].revents().is_empty();
            let signal = fds.get(1).is_some_and(|f| !f.revents().is_empty());
            if data {
                // Drain: any message only says "look again".
                let mut buf = [0u8; 4096];
                loop {
                    match self.sock.io().read(&mut buf) {
                        // Closed by the server: subscribe again (and look).
                        Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                return Ok(true);
            }
            if signal {
                return Ok(false);
            }
        }
    }
}

impl LockRegistry for RedisBackend {
    fn list(&self) -> Result<Vec<Entry>> {
        let (now, snaps) = self.snapshots(&[])?;
        Ok(snaps
            .iter()
            .map(|s| Entry {
                name: s.name.clone(),
                record: Ok(RedisBackend::record_of(s, now)),
            })
            .collect())
    }

    fn read(&self, name: &str) -> Result<Option<Record>> {
        name::validate(name)?;
        let (now, snaps) = self.snapshots(&[name])?;
        Ok(snaps.first().map(|s| RedisBackend::record_of(s, now)))
    }

    fn acquire(&self, req: &Request, log: &mut WaitLog) -> Result<Acquired> {
        name::validate(&req.name)?;
        if let Some(ttl) = req.ttl
            && !(ttl > 0.0 && ttl.is_finite())
        {
            return Err(Error::validation("bad TTL: it must be more than 0 seconds")
                .hint("give a duration such as 30, 0.5 or 10m"));
        }
        let lease = local::lease()?;
        let deadline = log.started + req.timeout;
        let waiter = holder_id(&Identity::current());
        let mut wakes: Option<Wakes> = None;
        let mut interrupts: Option<Interrupts> = None;
        let mut asked_signals = false;
        let mut takeovers = Vec::new();
        let mut registered = false;
        let mut round = 0u32;
        // The server's time at the last reply, and when it was read here.
        let mut server_at: Option<(i64, Instant)> = None;
        let channel = self.keys.key(&format!("wake:{}", req.name));
        crate::debug::log(|| format!("lock key {}", self.keys.key(&format!("lock:{}", req.name))));
        loop {
            // A shared request never registers; an exclusive one only once
            // it has had to wait (then at every try, which renews the entry).
            let as_waiter = if registered { waiter.as_str() } else { "" };
            // The latest server time this try may be granted at: the
            // server's time at the last reply, moved on by what passed
            // here since, plus half the reply's timeout (after that this
            // client may have given up on the reply, exit 8). The first
            // try knows no server time: no bound.
            let not_after = server_at.map(|(ms, at): (i64, Instant)| {
                ms + (at.elapsed() + self.timeout / 2).as_millis() as i64
            });
            let outcome = self.try_acquire(req, lease, as_waiter, not_after)?;
            let (kind, holders, waiters, now) = match outcome {
                Try::Granted {
                    token,
                    epoch,
                    already,
                    upgraded,
                    lapsed,
                    record,
                } => {
                    log.waited = log.started.elapsed();
                    for (id, reason) in lapsed {
                        takeovers.push(Takeover {
                            stale_pid: parse_holder_id(&id).map_or(0, |i| i.pid),
                            reason: if reason == "ttl-expired" {
                                "ttl-expired"
                            } else {
                                "lease-expired"
                            },
                        });
                    }
                    let grant = Grant {
                        token,
                        epoch,
                        already,
                        upgraded,
                        record,
                    };
                    return self.granted(req, log, grant, takeovers);
                }
                Try::Hierarchy { held } => {
                    self.withdraw(req, &waiter, registered);
                    return Err(name::hierarchy_error(req.owner.pid, &held, &req.name));
                }
                Try::Late { now } => {
                    // Still here to read it: try again, bounded anew.
                    server_at = Some((now, Instant::now()));
                    if Instant::now() >= deadline {
                        self.withdraw(req, &waiter, registered);
                        log.waited = log.started.elapsed();
                        return Err(timeout_error(req, None, &[], &[]));
                    }
                    continue;
                }
                Try::Blocked {
                    kind,
                    holders,
                    waiters,
                    now,
                } => (kind, holders, waiters, now),
            };
            server_at = Some((now, Instant::now()));
            let ids: Vec<Identity> = holders
                .iter()
                .filter_map(|(id, _)| parse_holder_id(id))
                .collect();
            for who in &ids {
                if !log.holders.contains(&who.pid) {
                    log.holders.push(who.pid);
                }
            }
            // A holder of this host whose process has exited: taken over
            // now, as on files, not at the end of its lease.
            let dead = RedisBackend::dead_here(holders.iter().map(|(id, _)| id.clone()));
            if !dead.is_empty() {
                let gone: Vec<String> = dead.iter().map(|(id, _)| id.clone()).collect();
                for id in self.drop_dead(&req.name, &req.owner, &gone)? {
                    let why = dead.iter().find(|(d, _)| *d == id).map_or("dead", |d| d.1);
                    takeovers.push(Takeover {
                        stale_pid: parse_holder_id(&id).map_or(0, |i| i.pid),
                        reason: why,
                    });
                }
                continue;
            }
            // A waiter of this host whose process has exited (SIGKILLed
            // while it waited) leaves its entry at once, not after a lease.
            let dead_waiters: Vec<String> =
                RedisBackend::dead_here(waiters.iter().map(|(id, _)| id.clone()))
                    .into_iter()
                    .map(|(id, _)| id)
                    .collect();
            if !dead_waiters.is_empty() {
                for w in &dead_waiters {
                    self.lock_script("drop a dead waiter", WAITER, lease, &[&req.name, w, ""])?;
                }
                continue;
            }
            // A shared request that queues behind a writer says so.
            let writers: Vec<String> = waiters
                .iter()
                .map(|(id, _)| id.clone())
                .filter(|w| req.kind == LockType::Shared && *w != waiter)
                .collect();
            round += 1;
            if crate::debug::enabled() {
                let blocked = blocked_text(kind, &holders, &writers);
                crate::lock::manager::debug_round(&req.name, round, &blocked, log);
            }
            if Instant::now() >= deadline {
                self.withdraw(req, &waiter, registered);
                log.waited = log.started.elapsed();
                if crate::debug::enabled() {
                    let blocked = blocked_text(kind, &holders, &writers);
                    crate::lock::manager::debug_timed_out(req, log, &blocked);
                }
                return Err(timeout_error(req, kind, &holders, &writers));
            }
            // From the first wait on, SIGINT, SIGTERM and SIGHUP only wake
            // the waiter, which leaves the waiters before it ends by them.
            if log.attend.signals && !asked_signals {
                asked_signals = true;
                interrupts = Interrupts::block().ok();
                log.note_ignored_sigint(&req.name, deadline);
            }
            if let Some(i) = &interrupts
                && i.take().is_some()
            {
                self.withdraw(req, &waiter, registered);
                log.waited = log.started.elapsed();
                return Err(crate::lock::manager::interrupted_error(&req.name));
            }
            if req.kind == LockType::Exclusive && !registered {
                registered = true;
                continue;
            }
            if wakes.is_none() {
                // Subscribed before the next try: no release is missed.
                wakes = Some(self.subscribe(&channel)?);
                continue;
            }
            if log.line_due() {
                let line = self.waiting_line(&req.name, &holders, writers.first());
                log.announce(&line);
            }
            // Until a wake, the earliest end of a lease (or of a writer's
            // entry a shared request queues behind: a killed writer's entry
            // lapses unannounced), the deadline, and the renewal of our
            // waiter entry (half a lease).
            let earliest = holders
                .iter()
                .chain(waiters.iter().filter(|_| req.kind == LockType::Shared))
                .map(|(_, e)| *e)
                .min()
                .unwrap_or(i64::MAX);
            let to_end = Duration::from_millis(u64::try_from(earliest - now).unwrap_or(0) + 1);
            let mut until = deadline.min(Instant::now() + to_end);
            if registered {
                until = until.min(Instant::now() + lease / 2);
            }
            let until = log.wake_by(until);
            let w = wakes.as_mut().expect("subscribed above");
            match w.wait(interrupts.as_ref(), until) {
                Ok(_) => {}
                Err(_) => wakes = None,
            }
            if let Some(i) = &interrupts
                && i.take().is_some()
            {
                self.withdraw(req, &waiter, registered);
                log.waited = log.started.elapsed();
                return Err(crate::lock::manager::interrupted_error(&req.name));
            }
        }
    }

    fn release(&self, name: &str, owner: &Identity, force: bool) -> Result<Released> {
        self.release_holder(name, owner, force, None)
    }

    fn leased(&self) -> bool {
        true
    }

    fn release_holder(
        &self,
        name: &str,
        owner: &Identity,
        force: bool,
        holder: Option<&str>,
    ) -> Result<Released> {
        name::validate(name)?;
        let started = Instant::now();
        crate::debug::log(|| format!("lock key {}", self.keys.key(&format!("lock:{name}"))));
        let doing = "release a lock";
        let me = holder_id(owner);
        let reply = self.lock_script(
            doing,
            RELEASE,
            local::DEFAULT_LEASE,
            &[
                name,
                &me,
                if force { "1" } else { "" },
                holder.unwrap_or(""),
            ],
        )?;
        let r = items(&reply);
        match (r.first().map(text).as_deref(), r) {
            (Some("released"), [_, removed]) => {
                let removed = strings(removed);
                if removed.contains(&me) {
                    self.remove_token(owner, name);
                }
                crate::lock::manager::debug_release(name, owner, !removed.is_empty(), started);
                Ok(Released {
                    held: !removed.is_empty(),
                    forced_pids: removed
                        .iter()
                        .filter(|id| **id != me)
                        .filter_map(|id| parse_holder_id(id).map(|i| i.pid))
                        .collect(),
                })
            }
            (Some("other"), [_, kind, first]) => {
                // Whatever this owner held is gone: its token goes too, so
                // its later writes do not present a hold it lost.
                self.remove_token(owner, name);
                let first = text(first);
                Err(Error::new(
                    Kind::PermissionDenied,
                    format!(
                        "cannot release lock '{name}': it is held {} by {}, not by pid {}",
                        text(kind),
                        describe_holder(&first),
                        owner.pid
                    ),
                )
                .hint(format!(
                    "release it from the shell that holds it (--owner PID), or remove that hold with 'lock-manager release {name} --force --holder {first}'"
                )))
            }
            (Some("absent"), _) => Err(Error::general(format!(
                "cannot release lock '{name}' for holder id {}: it does not hold it",
                holder.unwrap_or("")
            ))
            .hint(format!("see who does with 'lock-manager list' (holder ids in --json); 'lock-manager release {name} --force' removes every holder"))),
            (Some("none"), _) => {
                self.remove_token(owner, name);
                crate::lock::manager::debug_release(name, owner, false, started);
                Ok(Released::default())
            }
            _ => Err(bad_reply(doing)),
        }
    }

    fn check(&self, name: &str) -> Result<Check> {
        name::validate(name)?;
        Ok(Check::of(self.read(name)?.as_ref()))
    }

    fn clean(&self, _force: bool) -> Result<Cleaned> {
        let (_, snaps) = self.snapshots(&[])?;
        let mut cleaned = Cleaned::default();
        let me = Identity::current();
        for s in &snaps {
            let dead = RedisBackend::dead_here(s.holders.iter().map(|h| h.id.clone()));
            if dead.is_empty() {
                continue;
            }
            let ids: Vec<String> = dead.into_iter().map(|(id, _)| id).collect();
            let removed = self.drop_dead(&s.name, &me, &ids)?;
            if removed.len() == s.holders.len() {
                cleaned.removed.push(s.name.clone());
            } else {
                cleaned.pruned += removed.len();
            }
        }
        Ok(cleaned)
    }

    fn remove_stale(&self, name: &str) -> Result<bool> {
        let (_, snaps) = self.snapshots(&[name])?;
        let Some(s) = snaps.first() else {
            return Ok(false);
        };
        let dead = RedisBackend::dead_here(s.holders.iter().map(|h| h.id.clone()));
        if dead.is_empty() || dead.len() < s.holders.len() {
            return Ok(false);
        }
        let ids: Vec<String> = dead.into_iter().map(|(id, _)| id).collect();
        let removed = self.drop_dead(name, &Identity::current(), &ids)?;
        Ok(removed.len() == s.holders.len())
    }

    fn status(&self) -> Result<Status> {
        self.list().map(Status::of)
    }
}

impl RedisBackend {
    /// Refuses (exit 4) a request of owner `pid` (holder id `me`) for lock
    /// `name` when it holds a lock ranked after `name` and not `name`
    /// itself: the rule of `acquire`, for the `state` transactions of
    /// `state-manager` and `error-recovery`. One round trip.
    pub(crate) fn check_hierarchy(&self, name: &str, me: &str, pid: u32) -> Result<()> {
        let (ranks, other) = ranks();
        let reply = self.lock_script(
            "check the lock hierarchy",
            HIERARCHY,
            local::DEFAULT_LEASE,
            &[name, me, &ranks, &other.to_string()],
        )?;
        match items(&reply) {
            [held, _rank] => Err(name::hierarchy_error(pid, &text(held), name)),
            _ => Ok(()),
        }
    }

    /// Waits until no live holder of lock `state` but `me` (a holder id)
    /// is in the way: a write without a token of its own. A holder of this
    /// host whose process is gone is taken over; exit 2 at `deadline`. On
    /// a terminal, a wait longer than a second says who holds the lock,
    /// then when it got it, as `acquire` and the file transaction do.
    pub(crate) fn await_state(&self, me: &str, deadline: Instant) -> Result<()> {
        let lease = local::lease()?;
        let waiter = holder_id(&Identity::current());
        let mut log = WaitLog::attended(Attend {
            signals: false,
            progress: Progress::IfTerminal,
        });
        let mut listed = false;
        let result = self.await_state_listed(me, deadline, lease, &waiter, &mut listed, &mut log);
        if listed {
            let _ = self.lock_script("leave the waiters", WAITER, lease, &["state", &waiter, ""]);
        }
        if result.is_ok() {
            log.waited = log.started.elapsed();
            log.say_got("state");
        }
        result
    }

    /// The "waiting for lock" line of a wait for `name` blocked by
    /// `holders` (or queued `behind` an exclusive waiter): each with its
    /// command and since when it holds the lock (one read of the lock, once
    /// per wait), and for a process of another host, that host and its
    /// holder id.
    fn waiting_line(
        &self,
        name: &str,
        holders: &[(String, i64)],
        behind: Option<&String>,
    ) -> String {
        let acquired: Vec<(String, String)> = self
            .snapshots(&[name])
            .ok()
            .and_then(|(_, snaps)| snaps.into_iter().next())
            .map(|snap| {
                snap.holders
                    .into_iter()
                    .filter_map(|h| Some((h.id, h.meta.get("acquired")?.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        let one = |id: &String| {
            let since = acquired
                .iter()
                .find(|(h, _)| h == id)
                .map(|(_, a)| a.as_str());
            match parse_holder_id(id) {
                Some(who) if who.is_local() => held_by(&who, since),
                Some(who) => format!(
                    "{} on host {} (holder id {id})",
                    held_by(&who, since),
                    who.host
                ),
                None => format!("holder id {id}"),
            }
        };
        let shown: Vec<String> = holders.iter().map(|(id, _)| one(id)).collect();
        waiting_line_of(name, &shown, behind.map(one))
    }

    /// [`RedisBackend::await_state`], listed as an exclusive waiter of
    /// `state` (`listed`) from its first wait on, so that new shared
    /// requests queue behind the write, as on files.
    fn await_state_listed(
        &self,
        me: &str,
        deadline: Instant,
        lease: Duration,
        waiter: &str,
        listed: &mut bool,
        log: &mut WaitLog,
    ) -> Result<()> {
        let channel = self.keys.key("wake:state");
        let mut wakes: Option<Wakes> = None;
        let mut round = 0u32;
        loop {
            let (now, snaps) = self.snapshots(&["state"])?;
            let others: Vec<(String, i64)> = snaps
                .first()
                .map(|s| {
                    s.holders
                        .iter()
                        .filter(|h| h.id != me)
                        .map(|h| (h.id.clone(), h.lease_end))
                        .collect()
                })
                .unwrap_or_default();
            if others.is_empty() {
                return Ok(());
            }
            let dead = RedisBackend::dead_here(others.iter().map(|(id, _)| id.clone()));
            if !dead.is_empty() {
                let ids: Vec<String> = dead.into_iter().map(|(id, _)| id).collect();
                self.drop_dead("state", &Identity::current(), &ids)?;
                continue;
            }
            round += 1;
            if crate::debug::enabled() {
                let blocked = blocked_text(Some(LockType::Exclusive), &others, &[]);
                crate::lock::manager::debug_round("state", round, &blocked, log);
            }
            if Instant::now() >= deadline {
                return Err(Error::new(
                    Kind::LockTimeout,
                    format!(
                        "timed out after {}s waiting for lock 'state'",
                        crate::lock::manager::trim_secs(self.cfg.lock_timeout)
                    ),
                )
                .because(format!("held by {}", describe_holder(&others[0].0)))
                .hint(format!("wait longer (LOCK_TIMEOUT), or have its owner release it; 'lock-manager release state --force --holder {}' removes a hold whose owner is gone", others[0].0)));
            }
            // Listed (again: the entry lasts one lease) before the wait.
            self.lock_script(
                "wait for lock 'state'",
                WAITER,
                lease,
                &["state", waiter, "1"],
            )?;
            *listed = true;
            let Some(w) = wakes.as_mut() else {
                wakes = Some(self.subscribe(&channel)?);
                continue;
            };
            if log.line_due() {
                let line = self.waiting_line("state", &others, None);
                log.announce(&line);
            }
            let earliest = others.iter().map(|(_, e)| *e).min().unwrap_or(i64::MAX);
            let to_end = Duration::from_millis(u64::try_from(earliest - now).unwrap_or(0) + 1);
            let until = log.wake_by(
                deadline
                    .min(Instant::now() + to_end)
                    .min(Instant::now() + lease / 2),
            );
            if w.wait(None, until).is_err() {
                wakes = None;
            }
        }
    }

    /// A subscription to `channel`.
    fn subscribe(&self, channel: &str) -> Result<Wakes> {
        Wakes::subscribe(&self.url, self.timeout, channel).map_err(|e| {
            Error::new(
                Kind::Network,
                format!("redis {}: cannot subscribe to {channel}: {e}", self.shown),
            )
            .hint("check that the server is up and accepts SUBSCRIBE")
        })
    }

    /// Leaves the waiters of `req.name` (a request that gave up), waking
    /// the shared requests that queued behind it.
    fn withdraw(&self, req: &Request, waiter: &str, registered: bool) {
        if registered {
            let lease = local::DEFAULT_LEASE;
            let _ = self.lock_script("leave the waiters", WAITER, lease, &[&req.name, waiter, ""]);
        }
    }

    /// After a grant: the token file, the keeper, the replicas.
    fn granted(
        &self,
        req: &Request,
        log: &mut WaitLog,
        grant: Grant,
        takeovers: Vec<Takeover>,
    ) -> Result<Acquired> {
        let Grant {
            token,
            epoch,
            already,
            upgraded,
            record,
        } = grant;
        if let Err(e) = self.confirm_replicas("confirm the grant") {
            // Not on enough replicas: a failover could lose it, so it is
            // given back rather than trusted.
            if !already {
                let _ = self.release_holder(&req.name, &req.owner, false, None);
            }
            return Err(e.hint(
                "the grant was released; check the replicas (INFO replication), or lower WFSTATE_REDIS_REPLICAS",
            ));
        }
        let tok = Token {
            epoch: epoch.clone(),
            token,
        };
        self.write_token(&req.owner, &req.name, &tok)?;
        // The owner keeps no process of ours: its keeper renews the lease
        // and gives the hold back when it exits. Without one the hold would
        // lapse in a lease, so it is not kept.
        if let Err(e) = super::keeper::ensure(self, &req.owner) {
            if !already {
                let _ = self.release_holder(&req.name, &req.owner, false, None);
            }
            return Err(e);
        }
        log.say_got(&req.name);
        crate::lock::manager::debug_granted(req, log);
        Ok(Acquired {
            record,
            takeovers,
            already_held: already,
            upgraded,
            fencing: Some((token, epoch)),
        })
    }
}

/// What the acquire script granted.
struct Grant {
    token: u64,
    epoch: String,
    already: bool,
    upgraded: bool,
    record: Record,
}

/// What keeps a request waiting, for people: the holders of `kind`, and
/// the exclusive waiters (`writers`) a shared request queues behind.
fn blocked_text(kind: Option<LockType>, holders: &[(String, i64)], writers: &[String]) -> String {
    let kind = kind.map_or("", LockType::as_str);
    let mut held = match holders {
        [] => String::new(),
        [(h, _)] => format!("held {kind} by {}", describe_holder(h)),
        [(h, _), more @ ..] => format!(
            "held {kind} by {} and {} more",
            describe_holder(h),
            more.len()
        ),
    };
    if let Some(w) = writers.first() {
        let pid = parse_holder_id(w).map_or(0, |i| i.pid);
        if !held.is_empty() {
            held.push_str(", and ");
        }
        held.push_str(&format!("queued behind an exclusive waiter (pid {pid})"));
    }
    held
}

/// The error of a request not granted within its timeout, naming the
/// holders and the id `release --force --holder` takes.
fn timeout_error(
    req: &Request,
    kind: Option<LockType>,
    holders: &[(String, i64)],
    writers: &[String],
) -> Error {
    let held = blocked_text(kind, holders, writers);
    let first = holders.first().map_or("ID", |(h, _)| h.as_str());
    Error::new(
        Kind::LockTimeout,
        format!(
            "timed out after {}s waiting for lock '{}'",
            crate::lock::manager::trim_secs(req.timeout),
            req.name
        ),
    )
    .because(held)
    .hint(format!(
        "see 'lock-manager list'; wait longer (TIMEOUT or LOCK_TIMEOUT), or remove a hold whose owner is gone: 'lock-manager release {} --force --holder {first}'",
        req.name
    ))
}
