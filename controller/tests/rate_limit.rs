//! The cluster-wide rollout rate limit (`maxRolloutsPerSecond`, Reloader
//! #220) on the real apiserver: ten Deployments following one ConfigMap,
//! two rollouts a second: every Deployment rolls exactly once, and the
//! controller's patches spread over at least four seconds.

// Test code may unwrap (the workspace denies it in shipped code); clippy.toml
// covers #[test] functions, this covers the helpers beside them.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use pod_reloader_testsupport::{ControllerProcess, TestNamespace, admin_client, repo_root, wait_for};
use serde_json::json;

const FOLLOWERS: usize = 10;

fn config(ns: &str) -> String {
    let dir = repo_root().join("target/test-logs");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("rate-limit-config-{}.yaml", std::process::id()));
    std::fs::write(&path, format!("namespaces: [{ns}]\ncoalesceWindow: \"0\"\nmaxRolloutsPerSecond: 2\n")).unwrap();
    path.display().to_string()
}

/// When the controller last wrote the Deployment (its managedFields entry).
async fn patched_at(api: &Api<Deployment>, name: &str) -> jiff::Timestamp {
    let d = api.get(name).await.unwrap();
    let entry = d
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .find(|f| f.manager.as_deref() == Some("pod-reloader"))
        .unwrap_or_else(|| panic!("{name}: no pod-reloader managedFields entry"));
    let time = entry.time.as_ref().expect("managedFields entry has a time");
    time.0.to_string().parse().expect("RFC 3339 time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_followers_at_two_per_second_roll_once_over_four_seconds() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "rate-limit").await;
    let n = ns.name.as_str();
    create(&client, n, configmap("shared", json!({"key": "v1"}), json!({}), json!({}))).await;
    let names: Vec<String> = (0..FOLLOWERS).map(|i| format!("app-{i}")).collect();
    let auto = json!({"reloader.stakater.com/auto": "true"});
    for name in &names {
        let spec = pod_spec(Res::ConfigMap, "shared", Use::EnvFrom);
        create(&client, n, workload("Deployment", name, &auto, &json!({}), spec)).await;
    }
    let mut barrier = Barrier::create(&client, n, &[Res::ConfigMap], json!({})).await;
    let c = ControllerProcess::start(BIN, &["--config", &config(n)]).await;
    barrier.wait_followed().await;
    for name in &names {
        wait_for(&format!("{name} ReplicaSet"), Duration::from_secs(30), || async {
            (replica_sets(&client, n, name).await == 1).then_some(())
        })
        .await;
    }

    set_value(&client, n, Res::ConfigMap, "shared", "v2").await;
    let hash = sha1_hex(b"key=v2");
    for name in &names {
        wait_for(&format!("{name} rolled"), Duration::from_secs(60), || async {
            let t = pod_template(&client, n, "Deployment", name).await?;
            (env_value(&t, "app", "STAKATER_SHARED_CONFIGMAP").as_deref() == Some(hash.as_str())).then_some(())
        })
        .await;
    }

    let api: Api<Deployment> = Api::namespaced(client.clone(), n);
    assert_quiet_after(&mut barrier, || async {
        let mut times = Vec::new();
        for name in &names {
            // Exactly once: one new ReplicaSet beside the first.
            wait_for(&format!("{name}'s second ReplicaSet"), Duration::from_secs(30), || async {
                (replica_sets(&client, n, name).await >= 2).then_some(())
            })
            .await;
            assert_eq!(replica_sets(&client, n, name).await, 2, "{name} rolled more than once");
            times.push(patched_at(&api, name).await);
        }
        times.sort();
        let spread = times[FOLLOWERS - 1].duration_since(times[0]);
        // 10 starts 0.5 s apart span 4.5 s; managedFields times are whole seconds.
        assert!(spread >= jiff::SignedDuration::from_secs(4), "patches spread over {spread:?} only: {times:?}");
        let delayed = c.metric("reloader_rollouts_delayed_total").await.expect("delayed counter");
        assert!(delayed >= (FOLLOWERS - 1) as f64, "all but the first rollout waited: {delayed}");
        assert_eq!(c.metric("reloader_rollout_queue_length").await, Some(0.0), "the queue is empty again");
    })
    .await;
}
