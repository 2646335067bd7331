//! The objects the scenarios use: namespaces, ConfigMaps, Secrets and
//! Deployments, created many requests at a time and removed by deleting
//! their namespaces.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

/// Every object the bench creates carries this label (the Deployment
/// tracker watches by it; namespaces are found and removed by it).
pub const MANAGED: &str = "bench.pod-reloader.io/managed";
pub const SCENARIO: &str = "bench.pod-reloader.io/scenario";
const MANAGER: &str = "pod-reloader-bench";

/// Requests in flight while creating objects.
pub const PARALLEL: usize = 16;

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([(MANAGED.to_string(), "true".to_string())])
}

fn post() -> PostParams {
    PostParams { field_manager: Some(MANAGER.into()), ..Default::default() }
}

pub fn patch_params() -> PatchParams {
    PatchParams { field_manager: Some(MANAGER.into()), ..Default::default() }
}

/// Runs `op` again on throttling, server errors and lost connections
/// (the apiserver is busy while thousands of objects go in).
pub async fn retry<T, F, Fut>(what: &str, mut op: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let mut delay = Duration::from_millis(200);
    for attempt in 1..=8 {
        match op().await {
            Ok(v) => return Ok(v),
            Err(kube::Error::Api(s)) if s.code < 500 && s.code != 429 => {
                return Err(kube::Error::Api(s)).with_context(|| what.to_string());
            }
            Err(e) if attempt == 8 => return Err(e).with_context(|| what.to_string()),
            Err(_) => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    unreachable!()
}

/// Creates an object; one that exists already counts as created.
async fn create<K>(api: Api<K>, obj: K, what: String) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let pp = post();
    let r = retry(&what, || api.create(&pp, &obj)).await;
    match r {
        Ok(_) => Ok(()),
        Err(e) => match e.downcast_ref::<kube::Error>() {
            Some(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            _ => Err(e),
        },
    }
}

pub async fn create_namespace(client: &Client, name: &str, scenario: &str) -> anyhow::Result<()> {
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.into());
    let mut l = labels();
    l.insert(SCENARIO.into(), scenario.into());
    ns.metadata.labels = Some(l);
    create(Api::all(client.clone()), ns, format!("namespace {name}")).await
}

pub fn configmap(ns: &str, name: &str, value: String) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.into());
    cm.metadata.namespace = Some(ns.into());
    cm.metadata.labels = Some(labels());
    cm.data = Some(BTreeMap::from([("config".to_string(), value)]));
    cm
}

pub fn secret(ns: &str, name: &str, value: Vec<u8>) -> Secret {
    let mut s = Secret::default();
    s.metadata.name = Some(name.into());
    s.metadata.namespace = Some(ns.into());
    s.metadata.labels = Some(labels());
    s.data = Some(BTreeMap::from([("data".to_string(), ByteString(value))]));
    s
}

/// A Deployment with no replicas (the test bed has no nodes; kube-controller-
/// manager still makes a ReplicaSet per template) using one ConfigMap
/// through `envFrom` (if any) and optionally one Secret as a volume. Annotated with
/// `reloader.stakater.com/auto: "true"` when `annotated`.
pub fn deployment(
    ns: &str,
    name: &str,
    annotated: bool,
    configmap: Option<&str>,
    secret: Option<&str>,
) -> anyhow::Result<Deployment> {
    let mut annotations = serde_json::Map::new();
    if annotated {
        annotations.insert("reloader.stakater.com/auto".into(), json!("true"));
    }
    let (volumes, mounts) = match secret {
        Some(s) => (
            json!([{"name": "secret", "secret": {"secretName": s}}]),
            json!([{"name": "secret", "mountPath": "/etc/secret", "readOnly": true}]),
        ),
        None => (json!([]), json!([])),
    };
    let env_from = match configmap {
        Some(c) => json!([{"configMapRef": {"name": c}}]),
        None => json!([]),
    };
    let d = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {MANAGED: "true"},
            "annotations": annotations,
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{
                        "name": "app",
                        "image": "registry.invalid/bench:1",
                        "envFrom": env_from,
                        "volumeMounts": mounts,
                    }],
                    "volumes": volumes,
                }
            }
        }
    });
    Ok(serde_json::from_value(d)?)
}

/// Creates objects `PARALLEL` requests at a time. `make` builds the i-th
/// object on demand, so large payloads are not all in memory at once.
pub async fn create_many<K, F>(client: &Client, count: usize, parallel: usize, make: F) -> anyhow::Result<()>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    F: Fn(usize) -> anyhow::Result<K>,
{
    futures::stream::iter(0..count)
        .map(|i| {
            let obj = make(i);
            let client = client.clone();
            async move {
                let obj = obj?;
                let ns = obj.meta().namespace.clone().unwrap_or_default();
                let what = format!("{} {ns}/{}", K::kind(&()), obj.meta().name.clone().unwrap_or_default());
                create(Api::<K>::namespaced(client, &ns), obj, what).await
            }
        })
        .buffer_unordered(parallel)
        .try_collect::<()>()
        .await
}

/// Sets a ConfigMap's data (a content change).
pub async fn set_configmap_data(client: &Client, ns: &str, name: &str, value: &str) -> anyhow::Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let body = json!({"data": {"config": value}});
    let (pp, patch) = (patch_params(), Patch::Merge(&body));
    retry(&format!("patch ConfigMap {ns}/{name}"), || api.patch(name, &pp, &patch)).await?;
    Ok(())
}

/// Sets a Secret's data (a content change).
pub async fn set_secret_data(client: &Client, ns: &str, name: &str, value: &str) -> anyhow::Result<()> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let body = json!({"stringData": {"v": value}});
    let (pp, patch) = (patch_params(), Patch::Merge(&body));
    retry(&format!("patch Secret {ns}/{name}"), || api.patch(name, &pp, &patch)).await?;
    Ok(())
}

/// Changes only a ConfigMap's metadata (an annotation): no reload is due.
pub async fn touch_configmap(client: &Client, ns: &str, name: &str, value: &str) -> anyhow::Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let body = json!({"metadata": {"annotations": {"bench.pod-reloader.io/touched": value}}});
    let (pp, patch) = (patch_params(), Patch::Merge(&body));
    retry(&format!("patch ConfigMap {ns}/{name}"), || api.patch(name, &pp, &patch)).await?;
    Ok(())
}

/// Deletes every namespace of `scenario` (without waiting).
pub async fn delete_scenario(client: &Client, scenario: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let lp = ListParams::default().labels(&format!("{SCENARIO}={scenario}"));
    let names: Vec<String> =
        retry("list namespaces", || api.list(&lp)).await?.items.into_iter().filter_map(|n| n.metadata.name).collect();
    for n in &names {
        match api.delete(n, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e).context(format!("delete namespace {n}")),
        }
    }
    Ok(())
}

/// Waits until no namespace of `scenario` is left.
pub async fn wait_scenario_gone(client: &Client, scenario: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let lp = ListParams::default().labels(&format!("{SCENARIO}={scenario}"));
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let left = retry("list namespaces", || api.list(&lp)).await?.items.len();
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{left} namespaces of {scenario} still exist after 15 minutes");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
