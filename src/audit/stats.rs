//! `audit stats`: counts, failures by exit code, duration and lock-wait
//! percentiles and the event rate, overall and per tool, op, target or host.
//!
//! Memory does not grow with the log: percentiles come from a log-bucketed
//! [`Histogram`] (the scheme of DDSketch) whose estimate is within 1% of the
//! true value, and the only other state is one small group per distinct key.
//! The maximum is exact.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::Serialize;
use serde_json::{Value, json};

use super::event::round_ms;
use super::scan::{self, Events, Filter, Line, Totals};
use crate::error::Result;
use crate::exit::Code;

/// Ratio between bucket bounds: an estimate within (γ-1)/(γ+1) < 1% of the truth.
const GAMMA: f64 = 1.02;
/// Values at or under this (ms) share one bucket, reported as 0.
const MIN_MS: f64 = 0.001;
/// Buckets beyond this (≈ 10^12 ms) are folded into the last one.
const MAX_BUCKETS: usize = 2048;

/// A bounded histogram of non-negative values (milliseconds).
#[derive(Clone, Debug, Default)]
pub struct Histogram {
    zero: u64,
    counts: Vec<u64>,
    n: u64,
    max: f64,
}

impl Histogram {
    /// Counts one value.
    pub fn add(&mut self, v: f64) {
        if !v.is_finite() || v < 0.0 {
            return;
        }
        self.n += 1;
        if v > self.max {
            self.max = v;
        }
        if v <= MIN_MS {
            self.zero += 1;
            return;
        }
        let i = bucket(v);
        if self.counts.len() <= i {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += 1;
    }

    /// How many values were counted.
    pub fn count(&self) -> u64 {
        self.n
    }

    /// The exact maximum.
    pub fn max(&self) -> Option<f64> {
        (self.n > 0).then_some(self.max)
    }

    /// The q-quantile (nearest rank), within 1% of the true value.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.n == 0 {
            return None;
        }
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = self.zero;
        if seen >= rank {
            return Some(0.0);
        }
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let mid = MIN_MS * 2.0 * GAMMA.powi(i as i32) / (GAMMA + 1.0);
                return Some(mid.min(self.max));
            }
        }
        Some(self.max)
    }

    /// `{count, p50, p95, max}`, as `diagnostics` prints it.
    pub fn summary(&self) -> Value {
        let f = self.figures();
        json!({ "count": f.count, "p50": f.p50_ms, "p95": f.p95_ms, "max": f.max_ms })
    }

    /// Count, median, 95th percentile and maximum, rounded to the microsecond.
    pub fn figures(&self) -> Figures {
        Figures {
            count: self.n,
            p50_ms: self.quantile(0.50).map(round_ms),
            p95_ms: self.quantile(0.95).map(round_ms),
            max_ms: self.max().map(round_ms),
        }
    }
}

/// The upper bound of bucket `i`: MIN·γ^i.
fn bound(i: usize) -> f64 {
    MIN_MS * GAMMA.powi(i as i32)
}

/// The bucket of `v` (> MIN_MS): the smallest i ≥ 1 with v ≤ MIN·γ^i, so
/// bucket i holds (MIN·γ^(i-1), MIN·γ^i]; values past the last bucket fold
/// into it. Found from [`ln`]'s estimate, then settled against [`bound`],
/// the bounds [`Histogram::quantile`] reports from.
fn bucket(v: f64) -> usize {
    let estimate = (ln(v / MIN_MS) / ln(GAMMA)).ceil();
    let mut i = (estimate.max(1.0) as usize).min(MAX_BUCKETS - 1);
    while i > 1 && v <= bound(i - 1) {
        i -= 1;
    }
    while i < MAX_BUCKETS - 1 && v > bound(i) {
        i += 1;
    }
    i
}

/// The natural logarithm of a finite `x` ≥ 1, to about 1e-10, without libm:
/// `f64::ln` is libm's `log`, the only function the binaries took from
/// libm, and loading libm cost every call of every binary ~22k instructions
/// at start-up. x = m·2^k with m in [√½, √2), and ln m = 2·atanh(s) with
/// |s| = |m-1|/(m+1) < 0.172, summed to s^11.
fn ln(x: f64) -> f64 {
    let bits = x.to_bits();
    let mut k = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & ((1 << 52) - 1)) | (1023 << 52));
    if m > std::f64::consts::SQRT_2 {
        m /= 2.0;
        k += 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let series =
        1.0 + s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0 + s2 / 11.0))));
    k as f64 * std::f64::consts::LN_2 + 2.0 * s * series
}

/// The figures of one group of events.
#[derive(Clone, Debug, Default)]
pub struct Group {
    pub events: u64,
    pub failed: u64,
    pub by_exit: BTreeMap<i32, u64>,
    pub duration: Histogram,
    pub wait: Histogram,
}

impl Group {
    fn add(&mut self, line: &Line) {
        let ev = &line.ev;
        self.events += 1;
        if ev.exit_code != 0 {
            self.failed += 1;
            *self.by_exit.entry(ev.exit_code).or_default() += 1;
        }
        self.duration.add(ev.duration_ms);
        if let Some(w) = ev.lock_wait_ms() {
            self.wait.add(w);
        }
    }
}

/// What `--by` groups on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    Tool,
    Op,
    Target,
    Host,
}

impl By {
    pub fn name(self) -> &'static str {
        match self {
            By::Tool => "tool",
            By::Op => "op",
            By::Target => "target",
            By::Host => "host",
        }
    }
}

/// Streaming accumulator behind `audit stats` (also used by export and monitor).
#[derive(Clone, Debug)]
pub struct Stats {
    pub by: By,
    pub total: Group,
    pub groups: HashMap<String, Group>,
    pub first: Option<i64>,
    pub last: Option<i64>,
}

impl Stats {
    pub fn new(by: By) -> Stats {
        Stats {
            by,
            total: Group::default(),
            groups: HashMap::new(),
            first: None,
            last: None,
        }
    }

    /// Counts one event.
    pub fn add(&mut self, line: &Line) {
        self.total.add(line);
        self.first = Some(self.first.map_or(line.at, |f| f.min(line.at)));
        self.last = Some(self.last.map_or(line.at, |l| l.max(line.at)));
        let ev = &line.ev;
        let key: &str = match self.by {
            By::Tool => &ev.tool,
            By::Op => &ev.op,
            By::Target => &ev.target,
            By::Host => &ev.host,
        };
        // Look up by &str first: a key is allocated once, not once per event.
        match self.groups.get_mut(key) {
            Some(g) => g.add(line),
            None => {
                let mut g = Group::default();
                g.add(line);
                self.groups.insert(key.to_string(), g);
            }
        }
    }

    /// Seconds from the first event to the last.
    pub fn span_s(&self) -> f64 {
        match (self.first, self.last) {
            (Some(f), Some(l)) => (l - f) as f64 / 1e6,
            _ => 0.0,
        }
    }

    /// Events per minute over the span (a span under one second counts as one second).
    pub fn per_min(&self, events: u64) -> f64 {
        if events == 0 {
            return 0.0;
        }
        events as f64 * 60.0 / self.span_s().max(1.0)
    }

    /// Groups, busiest first.
    pub fn sorted_groups(&self) -> Vec<(&String, &Group)> {
        let mut v: Vec<_> = self.groups.iter().collect();
        v.sort_by(|a, b| b.1.events.cmp(&a.1.events).then_with(|| a.0.cmp(b.0)));
        v
    }

    /// The report `audit stats --json` prints (and `audit export` embeds).
    pub fn report(&self, totals: &Totals) -> Report {
        let groups = self
            .sorted_groups()
            .into_iter()
            .map(|(k, g)| GroupReport {
                key: k.clone(),
                event_count: g.events,
                failed: g.failed,
                events_per_min: round_ms(self.per_min(g.events)),
                duration: g.duration.figures(),
                lock_wait: g.wait.figures(),
            })
            .collect();
        let by_exit = self
            .total
            .by_exit
            .iter()
            .map(|(c, n)| {
                (
                    c.to_string(),
                    ExitCount {
                        name: code_name(*c),
                        count: *n,
                    },
                )
            })
            .collect();
        Report {
            event_count: self.total.events,
            malformed: totals.malformed,
            files: totals.files.clone(),
            first: self.first.map(scan::format_micros),
            last: self.last.map(scan::format_micros),
            span_ms: round_ms(self.span_s() * 1e3),
            events_per_min: round_ms(self.per_min(self.total.events)),
            failures: Failures {
                total: self.total.failed,
                by_exit,
            },
            duration: self.total.duration.figures(),
            lock_wait: self.total.wait.figures(),
            by: self.by.name(),
            groups,
        }
    }
}

/// `audit stats` as data: the figures of all matching events and of each group.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// How many events matched.
    pub event_count: u64,
    pub malformed: u64,
    pub files: Vec<PathBuf>,
    pub first: Option<String>,
    pub last: Option<String>,
    /// From the first event to the last.
    pub span_ms: f64,
    pub events_per_min: f64,
    pub failures: Failures,
    pub duration: Figures,
    pub lock_wait: Figures,
    /// What the groups are keyed on: `tool`, `op`, `target` or `host`.
    pub by: &'static str,
    pub groups: Vec<GroupReport>,
}

/// Failed events: how many, and how many per exit code (keyed by the code).
#[derive(Clone, Debug, Serialize)]
pub struct Failures {
    pub total: u64,
    pub by_exit: BTreeMap<String, ExitCount>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ExitCount {
    pub name: &'static str,
    pub count: u64,
}

/// The figures of one group.
#[derive(Clone, Debug, Serialize)]
pub struct GroupReport {
    pub key: String,
    pub event_count: u64,
    pub failed: u64,
    pub events_per_min: f64,
    pub duration: Figures,
    pub lock_wait: Figures,
}

/// A distribution of milliseconds: how many, median, 95th percentile, maximum.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Figures {
    pub count: u64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

/// `EXIT_` name of an exit code, or `?` for a code outside the table.
pub fn code_name(code: i32) -> &'static str {
    Code::from_i32(code).map_or("?", Code::name)
}

/// Runs `audit stats` over the events.
pub fn collect(events: &dyn Events, filter: &Filter, by: By) -> Result<(Stats, Totals)> {
    let mut stats = Stats::new(by);
    let totals = events.scan_events(&mut |line| {
        if filter.matches(line) {
            stats.add(line);
        }
    })?;
    Ok((stats, totals))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value lands in the bucket whose bounds hold it, and the series
    /// agrees with libm's log: over bucket bounds and their neighbours and
    /// over values spread from 1 µs to past the last bucket.
    #[test]
    fn buckets_hold_their_values_and_ln_matches_libm() {
        let mut values = vec![
            MIN_MS * 1.000_000_1,
            0.5,
            1.0,
            2.0,
            1e3,
            86_400_000.0,
            1e15,
            1e300,
        ];
        for i in 1..MAX_BUCKETS {
            let b = bound(i);
            values.extend([
                b,
                f64::from_bits(b.to_bits() - 1),
                f64::from_bits(b.to_bits() + 1),
            ]);
        }
        let mut v = MIN_MS * 1.01;
        while v < 1e18 {
            values.push(v);
            v *= 1.0007;
        }
        for v in values.into_iter().filter(|&v| v > MIN_MS) {
            let i = bucket(v);
            assert!((1..MAX_BUCKETS).contains(&i), "{v}: {i}");
            if i < MAX_BUCKETS - 1 {
                assert!(v <= bound(i), "{v} over bucket {i}'s bound {}", bound(i));
            }
            if i > 1 {
                assert!(v > bound(i - 1), "{v} belongs under bucket {i}");
            }
            let x = v / MIN_MS;
            assert!(
                (ln(x) - x.ln()).abs() <= 1e-10 * x.ln().max(1.0),
                "ln {x}: {} vs {}",
                ln(x),
                x.ln()
            );
        }
    }

    #[test]
    fn histogram_quantiles_are_within_one_percent() {
        let mut h = Histogram::default();
        let values: Vec<f64> = (1..=100_000).map(|i| i as f64 * 0.037).collect();
        for v in &values {
            h.add(*v);
        }
        for q in [0.5, 0.95, 0.99] {
            let truth = values[(q * values.len() as f64).ceil() as usize - 1];
            let est = h.quantile(q).unwrap();
            assert!((est - truth).abs() / truth < 0.01, "q{q}: {est} vs {truth}");
        }
        assert_eq!(h.max(), Some(100_000.0 * 0.037));
        assert_eq!(h.count(), 100_000);
        assert!(h.counts.len() < MAX_BUCKETS);
    }

    #[test]
    fn zeros_and_empty() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        h.add(0.0);
        h.add(0.0);
        h.add(10.0);
        assert_eq!(h.quantile(0.5), Some(0.0));
        let p95 = h.quantile(0.95).unwrap();
        assert!((p95 - 10.0).abs() < 0.1);
    }
}
