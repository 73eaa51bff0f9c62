//! `state-manager benchmark` on Redis: N reads, N writes (whole document)
//! and N sets (read-modify-write) against a scratch namespace of the same
//! server, `NS.benchmark-PID`, each with its audit event in that
//! namespace's stream, then the scratch keys are deleted. The live state
//! is only read. Locks are this host's files on every backend, so the lock
//! cycle is left to the file benchmark.

use std::time::Instant;

use serde_json::{Value, json};

use super::RedisBackend;
use crate::audit::Recorder;
use crate::backend::{Access, Backend, StateStore};
use crate::error::Result;
use crate::state::selfbench::{Bench, Stats};
use crate::state::{document, path};

impl RedisBackend {
    /// See the module docs. Exit 4 for N out of 1..=100000.
    pub fn benchmark(&self, operations: usize, detail: &mut Value) -> Result<Bench> {
        crate::state::selfbench::check_operations(operations, detail)?;
        let doc = self
            .load_bytes()
            .ok()
            .flatten()
            .and_then(|b| self.parse(&b).ok())
            .filter(|d| crate::state::schema::violations(d).is_empty())
            .unwrap_or_else(document::fresh);
        let ns = format!("{}.benchmark-{}", self.ns, std::process::id());
        let scratch = Scratch(self.for_namespace(&ns));
        let s = &scratch.0;
        let bytes = serde_json::to_vec_pretty(&doc)
            .expect("JSON serializes")
            .len()
            + 1;
        let access = Access::default();
        let target = s.location();
        // Every commit below runs inside a recorder of its own, so the
        // commit script logs it (in the scratch stream) and never takes the
        // live `benchmark` event for its own.
        let rec = Recorder::start(&self.cfg, "state-manager", "write", target.clone());
        let r = s.transact(
            access,
            "benchmark",
            &mut |_| Ok(Some(doc.clone())),
            &mut |_| {},
        );
        rec.finish(&r, json!({}));
        r?;
        let (mut reads, mut writes, mut sets) = (vec![], vec![], vec![]);
        for _ in 0..operations {
            let t = Instant::now();
            let read = s.load_bytes()?.ok_or_else(|| s.missing())?;
            s.parse(&read)?;
            s.append_event("read", &target)?;
            reads.push(t.elapsed());
        }
        for i in 0..operations {
            let t = Instant::now();
            let rec = Recorder::start(&self.cfg, "state-manager", "write", target.clone());
            let mut next = doc.clone();
            next["phase"] = json!(format!("benchmark-write-{i}"));
            let r = s.transact(
                access,
                "benchmark",
                &mut |_| Ok(Some(next.clone())),
                &mut |_| {},
            );
            rec.finish(&r, json!({}));
            r?;
            writes.push(t.elapsed());
        }
        for i in 0..operations {
            let t = Instant::now();
            let rec = Recorder::start(&self.cfg, "state-manager", "set", target.clone());
            let r = s.update(
                access,
                "set",
                &mut |d| {
                    path::set(
                        d,
                        &[path::Seg::Key("phase".into())],
                        json!(format!("benchmark-set-{i}")),
                    )
                },
                &mut |_| {},
            );
            rec.finish(&r, json!({}));
            r?;
            sets.push(t.elapsed());
        }
        let results = vec![
            ("read", Stats::of(reads)),
            ("write", Stats::of(writes)),
            ("set", Stats::of(sets)),
        ];
        let mut map = serde_json::Map::new();
        for (kind, st) in &results {
            map.insert((*kind).into(), st.to_json());
        }
        detail["results"] = Value::Object(map);
        Ok(Bench {
            operations,
            dir: s.keys.key("").into(),
            state_bytes: bytes,
            results,
        })
    }

    /// Appends one event of this process to this namespace's stream, as
    /// the audit sink does for the namespace in use.
    fn append_event(&self, op: &str, target: &str) -> Result<()> {
        let event = json!({
            "ts": crate::audit::event::now_rfc3339_micros(), "tool": "state-manager",
            "op": op, "target": target, "pid": std::process::id(), "ppid": 0,
            "host": crate::audit::event::hostname(), "user": crate::audit::event::user_name(),
            "duration_ms": 0.0, "exit_code": 0, "outcome": "ok", "detail": {},
        });
        let key = self.keys.key("audit");
        self.with("append an audit event", |c| {
            super::audit::append_script()
                .key(&key)
                .arg(event.to_string())
                .arg(super::audit::MAX_EVENTS)
                .invoke::<()>(c)
        })
    }
}

/// The scratch namespace; its keys are deleted when dropped.
struct Scratch(RedisBackend);

impl Drop for Scratch {
    fn drop(&mut self) {
        let keys = super::STATE_KEYS.map(|k| self.0.keys.key(k));
        let _ = self.0.with("remove the benchmark's keys", |c| {
            redis::cmd("DEL").arg(&keys).query::<()>(c)
        });
    }
}
