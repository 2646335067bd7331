//! Level-triggered reconciliation of one workload: compare, for every
//! resource it follows, the resource's current hash with the hash the
//! workload last rolled to. A difference is a reload; a resource with no
//! known hash gets a baseline record without a rollout. Where the pod
//! template already states the current hash (a workload migrated from
//! Reloader: its env var or `last-reloaded-from`), that statement is the
//! record and no baseline is written (no write at first start).
//!
//! Resources a reload list names without a reference are found among the
//! names the caller knows in the workload's namespace (`names_in_namespace`,
//! asked only for a kind whose list is not empty): a regex cannot be turned
//! into names any other way.
//!
//! A workload with `reload-on-keys` is compared on the digest of its chosen
//! keys (`chosen_digest`, see `chosen_keys`); while that digest is not known
//! yet its resources are left for later (no reload, no baseline).
//!
//! With a record key the record holds sealed hashes (see `record`): the
//! current hash is sealed to compare, and a record under another key counts
//! as none (a baseline, never a rollout).

use crate::chosen_keys::{ChosenKeys, is_current};
use crate::decision::{Decision, decide};
use crate::facts::ResourceFacts;
use crate::hash::ContentHash;
use crate::index::WorkloadEntry;
use crate::keys::{ResourceKey, ResourceKind};
use crate::patch::ReloadItem;
use crate::record::{Record, RecordKey};
use std::collections::BTreeSet;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Resources whose content differs from what the workload rolled to.
    pub reloads: Vec<ReloadItem>,
    /// Resources the workload follows with no record yet (or, with
    /// `reload-on-keys`, only a legacy one): record them, roll nothing.
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
    for kind in ResourceKind::ALL {
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
    current: impl Fn(ResourceKind, &str) -> Option<ResourceFacts>,
    chosen_digest: impl Fn(ResourceKind, &str, &ChosenKeys) -> Option<ContentHash>,
    names_in_namespace: impl Fn(ResourceKind) -> Vec<N>,
    auto_reload_all: bool,
    record_key: Option<&RecordKey>,
) -> Reconciled {
    reconcile_stored(entry, None, current, chosen_digest, names_in_namespace, auto_reload_all, record_key)
}

/// As [`reconcile`], with the workload's entry in the baseline store
/// (`baseline_store`): read after its own record, before Reloader's values.
pub fn reconcile_stored<N: AsRef<str>>(
    entry: &WorkloadEntry,
    stored: Option<&Record>,
    current: impl Fn(ResourceKind, &str) -> Option<ResourceFacts>,
    chosen_digest: impl Fn(ResourceKind, &str, &ChosenKeys) -> Option<ContentHash>,
    names_in_namespace: impl Fn(ResourceKind) -> Vec<N>,
    auto_reload_all: bool,
    record_key: Option<&RecordKey>,
) -> Reconciled {
    let mut out = Reconciled::default();
    for (kind, name) in candidates(entry, names_in_namespace) {
        let Some(cur) = current(kind, &name) else {
            continue;
        };
        let Decision::Reload { container, .. } = decide(entry, kind, &name, Some(&cur), auto_reload_all) else {
            continue;
        };
        // What the workload follows of the content: all of it, or the digest of its chosen keys.
        let (hash, whole) = match &entry.policy.chosen_keys {
            None => (cur.hash, cur.hash),
            Some(chosen) => match chosen_digest(kind, &name, chosen) {
                Some(d) => (d, cur.hash),
                None => continue,
            },
        };
        let key = ResourceKey::new(kind, entry.key.namespace.clone(), name.as_str());
        match entry.rolled_to_stored(kind, &name, record_key, stored) {
            Some((rolled, _)) if !is_current(|h| rolled.is(h, record_key), hash, whole) => {
                out.reloads.push(ReloadItem { resource: key, hash: Some(hash), container });
            }
            Some((_, true)) => {}
            // The template states that it runs this content (Reloader's env
            // var or `last-reloaded-from`): that is the durable record, and a
            // baseline would only cost a write. Not with `reload-on-keys`:
            // its record holds the digest of the chosen keys, which the
            // template does not state.
            Some((_, false)) if entry.policy.chosen_keys.is_none() => {}
            Some((_, false)) | None => out.baseline.push((key, hash)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{WorkloadKey, WorkloadKind};
    use crate::record::{KEY_LEN, RECORD_ANNOTATION, Record, RecordKey};
    use k8s_openapi::api::core::v1::PodTemplateSpec;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn entry(record: &Record, env_value: Option<&str>) -> WorkloadEntry {
        entry_with((!record.is_empty()).then(|| record.render(None)), env_value)
    }

    /// A Deployment with `auto`, envFrom ConfigMap `cfg` and Secret `tls`,
    /// the record annotation `record` and Reloader's env var `env_value`.
    fn entry_with(record: Option<String>, env_value: Option<&str>) -> WorkloadEntry {
        let mut meta = BTreeMap::from([("reloader.stakater.com/auto".to_string(), "true".to_string())]);
        if let Some(r) = record {
            meta.insert(RECORD_ANNOTATION.into(), r);
        }
        let env = env_value.map(|v| json!([{"name": "STAKATER_CFG_CONFIGMAP", "value": v}])).unwrap_or(json!([]));
        let t: PodTemplateSpec = serde_json::from_value(json!({"spec": {"containers": [
            {"name": "app", "env": env, "envFrom": [{"configMapRef": {"name": "cfg"}}, {"secretRef": {"name": "tls"}}]}
        ]}}))
        .unwrap();
        WorkloadEntry::from_object(WorkloadKey::new(WorkloadKind::Deployment, "ns", "web"), &meta, Some(&t))
    }

    fn current(cfg: &'static [u8]) -> impl Fn(ResourceKind, &str) -> Option<ResourceFacts> {
        move |kind, _| {
            let hash = match kind {
                ResourceKind::ConfigMap => ContentHash::of(cfg),
                ResourceKind::Secret => ContentHash::of(b"tls"),
                ResourceKind::SecretProviderClass => ContentHash::of(b"spc"),
            };
            Some(ResourceFacts { hash, ignored: false, matched: false })
        }
    }

    fn no_digest(_: ResourceKind, _: &str, _: &ChosenKeys) -> Option<ContentHash> {
        None
    }

    fn no_names(_: ResourceKind) -> Vec<String> {
        Vec::new()
    }

    /// A workload that uses nothing and names ConfigMaps in a reload list.
    fn listing(list: &str, record: &Record) -> WorkloadEntry {
        let mut meta = BTreeMap::from([("configmap.reloader.stakater.com/reload".to_string(), list.to_string())]);
        if !record.is_empty() {
            meta.insert(RECORD_ANNOTATION.into(), record.render(None));
        }
        let t: PodTemplateSpec = serde_json::from_value(json!({"spec": {"containers": [{"name": "app"}]}})).unwrap();
        WorkloadEntry::from_object(WorkloadKey::new(WorkloadKind::Deployment, "ns", "web"), &meta, Some(&t))
    }

    fn namespace_names(kind: ResourceKind) -> Vec<String> {
        match kind {
            ResourceKind::ConfigMap => ["app-a", "app-b", "other"].map(String::from).to_vec(),
            ResourceKind::Secret => vec!["app-secret".to_string()],
            ResourceKind::SecretProviderClass => vec!["app-spc".to_string()],
        }
    }

    #[test]
    fn reload_list_names_without_a_reference_are_reconciled() {
        let first =
            reconcile(&listing("app-.*", &Record::new()), current(b"v1"), no_digest, namespace_names, false, None);
        let names: Vec<&str> = first.baseline.iter().map(|(k, _)| k.name.as_ref()).collect();
        assert_eq!(names, ["app-a", "app-b"], "baseline for every listed name, not for others nor Secrets");
        assert!(first.reloads.is_empty());

        let mut rec = Record::new();
        rec.set(ResourceKind::ConfigMap, "app-a", ContentHash::of(b"v1"), None);
        rec.set(ResourceKind::ConfigMap, "app-b", ContentHash::of(b"v0"), None);
        let r = reconcile(&listing("app-.*", &rec), current(b"v1"), no_digest, namespace_names, false, None);
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
        reconcile(&entry(&Record::new(), None), current(b"v1"), no_digest, names, false, None);
        assert_eq!(asked.get(), 0);
    }

    #[test]
    fn first_seen_gets_a_baseline_and_no_reload() {
        let r = reconcile(&entry(&Record::new(), None), current(b"v1"), no_digest, no_names, false, None);
        assert!(r.reloads.is_empty());
        assert_eq!(r.baseline.len(), 2);
    }

    #[test]
    fn recorded_and_current_equal_means_nothing_to_do() {
        let mut rec = Record::new();
        rec.set(ResourceKind::ConfigMap, "cfg", ContentHash::of(b"v1"), None);
        rec.set(ResourceKind::Secret, "tls", ContentHash::of(b"tls"), None);
        assert!(reconcile(&entry(&rec, None), current(b"v1"), no_digest, no_names, false, None).is_empty());
    }

    #[test]
    fn a_change_while_away_reloads_once() {
        let mut rec = Record::new();
        rec.set(ResourceKind::ConfigMap, "cfg", ContentHash::of(b"v1"), None);
        rec.set(ResourceKind::Secret, "tls", ContentHash::of(b"tls"), None);
        let r = reconcile(&entry(&rec, None), current(b"v2"), no_digest, no_names, false, None);
        assert_eq!(r.reloads.len(), 1);
        assert_eq!(r.reloads[0].hash, Some(ContentHash::of(b"v2")));
        assert!(r.baseline.is_empty());
    }

    #[test]
    fn reloader_env_vars_stand_in_for_a_record() {
        let equal = ContentHash::of(b"v1").to_hex();
        let r = reconcile(&entry(&Record::new(), Some(&equal)), current(b"v1"), no_digest, no_names, false, None);
        assert!(r.reloads.is_empty(), "migrated, current: no rollout");
        let names: Vec<&str> = r.baseline.iter().map(|(k, _)| k.name.as_ref()).collect();
        assert_eq!(names, ["tls"], "no record for what the env var states, one for what nothing states");
        let key = RecordKey::new(&[5; KEY_LEN]).unwrap();
        let r = reconcile(&entry(&Record::new(), Some(&equal)), current(b"v1"), no_digest, no_names, false, Some(&key));
        assert_eq!(r.baseline.len(), 1, "with a record key too: {r:?}");
        let mut tls = Record::new();
        tls.set(ResourceKind::Secret, "tls", ContentHash::of(b"tls"), None);
        assert!(
            reconcile(&entry(&tls, Some(&equal)), current(b"v1"), no_digest, no_names, false, None).is_empty(),
            "the env var stands in beside a record of the other resources: nothing to write"
        );
        let stale = ContentHash::of(b"v0").to_hex();
        let r = reconcile(&entry(&Record::new(), Some(&stale)), current(b"v1"), no_digest, no_names, false, None);
        assert_eq!(r.reloads.len(), 1, "migrated, stale: one rollout");
    }

    #[test]
    fn last_reloaded_from_stands_in_for_a_record() {
        let last = |hash: ContentHash| {
            format!(
                r#"{{"type":"CONFIGMAP","name":"cfg","namespace":"ns","hash":"{hash}","containerRefs":["app"],"observedAt":1}}"#
            )
        };
        let with = |value: String| {
            let meta = BTreeMap::from([("reloader.stakater.com/auto".to_string(), "true".to_string())]);
            let t: PodTemplateSpec = serde_json::from_value(json!({
                "metadata": {"annotations": {"reloader.stakater.com/last-reloaded-from": value}},
                "spec": {"containers": [{"name": "app", "envFrom": [{"configMapRef": {"name": "cfg"}}]}]}
            }))
            .unwrap();
            WorkloadEntry::from_object(WorkloadKey::new(WorkloadKind::Deployment, "ns", "web"), &meta, Some(&t))
        };
        let r = reconcile(&with(last(ContentHash::of(b"v1"))), current(b"v1"), no_digest, no_names, false, None);
        assert!(r.is_empty(), "current: nothing to roll, nothing to write: {r:?}");
        let r = reconcile(&with(last(ContentHash::of(b"v0"))), current(b"v1"), no_digest, no_names, false, None);
        assert_eq!(r.reloads.len(), 1, "changed while away: one rollout");
    }

    #[test]
    fn reload_on_keys_still_gets_a_baseline_of_its_digest() {
        let meta = BTreeMap::from([
            ("reloader.stakater.com/auto".to_string(), "true".to_string()),
            ("reloader.stakater.com/reload-on-keys".to_string(), "a".to_string()),
        ]);
        let t: PodTemplateSpec = serde_json::from_value(json!({"spec": {"containers": [{"name": "app",
            "env": [{"name": "STAKATER_CFG_CONFIGMAP", "value": ContentHash::of(b"v1").to_hex()}],
            "envFrom": [{"configMapRef": {"name": "cfg"}}]}]}}))
        .unwrap();
        let e = WorkloadEntry::from_object(WorkloadKey::new(WorkloadKind::Deployment, "ns", "web"), &meta, Some(&t));
        let digest = ContentHash::of(b"digest of a");
        let facts = ResourceFacts { hash: ContentHash::of(b"v1"), ignored: false, matched: false };
        let r = reconcile(&e, |_, _| Some(facts), |_, _, _| Some(digest), no_names, false, None);
        assert!(r.reloads.is_empty(), "{r:?}");
        assert_eq!(r.baseline, [(ResourceKey::new(ResourceKind::ConfigMap, "ns", "cfg"), digest)]);
    }

    fn both(cfg: &[u8]) -> Record {
        let mut rec = Record::new();
        rec.set(ResourceKind::ConfigMap, "cfg", ContentHash::of(cfg), None);
        rec.set(ResourceKind::Secret, "tls", ContentHash::of(b"tls"), None);
        rec
    }

    #[test]
    fn keyed_record_is_compared_under_its_key() {
        let key = RecordKey::new(&[3; KEY_LEN]).unwrap();
        let keyed = Some(both(b"v1").render(Some(&key)));
        assert!(
            reconcile(&entry_with(keyed.clone(), None), current(b"v1"), no_digest, no_names, false, Some(&key))
                .is_empty()
        );
        let r = reconcile(&entry_with(keyed, None), current(b"v2"), no_digest, no_names, false, Some(&key));
        assert_eq!(r.reloads.len(), 1, "{r:?}");
        assert_eq!(r.reloads[0].hash, Some(ContentHash::of(b"v2")));
        assert!(r.baseline.is_empty());
    }

    #[test]
    fn unkeyed_record_under_a_key_migrates_without_rollouts() {
        let key = RecordKey::new(&[3; KEY_LEN]).unwrap();
        let old = Some(both(b"v1").render(None));
        assert!(
            reconcile(&entry_with(old.clone(), None), current(b"v1"), no_digest, no_names, false, Some(&key))
                .is_empty(),
            "equal SHA-1s: nothing to roll, nothing to write"
        );
        let r = reconcile(&entry_with(old, None), current(b"v2"), no_digest, no_names, false, Some(&key));
        assert_eq!(r.reloads.len(), 1, "stale SHA-1: one rollout");
    }

    #[test]
    fn a_record_under_another_key_is_a_baseline() {
        let old_key = RecordKey::new(&[1; KEY_LEN]).unwrap();
        let key = RecordKey::new(&[2; KEY_LEN]).unwrap();
        let foreign = Some(both(b"v0").render(Some(&old_key)));
        let r = reconcile(&entry_with(foreign.clone(), None), current(b"v1"), no_digest, no_names, false, Some(&key));
        assert!(r.reloads.is_empty(), "no rollout storm after a new key: {r:?}");
        assert_eq!(r.baseline.len(), 2);
        let r = reconcile(&entry_with(foreign, None), current(b"v1"), no_digest, no_names, false, None);
        assert!(r.reloads.is_empty() && r.baseline.len() == 2, "without a key too: {r:?}");
    }

    #[test]
    fn unfollowed_resources_are_left_alone() {
        let mut e = entry(&Record::new(), None);
        e.policy = Default::default();
        assert!(reconcile(&e, current(b"v1"), no_digest, no_names, false, None).is_empty());
    }
    /// A Deployment following ConfigMap `cfg` (auto) with `reload-on-keys: a`, rolled to `record`.
    fn keyed_entry(record: &Record) -> WorkloadEntry {
        let mut meta = BTreeMap::from([
            ("reloader.stakater.com/auto".to_string(), "true".to_string()),
            ("reloader.stakater.com/reload-on-keys".to_string(), "a".to_string()),
        ]);
        if !record.is_empty() {
            meta.insert(RECORD_ANNOTATION.into(), record.render(None));
        }
        let t: PodTemplateSpec = serde_json::from_value(
            json!({"spec": {"containers": [{"name": "app", "envFrom": [{"configMapRef": {"name": "cfg"}}]}]}}),
        )
        .unwrap();
        WorkloadEntry::from_object(WorkloadKey::new(WorkloadKind::Deployment, "ns", "web"), &meta, Some(&t))
    }

    #[test]
    fn chosen_keys_are_compared_on_their_digest() {
        use crate::chosen_keys::KeyDigests;
        use crate::hash::configmap_hash;
        let content = |a: &str, b: &str| {
            let data = BTreeMap::from([("a".to_string(), a.to_string()), ("b".to_string(), b.to_string())]);
            let whole = configmap_hash(Some(&data), None);
            (whole, KeyDigests::of_configmap(whole, Some(&data), None, ["a"]))
        };
        let chosen = ChosenKeys::from(["a"]);
        let (whole1, d1) = content("1", "1");
        let digest1 = d1.digest(&chosen).unwrap();
        let run = |e: &WorkloadEntry, (whole, d): &(ContentHash, KeyDigests)| {
            let facts = ResourceFacts { hash: *whole, ignored: false, matched: false };
            reconcile(e, |_, _| Some(facts), |_, _, c| d.digest(c), no_names, false, None)
        };

        let first = run(&keyed_entry(&Record::new()), &content("1", "1"));
        assert!(first.reloads.is_empty());
        assert_eq!(first.baseline[0].1, digest1, "the baseline records the digest of the chosen keys");

        let mut rec = Record::new();
        rec.set(ResourceKind::ConfigMap, "cfg", digest1, None);
        assert!(run(&keyed_entry(&rec), &content("1", "2")).is_empty(), "only b changed");
        let r = run(&keyed_entry(&rec), &content("2", "1"));
        assert_eq!(r.reloads.len(), 1, "a changed while away: {r:?}");
        assert_eq!(r.reloads[0].hash, content("2", "1").1.digest(&chosen));

        let mut whole = Record::new();
        whole.set(ResourceKind::ConfigMap, "cfg", whole1, None);
        assert!(
            run(&keyed_entry(&whole), &content("1", "1")).is_empty(),
            "a record of the whole current content (before the annotation) is current"
        );
        let facts = ResourceFacts { hash: whole1, ignored: false, matched: false };
        let unknown = reconcile(&keyed_entry(&rec), |_, _| Some(facts), no_digest, no_names, false, None);
        assert!(unknown.is_empty(), "no digest yet: left for later, neither rolled nor recorded");
    }

    #[test]
    fn the_store_is_read_after_the_record_and_before_reloaders_values() {
        let run = |e: &WorkloadEntry, stored: &Record, cfg: &'static [u8]| {
            reconcile_stored(e, Some(stored), current(cfg), no_digest, no_names, false, None)
        };
        assert!(run(&entry(&Record::new(), None), &both(b"v1"), b"v1").is_empty(), "stored baseline, current");
        let r = run(&entry(&Record::new(), None), &both(b"v1"), b"v2");
        assert_eq!(r.reloads.len(), 1, "changed while away, known from the store: {r:?}");
        assert!(run(&entry(&both(b"v2"), None), &both(b"v1"), b"v2").is_empty(), "the record wins over the store");
        let stale_env = ContentHash::of(b"v0").to_hex();
        assert!(
            run(&entry(&Record::new(), Some(&stale_env)), &both(b"v1"), b"v1").is_empty(),
            "the store wins over env vars"
        );
    }
}
