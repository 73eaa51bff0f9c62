//! Claude Code hooks, run as `state-manager hook <event>` with the hook's
//! JSON payload on standard input (hooks/*.sh are thin wrappers that find
//! the binary and `exec` it).
//!
//! - [`payload`]: Claude Code's payload and the legacy shapes, parsed strictly.
//! - [`tracker`]: PostToolUse — tool events become signals and a phase.
//! - [`skills`]: UserPromptSubmit — `[ACTIVATE:CODE]` blocks, `lastActivation`,
//!   and a status section on request.
//! - [`glob`]: the small wildcard language of both rule files.
//! - [`doctor`]: `hook doctor` checks an installation; the notice by which
//!   `user-prompt-submit` tells the session, once, that the hooks cannot
//!   record (a state root that is not a writable folder, a failed write).
//!
//! What a hook guarantees: it never fails the session it serves. Whatever
//! the input — not JSON, empty, wrong types, over 16 MiB, a bad rules file,
//! a corrupt state, a lock it cannot get — it exits 0, leaves the state as it
//! was, prints one line on stderr and records one audit event (op `hook`,
//! outcome `error`, `exit_code` the code the failure would have had as a
//! command). A successful call is also one audit event (op `hook`, detail
//! `event`, and the signals or activation it recorded). Every event carries
//! the payload's `session_id` as `run_id`. A change of the state is one
//! read-modify-write under the `state` lock (one commit per call); a call
//! that changes nothing takes no lock.
//!
//! The state file is found by the rule every binary follows
//! ([`crate::config::locate_state`]): `STATE_FILE` (or `--state-file`) when
//! set, else the nearest `.workflow-state.json` (or, from earlier versions,
//! `.claude/.workflow-state.json`) up the tree from the payload's `cwd`, else
//! a new `.workflow-state.json` at the project root. The walk starts from the
//! payload's `cwd` when it lies inside `CLAUDE_PROJECT_DIR` (or that is
//! unset), else from `CLAUDE_PROJECT_DIR`: a session that wandered out of its
//! project still records into the project. The state is created, as `init`
//! would, when missing. The
//! state lock is waited for at most `LOCK_TIMEOUT`, 5 s when unset (not 30:
//! the session waits on the hook).

pub mod doctor;
pub mod glob;
pub mod payload;
pub mod skills;
pub mod tracker;

use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::audit::Recorder;
use crate::cmd::JsonArgs;
use crate::cmd::table::Table;
use crate::cmd::{Ctx, Output};
use crate::config::{Config, Found, GlobalArgs, MAX_INPUT_BYTES, Search, locate_state};
use crate::durable;
use crate::error::{Error, Kind, Result};
use crate::exit::Code;
use crate::lock::process::resolve_owner;
use crate::state::document;
use payload::Payload;

const TOOL: &str = "state-manager";

/// How long a hook waits for the `state` lock when `LOCK_TIMEOUT` is unset.
pub const HOOK_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// Rules files larger than this are refused.
const RULES_LIMIT: u64 = 1024 * 1024;

/// The arguments of `state-manager hook`.
#[derive(Clone, Debug, clap::Args)]
pub struct HookArgs {
    /// The hook event whose payload is on standard input
    #[arg(value_enum)]
    pub event: HookEvent,

    /// The project folder [default: CLAUDE_PROJECT_DIR, else the payload's cwd]
    #[arg(long, env = "CLAUDE_PROJECT_DIR", value_name = "DIR")]
    pub project_dir: Option<PathBuf>,

    /// Tracker rules [default: the copy of hooks/tracker-rules.json built in]
    #[arg(long, env = "WFSTATE_TRACKER_RULES", value_name = "FILE")]
    pub tracker_rules: Option<PathBuf>,

    /// Skill rules [default: config/skill-rules.json, .claude/skill-rules.json
    /// or .claude/config/skill-rules.json in the project]
    #[arg(long, env = "WFSTATE_SKILL_RULES", value_name = "FILE")]
    pub skill_rules: Option<PathBuf>,

    /// doctor only: the report as JSON
    #[command(flatten)]
    pub json: JsonArgs,
}

/// The hook events `state-manager hook` serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum HookEvent {
    /// PostToolUse: record signals by the tracker rules
    PostToolUse,
    /// UserPromptSubmit: activate skills, print the status when asked
    UserPromptSubmit,
    /// Check this installation: binary, PATH, settings, state location and
    /// permissions; one line per check (exit 5 or 6 when one fails)
    Doctor,
}

impl HookEvent {
    /// The event's name in Claude Code's settings and payloads.
    pub fn name(self) -> &'static str {
        match self {
            HookEvent::PostToolUse => "PostToolUse",
            HookEvent::UserPromptSubmit => "UserPromptSubmit",
            HookEvent::Doctor => "doctor",
        }
    }
}

/// What one hook call works with: the call's context (its configuration,
/// retention, owner and backend, as every subcommand's) and the project's.
pub(crate) struct Hook {
    pub ctx: Ctx,
    /// The project folder: paths in payloads are taken relative to it.
    pub project: PathBuf,
    pub tracker_rules: Option<PathBuf>,
    pub skill_rules: Option<PathBuf>,
}

/// How a hook call ended: always [`Code::Success`], and what Claude Code is
/// to read on stdout (the activation block, the status section; often
/// nothing). The caller prints it: this module never writes to stdout.
#[derive(Debug)]
pub struct Hooked {
    pub code: Code,
    pub stdout: String,
}

/// Runs hook `args.event` on the payload on standard input. Always
/// [`Code::Success`]: failures are recorded, not returned (see the module
/// docs); one warning line on stderr says so.
pub fn call(args: &HookArgs, global: &GlobalArgs) -> Hooked {
    let event = args.event;
    if event == HookEvent::Doctor {
        return doctor(args, global);
    }
    let mut detail = json!({ "event": event.name() });
    let payload = durable::read_stdin_limited(MAX_INPUT_BYTES).and_then(|bytes| {
        detail["payload_bytes"] = json!(bytes.len());
        Payload::parse(&bytes)
    });
    let parsed = payload.as_ref().ok();
    let project = non_empty(&args.project_dir)
        .or_else(|| parsed.and_then(|p| p.cwd.clone()))
        .unwrap_or_else(|| PathBuf::from("."));
    let search = if global.names_state_file() {
        Search::default()
    } else {
        Search::from_env(
            Some(start_folder(
                parsed.and_then(|p| p.cwd.as_deref()),
                non_empty(&args.project_dir).as_deref(),
            )),
            non_empty(&args.project_dir),
        )
    };
    let (mut cfg, cfg_err) = config(global, &search);
    if let Some(id) = parsed
        .and_then(|p| p.session_id.clone())
        .filter(|s| !s.is_empty())
    {
        cfg.run_id = Some(id);
    }
    if cfg.debug {
        crate::debug::enable(TOOL);
    }
    let rec = Recorder::start(&cfg, TOOL, "hook", cfg.state_file.display().to_string());
    let result = (|| {
        if let Some(e) = cfg_err {
            return Err(e);
        }
        let retention = global.retention()?;
        let payload = payload?;
        payload.check_event(event.name())?;
        crate::debug::log(|| {
            format!(
                "hook {}: state {} ({}), project {}",
                event.name(),
                cfg.state_file.display(),
                cfg.found_by.describe(),
                project.display()
            )
        });
        let hook = Hook {
            ctx: Ctx {
                tool: TOOL,
                backend: crate::backend::open(&cfg, global.backend.as_deref())?,
                cfg: cfg.clone(),
                retention,
                owner: global.owner,
                output: Output::default(),
            },
            project,
            tracker_rules: non_empty(&args.tracker_rules),
            skill_rules: non_empty(&args.skill_rules),
        };
        match event {
            HookEvent::PostToolUse => {
                tracker::run(&hook, &payload, &mut detail).map(|()| String::new())
            }
            HookEvent::UserPromptSubmit => skills::run(&hook, &payload, &mut detail),
            HookEvent::Doctor => unreachable!("answered before the payload is read"),
        }
    })();
    if let Err(e) = &result {
        eprintln!(
            "{TOOL}: hook {}: {e} (ignored: the session goes on; recorded in {})",
            event.name(),
            cfg.audit_log.display()
        );
    }
    // UserPromptSubmit's stdout is the session's context: the one place a
    // broken installation can be seen without verbose mode.
    let notice = (event == HookEvent::UserPromptSubmit && is_file_backend(global))
        .then(|| {
            let problem = doctor::state_problem(&cfg).or_else(|| {
                result
                    .as_ref()
                    .err()
                    .filter(|e| is_installation_problem(e))
                    .map(|e| {
                        let copy = Error::new(e.kind(), e.summary());
                        match e.hint_text() {
                            Some(h) => copy.hint(h),
                            None => copy,
                        }
                    })
            });
            doctor::Notice::of(&cfg.state_file).tell(problem.as_ref())
        })
        .flatten();
    if notice.is_some() {
        detail["notice"] = json!(true);
    }
    rec.finish(&result, detail);
    let mut stdout = notice.unwrap_or_default();
    stdout.push_str(&result.unwrap_or_default());
    Hooked {
        code: Code::Success,
        stdout,
    }
}

/// A failure the user must fix in the installation, not in the input: the
/// kind a session should be told about.
fn is_installation_problem(e: &Error) -> bool {
    matches!(
        e.kind(),
        Kind::PermissionDenied | Kind::DiskFull | Kind::DependencyMissing | Kind::ResourceExhausted
    )
}

fn is_file_backend(global: &GlobalArgs) -> bool {
    global
        .backend
        .as_deref()
        .is_none_or(|b| b.is_empty() || b == "file")
}

/// `hook doctor`: [`doctor::examine`] from the current folder, printed as
/// a table or JSON; its exit code is the first failed check's.
fn doctor(args: &HookArgs, global: &GlobalArgs) -> Hooked {
    let project_dir = non_empty(&args.project_dir);
    let search = Search::from_env(None, project_dir.clone());
    let (cfg, cfg_err) = config(global, &search);
    if let Some(e) = cfg_err {
        eprintln!("{TOOL}: hook doctor: {e}");
        return Hooked {
            code: e.code(),
            stdout: String::new(),
        };
    }
    let project = project_dir.unwrap_or_else(|| project_root(&cfg, &search));
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    let path = std::env::var_os("PATH");
    let bin = std::env::var_os("WFSTATE_BIN")
        .filter(|b| !b.is_empty())
        .map(PathBuf::from);
    let report = doctor::examine(
        &cfg,
        &doctor::Setup {
            project: &project,
            home: home.as_deref(),
            path: path.as_deref(),
            wfstate_bin: bin.as_deref(),
            file_backend: is_file_backend(global),
        },
    );
    let output = Output {
        no_header: global.no_header,
        ..Output::of(&args.json)
    };
    let stdout = if output.json {
        let v = serde_json::to_value(&report).expect("reports serialize");
        let mut text = if output.compact {
            serde_json::to_string(&v)
        } else {
            serde_json::to_string_pretty(&v)
        }
        .expect("JSON values always serialize");
        text.push('\n');
        text
    } else {
        let mut t = Table::for_output(&["status", "check", "detail"], &output);
        for c in &report.checks {
            let detail = match &c.fix {
                Some(fix) => format!("{} — {fix}", c.detail),
                None => c.detail.clone(),
            };
            t.row(vec![c.status.name().into(), c.check.into(), detail]);
        }
        t.render()
    };
    if !report.ok {
        eprintln!(
            "{TOOL}: hook doctor: {} check(s) failed — do what their lines say, then run 'state-manager hook doctor' again",
            report.failures()
        );
    }
    Hooked {
        code: report.code(),
        stdout,
    }
}

/// The project a state belongs to: the folder of a new state, or of a
/// found one (above `.claude/` for a state the old hooks made), or the
/// start folder for a given one.
fn project_root(cfg: &Config, search: &Search) -> PathBuf {
    match cfg.found_by {
        Found::Given => search.start.clone(),
        _ if cfg.root.file_name().is_some_and(|n| n == ".claude") => cfg
            .root
            .parent()
            .map_or_else(|| cfg.root.clone(), Path::to_path_buf),
        _ => cfg.root.clone(),
    }
}

fn non_empty(p: &Option<PathBuf>) -> Option<PathBuf> {
    p.clone().filter(|p| !p.as_os_str().is_empty())
}

/// Where a hook's walk for the state starts: the payload's `cwd` when it is
/// inside the project folder (or there is none), else the project folder,
/// else the current folder.
fn start_folder(cwd: Option<&Path>, project_dir: Option<&Path>) -> PathBuf {
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    match (cwd, project_dir) {
        (Some(cwd), Some(project)) if canonical(cwd).starts_with(canonical(project)) => {
            cwd.to_path_buf()
        }
        (_, Some(project)) => project.to_path_buf(),
        (Some(cwd), None) => cwd.to_path_buf(),
        (None, None) => PathBuf::from("."),
    }
}

/// The configuration the flags describe with the state found by `search`,
/// and the error of a bad setting (the configuration is still usable for
/// the audit event that reports it).
fn config(global: &GlobalArgs, search: &Search) -> (Config, Option<Error>) {
    let (mut cfg, err) = match global.config_from(search) {
        Ok(cfg) => (cfg, None),
        Err(e) => {
            let (state_file, found_by) = locate_state(global.state_file.as_deref(), search);
            let mut cfg = Config::new(state_file);
            cfg.found_by = found_by;
            if let Some(log) = non_empty(&global.audit_log) {
                cfg.audit_log = log;
            }
            (cfg, Some(e))
        }
    };
    if global.lock_timeout.as_deref().is_none_or(str::is_empty) {
        cfg.lock_timeout = HOOK_LOCK_TIMEOUT;
    }
    (cfg, err)
}

impl Hook {
    /// Whether the state exists.
    pub fn state_exists(&self) -> bool {
        match self.ctx.backend.kind() {
            "file" => self.ctx.cfg.state_file.exists(),
            _ => self
                .ctx
                .backend
                .state()
                .load_bytes()
                .is_ok_and(|b| b.is_some()),
        }
    }

    /// The state, read without a lock (it is only ever replaced whole).
    pub fn load_state(&self) -> Result<Option<Value>> {
        let state = self.ctx.backend.state();
        state.load_bytes()?.map(|b| state.parse(&b)).transpose()
    }

    /// One read-modify-write of the state, through the backend: `change`
    /// edits the document (a fresh one when there is no state yet) and says
    /// whether it changed it. Commits when it did or the state was missing;
    /// returns the document as it now is. `change` may run again on a newer
    /// document (an optimistic backend's retry): it starts from the
    /// document each time.
    pub fn update(
        &self,
        reason: &str,
        detail: &mut Value,
        mut change: impl FnMut(&mut Value) -> Result<bool>,
    ) -> Result<Value> {
        let file = self.ctx.backend.kind() == "file";
        let root = &self.ctx.cfg.root;
        if file && !root.exists() {
            // The state folder is made, not the folders above it: a payload's
            // cwd that does not exist is no project to write into.
            DirBuilder::new().mode(0o700).create(root).map_err(|e| {
                Error::io(e, "cannot create the state folder", root).or_hint(
                    "check the project folder (CLAUDE_PROJECT_DIR or the payload's cwd) exists",
                )
            })?;
        }
        let owner = match resolve_owner(self.ctx.owner) {
            Ok(id) => Some(id),
            Err(e) if self.ctx.owner.is_some() => return Err(e),
            Err(_) => None,
        };
        let mut result = None;
        let mut created = false;
        let commit = self.ctx.backend.state().transact(
            self.ctx.access(owner.as_ref()),
            reason,
            &mut |old| {
                let mut doc = old.cloned().unwrap_or_else(document::fresh);
                let changed = change(&mut doc)?;
                created = old.is_none();
                let keep = old.is_some() && !changed;
                result = Some(doc.clone());
                if keep {
                    return Ok(None);
                }
                if created && file {
                    crate::state::backup::ensure_dir(&self.ctx.cfg)?;
                }
                Ok(Some(doc))
            },
            &mut |waited| detail["lock_wait_ms"] = json!(crate::audit::event::ms(waited)),
        )?;
        let mut doc = result.expect("the change ran");
        if let Some(commit) = commit {
            if created {
                detail["created"] = json!(true);
            }
            detail["revision"] = json!(commit.revision);
            if let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.insert("revision".into(), json!(commit.revision));
            }
        }
        Ok(doc)
    }
}

/// The text of a rules file; a missing one is exit 5 (a named dependency).
pub(crate) fn load_rules_file(path: &Path, what: &str) -> Result<String> {
    let bytes = durable::read_limited(path, RULES_LIMIT).map_err(|e| {
        if e.io_kind() == Some(std::io::ErrorKind::NotFound) {
            Error::new(Kind::DependencyMissing, format!("no {what} file"))
                .with_path(path)
                .hint("create it, or unset the variable that names it")
        } else {
            e
        }
    })?;
    String::from_utf8(bytes).map_err(|_| {
        Error::validation(format!("the {what} file is not UTF-8"))
            .with_path(path)
            .hint("save it as UTF-8 JSON")
    })
}
