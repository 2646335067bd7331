//! What the controller keeps of one ConfigMap/Secret: its content hash and
//! the two annotations on it that matter. One type for the watch, the state
//! task, the reload decision, the level-triggered reconciliation and
//! `explain`; the object's kind, namespace and name travel beside it (a
//! `ResourceKey`, or the kind and name within a workload's namespace).

use crate::hash::ContentHash;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceFacts {
    /// Reloader's canonical hash of the whole content.
    pub hash: ContentHash,
    /// `reloader.stakater.com/ignore: "true"` on the resource.
    pub ignored: bool,
    /// `reloader.stakater.com/match: "true"` on the resource.
    pub matched: bool,
}
