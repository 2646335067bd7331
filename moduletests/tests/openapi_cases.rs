//! `openapi/openapi-case-tests.yaml` beyond what the hooks' own test checks
//! (hooks/tests/openapi_cases.rs: every configValues case through `hook
//! check`): the `values` cases against openapi/values.yaml with its defaults
//! (positive ones validate, negative ones are rejected naming their field),
//! and coverage: every setting of config-values.yaml appears in at least one
//! positive and one negative configValues case.

use std::collections::BTreeSet;

use pod_reloader_moduletests::tools::root;
use pod_reloader_moduletests::values::{keys, values_schema};
use pod_reloader_moduletests::yaml;
use serde_json::Value;

fn cases() -> Value {
    yaml::load(&root().join("openapi").join("openapi-case-tests.yaml"))
}

fn list<'a>(cases: &'a Value, polarity: &str, kind: &str) -> Vec<&'a Value> {
    cases[polarity][kind].as_array().into_iter().flatten().collect()
}

#[test]
fn values_cases_validate_or_are_rejected_naming_their_field() {
    let cases = cases();
    let schema = values_schema();
    let (positive, negative) = (list(&cases, "positive", "values"), list(&cases, "negative", "values"));
    assert!(!positive.is_empty() && !negative.is_empty(), "the case file has values cases of both kinds");
    let mut failures = Vec::new();
    for case in positive {
        let v = schema.violations(&schema.with_defaults(case));
        if !v.is_empty() {
            failures.push(format!("positive.values {case}: unexpectedly rejected: {v:?}"));
        }
    }
    for case in negative {
        let v = schema.violations(&schema.with_defaults(case));
        let keys = keys(case);
        // The message names the offending field: a top-level key of the case
        // is in the error path or quoted in the message.
        let named = v.iter().any(|v| {
            keys.iter().any(|k| {
                v.path == format!("$.{k}")
                    || v.path.starts_with(&format!("$.{k}."))
                    || v.path.starts_with(&format!("$.{k}["))
                    || v.message.contains(&format!("\"{k}\""))
            })
        });
        if v.is_empty() {
            failures.push(format!("negative.values {case}: accepted, expected a rejection"));
        } else if !named {
            failures.push(format!("negative.values {case}: rejected, but no message names a field of {keys:?}: {v:?}"));
        } else {
            println!("ok negative.values {case}: {}", v[0]);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every property path of a schema (`a`, `a.b`, `a[].c`), objects included.
fn prop_paths(schema: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    for (name, sub) in schema["properties"].as_object().into_iter().flatten() {
        let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
        out.insert(path.clone());
        prop_paths(sub, &path, out);
        if sub["items"].is_object() {
            prop_paths(&sub["items"], &format!("{path}[]"), out);
        }
    }
}

/// Every path a case sets.
fn case_paths(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(m) => {
            for (k, v) in m {
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                out.insert(path.clone());
                case_paths(v, &path, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| case_paths(v, &format!("{prefix}[]"), out)),
        _ => {}
    }
}

#[test]
fn config_values_cases_cover_every_setting() {
    let cases = cases();
    let mut schema_paths = BTreeSet::new();
    prop_paths(&yaml::load(&root().join("openapi").join("config-values.yaml")), "", &mut schema_paths);
    assert!(schema_paths.len() > 20, "settings found: {schema_paths:?}");
    let mut failures = Vec::new();
    for polarity in ["positive", "negative"] {
        let mut covered = BTreeSet::new();
        for case in list(&cases, polarity, "configValues") {
            case_paths(case, "", &mut covered);
        }
        // A list item's fields are covered through their list.
        let missing: Vec<&String> =
            schema_paths.iter().filter(|p| !covered.contains(*p) && !p.contains("[].")).collect();
        if missing.is_empty() {
            println!("{polarity} configValues cases cover all {} settings", schema_paths.len());
        } else {
            failures.push(format!("{polarity} configValues cases miss: {missing:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
