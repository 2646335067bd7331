//! Reloader's `--webhook-url` mode on the real apiserver, against a local
//! receiver: a content change posts exactly Reloader's body
//! `{"webhook":"update successful"}` and patches nothing (the Deployment keeps
//! its generation and its one ReplicaSet, and carries no field of ours); a
//! label-only edit posts nothing; the URL (a token in its path) never shows
//! in the controller's log.
//!
//! Nothing rolls in this mode, so the barrier is the receiver itself: the
//! controller hands batches over in the order the changes came, so once the
//! sentinel's post has arrived, every post the earlier edits caused has too.

// Test code may unwrap (the workspace denies it in shipped code); clippy.toml
// covers #[test] functions, this covers the helpers beside them.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use pod_reloader_testsupport::{ControllerProcess, TestNamespace, admin_client, repo_root, wait_for};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// Requests as received: head (request line and headers) and body.
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A minimal HTTP/1.1 receiver answering 200; its URL has a secret-looking path.
async fn receiver() -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/T0K3N-must-not-leak", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let s = s.clone();
            tokio::spawn(async move {
                loop {
                    let Some((head, body)) = read_request(&mut sock).await else { return };
                    s.lock().unwrap().push((head, body));
                    if sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

fn count(seen: &Seen) -> usize {
    seen.lock().unwrap().len()
}

/// A config watching `ns`, rolling at once, the webhook URL in a file of its own.
fn config(ns: &str, url: &str) -> String {
    let dir = repo_root().join("target/test-logs");
    std::fs::create_dir_all(&dir).unwrap();
    let url_file = dir.join(format!("webhook-mode-url-{}", std::process::id()));
    std::fs::write(&url_file, url).unwrap();
    let path = dir.join(format!("webhook-mode-config-{}.yaml", std::process::id()));
    std::fs::write(
        &path,
        format!("namespaces: [{ns}]\ncoalesceWindow: \"0\"\nwebhookUrlFile: {}\n", url_file.display()),
    )
    .unwrap();
    path.display().to_string()
}

async fn follower(client: &kube::Client, ns: &str, name: &str, cm: &str) {
    create(client, ns, configmap(cm, json!({"key": "v1"}), json!({}), json!({}))).await;
    let auto = json!({"reloader.stakater.com/auto": "true"});
    create(client, ns, workload("Deployment", name, &auto, &json!({}), pod_spec(Res::ConfigMap, cm, Use::EnvFrom)))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_posts_reloaders_body_and_patches_nothing() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "webhook-mode").await;
    let n = ns.name.as_str();
    let (url, seen) = receiver().await;
    follower(&client, n, "web", "cfg-web").await;
    follower(&client, n, "sentinel", "cfg-sentinel").await;
    for d in ["web", "sentinel"] {
        wait_for(&format!("{d}'s ReplicaSet"), Duration::from_secs(30), || async {
            (replica_sets(&client, n, d).await == 1).then_some(())
        })
        .await;
    }
    let c = ControllerProcess::start(BIN, &["--config", &config(n, &url)]).await;
    wait_for("both Deployments indexed", Duration::from_secs(30), || async {
        (c.metric("reloader_watched_resources_total{kind=\"Deployment\"}").await? == 2.0).then_some(())
    })
    .await;

    // A content change, then a label-only edit, then the sentinel's change.
    set_value(&client, n, Res::ConfigMap, "cfg-web", "v2").await;
    touch_metadata(&client, n, Res::ConfigMap, "cfg-web").await;
    set_value(&client, n, Res::ConfigMap, "cfg-sentinel", "v2").await;
    wait_for("the sentinel's post", Duration::from_secs(30), || async { (count(&seen) >= 2).then_some(()) }).await;

    let posts = seen.lock().unwrap().clone();
    assert_eq!(posts.len(), 2, "one post per change that would roll a workload, none for the label edit");
    for (head, body) in &posts {
        assert!(head.starts_with("POST /hooks/T0K3N-must-not-leak HTTP/1.1\r\n"), "{head}");
        assert!(head.to_ascii_lowercase().contains("content-type: application/json"), "{head}");
        assert_eq!(String::from_utf8_lossy(body), r#"{"webhook":"update successful"}"#);
    }
    // Patched nothing: same generation, one ReplicaSet, no field of the controller's, no env var.
    let api: Api<Deployment> = Api::namespaced(client.clone(), n);
    for d in ["web", "sentinel"] {
        let obj = api.get(d).await.unwrap();
        assert_eq!(obj.metadata.generation, Some(1), "{d} was changed");
        assert_eq!(replica_sets(&client, n, d).await, 1, "{d} rolled");
        let managers: Vec<_> = obj.metadata.managed_fields.iter().flatten().filter_map(|f| f.manager.clone()).collect();
        assert!(!managers.iter().any(|m| m == "pod-reloader"), "{d} written by the controller: {managers:?}");
        let t = pod_template(&client, n, "Deployment", d).await.unwrap();
        assert!(all_env_names(&t).is_empty(), "{d}: {:?}", all_env_names(&t));
    }
    assert_eq!(c.metric("reloader_action_total{result=\"success\",workload_kind=\"webhook\"}").await, Some(2.0));
    assert_eq!(c.metric("reloader_skipped_total{reason=\"no_data_change\"}").await, Some(1.0));
    let logs = c.logs();
    assert!(logs.contains("sent the reload to the webhook"), "{logs}");
    assert!(!logs.contains("T0K3N"), "the URL leaked into the log:\n{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_url_stops_start_up_without_echoing_it() {
    let mut c = ControllerProcess::spawn_with_env(BIN, &[], &[("WEBHOOK_URL", "ftp://user:T0K3N@host/")]);
    assert_eq!(c.wait_exit(Duration::from_secs(30)).await, Some(1), "{}", c.logs());
    let logs = c.logs();
    assert!(logs.contains("--webhook-url") && logs.contains("http:// or https://"), "{logs}");
    assert!(!logs.contains("T0K3N"), "{logs}");
}
