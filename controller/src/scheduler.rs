//! Coalescing: reload requests for one workload that arrive within the
//! window are carried out as one rollout holding every new hash
//! (cert-manager rewriting a Secret and a ConfigMap together rolls once).
//! A workload is never patched by two tasks at once; requests arriving
//! while its reload runs wait for the next round.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pod_reloader_core::patch::ReloadItem;
use pod_reloader_core::policy::RolloutStrategy;
use pod_reloader_core::{ContentHash, ResourceKey, WorkloadKey};
use tokio::sync::Semaphore;
use tokio::sync::mpsc::{self, Receiver};

use crate::reload::Reloader;

/// What to do for one resource of one workload.
#[derive(Debug, Clone)]
pub enum Work {
    /// Roll the workload to the resource's new hash.
    Reload(ReloadItem),
    /// Record the hash as what the workload runs, without rolling.
    Baseline(ResourceKey, ContentHash),
}

/// One resource change to carry into one workload.
#[derive(Debug, Clone)]
pub struct ReloadRequest {
    pub workload: WorkloadKey,
    pub work: Work,
    pub pause_period: Option<Duration>,
    pub rollout_strategy: RolloutStrategy,
    /// When the change was observed (for the latency histogram).
    pub seen: Instant,
}

/// The requests gathered for one workload.
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
}

impl Batch {
    fn new(r: ReloadRequest) -> Self {
        let mut b = Batch {
            workload: r.workload.clone(),
            items: Vec::new(),
            baseline: Vec::new(),
            pause_period: r.pause_period,
            rollout_strategy: r.rollout_strategy,
            first_seen: r.seen,
        };
        b.add(r);
        b
    }

    fn add(&mut self, r: ReloadRequest) {
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

struct Pending {
    batch: Batch,
    due: Instant,
}

/// How many workloads are patched at once.
const CONCURRENCY: usize = 8;

pub async fn run(window: Duration, mut requests: Receiver<ReloadRequest>, reloader: Arc<Reloader>) {
    let mut pending: HashMap<WorkloadKey, Pending> = HashMap::new();
    let mut in_flight: HashSet<WorkloadKey> = HashSet::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<WorkloadKey>();
    let permits = Arc::new(Semaphore::new(CONCURRENCY));

    loop {
        let next_due = pending.iter().filter(|(k, _)| !in_flight.contains(*k)).map(|(_, p)| p.due).min();
        let sleep = async {
            match next_due {
                Some(due) => tokio::time::sleep_until(due.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            req = requests.recv() => {
                let Some(req) = req else { return };
                let key = req.workload.clone();
                match pending.get_mut(&key) {
                    Some(p) => p.batch.add(req),
                    None => {
                        let due = req.seen + window;
                        pending.insert(key, Pending { batch: Batch::new(req), due });
                    }
                }
            }
            Some(key) = done_rx.recv() => {
                in_flight.remove(&key);
            }
            _ = sleep => {
                let now = Instant::now();
                let due: Vec<WorkloadKey> = pending
                    .iter()
                    .filter(|(k, p)| p.due <= now && !in_flight.contains(*k))
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in due {
                    let Some(p) = pending.remove(&key) else { continue };
                    in_flight.insert(key.clone());
                    let (reloader, done, permits) = (reloader.clone(), done_tx.clone(), permits.clone());
                    tokio::spawn(async move {
                        let _permit = permits.acquire_owned().await;
                        reloader.reload(p.batch).await;
                        let _ = done.send(key);
                    });
                }
            }
        }
    }
}
