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

/// The few facts of a pod template that [`plan`] reads: the containers'
/// names, their reload env vars (the names [`env_var_name`] gives, with their
/// values) and the `last-reloaded-from` annotation. The index keeps them per
/// workload so that a reload is planned from what the watch delivered,
/// without reading the object again; [`PlanFacts::template`] gives them back
/// as a template on which `plan` decides exactly as on the whole one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanFacts {
    containers: Box<[ContainerFacts]>,
    last_reloaded_from: Option<Box<str>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ContainerFacts {
    name: Box<str>,
    /// Reload env vars in template order.
    env: Box<[ReloadVar]>,
}

/// A reload env var's name and value (`None`: set by `valueFrom`).
type ReloadVar = (Box<str>, Option<Box<str>>);

/// A name [`env_var_name`] can give: `STAKATER_…_<CONFIGMAP|SECRET|SECRETPROVIDERCLASS>`.
fn is_reload_var(name: &str) -> bool {
    name.strip_prefix("STAKATER_").is_some_and(|rest| {
        crate::keys::ResourceKind::ALL
            .iter()
            .any(|k| rest.strip_suffix(k.reloader_type()).is_some_and(|head| head.ends_with('_')))
    })
}

impl PlanFacts {
    /// The facts of `template`; everything else of it is left behind.
    pub fn of(template: &PodTemplateSpec) -> Self {
        let containers = template.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
        let containers = containers
            .iter()
            .map(|c| ContainerFacts {
                name: c.name.as_str().into(),
                env: c
                    .env
                    .iter()
                    .flatten()
                    .filter(|e| is_reload_var(&e.name))
                    .map(|e| (e.name.as_str().into(), e.value.as_deref().map(Into::into)))
                    .collect(),
            })
            .collect();
        let last_reloaded_from = template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(LAST_RELOADED_FROM))
            .map(|v| v.as_str().into());
        PlanFacts { containers, last_reloaded_from }
    }

    /// A template holding only these facts, to plan on.
    pub fn template(&self) -> PodTemplateSpec {
        use k8s_openapi::api::core::v1::{Container, PodSpec};
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
        let containers = self
            .containers
            .iter()
            .map(|c| Container {
                name: c.name.to_string(),
                env: (!c.env.is_empty()).then(|| {
                    c.env
                        .iter()
                        .map(|(name, value)| EnvVar {
                            name: name.to_string(),
                            value: value.as_deref().map(String::from),
                            value_from: None,
                        })
                        .collect()
                }),
                ..Default::default()
            })
            .collect();
        let metadata = self.last_reloaded_from.as_ref().map(|v| ObjectMeta {
            annotations: Some([(LAST_RELOADED_FROM.to_string(), v.to_string())].into()),
            ..Default::default()
        });
        PodTemplateSpec { metadata, spec: Some(PodSpec { containers, ..Default::default() }) }
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
    fn plan_facts_plan_as_the_whole_template_does() {
        let last = format!(
            r#"{{"type":"CONFIGMAP","name":"one","namespace":"ns","hash":"{}","containerRefs":["a"],"observedAt":1}}"#,
            ContentHash::of(b"1")
        );
        let whole = template(json!({
            "metadata": {"labels": {"app": "x"}, "annotations": {LAST_RELOADED_FROM: last, "other": "y"}},
            "spec": {"containers": [
                {"name": "a", "image": "i", "env": [
                    {"name": "PLAIN", "value": "v"},
                    {"name": "STAKATER_ONE_CONFIGMAP", "value": ContentHash::of(b"1").to_hex()},
                    {"name": "STAKATER_TWO_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
                ]},
                {"name": "b", "image": "i", "env": [{"name": "STAKATER_X_CONFIGMAPS", "value": "no"}]}
            ]}
        }));
        let facts = PlanFacts::of(&whole);
        let small = facts.template();
        let kept: Vec<Vec<String>> = small
            .spec
            .as_ref()
            .unwrap()
            .containers
            .iter()
            .map(|c| c.env.iter().flatten().map(|e| e.name.clone()).collect())
            .collect();
        assert_eq!(kept, [vec!["STAKATER_ONE_CONFIGMAP", "STAKATER_TWO_SECRET"], vec![]], "only reload vars");
        assert_eq!(current_reload_source(&small), current_reload_source(&whole));
        let two = ReloadItem {
            resource: ResourceKey::new(ResourceKind::Secret, "ns", "two"),
            hash: Some(ContentHash::of(b"2")),
            container: "a".into(),
        };
        let gone = ReloadItem { hash: None, ..item("one", b"", "a") };
        let cases: [&[ReloadItem]; 6] = [
            &[item("one", b"1", "a")],
            &[item("one", b"2", "a")],
            &[item("one", b"2", "b"), item("new", b"n", "b")],
            &[item("x", b"1", "missing")],
            std::slice::from_ref(&two),
            &[gone, two.clone()],
        ];
        for items in cases {
            for strategy in [Strategy::EnvVars, Strategy::Annotations] {
                assert_eq!(plan(strategy, &small, items, 7), plan(strategy, &whole, items, 7), "{strategy} {items:?}");
            }
        }
        assert_eq!(PlanFacts::of(&template(json!({}))).template().spec.unwrap().containers, []);
    }

    #[test]
    fn strategies_parse_both_spellings() {
        assert_eq!("EnvVars".parse::<Strategy>(), Ok(Strategy::EnvVars));
        assert_eq!("annotations".parse::<Strategy>(), Ok(Strategy::Annotations));
        assert!("restart".parse::<Strategy>().is_err());
    }
}
