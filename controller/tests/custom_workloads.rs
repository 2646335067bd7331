//! `customWorkloads` on the real apiserver: a custom resource with a pod
//! template (testbed/crds/custom-workload.yaml: Widget, template at
//! `spec.runner.template`) is rolled like a built-in kind when the setting
//! lists it, with either reload strategy and either annotation family, and
//! left alone when it does not.

// Test code may unwrap (the workspace denies it in shipped code); clippy.toml
// covers #[test] functions, this covers the helpers beside them.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::api::{ApiResource, DynamicObject, PostParams};
use kube::{Api, Client};
use pod_reloader_testsupport::{ControllerProcess, TestNamespace, admin_client, wait_for};
use serde_json::{Value, json};

const FLAG: &str = "--custom-workload=workloads.pod-reloader.test/v1/Widget/widgets=spec.runner.template";

fn widgets(client: &Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource {
        group: "workloads.pod-reloader.test".into(),
        version: "v1".into(),
        api_version: "workloads.pod-reloader.test/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    Api::namespaced_with(client.clone(), ns, &ar)
}

async fn create_widget(client: &Client, ns: &str, name: &str, annotations: Value, spec: Value) {
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "workloads.pod-reloader.test/v1", "kind": "Widget",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"size": 3, "runner": {"template": {"metadata": {"labels": {"app": name}}, "spec": spec}}}
    }))
    .unwrap();
    widgets(client, ns).create(&PostParams::default(), &obj).await.unwrap();
}

async fn widget(client: &Client, ns: &str, name: &str) -> (PodTemplateSpec, Value) {
    let w = widgets(client, ns).get(name).await.unwrap();
    (serde_json::from_value(w.data["spec"]["runner"]["template"].clone()).unwrap(), w.data)
}

async fn controller(ns: &str, extra: &[&str]) -> ControllerProcess {
    let mut args = vec![format!("--namespaces={ns}"), "--coalesce-window=0".to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ControllerProcess::start(BIN, &args).await
}

async fn wait_widgets_indexed(c: &ControllerProcess, n: usize) {
    wait_for(&format!("{n} Widget(s) indexed"), Duration::from_secs(30), || async {
        (c.metric("reloader_watched_resources_total{kind=\"Widget\"}").await? as usize == n).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_custom_workload_is_rolled_with_env_vars() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "custom-env").await;
    let n = ns.name.as_str();
    create(&client, n, configmap("cfg", json!({"key": "v1"}), json!({}), json!({}))).await;
    create(&client, n, secret("creds", json!({"key": "s1"}), json!({}), json!({}))).await;
    create_widget(
        &client,
        n,
        "auto",
        json!({"reloader.stakater.com/auto": "true"}),
        pod_spec(Res::ConfigMap, "cfg", Use::EnvFrom),
    )
    .await;
    create_widget(
        &client,
        n,
        "named",
        json!({"pod-reloader.deckhouse.io/secret-reload": "creds"}),
        pod_spec(Res::Secret, "creds", Use::Volume),
    )
    .await;
    let c = controller(n, &[FLAG]).await;
    wait_widgets_indexed(&c, 2).await;

    set_value(&client, n, Res::ConfigMap, "cfg", "v2").await;
    set_value(&client, n, Res::Secret, "creds", "s2").await;
    let cm_hash = sha1_hex(b"key=v2");
    wait_for("Widget auto rolled", Duration::from_secs(30), || async {
        let (t, _) = widget(&client, n, "auto").await;
        (env_value(&t, "app", "STAKATER_CFG_CONFIGMAP")? == cm_hash).then_some(())
    })
    .await;
    let secret_hash = sha1_hex(b"key=s2");
    wait_for("Widget named rolled", Duration::from_secs(30), || async {
        let (t, _) = widget(&client, n, "named").await;
        (env_value(&t, "app", "STAKATER_CREDS_SECRET")? == secret_hash).then_some(())
    })
    .await;
    // The patch touched the template only: the rest of the spec is as created.
    let (t, data) = widget(&client, n, "auto").await;
    assert_eq!(data["spec"]["size"], 3);
    assert_eq!(t.metadata.unwrap().labels.unwrap()["app"], "auto");
    let events = wait_for("a Reloaded event on the Widget", Duration::from_secs(30), || async {
        let ev = events_for(&client, n, "auto").await;
        ev.iter().any(|(_, r, _)| r == "Reloaded").then_some(ev)
    })
    .await;
    assert!(events.iter().all(|(t, _, _)| t == "Normal"), "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_custom_workload_is_rolled_with_annotations() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "custom-ann").await;
    let n = ns.name.as_str();
    create(&client, n, configmap("cfg", json!({"key": "v1"}), json!({}), json!({}))).await;
    create_widget(
        &client,
        n,
        "w",
        json!({"pod-reloader.deckhouse.io/auto": "true"}),
        pod_spec(Res::ConfigMap, "cfg", Use::ValueFrom),
    )
    .await;
    let c = controller(n, &[FLAG, "--reload-strategy=annotations"]).await;
    wait_widgets_indexed(&c, 1).await;
    set_value(&client, n, Res::ConfigMap, "cfg", "v2").await;
    let hash = sha1_hex(b"key=v2");
    wait_for("Widget rolled by annotation", Duration::from_secs(30), || async {
        let (t, _) = widget(&client, n, "w").await;
        let from = last_reloaded_from(&t)?;
        (from["hash"] == hash.as_str() && from["name"] == "cfg").then_some(())
    })
    .await;
    let (t, _) = widget(&client, n, "w").await;
    assert!(all_env_names(&t).is_empty(), "annotations strategy: no env var");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlisted_custom_workload_is_left_alone() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "custom-off").await;
    let n = ns.name.as_str();
    create(&client, n, configmap("cfg", json!({"key": "v1"}), json!({}), json!({}))).await;
    create_widget(
        &client,
        n,
        "w",
        json!({"reloader.stakater.com/auto": "true"}),
        pod_spec(Res::ConfigMap, "cfg", Use::EnvFrom),
    )
    .await;
    let mut barrier = Barrier::create(&client, n, &[Res::ConfigMap], json!({})).await;
    let c = controller(n, &[]).await;
    barrier.wait_followed().await;
    set_value(&client, n, Res::ConfigMap, "cfg", "v2").await;
    assert_quiet_after(&mut barrier, || async {
        let (t, data) = widget(&client, n, "w").await;
        assert!(all_env_names(&t).is_empty(), "not listed: not rolled");
        assert!(last_reloaded_from(&t).is_none());
        assert_eq!(data["spec"]["size"], 3);
    })
    .await;
    assert!(c.metric("reloader_watched_resources_total{kind=\"Widget\"}").await.is_none(), "not watched");
}
