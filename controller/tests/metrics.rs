//! /metrics after real reloads on the test bed: Reloader's series
//! (`reload_executed_total_by_namespace` behind METRICS_COUNT_BY_NAMESPACE,
//! the v1.4.13+ action, event, reconcile, workload and queue series) count
//! what happened, and nothing more.

// Test code may unwrap (the workspace denies it in shipped code); clippy.toml
// covers #[test] functions, this covers the helpers beside them.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use pod_reloader_testsupport::{ControllerProcess, TestNamespace, admin_client, repo_root, wait_for};
use serde_json::json;

/// A config watching `ns` only, rolling at once (no coalescing window).
fn config(tag: &str, ns: &str) -> String {
    let dir = repo_root().join("target/test-logs");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("metrics-config-{tag}-{}.yaml", std::process::id()));
    std::fs::write(&path, format!("namespaces: [{ns}]\ncoalesceWindow: \"0\"\n")).unwrap();
    path.display().to_string()
}

/// Every sample line of the scrape, as (name{labels}, value).
async fn scrape(c: &ControllerProcess) -> Vec<(String, f64)> {
    let (code, body) = c.get("/metrics").await.expect("metrics answer");
    assert_eq!(code, 200);
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn value(samples: &[(String, f64)], series: &str) -> Option<f64> {
    samples.iter().find(|(s, _)| s == series).map(|(_, v)| *v)
}

async fn deployment_following(client: &kube::Client, ns: &str, name: &str, cm: &str) {
    let auto = json!({"reloader.stakater.com/auto": "true"});
    create(client, ns, workload("Deployment", name, &auto, &json!({}), pod_spec(Res::ConfigMap, cm, Use::EnvFrom)))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloader_series_count_real_reloads() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "metrics").await;
    let n = ns.name.as_str();
    create(&client, n, configmap("shared", json!({"key": "v1"}), json!({}), json!({}))).await;
    deployment_following(&client, n, "web", "shared").await;
    deployment_following(&client, n, "api", "shared").await;
    let mut barrier = Barrier::create(&client, n, &[Res::ConfigMap], json!({})).await;
    let mut c = ControllerProcess::spawn_with_env(
        BIN,
        &["--config", &config("on", n)],
        &[("METRICS_COUNT_BY_NAMESPACE", "enabled")],
    );
    c.wait_ready(Duration::from_secs(30)).await;
    barrier.wait_followed().await;

    // One content change (two followers) and one label-only edit.
    set_value(&client, n, Res::ConfigMap, "shared", "v2").await;
    touch_metadata(&client, n, Res::ConfigMap, "shared").await;
    for d in ["web", "api"] {
        wait_for(&format!("{d} rolled"), Duration::from_secs(30), || async {
            let t = pod_template(&client, n, "Deployment", d).await?;
            env_value(&t, "app", "STAKATER_SHARED_CONFIGMAP").map(|_| ())
        })
        .await;
    }

    // Two followers plus the sentinel (one barrier pass), each rolled once.
    let rolled = (2 + barrier.workloads()) as f64;
    assert_quiet_after(&mut barrier, || async {
        let m = scrape(&c).await;
        let ns_label = format!("namespace=\"{n}\"");
        let get = |s: &str| value(&m, s).unwrap_or_else(|| panic!("no series {s}"));
        assert_eq!(
            get(&format!("reloader_reload_executed_total{{kind=\"Deployment\",{ns_label},success=\"true\"}}")),
            rolled
        );
        assert_eq!(get(&format!("reloader_reload_executed_total_by_namespace{{{ns_label},success=\"true\"}}")), rolled);
        assert_eq!(get("reloader_action_total{result=\"success\",workload_kind=\"Deployment\"}"), rolled);
        assert_eq!(get("reloader_action_latency_seconds_count{workload_kind=\"Deployment\"}"), rolled);
        assert_eq!(get("reloader_workloads_matched_total{kind=\"Deployment\"}"), rolled);
        assert!(get("reloader_workloads_scanned_total{kind=\"Deployment\"}") >= rolled);
        // The change, the label-only edit, and the sentinel's edit.
        assert_eq!(get("reloader_events_received_total{event_type=\"update\",resource_type=\"configmap\"}"), 3.0);
        assert_eq!(get("reloader_skipped_total{reason=\"no_data_change\"}"), 1.0);
        // Two content changes matched: the shared ConfigMap's and the sentinel's.
        assert_eq!(get("reloader_reconcile_total{result=\"success\"}"), 2.0);
        assert_eq!(get("reloader_reconcile_duration_seconds_count{result=\"success\"}"), 2.0);
        // Rollouts and the start-up baselines all went through the queue, which is empty again.
        assert!(get("reloader_workqueue_adds_total") >= rolled);
        assert!(get("reloader_workqueue_latency_seconds_count") >= rolled);
        assert_eq!(get("reloader_workqueue_depth"), 0.0);
        // Exported (get panics otherwise). Its value is not fixed: a 409, when kube-controller-manager
        // wrote the Deployment between our read and patch, is retried, and the rollout still succeeds.
        get("reloader_retries_total");
        // No failure happened, so no failure series exists.
        for (s, _) in &m {
            assert!(!s.contains("success=\"false\"") && !s.starts_with("reloader_errors_total"), "unexpected {s}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_namespace_series_absent_unless_enabled() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "metrics-off").await;
    let n = ns.name.as_str();
    let mut barrier = Barrier::create(&client, n, &[Res::ConfigMap], json!({})).await;
    let c = ControllerProcess::start(BIN, &["--config", &config("off", n)]).await;
    barrier.wait_followed().await;
    assert_quiet_after(&mut barrier, || async {
        let m = scrape(&c).await;
        let executed =
            format!("reloader_reload_executed_total{{kind=\"Deployment\",namespace=\"{n}\",success=\"true\"}}");
        assert_eq!(value(&m, &executed), Some(1.0), "the sentinel rolled");
        assert!(m.iter().all(|(s, _)| !s.starts_with("reloader_reload_executed_total_by_namespace")), "{m:?}");
    })
    .await;
}
