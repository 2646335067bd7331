//! What the watch tasks tell the state task. Messages carry hashes and
//! parsed policies, never object data.

use std::sync::Arc;
use std::time::Instant;

use pod_reloader_core::index::WorkloadEntry;
use pod_reloader_core::{ContentHash, ResourceKey, ResourceKind, WorkloadKey, WorkloadKind};

/// What one watch stream covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Watched {
    Resource(ResourceKind),
    Workload(WorkloadKind),
    Namespaces,
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
        };
        match &self.namespace {
            Some(ns) => write!(f, "{what} in {ns}"),
            None => f.write_str(what),
        }
    }
}

/// The part of a ConfigMap/Secret the controller keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceState {
    pub hash: ContentHash,
    pub ignored: bool,
    pub matched: bool,
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
    ResourceApplied {
        key: ResourceKey,
        state: ResourceState,
        seen: Instant,
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
}
