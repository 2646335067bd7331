//! Plans the pod-template change that carries a reload, for either strategy,
//! and renders it as a strategic-merge fragment (built-in kinds) or applies
//! it to a template in place (Argo Rollouts, recreated Jobs).
//!
//! Plans are idempotent: an env var or annotation that already holds the
//! new hash produces no change, so a repeated event never rolls twice.

use std::str::FromStr;

use k8s_openapi::api::core::v1::{EnvVar, PodTemplateSpec};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::annotations::LAST_RELOADED_FROM;
use crate::envvar::env_var_name;
use crate::hash::ContentHash;
use crate::keys::ResourceKey;

/// How a reload is written into the pod template.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Strategy {
    /// `STAKATER_<NAME>_<KIND>` env var holding the hash.
    #[default]
    #[serde(rename = "env-vars")]
    EnvVars,
    /// `reloader.stakater.com/last-reloaded-from` annotation on the template.
    #[serde(rename = "annotations")]
    Annotations,
}

impl FromStr for Strategy {
    type Err = String;
    /// Accepts Reloader's spellings and those of Deckhouse's earlier module.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "env-vars" | "EnvVars" => Ok(Strategy::EnvVars),
            "annotations" | "Annotations" => Ok(Strategy::Annotations),
            other => Err(format!("unknown reload strategy {other:?}: want env-vars or annotations")),
        }
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Strategy::EnvVars => "env-vars",
            Strategy::Annotations => "annotations",
        })
    }
}

/// One resource change to carry into a workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReloadItem {
    pub resource: ResourceKey,
    /// The new content hash; `None` when the resource was deleted.
    pub hash: Option<ContentHash>,
    /// The container that gets the env var (Reloader's choice).
    pub container: String,
}

/// Reloader's `last-reloaded-from` value; field order matters for byte equality.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadSource {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub namespace: String,
    pub hash: String,
    pub container_refs: Vec<String>,
    pub observed_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvChange {
    Set { container: String, name: String, value: String },
    Remove { container: String, name: String },
}

/// The change to a pod template; empty when it already carries every hash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TemplateChange {
    pub env: Vec<EnvChange>,
    pub last_reloaded_from: Option<String>,
}

impl TemplateChange {
    pub fn is_empty(&self) -> bool {
        self.env.is_empty() && self.last_reloaded_from.is_none()
    }

    /// The strategic-merge patch for the pod template (`spec.template`),
    /// to be nested at the kind's template path.
    pub fn strategic_merge_fragment(&self) -> Value {
        let mut frag = json!({});
        if let Some(v) = &self.last_reloaded_from {
            frag["metadata"] = json!({"annotations": {LAST_RELOADED_FROM: v}});
        }
        if !self.env.is_empty() {
            let mut containers: Vec<(String, Vec<Value>)> = Vec::new();
            for change in &self.env {
                let (container, item) = match change {
                    EnvChange::Set { container, name, value } => (container, json!({"name": name, "value": value})),
                    EnvChange::Remove { container, name } => (container, json!({"name": name, "$patch": "delete"})),
                };
                match containers.iter_mut().find(|(c, _)| c == container) {
                    Some((_, env)) => env.push(item),
                    None => containers.push((container.clone(), vec![item])),
                }
            }
            let containers: Vec<Value> =
                containers.into_iter().map(|(name, env)| json!({"name": name, "env": env})).collect();
            frag["spec"] = json!({"containers": containers});
        }
        frag
    }

    /// Applies the change to a template in place (for kinds without
    /// strategic merge, and for recreated Jobs).
    pub fn apply_to(&self, template: &mut PodTemplateSpec) {
        if let Some(v) = &self.last_reloaded_from {
            let meta = template.metadata.get_or_insert_with(Default::default);
            meta.annotations.get_or_insert_with(Default::default).insert(LAST_RELOADED_FROM.into(), v.clone());
        }
        let Some(spec) = template.spec.as_mut() else {
            return;
        };
        for change in &self.env {
            match change {
                EnvChange::Set { container, name, value } => {
                    if let Some(c) = spec.containers.iter_mut().find(|c| &c.name == container) {
                        let env = c.env.get_or_insert_with(Vec::new);
                        match env.iter_mut().find(|e| &e.name == name) {
                            Some(e) => {
                                e.value = Some(value.clone());
                                e.value_from = None;
                            }
                            None => {
                                env.push(EnvVar { name: name.clone(), value: Some(value.clone()), value_from: None })
                            }
                        }
                    }
                }
                EnvChange::Remove { container, name } => {
                    if let Some(env) =
                        spec.containers.iter_mut().find(|c| &c.name == container).and_then(|c| c.env.as_mut())
                    {
                        env.retain(|e| &e.name != name);
                    }
                }
            }
        }
    }
}

/// The env var value a container currently holds for `name`.
fn current_env<'a>(template: &'a PodTemplateSpec, container: &str, name: &str) -> Option<&'a str> {
    template
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == container)?
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)?
        .value
        .as_deref()
}

/// The `last-reloaded-from` value currently on a template, parsed.
pub fn current_reload_source(template: &PodTemplateSpec) -> Option<ReloadSource> {
    let raw = template.metadata.as_ref()?.annotations.as_ref()?.get(LAST_RELOADED_FROM)?;
    serde_json::from_str(raw).ok()
}

/// Plans the change for `items` (in the order they were observed; with the
/// annotations strategy the last one is recorded, as only one fits).
pub fn plan(
    strategy: Strategy,
    template: &PodTemplateSpec,
    items: &[ReloadItem],
    observed_at_unix: i64,
) -> TemplateChange {
    let mut change = TemplateChange::default();
    match strategy {
        Strategy::EnvVars => {
            for item in items {
                let has_container =
                    template.spec.as_ref().is_some_and(|s| s.containers.iter().any(|c| c.name == item.container));
                if !has_container {
                    continue;
                }
                let name = env_var_name(item.resource.kind, &item.resource.name);
                let current = current_env(template, &item.container, &name);
                match item.hash {
                    Some(h) => {
                        let value = h.to_hex();
                        if current != Some(value.as_str()) {
                            change.env.retain(|c| !matches!(c, EnvChange::Set { name: n, container, .. } if *n == name && *container == item.container));
                            change.env.push(EnvChange::Set { container: item.container.clone(), name, value });
                        }
                    }
                    None => {
                        if current.is_some() {
                            change.env.push(EnvChange::Remove { container: item.container.clone(), name });
                        }
                    }
                }
            }
        }
        Strategy::Annotations => {
            if let Some(item) = items.last() {
                let hash = item.hash.unwrap_or_else(ContentHash::delete_marker).to_hex();
                let current = current_reload_source(template);
                let same = current.as_ref().is_some_and(|c| {
                    c.kind == item.resource.kind.reloader_type()
                        && c.name == *item.resource.name
                        && c.namespace == *item.resource.namespace
                        && c.hash == hash
                });
                if !same {
                    let source = ReloadSource {
                        kind: item.resource.kind.reloader_type().into(),
                        name: item.resource.name.to_string(),
                        namespace: item.resource.namespace.to_string(),
                        hash,
                        container_refs: vec![item.container.clone()],
                        observed_at: observed_at_unix,
                    };
                    change.last_reloaded_from = Some(serde_json::to_string(&source).expect("plain struct serialises"));
                }
            }
        }
    }
    change
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::ResourceKind;

    fn template(v: Value) -> PodTemplateSpec {
        serde_json::from_value(v).unwrap()
    }

    fn item(name: &str, content: &[u8], container: &str) -> ReloadItem {
        ReloadItem {
            resource: ResourceKey::new(ResourceKind::ConfigMap, "ns", name),
            hash: Some(ContentHash::of(content)),
            container: container.into(),
        }
    }

    #[test]
    fn env_vars_set_and_skip_when_current() {
        let i = item("my-cm", b"a=1", "app");
        let t = template(json!({"spec": {"containers": [{"name": "app"}]}}));
        let change = plan(Strategy::EnvVars, &t, std::slice::from_ref(&i), 0);
        let frag = change.strategic_merge_fragment();
        assert_eq!(
            frag,
            json!({"spec": {"containers": [{"name": "app", "env": [{"name": "STAKATER_MY_CM_CONFIGMAP", "value": ContentHash::of(b"a=1").to_hex()}]}]}})
        );
        let mut t2 = t.clone();
        change.apply_to(&mut t2);
        assert!(plan(Strategy::EnvVars, &t2, &[i], 0).is_empty(), "idempotent");
    }

    #[test]
    fn env_vars_remove_on_delete() {
        let t = template(
            json!({"spec": {"containers": [{"name": "app", "env": [{"name": "STAKATER_X_CONFIGMAP", "value": "old"}]}]}}),
        );
        let del = ReloadItem { hash: None, ..item("x", b"", "app") };
        let change = plan(Strategy::EnvVars, &t, std::slice::from_ref(&del), 0);
        assert_eq!(
            change.env,
            vec![EnvChange::Remove { container: "app".into(), name: "STAKATER_X_CONFIGMAP".into() }]
        );
        let mut t2 = t.clone();
        change.apply_to(&mut t2);
        assert!(plan(Strategy::EnvVars, &t2, &[del], 0).is_empty());
    }

    #[test]
    fn annotation_matches_reloader_json() {
        let t = template(json!({"spec": {"containers": [{"name": "app"}]}}));
        let change = plan(Strategy::Annotations, &t, &[item("cfg", b"x", "app")], 1700000000);
        let v = change.last_reloaded_from.clone().unwrap();
        assert_eq!(
            v,
            format!(
                r#"{{"type":"CONFIGMAP","name":"cfg","namespace":"ns","hash":"{}","containerRefs":["app"],"observedAt":1700000000}}"#,
                ContentHash::of(b"x")
            )
        );
        let mut t2 = t.clone();
        change.apply_to(&mut t2);
        assert!(plan(Strategy::Annotations, &t2, &[item("cfg", b"x", "app")], 1800000000).is_empty());
        assert!(!plan(Strategy::Annotations, &t2, &[item("cfg", b"y", "app")], 1800000000).is_empty());
    }

    #[test]
    fn coalesced_items_land_in_one_change() {
        let t = template(json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}));
        let change =
            plan(Strategy::EnvVars, &t, &[item("one", b"1", "a"), item("two", b"2", "b"), item("one", b"3", "a")], 0);
        assert_eq!(change.env.len(), 2, "{change:?}");
        assert!(change.env.contains(&EnvChange::Set {
            container: "a".into(),
            name: "STAKATER_ONE_CONFIGMAP".into(),
            value: ContentHash::of(b"3").to_hex()
        }));
    }

    #[test]
    fn strategies_parse_both_spellings() {
        assert_eq!("EnvVars".parse::<Strategy>(), Ok(Strategy::EnvVars));
        assert_eq!("annotations".parse::<Strategy>(), Ok(Strategy::Annotations));
        assert!("restart".parse::<Strategy>().is_err());
    }
}
