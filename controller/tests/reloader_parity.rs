//! Stakater Reloader's spellings on the real apiserver: its selector forms
//! (`key:value`, `key:*`) filter as the standard selectors do, and its flags
//! that need nothing here are accepted, with `/live` answering.

// Test code may unwrap (the workspace denies it in shipped code); clippy.toml
// covers #[test] functions, this covers the helpers beside them.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use pod_reloader_testsupport::{ControllerProcess, TestNamespace, admin_client, wait_for};
use serde_json::json;

/// Runs one filtering scenario with the given selector spellings, built from
/// the two label keys: `selector(ns_key, res_key)` gives the
/// `--namespace-selector` and `--resource-label-selector` values. Namespace
/// `selected` carries `ns_key` (any value), `other` does not; ConfigMaps
/// labelled `res_key=on` are followed, `res_key=off` and unlabelled ones are
/// not. Only the Deployment using the `on` ConfigMap in `selected` reloads.
async fn selector_scenario(prefix: &str, selector: impl Fn(&str, &str) -> (String, String)) {
    let client = admin_client().await;
    let selected = TestNamespace::create(&client, &format!("{prefix}-yes")).await;
    let other = TestNamespace::create(&client, &format!("{prefix}-no")).await;
    let ns_key = format!("ns.{}", selected.name);
    let res_key = format!("res.{}", selected.name);
    let ns_api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client.clone());
    // Any value: `key:*` asks only that the label exists.
    ns_api
        .patch(
            &selected.name,
            &Default::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"labels": {&ns_key: "whatever"}}})),
        )
        .await
        .unwrap();
    let (ns_sel, res_sel) = selector(&ns_key, &res_key);
    let c = ControllerProcess::start(
        BIN,
        &[
            &format!("--namespace-selector={ns_sel}"),
            &format!("--resource-label-selector={res_sel}"),
            "--coalesce-window=0",
        ],
    )
    .await;
    for ns in [&other.name, &selected.name] {
        for (cm, labels) in [("on", json!({&res_key: "on"})), ("off", json!({&res_key: "off"})), ("none", json!({}))] {
            create(&client, ns, configmap(cm, json!({"key": "v1"}), json!({}), labels)).await;
            let auto = json!({"reloader.stakater.com/auto": "true"});
            create(
                &client,
                ns,
                workload(
                    "Deployment",
                    &format!("uses-{cm}"),
                    &auto,
                    &json!({}),
                    pod_spec(Res::ConfigMap, cm, Use::EnvFrom),
                ),
            )
            .await;
        }
    }
    // Created last, in the selected namespace with the followed label: its
    // record shows every Deployment above is held.
    let mut barrier = Barrier::create(&client, &selected.name, &[Res::ConfigMap], json!({&res_key: "on"})).await;
    barrier.wait_followed().await;
    // The edits that must reload nothing come first on the stream.
    for (ns, cm) in [
        (&other.name, "on"),
        (&other.name, "off"),
        (&other.name, "none"),
        (&selected.name, "off"),
        (&selected.name, "none"),
        (&selected.name, "on"),
    ] {
        set_value(&client, ns, Res::ConfigMap, cm, "v2").await;
    }
    wait_for(&format!("{prefix}: the followed ConfigMap reloads"), Duration::from_secs(20), || async {
        let t = pod_template(&client, &selected.name, "Deployment", "uses-on").await?;
        (env_value(&t, "app", "STAKATER_ON_CONFIGMAP")? == sha1_hex(b"key=v2")).then_some(())
    })
    .await;
    assert_quiet_after(&mut barrier, || async {
        for (ns, name) in [
            (&selected.name, "uses-off"),
            (&selected.name, "uses-none"),
            (&other.name, "uses-on"),
            (&other.name, "uses-off"),
            (&other.name, "uses-none"),
        ] {
            let t = pod_template(&client, ns, "Deployment", name).await.unwrap();
            assert!(all_env_names(&t).is_empty(), "{prefix} ({ns_sel} / {res_sel}): {ns}/{name} must not reload");
        }
    })
    .await;
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloader_selector_forms_filter_as_the_standard_forms_do() {
    // The standard spellings first: the reference outcome.
    selector_scenario("sel-std", |ns_key, res_key| (ns_key.to_string(), format!("{res_key}=on"))).await;
    // Reloader's: `key:*` for the namespace, `key:value` for the resources.
    selector_scenario("sel-rl", |ns_key, res_key| (format!("{ns_key}:*"), format!("{res_key}:on"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloader_flags_without_effect_are_accepted_and_live_answers() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "noeffect").await;
    let n = ns.name.as_str();
    let c = ControllerProcess::start(
        BIN,
        &[
            &format!("--namespaces={n}"),
            "--sync-after-restart",
            "--enable-pprof=true",
            "--pprof-addr=:6060",
            "--is-openshift",
            "--is-Argo-Rollouts=false",
            "--log-level=fatal",
            "--coalesce-window=0",
        ],
    )
    .await;
    assert_eq!(c.get("/live").await.map(|(code, _)| code), Some(200), "/live answers as /healthz");
    assert_eq!(c.get("/healthz").await.map(|(code, _)| code), Some(200));
    // It still reloads: the flags changed nothing.
    create(&client, n, configmap("cfg", json!({"key": "v1"}), json!({}), json!({}))).await;
    let auto = json!({"reloader.stakater.com/auto": "true"});
    create(&client, n, workload("Deployment", "web", &auto, &json!({}), pod_spec(Res::ConfigMap, "cfg", Use::EnvFrom)))
        .await;
    wait_for("Deployment indexed", Duration::from_secs(30), || async {
        let v = c.metric("reloader_watched_resources_total{kind=\"Deployment\"}").await?;
        (v as usize == 1).then_some(())
    })
    .await;
    set_value(&client, n, Res::ConfigMap, "cfg", "v2").await;
    wait_for("reload with the no-effect flags given", Duration::from_secs(20), || async {
        let t = pod_template(&client, n, "Deployment", "web").await?;
        (env_value(&t, "app", "STAKATER_CFG_CONFIGMAP")? == sha1_hex(b"key=v2")).then_some(())
    })
    .await;
    // --log-level=fatal means error: the info lines about the flags are not
    // written, and nothing else is either while all goes well.
    let logs = c.logs();
    assert!(!logs.contains("starting pod-reloader"), "fatal maps to error, info is off:\n{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_flag_without_effect_logs_why_at_start() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "noeffect-log").await;
    let c = ControllerProcess::start(
        BIN,
        &[
            &format!("--namespaces={}", ns.name),
            "--sync-after-restart=true",
            "--enable-pprof",
            "--pprof-addr",
            "127.0.0.1:6060",
            "--is-openshift=true",
            "--log-format=json",
        ],
    )
    .await;
    assert_eq!(c.get("/live").await.map(|(code, _)| code), Some(200));
    let logs = c.logs();
    for flag in ["--sync-after-restart", "--enable-pprof", "--pprof-addr", "--is-openshift"] {
        let lines: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains(&format!("\"flag\":\"{flag}\"")) && l.contains("nothing to do"))
            .collect();
        assert_eq!(lines.len(), 1, "one line for {flag}:\n{logs}");
    }
    assert!(logs.contains("level-triggered"), "sync-after-restart says why:\n{logs}");
}

/// A reload the apiserver refuses is reported as Reloader reports it: a
/// Warning event with reason `ReloadFail` on the workload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_reload_is_a_reload_fail_event() {
    use k8s_openapi::api::admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding};
    use kube::api::{DeleteParams, Patch, PatchParams, PostParams};

    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "reloadfail").await;
    let n = ns.name.as_str();
    create(&client, n, configmap("cfg", json!({"key": "v1"}), json!({}), json!({}))).await;
    let auto = json!({"reloader.stakater.com/auto": "true"});
    create(
        &client,
        n,
        workload("Deployment", "frozen", &auto, &json!({}), pod_spec(Res::ConfigMap, "cfg", Use::EnvFrom)),
    )
    .await;
    // An admission policy that refuses any change of this namespace's pod
    // templates: a reload is refused, a metadata-only record is not.
    let policy_name = format!("freeze-templates-{n}");
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(json!({
        "metadata": {"name": policy_name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["deployments"]
            }]},
            "validations": [{
                "expression": "object.spec.template.spec == oldObject.spec.template.spec",
                "message": "pod templates are frozen in this namespace"
            }]
        }
    }))
    .unwrap();
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
        "metadata": {"name": policy_name},
        "spec": {
            "policyName": policy_name,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": n}}}
        }
    }))
    .unwrap();
    let policies: kube::Api<ValidatingAdmissionPolicy> = kube::Api::all(client.clone());
    let bindings: kube::Api<ValidatingAdmissionPolicyBinding> = kube::Api::all(client.clone());
    policies.create(&PostParams::default(), &policy).await.unwrap();
    bindings.create(&PostParams::default(), &binding).await.unwrap();
    // Policies load asynchronously: wait until a dry-run template change is refused.
    let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> = kube::Api::namespaced(client.clone(), n);
    let probe = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "env": [{"name": "PROBE", "value": "1"}]}]}}}});
    wait_for("the admission policy enforced", Duration::from_secs(30), || async {
        let r = deployments.patch("frozen", &PatchParams::default().dry_run(), &Patch::Strategic(probe.clone())).await;
        r.is_err().then_some(())
    })
    .await;

    let c = ControllerProcess::start(BIN, &[&format!("--namespaces={n}"), "--coalesce-window=0"]).await;
    wait_for("Deployment indexed", Duration::from_secs(30), || async {
        let v = c.metric("reloader_watched_resources_total{kind=\"Deployment\"}").await?;
        (v as usize == 1).then_some(())
    })
    .await;
    set_value(&client, n, Res::ConfigMap, "cfg", "v2").await;
    let events = wait_for("a ReloadFail Warning on the Deployment", Duration::from_secs(30), || async {
        let ev = events_for(&client, n, "frozen").await;
        ev.iter().any(|(t, r, _)| t == "Warning" && r == "ReloadFail").then_some(ev)
    })
    .await;
    let _ = bindings.delete(&policy_name, &DeleteParams::default()).await;
    let _ = policies.delete(&policy_name, &DeleteParams::default()).await;
    let (_, _, note) = events.iter().find(|(_, r, _)| r == "ReloadFail").unwrap();
    assert!(
        note.contains("cfg") && note.contains("frozen in this namespace"),
        "the note names the ConfigMap and the refusal: {note}"
    );
    assert!(events.iter().all(|(_, r, _)| r != "ReloadFailed"), "no event under the old reason: {events:?}");
    let t = pod_template(&client, n, "Deployment", "frozen").await.unwrap();
    assert!(all_env_names(&t).is_empty(), "the refused reload changed nothing");
}
