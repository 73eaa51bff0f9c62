//! The review commands' text output: aligned tables and summary lines for
//! a terminal, rendered from what the domain modules return.

use std::borrow::Cow;
use std::io::Write;

use serde_json::Value;

use super::malformed_note;
use crate::audit::event::ms_text as ms;
use crate::audit::history::{History, Step, What};
use crate::audit::races::{Finding, Findings};
use crate::audit::scan::{self, Totals};
use crate::audit::stats::{Stats, code_name};
use crate::cmd::Output;
use crate::cmd::table::Table;

/// `audit recent`: one aligned row per event.
pub fn recent(lines: &[Vec<u8>], totals: &Totals, output: &Output) -> String {
    let mut t = Table::for_output(
        &[
            "time", "tool", "op", "target", "pid", "owner", "ms", "exit", "run",
        ],
        output,
    );
    for c in [4, 5, 6, 7] {
        t.right(c);
    }
    let mut skip = Totals::default();
    for raw in lines {
        if let Some(l) = scan::parse_line(raw, &mut skip) {
            let ev = &l.ev;
            t.row(vec![
                ev.ts.to_string(),
                ev.tool.to_string(),
                ev.op.to_string(),
                ev.target.to_string(),
                ev.pid.to_string(),
                ev.owner().to_string(),
                ms(Some(ev.duration_ms)),
                ev.exit_code.to_string(),
                ev.run_id.as_deref().unwrap_or("-").to_string(),
            ]);
        }
    }
    let mut out = if t.is_empty() {
        "no matching events\n".to_string()
    } else {
        t.render()
    };
    if totals.malformed > 0 {
        out.push_str(&format!("({})\n", malformed_note(totals.malformed)));
    }
    out
}

/// `audit stats`: the overall figures, then a table of the groups.
pub fn stats(st: &Stats, totals: &Totals, output: &Output) -> String {
    let t = &st.total;
    let mut out = String::new();
    let malformed = if totals.malformed > 0 {
        format!(" ({})", malformed_note(totals.malformed))
    } else {
        String::new()
    };
    out.push_str(&format!("events     {}{malformed}\n", t.events));
    if t.events == 0 {
        return out;
    }
    out.push_str(&format!(
        "span       {} → {} ({}), {:.1} events/min\n",
        st.first.map(scan::format_micros).unwrap_or_default(),
        st.last.map(scan::format_micros).unwrap_or_default(),
        human_span(st.span_s()),
        st.per_min(t.events)
    ));
    let failures: Vec<String> = t
        .by_exit
        .iter()
        .map(|(c, n)| format!("exit {c} {} ×{n}", code_name(*c)))
        .collect();
    out.push_str(&format!(
        "failures   {} ({:.2}%){}{}\n",
        t.failed,
        100.0 * t.failed as f64 / t.events as f64,
        if failures.is_empty() { "" } else { ": " },
        failures.join(", ")
    ));
    out.push_str(&format!(
        "duration   p50 {} ms  p95 {} ms  max {} ms\n",
        ms(t.duration.quantile(0.5)),
        ms(t.duration.quantile(0.95)),
        ms(t.duration.max())
    ));
    out.push_str(&format!(
        "lock wait  p50 {} ms  p95 {} ms  max {} ms  ({} waits)\n\n",
        ms(t.wait.quantile(0.5)),
        ms(t.wait.quantile(0.95)),
        ms(t.wait.max()),
        t.wait.count()
    ));
    // Single words (one field each for awk): `P50_MS`, not `P50 MS`.
    let mut table = Table::for_output(
        &[
            st.by.name(),
            "events",
            "failed",
            "p50_ms",
            "p95_ms",
            "max_ms",
            "wait_p50",
            "wait_p95",
            "per_min",
        ],
        output,
    );
    table.right_from(1);
    for (k, g) in st.sorted_groups() {
        table.row(vec![
            if k.is_empty() {
                "(none)".to_string()
            } else {
                k.clone()
            },
            g.events.to_string(),
            g.failed.to_string(),
            ms(g.duration.quantile(0.5)),
            ms(g.duration.quantile(0.95)),
            ms(g.duration.max()),
            ms(g.wait.quantile(0.5)),
            ms(g.wait.quantile(0.95)),
            format!("{:.1}", st.per_min(g.events)),
        ]);
    }
    out.push_str(&table.render());
    out
}

/// `42 s`, `3.5 min`, `2.0 h`, `1.5 d`.
pub fn human_span(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.1} s")
    } else if s < 7200.0 {
        format!("{:.1} min", s / 60.0)
    } else if s < 172_800.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.1} d", s / 86400.0)
    }
}

/// The line of one finding of `audit races`.
fn race_line(f: &Finding) -> String {
    format!(
        "{}  {}  {}: {}\n",
        scan::format_micros(f.at),
        f.kind,
        if f.target.is_empty() {
            "(no target)"
        } else {
            &f.target
        },
        f.summary
    )
}

/// `audit races`, one finding: its line, its events indented below it.
pub fn race(f: &Finding, out: &mut Vec<u8>) {
    let text = race_line(f);
    // The events behind it, indented, without a header of their own: the
    // rows `recent` prints (its table's layout, written here straight from
    // the parsed lines: a long log has many findings).
    let mut skip = Totals::default();
    let lines: Vec<_> = f
        .events
        .iter()
        .filter_map(|raw| scan::parse_line(raw, &mut skip))
        .collect();
    let rows: Vec<[Cow<str>; 9]> = lines
        .iter()
        .map(|l| {
            let ev = &l.ev;
            [
                Cow::Borrowed(&*ev.ts),
                Cow::Borrowed(&*ev.tool),
                Cow::Borrowed(&*ev.op),
                Cow::Borrowed(&*ev.target),
                Cow::Owned(ev.pid.to_string()),
                Cow::Owned(ev.owner().to_string()),
                Cow::Owned(ms(Some(ev.duration_ms))),
                Cow::Owned(ev.exit_code.to_string()),
                Cow::Borrowed(ev.run_id.as_deref().unwrap_or("-")),
            ]
        })
        .collect();
    let table = if rows.is_empty() {
        "no matching events\n".to_string()
    } else {
        event_rows(&rows)
    };
    race_end(text, &table, f.more, out);
}

/// A finding's events below its line, indented, and how many more there were.
fn race_end(mut text: String, table: &str, more: u64, out: &mut Vec<u8>) {
    for line in table.lines() {
        text.push_str("    ");
        text.push_str(line);
        text.push('\n');
    }
    if more > 0 {
        text.push_str(&format!("    … and {more} more events\n"));
    }
    out.extend_from_slice(text.as_bytes());
}

/// The rows of [`recent`]'s table without its header, as
/// `crate::cmd::table::Table` lays them out: columns as wide as their
/// widest cell (in characters), two spaces apart, pid, owner, ms and exit
/// to the right, each line's trailing blanks cut.
fn event_rows(rows: &[[Cow<str>; 9]]) -> String {
    const RIGHT: [bool; 9] = [false, false, false, false, true, true, true, true, false];
    let mut width = [0usize; 9];
    for row in rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let start = out.len();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            let pad = width[i] - cell.chars().count();
            if RIGHT[i] {
                out.extend(std::iter::repeat_n(' ', pad));
                out.push_str(cell);
            } else {
                out.push_str(cell);
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        let kept = out[start..].trim_end().len();
        out.truncate(start + kept);
        out.push('\n');
    }
    out
}

/// `audit races`: each finding as [`race`] rendered it, earliest first,
/// then the counts by kind.
pub fn races(findings: &Findings, totals: &Totals, out: &mut dyn Write) -> std::io::Result<()> {
    if findings.is_empty() {
        writeln!(
            out,
            "no races found in {} events",
            totals.lines - totals.malformed
        )?;
    }
    findings.each(|f| out.write_all(f))?;
    if !findings.is_empty() {
        let parts: Vec<String> = findings
            .counts()
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        writeln!(out, "{} findings: {}", findings.len(), parts.join(", "))?;
    }
    if totals.malformed > 0 {
        writeln!(out, "({})", malformed_note(totals.malformed))?;
    }
    Ok(())
}

/// Who did it: `owner 42 (pid 43, ana@host)`.
fn by(ev: &Value) -> String {
    let pid = ev["pid"].as_u64().unwrap_or(0);
    let owner = ev["detail"]["owner_pid"]
        .as_u64()
        .or(ev["ppid"].as_u64())
        .unwrap_or(0);
    let user = ev["user"].as_str().unwrap_or("?");
    let host = ev["host"].as_str().unwrap_or("?");
    format!("owner {owner} (pid {pid}, {user}@{host})")
}

/// The fields of an event a history row shows, borrowed from the line: a
/// long history is rendered twice (to size the columns, then to print), and
/// a whole `Value` per step costs several times this.
#[derive(serde::Deserialize)]
struct RowFields<'a> {
    #[serde(borrow)]
    ts: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tool: Option<Cow<'a, str>>,
    #[serde(borrow)]
    op: Option<Cow<'a, str>>,
    #[serde(borrow)]
    run_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    user: Option<Cow<'a, str>>,
    #[serde(borrow)]
    host: Option<Cow<'a, str>>,
    pid: Option<u64>,
    ppid: Option<u64>,
    detail: Option<RowDetail>,
}

#[derive(serde::Deserialize)]
struct RowDetail {
    owner_pid: Option<u64>,
}

/// One step as a row of the history table. An event whose fields are not
/// of the usual types is read as a whole value, the same way [`by`] does.
fn step_row(s: &Step) -> Vec<String> {
    // A line in the toolkit's own shape is read by the fast reader, whose
    // fields are those `RowFields` would hold.
    if let Some(p) = std::str::from_utf8(&s.raw)
        .ok()
        .and_then(crate::audit::plain::read)
    {
        let ev = &p.ev;
        return vec![
            ev.ts.to_string(),
            s.what.clone(),
            format!(
                "owner {} (pid {}, {}@{})",
                ev.owner(),
                ev.pid,
                p.user,
                ev.host
            ),
            ev.tool.to_string(),
            ev.op.to_string(),
            ev.run_id.as_deref().unwrap_or("-").to_string(),
            s.detail.clone(),
        ];
    }
    step_row_of_fields(s)
}

/// [`step_row`] of a line in any other shape.
fn step_row_of_fields(s: &Step) -> Vec<String> {
    let Ok(r) = serde_json::from_slice::<RowFields>(&s.raw) else {
        return step_row_of_value(s);
    };
    let text = |v: &Option<Cow<str>>, none: &str| v.as_deref().unwrap_or(none).to_string();
    let owner = r.detail.and_then(|d| d.owner_pid).or(r.ppid).unwrap_or(0);
    vec![
        text(&r.ts, "?"),
        s.what.clone(),
        format!(
            "owner {owner} (pid {}, {}@{})",
            r.pid.unwrap_or(0),
            r.user.as_deref().unwrap_or("?"),
            r.host.as_deref().unwrap_or("?")
        ),
        text(&r.tool, "?"),
        text(&r.op, "?"),
        text(&r.run_id, "-"),
        s.detail.clone(),
    ]
}

fn step_row_of_value(s: &Step) -> Vec<String> {
    let e = &s.event();
    vec![
        e["ts"].as_str().unwrap_or("?").to_string(),
        s.what.clone(),
        by(e),
        e["tool"].as_str().unwrap_or("?").to_string(),
        e["op"].as_str().unwrap_or("?").to_string(),
        e["run_id"].as_str().unwrap_or("-").to_string(),
        s.detail.clone(),
    ]
}

/// `audit history`: the verdict, a table of the steps, what removed it.
/// The steps are read twice from where the history kept them, to size the
/// columns and then to print the rows, so no step is held in memory.
pub fn history(
    h: &History,
    totals: &Totals,
    output: &Output,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    writeln!(
        out,
        "history of {} '{}': {}",
        h.kind.map_or("target", What::name),
        h.target,
        h.verdict
    )?;
    if !h.steps.is_empty() {
        out.write_all(b"\n")?;
        let mut t = Table::for_output(
            &["time", "what", "by", "tool", "op", "run", "detail"],
            output,
        );
        h.steps.each(|s| {
            t.measure(&step_row(s));
            Ok(())
        })?;
        out.write_all(t.header_line().as_bytes())?;
        h.steps
            .each(|s| out.write_all(t.line(&step_row(s)).as_bytes()))?;
    }
    let mut rest = String::new();
    if let Some(r) = &h.removed_by {
        let e = r.event();
        let detail = if r.detail.is_empty() {
            String::new()
        } else {
            format!(" ({})", r.detail)
        };
        rest.push_str(&format!(
            "\nremoved by: {} {}{detail} at {}, {}\n",
            e["tool"].as_str().unwrap_or("?"),
            e["op"].as_str().unwrap_or("?"),
            e["ts"].as_str().unwrap_or("?"),
            by(&e)
        ));
    }
    if totals.malformed > 0 {
        rest.push_str(&format!("({})\n", malformed_note(totals.malformed)));
    }
    out.write_all(rest.as_bytes())
}

/// `audit missing` as text: what it is and whether it is there, the
/// verdict, then related files or keys, the operations (newest first) and
/// the other hosts of the window, each a table.
pub fn missing(r: &crate::audit::missing::Report, window: &str, output: &Output) -> String {
    let mut out = format!(
        "target:   {} ({}: {})\nnow:      {}\nverdict:  {}\n",
        r.target, r.kind, r.guessed, r.now, r.verdict
    );
    if let Some(t) = r.ttl_ms {
        out.push_str(&format!("ttl:      {t} ms — wfstate never sets one\n"));
    }
    out.push_str("\nrelated:");
    if r.related.is_empty() {
        out.push_str(" none\n");
    } else {
        out.push('\n');
        let mut t = Table::for_output(&["place", "name", "type", "size", "ttl_ms"], output);
        t.right(3);
        t.right(4);
        for x in &r.related {
            t.row(vec![
                x.place.to_string(),
                x.name.clone(),
                x.kind.clone(),
                x.size.map_or("-".into(), |s| s.to_string()),
                x.ttl_ms.map_or("-".into(), |s| s.to_string()),
            ]);
        }
        out.push_str(&t.render());
    }
    let row = |e: &serde_json::Value, what: &str| {
        vec![
            e["ts"].as_str().unwrap_or("?").to_string(),
            e["host"].as_str().unwrap_or("?").to_string(),
            e["pid"].to_string(),
            e["tool"].as_str().unwrap_or("?").to_string(),
            e["op"].as_str().unwrap_or("?").to_string(),
            what.to_string(),
            e["exit_code"].to_string(),
        ]
    };
    let titles = ["time", "host", "pid", "tool", "op", "what", "exit"];
    out.push_str("\noperations (newest first):");
    if r.operations.is_empty() {
        out.push_str(" none in the audit log\n");
    } else {
        out.push('\n');
        let mut t = Table::for_output(&titles, output);
        for o in &r.operations {
            t.row(row(&o.event, &o.what));
        }
        out.push_str(&t.render());
    }
    if let Some(rm) = &r.removed_by {
        out.push_str("\nremoved by:\n");
        let mut t = Table::for_output(&titles, output);
        t.row(row(&rm.event, &rm.what));
        out.push_str(&t.render());
    }
    out.push_str(&format!(
        "\nother hosts (last {window}, this host {}):",
        r.this_host
    ));
    if r.other_hosts.is_empty() {
        out.push_str(" none\n");
    } else {
        out.push('\n');
        let mut t = Table::for_output(&["host", "events", "last", "ops"], output);
        t.right(1);
        for h in &r.other_hosts {
            t.row(vec![
                h.host.clone(),
                h.event_count.to_string(),
                h.last.clone(),
                h.ops.join(","),
            ]);
        }
        out.push_str(&t.render());
    }
    if r.malformed > 0 {
        out.push_str(&format!("({})\n", super::malformed_note(r.malformed)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{history, plain, races};
    use serde_json::json;

    use crate::audit::TestRng as Rng;

    const TARGETS: &[&str] = &["deploy", "/w/s.json", "caf\u{e9} ✓", "a\"b\\c", "ck-1", ""];

    /// One line of an awkward log: an event in the toolkit's shape, or one
    /// in another field order, with escapes, unicode, huge or exponent
    /// numbers; or a blank, CRLF or malformed line.
    fn awkward_line(rng: &mut Rng, i: u64) -> String {
        let ms = i * 2 + rng.below(3);
        let ts = format!(
            "2024-05-01T10:{:02}:{:02}.{:03}{:03}Z",
            ms / 60_000,
            ms / 1000 % 60,
            ms % 1000,
            rng.below(1000)
        );
        let (tool, op) = rng.pick(&[
            ("lock-manager", "acquire"),
            ("lock-manager", "release"),
            ("lock-manager", "takeover"),
            ("lock-manager", "run"),
            ("state-manager", "set"),
            ("state-manager", "write"),
            ("state-manager", "read"),
            ("state-manager", "init"),
            ("state-manager", "backup"),
            ("lock-manager", "clean"),
            ("error-recovery", "checkpoint"),
            ("error-recovery", "restore"),
        ]);
        let owner = 100 + rng.below(3);
        let detail = match rng.below(9) {
            0 => {
                json!({"lock_type": rng.pick(&["shared", "exclusive"]), "wait_ms": rng.pick(&[0.5, 612.25, 1e-7, 2.0]), "owner_pid": owner, "holders_while_waiting": rng.pick(&[json!([]), json!([7, 8])])})
            }
            1 => json!({"owner_pid": owner, "forced": rng.below(2) == 0}),
            2 => {
                json!({"stale_pid": 9, "reason": rng.pick(&["dead", "caf\u{e9} \"gone\""]), "owner_pid": owner})
            }
            3 => {
                json!({"conflict": "revision", "expected": -3, "actual": 7, "error": "revision\tmismatch ✓"})
            }
            4 => {
                json!({"revision": rng.pick(&[json!(12), json!(18446744073709551615u64), json!(1.5)]), "lock_wait_ms": 700.125})
            }
            5 => json!({"removed": ["deploy", "a\"b\\c", 7], "forced": true}),
            6 => {
                json!({"child_exit": rng.pick(&[json!(1), json!(-2), json!("x")]), "nested": {"a": [1, {"b": null}]}})
            }
            7 => json!({"error": "lock timed out", "owner_pid": owner}),
            _ => json!({}),
        };
        let mut ev = json!({
            "ts": ts, "tool": tool, "op": op, "target": rng.pick(TARGETS),
            "pid": 4000 + rng.below(50), "ppid": owner, "host": rng.pick(&["h1", "hé"]),
            "user": "ci", "duration_ms": rng.pick(&[json!(1.5), json!(0.412), json!(1.731), json!(0.0), json!(1e-7), json!(4)]),
            "exit_code": rng.pick(&[0, 0, 0, 2, 4]), "outcome": "ok", "detail": detail,
        });
        if rng.below(2) == 0 {
            ev["run_id"] = json!(rng.pick(&["r1", "r\u{e9}"]));
        }
        let mut text = ev.to_string();
        match rng.below(24) {
            // The same event in another field order: serde_json reads it.
            0 | 1 => {
                let mut m: Vec<_> = ev.as_object().unwrap().clone().into_iter().collect();
                m.reverse();
                text = Value::Object(m.into_iter().collect()).to_string();
            }
            2 => text.push('\r'),
            3 => text = String::new(),
            4 => text = "not json".to_string(),
            5 => text.truncate(text.floor_char_boundary(text.len() / 2)),
            6 => text = text.replacen("\"deploy\"", "\"dep\\u006coy\"", 1),
            7 => text = text.replacen(":", ": ", 2),
            _ => {}
        }
        text
    }

    /// `race` as it was written before: the events through [`recent`]'s table.
    fn race_by_table(f: &Finding, out: &mut Vec<u8>) {
        let bare = Output {
            no_header: true,
            ..Output::default()
        };
        let table = recent(&f.events, &Totals::default(), &bare);
        race_end(race_line(f), &table, f.more, out);
    }

    #[test]
    fn a_race_lists_its_events_as_the_table_of_recent_does() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut lines: Vec<Vec<u8>> = (0..3000)
            .map(|i| awkward_line(&mut rng, i).into_bytes())
            .collect();
        // Cells that a table must measure in characters, and that break
        // or end a line.
        for (target, ms, run) in [
            ("wide ✓✓✓ é", 12345.5, "r\t"),
            ("new\nline", 12.5, "r\u{a0}"),
            ("cr\r", 0.5, ""),
            ("tail  ", 1503.0, "  "),
            ("\u{a0}nb", 99.9, "x"),
        ] {
            lines.push(
                json!({"ts": "2024-05-01T10:00:00Z", "tool": "t", "op": "o", "target": target,
                       "pid": 123456, "duration_ms": ms, "exit_code": -1, "run_id": run})
                .to_string()
                .into_bytes(),
            );
        }
        let mut at = 0;
        let mut n = 0;
        while at < lines.len() {
            let take = (rng.below(6) as usize).min(lines.len() - at);
            let f = Finding {
                kind: "overlap",
                target: ["deploy", ""][n % 2].to_string(),
                at: 1_714_557_600_000_000,
                summary: "s".into(),
                owners: vec![1, 2],
                events: lines[at..at + take].to_vec(),
                more: rng.below(3),
            };
            let (mut a, mut b) = (Vec::new(), Vec::new());
            race(&f, &mut a);
            race_by_table(&f, &mut b);
            assert_eq!(String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap());
            at += take.max(1);
            n += 1;
        }
        // The odd targets together, in one finding.
        let f = Finding {
            kind: "overlap",
            target: "x".into(),
            at: 0,
            summary: "s".into(),
            owners: vec![1],
            events: lines[lines.len() - 5..].to_vec(),
            more: 0,
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        race(&f, &mut a);
        race_by_table(&f, &mut b);
        assert_eq!(String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap());
    }

    /// Every way `history` and `races` print, over `cfg`'s log.
    fn reviews(cfg: &crate::config::Config) -> Vec<Vec<u8>> {
        let mut outs = Vec::new();
        for target in TARGETS {
            for all in [false, true] {
                let (h, totals) = history::collect(cfg, cfg, target, all).unwrap();
                let mut o = Vec::new();
                history(&h, &totals, &Output::default(), &mut o).unwrap();
                for pretty in [false, true] {
                    h.write_json(&totals, pretty, &mut o).unwrap();
                }
                outs.push(o);
            }
        }
        for json in [None, Some(false), Some(true)] {
            let render: races::Render = match json {
                Some(pretty) => races::json_render(pretty),
                None => Box::new(race),
            };
            let filter = crate::audit::scan::Filter::default();
            let (found, totals) = races::collect(cfg, &filter, 500.0, render).unwrap();
            let mut o = Vec::new();
            match json {
                Some(pretty) => races::write_json(&found, &totals, pretty, &mut o).unwrap(),
                None => races(&found, &totals, &mut o).unwrap(),
            }
            outs.push(o);
        }
        outs
    }

    /// Issue 16: the fast reader changes no byte of what `history` and
    /// `races` print, text or JSON, against `serde_json` alone, over awkward
    /// logs (rotated files, malformed, blank and CRLF lines, other field
    /// orders, escapes, unicode, huge and exponent numbers).
    #[test]
    fn history_and_races_print_the_same_with_the_fast_reader_as_with_serde_json() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::Config::new(dir.path().join("s.json"));
        let mut printed = 0;
        for seed in 1..13u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut i = 0;
            for n in (0..3).rev() {
                let path = match n {
                    0 => cfg.audit_log.clone(),
                    n => crate::audit::rotate::rotated(&cfg.audit_log, n),
                };
                let mut text = String::new();
                for _ in 0..150 {
                    text.push_str(&awkward_line(&mut rng, i));
                    text.push('\n');
                    i += 1;
                }
                std::fs::write(path, text).unwrap();
            }
            let fast = reviews(&cfg);
            plain::force_serde(true);
            let slow = reviews(&cfg);
            plain::force_serde(false);
            for (k, (f, s)) in fast.iter().zip(&slow).enumerate() {
                assert!(
                    f == s,
                    "seed {seed}, review {k}:\n{}\n---- serde_json alone ----\n{}",
                    String::from_utf8_lossy(f),
                    String::from_utf8_lossy(s)
                );
            }
            printed += fast.iter().map(Vec::len).sum::<usize>();
        }
        assert!(printed > 1 << 20, "the reviews print: {printed} bytes");
    }

    #[test]
    fn history_rows_read_the_same_from_borrowed_fields_as_from_a_value() {
        for raw in [
            r#"{"ts":"t","tool":"a","op":"b","pid":3,"ppid":4,"user":"u","host":"h","run_id":"r","detail":{"owner_pid":9}}"#,
            r#"{"ts":"t","tool":"a","op":"b","pid":3,"ppid":4,"detail":null,"run_id":null}"#,
            r#"{"ts":"t","tool":"a","op":"b","detail":{}}"#,
            r#"{"ts":"t\u0041","tool":"a","op":"b","pid":-1,"user":7,"host":["x"],"detail":"s"}"#,
            r#"{"ts":"t","tool":"a","op":"b","pid":1.0,"ppid":2,"detail":{"owner_pid":"9"}}"#,
            r#"{"ts":"t","tool":"a","op":"b","ts":"u"}"#,
        ] {
            let s = Step {
                what: "w".into(),
                detail: "d".into(),
                raw: raw.as_bytes().to_vec(),
            };
            assert_eq!(step_row(&s), step_row_of_value(&s), "{raw}");
        }
    }
}
