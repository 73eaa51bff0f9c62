//! Checkpoints on Redis: the hash `checkpoints` (id → the checkpoint as one
//! JSON value: its metadata, as `metadata.json` holds it on files, and the
//! state document) and the sorted set `checkpoints:seq` (id → SEQ, the
//! order). Ids are those of the file backend,
//! `checkpoint-YYYYMMDD-HHMMSSZ-SEQ-OPERATION`, the time the server's.
//!
//! A checkpoint holds the state document, checksummed in its metadata as
//! on files. The `.signals/` and `config/` folders are files of one host
//! and stay out of a shared checkpoint (the signals themselves are in the
//! document). Restoring is one commit script: the state put back as a new
//! revision, the version it replaces backed up, the audit event appended.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::RedisBackend;
use crate::backend::Backend;
use crate::backend::checkpoints::{Access, CheckpointStore, Pruned};
use crate::error::{Error, Result};
use crate::recovery::checkpoint::{
    Checkpoint, Cleaned, Created, Entry, Metadata, Order, Request, Verified, older_than,
};
use crate::recovery::restore::Restored;
use crate::state::document;

/// The state's file name inside a checkpoint, as on files.
const STATE: &str = "state.json";

impl RedisBackend {
    fn cp_place(&self, id: &str) -> PathBuf {
        PathBuf::from(format!("{}/{id}", self.keys.key("checkpoints")))
    }

    /// Every checkpoint's id, SEQ and JSON, newest first.
    fn checkpoint_values(&self) -> Result<Vec<(String, u64, Option<Value>)>> {
        let (seq_key, key) = (
            self.keys.key("checkpoints:seq"),
            self.keys.key("checkpoints"),
        );
        let ids: Vec<(String, f64)> = self.with("list checkpoints", |c| {
            redis::cmd("ZREVRANGE")
                .arg(&seq_key)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query(c)
        })?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let texts: Vec<Option<Vec<u8>>> = self.with("read checkpoints", |c| {
            let mut p = redis::pipe();
            for (id, _) in &ids {
                p.cmd("HGET").arg(&key).arg(id);
            }
            p.query(c)
        })?;
        Ok(ids
            .into_iter()
            .zip(texts)
            .map(|((id, seq), text)| {
                let v = text.and_then(|t| serde_json::from_slice(&t).ok());
                (id, seq as u64, v)
            })
            .collect())
    }

    fn checkpoint_of(&self, id: String, seq: u64, v: Option<&Value>) -> Checkpoint {
        let meta: Option<Metadata> = v.and_then(|v| serde_json::from_value(v["meta"].clone()).ok());
        let made = meta
            .as_ref()
            .and_then(|m| DateTime::parse_from_rfc3339(&m.timestamp).ok())
            .map_or_else(DateTime::<Utc>::default, |t| t.to_utc());
        Checkpoint {
            path: self.cp_place(&id),
            id,
            made,
            order: Order::Seq(seq),
            meta,
        }
    }

    fn checkpoint_json(&self, id: &str) -> Result<Value> {
        let key = self.keys.key("checkpoints");
        let text: Option<Vec<u8>> = self.with("read a checkpoint", |c| {
            redis::cmd("HGET").arg(&key).arg(id).query(c)
        })?;
        let text = text.ok_or_else(|| {
            Error::general(format!("checkpoint '{id}' is gone"))
                .hint("see 'error-recovery list' for the checkpoints there are")
        })?;
        serde_json::from_slice(&text).map_err(|e| {
            Error::corruption(format!(
                "checkpoint {id} in {} does not parse",
                self.location()
            ))
            .because(e)
            .hint("remove it with 'error-recovery cleanup' or restore another")
        })
    }

    fn not_found(&self, id: Option<&str>) -> Error {
        match id {
            None | Some("latest") => {
                Error::general(format!("no checkpoint to restore in {}", self.location()))
                    .hint("make one with 'error-recovery checkpoint OPERATION'")
            }
            Some(id) => Error::general(format!("no checkpoint '{}'", id.escape_debug()))
                .hint("see 'error-recovery list' for the checkpoints there are"),
        }
    }
}

impl CheckpointStore for RedisBackend {
    fn create(&self, req: &Request<'_>, access: Access<'_>) -> Result<Created> {
        let user_meta = req.check()?;
        // Part of the `state` transaction, as on files: not while another
        // owner holds lock `state` (the checkpoint would catch its change
        // half made), and refused at once (exit 4) for an owner holding a
        // lock ranked after `state`.
        self.fence(
            access,
            Some(std::time::Instant::now() + self.cfg.lock_timeout),
        )?;
        let bytes = crate::backend::StateStore::load_bytes(self)?
            .ok_or_else(|| crate::backend::StateStore::missing(self))?;
        let doc = crate::backend::StateStore::parse(self, &bytes).map_err(|e| {
            e.hint(
                "a checkpoint of an unreadable state is useless: run 'state-manager recover' first",
            )
        })?;
        let phase = req
            .phase
            .map(str::to_owned)
            .unwrap_or_else(|| doc["phase"].as_str().unwrap_or_default().to_owned());
        let (seq, (secs, micros)): (u64, (i64, i64)) = self.with("number a checkpoint", |c| {
            redis::pipe()
                .cmd("INCR")
                .arg(self.keys.key("checkpoints:next"))
                .cmd("TIME")
                .query(c)
        })?;
        let now =
            DateTime::from_timestamp_micros(secs * 1_000_000 + micros).unwrap_or_else(Utc::now);
        let id = format!(
            "checkpoint-{}-{seq:06}-{}",
            now.format("%Y%m%d-%H%M%SZ"),
            req.operation
        );
        let text = String::from_utf8(bytes).map_err(|_| {
            Error::corruption("the state is not UTF-8").hint("run 'state-manager recover'")
        })?;
        let meta = Metadata {
            id: id.clone(),
            operation: req.operation.to_string(),
            phase,
            timestamp: now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            pid: std::process::id(),
            hostname: crate::audit::event::hostname(),
            metadata: user_meta,
            revision: document::revision(&doc),
            folders: Vec::new(),
            files: BTreeMap::from([(STATE.to_string(), document::sha256_hex(text.as_bytes()))]),
        };
        let value = json!({ "meta": meta, "state": text });
        let (key, seq_key) = (
            self.keys.key("checkpoints"),
            self.keys.key("checkpoints:seq"),
        );
        self.with("store a checkpoint", |c| {
            redis::pipe()
                .atomic()
                .cmd("HSET")
                .arg(&key)
                .arg(&id)
                .arg(value.to_string())
                .ignore()
                .cmd("ZADD")
                .arg(&seq_key)
                .arg(seq)
                .arg(&id)
                .ignore()
                .query::<()>(c)
        })?;
        Ok(Created {
            path: self.cp_place(&id),
            id,
            operation: meta.operation,
            phase: meta.phase,
            files: meta.files.len(),
            revision: meta.revision,
        })
    }

    fn list(&self) -> Result<Vec<Checkpoint>> {
        Ok(self
            .checkpoint_values()?
            .into_iter()
            .map(|(id, seq, v)| self.checkpoint_of(id, seq, v.as_ref()))
            .collect())
    }

    fn entries(&self) -> Result<Vec<Entry>> {
        Ok(self
            .checkpoint_values()?
            .into_iter()
            .map(|(id, seq, v)| {
                let size = v
                    .as_ref()
                    .and_then(|v| v["state"].as_str())
                    .map_or(0, |s| s.len() as u64);
                let c = self.checkpoint_of(id, seq, v.as_ref());
                let valid = self.verify(&c).is_ok();
                Entry::of(c, size, valid)
            })
            .collect())
    }

    fn find(&self, id: Option<&str>) -> Result<Checkpoint> {
        let all = CheckpointStore::list(self)?;
        match id {
            None | Some("latest") => all.into_iter().next(),
            Some(id) => all.into_iter().find(|c| c.id == id),
        }
        .ok_or_else(|| self.not_found(id))
    }

    fn verify(&self, cp: &Checkpoint) -> Result<Verified> {
        let v = self.checkpoint_json(&cp.id)?;
        let bad = |what: String| {
            Error::corruption(format!(
                "checkpoint {} in {}: {what}",
                cp.id,
                self.location()
            ))
            .hint("restore another checkpoint, or remove this one")
        };
        let meta: Metadata = serde_json::from_value(v["meta"].clone())
            .map_err(|e| bad(format!("its metadata does not parse: {e}")))?;
        let state = v["state"]
            .as_str()
            .ok_or_else(|| bad("it holds no state".into()))?;
        let actual = document::sha256_hex(state.as_bytes());
        match meta.files.get(STATE) {
            Some(sum) if *sum == actual => {}
            Some(sum) => {
                return Err(bad(format!(
                    "{STATE} fails its checksum (recorded {}, content is {})",
                    &sum[..sum.len().min(12)],
                    &actual[..12]
                )));
            }
            None => return Err(bad(format!("its metadata does not list {STATE}"))),
        }
        Ok(Verified {
            meta,
            files: BTreeMap::from([(STATE.to_string(), state.as_bytes().to_vec())]),
        })
    }

    fn restore(&self, id: Option<&str>, access: Access<'_>, force: bool) -> Result<Restored> {
        let cp = CheckpointStore::find(self, id)?;
        let verified = self.verify(&cp)?;
        let doc: Value = serde_json::from_slice(&verified.files[STATE]).map_err(|e| {
            Error::corruption(format!("checkpoint {}: its state does not parse", cp.id)).because(e)
        })?;
        let mut waited = Duration::ZERO;
        let commit = crate::backend::StateStore::transact(
            self,
            access,
            "pre-restore",
            &mut |live| {
                document::check_lineage(live, &doc, &format!("checkpoint {}", cp.id), force)?;
                Ok(Some(doc.clone()))
            },
            &mut |w| waited = w,
        )?
        .expect("a restore always commits");
        Ok(Restored {
            id: cp.id,
            revision: commit.revision,
            backup: commit.backup,
            corrupt_kept_at: None,
            folders: Vec::new(),
            kept_at: None,
            removed: Vec::new(),
            lock_wait_ms: crate::audit::event::ms(waited),
        })
    }

    fn remove(&self, cp: &Checkpoint, _access: Access<'_>) -> Result<bool> {
        let (key, seq_key) = (
            self.keys.key("checkpoints"),
            self.keys.key("checkpoints:seq"),
        );
        let (gone, _): (u64, u64) = self.with("remove a checkpoint", |c| {
            redis::pipe()
                .atomic()
                .cmd("HDEL")
                .arg(&key)
                .arg(&cp.id)
                .cmd("ZREM")
                .arg(&seq_key)
                .arg(&cp.id)
                .query(c)
        })?;
        Ok(gone > 0)
    }

    fn cleanup(
        &self,
        max_age: Duration,
        keep: usize,
        dry_run: bool,
        access: Access<'_>,
    ) -> Result<Pruned> {
        let all = CheckpointStore::list(self)?;
        let total = all.len();
        let mut cleaned = Cleaned::default();
        for (i, c) in all.into_iter().enumerate() {
            if i < keep || !older_than(&c, max_age) {
                continue;
            }
            if dry_run || self.remove(&c, access)? {
                cleaned.checkpoints.push(c.id);
            }
        }
        Ok(Pruned {
            kept_count: total - cleaned.checkpoints.len(),
            cleaned,
            dry_run,
        })
    }

    fn adopt(&self, v: &Verified) -> Result<Created> {
        let state = v
            .files
            .get(STATE)
            .ok_or_else(|| Error::corruption(format!("checkpoint {} holds no state", v.meta.id)))?;
        let text = String::from_utf8(state.clone()).map_err(|_| {
            Error::corruption(format!("checkpoint {}: its state is not UTF-8", v.meta.id))
        })?;
        // Its SEQ, the number before the operation in its id.
        let seq: u64 = v
            .meta
            .id
            .rsplit_once('-')
            .and_then(|(head, _)| head.rsplit('-').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let mut meta = v.meta.clone();
        // The host's folders stay on the host (see the module docs).
        meta.files.retain(|k, _| k == STATE);
        meta.folders.clear();
        let value = json!({ "meta": meta, "state": text });
        let (key, seq_key, next) = (
            self.keys.key("checkpoints"),
            self.keys.key("checkpoints:seq"),
            self.keys.key("checkpoints:next"),
        );
        let added: bool = self.with("store a checkpoint", |c| {
            redis::cmd("HSETNX")
                .arg(&key)
                .arg(&meta.id)
                .arg(value.to_string())
                .query(c)
        })?;
        if !added {
            return Err(Error::general(format!(
                "checkpoint {} exists already in {}",
                meta.id,
                self.location()
            )));
        }
        self.with("store a checkpoint", |c| {
            redis::pipe()
                .cmd("ZADD").arg(&seq_key).arg(seq).arg(&meta.id).ignore()
                .cmd("EVAL")
                .arg("local n = tonumber(redis.call('GET', KEYS[1]) or '0'); if tonumber(ARGV[1]) > n then redis.call('SET', KEYS[1], ARGV[1]) end")
                .arg(1).arg(&next).arg(seq).ignore()
                .query::<()>(c)
        })?;
        Ok(Created {
            path: self.cp_place(&meta.id),
            id: meta.id.clone(),
            operation: meta.operation.clone(),
            phase: meta.phase.clone(),
            files: meta.files.len(),
            revision: meta.revision,
        })
    }

    fn interrupted_restore(&self) -> Option<String> {
        // A restore is one script: it cannot stop half-way.
        None
    }
}
