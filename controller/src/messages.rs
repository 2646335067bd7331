//! What the tasks tell each other: the watch tasks tell the state task what
//! changed ([`Msg`]), the state task asks the scheduler for reloads
//! ([`ReloadRequest`]), the scheduler hands the reloader one [`Batch`] per
//! workload. Messages carry hashes and parsed policies, never object data.
//! They live here, apart from the tasks, so that no task imports another.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pod_reloader_core::chosen_keys::KeyDigests;
use pod_reloader_core::facts::ResourceFacts;
use pod_reloader_core::index::{PatchBase, WorkloadEntry};
use pod_reloader_core::patch::ReloadItem;
use pod_reloader_core::policy::RolloutStrategy;
use pod_reloader_core::{ContentHash, ResourceKey, ResourceKind, WorkloadKey, WorkloadKind};

/// What one watch stream covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Watched {
    Resource(ResourceKind),
    Workload(WorkloadKind),
    Namespaces,
    /// The baseline store's shards (`baseline_store`), in the controller's own namespace.
    BaselineStore,
}

/// One watch stream: a kind, cluster-wide or in one namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StreamId {
    pub watched: Watched,
    pub namespace: Option<Arc<str>>,
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match &self.watched {
            Watched::Resource(k) => k.plural(),
            Watched::Workload(k) => k.plural(),
            Watched::Namespaces => "namespaces",
            Watched::BaselineStore => "baseline store shards",
        };
        match &self.namespace {
            Some(ns) => write!(f, "{what} in {ns}"),
            None => f.write_str(what),
        }
    }
}

/// Deployment pause state, read from each watched Deployment so that the
/// resume after `pause-period` survives a controller restart.
#[derive(Clone, Debug, Default)]
pub struct PauseState {
    pub paused: bool,
    /// The `paused-at` annotation key present on the Deployment, if any.
    pub paused_at_key: Option<&'static str>,
}

#[derive(Debug)]
pub enum Msg {
    /// The stream (re)starts a full list.
    ListStarted(StreamId),
    /// The stream's list is complete.
    ListDone(StreamId),
    /// The stream failed (apiserver away, forbidden, …); it retries with backoff.
    StreamFailed(StreamId, String),
    /// A stream that failed has been quiet long enough to count as watching
    /// again (see `watch_health::WATCH_RECOVERED_WHEN_QUIET`).
    StreamRecovered(StreamId),
    ResourceApplied {
        key: ResourceKey,
        facts: ResourceFacts,
        /// `metadata.creationTimestamp` (Unix seconds): a workload created
        /// no earlier than the resource started with it (reload-on-create).
        created: Option<i64>,
        /// The digests of the keys `reload-on-keys` workloads name, for the
        /// objects they follow (see `chosen_keys`); `None` for the others.
        digests: Option<Box<KeyDigests>>,
        seen: Instant,
    },
    /// The key digests of an object, read anew on the state's request.
    KeyDigests {
        key: ResourceKey,
        digests: Box<KeyDigests>,
    },
    ResourceDeleted {
        key: ResourceKey,
        seen: Instant,
    },
    WorkloadApplied {
        entry: Box<WorkloadEntry>,
        pause: PauseState,
    },
    WorkloadDeleted {
        key: WorkloadKey,
    },
    NamespaceApplied {
        name: String,
    },
    NamespaceDeleted {
        name: String,
    },
    /// A shard of the baseline store as written (its `data`: workload uid →
    /// record, sealed hashes only when a record key exists).
    ShardApplied {
        index: u32,
        resource_version: String,
        data: std::collections::BTreeMap<String, String>,
    },
    ShardDeleted {
        index: u32,
    },
}

/// What to do for one resource of one workload.
#[derive(Debug, Clone)]
pub enum Work {
    /// Roll the workload to the resource's new hash.
    Reload(ReloadItem),
    /// Record the hash as what the workload runs, without rolling.
    Baseline(ResourceKey, ContentHash),
}

/// One resource change to carry into one workload (state task → scheduler).
#[derive(Debug, Clone)]
pub struct ReloadRequest {
    pub workload: WorkloadKey,
    pub work: Work,
    pub pause_period: Option<Duration>,
    pub rollout_strategy: RolloutStrategy,
    /// When the change was observed (for the latency histogram).
    pub seen: Instant,
    /// The workload as the state knew it when asking (see `PatchBase`).
    pub base: Option<Arc<PatchBase>>,
}

/// The requests gathered for one workload (scheduler → reloader).
#[derive(Debug, Clone)]
pub struct Batch {
    pub workload: WorkloadKey,
    /// In arrival order; a later change to the same resource replaces the earlier.
    pub items: Vec<ReloadItem>,
    /// Hashes to record without rolling (first sight of a workload).
    pub baseline: Vec<(ResourceKey, ContentHash)>,
    pub pause_period: Option<Duration>,
    pub rollout_strategy: RolloutStrategy,
    pub first_seen: Instant,
    /// The newest version of the workload the requests knew: the reload
    /// patches it without reading the object first (409 Conflict if stale).
    pub base: Option<Arc<PatchBase>>,
}

impl Batch {
    /// A batch holding one request; it was first seen when that request was.
    pub fn new(r: ReloadRequest) -> Self {
        let mut b = Batch {
            workload: r.workload.clone(),
            items: Vec::new(),
            baseline: Vec::new(),
            pause_period: r.pause_period,
            rollout_strategy: r.rollout_strategy,
            first_seen: r.seen,
            base: None,
        };
        b.add(r);
        b
    }

    /// Adds a later request for the same workload: a reload replaces an
    /// earlier reload or baseline of the same resource, a baseline never
    /// replaces a reload; the latest policy and workload version win.
    pub fn add(&mut self, r: ReloadRequest) {
        self.base = r.base;
        match r.work {
            Work::Reload(item) => {
                self.items.retain(|i| i.resource != item.resource);
                self.baseline.retain(|(k, _)| *k != item.resource);
                self.items.push(item);
            }
            Work::Baseline(key, hash) => {
                if !self.items.iter().any(|i| i.resource == key) {
                    self.baseline.retain(|(k, _)| *k != key);
                    self.baseline.push((key, hash));
                }
            }
        }
        self.pause_period = r.pause_period;
        self.rollout_strategy = r.rollout_strategy;
    }
}
