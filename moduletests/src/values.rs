//! A matrix case's Helm values, built as addon-operator builds them: the
//! case's settings validated against `openapi/config-values.yaml`, the
//! defaults of `openapi/values.yaml` (extended with config-values) filled in
//! and validated, with the hooks' own schema code (`SettingsSchema`: strict
//! objects, top-down defaults), plus the global stub; then every beforeHelm
//! hook runs in-process, in addon-operator's order, on snapshots standing
//! for the cluster the case describes, and its values patch is applied.
//!
//! A case file (`tests/module/values/<name>.yaml`) holds `settings`,
//! `internal` (what the cluster tells the hooks: Argo Rollouts served,
//! apiserver endpoints, a record key), `registry`, `global` overrides,
//! `apiVersions` (extra `--api-versions` for Helm) and `expect` (assertions
//! of that case only).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pod_reloader_hooks::hooks::HOOKS;
use pod_reloader_hooks::protocol::{BindingContext, Item, PatchOp};
use pod_reloader_hooks::schema::{Origin, SettingsSchema};
use serde_json::{Map, Value, json};

use crate::tools::{module_tests_dir, root};
use crate::yaml;

/// The module's values key.
pub const MODULE_KEY: &str = "podReloader";

/// base64 of the bytes 0x00..0x1f: the record key of every rendered case
/// without its own (a generated one would make every render differ).
pub const TEST_RECORD_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// One case of the matrix.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub path: PathBuf,
    pub def: Value,
}

impl Case {
    pub fn load(path: &Path) -> Self {
        let name = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
        let def = yaml::load(path);
        let def = if def.is_null() { json!({}) } else { def };
        Case { name, path: path.to_path_buf(), def }
    }

    /// A case of settings only (a positive case of the openapi case file).
    pub fn from_settings(name: &str, settings: &Value) -> Self {
        Case { name: name.into(), path: PathBuf::from(name), def: json!({"settings": settings}) }
    }

    /// The case's extra `--api-versions`.
    pub fn api_versions(&self) -> Vec<String> {
        self.def["apiVersions"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(String::from)).collect()
    }
}

/// Every case of `tests/module/values/`, by name.
pub fn cases() -> Vec<Case> {
    let dir = module_tests_dir().join("values");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    paths.iter().map(|p| Case::load(p)).collect()
}

/// The case named `name`.
pub fn case(name: &str) -> Case {
    Case::load(&module_tests_dir().join("values").join(format!("{name}.yaml")))
}

/// The settings schema (`openapi/config-values.yaml`) of the module directory.
pub fn config_schema() -> SettingsSchema {
    SettingsSchema::load(Some(&root())).expect("openapi/config-values.yaml compiles")
}

/// `openapi/values.yaml` with its `x-extend` of config-values.yaml merged in:
/// its properties over the base's, its other keys where the base has none.
pub fn values_schema_document() -> Value {
    let openapi = root().join("openapi");
    let mut vals = yaml::load(&openapi.join("values.yaml"));
    let Some(obj) = vals.as_object_mut() else { panic!("openapi/values.yaml is not a mapping") };
    let Some(ext) = obj.remove("x-extend") else { return vals };
    let base_name = ext["schema"].as_str().expect("x-extend.schema");
    let mut merged = yaml::load(&openapi.join(base_name));
    let m = merged.as_object_mut().expect("extended schema is a mapping");
    for (k, v) in obj.iter() {
        if k == "properties" {
            let props = m.entry("properties").or_insert_with(|| json!({}));
            for (name, sub) in v.as_object().into_iter().flatten() {
                props[name] = sub.clone();
            }
        } else {
            m.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    merged
}

fn compile(doc: &Value, what: &str) -> SettingsSchema {
    SettingsSchema::from_yaml(&doc.to_string(), Origin::File(PathBuf::from(what)))
        .unwrap_or_else(|e| panic!("{what} compiles: {e}"))
}

/// The values schema (strict, as addon-operator prepares it).
pub fn values_schema() -> SettingsSchema {
    compile(&values_schema_document(), "openapi/values.yaml")
}

/// The values schema with `internal`'s `x-required-for-helm` required, as
/// addon-operator checks the values before Helm runs.
pub fn values_schema_for_helm() -> SettingsSchema {
    let mut doc = values_schema_document();
    let internal = &mut doc["properties"]["internal"];
    internal["required"] = internal.get("x-required-for-helm").cloned().unwrap_or_else(|| json!([]));
    compile(&doc, "openapi/values.yaml (x-required-for-helm)")
}

fn violations_text(schema: &SettingsSchema, value: &Value, prefix: &str) -> Result<(), String> {
    let v = schema.violations(value);
    if v.is_empty() {
        return Ok(());
    }
    Err(v.iter().map(|v| format!("{prefix}{v}")).collect::<Vec<_>>().join("\n"))
}

/// `over` merged into `base` (objects recursively, anything else replaced).
pub fn deep_merge(base: &Value, over: &Value) -> Value {
    let mut out = base.clone();
    if let (Some(o), Some(over)) = (out.as_object_mut(), over.as_object()) {
        for (k, v) in over {
            let merged = match o.get(k) {
                Some(b) if b.is_object() && v.is_object() => deep_merge(b, v),
                _ => v.clone(),
            };
            o.insert(k.clone(), merged);
        }
    }
    out
}

/// The case's values before the hooks: `{"global": ..., "podReloader": ...}`.
pub fn compose(case: &Case) -> Result<Value, String> {
    let settings = case.def.get("settings").filter(|s| !s.is_null()).cloned().unwrap_or_else(|| json!({}));
    violations_text(&config_schema(), &settings, &format!("{}: settings", case.path.display()))?;
    let mut module = settings;
    module["internal"] = case.def.get("internal").filter(|s| !s.is_null()).cloned().unwrap_or(json!({}));
    if let Some(r) = case.def.get("registry") {
        module["registry"] = r.clone();
    }
    let schema = values_schema();
    let module = schema.with_defaults(&module);
    violations_text(&schema, &module, &format!("{}: values", case.path.display()))?;
    let stub = yaml::load(&module_tests_dir().join("global-values.yaml"));
    let global = deep_merge(&stub["global"], case.def.get("global").unwrap_or(&Value::Null));
    Ok(json!({"global": global, MODULE_KEY: module}))
}

/// Snapshots (jqFilter results) of the hooks' kubernetes bindings for a
/// cluster where what the case's `internal` values say holds.
pub fn cluster_snapshots(internal: &Value) -> BTreeMap<String, Vec<Item>> {
    let item = |v: Value| Item { object: None, filter_result: Some(v) };
    let argo = if internal["argoRolloutsEnabled"].as_bool() == Some(true) {
        vec![item(json!({"name": "rollouts.argoproj.io", "served": ["v1alpha1"]}))]
    } else {
        vec![]
    };
    let slices = internal["apiserverEndpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, ep)| {
            let address = ep["address"].as_str().unwrap_or_default();
            let family = if address.contains(':') { "IPv6" } else { "IPv4" };
            item(json!({"name": format!("kubernetes-{i}"), "addressType": family,
                        "addresses": [address], "ports": [ep["port"]]}))
        })
        .collect();
    let key = internal["recordKey"].as_str().unwrap_or(TEST_RECORD_KEY);
    let secret = vec![item(json!({"name": "pod-reloader-record-key", "key": key}))];
    BTreeMap::from([
        ("argo_rollouts_crd".to_string(), argo),
        ("apiserver_endpointslices".to_string(), slices),
        ("record_key_secret".to_string(), secret),
    ])
}

/// RFC 6902 add/replace/remove on JSON-pointer paths (what the hooks emit).
pub fn apply_patch(doc: &mut Value, ops: &[PatchOp]) -> Result<(), String> {
    for op in ops {
        let tokens: Vec<String> = op.path.split('/').skip(1).map(|t| t.replace("~1", "/").replace("~0", "~")).collect();
        let (last, parents) = tokens.split_last().ok_or_else(|| format!("patch at the root: {op:?}"))?;
        let mut parent = &mut *doc;
        for t in parents {
            parent = match parent {
                Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
                Value::Object(m) => m.get_mut(t),
                _ => None,
            }
            .ok_or_else(|| format!("patch path {} does not exist", op.path))?;
        }
        match (op.op.as_str(), parent) {
            ("add" | "replace", Value::Array(a)) => {
                let v = op.value.clone().unwrap_or(Value::Null);
                let i = if last == "-" { a.len() } else { last.parse().map_err(|_| format!("bad index {op:?}"))? };
                if op.op == "replace" {
                    *a.get_mut(i).ok_or_else(|| format!("no index {op:?}"))? = v;
                } else if i <= a.len() {
                    a.insert(i, v);
                } else {
                    return Err(format!("index out of range {op:?}"));
                }
            }
            ("add" | "replace", Value::Object(m)) => {
                m.insert(last.clone(), op.value.clone().unwrap_or(Value::Null));
            }
            ("remove", Value::Array(a)) => {
                let i: usize = last.parse().map_err(|_| format!("bad index {op:?}"))?;
                (i < a.len()).then(|| a.remove(i)).ok_or_else(|| format!("no index {op:?}"))?;
            }
            ("remove", Value::Object(m)) => {
                m.remove(last).ok_or_else(|| format!("nothing to remove {op:?}"))?;
            }
            _ => return Err(format!("unsupported patch op {op:?}")),
        }
    }
    Ok(())
}

/// Every beforeHelm hook of `hook config`, in addon-operator's order (by
/// `beforeHelm`, then name), with a beforeHelm binding context carrying the
/// snapshots of its own bindings; each values patch is applied before the
/// next hook runs.
pub fn run_hooks(mut values: Value) -> Result<Value, String> {
    let schema = config_schema();
    let snapshots = cluster_snapshots(&values[MODULE_KEY]["internal"]);
    let mut order: Vec<(i64, &str, usize)> = HOOKS
        .iter()
        .enumerate()
        .filter_map(|(i, h)| Some((h.config().get("beforeHelm")?.as_i64()?, h.name(), i)))
        .collect();
    order.sort();
    for (_, name, i) in order {
        let hook = HOOKS[i];
        let config = hook.config();
        let own: BTreeMap<String, Vec<Item>> = config["kubernetes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| b["name"].as_str())
            .map(|b| (b.to_string(), snapshots.get(b).cloned().unwrap_or_default()))
            .collect();
        let context = BindingContext { binding: "beforeHelm".into(), snapshots: Some(own), ..Default::default() };
        let out = hook.run(&schema, &[context], &values).map_err(|e| format!("hook {i} ({name}) failed: {e}"))?;
        apply_patch(&mut values, &out.values_patch).map_err(|e| format!("hook {i} ({name}): {e}"))?;
    }
    Ok(values)
}

/// The case's Helm values: [`compose`], then [`run_hooks`]; the result must
/// validate against openapi/values.yaml with `x-required-for-helm`.
pub fn helm_values(case: &Case) -> Result<Value, String> {
    let values = run_hooks(compose(case)?)?;
    violations_text(
        &values_schema_for_helm(),
        &values[MODULE_KEY],
        &format!("{}: values after the hooks: ", case.path.display()),
    )?;
    Ok(values)
}

/// The top-level keys of `v` (empty unless an object).
pub fn keys(v: &Value) -> Vec<String> {
    v.as_object().map(Map::keys).into_iter().flatten().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_adds_replaces_and_removes() {
        let mut doc = json!({"a": {"b": [1, 3]}});
        let op = |op: &str, path: &str, value: Option<Value>| PatchOp { op: op.into(), path: path.into(), value };
        apply_patch(
            &mut doc,
            &[
                op("add", "/a/b/1", Some(json!(2))),
                op("add", "/a/b/-", Some(json!(4))),
                op("replace", "/a/c~1d", Some(json!("x"))),
                op("remove", "/a/b/0", None),
            ],
        )
        .expect("patch applies");
        assert_eq!(doc, json!({"a": {"b": [2, 3, 4], "c/d": "x"}}));
        assert!(apply_patch(&mut doc, &[op("add", "/missing/x", Some(json!(1)))]).is_err());
        assert!(apply_patch(&mut doc, &[op("move", "/a", None)]).is_err());
    }

    #[test]
    fn values_schema_extends_config_values() {
        let doc = values_schema_document();
        assert!(doc.get("x-extend").is_none());
        assert!(doc["properties"]["internal"].is_object(), "values.yaml's own properties");
        assert!(doc["properties"]["reloadStrategy"].is_object(), "config-values.yaml's properties");
    }
}
