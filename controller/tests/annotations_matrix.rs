//! The annotation matrix on the real apiserver: every annotation (both
//! families) × {ConfigMap, Secret} × {Deployment, StatefulSet, DaemonSet},
//! for each strategy, with reload and no-reload expectations. All cases of a
//! strategy share one namespace and one controller, and run at once.

// Test code may unwrap (the workspace denies it in shipped code); clippy.toml
// covers #[test] functions, this covers the helpers beside them.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use pod_reloader_testsupport::{ControllerProcess, TestNamespace, admin_client, wait_for};
use serde_json::{Map, Value, json};

const WORKLOADS: [(&str, &str); 3] = [("Deployment", "dep"), ("StatefulSet", "sts"), ("DaemonSet", "ds")];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Change {
    Content,
    MetadataOnly,
}

struct Case {
    id: &'static str,
    meta: Vec<(String, String)>,
    template: Vec<(String, String)>,
    resource_annotations: Vec<(String, String)>,
    uses: Use,
    change: Change,
    /// The container expected to carry the hash, or None for "no reload".
    reload_into: Option<&'static str>,
}

fn kv(pairs: &[(String, String)]) -> Value {
    Value::Object(pairs.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<Map<_, _>>())
}

/// Every case for one resource kind. `res_name(id)` is the resource the case's workload follows.
fn cases(res: Res, res_name: &dyn Fn(&str) -> String, wk: &str) -> Vec<Case> {
    let l = res.lower();
    let p = |k: &str, v: &str| (k.to_string(), v.to_string());
    let base = |id: &'static str, meta: Vec<(String, String)>, uses: Use, into: Option<&'static str>| Case {
        id,
        meta,
        template: vec![],
        resource_annotations: vec![],
        uses,
        change: Change::Content,
        reload_into: into,
    };
    let r = res_name;
    let r_short = if res == Res::ConfigMap { "cm" } else { "sec" };
    vec![
        // Reloads.
        base("auto", vec![p("reloader.stakater.com/auto", "true")], Use::EnvFrom, Some("app")),
        base("dhauto", vec![p("pod-reloader.deckhouse.io/auto", "true")], Use::Volume, Some("app")),
        base("typed", vec![p(&format!("{l}.reloader.stakater.com/auto"), "true")], Use::ValueFrom, Some("app")),
        base("dhtyped", vec![p(&format!("{l}.pod-reloader.deckhouse.io/auto"), "true")], Use::EnvFrom, Some("app")),
        base(
            "list",
            vec![p(&format!("{l}.reloader.stakater.com/reload"), &format!("other, {}", r("list")))],
            Use::Volume,
            Some("app"),
        ),
        base(
            "lre",
            vec![p(&format!("{l}.reloader.stakater.com/reload"), &format!("r-lre-{r_short}-{wk}.*|zzz"))],
            Use::Nothing,
            Some("app"),
        ),
        base(
            "dhlist",
            vec![p(&format!("pod-reloader.deckhouse.io/{l}-reload"), &r("dhlist"))],
            Use::EnvFrom,
            Some("app"),
        ),
        Case {
            resource_annotations: vec![p("reloader.stakater.com/match", "true")],
            ..base("search", vec![p("reloader.stakater.com/search", "true")], Use::EnvFrom, Some("app"))
        },
        Case {
            template: vec![p("reloader.stakater.com/auto", "true")],
            ..base("tmpl", vec![], Use::EnvFrom, Some("app"))
        },
        base("init", vec![p("reloader.stakater.com/auto", "true")], Use::InitOnly, Some("app")),
        // No reload.
        Case {
            resource_annotations: vec![p("reloader.stakater.com/ignore", "true")],
            ..base("ignored", vec![p("reloader.stakater.com/auto", "true")], Use::EnvFrom, None)
        },
        base(
            "excluded",
            vec![
                p("reloader.stakater.com/auto", "true"),
                p(&format!("{l}s.exclude.reloader.stakater.com/reload"), &r("excluded")),
            ],
            Use::EnvFrom,
            None,
        ),
        base("nomatch", vec![p(&format!("{l}.reloader.stakater.com/reload"), "zzz-.*")], Use::EnvFrom, None),
        base("nosearch", vec![p("reloader.stakater.com/search", "true")], Use::EnvFrom, None),
        base("plain", vec![], Use::EnvFrom, None),
        base("optout", vec![p("reloader.stakater.com/auto", "false")], Use::EnvFrom, None),
        Case {
            change: Change::MetadataOnly,
            ..base("meta", vec![p("reloader.stakater.com/auto", "true")], Use::EnvFrom, None)
        },
        base("unref", vec![p("reloader.stakater.com/auto", "true")], Use::Nothing, None),
    ]
}

fn env_name(res: Res, name: &str) -> String {
    format!("STAKATER_{}_{}", name.to_uppercase().replace('-', "_"), res.env_postfix())
}

async fn run_matrix(strategy: &str) {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, &format!("matrix-{strategy}")).await;
    let ns_name = ns.name.clone();
    let mut controller = ControllerProcess::start(
        BIN,
        &[&format!("--namespaces={ns_name}"), &format!("--reload-strategy={strategy}"), "--coalesce-window=100ms"],
    )
    .await;

    struct Planned {
        kind: &'static str,
        workload: String,
        res: Res,
        resource: String,
        case: Case,
    }
    let mut planned = Vec::new();
    for res in [Res::ConfigMap, Res::Secret] {
        let r_short = if res == Res::ConfigMap { "cm" } else { "sec" };
        for (kind, wk) in WORKLOADS {
            let res_name = |id: &str| format!("r-{id}-{r_short}-{wk}");
            for case in cases(res, &res_name, wk) {
                planned.push(Planned {
                    kind,
                    workload: format!("{}-{r_short}-{wk}", case.id),
                    res,
                    resource: res_name(case.id),
                    case,
                });
            }
        }
    }

    for p in &planned {
        create(&client, &ns_name, resource(p.res, &p.resource, "v1", kv(&p.case.resource_annotations), json!({})))
            .await;
    }
    for p in &planned {
        let spec = pod_spec(p.res, &p.resource, p.case.uses);
        create(&client, &ns_name, workload(p.kind, &p.workload, &kv(&p.case.meta), &kv(&p.case.template), spec)).await;
    }
    // The negative cases change ConfigMaps and Secrets: a sentinel on each stream.
    let mut barrier = Barrier::create(&client, &ns_name, &[Res::ConfigMap, Res::Secret], json!({})).await;
    // Wait until the controller holds every workload and resource.
    let per_kind = planned.len() / WORKLOADS.len();
    for (kind, _) in WORKLOADS {
        let per_kind = per_kind + if kind == "Deployment" { barrier.workloads() } else { 0 };
        let prefix = format!("reloader_watched_resources_total{{kind=\"{kind}\"}}");
        wait_for(&format!("controller to index {per_kind} {kind}s"), Duration::from_secs(60), || async {
            (controller.metric(&prefix).await? as usize == per_kind).then_some(())
        })
        .await;
    }
    let secrets = planned.iter().filter(|p| p.res == Res::Secret).count();
    wait_for("controller to hold every Secret", Duration::from_secs(30), || async {
        (controller.metric("reloader_watched_resources_total{kind=\"Secret\"}").await? as usize >= secrets)
            .then_some(())
    })
    .await;
    // Deployments have their first ReplicaSet before anything changes.
    for p in planned.iter().filter(|p| p.kind == "Deployment") {
        wait_replica_sets(&client, &ns_name, &p.workload, 1, Duration::from_secs(60)).await;
    }

    for p in &planned {
        match p.case.change {
            Change::Content => set_value(&client, &ns_name, p.res, &p.resource, &format!("v2-{}", p.resource)).await,
            Change::MetadataOnly => touch_metadata(&client, &ns_name, p.res, &p.resource).await,
        }
    }

    // Every positive case carries the new hash, on the right container.
    for p in planned.iter().filter(|p| p.case.reload_into.is_some()) {
        let container = p.case.reload_into.unwrap();
        let expected = sha1_hex(format!("key=v2-{}", p.resource).as_bytes());
        let what = format!(
            "{} {}/{} to carry the hash of {} {} ({})",
            p.kind,
            ns_name,
            p.workload,
            p.res.kind(),
            p.resource,
            p.case.id
        );
        wait_for(&what, Duration::from_secs(45), || async {
            let t = pod_template(&client, &ns_name, p.kind, &p.workload).await?;
            if strategy == "env-vars" {
                (env_value(&t, container, &env_name(p.res, &p.resource)).as_deref() == Some(expected.as_str()))
                    .then_some(())
            } else {
                let src = last_reloaded_from(&t)?;
                (src["hash"] == expected
                    && src["name"] == p.resource.as_str()
                    && src["namespace"] == ns_name.as_str()
                    && src["type"] == p.res.env_postfix()
                    && src["containerRefs"] == json!([container]))
                .then_some(())
            }
        })
        .await;
    }
    for p in planned.iter().filter(|p| p.kind == "Deployment" && p.case.reload_into.is_some()) {
        wait_replica_sets(&client, &ns_name, &p.workload, 2, Duration::from_secs(30)).await;
    }

    // Negative cases: once the sentinels, edited after every change above, have rolled, nothing else moved.
    assert_quiet_after(&mut barrier, || async {
        for p in planned.iter().filter(|p| p.case.reload_into.is_none()) {
            let t = pod_template(&client, &ns_name, p.kind, &p.workload).await.expect("workload exists");
            assert!(
                all_env_names(&t).is_empty() && last_reloaded_from(&t).is_none(),
                "{} {}/{} ({}) must not be reloaded, but its template is {:?}\ncontroller log:\n{}",
                p.kind,
                ns_name,
                p.workload,
                p.case.id,
                t,
                controller.logs()
            );
            if p.kind == "Deployment" {
                assert_eq!(settled_replica_sets(&client, &ns_name, &p.workload).await, 1, "{} rolled", p.workload);
            }
        }
    })
    .await;
    let reloads = planned.iter().filter(|p| p.case.reload_into.is_some()).count() + barrier.reloads();
    let executed: f64 = {
        let (_, body) = controller.get("/metrics").await.expect("metrics answer");
        body.lines()
            .filter(|l| l.starts_with("reloader_reload_executed_total{") && l.contains("success=\"true\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(executed as usize, reloads, "exactly one reload per positive case");
    let logs = controller.logs();
    for p in planned.iter().filter(|p| p.res == Res::Secret) {
        assert!(!logs.contains(&format!("v2-{}", p.resource)), "secret data leaked into the log");
    }
    controller.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotation_matrix_env_vars() {
    run_matrix("env-vars").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotation_matrix_annotations() {
    run_matrix("annotations").await;
}
