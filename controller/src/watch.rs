//! Watch tasks: one per (kind, namespace scope). Each reduces objects to
//! what the state task keeps (a hash, a policy and references) right here,
//! so full objects never outlive one event.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PodTemplateSpec, Secret};
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource, ResourceExt};
use pod_reloader_core::annotations::{self, IGNORE, MATCH};
use pod_reloader_core::facts::ResourceFacts;
use pod_reloader_core::hash::{configmap_hash, secret_hash};
use pod_reloader_core::index::{WorkloadEntry, template_annotations};
use pod_reloader_core::policy_cache::PolicyCache;
use pod_reloader_core::{ResourceKey, ResourceKind, WorkloadKey, WorkloadKind};
use serde::de::DeserializeOwned;
use std::time::Duration;
use tokio::sync::mpsc::Sender;

use crate::messages::{Msg, PauseState, StreamId, Watched};

/// The Argo Rollouts API, used through the dynamic client (no CRD types compiled in).
pub fn rollout_resource() -> ApiResource {
    ApiResource {
        group: "argoproj.io".into(),
        version: "v1alpha1".into(),
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "Rollout".into(),
        plural: "rollouts".into(),
    }
}

/// Retry delays for a failing watch: 0.5 s doubling up to 5 s, reset by
/// the next successful event. kube's default caps at 30 s; a shorter cap
/// means reloads resume within seconds of the apiserver coming back, for a
/// handful of cheap requests per stream during an outage.
struct WatchBackoff {
    next: Duration,
}

const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff { next: BACKOFF_MIN }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let delay = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        Some(delay)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

/// What a watch stream makes of its events: the message for the state
/// task (`None`: nothing to tell), and the start and end of each full list.
trait Reduce<K> {
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
async fn pump<K, R>(api: Api<K>, config: watcher::Config, id: StreamId, tx: Sender<Msg>, mut reduce: R)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    R: Reduce<K>,
{
    let mut stream = watcher::watcher(api, config).backoff(WatchBackoff::default()).boxed();
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

fn flag(map: &BTreeMap<String, String>, key: annotations::Key) -> bool {
    annotations::get(map, key) == Some("true")
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
    tx: Sender<Msg>,
) {
    // Small pages bound the memory of the initial list: objects are hashed
    // and dropped page by page.
    let mut config = watcher::Config::default().page_size(100);
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
                        Some(applied(ResourceKind::ConfigMap, &cm.metadata, hash))
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
                        Some(applied(ResourceKind::Secret, &s.metadata, hash))
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
    }
}

fn applied(kind: ResourceKind, meta: &kube::api::ObjectMeta, hash: pod_reloader_core::ContentHash) -> Msg {
    let empty = BTreeMap::new();
    let ann = meta.annotations.as_ref().unwrap_or(&empty);
    Msg::ResourceApplied {
        key: resource_key(kind, meta),
        facts: ResourceFacts { hash, ignored: flag(ann, IGNORE), matched: flag(ann, MATCH) },
        seen: Instant::now(),
    }
}

fn workload_key(kind: WorkloadKind, meta: &kube::api::ObjectMeta) -> WorkloadKey {
    WorkloadKey::new(kind, meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
}

/// A workload stream: reduces each object to its index entry, parsing its
/// policy only when the annotations the policy reads changed.
struct Workloads<K> {
    kind: WorkloadKind,
    template_of: fn(&K) -> Option<Cow<'_, PodTemplateSpec>>,
    pause_of: fn(&K) -> PauseState,
    policies: PolicyCache,
}

impl<K: Resource> Reduce<K> for Workloads<K> {
    fn applied(&mut self, obj: K) -> Option<Msg> {
        let meta = obj.meta();
        let key = workload_key(self.kind, meta);
        let template = (self.template_of)(&obj);
        let empty = BTreeMap::new();
        let annotations = meta.annotations.as_ref().unwrap_or(&empty);
        let (policy, parsed) = self.policies.policy(&key, annotations, template_annotations(template.as_deref()));
        if parsed {
            tracing::debug!(kind = key.kind.as_str(), namespace = %key.namespace, name = %key.name, "policy parsed");
        }
        let entry = WorkloadEntry::from_object_with_policy(key, policy, annotations, template.as_deref());
        Some(Msg::WorkloadApplied { entry: Box::new(entry), pause: (self.pause_of)(&obj) })
    }

    fn deleted(&mut self, obj: K) -> Option<Msg> {
        let key = workload_key(self.kind, obj.meta());
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

/// Watches one built-in workload kind in one scope.
async fn typed_workloads<K>(
    client: Client,
    kind: WorkloadKind,
    id: StreamId,
    tx: Sender<Msg>,
    template_of: fn(&K) -> Option<Cow<'_, PodTemplateSpec>>,
    pause_of: fn(&K) -> PauseState,
) where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    let api = api_for::<K>(&client, id.namespace.as_deref());
    let reduce = Workloads { kind, template_of, pause_of, policies: PolicyCache::new() };
    pump(api, watcher::Config::default().page_size(100), id, tx, reduce).await
}

fn no_pause<K>(_: &K) -> PauseState {
    PauseState::default()
}

fn deployment_pause(d: &Deployment) -> PauseState {
    let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
    let paused_at_key =
        d.annotations().keys().find_map(|k| annotations::PAUSED_AT.names().into_iter().find(|n| n == k));
    PauseState { paused, paused_at_key }
}

/// Watches one workload kind in one scope.
pub async fn workloads(client: Client, kind: WorkloadKind, namespace: Option<Arc<str>>, tx: Sender<Msg>) {
    let id = StreamId { watched: Watched::Workload(kind), namespace: namespace.clone() };
    match kind {
        WorkloadKind::Deployment => {
            typed_workloads::<Deployment>(
                client,
                kind,
                id,
                tx,
                |o| o.spec.as_ref().map(|s| Cow::Borrowed(&s.template)),
                deployment_pause,
            )
            .await
        }
        WorkloadKind::StatefulSet => {
            typed_workloads::<StatefulSet>(
                client,
                kind,
                id,
                tx,
                |o| o.spec.as_ref().map(|s| Cow::Borrowed(&s.template)),
                no_pause,
            )
            .await
        }
        WorkloadKind::DaemonSet => {
            typed_workloads::<DaemonSet>(
                client,
                kind,
                id,
                tx,
                |o| o.spec.as_ref().map(|s| Cow::Borrowed(&s.template)),
                no_pause,
            )
            .await
        }
        WorkloadKind::CronJob => {
            typed_workloads::<CronJob>(
                client,
                kind,
                id,
                tx,
                |o| o.spec.as_ref()?.job_template.spec.as_ref().map(|j| Cow::Borrowed(&j.template)),
                no_pause,
            )
            .await
        }
        WorkloadKind::Job => {
            typed_workloads::<Job>(
                client,
                kind,
                id,
                tx,
                |o| o.spec.as_ref().map(|s| Cow::Borrowed(&s.template)),
                no_pause,
            )
            .await
        }
        WorkloadKind::Rollout => {
            let ar = rollout_resource();
            let api: Api<DynamicObject> = match namespace.as_deref() {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
                None => Api::all_with(client.clone(), &ar),
            };
            let reduce = Workloads::<DynamicObject> {
                kind,
                template_of: |o| rollout_template(o).map(Cow::Owned),
                pause_of: |_| PauseState::default(),
                policies: PolicyCache::new(),
            };
            pump(api, watcher::Config::default().page_size(100), id, tx, reduce).await
        }
    }
}

/// A Rollout's `spec.template`, typed. (Rollouts using `workloadRef` have
/// none; they are indexed without references.)
pub fn rollout_template(o: &DynamicObject) -> Option<PodTemplateSpec> {
    serde_json::from_value(o.data.get("spec")?.get("template")?.clone()).ok()
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
