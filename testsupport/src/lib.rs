//! Support for integration tests that run against the project's real
//! control plane (`make testbed`): a client for it, a namespace per test
//! that is removed afterwards, the controller as a child process, and
//! polling helpers. When the test bed is not running, tests fail with a
//! message saying so; they never pass silently.

#![forbid(unsafe_code)]

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// The repository root. Read at run time: `cargo test` sets
/// `CARGO_MANIFEST_DIR` to the tested crate (`<root>/controller`, …, all one
/// level below the root). The compile-time value is only the fallback: a
/// target directory shared by two checkouts can hand one checkout a test
/// binary built in the other, whose compiled-in path is the other's.
pub fn repo_root() -> PathBuf {
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    Path::new(&crate_dir).parent().expect("a workspace crate has a parent").to_path_buf()
}

/// `<root>/.testbed/kubeconfig`, written by `make testbed`.
pub fn kubeconfig_path() -> PathBuf {
    std::env::var_os("POD_RELOADER_TESTBED_KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".testbed/kubeconfig"))
}

/// A client for the test bed's kube-apiserver, as cluster admin.
pub async fn admin_client() -> Client {
    let path = kubeconfig_path();
    let kubeconfig = Kubeconfig::read_from(&path).unwrap_or_else(|e| {
        panic!(
            "the test bed is not running ({}: {e}).\nStart it with `make testbed` (or run `make test`, which starts it).",
            path.display()
        )
    });
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("test bed kubeconfig is valid");
    let client = Client::try_from(config).expect("client from test bed kubeconfig");
    if let Err(e) = client.apiserver_version().await {
        panic!("the test bed's kube-apiserver does not answer ({e}). Start it with `make testbed`.");
    }
    client
}

static NS_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A namespace of the test's own, deleted when dropped.
pub struct TestNamespace {
    pub name: String,
    client: Client,
}

impl TestNamespace {
    /// Creates `<prefix>-<pid>-<n>`; the names never collide between parallel tests.
    pub async fn create(client: &Client, prefix: &str) -> Self {
        let n = NS_COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"pod-reloader-test": "true"}}
        }))
        .expect("namespace object");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        TestNamespace { name, client: client.clone() }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::env::var_os("POD_RELOADER_KEEP_NAMESPACES").is_some() {
            return;
        }
        let name = self.name.clone();
        // Drop cannot await: delete from a thread with its own runtime and its
        // own client (the test's client is driven by the test's runtime, which
        // may be blocked right here).
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                let client = admin_client().await;
                let _ = Api::<Namespace>::all(client).delete(&name, &DeleteParams::background()).await;
            });
        })
        .join();
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind ephemeral port").local_addr().expect("local addr").port()
}

/// The controller running as a child process against the test bed. Its
/// stdout and stderr go to `log_path` (`target/test-logs/controller-<test
/// pid>-<port>.log`, kept after the test), which [`ControllerProcess::logs`]
/// reads. The test runner's `RUST_LOG` is not passed on: a filter meant for
/// the test (`RUST_LOG=streaming_list=debug`) would silence the controller,
/// whose own default is `info`, and tests read its log. To see more of what
/// it decides, set `CONTROLLER_RUST_LOG` (e.g. `CONTROLLER_RUST_LOG=debug`);
/// an explicit `RUST_LOG` in `spawn_with_env`'s `env` wins over both.
pub struct ControllerProcess {
    child: Child,
    pub port: u16,
    pub log_path: PathBuf,
}

impl ControllerProcess {
    /// Starts `binary` with `args` (plus `--listen-address`) and waits until
    /// `/readyz` answers 200.
    pub async fn start(binary: &str, args: &[&str]) -> Self {
        let mut proc = Self::spawn(binary, args);
        proc.wait_ready(Duration::from_secs(30)).await;
        proc
    }

    /// Starts the process without waiting for readiness.
    pub fn spawn(binary: &str, args: &[&str]) -> Self {
        Self::spawn_with_env(binary, args, &[])
    }

    pub fn spawn_with_env(binary: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let logs = repo_root().join("target/test-logs");
        std::fs::create_dir_all(&logs).expect("create target/test-logs");
        let log_path = logs.join(format!("controller-{}-{port}.log", std::process::id()));
        let log = std::fs::File::create(&log_path).expect("create controller log");
        let mut command = Command::new(binary);
        command.args(args).arg(format!("--listen-address=127.0.0.1:{port}")).env_remove("RUST_LOG");
        if let Some(filter) = std::env::var_os("CONTROLLER_RUST_LOG") {
            command.env("RUST_LOG", filter);
        }
        let child = command
            .env("KUBECONFIG", kubeconfig_path())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {binary}: {e}"));
        ControllerProcess { child, port, log_path }
    }

    pub async fn wait_ready(&mut self, timeout: Duration) {
        let url = format!("http://127.0.0.1:{}/readyz", self.port);
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("controller exited with {status} before ready; log:\n{}", self.logs());
            }
            if http_get(&url).await.is_some_and(|(code, _)| code == 200) {
                return;
            }
            if Instant::now() > deadline {
                panic!("controller not ready after {timeout:?}; log:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// GET a path on the controller's HTTP server: (status, body).
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(&format!("http://127.0.0.1:{}{path}", self.port)).await
    }

    /// The value of a metric line whose name and labels start with `prefix`.
    pub async fn metric(&self, prefix: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics").await?;
        body.lines().filter(|l| l.starts_with(prefix)).find_map(|l| l.rsplit(' ').next()?.parse().ok())
    }

    /// The controller's resident set size in KiB (`VmRSS` of /proc/<pid>/status);
    /// `None` once it has exited.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status.lines().find_map(|l| l.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse().ok())
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits for the process to exit by itself and returns its exit code.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A minimal HTTP/1.0 GET over a TCP socket: the tests need no HTTP client crate.
pub async fn http_get(url: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let mut stream =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(host)).await.ok()?.ok()?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await.ok()?.ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((code, body))
}
