//! The delays between retries, all drawn from one jittered exponential
//! schedule (backon's, which kube's watcher already uses).
//!
//! Jitter: when the apiserver or a webhook comes back after an outage, every
//! watch stream and every pending reload retries at once; a random delay
//! spreads them out instead of hitting it in lockstep. backon adds a random
//! part of 0–100 % to each delay, so the schedule is built from half the
//! nominal delays: each retry waits between half its nominal delay and the
//! nominal delay, never longer than the unjittered schedule did.

use std::time::Duration;

use backon::{BackoffBuilder, ConstantBuilder, ExponentialBuilder};

/// Delays that start at about `first`, double up to about `max`, and end
/// after `retries` of them (`None`: never). Each lies in `[d/2, d)` for the
/// nominal delay `d` of the plain doubling schedule.
fn jittered(first: Duration, max: Duration, retries: Option<usize>) -> ExponentialBuilder {
    let builder =
        ExponentialBuilder::default().with_min_delay(first / 2).with_max_delay(max / 2).with_factor(2.0).with_jitter();
    match retries {
        Some(n) => builder.with_max_times(n),
        None => builder.without_max_times(),
    }
}

/// A failing watch stream: 0.5 s doubling up to 5 s, without end, reset by
/// the next successful event. kube's default caps at 30 s; a shorter cap
/// means reloads resume within seconds of the apiserver coming back, for a
/// handful of cheap requests per stream during an outage.
pub fn watch() -> kube::runtime::watcher::ExponentialBackoff {
    jittered(Duration::from_millis(500), Duration::from_secs(5), None).into()
}

/// A reload that failed for a transient reason (conflict, apiserver away):
/// 100 ms doubling up to 5 s, 5 retries, so 6 attempts in about 3 s.
pub fn reload() -> impl Iterator<Item = Duration> {
    jittered(Duration::from_millis(100), Duration::from_secs(5), Some(5)).build()
}

/// Attempts per alert (the first and three retries); the sender logs the
/// count when it gives up.
pub const ALERT_ATTEMPTS: usize = 4;

/// A webhook that did not take an alert: 0.5 s, 1 s, 2 s between the
/// `ALERT_ATTEMPTS` attempts. The sink's queue is bounded, so a dead sink
/// costs a few seconds per alert and never delays a reload.
pub fn alert() -> impl Iterator<Item = Duration> {
    jittered(Duration::from_millis(500), Duration::from_secs(2), Some(ALERT_ATTEMPTS - 1)).build()
}

/// Attempts per post in `--webhook-url` mode: Reloader requeues a failed
/// event up to five times.
pub const WEBHOOK_MODE_ATTEMPTS: usize = 5;

/// A `--webhook-url` post that failed: 0.2 s doubling, between the
/// `WEBHOOK_MODE_ATTEMPTS` attempts.
pub fn webhook_mode() -> impl Iterator<Item = Duration> {
    jittered(Duration::from_millis(200), Duration::from_millis(1600), Some(WEBHOOK_MODE_ATTEMPTS - 1)).build()
}

/// A failed read of an object for its per-key digests: 0.5 s doubling to
/// 4 s, 4 retries; after that the object's next event asks anew.
pub fn key_digests() -> impl Iterator<Item = Duration> {
    jittered(Duration::from_millis(500), Duration::from_secs(4), Some(4)).build()
}

/// Re-creating a Job whose predecessor is still being deleted (409): every
/// 100 ms, 49 waits between 50 attempts (5 s). A poll for one object's name
/// to free up, not a retry storm: no jitter, so the bound stays exact.
pub fn job_recreate() -> impl Iterator<Item = Duration> {
    ConstantBuilder::default().with_delay(Duration::from_millis(100)).with_max_times(49).build()
}

/// Creating the Job a CronJob trigger starts, after a transient failure
/// (409 on a generateName collision, 429, 5xx, the apiserver away): 200 ms
/// doubling up to 3.2 s, 5 retries, so 6 attempts in about 3 s. After that
/// the reload stands (the template is patched) and a `ReloadFail` Event says
/// the Job was not started.
pub fn job_create() -> impl Iterator<Item = Duration> {
    jittered(Duration::from_millis(200), Duration::from_millis(3200), Some(5)).build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::utils::Backoff;

    /// Every delay lies in [nominal/2, nominal) and the count is the one asked for.
    fn assert_within(delays: Vec<Duration>, nominal_ms: &[u64]) {
        assert_eq!(delays.len(), nominal_ms.len(), "{delays:?}");
        for (d, n) in delays.iter().zip(nominal_ms) {
            let n = Duration::from_millis(*n);
            assert!(*d >= n / 2 && *d < n, "{d:?} outside [{:?}, {n:?})", n / 2);
        }
    }

    #[test]
    fn finite_schedules_keep_their_nominal_bounds() {
        for _ in 0..200 {
            assert_within(reload().collect(), &[100, 200, 400, 800, 1600]);
            assert_within(alert().collect(), &[500, 1000, 2000]);
            assert_within(key_digests().collect(), &[500, 1000, 2000, 4000]);
            assert_within(webhook_mode().collect(), &[200, 400, 800, 1600]);
            assert_within(job_create().collect(), &[200, 400, 800, 1600, 3200]);
        }
        let job: Vec<Duration> = job_recreate().collect();
        assert_eq!(job, vec![Duration::from_millis(100); 49]);
    }

    #[test]
    fn watch_caps_at_five_seconds_and_resets() {
        let mut b = watch();
        let first: Vec<Duration> = b.by_ref().take(8).collect();
        assert_within(first, &[500, 1000, 2000, 4000, 5000, 5000, 5000, 5000]);
        b.reset();
        assert_within(b.take(1).collect(), &[500]);
    }

    #[test]
    fn delays_are_jittered() {
        let runs: std::collections::BTreeSet<Vec<Duration>> = (0..20).map(|_| reload().collect()).collect();
        assert!(runs.len() > 1, "20 schedules were identical: no jitter");
    }
}
