//! Where each watch stream stands: listed once, healthy, and during a
//! re-list the objects seen so far (those missing at its end were deleted
//! while the watch was away).

use std::collections::{HashMap, HashSet};

use crate::messages::StreamId;

#[derive(Default)]
struct StreamStatus {
    listed_once: bool,
    healthy: bool,
    /// A list started and has not ended yet.
    listing: bool,
    /// During a re-list (or a first list started again after its watch
    /// failed mid-way): the `namespace/name`s seen so far.
    relist_seen: Option<HashSet<String>>,
}

/// The streams the state waits for, by id.
pub struct Streams(HashMap<StreamId, StreamStatus>);

/// What the end of a list means.
pub enum ListEnd {
    /// The stream's first list: its objects are the initial state.
    First,
    /// The stream's first list, started again after its watch failed
    /// mid-way, with what the last attempt saw: what only an earlier attempt
    /// delivered was deleted in between.
    FirstRestarted(HashSet<String>),
    /// A re-list after a watch gap, with what it saw.
    Relist(HashSet<String>),
    /// A stream the state does not know: nothing to do.
    Unknown,
}

impl Streams {
    pub fn new(ids: impl IntoIterator<Item = StreamId>) -> Self {
        Streams(ids.into_iter().map(|s| (s, StreamStatus::default())).collect())
    }

    /// A (re)list starts: after the first one, or when an unfinished one
    /// starts over, record what it sees.
    pub fn list_started(&mut self, id: StreamId) {
        let status = self.0.entry(id).or_default();
        if status.listed_once || status.listing {
            status.relist_seen = Some(HashSet::new());
        }
        status.listing = true;
    }

    /// A list is complete: the stream is listed and healthy.
    pub fn list_done(&mut self, id: &StreamId) -> ListEnd {
        let Some(status) = self.0.get_mut(id) else {
            return ListEnd::Unknown;
        };
        let relist = status.relist_seen.take();
        let first = !status.listed_once;
        status.listed_once = true;
        status.healthy = true;
        status.listing = false;
        match (relist, first) {
            (None, _) => ListEnd::First,
            (Some(seen), true) => ListEnd::FirstRestarted(seen),
            (Some(seen), false) => ListEnd::Relist(seen),
        }
    }

    /// Marks the stream failing; returns whether it was healthy before.
    pub fn failed(&mut self, id: &StreamId) -> bool {
        match self.0.get_mut(id) {
            Some(s) => std::mem::replace(&mut s.healthy, false),
            None => false,
        }
    }

    /// An event arrived on a listed stream: it is healthy again. Returns
    /// whether that changed anything.
    pub fn event_seen(&mut self, id: &StreamId) -> bool {
        match self.0.get_mut(id) {
            Some(s) if !s.healthy && s.listed_once => {
                s.healthy = true;
                true
            }
            _ => false,
        }
    }

    /// Records `name` as seen when the stream is re-listing.
    pub fn mark_seen(&mut self, id: &StreamId, name: String) {
        if let Some(seen) = self.0.get_mut(id).and_then(|s| s.relist_seen.as_mut()) {
            seen.insert(name);
        }
    }

    pub fn listed(&self, id: &StreamId) -> bool {
        self.0.get(id).is_some_and(|s| s.listed_once)
    }

    pub fn all_listed(&self) -> bool {
        self.0.values().all(|s| s.listed_once)
    }

    /// Some stream is in the middle of a re-list.
    pub fn relisting(&self) -> bool {
        self.0.values().any(|s| s.relist_seen.is_some())
    }

    /// Ready: every stream listed and none failing.
    pub fn ready(&self) -> bool {
        self.0.values().all(|s| s.listed_once && s.healthy)
    }
}
