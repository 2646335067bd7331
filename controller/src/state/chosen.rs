//! The state's side of `reload-on-keys`: the key digests it holds for the
//! objects such workloads follow, what it tells the watches to digest
//! ([`WantedKeys`]), and which objects it asked to be read anew.
//!
//! Digests belong to one content (`KeyDigests::of`): an event without them
//! drops the old ones. An object that becomes wanted after its last event
//! (a workload naming it appeared after it was listed) is read once by the
//! fetch task; its answer counts only if it is of the content the state
//! holds (else the watch's next event, digested, is on its way).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use pod_reloader_core::chosen_keys::{ChosenKeys, KeyDigests};
use pod_reloader_core::{ContentHash, ResourceKey};

use super::effects::{Effect, Effects};
use crate::chosen_keys::WantedKeys;

pub struct Chosen {
    wanted: Arc<WantedKeys>,
    digests: HashMap<ResourceKey, KeyDigests>,
    /// Asked to be read, no answer yet: one request per object at a time.
    requested: HashSet<ResourceKey>,
}

impl Chosen {
    pub fn new(wanted: Arc<WantedKeys>) -> Self {
        Chosen { wanted, digests: HashMap::new(), requested: HashSet::new() }
    }

    /// The digest of `chosen` keys of `key`'s current content, if known.
    pub fn digest(&self, key: &ResourceKey, chosen: &ChosenKeys) -> Option<ContentHash> {
        self.digests.get(key)?.digest(chosen)
    }

    /// A new content of `key` arrived with `digests` (or none); returns the
    /// digests of the content before. Asks for a read when `key` is wanted
    /// and the new digests do not cover it.
    pub fn applied(
        &mut self,
        key: &ResourceKey,
        digests: Option<Box<KeyDigests>>,
        fx: &mut Effects,
    ) -> Option<KeyDigests> {
        self.requested.remove(key);
        let old = match digests {
            Some(d) => self.digests.insert(key.clone(), *d),
            None => self.digests.remove(key),
        };
        self.ask_if_uncovered(key, fx);
        old
    }

    /// `key` is gone: so are its digests (it stays wanted while followed).
    pub fn deleted(&mut self, key: &ResourceKey) {
        self.requested.remove(key);
        self.digests.remove(key);
    }

    /// The fetch task's answer; kept (true) when it is of the content held.
    pub fn fetched(&mut self, key: &ResourceKey, digests: KeyDigests, current: Option<ContentHash>) -> bool {
        self.requested.remove(key);
        if current != Some(digests.of) {
            return false;
        }
        self.digests.insert(key.clone(), digests);
        true
    }

    /// Sets the keys to digest of `key` (empty: none); asks for a read when
    /// the object exists and what is held does not cover them.
    pub fn want(&mut self, key: &ResourceKey, keys: BTreeSet<String>, exists: bool, fx: &mut Effects) {
        self.wanted.set(key, keys);
        if exists {
            self.ask_if_uncovered(key, fx);
        } else {
            self.digests.remove(key);
        }
    }

    #[cfg(test)]
    pub fn wanted(&self, key: &ResourceKey) -> Option<Vec<String>> {
        self.wanted.get(key).map(|k| k.iter().cloned().collect())
    }

    fn ask_if_uncovered(&mut self, key: &ResourceKey, fx: &mut Effects) {
        let Some(wanted) = self.wanted.get(key) else {
            self.digests.remove(key);
            return;
        };
        let covered = self.digests.get(key).is_some_and(|d| d.covers(wanted.iter().map(String::as_str)));
        if !covered && self.requested.insert(key.clone()) {
            fx.push(Effect::FetchKeyDigests(key.clone()));
        }
    }
}
