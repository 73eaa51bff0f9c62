//! `repair`, `export`, `import`, `cleanup`, `diagnostics`, `benchmark`:
//! upkeep of the state and its folders.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::TOOL;
use crate::audit::event::ms_text as ms;
use crate::audit::stats;
use crate::cmd::table::Table;
use crate::cmd::{self as cli, Ctx, JsonArgs};
use crate::config::MAX_INPUT_BYTES;
use crate::durable;
use crate::error::{Error, Result};
use crate::exit::Code;
use crate::state::exchange::{self, Format, parse, render};
use crate::state::health::human_bytes;
use crate::state::integrity::{self, Seal};
use crate::state::{cleanup, diagnostics, document, repair, selfbench, store};

/// `repair [--dry-run] [--json]`: see [`crate::state::repair`]. Exit 0
/// repaired or nothing to do, 1 no state, 3 does not parse and no valid
/// backup, 4 problems only a person can fix (listed; nothing written).
pub fn repair(ctx: &Ctx, dry_run: bool) -> Result<Code> {
    ctx.audited_state("repair", |detail| {
        if ctx.backend.kind() != "file" {
            let owner = ctx.owner_identity()?;
            let out = repair::repair_stored(
                ctx.backend.state(),
                ctx.access(owner.as_ref()),
                ctx.state_target(),
                dry_run,
                detail,
            )?;
            detail["changes"] = json!(out.changes.len());
            print_repair(ctx, &out);
            return match out.error() {
                None => Ok(Code::Success),
                Some(e) => Err(e),
            };
        }
        let store = ctx.store()?;
        let owner = ctx.owner_identity()?;
        // A dry run changes nothing, not even the lock folder.
        let txn = if dry_run {
            None
        } else {
            Some(store.begin(owner.as_ref())?)
        };
        let out = repair::repair(&ctx.cfg, &store, txn.as_ref(), detail)?;
        super::note_corrupt_kept(detail);
        detail["changes"] = json!(out.changes.len());
        if !out.unfixable.is_empty() {
            detail["unfixable"] = json!(out.unfixable.len());
        }
        print_repair(ctx, &out);
        match out.error() {
            None => Ok(Code::Success),
            Some(e) => Err(e),
        }
    })
}

fn print_repair(ctx: &Ctx, out: &repair::Outcome) {
    if ctx.output.json {
        ctx.print_json(out);
        return;
    }
    let dry_run = out.dry_run;
    let mut text = String::new();
    let verb = if dry_run || !out.unfixable.is_empty() {
        "would fix"
    } else {
        "fixed"
    };
    for c in &out.changes {
        text.push_str(&format!("{verb}: {c}\n"));
    }
    for u in &out.unfixable {
        text.push_str(&format!("cannot fix: {u}\n"));
    }
    if out.unfixable.is_empty() {
        if out.changes.is_empty() {
            text.push_str(&format!(
                "nothing to repair: {} is valid and its checksum verified\n",
                out.path
            ));
        } else if dry_run {
            text.push_str("dry run: nothing was changed\n");
        } else if let Some(r) = out.revision {
            let kept = out.backup.as_deref().map_or(String::new(), |b| {
                format!("; the previous version is kept as {b}")
            });
            text.push_str(&format!("repaired {} (revision {r}{kept})\n", out.path));
        }
    }
    cli::print(&text);
}

/// `export [--format json|yaml] [--output FILE] [--json]`.
///
/// Without `--output`, the document goes to stdout (and `--json` means
/// `--format json`); with it, the file is replaced atomically and durably
/// (a device or FIFO is written through) and a summary is printed (as JSON
/// with `--json`).
pub fn export(ctx: &Ctx, format: Option<Format>, output: Option<&Path>) -> Result<Code> {
    let as_json = ctx.output.json;
    ctx.audited_state("export", |detail| {
        let format = match (format, as_json, output) {
            (Some(Format::Yaml), true, None) => {
                return Err(Error::validation("--json asks for JSON on stdout, --format yaml for YAML")
                    .hint("drop one of them, or add --output FILE to get a JSON summary of a YAML export"));
            }
            (Some(f), _, _) => f,
            (None, _, Some(p)) => Format::detect(Some(p), b"{"),
            (None, _, None) => Format::Json,
        };
        detail["format"] = json!(format.name());
        let state = ctx.backend.state();
        let bytes = state.load_bytes()?.ok_or_else(|| state.missing())?;
        let doc = state.parse(&bytes)?;
        if let Seal::Mismatch { .. } = integrity::check_seal(&doc) {
            eprintln!(
                "{TOOL}: warning: the state's checksum does not match its content (changed outside the toolkit or corrupted); exporting it as it is — see 'state-manager verify-integrity'"
            );
        }
        let Some(out) = output else {
            if ctx.output.compact && format == Format::Json {
                // `--json -c`: the document on one line.
                cli::println(&serde_json::to_string(&doc).expect("JSON serializes"));
            } else {
                cli::print(&String::from_utf8_lossy(&render(&doc, format)?));
            }
            return Ok(Code::Success);
        };
        let bytes = render(&doc, format)?;
        durable::write_output(out, |w| {
            w.write_all(&bytes)
                .map_err(|e| Error::io(e, "cannot write the export", out))
        })?;
        detail["output"] = json!(out.display().to_string());
        let revision = document::revision(&doc);
        if durable::is_stdout(out) {
            // `--output /dev/stdout`: the document is the output, whole.
        } else if as_json {
            ctx.output.json(&json!({
                "output": out.display().to_string(),
                "format": format.name(),
                "bytes": bytes.len(),
                "revision": revision,
            }));
        } else {
            cli::println(&format!(
                "exported revision {revision} of {} to {} ({}, {} bytes)",
                ctx.state_target(),
                out.display(),
                format.name(),
                bytes.len()
            ));
        }
        Ok(Code::Success)
    })
}

/// `import --file FILE|- [--force] [--json]`: see the module docs. Exit 3 the
/// live state does not parse (without --force), 4 invalid document or
/// older revision (without --force).
pub fn import(ctx: &Ctx, file: &str, force: bool) -> Result<Code> {
    ctx.audited_state("import", |detail| {
        detail["file"] = json!(file);
        detail["force"] = json!(force);
        let (bytes, path, source) = if file == "-" {
            (
                durable::read_stdin_limited(MAX_INPUT_BYTES)?,
                None,
                "the document on standard input".to_string(),
            )
        } else {
            let p = Path::new(file);
            (
                durable::read_input_limited(p, MAX_INPUT_BYTES)?,
                Some(p),
                file.to_string(),
            )
        };
        let format = Format::detect(path, &bytes);
        detail["format"] = json!(format.name());
        let doc = parse(&bytes, format, &source)?;
        document::check_depth(&doc, 0, &source)?;
        document::check_metadata(&doc, &format!("{source}'s"))?;
        store::check_schema(&doc).map_err(|e| {
            e.hint(format!(
                "fix {source} ('state-manager validate' on a copy lists every problem); nothing was changed"
            ))
        })?;
        if let Seal::Mismatch { .. } = integrity::check_seal(&doc) {
            eprintln!(
                "{TOOL}: note: {source} was edited after export (its checksum no longer matches); importing it as it is"
            );
        }
        let owner = ctx.owner_identity()?;
        let done = if ctx.backend.kind() == "file" {
            // The file backend also replaces a live file that does not parse
            // (--force), keeping it aside.
            let store = ctx.store()?;
            let txn = store.begin(owner.as_ref())?;
            detail["lock_wait_ms"] = json!(crate::audit::event::ms(txn.waited));
            exchange::import(&txn, &store, doc, &source, format, force, detail)?
        } else {
            let mut previous_revision = None;
            let commit = ctx
                .backend
                .state()
                .transact(
                    ctx.access(owner.as_ref()),
                    "pre-import",
                    &mut |live| {
                        previous_revision = live.map(document::revision);
                        exchange::admit(live, &doc, &source, force, detail)?;
                        Ok(Some(doc.clone()))
                    },
                    &mut |_| {},
                )?
                .expect("an import always commits");
            exchange::Imported {
                path: ctx.state_target(),
                from: source.clone(),
                format: format.name(),
                previous_revision,
                revision: commit.revision,
                backup: commit.backup.map(|p| p.display().to_string()),
            }
        };
        super::note_corrupt_kept(detail);
        detail["revision"] = json!(done.revision);
        if ctx.output.json {
            ctx.print_json(&done);
        } else {
            let kept = done.backup.as_ref().map_or(String::new(), |b| {
                format!("; the previous version is kept as {b}")
            });
            cli::println(&format!(
                "imported {source} into {} (revision {}{kept})",
                done.path, done.revision
            ));
        }
        Ok(Code::Success)
    })
}

/// `cleanup`'s command line: what to clean, and how to print.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct CleanupCommand {
    #[command(flatten)]
    pub what: cleanup::CleanupArgs,
    #[command(flatten)]
    pub json: JsonArgs,
}

/// `cleanup`: see [`crate::state::cleanup`]. Exit 4 bad duration, 6 a file
/// could not be removed for lack of permission.
pub fn cleanup(ctx: &Ctx, args: &cleanup::CleanupArgs) -> Result<Code> {
    let out = ctx.audited_state("cleanup", |detail| {
        let out = cleanup::cleanup(
            ctx.backend.as_ref(),
            &ctx.cfg,
            ctx.retention,
            || ctx.owner_identity(),
            args,
            detail,
        )?;
        detail["removed"] = json!(out.removed.len());
        detail["bytes"] = json!(out.bytes);
        Ok(out)
    })?;
    if ctx.output.json {
        ctx.print_json(&out);
        return Ok(Code::Success);
    }
    let verb = if out.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let mut text = String::new();
    for i in &out.removed {
        text.push_str(&format!(
            "{verb} {} {} ({})\n",
            i.kind,
            i.path.display(),
            i.reason
        ));
    }
    for i in &out.kept {
        text.push_str(&format!(
            "kept {} {}: {}\n",
            i.kind,
            i.path.display(),
            i.reason
        ));
    }
    if out.removed.is_empty() {
        text.push_str("nothing to clean up\n");
    } else {
        text.push_str(&format!(
            "{verb} {} item(s), {} bytes{}\n",
            out.removed.len(),
            out.bytes,
            if out.dry_run {
                " (dry run: nothing was changed)"
            } else {
                ""
            }
        ));
    }
    cli::print(&text);
    Ok(Code::Success)
}

/// `benchmark [--operations N] [--json]`: see [`crate::state::selfbench`].
/// Exit 4 for N out of 1..=100000.
pub fn benchmark(ctx: &Ctx, operations: usize) -> Result<Code> {
    let bench = ctx.audited_state("benchmark", |detail| {
        #[cfg(feature = "redis")]
        if let Some(r) = ctx.backend.redis() {
            return r.benchmark(operations, detail);
        }
        let store = ctx.store()?;
        selfbench::benchmark(&store, operations, detail)
    })?;
    if ctx.output.json {
        ctx.output.json(&bench.to_json());
        return Ok(Code::Success);
    }
    // Under --no-header only the rows: the caption and the note go too.
    let mut out = String::new();
    if !ctx.output.no_header {
        out.push_str(&format!(
            "{operations} operation(s) of each kind on a copy of the state ({} bytes) in {} (removed afterwards)\n",
            bench.state_bytes,
            bench.dir.display()
        ));
    }
    let mut table = Table::for_output(
        &["kind", "ops_per_s", "p50_ms", "p95_ms", "max_ms"],
        &ctx.output,
    );
    table.right_from(1);
    let ms = |d: Duration| format!("{:.3}", d.as_secs_f64() * 1e3);
    for (kind, s) in &bench.results {
        table.row(vec![
            kind.to_string(),
            format!("{:.1}", s.per_sec()),
            ms(s.p50),
            ms(s.p95),
            ms(s.max),
        ]);
    }
    out.push_str(&table.render());
    if !ctx.output.no_header {
        out.push_str("(in-process: process start-up is not included; a lock cycle is one acquire and one release)\n");
    }
    cli::print(&out);
    Ok(Code::Success)
}

/// `diagnostics [--json] [--verbose] [--pings N]`
pub fn diagnostics(ctx: &Ctx, verbose: bool, pings: usize) -> Result<Code> {
    let d = diagnostics::gather_from(ctx.backend.as_ref(), &ctx.cfg, pings)?;
    let report = d.to_json(verbose);
    if ctx.output.json {
        ctx.output.json(&report);
        return Ok(Code::Success);
    }
    let (st, totals) = (&d.stats, &d.totals);
    let ops = d.operations();
    let t = &st.total;
    let (takeovers, lock_timeouts) = (d.takeovers, d.lock_timeouts);
    let (state_size, backup_bytes, checkpoint_bytes, log_bytes) = (
        d.state_bytes,
        d.backup_bytes,
        d.checkpoint_bytes,
        d.audit_log_bytes,
    );
    let rate = |failed: u64, events: u64| {
        if events == 0 {
            0.0
        } else {
            100.0 * failed as f64 / events as f64
        }
    };
    let mut out = format!(
        "audit log:        {} events in {} file(s){}\nerror rate:       {:.1}% ({} failed)\nlock waits ms:    p50 {}  p95 {}  max {}\nlock timeouts:    {}\nstale takeovers:  {}\n\n",
        t.events,
        totals.files.len(),
        if totals.malformed > 0 {
            format!(", {} malformed line(s) skipped", totals.malformed)
        } else {
            String::new()
        },
        rate(t.failed, t.events),
        t.failed,
        ms(t.wait.quantile(0.5)),
        ms(t.wait.quantile(0.95)),
        ms(t.wait.max()),
        lock_timeouts,
        takeovers,
    );
    if !ops.is_empty() {
        // -v adds each operation's failures as a last column (one word:
        // NAME×COUNT joined by commas), so every row stays one line.
        let mut titles = vec!["operation", "events", "err%", "p50_ms", "p95_ms", "max_ms"];
        if verbose {
            titles.push("failures");
        }
        let mut table = Table::for_output(&titles, &ctx.output);
        for col in 1..=5 {
            table.right(col);
        }
        for (k, g) in &ops {
            let mut row = vec![
                k.to_string(),
                g.events.to_string(),
                format!("{:.1}", rate(g.failed, g.events)),
                ms(g.duration.quantile(0.5)),
                ms(g.duration.quantile(0.95)),
                ms(g.duration.max()),
            ];
            if verbose {
                let codes: Vec<String> = g
                    .by_exit
                    .iter()
                    .map(|(c, n)| format!("{}×{n}", stats::code_name(*c)))
                    .collect();
                row.push(if codes.is_empty() {
                    "-".to_string()
                } else {
                    codes.join(",")
                });
            }
            table.row(row);
        }
        out.push_str(&table.render());
        out.push('\n');
    }
    out.push_str(&format!(
        "state:            {}\nbackups:          {} ({})\ncheckpoints:      {} ({})\naudit log:        {} in {} file(s)\n",
        human_bytes(state_size),
        d.backups,
        human_bytes(backup_bytes),
        d.checkpoints,
        human_bytes(checkpoint_bytes),
        human_bytes(log_bytes),
        d.audit_log_files,
    ));
    if let Some(d) = &report["disk"]["filesystem"].as_object() {
        out.push_str(&format!(
            "disk free:        {} of {}\n",
            human_bytes(d["free_bytes"].as_u64().unwrap_or(0)),
            human_bytes(d["total_bytes"].as_u64().unwrap_or(0))
        ));
    }
    if let Some(s) = report["server"].as_object() {
        out.push('\n');
        out.push_str(&server_text(s));
    }
    if verbose {
        for f in &totals.files {
            out.push_str(&format!("read:             {}\n", f.display()));
        }
    }
    cli::print(&out);
    Ok(Code::Success)
}

/// The Redis server's figures of `diagnostics`, one `name: value` line each.
fn server_text(s: &serde_json::Map<String, serde_json::Value>) -> String {
    use serde_json::Value;
    let text = |v: &Value| match v {
        Value::Null => "?".to_string(),
        Value::String(s) if s.is_empty() => "\"\"".to_string(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.to_string(),
        other => other.to_string(),
    };
    let bytes = |v: &Value| v.as_u64().map_or("?".to_string(), human_bytes);
    let (lat, mem, ev, per, rep) = (
        &s["latency"],
        &s["memory"],
        &s["evictions"],
        &s["persistence"],
        &s["replication"],
    );
    let mut out = format!(
        "server:           {} (Redis {}, up {} s)\n",
        text(&s["url"]),
        text(&s["version"]),
        s["uptime_ms"]
            .as_u64()
            .map_or("?".into(), |m| (m / 1000).to_string()),
    );
    out.push_str(&format!(
        "latency ms:       p50 {}  p95 {}  max {}  ({} PINGs)\n",
        text(&lat["p50_ms"]),
        text(&lat["p95_ms"]),
        text(&lat["max_ms"]),
        text(&lat["count"]),
    ));
    out.push_str(&format!(
        "memory:           {} used of maxmemory {}{}\n",
        bytes(&mem["used_bytes"]),
        match mem["maxmemory_bytes"].as_u64() {
            Some(0) => "none".to_string(),
            _ => bytes(&mem["maxmemory_bytes"]),
        },
        mem["used_percent"]
            .as_f64()
            .map_or(String::new(), |p| format!(" ({p:.1}%)")),
    ));
    out.push_str(&format!(
        "maxmemory-policy: {}\nevicted keys:     {} ({}/min on average since the server started)\n",
        text(&mem["maxmemory_policy"]),
        text(&ev["evicted_keys"]),
        text(&ev["per_minute"]),
    ));
    out.push_str(&format!(
        "appendonly:       {}  appendfsync {}  last AOF write {}\nrdb:              save {}  last bgsave {}  changes since {}\n",
        text(&per["appendonly"]),
        text(&per["appendfsync"]),
        text(&per["aof_last_write_status"]),
        text(&per["rdb_save"]),
        text(&per["rdb_last_bgsave_status"]),
        text(&per["rdb_changes_since_last_save"]),
    ));
    out.push_str(&format!(
        "clients:          {}\nrole:             {}  offset {}\n",
        text(&s["connected_clients"]),
        text(&rep["role"]),
        text(&rep["repl_offset"]),
    ));
    if rep["role"] == "master" {
        out.push_str(&format!(
            "replicas:         {}\n",
            text(&rep["connected_slaves"])
        ));
        for r in rep["replicas"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  {}  {}  offset {} ({} behind)  lag {} ms\n",
                text(&r["address"]),
                text(&r["status"]),
                text(&r["offset"]),
                text(&r["offset_behind"]),
                text(&r["lag_ms"]),
            ));
        }
    } else {
        out.push_str(&format!(
            "master link:      {}  lag {} ms\n",
            text(&rep["master_link_status"]),
            text(&rep["lag_ms"]),
        ));
    }
    out
}
