//! Coalescing: reload requests for one workload that arrive within the
//! window are carried out as one rollout holding every new hash
//! (cert-manager rewriting a Secret and a ConfigMap together rolls once).
//! A workload is never patched by two tasks at once; requests arriving
//! while its reload runs wait for the next round.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pod_reloader_core::WorkloadKey;
use pod_reloader_core::patch::ReloadItem;
use pod_reloader_core::policy::RolloutStrategy;
use tokio::sync::Semaphore;
use tokio::sync::mpsc::{self, Receiver};

use crate::reload::Reloader;

/// One resource change to carry into one workload.
#[derive(Debug, Clone)]
pub struct ReloadRequest {
    pub workload: WorkloadKey,
    pub item: ReloadItem,
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
    pub pause_period: Option<Duration>,
    pub rollout_strategy: RolloutStrategy,
    pub first_seen: Instant,
}

impl Batch {
    fn add(&mut self, r: ReloadRequest) {
        self.items.retain(|i| i.resource != r.item.resource);
        self.items.push(r.item);
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
        let next_due = pending
            .iter()
            .filter(|(k, _)| !in_flight.contains(*k))
            .map(|(_, p)| p.due)
            .min();
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
                        let batch = Batch {
                            workload: key.clone(),
                            items: vec![req.item],
                            pause_period: req.pause_period,
                            rollout_strategy: req.rollout_strategy,
                            first_seen: req.seen,
                        };
                        pending.insert(key, Pending { batch, due });
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
