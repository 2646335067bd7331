//! The state's side of the baseline store (`pod_reloader_core::baseline_store`):
//! new baselines of workloads go into it instead of onto the workloads, its
//! shards arrive on their own stream, and [`State::flush_store`] (called by
//! the task at most once a second) turns the dirty shards into writes, on
//! the leader only.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use pod_reloader_core::baseline_store::{BaselineStore, TooBig, shard_index};
use pod_reloader_core::record::Record;
use pod_reloader_core::{ContentHash, ResourceKey};

use super::{Effect, Effects, State};
use crate::messages::{StreamId, Watched};
use pod_reloader_core::index::WorkloadEntry;

pub struct Store {
    namespace: Arc<str>,
    pub(super) shards: BaselineStore,
}

impl Store {
    pub fn new(namespace: Arc<str>) -> Self {
        Store { namespace, shards: BaselineStore::new() }
    }
}

impl State {
    fn store_stream(&self) -> Option<StreamId> {
        let ns = self.store.as_ref()?.namespace.clone();
        Some(StreamId { watched: Watched::BaselineStore, namespace: Some(ns) })
    }

    /// The uids of the workloads the index holds.
    fn known_uids(&self) -> HashSet<Arc<str>> {
        self.index.keys().filter_map(|k| self.index.get(k)?.uid.clone()).collect()
    }

    /// The workload's entry in the store.
    pub(super) fn stored(&self, entry: &WorkloadEntry) -> Option<&Record> {
        self.store.as_ref()?.shards.get(entry.uid.as_deref()?)
    }

    /// A shard ConfigMap, as the ConfigMap stream sees it too: not a resource
    /// anyone follows (a reload list matching its name must not roll on it).
    pub(super) fn is_shard(&self, key: &ResourceKey) -> bool {
        self.store.as_ref().is_some_and(|s| *key.namespace == *s.namespace && shard_index(&key.name).is_some())
    }

    /// Records `baseline` of workload `uid` in the store; returns what is to
    /// be written on the workload instead (everything without a store or a
    /// uid, and a record too large for a shard).
    pub(super) fn store_baselines(
        &mut self,
        uid: Option<&str>,
        baseline: Vec<(ResourceKey, ContentHash)>,
    ) -> Vec<(ResourceKey, ContentHash)> {
        let (Some(store), Some(uid)) = (self.store.as_mut(), uid) else {
            return baseline;
        };
        let key = self.settings.record_key.as_ref();
        let mut on_workload = Vec::new();
        for (res, h) in baseline {
            if let Err(TooBig) = store.shards.record_baseline(uid, res.kind, &res.name, h, key) {
                on_workload.push((res, h));
            }
        }
        if !on_workload.is_empty() {
            tracing::info!(uid, "record too large for the baseline store; kept on the workload");
        }
        on_workload
    }

    /// The workload's own record (written by a reload) now holds every
    /// resource its store entry holds: the entry is dropped (from memory now,
    /// from its shard at the shard's next write).
    pub(super) fn store_drop_covered(&mut self, entry: &WorkloadEntry) {
        let key = self.settings.record_key.as_ref();
        let Some(stored) = self.stored(entry) else { return };
        if entry.recorded.is_empty() {
            return;
        }
        let covered = stored.entries(key).all(|((kind, name), _)| entry.recorded.get(*kind, name, key).is_some());
        if covered {
            self.store_forget(entry.uid.as_deref());
        }
    }

    pub(super) fn store_forget(&mut self, uid: Option<&str>) {
        if let (Some(store), Some(uid)) = (self.store.as_mut(), uid) {
            store.shards.forget(uid);
        }
    }

    /// After the initial sync: only the entries of existing workloads stay.
    pub(super) fn store_prune(&mut self) {
        let known = self.known_uids();
        if let Some(store) = self.store.as_mut() {
            store.shards.retain(|uid| known.contains(uid));
        }
    }

    pub(super) fn shard_applied(
        &mut self,
        index: u32,
        resource_version: String,
        data: &BTreeMap<String, String>,
        fx: &mut Effects,
    ) {
        let Some(stream) = self.store_stream() else { return };
        self.streams.mark_seen(&stream, pod_reloader_core::baseline_store::shard_name(index));
        self.event_seen(&stream, fx);
        // Before the initial sync the workloads are not all known yet: keep
        // every entry (bounded by the shards' count and size), prune after.
        let known = self.streams.all_listed().then(|| self.known_uids());
        if let Some(store) = self.store.as_mut() {
            store
                .shards
                .shard_applied(index, resource_version, data, |uid| known.as_ref().is_none_or(|k| k.contains(uid)));
        }
    }

    pub(super) fn shard_deleted(&mut self, index: u32) {
        if let Some(store) = self.store.as_mut()
            && store.shards.shard_deleted(index)
        {
            tracing::info!(shard = index, "baseline store shard deleted; writing it again");
        }
    }

    /// After a re-list of the store: shards deleted during the watch gap are
    /// written again, as if their deletion had been seen.
    pub(super) fn shards_gone(&mut self, seen: &std::collections::HashSet<String>) {
        let Some(store) = self.store.as_ref() else { return };
        let gone: Vec<u32> = store
            .shards
            .seen_shards()
            .into_iter()
            .filter(|i| !seen.contains(&pod_reloader_core::baseline_store::shard_name(*i)))
            .collect();
        for index in gone {
            self.shard_deleted(index);
        }
    }

    /// The dirty shards as writes, on the leader once every stream listed
    /// (called by the task once a second, so a shard is written at most that often).
    pub fn flush_store(&mut self) -> Effects {
        let mut fx = Effects::default();
        if !self.leader || !self.streams.all_listed() {
            return fx;
        }
        let key = self.settings.record_key.as_ref();
        if let Some(store) = self.store.as_mut() {
            for w in store.shards.take_writes(key) {
                fx.push(Effect::WriteShard(w));
            }
        }
        fx
    }
}
