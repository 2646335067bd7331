//! Per-key digests for `reload-on-keys` (see `pod_reloader_core::chosen_keys`)
//! without holding any object's data: the state keeps [`WantedKeys`], the
//! objects a workload with that annotation follows and the keys it names;
//! the resource watches read it and digest just those keys of just those
//! objects while the object is at hand ([`configmap_digests`],
//! [`secret_digests`]). An object that became wanted after its last event
//! is read once more by [`fetch`], which the state asks for.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{ListParams, ObjectMeta};
use kube::{Api, Client};
use pod_reloader_core::chosen_keys::KeyDigests;
use pod_reloader_core::hash::{configmap_hash, secret_hash};
use pod_reloader_core::{ContentHash, ResourceKey, ResourceKind};
use tokio::sync::mpsc::{UnboundedReceiver, WeakSender};

use crate::messages::Msg;

/// The keys to digest, by object. Written by the state task only; read by
/// the resource watches on every event (a read lock and one lookup).
#[derive(Default)]
pub struct WantedKeys(RwLock<HashMap<ResourceKey, Arc<BTreeSet<String>>>>);

impl WantedKeys {
    /// Sets (or with an empty set, drops) what to digest of `key`.
    pub fn set(&self, key: &ResourceKey, keys: BTreeSet<String>) {
        // Most objects are wanted by nobody, and the rest rarely change:
        // the write lock only for a change.
        let unchanged = match self.get(key) {
            None => keys.is_empty(),
            Some(k) => *k == keys,
        };
        if unchanged {
            return;
        }
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        if keys.is_empty() {
            map.remove(key);
        } else {
            map.insert(key.clone(), Arc::new(keys));
        }
    }

    pub fn get(&self, key: &ResourceKey) -> Option<Arc<BTreeSet<String>>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).get(key).cloned()
    }
}

fn key_of(kind: ResourceKind, meta: &ObjectMeta) -> ResourceKey {
    ResourceKey::new(kind, meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
}

/// The digests of the wanted keys of a ConfigMap whose hash is `hash`
/// (`None` when nobody wants any).
pub fn configmap_digests(wanted: &WantedKeys, cm: &ConfigMap, hash: ContentHash) -> Option<Box<KeyDigests>> {
    let keys = wanted.get(&key_of(ResourceKind::ConfigMap, &cm.metadata))?;
    let d = KeyDigests::of_configmap(hash, cm.data.as_ref(), cm.binary_data.as_ref(), keys.iter().map(String::as_str));
    Some(Box::new(d))
}

/// The digests of the wanted keys of a Secret whose hash is `hash`.
pub fn secret_digests(wanted: &WantedKeys, s: &Secret, hash: ContentHash) -> Option<Box<KeyDigests>> {
    let keys = wanted.get(&key_of(ResourceKind::Secret, &s.metadata))?;
    Some(Box::new(KeyDigests::of_secret(hash, s.data.as_ref(), keys.iter().map(String::as_str))))
}

/// Reads the objects the state asks for (one LIST by name each: the
/// controller may list and watch ConfigMaps/Secrets, not get them) and
/// tells the state their digests. A failed read is tried again a few times;
/// after that the object's next event asks anew. Holds the state's channel
/// weakly: the state task still ends when every watch has.
pub async fn fetch(
    client: Client,
    label_selector: Option<String>,
    wanted: Arc<WantedKeys>,
    mut requests: UnboundedReceiver<ResourceKey>,
    tx: WeakSender<Msg>,
) {
    while let Some(key) = requests.recv().await {
        let Some(keys) = wanted.get(&key) else { continue };
        let mut params = ListParams::default().fields(&format!("metadata.name={}", key.name));
        if let Some(sel) = &label_selector {
            params = params.labels(sel);
        }
        let mut delays = crate::backoff::key_digests();
        let digests = loop {
            let read = read(&client, &key, &params, &keys).await;
            match read {
                Ok(d) => break d,
                Err(e) if let Some(delay) = delays.next() => {
                    tracing::debug!(resource = %key, error = %e, "cannot read for its key digests; retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(e) => {
                    tracing::warn!(resource = %key, error = %e, "cannot read for its key digests; its next change asks again");
                    break None;
                }
            }
        };
        let Some(digests) = digests else { continue };
        let Some(tx) = tx.upgrade() else { return };
        if tx.send(Msg::KeyDigests { key, digests: Box::new(digests) }).await.is_err() {
            return;
        }
    }
}

async fn read(
    client: &Client,
    key: &ResourceKey,
    params: &ListParams,
    keys: &BTreeSet<String>,
) -> Result<Option<KeyDigests>, kube::Error> {
    let wanted = keys.iter().map(String::as_str);
    Ok(match key.kind {
        ResourceKind::ConfigMap => {
            let list = Api::<ConfigMap>::namespaced(client.clone(), &key.namespace).list(params).await?;
            list.items.first().map(|cm| {
                let hash = configmap_hash(cm.data.as_ref(), cm.binary_data.as_ref());
                KeyDigests::of_configmap(hash, cm.data.as_ref(), cm.binary_data.as_ref(), wanted)
            })
        }
        ResourceKind::Secret => {
            let list = Api::<Secret>::namespaced(client.clone(), &key.namespace).list(params).await?;
            list.items.first().map(|s| KeyDigests::of_secret(secret_hash(s.data.as_ref()), s.data.as_ref(), wanted))
        }
        // A SecretProviderClass has no keys of its own (its hash is of the driver's observed versions).
        ResourceKind::SecretProviderClass => None,
    })
}
