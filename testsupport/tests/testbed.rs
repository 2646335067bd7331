//! The test bed itself is real: the apiserver answers, kube-controller-manager
//! turns a template change into a new ReplicaSet, and RBAC is enforced.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Config};
use pod_reloader_testsupport::{TestNamespace, admin_client, kubeconfig_path, wait_for};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_is_ready() {
    let client = admin_client().await;
    let req = http::Request::get("/readyz").body(Vec::new()).unwrap();
    let body = client.request_text(req).await.expect("GET /readyz");
    assert_eq!(body, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_manager_rolls_a_patched_deployment() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "kcm").await;
    let deployments: Api<Deployment> = ns.api();
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}}}
    }))
    .unwrap();
    deployments.create(&PostParams::default(), &d).await.unwrap();
    let rs: Api<ReplicaSet> = ns.api();
    let count = || async { rs.list(&ListParams::default()).await.map(|l| l.items.len()).unwrap_or(0) };
    wait_for("first ReplicaSet", Duration::from_secs(30), || async { (count().await == 1).then_some(()) }).await;
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {"changed": "yes"}}}}});
    deployments.patch("web", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    wait_for("second ReplicaSet", Duration::from_secs(15), || async { (count().await == 2).then_some(()) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_denies_a_service_account_without_bindings() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "rbac").await;
    let sas: Api<ServiceAccount> = ns.api();
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "nobody"}})).unwrap();
    sas.create(&PostParams::default(), &sa).await.unwrap();
    let tr: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 600}})).unwrap();
    let token = sas
        .create_subresource::<TokenRequest, TokenRequest>("token", "nobody", &PostParams::default(), &tr)
        .await
        .expect("token for nobody")
        .status
        .expect("token status")
        .token;

    // Same server and CA as the admin, but authenticated only by the token.
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig_path()).unwrap();
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
    config.auth_info = kube::config::AuthInfo { token: Some(token.into()), ..Default::default() };
    let nobody = Client::try_from(config).unwrap();
    let secrets: Api<Secret> = Api::namespaced(nobody, &ns.name);
    match secrets.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("expected 403 Forbidden, got {other:?}"),
    }
}
