//! The Secrets Store CSI driver's SecretProviderClassPodStatus objects,
//! watched on behalf of the SecretProviderClasses they name (only with the
//! CSI integration on).
//!
//! The driver writes one such object per pod and class it mounts, with the
//! version of every object it fetched (`status.objects[].version`); when it
//! rotates a secret it rewrites the versions. As in Reloader, a change of a
//! class is an update of one of its status objects whose hash
//! (`secret_provider_class_pod_status_hash`) differs from that object's
//! previous one; the class is `status.secretProviderClassName`. A status
//! object appearing (a new pod mounting the class) or going away changes
//! nothing (Reloader ignores both).
//!
//! Towards the state task a class looks like a ConfigMap: one hash per
//! class (the last one announced), `ResourceApplied` when it changes,
//! `ResourceDeleted` when no pod mounts it any more. Kept per status object:
//! its class and hash, never more (the versions are not secret, but hashes
//! are all that is needed). The class's `ignore` and `match` annotations
//! are read from the SecretProviderClass itself when a hash is announced,
//! as Reloader reads them when it acts.
//!
//! `--resource-label-selector` does not apply here: the driver labels these
//! objects itself, so a user's selector would hide every one of them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use pod_reloader_core::annotations;
use pod_reloader_core::hash::secret_provider_class_pod_status_hash;
use pod_reloader_core::{ContentHash, ResourceKey, ResourceKind};
use serde::Deserialize;
use tokio::sync::mpsc::Sender;

use pod_reloader_core::facts::ResourceFacts;

use crate::messages::{Msg, StreamId, Watched};
use crate::watch_health::noting_recovery;

const GROUP: &str = "secrets-store.csi.x-k8s.io";
const VERSION: &str = "v1";

fn api_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: GROUP.into(),
        version: VERSION.into(),
        api_version: format!("{GROUP}/{VERSION}"),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// `secretproviderclasspodstatuses.secrets-store.csi.x-k8s.io/v1`.
pub fn pod_status_resource() -> ApiResource {
    api_resource("SecretProviderClassPodStatus", "secretproviderclasspodstatuses")
}

/// `secretproviderclasses.secrets-store.csi.x-k8s.io/v1`.
pub fn class_resource() -> ApiResource {
    api_resource("SecretProviderClass", "secretproviderclasses")
}

/// The part of a status object's `status` the hash reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct PodStatus {
    secret_provider_class_name: String,
    objects: Vec<ObservedObject>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ObservedObject {
    id: String,
    version: String,
}

/// The class a status object is for and Reloader's hash of it; `None` when
/// the driver has not named the class yet (or the status is not its shape).
pub fn class_and_hash(obj: &DynamicObject) -> Option<(String, ContentHash)> {
    let status: PodStatus = serde_json::from_value(obj.data.get("status")?.clone()).ok()?;
    if status.secret_provider_class_name.is_empty() {
        return None;
    }
    let hash = secret_provider_class_pod_status_hash(
        &status.secret_provider_class_name,
        status.objects.iter().map(|o| (o.id.as_str(), o.version.as_str())),
    );
    Some((status.secret_provider_class_name, hash))
}

/// A status object, by namespace and name.
type StatusId = (Arc<str>, String);

/// What is known of one class: the hash last announced and how many status
/// objects name it.
#[derive(Debug)]
struct Class {
    hash: ContentHash,
    statuses: usize,
}

/// What to tell the state task about a class.
#[derive(Debug, PartialEq, Eq)]
pub enum Announce {
    Applied(ResourceKey, ContentHash),
    Deleted(ResourceKey),
}

/// Turns status-object events into class events. Pure, so that it is
/// unit-tested without an apiserver.
#[derive(Debug, Default)]
pub struct Classes {
    statuses: HashMap<StatusId, (ResourceKey, ContentHash)>,
    classes: HashMap<ResourceKey, Class>,
    /// During a (re-)list: the status objects and classes seen so far.
    listing: Option<(HashSet<StatusId>, HashSet<ResourceKey>)>,
}

impl Classes {
    pub fn list_started(&mut self) {
        self.listing = Some((HashSet::new(), HashSet::new()));
    }

    /// After a (re-)list: the status objects not listed again are gone. Their
    /// classes, if no longer named, are not announced as deleted: the state
    /// task drops what a re-list did not show by itself.
    pub fn list_done(&mut self) {
        let Some((seen, _)) = self.listing.take() else {
            return;
        };
        let gone: Vec<StatusId> = self.statuses.keys().filter(|id| !seen.contains(*id)).cloned().collect();
        for id in gone {
            self.forget(&id);
        }
    }

    /// A status object as listed or updated.
    pub fn applied(&mut self, id: StatusId, class: &str, hash: ContentHash) -> Option<Announce> {
        let key = ResourceKey::new(ResourceKind::SecretProviderClass, id.0.clone(), class);
        if let Some((seen, _)) = self.listing.as_mut() {
            seen.insert(id.clone());
        }
        let previous = self.statuses.get(&id).cloned();
        let changed = match &previous {
            // An update of the versions this pod's driver observed: a change (Reloader's Update event).
            Some((k, h)) if *k == key => (*h != hash).then_some(hash),
            // A status object new to this watch (or, never seen from the driver, renamed its class).
            _ => {
                if let Some((old_key, _)) = previous {
                    self.release(&old_key);
                }
                self.statuses.insert(id.clone(), (key.clone(), hash));
                let class = self.classes.entry(key.clone()).or_insert(Class { hash, statuses: 0 });
                class.statuses += 1;
                // Only the first status of a class gives it its hash; a pod
                // mounting a class already known changes nothing.
                (class.statuses == 1).then_some(hash)
            }
        };
        if let Some(h) = changed {
            self.statuses.insert(id, (key.clone(), h));
            if let Some(class) = self.classes.get_mut(&key) {
                class.hash = h;
            }
        }
        let listed_now = match self.listing.as_mut() {
            Some((_, classes)) => classes.insert(key.clone()),
            None => false,
        };
        match changed {
            Some(h) => Some(Announce::Applied(key, h)),
            // Within a list every class is announced once, so that the state
            // task sees it listed again (its hash, unchanged, changes nothing).
            None if listed_now => self.classes.get(&key).map(|c| Announce::Applied(key.clone(), c.hash)),
            None => None,
        }
    }

    /// A status object deleted (its pod went away).
    pub fn deleted(&mut self, id: &StatusId) -> Option<Announce> {
        self.forget(id)
    }

    fn forget(&mut self, id: &StatusId) -> Option<Announce> {
        let (key, _) = self.statuses.remove(id)?;
        self.release(&key)
    }

    /// One status object fewer names `key`; the class is forgotten with its last one.
    fn release(&mut self, key: &ResourceKey) -> Option<Announce> {
        let class = self.classes.get_mut(key)?;
        class.statuses -= 1;
        if class.statuses > 0 {
            return None;
        }
        self.classes.remove(key);
        Some(Announce::Deleted(key.clone()))
    }
}

/// Whether the driver's API is served. Checked once at start, as Reloader
/// does: without the CRDs there is nothing to watch.
pub async fn served(client: &Client) -> bool {
    match client.list_api_group_resources(&format!("{GROUP}/{VERSION}")).await {
        Ok(list) => list.resources.iter().any(|r| r.name == pod_status_resource().plural),
        Err(_) => false,
    }
}

/// The class's `ignore` and `match` annotations; a class that cannot be
/// read (deleted before its pods, or not readable) has neither.
async fn class_state(classes: &Api<DynamicObject>, key: &ResourceKey, hash: ContentHash) -> ResourceFacts {
    let annotations = match classes.get_opt(&key.name).await {
        Ok(Some(obj)) => obj.metadata.annotations,
        Ok(None) => {
            tracing::debug!(resource = %key, "SecretProviderClass not found; read as not ignored");
            None
        }
        Err(e) => {
            tracing::debug!(resource = %key, error = %e, "SecretProviderClass not readable; read as not ignored");
            None
        }
    };
    ResourceFacts::of(hash, annotations.as_ref(), annotations::AnnotationNames::global())
}

/// Watches SecretProviderClassPodStatus objects in one scope, announcing
/// their classes. Without the driver's API, reports an empty list once
/// (so readiness does not wait for it) and ends.
pub async fn pod_statuses(client: Client, namespace: Option<Arc<str>>, tx: Sender<Msg>) {
    let id = StreamId { watched: Watched::Resource(ResourceKind::SecretProviderClass), namespace: namespace.clone() };
    if !served(&client).await {
        tracing::warn!(
            "CSI integration is on, but {GROUP}/{VERSION} SecretProviderClassPodStatus is not served: \
             SecretProviderClasses are not followed (restart once the Secrets Store CSI driver is installed)"
        );
        let _ = tx.send(Msg::ListStarted(id.clone())).await;
        let _ = tx.send(Msg::ListDone(id)).await;
        return;
    }
    let (statuses, classes): (Api<DynamicObject>, Api<DynamicObject>) = match namespace.as_deref() {
        Some(ns) => (
            Api::namespaced_with(client.clone(), ns, &pod_status_resource()),
            Api::namespaced_with(client.clone(), ns, &class_resource()),
        ),
        None => (Api::all_with(client.clone(), &pod_status_resource()), Api::all_with(client, &class_resource())),
    };
    let mut known = Classes::default();
    let mut stream =
        noting_recovery(crate::list_mode::watch(statuses, watcher::Config::default()), tx.clone(), id.clone());
    while let Some(event) = stream.next().await {
        let status_id = |o: &DynamicObject| -> StatusId {
            (
                Arc::from(o.metadata.namespace.as_deref().unwrap_or_default()),
                o.metadata.name.clone().unwrap_or_default(),
            )
        };
        let announce = match event {
            Ok(Event::Init) => {
                known.list_started();
                if tx.send(Msg::ListStarted(id.clone())).await.is_err() {
                    return;
                }
                None
            }
            Ok(Event::InitDone) => {
                known.list_done();
                if tx.send(Msg::ListDone(id.clone())).await.is_err() {
                    return;
                }
                None
            }
            Ok(Event::InitApply(obj) | Event::Apply(obj)) => match class_and_hash(&obj) {
                Some((class, hash)) => known.applied(status_id(&obj), &class, hash),
                None => None,
            },
            Ok(Event::Delete(obj)) => known.deleted(&status_id(&obj)),
            Err(e) => {
                if tx.send(Msg::StreamFailed(id.clone(), e.to_string())).await.is_err() {
                    return;
                }
                None
            }
        };
        // Each namespace's classes are read in that namespace.
        let msg = match announce {
            Some(Announce::Applied(key, hash)) => {
                let api = match namespace {
                    Some(_) => classes.clone(),
                    None => Api::namespaced_with(classes.clone().into_client(), &key.namespace, &class_resource()),
                };
                let facts = class_state(&api, &key, hash).await;
                // A class's observed versions are one digest: `reload-on-keys` does not apply to it.
                Some(Msg::ResourceApplied { key, facts, created: None, digests: None, seen: Instant::now() })
            }
            Some(Announce::Deleted(key)) => Some(Msg::ResourceDeleted { key, seen: Instant::now() }),
            None => None,
        };
        if let Some(msg) = msg
            && tx.send(msg).await.is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(name: &str) -> StatusId {
        (Arc::from("ns"), name.to_string())
    }

    fn h(v: &str) -> ContentHash {
        secret_provider_class_pod_status_hash("db", [("password", v)])
    }

    fn db() -> ResourceKey {
        ResourceKey::new(ResourceKind::SecretProviderClass, "ns", "db")
    }

    #[test]
    fn reads_class_and_versions_from_the_status() {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClassPodStatus",
            "metadata": {"name": "web-abc-ns-db", "namespace": "ns"},
            "status": {"podName": "web-abc", "secretProviderClassName": "db", "mounted": true,
                "targetPath": "/var/lib/kubelet/pods/x/volumes/kubernetes.io~csi/v/mount",
                "objects": [{"id": "password", "version": "3"}]}
        }))
        .unwrap();
        assert_eq!(class_and_hash(&obj), Some(("db".to_string(), h("3"))));
        let unnamed: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClassPodStatus",
            "metadata": {"name": "x", "namespace": "ns"}, "status": {"podName": "p"}
        }))
        .unwrap();
        assert_eq!(class_and_hash(&unnamed), None);
    }

    #[test]
    fn a_version_update_is_a_change_new_and_gone_pods_are_not() {
        let mut c = Classes::default();
        c.list_started();
        assert_eq!(c.applied(id("a"), "db", h("1")), Some(Announce::Applied(db(), h("1"))));
        assert_eq!(c.applied(id("b"), "db", h("1")), None, "the class is announced once per list");
        c.list_done();

        // The driver rotates pod a's copy: a change; pod b catching up is no new one.
        assert_eq!(c.applied(id("a"), "db", h("2")), Some(Announce::Applied(db(), h("2"))));
        assert_eq!(c.applied(id("b"), "db", h("2")), Some(Announce::Applied(db(), h("2"))));
        assert_eq!(c.applied(id("b"), "db", h("2")), None, "metadata-only update");
        // A new pod (the rollout) mounts the class: nothing, whatever it observed.
        assert_eq!(c.applied(id("c"), "db", h("2")), None);
        // Pods go away: the class goes with the last one.
        assert_eq!(c.deleted(&id("a")), None);
        assert_eq!(c.deleted(&id("b")), None);
        assert_eq!(c.deleted(&id("c")), Some(Announce::Deleted(db())));
        // A class seen again later starts from its new first status.
        assert_eq!(c.applied(id("d"), "db", h("3")), Some(Announce::Applied(db(), h("3"))));
    }

    #[test]
    fn a_relist_announces_every_class_once_and_forgets_what_is_gone() {
        let mut c = Classes::default();
        c.list_started();
        c.applied(id("a"), "db", h("1"));
        c.applied(id("b"), "other", h("1"));
        c.list_done();
        // While the watch was down: a's versions changed, b's pod went away.
        c.list_started();
        assert_eq!(c.applied(id("a"), "db", h("2")), Some(Announce::Applied(db(), h("2"))));
        c.list_done();
        assert_eq!(c.statuses.len(), 1);
        assert!(!c.classes.contains_key(&ResourceKey::new(ResourceKind::SecretProviderClass, "ns", "other")));
        // Unchanged on the next re-list: announced with the hash it has.
        c.list_started();
        assert_eq!(c.applied(id("a"), "db", h("2")), Some(Announce::Applied(db(), h("2"))));
        c.list_done();
    }
}
