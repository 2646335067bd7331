//! SecretProviderClasses of the Secrets Store CSI driver on the real
//! apiserver (the driver's CRDs from testbed/crds/secrets-store-csi.yaml).
//! The tests play the driver: one SecretProviderClassPodStatus per pod,
//! whose `status.objects[].version` they rewrite as the driver does when it
//! rotates a secret. Expected values are computed here with `sha1` over
//! Reloader's canonical string, independently of the controller's code.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Api, Client};
use pod_reloader_testsupport::{ControllerProcess, TestNamespace, admin_client, wait_for};
use serde_json::{Value, json};

const VAR: &str = "STAKATER_VAULT_DB_SECRETPROVIDERCLASS";

fn csi_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "secrets-store.csi.x-k8s.io".into(),
        version: "v1".into(),
        api_version: "secrets-store.csi.x-k8s.io/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

fn pod_statuses(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        ns,
        &csi_resource("SecretProviderClassPodStatus", "secretproviderclasspodstatuses"),
    )
}

/// Reloader's hash of a status naming `class` with one object `db/password` at `version`.
fn expected_hash(class: &str, version: &str) -> String {
    sha1_hex(format!("SecretProviderClassName={class};db/password={version}").as_bytes())
}

/// The class, as a user writes it.
async fn create_class(client: &Client, ns: &str, name: &str) {
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
        "metadata": {"name": name},
        "spec": {"provider": "vault", "parameters": {"objects": "- objectName: db/password"}}
    }))
    .unwrap();
    Api::namespaced_with(client.clone(), ns, &csi_resource("SecretProviderClass", "secretproviderclasses"))
        .create(&Default::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("create SecretProviderClass {ns}/{name}: {e}"));
}

/// The status object the driver writes when it mounts `class` into `pod`.
async fn mount(client: &Client, ns: &str, pod: &str, class: &str, version: &str) {
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClassPodStatus",
        "metadata": {"name": format!("{pod}-{ns}-{class}"), "labels": {"internal.secrets-store.csi.k8s.io/node-name": "node-1"}},
        "status": {
            "podName": pod, "secretProviderClassName": class, "mounted": true,
            "targetPath": format!("/var/lib/kubelet/pods/{pod}/volumes/kubernetes.io~csi/secrets/mount"),
            "objects": [{"id": "db/password", "version": version}]
        }
    }))
    .unwrap();
    pod_statuses(client, ns)
        .create(&Default::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("create status {pod}: {e}"));
}

/// The driver's rotation: new versions in the status object of `pod`.
async fn rotate(client: &Client, ns: &str, pod: &str, class: &str, version: &str) {
    let patch = json!({"status": {"objects": [{"id": "db/password", "version": version}]}});
    pod_statuses(client, ns)
        .patch(&format!("{pod}-{ns}-{class}"), &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap_or_else(|e| panic!("rotate {pod}: {e}"));
}

/// A pod template mounting `class` through a Secrets Store CSI volume.
fn csi_spec(class: &str) -> Value {
    json!({
        "containers": [
            {"name": "side", "image": "registry.invalid/side:1"},
            {"name": "app", "image": "registry.invalid/app:1", "volumeMounts": [{"name": "secrets", "mountPath": "/mnt/secrets"}]}
        ],
        "volumes": [{"name": "secrets", "csi": {"driver": "secrets-store.csi.k8s.io", "readOnly": true,
            "volumeAttributes": {"secretProviderClass": class}}}]
    })
}

/// A sentinel on the status-object stream: class `barrier-spc`, mounted and
/// followed (`auto`) by Deployment `barrier-spc`. Rotating it after the
/// change under test and seeing it roll shows the controller has decided
/// on every earlier event of that stream (see `common::Barrier`).
struct SpcBarrier {
    client: Client,
    ns: String,
    rounds: usize,
}

impl SpcBarrier {
    async fn create(client: &Client, ns: &str) -> Self {
        create_class(client, ns, "barrier-spc").await;
        mount(client, ns, "barrier-pod", "barrier-spc", "0").await;
        let auto = json!({"reloader.stakater.com/auto": "true"});
        create(client, ns, workload("Deployment", "barrier-spc", &auto, &json!({}), csi_spec("barrier-spc"))).await;
        SpcBarrier { client: client.clone(), ns: ns.to_string(), rounds: 0 }
    }

    async fn pass(&mut self) {
        self.rounds += 1;
        let version = self.rounds.to_string();
        rotate(&self.client, &self.ns, "barrier-pod", "barrier-spc", &version).await;
        let want = expected_hash("barrier-spc", &version);
        wait_for("the sentinel class's Deployment to roll (barrier)", Duration::from_secs(45), || async {
            let t = pod_template(&self.client, &self.ns, "Deployment", "barrier-spc").await?;
            (env_value(&t, "app", "STAKATER_BARRIER_SPC_SECRETPROVIDERCLASS")? == want).then_some(())
        })
        .await;
    }
}

/// Waits until the controller recorded what `deployment` runs of class `vault-db`.
async fn wait_baseline(client: &Client, ns: &str, deployment: &str) {
    wait_for(&format!("a record of vault-db on {deployment}"), Duration::from_secs(45), || async {
        let d = dyn_api(client, ns, "Deployment").get(deployment).await.ok()?;
        let record = d.metadata.annotations?.get(pod_reloader_core::record::RECORD_ANNOTATION)?.clone();
        record.contains("SecretProviderClass/vault-db").then_some(())
    })
    .await;
}

async fn start(ns: &str, csi: bool) -> ControllerProcess {
    let mut args = vec![format!("--namespaces={ns}"), "--coalesce-window=0".to_string()];
    if csi {
        args.push("--enable-csi-integration".into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ControllerProcess::start(BIN, &args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_object_version_rolls_the_listing_workloads_once() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "spc-list").await;
    let n = ns.name.as_str();
    create_class(&client, n, "vault-db").await;
    mount(&client, n, "web-1", "vault-db", "1").await;
    let c = start(n, true).await;
    let listed = json!({"secretproviderclass.reloader.stakater.com/reload": "vault-db"});
    create(&client, n, workload("Deployment", "web", &listed, &json!({}), csi_spec("vault-db"))).await;
    let deckhouse = json!({"pod-reloader.deckhouse.io/secretproviderclass-reload": "vault-.*"});
    create(&client, n, workload("Deployment", "dh", &deckhouse, &json!({}), csi_spec("vault-db"))).await;
    // Mounts the class but asks for nothing; a Secret list does not name a class.
    create(&client, n, workload("Deployment", "plain", &json!({}), &json!({}), csi_spec("vault-db"))).await;
    let secret_list = json!({"secret.reloader.stakater.com/reload": "vault-db"});
    create(&client, n, workload("Deployment", "secret-list", &secret_list, &json!({}), csi_spec("vault-db"))).await;
    let mut barrier = SpcBarrier::create(&client, n).await;
    for d in ["web", "dh"] {
        wait_baseline(&client, n, d).await;
    }
    wait_replica_sets(&client, n, "web", 1, Duration::from_secs(30)).await;

    rotate(&client, n, "web-1", "vault-db", "2").await;
    let want = expected_hash("vault-db", "2");
    for d in ["web", "dh"] {
        wait_for(&format!("{d} rolls to version 2"), Duration::from_secs(30), || async {
            let t = pod_template(&client, n, "Deployment", d).await?;
            (env_value(&t, "app", VAR)? == want).then_some(())
        })
        .await;
    }
    // The rollout's new pod mounts the class (a new status at version 2), the
    // old pod's status is updated without new versions: neither is a change.
    mount(&client, n, "web-2", "vault-db", "2").await;
    pod_statuses(&client, n)
        .patch(
            &format!("web-1-{n}-vault-db"),
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
        )
        .await
        .unwrap();
    assert_quiet_after_spc(&mut barrier, || async {
        assert_eq!(settled_replica_sets(&client, n, "web").await, 2, "web rolled exactly once");
        let t = pod_template(&client, n, "Deployment", "web").await.unwrap();
        assert_eq!(env_value(&t, "app", VAR).as_deref(), Some(want.as_str()), "on the container mounting it");
        assert_eq!(env_value(&t, "side", VAR), None);
        for d in ["plain", "secret-list"] {
            let t = pod_template(&client, n, "Deployment", d).await.unwrap();
            assert!(all_env_names(&t).is_empty(), "{d} must not reload: {:?}", all_env_names(&t));
        }
    })
    .await;
    // `explain` reads the classes the same way: in sync at the new version.
    let out = std::process::Command::new(BIN)
        .args(["explain", "deployment/web", "-n", n, "--enable-csi-integration"])
        .env("KUBECONFIG", pod_reloader_testsupport::kubeconfig_path())
        .output()
        .expect("run explain");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "explain failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(&format!("SecretProviderClass {n}/vault-db")), "{text}");
    assert!(text.contains(&format!("Current hash:  {}", &want[..12])), "{text}");
    assert!(text.contains("in sync") && text.contains(VAR), "{text}");
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_annotations_follow_the_mounted_class_and_excludes_win() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "spc-auto").await;
    let n = ns.name.as_str();
    create_class(&client, n, "vault-db").await;
    mount(&client, n, "web-1", "vault-db", "1").await;
    let c = start(n, true).await;
    let cases = [
        ("typed", json!({"secretproviderclass.reloader.stakater.com/auto": "true"}), true),
        ("typed-dh", json!({"secretproviderclass.pod-reloader.deckhouse.io/auto": "true"}), true),
        ("auto", json!({"reloader.stakater.com/auto": "true"}), true),
        ("secret-auto", json!({"secret.reloader.stakater.com/auto": "true"}), false),
        (
            "excluded",
            json!({"reloader.stakater.com/auto": "true",
                "secretproviderclasses.exclude.reloader.stakater.com/reload": "vault-db"}),
            false,
        ),
        (
            "excluded-dh",
            json!({"reloader.stakater.com/auto": "true",
                "secretproviderclasses.exclude.pod-reloader.deckhouse.io/reload": "vault-db"}),
            false,
        ),
    ];
    for (name, annotations, _) in &cases {
        create(&client, n, workload("Deployment", name, annotations, &json!({}), csi_spec("vault-db"))).await;
    }
    // Follows the class by auto but does not mount it.
    let auto = json!({"reloader.stakater.com/auto": "true"});
    create(
        &client,
        n,
        workload("Deployment", "unmounted", &auto, &json!({}), pod_spec(Res::ConfigMap, "x", Use::Nothing)),
    )
    .await;
    let mut barrier = SpcBarrier::create(&client, n).await;
    for (name, _, follows) in &cases {
        if *follows {
            wait_baseline(&client, n, name).await;
        }
    }
    rotate(&client, n, "web-1", "vault-db", "2").await;
    let want = expected_hash("vault-db", "2");
    for (name, _, follows) in &cases {
        if *follows {
            wait_for(&format!("{name} rolls to version 2"), Duration::from_secs(30), || async {
                let t = pod_template(&client, n, "Deployment", name).await?;
                (env_value(&t, "app", VAR)? == want).then_some(())
            })
            .await;
        }
    }
    assert_quiet_after_spc(&mut barrier, || async {
        for (name, _, follows) in &cases {
            if !*follows {
                let t = pod_template(&client, n, "Deployment", name).await.unwrap();
                assert!(all_env_names(&t).is_empty(), "{name} must not reload: {:?}", all_env_names(&t));
            }
        }
        let t = pod_template(&client, n, "Deployment", "unmounted").await.unwrap();
        assert!(all_env_names(&t).is_empty(), "auto needs the class mounted");
    })
    .await;
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_flag_classes_are_not_followed() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "spc-off").await;
    let n = ns.name.as_str();
    create_class(&client, n, "vault-db").await;
    mount(&client, n, "web-1", "vault-db", "1").await;
    let c = start(n, false).await;
    let listed = json!({"secretproviderclass.reloader.stakater.com/reload": "vault-db"});
    create(&client, n, workload("Deployment", "web", &listed, &json!({}), csi_spec("vault-db"))).await;
    // Without the flag no stream carries status objects, so no barrier
    // orders after the rotation; a ConfigMap sentinel edited after it
    // shows the controller was alive and working meanwhile, and the metric
    // shows it watches no class at all.
    let mut barrier = Barrier::create(&client, n, &[Res::ConfigMap], json!({})).await;
    barrier.wait_followed().await;
    rotate(&client, n, "web-1", "vault-db", "2").await;
    assert_quiet_after(&mut barrier, || async {
        let t = pod_template(&client, n, "Deployment", "web").await.unwrap();
        assert!(all_env_names(&t).is_empty(), "not followed without --enable-csi-integration");
        assert_eq!(settled_replica_sets(&client, n, "web").await, 1);
        assert_eq!(c.metric("reloader_watched_resources_total{kind=\"SecretProviderClass\"}").await, None);
    })
    .await;
    let logs = c.logs();
    assert!(!logs.contains("secretproviderclasspodstatuses"), "no SecretProviderClassPodStatus watch: {logs}");
    drop(c);
}

/// `common::assert_quiet_after` for the status-object stream.
async fn assert_quiet_after_spc<F, Fut>(barrier: &mut SpcBarrier, check: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    barrier.pass().await;
    check().await;
}
