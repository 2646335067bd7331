//! Level-triggered reconciliation of one workload: compare, for every
//! resource it follows, the resource's current hash with the hash the
//! workload last rolled to. A difference is a reload; a resource with no
//! known hash gets a baseline record without a rollout.
//!
//! Resources a reload list names without a reference are found among the
//! names the caller knows in the workload's namespace (`names_in_namespace`,
//! asked only for a kind whose list is not empty): a regex cannot be turned
//! into names any other way.

use crate::decision::{Decision, ResourceFacts, decide};
use crate::hash::ContentHash;
use crate::index::WorkloadEntry;
use crate::keys::{ResourceKey, ResourceKind};
use crate::patch::ReloadItem;
use std::collections::BTreeSet;

/// What the controller knows now of a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Current {
    pub hash: ContentHash,
    pub ignored: bool,
    pub matched: bool,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Resources whose content differs from what the workload rolled to.
    pub reloads: Vec<ReloadItem>,
    /// Resources the workload follows with no record yet (or only a legacy
    /// one equal to the current content): record them, roll nothing.
    pub baseline: Vec<(ResourceKey, ContentHash)>,
}

impl Reconciled {
    pub fn is_empty(&self) -> bool {
        self.reloads.is_empty() && self.baseline.is_empty()
    }
}

/// The resources a reconciliation looks at: every reference, plus the names
/// in the namespace that a reload list of that kind matches.
fn candidates<N: AsRef<str>>(
    entry: &WorkloadEntry,
    names_in_namespace: impl Fn(ResourceKind) -> Vec<N>,
) -> BTreeSet<(ResourceKind, String)> {
    let mut out: BTreeSet<(ResourceKind, String)> = entry.references.keys().cloned().collect();
    for kind in [ResourceKind::ConfigMap, ResourceKind::Secret] {
        let policy = entry.policy.for_kind(kind);
        if policy.reload_list.is_empty() {
            continue;
        }
        for name in names_in_namespace(kind) {
            let name = name.as_ref();
            if policy.listed(name).is_some() {
                out.insert((kind, name.to_string()));
            }
        }
    }
    out
}

pub fn reconcile<N: AsRef<str>>(
    entry: &WorkloadEntry,
    current: impl Fn(ResourceKind, &str) -> Option<Current>,
    names_in_namespace: impl Fn(ResourceKind) -> Vec<N>,
    auto_reload_all: bool,
) -> Reconciled {
    let mut out = Reconciled::default();
    for (kind, name) in candidates(entry, names_in_namespace) {
        let Some(cur) = current(kind, &name) else {
            continue;
        };
        let facts = ResourceFacts { kind, name: &name, ignored: cur.ignored, matched: cur.matched };
        let Decision::Reload { container, .. } = decide(entry, &facts, auto_reload_all) else {
            continue;
        };
        let key = ResourceKey::new(kind, entry.key.namespace.clone(), name.as_str());
        match entry.rolled_to(kind, &name) {
            Some((h, _)) if h != cur.hash => {
                out.reloads.push(ReloadItem { resource: key, hash: Some(cur.hash), container });
            }
            Some((_, true)) => {}
            Some((_, false)) | None => out.baseline.push((key, cur.hash)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{WorkloadKey, WorkloadKind};
    use crate::record::{RECORD_ANNOTATION, Record, render};
    use k8s_openapi::api::core::v1::PodTemplateSpec;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn entry(record: &Record, env_value: Option<&str>) -> WorkloadEntry {
        let mut meta = BTreeMap::from([("reloader.stakater.com/auto".to_string(), "true".to_string())]);
        if !record.is_empty() {
            meta.insert(RECORD_ANNOTATION.into(), render(record));
        }
        let env = env_value.map(|v| json!([{"name": "STAKATER_CFG_CONFIGMAP", "value": v}])).unwrap_or(json!([]));
        let t: PodTemplateSpec = serde_json::from_value(json!({"spec": {"containers": [
            {"name": "app", "env": env, "envFrom": [{"configMapRef": {"name": "cfg"}}, {"secretRef": {"name": "tls"}}]}
        ]}}))
        .unwrap();
        WorkloadEntry::from_object(WorkloadKey::new(WorkloadKind::Deployment, "ns", "web"), &meta, Some(&t))
    }

    fn current(cfg: &'static [u8]) -> impl Fn(ResourceKind, &str) -> Option<Current> {
        move |kind, _| {
            let hash = match kind {
                ResourceKind::ConfigMap => ContentHash::of(cfg),
                ResourceKind::Secret => ContentHash::of(b"tls"),
            };
            Some(Current { hash, ignored: false, matched: false })
        }
    }

    fn no_names(_: ResourceKind) -> Vec<String> {
        Vec::new()
    }

    /// A workload that uses nothing and names ConfigMaps in a reload list.
    fn listing(list: &str, record: &Record) -> WorkloadEntry {
        let mut meta = BTreeMap::from([("configmap.reloader.stakater.com/reload".to_string(), list.to_string())]);
        if !record.is_empty() {
            meta.insert(RECORD_ANNOTATION.into(), render(record));
        }
        let t: PodTemplateSpec = serde_json::from_value(json!({"spec": {"containers": [{"name": "app"}]}})).unwrap();
        WorkloadEntry::from_object(WorkloadKey::new(WorkloadKind::Deployment, "ns", "web"), &meta, Some(&t))
    }

    fn namespace_names(kind: ResourceKind) -> Vec<String> {
        match kind {
            ResourceKind::ConfigMap => ["app-a", "app-b", "other"].map(String::from).to_vec(),
            ResourceKind::Secret => vec!["app-secret".to_string()],
        }
    }

    #[test]
    fn reload_list_names_without_a_reference_are_reconciled() {
        let first = reconcile(&listing("app-.*", &Record::new()), current(b"v1"), namespace_names, false);
        let names: Vec<&str> = first.baseline.iter().map(|(k, _)| k.name.as_ref()).collect();
        assert_eq!(names, ["app-a", "app-b"], "baseline for every listed name, not for others nor Secrets");
        assert!(first.reloads.is_empty());

        let mut rec = Record::new();
        rec.insert((ResourceKind::ConfigMap, "app-a".into()), ContentHash::of(b"v1"));
        rec.insert((ResourceKind::ConfigMap, "app-b".into()), ContentHash::of(b"v0"));
        let r = reconcile(&listing("app-.*", &rec), current(b"v1"), namespace_names, false);
        assert_eq!(r.reloads.len(), 1, "only the one changed while away: {r:?}");
        assert_eq!(r.reloads[0].resource.name.as_ref(), "app-b");
        assert_eq!(r.reloads[0].container, "app", "the first container, as for a listed change");
    }

    #[test]
    fn names_are_asked_for_only_when_a_list_exists() {
        let asked = std::cell::Cell::new(0);
        let names = |_: ResourceKind| {
            asked.set(asked.get() + 1);
            Vec::<String>::new()
        };
        reconcile(&entry(&Record::new(), None), current(b"v1"), names, false);
        assert_eq!(asked.get(), 0);
    }

    #[test]
    fn first_seen_gets_a_baseline_and_no_reload() {
        let r = reconcile(&entry(&Record::new(), None), current(b"v1"), no_names, false);
        assert!(r.reloads.is_empty());
        assert_eq!(r.baseline.len(), 2);
    }

    #[test]
    fn recorded_and_current_equal_means_nothing_to_do() {
        let mut rec = Record::new();
        rec.insert((ResourceKind::ConfigMap, "cfg".into()), ContentHash::of(b"v1"));
        rec.insert((ResourceKind::Secret, "tls".into()), ContentHash::of(b"tls"));
        assert!(reconcile(&entry(&rec, None), current(b"v1"), no_names, false).is_empty());
    }

    #[test]
    fn a_change_while_away_reloads_once() {
        let mut rec = Record::new();
        rec.insert((ResourceKind::ConfigMap, "cfg".into()), ContentHash::of(b"v1"));
        rec.insert((ResourceKind::Secret, "tls".into()), ContentHash::of(b"tls"));
        let r = reconcile(&entry(&rec, None), current(b"v2"), no_names, false);
        assert_eq!(r.reloads.len(), 1);
        assert_eq!(r.reloads[0].hash, Some(ContentHash::of(b"v2")));
        assert!(r.baseline.is_empty());
    }

    #[test]
    fn reloader_env_vars_stand_in_for_a_record() {
        let equal = ContentHash::of(b"v1").to_hex();
        let r = reconcile(&entry(&Record::new(), Some(&equal)), current(b"v1"), no_names, false);
        assert!(r.reloads.is_empty(), "migrated, current: no rollout");
        assert_eq!(r.baseline.len(), 2, "but a record is written");
        let stale = ContentHash::of(b"v0").to_hex();
        let r = reconcile(&entry(&Record::new(), Some(&stale)), current(b"v1"), no_names, false);
        assert_eq!(r.reloads.len(), 1, "migrated, stale: one rollout");
    }

    #[test]
    fn unfollowed_resources_are_left_alone() {
        let mut e = entry(&Record::new(), None);
        e.policy = Default::default();
        assert!(reconcile(&e, current(b"v1"), no_names, false).is_empty());
    }
}
