//! The baseline store on the real apiserver: a controller with its own
//! namespace records never-reloaded workloads in a few ConfigMaps there
//! instead of patching each workload, and still rolls every change made
//! while it was down exactly once.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client};
use pod_reloader_testsupport::{ControllerProcess, TestNamespace, admin_client, wait_for};
use serde_json::json;

const WRITTEN: &str = "baseline store shard written";

fn auto() -> serde_json::Value {
    json!({"reloader.stakater.com/auto": "true"})
}

/// A controller on `n` keeping its baselines in `store_ns` (its own namespace).
async fn start(n: &str, store_ns: &str, pod: &str) -> ControllerProcess {
    let args = [format!("--namespaces={n}"), "--coalesce-window=0".to_string()];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut p = ControllerProcess::spawn_with_env(BIN, &args, &[("POD_NAME", pod), ("POD_NAMESPACE", store_ns)]);
    p.wait_ready(Duration::from_secs(60)).await;
    p
}

/// `count` Deployments `web-<i>` following ConfigMap `cfg`, each with its
/// first ReplicaSet and observed by kube-controller-manager.
async fn followers(client: &Client, n: &str, count: usize) -> Vec<String> {
    let names: Vec<String> = (0..count).map(|i| format!("web-{i}")).collect();
    for name in &names {
        let spec = pod_spec(Res::ConfigMap, "cfg", Use::EnvFrom);
        create(client, n, workload("Deployment", name, &auto(), &json!({}), spec)).await;
    }
    for name in &names {
        wait_replica_sets(client, n, name, 1, Duration::from_secs(60)).await;
        settled_replica_sets(client, n, name).await;
    }
    names
}

/// resourceVersion of every Deployment and ReplicaSet in `n`, by kind/name.
/// What a write by the controller would change, per Deployment and
/// ReplicaSet: generation, annotations (a record on a Deployment is copied to
/// its ReplicaSet by kube-controller-manager) and whether pod-reloader manages
/// a field. Not the resourceVersion: kube-controller-manager's status writes
/// to freshly created objects move it while the test runs.
async fn versions(client: &Client, n: &str) -> BTreeMap<String, String> {
    fn fingerprint(meta: &kube::api::ObjectMeta) -> String {
        let ours = meta.managed_fields.iter().flatten().any(|f| f.manager.as_deref() == Some("pod-reloader"));
        format!("generation={:?} annotations={:?} pod-reloader-manages={ours}", meta.generation, meta.annotations)
    }
    let mut out = BTreeMap::new();
    let d: Api<Deployment> = Api::namespaced(client.clone(), n);
    for o in d.list(&ListParams::default()).await.unwrap().items {
        out.insert(format!("Deployment/{}", o.metadata.name.clone().unwrap()), fingerprint(&o.metadata));
    }
    let rs: Api<ReplicaSet> = Api::namespaced(client.clone(), n);
    for o in rs.list(&ListParams::default()).await.unwrap().items {
        out.insert(format!("ReplicaSet/{}", o.metadata.name.clone().unwrap()), fingerprint(&o.metadata));
    }
    out
}

/// The objects of `before` a write changed (`skip`: names to leave out).
fn changed(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>, skip: &str) -> Vec<String> {
    before.iter().filter(|(k, v)| !k.contains(skip) && after.get(*k) != Some(v)).map(|(k, _)| k.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_writes_only_the_store_and_a_change_while_down_rolls_each_follower_once() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "store-first").await;
    let store = TestNamespace::create(&client, "store-own").await;
    let (n, s) = (ns.name.as_str(), store.name.as_str());
    create(&client, n, configmap("cfg", json!({"key": "v1"}), json!({}), json!({}))).await;
    let count = 12;
    let names = followers(&client, n, count).await;
    let mut barrier = Barrier::create(&client, n, &[Res::ConfigMap], json!({})).await;
    wait_replica_sets(&client, n, "barrier-cm", 1, Duration::from_secs(60)).await;
    let before = versions(&client, n).await;

    // First start: every follower's baseline lands in the store, none on a workload.
    let mut c = start(n, s, "store-a").await;
    for name in &names {
        wait_stored(&client, s, n, name, "ConfigMap/cfg", Some(&sha1_hex(b"key=v1"))).await;
    }
    barrier.wait_followed_in_store(s).await;
    assert_quiet_after(&mut barrier, || async {
        let after = versions(&client, n).await;
        let touched = changed(&before, &after, "barrier-cm");
        assert!(touched.is_empty(), "first start wrote workloads or their ReplicaSets: {touched:?}");
    })
    .await;
    let writes = c.logs().matches(WRITTEN).count();
    let shards = stored_records(&client, s).await.len();
    assert_eq!(shards, count + 1, "every follower and the sentinel in the store");
    assert!((1..=3).contains(&writes), "{writes} shard writes for {shards} workloads");
    println!("first start: {writes} shard write(s) for {shards} workloads, 0 workload writes");
    c.stop();

    // Changed while nobody watches: the next start rolls each follower once,
    // knowing what they ran from the store alone.
    set_value(&client, n, Res::ConfigMap, "cfg", "v2").await;
    let mut c = start(n, s, "store-b").await;
    for name in &names {
        wait_replica_sets(&client, n, name, 2, Duration::from_secs(60)).await;
    }
    assert_quiet_after(&mut barrier, || async {
        for name in &names {
            assert_eq!(settled_replica_sets(&client, n, name).await, 2, "{name}: exactly one rollout");
        }
    })
    .await;
    c.stop();

    let c = start(n, s, "store-c").await;
    let before = versions(&client, n).await;
    assert_quiet_after(&mut barrier, || async {
        for name in &names {
            assert_eq!(settled_replica_sets(&client, n, name).await, 2, "{name}: a clean restart rolls nothing");
        }
        let touched = changed(&before, &versions(&client, n).await, "barrier-cm");
        assert!(touched.is_empty(), "a clean restart writes no workload: {touched:?}");
    })
    .await;
    assert_eq!(c.logs().matches(WRITTEN).count(), 0, "a clean restart writes no shard either");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_shard_is_written_again_and_nothing_rolls() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "store-del").await;
    let store = TestNamespace::create(&client, "store-delown").await;
    let (n, s) = (ns.name.as_str(), store.name.as_str());
    create(&client, n, configmap("cfg", json!({"key": "v1"}), json!({}), json!({}))).await;
    let names = followers(&client, n, 4).await;
    let mut barrier = Barrier::create(&client, n, &[Res::ConfigMap], json!({})).await;
    wait_replica_sets(&client, n, "barrier-cm", 1, Duration::from_secs(60)).await;
    let _c = start(n, s, "store-del").await;
    for name in &names {
        wait_stored(&client, s, n, name, "ConfigMap/cfg", Some(&sha1_hex(b"key=v1"))).await;
    }
    barrier.wait_followed_in_store(s).await;
    let before = versions(&client, n).await;
    let first = stored_records(&client, s).await;

    // A user deletes the store.
    let shards: Api<ConfigMap> = Api::namespaced(client.clone(), s);
    let label = format!("{}=true", pod_reloader_core::baseline_store::STORE_LABEL);
    let listed = shards.list(&ListParams::default().labels(&label)).await.unwrap();
    assert!(!listed.items.is_empty());
    for cm in listed.items {
        shards.delete(&cm.metadata.name.unwrap(), &DeleteParams::default()).await.unwrap();
    }
    wait_for("the store to be written again", Duration::from_secs(30), || async {
        (stored_records(&client, s).await == first).then_some(())
    })
    .await;
    assert_quiet_after(&mut barrier, || async {
        let touched = changed(&before, &versions(&client, n).await, "barrier-cm");
        assert!(touched.is_empty(), "nothing rolls, no workload written: {touched:?}");
        for name in &names {
            assert_eq!(settled_replica_sets(&client, n, name).await, 1, "{name}");
        }
    })
    .await;
}

/// With a record key, the store holds a Secret's hash sealed, never its
/// bare SHA-1, and names the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_secret_baselines_are_sealed_under_the_record_key() {
    use pod_reloader_core::ContentHash;
    use pod_reloader_core::record::{KEY_LEN, RecordKey};
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "store-key").await;
    let store = TestNamespace::create(&client, "store-keyown").await;
    let (n, s) = (ns.name.as_str(), store.name.as_str());
    let dir = std::env::temp_dir().join(format!("pod-reloader-{n}"));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("key");
    let secret_key = [0x6bu8; KEY_LEN];
    std::fs::write(&key_file, secret_key).unwrap();
    let key = RecordKey::new(&secret_key).unwrap();
    create(&client, n, secret("tls", json!({"key": "hunter2"}), json!({}), json!({}))).await;
    let spec = pod_spec(Res::Secret, "tls", Use::EnvFrom);
    create(&client, n, workload("Deployment", "web", &auto(), &json!({}), spec)).await;
    let args = [
        format!("--namespaces={n}"),
        "--coalesce-window=0".into(),
        format!("--record-key-file={}", key_file.display()),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut c = ControllerProcess::spawn_with_env(BIN, &args, &[("POD_NAME", "store-key"), ("POD_NAMESPACE", s)]);
    c.wait_ready(Duration::from_secs(60)).await;
    let bare = sha1_hex(b"key=hunter2");
    let sealed = key.seal(ContentHash::parse_hex(&bare).unwrap()).to_string();
    wait_stored(&client, s, n, "web", "Secret/tls", Some(&sealed)).await;
    let uid = deployment_uid(&client, n, "web").await;
    let entry = stored_records(&client, s).await.remove(&uid).unwrap();
    assert_eq!(entry["keyId"], key.id().to_string(), "{entry}");
    let shards: Api<ConfigMap> = Api::namespaced(client.clone(), s);
    for cm in shards.list(&ListParams::default()).await.unwrap().items {
        let text = serde_json::to_string(&cm.data).unwrap();
        assert!(!text.contains(&bare), "a bare SHA-1 of the Secret in {:?}", cm.metadata.name);
    }
    c.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
