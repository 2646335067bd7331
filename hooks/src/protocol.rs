//! The file side of addon-operator's batch hook protocol, as module-sdk
//! implements it: input and output paths from the environment (with the SDK's
//! defaults), binding contexts (shell-operator's v1 format), values JSON
//! patches (RFC 6902) and metric operations (JSON lines).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::HookError;

/// Input and output files of one `hook run`/`hook ready`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Files {
    pub binding_context: PathBuf,
    pub values: PathBuf,
    pub config_values: PathBuf,
    pub values_patch: PathBuf,
    pub config_values_patch: PathBuf,
    pub metrics: PathBuf,
    pub kubernetes_patch: PathBuf,
    /// `CREATE_FILES=true`: create missing parent directories of the outputs.
    pub create_files: bool,
}

impl Files {
    /// The paths from `env` (a lookup such as `std::env::var`), else the
    /// defaults of module-sdk (`pkg/app/app_config.go`).
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Self {
        let path =
            |name: &str, default: &str| PathBuf::from(env(name).filter(|v| !v.is_empty()).unwrap_or(default.into()));
        Files {
            binding_context: path("BINDING_CONTEXT_PATH", "in/binding_context.json"),
            values: path("VALUES_PATH", "in/values_path.json"),
            config_values: path("CONFIG_VALUES_PATH", "in/config_values_path.json"),
            values_patch: path("VALUES_JSON_PATCH_PATH", "out/values.json"),
            config_values_patch: path("CONFIG_VALUES_JSON_PATCH_PATH", "out/config_values.json"),
            metrics: path("METRICS_PATH", "out/metrics.json"),
            kubernetes_patch: path("KUBERNETES_PATCH_PATH", "out/kubernetes.json"),
            create_files: env("CREATE_FILES").is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1"),
        }
    }

    fn read_json(path: &Path, what: &'static str) -> Result<Value, HookError> {
        let data = fs::read(path).map_err(|source| HookError::Read { what, path: path.into(), source })?;
        serde_json::from_slice(&data).map_err(|source| HookError::Parse { what, path: path.into(), source })
    }

    pub fn binding_contexts(&self) -> Result<Vec<BindingContext>, HookError> {
        let raw = Self::read_json(&self.binding_context, "binding context")?;
        serde_json::from_value(raw).map_err(|source| HookError::Parse {
            what: "binding context",
            path: self.binding_context.clone(),
            source,
        })
    }

    /// The values file: an object (`{"global": ..., "podReloader": ...}`).
    pub fn values(&self) -> Result<Value, HookError> {
        let v = Self::read_json(&self.values, "values")?;
        if !v.is_object() {
            return Err(HookError::Shape {
                what: "values",
                path: self.values.clone(),
                message: "not a JSON object".into(),
            });
        }
        Ok(v)
    }

    fn write(&self, path: &Path, what: &'static str, data: &[u8]) -> Result<(), HookError> {
        let err = |source| HookError::Write { what, path: path.into(), source };
        if self.create_files
            && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        {
            fs::create_dir_all(dir).map_err(err)?;
        }
        fs::write(path, data).map_err(err)
    }

    /// Writes every output of a run: the values patch, an empty config values
    /// patch, the metrics and an empty list of Kubernetes operations.
    pub fn write_outputs(&self, out: &Output) -> Result<(), HookError> {
        let mut patch = serde_json::to_vec(&out.values_patch).map_err(|source| HookError::Parse {
            what: "values patch",
            path: self.values_patch.clone(),
            source,
        })?;
        patch.push(b'\n');
        self.write(&self.values_patch, "values patch", &patch)?;
        self.write(&self.config_values_patch, "config values patch", b"[]\n")?;
        let mut metrics = Vec::new();
        for m in &out.metrics {
            let line = serde_json::to_vec(m).map_err(|source| HookError::Parse {
                what: "metrics",
                path: self.metrics.clone(),
                source,
            })?;
            metrics.extend_from_slice(&line);
            metrics.push(b'\n');
        }
        self.write(&self.metrics, "metrics", &metrics)?;
        self.write(&self.kubernetes_patch, "kubernetes patch", b"")
    }
}

/// One object of a binding: the object and/or its jqFilter result.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct Item {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<Value>,
    #[serde(default, rename = "filterResult", skip_serializing_if = "Option::is_none")]
    pub filter_result: Option<Value>,
}

impl Item {
    /// (namespace, name) from the object or, without it, from the filter result.
    fn key(&self) -> (String, String) {
        let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
        if let Some(o) = &self.object
            && o.is_object()
        {
            let md = o.get("metadata");
            return (s(md.and_then(|m| m.get("namespace"))), s(md.and_then(|m| m.get("name"))));
        }
        let f = self.filter_result.as_ref();
        (s(f.and_then(|f| f.get("namespace"))), s(f.and_then(|f| f.get("name"))))
    }
}

/// A binding context (shell-operator `MapV1`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct BindingContext {
    pub binding: String,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default, rename = "groupName")]
    pub group_name: Option<String>,
    #[serde(default, rename = "watchEvent")]
    pub watch_event: Option<String>,
    #[serde(default)]
    pub objects: Option<Vec<Item>>,
    #[serde(default)]
    pub object: Option<Value>,
    #[serde(default, rename = "filterResult")]
    pub filter_result: Option<Value>,
    #[serde(default)]
    pub snapshots: Option<BTreeMap<String, Vec<Item>>>,
}

/// The objects of `binding` after all `contexts`, in order: a snapshot of the
/// binding (Group contexts, beforeHelm, includeSnapshotsFrom) replaces the
/// state, a Synchronization of the binding replaces it, an Event adds,
/// replaces or removes its object. `None` when no context tells anything
/// about the binding (the caller keeps what it had).
pub fn binding_state(contexts: &[BindingContext], binding: &str) -> Option<Vec<Item>> {
    let mut state: Option<Vec<Item>> = None;
    for ctx in contexts {
        if let Some(items) = ctx.snapshots.as_ref().and_then(|s| s.get(binding)) {
            state = Some(items.clone());
            continue;
        }
        if ctx.binding != binding {
            continue;
        }
        match ctx.kind.as_deref() {
            Some("Synchronization") => state = Some(ctx.objects.clone().unwrap_or_default()),
            Some("Event") => {
                let item = Item {
                    object: ctx.object.clone().filter(|o| !o.is_null()),
                    filter_result: ctx.filter_result.clone(),
                };
                let key = item.key();
                let mut items = state.take().unwrap_or_default();
                items.retain(|i| i.key() != key);
                if ctx.watch_event.as_deref() != Some("Deleted") {
                    items.push(item);
                }
                state = Some(items);
            }
            _ => {}
        }
    }
    state
}

/// One RFC 6902 operation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PatchOp {
    pub op: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

/// A shell-operator metric operation (one JSON line of `METRICS_PATH`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Metric {
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group: String,
    pub action: &'static str,
    pub value: f64,
    pub labels: BTreeMap<String, String>,
}

impl Metric {
    pub fn set(group: &str, name: &str, value: f64, labels: &[(&str, &str)]) -> Self {
        Metric {
            name: name.into(),
            group: group.into(),
            action: "set",
            value,
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }
}

/// What a hook run produces.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Output {
    pub values_patch: Vec<PatchOp>,
    pub metrics: Vec<Metric>,
    /// Logged as warnings (JSON log lines on stderr) by a run that succeeds.
    pub warnings: Vec<String>,
}

/// A warning as a JSON log line, as the module-sdk logger writes one.
pub fn warning_line(hook: &str, message: &str) -> String {
    format!("{}\n", serde_json::json!({"level": "warn", "hook": hook, "msg": message}))
}

/// The module's values key (`podReloader`) object of a values file.
pub fn module_values<'a>(values: &'a Value, key: &str) -> &'a Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    values.get(key).and_then(Value::as_object).unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

/// Patch operations that set `/<key>/internal/<field>` for each field,
/// creating `/<key>` and `/<key>/internal` first when the values lack them.
pub fn set_internal(values: &Value, key: &str, fields: Vec<(&str, Value)>) -> Vec<PatchOp> {
    let mut ops = Vec::new();
    let module = values.get(key);
    if !module.is_some_and(Value::is_object) {
        ops.push(PatchOp { op: "add".into(), path: format!("/{key}"), value: Some(Value::Object(Map::new())) });
    }
    if !module.and_then(|m| m.get("internal")).is_some_and(Value::is_object) {
        ops.push(PatchOp {
            op: "add".into(),
            path: format!("/{key}/internal"),
            value: Some(Value::Object(Map::new())),
        });
    }
    for (field, value) in fields {
        ops.push(PatchOp { op: "add".into(), path: format!("/{key}/internal/{field}"), value: Some(value) });
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(v: Value) -> BindingContext {
        serde_json::from_value(v).expect("binding context")
    }

    #[test]
    fn defaults_are_the_sdk_ones() {
        let f = Files::from_env(|_| None);
        assert_eq!(f.binding_context, PathBuf::from("in/binding_context.json"));
        assert_eq!(f.values, PathBuf::from("in/values_path.json"));
        assert_eq!(f.config_values, PathBuf::from("in/config_values_path.json"));
        assert_eq!(f.values_patch, PathBuf::from("out/values.json"));
        assert_eq!(f.config_values_patch, PathBuf::from("out/config_values.json"));
        assert_eq!(f.metrics, PathBuf::from("out/metrics.json"));
        assert_eq!(f.kubernetes_patch, PathBuf::from("out/kubernetes.json"));
        assert!(!f.create_files);
        let f = Files::from_env(|k| (k == "VALUES_PATH").then(|| "/tmp/v.json".to_string()));
        assert_eq!(f.values, PathBuf::from("/tmp/v.json"));
    }

    #[test]
    fn state_follows_sync_events_and_snapshots() {
        let b = "b";
        let sync = ctx(json!({"binding": "b", "type": "Synchronization", "objects": [
            {"filterResult": {"name": "x"}}, {"filterResult": {"name": "y"}}]}));
        let del = ctx(json!({"binding": "b", "type": "Event", "watchEvent": "Deleted", "filterResult": {"name": "x"}}));
        let add = ctx(
            json!({"binding": "b", "type": "Event", "watchEvent": "Added", "object": {"metadata": {"name": "z"}}, "filterResult": {"name": "z"}}),
        );
        let other = ctx(json!({"binding": "other", "type": "Synchronization", "objects": []}));
        assert_eq!(binding_state(std::slice::from_ref(&other), b), None);
        let s = binding_state(&[sync.clone(), del, add], b).expect("state");
        let names: Vec<_> = s.iter().map(|i| i.key().1).collect();
        assert_eq!(names, ["y", "z"]);
        let group = ctx(json!({"binding": "other", "type": "Group", "groupName": "main", "snapshots": {"b": []}}));
        assert_eq!(binding_state(&[sync, group], b), Some(vec![]));
    }

    #[test]
    fn set_internal_creates_missing_parents() {
        let ops = set_internal(&json!({}), "m", vec![("a", json!(1))]);
        let paths: Vec<_> = ops.iter().map(|o| o.path.as_str()).collect();
        assert_eq!(paths, ["/m", "/m/internal", "/m/internal/a"]);
        let ops = set_internal(&json!({"m": {"internal": {}}}), "m", vec![("a", json!(1))]);
        assert_eq!(ops.len(), 1);
    }
}
