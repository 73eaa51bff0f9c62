//! `state-manager metrics`: the figures of [`crate::state::metrics`] in the
//! Prometheus text exposition format (version 0.0.4), for node_exporter's
//! textfile collector and any scraper, or as JSON.
//!
//! The names follow Prometheus' conventions: the `wfstate_` prefix, base
//! units (seconds, bytes), `_total` on counters, a `# HELP` and `# TYPE`
//! line for each family, histograms as cumulative `_bucket{le}` lines up to
//! `+Inf` then `_sum` and `_count`. Label values are escaped (`\\`, `\"`,
//! `\n`), so an operation name taken from a hand-edited log cannot break the
//! format. Labels are bounded sets — tool, op, exit code, lock type,
//! condition — never a path or a target, so the series stay few.
//!
//! `--output FILE` replaces FILE atomically and durably
//! ([`durable::write_output_shared`]): a textfile collector reading `*.prom`
//! never sees a partial file, and the file is readable by the collector's
//! own user (the replaced file's mode, else 0644 less the umask).

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::cmd::{self as cli, Ctx};
use crate::durable;
use crate::error::{Error, Result};
use crate::exit::Code;
use crate::state::health::Condition;
use crate::state::metrics::{self, Buckets, Metrics, Op};

/// A family's type, as `# TYPE` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Type {
    Counter,
    Gauge,
    Histogram,
}

impl Type {
    fn name(self) -> &'static str {
        match self {
            Type::Counter => "counter",
            Type::Gauge => "gauge",
            Type::Histogram => "histogram",
        }
    }
}

/// One sample: its full name (a histogram's carries `_bucket`, `_sum` or
/// `_count`), its labels in order, its value.
#[derive(Clone, Debug)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// A metric family: name, type, help and its samples.
#[derive(Clone, Debug)]
pub struct Family {
    pub name: &'static str,
    pub kind: Type,
    pub help: &'static str,
    pub samples: Vec<Sample>,
}

impl Family {
    fn new(name: &'static str, kind: Type, help: &'static str) -> Family {
        Family {
            name,
            kind,
            help,
            samples: Vec::new(),
        }
    }

    /// Adds a sample of the family's own name.
    fn add(&mut self, labels: Vec<(&'static str, String)>, value: f64) -> &mut Family {
        self.samples.push(Sample {
            name: self.name.to_string(),
            labels,
            value,
        });
        self
    }

    /// One gauge or counter without labels.
    fn single(name: &'static str, kind: Type, help: &'static str, value: f64) -> Family {
        let mut f = Family::new(name, kind, help);
        f.add(Vec::new(), value);
        f
    }

    /// Adds one histogram series: the cumulative buckets, `+Inf`, sum and count.
    fn histogram(&mut self, labels: Vec<(&'static str, String)>, b: &Buckets) {
        let with_le = |le: String| {
            let mut l = labels.clone();
            l.push(("le", le));
            l
        };
        for (le, n) in b.cumulative() {
            self.samples.push(Sample {
                name: format!("{}_bucket", self.name),
                labels: with_le(number(le)),
                value: n as f64,
            });
        }
        self.samples.push(Sample {
            name: format!("{}_bucket", self.name),
            labels: with_le("+Inf".into()),
            value: b.count as f64,
        });
        self.samples.push(Sample {
            name: format!("{}_sum", self.name),
            labels: labels.clone(),
            value: b.sum(),
        });
        self.samples.push(Sample {
            name: format!("{}_count", self.name),
            labels,
            value: b.count as f64,
        });
    }
}

fn op_labels(op: &Op) -> Vec<(&'static str, String)> {
    vec![("tool", op.tool.clone()), ("op", op.op.clone())]
}

fn flag(on: bool) -> f64 {
    if on { 1.0 } else { 0.0 }
}

/// The families `metrics` prints, in this order.
pub fn families(m: &Metrics) -> Vec<Family> {
    use Type::{Counter, Gauge, Histogram};
    let a = &m.audit;
    let mut out = Vec::new();

    let mut info = Family::new(
        "wfstate_info",
        Gauge,
        "Always 1; the labels say which toolkit version and storage backend the figures come from.",
    );
    info.add(
        vec![
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            ("backend", m.backend.to_string()),
        ],
        1.0,
    );
    out.push(info);

    let mut ops = Family::new(
        "wfstate_operations_total",
        Counter,
        "Operations recorded in the audit log, by tool, operation and exit code (review commands left out). Counted over the log's files: when rotation drops the oldest one the count goes down, which Prometheus treats as a counter reset.",
    );
    for ((op, code), n) in &a.operations {
        let mut l = op_labels(op);
        l.push(("exit_code", code.to_string()));
        ops.add(l, *n as f64);
    }
    out.push(ops);

    let mut dur = Family::new(
        "wfstate_operation_duration_seconds",
        Histogram,
        "How long each operation took, from the audit log, by tool and operation.",
    );
    for (op, b) in &a.durations {
        dur.histogram(op_labels(op), b);
    }
    out.push(dur);

    let mut wait = Family::new(
        "wfstate_lock_wait_seconds",
        Histogram,
        "How long operations waited for a lock, from the audit log, by tool and operation (only operations that record a wait).",
    );
    for (op, b) in &a.lock_waits {
        wait.histogram(op_labels(op), b);
    }
    out.push(wait);

    out.push(Family::single(
        "wfstate_lock_takeovers_total",
        Counter,
        "Locks of a dead owner taken over by the next acquirer, from the audit log.",
        a.takeovers as f64,
    ));
    out.push(Family::single(
        "wfstate_audit_malformed_lines",
        Gauge,
        "Lines of the audit log skipped because they do not parse.",
        a.malformed_lines as f64,
    ));
    out.push(Family::single(
        "wfstate_audit_log_files",
        Gauge,
        "Files of the audit log: the rotated ones and the live one (a stream on Redis counts as one).",
        a.files as f64,
    ));
    out.push(Family::single(
        "wfstate_audit_log_bytes",
        Gauge,
        "Bytes of the audit log: its files, or the events of the stream on Redis.",
        a.bytes as f64,
    ));
    if let Some(t) = a.last_event {
        out.push(Family::single(
            "wfstate_audit_last_event_timestamp_seconds",
            Gauge,
            "When the newest audit event was written, in seconds since the epoch.",
            t,
        ));
    }

    let s = &m.state;
    let mut cond = Family::new(
        "wfstate_state_condition",
        Gauge,
        "1 for the state's condition now (valid, invalid, corrupt or missing), 0 for the others.",
    );
    for c in [
        Condition::Valid,
        Condition::Invalid,
        Condition::Corrupt,
        Condition::Missing,
    ] {
        cond.add(
            vec![("condition", c.name().to_string())],
            flag(s.condition == c),
        );
    }
    out.push(cond);
    out.push(Family::single(
        "wfstate_state_valid",
        Gauge,
        "1 when the state exists, parses and follows the schema, else 0.",
        flag(s.condition == Condition::Valid),
    ));
    if let Some(b) = s.bytes {
        out.push(Family::single(
            "wfstate_state_bytes",
            Gauge,
            "Size of the state document as stored, in bytes.",
            b as f64,
        ));
    }
    if let Some(r) = s.revision {
        out.push(Family::single(
            "wfstate_state_revision",
            Gauge,
            "The state's metadata.revision, bumped by every write.",
            r as f64,
        ));
    }
    if let Some(t) = s.last_modified {
        out.push(Family::single(
            "wfstate_state_last_modified_timestamp_seconds",
            Gauge,
            "The state's metadata.lastModified, in seconds since the epoch.",
            t,
        ));
    }
    out.push(Family::single(
        "wfstate_degraded_mode",
        Gauge,
        "1 while degraded mode is on (error-recovery degrade), else 0.",
        flag(s.degraded),
    ));

    for (kept, count, bytes, newest) in [
        (
            &m.backups,
            ("wfstate_backups", "Backups of the state kept now."),
            ("wfstate_backup_bytes", "Bytes of the backups kept now."),
            (
                "wfstate_backup_newest_timestamp_seconds",
                "When the newest backup was made, in seconds since the epoch.",
            ),
        ),
        (
            &m.checkpoints,
            ("wfstate_checkpoints", "Checkpoints kept now."),
            (
                "wfstate_checkpoint_bytes",
                "Bytes of the checkpoints kept now.",
            ),
            (
                "wfstate_checkpoint_newest_timestamp_seconds",
                "When the newest checkpoint was made, in seconds since the epoch.",
            ),
        ),
    ] {
        out.push(Family::single(count.0, Gauge, count.1, kept.count as f64));
        out.push(Family::single(bytes.0, Gauge, bytes.1, kept.bytes as f64));
        if let Some(t) = kept.newest {
            out.push(Family::single(newest.0, Gauge, newest.1, t));
        }
    }

    let l = &m.locks;
    let mut held = Family::new(
        "wfstate_locks_held",
        Gauge,
        "Locks a live owner holds now, by type.",
    );
    held.add(vec![("type", "shared".into())], l.held_shared as f64);
    held.add(vec![("type", "exclusive".into())], l.held_exclusive as f64);
    out.push(held);
    out.push(Family::single(
        "wfstate_locks_stale",
        Gauge,
        "Lock records whose owners are all gone (the next acquirer takes them over; lock-manager clean removes them).",
        l.stale as f64,
    ));
    out.push(Family::single(
        "wfstate_lock_waiters",
        Gauge,
        "Requests waiting for a lock now.",
        l.waiting as f64,
    ));
    out.push(Family::single(
        "wfstate_lock_records_unreadable",
        Gauge,
        "Lock records that do not parse.",
        l.unreadable as f64,
    ));
    out.push(Family::single(
        "wfstate_metrics_generated_timestamp_seconds",
        Gauge,
        "When these figures were gathered, in seconds since the epoch.",
        m.generated,
    ));
    out
}

/// A number as the exposition format writes it: `+Inf`, `-Inf`, `NaN`, or
/// the shortest decimal that reads back the same (`3`, `0.005`).
pub fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        // Rust's shortest round-trip form, never an exponent: valid in Go's
        // ParseFloat, which the exposition format uses.
        format!("{v}")
    }
}

/// A label value with `\`, `"` and line feeds escaped.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A help text with `\` and line feeds escaped.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// The families in the text exposition format, ending with a line feed;
/// `extra` (`--label`) goes first on every sample.
pub fn text(families: &[Family], extra: &[(String, String)]) -> String {
    let mut out = String::new();
    for f in families {
        let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(f.help));
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind.name());
        for s in &f.samples {
            out.push_str(&s.name);
            let all = || {
                extra
                    .iter()
                    .map(|(k, v)| (k.as_str(), v))
                    .chain(s.labels.iter().map(|(k, v)| (*k, v)))
            };
            if all().next().is_some() {
                out.push('{');
                for (i, (k, v)) in all().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}=\"{}\"", escape_label(v));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", number(s.value));
        }
    }
    out
}

/// The labels the families use themselves: `--label` may not name them.
const OWN_LABELS: [&str; 8] = [
    "tool",
    "op",
    "exit_code",
    "le",
    "type",
    "condition",
    "version",
    "backend",
];

/// Parses `--label NAME=VALUE` arguments (exit 4 for a bad or repeated name).
pub fn parse_labels(args: &[String]) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for arg in args {
        let bad = |why: String| {
            Error::validation(format!("bad --label '{arg}'"))
                .because(why)
                .hint("write --label NAME=VALUE, NAME of letters, digits and _ not starting with a digit or __ (e.g. --label pipeline=deploy)")
        };
        let Some((name, value)) = arg.split_once('=') else {
            return Err(bad("it has no '='".into()));
        };
        let mut chars = name.chars();
        let well_formed = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !well_formed {
            return Err(bad(format!("'{name}' is not a label name")));
        }
        if name.starts_with("__") {
            return Err(bad("names starting with __ are Prometheus' own".into()));
        }
        if OWN_LABELS.contains(&name) {
            return Err(bad(format!("'{name}' is a label metrics sets itself")));
        }
        if out.iter().any(|(n, _)| n == name) {
            return Err(bad(format!("'{name}' is given twice")));
        }
        out.push((name.to_string(), value.to_string()));
    }
    Ok(out)
}

/// The samples as JSON: `[{name, type, help, labels, value}]`, one per line
/// of the text format (a whole number as an integer).
pub fn json_samples(families: &[Family], extra: &[(String, String)]) -> Value {
    let mut out = Vec::new();
    for f in families {
        for s in &f.samples {
            let labels: Map<String, Value> = extra
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .chain(s.labels.iter().map(|(k, v)| (k.to_string(), json!(v))))
                .collect();
            let value = if s.value.fract() == 0.0 && s.value.abs() < 9.0e15 {
                json!(s.value as i64)
            } else {
                json!(s.value)
            };
            out.push(json!({
                "name": s.name,
                "type": f.kind,
                "help": f.help,
                "labels": labels,
                "value": value,
            }));
        }
    }
    Value::Array(out)
}

/// `metrics [--output FILE] [--label NAME=VALUE]... [--json]`: see the
/// module docs. Takes no lock and records no audit event.
pub fn metrics(ctx: &Ctx, output: Option<&Path>, labels: &[String]) -> Result<Code> {
    let extra = parse_labels(labels)?;
    let m = metrics::gather(ctx.backend.as_ref(), &ctx.cfg)?;
    let families = families(&m);
    let body = if ctx.output.json {
        let v = json_samples(&families, &extra);
        let mut s = if ctx.output.compact {
            serde_json::to_string(&v)
        } else {
            serde_json::to_string_pretty(&v)
        }
        .expect("JSON values always serialize");
        s.push('\n');
        s
    } else {
        text(&families, &extra)
    };
    match output {
        None => cli::print(&body),
        Some(path) => durable::write_output_shared(path, |w| {
            w.write_all(body.as_bytes())
                .map_err(|e| Error::io(e, "cannot write the metrics", path))
        })?,
    }
    Ok(Code::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_and_help_are_escaped() {
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
        assert_eq!(escape_help("a\\b\nc \"d\""), "a\\\\b\\nc \"d\"");
    }

    #[test]
    fn labels_parse_and_bad_names_are_refused() {
        let ok = parse_labels(&["pipeline=a=b".into(), "_x=".into()]).unwrap();
        assert_eq!(
            ok,
            vec![("pipeline".into(), "a=b".into()), ("_x".into(), "".into())]
        );
        for bad in ["x", "=v", "9a=v", "a b=v", "__a=v", "le=1", "tool=t"] {
            let e = parse_labels(&[bad.to_string()]).unwrap_err();
            assert_eq!(e.code(), Code::ValidationFailed, "{bad}");
        }
        assert!(parse_labels(&["a=1".into(), "a=2".into()]).is_err());
    }

    #[test]
    fn numbers_read_back_in_go_syntax() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.005), "0.005");
        assert_eq!(number(2.5), "2.5");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(1e-7).parse::<f64>().unwrap(), 1e-7);
    }

    #[test]
    fn a_histogram_ends_with_inf_sum_and_count() {
        let mut b = Buckets::default();
        b.observe(0.002);
        b.observe(7.0);
        let mut f = Family::new("x_seconds", Type::Histogram, "h");
        f.histogram(vec![("op", "set".into())], &b);
        let t = text(&[f], &[("pipeline".into(), "a\"b".into())]);
        assert!(
            t.contains("x_seconds_bucket{pipeline=\"a\\\"b\",op=\"set\",le=\"0.001\"} 0\n"),
            "{t}"
        );
        assert!(
            t.contains("x_seconds_bucket{pipeline=\"a\\\"b\",op=\"set\",le=\"0.0025\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("x_seconds_bucket{pipeline=\"a\\\"b\",op=\"set\",le=\"10\"} 2\n"),
            "{t}"
        );
        assert!(t.contains("x_seconds_bucket{pipeline=\"a\\\"b\",op=\"set\",le=\"+Inf\"} 2\nx_seconds_sum{pipeline=\"a\\\"b\",op=\"set\"} 7.002\nx_seconds_count{pipeline=\"a\\\"b\",op=\"set\"} 2\n"), "{t}");
    }
}
