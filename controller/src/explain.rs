//! `pod-reloader explain <kind>/<name> -n <namespace>`: reads the workload
//! and the ConfigMaps/Secrets of its namespace with the user's kubeconfig,
//! and prints why it follows what (the report itself is built in core).
//!
//! A keyed record is compared under the key of `--record-key-file`, else the
//! key in the module's Secret when the user may read it; without either the
//! report says it cannot compare.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::ListParams;
use kube::{Api, Client};
use pod_reloader_core::annotations::{self, IGNORE, MATCH};
use pod_reloader_core::explain;
use pod_reloader_core::facts::ResourceFacts;
use pod_reloader_core::hash::{configmap_hash, secret_hash};
use pod_reloader_core::index::WorkloadEntry;
use pod_reloader_core::policy_cache::PolicyCache;
use pod_reloader_core::record::RecordKey;
use pod_reloader_core::settings::ValidSettings;
use pod_reloader_core::{ResourceKind, WorkloadKind};

use crate::watch::workload_api;

/// Where the module keeps the record key (templates/secret-record-key.yaml).
const KEY_SECRET_NAMESPACE: &str = "d8-pod-reloader";
const KEY_SECRET_NAME: &str = "pod-reloader-record-key";

/// The record key from the module's Secret, if this user may read it.
async fn key_from_secret(client: &Client) -> Option<RecordKey> {
    let secret =
        Api::<Secret>::namespaced(client.clone(), KEY_SECRET_NAMESPACE).get_opt(KEY_SECRET_NAME).await.ok()??;
    RecordKey::new(&secret.data?.get("key")?.0).ok()
}

fn flag(map: Option<&BTreeMap<String, String>>, key: annotations::Key) -> bool {
    map.and_then(|m| annotations::get(m, key)) == Some("true")
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
    let (entry, _) = WorkloadEntry::from_workload_object(kind, &obj.metadata, &mut obj.data, &mut PolicyCache::new());

    let key = match &settings.record_key {
        Some(k) => Some(k.clone()),
        None if entry.recorded.key_id().is_some() => key_from_secret(&client).await,
        None => None,
    };

    let mut resources = Vec::new();
    for cm in Api::<ConfigMap>::namespaced(client.clone(), namespace).list(&ListParams::default()).await?.items {
        let ann = cm.metadata.annotations.as_ref();
        let current = ResourceFacts {
            hash: configmap_hash(cm.data.as_ref(), cm.binary_data.as_ref()),
            ignored: flag(ann, IGNORE),
            matched: flag(ann, MATCH),
        };
        resources.push((ResourceKind::ConfigMap, cm.metadata.name.clone().unwrap_or_default(), current));
    }
    for s in Api::<Secret>::namespaced(client, namespace).list(&ListParams::default()).await?.items {
        let ann = s.metadata.annotations.as_ref();
        let current =
            ResourceFacts { hash: secret_hash(s.data.as_ref()), ignored: flag(ann, IGNORE), matched: flag(ann, MATCH) };
        resources.push((ResourceKind::Secret, s.metadata.name.clone().unwrap_or_default(), current));
    }
    resources.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let rows = explain::rows(&entry, &resources, settings.auto_reload_all, key.as_ref());
    Ok(explain::render(&entry, &rows, settings.strategy, settings.auto_reload_all))
}
