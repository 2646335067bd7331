//! Controller behaviour on the real apiserver beyond the annotation matrix:
//! the other workload kinds, hash vectors, start-up, coalescing, malformed
//! annotations, filters, pause period, invalid settings.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::*;
use pod_reloader_testsupport::{ControllerProcess, TestNamespace, admin_client, wait_for};
use serde_json::json;

fn auto() -> serde_json::Value {
    json!({"reloader.stakater.com/auto": "true"})
}

async fn controller_for(ns: &str, extra: &[&str]) -> ControllerProcess {
    let mut args = vec![format!("--namespaces={ns}")];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ControllerProcess::start(BIN, &args).await
}

async fn wait_indexed(c: &ControllerProcess, kind: &str, n: usize) {
    let prefix = format!("reloader_watched_resources_total{{kind=\"{kind}\"}}");
    wait_for(&format!("{n} {kind}(s) indexed"), Duration::from_secs(30), || async {
        (c.metric(&prefix).await? as usize == n).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cronjob_job_and_rollout_reload() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "kinds").await;
    let n = ns.name.as_str();
    let c = controller_for(n, &["--is-Argo-Rollouts=true", "--coalesce-window=100ms"]).await;
    for name in ["cj", "job", "ro", "ro-restart"] {
        create(&client, n, configmap(&format!("cfg-{name}"), json!({"key": "v1"}), json!({}), json!({}))).await;
    }
    create(
        &client,
        n,
        workload("CronJob", "cj", &auto(), &json!({}), pod_spec(Res::ConfigMap, "cfg-cj", Use::EnvFrom)),
    )
    .await;
    let job = create(
        &client,
        n,
        workload("Job", "job", &auto(), &json!({}), pod_spec(Res::ConfigMap, "cfg-job", Use::EnvFrom)),
    )
    .await;
    create(
        &client,
        n,
        workload("Rollout", "ro", &auto(), &json!({}), pod_spec(Res::ConfigMap, "cfg-ro", Use::EnvFrom)),
    )
    .await;
    let restart = json!({"reloader.stakater.com/auto": "true", "reloader.stakater.com/rollout-strategy": "restart"});
    create(
        &client,
        n,
        workload(
            "Rollout",
            "ro-restart",
            &restart,
            &json!({}),
            pod_spec(Res::ConfigMap, "cfg-ro-restart", Use::EnvFrom),
        ),
    )
    .await;
    wait_indexed(&c, "Rollout", 2).await;
    wait_indexed(&c, "CronJob", 1).await;
    wait_indexed(&c, "Job", 1).await;

    for name in ["cj", "job", "ro", "ro-restart"] {
        set_value(&client, n, Res::ConfigMap, &format!("cfg-{name}"), "v2").await;
    }
    let expected = sha1_hex(b"key=v2");
    for (kind, name, var) in [
        ("CronJob", "cj", "STAKATER_CFG_CJ_CONFIGMAP"),
        ("Job", "job", "STAKATER_CFG_JOB_CONFIGMAP"),
        ("Rollout", "ro", "STAKATER_CFG_RO_CONFIGMAP"),
    ] {
        wait_for(&format!("{kind} {n}/{name} reloaded"), Duration::from_secs(30), || async {
            let t = pod_template(&client, n, kind, name).await?;
            (env_value(&t, "app", var).as_deref() == Some(expected.as_str())).then_some(())
        })
        .await;
    }
    // The Job was recreated (new uid); the CronJob did not start a run.
    let new_job = dyn_api(&client, n, "Job").get("job").await.unwrap();
    assert_ne!(new_job.metadata.uid, job.metadata.uid, "Job recreated");
    let jobs = dyn_api(&client, n, "Job").list(&Default::default()).await.unwrap();
    assert_eq!(jobs.items.len(), 1, "no Job was started from the CronJob");
    // rollout-strategy restart sets restartAt and leaves the template alone.
    let ro = dyn_api(&client, n, "Rollout").get("ro-restart").await.unwrap();
    assert!(ro.data["spec"]["restartAt"].is_string(), "restartAt set: {:?}", ro.data["spec"]);
    let t = pod_template(&client, n, "Rollout", "ro-restart").await.unwrap();
    assert!(all_env_names(&t).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_vectors_match_reloader_canonical_string() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "hash").await;
    let n = ns.name.as_str();
    let c = controller_for(n, &["--coalesce-window=0"]).await;
    let bin1 = [0u8, 1, 2, 250, 255];
    let b64 = base64::engine::general_purpose::STANDARD.encode(bin1);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "mixed"},
        "data": {"b": "2", "a": "1"}, "binaryData": {"bin": b64}});
    create(&client, n, cm).await;
    create(&client, n, secret("creds", json!({"user": "admin", "pass": "x;y=z"}), json!({}), json!({}))).await;
    let spec = json!({"containers": [{"name": "app", "image": "registry.invalid/a:1",
        "envFrom": [{"configMapRef": {"name": "mixed"}}, {"secretRef": {"name": "creds"}}]}]});
    create(&client, n, workload("Deployment", "web", &auto(), &json!({}), spec)).await;
    wait_indexed(&c, "Deployment", 1).await;

    let bin2 = [9u8, 8, 7];
    let b64_2 = base64::engine::general_purpose::STANDARD.encode(bin2);
    dyn_api(&client, n, "ConfigMap")
        .patch(
            "mixed",
            &Default::default(),
            &kube::api::Patch::Merge(json!({"data": {"a": "one"}, "binaryData": {"bin": b64_2}})),
        )
        .await
        .unwrap();
    let cm_expected = sha1_hex(format!("a=one;b=2;bin={b64_2}").as_bytes());
    set_value(&client, n, Res::Secret, "creds", "ignored").await; // adds key "key"
    let secret_expected = sha1_hex(b"key=ignored;pass=x;y=z;user=admin");
    wait_for("both hashes on the Deployment", Duration::from_secs(30), || async {
        let t = pod_template(&client, n, "Deployment", "web").await?;
        (env_value(&t, "app", "STAKATER_MIXED_CONFIGMAP")? == cm_expected
            && env_value(&t, "app", "STAKATER_CREDS_SECRET")? == secret_expected)
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_on_annotated_workloads_rolls_nothing() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "startup").await;
    let n = ns.name.as_str();
    for i in 0..10 {
        create(&client, n, configmap(&format!("cfg-{i}"), json!({"key": "v1"}), json!({}), json!({}))).await;
        create(
            &client,
            n,
            workload(
                "Deployment",
                &format!("web-{i}"),
                &auto(),
                &json!({}),
                pod_spec(Res::ConfigMap, &format!("cfg-{i}"), Use::EnvFrom),
            ),
        )
        .await;
    }
    // The start-up's decisions precede the sentinel's change on the ConfigMap stream.
    let mut barrier = Barrier::create(&client, n, &[Res::ConfigMap], json!({})).await;
    for i in 0..10 {
        wait_replica_sets(&client, n, &format!("web-{i}"), 1, Duration::from_secs(30)).await;
    }
    for round in 0..2 {
        let mut c = controller_for(n, &["--reload-on-create=true"]).await;
        wait_indexed(&c, "Deployment", 10 + barrier.workloads()).await;
        assert_quiet_after(&mut barrier, || async {
            for i in 0..10 {
                let name = format!("web-{i}");
                let t = pod_template(&client, n, "Deployment", &name).await.unwrap();
                assert!(all_env_names(&t).is_empty(), "round {round}: {name} reloaded at start-up: {t:?}");
                assert_eq!(
                    settled_replica_sets(&client, n, &name).await,
                    1,
                    "round {round}: {name} rolled at start-up"
                );
            }
        })
        .await;
        c.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_changes_rolls_once() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "coalesce").await;
    let n = ns.name.as_str();
    // A window the burst surely fits in, even on a loaded machine (five
    // requests took over a second here under load, which split the burst);
    // the burst's duration is checked against it below.
    let c = controller_for(n, &["--coalesce-window=5s"]).await;
    create(&client, n, configmap("cfg", json!({"key": "v0"}), json!({}), json!({}))).await;
    create(&client, n, secret("tls", json!({"key": "v0"}), json!({}), json!({}))).await;
    let spec = json!({"containers": [{"name": "app", "image": "registry.invalid/a:1",
        "envFrom": [{"configMapRef": {"name": "cfg"}}, {"secretRef": {"name": "tls"}}]}]});
    create(&client, n, workload("Deployment", "web", &auto(), &json!({}), spec)).await;
    // Edits of both kinds are under test: a sentinel on each stream.
    let mut barrier = Barrier::create(&client, n, &[Res::ConfigMap, Res::Secret], json!({})).await;
    wait_indexed(&c, "Deployment", 1 + barrier.workloads()).await;
    wait_replica_sets(&client, n, "web", 1, Duration::from_secs(30)).await;

    // 5 edits within ~200 ms to the Deployment's ConfigMap and Secret.
    let burst = std::time::Instant::now();
    for i in 1..=5 {
        let res = if i % 2 == 0 { Res::Secret } else { Res::ConfigMap };
        set_value(&client, n, res, if res == Res::Secret { "tls" } else { "cfg" }, &format!("v{i}")).await;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert!(burst.elapsed() < Duration::from_secs(4), "the burst took {:?}, longer than the window", burst.elapsed());
    wait_for("the coalesced rollout", Duration::from_secs(20), || async {
        let t = pod_template(&client, n, "Deployment", "web").await?;
        (env_value(&t, "app", "STAKATER_CFG_CONFIGMAP")? == sha1_hex(b"key=v5")
            && env_value(&t, "app", "STAKATER_TLS_SECRET")? == sha1_hex(b"key=v4"))
        .then_some(())
    })
    .await;
    assert_quiet_after(&mut barrier, || async {
        assert_eq!(settled_replica_sets(&client, n, "web").await, 2, "exactly one new ReplicaSet");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_annotations_warn_and_others_keep_reloading() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "malformed").await;
    let n = ns.name.as_str();
    let c = controller_for(n, &["--coalesce-window=0"]).await;
    create(&client, n, configmap("cfg", json!({"key": "v1"}), json!({}), json!({}))).await;
    let bad_regex = json!({"configmap.reloader.stakater.com/reload": "[unclosed"});
    let bad_bool = json!({"reloader.stakater.com/auto": "maybe"});
    create(
        &client,
        n,
        workload("Deployment", "bad-regex", &bad_regex, &json!({}), pod_spec(Res::ConfigMap, "cfg", Use::EnvFrom)),
    )
    .await;
    create(
        &client,
        n,
        workload("Deployment", "bad-bool", &bad_bool, &json!({}), pod_spec(Res::ConfigMap, "cfg", Use::EnvFrom)),
    )
    .await;
    create(
        &client,
        n,
        workload("Deployment", "good", &auto(), &json!({}), pod_spec(Res::ConfigMap, "cfg", Use::EnvFrom)),
    )
    .await;
    wait_indexed(&c, "Deployment", 3).await;
    for (name, needle) in [("bad-regex", "[unclosed"), ("bad-bool", "maybe")] {
        let events = wait_for(&format!("a Warning event on {name}"), Duration::from_secs(20), || async {
            let ev = events_for(&client, n, name).await;
            ev.iter().any(|(t, r, _)| t == "Warning" && r == "InvalidAnnotation").then_some(ev)
        })
        .await;
        let (_, _, note) = events.iter().find(|(_, r, _)| r == "InvalidAnnotation").unwrap();
        assert!(note.contains(needle), "the event names the value: {note}");
    }
    set_value(&client, n, Res::ConfigMap, "cfg", "v2").await;
    wait_for("the good Deployment reloaded", Duration::from_secs(20), || async {
        let t = pod_template(&client, n, "Deployment", "good").await?;
        (env_value(&t, "app", "STAKATER_CFG_CONFIGMAP")? == sha1_hex(b"key=v2")).then_some(())
    })
    .await;
    assert!(c.get("/healthz").await.is_some_and(|(code, _)| code == 200), "controller still alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_label_selector_and_ignored_namespace() {
    let client = admin_client().await;
    let a = TestNamespace::create(&client, "filter-a").await;
    let b = TestNamespace::create(&client, "filter-b").await;
    // Both namespaces are chosen by a label, so the controller watches
    // cluster-wide: one ConfigMap stream carries the edits in `b` and the
    // sentinel in `a`, in order. (With `--namespaces=a,b` each namespace has
    // a stream of its own, and nothing in the ignored `b` could serve as a
    // barrier for `b`.)
    let tag = a.name.clone();
    let ns_api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client.clone());
    for ns in [&a.name, &b.name] {
        ns_api
            .patch(ns, &Default::default(), &kube::api::Patch::Merge(json!({"metadata": {"labels": {"filter": tag}}})))
            .await
            .unwrap();
    }
    let _c = ControllerProcess::start(
        BIN,
        &[
            &format!("--namespace-selector=filter={tag}"),
            &format!("--namespaces-to-ignore={}", b.name),
            "--resource-label-selector=reload in (yes)",
            "--coalesce-window=0",
        ],
    )
    .await;
    for ns in [&a.name, &b.name] {
        create(&client, ns, configmap("labelled", json!({"key": "v1"}), json!({}), json!({"reload": "yes"}))).await;
        create(&client, ns, configmap("unlabelled", json!({"key": "v1"}), json!({}), json!({}))).await;
        create(
            &client,
            ns,
            workload(
                "Deployment",
                "uses-labelled",
                &auto(),
                &json!({}),
                pod_spec(Res::ConfigMap, "labelled", Use::EnvFrom),
            ),
        )
        .await;
        create(
            &client,
            ns,
            workload(
                "Deployment",
                "uses-unlabelled",
                &auto(),
                &json!({}),
                pod_spec(Res::ConfigMap, "unlabelled", Use::EnvFrom),
            ),
        )
        .await;
    }
    // Created last: its record shows every Deployment above is held.
    let mut barrier = Barrier::create(&client, &a.name, &[Res::ConfigMap], json!({"reload": "yes"})).await;
    barrier.wait_followed().await;
    // The edits that must reload nothing come first on the stream.
    for (ns, name) in [(&b.name, "labelled"), (&b.name, "unlabelled"), (&a.name, "unlabelled"), (&a.name, "labelled")] {
        set_value(&client, ns, Res::ConfigMap, name, "v2").await;
    }
    wait_for("labelled ConfigMap reloads in the watched namespace", Duration::from_secs(20), || async {
        let t = pod_template(&client, &a.name, "Deployment", "uses-labelled").await?;
        env_value(&t, "app", "STAKATER_LABELLED_CONFIGMAP").map(|_| ())
    })
    .await;
    assert_quiet_after(&mut barrier, || async {
        let t = pod_template(&client, &a.name, "Deployment", "uses-unlabelled").await.unwrap();
        assert!(all_env_names(&t).is_empty(), "a ConfigMap outside the label selector reloads nothing");
        for name in ["uses-labelled", "uses-unlabelled"] {
            let t = pod_template(&client, &b.name, "Deployment", name).await.unwrap();
            assert!(all_env_names(&t).is_empty(), "ignored namespace: {name} must not reload");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_selector_limits_reloads() {
    let client = admin_client().await;
    let selected = TestNamespace::create(&client, "nssel-yes").await;
    let other = TestNamespace::create(&client, "nssel-no").await;
    let tag = selected.name.clone();
    let ns_api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client.clone());
    ns_api
        .patch(
            &selected.name,
            &Default::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"labels": {"nssel": tag}}})),
        )
        .await
        .unwrap();
    // Cluster-wide watch, narrowed to namespaces carrying this test's label.
    let c = ControllerProcess::start(BIN, &[&format!("--namespace-selector=nssel={tag}"), "--coalesce-window=0"]).await;
    // One cluster-wide stream per kind: what happens in `other` comes
    // first, the sentinel in the selected namespace last.
    for ns in [&other.name, &selected.name] {
        create(&client, ns, configmap("cfg", json!({"key": "v1"}), json!({}), json!({}))).await;
        create(
            &client,
            ns,
            workload("Deployment", "web", &auto(), &json!({}), pod_spec(Res::ConfigMap, "cfg", Use::EnvFrom)),
        )
        .await;
    }
    let mut barrier = Barrier::create(&client, &selected.name, &[Res::ConfigMap], json!({})).await;
    barrier.wait_followed().await;
    for ns in [&other.name, &selected.name] {
        set_value(&client, ns, Res::ConfigMap, "cfg", "v2").await;
    }
    wait_for("reload in the selected namespace", Duration::from_secs(20), || async {
        let t = pod_template(&client, &selected.name, "Deployment", "web").await?;
        env_value(&t, "app", "STAKATER_CFG_CONFIGMAP").map(|_| ())
    })
    .await;
    assert_quiet_after(&mut barrier, || async {
        let t = pod_template(&client, &other.name, "Deployment", "web").await.unwrap();
        assert!(all_env_names(&t).is_empty(), "namespace not selected must not reload");
    })
    .await;
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_period_resumes_even_across_a_restart() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "pause").await;
    let n = ns.name.as_str();
    let mut c = controller_for(n, &["--coalesce-window=0"]).await;
    create(&client, n, configmap("cfg", json!({"key": "v1"}), json!({}), json!({}))).await;
    let ann = json!({"reloader.stakater.com/auto": "true", "deployment.reloader.stakater.com/pause-period": "6s"});
    create(&client, n, workload("Deployment", "web", &ann, &json!({}), pod_spec(Res::ConfigMap, "cfg", Use::EnvFrom)))
        .await;
    wait_indexed(&c, "Deployment", 1).await;
    set_value(&client, n, Res::ConfigMap, "cfg", "v2").await;
    wait_for("Deployment paused by the reload", Duration::from_secs(20), || async {
        deployment_paused(&client, n, "web").await.then_some(())
    })
    .await;
    // The controller that paused it goes away; a new one must resume it.
    c.stop();
    let _c2 = controller_for(n, &["--coalesce-window=0"]).await;
    wait_for("Deployment resumed after its pause period", Duration::from_secs(30), || async {
        (!deployment_paused(&client, n, "web").await).then_some(())
    })
    .await;
    let d = dyn_api(&client, n, "Deployment").get("web").await.unwrap();
    assert!(
        !d.metadata.annotations.unwrap_or_default().contains_key("deployment.reloader.stakater.com/paused-at"),
        "paused-at removed on resume"
    );
}

#[tokio::test]
async fn invalid_settings_stop_start_up_naming_the_setting() {
    for (args, needle) in [
        (vec!["--reload-strategy=restart"], "reloadStrategy=\"restart\""),
        (vec!["--resource-label-selector=a in b"], "resourceLabelSelector"),
        (vec!["--namespace-selector=Bad Key=1"], "namespaceSelector"),
        (vec!["--ignored-workload-types=pods"], "ignoredWorkloadTypes=\"pods\""),
    ] {
        let out = std::process::Command::new(BIN).args(&args).output().expect("run binary");
        assert_eq!(out.status.code(), Some(2), "{args:?} must stop start-up");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_on_create_and_on_delete() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "create-delete").await;
    let n = ns.name.as_str();
    let c = controller_for(n, &["--reload-on-create=true", "--reload-on-delete=true", "--coalesce-window=0"]).await;
    // The Deployment references a ConfigMap that does not exist yet.
    create(
        &client,
        n,
        workload("Deployment", "web", &auto(), &json!({}), pod_spec(Res::ConfigMap, "later", Use::EnvFrom)),
    )
    .await;
    wait_indexed(&c, "Deployment", 1).await;
    create(&client, n, configmap("later", json!({"key": "v1"}), json!({}), json!({}))).await;
    wait_for("reload on create", Duration::from_secs(20), || async {
        let t = pod_template(&client, n, "Deployment", "web").await?;
        (env_value(&t, "app", "STAKATER_LATER_CONFIGMAP")? == sha1_hex(b"key=v1")).then_some(())
    })
    .await;
    dyn_api(&client, n, "ConfigMap").delete("later", &Default::default()).await.unwrap();
    wait_for("env var removed on delete", Duration::from_secs(20), || async {
        let t = pod_template(&client, n, "Deployment", "web").await?;
        all_env_names(&t).is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_mib_secret_and_a_missing_configmap_break_nothing() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "big").await;
    let n = ns.name.as_str();
    let c = controller_for(n, &["--coalesce-window=0"]).await;
    // Just under the 1 MiB object limit once base64-encoded data and metadata are counted.
    let big = "s".repeat(700 * 1024);
    create(&client, n, secret("big", json!({"key": big}), json!({}), json!({}))).await;
    let spec = json!({"containers": [{"name": "app", "image": "registry.invalid/a:1",
        "envFrom": [{"secretRef": {"name": "big"}}, {"configMapRef": {"name": "does-not-exist"}}]}]});
    create(&client, n, workload("Deployment", "web", &auto(), &json!({}), spec)).await;
    wait_indexed(&c, "Deployment", 1).await;
    let bigger = "t".repeat(700 * 1024);
    set_value(&client, n, Res::Secret, "big", &bigger).await;
    let expected = sha1_hex(format!("key={bigger}").as_bytes());
    wait_for("the big Secret reloads", Duration::from_secs(20), || async {
        let t = pod_template(&client, n, "Deployment", "web").await?;
        (env_value(&t, "app", "STAKATER_BIG_SECRET")? == expected).then_some(())
    })
    .await;
    let logs = c.logs();
    assert!(!logs.contains("ttttttttttttttttttttttttttttt"), "secret data in the log");
    assert!(c.get("/healthz").await.is_some_and(|(code, _)| code == 200));
}
