//! Argo Rollouts with `spec.workloadRef` (Reloader #1090) on the real
//! apiserver (testbed/crds/argo-rollouts.yaml): the Rollout follows the
//! references of the Deployment it names, even when they change, and a
//! change reloads the Rollout through `spec.restartAt`, leaving the
//! Deployment's template alone.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use pod_reloader_core::record::RECORD_ANNOTATION;
use pod_reloader_testsupport::{ControllerProcess, TestNamespace, admin_client, wait_for};
use serde_json::{Value, json};

fn rollout_with_ref(name: &str, deployment: &str, annotations: Value) -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": deployment}},
                 "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment, "scaleDown": "never"},
                 "strategy": {"canary": {"steps": [{"setWeight": 50}]}}}})
}

/// The Rollout's record, once it holds an entry for `resource` with `hash`.
async fn wait_record(client: &kube::Client, ns: &str, rollout: &str, resource: &str, hash: &str) {
    wait_for(&format!("the Rollout's record to hold {resource}={hash}"), Duration::from_secs(30), || async {
        let ro = dyn_api(client, ns, "Rollout").get(rollout).await.ok()?;
        let record: Value = serde_json::from_str(ro.metadata.annotations?.get(RECORD_ANNOTATION)?).ok()?;
        (record[resource] == hash).then_some(())
    })
    .await;
}

async fn restart_at(client: &kube::Client, ns: &str, rollout: &str) -> Option<String> {
    let ro = dyn_api(client, ns, "Rollout").get(rollout).await.ok()?;
    ro.data["spec"]["restartAt"].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_with_workload_ref_follows_its_deployment_and_restarts() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "ro-ref").await;
    let n = ns.name.as_str();
    create(&client, n, configmap("cfg", json!({"key": "v1"}), json!({}), json!({}))).await;
    create(&client, n, secret("creds", json!({"key": "s1"}), json!({}), json!({}))).await;
    // The Deployment carries no annotation and is scaled to 0, as Argo's migration guide has it.
    let mut web = workload("Deployment", "web", &json!({}), &json!({}), pod_spec(Res::ConfigMap, "cfg", Use::EnvFrom));
    web["spec"]["replicas"] = json!(0);
    create(&client, n, web).await;
    create(&client, n, rollout_with_ref("ro", "web", json!({"reloader.stakater.com/auto": "true"}))).await;
    // A Rollout with the other annotation family, naming the Secret the Deployment gains below.
    create(
        &client,
        n,
        rollout_with_ref("ro-named", "web", json!({"pod-reloader.deckhouse.io/secret-reload": "creds"})),
    )
    .await;
    let _c = ControllerProcess::start(
        BIN,
        &[&format!("--namespaces={n}"), "--is-Argo-Rollouts=true", "--coalesce-window=0"],
    )
    .await;
    // Followed through the Deployment: the baseline record names the ConfigMap.
    wait_record(&client, n, "ro", "ConfigMap/cfg", &sha1_hex(b"key=v1")).await;
    assert_eq!(restart_at(&client, n, "ro").await, None, "a baseline restarts nothing");

    set_value(&client, n, Res::ConfigMap, "cfg", "v2").await;
    wait_record(&client, n, "ro", "ConfigMap/cfg", &sha1_hex(b"key=v2")).await;
    let first = restart_at(&client, n, "ro").await.expect("restartAt set by the reload");
    let ro = dyn_api(&client, n, "Rollout").get("ro").await.unwrap();
    assert!(ro.data["spec"].get("template").is_none(), "no template written onto a workloadRef Rollout");
    let t = pod_template(&client, n, "Deployment", "web").await.unwrap();
    assert!(all_env_names(&t).is_empty(), "the Deployment's template is left alone");
    assert_eq!(restart_at(&client, n, "ro-named").await, None, "ro-named follows the Secret only");

    // The Deployment's template changes to use the Secret too: the Rollouts follow it.
    let mut spec = pod_spec(Res::ConfigMap, "cfg", Use::EnvFrom);
    spec["containers"][0]["envFrom"].as_array_mut().unwrap().push(json!({"secretRef": {"name": "creds"}}));
    dyn_api(&client, n, "Deployment")
        .patch("web", &Default::default(), &kube::api::Patch::Merge(json!({"spec": {"template": {"spec": spec}}})))
        .await
        .unwrap();
    wait_record(&client, n, "ro-named", "Secret/creds", &sha1_hex(b"key=s1")).await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // restartAt has whole seconds
    set_value(&client, n, Res::Secret, "creds", "s2").await;
    wait_record(&client, n, "ro-named", "Secret/creds", &sha1_hex(b"key=s2")).await;
    wait_record(&client, n, "ro", "Secret/creds", &sha1_hex(b"key=s2")).await;
    assert!(restart_at(&client, n, "ro-named").await.is_some());
    let second = restart_at(&client, n, "ro").await.unwrap();
    assert_ne!(first, second, "the Secret's change restarted ro again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_what_a_workload_ref_rollout_follows() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "ro-ref-explain").await;
    let n = ns.name.as_str();
    create(&client, n, configmap("cfg", json!({"key": "v1"}), json!({}), json!({}))).await;
    let mut web = workload("Deployment", "web", &json!({}), &json!({}), pod_spec(Res::ConfigMap, "cfg", Use::EnvFrom));
    web["spec"]["replicas"] = json!(0);
    create(&client, n, web).await;
    create(&client, n, rollout_with_ref("ro", "web", json!({"reloader.stakater.com/auto": "true"}))).await;
    let out = std::process::Command::new(BIN)
        .args(["explain", "rollout/ro", "-n", n])
        .env("KUBECONFIG", pod_reloader_testsupport::kubeconfig_path())
        .output()
        .expect("run explain");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("Used by:       envFrom in app"), "the Deployment's ConfigMap is used: {text}");
    assert!(text.contains("Followed:      yes, auto annotation"), "{text}");
}
