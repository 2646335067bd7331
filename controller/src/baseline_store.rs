//! The baseline store's I/O (its logic: `pod_reloader_core::baseline_store`):
//! a label-selected watch of the shard ConfigMaps in the controller's own
//! namespace, feeding the state like any other stream, and the writer that
//! carries out the state's shard writes.
//!
//! The writer keeps the newest write per shard only (a later one holds all
//! of an earlier one), writes it with the resourceVersion as precondition
//! (create when the shard does not exist), and on a conflict reads the shard
//! again for its version and retries: the controller's copy wins, it holds
//! every entry of the workloads that exist. A write that keeps failing
//! (apiserver away) is retried with backoff until it lands or a newer one
//! replaces it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use pod_reloader_core::baseline_store::{STORE_LABEL, ShardWrite, shard_index};
use tokio::sync::mpsc::{Receiver, Sender};

use crate::messages::{Msg, StreamId, Watched};
use crate::reload::FIELD_MANAGER;

/// The namespace the store lives in: the leader-election Lease's (the
/// module's own), else the pod's own; `None` (the controller run outside a
/// cluster without leader election) keeps baselines on the workloads.
pub fn namespace(lease_namespace: Option<String>) -> Option<String> {
    lease_namespace.or_else(|| std::env::var("POD_NAMESPACE").ok()).filter(|s| !s.trim().is_empty())
}

/// Watches the shards; a ConfigMap with the label but not a shard's name is
/// no shard and is skipped.
pub async fn watch(client: Client, namespace: Arc<str>, tx: Sender<Msg>) {
    let id = StreamId { watched: Watched::BaselineStore, namespace: Some(namespace.clone()) };
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().labels(&format!("{STORE_LABEL}=true"));
    crate::watch::pump(
        api,
        config,
        id,
        tx,
        (
            |cm: ConfigMap| {
                let index = shard_index(&cm.name_any())?;
                Some(Msg::ShardApplied {
                    index,
                    resource_version: cm.resource_version().unwrap_or_default(),
                    data: cm.data.unwrap_or_default(),
                })
            },
            |cm: ConfigMap| Some(Msg::ShardDeleted { index: shard_index(&cm.name_any())? }),
        ),
    )
    .await
}

fn shard_object(w: &ShardWrite, namespace: &str, resource_version: Option<String>) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(w.name.clone()),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([(STORE_LABEL.to_string(), "true".to_string())])),
            resource_version,
            ..Default::default()
        },
        data: Some(w.data.clone()),
        ..Default::default()
    }
}

/// How a write ended.
enum Written {
    Done(String),
    /// Someone else wrote (or deleted) the shard: try again at this version.
    Retry(Option<String>),
}

async fn write_once(api: &Api<ConfigMap>, w: &ShardWrite, rv: Option<String>) -> Result<Written, kube::Error> {
    let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
    let ns = api.namespace().unwrap_or_default().to_string();
    let result = match &rv {
        None => api.create(&params, &shard_object(w, &ns, None)).await,
        Some(_) => api.replace(&w.name, &params, &shard_object(w, &ns, rv.clone())).await,
    };
    match result {
        Ok(cm) => Ok(Written::Done(cm.resource_version().unwrap_or_default())),
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {
            // Re-read for the current version (none: it is gone, create it).
            match api.get_opt(&w.name).await? {
                Some(cm) => Ok(Written::Retry(cm.resource_version())),
                None => Ok(Written::Retry(None)),
            }
        }
        Err(e) => Err(e),
    }
}

/// Carries out the state's shard writes until the state is gone.
pub async fn writer(client: Client, namespace: Arc<str>, mut rx: Receiver<ShardWrite>) {
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let mut pending: BTreeMap<u32, ShardWrite> = BTreeMap::new();
    // The version of each shard after our own last write (newer than the
    // one the state saw until the watch brings our write back).
    let mut versions: HashMap<u32, String> = HashMap::new();
    let mut delays = crate::backoff::reload();
    loop {
        if pending.is_empty() {
            let Some(w) = rx.recv().await else { return };
            pending.insert(w.index, w);
        }
        while let Ok(w) = rx.try_recv() {
            pending.insert(w.index, w);
        }
        let Some((&index, w)) = pending.iter().next() else { continue };
        let mut rv = versions.get(&index).cloned().or_else(|| w.resource_version.clone());
        let mut outcome = Err(None);
        for _ in 0..5 {
            match write_once(&api, w, rv.clone()).await {
                Ok(Written::Done(v)) => {
                    outcome = Ok(v);
                    break;
                }
                Ok(Written::Retry(v)) => rv = v,
                Err(e) => {
                    outcome = Err(Some(e));
                    break;
                }
            }
        }
        match outcome {
            Ok(v) => {
                tracing::info!(shard = %w.name, workloads = w.data.len(), bytes = w.bytes(), "baseline store shard written");
                versions.insert(index, v);
                pending.remove(&index);
                delays = crate::backoff::reload();
            }
            Err(e) => {
                let error = e.map_or_else(|| "conflicts on every attempt".to_string(), |e| e.to_string());
                tracing::warn!(shard = %w.name, error = %error, "cannot write the baseline store shard; retrying");
                versions.remove(&index);
                let wait = delays.next().unwrap_or(std::time::Duration::from_secs(30));
                tokio::time::sleep(wait).await;
            }
        }
    }
}
