//! The initial list on the real apiserver (controller/src/list_mode.rs):
//! a streaming list cut in the middle and restarted, objects deleted while
//! it was cut, and the paged fallback against a kube-apiserver with the
//! WatchList feature gate off.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client};
use pod_reloader_testsupport::{
    ControllerProcess, TestNamespace, admin_client, free_port, kubeconfig_path, repo_root, wait_for,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

/// A TCP proxy between the controller and the apiserver that cuts, once,
/// the first connection that has carried more than `cut_after` bytes
/// towards the controller, then holds everything the controller sends
/// until [`CuttingProxy::reopen`]: new connections wait before reaching the
/// apiserver, and so do requests on connections already open. The latter
/// matters: the restarted watch goes out at once (kube's watcher restarts a
/// list whose stream ended without waiting) and hyper sends it on an idle
/// pooled connection when it has one (one that served a plain LIST, say),
/// so a gate on new connections alone let the restarted list run, and
/// end, before the test had done what it wanted to do in the gap.
struct CuttingProxy {
    port: u16,
    cut: Arc<Notify>,
    was_cut: Arc<AtomicBool>,
    open: Arc<watch::Sender<bool>>,
    /// New connections are closed at once instead of held (see `cut_now`).
    refuse: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl CuttingProxy {
    async fn start(upstream: String, cut_after: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let cut = Arc::new(Notify::new());
        let was_cut = Arc::new(AtomicBool::new(false));
        let (open, open_rx) = watch::channel(true);
        let open = Arc::new(open);
        let refuse = Arc::new(AtomicBool::new(false));
        let (cut2, was_cut2, open2, refuse2) = (cut.clone(), was_cut.clone(), open.clone(), refuse.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                if refuse2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let (upstream, cut, was_cut, open, mut open_rx) =
                    (upstream.clone(), cut2.clone(), was_cut2.clone(), open2.clone(), open_rx.clone());
                tokio::spawn(async move {
                    if open_rx.wait_for(|o| *o).await.is_err() {
                        return;
                    }
                    let Ok(server) = TcpStream::connect(&upstream).await else { return };
                    if relay(client, server, cut_after, &was_cut, &open).await {
                        cut.notify_one();
                    }
                });
            }
        });
        CuttingProxy { port, cut, was_cut, open, refuse, task }
    }

    /// Waits until the proxy has cut its connection; new ones wait from then on.
    async fn wait_cut(&self) {
        tokio::time::timeout(Duration::from_secs(60), self.cut.notified()).await.expect("the proxy cut a connection");
    }

    fn reopen(&self) {
        self.refuse.store(false, Ordering::SeqCst);
        self.open.send_replace(true);
    }

    /// Cuts every connection now and closes new ones at once (the
    /// apiserver unreachable: every re-watch fails) until [`Self::reopen`].
    fn cut_now(&self) {
        self.was_cut.store(true, Ordering::SeqCst);
        self.refuse.store(true, Ordering::SeqCst);
        self.open.send_replace(false);
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Relays one connection; returns true if it was the one cut (then the
/// gate is already closed, before the controller can see the cut). While
/// the gate is closed nothing read from the controller is passed on.
async fn relay(
    mut client: TcpStream,
    mut server: TcpStream,
    cut_after: usize,
    was_cut: &AtomicBool,
    open: &watch::Sender<bool>,
) -> bool {
    let (mut cr, mut cw) = client.split();
    let (mut sr, mut sw) = server.split();
    let up = async {
        let mut gate = open.subscribe();
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = cr.read(&mut buf).await {
            if n == 0 || gate.wait_for(|o| *o).await.is_err() || sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    let down = async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut carried = 0usize;
        while let Ok(n) = sr.read(&mut buf).await {
            if n == 0 || cw.write_all(&buf[..n]).await.is_err() {
                return false;
            }
            carried += n;
            if carried > cut_after && !was_cut.swap(true, Ordering::SeqCst) {
                open.send_replace(false);
                return true; // dropping both sockets cuts the connection
            }
        }
        false
    };
    // The cut closes the gate, and closing it drops every connection: the
    // client's pool keeps none through which a watch could restart early.
    let mut gate = open.subscribe();
    tokio::select! {
        _ = up => false,
        cut = down => cut,
        _ = gate.wait_for(|o| !*o) => false,
    }
}

/// The test bed's kubeconfig with its server replaced by `server`.
fn kubeconfig_via(server: &str) -> (tempfile::TempDir, PathBuf) {
    let text = std::fs::read_to_string(kubeconfig_path()).expect("read the test bed's kubeconfig");
    let (_, rest) = text.split_once("server: ").expect("a server in the kubeconfig");
    let original = rest.lines().next().expect("server line").trim();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, text.replace(original, server)).expect("write kubeconfig");
    (dir, path)
}

/// A controller for namespace `n` that reaches the apiserver through
/// `proxy` (the kubeconfig's directory lives as long as the first value).
fn controller_through(proxy: &CuttingProxy, n: &str) -> (tempfile::TempDir, ControllerProcess) {
    let (dir, kubeconfig) = kubeconfig_via(&format!("https://127.0.0.1:{}", proxy.port));
    let kubeconfig = kubeconfig.to_string_lossy().into_owned();
    let c = ControllerProcess::spawn_with_env(
        BIN,
        &[&format!("--namespaces={n}"), "--coalesce-window=0"],
        &[("KUBECONFIG", kubeconfig.as_str())],
    );
    (dir, c)
}

fn apiserver_address() -> String {
    let text = std::fs::read_to_string(kubeconfig_path()).expect("read the test bed's kubeconfig");
    let (_, rest) = text.split_once("server: https://").expect("an https server in the kubeconfig");
    rest.lines().next().expect("server line").trim().to_string()
}

fn secret_value(i: usize, len: usize) -> String {
    let mut s = format!("object {i} ");
    while s.len() < len {
        s.push_str("0123456789abcdef");
    }
    s.truncate(len);
    s
}

async fn secret_names(client: &Client, ns: &str) -> Vec<String> {
    let list = Api::<Secret>::namespaced(client.clone(), ns).list_metadata(&ListParams::default()).await.expect("list");
    list.items.into_iter().filter_map(|s| s.metadata.name).collect()
}

const WATCHED_SECRETS: &str = "reloader_watched_resources_total{kind=\"Secret\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_list_cut_midway_restarts_and_forgets_what_was_deleted_meanwhile() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "stream-cut").await;
    let n = ns.name.clone();
    // 120 Secrets of 32 KiB: about 5 MB of watch events, cut after 1.5 MB.
    const COUNT: usize = 120;
    for i in 0..COUNT {
        let name = format!("s-{i:03}");
        create(&client, &n, secret(&name, json!({"key": secret_value(i, 32 << 10)}), json!({}), json!({}))).await;
    }
    let auto = json!({"reloader.stakater.com/auto": "true"});
    // web-a follows an object delivered before the cut, web-z one after it,
    // web-d one deleted in the gap (and created again later), web-l one
    // deleted in the gap before it was ever delivered.
    for (deployment, secret_name) in [("web-a", "s-000"), ("web-z", "s-119"), ("web-d", "s-001"), ("web-l", "s-110")] {
        let spec = pod_spec(Res::Secret, secret_name, Use::EnvFrom);
        create(&client, &n, workload("Deployment", deployment, &auto, &json!({}), spec)).await;
    }
    let mut barrier = Barrier::create(&client, &n, &[Res::Secret], json!({})).await;
    for d in ["web-a", "web-z", "web-d", "web-l"] {
        wait_replica_sets(&client, &n, d, 1, Duration::from_secs(30)).await;
    }

    let proxy = CuttingProxy::start(apiserver_address(), 3 << 19).await;
    let (_dir, mut c) = controller_through(&proxy, &n);
    proxy.wait_cut().await;
    assert!(proxy.was_cut.load(Ordering::SeqCst));
    // The part before the cut reached the state (the first objects are held)...
    wait_for("objects of the cut list to be held", Duration::from_secs(30), || async {
        (c.metric(WATCHED_SECRETS).await? >= 10.0).then_some(())
    })
    .await;
    // ...and the list did not end: nothing is ready while its restart waits.
    assert!(
        c.get("/readyz").await.is_some_and(|(code, _)| code != 200),
        "the cut came before the list's end; controller log:\n{}",
        c.logs()
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &n);
    for gone in ["s-001", "s-110"] {
        secrets.delete(gone, &DeleteParams::default()).await.expect("delete in the gap");
    }
    proxy.reopen();
    // Not /readyz: the cut also broke the watches of streams already listed
    // (ConfigMaps), and a resumed watch counts as healthy again only at its
    // next event, which this namespace may never produce.
    wait_for("the initial sync to complete", Duration::from_secs(60), || async {
        c.logs().contains("initial sync complete").then_some(())
    })
    .await;

    // Every Secret that exists is held, and nothing else.
    let exist = secret_names(&client, &n).await.len();
    assert_eq!(exist, COUNT - 2 + 1, "the Secrets of the test and the barrier's");
    wait_for("the held Secrets to match the apiserver's", Duration::from_secs(10), || async {
        (c.metric(WATCHED_SECRETS).await? == exist as f64).then_some(())
    })
    .await;

    // Changes on both sides of the cut roll once; the object re-created
    // after being deleted in the gap is new (no reload on create by default).
    set_value(&client, &n, Res::Secret, "s-000", "changed-a").await;
    set_value(&client, &n, Res::Secret, "s-119", "changed-z").await;
    create(&client, &n, secret("s-001", json!({"key": "born-again"}), json!({}), json!({}))).await;
    assert_quiet_after(&mut barrier, || async {
        assert_eq!(settled_replica_sets(&client, &n, "web-a").await, 2, "web-a rolled once");
        assert_eq!(settled_replica_sets(&client, &n, "web-z").await, 2, "web-z rolled once");
        let web_d = settled_replica_sets(&client, &n, "web-d").await;
        assert_eq!(web_d, 1, "a re-created Secret is new, not a change; controller log:\n{}", c.logs());
        assert_eq!(settled_replica_sets(&client, &n, "web-l").await, 1, "nothing rolled for a deleted Secret");
    })
    .await;
    let t = pod_template(&client, &n, "Deployment", "web-a").await.expect("web-a");
    assert_eq!(env_value(&t, "app", "STAKATER_S_000_SECRET"), Some(sha1_hex(b"key=changed-a")));
    assert_eq!(c.wait_exit(Duration::from_millis(10)).await, None, "the controller never exited");
}

/// A kube-apiserver beside the test bed's (same etcd, certificates and
/// flags) with the WatchList feature gate off: it refuses streaming lists
/// the way apiservers before Kubernetes 1.32 (gate off by default) do.
struct GateOffApiserver {
    child: Child,
    port: u16,
}

impl GateOffApiserver {
    fn start() -> Self {
        let saved = kubeconfig_path().parent().expect("test bed dir").join("cmd/kube-apiserver");
        let text = std::fs::read_to_string(&saved).expect("the test bed's saved kube-apiserver command line");
        // `cmd=([0]="/path/kube-apiserver" [1]="--flag=value" ...)` as bash's `declare -p` writes it.
        let args: Vec<String> =
            text.split("]=\"").skip(1).map(|a| a.split('"').next().unwrap_or_default().to_string()).collect();
        let port = free_port();
        let args: Vec<String> = args
            .into_iter()
            .map(|a| if a.starts_with("--secure-port=") { format!("--secure-port={port}") } else { a })
            .collect();
        let logs = repo_root().join("target/test-logs");
        std::fs::create_dir_all(&logs).expect("log dir");
        let log = std::fs::File::create(logs.join(format!("apiserver-gate-off-{port}.log"))).expect("log");
        let child = Command::new(&args[0])
            .args(&args[1..])
            .arg("--feature-gates=WatchList=false")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start the gate-off kube-apiserver");
        GateOffApiserver { child, port }
    }
}

impl Drop for GateOffApiserver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn client_for(kubeconfig: &std::path::Path) -> Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await.expect("config");
    Client::try_from(config).expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn where_streaming_lists_are_refused_the_controller_lists_in_pages() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "stream-paged").await;
    let n = ns.name.clone();
    // More Secrets than one page holds, so the fallback really pages.
    for i in 0..10 {
        create(&client, &n, secret(&format!("p-{i}"), json!({"key": format!("v{i}")}), json!({}), json!({}))).await;
    }
    let auto = json!({"reloader.stakater.com/auto": "true"});
    create(&client, &n, workload("Deployment", "web", &auto, &json!({}), pod_spec(Res::Secret, "p-7", Use::EnvFrom)))
        .await;
    let mut barrier = Barrier::create(&client, &n, &[Res::Secret], json!({})).await;
    wait_replica_sets(&client, &n, "web", 1, Duration::from_secs(30)).await;

    let api = GateOffApiserver::start();
    let (_dir, kubeconfig) = kubeconfig_via(&format!("https://127.0.0.1:{}", api.port));
    let gate_off = client_for(&kubeconfig).await;
    wait_for("the gate-off kube-apiserver to be ready", Duration::from_secs(90), || async {
        Api::<Secret>::namespaced(gate_off.clone(), &n).list_metadata(&ListParams::default()).await.ok().map(|_| ())
    })
    .await;
    // The premise: this apiserver refuses a streaming list.
    let refused = Api::<Secret>::namespaced(gate_off.clone(), &n)
        .watch(&kube::api::WatchParams::streaming_lists(), "0")
        .await
        .err()
        .expect("a streaming list refused with the gate off");
    assert!(refused.to_string().contains("sendInitialEvents"), "{refused}");

    let kubeconfig = kubeconfig.to_string_lossy().into_owned();
    let mut c = ControllerProcess::spawn_with_env(
        BIN,
        &[&format!("--namespaces={n}"), "--coalesce-window=0"],
        &[("KUBECONFIG", kubeconfig.as_str())],
    );
    c.wait_ready(Duration::from_secs(60)).await;
    let logs = c.logs();
    assert_eq!(logs.matches("refuses streaming lists").count(), 1, "logged once:\n{logs}");
    wait_for("every Secret to be held", Duration::from_secs(10), || async {
        (c.metric(WATCHED_SECRETS).await? == 11.0).then_some(())
    })
    .await;
    set_value(&client, &n, Res::Secret, "p-7", "changed").await;
    set_value(&client, &n, Res::Secret, "p-3", "changed").await;
    assert_quiet_after(&mut barrier, || async {
        assert_eq!(settled_replica_sets(&client, &n, "web").await, 2, "web rolled once");
    })
    .await;
    let t = pod_template(&client, &n, "Deployment", "web").await.expect("web");
    assert_eq!(env_value(&t, "app", "STAKATER_P_7_SECRET"), Some(sha1_hex(b"key=changed")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hidden_paged_mode_lists_every_object() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "stream-forced").await;
    let n = ns.name.clone();
    for i in 0..9 {
        create(&client, &n, secret(&format!("f-{i}"), json!({"key": format!("v{i}")}), json!({}), json!({}))).await;
    }
    let auto = json!({"reloader.stakater.com/auto": "true"});
    create(&client, &n, workload("Deployment", "web", &auto, &json!({}), pod_spec(Res::Secret, "f-8", Use::EnvFrom)))
        .await;
    let mut barrier = Barrier::create(&client, &n, &[Res::Secret], json!({})).await;
    wait_replica_sets(&client, &n, "web", 1, Duration::from_secs(30)).await;
    let c =
        ControllerProcess::start(BIN, &[&format!("--namespaces={n}"), "--coalesce-window=0", "--initial-list=paged"])
            .await;
    assert_eq!(c.metric(WATCHED_SECRETS).await, Some(10.0));
    assert!(!c.logs().contains("refuses streaming lists"));
    set_value(&client, &n, Res::Secret, "f-8", "changed").await;
    assert_quiet_after(&mut barrier, || async {
        assert_eq!(settled_replica_sets(&client, &n, "web").await, 2, "web rolled once");
    })
    .await;
}

/// A network blip after the initial sync: every connection drops, and the
/// watches resume from their resourceVersions without a new list. Streams on
/// which nothing happens afterwards (this namespace's DaemonSets, Jobs, …)
/// count as watching again once quiet (controller/src/watch_health.rs): the
/// replica is ready again without any change in the cluster. Before, it
/// stayed unready until every stream had seen an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_blip_quiet_streams_make_the_replica_ready_again() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "blip").await;
    let n = ns.name.clone();
    create(&client, &n, configmap("cfg", json!({"key": "v1"}), json!({}), json!({}))).await;
    let auto = json!({"reloader.stakater.com/auto": "true"});
    create(
        &client,
        &n,
        workload("Deployment", "web", &auto, &json!({}), pod_spec(Res::ConfigMap, "cfg", Use::EnvFrom)),
    )
    .await;
    let proxy = CuttingProxy::start(apiserver_address(), usize::MAX).await;
    let (_dir, mut c) = controller_through(&proxy, &n);
    c.wait_ready(Duration::from_secs(60)).await;

    proxy.cut_now();
    wait_for("readiness to report the blip", Duration::from_secs(30), || async {
        c.get("/readyz").await.is_some_and(|(code, _)| code != 200).then_some(())
    })
    .await;
    proxy.reopen();
    // Nothing changes in the cluster from here until the replica is ready.
    c.wait_ready(Duration::from_secs(90)).await;
    assert!(c.logs().contains("watch resumed"), "readiness came back through the quiet re-watch");

    // And the resumed watches work: a change rolls once.
    set_value(&client, &n, Res::ConfigMap, "cfg", "v2").await;
    wait_for("the change rolled", Duration::from_secs(30), || async {
        let t = pod_template(&client, &n, "Deployment", "web").await?;
        (env_value(&t, "app", "STAKATER_CFG_CONFIGMAP")? == sha1_hex(b"key=v2")).then_some(())
    })
    .await;
}
