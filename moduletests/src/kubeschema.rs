//! JSON schemas for kubeconform from the API server's `/openapi/v2`, strict
//! (an object with properties and without `additionalProperties` rejects
//! unknown fields), one file per served kind, laid out as
//! `<group or version>/<version>/<kind lowercased>.json` with the
//! definitions it references.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{Map, Value, json};

const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

/// A definition converted for kubeconform: Quantity and int-or-string as
/// `oneOf`, strict objects.
pub fn convert(node: &Value, name: Option<&str>) -> Value {
    match node {
        Value::Array(a) => Value::Array(a.iter().map(|n| convert(n, None)).collect()),
        Value::Object(o) => {
            if name == Some(QUANTITY) {
                return json!({"oneOf": [{"type": "string"}, {"type": "number"}],
                              "description": o.get("description").cloned().unwrap_or(json!(""))});
            }
            if o.get("format") == Some(&json!("int-or-string"))
                || o.get("x-kubernetes-int-or-string") == Some(&json!(true))
            {
                let mut out = json!({"oneOf": [{"type": "string"}, {"type": "integer"}]});
                if let Some(d) = o.get("description") {
                    out["description"] = d.clone();
                }
                return out;
            }
            let mut out = Map::new();
            for (k, v) in o {
                let converted = match k.as_str() {
                    "properties" => Value::Object(
                        v.as_object().into_iter().flatten().map(|(pk, pv)| (pk.clone(), convert(pv, None))).collect(),
                    ),
                    "items" | "additionalProperties" | "allOf" | "anyOf" | "oneOf" | "not" => convert(v, None),
                    _ => v.clone(),
                };
                out.insert(k.clone(), converted);
            }
            if out.contains_key("properties")
                && !out.contains_key("additionalProperties")
                && out.get("x-kubernetes-preserve-unknown-fields") != Some(&json!(true))
            {
                out.insert("additionalProperties".into(), json!(false));
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

fn refs_of(node: &Value, acc: &mut BTreeSet<String>) {
    match node {
        Value::Object(o) => {
            if let Some(r) = o.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/definitions/")) {
                acc.insert(r.to_string());
            }
            o.values().for_each(|v| refs_of(v, acc));
        }
        Value::Array(a) => a.iter().for_each(|v| refs_of(v, acc)),
        _ => {}
    }
}

/// Writes a schema per group-version-kind of `openapi` (a `/openapi/v2`
/// document) into `out`; returns how many.
pub fn write_schemas(openapi: &Value, out: &Path) -> std::io::Result<usize> {
    let defs = openapi["definitions"].as_object().cloned().unwrap_or_default();
    let converted: BTreeMap<&String, Value> = defs.iter().map(|(n, d)| (n, convert(d, Some(n)))).collect();
    let mut written = 0;
    for (name, d) in &defs {
        for gvk in d["x-kubernetes-group-version-kind"].as_array().into_iter().flatten() {
            let mut closure = BTreeSet::new();
            let mut todo = vec![name.clone()];
            while let Some(n) = todo.pop() {
                let Some(c) = converted.get(&n) else { continue };
                if !closure.insert(n.clone()) {
                    continue;
                }
                let mut deps = BTreeSet::new();
                refs_of(c, &mut deps);
                todo.extend(deps.into_iter().filter(|d| !closure.contains(d)));
            }
            let mut schema = converted[name].clone();
            schema["$schema"] = json!("http://json-schema.org/draft-07/schema#");
            schema["definitions"] = Value::Object(closure.iter().map(|n| (n.clone(), converted[n].clone())).collect());
            let version = gvk["version"].as_str().unwrap_or_default();
            let group = gvk["group"].as_str().filter(|g| !g.is_empty()).unwrap_or(version);
            let kind = gvk["kind"].as_str().unwrap_or_default().to_lowercase();
            let dir = out.join(group).join(version);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join(format!("{kind}.json")), schema.to_string())?;
            written += 1;
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_become_strict_and_special_types_oneof() {
        let c = convert(&json!({"properties": {"a": {"type": "string"}, "b": {"format": "int-or-string"}}}), None);
        assert_eq!(c["additionalProperties"], json!(false));
        assert_eq!(c["properties"]["b"]["oneOf"][1]["type"], "integer");
        let open = convert(&json!({"properties": {}, "x-kubernetes-preserve-unknown-fields": true}), None);
        assert!(open.get("additionalProperties").is_none());
        assert_eq!(convert(&json!({"type": "string"}), Some(QUANTITY))["oneOf"][1]["type"], "number");
    }

    #[test]
    fn a_kind_carries_the_definitions_it_references() {
        let doc = json!({"definitions": {
            "a.Thing": {"properties": {"spec": {"$ref": "#/definitions/a.Spec"}},
                        "x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "Thing"}]},
            "a.Spec": {"properties": {"n": {"type": "integer"}}},
            "a.Unused": {"type": "string"}}});
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(write_schemas(&doc, dir.path()).expect("written"), 1);
        let text = std::fs::read_to_string(dir.path().join("v1/v1/thing.json")).expect("schema file");
        let s: Value = serde_json::from_str(&text).expect("JSON");
        assert!(s["definitions"]["a.Spec"].is_object() && s["definitions"].get("a.Unused").is_none());
    }
}
