//! A reload of a strategic-merge kind costs one PATCH (plus its Event): the
//! patch is planned on the version the watch delivered and carries its
//! resourceVersion as precondition; the workload is read only after a 409.
//!
//! The controller talks to the apiserver through a counting proxy started
//! here (plain HTTP in, the test bed's TLS and admin credentials out through
//! kube's own client), which logs every request as it arrives: what is
//! counted is the HTTP requests the controller really sent. The proxy can
//! also hold the controller's first PATCH of a workload until the test has
//! edited that workload: the concurrent writer lands exactly between the
//! plan and the patch, with no sleep.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Response, StatusCode};
use common::*;
use kube::Client;
use kube::api::{Patch, PatchParams};
use pod_reloader_testsupport::{ControllerProcess, TestNamespace, admin_client, wait_for};
use serde_json::json;
use tokio::sync::oneshot;

const RECORD: &str = "pod-reloader.deckhouse.io/reloaded-hashes";

/// One request as the proxy saw it arrive; `status` once answered.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    watch: bool,
    status: Option<u16>,
}

/// Holds the first request matching `(method, path)` until the test says go.
struct Hold {
    method: &'static str,
    path: String,
    arrived: oneshot::Sender<()>,
    go: oneshot::Receiver<()>,
}

#[derive(Clone)]
struct Proxy {
    upstream: Client,
    log: Arc<Mutex<Vec<Seen>>>,
    hold: Arc<Mutex<Option<Hold>>>,
}

impl Proxy {
    /// Starts the proxy on a free port; returns it and a kubeconfig for the controller.
    async fn start(upstream: Client) -> (Self, tempfile::NamedTempFile) {
        let proxy = Proxy { upstream, log: Arc::default(), hold: Arc::default() };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new().fallback(forward).with_state(proxy.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let kubeconfig = tempfile::NamedTempFile::new().unwrap();
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: proxy\n  cluster:\n    server: http://127.0.0.1:{port}\n\
             users:\n- name: anonymous\n  user: {{}}\ncontexts:\n- name: proxy\n  context:\n    cluster: proxy\n    user: anonymous\n\
             current-context: proxy\n"
        );
        std::fs::write(kubeconfig.path(), text).unwrap();
        (proxy, kubeconfig)
    }

    /// Requests (no watches) seen so far.
    fn requests(&self) -> Vec<Seen> {
        self.log.lock().unwrap().iter().filter(|s| !s.watch).cloned().collect()
    }

    fn clear(&self) {
        self.log.lock().unwrap().clear();
    }

    /// Requests to one object's path: `METHOD status` each.
    fn to(&self, path: &str) -> Vec<String> {
        self.requests()
            .iter()
            .filter(|s| s.path == path)
            .map(|s| format!("{} {}", s.method, s.status.map_or("-".into(), |c| c.to_string())))
            .collect()
    }

    /// Holds the next `method` to `path`: the first receiver fires when it
    /// arrived, the sender lets it through.
    fn hold(&self, method: &'static str, path: &str) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (arrived_tx, arrived_rx) = oneshot::channel();
        let (go_tx, go_rx) = oneshot::channel();
        *self.hold.lock().unwrap() = Some(Hold { method, path: path.into(), arrived: arrived_tx, go: go_rx });
        (arrived_rx, go_tx)
    }
}

async fn forward(State(proxy): State<Proxy>, req: Request) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or(path.clone());
    let watch = parts.uri.query().is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    let index = {
        let mut log = proxy.log.lock().unwrap();
        log.push(Seen { method: parts.method.to_string(), path: path.clone(), watch, status: None });
        log.len() - 1
    };
    let held = {
        let mut hold = proxy.hold.lock().unwrap();
        match hold.take() {
            Some(h) if h.method == parts.method.as_str() && h.path == path => Some(h),
            other => {
                *hold = other;
                None
            }
        }
    };
    if let Some(h) = held {
        let _ = h.arrived.send(());
        let _ = h.go.await;
    }
    let bytes = axum::body::to_bytes(body, 64 << 20).await.unwrap_or_default();
    let mut up = axum::http::Request::builder().method(parts.method).uri(path_and_query);
    for (name, value) in &parts.headers {
        if !matches!(name.as_str(), "host" | "authorization" | "content-length" | "connection") {
            up = up.header(name, value);
        }
    }
    let up = up.body(kube::client::Body::from(bytes.to_vec())).unwrap();
    match proxy.upstream.send(up).await {
        Ok(resp) => {
            if let Some(s) = proxy.log.lock().unwrap().get_mut(index) {
                s.status = Some(resp.status().as_u16());
            }
            let (parts, body) = resp.into_parts();
            Response::from_parts(parts, Body::new(body))
        }
        Err(e) => Response::builder().status(StatusCode::BAD_GATEWAY).body(Body::from(e.to_string())).unwrap(),
    }
}

fn auto() -> serde_json::Value {
    json!({"reloader.stakater.com/auto": "true"})
}

/// ConfigMap `cfg` (v1) and Deployment `web` following it, created with its
/// record already saying it runs v1 (nothing to write at start), scaled to
/// 0 so kube-controller-manager leaves it alone once it settled; plus the
/// ConfigMap barrier. Returns the barrier and web's path.
async fn idle_deployment(client: &Client, n: &str) -> (Barrier, String) {
    create(client, n, configmap("cfg", json!({"key": "v1"}), json!({}), json!({}))).await;
    let record = json!({"ConfigMap/cfg": sha1_hex(b"key=v1")}).to_string();
    let mut annotations = auto();
    annotations[RECORD] = json!(record);
    let mut web =
        workload("Deployment", "web", &annotations, &json!({}), pod_spec(Res::ConfigMap, "cfg", Use::EnvFrom));
    web["spec"]["replicas"] = json!(0);
    create(client, n, web).await;
    let barrier = Barrier::create(client, n, &[Res::ConfigMap], json!({})).await;
    assert_eq!(settled_replica_sets(client, n, "web").await, 1);
    (barrier, format!("/apis/apps/v1/namespaces/{n}/deployments/web"))
}

async fn resource_version(client: &Client, n: &str) -> String {
    dyn_api(client, n, "Deployment").get("web").await.unwrap().metadata.resource_version.unwrap()
}

async fn start_through(proxy_kubeconfig: &tempfile::NamedTempFile, n: &str) -> ControllerProcess {
    let args = [format!("--namespaces={n}"), "--coalesce-window=0".to_string()];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let kubeconfig = proxy_kubeconfig.path().to_str().unwrap().to_string();
    let mut c = ControllerProcess::spawn_with_env(BIN, &args, &[("KUBECONFIG", &kubeconfig)]);
    c.wait_ready(Duration::from_secs(30)).await;
    c
}

async fn reloaded_events(client: &Client, n: &str) -> usize {
    events_for(client, n, "web").await.iter().filter(|(_, reason, _)| reason == "Reloaded").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_of_an_idle_deployment_is_one_patch_and_no_get() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "noget").await;
    let n = ns.name.as_str();
    let (mut barrier, web) = idle_deployment(&client, n).await;
    let (proxy, kubeconfig) = Proxy::start(client.clone()).await;
    let before = resource_version(&client, n).await;
    let _c = start_through(&kubeconfig, n).await;
    barrier.wait_followed().await;
    assert!(proxy.to(&web).is_empty(), "nothing to write at start: {:?}", proxy.to(&web));
    assert_eq!(resource_version(&client, n).await, before, "web was not written since it was listed");

    proxy.clear();
    set_value(&client, n, Res::ConfigMap, "cfg", "v2").await;
    let hash = sha1_hex(b"key=v2");
    wait_for("web to roll to v2", Duration::from_secs(30), || async {
        let t = pod_template(&client, n, "Deployment", "web").await?;
        (env_value(&t, "app", "STAKATER_CFG_CONFIGMAP").as_deref() == Some(hash.as_str())).then_some(())
    })
    .await;
    wait_for("the Reloaded event", Duration::from_secs(30), || async {
        (reloaded_events(&client, n).await == 1).then_some(())
    })
    .await;
    let reload: Vec<String> = proxy.requests().iter().map(|s| format!("{} {}", s.method, s.path)).collect();
    eprintln!("requests for one reload: {} {reload:?}", reload.len());
    assert_eq!(proxy.to(&web), ["PATCH 200"], "one PATCH, no GET of the Deployment");
    assert_eq!(reload.len(), 2, "the PATCH and the Event, nothing else: {reload:?}");
    assert!(reload[1].contains("/events"), "{reload:?}");

    assert_quiet_after(&mut barrier, || async {
        assert_eq!(proxy.to(&web), ["PATCH 200"], "nothing further on web");
        assert_eq!(reloaded_events(&client, n).await, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_between_watch_and_patch_is_kept_and_the_reload_lands_once() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "nogetrace").await;
    let n = ns.name.as_str();
    let (mut barrier, web) = idle_deployment(&client, n).await;
    let (proxy, kubeconfig) = Proxy::start(client.clone()).await;
    let _c = start_through(&kubeconfig, n).await;
    barrier.wait_followed().await;

    // The controller plans on the version it watched; its PATCH is held
    // until a concurrent writer has changed the template.
    let (arrived, go) = proxy.hold("PATCH", &web);
    set_value(&client, n, Res::ConfigMap, "cfg", "v2").await;
    tokio::time::timeout(Duration::from_secs(30), arrived).await.expect("the controller's PATCH").unwrap();
    let edit = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "registry.invalid/app:2", "env": [{"name": "EDITED", "value": "by-writer"}]}
    ]}}}});
    dyn_api(&client, n, "Deployment").patch("web", &PatchParams::default(), &Patch::Strategic(edit)).await.unwrap();
    go.send(()).unwrap();

    let hash = sha1_hex(b"key=v2");
    let t = wait_for("web to roll to v2", Duration::from_secs(30), || async {
        let t = pod_template(&client, n, "Deployment", "web").await?;
        (env_value(&t, "app", "STAKATER_CFG_CONFIGMAP").as_deref() == Some(hash.as_str())).then_some(t)
    })
    .await;
    assert_eq!(env_value(&t, "app", "EDITED").as_deref(), Some("by-writer"), "the writer's edit is kept");
    let image = t.spec.as_ref().unwrap().containers[0].image.clone();
    assert_eq!(image.as_deref(), Some("registry.invalid/app:2"), "the newest template");
    let first = proxy.to(&web);
    assert_eq!(first[..2], ["PATCH 409", "GET 200"], "the stale plan conflicts, the object is read: {first:?}");
    wait_for("the Reloaded event", Duration::from_secs(30), || async {
        (reloaded_events(&client, n).await >= 1).then_some(())
    })
    .await;

    // kube-controller-manager writes web's status after the writer's edit, so
    // the re-planned PATCH may meet a 409 of its own and go round the backoff
    // (read, plan, patch) again; and the writer's edit and those status
    // writes, once watched, ask for the same reload, which conflicts, reads
    // web and finds it current (such a trailing request may still be on its
    // way: `-`). Whatever the order: one PATCH lands, every other one was
    // refused.
    assert_quiet_after(&mut barrier, || async {
        let all = proxy.to(&web);
        let landed = all.iter().filter(|r| *r == "PATCH 200").count();
        assert_eq!(landed, 1, "exactly one reload lands: {all:?}");
        let expected = |r: &String| ["PATCH 200", "PATCH 409", "GET 200"].contains(&r.as_str()) || r.ends_with(" -");
        assert!(all.iter().all(expected), "{all:?}");
        eprintln!("requests to web with a concurrent writer: {all:?}");
        assert_eq!(reloaded_events(&client, n).await, 1);
        let record =
            dyn_api(&client, n, "Deployment").get("web").await.unwrap().metadata.annotations.unwrap()[RECORD].clone();
        assert!(record.contains(&hash), "{record}");
    })
    .await;
}
