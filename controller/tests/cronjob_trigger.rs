//! Reloader's CronJob behaviour as an opt-in, on the real apiserver: a
//! reloaded CronJob that asks for it (annotation, or the `cronJobTrigger`
//! setting) also gets a Job started from its new job template, as Reloader
//! makes it; one that does not (no annotation and the setting off, the
//! annotation `"false"`, or suspended) only gets its template patched.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::ListParams;
use pod_reloader_testsupport::{ControllerProcess, TestNamespace, admin_client, wait_for};
use serde_json::{Value, json};

const TRIGGER: &str = "pod-reloader.deckhouse.io/cronjob-trigger";

fn cron_job(name: &str, annotations: Value, cm: &str) -> Value {
    let mut c = workload("CronJob", name, &annotations, &json!({}), pod_spec(Res::ConfigMap, cm, Use::EnvFrom));
    c["spec"]["jobTemplate"]["metadata"] =
        json!({"labels": {"team": "batch"}, "annotations": {"note": "from-template"}});
    c
}

async fn controller(ns: &str, extra: &[&str]) -> ControllerProcess {
    let mut args = vec![
        format!("--namespaces={ns}"),
        "--coalesce-window=100ms".into(),
        "--log-level=debug".into(),
        "--log-format=json".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ControllerProcess::start(BIN, &args).await
}

/// The Jobs whose controlling owner is the CronJob `name`.
async fn jobs_of(jobs: &Api<Job>, client: &kube::Client, ns: &str, name: &str) -> Vec<Job> {
    let uid = dyn_api(client, ns, "CronJob").get(name).await.unwrap().metadata.uid.unwrap();
    let list = jobs.list(&ListParams::default()).await.expect("list Jobs");
    list.items
        .into_iter()
        .filter(|j| j.metadata.owner_references.iter().flatten().any(|o| o.uid == uid && o.controller == Some(true)))
        .collect()
}

async fn wait_patched(client: &kube::Client, ns: &str, name: &str, value: &str) {
    let want = sha1_hex(format!("key={value}").as_bytes());
    wait_for(&format!("CronJob {name}'s job template patched"), Duration::from_secs(30), || async {
        let t = pod_template(client, ns, "CronJob", name).await?;
        (env_value(&t, "app", "STAKATER_CFG_CONFIGMAP").as_deref() == Some(want.as_str())).then_some(())
    })
    .await;
}

/// Waits for the controller's log line `message` about CronJob `name`.
async fn wait_logged(c: &ControllerProcess, message: &str, name: &str) {
    wait_for(&format!("{name}: {message}"), Duration::from_secs(30), || async {
        c.logs()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|l| l["message"] == message && l["name"] == name)
            .then_some(())
    })
    .await;
}

const TEMPLATE_ONLY: &str = "CronJob reloaded by its template only";

/// The one Job started from `name`: made as Reloader makes it, from the new template.
fn check_job(job: &Job, name: &str, value: &str) {
    let meta = &job.metadata;
    assert!(meta.name.as_deref().unwrap().starts_with(&format!("{name}-")), "generateName {name}-: {:?}", meta.name);
    assert_eq!(meta.generate_name.as_deref(), Some(format!("{name}-").as_str()));
    let annotations = meta.annotations.clone().unwrap_or_default();
    assert_eq!(annotations.get("cronjob.kubernetes.io/instantiate").map(String::as_str), Some("manual"));
    assert_eq!(annotations.get("note").map(String::as_str), Some("from-template"), "the job template's annotations");
    assert_eq!(meta.labels.clone().unwrap_or_default().get("team").map(String::as_str), Some("batch"));
    let owner = &meta.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.controller), ("CronJob", name, Some(true)));
    let t = &job.spec.as_ref().unwrap().template;
    let want = sha1_hex(format!("key={value}").as_bytes());
    assert_eq!(env_value(t, "app", "STAKATER_CFG_CONFIGMAP").as_deref(), Some(want.as_str()), "the new configuration");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_annotation_starts_a_job_and_nothing_else_does() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "cj-trigger").await;
    let n = ns.name.as_str();
    let jobs: Api<Job> = ns.api();
    create(&client, n, configmap("cfg", json!({"key": "v1"}), json!({}), json!({}))).await;
    let opted_in = json!({"reloader.stakater.com/auto": "true", TRIGGER: "true"});
    create(&client, n, cron_job("runs", opted_in, "cfg")).await;
    create(&client, n, cron_job("patched", json!({"pod-reloader.deckhouse.io/auto": "true"}), "cfg")).await;
    let mut barrier = Barrier::create(&client, n, &[Res::ConfigMap], json!({})).await;
    let c = controller(n, &[]).await;
    barrier.wait_followed().await;
    wait_for("2 CronJobs indexed", Duration::from_secs(30), || async {
        (c.metric("reloader_watched_resources_total{kind=\"CronJob\"}").await? as usize == 2).then_some(())
    })
    .await;

    set_value(&client, n, Res::ConfigMap, "cfg", "v2").await;
    wait_patched(&client, n, "runs", "v2").await;
    wait_patched(&client, n, "patched", "v2").await;
    let started = wait_for("a Job started from CronJob runs", Duration::from_secs(30), || async {
        let j = jobs_of(&jobs, &client, n, "runs").await;
        (!j.is_empty()).then_some(j)
    })
    .await;
    wait_logged(&c, TEMPLATE_ONLY, "patched").await;
    assert_quiet_after(&mut barrier, || async {
        assert_eq!(started.len(), 1, "one Job per reload");
        check_job(&started[0], "runs", "v2");
        assert_eq!(jobs_of(&jobs, &client, n, "runs").await.len(), 1, "still one Job");
        assert!(jobs_of(&jobs, &client, n, "patched").await.is_empty(), "no annotation, setting off: no Job");
        let events = events_for(&client, n, "runs").await;
        assert!(
            events.iter().any(|(_, reason, note)| reason == "TriggeredJob" && note.contains("Created Job runs-")),
            "{events:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_setting_starts_jobs_unless_opted_out_or_suspended() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "cj-trigger-all").await;
    let n = ns.name.as_str();
    let jobs: Api<Job> = ns.api();
    create(&client, n, configmap("cfg", json!({"key": "v1"}), json!({}), json!({}))).await;
    let auto = json!({"reloader.stakater.com/auto": "true"});
    create(&client, n, cron_job("runs", auto.clone(), "cfg")).await;
    create(&client, n, cron_job("opted-out", json!({"reloader.stakater.com/auto": "true", TRIGGER: "false"}), "cfg"))
        .await;
    let mut suspended = cron_job("suspended", auto, "cfg");
    suspended["spec"]["suspend"] = json!(true);
    create(&client, n, suspended).await;
    let mut barrier = Barrier::create(&client, n, &[Res::ConfigMap], json!({})).await;
    let c = controller(n, &["--cronjob-trigger"]).await;
    barrier.wait_followed().await;
    wait_for("3 CronJobs indexed", Duration::from_secs(30), || async {
        (c.metric("reloader_watched_resources_total{kind=\"CronJob\"}").await? as usize == 3).then_some(())
    })
    .await;

    set_value(&client, n, Res::ConfigMap, "cfg", "v2").await;
    for name in ["runs", "opted-out", "suspended"] {
        wait_patched(&client, n, name, "v2").await;
    }
    let started = wait_for("a Job started from CronJob runs", Duration::from_secs(30), || async {
        let j = jobs_of(&jobs, &client, n, "runs").await;
        (!j.is_empty()).then_some(j)
    })
    .await;
    wait_logged(&c, TEMPLATE_ONLY, "opted-out").await;
    wait_logged(&c, "CronJob is suspended: no Job started on reload", "suspended").await;
    assert_quiet_after(&mut barrier, || async {
        assert_eq!(started.len(), 1);
        check_job(&started[0], "runs", "v2");
        assert!(jobs_of(&jobs, &client, n, "opted-out").await.is_empty(), "annotation \"false\": no Job");
        assert!(jobs_of(&jobs, &client, n, "suspended").await.is_empty(), "suspended: no Job");
    })
    .await;
}
