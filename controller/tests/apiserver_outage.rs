//! The controller outlives kube-apiserver being gone for 30 s: no crash,
//! readiness reflects the outage, and a change made right after the
//! apiserver returns (while the watches are still backing off) is rolled
//! once. This file holds one test on purpose: it stops the shared test
//! bed's apiserver, and cargo runs test files one after another.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use pod_reloader_testsupport::{ControllerProcess, TestNamespace, admin_client, repo_root, wait_for};
use serde_json::json;

fn testbed(cmd: &str) {
    let status = Command::new(repo_root().join("testbed/testbed.sh")).arg(cmd).status().expect("run testbed.sh");
    assert!(status.success(), "testbed.sh {cmd} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_survives_an_apiserver_outage() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "outage").await;
    let n = ns.name.clone();
    create(&client, &n, configmap("cfg", json!({"key": "v1"}), json!({}), json!({}))).await;
    let auto = json!({"reloader.stakater.com/auto": "true"});
    create(
        &client,
        &n,
        workload("Deployment", "web", &auto, &json!({}), pod_spec(Res::ConfigMap, "cfg", Use::EnvFrom)),
    )
    .await;
    let mut barrier = Barrier::create(&client, &n, &[Res::ConfigMap], json!({})).await;
    wait_replica_sets(&client, &n, "web", 1, Duration::from_secs(30)).await;
    let mut c = ControllerProcess::start(BIN, &[&format!("--namespaces={n}"), "--coalesce-window=0"]).await;
    wait_for("baseline record", Duration::from_secs(30), || async {
        let d = dyn_api(&client, &n, "Deployment").get("web").await.ok()?;
        d.metadata.annotations?.contains_key("pod-reloader.deckhouse.io/reloaded-hashes").then_some(())
    })
    .await;

    let down = Instant::now();
    testbed("stop-apiserver");
    wait_for("readiness to report the outage", Duration::from_secs(40), || async {
        c.get("/readyz").await.is_some_and(|(code, _)| code != 200).then_some(())
    })
    .await;
    if let Some(left) = Duration::from_secs(30).checked_sub(down.elapsed()) {
        tokio::time::sleep(left).await;
    }
    assert!(c.get("/healthz").await.is_some_and(|(code, _)| code == 200), "alive during the outage");
    testbed("start-apiserver");
    testbed("up"); // restarts kube-controller-manager if the outage stopped it

    set_value(&client, &n, Res::ConfigMap, "cfg", "v2").await;
    let edited = Instant::now();
    wait_for("the change rolled into the template", Duration::from_secs(30), || async {
        let t = pod_template(&client, &n, "Deployment", "web").await?;
        (env_value(&t, "app", "STAKATER_CFG_CONFIGMAP")? == sha1_hex(b"key=v2")).then_some(())
    })
    .await;
    eprintln!("outage: rolled {:?} after the edit", edited.elapsed());
    // kube-controller-manager recovers from the outage at its own pace.
    wait_replica_sets(&client, &n, "web", 2, Duration::from_secs(120)).await;
    c.wait_ready(Duration::from_secs(60)).await;
    assert_quiet_after(&mut barrier, || async {
        assert_eq!(settled_replica_sets(&client, &n, "web").await, 2, "exactly one rollout");
    })
    .await;
    assert_eq!(c.wait_exit(Duration::from_millis(10)).await, None, "the controller never exited");
}
