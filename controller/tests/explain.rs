//! `pod-reloader explain` on a workload with every kind of reference,
//! compared with a golden file (`UPDATE_GOLDEN=1` rewrites it).
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::*;
use pod_reloader_testsupport::{TestNamespace, admin_client, kubeconfig_path};
use serde_json::json;

/// `pod-reloader explain <target> -n <namespace>` against the test bed.
fn run_explain(namespace: &str, target: &str) -> std::process::Output {
    Command::new(BIN)
        .args(["explain", target, "-n", namespace])
        .env("KUBECONFIG", kubeconfig_path())
        .output()
        .expect("run explain")
}

/// Its standard output; it must succeed.
fn explain(namespace: &str, target: &str) -> String {
    let out = run_explain(namespace, target);
    assert!(out.status.success(), "explain failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_prints_the_reasons() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "explain").await;
    let n = ns.name.as_str();
    create(&client, n, configmap("cfg", json!({"key": "v1"}), json!({}), json!({}))).await;
    create(&client, n, configmap("listed-only", json!({"key": "v1"}), json!({}), json!({}))).await;
    create(
        &client,
        n,
        configmap("frozen", json!({"key": "v1"}), json!({"reloader.stakater.com/ignore": "true"}), json!({})),
    )
    .await;
    create(&client, n, secret("tls", json!({"key": "v1"}), json!({}), json!({}))).await;
    create(&client, n, secret("bootstrap", json!({"key": "v1"}), json!({}), json!({}))).await;
    let spec = json!({
        "initContainers": [{"name": "init", "image": "registry.invalid/a:1", "envFrom": [{"secretRef": {"name": "bootstrap"}}]}],
        "containers": [
            {"name": "app", "image": "registry.invalid/a:1",
             "envFrom": [{"configMapRef": {"name": "cfg"}}],
             "env": [{"name": "STAKATER_CFG_CONFIGMAP", "value": sha1_hex(b"key=v1")},
                     {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "frozen", "key": "key"}}}],
             "volumeMounts": [{"name": "certs", "mountPath": "/tls"}]},
            {"name": "sidecar", "image": "registry.invalid/a:1",
             "volumeMounts": [{"name": "all", "mountPath": "/all"}]}
        ],
        "volumes": [
            {"name": "certs", "secret": {"secretName": "tls"}},
            {"name": "all", "projected": {"sources": [{"configMap": {"name": "missing"}}]}}
        ]
    });
    let annotations = json!({
        "reloader.stakater.com/auto": "true",
        "secrets.exclude.reloader.stakater.com/reload": "bootstrap",
        "configmap.reloader.stakater.com/reload": "listed-.*"
    });
    create(&client, n, workload("Deployment", "web", &annotations, &json!({}), spec)).await;

    let text = explain(n, "deployment/web").replace(n, "NS");
    let golden = std::path::Path::new(
        &std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("tests/golden/explain.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &text).unwrap();
    }
    let want = std::fs::read_to_string(&golden).expect("golden file (UPDATE_GOLDEN=1 writes it)");
    assert_eq!(text, want, "explain output differs from {}", golden.display());

    let missing = run_explain(n, "deployment/nope");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("\"nope\" not found"));
}

/// A workload never reloaded has its baseline in the controller's store (in
/// the module namespace), not on itself: `explain` reads it from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_reads_the_baseline_store() {
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
    use kube::api::{DeleteParams, ListParams, PostParams};
    use pod_reloader_testsupport::ControllerProcess;
    use std::time::Duration;

    const MODULE_NS: &str = "d8-pod-reloader";
    let client = admin_client().await;
    let namespaces: kube::Api<Namespace> = kube::Api::all(client.clone());
    if namespaces.get_opt(MODULE_NS).await.unwrap().is_none() {
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": MODULE_NS}})).unwrap();
        let _ = namespaces.create(&PostParams::default(), &ns).await;
    }
    let ns = TestNamespace::create(&client, "explain-store").await;
    let n = ns.name.as_str();
    create(&client, n, configmap("cfg", json!({"key": "v1"}), json!({}), json!({}))).await;
    create(
        &client,
        n,
        workload(
            "Deployment",
            "web",
            &json!({"reloader.stakater.com/auto": "true"}),
            &json!({}),
            pod_spec(Res::ConfigMap, "cfg", Use::EnvFrom),
        ),
    )
    .await;
    let before = explain(n, "deployment/web");

    let mut c = ControllerProcess::spawn_with_env(
        BIN,
        &[&format!("--namespaces={n}")],
        &[("POD_NAME", "explain-store"), ("POD_NAMESPACE", MODULE_NS)],
    );
    c.wait_ready(Duration::from_secs(60)).await;
    wait_stored(&client, MODULE_NS, n, "web", "ConfigMap/cfg", Some(&sha1_hex(b"key=v1"))).await;
    c.stop();
    let after = explain(n, "deployment/web");
    let short = &sha1_hex(b"key=v1")[..12];
    assert!(
        after.contains(&format!("Workload runs: {short} (baseline store)")) && after.contains("State:         in sync"),
        "explain names the store as the source of what the workload runs, in sync:\n{after}"
    );
    assert!(before.contains("Workload runs: (nothing recorded)"), "before the controller ran:\n{before}");

    // The shards are left as the controller wrote them for nobody else: remove them.
    let shards: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), MODULE_NS);
    let label = format!("{}=true", pod_reloader_core::baseline_store::STORE_LABEL);
    let _ = shards.delete_collection(&DeleteParams::default(), &ListParams::default().labels(&label)).await;
}
