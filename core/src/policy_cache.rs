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
//!
//! Each parsed policy's reload lists are charged to its namespace's
//! [`ListBudget`] (shared by the streams of every kind); lists that do not
//! fit are refused. The charge is returned whenever the cache lets go of
//! the policy: the workload is deleted, not listed again, or parsed anew.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::keys::WorkloadKey;
use crate::list_budget::ListBudget;
use crate::policy::{PolicyDigest, WorkloadPolicy};

struct Cached {
    digest: PolicyDigest,
    policy: Arc<WorkloadPolicy>,
}

pub struct PolicyCache {
    current: HashMap<WorkloadKey, Cached>,
    /// During a re-list: the entries of before it, moved to `current` as
    /// their workloads are listed again.
    before_relist: Option<HashMap<WorkloadKey, Cached>>,
    budget: Arc<ListBudget>,
}

impl Default for PolicyCache {
    fn default() -> Self {
        Self::new()
    }
}

impl PolicyCache {
    /// A cache charging the process-wide budget ([`ListBudget::global`]).
    pub fn new() -> Self {
        Self::with_budget(ListBudget::global())
    }

    fn with_budget(budget: Arc<ListBudget>) -> Self {
        PolicyCache { current: HashMap::new(), before_relist: None, budget }
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
        let mut policy = WorkloadPolicy::parse(meta, template);
        if let Err(over) = self.budget.charge(key, &policy.patterns()) {
            policy.refuse_lists(meta, template, over);
        }
        let policy = Arc::new(policy);
        self.current.insert(key.clone(), Cached { digest, policy: policy.clone() });
        (policy, true)
    }

    /// The workload was deleted.
    pub fn remove(&mut self, key: &WorkloadKey) {
        self.current.remove(key);
        if let Some(b) = self.before_relist.as_mut() {
            b.remove(key);
        }
        self.budget.release(key);
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
        for key in self.before_relist.take().unwrap_or_default().keys() {
            self.budget.release(key);
        }
    }

    /// How many policies are kept.
    pub fn len(&self) -> usize {
        self.current.len() + self.before_relist.as_ref().map_or(0, HashMap::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for PolicyCache {
    /// A stream that ends returns what its workloads were charged.
    fn drop(&mut self) {
        let before = self.before_relist.take().unwrap_or_default();
        for key in self.current.keys().chain(before.keys()) {
            self.budget.release(key);
        }
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

    /// A reload list of `n` distinct large patterns (about 29 KiB each as
    /// the namespace budget counts them), unique to `tag`.
    fn heavy_list(tag: &str, n: usize) -> String {
        (0..n).map(|i| format!("{tag}-{i}-[a-z0-9.-]{{230}}")).collect::<Vec<_>>().join(",")
    }

    #[test]
    fn lists_over_the_namespace_budget_are_refused_and_returned_on_delete_or_change() {
        let budget = Arc::new(ListBudget::new(512 * 1024, 8 << 20));
        let mut cache = PolicyCache::with_budget(budget.clone());
        let cm = "configmap.reloader.stakater.com/reload";
        let small = map(&[(cm, "cfg")]);
        let (early, _) = cache.policy(&key("early"), &small, &map(&[]));
        assert!(early.configmap.listed("cfg").is_some());
        // Four lists of 4 × 29 KiB fill 512 KiB with `early`; the fifth workload's do not fit.
        let mut refused = Vec::new();
        for w in 0..5 {
            let ann = map(&[(cm, &heavy_list(&format!("w{w}"), 4)), ("reloader.stakater.com/auto", "true")]);
            let (p, _) = cache.policy(&key(&format!("w{w}")), &ann, &map(&[]));
            if p.configmap.reload_list.is_empty() {
                assert!(p.configmap.auto.is_true(), "the rest of the policy applies");
                let shown: Vec<String> = p.problems.iter().map(ToString::to_string).collect();
                assert_eq!(shown.len(), 1, "{shown:?}");
                assert!(shown[0].contains(cm) && shown[0].contains("namespace budget"), "{shown:?}");
                assert!(shown[0].contains("512 KiB"), "{shown:?}");
                refused.push(w);
            }
        }
        assert_eq!(refused, [4], "used {} bytes", budget.used("ns"));
        assert!(budget.used("ns") <= 512 * 1024);
        // A workload whose list names only patterns the namespace holds costs nothing more.
        let (shared, _) = cache.policy(&key("shared"), &small, &map(&[]));
        assert!(shared.configmap.listed("cfg").is_some());
        // Deleting w0 returns its share: w4 fits when its annotations change.
        cache.remove(&key("w0"));
        let ann = map(&[(cm, &heavy_list("w4", 2))]);
        let (p, parsed) = cache.policy(&key("w4"), &ann, &map(&[]));
        assert!(parsed && p.configmap.reload_list.len() == 2 && p.problems.is_empty(), "{:?}", p.problems);
        // w1 changes to a small list: its heavy patterns are returned.
        let before = budget.used("ns");
        cache.policy(&key("w1"), &map(&[(cm, "other")]), &map(&[]));
        assert!(budget.used("ns") < before - 100 * 1024);
        // Dropping the cache (the stream ended) returns everything.
        drop(cache);
        assert_eq!(budget.total(), 0);
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

    #[test]
    fn workloads_gone_at_a_relist_return_their_charge() {
        let budget = Arc::new(ListBudget::new(1 << 20, 1 << 20));
        let mut cache = PolicyCache::with_budget(budget.clone());
        let cm = "configmap.reloader.stakater.com/reload";
        cache.policy(&key("a"), &map(&[(cm, "a-.*")]), &map(&[]));
        cache.policy(&key("b"), &map(&[(cm, "b-.*")]), &map(&[]));
        let both = budget.used("ns");
        cache.relist_started();
        cache.policy(&key("a"), &map(&[(cm, "a-.*")]), &map(&[]));
        cache.relist_done();
        assert!(budget.used("ns") > 0 && budget.used("ns") < both, "b's share returned");
    }
}
