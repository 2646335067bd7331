//! How much compiled reload-list memory the workloads of one namespace may
//! hold together, and all namespaces together.
//!
//! The limits in `policy::limits` bound one workload (at most 512 KiB of
//! compiled regexes), but anyone who may create workloads in a namespace
//! may create a thousand of them, each with its own lists. This budget
//! bounds the sum.
//!
//! Counted once per distinct compiled pattern per namespace, not once per
//! workload that lists it: compiled patterns are shared (see
//! `pattern_pool`), so that is what the namespace costs in memory, and a
//! namespace where 1,000 workloads list `app-config` pays for one
//! `app-config`, not for 1,000 (counting per use would refuse ordinary
//! namespaces with many workloads long before any memory is at risk). A
//! pattern listed in two namespaces is counted in both: the cluster-wide
//! figure may overstate what is held, never understate it.
//!
//! A workload whose new patterns would take its namespace (or the cluster)
//! over budget keeps no reload list at all; the rest of its policy applies.
//! What a workload was charged is returned when it is deleted or its
//! annotations change (its new lists are then charged anew). A refused
//! workload is not admitted later on its own when room is made: it is
//! charged again when its annotations change or the controller restarts.
//! After a restart the workloads are charged in the order they are listed
//! (by kind stream, then by name), so under a full budget the ones that
//! keep their lists may differ from before.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};

use crate::keys::WorkloadKey;
use crate::pattern_pool::CompiledPattern;

/// Compiled list memory one namespace's workloads may hold together.
///
/// A plain name compiles to about 1.6 KiB of automata and a usual pattern
/// (`app-.*`, a DNS-subdomain pattern) to 1.7–2.4 KiB; with what every
/// regex holds besides (`pattern_pool::REGEX_OVERHEAD`) each takes about
/// 6.5 KiB, so 2 MiB holds about 300 distinct names or patterns in one
/// namespace. Lists usually name a few ConfigMaps each, shared by the
/// workloads that use them, and a shared entry is counted once. 2 MiB also
/// holds three workloads at the per-workload maximum (512 KiB of automata),
/// or about 48 of the largest sensible name patterns (`[a-z0-9.-]{1,253}`,
/// 37 KiB).
pub const NAMESPACE_BUDGET: usize = 2 * 1024 * 1024;

/// Compiled list memory of all namespaces together: the last line when many
/// namespaces fill their budgets at once. Half the controller's default
/// memory request (128 MiB) and a sixteenth of its default limit (1 GiB),
/// so that other namespaces' lists cannot crash-loop the controller.
pub const CLUSTER_BUDGET: usize = 64 * 1024 * 1024;

/// Which budget a workload's lists would break.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Namespace,
    Cluster,
}

/// The lists of a workload do not fit: what it needed, what was in use, the budget.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the reload lists need {} KiB of compiled patterns new to {} {} KiB of its {} KiB are in use; lists not used",
    .needed.div_ceil(1024), scope_name(*.scope, .namespace), .in_use / 1024, .limit / 1024
)]
pub struct OverBudget {
    pub scope: Scope,
    pub namespace: Arc<str>,
    pub needed: usize,
    pub in_use: usize,
    pub limit: usize,
}

fn scope_name(scope: Scope, namespace: &str) -> String {
    match scope {
        Scope::Namespace => format!("namespace {namespace}, over the namespace budget:"),
        Scope::Cluster => "the cluster, over the cluster-wide budget:".to_string(),
    }
}

/// A compiled pattern compared by identity: the pool hands out one `Arc`
/// per text while any charge holds it.
#[derive(Clone)]
struct Held(Arc<CompiledPattern>);

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for Held {}
impl Hash for Held {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::ptr::hash(Arc::as_ptr(&self.0), state)
    }
}

#[derive(Default)]
struct Namespace {
    bytes: usize,
    /// Each distinct pattern and how many charged workloads list it.
    uses: HashMap<Held, usize>,
}

#[derive(Default)]
struct Usage {
    namespaces: HashMap<Arc<str>, Namespace>,
    total: usize,
    charges: HashMap<WorkloadKey, Vec<Held>>,
}

pub struct ListBudget {
    per_namespace: usize,
    cluster: usize,
    usage: Mutex<Usage>,
}

impl ListBudget {
    pub fn new(per_namespace: usize, cluster: usize) -> Self {
        ListBudget { per_namespace, cluster, usage: Mutex::default() }
    }

    /// The budget shared by every watch stream of this process.
    pub fn global() -> Arc<ListBudget> {
        static GLOBAL: LazyLock<Arc<ListBudget>> =
            LazyLock::new(|| Arc::new(ListBudget::new(NAMESPACE_BUDGET, CLUSTER_BUDGET)));
        GLOBAL.clone()
    }

    /// Charges `key`'s namespace for `patterns`, after returning what `key`
    /// was charged before. On error nothing is charged for `key`.
    pub fn charge(&self, key: &WorkloadKey, patterns: &[Arc<CompiledPattern>]) -> Result<(), OverBudget> {
        let mut usage = self.lock();
        usage.release(key);
        let mut held: Vec<Held> = Vec::with_capacity(patterns.len());
        for p in patterns {
            let h = Held(p.clone());
            if !held.contains(&h) {
                held.push(h);
            }
        }
        if held.is_empty() {
            return Ok(());
        }
        let Usage { namespaces, total, charges } = &mut *usage;
        let in_ns = namespaces.get(&key.namespace);
        let ns_bytes = in_ns.map_or(0, |n| n.bytes);
        let needed: usize =
            held.iter().filter(|h| in_ns.is_none_or(|n| !n.uses.contains_key(h))).map(|h| h.0.held()).sum();
        let over = |scope, in_use, limit| OverBudget { scope, namespace: key.namespace.clone(), needed, in_use, limit };
        if ns_bytes + needed > self.per_namespace {
            return Err(over(Scope::Namespace, ns_bytes, self.per_namespace));
        }
        if *total + needed > self.cluster {
            return Err(over(Scope::Cluster, *total, self.cluster));
        }
        let ns = namespaces.entry(key.namespace.clone()).or_default();
        for h in &held {
            *ns.uses.entry(h.clone()).or_insert(0) += 1;
        }
        ns.bytes += needed;
        *total += needed;
        charges.insert(key.clone(), held);
        Ok(())
    }

    /// Returns what `key` was charged (the workload is gone, or its lists changed).
    pub fn release(&self, key: &WorkloadKey) {
        self.lock().release(key);
    }

    /// Bytes charged to `namespace`.
    pub fn used(&self, namespace: &str) -> usize {
        self.lock().namespaces.get(namespace).map_or(0, |n| n.bytes)
    }

    /// Bytes charged to all namespaces.
    pub fn total(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> MutexGuard<'_, Usage> {
        // Nothing panics while the lock is held; the counts stay consistent.
        self.usage.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Usage {
    fn release(&mut self, key: &WorkloadKey) {
        let Some(held) = self.charges.remove(key) else {
            return;
        };
        let Some(ns) = self.namespaces.get_mut(&key.namespace) else {
            return;
        };
        for h in held {
            let size = h.0.held();
            if let Some(count) = ns.uses.get_mut(&h) {
                *count -= 1;
                if *count == 0 {
                    ns.uses.remove(&h);
                    ns.bytes -= size;
                    self.total -= size;
                }
            }
        }
        if ns.uses.is_empty() {
            self.namespaces.remove(&key.namespace);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::WorkloadKind;
    use crate::pattern_pool::PatternPool;

    fn key(ns: &str, name: &str) -> WorkloadKey {
        WorkloadKey::new(WorkloadKind::Deployment, ns, name)
    }

    fn patterns(pool: &PatternPool, texts: &[&str]) -> Vec<Arc<CompiledPattern>> {
        texts.iter().map(|t| pool.get(t).unwrap()).collect()
    }

    #[test]
    fn fill_refuse_and_release_on_delete_or_change() {
        let pool = PatternPool::new();
        let a = patterns(&pool, &["a-.*"]);
        let size = a[0].held();
        // Room for three patterns of this size in a namespace.
        let budget = ListBudget::new(3 * size + size / 2, 100 * size);
        budget.charge(&key("ns", "w1"), &patterns(&pool, &["a-.*", "b-.*"])).unwrap();
        // A pattern the namespace already holds costs nothing more.
        budget.charge(&key("ns", "w2"), &patterns(&pool, &["a-.*", "a-.*", "b-.*"])).unwrap();
        assert_eq!(budget.used("ns"), 2 * size);
        budget.charge(&key("ns", "w3"), &patterns(&pool, &["c-.*"])).unwrap();
        // Full: a new pattern is refused, and the refused workload holds nothing.
        let err = budget.charge(&key("ns", "w4"), &patterns(&pool, &["d-.*"])).unwrap_err();
        assert_eq!((err.scope, err.in_use, err.needed), (Scope::Namespace, 3 * size, size));
        let shown = err.to_string();
        assert!(shown.contains("namespace ns, over the namespace budget") && shown.contains("KiB"), "{shown}");
        assert_eq!(budget.used("ns"), 3 * size);
        // Another namespace has its own budget.
        budget.charge(&key("other", "w"), &patterns(&pool, &["d-.*"])).unwrap();
        assert_eq!(budget.total(), 4 * size);
        // Deleting w3 returns c-.*; w4 fits now.
        budget.release(&key("ns", "w3"));
        budget.charge(&key("ns", "w4"), &patterns(&pool, &["d-.*"])).unwrap();
        // w1 drops b-.*, still listed by w2: nothing returned. w2 changes to a-.* only: b-.* returned.
        budget.charge(&key("ns", "w1"), &patterns(&pool, &["a-.*"])).unwrap();
        assert_eq!(budget.used("ns"), 3 * size);
        budget.charge(&key("ns", "w2"), &patterns(&pool, &["a-.*"])).unwrap();
        assert_eq!(budget.used("ns"), 2 * size);
        // A change to lists that do not fit returns the old charge and holds nothing.
        let big = patterns(&pool, &["e-.*", "f-.*", "g-.*"]);
        assert!(budget.charge(&key("ns", "w4"), &big).is_err());
        assert_eq!(budget.used("ns"), size, "only a-.* is left, held by w1 and w2");
        for w in ["w1", "w2", "w4"] {
            budget.release(&key("ns", w));
        }
        budget.release(&key("other", "w"));
        assert_eq!((budget.used("ns"), budget.total()), (0, 0));
    }

    #[test]
    fn the_cluster_cap_is_the_last_line() {
        let pool = PatternPool::new();
        let size = pool.get("a-.*").unwrap().held();
        let budget = ListBudget::new(10 * size, 2 * size + size / 2);
        budget.charge(&key("n1", "w"), &patterns(&pool, &["a-.*"])).unwrap();
        // Counted in each namespace that lists it.
        budget.charge(&key("n2", "w"), &patterns(&pool, &["a-.*"])).unwrap();
        let err = budget.charge(&key("n3", "w"), &patterns(&pool, &["b-.*"])).unwrap_err();
        assert_eq!(err.scope, Scope::Cluster);
        assert!(err.to_string().contains("cluster-wide budget"), "{err}");
        budget.release(&key("n1", "w"));
        budget.charge(&key("n3", "w"), &patterns(&pool, &["b-.*"])).unwrap();
    }

    #[test]
    fn the_budget_holds_what_it_charged_alive() {
        let pool = PatternPool::new();
        let budget = ListBudget::new(1 << 20, 1 << 20);
        budget.charge(&key("ns", "w"), &patterns(&pool, &["a-.*"])).unwrap();
        assert_eq!(pool.live(), 1, "the charge keeps the pattern it counts");
        budget.release(&key("ns", "w"));
        assert_eq!(pool.live(), 0, "freed once nothing holds it");
    }
}
