//! Prometheus metrics. Names keep Reloader's where the meaning is the same,
//! so existing dashboards and alerts keep working.

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

pub struct Metrics {
    registry: Registry,
    /// Reloads carried out, by outcome, workload namespace and kind.
    pub reload_executed: IntCounterVec,
    /// Failures, by reason (`conflict`, `forbidden`, `not_found`, `api`, `invalid_annotation`, …).
    pub reload_errors: IntCounterVec,
    /// Objects held in memory, by kind (ConfigMap, Secret, and each workload kind).
    pub watched: IntGaugeVec,
    /// Seconds from a change being observed to the patch being accepted.
    pub reload_latency: HistogramVec,
    /// Changes that reloaded nothing, by reason (`no_data_change`, `already_current`, …).
    pub skipped: IntCounterVec,
    /// Alerts on reload, by result (`sent`, `failed`, `dropped`).
    pub alerts: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let reload_executed = IntCounterVec::new(
            Opts::new("reloader_reload_executed_total", "Reloads carried out"),
            &["success", "namespace", "kind"],
        )
        .expect("metric definition");
        let reload_errors =
            IntCounterVec::new(Opts::new("reloader_reload_errors_total", "Reload failures by reason"), &["reason"])
                .expect("metric definition");
        let watched =
            IntGaugeVec::new(Opts::new("reloader_watched_resources_total", "Objects held, by kind"), &["kind"])
                .expect("metric definition");
        let reload_latency = HistogramVec::new(
            HistogramOpts::new(
                "reloader_reload_latency_seconds",
                "Seconds from a ConfigMap/Secret change being observed to the workload patch being accepted",
            )
            .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0]),
            &["kind"],
        )
        .expect("metric definition");
        let skipped =
            IntCounterVec::new(Opts::new("reloader_skipped_total", "Changes that reloaded nothing"), &["reason"])
                .expect("metric definition");
        let alerts = IntCounterVec::new(Opts::new("reloader_alerts_total", "Alerts on reload, by result"), &["result"])
            .expect("metric definition");
        for c in [&reload_executed, &reload_errors, &skipped, &alerts] {
            registry.register(Box::new(c.clone())).expect("register metric");
        }
        registry.register(Box::new(watched.clone())).expect("register metric");
        registry.register(Box::new(reload_latency.clone())).expect("register metric");
        Metrics { registry, reload_executed, reload_errors, watched, reload_latency, skipped, alerts }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("text encoding");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
