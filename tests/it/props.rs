//! Property tests of the pure parts: jq-style paths and set/append against a
//! reference model, RFC 7396 merge laws, and lock-name validation.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use wfstate::lock::name;
use wfstate::state::merge::merge_patch;
use wfstate::state::path::{self, Seg};

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z_][a-zA-Z0-9_]{0,8}",
        "[ -~]{0,6}", // any printable ASCII, quoted when displayed
        "[\\u{e9}\\u{4e2d}\\u{1f600}a]{1,3}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        "[a-z]{0,5}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    #[test]
    fn display_then_parse_is_the_same_path(keys in prop::collection::vec(key(), 1..5)) {
        let segs: Vec<Seg> = keys.into_iter().map(Seg::Key).collect();
        let text = path::display(&segs);
        prop_assert_eq!(path::parse(&text).unwrap(), segs);
    }

    /// set then get returns the value, and leaves every other top-level key as it was.
    #[test]
    fn set_then_get(doc in json_value(), keys in prop::collection::vec(key(), 1..4), v in json_value()) {
        let mut doc = match doc { Value::Object(m) => Value::Object(m), _ => json!({}) };
        let before = doc.clone();
        let segs: Vec<Seg> = keys.iter().cloned().map(Seg::Key).collect();
        match path::set(&mut doc, &segs, v.clone()) {
            Ok(()) => {
                prop_assert_eq!(path::get(&doc, &segs), Some(&v));
                for (k, old) in before.as_object().unwrap() {
                    if k != &keys[0] {
                        prop_assert_eq!(&doc[k], old);
                    }
                }
            }
            // Refused only when the path steps into a scalar or an array, and then nothing changed.
            Err(e) => {
                prop_assert_eq!(e.code(), wfstate::Code::ValidationFailed);
                prop_assert_eq!(doc, before);
            }
        }
    }

    /// append adds exactly one element at the end of the array, or creates it.
    #[test]
    fn append_matches_a_vec_push(items in prop::collection::vec(json_value(), 0..5), v in json_value()) {
        let mut doc = json!({"list": items.clone()});
        path::append(&mut doc, &[Seg::Key("list".into())], v.clone()).unwrap();
        let mut model = items;
        model.push(v.clone());
        prop_assert_eq!(&doc["list"], &Value::Array(model));
        let mut empty = json!({});
        path::append(&mut empty, &[Seg::Key("new".into())], v.clone()).unwrap();
        prop_assert_eq!(&empty["new"], &json!([v]));
    }

    /// RFC 7396: applying the same patch twice changes nothing more, a patch
    /// with no nulls leaves its keys equal to the patch's (for scalars), and
    /// null removes keys.
    #[test]
    fn merge_patch_laws(target in json_value(), patch in json_value()) {
        let mut once = target.clone();
        merge_patch(&mut once, &patch);
        let mut twice = once.clone();
        merge_patch(&mut twice, &patch);
        prop_assert_eq!(&once, &twice);
        if let Value::Object(p) = &patch {
            for (k, v) in p {
                match v {
                    Value::Null => prop_assert!(once.get(k).is_none()),
                    Value::Object(_) => prop_assert!(once[k].is_object()),
                    other => prop_assert_eq!(&once[k], other),
                }
            }
        } else {
            prop_assert_eq!(&once, &patch);
        }
    }

    #[test]
    fn lock_names_are_exactly_the_safe_file_names(s in "[ -~\\u{e9}/]{0,12}") {
        let reference = !s.is_empty()
            && s.len() <= 128
            && !s.starts_with('.')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        prop_assert_eq!(name::validate(&s).is_ok(), reference);
    }

    /// Parsing arbitrary text as a path never panics, and what parses displays back to itself.
    #[test]
    fn path_parsing_never_panics(s in "\\PC{0,16}") {
        if let Ok(segs) = path::parse(&s) {
            prop_assert_eq!(path::parse(&path::display(&segs)).unwrap(), segs);
        }
    }
}
