//! `pod-reloader explain <kind>/<name> -n <namespace>`: reads the workload
//! and the ConfigMaps/Secrets of its namespace with the user's kubeconfig,
//! and prints why it follows what (the report itself is built in core).
//!
//! A keyed record is compared under the key of `--record-key-file`, else the
//! key in the module's Secret when the user may read it; without either the
//! report says it cannot compare.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{DynamicObject, ListParams};
use kube::{Api, Client};
use pod_reloader_core::annotations::AnnotationNames;
use pod_reloader_core::baseline_store::STORE_LABEL;
use pod_reloader_core::chosen_keys::KeyDigests;
use pod_reloader_core::explain;
use pod_reloader_core::facts::ResourceFacts;
use pod_reloader_core::hash::{configmap_hash, secret_hash};
use pod_reloader_core::index::WorkloadEntry;
use pod_reloader_core::list_budget::ListBudget;
use pod_reloader_core::policy_cache::PolicyCache;
use pod_reloader_core::record::{Record, RecordKey};
use pod_reloader_core::settings::ValidSettings;
use pod_reloader_core::{ResourceKind, WorkloadKind};

use crate::watch::workload_api;
use crate::watch_spc;

/// Where the module keeps the record key (templates/secret-record-key.yaml).
const KEY_SECRET_NAMESPACE: &str = "d8-pod-reloader";
const KEY_SECRET_NAME: &str = "pod-reloader-record-key";

/// The record key from the module's Secret, if this user may read it.
async fn key_from_secret(client: &Client) -> Option<RecordKey> {
    let secret =
        Api::<Secret>::namespaced(client.clone(), KEY_SECRET_NAMESPACE).get_opt(KEY_SECRET_NAME).await.ok()??;
    RecordKey::new(&secret.data?.get("key")?.0).ok()
}

/// The SecretProviderClasses of the namespace that pods mount, each with the
/// hash of its newest SecretProviderClassPodStatus (the pod mounted last
/// observed the latest versions) and its annotations. Empty when the
/// driver's API is not served or not readable.
/// The workload's entry in the controller's baseline store (ConfigMaps in
/// the module namespace, see `pod_reloader_core::baseline_store`), if the
/// caller may read it: a workload never reloaded has its baseline there.
async fn stored_record(client: &Client, uid: &str) -> Option<Record> {
    let shards = Api::<ConfigMap>::namespaced(client.clone(), KEY_SECRET_NAMESPACE);
    let label = format!("{STORE_LABEL}=true");
    let list = shards.list(&ListParams::default().labels(&label)).await.ok()?;
    list.items.into_iter().find_map(|cm| cm.data?.get(uid).map(|raw| Record::parse_value(raw)))
}

async fn secret_provider_classes(
    client: &Client,
    namespace: &str,
    names: &AnnotationNames,
) -> Vec<(ResourceKind, String, ResourceFacts)> {
    let statuses = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &watch_spc::pod_status_resource());
    let Ok(list) = statuses.list(&ListParams::default()).await else {
        return Vec::new();
    };
    let mut newest: BTreeMap<String, (Option<jiff::Timestamp>, pod_reloader_core::ContentHash)> = BTreeMap::new();
    for s in &list.items {
        let Some((class, hash)) = watch_spc::class_and_hash(s) else { continue };
        let created = s.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let entry = newest.entry(class).or_insert((created, hash));
        if created > entry.0 {
            *entry = (created, hash);
        }
    }
    let classes = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &watch_spc::class_resource());
    let mut out = Vec::new();
    for (class, (_, hash)) in newest {
        let ann = classes.get_opt(&class).await.ok().flatten().and_then(|c| c.metadata.annotations);
        let current = ResourceFacts::of(hash, ann.as_ref(), names);
        out.push((ResourceKind::SecretProviderClass, class, current));
    }
    out
}

pub async fn run(target: &str, namespace: &str, settings: &ValidSettings) -> anyhow::Result<String> {
    let (kind_text, name) = target
        .split_once('/')
        .ok_or_else(|| anyhow::anyhow!("want <kind>/<name>, e.g. deployment/web; got {target:?}"))?;
    // The built-in kinds and the custom ones of the settings.
    let known: Vec<WorkloadKind> =
        WorkloadKind::ALL.into_iter().chain(settings.workload_kinds.iter().copied()).collect();
    let kind = WorkloadKind::parse_among(kind_text, &known).ok_or_else(|| {
        let mut unique = known.clone();
        unique.sort();
        unique.dedup();
        anyhow::anyhow!("unknown kind {kind_text:?}: want {}", WorkloadKind::plurals_text(unique))
    })?;
    let client =
        Client::try_default().await.map_err(|e| anyhow::anyhow!("cannot configure the Kubernetes client: {e}"))?;
    let mut obj = workload_api(&client, kind, Some(namespace)).get_opt(name).await?.ok_or_else(|| {
        let spec = kind.spec();
        anyhow::anyhow!("{}.{} \"{name}\" not found in namespace {namespace}", spec.plural, spec.group)
    })?;
    // A Rollout with a workloadRef runs its Deployment's template, as the watch sees it.
    if let Some(deployment) = kind.spec().workload_ref(&obj.data).map(str::to_string)
        && let Some(d) = workload_api(&client, WorkloadKind::Deployment, Some(namespace)).get_opt(&deployment).await?
        && let Some(template) = WorkloadKind::Deployment.spec().template(&d.data)
    {
        kind.spec().put_template(&mut obj.data, serde_json::to_value(template)?);
    }
    // Read under the names this controller is configured with (`annotations`).
    let names: &AnnotationNames = &settings.annotation_names;
    let mut policies = PolicyCache::with(ListBudget::global(), Arc::new(names.clone()));
    let (entry, _) = WorkloadEntry::from_workload_object(kind, &obj.metadata, &mut obj.data, &mut policies);

    let stored = match entry.uid.as_deref() {
        Some(uid) => stored_record(&client, uid).await,
        None => None,
    };
    let keyed = entry.recorded.key_id().is_some() || stored.as_ref().is_some_and(|r| r.key_id().is_some());
    let key = match &settings.record_key {
        Some(k) => Some(k.clone()),
        None if keyed => key_from_secret(&client).await,
        None => None,
    };

    let mut resources = Vec::new();
    // `reload-on-keys`: the digests of the chosen keys, as the controller keeps them.
    let chosen = entry.policy.chosen_keys.clone().unwrap_or_default();
    let mut digests = BTreeMap::new();
    for cm in Api::<ConfigMap>::namespaced(client.clone(), namespace).list(&ListParams::default()).await?.items {
        let hash = configmap_hash(cm.data.as_ref(), cm.binary_data.as_ref());
        let current = ResourceFacts::of(hash, cm.metadata.annotations.as_ref(), names);
        let name = cm.metadata.name.clone().unwrap_or_default();
        let d = KeyDigests::of_configmap(current.hash, cm.data.as_ref(), cm.binary_data.as_ref(), chosen.iter());
        digests.insert((ResourceKind::ConfigMap, name.clone()), d);
        resources.push((ResourceKind::ConfigMap, name, current));
    }
    for s in Api::<Secret>::namespaced(client.clone(), namespace).list(&ListParams::default()).await?.items {
        let current = ResourceFacts::of(secret_hash(s.data.as_ref()), s.metadata.annotations.as_ref(), names);
        let name = s.metadata.name.clone().unwrap_or_default();
        let d = KeyDigests::of_secret(current.hash, s.data.as_ref(), chosen.iter());
        digests.insert((ResourceKind::Secret, name.clone()), d);
        resources.push((ResourceKind::Secret, name, current));
    }
    if settings.resource_kinds.contains(&ResourceKind::SecretProviderClass) {
        resources.extend(secret_provider_classes(&client, namespace, names).await);
    }
    resources.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let chosen_digest = |kind, name: &str, c: &_| digests.get(&(kind, name.to_string()))?.digest(c);
    let rows =
        explain::rows(&entry, &resources, chosen_digest, settings.auto_reload_all, key.as_ref(), stored.as_ref());
    Ok(explain::render(&entry, &rows, settings.strategy, settings.auto_reload_all))
}
