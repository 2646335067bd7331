//! `pod-reloader explain` on a workload with every kind of reference,
//! compared with a golden file (`UPDATE_GOLDEN=1` rewrites it).
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::*;
use pod_reloader_testsupport::{TestNamespace, admin_client, kubeconfig_path};
use serde_json::json;

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

    let out = Command::new(BIN)
        .args(["explain", "deployment/web", "-n", n])
        .env("KUBECONFIG", kubeconfig_path())
        .output()
        .expect("run explain");
    assert!(out.status.success(), "explain failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap().replace(n, "NS");
    let golden = std::path::Path::new(
        &std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("tests/golden/explain.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &text).unwrap();
    }
    let want = std::fs::read_to_string(&golden).expect("golden file (UPDATE_GOLDEN=1 writes it)");
    assert_eq!(text, want, "explain output differs from {}", golden.display());

    let missing = Command::new(BIN)
        .args(["explain", "deployment/nope", "-n", n])
        .env("KUBECONFIG", kubeconfig_path())
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("\"nope\" not found"));
}
