//! Alerts on reload against a local HTTP receiver on 127.0.0.1: exact
//! payload per sink with additionalInfo, a retry after a 500, a clean
//! give-up, and reloads that go on while the receiver hangs.

// Test code may unwrap (the workspace denies it in shipped code); clippy.toml
// covers #[test] functions, this covers the helpers beside them.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use pod_reloader_testsupport::{ControllerProcess, TestNamespace, admin_client, repo_root, wait_for};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

#[derive(Clone, Copy)]
enum Answer {
    /// Answer with these statuses in turn; the last one repeats.
    Statuses(&'static [u16]),
    /// Accept and never answer.
    Hang,
}

/// One request as received: its head (request line and headers) and body.
type Request = (String, Vec<u8>);

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Request>>>);

impl Seen {
    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn all(&self) -> Vec<Request> {
        self.0.lock().unwrap().clone()
    }
}

/// A tiny HTTP/1.1 receiver; returns its URL (with a secret-looking path) and what it saw.
async fn receiver(answer: Answer) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/T0K3N-must-not-leak", listener.local_addr().unwrap());
    let seen = Seen::default();
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let s = s.clone();
            tokio::spawn(async move {
                loop {
                    let Some((head, body)) = read_request(&mut sock).await else { return };
                    let nth = {
                        let mut v = s.0.lock().unwrap();
                        v.push((head, body));
                        v.len()
                    };
                    match answer {
                        Answer::Hang => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            return;
                        }
                        Answer::Statuses(list) => {
                            let code = list[(nth - 1).min(list.len() - 1)];
                            let resp = format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\n\r\n");
                            if sock.write_all(resp.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (url, seen)
}

/// A config file with alerting on, the URL in a file of its own.
fn alert_config(tag: &str, ns: &str, sink: &str, url: &str) -> String {
    let dir = repo_root().join("target/test-logs");
    std::fs::create_dir_all(&dir).unwrap();
    let url_file = dir.join(format!("alert-url-{tag}-{}", std::process::id()));
    std::fs::write(&url_file, url).unwrap();
    let config = dir.join(format!("alert-config-{tag}-{}.yaml", std::process::id()));
    std::fs::write(
        &config,
        format!(
            "namespaces: [{ns}]\ncoalesceWindow: \"0\"\nalerting:\n  enabled: true\n  sink: {sink}\n  webhookUrlFile: {}\n  additionalInfo: prod-eu\n",
            url_file.display()
        ),
    )
    .unwrap();
    config.display().to_string()
}

async fn deployment_following(client: &kube::Client, ns: &str, name: &str) {
    create(client, ns, configmap(&format!("cfg-{name}"), json!({"key": "v1"}), json!({}), json!({}))).await;
    let auto = json!({"reloader.stakater.com/auto": "true"});
    let spec = pod_spec(Res::ConfigMap, &format!("cfg-{name}"), Use::EnvFrom);
    create(client, ns, workload("Deployment", name, &auto, &json!({}), spec)).await;
}

async fn wait_indexed(c: &ControllerProcess, n: usize) {
    wait_for("Deployments indexed", Duration::from_secs(30), || async {
        (c.metric("reloader_watched_resources_total{kind=\"Deployment\"}").await? as usize == n).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sink_gets_its_exact_payload() {
    let client = admin_client().await;
    for (sink, content_type) in [
        ("slack", "application/json"),
        ("teams", "application/json"),
        ("gchat", "application/json"),
        ("webhook", "text/plain"),
    ] {
        let ns = TestNamespace::create(&client, &format!("alert-{sink}")).await;
        let n = ns.name.as_str();
        let (url, seen) = receiver(Answer::Statuses(&[200])).await;
        deployment_following(&client, n, "web").await;
        let mut barrier = Barrier::create(&client, n, &[Res::ConfigMap], json!({})).await;
        let c = ControllerProcess::start(BIN, &["--config", &alert_config(sink, n, sink, &url)]).await;
        wait_indexed(&c, 1 + barrier.workloads()).await;
        set_value(&client, n, Res::ConfigMap, "cfg-web", "v2").await;
        wait_for(&format!("{sink} alert"), Duration::from_secs(20), || async { (seen.count() == 1).then_some(()) })
            .await;
        let (head, body) = seen.all().remove(0);
        assert!(head.starts_with("POST /hooks/T0K3N-must-not-leak "), "{head}");
        assert!(head.to_ascii_lowercase().contains(&format!("content-type: {content_type}")), "{sink}: {head}");
        let msg = format!(
            "prod-eu : Reloader detected changes in *cfg-web* of type *CONFIGMAP* in namespace *{n}*. Hence reloaded *web* of type *Deployment* in namespace *{n}*"
        );
        let want = match sink {
            "slack" => json!({"attachments": [{"color": "good", "author_name": "Reloader", "text": msg}]}).to_string(),
            "webhook" => msg.replace('*', ""),
            _ => json!({"text": msg}).to_string(),
        };
        if sink == "webhook" {
            assert_eq!(String::from_utf8(body).unwrap(), want);
        } else {
            let got: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(got, serde_json::from_str::<serde_json::Value>(&want).unwrap(), "{sink}");
        }
        // Alerts leave one queue in order: a second alert for web would come before the sentinel's.
        assert_quiet_after(&mut barrier, || async {
            wait_for(&format!("{sink} alert for the sentinel"), Duration::from_secs(20), || async {
                (seen.count() >= 2).then_some(())
            })
            .await;
            let all = seen.all();
            let second = String::from_utf8_lossy(&all[1].1).into_owned();
            assert!(second.contains("barrier-cm"), "{sink}: one alert per reload, then the sentinel's; got {second}");
            assert_eq!(all.len(), 2, "{sink}: one alert per reload");
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_after_500_then_gives_up_cleanly() {
    let client = admin_client().await;
    // Retry: 500 then 200.
    let ns = TestNamespace::create(&client, "alert-retry").await;
    let (url, seen) = receiver(Answer::Statuses(&[500, 200])).await;
    deployment_following(&client, &ns.name, "web").await;
    let c = ControllerProcess::start(BIN, &["--config", &alert_config("retry", &ns.name, "teams", &url)]).await;
    wait_indexed(&c, 1).await;
    set_value(&client, &ns.name, Res::ConfigMap, "cfg-web", "v2").await;
    wait_for("alert sent after a retry", Duration::from_secs(20), || async {
        (c.metric("reloader_alerts_total{result=\"sent\"}").await? == 1.0).then_some(())
    })
    .await;
    assert_eq!(seen.count(), 2, "one failure, one success");

    // Give up: always 500; four attempts, then a warning that names no URL.
    let ns2 = TestNamespace::create(&client, "alert-giveup").await;
    let (url, seen) = receiver(Answer::Statuses(&[500])).await;
    deployment_following(&client, &ns2.name, "web").await;
    let mut barrier = Barrier::create(&client, &ns2.name, &[Res::ConfigMap], json!({})).await;
    let c = ControllerProcess::start(BIN, &["--config", &alert_config("giveup", &ns2.name, "gchat", &url)]).await;
    wait_indexed(&c, 1 + barrier.workloads()).await;
    set_value(&client, &ns2.name, Res::ConfigMap, "cfg-web", "v2").await;
    wait_for("alert given up", Duration::from_secs(30), || async {
        (c.metric("reloader_alerts_total{result=\"failed\"}").await? == 1.0).then_some(())
    })
    .await;
    assert_eq!(seen.count(), 4, "first attempt and three retries");
    // Alerts leave one queue in order: a fifth attempt for web would come before the sentinel's four.
    assert_quiet_after(&mut barrier, || async {
        wait_for("the sentinel's alert given up", Duration::from_secs(30), || async {
            (c.metric("reloader_alerts_total{result=\"failed\"}").await? == 2.0).then_some(())
        })
        .await;
        assert_eq!(seen.count(), 8, "no attempt after giving up: four for web, four for the sentinel");
    })
    .await;
    let logs = c.logs();
    assert!(logs.contains("giving up"), "{logs}");
    assert!(!logs.contains("T0K3N"), "the webhook URL leaked into the log:\n{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_never_delays_reloads() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "alert-hang").await;
    let n = ns.name.as_str();
    let (url, seen) = receiver(Answer::Hang).await;
    for name in ["a", "b", "c"] {
        deployment_following(&client, n, name).await;
    }
    let c = ControllerProcess::start(BIN, &["--config", &alert_config("hang", n, "slack", &url)]).await;
    wait_indexed(&c, 3).await;
    for name in ["a", "b", "c"] {
        set_value(&client, n, Res::ConfigMap, &format!("cfg-{name}"), "v2").await;
        wait_for(&format!("{name} reloaded while the receiver hangs"), Duration::from_secs(5), || async {
            let t = pod_template(&client, n, "Deployment", name).await?;
            env_value(&t, "app", &format!("STAKATER_CFG_{}_CONFIGMAP", name.to_uppercase())).map(|_| ())
        })
        .await;
    }
    assert!(seen.count() >= 1, "the receiver was called");
}
