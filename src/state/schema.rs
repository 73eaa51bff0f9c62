//! The workflow-state JSON Schema, compiled into Rust at build time.
//!
//! `jsonschema`'s `validator` macro turns schemas/workflow-state.schema.json
//! into validation code when the crate is built, so no process ever parses or
//! compiles the schema (that took 5 million instructions, most of a `set`).
//! Changing the schema file rebuilds the validator.
//!
//! No regex is compiled at run time either: build.rs hands the macro the
//! schema with each `pattern` written as a custom `format` that a function
//! here checks by hand ([`is_schema_version`], [`is_name`]), because the macro
//! compiles a `pattern` into a regex on first use (~80k instructions of a
//! `set`, 737k when a signal name was checked). The tests below prove each
//! function accepts exactly what its regex accepts, and the messages are the
//! regex's: `"x" does not match "^…$"`, at the value's JSON pointer.

use serde_json::Value;

/// The text of schemas/workflow-state.schema.json.
pub const WORKFLOW_STATE: &str = include_str!("../../schemas/workflow-state.schema.json");

/// One way a document breaks the schema.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    /// JSON pointer to the offending value ("" is the document itself).
    pub pointer: String,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = if self.pointer.is_empty() {
            "/"
        } else {
            &self.pointer
        };
        write!(f, "{p}: {}", self.message)
    }
}

// The generated validator of schemas/workflow-state.schema.json, `StateSchema`
// (written by build.rs: its `pattern`s are checked by the functions below).
include!(concat!(env!("OUT_DIR"), "/state_validator.rs"));

/// `^[0-9]+\.[0-9]+$` without a regex: `schemaVersion`, such as `1.0`.
pub fn is_schema_version(s: &str) -> bool {
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    s.split_once('.')
        .is_some_and(|(major, minor)| digits(major) && digits(minor))
}

/// `^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$` without a regex: a signal's name,
/// 1 to 128 of letters, digits, `.`, `_`, `-`, not starting with `.`.
pub fn is_name(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=128).contains(&b.len())
        && b[0] != b'.'
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// Every violation of the workflow-state schema in `doc`, in document order.
pub fn violations(doc: &Value) -> Vec<Violation> {
    StateSchema::iter_errors(doc)
        .map(|e| {
            let message = match e.kind() {
                // One of the `pattern`s build.rs made a `format`: the regex's words.
                jsonschema::error::ValidationErrorKind::Format { format }
                    if format.starts_with('^') =>
                {
                    format!(r#"{} does not match "{format}""#, e.instance())
                }
                _ => e.to_string(),
            };
            Violation {
                pointer: e.instance_path().to_string(),
                message,
            }
        })
        .collect()
}

/// What the schema asks of one top-level member, as far as a `set` that
/// copies the member unparsed can tell from its scan (see
/// [`super::members`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberRule {
    /// No `properties` entry: the schema accepts any value there.
    Anything,
    /// Exactly `{"type": "array", "items": {"type": "string"}}`.
    ArrayOfStrings,
    /// Anything else: the member must be parsed and validated.
    Parse,
}

/// The rule of each top-level property, read from the schema file; `None`
/// when the top-level schema has a keyword other than those that look at
/// each property on its own or at the keys alone (`type`, `required`,
/// `properties` and annotations): then no member may be left unparsed.
/// Because `properties` checks each member against its own sub-schema, a
/// document is valid exactly when its skeleton (each member the scan
/// showed valid replaced by [`placeholder`]) is and the members it
/// replaced are.
pub fn member_rules() -> Option<&'static [(String, MemberRule)]> {
    static RULES: std::sync::OnceLock<Option<Vec<(String, MemberRule)>>> =
        std::sync::OnceLock::new();
    RULES
        .get_or_init(|| {
            let schema: Value = serde_json::from_str(WORKFLOW_STATE).ok()?;
            let top = schema.as_object()?;
            const SEPARABLE: &[&str] = &[
                "$schema",
                "$id",
                "title",
                "description",
                "type",
                "required",
                "properties",
            ];
            if top.keys().any(|k| !SEPARABLE.contains(&k.as_str())) {
                return None;
            }
            let strings = serde_json::json!({"type": "array", "items": {"type": "string"}});
            let props = top.get("properties")?.as_object()?;
            Some(
                props
                    .iter()
                    .map(|(k, sub)| {
                        let rule = if *sub == strings {
                            MemberRule::ArrayOfStrings
                        } else {
                            MemberRule::Parse
                        };
                        (k.clone(), rule)
                    })
                    .collect(),
            )
        })
        .as_deref()
}

/// What stands in a skeleton for a member the scan showed valid under
/// `rule`: a value that rule accepts too (`None` for [`MemberRule::Parse`]).
pub fn placeholder(rule: MemberRule) -> Option<Value> {
    match rule {
        MemberRule::Anything => Some(Value::Null),
        MemberRule::ArrayOfStrings => Some(Value::Array(Vec::new())),
        MemberRule::Parse => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fresh_document_is_valid_and_wrong_types_are_pointed_at() {
        let doc = crate::state::document::fresh();
        assert_eq!(violations(&doc), vec![]);
        let mut bad = doc.clone();
        bad["phase"] = json!(5);
        bad["signals"]["X"] = json!("soon");
        let v = violations(&bad);
        let pointers: Vec<_> = v.iter().map(|v| v.pointer.as_str()).collect();
        assert!(pointers.contains(&"/phase"), "{v:?}");
        assert!(pointers.contains(&"/signals/X"), "{v:?}");
    }

    /// The generated validator agrees with the schema compiled at run time.
    #[test]
    fn generated_validator_matches_the_schema_file() {
        let schema: Value = serde_json::from_str(WORKFLOW_STATE).unwrap();
        let runtime = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap();
        let mut docs = vec![
            crate::state::document::fresh(),
            json!({}),
            json!([]),
            json!({"phase": 1}),
        ];
        let mut d = crate::state::document::fresh();
        d["metadata"]["lastModified"] = json!("not a time");
        docs.push(d.clone());
        d["degradedMode"]["timestamp"] = json!("");
        d["signals"] = json!({".bad": 1, "ok": -1});
        docs.push(d);
        for doc in &docs {
            assert_eq!(runtime.is_valid(doc), violations(doc).is_empty(), "{doc}");
        }
    }

    /// The public schema with the validator's own view: its regexes, run by
    /// jsonschema's regex engine, as every release before this one did.
    fn regex_validator() -> &'static jsonschema::Validator {
        static V: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
        V.get_or_init(|| {
            let schema: Value = serde_json::from_str(WORKFLOW_STATE).unwrap();
            jsonschema::draft202012::options()
                .should_validate_formats(true)
                .build(&schema)
                .unwrap()
        })
    }

    /// What the regex validator says about `doc`: (pointer, message) pairs.
    fn regex_violations(doc: &Value) -> Vec<(String, String)> {
        regex_validator()
            .iter_errors(doc)
            .map(|e| (e.instance_path().to_string(), e.to_string()))
            .collect()
    }

    fn ours(doc: &Value) -> Vec<(String, String)> {
        violations(doc)
            .into_iter()
            .map(|v| (v.pointer, v.message))
            .collect()
    }

    /// Every object of `v` (the schema) and below.
    fn objects(v: &Value, out: &mut Vec<serde_json::Map<String, Value>>) {
        match v {
            Value::Object(m) => {
                out.push(m.clone());
                m.values().for_each(|c| objects(c, out));
            }
            Value::Array(a) => a.iter().for_each(|c| objects(c, out)),
            _ => {}
        }
    }

    /// The validator is built from the schema file with each `pattern` a
    /// `format` and nothing else changed; nothing left in it compiles a regex.
    #[test]
    fn validated_schema_is_the_schema_file_with_patterns_as_formats() {
        let file: Value = serde_json::from_str(WORKFLOW_STATE).unwrap();
        let validated: Value = serde_json::from_str(VALIDATED_SCHEMA).unwrap();
        let mut all = vec![];
        objects(&file, &mut all);
        assert!(all.iter().any(|o| o.contains_key("pattern")));
        for o in &all {
            assert!(
                !(o.contains_key("pattern") && o.contains_key("format")),
                "a pattern beside a format cannot become a format: {o:?}"
            );
        }
        let text = WORKFLOW_STATE.replace("\"pattern\":", "\"format\":");
        assert_eq!(validated, serde_json::from_str::<Value>(&text).unwrap());
        let mut left = vec![];
        objects(&validated, &mut left);
        for o in &left {
            assert!(!o.contains_key("pattern") && !o.contains_key("patternProperties"));
        }
    }

    /// A document whose schemaVersion and signal names are `version` and `names`.
    fn doc_with(version: &str, names: &[String]) -> Value {
        let mut doc = crate::state::document::fresh();
        doc["schemaVersion"] = json!(version);
        for (i, n) in names.iter().enumerate() {
            doc["signals"][n] = json!(i);
        }
        doc
    }

    #[test]
    fn hand_checks_agree_with_the_regexes_on_edge_cases() {
        let names: Vec<String> = [
            "", ".", ".a", "a.", "-", "_", "a", "A-b_c.9", "a b", "a\n", "é", "a/b", "a:b",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([127, 128, 129].map(|n| "x".repeat(n)))
        .collect();
        let versions = [
            "", ".", "1", "1.", ".1", "1.0", "10.20", "1.0.0", "1.0\n", " 1.0", "1,0", "a.b",
            "١.٢", "+1.0", "-1.0",
        ];
        for v in versions {
            for n in &names {
                let doc = doc_with(v, std::slice::from_ref(n));
                assert_eq!(ours(&doc), regex_violations(&doc), "{doc}");
            }
        }
        // The messages name the value and the pattern, at the value's pointer.
        let doc = doc_with("1", &[".bad".to_string()]);
        assert_eq!(
            ours(&doc),
            vec![
                (
                    "/schemaVersion".into(),
                    r#""1" does not match "^[0-9]+\.[0-9]+$""#.into()
                ),
                (
                    "/signals".into(),
                    r#"".bad" does not match "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$""#.into()
                ),
            ]
        );
    }

    proptest::proptest! {
        /// Over a family of versions and signal names (valid, almost valid,
        /// too long, odd characters), the validator without regexes reports
        /// exactly what the schema file's regexes report, in the same words.
        #[test]
        fn hand_checks_agree_with_the_regexes(
            version in proptest::prop_oneof![
                "[0-9]{1,3}\\.[0-9]{1,3}",
                "[0-9.a \n+-]{0,6}",
                "[0-9]{0,2}[.,][0-9]{0,2}(\n| |x)?",
            ],
            names in proptest::collection::vec(proptest::prop_oneof![
                "[A-Za-z0-9._-]{0,8}",
                "[A-Za-z0-9._\\- /é\n:]{0,6}",
                "[A-Za-z0-9_-][A-Za-z0-9._-]{125,129}",
                "[a-z.]{1,3}",
            ], 0..4),
        ) {
            let doc = doc_with(&version, &names);
            proptest::prop_assert_eq!(ours(&doc), regex_violations(&doc));
        }
    }

    #[test]
    fn unknown_top_level_keys_are_allowed_but_bad_timestamps_are_not() {
        let mut doc = crate::state::document::fresh();
        doc["context"] = json!({"activeSkills": ["a"]});
        assert!(violations(&doc).is_empty());
        doc["metadata"]["created"] = json!("yesterday");
        assert_eq!(violations(&doc)[0].pointer, "/metadata/created");
    }

    #[test]
    fn member_rules_follow_the_schema_file() {
        let rules = member_rules().expect("the top level is separable");
        let rule = |k: &str| rules.iter().find(|(n, _)| n == k).map(|(_, r)| *r);
        assert_eq!(rule("completedTasks"), Some(MemberRule::ArrayOfStrings));
        assert_eq!(rule("signals"), Some(MemberRule::Parse));
        assert_eq!(rule("phase"), Some(MemberRule::Parse));
        assert_eq!(rule("context"), None);
        // A placeholder is valid where the member it stands for was.
        let mut doc = crate::state::document::fresh();
        doc["completedTasks"] = placeholder(MemberRule::ArrayOfStrings).unwrap();
        doc["context"] = placeholder(MemberRule::Anything).unwrap();
        assert!(violations(&doc).is_empty());
        assert_eq!(placeholder(MemberRule::Parse), None);
    }
}
