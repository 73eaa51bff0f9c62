//! `benchmark`: how fast the core operations run on this machine and this
//! filesystem, measured on a temporary copy of the state.
//!
//! It runs N reads, N writes (whole document), N sets (read-modify-write
//! under the `state` lock) and N lock cycles (an exclusive acquire and a
//! release of a named lock, as `lock-manager` records them), each with its
//! audit event, and prints operations per second and the p50/p95/max
//! latency per kind.
//!
//! The copy lives in `.benchmark-PID/` inside the state root, so the numbers
//! include the real filesystem's fsync cost (a copy in a tmpfs /tmp would
//! make durable writes look free); the folder has its own state file, lock
//! folder, backups and audit log, and is removed afterwards (a benchmark
//! killed before that leaves it for `cleanup --temp`). The live state,
//! locks, backups and audit log are only read: one `benchmark` event with
//! the results is appended to the live audit log.
//!
//! The figures are in-process: they leave out the start of a process
//! (a few hundred microseconds per command), which bench/ measures.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::backup::Retention;
use super::document;
use super::path::{self, Seg};
use super::store::Store;
use crate::audit::Recorder;
use crate::config::Config;
use crate::durable::{self, Durability};
use crate::error::{Error, Result};
use crate::lock::Identity;
use crate::lock::record::{self, Holder, LockType, Mutex, Record};

/// The most operations of each kind one run may ask for.
pub const MAX_OPERATIONS: usize = 100_000;

/// The benchmark's folder; removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Timings of one kind of operation.
#[derive(Clone, Debug)]
pub struct Stats {
    pub ops: usize,
    pub total: Duration,
    pub p50: Duration,
    pub p95: Duration,
    pub max: Duration,
}

impl Stats {
    pub fn of(mut samples: Vec<Duration>) -> Stats {
        samples.sort();
        let n = samples.len();
        let at = |q: usize| samples[((n * q).div_ceil(100)).clamp(1, n) - 1];
        Stats {
            ops: n,
            total: samples.iter().sum(),
            p50: at(50),
            p95: at(95),
            max: samples[n - 1],
        }
    }

    pub fn per_sec(&self) -> f64 {
        self.ops as f64 / self.total.as_secs_f64().max(1e-9)
    }

    pub fn to_json(&self) -> Value {
        use crate::audit::event::ms;
        json!({
            "ops": self.ops,
            "ops_per_sec": (self.per_sec() * 10.0).round() / 10.0,
            "p50_ms": ms(self.p50),
            "p95_ms": ms(self.p95),
            "max_ms": ms(self.max),
            "total_ms": ms(self.total),
        })
    }
}

/// Makes the benchmark's folder in `root` (or the system temp folder when
/// the root does not exist), removing a leftover of an earlier process
/// that had our pid.
fn scratch(root: &Path) -> Result<Scratch> {
    let base = if root.is_dir() {
        root.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!(".benchmark-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| Error::io(e, "cannot create the benchmark folder", &dir))?;
    Ok(Scratch(dir))
}

fn time(samples: &mut Vec<Duration>, f: impl FnOnce() -> Result<()>) -> Result<()> {
    let t = Instant::now();
    f()?;
    samples.push(t.elapsed());
    Ok(())
}

/// Runs `n` operations of each kind against the state in `cfg`.
fn run(cfg: &Config, retention: Retention, n: usize) -> Result<Vec<(&'static str, Stats)>> {
    let store = Store::open(cfg, retention)?;
    let me = Identity::current();
    let target = cfg.state_file.display().to_string();
    let base = store.load()?;
    let (mut reads, mut writes, mut sets, mut locks) = (vec![], vec![], vec![], vec![]);
    for _ in 0..n {
        time(&mut reads, || {
            let rec = Recorder::start(cfg, "state-manager", "read", target.clone());
            let r = store.load().map(drop);
            rec.finish(&r, json!({}));
            r
        })?;
    }
    for i in 0..n {
        time(&mut writes, || {
            let rec = Recorder::start(cfg, "state-manager", "write", target.clone());
            let r = store.begin(Some(&me)).and_then(|txn| {
                let old = txn.load_opt()?;
                let mut new = base.clone();
                new["phase"] = json!(format!("benchmark-write-{i}"));
                txn.commit(old.as_ref(), new, "benchmark").map(drop)
            });
            rec.finish(&r, json!({}));
            r
        })?;
    }
    for i in 0..n {
        time(&mut sets, || {
            let rec = Recorder::start(cfg, "state-manager", "set", target.clone());
            let r = store.begin(Some(&me)).and_then(|txn| {
                let old = txn.load()?;
                let mut new = old.clone();
                path::set(
                    &mut new,
                    &[Seg::Key("phase".into())],
                    json!(format!("benchmark-set-{i}")),
                )?;
                txn.commit(Some(&old), new, "set").map(drop)
            });
            rec.finish(&r, json!({}));
            r
        })?;
    }
    let lock_path = record::record_path(cfg, "benchmark");
    for _ in 0..n {
        time(&mut locks, || {
            let rec = Recorder::start(cfg, "lock-manager", "acquire", "benchmark");
            let r = (|| {
                let _m = Mutex::lock(cfg, "benchmark")?;
                record::load(&lock_path)?;
                let now = crate::audit::event::now_rfc3339_micros();
                record::store(
                    &lock_path,
                    &Record {
                        name: "benchmark".into(),
                        kind: LockType::Exclusive,
                        timestamp: now.clone(),
                        holders: vec![Holder {
                            id: me.clone(),
                            acquired: now,
                            acquired_boottime: None,
                            ttl: None,
                            metadata: None,
                        }],
                        waiters: vec![],
                    },
                )
            })();
            rec.finish(&r, json!({"lock_type": "exclusive", "wait_ms": 0.0}));
            r?;
            let rec = Recorder::start(cfg, "lock-manager", "release", "benchmark");
            let r = (|| {
                let _m = Mutex::lock(cfg, "benchmark")?;
                record::load(&lock_path)?;
                record::remove(&lock_path)
            })();
            rec.finish(&r, json!({"forced": false}));
            r
        })?;
    }
    Ok(vec![
        ("read", Stats::of(reads)),
        ("write", Stats::of(writes)),
        ("set", Stats::of(sets)),
        ("lock", Stats::of(locks)),
    ])
}

/// Exit 4 for N out of 1..=100000; records N in `detail`.
pub fn check_operations(operations: usize, detail: &mut Value) -> Result<()> {
    if !(1..=MAX_OPERATIONS).contains(&operations) {
        return Err(
            Error::validation(format!("cannot run {operations} operations of each kind"))
                .hint(format!("pass --operations from 1 to {MAX_OPERATIONS}")),
        );
    }
    detail["operations"] = json!(operations);
    Ok(())
}

/// `benchmark [--operations N] [--json]`: see the module docs. Exit 4 for N
/// out of 1..=100000.
pub fn benchmark(live: &Store<'_>, operations: usize, detail: &mut Value) -> Result<Bench> {
    {
        check_operations(operations, detail)?;
        // Only read: a missing or damaged state is benchmarked as a fresh one.
        let doc = live
            .load_opt()
            .ok()
            .flatten()
            .filter(|d| super::schema::violations(d).is_empty())
            .unwrap_or_else(document::fresh);
        let dir = scratch(&live.cfg.root)?;
        let mut cfg = Config::new(dir.0.join(".workflow-state.json"));
        cfg.audit_log = dir.0.join(".workflow-audit.jsonl");
        cfg.lock_timeout = live.cfg.lock_timeout;
        cfg.run_id = None;
        let mut bytes = serde_json::to_vec_pretty(&doc).expect("JSON serializes");
        bytes.push(b'\n');
        durable::replace(&cfg.state_file, &bytes, Durability::Durable)?;
        let results = run(&cfg, live.retention, operations)?;
        let mut map = Map::new();
        for (kind, s) in &results {
            map.insert((*kind).into(), s.to_json());
        }
        detail["results"] = Value::Object(map.clone());
        Ok(Bench {
            operations,
            dir: dir.0.clone(),
            state_bytes: bytes.len(),
            results,
        })
    }
}

/// What `benchmark` measured.
pub struct Bench {
    pub operations: usize,
    /// Where the copy was (removed by now).
    pub dir: PathBuf,
    pub state_bytes: usize,
    pub results: Vec<(&'static str, Stats)>,
}

impl Bench {
    /// The report `benchmark --json` prints.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        for (kind, s) in &self.results {
            map.insert((*kind).into(), s.to_json());
        }
        json!({
            "operation_count": self.operations,
            "dir": self.dir.display().to_string(),
            "state_bytes": self.state_bytes,
            "results": map,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let s = Stats::of((1..=100).map(Duration::from_millis).rev().collect());
        assert_eq!(s.p50, Duration::from_millis(50));
        assert_eq!(s.p95, Duration::from_millis(95));
        assert_eq!(s.max, Duration::from_millis(100));
        let one = Stats::of(vec![Duration::from_millis(7)]);
        assert_eq!(
            (one.p50, one.p95),
            (Duration::from_millis(7), Duration::from_millis(7))
        );
    }
}
