//! StatefulSets with `updateStrategy: OnDelete` on the real apiserver (with
//! kube-controller-manager, without a node): after a reload the controller
//! deletes their pods one at a time, highest ordinal first, each only after
//! the previous replacement is Ready; it resumes after a restart; a
//! StatefulSet that opts out, and every StatefulSet with the setting off,
//! only gets its template patched.
//!
//! Without a kubelet the pods kube-controller-manager creates stay Pending:
//! the test plays the kubelet and marks a pod Running and Ready through the
//! status subresource.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams};
use pod_reloader_testsupport::{ControllerProcess, TestNamespace, admin_client, wait_for};
use serde_json::{Value, json};

const PENDING: &str = "pod-reloader.deckhouse.io/on-delete-restart-pending";

fn on_delete_set(name: &str, replicas: i32, annotations: Value, cm: &str) -> Value {
    let mut s = workload("StatefulSet", name, &annotations, &json!({}), pod_spec(Res::ConfigMap, cm, Use::EnvFrom));
    s["spec"]["replicas"] = json!(replicas);
    s["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
    // Both pods at once: without a kubelet, OrderedReady would wait for web-0 to be Ready before creating web-1.
    s["spec"]["podManagementPolicy"] = json!("Parallel");
    s
}

async fn controller(ns: &str, extra: &[&str]) -> ControllerProcess {
    let mut args = vec![format!("--namespaces={ns}"), "--coalesce-window=100ms".into(), "--log-format=json".into()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ControllerProcess::start(BIN, &args).await
}

/// uid and `controller-revision-hash` of a pod, if it exists and is not being deleted.
async fn pod_now(pods: &Api<Pod>, name: &str) -> Option<(String, String)> {
    let p = pods.get_opt(name).await.ok()??;
    if p.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let revision = p.metadata.labels.as_ref()?.get("controller-revision-hash")?.clone();
    Some((p.metadata.uid?, revision))
}

async fn update_revision(sets: &Api<StatefulSet>, name: &str) -> Option<String> {
    let s = sets.get(name).await.ok()?;
    let status = s.status?;
    (status.observed_generation? >= s.metadata.generation?).then_some(status.update_revision?)
}

/// Plays the kubelet: the pod is Running and Ready.
async fn mark_ready(pods: &Api<Pod>, name: &str) {
    let now = jiff::Timestamp::now().round(jiff::Unit::Second).unwrap().to_string();
    let body = json!({"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": now},
        {"type": "ContainersReady", "status": "True", "lastTransitionTime": now}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(body))
        .await
        .unwrap_or_else(|e| panic!("mark pod {name} Ready: {e}"));
}

/// Waits until `name` is a new pod (not `old_uid`) at the StatefulSet's update revision; returns its uid.
async fn wait_replaced(pods: &Api<Pod>, sets: &Api<StatefulSet>, set: &str, name: &str, old_uid: &str) -> String {
    wait_for(&format!("pod {name} replaced at the update revision"), Duration::from_secs(45), || async {
        let (uid, revision) = pod_now(pods, name).await?;
        let target = update_revision(sets, set).await?;
        (uid != old_uid && revision == target).then_some(uid)
    })
    .await
}

/// The controller's JSON log lines that say it is waiting for `pod` to become Ready.
fn waits_for_ready(c: &ControllerProcess, pod: &str) -> usize {
    let want = format!("WaitReady {{ name: \"{pod}\" }}");
    c.logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == "OnDelete restart waiting" && l["step"] == want.as_str())
        .count()
}

fn restart_events(events: &[(String, String, String)]) -> Vec<String> {
    events.iter().filter(|(_, reason, _)| reason == "OnDeleteRestart").map(|(_, _, note)| note.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_delete_pods_restart_in_reverse_order_each_after_the_previous_is_ready() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "ondelete").await;
    let n = ns.name.as_str();
    let pods: Api<Pod> = ns.api();
    let sets: Api<StatefulSet> = ns.api();
    create(&client, n, configmap("cfg", json!({"key": "v1"}), json!({}), json!({}))).await;
    create(&client, n, on_delete_set("web", 2, json!({"reloader.stakater.com/auto": "true"}), "cfg")).await;
    // The other family, opted out: template patched, pod left alone.
    let opt_out =
        json!({"pod-reloader.deckhouse.io/auto": "true", "pod-reloader.deckhouse.io/on-delete-restart": "false"});
    create(&client, n, on_delete_set("keep", 1, opt_out, "cfg")).await;

    let mut c = controller(n, &["--log-level=debug"]).await;
    let (web0, rev0) = wait_for("pods web-0, web-1 and keep-0 created", Duration::from_secs(45), || async {
        let (web0, rev) = pod_now(&pods, "web-0").await?;
        pod_now(&pods, "web-1").await?;
        pod_now(&pods, "keep-0").await?;
        Some((web0, rev))
    })
    .await;
    let (web1, _) = pod_now(&pods, "web-1").await.unwrap();
    let (keep0, _) = pod_now(&pods, "keep-0").await.unwrap();
    wait_for("2 StatefulSets indexed", Duration::from_secs(30), || async {
        (c.metric("reloader_watched_resources_total{kind=\"StatefulSet\"}").await? as usize == 2).then_some(())
    })
    .await;

    set_value(&client, n, Res::ConfigMap, "cfg", "v2").await;

    // The highest ordinal goes first; the StatefulSet carries the pending marker meanwhile.
    let new_web1 = wait_replaced(&pods, &sets, "web", "web-1", &web1).await;
    let set = sets.get("web").await.unwrap();
    assert!(set.metadata.annotations.unwrap().contains_key(PENDING), "marked while restarting");
    // Barrier: the controller has looked twice since and found web-1's replacement not Ready.
    wait_for("two looks that wait for web-1 to be Ready", Duration::from_secs(30), || async {
        (waits_for_ready(&c, "web-1") >= 2).then_some(())
    })
    .await;
    assert_eq!(pod_now(&pods, "web-0").await, Some((web0.clone(), rev0)), "web-0 waits for web-1's replacement");

    // Opted out: its template carries the new hash, its pod is the same.
    let t = pod_template(&client, n, "StatefulSet", "keep").await.unwrap();
    assert_eq!(env_value(&t, "app", "STAKATER_CFG_CONFIGMAP").as_deref(), Some(sha1_hex(b"key=v2").as_str()));
    wait_for("the opt-out logged", Duration::from_secs(10), || async {
        c.logs().contains("OnDelete StatefulSet opted out").then_some(())
    })
    .await;
    assert_eq!(pod_now(&pods, "keep-0").await.map(|p| p.0), Some(keep0), "opted out: pod kept");

    // A restart of the controller in the middle: the new one resumes from the
    // pods' revisions and the marker (no ConfigMap change in between).
    c.stop();
    mark_ready(&pods, "web-1").await;
    let _c2 = controller(n, &[]).await;
    let new_web0 = wait_replaced(&pods, &sets, "web", "web-0", &web0).await;
    assert_eq!(pod_now(&pods, "web-1").await.map(|p| p.0), Some(new_web1), "web-1 is not restarted twice");

    // Done once web-0's replacement is Ready: the marker goes.
    mark_ready(&pods, "web-0").await;
    wait_for("the pending marker removed", Duration::from_secs(30), || async {
        let s = sets.get("web").await.ok()?;
        (!s.metadata.annotations.unwrap_or_default().contains_key(PENDING)).then_some(())
    })
    .await;
    assert_eq!(pod_now(&pods, "web-0").await.map(|p| p.0), Some(new_web0));

    let notes = restart_events(&events_for(&client, n, "web").await);
    assert_eq!(notes.len(), 2, "one Event per pod deleted: {notes:?}");
    assert!(notes.iter().any(|n| n.starts_with("Deleted pod web-1 ")), "{notes:?}");
    assert!(notes.iter().any(|n| n.starts_with("Deleted pod web-0 ")), "{notes:?}");
    assert!(restart_events(&events_for(&client, n, "keep").await).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_setting_off_on_delete_sets_are_only_patched() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "ondelete-off").await;
    let n = ns.name.as_str();
    let pods: Api<Pod> = ns.api();
    create(&client, n, configmap("cfg", json!({"key": "v1"}), json!({}), json!({}))).await;
    create(&client, n, on_delete_set("web", 1, json!({"reloader.stakater.com/auto": "true"}), "cfg")).await;
    let mut barrier = Barrier::create(&client, n, &[Res::ConfigMap], json!({})).await;
    let _c = controller(n, &["--statefulset-on-delete-restart=false"]).await;
    let (web0, _) =
        wait_for("pod web-0 created", Duration::from_secs(45), || async { pod_now(&pods, "web-0").await }).await;
    barrier.wait_followed().await;
    wait_for("the StatefulSet indexed", Duration::from_secs(30), || async {
        let s = dyn_api(&client, n, "StatefulSet").get("web").await.ok()?;
        s.metadata.annotations?.contains_key(pod_reloader_core::record::RECORD_ANNOTATION).then_some(())
    })
    .await;

    set_value(&client, n, Res::ConfigMap, "cfg", "v2").await;
    wait_for("web's template patched", Duration::from_secs(30), || async {
        let t = pod_template(&client, n, "StatefulSet", "web").await?;
        (env_value(&t, "app", "STAKATER_CFG_CONFIGMAP").as_deref() == Some(sha1_hex(b"key=v2").as_str())).then_some(())
    })
    .await;
    assert_quiet_after(&mut barrier, || async {
        assert_eq!(pod_now(&pods, "web-0").await.map(|p| p.0), Some(web0), "pod kept");
        let s = dyn_api(&client, n, "StatefulSet").get("web").await.unwrap();
        assert!(!s.metadata.annotations.unwrap_or_default().contains_key(PENDING), "never marked");
        assert!(restart_events(&events_for(&client, n, "web").await).is_empty());
    })
    .await;
}
