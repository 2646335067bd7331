//! No reload lost, none spurious: changes made while the controller is
//! down, migration from Reloader-written values, and leader failover.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use pod_reloader_testsupport::{ControllerProcess, TestNamespace, admin_client, wait_for};
use serde_json::json;

const RECORD: &str = "pod-reloader.deckhouse.io/reloaded-hashes";

fn auto() -> serde_json::Value {
    json!({"reloader.stakater.com/auto": "true"})
}

async fn record_of(client: &kube::Client, ns: &str, name: &str) -> Option<serde_json::Value> {
    let d = dyn_api(client, ns, "Deployment").get(name).await.ok()?;
    serde_json::from_str(d.metadata.annotations?.get(RECORD)?).ok()
}

async fn wait_record(client: &kube::Client, ns: &str, name: &str, resource: &str, hash: &str) {
    wait_for(&format!("record of {ns}/{name} to hold {resource}={hash}"), Duration::from_secs(30), || async {
        (record_of(client, ns, name).await?[resource] == hash).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_while_down_rolls_once_and_a_clean_restart_rolls_nothing() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "down").await;
    let n = ns.name.as_str();
    let args = [format!("--namespaces={n}"), "--coalesce-window=0".to_string()];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    create(&client, n, configmap("cfg", json!({"key": "v1"}), json!({}), json!({}))).await;
    create(
        &client,
        n,
        workload("Deployment", "web", &auto(), &json!({}), pod_spec(Res::ConfigMap, "cfg", Use::EnvFrom)),
    )
    .await;
    let mut barrier = Barrier::create(&client, n, &[Res::ConfigMap], json!({})).await;
    wait_replica_sets(&client, n, "web", 1, Duration::from_secs(30)).await;

    // First sight: a baseline record, no rollout.
    let mut c = ControllerProcess::start(BIN, &args).await;
    wait_record(&client, n, "web", "ConfigMap/cfg", &sha1_hex(b"key=v1")).await;
    barrier.wait_followed().await;
    c.stop();
    assert_eq!(settled_replica_sets(&client, n, "web").await, 1, "a baseline never rolls");

    // Edited while nobody watches: the next start rolls it, once.
    set_value(&client, n, Res::ConfigMap, "cfg", "v2").await;
    rolls_once_and_a_clean_restart_rolls_nothing(
        &client,
        n,
        &args,
        &mut barrier,
        "ConfigMap/cfg",
        &sha1_hex(b"key=v2"),
    )
    .await;
}

/// Starts the controller on `n`, where Deployment `web` was rolled once
/// (one ReplicaSet) and `resource` changed since: the start rolls `web`
/// exactly once and records `hash`; a restart without an edit rolls nothing.
/// `barrier` (ConfigMap sentinels in `n`, followed by the earlier run) is
/// passed under each controller once it is ready: a start's decisions come
/// before the sentinel's edit on the ConfigMap stream.
async fn rolls_once_and_a_clean_restart_rolls_nothing(
    client: &kube::Client,
    n: &str,
    args: &[&str],
    barrier: &mut Barrier,
    resource: &str,
    hash: &str,
) {
    let mut c = ControllerProcess::start(BIN, args).await;
    wait_replica_sets(client, n, "web", 2, Duration::from_secs(30)).await;
    wait_record(client, n, "web", resource, hash).await;
    assert_quiet_after(barrier, || async {
        assert_eq!(settled_replica_sets(client, n, "web").await, 2, "exactly one rollout");
    })
    .await;
    c.stop();

    let _c = ControllerProcess::start(BIN, args).await;
    assert_quiet_after(barrier, || async {
        assert_eq!(settled_replica_sets(client, n, "web").await, 2, "a clean restart rolls nothing");
    })
    .await;
}

/// A reload list names resources by regex, without a reference: they are
/// found among the ConfigMaps the controller knows, recorded on first sight,
/// and a change to one while the controller is down rolls the workload once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_list_names_changed_while_down_roll_once() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "listdown").await;
    let n = ns.name.as_str();
    let args = [format!("--namespaces={n}"), "--coalesce-window=0".to_string()];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    for name in ["base", "feature-a", "feature-b", "other"] {
        create(&client, n, configmap(name, json!({"key": "v1"}), json!({}), json!({}))).await;
    }
    // Uses only "base" (not followed: no auto), names feature-* in its list.
    let list = json!({"configmap.reloader.stakater.com/reload": "feature-.*"});
    create(
        &client,
        n,
        workload("Deployment", "web", &list, &json!({}), pod_spec(Res::ConfigMap, "base", Use::EnvFrom)),
    )
    .await;
    let mut barrier = Barrier::create(&client, n, &[Res::ConfigMap], json!({})).await;
    wait_replica_sets(&client, n, "web", 1, Duration::from_secs(30)).await;

    let mut c = ControllerProcess::start(BIN, &args).await;
    wait_record(&client, n, "web", "ConfigMap/feature-b", &sha1_hex(b"key=v1")).await;
    barrier.wait_followed().await;
    c.stop();
    let record = record_of(&client, n, "web").await.expect("a record");
    assert_eq!(record["ConfigMap/feature-a"], sha1_hex(b"key=v1"), "{record}");
    assert!(record.get("ConfigMap/other").is_none() && record.get("ConfigMap/base").is_none(), "{record}");
    assert_eq!(settled_replica_sets(&client, n, "web").await, 1, "a baseline never rolls");

    set_value(&client, n, Res::ConfigMap, "feature-b", "v2").await;
    set_value(&client, n, Res::ConfigMap, "other", "v2").await;
    let hash = sha1_hex(b"key=v2");
    rolls_once_and_a_clean_restart_rolls_nothing(&client, n, &args, &mut barrier, "ConfigMap/feature-b", &hash).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_from_reloader_values() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "migrate").await;
    let n = ns.name.as_str();
    let current = sha1_hex(b"key=v1");
    let stale = sha1_hex(b"key=v0");
    for name in ["env-current", "env-stale", "ann-current", "ann-stale"] {
        create(&client, n, configmap(&format!("cfg-{name}"), json!({"key": "v1"}), json!({}), json!({}))).await;
    }
    // Deployments as Stakater Reloader (or Deckhouse's earlier module) left them.
    for (name, hash) in [("env-current", &current), ("env-stale", &stale)] {
        let var = format!("STAKATER_CFG_{}_CONFIGMAP", name.to_uppercase().replace('-', "_"));
        let mut spec = pod_spec(Res::ConfigMap, &format!("cfg-{name}"), Use::EnvFrom);
        spec["containers"][0]["env"] = json!([{"name": var, "value": hash}]);
        create(&client, n, workload("Deployment", name, &auto(), &json!({}), spec)).await;
    }
    for (name, hash) in [("ann-current", &current), ("ann-stale", &stale)] {
        let last = json!({"type": "CONFIGMAP", "name": format!("cfg-{name}"), "namespace": n, "hash": hash,
            "containerRefs": ["app"], "observedAt": 1_700_000_000})
        .to_string();
        let tmpl = json!({"reloader.stakater.com/last-reloaded-from": last});
        let spec = pod_spec(Res::ConfigMap, &format!("cfg-{name}"), Use::EnvFrom);
        create(&client, n, workload("Deployment", name, &auto(), &tmpl, spec)).await;
    }
    let mut barrier = Barrier::create(&client, n, &[Res::ConfigMap], json!({})).await;
    for name in ["env-current", "env-stale", "ann-current", "ann-stale"] {
        wait_replica_sets(&client, n, name, 1, Duration::from_secs(30)).await;
    }
    let _env = ControllerProcess::start(BIN, &[&format!("--namespaces={n}"), "--coalesce-window=0"]).await;
    for name in ["env-stale", "ann-stale"] {
        wait_replica_sets(&client, n, name, 2, Duration::from_secs(30)).await;
    }
    for name in ["env-stale", "ann-stale"] {
        wait_record(&client, n, name, &format!("ConfigMap/cfg-{name}"), &current).await;
    }
    barrier.wait_followed().await;
    assert_quiet_after(&mut barrier, || async {
        for (name, want) in [("env-current", 1), ("ann-current", 1), ("env-stale", 2), ("ann-stale", 2)] {
            assert_eq!(settled_replica_sets(&client, n, name).await, want, "{name}");
        }
        // What their templates state is their record: nothing is written to them.
        for name in ["env-current", "ann-current"] {
            assert_eq!(record_of(&client, n, name).await, None, "{name}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_reloads_a_change_made_during_the_handover_once() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "failover").await;
    let n = ns.name.clone();
    create(&client, &n, configmap("cfg", json!({"key": "v1"}), json!({}), json!({}))).await;
    create(
        &client,
        &n,
        workload("Deployment", "web", &auto(), &json!({}), pod_spec(Res::ConfigMap, "cfg", Use::EnvFrom)),
    )
    .await;
    let mut barrier = Barrier::create(&client, &n, &[Res::ConfigMap], json!({})).await;
    wait_replica_sets(&client, &n, "web", 1, Duration::from_secs(30)).await;

    let args = [format!("--namespaces={n}"), "--enable-ha".to_string(), "--coalesce-window=0".to_string()];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut replicas = vec![];
    for id in ["replica-a", "replica-b"] {
        let env = [("POD_NAME", id), ("POD_NAMESPACE", n.as_str())];
        let mut p = ControllerProcess::spawn_with_env(BIN, &args, &env);
        p.wait_ready(Duration::from_secs(30)).await;
        replicas.push((id, p));
    }
    let leases: Api<Lease> = Api::namespaced(client.clone(), &n);
    let holder = wait_for("a leader", Duration::from_secs(30), || async {
        leases.get("pod-reloader").await.ok()?.spec?.holder_identity
    })
    .await;
    // With its own namespace the controller keeps baselines in the store there.
    wait_stored(&client, &n, &n, "web", "ConfigMap/cfg", Some(&sha1_hex(b"key=v1"))).await;
    barrier.wait_followed_in_store(&n).await;
    assert!(record_of(&client, &n, "web").await.is_none(), "no baseline written on the workload");

    // Kill the leader (no chance to release the lease) and edit during the handover.
    let pos = replicas.iter().position(|(id, _)| *id == holder).expect("holder is one of ours");
    let (_, mut leader) = replicas.remove(pos);
    leader.stop();
    let edited = std::time::Instant::now();
    set_value(&client, &n, Res::ConfigMap, "cfg", "v2").await;
    wait_replica_sets(&client, &n, "web", 2, Duration::from_secs(15)).await;
    let took = edited.elapsed();
    // Only the new leader can roll the sentinel: the barrier runs under it,
    // after its decisions on the change made during the handover.
    assert_quiet_after(&mut barrier, || async {
        assert_eq!(settled_replica_sets(&client, &n, "web").await, 2, "exactly one rollout");
    })
    .await;
    let new_holder = leases.get("pod-reloader").await.unwrap().spec.unwrap().holder_identity.unwrap();
    assert_ne!(new_holder, holder, "the standby took over");
    eprintln!("failover: rolled {took:?} after the edit");
}
