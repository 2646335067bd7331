//! `pod-reloader explain <kind>/<name> -n <namespace>`: reads the workload
//! and the ConfigMaps/Secrets of its namespace with the user's kubeconfig,
//! and prints why it follows what (the report itself is built in core).
//!
//! A keyed record is compared under the key of `--record-key-file`, else the
//! key in the module's Secret when the user may read it; without either the
//! report says it cannot compare.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, PodTemplateSpec, Secret};
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::{Api, Client};
use pod_reloader_core::annotations::{self, IGNORE, MATCH};
use pod_reloader_core::explain;
use pod_reloader_core::facts::ResourceFacts;
use pod_reloader_core::hash::{configmap_hash, secret_hash};
use pod_reloader_core::index::WorkloadEntry;
use pod_reloader_core::record::RecordKey;
use pod_reloader_core::settings::ValidSettings;
use pod_reloader_core::{ResourceKind, WorkloadKey, WorkloadKind};

use crate::events::api_version;

fn api_resource(kind: WorkloadKind) -> ApiResource {
    let api_version = api_version(kind).to_string();
    let (group, version) = api_version.split_once('/').map(|(g, v)| (g.to_string(), v.to_string())).unwrap_or_default();
    ApiResource { group, version, api_version, kind: kind.as_str().into(), plural: kind.plural().into() }
}

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
    let kind = WorkloadKind::parse(kind_text).ok_or_else(|| {
        anyhow::anyhow!("unknown kind {kind_text:?}: want deployment, statefulset, daemonset, cronjob, job or rollout")
    })?;
    let client =
        Client::try_default().await.map_err(|e| anyhow::anyhow!("cannot configure the Kubernetes client: {e}"))?;
    let ar = api_resource(kind);
    let obj = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &ar)
        .get_opt(name)
        .await?
        .ok_or_else(|| anyhow::anyhow!("{}.{} \"{name}\" not found in namespace {namespace}", ar.plural, ar.group))?;
    let template_value = match kind {
        WorkloadKind::CronJob => obj.data["spec"]["jobTemplate"]["spec"]["template"].clone(),
        _ => obj.data["spec"]["template"].clone(),
    };
    let template: Option<PodTemplateSpec> = serde_json::from_value(template_value).ok();
    let empty = BTreeMap::new();
    let entry = WorkloadEntry::from_object(
        WorkloadKey::new(kind, namespace, name),
        obj.metadata.annotations.as_ref().unwrap_or(&empty),
        template.as_ref(),
    );

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
