//! Helpers shared by the controller's integration tests: objects built as
//! JSON the way users write manifests, and readers for what the controller
//! changed. The expected hashes are computed here with `sha1` directly,
//! independently of the controller's own hashing code.
#![allow(dead_code)]

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::api::{ApiResource, DynamicObject, ListParams, PostParams};
use kube::{Api, Client};
use pod_reloader_testsupport::wait_for;
use serde_json::{Value, json};
use sha1::{Digest, Sha1};

pub const BIN: &str = env!("CARGO_BIN_EXE_pod-reloader");

pub fn sha1_hex(s: &[u8]) -> String {
    Sha1::digest(s).iter().map(|b| format!("{b:02x}")).collect()
}

/// How a pod template uses a resource.
#[derive(Clone, Copy, Debug)]
pub enum Use {
    EnvFrom,
    Volume,
    ValueFrom,
    InitOnly,
    Nothing,
}

/// `configmap` or `secret`: the resource kind under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Res {
    ConfigMap,
    Secret,
}

impl Res {
    pub fn kind(self) -> &'static str {
        match self {
            Res::ConfigMap => "ConfigMap",
            Res::Secret => "Secret",
        }
    }
    pub fn lower(self) -> &'static str {
        match self {
            Res::ConfigMap => "configmap",
            Res::Secret => "secret",
        }
    }
    pub fn env_postfix(self) -> &'static str {
        match self {
            Res::ConfigMap => "CONFIGMAP",
            Res::Secret => "SECRET",
        }
    }
}

pub fn pod_spec(res: Res, name: &str, uses: Use) -> Value {
    let (env_from, volume, value_from) = match res {
        Res::ConfigMap => (
            json!({"configMapRef": {"name": name}}),
            json!({"name": "v", "configMap": {"name": name}}),
            json!({"configMapKeyRef": {"name": name, "key": "key"}}),
        ),
        Res::Secret => (
            json!({"secretRef": {"name": name}}),
            json!({"name": "v", "secret": {"secretName": name}}),
            json!({"secretKeyRef": {"name": name, "key": "key"}}),
        ),
    };
    let image = "registry.invalid/app:1";
    match uses {
        Use::EnvFrom => {
            json!({"containers": [{"name": "app", "image": image, "envFrom": [env_from]}]})
        }
        Use::Volume => json!({
            "containers": [{"name": "app", "image": image, "volumeMounts": [{"name": "v", "mountPath": "/cfg"}]}],
            "volumes": [volume]
        }),
        Use::ValueFrom => json!({"containers": [
            {"name": "side", "image": image},
            {"name": "app", "image": image, "env": [{"name": "K", "valueFrom": value_from}]}
        ]}),
        Use::InitOnly => json!({
            "initContainers": [{"name": "init", "image": image, "envFrom": [env_from]}],
            "containers": [{"name": "app", "image": image}]
        }),
        Use::Nothing => json!({"containers": [{"name": "app", "image": image}]}),
    }
}

fn template(name: &str, template_annotations: &Value, spec: Value) -> Value {
    json!({"metadata": {"labels": {"app": name}, "annotations": template_annotations}, "spec": spec})
}

/// A workload of `kind` as a manifest.
pub fn workload(kind: &str, name: &str, annotations: &Value, template_annotations: &Value, spec: Value) -> Value {
    let meta = json!({"name": name, "annotations": annotations});
    let selector = json!({"matchLabels": {"app": name}});
    match kind {
        "Deployment" => json!({"apiVersion": "apps/v1", "kind": kind, "metadata": meta,
            "spec": {"replicas": 1, "selector": selector, "template": template(name, template_annotations, spec)}}),
        "StatefulSet" => json!({"apiVersion": "apps/v1", "kind": kind, "metadata": meta,
            "spec": {"replicas": 1, "serviceName": name, "selector": selector, "template": template(name, template_annotations, spec)}}),
        "DaemonSet" => json!({"apiVersion": "apps/v1", "kind": kind, "metadata": meta,
            "spec": {"selector": selector, "template": template(name, template_annotations, spec)}}),
        "CronJob" => {
            let mut t = template(name, template_annotations, spec);
            t["spec"]["restartPolicy"] = json!("Never");
            json!({"apiVersion": "batch/v1", "kind": kind, "metadata": meta,
                "spec": {"schedule": "0 0 1 1 *", "jobTemplate": {"spec": {"template": t}}}})
        }
        "Job" => {
            let mut t = template(name, template_annotations, spec);
            t["spec"]["restartPolicy"] = json!("Never");
            // Suspended: no pod is needed to see the Job recreated.
            json!({"apiVersion": "batch/v1", "kind": kind, "metadata": meta, "spec": {"suspend": true, "template": t}})
        }
        "Rollout" => json!({"apiVersion": "argoproj.io/v1alpha1", "kind": kind, "metadata": meta,
            "spec": {"replicas": 1, "selector": selector, "template": template(name, template_annotations, spec),
                     "strategy": {"canary": {"steps": [{"setWeight": 50}]}}}}),
        other => panic!("unknown kind {other}"),
    }
}

pub fn api_resource(kind: &str) -> ApiResource {
    let (group, version, plural) = match kind {
        "Deployment" => ("apps", "v1", "deployments"),
        "StatefulSet" => ("apps", "v1", "statefulsets"),
        "DaemonSet" => ("apps", "v1", "daemonsets"),
        "CronJob" => ("batch", "v1", "cronjobs"),
        "Job" => ("batch", "v1", "jobs"),
        "Rollout" => ("argoproj.io", "v1alpha1", "rollouts"),
        "ConfigMap" => ("", "v1", "configmaps"),
        "Secret" => ("", "v1", "secrets"),
        other => panic!("unknown kind {other}"),
    };
    let api_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    ApiResource { group: group.into(), version: version.into(), api_version, kind: kind.into(), plural: plural.into() }
}

pub fn dyn_api(client: &Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &api_resource(kind))
}

/// Creates any manifest (by its `kind`) in `ns`.
pub async fn create(client: &Client, ns: &str, manifest: Value) -> DynamicObject {
    let kind = manifest["kind"].as_str().expect("manifest has a kind").to_string();
    let obj: DynamicObject = serde_json::from_value(manifest).expect("manifest is an object");
    dyn_api(client, ns, &kind)
        .create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("create {kind} {ns}/{}: {e}", obj.metadata.name.clone().unwrap_or_default()))
}

pub fn configmap(name: &str, data: Value, annotations: Value, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "annotations": annotations, "labels": labels}, "data": data})
}

pub fn secret(name: &str, string_data: Value, annotations: Value, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "annotations": annotations, "labels": labels}, "stringData": string_data})
}

pub fn resource(res: Res, name: &str, value: &str, annotations: Value, labels: Value) -> Value {
    match res {
        Res::ConfigMap => configmap(name, json!({"key": value}), annotations, labels),
        Res::Secret => secret(name, json!({"key": value}), annotations, labels),
    }
}

/// Replaces the resource's single `key` with `value` (a content change).
pub async fn set_value(client: &Client, ns: &str, res: Res, name: &str, value: &str) {
    let body = match res {
        Res::ConfigMap => json!({"data": {"key": value}}),
        Res::Secret => json!({"stringData": {"key": value}}),
    };
    dyn_api(client, ns, res.kind())
        .patch(name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(body))
        .await
        .unwrap_or_else(|e| panic!("update {} {ns}/{name}: {e}", res.kind()));
}

/// Changes only a label of the resource (no content change).
pub async fn touch_metadata(client: &Client, ns: &str, res: Res, name: &str) {
    let body = json!({"metadata": {"labels": {"touched": "yes"}}});
    dyn_api(client, ns, res.kind())
        .patch(name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(body))
        .await
        .unwrap_or_else(|e| panic!("label {} {ns}/{name}: {e}", res.kind()));
}

/// The pod template of a workload as it is now.
pub async fn pod_template(client: &Client, ns: &str, kind: &str, name: &str) -> Option<PodTemplateSpec> {
    let obj = dyn_api(client, ns, kind).get_opt(name).await.ok()??;
    let t = if kind == "CronJob" {
        obj.data["spec"]["jobTemplate"]["spec"]["template"].clone()
    } else {
        obj.data["spec"]["template"].clone()
    };
    serde_json::from_value(t).ok()
}

/// The env var value on `container`, if set.
pub fn env_value(t: &PodTemplateSpec, container: &str, var: &str) -> Option<String> {
    t.spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == container)?
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == var)?
        .value
        .clone()
}

pub fn all_env_names(t: &PodTemplateSpec) -> Vec<String> {
    t.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.env.iter().flatten())
        .filter(|e| e.name.starts_with("STAKATER_"))
        .map(|e| e.name.clone())
        .collect()
}

/// The `last-reloaded-from` annotation, parsed.
pub fn last_reloaded_from(t: &PodTemplateSpec) -> Option<Value> {
    let raw = t.metadata.as_ref()?.annotations.as_ref()?.get("reloader.stakater.com/last-reloaded-from")?;
    serde_json::from_str(raw).ok()
}

/// The ReplicaSets kube-controller-manager made for a Deployment.
pub async fn replica_sets(client: &Client, ns: &str, deployment: &str) -> usize {
    let rs: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let list = rs.list(&ListParams::default().labels(&format!("app={deployment}"))).await.expect("list ReplicaSets");
    list.items
        .iter()
        .filter(|r| {
            r.metadata.owner_references.iter().flatten().any(|o| o.kind == "Deployment" && o.name == deployment)
        })
        .count()
}

/// Waits until the Deployment has exactly `n` ReplicaSets.
pub async fn wait_replica_sets(client: &Client, ns: &str, deployment: &str, n: usize, timeout: Duration) {
    wait_for(&format!("Deployment {ns}/{deployment} to have {n} ReplicaSet(s)"), timeout, || async {
        (replica_sets(client, ns, deployment).await == n).then_some(())
    })
    .await
}

pub async fn deployment_paused(client: &Client, ns: &str, name: &str) -> bool {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    api.get(name).await.ok().and_then(|d| d.spec?.paused).unwrap_or(false)
}

/// Events on an object, as `reason: note` strings.
pub async fn events_for(client: &Client, ns: &str, name: &str) -> Vec<(String, String, String)> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    let list = api.list(&ListParams::default()).await.expect("list events");
    list.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

/// Counts the ReplicaSets of a Deployment once kube-controller-manager has
/// seen its latest spec (`status.observedGeneration` caught up with
/// `metadata.generation`), so that a template change the controller made is
/// already reflected in the count rather than still on its way.
pub async fn settled_replica_sets(client: &Client, ns: &str, deployment: &str) -> usize {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("kube-controller-manager to observe Deployment {ns}/{deployment}"),
        Duration::from_secs(60),
        || async {
            let d = api.get(deployment).await.ok()?;
            let observed = d.status.as_ref()?.observed_generation?;
            (observed >= d.metadata.generation?).then_some(())
        },
    )
    .await;
    replica_sets(client, ns, deployment).await
}

/// The baseline store's entries in `store_ns` (every shard merged):
/// workload uid → its record.
pub async fn stored_records(client: &Client, store_ns: &str) -> std::collections::BTreeMap<String, Value> {
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), store_ns);
    let label = format!("{}=true", pod_reloader_core::baseline_store::STORE_LABEL);
    let list = api.list(&ListParams::default().labels(&label)).await.expect("list store shards");
    let mut out = std::collections::BTreeMap::new();
    for cm in list.items {
        for (uid, raw) in cm.data.unwrap_or_default() {
            out.insert(uid, serde_json::from_str(&raw).unwrap_or(Value::Null));
        }
    }
    out
}

/// The uid of a Deployment.
pub async fn deployment_uid(client: &Client, ns: &str, name: &str) -> String {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    api.get(name).await.expect("get Deployment").metadata.uid.expect("uid")
}

/// Waits until the store in `store_ns` records `resource` for Deployment
/// `ns/name` (at `hash` when given).
pub async fn wait_stored(client: &Client, store_ns: &str, ns: &str, name: &str, resource: &str, hash: Option<&str>) {
    let uid = deployment_uid(client, ns, name).await;
    wait_for(
        &format!("the baseline store in {store_ns} to hold {resource} of {ns}/{name}"),
        Duration::from_secs(45),
        || async {
            let stored = stored_records(client, store_ns).await.remove(&uid)?;
            let value = stored.get(resource)?.as_str()?.to_string();
            hash.is_none_or(|h| h == value).then_some(())
        },
    )
    .await
}

/// A barrier for negative checks: sentinel ConfigMaps/Secrets in a test's
/// namespace, each followed (`auto`) by a sentinel Deployment of the same name.
///
/// Why it proves something a sleep does not: every change of a kind in a
/// namespace (or, for a cluster-wide watch, of a kind anywhere) arrives on one
/// watch stream, in the apiserver's order, and the controller's state task
/// handles messages one at a time and hands reload requests to the scheduler
/// in that order; the scheduler starts each batch no later than the batches
/// queued after it. So once a sentinel edited *after* the change under test
/// has rolled its Deployment, the controller has decided on that change, and
/// any reload it wanted has been started. Pick sentinels on the same stream as
/// the change under test (a ConfigMap change needs the ConfigMap sentinel);
/// across streams there is no order.
///
/// Gaps left: a wrong patch started before the sentinel's but accepted by the
/// apiserver after the sentinel's patch *and* after the test's next read; and
/// a request for a workload whose own reload is still running waits for it
/// (one workload is never patched twice at once), so a check on a workload
/// that reloads first waits for that reload to land (burst, outage) before
/// the barrier.
pub struct Barrier {
    client: Client,
    ns: String,
    sentinels: Vec<Res>,
    rounds: usize,
}

impl Barrier {
    /// Creates one sentinel pair per kind in `res`, the resources carrying
    /// `labels` (for a resource label selector). Create it with the other
    /// objects, before the controller indexes them.
    pub async fn create(client: &Client, ns: &str, res: &[Res], labels: Value) -> Self {
        for &r in res {
            let name = Self::name(r);
            create(client, ns, resource(r, name, "barrier-0", json!({}), labels.clone())).await;
            let auto = json!({"reloader.stakater.com/auto": "true"});
            create(client, ns, workload("Deployment", name, &auto, &json!({}), pod_spec(r, name, Use::EnvFrom))).await;
        }
        Barrier { client: client.clone(), ns: ns.to_string(), sentinels: res.to_vec(), rounds: 0 }
    }

    fn name(r: Res) -> &'static str {
        match r {
            Res::ConfigMap => "barrier-cm",
            Res::Secret => "barrier-sec",
        }
    }

    /// The sentinel Deployments (for index counts).
    pub fn workloads(&self) -> usize {
        self.sentinels.len()
    }

    /// Reloads the sentinels have had so far (one per sentinel per pass).
    pub fn reloads(&self) -> usize {
        self.sentinels.len() * self.rounds
    }

    /// Waits until the controller has recorded a baseline on every sentinel
    /// Deployment: it holds them, and everything earlier on the workload stream.
    pub async fn wait_followed(&self) {
        for &r in &self.sentinels {
            let name = Self::name(r);
            let key = format!("{}/{name}", r.kind());
            wait_for(&format!("a record on the sentinel {}/{name}", self.ns), Duration::from_secs(45), || async {
                let d = dyn_api(&self.client, &self.ns, "Deployment").get(name).await.ok()?;
                let record = d.metadata.annotations?.get(pod_reloader_core::record::RECORD_ANNOTATION)?.clone();
                record.contains(&key).then_some(())
            })
            .await;
        }
    }

    /// As [`Self::wait_followed`], for a controller keeping baselines in the
    /// baseline store in `store_ns`.
    pub async fn wait_followed_in_store(&self, store_ns: &str) {
        for &r in &self.sentinels {
            let name = Self::name(r);
            wait_stored(&self.client, store_ns, &self.ns, name, &format!("{}/{name}", r.kind()), None).await;
        }
    }

    /// Edits every sentinel and waits until each sentinel Deployment carries
    /// the new hash (as an env var or a `last-reloaded-from` annotation,
    /// whichever the reload strategy writes).
    async fn pass(&mut self) {
        self.rounds += 1;
        let value = format!("barrier-{}", self.rounds);
        for &r in &self.sentinels {
            set_value(&self.client, &self.ns, r, Self::name(r), &value).await;
        }
        let hash = sha1_hex(format!("key={value}").as_bytes());
        for &r in &self.sentinels {
            let name = Self::name(r);
            let var = format!("STAKATER_{}_{}", name.to_uppercase().replace('-', "_"), r.env_postfix());
            wait_for(
                &format!("the sentinel {}/{name} to roll (barrier)", self.ns),
                Duration::from_secs(45),
                || async {
                    let t = pod_template(&self.client, &self.ns, "Deployment", name).await?;
                    let by_env = env_value(&t, "app", &var).as_deref() == Some(hash.as_str());
                    let by_annotation =
                        last_reloaded_from(&t).is_some_and(|s| s["hash"] == hash.as_str() && s["name"] == name);
                    (by_env || by_annotation).then_some(())
                },
            )
            .await;
        }
    }
}

/// The one way to check that a change moved nothing: pass `barrier` (edit
/// its sentinels after the change under test and wait for them to roll),
/// then run `check`, whose assertions now see every reload the change
/// caused. Never a sleep: a slow or dead controller fails the barrier
/// instead of passing the check.
pub async fn assert_quiet_after<F, Fut>(barrier: &mut Barrier, check: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    barrier.pass().await;
    check().await;
}

/// Reads one HTTP/1.1 request from `sock` for the tests' webhook receivers:
/// its head (request line and headers) and its body (by content-length);
/// `None` once the peer closes.
pub async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<(String, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = sock.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = sock.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
    Some((head, buf[head_end..head_end + len].to_vec()))
}
