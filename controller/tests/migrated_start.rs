//! First start on a workload migrated from Stakater Reloader: its template
//! already states what it runs (Reloader's env var with the hash of the
//! ConfigMap's current content), so the controller writes nothing to it; a
//! change made while the controller is down still rolls it once at the next
//! start, compared against that env var.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use kube::Client;
use pod_reloader_testsupport::{ControllerProcess, TestNamespace, admin_client};
use serde_json::json;

const RECORD: &str = "pod-reloader.deckhouse.io/reloaded-hashes";

/// web's resourceVersion and whether pod-reloader ever wrote to it (a field
/// manager of its name), as the apiserver has it now.
async fn writes(client: &Client, n: &str) -> (String, bool, bool) {
    let d = dyn_api(client, n, "Deployment").get("web").await.unwrap();
    let ours = d.metadata.managed_fields.iter().flatten().any(|f| f.manager.as_deref() == Some("pod-reloader"));
    let record = d.metadata.annotations.unwrap_or_default().contains_key(RECORD);
    (d.metadata.resource_version.unwrap(), ours, record)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migrated_deployment_is_not_written_at_start_and_still_rolls_a_change_made_while_down() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "migstart").await;
    let n = ns.name.as_str();
    let args = [format!("--namespaces={n}"), "--coalesce-window=0".to_string()];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    create(&client, n, configmap("cfg", json!({"key": "v1"}), json!({}), json!({}))).await;
    let mut spec = pod_spec(Res::ConfigMap, "cfg", Use::EnvFrom);
    spec["containers"][0]["env"] = json!([{"name": "STAKATER_CFG_CONFIGMAP", "value": sha1_hex(b"key=v1")}]);
    let mut web = workload("Deployment", "web", &json!({"reloader.stakater.com/auto": "true"}), &json!({}), spec);
    // Scaled to 0: once kube-controller-manager has settled it, nothing else writes it.
    web["spec"]["replicas"] = json!(0);
    create(&client, n, web).await;
    let mut barrier = Barrier::create(&client, n, &[Res::ConfigMap], json!({})).await;
    assert_eq!(settled_replica_sets(&client, n, "web").await, 1);
    let (before, ours, record) = writes(&client, n).await;
    assert!(!ours && !record);

    // First start: ready, the sentinel baselined and rolled after every
    // start-up decision; web was not written.
    let mut c = ControllerProcess::start(BIN, &args).await;
    barrier.wait_followed().await;
    assert_quiet_after(&mut barrier, || async {
        let (after, ours, record) = writes(&client, n).await;
        assert!(!ours, "no write by pod-reloader on a workload whose template states what it runs");
        assert!(!record, "no baseline record");
        assert_eq!(after, before, "resourceVersion unchanged");
    })
    .await;
    c.stop();

    // Edited while nobody watches: the next start rolls web once, by the env var.
    set_value(&client, n, Res::ConfigMap, "cfg", "v2").await;
    let mut c = ControllerProcess::start(BIN, &args).await;
    wait_replica_sets(&client, n, "web", 2, Duration::from_secs(30)).await;
    assert_quiet_after(&mut barrier, || async {
        assert_eq!(settled_replica_sets(&client, n, "web").await, 2, "exactly one rollout");
        let t = pod_template(&client, n, "Deployment", "web").await.unwrap();
        assert_eq!(env_value(&t, "app", "STAKATER_CFG_CONFIGMAP"), Some(sha1_hex(b"key=v2")));
    })
    .await;
    c.stop();

    // And a clean restart rolls nothing.
    let _c = ControllerProcess::start(BIN, &args).await;
    assert_quiet_after(&mut barrier, || async {
        assert_eq!(settled_replica_sets(&client, n, "web").await, 2, "a clean restart rolls nothing");
    })
    .await;
}
