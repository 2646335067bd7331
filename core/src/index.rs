//! The index of who follows what: for every ConfigMap/Secret, the workloads
//! that reference it, plus per namespace the workloads carrying reload lists
//! (regexes can name resources nobody references). One change therefore
//! costs a map lookup, never a LIST of workloads.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use crate::keys::{ResourceKey, ResourceKind, WorkloadKey, WorkloadKind};
use crate::kinds::ApplyMethod;
use crate::patch::PlanFacts;
use crate::policy::WorkloadPolicy;
use crate::policy_cache::PolicyCache;
use crate::record::{self, Hashes, Record, RecordKey, RolledTo};
use crate::references::{self, Reference};

/// What the controller keeps of a workload: its policy and its references,
/// never the object itself.
#[derive(Clone, Debug)]
pub struct WorkloadEntry {
    pub key: WorkloadKey,
    /// Shared with the watch stream's policy cache: unchanged policy
    /// annotations are never parsed twice.
    pub policy: Arc<WorkloadPolicy>,
    pub references: BTreeMap<(ResourceKind, String), Reference>,
    pub first_container: Option<String>,
    /// Hashes from pod-reloader's own record on the workload's metadata
    /// (shared with `patch_base`).
    pub recorded: Arc<Record>,
    /// Hashes Reloader left on the template (env vars, `last-reloaded-from`),
    /// for workloads without a record yet.
    pub legacy: Hashes,
    /// The object's uid (keys its entry in the baseline store), when known.
    pub uid: Option<Arc<str>>,
    /// `metadata.creationTimestamp` in Unix seconds, when known.
    pub created: Option<i64>,
    /// What a strategic-merge patch of this workload is planned on, as the
    /// watch last delivered it; `None` for kinds applied otherwise (they read
    /// the whole object: see `KindSpec::apply`) and for entries not built
    /// from a watched object.
    pub patch_base: Option<Arc<PatchBase>>,
}

/// The object version a reload patches and the facts its plan reads: the
/// PATCH carries `resource_version` as its precondition, so a plan made on
/// facts that are no longer current fails with 409 Conflict instead of
/// being applied (the reload then reads the object and plans again).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatchBase {
    pub resource_version: Box<str>,
    /// The entry's own uid, shared (one allocation per workload).
    pub uid: Option<Arc<str>>,
    /// `spec.paused`, on kinds with `pause-period`.
    pub paused: bool,
    pub template: PlanFacts,
    /// The record the workload carried at this version.
    pub recorded: Arc<Record>,
}

impl WorkloadEntry {
    pub fn new(
        key: WorkloadKey,
        meta_annotations: &BTreeMap<String, String>,
        template_annotations: &BTreeMap<String, String>,
        spec: &PodSpec,
    ) -> Self {
        Self::with_policy(key, Arc::new(WorkloadPolicy::parse(meta_annotations, template_annotations)), spec)
    }

    fn with_policy(key: WorkloadKey, policy: Arc<WorkloadPolicy>, spec: &PodSpec) -> Self {
        WorkloadEntry {
            key,
            policy,
            references: references::extract(spec),
            first_container: spec.containers.first().map(|c| c.name.clone()),
            recorded: Arc::new(Record::new()),
            legacy: Hashes::new(),
            patch_base: None,
            uid: None,
            created: None,
        }
    }

    /// The entry for a workload as watched: policy, references, and what it
    /// last rolled to (its record, or the hashes Reloader left).
    pub fn from_object(
        key: WorkloadKey,
        meta_annotations: &BTreeMap<String, String>,
        template: Option<&PodTemplateSpec>,
    ) -> Self {
        let policy = Arc::new(WorkloadPolicy::parse(meta_annotations, template_annotations(template)));
        Self::from_object_with_policy(key, policy, meta_annotations, template)
    }

    /// The one cut-down of a workload object, used by the watch and by
    /// `explain`: its key (the kind and the object's name), its policy
    /// (through `policies`: parsed only when the annotations the policy reads
    /// changed; the flag says whether it was parsed now), its references and
    /// what it last rolled to, from the metadata annotations and the pod
    /// template at the kind's template path. `body` is the object less its
    /// metadata (a dynamic object's `data`); the template is taken out of it
    /// rather than copied, since the caller drops the object next.
    pub fn from_workload_object(
        kind: WorkloadKind,
        meta: &ObjectMeta,
        body: &mut Value,
        policies: &mut PolicyCache,
    ) -> (Self, bool) {
        let key = WorkloadKey::of_object(kind, meta);
        let template = kind.spec().take_template(body);
        let empty = BTreeMap::new();
        let annotations = meta.annotations.as_ref().unwrap_or(&empty);
        let (policy, parsed) = policies.policy(&key, annotations, template_annotations(template.as_ref()));
        let mut entry = Self::from_object_with_policy(key, policy, annotations, template.as_ref());
        entry.uid = meta.uid.as_deref().map(Arc::from);
        entry.created = meta.creation_timestamp.as_ref().map(|t| t.0.as_second());
        let spec = kind.spec();
        if spec.apply == ApplyMethod::StrategicMerge
            && let (Some(rv), Some(t)) = (&meta.resource_version, &template)
        {
            let paused = spec.pause_period && body.pointer("/spec/paused").and_then(Value::as_bool).unwrap_or(false);
            entry.patch_base = Some(Arc::new(PatchBase {
                resource_version: rv.as_str().into(),
                uid: entry.uid.clone(),
                paused,
                template: PlanFacts::of(t),
                recorded: entry.recorded.clone(),
            }));
        }
        (entry, parsed)
    }

    /// As [`Self::from_object`], with the policy already parsed (or kept from
    /// before: see `policy_cache`).
    fn from_object_with_policy(
        key: WorkloadKey,
        policy: Arc<WorkloadPolicy>,
        meta_annotations: &BTreeMap<String, String>,
        template: Option<&PodTemplateSpec>,
    ) -> Self {
        let spec = template.and_then(|t| t.spec.clone()).unwrap_or_default();
        let mut entry = Self::with_policy(key, policy, &spec);
        entry.recorded = Arc::new(Record::parse(meta_annotations));
        if let Some(t) = template {
            let followed: Vec<(ResourceKind, String)> = entry.references.keys().cloned().collect();
            entry.legacy = record::legacy(t, &entry.key.namespace, &followed);
        }
        entry
    }

    /// What this workload last rolled to for a resource, if known: from its
    /// record (true; an entry sealed under another key than `key` counts as
    /// none), else from Reloader's values (false).
    pub fn rolled_to(&self, kind: ResourceKind, name: &str, key: Option<&RecordKey>) -> Option<(RolledTo, bool)> {
        self.rolled_to_stored(kind, name, key, None)
    }

    /// As [`Self::rolled_to`], with the workload's entry in the baseline
    /// store (`baseline_store`) read after its own record and before
    /// Reloader's values.
    pub fn rolled_to_stored(
        &self,
        kind: ResourceKind,
        name: &str,
        key: Option<&RecordKey>,
        stored: Option<&Record>,
    ) -> Option<(RolledTo, bool)> {
        self.recorded
            .get(kind, name, key)
            .or_else(|| stored.and_then(|s| s.get(kind, name, key)))
            .map(|r| (r, true))
            .or_else(|| self.legacy.get(&(kind, name.to_string())).map(|h| (RolledTo::Plain(*h), false)))
    }

    fn has_lists(&self) -> bool {
        ResourceKind::ALL.iter().any(|k| !self.policy.for_kind(*k).reload_list.is_empty())
    }

    fn resource_keys(&self) -> impl Iterator<Item = ResourceKey> + '_ {
        self.references.keys().map(|(kind, name)| ResourceKey::new(*kind, self.key.namespace.clone(), name.as_str()))
    }
}

/// The pod template's annotations (empty when there are none).
pub fn template_annotations(template: Option<&PodTemplateSpec>) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    template.and_then(|t| t.metadata.as_ref()).and_then(|m| m.annotations.as_ref()).unwrap_or(&EMPTY)
}

#[derive(Default, Debug)]
pub struct FollowIndex {
    workloads: HashMap<WorkloadKey, WorkloadEntry>,
    by_reference: HashMap<ResourceKey, BTreeSet<WorkloadKey>>,
    with_lists: HashMap<Arc<str>, BTreeSet<WorkloadKey>>,
}

impl FollowIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a workload; returns the previous entry.
    pub fn upsert(&mut self, entry: WorkloadEntry) -> Option<WorkloadEntry> {
        let old = self.remove(&entry.key);
        for rk in entry.resource_keys() {
            self.by_reference.entry(rk).or_default().insert(entry.key.clone());
        }
        if entry.has_lists() {
            self.with_lists.entry(entry.key.namespace.clone()).or_default().insert(entry.key.clone());
        }
        self.workloads.insert(entry.key.clone(), entry);
        old
    }

    /// Removes a workload; returns its entry.
    pub fn remove(&mut self, key: &WorkloadKey) -> Option<WorkloadEntry> {
        let old = self.workloads.remove(key)?;
        for rk in old.resource_keys() {
            if let Some(set) = self.by_reference.get_mut(&rk) {
                set.remove(key);
                if set.is_empty() {
                    self.by_reference.remove(&rk);
                }
            }
        }
        if let Some(set) = self.with_lists.get_mut(&key.namespace) {
            set.remove(key);
            if set.is_empty() {
                self.with_lists.remove(&key.namespace);
            }
        }
        Some(old)
    }

    pub fn get(&self, key: &WorkloadKey) -> Option<&WorkloadEntry> {
        self.workloads.get(key)
    }

    /// Workloads that may follow `resource`: those referencing it and those
    /// in its namespace with a reload list. Sorted, without duplicates.
    pub fn candidates(&self, resource: &ResourceKey) -> Vec<&WorkloadEntry> {
        let mut keys: BTreeSet<&WorkloadKey> = BTreeSet::new();
        if let Some(set) = self.by_reference.get(resource) {
            keys.extend(set.iter());
        }
        if let Some(set) = self.with_lists.get(&resource.namespace) {
            keys.extend(set.iter());
        }
        keys.into_iter().filter_map(|k| self.workloads.get(k)).collect()
    }

    pub fn len(&self) -> usize {
        self.workloads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.workloads.is_empty()
    }

    pub fn keys(&self) -> impl Iterator<Item = &WorkloadKey> {
        self.workloads.keys()
    }

    pub fn entries(&self) -> impl Iterator<Item = &WorkloadEntry> {
        self.workloads.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::WorkloadKind;
    use serde_json::json;

    fn entry(ns: &str, name: &str, meta: &[(&str, &str)], spec: serde_json::Value) -> WorkloadEntry {
        let meta: BTreeMap<String, String> = meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        WorkloadEntry::new(
            WorkloadKey::new(WorkloadKind::Deployment, ns, name),
            &meta,
            &BTreeMap::new(),
            &serde_json::from_value(spec).unwrap(),
        )
    }

    fn names(v: Vec<&WorkloadEntry>) -> Vec<String> {
        v.iter().map(|e| e.key.to_string()).collect()
    }

    #[test]
    fn finds_referencing_and_listing_workloads_only_in_the_namespace() {
        let mut idx = FollowIndex::new();
        idx.upsert(entry(
            "a",
            "uses",
            &[],
            json!({"containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "cfg"}}]}]}),
        ));
        idx.upsert(entry(
            "a",
            "lists",
            &[("configmap.reloader.stakater.com/reload", "x.*")],
            json!({"containers": [{"name": "c"}]}),
        ));
        idx.upsert(entry(
            "b",
            "other-ns",
            &[],
            json!({"containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "cfg"}}]}]}),
        ));
        let cfg_a = ResourceKey::new(ResourceKind::ConfigMap, "a", "cfg");
        assert_eq!(names(idx.candidates(&cfg_a)), ["Deployment a/lists", "Deployment a/uses"]);
        let secret_a = ResourceKey::new(ResourceKind::Secret, "a", "cfg");
        assert_eq!(names(idx.candidates(&secret_a)), ["Deployment a/lists"]);
    }

    #[test]
    fn a_workload_object_is_cut_down_at_its_kinds_template_path() {
        let meta: ObjectMeta = serde_json::from_value(json!({"namespace": "ns", "name": "nightly",
            "annotations": {"reloader.stakater.com/auto": "true"}}))
        .unwrap();
        let template = json!({"spec": {"containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "cfg"}}]}]}});
        let mut body = json!({"spec": {"schedule": "@daily", "jobTemplate": {"spec": {"template": template}}}});
        let mut policies = PolicyCache::new();
        let (entry, parsed) =
            WorkloadEntry::from_workload_object(WorkloadKind::CronJob, &meta, &mut body, &mut policies);
        assert!(parsed);
        assert_eq!(entry.key.to_string(), "CronJob ns/nightly");
        assert_eq!(entry.references.keys().collect::<Vec<_>>(), [&(ResourceKind::ConfigMap, "cfg".to_string())]);
        assert_eq!(entry.first_container.as_deref(), Some("c"));
        assert!(entry.patch_base.is_none(), "no resourceVersion: nothing to patch against");
        // The same annotations again: the policy is shared, not parsed anew.
        let mut body = json!({"spec": {}});
        let (again, parsed) =
            WorkloadEntry::from_workload_object(WorkloadKind::CronJob, &meta, &mut body, &mut policies);
        assert!(!parsed && Arc::ptr_eq(&again.policy, &entry.policy));
        assert!(again.references.is_empty(), "no template, no references");
    }

    #[test]
    fn strategic_merge_kinds_keep_what_a_patch_is_planned_on() {
        let meta: ObjectMeta = serde_json::from_value(json!({"namespace": "ns", "name": "web",
            "resourceVersion": "42", "uid": "u-1",
            "annotations": {"reloader.stakater.com/auto": "true",
                crate::record::RECORD_ANNOTATION: format!(r#"{{"ConfigMap/cfg":"{}"}}"#, crate::ContentHash::of(b"1"))}}))
        .unwrap();
        let template = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i",
            "env": [{"name": "STAKATER_CFG_CONFIGMAP", "value": "h"}, {"name": "OTHER", "value": "x"}],
            "envFrom": [{"configMapRef": {"name": "cfg"}}]}]}});
        let body = json!({"spec": {"paused": true, "replicas": 3, "template": template.clone()}});
        let mut policies = PolicyCache::new();
        let (entry, _) =
            WorkloadEntry::from_workload_object(WorkloadKind::Deployment, &meta, &mut body.clone(), &mut policies);
        let base = entry.patch_base.as_deref().expect("a Deployment is patched on its watched version");
        assert_eq!((&*base.resource_version, base.uid.as_deref(), base.paused), ("42", Some("u-1"), true));
        assert_eq!(base.template, PlanFacts::of(&serde_json::from_value(template).unwrap()));
        assert!(Arc::ptr_eq(&base.recorded, &entry.recorded), "the record is shared, not copied");
        assert!(base.recorded.get(ResourceKind::ConfigMap, "cfg", None).is_some());

        let (sts, _) =
            WorkloadEntry::from_workload_object(WorkloadKind::StatefulSet, &meta, &mut body.clone(), &mut policies);
        assert!(!sts.patch_base.unwrap().paused, "paused is read only where pause-period applies");
        for kind in [WorkloadKind::Job, WorkloadKind::Rollout] {
            let (e, _) = WorkloadEntry::from_workload_object(kind, &meta, &mut body.clone(), &mut policies);
            assert!(e.patch_base.is_none(), "{kind:?} reads the whole object to reload");
        }
    }

    #[test]
    fn upsert_replaces_old_references_and_remove_cleans_up() {
        let mut idx = FollowIndex::new();
        idx.upsert(entry(
            "a",
            "w",
            &[],
            json!({"containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "old"}}]}]}),
        ));
        idx.upsert(entry(
            "a",
            "w",
            &[],
            json!({"containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "new"}}]}]}),
        ));
        assert!(idx.candidates(&ResourceKey::new(ResourceKind::ConfigMap, "a", "old")).is_empty());
        assert_eq!(idx.candidates(&ResourceKey::new(ResourceKind::ConfigMap, "a", "new")).len(), 1);
        idx.remove(&WorkloadKey::new(WorkloadKind::Deployment, "a", "w"));
        assert!(idx.is_empty());
        assert!(idx.by_reference.is_empty() && idx.with_lists.is_empty());
    }
}
