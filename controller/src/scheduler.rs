//! Coalescing: reload requests for one workload that arrive within the
//! window are carried out as one rollout holding every new hash
//! (cert-manager rewriting a Secret and a ConfigMap together rolls once).
//! A workload is never patched by two tasks at once; requests arriving
//! while its reload runs wait for the next round.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use pod_reloader_core::WorkloadKey;
use tokio::sync::Semaphore;
use tokio::sync::mpsc::{self, Receiver};
use tokio::time::Instant;

use crate::messages::{Batch, ReloadRequest};
use crate::metrics::Metrics;

/// Carries out one coalesced batch (the reloader; a recorder in the tests).
/// The scheduler runs at most one batch per workload at a time.
pub trait Execute: Send + Sync + 'static {
    fn execute(&self, batch: Batch) -> impl Future<Output = ()> + Send;
}

struct Pending {
    batch: Batch,
    due: Instant,
}

/// How many workloads are patched at once.
const CONCURRENCY: usize = 8;

/// Gathers the requests per workload and hands each batch to `executor`
/// `window` after the first request of the batch was seen. Ends when the
/// requests channel closes. `metrics` gets the queue's depth, intake and waits.
pub async fn run<E: Execute>(
    window: Duration,
    mut requests: Receiver<ReloadRequest>,
    executor: Arc<E>,
    metrics: Arc<Metrics>,
) {
    let mut pending: HashMap<WorkloadKey, Pending> = HashMap::new();
    let mut in_flight: HashSet<WorkloadKey> = HashSet::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<WorkloadKey>();
    let permits = Arc::new(Semaphore::new(CONCURRENCY));

    loop {
        let next_due = pending.iter().filter(|(k, _)| !in_flight.contains(*k)).map(|(_, p)| p.due).min();
        let sleep = async {
            match next_due {
                Some(due) => tokio::time::sleep_until(due).await,
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
                        // The tokio clock is the std clock, except under a
                        // paused test runtime, where it is the one that moves.
                        let due = Instant::from_std(req.seen) + window;
                        pending.insert(key, Pending { batch: Batch::new(req), due });
                    }
                }
                metrics.queue_added(pending.len());
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
                    metrics.queue_handed_over(p.batch.first_seen.elapsed().as_secs_f64());
                    in_flight.insert(key.clone());
                    let (executor, done, permits) = (executor.clone(), done_tx.clone(), permits.clone());
                    tokio::spawn(async move {
                        let _permit = permits.acquire_owned().await;
                        executor.execute(p.batch).await;
                        let _ = done.send(key);
                    });
                }
                metrics.queue_depth(pending.len());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Coalescing on a paused clock: time moves only when every task waits,
    //! straight to the next timer, so the instants below are exact.

    use super::*;
    use pod_reloader_core::patch::ReloadItem;
    use pod_reloader_core::policy::RolloutStrategy;
    use pod_reloader_core::{ContentHash, ResourceKey, ResourceKind, WorkloadKind};
    use tokio::sync::mpsc::{Sender, UnboundedReceiver, UnboundedSender, unbounded_channel};
    use tokio::task::JoinHandle;

    use crate::messages::Work;

    const WINDOW: Duration = Duration::from_secs(5);

    /// Records each batch with the instant it was handed over, then takes
    /// `busy` to carry it out.
    struct Recorder {
        seen: UnboundedSender<(Instant, Batch)>,
        busy: Duration,
    }

    impl Execute for Recorder {
        fn execute(&self, batch: Batch) -> impl Future<Output = ()> + Send {
            let (seen, busy) = (self.seen.clone(), self.busy);
            async move {
                let _ = seen.send((Instant::now(), batch));
                tokio::time::sleep(busy).await;
            }
        }
    }

    struct Bed {
        requests: Sender<ReloadRequest>,
        batches: UnboundedReceiver<(Instant, Batch)>,
        start: Instant,
        scheduler: JoinHandle<()>,
    }

    fn start(window: Duration, busy: Duration) -> Bed {
        let (requests, rx) = mpsc::channel(64);
        let (seen, batches) = unbounded_channel();
        let scheduler = tokio::spawn(run(window, rx, Arc::new(Recorder { seen, busy }), Arc::new(Metrics::new(false))));
        Bed { requests, batches, start: Instant::now(), scheduler }
    }

    impl Bed {
        /// ConfigMap `resource` of Deployment `workload` now holds `content`.
        async fn change(&self, workload: &str, resource: &str, content: &str) {
            let req = ReloadRequest {
                workload: WorkloadKey::new(WorkloadKind::Deployment, "ns", workload),
                work: Work::Reload(ReloadItem {
                    resource: ResourceKey::new(ResourceKind::ConfigMap, "ns", resource),
                    hash: Some(ContentHash::of(content.as_bytes())),
                    container: "app".into(),
                }),
                pause_period: None,
                rollout_strategy: RolloutStrategy::Rollout,
                seen: Instant::now().into_std(),
            };
            self.requests.send(req).await.expect("the scheduler runs");
        }

        /// Lets the clock run far past every window and reload, then returns
        /// each batch handed over as (when, after the start; workload;
        /// `resource=content` items in batch order).
        async fn finish(mut self) -> Vec<(Duration, String, Vec<String>)> {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(self.requests);
            self.scheduler.await.expect("the scheduler ends cleanly");
            let mut out = Vec::new();
            while let Ok((at, batch)) = self.batches.try_recv() {
                let items = batch.items.iter().map(|i| format!("{}={}", i.resource.name, content_of(i.hash))).collect();
                out.push((at - self.start, batch.workload.name.to_string(), items));
            }
            out
        }
    }

    fn content_of(hash: Option<ContentHash>) -> &'static str {
        ["v1", "v2"].into_iter().find(|c| hash == Some(ContentHash::of(c.as_bytes()))).unwrap_or("?")
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn batch(at: Duration, workload: &str, items: &[&str]) -> (Duration, String, Vec<String>) {
        (at, workload.to_string(), items.iter().map(ToString::to_string).collect())
    }

    #[tokio::test(start_paused = true)]
    async fn two_changes_within_the_window_roll_once_holding_both() {
        let bed = start(WINDOW, Duration::ZERO);
        bed.change("web", "a", "v1").await;
        tokio::time::sleep(secs(3)).await;
        bed.change("web", "b", "v1").await;
        // The window counts from the first change: handed over at 5 s, not 8 s.
        assert_eq!(bed.finish().await, vec![batch(WINDOW, "web", &["a=v1", "b=v1"])]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_after_the_window_is_a_second_batch() {
        let bed = start(WINDOW, Duration::ZERO);
        bed.change("web", "a", "v1").await;
        tokio::time::sleep(secs(6)).await;
        bed.change("web", "b", "v1").await;
        assert_eq!(
            bed.finish().await,
            vec![batch(WINDOW, "web", &["a=v1"]), batch(secs(6) + WINDOW, "web", &["b=v1"])]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn window_zero_hands_over_at_once() {
        let bed = start(Duration::ZERO, Duration::ZERO);
        bed.change("web", "a", "v1").await;
        assert_eq!(bed.finish().await, vec![batch(Duration::ZERO, "web", &["a=v1"])]);
    }

    #[tokio::test(start_paused = true)]
    async fn different_workloads_are_separate_batches() {
        let bed = start(WINDOW, Duration::ZERO);
        bed.change("web", "a", "v1").await;
        bed.change("api", "a", "v1").await;
        let mut got = bed.finish().await;
        got.sort();
        assert_eq!(got, vec![batch(WINDOW, "api", &["a=v1"]), batch(WINDOW, "web", &["a=v1"])]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_change_of_one_resource_replaces_the_earlier() {
        let bed = start(WINDOW, Duration::ZERO);
        bed.change("web", "a", "v1").await;
        bed.change("web", "b", "v1").await;
        bed.change("web", "a", "v2").await;
        assert_eq!(bed.finish().await, vec![batch(WINDOW, "web", &["b=v1", "a=v2"])]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_during_a_running_reload_waits_for_it() {
        // Each reload takes 10 s: the first runs from 5 s to 15 s; the change
        // at 7 s is due at 12 s but must not patch the workload concurrently.
        let bed = start(WINDOW, secs(10));
        bed.change("web", "a", "v1").await;
        tokio::time::sleep(secs(7)).await;
        bed.change("web", "a", "v2").await;
        assert_eq!(bed.finish().await, vec![batch(WINDOW, "web", &["a=v1"]), batch(secs(15), "web", &["a=v2"])]);
    }
}
