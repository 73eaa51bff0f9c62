//! The workflow-state JSON Schema, compiled into Rust at build time.
//!
//! `jsonschema`'s `validator` macro reads schemas/workflow-state.schema.json
//! when the crate is built and generates the validation code, so no process
//! ever parses or compiles the schema (that took 5 million instructions, most
//! of a `set`). Changing the schema file rebuilds the validator.

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

/// The generated validator of schemas/workflow-state.schema.json.
#[jsonschema::validator(path = "schemas/workflow-state.schema.json", validate_formats = true)]
struct StateSchema;

/// Every violation of the workflow-state schema in `doc`, in document order.
pub fn violations(doc: &Value) -> Vec<Violation> {
    StateSchema::iter_errors(doc)
        .map(|e| Violation {
            pointer: e.instance_path().to_string(),
            message: e.to_string(),
        })
        .collect()
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

    #[test]
    fn unknown_top_level_keys_are_allowed_but_bad_timestamps_are_not() {
        let mut doc = crate::state::document::fresh();
        doc["context"] = json!({"activeSkills": ["a"]});
        assert!(violations(&doc).is_empty());
        doc["metadata"]["created"] = json!("yesterday");
        assert_eq!(violations(&doc)[0].pointer, "/metadata/created");
    }
}
