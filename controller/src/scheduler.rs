//! Coalescing: reload requests for one workload that arrive within the
//! window are carried out as one rollout holding every new hash
//! (cert-manager rewriting a Secret and a ConfigMap together rolls once).
//! A workload is never patched by two tasks at once; requests arriving
//! while its reload runs wait for the next round.
//!
//! Rate limit (Reloader #220: thousands of Secrets rewritten at once): with
//! `max_rollouts_per_second` set, batches that are due start one per
//! `1/N` s across the cluster, in the order they fell due. A batch waiting
//! for its turn stays the workload's pending batch, so a further change of
//! that workload joins it instead of queueing a second rollout. Batches that
//! roll nothing (start-up baselines: only the record is written) skip the
//! queue.

use std::collections::{HashMap, HashSet, VecDeque};
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

/// How the scheduler paces batches.
#[derive(Clone, Copy, Debug)]
pub struct Pacing {
    /// Requests for one workload within this window become one batch.
    pub window: Duration,
    /// At most this many rollouts start per second; 0: no limit.
    pub max_rollouts_per_second: u32,
}

struct Pending {
    batch: Batch,
    due: Instant,
    /// Arrival order, to keep batches due at the same instant in order.
    seq: u64,
    /// Waiting in the rate limit's queue.
    queued: bool,
}

/// How many workloads are patched at once.
const CONCURRENCY: usize = 8;

/// The cluster-wide start slots: one rollout per `interval`, first come
/// first served.
struct RateLimit {
    interval: Duration,
    next_slot: Instant,
    queue: VecDeque<WorkloadKey>,
}

impl RateLimit {
    fn new(per_second: u32) -> Option<Self> {
        (per_second > 0).then(|| RateLimit {
            interval: Duration::from_secs(1) / per_second,
            next_slot: Instant::now(),
            queue: VecDeque::new(),
        })
    }

    /// Takes the start slot if it is free at `now`.
    fn take_slot(&mut self, now: Instant) -> bool {
        if self.next_slot > now {
            return false;
        }
        self.next_slot = now + self.interval;
        true
    }
}

/// Gathers the requests per workload and hands each batch to `executor`
/// `pacing.window` after the first request of the batch was seen, no faster
/// than `pacing.max_rollouts_per_second`. Ends when the requests channel
/// closes. `metrics` gets the queues' depth, intake and waits.
pub async fn run<E: Execute>(
    pacing: Pacing,
    mut requests: Receiver<ReloadRequest>,
    executor: Arc<E>,
    metrics: Arc<Metrics>,
) {
    let mut pending: HashMap<WorkloadKey, Pending> = HashMap::new();
    let mut in_flight: HashSet<WorkloadKey> = HashSet::new();
    let mut limit = RateLimit::new(pacing.max_rollouts_per_second);
    let mut seq: u64 = 0;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<WorkloadKey>();
    let permits = Arc::new(Semaphore::new(CONCURRENCY));

    let hand_over = |key: WorkloadKey, p: Pending, in_flight: &mut HashSet<WorkloadKey>| {
        metrics.queue_handed_over(p.batch.first_seen.elapsed().as_secs_f64());
        in_flight.insert(key.clone());
        let (executor, done, permits) = (executor.clone(), done_tx.clone(), permits.clone());
        tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            executor.execute(p.batch).await;
            let _ = done.send(key);
        });
    };

    loop {
        let next_due = pending.iter().filter(|(k, p)| !p.queued && !in_flight.contains(*k)).map(|(_, p)| p.due).min();
        let next_slot = limit.as_ref().filter(|l| !l.queue.is_empty()).map(|l| l.next_slot);
        let wake = next_due.into_iter().chain(next_slot).min();
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at).await,
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
                        let due = Instant::from_std(req.seen) + pacing.window;
                        seq += 1;
                        pending.insert(key, Pending { batch: Batch::new(req), due, seq, queued: false });
                    }
                }
                metrics.queue_added(pending.len());
            }
            Some(key) = done_rx.recv() => {
                in_flight.remove(&key);
            }
            _ = sleep => {
                let now = Instant::now();
                let mut due: Vec<(Instant, u64, WorkloadKey)> = pending
                    .iter()
                    .filter(|(k, p)| !p.queued && p.due <= now && !in_flight.contains(*k))
                    .map(|(k, p)| (p.due, p.seq, k.clone()))
                    .collect();
                due.sort();
                for (_, _, key) in due {
                    match limit.as_mut() {
                        Some(l) if !pending[&key].batch.items.is_empty() => {
                            // A rollout: it starts now only if nobody waits
                            // before it and the slot is free.
                            if !l.queue.is_empty() || l.next_slot > now {
                                metrics.rollout_delayed();
                            }
                            l.queue.push_back(key.clone());
                            if let Some(p) = pending.get_mut(&key) {
                                p.queued = true;
                            }
                        }
                        _ => {
                            let Some(p) = pending.remove(&key) else { continue };
                            hand_over(key, p, &mut in_flight);
                        }
                    }
                }
                if let Some(l) = limit.as_mut() {
                    while !l.queue.is_empty() && l.take_slot(now) {
                        let Some(key) = l.queue.pop_front() else { break };
                        let Some(p) = pending.remove(&key) else { continue };
                        hand_over(key, p, &mut in_flight);
                    }
                    metrics.rollout_queue_length(l.queue.len());
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
        start_limited(window, busy, 0).0
    }

    /// A bed whose scheduler starts at most `per_second` rollouts a second,
    /// and the metrics it records into.
    fn start_limited(window: Duration, busy: Duration, per_second: u32) -> (Bed, Arc<Metrics>) {
        let (requests, rx) = mpsc::channel(64);
        let (seen, batches) = unbounded_channel();
        let metrics = Arc::new(Metrics::new(false));
        let pacing = Pacing { window, max_rollouts_per_second: per_second };
        let scheduler = tokio::spawn(run(pacing, rx, Arc::new(Recorder { seen, busy }), metrics.clone()));
        (Bed { requests, batches, start: Instant::now(), scheduler }, metrics)
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
                base: None,
            };
            self.requests.send(req).await.expect("the scheduler runs");
        }

        /// Deployment `workload` is seen for the first time: record `resource`, roll nothing.
        async fn baseline(&self, workload: &str, resource: &str) {
            let req = ReloadRequest {
                workload: WorkloadKey::new(WorkloadKind::Deployment, "ns", workload),
                work: Work::Baseline(
                    ResourceKey::new(ResourceKind::ConfigMap, "ns", resource),
                    ContentHash::of("v1".as_bytes()),
                ),
                pause_period: None,
                rollout_strategy: RolloutStrategy::Rollout,
                seen: Instant::now().into_std(),
                base: None,
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

    fn millis(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// The value of an unlabelled series in the metrics text.
    fn sample(metrics: &Metrics, name: &str) -> f64 {
        let text = metrics.render();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limit_starts_rollouts_one_per_interval_in_order() {
        let (bed, metrics) = start_limited(Duration::ZERO, Duration::ZERO, 2);
        for w in ["w0", "w1", "w2", "w3", "w4"] {
            bed.change(w, "a", "v1").await;
        }
        assert_eq!(
            bed.finish().await,
            vec![
                batch(Duration::ZERO, "w0", &["a=v1"]),
                batch(millis(500), "w1", &["a=v1"]),
                batch(millis(1000), "w2", &["a=v1"]),
                batch(millis(1500), "w3", &["a=v1"]),
                batch(millis(2000), "w4", &["a=v1"]),
            ]
        );
        assert_eq!(sample(&metrics, "reloader_rollouts_delayed_total"), 4.0, "all but the first waited");
        assert_eq!(sample(&metrics, "reloader_rollout_queue_length"), 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_queued_workload_that_changes_again_rolls_once_holding_both() {
        let (bed, _) = start_limited(Duration::ZERO, Duration::ZERO, 1);
        for w in ["w0", "w1", "w2"] {
            bed.change(w, "a", "v1").await;
        }
        // w2 waits for its turn at 2 s; its second change joins the queued batch.
        tokio::time::sleep(millis(500)).await;
        bed.change("w2", "b", "v1").await;
        bed.change("w2", "a", "v2").await;
        assert_eq!(
            bed.finish().await,
            vec![
                batch(Duration::ZERO, "w0", &["a=v1"]),
                batch(secs(1), "w1", &["a=v1"]),
                batch(secs(2), "w2", &["b=v1", "a=v2"]),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn queue_length_is_visible_while_rollouts_wait() {
        let (bed, metrics) = start_limited(Duration::ZERO, Duration::ZERO, 1);
        for i in 0..4 {
            bed.change(&format!("w{i}"), "a", "v1").await;
        }
        tokio::time::sleep(millis(10)).await;
        assert_eq!(sample(&metrics, "reloader_rollout_queue_length"), 3.0);
        tokio::time::sleep(secs(1)).await;
        assert_eq!(sample(&metrics, "reloader_rollout_queue_length"), 2.0);
        let got = bed.finish().await;
        assert_eq!(got.len(), 4, "none lost: {got:?}");
        assert_eq!(sample(&metrics, "reloader_rollout_queue_length"), 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_still_coalesces_before_the_limit() {
        let (bed, _) = start_limited(WINDOW, Duration::ZERO, 1);
        bed.change("w0", "a", "v1").await;
        bed.change("w1", "a", "v1").await;
        tokio::time::sleep(secs(1)).await;
        bed.change("w0", "b", "v1").await;
        assert_eq!(
            bed.finish().await,
            vec![batch(WINDOW, "w0", &["a=v1", "b=v1"]), batch(WINDOW + secs(1), "w1", &["a=v1"])]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn baselines_roll_nothing_and_skip_the_queue() {
        let (bed, metrics) = start_limited(Duration::ZERO, Duration::ZERO, 1);
        bed.change("w0", "a", "v1").await;
        bed.change("w1", "a", "v1").await;
        for i in 0..3 {
            bed.baseline(&format!("b{i}"), "a").await;
        }
        let got = bed.finish().await;
        let at = |w: &str| got.iter().find(|(_, name, _)| name == w).map(|(t, _, _)| *t);
        for i in 0..3 {
            assert_eq!(at(&format!("b{i}")), Some(Duration::ZERO), "{got:?}");
        }
        assert_eq!(at("w1"), Some(secs(1)), "the rollout behind w0 still waits its turn: {got:?}");
        assert_eq!(sample(&metrics, "reloader_rollouts_delayed_total"), 1.0);
    }

    #[tokio::test(start_paused = true)]
    async fn many_rollouts_under_a_limit_all_start_none_twice() {
        let (bed, _) = start_limited(Duration::ZERO, Duration::ZERO, 5);
        for i in 0..20 {
            bed.change(&format!("w{i:02}"), "a", "v1").await;
        }
        let got = bed.finish().await;
        let names: Vec<String> = got.iter().map(|(_, n, _)| n.clone()).collect();
        let want: Vec<String> = (0..20).map(|i| format!("w{i:02}")).collect();
        assert_eq!(names, want, "each once, in order");
        assert_eq!(got.last().map(|(t, _, _)| *t), Some(millis(19 * 200)));
    }
}
