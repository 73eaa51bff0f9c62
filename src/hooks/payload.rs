//! The JSON a Claude Code hook receives on standard input, parsed into one
//! shape whatever its dialect.
//!
//! Claude Code sends `session_id`, `transcript_path`, `cwd`,
//! `hook_event_name` and, for PostToolUse, `tool_name`/`tool_input`/
//! `tool_response`, for UserPromptSubmit, `prompt`. The shell hooks this
//! toolkit replaces read an older shape (`tool`/`input`, and
//! `message`/`contextFiles`); both are accepted, the current names winning
//! when a payload carries both.
//!
//! Parsing is strict about types and lenient about presence: a field that is
//! absent or `null` is simply not there, while a field of the wrong type
//! (`"tool_name": 5`) makes the whole payload unexpected input (exit 4 in
//! the audit event), so a hook never acts on a half-understood event.
//! Unknown fields are ignored: Claude Code adds fields over time.

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::state::path::type_name;

/// One hook payload, in either dialect.
#[derive(Clone, Debug, Default)]
pub struct Payload {
    /// The Claude Code session; becomes the audit events' `run_id`.
    pub session_id: Option<String>,
    /// The session's transcript file (recorded, never read).
    pub transcript_path: Option<String>,
    /// The folder Claude Code ran the tool in.
    pub cwd: Option<PathBuf>,
    /// `hook_event_name`, such as `PostToolUse`.
    pub event_name: Option<String>,
    /// `tool_name` (or legacy `tool`).
    pub tool_name: Option<String>,
    /// `tool_input` (or legacy `input`); empty when absent.
    pub tool_input: Map<String, Value>,
    /// `prompt` (or legacy `message`).
    pub prompt: Option<String>,
    /// Legacy `contextFiles`: files the user attached to the prompt.
    pub context_files: Vec<String>,
}

impl Payload {
    /// Parses the bytes of a payload (exit 4 for anything but a JSON object
    /// whose known fields have the right types).
    pub fn parse(bytes: &[u8]) -> Result<Payload> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::validation("the hook payload is empty")
                .hint("Claude Code sends a JSON object on standard input; run the hook only from Claude Code's hooks settings"));
        }
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            Error::validation("the hook payload is not JSON")
                .because(e)
                .hint(
                    "Claude Code sends a JSON object on standard input; check what calls the hook",
                )
        })?;
        let Value::Object(obj) = value else {
            return Err(Error::validation(format!(
                "the hook payload is {}, not an object",
                type_name(&value)
            ))
            .hint("Claude Code sends a JSON object on standard input; check what calls the hook"));
        };
        Ok(Payload {
            session_id: string(&obj, "session_id")?,
            transcript_path: string(&obj, "transcript_path")?,
            cwd: string(&obj, "cwd")?
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            event_name: string(&obj, "hook_event_name")?,
            tool_name: first_string(&obj, &["tool_name", "tool"])?,
            tool_input: tool_input(&obj)?,
            prompt: first_string(&obj, &["prompt", "message"])?,
            context_files: string_list(&obj, "contextFiles")?,
        })
    }

    /// Refuses a payload sent for another hook event than `expected`.
    pub fn check_event(&self, expected: &str) -> Result<()> {
        match self.event_name.as_deref() {
            Some(name) if name != expected => Err(unexpected(format!(
                "the payload is for hook event '{name}', not {expected}"
            ))
            .hint(format!(
                "register this hook under \"{expected}\" in .claude/settings.json"
            ))),
            _ => Ok(()),
        }
    }

    /// The tool name; a PostToolUse payload without one is unexpected input.
    pub fn require_tool(&self) -> Result<&str> {
        self.tool_name
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                unexpected("the payload names no tool (no tool_name or tool field)")
                    .hint("register the tracker under \"PostToolUse\" in .claude/settings.json")
            })
    }

    /// The prompt; a UserPromptSubmit payload without one is unexpected input.
    pub fn require_prompt(&self) -> Result<&str> {
        self.prompt.as_deref().ok_or_else(|| {
            unexpected("the payload holds no prompt (no prompt or message field)")
                .hint("register the skill hook under \"UserPromptSubmit\" in .claude/settings.json")
        })
    }

    /// A string field of `tool_input` (`None` when absent or null).
    pub fn input_str(&self, key: &str) -> Result<Option<&str>> {
        match self.tool_input.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(wrong_type(&format!("tool_input.{key}"), other, "a string")),
        }
    }
}

/// An error for a payload that is JSON but not what the hook expects.
fn unexpected(what: impl Into<String>) -> Error {
    Error::validation(what)
}

fn wrong_type(field: &str, v: &Value, want: &str) -> Error {
    unexpected(format!(
        "payload field '{field}' is {}, not {want}",
        type_name(v)
    ))
    .hint("the payload does not have Claude Code's shape; check what calls the hook")
}

fn string(obj: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(wrong_type(key, other, "a string")),
    }
}

/// The first of `keys` that is present (all present ones must be strings).
fn first_string(obj: &Map<String, Value>, keys: &[&str]) -> Result<Option<String>> {
    let mut found = None;
    for key in keys {
        let v = string(obj, key)?;
        if found.is_none() {
            found = v;
        }
    }
    Ok(found)
}

fn string_list(obj: &Map<String, Value>, key: &str) -> Result<Vec<String>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(wrong_type(&format!("{key}[]"), other, "a string")),
            })
            .collect(),
        Some(other) => Err(wrong_type(key, other, "an array of strings")),
    }
}

/// `tool_input` (or legacy `input`): an object, or (legacy) a string holding one.
fn tool_input(obj: &Map<String, Value>) -> Result<Map<String, Value>> {
    let (key, v) = match (obj.get("tool_input"), obj.get("input")) {
        (Some(v), _) if !v.is_null() => ("tool_input", v),
        (_, Some(v)) if !v.is_null() => ("input", v),
        _ => return Ok(Map::new()),
    };
    match v {
        Value::Object(m) => Ok(m.clone()),
        // The replaced hooks passed `input` through `jq -r`, so some callers
        // send the object as JSON text.
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(wrong_type(key, v, "an object")),
        },
        other => Err(wrong_type(key, other, "an object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::Code;

    #[test]
    fn reads_claude_codes_shape() {
        let p = Payload::parse(
            br#"{"session_id":"s1","transcript_path":"/t.jsonl","cwd":"/p","hook_event_name":"PostToolUse",
                "tool_name":"Write","tool_input":{"file_path":"/p/a.txt","content":"x"},"tool_response":{"success":true}}"#,
        )
        .unwrap();
        assert_eq!(p.session_id.as_deref(), Some("s1"));
        assert_eq!(p.cwd, Some(PathBuf::from("/p")));
        assert_eq!(p.require_tool().unwrap(), "Write");
        assert_eq!(p.input_str("file_path").unwrap(), Some("/p/a.txt"));
        p.check_event("PostToolUse").unwrap();
        assert!(p.check_event("UserPromptSubmit").is_err());
    }

    #[test]
    fn reads_the_legacy_shapes() {
        let p =
            Payload::parse(br#"{"tool":"Edit","input":"{\"file_path\":\"src/a.ts\"}"}"#).unwrap();
        assert_eq!(p.require_tool().unwrap(), "Edit");
        assert_eq!(p.input_str("file_path").unwrap(), Some("src/a.ts"));
        let p = Payload::parse(br#"{"message":"hi","contextFiles":["a.md"]}"#).unwrap();
        assert_eq!(p.require_prompt().unwrap(), "hi");
        assert_eq!(p.context_files, vec!["a.md".to_string()]);
    }

    #[test]
    fn refuses_what_is_not_a_well_typed_object() {
        for bad in [
            &b""[..],
            b"   \n",
            b"not json",
            b"[1,2]",
            br#"{"tool_name":5}"#,
            br#"{"tool_name":"Write","tool_input":[1]}"#,
            br#"{"tool_name":"Write","tool_input":"plain text"}"#,
            br#"{"prompt":{"a":1}}"#,
            br#"{"message":"x","contextFiles":"a.md"}"#,
            br#"{"message":"x","contextFiles":[1]}"#,
            br#"{"session_id":7}"#,
        ] {
            let err = Payload::parse(bad).unwrap_err();
            assert_eq!(err.code(), Code::ValidationFailed, "{bad:?}");
        }
        let p = Payload::parse(br#"{"tool_name":"Write","tool_input":{"file_path":3}}"#).unwrap();
        assert!(p.input_str("file_path").is_err());
        assert!(Payload::parse(b"{}").unwrap().require_tool().is_err());
        assert!(Payload::parse(b"{}").unwrap().require_prompt().is_err());
    }
}
