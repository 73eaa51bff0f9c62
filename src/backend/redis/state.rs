//! The state on Redis: the hash `state` and its backups (see the module
//! docs of [`super`]).
//!
//! A transaction is optimistic: one round trip reads the document, its
//! revision and the server's `TIME`; the change is computed here, stamped
//! with that time, sealed and checked against the schema; then one script
//! ([`COMMIT`]) writes it only if the revision is still the one read, keeps
//! the replaced version as a backup, prunes backups by count and age and
//! appends the audit event. A conflict computes the change again on the new
//! document, at most [`ATTEMPTS`] times, then exits 2. Every transaction
//! carries an id stored as `last_txn`: a commit whose reply was lost (a
//! timeout after sending) is found applied when sent again, never applied
//! twice.
//!
//! Lock `state` is on the server too (src/backend/redis/locks.rs). A writer
//! whose shell holds it (`lock-manager acquire state` left a token on this
//! host) presents its fencing token: the commit script refuses it (exit 6)
//! when the server's epoch changed, when the hold is no longer live (its
//! lease lapsed: the message names who took over), or when the token is
//! not the live hold's or is older than the last one used; a write it
//! accepts stores the token as `fence`. A writer without a token waits
//! while another live owner holds `state` (the commit script says so; the
//! wait is on `wake:state`, exit 2 at LOCK_TIMEOUT), then computes its
//! change again. With `WFSTATE_REDIS_REPLICAS=N`, a commit is confirmed by
//! `WAIT N`; an unconfirmed one exits 8 (it may be lost on failover).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::RedisBackend;
use super::local::Seen;
use crate::backend::Backend;
use crate::backend::state::{Initialized, Recovered, Transform};
use crate::backend::{Access, StateStore};
use crate::config::MAX_INPUT_BYTES;
use crate::error::{Error, Kind, Result};
use crate::state::backup::{self, Backup, Order, Retention};
use crate::state::{Commit, commands, document, store};

/// How often a transaction computes its change again after a conflict.
const ATTEMPTS: u32 = 64;

/// Shared by the scripts: keeps the current document as backup
/// `ARGV[7] .. SEQ .. '-' .. ARGV[8] .. '.json'` and prunes to `ARGV[6]`
/// backups, none made before `ARGV[12]` but the newest.
/// KEYS: state, backups, backups:seq, backups:made.
const KEEP: &str = r"
local function prune(keep, cutoff)
  local n = redis.call('ZCARD', KEYS[3])
  if n > keep then
    for _, g in ipairs(redis.call('ZRANGE', KEYS[3], 0, n - keep - 1)) do
      redis.call('HDEL', KEYS[2], g); redis.call('ZREM', KEYS[3], g); redis.call('ZREM', KEYS[4], g)
    end
  end
  local newest = redis.call('ZRANGE', KEYS[3], -1, -1)[1]
  for _, g in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', '(' .. cutoff)) do
    if g ~= newest then
      redis.call('HDEL', KEYS[2], g); redis.call('ZREM', KEYS[3], g); redis.call('ZREM', KEYS[4], g)
    end
  end
end
local function keep_current(now)
  local old = redis.call('HGET', KEYS[1], 'doc')
  if not old then return '' end
  local seq = redis.call('HINCRBY', KEYS[1], 'backup_seq', 1)
  local name = ARGV[7] .. string.format('%06d', seq) .. '-' .. ARGV[8] .. '.json'
  redis.call('HSET', KEYS[2], name, old)
  redis.call('ZADD', KEYS[3], seq, name)
  redis.call('ZADD', KEYS[4], now, name)
  prune(math.max(tonumber(ARGV[6]), 1), ARGV[12])
  return name
end
local t = redis.call('TIME')
local now = t[1] .. string.rep('0', 6 - #t[2]) .. t[2]
";

/// Writes ARGV[2] as revision ARGV[3] if the state is at revision ARGV[1]
/// (`-1`: no state). ARGV: 4 lineage, 5 transaction id, 6 backups to keep
/// (`0`: keep no backup of the replaced version), 7-8 the backup name,
/// 9 the audit event (empty: none), 10 the stream's MAXLEN, 11 the
/// document's SHA-256, 12 the age cutoff (µs), 13 the writer's holder id,
/// 14-15 the epoch and fencing token of its hold of lock `state` ('': it
/// presents none), 16 the namespace's key prefix. KEYS 5: the audit stream.
/// Returns {'ok', backup} | {'dup', rev} | {'conflict', rev} | {'held',
/// holder, lease end} (another live holder has lock `state`; the writer
/// presents no token) | {'fence-epoch', epoch} | {'fence-lost', new holder}
/// | {'fence-old', last token used} | {'hierarchy', lock...} (the writer,
/// not a holder of `state`, holds these locks, which rank after it).
const COMMIT: &str = r#"
local cur = redis.call('HMGET', KEYS[1], 'rev', 'last_txn')
if cur[2] and cur[2] == ARGV[5] then return {'dup', cur[1]} end
local now_ms = math.floor(tonumber(now) / 1000)
local holders = ARGV[16] .. 'lock:state:h'
if ARGV[14] ~= '' then
  local ep = redis.call('GET', ARGV[16] .. 'epoch')
  if ep ~= ARGV[14] then return {'fence-epoch', ep or ''} end
  local e = redis.call('ZSCORE', holders, ARGV[13])
  if not e or tonumber(e) <= now_ms then
    local lost = redis.call('HGET', ARGV[16] .. 'lock:state:lost', ARGV[13])
    local by = lost and string.match(lost, '^%d+ (.*)$') or ''
    if by == '' then
      by = redis.call('ZRANGEBYSCORE', holders, '(' .. now_ms, '+inf', 'LIMIT', 0, 1)[1] or ''
    end
    return {'fence-lost', by}
  end
  local m = redis.call('HGET', ARGV[16] .. 'lock:state:m', ARGV[13]) or ''
  local live = tonumber(string.match(m, '"token":(%d+)') or '0')
  local last = tonumber(redis.call('HGET', KEYS[1], 'fence') or '0')
  if tonumber(ARGV[15]) < last or tonumber(ARGV[15]) ~= live then
    return {'fence-old', tostring(math.max(last, live))}
  end
else
  -- The hierarchy: a writer that holds a lock ranked after `state` (any
  -- other lock) but not `state` itself could deadlock with a holder of
  -- `state` that waits for it.
  local mine = ARGV[13] ~= '' and redis.call('ZSCORE', holders, ARGV[13])
  if ARGV[13] ~= '' and not (mine and tonumber(mine) > now_ms) then
    local later = {'hierarchy'}
    for _, l in ipairs(redis.call('SMEMBERS', ARGV[16] .. 'owner:' .. ARGV[13])) do
      local e = l ~= 'state' and redis.call('ZSCORE', ARGV[16] .. 'lock:' .. l .. ':h', ARGV[13])
      if e and tonumber(e) > now_ms then later[#later + 1] = l end
    end
    if #later > 1 then return later end
  end
  for _, h in ipairs(redis.call('ZRANGEBYSCORE', holders, '(' .. now_ms, '+inf')) do
    if h ~= ARGV[13] then return {'held', h, redis.call('ZSCORE', holders, h)} end
  end
end
local rev = cur[1] or '-1'
if rev ~= ARGV[1] then return {'conflict', rev} end
local name = ''
if rev ~= '-1' and ARGV[6] ~= '0' then name = keep_current(now) end
redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'rev', ARGV[3], 'lineage', ARGV[4],
  'last_txn', ARGV[5], 'sum', ARGV[11], 'modified', now)
if ARGV[14] ~= '' then redis.call('HSET', KEYS[1], 'fence', ARGV[15]) end
if ARGV[9] ~= '' then
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[10], '*', 'us', now, 'event', ARGV[9])
end
return {'ok', name}
"#;

/// `backup`: keeps the current document (ARGV 6-8, 12 as for COMMIT).
const BACKUP: &str = r"
if redis.call('HEXISTS', KEYS[1], 'doc') == 0 then return '' end
return keep_current(now)
";

/// `migrate-backend`: stores ARGV[2] as backup ARGV[13] with SEQ ARGV[14],
/// made at ARGV[15] (µs); the SEQ counter moves past it.
const PUT_BACKUP: &str = r"
redis.call('HSET', KEYS[2], ARGV[13], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[14], ARGV[13])
redis.call('ZADD', KEYS[4], ARGV[15], ARGV[13])
local cur = tonumber(redis.call('HGET', KEYS[1], 'backup_seq') or '0')
if tonumber(ARGV[14]) > cur then redis.call('HSET', KEYS[1], 'backup_seq', ARGV[14]) end
";

/// `cleanup`: removes backup ARGV[13]; returns how many were removed.
const REMOVE_BACKUP: &str = r"
redis.call('ZREM', KEYS[3], ARGV[13]); redis.call('ZREM', KEYS[4], ARGV[13])
return redis.call('HDEL', KEYS[2], ARGV[13])
";

/// `init` / `recover` over a document that does not parse: keeps it in
/// `corrupt` (KEYS[6]) as ARGV[13] before the commit replaces it.
const KEEP_CORRUPT: &str = r"
local old = redis.call('HGET', KEYS[1], 'doc')
if old then redis.call('HSET', KEYS[6], ARGV[13], old) end
redis.call('HSET', KEYS[1], 'rev', '-2')
";

/// `doc`, `rev`, `sum` and `lineage` of the state hash.
type Fields = (
    Option<Vec<u8>>,
    Option<String>,
    Option<String>,
    Option<String>,
);
/// The locks a writer's owner index lists, and its lease of `state`, if any.
type Owned = Option<(Vec<String>, Option<f64>)>;
/// Members of a sorted set with their scores.
type Scored = Vec<(String, f64)>;

/// What one round trip read: the document, its revision and checksum, and
/// the server's time.
struct Snapshot {
    doc: Option<Vec<u8>>,
    /// `-1`: no state.
    rev: String,
    sum: Option<String>,
    /// The server's time, µs since the epoch.
    now_us: i64,
}

impl Snapshot {
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.now_us).unwrap_or_else(Utc::now)
    }
}

/// One script argument.
fn arg(v: impl ToString) -> Vec<u8> {
    v.to_string().into_bytes()
}

/// A new transaction id: this process and a random part.
fn txn_id() -> String {
    format!("{}-{}", std::process::id(), &document::new_lineage()[..18])
}

impl RedisBackend {
    fn snapshot(&self) -> Result<Snapshot> {
        self.snapshot_for(None)
    }

    /// [`Self::snapshot`], and in the same round trip, for a transaction
    /// of `fence`'s writer: refuses it (exit 4) before its change is
    /// computed when the writer holds a lock ranked after `state` and not
    /// `state` — as the file transaction does before it reads. Only an
    /// owner that holds some other lock costs a second round trip; the
    /// commit script checks again, atomically.
    fn snapshot_for(&self, fence: Option<&Fence>) -> Result<Snapshot> {
        let key = self.keys.key("state");
        let seen = self.seen()?;
        let holder = fence.map_or("", |f| f.holder.as_str());
        let (((doc, rev, sum, lineage), (secs, micros)), owned): ((Fields, (i64, i64)), Owned) =
            self.with("read the state", |c| {
                let mut p = redis::pipe();
                p.cmd("HMGET")
                    .arg(&key)
                    .arg("doc")
                    .arg("rev")
                    .arg("sum")
                    .arg("lineage")
                    .cmd("TIME");
                if holder.is_empty() {
                    return p.query(c).map(|r| (r, None));
                }
                p.cmd("SMEMBERS")
                    .arg(self.keys.key(&format!("owner:{holder}")))
                    .cmd("ZSCORE")
                    .arg(self.keys.key("lock:state:h"))
                    .arg(holder);
                let (fields, time, names, mine): (Fields, (i64, i64), Vec<String>, Option<f64>) =
                    p.query(c)?;
                Ok(((fields, time), Some((names, mine))))
            })?;
        if let (Some(f), Some((names, mine))) = (fence, owned) {
            let now_ms = (secs * 1000 + micros / 1000) as f64;
            let holds_state = mine.is_some_and(|end| end > now_ms);
            if !holds_state && names.iter().any(|n| n != "state") {
                self.check_hierarchy("state", &f.holder, f.pid)?;
            }
        }
        self.check_revision(&seen, lineage.as_deref(), rev.as_deref())?;
        Ok(Snapshot {
            rev: rev.unwrap_or_else(|| "-1".into()),
            doc,
            sum,
            now_us: secs * 1_000_000 + micros,
        })
    }

    /// What this host had seen of the state, read before the server is
    /// asked ([`super::local::Local::seen`]).
    fn seen(&self) -> Result<Seen> {
        Ok(self.local()?.seen())
    }

    /// Refuses (exit 3) a state whose revision is below what this host had
    /// seen of the same lineage before asking
    /// ([`super::local::Local::check_revision`]).
    fn check_revision(
        &self,
        before: &Seen,
        lineage: Option<&str>,
        rev: Option<&str>,
    ) -> Result<()> {
        let (Some(lineage), Some(rev)) = (lineage, rev.and_then(|r| r.parse::<i64>().ok())) else {
            return Ok(());
        };
        self.local()?.check_revision(
            before,
            lineage,
            rev,
            &self.place("state").display().to_string(),
        )
    }

    /// Where things of this backend are, as messages and reports name them.
    fn place(&self, key: &str) -> PathBuf {
        PathBuf::from(format!("{} {}", self.shown, self.keys.key(key)))
    }

    /// The document of `snap`: `None` for no state; exit 3 when it does not
    /// parse or fails the checksum it was stored with.
    fn document(&self, snap: &Snapshot) -> Result<Option<Value>> {
        let Some(bytes) = &snap.doc else {
            return Ok(None);
        };
        self.check_sum(bytes, snap.sum.as_deref())?;
        self.parse(bytes).map(Some)
    }

    fn check_sum(&self, bytes: &[u8], sum: Option<&str>) -> Result<()> {
        match sum {
            Some(s) if s != document::sha256_hex(bytes) => Err(Error::corruption(format!(
                "the state in {} fails its checksum (stored {}, content is {})",
                self.location(),
                &s[..s.len().min(12)],
                &document::sha256_hex(bytes)[..12]
            ))
            .hint("something changed the key outside wfstate; run 'state-manager recover' to restore the newest valid backup")),
            _ => Ok(()),
        }
    }

    /// Stamps `new` (the next version after `old`) with the server's time,
    /// seals it and checks it; returns its bytes.
    fn prepare(&self, new: &mut Value, old: Option<&Value>, snap: &Snapshot) -> Result<Vec<u8>> {
        let now = snap
            .now()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        document::stamp_at(new, old, now)?;
        // The server's revision only grows, even over a document that did
        // not parse (recover, repair): a host that saw the replaced one
        // would take a lower one for lost writes.
        if let Ok(floor) = snap.rev.parse::<u64>()
            && document::revision(new) <= floor
            && let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut)
        {
            m.insert("revision".into(), json!(floor + 1));
        }
        document::seal(new);
        store::check_schema(new)?;
        let mut bytes = serde_json::to_vec_pretty(new).expect("a JSON value always serializes");
        bytes.push(b'\n');
        if bytes.len() as u64 > MAX_INPUT_BYTES {
            return Err(
                crate::durable::too_large(bytes.len() as u64, MAX_INPUT_BYTES)
                    .with_path(self.place("state")),
            );
        }
        Ok(bytes)
    }

    /// Runs the commit script over `snap`, backing up the replaced version
    /// unless `snap` is marked as over a document kept in `corrupt` (its
    /// revision `-2`), checking `fence` (the writer's hold of lock `state`).
    #[allow(clippy::too_many_arguments)]
    fn commit(
        &self,
        snap: &Snapshot,
        new: &Value,
        bytes: &[u8],
        reason: &str,
        retention: Retention,
        txn: &str,
        fence: &Fence,
    ) -> Result<Committed> {
        let revision = document::revision(new);
        let event = crate::audit::event::commit_event(json!({
            "revision": revision,
            "txn": txn,
            "backend": "redis",
        }))
        .unwrap_or_default();
        let keep_n = if snap.rev == "-2" {
            0
        } else {
            retention.keep.max(1)
        };
        let (epoch, token) = match &fence.token {
            Some(t) => (t.epoch.clone(), t.token.to_string()),
            None => (String::new(), String::new()),
        };
        let reply: Vec<String> = self.eval(
            "commit the state",
            COMMIT,
            &snap.rev,
            vec![
                bytes.to_vec(),
                arg(revision),
                arg(document::lineage(new).unwrap_or("")),
                arg(txn),
                arg(keep_n),
                arg(backup_prefix(snap)),
                arg(backup::sanitize_reason(reason)),
                event,
                arg(super::audit::MAX_EVENTS),
                arg(document::sha256_hex(bytes)),
                arg(age_cutoff(snap, retention)),
                arg(&fence.holder),
                arg(epoch),
                arg(token),
                arg(self.keys.key("")),
            ],
        )?;
        let field = |i: usize| reply.get(i).cloned().unwrap_or_default();
        match field(0).as_str() {
            "conflict" => Ok(Committed::Conflict),
            "held" => Ok(Committed::Held { holder: field(1) }),
            "hierarchy" => Err(later_lock_error(fence.pid, &reply[1..])),
            "fence-epoch" => Err(fence.refused(
                "the server lost its data since this hold was granted (its epoch changed)",
            )),
            "fence-lost" => Err(fence.refused(&match field(1).as_str() {
                "" => "its lease lapsed and nobody holds it now".to_string(),
                by => format!(
                    "lock 'state' was taken over by {} after this hold's lease lapsed",
                    super::locks::describe_holder(by)
                ),
            })),
            "fence-old" => Err(fence.refused(&format!(
                "its fencing token is older than the last one used ({})",
                field(1)
            ))),
            // "dup": an earlier send of this same transaction was applied.
            _ => {
                self.confirm_replicas("confirm the write").map_err(|e| {
                    e.hint("the write is on the primary but not on enough replicas: it may be lost on failover; read the state back after checking the replicas")
                })?;
                // What this host has now seen.
                if let (Some(lineage), Ok(local)) = (document::lineage(new), self.local()) {
                    local.remember(lineage, revision as i64);
                }
                Ok(Committed::Done(Commit {
                    revision,
                    backup: (!field(1).is_empty() && field(0) == "ok")
                        .then(|| self.backup_place(&field(1))),
                }))
            }
        }
    }

    /// Runs script `body` (after [`KEEP`]) with the common KEYS, `rev` as
    /// ARGV[1] and `args` as ARGV[2..].
    fn eval<T: redis::FromRedisValue>(
        &self,
        doing: &str,
        body: &str,
        rev: &str,
        args: Vec<Vec<u8>>,
    ) -> Result<T> {
        let script = redis::Script::new(&format!("{KEEP}{body}"));
        let keys = super::STATE_KEYS.map(|k| self.keys.key(k));
        self.with(doing, |c| {
            let mut inv = script.prepare_invoke();
            for k in &keys {
                inv.key(k);
            }
            inv.arg(rev);
            for a in &args {
                inv.arg(a.as_slice());
            }
            inv.invoke(c)
        })
    }

    fn backup_place(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("{}/{name}", self.keys.key("backups")))
    }

    /// Keeps a document that does not parse in `corrupt`, marking the state
    /// so that the next commit expects revision `-2`.
    fn keep_corrupt(&self, snap: &mut Snapshot) -> Result<String> {
        let name = format!("state-{}.corrupt", snap.now().format("%Y%m%dT%H%M%S%.6fZ"));
        let mut args = vec![Vec::new(); 11];
        args.push(arg(&name));
        self.eval::<()>(
            "keep the corrupt state aside",
            KEEP_CORRUPT,
            &snap.rev,
            args,
        )?;
        snap.rev = "-2".into();
        Ok(format!("{}/{name}", self.keys.key("corrupt")))
    }

    /// Commits `next` over `snap` as one transaction, the corrupt document
    /// kept aside first when `old` did not parse. Exit 2 on a conflict.
    #[allow(clippy::too_many_arguments)]
    fn replace(
        &self,
        mut snap: Snapshot,
        old: Option<&Value>,
        mut next: Value,
        reason: &str,
        retention: Retention,
        corrupt: bool,
        fence: &Fence,
    ) -> Result<(Commit, Option<String>)> {
        let bytes = self.prepare(&mut next, old, &snap)?;
        let aside = if corrupt {
            Some(self.keep_corrupt(&mut snap)?)
        } else {
            None
        };
        match self.commit(&snap, &next, &bytes, reason, retention, &txn_id(), fence)? {
            Committed::Done(commit) => Ok((commit, aside)),
            Committed::Conflict => Err(conflict(1)),
            Committed::Held { holder, .. } => Err(Error::new(
                Kind::LockTimeout,
                format!(
                    "lock 'state' was taken by {} during this change",
                    super::locks::describe_holder(&holder)
                ),
            )
            .hint("try again once it is released")),
        }
    }

    /// The backups, newest first, with their contents' sizes.
    fn backups(&self) -> Result<Vec<Backup>> {
        let (seq_key, made_key, key) = (
            self.keys.key("backups:seq"),
            self.keys.key("backups:made"),
            self.keys.key("backups"),
        );
        let (by_seq, by_made): (Scored, Scored) = self.with("list backups", |c| {
            redis::pipe()
                .cmd("ZREVRANGE")
                .arg(&seq_key)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .cmd("ZRANGE")
                .arg(&made_key)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query(c)
        })?;
        let mut sizes: Vec<u64> = Vec::new();
        if !by_seq.is_empty() {
            sizes = self.with("list backups", |c| {
                let mut p = redis::pipe();
                for (name, _) in &by_seq {
                    p.cmd("HSTRLEN").arg(&key).arg(name);
                }
                p.query(c)
            })?;
        }
        Ok(by_seq
            .into_iter()
            .zip(sizes)
            .map(|((name, seq), size)| {
                let made_us = by_made
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or(0, |(_, us)| *us as i64);
                let made = DateTime::from_timestamp_micros(made_us).unwrap_or_default();
                Backup {
                    path: self.backup_place(&name),
                    name,
                    made,
                    modified: made.into(),
                    size,
                    order: Order::Seq(seq as u64),
                }
            })
            .collect())
    }

    fn missing_error(&self) -> Error {
        Error::general(format!("no state in {}", self.location()))
            .hint("run 'state-manager init' first, or check WFSTATE_BACKEND and WFSTATE_NAMESPACE")
    }

    /// What a write of `access.owner` presents: its holder id and, when
    /// `acquire state` left it a token on this host, that token. With
    /// `wait_first` and no token, first waits until no other live holder
    /// has lock `state` (exit 2 at `deadline`); a transaction does not (its
    /// commit says when one does: [`Committed::Held`]).
    pub(super) fn fence(&self, access: Access<'_>, deadline: Option<Instant>) -> Result<Fence> {
        let fence = match access.owner {
            None => Fence::default(),
            Some(owner) => Fence {
                holder: super::local::holder_id(owner),
                pid: owner.pid,
                token: self.token_file(owner, "state")?,
            },
        };
        if let Some(deadline) = deadline
            && fence.token.is_none()
        {
            // As on files: refused at once (exit 4) when the owner holds a
            // lock ranked after `state`, whoever holds `state` now.
            if !fence.holder.is_empty() {
                self.check_hierarchy("state", &fence.holder, fence.pid)?;
            }
            self.await_state(&fence.holder, deadline)?;
        }
        Ok(fence)
    }
}

/// `state-YYYYMMDDTHHMMSSZ-`, the server's time: the name of a backup made
/// by a commit over `snap`, before its SEQ.
fn backup_prefix(snap: &Snapshot) -> String {
    format!("state-{}-", snap.now().format("%Y%m%dT%H%M%SZ"))
}

/// Backups made before this (µs) are pruned, but the newest.
fn age_cutoff(snap: &Snapshot, retention: Retention) -> i64 {
    snap.now_us
        .saturating_sub(i64::try_from(retention.max_age.as_micros()).unwrap_or(i64::MAX))
}

/// What one commit did.
enum Committed {
    Done(Commit),
    /// The revision moved on: compute the change again.
    Conflict,
    /// Another live holder has lock `state` (and the writer has no token).
    Held {
        holder: String,
    },
}

/// What a write presents about its writer's hold of lock `state`.
#[derive(Default)]
pub(super) struct Fence {
    /// The writer's holder id ('' when the operation has no owner).
    holder: String,
    pid: u32,
    /// The token `acquire state` left on this host, if any.
    token: Option<super::locks::Token>,
}

impl Fence {
    /// The refusal of a write whose hold of `state` is no longer good.
    fn refused(&self, why: &str) -> Error {
        Error::new(
            Kind::PermissionDenied,
            format!(
                "refusing the write of pid {}, which acquired lock 'state': {why}",
                self.pid
            ),
        )
        .hint("nothing was written; release 'state' (lock-manager release state), acquire it again, and redo the change from a fresh read")
    }
}

/// The refusal (exit 4) of a `state` transaction by owner `pid`, which
/// holds the locks `held`, all ranked after `state`: the same words as a
/// refused `acquire` names the one ranked last.
pub(super) fn later_lock_error(pid: u32, held: &[String]) -> Error {
    let last = held
        .iter()
        .max_by_key(|l| (crate::lock::name::priority(l), l.as_str()))
        .map_or("?", String::as_str);
    crate::lock::name::hierarchy_error(pid, last, "state")
}

fn conflict(attempts: u32) -> Error {
    Error::new(
        Kind::LockTimeout,
        format!("the state kept changing under this transaction ({attempts} attempts)"),
    )
    .hint("other writers commit faster than this change can be computed: try again, or serialise them with 'lock-manager run state -- ...'")
}

impl StateStore for RedisBackend {
    fn init(&self, access: Access<'_>) -> Result<Initialized> {
        let fence = self.fence(access, Some(Instant::now() + self.cfg.lock_timeout))?;
        let snap = self.snapshot()?;
        let mut done = Initialized {
            path: self.location(),
            initialized: true,
            revision: 0,
            recovered_from: None,
            corrupt_kept_at: None,
        };
        match self.document(&snap) {
            Ok(None) => {
                let (commit, _) = self.replace(
                    snap,
                    None,
                    document::fresh(),
                    "init",
                    access.retention,
                    false,
                    &fence,
                )?;
                done.revision = commit.revision;
            }
            Ok(Some(doc)) => {
                store::check_schema(&doc).map_err(|e| {
                    e.hint("the state exists but is not valid: run 'state-manager migrate' (older documents) or 'state-manager repair'")
                })?;
                done.initialized = false;
                done.revision = document::revision(&doc);
            }
            Err(e) if e.code() == crate::exit::Code::StateCorruption => {
                let found =
                    commands::newest_valid(self.backups()?, None, |b| self.backup_bytes(b))?;
                let (next, reason) = match found {
                    Some((b, doc)) => {
                        done.recovered_from = Some(b.name);
                        (doc, "init-recover")
                    }
                    None => (document::fresh(), "init"),
                };
                let (commit, aside) =
                    self.replace(snap, None, next, reason, access.retention, true, &fence)?;
                done.corrupt_kept_at = aside;
                done.revision = commit.revision;
            }
            Err(e) => return Err(e),
        }
        Ok(done)
    }

    fn load_bytes(&self) -> Result<Option<Vec<u8>>> {
        let key = self.keys.key("state");
        let seen = self.seen()?;
        let (doc, rev, sum, lineage): Fields = self.with("read the state", |c| {
            redis::cmd("HMGET")
                .arg(&key)
                .arg("doc")
                .arg("rev")
                .arg("sum")
                .arg("lineage")
                .query(c)
        })?;
        self.check_revision(&seen, lineage.as_deref(), rev.as_deref())?;
        if let Some(bytes) = &doc {
            self.check_sum(bytes, sum.as_deref())?;
        }
        Ok(doc)
    }

    fn missing(&self) -> Error {
        self.missing_error()
    }

    fn parse(&self, bytes: &[u8]) -> Result<Value> {
        serde_json::from_slice(bytes).map_err(|e| {
            Error::corruption(format!("the state in {} does not parse", self.location()))
                .because(e)
                .hint("run 'state-manager recover' to restore the newest valid backup")
        })
    }

    fn transact(
        &self,
        access: Access<'_>,
        reason: &str,
        change: Transform<'_>,
        waited: &mut dyn FnMut(Duration),
    ) -> Result<Option<Commit>> {
        let deadline = Instant::now() + self.cfg.lock_timeout;
        let fence = self.fence(access, None)?;
        let txn = txn_id();
        let mut attempt = 0;
        while attempt < ATTEMPTS {
            attempt += 1;
            let snap = self.snapshot_for((attempt == 1).then_some(&fence))?;
            let old = self.document(&snap)?;
            let Some(mut next) = change(old.as_ref())? else {
                return Ok(None);
            };
            let bytes = self.prepare(&mut next, old.as_ref(), &snap)?;
            match self.commit(&snap, &next, &bytes, reason, access.retention, &txn, &fence)? {
                Committed::Done(commit) => {
                    crate::debug::log(|| {
                        format!(
                            "redis: committed revision {} (attempt {attempt})",
                            commit.revision
                        )
                    });
                    return Ok(Some(commit));
                }
                Committed::Held { .. } => {
                    // Another owner holds lock `state`: wait for it, then
                    // compute the change again on what it left.
                    attempt -= 1;
                    let at = Instant::now();
                    self.await_state(&fence.holder, deadline)?;
                    waited(at.elapsed());
                    continue;
                }
                Committed::Conflict => {}
            }
            // Someone committed in between: back off a little, then again.
            std::thread::sleep(Duration::from_micros(200 * u64::from(attempt.min(25))));
        }
        Err(conflict(ATTEMPTS))
    }

    fn list_backups(&self) -> Result<Vec<Backup>> {
        self.backups()
    }

    fn backup_bytes(&self, b: &Backup) -> Result<Vec<u8>> {
        let key = self.keys.key("backups");
        let bytes: Option<Vec<u8>> = self.with("read a backup", |c| {
            redis::cmd("HGET").arg(&key).arg(&b.name).query(c)
        })?;
        bytes.ok_or_else(|| {
            Error::general(format!("backup {} is gone", b.name))
                .hint("see 'state-manager list-backups'")
        })
    }

    fn remove_backup(&self, b: &Backup) -> Result<bool> {
        let mut args = vec![Vec::new(); 11];
        args.push(arg(&b.name));
        let n: u64 = self.eval("remove a backup", REMOVE_BACKUP, "", args)?;
        Ok(n > 0)
    }

    fn put_backup(&self, b: &Backup, bytes: &[u8]) -> Result<()> {
        let seq = match b.order {
            Order::Seq(n) => n,
            // A name of an earlier version: after every SEQ name here.
            Order::Legacy { .. } => 0,
        };
        let mut args = vec![bytes.to_vec()];
        args.resize(11, Vec::new());
        args.extend([arg(&b.name), arg(seq), arg(b.made.timestamp_micros())]);
        self.eval::<()>("store a backup", PUT_BACKUP, "", args)
    }

    fn backup(&self, reason: &str, retention: Retention) -> Result<PathBuf> {
        let snap = self.snapshot()?;
        // A backup that would not restore is no backup.
        self.document(&snap)?.ok_or_else(|| self.missing_error())?;
        let mut args = vec![Vec::new(); 4];
        args.extend([
            arg(retention.keep.max(1)),
            arg(backup_prefix(&snap)),
            arg(backup::sanitize_reason(reason)),
            Vec::new(),
            arg(0),
            Vec::new(),
            arg(age_cutoff(&snap, retention)),
        ]);
        let name: String = self.eval("make a backup", BACKUP, &snap.rev, args)?;
        if name.is_empty() {
            return Err(self.missing_error());
        }
        Ok(self.backup_place(&name))
    }

    fn recover(&self, access: Access<'_>, pattern: Option<&str>, force: bool) -> Result<Recovered> {
        let fence = self.fence(access, Some(Instant::now() + self.cfg.lock_timeout))?;
        let found = commands::newest_valid(self.backups()?, pattern, |b| self.backup_bytes(b))?;
        let Some((b, doc)) = found else {
            let what = match pattern {
                Some(p) => format!("no valid backup matches '{p}'"),
                None => "no valid backup to recover from".to_string(),
            };
            return Err(
                Error::corruption(format!("{what} in {}", self.location())).hint(
                    "see 'state-manager list-backups'; 'state-manager init' starts a fresh state",
                ),
            );
        };
        let snap = self.snapshot()?;
        let (old, corrupt) = match self.document(&snap) {
            Ok(old) => (old, false),
            Err(e) if e.code() == crate::exit::Code::StateCorruption => (None, true),
            Err(e) => return Err(e),
        };
        document::check_lineage(old.as_ref(), &doc, &format!("backup {}", b.name), force)?;
        let (commit, aside) = self.replace(
            snap,
            old.as_ref(),
            doc,
            "pre-recover",
            access.retention,
            corrupt,
            &fence,
        )?;
        Ok(Recovered {
            path: self.location(),
            recovered_from: b.name,
            revision: commit.revision,
            backup: commit.backup.map(|p| p.display().to_string()),
            corrupt_kept_at: aside,
        })
    }
}
