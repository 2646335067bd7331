//! Parsed policies of the workloads one watch stream sees, each kept with
//! the digest of the annotations it was parsed from.
//!
//! Most updates of a workload leave its policy annotations alone
//! (kube-controller-manager writes `status` after every rollout, the
//! controller writes its own record). Parsing means compiling the reload
//! lists' regexes, so a workload is parsed only when those annotations
//! change; otherwise the policy already parsed is shared (an `Arc`).
//!
//! Bounded: one entry per workload of the stream, removed when the workload
//! is deleted, and entries for workloads that a re-list no longer shows are
//! dropped when the re-list ends.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::keys::WorkloadKey;
use crate::policy::{PolicyDigest, WorkloadPolicy};

struct Cached {
    digest: PolicyDigest,
    policy: Arc<WorkloadPolicy>,
}

#[derive(Default)]
pub struct PolicyCache {
    current: HashMap<WorkloadKey, Cached>,
    /// During a re-list: the entries of before it, moved to `current` as
    /// their workloads are listed again.
    before_relist: Option<HashMap<WorkloadKey, Cached>>,
}

impl PolicyCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The policy for `key` given its annotations, parsed only when they
    /// differ from those of the policy kept for it. The flag says whether it
    /// was parsed now.
    pub fn policy(
        &mut self,
        key: &WorkloadKey,
        meta: &BTreeMap<String, String>,
        template: &BTreeMap<String, String>,
    ) -> (Arc<WorkloadPolicy>, bool) {
        let digest = PolicyDigest::of(meta, template);
        let kept = match self.current.get(key) {
            Some(c) => Some(c),
            None => {
                if let Some(c) = self.before_relist.as_mut().and_then(|b| b.remove(key)) {
                    self.current.insert(key.clone(), c);
                }
                self.current.get(key)
            }
        };
        if let Some(c) = kept
            && c.digest == digest
        {
            return (c.policy.clone(), false);
        }
        let policy = Arc::new(WorkloadPolicy::parse(meta, template));
        self.current.insert(key.clone(), Cached { digest, policy: policy.clone() });
        (policy, true)
    }

    /// The workload was deleted.
    pub fn remove(&mut self, key: &WorkloadKey) {
        self.current.remove(key);
        if let Some(b) = self.before_relist.as_mut() {
            b.remove(key);
        }
    }

    /// A full list starts: what it does not list again is dropped at its end.
    pub fn relist_started(&mut self) {
        let before = std::mem::take(&mut self.current);
        match self.before_relist.as_mut() {
            // A re-list cut short by another: keep everything not yet listed.
            Some(b) => b.extend(before),
            None => self.before_relist = Some(before),
        }
    }

    pub fn relist_done(&mut self) {
        self.before_relist = None;
    }

    /// How many policies are kept.
    pub fn len(&self) -> usize {
        self.current.len() + self.before_relist.as_ref().map_or(0, HashMap::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::WorkloadKind;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn key(name: &str) -> WorkloadKey {
        WorkloadKey::new(WorkloadKind::Deployment, "ns", name)
    }

    #[test]
    fn unchanged_policy_annotations_are_not_parsed_again() {
        let mut cache = PolicyCache::new();
        let ann = map(&[("configmap.reloader.stakater.com/reload", "app-.*"), ("other", "1")]);
        let (first, parsed) = cache.policy(&key("w"), &ann, &map(&[]));
        assert!(parsed);
        // Another annotation changes (a status-only update changes none): the same policy.
        let mut touched = ann.clone();
        touched.insert("other".into(), "2".into());
        touched.insert("pod-reloader.deckhouse.io/reloaded-hashes".into(), "{}".into());
        let (again, parsed) = cache.policy(&key("w"), &touched, &map(&[]));
        assert!(!parsed);
        assert!(Arc::ptr_eq(&first, &again));
        // A policy annotation changes: parsed again.
        let mut changed = ann.clone();
        changed.insert("configmap.reloader.stakater.com/reload".into(), "app-.*,db".into());
        let (third, parsed) = cache.policy(&key("w"), &changed, &map(&[]));
        assert!(parsed);
        assert_eq!(third.configmap.reload_list.len(), 2);
    }

    #[test]
    fn the_template_counts_as_input() {
        let mut cache = PolicyCache::new();
        let (_, parsed) = cache.policy(&key("w"), &map(&[]), &map(&[("reloader.stakater.com/auto", "true")]));
        assert!(parsed);
        let (p, parsed) = cache.policy(&key("w"), &map(&[]), &map(&[("reloader.stakater.com/auto", "false")]));
        assert!(parsed && !p.configmap.auto.is_true());
        // Any template annotation decides where keys are read from.
        let (_, parsed) = cache.policy(&key("w"), &map(&[]), &map(&[]));
        assert!(parsed);
    }

    #[test]
    fn deletes_and_relists_prune() {
        let mut cache = PolicyCache::new();
        for name in ["a", "b", "c"] {
            cache.policy(&key(name), &map(&[]), &map(&[]));
        }
        cache.remove(&key("a"));
        assert_eq!(cache.len(), 2);
        // A re-list that shows only `b` again: `c` was deleted meanwhile.
        cache.relist_started();
        let (_, parsed) = cache.policy(&key("b"), &map(&[]), &map(&[]));
        assert!(!parsed, "kept across the re-list");
        cache.relist_done();
        assert_eq!(cache.len(), 1);
        // An interrupted re-list keeps what it had not listed yet.
        cache.policy(&key("d"), &map(&[]), &map(&[]));
        cache.relist_started();
        cache.relist_started();
        let (_, parsed) = cache.policy(&key("d"), &map(&[]), &map(&[]));
        assert!(!parsed);
        cache.relist_done();
        assert_eq!(cache.len(), 1);
    }
}
