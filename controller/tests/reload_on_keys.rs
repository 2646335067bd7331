//! `reload-on-keys` (a pod-reloader extension, Reloader's issue #129): only
//! a change of a chosen key rolls the workload, on a live change and after
//! a restart, in both annotation families.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use k8s_openapi::ByteString;
use kube::api::{Patch, PatchParams};
use pod_reloader_core::chosen_keys::{ChosenKeys, KeyDigests};
use pod_reloader_core::hash::{configmap_hash, secret_hash};
use pod_reloader_testsupport::{ControllerProcess, TestNamespace, admin_client, wait_for};
use serde_json::{Value, json};

const RECORD: &str = "pod-reloader.deckhouse.io/reloaded-hashes";

/// What a workload choosing key `a` rolls to for ConfigMap data `{a, b}`.
fn cm_digest(a: &str, b: &str) -> String {
    let data = BTreeMap::from([("a".to_string(), a.to_string()), ("b".to_string(), b.to_string())]);
    let d = KeyDigests::of_configmap(configmap_hash(Some(&data), None), Some(&data), None, ["a"]);
    d.digest(&ChosenKeys::from(["a"])).expect("a digested").to_hex()
}

/// The same for Secret data `{a, b}`.
fn secret_digest(a: &str, b: &str) -> String {
    let data = BTreeMap::from([
        ("a".to_string(), ByteString(a.as_bytes().to_vec())),
        ("b".to_string(), ByteString(b.as_bytes().to_vec())),
    ]);
    let d = KeyDigests::of_secret(secret_hash(Some(&data)), Some(&data), ["a"]);
    d.digest(&ChosenKeys::from(["a"])).expect("a digested").to_hex()
}

/// Sets keys of ConfigMap `cfg` or Secret `sec` (a merge: other keys stay).
async fn set_keys(client: &kube::Client, ns: &str, res: Res, name: &str, keys: Value) {
    let body = match res {
        Res::ConfigMap => json!({"data": keys}),
        Res::Secret => json!({"stringData": keys}),
    };
    dyn_api(client, ns, res.kind())
        .patch(name, &PatchParams::default(), &Patch::Merge(body))
        .await
        .unwrap_or_else(|e| panic!("update {} {ns}/{name}: {e}", res.kind()));
}

async fn wait_record(client: &kube::Client, ns: &str, name: &str, resource: &str, hash: &str) {
    wait_for(&format!("record of {ns}/{name} to hold {resource}={hash}"), Duration::from_secs(30), || async {
        let d = dyn_api(client, ns, "Deployment").get(name).await.ok()?;
        let record: Value = serde_json::from_str(d.metadata.annotations?.get(RECORD)?).ok()?;
        (record[resource] == hash).then_some(())
    })
    .await;
}

/// The env var Reloader's strategy sets on `name` for `resource`.
async fn env_of(client: &kube::Client, ns: &str, name: &str, var: &str) -> Option<String> {
    env_value(&pod_template(client, ns, "Deployment", name).await?, "app", var)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_change_of_a_chosen_key_rolls() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "onkeys").await;
    let n = ns.name.as_str();
    create(&client, n, configmap("cfg", json!({"a": "1", "b": "1"}), json!({}), json!({}))).await;
    create(&client, n, secret("sec", json!({"a": "1", "b": "1"}), json!({}), json!({}))).await;
    // One workload per annotation family: Reloader's spelling on the
    // ConfigMap follower, Deckhouse's on the Secret follower.
    let stakater = json!({"reloader.stakater.com/auto": "true", "reloader.stakater.com/reload-on-keys": "a"});
    let deckhouse = json!({"pod-reloader.deckhouse.io/auto": "true", "pod-reloader.deckhouse.io/reload-on-keys": "a"});
    create(
        &client,
        n,
        workload("Deployment", "web-cm", &stakater, &json!({}), pod_spec(Res::ConfigMap, "cfg", Use::EnvFrom)),
    )
    .await;
    create(
        &client,
        n,
        workload("Deployment", "web-sec", &deckhouse, &json!({}), pod_spec(Res::Secret, "sec", Use::EnvFrom)),
    )
    .await;
    let mut barrier = Barrier::create(&client, n, &[Res::ConfigMap, Res::Secret], json!({})).await;
    let args = [format!("--namespaces={n}"), "--coalesce-window=0".to_string()];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _c = ControllerProcess::start(BIN, &args).await;

    // First sight: the record holds the digest of the chosen key, not the whole hash.
    wait_record(&client, n, "web-cm", "ConfigMap/cfg", &cm_digest("1", "1")).await;
    wait_record(&client, n, "web-sec", "Secret/sec", &secret_digest("1", "1")).await;
    barrier.wait_followed().await;
    for w in ["web-cm", "web-sec"] {
        assert_eq!(settled_replica_sets(&client, n, w).await, 1, "{w}: a baseline never rolls");
    }

    // A change of b only: nothing rolls.
    set_keys(&client, n, Res::ConfigMap, "cfg", json!({"b": "2"})).await;
    set_keys(&client, n, Res::Secret, "sec", json!({"b": "2"})).await;
    assert_quiet_after(&mut barrier, || async {
        for w in ["web-cm", "web-sec"] {
            assert_eq!(settled_replica_sets(&client, n, w).await, 1, "{w}: b is not a chosen key");
        }
    })
    .await;

    // A change of a: exactly one rollout each, to the digest of a.
    set_keys(&client, n, Res::ConfigMap, "cfg", json!({"a": "2"})).await;
    set_keys(&client, n, Res::Secret, "sec", json!({"a": "2"})).await;
    wait_record(&client, n, "web-cm", "ConfigMap/cfg", &cm_digest("2", "2")).await;
    wait_record(&client, n, "web-sec", "Secret/sec", &secret_digest("2", "2")).await;
    assert_eq!(env_of(&client, n, "web-cm", "STAKATER_CFG_CONFIGMAP").await, Some(cm_digest("2", "2")));
    assert_quiet_after(&mut barrier, || async {
        for w in ["web-cm", "web-sec"] {
            assert_eq!(settled_replica_sets(&client, n, w).await, 2, "{w}: exactly one rollout");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chosen_key_changed_while_down_rolls_once_and_another_key_rolls_nothing() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "onkeysdown").await;
    let n = ns.name.as_str();
    create(&client, n, configmap("cfg", json!({"a": "1", "b": "1"}), json!({}), json!({}))).await;
    let keys = json!({"reloader.stakater.com/auto": "true", "reloader.stakater.com/reload-on-keys": "a"});
    create(&client, n, workload("Deployment", "web", &keys, &json!({}), pod_spec(Res::ConfigMap, "cfg", Use::EnvFrom)))
        .await;
    let mut barrier = Barrier::create(&client, n, &[Res::ConfigMap], json!({})).await;
    wait_replica_sets(&client, n, "web", 1, Duration::from_secs(30)).await;
    let args = [format!("--namespaces={n}"), "--coalesce-window=0".to_string()];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let mut c = ControllerProcess::start(BIN, &args).await;
    wait_record(&client, n, "web", "ConfigMap/cfg", &cm_digest("1", "1")).await;
    barrier.wait_followed().await;
    c.stop();

    // a changed while nobody watched: the next start rolls web once.
    set_keys(&client, n, Res::ConfigMap, "cfg", json!({"a": "2", "b": "2"})).await;
    let mut c = ControllerProcess::start(BIN, &args).await;
    wait_replica_sets(&client, n, "web", 2, Duration::from_secs(30)).await;
    wait_record(&client, n, "web", "ConfigMap/cfg", &cm_digest("2", "2")).await;
    assert_quiet_after(&mut barrier, || async {
        assert_eq!(settled_replica_sets(&client, n, "web").await, 2, "exactly one rollout");
    })
    .await;
    c.stop();

    // Only b changed while down: the next start rolls nothing.
    set_keys(&client, n, Res::ConfigMap, "cfg", json!({"b": "3"})).await;
    let _c = ControllerProcess::start(BIN, &args).await;
    assert_quiet_after(&mut barrier, || async {
        assert_eq!(settled_replica_sets(&client, n, "web").await, 2, "b is not a chosen key");
    })
    .await;
    let record =
        dyn_api(&client, n, "Deployment").get("web").await.unwrap().metadata.annotations.unwrap()[RECORD].clone();
    assert!(record.contains(&cm_digest("2", "3")), "the digest of a is unchanged by b: {record}");
}
