//! Watch tasks: one per (kind, namespace scope). Each reduces objects to
//! what the state task keeps (a hash, a policy and references) right here,
//! so full objects never outlive one event.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource, ResourceExt};
use pod_reloader_core::annotations;
use pod_reloader_core::chosen_keys::KeyDigests;
use pod_reloader_core::facts::ResourceFacts;
use pod_reloader_core::hash::{configmap_hash, secret_hash};
use pod_reloader_core::index::WorkloadEntry;
use pod_reloader_core::policy_cache::PolicyCache;
use pod_reloader_core::{ResourceKey, ResourceKind, WorkloadKey, WorkloadKind};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc::Sender;

use crate::chosen_keys::{self, WantedKeys};
use crate::messages::{Msg, PauseState, StreamId, Watched};
use crate::watch_health::noting_recovery;

/// What a watch stream makes of its events: the message for the state
/// task (`None`: nothing to tell), and the start and end of each full list.
pub(crate) trait Reduce<K> {
    fn applied(&mut self, obj: K) -> Option<Msg>;
    fn deleted(&mut self, obj: K) -> Option<Msg>;
    fn list_started(&mut self) {}
    fn list_done(&mut self) {}
}

/// A stream that keeps nothing between events: a pair of functions.
impl<K, A, D> Reduce<K> for (A, D)
where
    A: FnMut(K) -> Option<Msg>,
    D: FnMut(K) -> Option<Msg>,
{
    fn applied(&mut self, obj: K) -> Option<Msg> {
        (self.0)(obj)
    }
    fn deleted(&mut self, obj: K) -> Option<Msg> {
        (self.1)(obj)
    }
}

/// Drives one watcher, translating its events into messages until the
/// receiver is gone. Errors are reported and retried with backoff.
pub(crate) async fn pump<K, R>(api: Api<K>, config: watcher::Config, id: StreamId, tx: Sender<Msg>, mut reduce: R)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    R: Reduce<K>,
{
    let mut stream = noting_recovery(crate::list_mode::watch(api, config), tx.clone(), id.clone());
    while let Some(event) = stream.next().await {
        let msg = match event {
            Ok(Event::Init) => {
                reduce.list_started();
                Some(Msg::ListStarted(id.clone()))
            }
            Ok(Event::InitDone) => {
                reduce.list_done();
                Some(Msg::ListDone(id.clone()))
            }
            Ok(Event::InitApply(obj) | Event::Apply(obj)) => reduce.applied(obj),
            Ok(Event::Delete(obj)) => reduce.deleted(obj),
            Err(e) => Some(Msg::StreamFailed(id.clone(), e.to_string())),
        };
        if let Some(msg) = msg
            && tx.send(msg).await.is_err()
        {
            return;
        }
    }
}

fn api_for<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn resource_key(kind: ResourceKind, meta: &kube::api::ObjectMeta) -> ResourceKey {
    ResourceKey::new(kind, meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
}

/// Watches ConfigMaps or Secrets in one scope.
pub async fn resources(
    client: Client,
    kind: ResourceKind,
    namespace: Option<Arc<str>>,
    label_selector: Option<String>,
    wanted: Arc<WantedKeys>,
    tx: Sender<Msg>,
) {
    // Objects arrive one at a time (a streaming list, or small pages where
    // the apiserver refuses it: list_mode.rs) and are hashed and dropped as
    // they are decoded.
    let mut config = watcher::Config::default();
    if let Some(sel) = &label_selector {
        config = config.labels(sel);
    }
    let id = StreamId { watched: Watched::Resource(kind), namespace: namespace.clone() };
    let ns = namespace.as_deref();
    match kind {
        ResourceKind::ConfigMap => {
            pump(
                api_for::<ConfigMap>(&client, ns),
                config,
                id,
                tx,
                (
                    |cm: ConfigMap| {
                        let hash = configmap_hash(cm.data.as_ref(), cm.binary_data.as_ref());
                        let digests = chosen_keys::configmap_digests(&wanted, &cm, hash);
                        Some(applied(ResourceKind::ConfigMap, &cm.metadata, hash, digests))
                    },
                    |cm: ConfigMap| {
                        Some(Msg::ResourceDeleted {
                            key: resource_key(ResourceKind::ConfigMap, &cm.metadata),
                            seen: Instant::now(),
                        })
                    },
                ),
            )
            .await
        }
        ResourceKind::Secret => {
            pump(
                api_for::<Secret>(&client, ns),
                config,
                id,
                tx,
                (
                    |s: Secret| {
                        let hash = secret_hash(s.data.as_ref());
                        let digests = chosen_keys::secret_digests(&wanted, &s, hash);
                        Some(applied(ResourceKind::Secret, &s.metadata, hash, digests))
                    },
                    |s: Secret| {
                        Some(Msg::ResourceDeleted {
                            key: resource_key(ResourceKind::Secret, &s.metadata),
                            seen: Instant::now(),
                        })
                    },
                ),
            )
            .await
        }
        ResourceKind::SecretProviderClass => crate::watch_spc::pod_statuses(client, namespace, tx).await,
    }
}

fn applied(
    kind: ResourceKind,
    meta: &kube::api::ObjectMeta,
    hash: pod_reloader_core::ContentHash,
    digests: Option<Box<KeyDigests>>,
) -> Msg {
    Msg::ResourceApplied {
        key: resource_key(kind, meta),
        facts: ResourceFacts::of(hash, meta.annotations.as_ref(), annotations::AnnotationNames::global()),
        created: meta.creation_timestamp.as_ref().map(|t| t.0.as_second()),
        digests,
        seen: Instant::now(),
    }
}

/// The API of a workload kind, through the dynamic client: one code path
/// for every kind, custom resources included (no types compiled in).
pub fn workload_api(client: &Client, kind: WorkloadKind, namespace: Option<&str>) -> Api<DynamicObject> {
    let spec = kind.spec();
    let ar = ApiResource {
        group: spec.group.into(),
        version: spec.version.into(),
        api_version: spec.api_version(),
        kind: spec.kind.into(),
        plural: spec.plural.into(),
    };
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

/// A workload stream: reduces each object to its index entry (see
/// `WorkloadEntry::from_workload_object`), parsing its policy only when the
/// annotations the policy reads changed.
pub(crate) struct Workloads {
    kind: WorkloadKind,
    policies: PolicyCache,
}

impl Workloads {
    pub(crate) fn new(kind: WorkloadKind) -> Self {
        Workloads { kind, policies: PolicyCache::new() }
    }
}

impl Reduce<DynamicObject> for Workloads {
    fn applied(&mut self, mut obj: DynamicObject) -> Option<Msg> {
        let pause = pause_state(self.kind, &obj);
        let (entry, parsed) =
            WorkloadEntry::from_workload_object(self.kind, &obj.metadata, &mut obj.data, &mut self.policies);
        if parsed {
            let key = &entry.key;
            tracing::debug!(kind = key.kind.as_str(), namespace = %key.namespace, name = %key.name, "policy parsed");
        }
        Some(Msg::WorkloadApplied { entry: Box::new(entry), pause })
    }

    fn deleted(&mut self, obj: DynamicObject) -> Option<Msg> {
        let key = WorkloadKey::of_object(self.kind, &obj.metadata);
        self.policies.remove(&key);
        Some(Msg::WorkloadDeleted { key })
    }

    fn list_started(&mut self) {
        self.policies.relist_started();
    }

    fn list_done(&mut self) {
        self.policies.relist_done();
    }
}

/// The pause state of a kind with the `pause-period` capability (a
/// Deployment: `spec.paused` and the `paused-at` annotation); nothing for others.
fn pause_state(kind: WorkloadKind, obj: &DynamicObject) -> PauseState {
    if !kind.spec().pause_period {
        return PauseState::default();
    }
    let paused = obj.data.pointer("/spec/paused").and_then(serde_json::Value::as_bool).unwrap_or(false);
    let paused_at_key = obj.annotations().keys().find_map(|k| {
        annotations::AnnotationNames::global().key(annotations::PAUSED_AT).names().into_iter().find(|n| n == k)
    });
    PauseState { paused, paused_at_key }
}

/// Watches one workload kind in one scope.
pub async fn workloads(client: Client, kind: WorkloadKind, namespace: Option<Arc<str>>, tx: Sender<Msg>) {
    if kind.spec().workload_ref {
        return crate::workload_ref::workloads(client, kind, namespace, tx).await;
    }
    let id = StreamId { watched: Watched::Workload(kind), namespace: namespace.clone() };
    let api = workload_api(&client, kind, namespace.as_deref());
    let reduce = Workloads::new(kind);
    pump(api, watcher::Config::default(), id, tx, reduce).await
}

/// Watches Namespaces matching the namespace selector (server-side).
pub async fn namespaces(client: Client, selector: String, tx: Sender<Msg>) {
    let id = StreamId { watched: Watched::Namespaces, namespace: None };
    pump(
        Api::<Namespace>::all(client),
        watcher::Config::default().labels(&selector),
        id,
        tx,
        (
            |n: Namespace| Some(Msg::NamespaceApplied { name: n.name_any() }),
            |n: Namespace| Some(Msg::NamespaceDeleted { name: n.name_any() }),
        ),
    )
    .await
}
