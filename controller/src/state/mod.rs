//! The state: owns the hashes and the follow index, turns watch messages
//! into reload requests. Plain synchronous code: [`State::handle`] takes a
//! message and returns the [`Effects`] to carry out (reloads, notices,
//! readiness), which the task in `task` does. Single-threaded by design: no
//! locks, and the order of events for one object is the order they arrive.

mod chosen;
mod effects;
mod store;
mod streams;
mod task;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use pod_reloader_core::chosen_keys::{KeyDigests, is_current};
use pod_reloader_core::decision::{Decision, decide};
use pod_reloader_core::facts::ResourceFacts;
use pod_reloader_core::index::{FollowIndex, WorkloadEntry};
use pod_reloader_core::patch::ReloadItem;
use pod_reloader_core::policy::Problem;
use pod_reloader_core::reconcile::reconcile_stored;
use pod_reloader_core::settings::ValidSettings;
use pod_reloader_core::{ContentHash, ResourceKey, ResourceKind, WorkloadKey};

use chosen::Chosen;
pub use effects::{Effect, Effects, Notice};
use streams::{ListEnd, Streams};
pub use task::{Outputs, run};

use crate::chosen_keys::WantedKeys;
use crate::messages::{Msg, PauseState, ReloadRequest, StreamId, Watched, Work};
use crate::metrics::Metrics;

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

pub struct State {
    settings: Arc<ValidSettings>,
    resources: HashMap<ResourceKey, ResourceFacts>,
    index: FollowIndex,
    streams: Streams,
    /// Namespaces matching the namespace selector; `None` when no selector is set.
    selected_namespaces: Option<BTreeSet<String>>,
    /// Counters and gauges are updated in place: they are in-memory only.
    metrics: Arc<Metrics>,
    /// Only the leader patches; a standby keeps its state warm.
    leader: bool,
    /// Key digests for `reload-on-keys` workloads.
    chosen: Chosen,
    /// Where new baselines go (`store`); `None`: on the workloads.
    store: Option<store::Store>,
}

impl State {
    pub fn new(
        settings: Arc<ValidSettings>,
        streams: Vec<StreamId>,
        metrics: Arc<Metrics>,
        wanted: Arc<WantedKeys>,
    ) -> Self {
        let selected_namespaces = settings.namespace_selector.as_ref().map(|_| BTreeSet::new());
        State {
            settings,
            resources: HashMap::new(),
            index: FollowIndex::new(),
            streams: Streams::new(streams),
            selected_namespaces,
            metrics,
            leader: false,
            chosen: Chosen::new(wanted),
            store: None,
        }
    }

    /// Keeps new baselines in the baseline store in `namespace` (its
    /// stream must be among the streams) instead of on the workloads.
    pub fn with_baseline_store(mut self, namespace: Arc<str>) -> Self {
        self.store = Some(store::Store::new(namespace));
        self
    }

    /// Follows a leadership change: a replica becoming leader reconciles
    /// every workload (once every stream has listed).
    pub fn set_leader(&mut self, leader: bool) -> Effects {
        let mut fx = Effects::default();
        if leader != self.leader {
            self.leader = leader;
            tracing::info!(leader, "leadership changed");
            if leader && self.streams.all_listed() {
                self.reconcile_all(&mut fx);
            }
        }
        fx
    }

    /// Takes one watch message; returns what to carry out.
    pub fn handle(&mut self, msg: Msg) -> Effects {
        let mut fx = Effects::default();
        self.apply(msg, &mut fx);
        fx
    }

    fn apply(&mut self, msg: Msg, fx: &mut Effects) {
        match msg {
            Msg::ListStarted(id) => self.streams.list_started(id),
            Msg::ListDone(id) => self.list_done(id, fx),
            Msg::StreamFailed(id, error) => {
                // One warning when a stream turns unhealthy; the retries after it are debug.
                if self.streams.failed(&id) {
                    tracing::warn!(stream = %id, error = %error, "watch failed; retrying with backoff");
                } else {
                    tracing::debug!(stream = %id, error = %error, "watch still failing");
                }
                fx.push(Effect::Ready(self.streams.ready()));
            }
            Msg::StreamRecovered(id) => {
                tracing::info!(stream = %id, "watch resumed");
                self.event_seen(&id, fx);
            }
            Msg::ResourceApplied { key, facts, created, digests, seen } => {
                self.resource_applied(key, facts, created, digests, seen, fx)
            }
            Msg::KeyDigests { key, digests } => self.key_digests(&key, *digests, fx),
            Msg::ResourceDeleted { key, seen } => self.resource_deleted(&key, seen, fx),
            Msg::WorkloadApplied { entry, pause } => {
                let stream = self.stream_of(Watched::Workload(entry.key.kind), &entry.key.namespace);
                self.streams.mark_seen(&stream, format!("{}/{}", entry.key.namespace, entry.key.name));
                self.event_seen(&stream, fx);
                self.workload_applied(*entry, pause, fx);
            }
            Msg::WorkloadDeleted { key } => self.remove_workload(&key, fx),
            Msg::NamespaceApplied { name } => {
                self.streams.mark_seen(&StreamId { watched: Watched::Namespaces, namespace: None }, name.clone());
                if let Some(set) = self.selected_namespaces.as_mut() {
                    set.insert(name);
                }
            }
            Msg::NamespaceDeleted { name } => {
                if let Some(set) = self.selected_namespaces.as_mut() {
                    set.remove(&name);
                }
            }
            Msg::ShardApplied { index, resource_version, data } => {
                self.shard_applied(index, resource_version, &data, fx)
            }
            Msg::ShardDeleted { index } => self.shard_deleted(index),
        }
    }

    /// Compares every workload with the current hashes (after start-up, a
    /// re-list, or a leadership change).
    fn reconcile_all(&mut self, fx: &mut Effects) {
        let mut keys: Vec<WorkloadKey> = self.index.keys().cloned().collect();
        // In a stable order, so the requests (and tests) do not depend on hashing.
        keys.sort();
        tracing::info!(workloads = keys.len(), "reconciling every workload with the current hashes");
        for key in &keys {
            self.reconcile_one(key, fx);
        }
    }

    /// Level-triggered check of one workload: rolls what changed while
    /// nobody watched, records a baseline for what it has never rolled to.
    fn reconcile_one(&mut self, key: &WorkloadKey, fx: &mut Effects) {
        if !self.leader || self.namespace_filtered_out(&key.namespace) {
            return;
        }
        let Some(entry) = self.index.get(key) else {
            return;
        };
        let ns = &key.namespace;
        let resources = &self.resources;
        let plan = reconcile_stored(
            entry,
            self.stored(entry),
            |kind, name| resources.get(&ResourceKey::new(kind, ns.clone(), name)).copied(),
            |kind, name, chosen| self.chosen.digest(&ResourceKey::new(kind, ns.clone(), name), chosen),
            // Only for workloads with a reload list. A scan of the hash table
            // (no per-namespace name index is kept: it would cost memory for
            // every object to serve the rare list holder at start-up).
            |kind| {
                resources
                    .keys()
                    .filter(|k| k.kind == kind && k.namespace == *ns)
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
        let base = entry.patch_base.clone();
        let uid = entry.uid.clone();
        let baseline = self.store_baselines(uid.as_deref(), plan.baseline);
        let works = plan
            .reloads
            .into_iter()
            .map(|item| {
                tracing::info!(workload = %key, resource = %item.resource, "content differs from what the workload last rolled to");
                Work::Reload(item)
            })
            .chain(baseline.into_iter().map(|(k, h)| Work::Baseline(k, h)));
        for work in works {
            fx.reload(ReloadRequest {
                workload: key.clone(),
                work,
                pause_period,
                rollout_strategy,
                seen,
                base: base.clone(),
            });
        }
    }

    fn namespace_filtered_out(&self, ns: &str) -> bool {
        self.namespace_ignored(ns) || self.selected_namespaces.as_ref().is_some_and(|s| !s.contains(ns))
    }

    fn namespace_ignored(&self, ns: &str) -> bool {
        self.settings.namespaces_to_ignore.contains(ns)
    }

    /// The stream an object of `watched` in `namespace` arrives on.
    fn stream_of(&self, watched: Watched, namespace: &Arc<str>) -> StreamId {
        let namespace = if self.settings.namespaces.is_empty() { None } else { Some(namespace.clone()) };
        StreamId { watched, namespace }
    }

    /// An event arrived on `stream`: a stream that failed is healthy again.
    fn event_seen(&mut self, stream: &StreamId, fx: &mut Effects) {
        if self.streams.event_seen(stream) {
            fx.push(Effect::Ready(self.streams.ready()));
        }
    }

    fn resource_applied(
        &mut self,
        key: ResourceKey,
        facts: ResourceFacts,
        created: Option<i64>,
        digests: Option<Box<KeyDigests>>,
        seen: Instant,
        fx: &mut Effects,
    ) {
        let stream = self.stream_of(Watched::Resource(key.kind), &key.namespace);
        self.streams.mark_seen(&stream, format!("{}/{}", key.namespace, key.name));
        self.event_seen(&stream, fx);
        if self.namespace_ignored(&key.namespace) || self.is_shard(&key) {
            return;
        }
        let old = self.resources.insert(key.clone(), facts);
        self.metrics.event_received(if old.is_some() { "update" } else { "add" }, key.kind);
        let old_digests = self.chosen.applied(&key, digests, fx);
        if old.is_none() {
            self.metrics.watched(key.kind.as_str(), true);
            // A reload list of a `reload-on-keys` workload may name it.
            self.refresh_wanted(&key, fx);
        }
        if !self.streams.listed(&stream) || !self.streams.all_listed() {
            return; // initial state, not a change
        }
        match old {
            Some(old) if old.hash == facts.hash => {
                self.metrics.skipped("no_data_change");
            }
            Some(_) => self.changed(&key, Some(facts.hash), &facts, old_digests.as_ref(), None, seen, fx),
            // Reloader ignores a SecretProviderClassPodStatus appearing, even with reloadOnCreate.
            None if self.settings.reload_on_create && key.kind != ResourceKind::SecretProviderClass => {
                self.changed(&key, Some(facts.hash), &facts, old_digests.as_ref(), created, seen, fx)
            }
            None => {}
        }
    }

    /// Drops what is held of `key`, without deciding anything.
    fn forget_resource(&mut self, key: &ResourceKey) -> Option<ResourceFacts> {
        let old = self.resources.remove(key)?;
        self.chosen.deleted(key);
        self.metrics.watched(key.kind.as_str(), false);
        Some(old)
    }

    fn resource_deleted(&mut self, key: &ResourceKey, seen: Instant, fx: &mut Effects) {
        if let Some(old) = self.forget_resource(key) {
            self.metrics.event_received("delete", key.kind);
            // A class's last pod going away is no delete of the class (nor a change in Reloader).
            if self.settings.reload_on_delete
                && self.streams.all_listed()
                && key.kind != ResourceKind::SecretProviderClass
            {
                self.changed(key, None, &old, None, None, seen, fx);
            }
        }
    }

    fn count(&self, kind: pod_reloader_core::ResourceKind) -> usize {
        self.resources.keys().filter(|k| k.kind == kind).count()
    }

    fn list_done(&mut self, id: StreamId, fx: &mut Effects) {
        let end = self.streams.list_done(&id);
        if matches!(end, ListEnd::Unknown) {
            return;
        }
        fx.push(Effect::Ready(self.streams.ready()));
        fx.push(Effect::ReleaseFreeHeap);
        match end {
            ListEnd::Relist(seen) => {
                // A re-list after a watch gap: whatever was not listed again is gone.
                self.drop_unlisted(&id, &seen, true, fx);
                // Once every stream that re-listed is done, compare every workload once.
                if self.streams.all_listed() && !self.streams.relisting() {
                    self.reconcile_all(fx);
                }
            }
            ListEnd::FirstRestarted(seen) => {
                // The first list failed mid-way and started over: what only the
                // earlier attempt delivered was deleted in between. Never part
                // of a complete initial state, it goes without a word (the
                // reconcile at the end of the initial sync compares the rest).
                self.drop_unlisted(&id, &seen, false, fx);
                self.first_list_done(fx);
            }
            ListEnd::First => self.first_list_done(fx),
            ListEnd::Unknown => {}
        }
    }

    fn first_list_done(&mut self, fx: &mut Effects) {
        if self.streams.all_listed() {
            self.store_prune();
            self.reconcile_all(fx);
            tracing::info!(
                configmaps = self.count(pod_reloader_core::ResourceKind::ConfigMap),
                secrets = self.count(pod_reloader_core::ResourceKind::Secret),
                workloads = self.index.len(),
                "initial sync complete; ready"
            );
        }
    }

    /// Removes what stream `id` holds but did not list this time; `announce`:
    /// as deletions (a re-list), or quietly (a first list that started over).
    fn drop_unlisted(&mut self, id: &StreamId, seen: &HashSet<String>, announce: bool, fx: &mut Effects) {
        let in_scope = |ns: &str| id.namespace.as_deref().is_none_or(|s| s == ns);
        let missing =
            |namespace: &str, name: &str| in_scope(namespace) && !seen.contains(&format!("{namespace}/{name}"));
        match id.watched {
            Watched::Resource(kind) => {
                let mut gone: Vec<ResourceKey> = self
                    .resources
                    .keys()
                    .filter(|k| k.kind == kind && missing(&k.namespace, &k.name))
                    .cloned()
                    .collect();
                gone.sort();
                for key in gone {
                    if announce {
                        tracing::info!(resource = %key, "deleted while the watch was down");
                        self.resource_deleted(&key, Instant::now(), fx);
                    } else {
                        tracing::debug!(resource = %key, "deleted while the initial list started over");
                        self.forget_resource(&key);
                    }
                }
            }
            Watched::Workload(kind) => {
                let gone: Vec<WorkloadKey> =
                    self.index.keys().filter(|k| k.kind == kind && missing(&k.namespace, &k.name)).cloned().collect();
                for key in gone {
                    self.remove_workload(&key, fx);
                }
            }
            Watched::Namespaces => {
                if let Some(set) = self.selected_namespaces.as_mut() {
                    set.retain(|n| seen.contains(n));
                }
            }
            Watched::BaselineStore => self.shards_gone(seen),
        }
    }

    fn workload_applied(&mut self, entry: WorkloadEntry, pause: PauseState, fx: &mut Effects) {
        let old = self.index.get(&entry.key);
        // Status updates leave policy and references alone: nothing to recompute.
        let same_follows = old
            .is_some_and(|o| Arc::ptr_eq(&o.policy, &entry.policy) && o.references.keys().eq(entry.references.keys()));
        let mut keyed = match old {
            Some(o) if !same_follows => self.keyed_objects(o),
            _ => Vec::new(),
        };
        // The policy is shared while its annotations stay the same: nothing to report again.
        let same_policy = old.is_some_and(|o| Arc::ptr_eq(&o.policy, &entry.policy));
        let old_problems = old.map(|o| o.policy.problems.as_slice()).unwrap_or_default();
        let was_paused_by_us = old.is_some_and(|o| o.policy.paused_at.is_some());
        if !same_policy && !entry.policy.problems.is_empty() && entry.policy.problems != old_problems {
            for p in &entry.policy.problems {
                tracing::warn!(workload = %entry.key, problem = %p, "malformed annotation");
            }
            self.metrics.error("invalid_annotation");
            let messages = event_messages(&entry.policy.problems);
            fx.notice(Notice::InvalidAnnotations { workload: entry.key.clone(), messages });
        }
        if let (true, Some(key), Some(period), Some(at)) =
            (pause.paused, pause.paused_at_key, entry.policy.pause_period, entry.policy.paused_at.clone())
        {
            fx.notice(Notice::ScheduleResume {
                workload: entry.key.clone(),
                paused_at_key: key,
                period,
                paused_at: at,
            });
        } else if was_paused_by_us {
            fx.notice(Notice::CancelResume { workload: entry.key.clone() });
        }
        let key = entry.key.clone();
        if !same_follows {
            keyed.extend(self.keyed_objects(&entry));
        }
        self.store_drop_covered(&entry);
        if self.index.upsert(entry).is_none() {
            self.metrics.watched(key.kind.as_str(), true);
        }
        for object in keyed {
            self.refresh_wanted(&object, fx);
        }
        if self.streams.all_listed() {
            self.reconcile_one(&key, fx);
        }
    }

    fn remove_workload(&mut self, key: &WorkloadKey, fx: &mut Effects) {
        if let Some(old) = self.index.remove(key) {
            self.metrics.watched(key.kind.as_str(), false);
            self.store_forget(old.uid.as_deref());
            if old.policy.paused_at.is_some() {
                fx.notice(Notice::CancelResume { workload: key.clone() });
            }
            for object in self.keyed_objects(&old) {
                self.refresh_wanted(&object, fx);
            }
        }
    }

    /// A followed resource's content changed (or it was created/deleted):
    /// every workload that follows it gets a reload request. `facts` are its
    /// new facts, or its last ones when it was deleted (`hash` is `None`).
    /// `created`: the resource was just created at that time (Unix seconds;
    /// reload-on-create). A workload created later started with it and rolls
    /// nothing: the ConfigMap and the Deployment of one `kubectl apply` must
    /// not roll the Deployment once on top, which happened when the
    /// Deployment's watch event was handled before the ConfigMap's (the
    /// streams have no order between them). Within the same second the order
    /// is unknown, and the workload rolls: one that came first may have
    /// started without the resource (an `optional` reference), and a
    /// needless rollout is the lesser harm.
    #[allow(clippy::too_many_arguments)]
    fn changed(
        &self,
        key: &ResourceKey,
        hash: Option<ContentHash>,
        facts: &ResourceFacts,
        old_digests: Option<&KeyDigests>,
        created: Option<i64>,
        seen: Instant,
        fx: &mut Effects,
    ) {
        if !self.leader {
            return; // the leader, or the next one at its reconciliation, rolls it
        }
        if let Some(selected) = &self.selected_namespaces
            && !selected.contains(&*key.namespace)
        {
            self.metrics.skipped("namespace_not_selected");
            return;
        }
        let _timer = self.metrics.reconcile();
        for entry in self.index.candidates(key) {
            if let (Some(resource), Some(workload)) = (created, entry.created)
                && workload > resource
            {
                self.metrics.skipped("workload_newer_than_resource");
                tracing::debug!(workload = %entry.key, resource = %key, "created no earlier than the resource: started with it");
                continue;
            }
            let decision = decide(entry, key.kind, &key.name, Some(facts), self.settings.auto_reload_all);
            self.metrics.workload_scanned(entry.key.kind, matches!(decision, Decision::Reload { .. }));
            match decision {
                Decision::Reload { container, why } => {
                    let Some(hash) = self.followed_change(entry, key, hash, old_digests) else {
                        continue;
                    };
                    tracing::debug!(workload = %entry.key, resource = %key, reason = %why, "reload requested");
                    fx.reload(ReloadRequest {
                        workload: entry.key.clone(),
                        work: Work::Reload(ReloadItem { resource: key.clone(), hash, container }),
                        pause_period: entry.policy.pause_period,
                        rollout_strategy: entry.policy.rollout_strategy,
                        seen,
                        base: entry.patch_base.clone(),
                    });
                }
                Decision::Skip(skip) => {
                    tracing::debug!(workload = %entry.key, resource = %key, reason = %skip, "not reloaded");
                }
            }
        }
    }

    /// What a change of `key` (new whole hash `hash`, `None`: deleted) means
    /// for `entry`: `None` when it rolls nothing, else the hash to roll to.
    /// Without `reload-on-keys` that is the change itself; with it, the
    /// digest of the chosen keys, if it moved (from the digests before, or
    /// when those are not known, from what the workload rolled to).
    #[allow(clippy::option_option)]
    fn followed_change(
        &self,
        entry: &WorkloadEntry,
        key: &ResourceKey,
        hash: Option<ContentHash>,
        old_digests: Option<&KeyDigests>,
    ) -> Option<Option<ContentHash>> {
        let (Some(chosen), Some(whole)) = (&entry.policy.chosen_keys, hash) else {
            return Some(hash);
        };
        let Some(now) = self.chosen.digest(key, chosen) else {
            // Read anew on the way (see `chosen`); its answer reconciles the workload.
            tracing::debug!(workload = %entry.key, resource = %key, "key digests not known yet");
            return None;
        };
        let record_key = self.settings.record_key.as_ref();
        let unchanged = match old_digests.and_then(|d| d.digest(chosen)) {
            Some(before) => before == now,
            None => entry
                .rolled_to_stored(key.kind, &key.name, record_key, self.stored(entry))
                .is_some_and(|(rolled, _)| is_current(|h| rolled.is(h, record_key), now, whole)),
        };
        if unchanged {
            tracing::debug!(workload = %entry.key, resource = %key, "none of its reload-on-keys changed");
            self.metrics.skipped("chosen_keys_unchanged");
            return None;
        }
        Some(Some(now))
    }

    /// The fetch task read `key` anew: with its digests known, compare the
    /// `reload-on-keys` workloads that follow it.
    fn key_digests(&mut self, key: &ResourceKey, digests: KeyDigests, fx: &mut Effects) {
        let current = self.resources.get(key).map(|f| f.hash);
        if !self.chosen.fetched(key, digests, current) || !self.streams.all_listed() {
            return;
        }
        let keyed: Vec<WorkloadKey> = self
            .index
            .candidates(key)
            .into_iter()
            .filter(|e| e.policy.chosen_keys.is_some())
            .map(|e| e.key.clone())
            .collect();
        for w in keyed {
            self.reconcile_one(&w, fx);
        }
    }

    /// The objects `entry` follows when it has `reload-on-keys` (none else):
    /// its references and what its reload lists name in its namespace.
    fn keyed_objects(&self, entry: &WorkloadEntry) -> Vec<ResourceKey> {
        if entry.policy.chosen_keys.is_none() {
            return Vec::new();
        }
        let ns = &entry.key.namespace;
        let mut out: Vec<ResourceKey> =
            entry.references.keys().map(|(kind, name)| ResourceKey::new(*kind, ns.clone(), name.as_str())).collect();
        let lists = [&entry.policy.configmap, &entry.policy.secret].iter().any(|p| !p.reload_list.is_empty());
        if lists {
            out.extend(
                self.resources
                    .keys()
                    .filter(|k| k.namespace == *ns && entry.policy.for_kind(k.kind).listed(&k.name).is_some())
                    .cloned(),
            );
        }
        out
    }

    /// Recomputes which keys of `object` to digest: those named by every
    /// `reload-on-keys` workload following it.
    fn refresh_wanted(&mut self, object: &ResourceKey, fx: &mut Effects) {
        let mut keys = BTreeSet::new();
        for e in self.index.candidates(object) {
            let Some(chosen) = &e.policy.chosen_keys else { continue };
            let follows = e.references.contains_key(&(object.kind, object.name.to_string()))
                || e.policy.for_kind(object.kind).listed(&object.name).is_some();
            if follows {
                keys.extend(chosen.iter().map(String::from));
            }
        }
        let exists = self.resources.contains_key(object);
        self.chosen.want(object, keys, exists, fx);
    }

    /// The keys the watch digests of `object` (tests).
    #[cfg(test)]
    fn chosen_wanted(&self, object: &ResourceKey) -> Option<Vec<String>> {
        self.chosen.wanted(object)
    }
}
