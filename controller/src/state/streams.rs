//! Where each watch stream stands: listed once, healthy, and during a
//! re-list the objects seen so far (those missing at its end were deleted
//! while the watch was away).

use std::collections::{HashMap, HashSet};

use crate::messages::StreamId;

#[derive(Default)]
struct StreamStatus {
    listed_once: bool,
    healthy: bool,
    /// During a re-list: the `namespace/name`s seen so far.
    relist_seen: Option<HashSet<String>>,
}

/// The streams the state waits for, by id.
pub struct Streams(HashMap<StreamId, StreamStatus>);

/// What the end of a list means.
pub enum ListEnd {
    /// The stream's first list: its objects are the initial state.
    First,
    /// A re-list after a watch gap, with what it saw.
    Relist(HashSet<String>),
    /// A stream the state does not know: nothing to do.
    Unknown,
}

impl Streams {
    pub fn new(ids: impl IntoIterator<Item = StreamId>) -> Self {
        Streams(ids.into_iter().map(|s| (s, StreamStatus::default())).collect())
    }

    /// A (re)list starts: after the first one, record what it sees.
    pub fn list_started(&mut self, id: StreamId) {
        let status = self.0.entry(id).or_default();
        if status.listed_once {
            status.relist_seen = Some(HashSet::new());
        }
    }

    /// A list is complete: the stream is listed and healthy.
    pub fn list_done(&mut self, id: &StreamId) -> ListEnd {
        let Some(status) = self.0.get_mut(id) else {
            return ListEnd::Unknown;
        };
        let relist = status.relist_seen.take();
        status.listed_once = true;
        status.healthy = true;
        match relist {
            None => ListEnd::First,
            Some(seen) => ListEnd::Relist(seen),
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
