//! The PostToolUse tracker: turns a tool event into workflow signals by
//! data-driven rules (hooks/tracker-rules.json, format in README.md, 'Claude Code hooks').
//!
//! A rule matches a tool event when every condition it states holds: the
//! tool's name is one of `tools`, the file it touched matches one of `files`
//! and none of `except_files`, the Bash command matches one of `commands`,
//! the written content, the command or the file on disk contains `contains`,
//! and every signal in `requires_signals` is already recorded. Each matching
//! rule records its `signals` (`signals.NAME` = now, as `state-manager
//! signal` does, plus `.signals/NAME.json`) and sets its `phase`; the last
//! matching rule's phase wins. All of it is ONE read-modify-write of the
//! state (one commit, one backup) per tool call, and a tool call that no rule
//! can match takes no lock and writes nothing.
//!
//! Rules come from `WFSTATE_TRACKER_RULES` (the hook script points it at
//! hooks/tracker-rules.json beside itself), else from the copy of that file
//! compiled into the binary. A rules file that does not parse, or names a
//! bad signal, is refused whole: the state is not touched.

use std::cell::OnceCell;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};

use super::glob;
use super::payload::Payload;
use super::{Hook, load_rules_file};
use crate::durable;
use crate::error::{Error, Result};
use crate::state::document;

/// The rules shipped in hooks/tracker-rules.json, used when no file is named.
pub const BUILT_IN_RULES: &str = include_str!("../../hooks/tracker-rules.json");

/// Commands longer than this many characters are matched on their start only.
const COMMAND_CHARS: usize = 16 * 1024;
/// Files larger than this are not searched for a rule's `contains`.
const CONTENT_FILE_LIMIT: u64 = 4 * 1024 * 1024;

/// A tracker rules file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// What the file is for (ignored).
    #[serde(default)]
    pub description: Option<String>,
    /// The format version (1).
    #[serde(default)]
    pub version: Option<u64>,
    /// The rules, tried in order.
    pub rules: Vec<Rule>,
}

/// One tracker rule (see the module docs).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// A short name, recorded in the audit event.
    pub name: String,
    /// Why the rule exists (ignored).
    #[serde(default)]
    pub description: Option<String>,
    /// Tool names (wildcards allowed, case-insensitive); empty = any tool.
    #[serde(default)]
    pub tools: Vec<String>,
    /// File patterns, one of which the touched file must match.
    #[serde(default)]
    pub files: Vec<String>,
    /// File patterns the touched file must not match.
    #[serde(default)]
    pub except_files: Vec<String>,
    /// Command patterns (whole words), one of which the Bash command must match.
    #[serde(default)]
    pub commands: Vec<String>,
    /// A substring the written content, the command or the file must contain.
    #[serde(default)]
    pub contains: Option<String>,
    /// Signals that must already be recorded.
    #[serde(default)]
    pub requires_signals: Vec<String>,
    /// Signals to record.
    pub signals: Vec<String>,
    /// The phase to set.
    #[serde(default)]
    pub phase: Option<String>,
}

impl Rules {
    /// Parses and checks a rules file's text; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Rules> {
        // The common case, an object that is a valid rules file, is parsed
        // straight into the rules (a tree first cost a hook call 0.13M
        // instructions more). Anything else takes the checked way, which
        // alone decides what is refused and what each error says: serde
        // would take an array for a struct, and refuses a repeated key that
        // the tree takes the last of.
        if text.trim_start().starts_with('{')
            && let Ok(rules) = serde_json::from_str::<Rules>(text)
            && rules.rules.iter().all(|r| r.check().is_ok())
        {
            return Ok(rules);
        }
        Rules::parse_checked(text, source)
    }

    /// [`Rules::parse`] by way of a tree: what it accepts and says.
    fn parse_checked(text: &str, source: &str) -> Result<Rules> {
        let bad = |why: String| {
            Error::validation("the tracker rules do not parse")
                .with_path(source)
                .because(why)
                .hint("fix the file (format: README.md, 'Claude Code hooks') or unset WFSTATE_TRACKER_RULES")
        };
        // Parsed as a value first: serde would also take an array for a struct.
        let value: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        if !value.is_object() {
            return Err(bad("the file is not a JSON object".into()));
        }
        let rules: Rules = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        for rule in &rules.rules {
            rule.check().map_err(|e| e.with_path(source))?;
        }
        Ok(rules)
    }

    /// The rules in `path`, or the built-in ones.
    pub fn load(path: Option<&Path>) -> Result<Rules> {
        match path {
            None => Rules::parse(BUILT_IN_RULES, "built-in tracker rules"),
            Some(p) => Rules::parse(
                &load_rules_file(p, "tracker rules")?,
                &p.display().to_string(),
            ),
        }
    }
}

impl Rule {
    fn check(&self) -> Result<()> {
        let bad = |why: String| {
            Error::validation(format!("bad tracker rule '{}'", self.name))
                .because(why)
                .hint("fix the rule (format: README.md, 'Claude Code hooks')")
        };
        if self.signals.is_empty() {
            return Err(bad("it records no signals".into()));
        }
        for s in self.signals.iter().chain(&self.requires_signals) {
            if crate::lock::name::validate(s).is_err() {
                return Err(bad(format!(
                    "'{}' is not a signal name (1-128 letters, digits, '.', '_' or '-')",
                    s.escape_debug()
                )));
            }
        }
        if self.phase.as_deref() == Some("") {
            return Err(bad("its phase is empty".into()));
        }
        Ok(())
    }
}

/// What a tool call did, as far as the rules care.
pub struct ToolEvent<'a> {
    /// The tool's name, such as `Write`.
    pub tool: &'a str,
    /// The touched file as the rules see it: relative to the project when inside it.
    pub file: Option<String>,
    /// Where that file is on disk.
    disk: Option<PathBuf>,
    /// The Bash command.
    pub command: Option<&'a str>,
    /// Text the tool wrote (Write content, Edit/MultiEdit new strings).
    written: Vec<&'a str>,
    /// The file's content, read at most once and only if a rule asks.
    on_disk: OnceCell<Option<String>>,
}

impl<'a> ToolEvent<'a> {
    /// The event in `payload`, paths taken relative to `project`.
    pub fn of(payload: &'a Payload, project: &Path) -> Result<ToolEvent<'a>> {
        let tool = payload.require_tool()?;
        let mut file = None;
        for key in ["file_path", "notebook_path", "path"] {
            if let Some(f) = payload.input_str(key)?
                && file.is_none()
                && !f.is_empty()
            {
                file = Some(f);
            }
        }
        let mut written = Vec::new();
        for key in ["content", "new_string", "new_source"] {
            if let Some(s) = payload.input_str(key)? {
                written.push(s);
            }
        }
        match payload.tool_input.get("edits") {
            None | Some(Value::Null) => {}
            Some(Value::Array(edits)) => {
                for e in edits {
                    match e.get("new_string") {
                        Some(Value::String(s)) => written.push(s),
                        None | Some(Value::Null) => {}
                        Some(_) => {
                            return Err(Error::validation(
                                "payload field 'tool_input.edits[].new_string' is not a string",
                            )
                            .hint("the payload does not have Claude Code's shape; check what calls the hook"));
                        }
                    }
                }
            }
            Some(_) => {
                return Err(
                    Error::validation("payload field 'tool_input.edits' is not an array").hint(
                        "the payload does not have Claude Code's shape; check what calls the hook",
                    ),
                );
            }
        }
        let base = payload.cwd.as_deref().unwrap_or(project);
        Ok(ToolEvent {
            tool,
            file: file.map(|f| relative_to(f, project)),
            disk: file.map(|f| base.join(f)),
            command: payload.input_str("command")?,
            written,
            on_disk: OnceCell::new(),
        })
    }

    /// Whether `rule` matches this event, leaving out `requires_signals`
    /// (which needs the state).
    pub fn matches(&self, rule: &Rule) -> bool {
        let tool = self.tool.to_lowercase();
        if !rule.tools.is_empty()
            && !rule
                .tools
                .iter()
                .any(|t| glob::whole(&t.to_lowercase(), &tool))
        {
            return false;
        }
        if !rule.files.is_empty() || !rule.except_files.is_empty() {
            let Some(file) = self.file.as_deref() else {
                return false;
            };
            if !rule.files.is_empty() && !rule.files.iter().any(|p| glob::path_matches(p, file)) {
                return false;
            }
            if rule
                .except_files
                .iter()
                .any(|p| glob::path_matches(p, file))
            {
                return false;
            }
        }
        if !rule.commands.is_empty() {
            let Some(cmd) = self.command else {
                return false;
            };
            let cmd = head(cmd, COMMAND_CHARS);
            if !rule
                .commands
                .iter()
                .any(|p| glob::words_match(p, cmd, glob::is_command_sep))
            {
                return false;
            }
        }
        match rule.contains.as_deref() {
            Some(needle) => self.contains(needle),
            None => true,
        }
    }

    /// Whether the command, the written text or the file on disk holds `needle`.
    fn contains(&self, needle: &str) -> bool {
        if self.command.is_some_and(|c| c.contains(needle)) {
            return true;
        }
        if self.written.iter().any(|w| w.contains(needle)) {
            return true;
        }
        // An Edit's new text may not hold the needle while the file does.
        self.on_disk
            .get_or_init(|| {
                let path = self.disk.as_ref()?;
                // Regular files only: a FIFO would block the session.
                std::fs::metadata(path).ok().filter(|m| m.is_file())?;
                let bytes = durable::read_limited(path, CONTENT_FILE_LIMIT).ok()?;
                Some(String::from_utf8_lossy(&bytes).into_owned())
            })
            .as_deref()
            .is_some_and(|text| text.contains(needle))
    }
}

/// `file` relative to `project` when it lies inside, else as given.
pub fn relative_to(file: &str, project: &Path) -> String {
    let p = Path::new(file);
    match p.strip_prefix(project) {
        Ok(rel) if p.is_absolute() => rel.to_string_lossy().into_owned(),
        _ => file.trim_start_matches("./").to_string(),
    }
}

/// The first `max` characters of `s`.
fn head(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Runs the tracker for one PostToolUse payload.
pub(crate) fn run(hook: &Hook, payload: &Payload, detail: &mut Value) -> Result<()> {
    let event = ToolEvent::of(payload, &hook.project)?;
    detail["tool_name"] = json!(event.tool);
    if let Some(f) = &event.file {
        detail["file"] = json!(f);
    }
    let rules = Rules::load(hook.tracker_rules.as_deref())?;
    let candidates: Vec<&Rule> = rules.rules.iter().filter(|r| event.matches(r)).collect();
    if candidates.is_empty() && hook.state_exists() {
        detail["signals"] = json!([]);
        return Ok(());
    }
    let now = document::now_epoch();
    let mut recorded: Vec<String> = Vec::new();
    let mut matched: Vec<&str> = Vec::new();
    let mut phase: Option<&str> = None;
    hook.update("hook-post-tool-use", detail, |doc| {
        recorded.clear();
        matched.clear();
        phase = None;
        for rule in &candidates {
            let have = |s: &String| doc.pointer(&format!("/signals/{s}")).is_some();
            if !rule.requires_signals.iter().all(have) {
                continue;
            }
            matched.push(&rule.name);
            for s in &rule.signals {
                if !recorded.contains(s) {
                    recorded.push(s.clone());
                }
            }
            if let Some(p) = rule.phase.as_deref() {
                phase = Some(p);
            }
        }
        if recorded.is_empty() {
            return Ok(false);
        }
        if !doc["signals"].is_object() {
            doc["signals"] = json!({});
        }
        for s in &recorded {
            doc["signals"][s] = json!(now);
        }
        if let Some(p) = phase {
            doc["phase"] = json!(p);
        }
        Ok(true)
    })?;
    detail["rules"] = json!(matched);
    detail["signals"] = json!(recorded);
    if let Some(p) = phase {
        detail["phase"] = json!(p);
    }
    if !recorded.is_empty() && hook.ctx.backend.kind() == "file" {
        // The shell library's mirrors; a shared backend keeps the signals
        // in the document only.
        write_signal_files(hook, &recorded, now, phase)?;
    }
    Ok(())
}

/// `.signals/NAME.json` for each signal, as `state-manager signal` writes them.
fn write_signal_files(
    hook: &Hook,
    signals: &[String],
    now: f64,
    phase: Option<&str>,
) -> Result<()> {
    for name in signals {
        let extra = json!({ "phase": phase, "source": "post-tool-use" });
        crate::state::commands::write_signal_file(&hook.ctx.cfg, name, now, extra)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> Payload {
        Payload::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn rules_parsed_directly_are_what_the_checked_way_gives() {
        // What each way makes of a text: the rules, or the error's words.
        let both = |text: &str| {
            let show = |r: Result<Rules>| match r {
                Ok(rules) => format!("{:?}", rules.rules),
                Err(e) => format!("error: {e}"),
            };
            (
                show(Rules::parse(text, "f")),
                show(Rules::parse_checked(text, "f")),
            )
        };
        let rule = r#"{"name":"r","tools":["Edit"],"signals":["s"]}"#;
        for text in [
            BUILT_IN_RULES.to_string(),
            format!(r#"{{"rules":[{rule}]}}"#),
            // A repeated key: the checked way takes the last one.
            format!(r#"{{"rules":[], "rules":[{rule}]}}"#),
            format!(r#"{{"rules":[{rule}], "rules":[]}}"#),
            // An array serde would take for the struct.
            format!("[null, null, [{rule}]]"),
            format!(r#"{{"rules":[{rule}]}} trailing"#),
            r#"{"rules":[{"name":"r","signals":["bad name"]}]}"#.to_string(),
            r#"{"rules":[{"name":"r","signals":[]}]}"#.to_string(),
            r#"{"rules":[], "extra": 1}"#.to_string(),
            "{".to_string(),
            String::new(),
        ] {
            let (direct, checked) = both(&text);
            assert_eq!(direct, checked, "on {text}");
        }
        let (direct, _) = both(&format!(r#"{{"rules":[], "rules":[{rule}]}}"#));
        assert!(direct.contains("name: \"r\""), "{direct}");
    }

    fn signals_for(json: &str) -> Vec<String> {
        let p = event(json);
        let ev = ToolEvent::of(&p, Path::new("/p")).unwrap();
        let rules = Rules::load(None).unwrap();
        rules
            .rules
            .iter()
            .filter(|r| ev.matches(r) && r.requires_signals.is_empty())
            .flat_map(|r| r.signals.clone())
            .collect()
    }

    #[test]
    fn the_built_in_rules_parse() {
        let rules = Rules::load(None).unwrap();
        assert!(rules.rules.len() >= 10);
    }

    #[test]
    fn the_built_in_rules_reproduce_the_replaced_tracker() {
        let s = signals_for(
            r#"{"tool_name":"Write","tool_input":{"file_path":"/p/.taskmaster/tasks/tasks.json","content":"{\"subtasks\":[]}"}}"#,
        );
        assert_eq!(s, ["PHASE1_START", "PHASE1_COMPLETE"]);
        let s = signals_for(
            r#"{"tool_name":"Write","tool_input":{"file_path":"/p/tasks.json","content":"{}"}}"#,
        );
        assert_eq!(s, ["PHASE1_START"]);
        let s = signals_for(
            r#"{"tool_name":"Edit","tool_input":{"file_path":"/p/src/x.ts","new_string":"a"}}"#,
        );
        assert_eq!(s, ["IMPLEMENTATION_COMPLETE"]);
        let s = signals_for(
            r#"{"tool_name":"Write","tool_input":{"file_path":"/p/src/__tests__/x.test.ts","content":"a"}}"#,
        );
        assert_eq!(s, ["TESTS_WRITTEN"]);
        let s = signals_for(
            r#"{"tool_name":"Read","tool_input":{"file_path":"/p/docs/ARCHITECTURE.md"}}"#,
        );
        assert_eq!(s, ["ARCHITECTURE_REVIEWED"]);
        let s =
            signals_for(r#"{"tool_name":"Bash","tool_input":{"command":"cd web && npm test"}}"#);
        assert_eq!(s, ["TESTS_EXECUTED"]);
        let s = signals_for(r#"{"tool_name":"Bash","tool_input":{"command":"pytest --coverage"}}"#);
        assert_eq!(s, ["TESTS_EXECUTED", "PHASE3_COMPLETE"]);
        let s = signals_for(
            r#"{"tool_name":"Bash","tool_input":{"command":"git commit -m 'npm testing'"}}"#,
        );
        assert_eq!(s, ["CHANGES_COMMITTED"]);
        let s = signals_for(
            r#"{"tool_name":"Write","tool_input":{"file_path":"/p/docs/PRD.md","content":"x"}}"#,
        );
        assert_eq!(s, ["SPEC_WRITTEN"]);
        assert!(
            signals_for(r#"{"tool_name":"Grep","tool_input":{"pattern":"x","path":"/p/src"}}"#)
                .is_empty()
        );
        assert!(
            signals_for(r#"{"tool_name":"Read","tool_input":{"file_path":"/p/src/x.ts"}}"#)
                .is_empty()
        );
    }

    #[test]
    fn paths_are_taken_relative_to_the_project() {
        assert_eq!(relative_to("/p/src/x.ts", Path::new("/p")), "src/x.ts");
        assert_eq!(relative_to("./src/x.ts", Path::new("/p")), "src/x.ts");
        assert_eq!(
            relative_to("/elsewhere/x.ts", Path::new("/p")),
            "/elsewhere/x.ts"
        );
    }

    #[test]
    fn bad_rules_are_refused_whole() {
        for bad in [
            r#"{"rules":[{"name":"a","signals":[]}]}"#,
            r#"{"rules":[{"name":"a","signals":["BAD NAME"]}]}"#,
            r#"{"rules":[{"name":"a","signals":["A"],"file":["typo.json"]}]}"#,
            r#"{"rules":[{"name":"a","signals":["A"],"phase":""}]}"#,
            r#"{"rules":"no"}"#,
            r#"[null, null, []]"#,
            "not json",
        ] {
            assert!(Rules::parse(bad, "t").is_err(), "{bad}");
        }
    }
}
