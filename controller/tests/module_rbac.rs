//! The RBAC the module renders, applied for real on the test bed, in the
//! three shapes it takes (cluster-wide, cluster-wide with leader election,
//! scoped to listed namespaces): the controller's ServiceAccount may do
//! exactly what the controller calls (SubjectAccessReviews for the
//! allowed and the refused verbs), a request under its token outside them
//! answers 403, and the controller binary, run with the rendered config and
//! only that token, rolls every workload kind with no 403 in its log (and
//! takes its Lease in the HA shape). The `csiIntegration` render (scoped)
//! adds the Secrets Store CSI driver's API, and nothing of it otherwise.
//!
//! One test: the shapes share the cluster-scoped ClusterRole and the
//! ServiceAccount, so they run one after the other.

use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use pod_reloader_moduletests::fixtures::{self, apply};
use pod_reloader_moduletests::render::{Render, list, render_named};
use pod_reloader_moduletests::yaml;
use pod_reloader_testsupport::{ControllerProcess, admin_client, kubeconfig_path, wait_for};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_pod-reloader");
const NS: &str = "d8-pod-reloader";
const SA: &str = "pod-reloader";
const SA_USER: &str = "system:serviceaccount:d8-pod-reloader:pod-reloader";
/// The name of the fixture's SecretProviderClassPodStatus (`csiIntegration`).
const CSI_STATUS: &str = "rbac-pod-rbac-spc";
/// The Secrets Store CSI driver's pod statuses and classes (`csiIntegration`).
const SPCPS: &str = "secretproviderclasspodstatuses.secrets-store.csi.x-k8s.io";
const SPC: &str = "secretproviderclasses.secrets-store.csi.x-k8s.io";

/// One access question: verb, `group/resource` (`resource` for the core
/// group), namespace (`None`: all namespaces or cluster-scoped), name.
struct Access<'a>(&'a str, &'a str, Option<&'a str>, Option<&'a str>);

/// What the API server answers for the ServiceAccount (with the groups the
/// API server gives every ServiceAccount token).
async fn allowed(client: &Client, a: &Access<'_>) -> bool {
    let (resource, group) = match a.1.split_once('.') {
        Some((r, g)) => (r, g),
        None => (a.1, ""),
    };
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(SA_USER.into()),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{NS}"),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(a.0.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                namespace: a.2.map(String::from),
                name: a.3.map(String::from),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("create SubjectAccessReview");
    answer.status.is_some_and(|s| s.allowed)
}

/// Every `can` is allowed and every `cannot` refused; the wrong ones listed.
async fn access(client: &Client, what: &str, can: &[Access<'_>], cannot: &[Access<'_>]) -> Vec<String> {
    let mut wrong = Vec::new();
    for (want, list) in [(true, can), (false, cannot)] {
        for a in list {
            if allowed(client, a).await != want {
                let ns = a.2.map(|n| format!(" -n {n}")).unwrap_or_else(|| " (all namespaces)".into());
                let name = a.3.map(|n| format!("/{n}")).unwrap_or_default();
                wrong.push(format!(
                    "{what}: {} {}{name}{ns} should be {}",
                    a.0,
                    a.1,
                    if want { "allowed" } else { "refused" }
                ));
            }
        }
    }
    wrong
}

/// The RBAC objects of a render (the ServiceAccount, roles, bindings; not
/// the `access-to-*` roles of the metrics endpoint).
fn rbac_objects(r: &Render) -> Value {
    list(
        r.objects
            .iter()
            .filter(|o| {
                ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"]
                    .contains(&o["kind"].as_str().unwrap_or_default())
                    && !o["metadata"]["name"].as_str().unwrap_or_default().starts_with("access-to-")
            })
            .cloned(),
    )
}

fn delete(doc: &Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = fixtures::write_objects(doc, dir.path());
    let _ = pod_reloader_moduletests::tools::run(
        pod_reloader_moduletests::tools::kubectl()
            .args(["delete", "--ignore-not-found", "--wait=false", "-f"])
            .arg(&file),
    );
}

/// A client and a kubeconfig file holding the ServiceAccount's token and nothing else.
async fn as_controller(admin: &Client, dir: &std::path::Path) -> (Client, std::path::PathBuf) {
    let request = TokenRequest {
        spec: TokenRequestSpec { expiration_seconds: Some(600), ..Default::default() },
        ..Default::default()
    };
    let token = Api::<ServiceAccount>::namespaced(admin.clone(), NS)
        .create_token_request(SA, &PostParams::default(), &request)
        .await
        .expect("token of the controller's ServiceAccount")
        .status
        .expect("token status")
        .token;
    let admin_config = Kubeconfig::read_from(kubeconfig_path()).expect("test bed kubeconfig");
    let cluster = serde_json::to_value(&admin_config.clusters[0]).expect("cluster");
    let kubeconfig = json!({
        "apiVersion": "v1", "kind": "Config", "clusters": [cluster],
        "users": [{"name": SA, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": cluster["name"], "user": SA}}],
        "current-context": "sa",
    });
    let path = dir.join("kubeconfig");
    std::fs::write(&path, kubeconfig.to_string()).expect("write kubeconfig");
    let parsed = Kubeconfig::read_from(&path).expect("ServiceAccount kubeconfig");
    let config = Config::from_custom_kubeconfig(parsed, &KubeConfigOptions::default()).await.expect("config");
    (Client::try_from(config).expect("client"), path)
}

fn deployment(name: &str, ns: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
           "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}},
                                 "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1"}]}}}})
}

fn deployments(client: &Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk("apps", "v1", "Deployment"));
    Api::namespaced_with(client.clone(), ns, &ar)
}

/// As the controller: patching a Deployment's pod template is allowed,
/// deleting it answers 403 Forbidden.
async fn requests_as_controller(sa: &Client, ns: &str, what: &str) -> Vec<String> {
    let mut wrong = Vec::new();
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {"reloader.stakater.com/last-reloaded-from": "test"}}}}});
    let api = deployments(sa, ns);
    if let Err(e) = api.patch("rbac-victim", &PatchParams::default(), &Patch::Merge(&patch)).await {
        wrong.push(format!("{what}: as the controller, patch of the Deployment in {ns} refused: {e}"));
    }
    match api.delete("rbac-victim", &DeleteParams::default()).await {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => {
            wrong.push(format!("{what}: as the controller, delete of the Deployment in {ns}: {other:?}, expected 403"))
        }
    }
    wrong
}

/// Workloads of every kind the controller rolls, each following one
/// ConfigMap; with `csi`, also a Deployment mounting SecretProviderClass
/// `rbac-spc`, whose pod status object (as the CSI driver writes it) is there.
fn fixture(ns: &str, argo: bool, csi: bool) -> Value {
    let pod = json!({"metadata": {"labels": {"app": "rbac-follower"}},
                     "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1",
                                              "envFrom": [{"configMapRef": {"name": "rbac-config"}}]}]}});
    let job_pod = json!({"spec": {"containers": pod["spec"]["containers"], "restartPolicy": "Never"}});
    let meta = json!({"name": "rbac-follower", "namespace": ns, "annotations": {"reloader.stakater.com/auto": "true"}});
    let sel = json!({"matchLabels": {"app": "rbac-follower"}});
    let mut docs = vec![
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "rbac-config", "namespace": ns}, "data": {"key": "one"}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": {"replicas": 0, "selector": sel, "template": pod}}),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta,
               "spec": {"replicas": 0, "serviceName": "rbac-follower", "selector": sel, "template": pod}}),
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta, "spec": {"selector": sel, "template": pod}}),
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta,
               "spec": {"schedule": "0 0 1 1 *", "suspend": true, "jobTemplate": {"spec": {"template": job_pod}}}}),
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": {"suspend": true, "template": job_pod}}),
    ];
    if argo {
        docs.push(json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": meta,
                         "spec": {"replicas": 0, "selector": sel, "template": pod}}));
    }
    if csi {
        let g = "secrets-store.csi.x-k8s.io/v1";
        docs.push(
            json!({"apiVersion": g, "kind": "SecretProviderClass", "metadata": {"name": "rbac-spc", "namespace": ns},
                         "spec": {"provider": "vault", "parameters": {"objects": "- objectName: db/password"}}}),
        );
        docs.push(json!({"apiVersion": g, "kind": "SecretProviderClassPodStatus",
                         "metadata": {"name": CSI_STATUS, "namespace": ns},
                         "status": {"podName": "rbac-pod", "secretProviderClassName": "rbac-spc", "mounted": true,
                                    "targetPath": "/var/lib/kubelet/pods/rbac-pod/volumes/kubernetes.io~csi/s/mount",
                                    "objects": [{"id": "db/password", "version": "1"}]}}));
        let sel = json!({"matchLabels": {"app": "rbac-csi"}});
        docs.push(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "rbac-csi", "namespace": ns,
                         "annotations": {"secretproviderclass.reloader.stakater.com/reload": "rbac-spc"}},
            "spec": {"replicas": 0, "selector": sel, "template": {"metadata": {"labels": {"app": "rbac-csi"}}, "spec": {
                "containers": [{"name": "app", "image": "registry.example.com/app:1",
                                "volumeMounts": [{"name": "s", "mountPath": "/mnt/s"}]}],
                "volumes": [{"name": "s", "csi": {"driver": "secrets-store.csi.k8s.io", "readOnly": true,
                                                  "volumeAttributes": {"secretProviderClass": "rbac-spc"}}}]}}}}));
    }
    list(docs)
}

/// The controller with the rendered config of `r` and only the
/// ServiceAccount's token: ready, rolls every kind in `ns` on a ConfigMap
/// change, logs no 403.
async fn controller_under_rbac(admin: &Client, r: &Render, ns: &str) -> Vec<String> {
    let what = &r.case.name;
    let mut wrong = Vec::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let cm = r.find("ConfigMap", Some("pod-reloader-config"), None);
    let text = cm[0]["data"]["config.yaml"].as_str().expect("config.yaml");
    std::fs::write(dir.path().join("config.yaml"), text).expect("write config");
    let argo = yaml::parse(text, "config.yaml")["argoRollouts"] == true;
    let csi = yaml::parse(text, "config.yaml")["csiIntegration"] == true;
    let (_, kubeconfig) = as_controller(admin, dir.path()).await;
    let objects = fixture(ns, argo, csi);
    delete(&objects);
    let out = apply(&objects);
    assert!(out.ok, "{what}: controller fixture:\n{}", out.output);
    let config = dir.path().join("config.yaml");
    let mut proc = ControllerProcess::spawn_with_env(
        BIN,
        &["--config", config.to_str().expect("utf-8")],
        &[
            ("KUBECONFIG", kubeconfig.to_str().expect("utf-8")),
            ("POD_NAME", "pod-reloader-test"),
            ("POD_NAMESPACE", NS),
        ],
    );
    proc.wait_ready(Duration::from_secs(30)).await;
    println!("{what}: the controller, with the rendered config and only its ServiceAccount, becomes ready");
    // With leader election, a change seen before the controller leads is
    // not rolled (it only becomes the baseline): wait until it holds its
    // Lease and has taken the lead.
    if yaml::parse(text, "config.yaml")["leaderElection"]["enabled"] == true {
        wait_for(&format!("{what}: the controller to hold its Lease and lead"), Duration::from_secs(60), || async {
            let holder = lease_holder(admin).await?;
            (holder == "pod-reloader-test" && proc.logs().contains(r#""leader":true"#)).then_some(())
        })
        .await;
    }
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(admin.clone(), ns);
    cms.patch("rbac-config", &PatchParams::default(), &Patch::Merge(json!({"data": {"key": "two"}})))
        .await
        .expect("change the ConfigMap");
    let mut kinds = vec![
        ("apps", "v1", "Deployment"),
        ("apps", "v1", "StatefulSet"),
        ("apps", "v1", "DaemonSet"),
        ("batch", "v1", "CronJob"),
        ("batch", "v1", "Job"),
    ];
    if argo {
        kinds.push(("argoproj.io", "v1alpha1", "Rollout"));
    }
    let mut pending = Vec::new();
    for (g, v, k) in &kinds {
        let ar = ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(g, v, k));
        let api: Api<DynamicObject> = Api::namespaced_with(admin.clone(), ns, &ar);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let obj = api.get("rbac-follower").await.ok().map(|o| serde_json::to_value(o).unwrap_or_default());
            let spec =
                obj.as_ref().map(|o| if *k == "CronJob" { &o["spec"]["jobTemplate"]["spec"] } else { &o["spec"] });
            let rolled = spec.is_some_and(|s| {
                s["template"]["spec"]["containers"][0]["env"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|e| e["name"] == "STAKATER_RBAC_CONFIG_CONFIGMAP"))
            });
            if rolled {
                break;
            }
            if std::time::Instant::now() > deadline {
                pending.push(*k);
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let names: Vec<&str> = kinds.iter().map(|k| k.2).collect();
    if pending.is_empty() {
        println!("{what}: a ConfigMap change in {ns} rolls every kind ({names:?}) under the rendered RBAC");
    } else {
        let log = proc.logs();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        wrong.push(format!(
            "{what}: not rolled under the rendered RBAC: {pending:?}; log:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    if csi {
        wrong.extend(csi_rotation_rolls(admin, ns, what, &proc).await);
    }
    proc.stop();
    let forbidden: Vec<String> =
        proc.logs().lines().filter(|l| l.to_lowercase().contains("forbidden")).take(10).map(String::from).collect();
    if !forbidden.is_empty() {
        wrong.push(format!("{what}: the controller logged 403 Forbidden:\n{}", forbidden.join("\n")));
    }
    delete(&objects);
    wrong
}

/// With `csiIntegration`: once the controller recorded the class version
/// Deployment `rbac-csi` runs, a new object version in the pod status (the
/// driver's rotation) rolls it: the status watch and the class read work
/// under the rendered RBAC.
async fn csi_rotation_rolls(admin: &Client, ns: &str, what: &str, proc: &ControllerProcess) -> Vec<String> {
    let ar = |kind: &str, plural: &str| ApiResource {
        group: "secrets-store.csi.x-k8s.io".into(),
        version: "v1".into(),
        api_version: "secrets-store.csi.x-k8s.io/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    let statuses: Api<DynamicObject> =
        Api::namespaced_with(admin.clone(), ns, &ar("SecretProviderClassPodStatus", "secretproviderclasspodstatuses"));
    let deployment = deployments(admin, ns);
    let template_env = || async {
        let d = serde_json::to_value(deployment.get("rbac-csi").await.ok()?).ok()?;
        Some(d["spec"]["template"]["spec"]["containers"][0]["env"].clone())
    };
    // The baseline is in the baseline store of the controller's namespace
    // (or, had the store been refused, on the workload).
    let recorded = || async {
        let d = deployment.get("rbac-csi").await.ok()?;
        let on_workload =
            d.metadata.annotations.as_ref().and_then(|a| a.get(pod_reloader_core::record::RECORD_ANNOTATION));
        let stored = match &d.metadata.uid {
            Some(uid) => {
                let shards: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(admin.clone(), NS);
                let label = format!("{}=true", pod_reloader_core::baseline_store::STORE_LABEL);
                let list = shards.list(&kube::api::ListParams::default().labels(&label)).await.ok()?;
                list.items.into_iter().find_map(|cm| cm.data?.remove(uid))
            }
            None => None,
        };
        [on_workload.cloned(), stored]
            .into_iter()
            .flatten()
            .any(|r| r.contains("SecretProviderClass/rbac-spc"))
            .then_some(())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while recorded().await.is_none() {
        if std::time::Instant::now() > deadline {
            return vec![format!(
                "{what}: the controller never recorded the class rbac-spc on rbac-csi (status watch under the rendered RBAC)"
            )];
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let patch = json!({"status": {"objects": [{"id": "db/password", "version": "2"}]}});
    statuses.patch(CSI_STATUS, &PatchParams::default(), &Patch::Merge(patch)).await.expect("rotate the pod status");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let env = template_env().await.unwrap_or_default();
        if env.as_array().is_some_and(|e| e.iter().any(|e| e["name"] == "STAKATER_RBAC_SPC_SECRETPROVIDERCLASS")) {
            println!("{what}: a rotation in the driver's pod status rolls rbac-csi under the rendered RBAC");
            return vec![];
        }
        if std::time::Instant::now() > deadline {
            let log = proc.logs();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            return vec![format!(
                "{what}: the rotation of rbac-spc did not roll rbac-csi under the rendered RBAC; log:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )];
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn lease_holder(admin: &Client) -> Option<String> {
    Api::<Lease>::namespaced(admin.clone(), NS).get("pod-reloader").await.ok()?.spec?.holder_identity
}

async fn delete_lease(admin: &Client) {
    let _ = Api::<Lease>::namespaced(admin.clone(), NS).delete("pod-reloader", &DeleteParams::default()).await;
}

fn apply_rbac(r: &Render) -> Value {
    let objects = rbac_objects(r);
    let out = apply(&objects);
    assert!(out.ok, "apply the RBAC of {} for real:\n{}", r.case.name, out.output);
    objects
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_rbac_allows_exactly_what_the_controller_calls() {
    let admin = admin_client().await;
    fixtures::ensure();
    let victims = list(["pod-reloader-rbac", "shop"].map(|ns| deployment("rbac-victim", ns)));
    let mut wrong = Vec::new();

    // Cluster-wide (defaults).
    let r = render_named("defaults");
    let applied = apply_rbac(&r);
    let can = [
        Access("list", "configmaps", None, None),
        Access("watch", "configmaps", None, None),
        Access("list", "secrets", None, None),
        Access("watch", "secrets", None, None),
        Access("list", "cronjobs.batch", None, None),
        Access("patch", "cronjobs.batch", Some("shop"), None),
        Access("get", "jobs.batch", Some("shop"), None),
        Access("create", "jobs.batch", Some("shop"), None),
        Access("delete", "jobs.batch", Some("shop"), None),
        Access("patch", "jobs.batch", Some("shop"), None),
        Access("create", "events.events.k8s.io", Some("shop"), None),
        Access("patch", "events.events.k8s.io", Some("shop"), None),
    ];
    let workload_verbs: Vec<Access> = ["deployments.apps", "daemonsets.apps", "statefulsets.apps"]
        .iter()
        .flat_map(|r| ["get", "list", "watch", "patch"].map(|v| Access(v, r, Some("shop"), None)))
        .collect();
    // Trimmed to what the controller calls: no get of a single ConfigMap or
    // Secret (reflectors list and watch), no core Events (kube's Recorder
    // writes events.k8s.io), no Namespaces without a namespaceSelector.
    let cannot = [
        Access("get", "secrets", Some("shop"), None),
        Access("get", "configmaps", Some("shop"), None),
        Access("create", "events", Some("shop"), None),
        Access("delete", "deployments.apps", Some("shop"), None),
        Access("update", "deployments.apps", Some("shop"), None),
        Access("create", "deployments.apps", Some("shop"), None),
        Access("create", "secrets", Some("shop"), None),
        Access("update", "configmaps", Some("shop"), None),
        Access("get", "pods", Some("shop"), None),
        Access("list", "namespaces", None, None),
        Access("get", "leases.coordination.k8s.io", Some(NS), None),
        Access("patch", "rollouts.argoproj.io", Some("shop"), None),
        Access("delete", "cronjobs.batch", Some("shop"), None),
        Access("create", "cronjobs.batch", Some("shop"), None),
        Access("update", "jobs.batch", Some("shop"), None),
        // The CSI driver's API only with csiIntegration.
        Access("list", SPCPS, None, None),
        Access("watch", SPCPS, Some("shop"), None),
        Access("get", SPC, Some("shop"), None),
    ];
    wrong.extend(access(&admin, "defaults", &can, &cannot).await);
    wrong.extend(access(&admin, "defaults", &workload_verbs, &[]).await);
    let out = apply(&victims);
    assert!(out.ok, "create Deployments to act on:\n{}", out.output);
    let dir = tempfile::tempdir().expect("tempdir");
    let (sa, _) = as_controller(&admin, dir.path()).await;
    wrong.extend(requests_as_controller(&sa, "pod-reloader-rbac", "defaults").await);
    wrong.extend(controller_under_rbac(&admin, &r, "pod-reloader-rbac").await);
    delete(&applied);

    // Cluster-wide with leader election (ha): the Lease rules carry the
    // Lease's name; create stays unnamed (RBAC cannot restrict it by name).
    let r = render_named("ha");
    let applied = apply_rbac(&r);
    let lease = "leases.coordination.k8s.io";
    let can = [
        Access("get", lease, Some(NS), Some("pod-reloader")),
        Access("patch", lease, Some(NS), Some("pod-reloader")),
        Access("create", lease, Some(NS), None),
    ];
    let cannot = [
        Access("get", lease, Some(NS), Some("other")),
        Access("patch", lease, Some(NS), Some("other")),
        Access("update", lease, Some(NS), Some("pod-reloader")),
        Access("delete", lease, Some(NS), Some("pod-reloader")),
        Access("list", lease, Some(NS), None),
        Access("create", lease, Some("shop"), None),
    ];
    wrong.extend(access(&admin, "ha", &can, &cannot).await);
    delete_lease(&admin).await;
    wrong.extend(controller_under_rbac(&admin, &r, "pod-reloader-rbac").await);
    match lease_holder(&admin).await {
        Some(h) if !h.is_empty() => println!("ha: the controller took the Lease {NS}/pod-reloader ({h})"),
        other => wrong.push(format!(
            "ha: the controller did not take the Lease {NS}/pod-reloader under the rendered RBAC: {other:?}"
        )),
    }
    delete_lease(&admin).await;
    delete(&applied);

    // Scoped (namespaces: shop, billing).
    let r = render_named("namespaces");
    let applied = apply_rbac(&r);
    let mut can = Vec::new();
    let mut cannot = Vec::new();
    for ns in ["shop", "billing"] {
        can.extend([
            Access("list", "secrets", Some(ns), None),
            Access("watch", "configmaps", Some(ns), None),
            Access("patch", "deployments.apps", Some(ns), None),
            Access("patch", "cronjobs.batch", Some(ns), None),
            Access("get", "rollouts.argoproj.io", Some(ns), None),
            Access("patch", "rollouts.argoproj.io", Some(ns), None),
        ]);
        // Rollouts are patched, never updated.
        cannot.push(Access("update", "rollouts.argoproj.io", Some(ns), None));
    }
    cannot.extend([
        Access("list", "secrets", Some("default"), None),
        Access("get", "secrets", Some("pod-reloader-rbac"), None),
        Access("patch", "deployments.apps", Some("pod-reloader-rbac"), None),
        Access("list", "secrets", None, None),
        Access("list", "configmaps", None, None),
    ]);
    wrong.extend(access(&admin, "scoped", &can, &cannot).await);
    let out = apply(&victims);
    assert!(out.ok, "create Deployments to act on:\n{}", out.output);
    let (sa, _) = as_controller(&admin, dir.path()).await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(sa.clone(), "pod-reloader-rbac");
    match secrets.list(&Default::default()).await {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => wrong.push(format!(
            "scoped: as the controller, list Secrets outside the list: {:?}, expected 403",
            other.map(|l| l.items.len())
        )),
    }
    wrong.extend(requests_as_controller(&sa, "shop", "scoped").await);
    wrong.extend(controller_under_rbac(&admin, &r, "shop").await);
    delete(&applied);

    // csiIntegration, scoped to shop: list/watch of the driver's pod
    // statuses and get of SecretProviderClasses there (what the watch and
    // the class's ignore/match read call), nothing more of that API.
    let r = render_named("csi-integration");
    let config = r.find("ConfigMap", Some("pod-reloader-config"), None);
    let config = yaml::parse(config[0]["data"]["config.yaml"].as_str().expect("config.yaml"), "config.yaml");
    assert_eq!(config["csiIntegration"], true, "csi-integration: the config turns the watch on: {config}");
    let applied = apply_rbac(&r);
    let can = [
        Access("list", SPCPS, Some("shop"), None),
        Access("watch", SPCPS, Some("shop"), None),
        Access("get", SPC, Some("shop"), None),
        Access("list", "configmaps", Some("shop"), None),
    ];
    let cannot = [
        Access("get", SPCPS, Some("shop"), None),
        Access("create", SPCPS, Some("shop"), None),
        Access("update", SPCPS, Some("shop"), None),
        Access("patch", SPCPS, Some("shop"), None),
        Access("delete", SPCPS, Some("shop"), None),
        Access("list", SPC, Some("shop"), None),
        Access("watch", SPC, Some("shop"), None),
        Access("patch", SPC, Some("shop"), None),
        Access("update", SPC, Some("shop"), None),
        Access("list", SPCPS, Some("billing"), None),
        Access("list", SPCPS, None, None),
        Access("get", SPC, Some("billing"), None),
    ];
    wrong.extend(access(&admin, "csi-integration", &can, &cannot).await);
    wrong.extend(controller_under_rbac(&admin, &r, "shop").await);
    delete(&applied);
    delete(&victims);

    assert!(wrong.is_empty(), "the rendered RBAC is wrong:\n  {}", wrong.join("\n  "));
}
