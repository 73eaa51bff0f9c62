//! The UserPromptSubmit skill hook: picks the skill a prompt calls for,
//! prints its `[ACTIVATE:CODE]` block (Claude Code adds a UserPromptSubmit
//! hook's standard output to the model's context), records
//! `lastActivation`, and prints a pipeline status section when asked.
//!
//! Rules come from a skill-rules file in the format of the replaced hooks
//! (config/skill-rules.example.json documents it): `skills[]` with an
//! `activation_code`, an optional `phase` and `priority`, and
//! `trigger_conditions` — `user_patterns` (case-insensitive substrings or
//! `*`/`?` wildcards of the prompt), `file_patterns` (against the files the
//! prompt mentions and legacy `contextFiles`) and `signals_detected` (all
//! required) — plus `phase_transitions` (`SIGNAL → next_activation`).
//!
//! At most one skill is activated per prompt: first a phase transition whose
//! signal was recorded after the last activation (the newest such signal
//! wins), else the highest-priority skill whose required signals are all
//! recorded and whose user or file pattern matches. Unknown fields are
//! ignored, so an existing skill-rules.json keeps working. Nothing is
//! printed unless the state write succeeded.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::glob;
use super::payload::Payload;
use super::{Hook, load_rules_file};
use crate::error::{Error, Result};
use crate::state::document;

/// Prompts longer than this many characters are matched on their start only.
const PROMPT_CHARS: usize = 64 * 1024;

/// A skill-rules file (unknown fields are ignored).
#[derive(Debug, Default, Deserialize)]
pub struct SkillRules {
    /// The skills, in file order.
    #[serde(default)]
    pub skills: Vec<Skill>,
    /// Signal → the skill it hands over to.
    #[serde(default)]
    pub phase_transitions: Map<String, Value>,
    /// Words that ask for the status section [default: "status"].
    #[serde(default)]
    pub status_patterns: Option<Vec<String>>,
}

/// One skill.
#[derive(Debug, Deserialize)]
pub struct Skill {
    /// A readable name, such as `prd-to-tasks`.
    #[serde(default)]
    pub skill: Option<String>,
    /// The code printed as `[ACTIVATE:CODE]`.
    pub activation_code: String,
    /// The phase: a string, or a number N meaning `phaseN`.
    #[serde(default)]
    pub phase: Option<Value>,
    /// Lower goes first.
    #[serde(default)]
    pub priority: Option<f64>,
    /// When the skill applies.
    #[serde(default)]
    pub trigger_conditions: Triggers,
    /// Extra text printed under the activation line.
    #[serde(default)]
    pub context: Option<String>,
}

/// When a skill applies.
#[derive(Debug, Default, Deserialize)]
pub struct Triggers {
    #[serde(default)]
    pub user_patterns: Vec<String>,
    #[serde(default)]
    pub file_patterns: Vec<String>,
    #[serde(default)]
    pub signals_detected: Vec<String>,
}

/// The skill to activate and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Activation {
    pub code: String,
    pub skill: Option<String>,
    pub phase: Option<String>,
    pub reason: String,
    pub context: Option<String>,
}

impl SkillRules {
    /// Parses and checks a skill-rules file's text.
    pub fn parse(text: &str, source: &Path) -> Result<SkillRules> {
        let bad = |why: String| {
            Error::validation("the skill rules do not parse")
                .with_path(source)
                .because(why)
                .hint("fix the file (see config/skill-rules.example.json)")
        };
        // Parsed as a value first: serde would also take `[]` for a struct.
        let value: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        if !value.is_object() {
            return Err(bad("the file is not a JSON object".into()));
        }
        let rules: SkillRules = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        for s in &rules.skills {
            check_code(&s.activation_code).map_err(|e| e.with_path(source))?;
            s.phase_name().map_err(|e| e.with_path(source))?;
        }
        for (signal, t) in &rules.phase_transitions {
            match t.get("next_activation") {
                None | Some(Value::Null) => {}
                Some(Value::String(code)) => check_code(code).map_err(|e| e.with_path(source))?,
                Some(_) => {
                    return Err(Error::validation(format!(
                        "phase_transitions.{signal}.next_activation is not a string"
                    ))
                    .with_path(source)
                    .hint("give the activation code of a skill, such as \"SPEC_GEN_V1\""));
                }
            }
        }
        Ok(rules)
    }

    /// The skill with activation code `code`.
    fn skill(&self, code: &str) -> Option<&Skill> {
        self.skills.iter().find(|s| s.activation_code == code)
    }
}

fn check_code(code: &str) -> Result<()> {
    crate::lock::name::validate(code).map_err(|_| {
        Error::validation(format!("bad activation code '{}'", code.escape_debug()))
            .hint("use 1-128 letters, digits, '.', '_' or '-', such as PRD_TO_TASKS_V1")
    })
}

impl Skill {
    /// The phase as the state records it: `"phase1.5"` for 1.5, strings as they are.
    fn phase_name(&self) -> Result<Option<String>> {
        match &self.phase {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(format!("phase{n}"))),
            Some(other) => Err(Error::validation(format!(
                "skill {}: phase {other} is neither a number nor a non-empty string",
                self.activation_code
            ))
            .hint("write the phase as 1, 1.5 or \"phase1\"")),
        }
    }

    fn activation(&self, reason: String) -> Activation {
        Activation {
            code: self.activation_code.clone(),
            skill: self.skill.clone(),
            phase: self.phase_name().ok().flatten(),
            reason,
            context: self.context.clone(),
        }
    }
}

/// Finds the skill-rules file: `explicit` (WFSTATE_SKILL_RULES) if given,
/// else the first of `config/skill-rules.json`, `.claude/skill-rules.json`
/// and `.claude/config/skill-rules.json` in the project.
pub fn locate(explicit: Option<&Path>, project: &Path) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    [
        "config/skill-rules.json",
        ".claude/skill-rules.json",
        ".claude/config/skill-rules.json",
    ]
    .iter()
    .map(|rel| project.join(rel))
    .find(|p| p.is_file())
}

/// The files a prompt mentions: `@path` mentions and words that look like
/// paths (with a `/`, or a name with an extension).
pub fn mentioned_files(prompt: &str) -> Vec<String> {
    let mut files = Vec::new();
    for word in prompt.split_whitespace() {
        let w = word
            .trim_matches(|c: char| "\"'`()[]{}<>,;:!?".contains(c))
            .trim_start_matches('@')
            .trim_end_matches('.');
        let looks_like_path = w.contains('/')
            || w.rsplit_once('.').is_some_and(|(stem, ext)| {
                !stem.is_empty()
                    && (stem.len() >= 2 || ext.len() >= 2)
                    && (1..=10).contains(&ext.len())
                    && ext.chars().all(|c| c.is_ascii_alphanumeric())
                    && ext.chars().any(|c| c.is_ascii_alphabetic())
            });
        if looks_like_path && !files.iter().any(|f| f == w) {
            files.push(w.to_string());
        }
    }
    files
}

/// Whether a skill's file pattern matches `file`: as a path wildcard, or
/// (patterns without wildcards, as the replaced hooks wrote them, such as
/// `docs/PRD`) as a case-insensitive part of the path.
fn file_pattern_matches(pattern: &str, file: &str) -> bool {
    glob::path_matches(pattern, file)
        || (!pattern.contains(['*', '?']) && file.to_lowercase().contains(&pattern.to_lowercase()))
}

/// The signals recorded in `doc`, with their times.
fn signals(doc: &Value) -> Vec<(&str, f64)> {
    doc.get("signals")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.as_f64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// The skill to activate for `prompt` given the state `doc`, if any.
pub fn choose(
    rules: &SkillRules,
    doc: &Value,
    prompt: &str,
    files: &[String],
) -> Option<Activation> {
    let recorded = signals(doc);
    let last_code = doc.get("lastActivation").and_then(Value::as_str);
    let last_at = doc
        .get("lastActivationAt")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    // A signal recorded since the last activation hands over to the next skill.
    let transition = recorded
        .iter()
        .filter(|(_, at)| *at > last_at)
        .filter_map(|(name, at)| {
            let code = rules
                .phase_transitions
                .get(*name)?
                .get("next_activation")?
                .as_str()?;
            (Some(code) != last_code).then_some((*name, *at, code))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1));
    if let Some((signal, _, code)) = transition {
        let reason = format!("signal {signal} was recorded since the last activation");
        return Some(match rules.skill(code) {
            Some(s) => s.activation(reason),
            None => Activation {
                code: code.to_string(),
                skill: None,
                phase: None,
                reason,
                context: None,
            },
        });
    }
    let prompt_lower = head(prompt, PROMPT_CHARS).to_lowercase();
    let mut order: Vec<&Skill> = rules.skills.iter().collect();
    order.sort_by(|a, b| {
        a.priority
            .unwrap_or(f64::MAX)
            .total_cmp(&b.priority.unwrap_or(f64::MAX))
    });
    for s in order {
        let t = &s.trigger_conditions;
        if !t
            .signals_detected
            .iter()
            .all(|need| recorded.iter().any(|(name, _)| name == need))
        {
            continue;
        }
        if let Some(p) = t
            .user_patterns
            .iter()
            .find(|p| glob::text_matches(p, &prompt_lower))
        {
            return Some(s.activation(format!("the prompt matches \"{p}\"")));
        }
        for p in &t.file_patterns {
            if let Some(f) = files.iter().find(|f| file_pattern_matches(p, f)) {
                return Some(s.activation(format!("file {f} matches \"{p}\"")));
            }
        }
    }
    None
}

/// Whether the prompt asks for the pipeline status.
pub fn wants_status(rules: &SkillRules, prompt: &str) -> bool {
    let prompt_lower = head(prompt, PROMPT_CHARS).to_lowercase();
    let default = ["status".to_string()];
    let patterns = rules.status_patterns.as_deref().unwrap_or(&default);
    patterns
        .iter()
        .any(|p| glob::words_match(&p.to_lowercase(), &prompt_lower, glob::is_prose_sep))
}

/// The `[ACTIVATE:CODE]` block for `a`.
pub fn render_activation(a: &Activation) -> String {
    let mut out = format!("[ACTIVATE:{}]\n", a.code);
    if let Some(s) = &a.skill {
        out.push_str(&format!("Skill: {s}\n"));
    }
    if let Some(p) = &a.phase {
        out.push_str(&format!("Phase: {p}\n"));
    }
    out.push_str(&format!("Reason: {}\n", a.reason));
    if let Some(c) = &a.context {
        out.push_str(c.trim_end());
        out.push('\n');
    }
    out
}

/// The pipeline status section for the state `doc` at `path`.
pub fn render_status(doc: &Value, path: &Path) -> String {
    let s = |p: &str| match doc.pointer(p) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(Value::String(_)) => "-".into(),
        Some(v) => v.to_string(),
    };
    let mut out = String::from("## Pipeline status\n");
    out.push_str(&format!("Phase:           {}\n", s("/phase")));
    out.push_str(&format!("Last activation: {}\n", s("/lastActivation")));
    let tasks: Vec<String> = doc
        .get("completedTasks")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if tasks.is_empty() {
        out.push_str("Completed tasks: none\n");
    } else {
        out.push_str(&format!(
            "Completed tasks: {} ({})\n",
            tasks.len(),
            tasks.join(", ")
        ));
    }
    let degraded = doc.pointer("/degradedMode/enabled") == Some(&json!(true));
    if degraded {
        let features: Vec<&str> = doc
            .pointer("/degradedMode/disabledFeatures")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut line = format!("Degraded mode:   ON ({})", s("/degradedMode/reason"));
        if !features.is_empty() {
            line.push_str(&format!("; disabled: {}", features.join(", ")));
        }
        out.push_str(&line);
        out.push('\n');
    } else {
        out.push_str("Degraded mode:   off\n");
    }
    let mut sigs = signals(doc);
    // Stable: signals of one moment stay in the order they were recorded.
    sigs.sort_by(|a, b| a.1.total_cmp(&b.1));
    if sigs.is_empty() {
        out.push_str("Signals:         none\n");
    } else {
        out.push_str("Signals (oldest first):\n");
        let width = sigs.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        for (name, at) in sigs {
            out.push_str(&format!("  {name:<width$}  {}\n", epoch_rfc3339(at)));
        }
    }
    out.push_str(&format!(
        "State file:      {} (revision {})\n",
        path.display(),
        document::revision(doc)
    ));
    out
}

fn epoch_rfc3339(at: f64) -> String {
    chrono::DateTime::from_timestamp(at.trunc() as i64, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| at.to_string())
}

fn head(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Applies activation `a` to `doc`.
fn apply(doc: &mut Value, a: &Activation, now: f64) {
    doc["lastActivation"] = json!(a.code);
    doc["lastActivationAt"] = json!(now);
    if let Some(p) = &a.phase {
        doc["phase"] = json!(p);
    }
    match doc.get_mut("context") {
        None | Some(Value::Null) => doc["context"] = json!({ "activeSkills": [a.code] }),
        Some(Value::Object(ctx)) => {
            ctx.insert("activeSkills".into(), json!([a.code]));
        }
        // Someone else's `context`: leave it alone.
        Some(_) => {}
    }
}

/// Runs the skill hook for one UserPromptSubmit payload.
/// Runs the UserPromptSubmit hook; returns what Claude Code is to read on
/// stdout (empty: nothing).
pub(crate) fn run(hook: &Hook, payload: &Payload, detail: &mut Value) -> Result<String> {
    let prompt = payload.require_prompt()?;
    let rules_path = locate(hook.skill_rules.as_deref(), &hook.project);
    let rules = match &rules_path {
        Some(p) => SkillRules::parse(&load_rules_file(p, "skill rules")?, p)?,
        None => SkillRules::default(),
    };
    detail["skill_rules"] = json!(rules_path.as_ref().map(|p| p.display().to_string()));
    let mut files = payload.context_files.clone();
    for f in mentioned_files(head(prompt, PROMPT_CHARS)) {
        if !files.contains(&f) {
            files.push(f);
        }
    }
    let status = wants_status(&rules, prompt);
    detail["status"] = json!(status);

    // Decide on a lock-free read; take the lock only to write.
    let current = hook.load_state()?;
    let wanted = current
        .as_ref()
        .and_then(|doc| choose(&rules, doc, prompt, &files));
    let (doc, activation) = match current {
        Some(doc) if wanted.is_none() => (doc, None),
        _ => {
            let now = document::now_epoch();
            let mut chosen = None;
            let doc = hook.update("hook-user-prompt-submit", detail, |doc| {
                // Decide again: the state may have changed before we got the lock.
                chosen = choose(&rules, doc, prompt, &files);
                match &chosen {
                    Some(a) => {
                        apply(doc, a, now);
                        Ok(true)
                    }
                    None => Ok(false),
                }
            })?;
            (doc, chosen)
        }
    };
    detail["activation"] = json!(activation.as_ref().map(|a| &a.code));
    let mut out = String::new();
    if let Some(a) = &activation {
        out.push_str(&render_activation(a));
    }
    if status {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&render_status(&doc, &hook.ctx.cfg.state_file));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = r#"{
      "skills": [
        {"skill": "b", "activation_code": "B_V1", "phase": 2, "priority": 2,
         "trigger_conditions": {"user_patterns": ["create spec"], "signals_detected": ["PHASE1_COMPLETE"]}},
        {"skill": "a", "activation_code": "A_V1", "phase": 1, "priority": 1,
         "trigger_conditions": {"user_patterns": ["generate tasks", "parse*prd"], "file_patterns": ["PRD.md", "docs/requirements"]}}
      ],
      "phase_transitions": {"PHASE1_COMPLETE": {"next_activation": "B_V1", "auto_trigger": true}},
      "notes": {"ignored": true}
    }"#;

    fn rules() -> SkillRules {
        SkillRules::parse(RULES, Path::new("r.json")).unwrap()
    }

    #[test]
    fn user_and_file_patterns_activate_by_priority() {
        let doc = document::fresh();
        let a = choose(&rules(), &doc, "Please GENERATE TASKS now", &[]).unwrap();
        assert_eq!(a.code, "A_V1");
        assert_eq!(a.phase.as_deref(), Some("phase1"));
        assert_eq!(
            choose(&rules(), &doc, "parse the prd", &[]).unwrap().code,
            "A_V1"
        );
        let files = mentioned_files("look at @docs/requirements-v2.md please");
        assert_eq!(files, ["docs/requirements-v2.md"]);
        assert_eq!(choose(&rules(), &doc, "look", &files).unwrap().code, "A_V1");
        assert!(choose(&rules(), &doc, "hello there", &[]).is_none());
    }

    #[test]
    fn required_signals_gate_and_new_signals_hand_over() {
        let mut doc = document::fresh();
        assert!(choose(&rules(), &doc, "create spec", &[]).is_none());
        doc["signals"]["PHASE1_COMPLETE"] = json!(100.0);
        let a = choose(&rules(), &doc, "anything", &[]).unwrap();
        assert_eq!(a.code, "B_V1");
        assert!(a.reason.contains("PHASE1_COMPLETE"));
        apply(&mut doc, &a, 200.0);
        // The signal is now older than the last activation: no repeat.
        assert!(choose(&rules(), &doc, "anything", &[]).is_none());
        assert_eq!(
            choose(&rules(), &doc, "create spec", &[]).unwrap().code,
            "B_V1"
        );
        assert_eq!(doc["context"]["activeSkills"], json!(["B_V1"]));
        assert_eq!(doc["phase"], "phase2");
    }

    #[test]
    fn status_is_asked_for_by_whole_words() {
        let r = SkillRules::default();
        assert!(wants_status(&r, "/status"));
        assert!(wants_status(&r, "What is the pipeline Status?"));
        assert!(!wants_status(&r, "fix the statuses table"));
        let text = render_status(&document::fresh(), Path::new("s.json"));
        assert!(text.contains("Phase:           pre-init"), "{text}");
        assert!(text.contains("Degraded mode:   off"), "{text}");
    }

    #[test]
    fn bad_skill_rules_are_refused() {
        for bad in [
            r#"{"skills":[{"activation_code":"BAD CODE"}]}"#,
            r#"{"skills":[{"activation_code":"A","phase":[1]}]}"#,
            r#"{"skills":[{"activation_code":"A","trigger_conditions":{"user_patterns":"x"}}]}"#,
            r#"{"phase_transitions":{"S":{"next_activation":5}}}"#,
            "[]",
        ] {
            assert!(SkillRules::parse(bad, Path::new("r")).is_err(), "{bad}");
        }
    }

    #[test]
    fn mentioned_files_look_like_paths() {
        assert_eq!(
            mentioned_files("read `src/a.ts`, PRD.md and e.g. nothing else. v1.2 too"),
            ["src/a.ts", "PRD.md"]
        );
    }
}
