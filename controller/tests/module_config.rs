//! The controller accepts every config the module renders: for every case of
//! `tests/module/values/` and every positive configValues case of
//! `openapi/openapi-case-tests.yaml` (whatever the schema admits), the
//! `config.yaml` Helm rendered into the ConfigMap (the alert URL and the
//! record key pointed at copies of the rendered Secrets) starts the
//! controller, which becomes ready (`/readyz`).

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::PostParams;
use pod_reloader_moduletests::render::{Render, render, render_all};
use pod_reloader_moduletests::tools::root;
use pod_reloader_moduletests::values::Case;
use pod_reloader_moduletests::yaml;
use pod_reloader_testsupport::{ControllerProcess, admin_client, http_get};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_pod-reloader");

fn decode(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or_default()).unwrap_or_default()
}

/// The rendered config.yaml, with its files pointed into `dir`.
fn config_of(r: &Render, dir: &Path) -> Value {
    let cm = r.find("ConfigMap", Some("pod-reloader-config"), None);
    let text = cm.first().and_then(|c| c["data"]["config.yaml"].as_str()).expect("rendered config.yaml");
    let mut cfg = yaml::parse(text, "config.yaml");
    let mut url = r.find("Secret", Some("pod-reloader-alert"), None).first().map(|s| decode(&s["data"]["url"]));
    // alerting.webhook.urlSecretRef: the operator's Secret is mounted, not
    // rendered; a stand-in URL plays its content.
    let dep = r.find("Deployment", Some("pod-reloader"), None)[0];
    let foreign = dep["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|v| v["name"] == "alert" && v["secret"]["secretName"] != "pod-reloader-alert");
    if url.is_none() && foreign {
        url = Some(b"https://alerts.example.invalid/hook".to_vec());
    }
    if let Some(key) = r.find("Secret", Some("pod-reloader-record-key"), None).first() {
        let path = dir.join("record-key");
        std::fs::write(&path, decode(&key["data"]["key"])).expect("write record key");
        cfg["recordKeyFile"] = json!(path);
    }
    if let Some(url) = url {
        let path = dir.join("url");
        std::fs::write(&path, url).expect("write url");
        cfg["alerting"]["webhookUrlFile"] = json!(path);
    }
    // Reloader's webhook mode: the rendered Secret's URL, or a stand-in for
    // the operator's Secret of webhookMode.urlSecretRef.
    if cfg["webhookUrlFile"].as_str().is_some_and(|f| !f.is_empty()) {
        let rendered =
            r.find("Secret", Some("pod-reloader-webhook-mode"), None).first().map(|s| decode(&s["data"]["url"]));
        let path = dir.join("webhook-mode-url");
        let url = rendered.unwrap_or_else(|| b"https://ci.example.invalid/reload".to_vec());
        std::fs::write(&path, url).expect("write webhook mode url");
        cfg["webhookUrlFile"] = json!(path);
    }
    cfg
}

/// Starts the controller on the config of `r`; Err with its log when it
/// exits or is not ready within 30 s.
async fn accepted(r: &Render) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config_of(r, dir.path()).to_string()).expect("write config");
    let pod = format!("accept-{}", r.case.name);
    let mut proc = ControllerProcess::spawn_with_env(
        BIN,
        &["--config", path.to_str().expect("utf-8 path")],
        &[("POD_NAME", pod.as_str()), ("POD_NAMESPACE", "d8-pod-reloader")],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = format!("http://127.0.0.1:{}/readyz", proc.port);
    loop {
        if http_get(&url).await.is_some_and(|(code, _)| code == 200) {
            return Ok(());
        }
        if !proc.is_running() || Instant::now() > deadline {
            let log = proc.logs();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            return Err(tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_starts_with_every_rendered_config() {
    // The Lease of the HA cases lives in the module's namespace; the test
    // bed may be fresh (module_rbac, which also creates it, runs later).
    let namespaces: Api<Namespace> = Api::all(admin_client().await);
    let module_ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "d8-pod-reloader"}})).expect("namespace");
    match namespaces.create(&PostParams::default(), &module_ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("cannot create namespace d8-pod-reloader: {e}"),
    }
    let mut failures = Vec::new();
    for r in render_all() {
        match accepted(&r).await {
            Ok(()) => println!("controller starts and gets ready with the config of {}", r.case.name),
            Err(log) => failures.push(format!("{}: not ready:\n{log}", r.case.name)),
        }
    }
    // Whatever the openapi schema admits must be accepted by the controller.
    let cases = yaml::load(&root().join("openapi").join("openapi-case-tests.yaml"));
    let positive = cases["positive"]["configValues"].as_array().cloned().unwrap_or_default();
    assert!(positive.len() > 20, "positive configValues cases: {}", positive.len());
    for (i, settings) in positive.iter().enumerate() {
        let case = Case::from_settings(&format!("openapi-positive-{i:02}"), settings);
        let result = match render(&case) {
            Ok(r) => accepted(&r).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            failures.push(format!("{}: {e}\n  settings: {settings}", case.name));
        }
    }
    println!("controller accepts the config of every positive openapi case ({} cases)", positive.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
