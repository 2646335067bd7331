//! The state task: owns the hashes and the follow index, turns watch
//! messages into reload requests. Single-threaded by design: no locks, and
//! the order of events for one object is the order they arrive.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use pod_reloader_core::decision::{Decision, ResourceFacts, decide};
use pod_reloader_core::index::{FollowIndex, WorkloadEntry};
use pod_reloader_core::patch::ReloadItem;
use pod_reloader_core::policy::Problem;
use pod_reloader_core::reconcile::{Current, reconcile};
use pod_reloader_core::settings::ValidSettings;
use pod_reloader_core::{ContentHash, ResourceKey, ResourceKind, WorkloadKey};
use tokio::sync::mpsc::{Receiver, Sender};
use tokio::sync::watch;

use crate::health::Health;
use crate::messages::{Msg, PauseState, ReloadRequest, ResourceState, StreamId, Watched, Work};
use crate::metrics::Metrics;

/// Side effects the state task asks for besides reloads.
#[derive(Debug)]
pub enum Notice {
    /// A workload's annotations are malformed: a Warning event on it.
    InvalidAnnotations { workload: WorkloadKey, messages: Vec<String> },
    /// A Deployment paused by a reload is due to resume at `paused_at + period`.
    ScheduleResume {
        workload: WorkloadKey,
        paused_at_key: &'static str,
        period: std::time::Duration,
        paused_at: String,
    },
    /// The Deployment was deleted, or is no longer paused by a reload: its
    /// scheduled resume, if any, is dropped.
    CancelResume { workload: WorkloadKey },
}

/// What the InvalidAnnotation Warning says: first the keys at fault, then
/// each problem. The apiserver keeps a note to 1 KiB (longer ones are cut,
/// see `events`) and kube's recorder folds later Warnings of the same
/// reason on the same workload into the first one, so the one note names
/// every key before any quoted value.
fn event_messages(problems: &[Problem]) -> Vec<String> {
    let mut keys: Vec<&str> = Vec::new();
    for p in problems {
        if !keys.contains(&p.annotation.as_str()) {
            keys.push(&p.annotation);
        }
    }
    std::iter::once(format!("keys {}", keys.join(", "))).chain(problems.iter().map(ToString::to_string)).collect()
}

#[derive(Default)]
struct StreamStatus {
    listed_once: bool,
    healthy: bool,
    /// During a re-list: the keys seen so far (objects missing at the end were deleted meanwhile).
    relist_seen: Option<HashSet<String>>,
}

pub struct State {
    settings: Arc<ValidSettings>,
    resources: HashMap<ResourceKey, ResourceState>,
    index: FollowIndex,
    streams: HashMap<StreamId, StreamStatus>,
    /// Namespaces matching the namespace selector; `None` when no selector is set.
    selected_namespaces: Option<BTreeSet<String>>,
    reloads: Sender<ReloadRequest>,
    notices: Sender<Notice>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    /// Only the leader patches; a standby keeps its state warm.
    leader: bool,
}

impl State {
    pub fn new(
        settings: Arc<ValidSettings>,
        streams: Vec<StreamId>,
        reloads: Sender<ReloadRequest>,
        notices: Sender<Notice>,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let selected_namespaces = settings.namespace_selector.as_ref().map(|_| BTreeSet::new());
        State {
            settings,
            resources: HashMap::new(),
            index: FollowIndex::new(),
            streams: streams.into_iter().map(|s| (s, StreamStatus::default())).collect(),
            selected_namespaces,
            reloads,
            notices,
            health,
            metrics,
            leader: false,
        }
    }

    /// Processes watch messages; follows leadership changes, reconciling
    /// every workload when this replica becomes leader.
    pub async fn run(mut self, mut rx: Receiver<Msg>, mut leadership: watch::Receiver<bool>) {
        self.leader = *leadership.borrow_and_update();
        loop {
            tokio::select! {
                msg = rx.recv() => {
                    let Some(msg) = msg else { return };
                    self.handle(msg).await;
                }
                changed = leadership.changed() => {
                    if changed.is_err() {
                        // The lease task ended: act as a standby from now on.
                        self.leader = false;
                        continue;
                    }
                    let leader = *leadership.borrow_and_update();
                    if leader != self.leader {
                        self.leader = leader;
                        tracing::info!(leader, "leadership changed");
                        if leader && self.all_listed() {
                            self.reconcile_all().await;
                        }
                    }
                }
            }
        }
    }

    /// Compares every workload with the current hashes (after start-up, a
    /// re-list, or a leadership change).
    async fn reconcile_all(&mut self) {
        let keys: Vec<WorkloadKey> = self.index.keys().cloned().collect();
        tracing::info!(workloads = keys.len(), "reconciling every workload with the current hashes");
        for key in keys {
            self.reconcile_one(&key).await;
        }
    }

    /// Level-triggered check of one workload: rolls what changed while
    /// nobody watched, records a baseline for what it has never rolled to.
    async fn reconcile_one(&mut self, key: &WorkloadKey) {
        if !self.leader || self.namespace_filtered_out(&key.namespace) {
            return;
        }
        let Some(entry) = self.index.get(key) else {
            return;
        };
        let ns = key.namespace.clone();
        let resources = &self.resources;
        let plan = reconcile(
            entry,
            |kind, name| {
                resources.get(&ResourceKey::new(kind, ns.clone(), name)).map(|s| Current {
                    hash: s.hash,
                    ignored: s.ignored,
                    matched: s.matched,
                })
            },
            // Only for workloads with a reload list. A scan of the hash table
            // (no per-namespace name index is kept: it would cost memory for
            // every object to serve the rare list holder at start-up).
            |kind| {
                resources
                    .keys()
                    .filter(|k| k.kind == kind && *k.namespace == *ns)
                    .map(|k| k.name.clone())
                    .collect::<Vec<_>>()
            },
            self.settings.auto_reload_all,
            self.settings.record_key.as_ref(),
        );
        if plan.is_empty() {
            return;
        }
        let (pause_period, rollout_strategy) = (entry.policy.pause_period, entry.policy.rollout_strategy);
        let seen = Instant::now();
        let works = plan
            .reloads
            .into_iter()
            .map(|item| {
                tracing::info!(workload = %key, resource = %item.resource, "content differs from what the workload last rolled to");
                Work::Reload(item)
            })
            .chain(plan.baseline.into_iter().map(|(k, h)| Work::Baseline(k, h)));
        for work in works.collect::<Vec<_>>() {
            let req = ReloadRequest { workload: key.clone(), work, pause_period, rollout_strategy, seen };
            if self.reloads.send(req).await.is_err() {
                return;
            }
        }
    }

    fn namespace_filtered_out(&self, ns: &str) -> bool {
        self.namespace_ignored(ns) || self.selected_namespaces.as_ref().is_some_and(|s| !s.contains(ns))
    }

    fn all_listed(&self) -> bool {
        self.streams.values().all(|s| s.listed_once)
    }

    fn update_health(&self) {
        self.health.set_ready(self.streams.values().all(|s| s.listed_once && s.healthy));
    }

    fn stream_of_resource(&self, key: &ResourceKey) -> StreamId {
        let namespace = if self.settings.namespaces.is_empty() { None } else { Some(key.namespace.clone()) };
        StreamId { watched: Watched::Resource(key.kind), namespace }
    }

    fn stream_of_workload(&self, key: &WorkloadKey) -> StreamId {
        let namespace = if self.settings.namespaces.is_empty() { None } else { Some(key.namespace.clone()) };
        StreamId { watched: Watched::Workload(key.kind), namespace }
    }

    /// Records `name` as seen when its stream is re-listing.
    fn mark_seen(&mut self, stream: &StreamId, name: String) {
        if let Some(seen) = self.streams.get_mut(stream).and_then(|s| s.relist_seen.as_mut()) {
            seen.insert(name);
        }
    }

    fn namespace_ignored(&self, ns: &str) -> bool {
        self.settings.namespaces_to_ignore.contains(ns)
    }

    async fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::ListStarted(id) => {
                let status = self.streams.entry(id).or_default();
                if status.listed_once {
                    status.relist_seen = Some(HashSet::new());
                }
            }
            Msg::ListDone(id) => self.list_done(id).await,
            Msg::StreamFailed(id, error) => {
                // One warning when a stream turns unhealthy; the retries after it are debug.
                let was_healthy = self.streams.get(&id).is_some_and(|s| s.healthy);
                if was_healthy {
                    tracing::warn!(stream = %id, error = %error, "watch failed; retrying with backoff");
                } else {
                    tracing::debug!(stream = %id, error = %error, "watch still failing");
                }
                if let Some(s) = self.streams.get_mut(&id) {
                    s.healthy = false;
                }
                self.update_health();
            }
            Msg::ResourceApplied { key, state, seen } => {
                let stream = self.stream_of_resource(&key);
                self.mark_seen(&stream, format!("{}/{}", key.namespace, key.name));
                self.mark_healthy(&stream);
                if self.namespace_ignored(&key.namespace) {
                    return;
                }
                let old = self.resources.insert(key.clone(), state);
                if old.is_none() {
                    self.metrics.watched.with_label_values(&[key.kind.as_str()]).inc();
                }
                let listed = self.streams.get(&stream).is_some_and(|s| s.listed_once);
                if !listed || !self.all_listed() {
                    return; // initial state, not a change
                }
                match old {
                    Some(old) if old.hash == state.hash => {
                        self.metrics.skipped.with_label_values(&["no_data_change"]).inc();
                    }
                    Some(_) => self.changed(&key, Some(state.hash), state, seen).await,
                    // Reloader ignores a SecretProviderClassPodStatus appearing, even with reloadOnCreate.
                    None if self.settings.reload_on_create && key.kind != ResourceKind::SecretProviderClass => {
                        self.changed(&key, Some(state.hash), state, seen).await
                    }
                    None => {}
                }
            }
            Msg::ResourceDeleted { key, seen } => {
                if let Some(old) = self.resources.remove(&key) {
                    self.metrics.watched.with_label_values(&[key.kind.as_str()]).dec();
                    // A class's last pod going away is no delete of the class (nor a change in Reloader).
                    if self.settings.reload_on_delete
                        && self.all_listed()
                        && key.kind != ResourceKind::SecretProviderClass
                    {
                        self.changed(&key, None, old, seen).await;
                    }
                }
            }
            Msg::WorkloadApplied { entry, pause } => {
                let stream = self.stream_of_workload(&entry.key);
                self.mark_seen(&stream, format!("{}/{}", entry.key.namespace, entry.key.name));
                self.mark_healthy(&stream);
                self.workload_applied(*entry, pause).await;
            }
            Msg::WorkloadDeleted { key } => {
                self.remove_workload(&key).await;
            }
            Msg::NamespaceApplied { name } => {
                self.mark_seen(&StreamId { watched: Watched::Namespaces, namespace: None }, name.clone());
                if let Some(set) = self.selected_namespaces.as_mut() {
                    set.insert(name);
                }
            }
            Msg::NamespaceDeleted { name } => {
                if let Some(set) = self.selected_namespaces.as_mut() {
                    set.remove(&name);
                }
            }
        }
    }

    fn mark_healthy(&mut self, stream: &StreamId) {
        if let Some(s) = self.streams.get_mut(stream)
            && !s.healthy
            && s.listed_once
        {
            s.healthy = true;
            self.update_health();
        }
    }

    fn count(&self, kind: pod_reloader_core::ResourceKind) -> i64 {
        self.resources.keys().filter(|k| k.kind == kind).count() as i64
    }

    async fn list_done(&mut self, id: StreamId) {
        let Some(status) = self.streams.get_mut(&id) else {
            return;
        };
        let relist = status.relist_seen.take();
        status.listed_once = true;
        status.healthy = true;
        let first = relist.is_none();
        self.update_health();
        crate::memory::release_free_heap();
        if first {
            if self.all_listed() {
                self.reconcile_all().await;
                tracing::info!(
                    configmaps = self.count(pod_reloader_core::ResourceKind::ConfigMap),
                    secrets = self.count(pod_reloader_core::ResourceKind::Secret),
                    workloads = self.index.len(),
                    "initial sync complete; ready"
                );
            }
            return;
        }
        // A re-list after a watch gap: whatever was not listed again is gone.
        let seen = relist.unwrap_or_default();
        let in_scope = |ns: &str| id.namespace.as_deref().is_none_or(|s| s == ns);
        match id.watched {
            Watched::Resource(kind) => {
                let gone: Vec<ResourceKey> = self
                    .resources
                    .keys()
                    .filter(|k| {
                        k.kind == kind
                            && in_scope(&k.namespace)
                            && !seen.contains(&format!("{}/{}", k.namespace, k.name))
                    })
                    .cloned()
                    .collect();
                for key in gone {
                    tracing::info!(resource = %key, "deleted while the watch was down");
                    Box::pin(self.handle(Msg::ResourceDeleted { key, seen: Instant::now() })).await;
                }
            }
            Watched::Workload(kind) => {
                let gone: Vec<WorkloadKey> = self
                    .index
                    .keys()
                    .filter(|k| {
                        k.kind == kind
                            && in_scope(&k.namespace)
                            && !seen.contains(&format!("{}/{}", k.namespace, k.name))
                    })
                    .cloned()
                    .collect();
                for key in gone {
                    self.remove_workload(&key).await;
                }
            }
            Watched::Namespaces => {
                if let Some(set) = self.selected_namespaces.as_mut() {
                    set.retain(|n| seen.contains(n));
                }
            }
        }
        // Once every stream that re-listed is done, compare every workload once.
        let relisting = self.streams.values().any(|s| s.relist_seen.is_some());
        if self.all_listed() && !relisting {
            self.reconcile_all().await;
        }
    }

    async fn workload_applied(&mut self, entry: WorkloadEntry, pause: PauseState) {
        let old = self.index.get(&entry.key);
        // The policy is shared while its annotations stay the same: nothing to report again.
        let same_policy = old.is_some_and(|o| Arc::ptr_eq(&o.policy, &entry.policy));
        let old_problems = old.map(|o| o.policy.problems.as_slice()).unwrap_or_default();
        let was_paused_by_us = old.is_some_and(|o| o.policy.paused_at.is_some());
        if !same_policy && !entry.policy.problems.is_empty() && entry.policy.problems != old_problems {
            let problems: Vec<String> = entry.policy.problems.iter().map(ToString::to_string).collect();
            for p in &problems {
                tracing::warn!(workload = %entry.key, problem = %p, "malformed annotation");
            }
            self.metrics.reload_errors.with_label_values(&["invalid_annotation"]).inc();
            let messages = event_messages(&entry.policy.problems);
            let _ = self.notices.send(Notice::InvalidAnnotations { workload: entry.key.clone(), messages }).await;
        }
        if let (true, Some(key), Some(period), Some(at)) =
            (pause.paused, pause.paused_at_key, entry.policy.pause_period, entry.policy.paused_at.clone())
        {
            let _ = self
                .notices
                .send(Notice::ScheduleResume { workload: entry.key.clone(), paused_at_key: key, period, paused_at: at })
                .await;
        } else if was_paused_by_us {
            let _ = self.notices.send(Notice::CancelResume { workload: entry.key.clone() }).await;
        }
        let key = entry.key.clone();
        if self.index.upsert(entry).is_none() {
            self.metrics.watched.with_label_values(&[key.kind.as_str()]).inc();
        }
        if self.all_listed() {
            self.reconcile_one(&key).await;
        }
    }

    async fn remove_workload(&mut self, key: &WorkloadKey) {
        if let Some(old) = self.index.remove(key) {
            self.metrics.watched.with_label_values(&[key.kind.as_str()]).dec();
            if old.policy.paused_at.is_some() {
                let _ = self.notices.send(Notice::CancelResume { workload: key.clone() }).await;
            }
        }
    }

    /// A followed resource's content changed (or it was created/deleted):
    /// every workload that follows it gets a reload request.
    async fn changed(&mut self, key: &ResourceKey, hash: Option<ContentHash>, state: ResourceState, seen: Instant) {
        if !self.leader {
            return; // the leader, or the next one at its reconciliation, rolls it
        }
        if let Some(selected) = &self.selected_namespaces
            && !selected.contains(&*key.namespace)
        {
            self.metrics.skipped.with_label_values(&["namespace_not_selected"]).inc();
            return;
        }
        let facts = ResourceFacts { kind: key.kind, name: &key.name, ignored: state.ignored, matched: state.matched };
        let mut requests = Vec::new();
        for entry in self.index.candidates(key) {
            match decide(entry, &facts, self.settings.auto_reload_all) {
                Decision::Reload { container, why } => {
                    tracing::debug!(workload = %entry.key, resource = %key, reason = %why, "reload requested");
                    requests.push(ReloadRequest {
                        workload: entry.key.clone(),
                        work: Work::Reload(ReloadItem { resource: key.clone(), hash, container }),
                        pause_period: entry.policy.pause_period,
                        rollout_strategy: entry.policy.rollout_strategy,
                        seen,
                    });
                }
                Decision::Skip(skip) => {
                    tracing::debug!(workload = %entry.key, resource = %key, reason = %skip, "not reloaded");
                }
            }
        }
        for r in requests {
            if self.reloads.send(r).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_note_names_every_key_first() {
        let meta: std::collections::BTreeMap<String, String> = [
            ("reloader.stakater.com/auto", "x".repeat(10_000)),
            ("configmap.reloader.stakater.com/reload", "[bad".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let policy = pod_reloader_core::policy::WorkloadPolicy::parse(&meta, &Default::default());
        let messages = event_messages(&policy.problems);
        assert_eq!(messages[0], "keys reloader.stakater.com/auto, configmap.reloader.stakater.com/reload");
        assert_eq!(messages.len(), 1 + policy.problems.len());
        assert!(messages.iter().all(|m| m.len() < 400), "values are cut: {messages:?}");
    }
}
