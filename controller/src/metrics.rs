//! Prometheus metrics. Names keep Reloader's where the meaning is the same,
//! so existing dashboards and alerts keep working; docs/METRICS.md maps each
//! of Reloader's series to ours. The rest of the controller records through
//! the helpers below (one call per fact), never through the vectors (the
//! state's unit tests read two of them).

use std::collections::HashSet;
use std::sync::Mutex;

use pod_reloader_core::{ResourceKind, WorkloadKey, WorkloadKind};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Distinct `namespace` label values kept; the namespaces reloaded in after
/// that many are counted under [`OTHER_NAMESPACES`]. Namespaces are created
/// by users: without a bound every one ever reloaded in stays a series
/// forever (the counters cannot forget them).
pub const MAX_NAMESPACE_LABELS: usize = 1000;
/// The `namespace` label value past [`MAX_NAMESPACE_LABELS`] (never a valid
/// namespace name: names are DNS labels).
pub const OTHER_NAMESPACES: &str = "_other";

/// Reloader's buckets (`internal/pkg/metrics/prometheus.go`), kept so that
/// quantiles read the same on both.
const RECONCILE_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const ACTION_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
const QUEUE_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

pub struct Metrics {
    registry: Registry,
    /// Reloads carried out, by outcome, workload namespace and kind.
    reload_executed: IntCounterVec,
    /// Reloader's by-namespace counter; registered only with
    /// `METRICS_COUNT_BY_NAMESPACE=enabled`, as in Reloader.
    reload_executed_by_namespace: Option<IntCounterVec>,
    /// Failures, by reason (`conflict`, `forbidden`, `not_found`, `api`, `invalid_annotation`, …).
    pub(crate) reload_errors: IntCounterVec,
    /// Reloader's errors counter: the same failures, label `type`.
    errors: IntCounterVec,
    /// Objects held in memory, by kind (ConfigMap, Secret, and each workload kind).
    watched: IntGaugeVec,
    /// Seconds from a change being observed to the patch being accepted.
    reload_latency: HistogramVec,
    /// The same seconds under Reloader's name and buckets.
    action_latency: HistogramVec,
    /// Rollouts tried, by workload kind and result (`success`, `error`, `no_change`).
    actions: IntCounterVec,
    /// Changes that reloaded nothing, by reason (`no_data_change`, `already_current`, …).
    pub(crate) skipped: IntCounterVec,
    /// Alerts on reload, by result (`sent`, `failed`, `dropped`).
    alerts: IntCounterVec,
    /// Attempts of a rollout after a transient failure.
    retries: IntCounter,
    /// ConfigMap/Secret watch events, by `add`/`update`/`delete` and kind.
    events_received: IntCounterVec,
    /// Changes matched against the followers index, and how long that took.
    reconciles: IntCounterVec,
    reconcile_duration: HistogramVec,
    /// Workloads following a changed object looked at, and those to be rolled.
    workloads_scanned: IntCounterVec,
    workloads_matched: IntCounterVec,
    /// The scheduler: batches waiting, requests taken in, and the wait of a
    /// batch from its first request to its hand-over (window included).
    workqueue_depth: IntGauge,
    workqueue_adds: IntCounter,
    workqueue_latency: Histogram,
    /// The cluster-wide rollout rate limit: rollouts waiting for their
    /// turn, and rollouts that had to wait.
    rollout_queue_length: IntGauge,
    rollouts_delayed: IntCounter,
    /// The namespaces given a label value so far (see [`MAX_NAMESPACE_LABELS`]).
    namespaces: Mutex<HashSet<String>>,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("metric definition")
}

fn histogram(name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> HistogramVec {
    HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels).expect("metric definition")
}

/// Reloader's `resource_type` spelling (`configmap`, `secret`).
fn resource_type(kind: ResourceKind) -> String {
    kind.reloader_type().to_ascii_lowercase()
}

impl Metrics {
    /// `count_by_namespace`: Reloader's `METRICS_COUNT_BY_NAMESPACE=enabled`.
    pub fn new(count_by_namespace: bool) -> Self {
        let registry = Registry::new();
        let m = Metrics {
            reload_executed: counter(
                "reloader_reload_executed_total",
                "Reloads carried out",
                &["success", "namespace", "kind"],
            ),
            reload_executed_by_namespace: count_by_namespace.then(|| {
                counter(
                    "reloader_reload_executed_total_by_namespace",
                    "Reloads carried out, by namespace (METRICS_COUNT_BY_NAMESPACE=enabled)",
                    &["success", "namespace"],
                )
            }),
            reload_errors: counter("reloader_reload_errors_total", "Reload failures by reason", &["reason"]),
            errors: counter("reloader_errors_total", "Reload failures by type (Reloader's name)", &["type"]),
            watched: IntGaugeVec::new(
                Opts::new("reloader_watched_resources_total", "Objects held, by kind"),
                &["kind"],
            )
            .expect("metric definition"),
            reload_latency: histogram(
                "reloader_reload_latency_seconds",
                "Seconds from a ConfigMap/Secret change being observed to the workload patch being accepted",
                &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0],
                &["kind"],
            ),
            action_latency: histogram(
                "reloader_action_latency_seconds",
                "Seconds from a change being observed to the workload patch being accepted (Reloader's name)",
                ACTION_BUCKETS,
                &["workload_kind"],
            ),
            actions: counter(
                "reloader_action_total",
                "Rollouts tried, by workload kind and result",
                &["workload_kind", "result"],
            ),
            skipped: counter("reloader_skipped_total", "Changes that reloaded nothing", &["reason"]),
            alerts: counter("reloader_alerts_total", "Alerts on reload, by result", &["result"]),
            retries: IntCounter::new("reloader_retries_total", "Rollout attempts repeated after a transient failure")
                .expect("metric definition"),
            events_received: counter(
                "reloader_events_received_total",
                "ConfigMap/Secret watch events, by type and resource",
                &["event_type", "resource_type"],
            ),
            reconciles: counter(
                "reloader_reconcile_total",
                "ConfigMap/Secret changes matched against the workloads following them",
                &["result"],
            ),
            reconcile_duration: histogram(
                "reloader_reconcile_duration_seconds",
                "Seconds spent matching one change and queueing its rollouts",
                RECONCILE_BUCKETS,
                &["result"],
            ),
            workloads_scanned: counter(
                "reloader_workloads_scanned_total",
                "Workloads following a changed object that were looked at, by kind",
                &["kind"],
            ),
            workloads_matched: counter(
                "reloader_workloads_matched_total",
                "Workloads a change asked to roll, by kind",
                &["kind"],
            ),
            workqueue_depth: IntGauge::new("reloader_workqueue_depth", "Batches waiting to be rolled")
                .expect("metric definition"),
            workqueue_adds: IntCounter::new("reloader_workqueue_adds_total", "Reload requests taken by the scheduler")
                .expect("metric definition"),
            workqueue_latency: Histogram::with_opts(
                HistogramOpts::new(
                    "reloader_workqueue_latency_seconds",
                    "Seconds from a batch's first request to its hand-over (coalescing window included)",
                )
                .buckets(QUEUE_BUCKETS.to_vec()),
            )
            .expect("metric definition"),
            rollout_queue_length: IntGauge::new(
                "reloader_rollout_queue_length",
                "Rollouts waiting for the cluster-wide rate limit (maxRolloutsPerSecond)",
            )
            .expect("metric definition"),
            rollouts_delayed: IntCounter::new(
                "reloader_rollouts_delayed_total",
                "Rollouts the cluster-wide rate limit held back before starting them",
            )
            .expect("metric definition"),
            namespaces: Mutex::new(HashSet::new()),
            registry,
        };
        for c in [&m.reload_executed, &m.reload_errors, &m.errors, &m.actions, &m.skipped, &m.alerts] {
            m.registry.register(Box::new(c.clone())).expect("register metric");
        }
        for c in [&m.events_received, &m.reconciles, &m.workloads_scanned, &m.workloads_matched] {
            m.registry.register(Box::new(c.clone())).expect("register metric");
        }
        if let Some(c) = &m.reload_executed_by_namespace {
            m.registry.register(Box::new(c.clone())).expect("register metric");
        }
        for h in [&m.reload_latency, &m.action_latency, &m.reconcile_duration] {
            m.registry.register(Box::new(h.clone())).expect("register metric");
        }
        m.registry.register(Box::new(m.watched.clone())).expect("register metric");
        m.registry.register(Box::new(m.retries.clone())).expect("register metric");
        m.registry.register(Box::new(m.workqueue_depth.clone())).expect("register metric");
        m.registry.register(Box::new(m.workqueue_adds.clone())).expect("register metric");
        m.registry.register(Box::new(m.workqueue_latency.clone())).expect("register metric");
        m.registry.register(Box::new(m.rollout_queue_length.clone())).expect("register metric");
        m.registry.register(Box::new(m.rollouts_delayed.clone())).expect("register metric");
        m
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("text encoding");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }

    /// The `namespace` label value for `ns`: itself for the first
    /// [`MAX_NAMESPACE_LABELS`] namespaces seen, [`OTHER_NAMESPACES`] after.
    fn namespace_label(&self, ns: &str) -> String {
        let mut seen = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(ns) {
            return ns.to_string();
        }
        if seen.len() < MAX_NAMESPACE_LABELS {
            seen.insert(ns.to_string());
            return ns.to_string();
        }
        OTHER_NAMESPACES.to_string()
    }

    fn executed(&self, workload: &WorkloadKey, success: bool) {
        let success = if success { "true" } else { "false" };
        let ns = self.namespace_label(&workload.namespace);
        self.reload_executed.with_label_values(&[success, &ns, workload.kind.as_str()]).inc();
        if let Some(by_ns) = &self.reload_executed_by_namespace {
            by_ns.with_label_values(&[success, &ns]).inc();
        }
    }

    /// A workload rolled (its patch accepted) `latency` seconds after the
    /// change was observed. `action_kind` is the workload's kind, or
    /// `webhook` when the rollout was handed to a webhook instead.
    pub fn reloaded(&self, workload: &WorkloadKey, action_kind: &str, latency: f64) {
        self.executed(workload, true);
        self.reload_latency.with_label_values(&[workload.kind.as_str()]).observe(latency);
        self.action_latency.with_label_values(&[action_kind]).observe(latency);
        self.actions.with_label_values(&[action_kind, "success"]).inc();
    }

    /// A rollout failed for good (after its retries) with `reason`.
    pub fn reload_failed(&self, workload: &WorkloadKey, action_kind: &str, reason: &str) {
        self.executed(workload, false);
        self.error(reason);
        self.actions.with_label_values(&[action_kind, "error"]).inc();
    }

    /// A failure outside a rollout (`invalid_annotation`), or of one.
    pub fn error(&self, reason: &str) {
        self.reload_errors.with_label_values(&[reason]).inc();
        self.errors.with_label_values(&[reason]).inc();
    }

    /// The workload already carried every new hash: nothing was patched.
    pub fn already_current(&self, kind: WorkloadKind) {
        self.skipped("already_current");
        self.actions.with_label_values(&[kind.as_str(), "no_change"]).inc();
    }

    pub fn skipped(&self, reason: &str) {
        self.skipped.with_label_values(&[reason]).inc();
    }

    pub fn retried(&self) {
        self.retries.inc();
    }

    pub fn alert(&self, result: &str) {
        self.alerts.with_label_values(&[result]).inc();
    }

    /// One more (`held`) or one fewer object of `kind` held in memory.
    pub fn watched(&self, kind: &str, held: bool) {
        let g = self.watched.with_label_values(&[kind]);
        if held { g.inc() } else { g.dec() }
    }

    /// A ConfigMap/Secret watch event: created (`add`, first seen),
    /// `update`d or `delete`d.
    pub fn event_received(&self, event_type: &str, kind: ResourceKind) {
        self.events_received.with_label_values(&[event_type, &resource_type(kind)]).inc();
    }

    /// Starts timing the matching of one change; recorded when dropped.
    pub fn reconcile(&self) -> ReconcileTimer<'_> {
        ReconcileTimer { metrics: self, start: std::time::Instant::now() }
    }

    /// A workload following a changed object was looked at; `matched`: it is to roll.
    pub fn workload_scanned(&self, kind: WorkloadKind, matched: bool) {
        self.workloads_scanned.with_label_values(&[kind.as_str()]).inc();
        if matched {
            self.workloads_matched.with_label_values(&[kind.as_str()]).inc();
        }
    }

    /// The scheduler took a request in; `depth` batches wait now.
    pub fn queue_added(&self, depth: usize) {
        self.workqueue_adds.inc();
        self.queue_depth(depth);
    }

    pub fn queue_depth(&self, depth: usize) {
        self.workqueue_depth.set(depth as i64);
    }

    /// A rollout could not start at once: the rate limit queued it.
    pub fn rollout_delayed(&self) {
        self.rollouts_delayed.inc();
    }

    /// `len` rollouts wait for the rate limit now.
    pub fn rollout_queue_length(&self, len: usize) {
        self.rollout_queue_length.set(len as i64);
    }

    /// A batch was handed over `waited` seconds after its first request.
    pub fn queue_handed_over(&self, waited: f64) {
        self.workqueue_latency.observe(waited);
    }
}

/// Records one `reconcile_total{result="success"}` and its duration when
/// dropped: matching a change against the index cannot fail (a rollout's
/// failure is counted in `action_total`).
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    start: std::time::Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        let secs = self.start.elapsed().as_secs_f64();
        self.metrics.reconciles.with_label_values(&["success"]).inc();
        self.metrics.reconcile_duration.with_label_values(&["success"]).observe(secs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ns: &str) -> WorkloadKey {
        WorkloadKey::new(WorkloadKind::Deployment, ns, "web")
    }

    /// The family names rendered, each once.
    fn families(m: &Metrics) -> Vec<String> {
        let mut names: Vec<String> = m
            .render()
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap_or_default().to_string())
            .collect();
        names.sort();
        names
    }

    fn exercise(m: &Metrics) {
        m.reloaded(&key("shop"), "Deployment", 0.2);
        m.reload_failed(&key("shop"), "Deployment", "conflict");
        m.already_current(WorkloadKind::Deployment);
        m.retried();
        m.alert("sent");
        m.watched("ConfigMap", true);
        m.event_received("update", ResourceKind::ConfigMap);
        drop(m.reconcile());
        m.workload_scanned(WorkloadKind::Deployment, true);
        m.queue_added(1);
        m.queue_handed_over(1.0);
    }

    #[test]
    fn registry_holds_reloader_names_and_ours() {
        let m = Metrics::new(false);
        exercise(&m);
        assert_eq!(
            families(&m),
            [
                "reloader_action_latency_seconds",
                "reloader_action_total",
                "reloader_alerts_total",
                "reloader_errors_total",
                "reloader_events_received_total",
                "reloader_reconcile_duration_seconds",
                "reloader_reconcile_total",
                "reloader_reload_errors_total",
                "reloader_reload_executed_total",
                "reloader_reload_latency_seconds",
                "reloader_retries_total",
                "reloader_rollout_queue_length",
                "reloader_rollouts_delayed_total",
                "reloader_skipped_total",
                "reloader_watched_resources_total",
                "reloader_workloads_matched_total",
                "reloader_workloads_scanned_total",
                "reloader_workqueue_adds_total",
                "reloader_workqueue_depth",
                "reloader_workqueue_latency_seconds",
            ]
        );
    }

    #[test]
    fn by_namespace_series_only_when_enabled() {
        let off = Metrics::new(false);
        off.reloaded(&key("shop"), "Deployment", 0.1);
        assert!(!off.render().contains("by_namespace"));
        let on = Metrics::new(true);
        on.reloaded(&key("shop"), "Deployment", 0.1);
        on.reload_failed(&key("shop"), "Deployment", "forbidden");
        let text = on.render();
        assert!(text.contains(r#"reloader_reload_executed_total_by_namespace{namespace="shop",success="true"} 1"#));
        assert!(text.contains(r#"reloader_reload_executed_total_by_namespace{namespace="shop",success="false"} 1"#));
        assert!(
            text.contains(r#"reloader_reload_executed_total{kind="Deployment",namespace="shop",success="true"} 1"#)
        );
    }

    #[test]
    fn reloader_buckets_are_kept() {
        let m = Metrics::new(false);
        exercise(&m);
        let text = m.render();
        for (name, last) in [
            ("reloader_action_latency_seconds_bucket", "60"),
            ("reloader_reconcile_duration_seconds_bucket", "10"),
            ("reloader_workqueue_latency_seconds_bucket", "5"),
        ] {
            assert!(text.contains(&format!("{name}{{")), "{name} missing");
            assert!(
                text.lines().any(|l| l.starts_with(name) && l.contains(&format!("le=\"{last}\""))),
                "{name} le={last}"
            );
        }
    }

    #[test]
    fn namespace_labels_are_bounded() {
        let m = Metrics::new(true);
        for i in 0..MAX_NAMESPACE_LABELS + 50 {
            m.reloaded(&key(&format!("ns-{i}")), "Deployment", 0.1);
        }
        let text = m.render();
        let series = text.lines().filter(|l| l.starts_with("reloader_reload_executed_total{")).count();
        assert_eq!(series, MAX_NAMESPACE_LABELS + 1, "the first namespaces, then one overflow series");
        assert!(
            text.contains(r#"reloader_reload_executed_total{kind="Deployment",namespace="_other",success="true"} 50"#)
        );
        let by_ns = text.lines().filter(|l| l.starts_with("reloader_reload_executed_total_by_namespace{")).count();
        assert_eq!(by_ns, MAX_NAMESPACE_LABELS + 1);
        // A namespace already labelled keeps its own series.
        m.reloaded(&key("ns-0"), "Deployment", 0.1);
        assert!(m.render().contains(r#"namespace="ns-0",success="true"} 2"#));
    }
}
