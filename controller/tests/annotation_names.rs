//! Reloader's annotation-name flags on the real apiserver: a controller
//! started with `--auto-annotation=example.com/auto` and the other nine
//! renames follows workloads by the renamed names (and by the
//! `pod-reloader.deckhouse.io` names, which stay), and no longer by Reloader's
//! default names; the resource-side names (ignore, match) and the `paused-at`
//! it writes are renamed too; `explain` reads the same names.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use pod_reloader_testsupport::{ControllerProcess, TestNamespace, admin_client, wait_for};
use serde_json::{Value, json};

/// Each of Reloader's flags with the name it is given here.
const RENAMES: [(&str, &str); 10] = [
    ("--auto-annotation", "example.com/auto"),
    ("--configmap-auto-annotation", "example.com/cm-auto"),
    ("--secret-auto-annotation", "example.com/secret-auto"),
    ("--configmap-annotation", "example.com/cm-reload"),
    ("--secret-annotation", "example.com/secret-reload"),
    ("--auto-search-annotation", "example.com/search"),
    ("--search-match-annotation", "example.com/match"),
    ("--ignore-annotation", "example.com/ignore"),
    ("--pause-deployment-annotation", "example.com/pause-period"),
    ("--pause-deployment-time-annotation", "example.com/paused-at"),
];

/// One Deployment following its own ConfigMap or Secret (named after it).
struct Case {
    name: &'static str,
    res: Res,
    workload_annotations: Value,
    resource_annotations: Value,
    uses: Use,
    reloads: bool,
}

fn case(name: &'static str, res: Res, workload: Value, resource: Value, uses: Use, reloads: bool) -> Case {
    Case { name, res, workload_annotations: workload, resource_annotations: resource, uses, reloads }
}

fn cases() -> Vec<Case> {
    let (cm, sec) = (Res::ConfigMap, Res::Secret);
    let t = "true";
    vec![
        // Read only under Reloader's default names: followed by nothing now.
        case("old-auto", cm, json!({"reloader.stakater.com/auto": t}), json!({}), Use::EnvFrom, false),
        case("old-cmauto", cm, json!({"configmap.reloader.stakater.com/auto": t}), json!({}), Use::EnvFrom, false),
        case(
            "old-list",
            cm,
            json!({"configmap.reloader.stakater.com/reload": "old-list"}),
            json!({}),
            Use::Volume,
            false,
        ),
        case(
            "old-secret-list",
            sec,
            json!({"secret.reloader.stakater.com/reload": "old-secret-list"}),
            json!({}),
            Use::EnvFrom,
            false,
        ),
        case(
            "old-search",
            cm,
            json!({"reloader.stakater.com/search": t}),
            json!({"reloader.stakater.com/match": t}),
            Use::EnvFrom,
            false,
        ),
        // The workload searches by the new name, the resource matches by the old one.
        case(
            "old-match",
            cm,
            json!({"example.com/search": t}),
            json!({"reloader.stakater.com/match": t}),
            Use::EnvFrom,
            false,
        ),
        case("new-ignore", cm, json!({"example.com/auto": t}), json!({"example.com/ignore": t}), Use::EnvFrom, false),
        // Reloads: the renamed names, and the Deckhouse family.
        case(
            "old-ignore",
            cm,
            json!({"example.com/auto": t}),
            json!({"reloader.stakater.com/ignore": t}),
            Use::EnvFrom,
            true,
        ),
        case("new-cmauto", cm, json!({"example.com/cm-auto": t}), json!({}), Use::ValueFrom, true),
        case("new-list", cm, json!({"example.com/cm-reload": "new-l.*"}), json!({}), Use::Volume, true),
        case("new-search", cm, json!({"example.com/search": t}), json!({"example.com/match": t}), Use::EnvFrom, true),
        case("dh-auto", cm, json!({"pod-reloader.deckhouse.io/auto": t}), json!({}), Use::EnvFrom, true),
        case("new-secret-auto", sec, json!({"example.com/secret-auto": t}), json!({}), Use::EnvFrom, true),
        case(
            "new-secret-list",
            sec,
            json!({"example.com/secret-reload": "new-secret-list"}),
            json!({}),
            Use::Volume,
            true,
        ),
        case(
            "new-pause",
            cm,
            json!({"example.com/auto": t, "example.com/pause-period": "1h"}),
            json!({}),
            Use::EnvFrom,
            true,
        ),
        // Created last, so a record on it means every Deployment before it is indexed.
        case("new-auto", cm, json!({"example.com/auto": t}), json!({}), Use::EnvFrom, true),
    ]
}

fn env_var(c: &Case) -> String {
    format!("STAKATER_{}_{}", c.name.to_uppercase().replace('-', "_"), c.res.env_postfix())
}

#[tokio::test]
async fn renamed_annotations_replace_reloaders_names() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "annotation-names").await;
    let n = ns.name.as_str();
    let cases = cases();
    // The no-reload cases first: on the Deployment stream they come before
    // `new-auto`, whose record says they are indexed.
    let mut ordered: Vec<&Case> = cases.iter().filter(|c| !c.reloads).collect();
    ordered.extend(cases.iter().filter(|c| c.reloads));
    for c in &ordered {
        create(&client, n, resource(c.res, c.name, "v1", c.resource_annotations.clone(), json!({}))).await;
        let spec = pod_spec(c.res, c.name, c.uses);
        create(&client, n, workload("Deployment", c.name, &c.workload_annotations, &json!({}), spec)).await;
    }

    let mut args: Vec<String> = RENAMES.iter().map(|(flag, name)| format!("{flag}={name}")).collect();
    args.extend([format!("--namespaces={n}"), "--coalesce-window=100ms".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut controller = ControllerProcess::start(BIN, &args).await;
    wait_for("a record on new-auto", Duration::from_secs(45), || async {
        let d = dyn_api(&client, n, "Deployment").get("new-auto").await.ok()?;
        let record = d.metadata.annotations?.get(pod_reloader_core::record::RECORD_ANNOTATION)?.clone();
        record.contains("ConfigMap/new-auto").then_some(())
    })
    .await;

    // Barrier order (see `common::Barrier`): per kind, every change that must
    // not reload is made before the changes that must; once those have rolled,
    // the controller has decided on the earlier ones (one watch stream per
    // kind in this namespace, handled in order).
    for c in &ordered {
        set_value(&client, n, c.res, c.name, "v2").await;
    }
    let hash = sha1_hex(b"key=v2");
    for c in cases.iter().filter(|c| c.reloads) {
        let var = env_var(c);
        wait_for(&format!("{} to roll", c.name), Duration::from_secs(45), || async {
            let t = pod_template(&client, n, "Deployment", c.name).await?;
            (env_value(&t, "app", &var).as_deref() == Some(hash.as_str())).then_some(())
        })
        .await;
    }
    for c in cases.iter().filter(|c| !c.reloads) {
        let t = pod_template(&client, n, "Deployment", c.name).await.expect("template");
        assert_eq!(all_env_names(&t), Vec::<String>::new(), "{} rolled; log:\n{}", c.name, controller.logs());
    }

    // The pause is recorded under the renamed paused-at name.
    let paused = dyn_api(&client, n, "Deployment").get("new-pause").await.expect("new-pause");
    let annotations = paused.metadata.annotations.clone().unwrap_or_default();
    assert!(deployment_paused(&client, n, "new-pause").await, "new-pause is paused for its pause period");
    assert!(annotations.contains_key("example.com/paused-at"), "{annotations:?}");
    assert!(!annotations.contains_key("deployment.reloader.stakater.com/paused-at"), "{annotations:?}");
    assert!(
        controller.logs().contains("annotation renamed") && controller.logs().contains("example.com/auto"),
        "the renames are logged at start:\n{}",
        controller.logs()
    );
    controller.stop();

    // `explain` reads the names its flags give.
    let explain = |extra: &[&str]| {
        let out = Command::new(BIN)
            .args(extra)
            .args(["explain", "deployment/new-list", "-n", n])
            .env("KUBECONFIG", pod_reloader_testsupport::kubeconfig_path())
            .output()
            .expect("run explain");
        assert!(out.status.success(), "explain failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let renamed = explain(&["--configmap-annotation=example.com/cm-reload"]);
    assert!(renamed.contains("reload list [new-l.*]"), "{renamed}");
    let default = explain(&[]);
    assert!(!default.contains("reload list"), "Reloader's names do not see the renamed list:\n{default}");

    // A bad name stops the controller at start with the flag named.
    let out =
        Command::new(BIN).args(["--ignore-annotation=Not Valid", "explain", "deployment/x"]).output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--ignore-annotation") && stderr.contains("annotations.ignore"), "{stderr}");
}
