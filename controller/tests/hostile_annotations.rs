//! A tenant's annotations cannot take the controller down (issue 13, items
//! 1 and 4): reload lists full of regexes that compile huge, lists longer
//! than the caps, and values of hundreds of KiB cost the controller little
//! memory, give one short Warning, and stop no other workload's reloads.
//! Updates that leave the annotations alone (kube-controller-manager's
//! status writes) parse nothing again.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use pod_reloader_testsupport::{ControllerProcess, TestNamespace, admin_client, wait_for};
use serde_json::json;

const CM_LIST: &str = "configmap.reloader.stakater.com/reload";
const CM_LIST_DH: &str = "pod-reloader.deckhouse.io/configmap-reload";
const SECRET_LIST: &str = "secret.reloader.stakater.com/reload";
const SECRET_LIST_DH: &str = "pod-reloader.deckhouse.io/secret-reload";
const RSS_LIMIT_KIB: u64 = 64 * 1024;

fn list(n: usize, entry: &str) -> String {
    vec![entry; n].join(",")
}

async fn controller_for(ns: &str) -> ControllerProcess {
    let args = [format!("--namespaces={ns}"), "--coalesce-window=0".to_string()];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Debug for the watch module only: it logs each policy it parses.
    let mut c = ControllerProcess::spawn_with_env(BIN, &args, &[("RUST_LOG", "info,pod_reloader::watch=debug")]);
    c.wait_ready(Duration::from_secs(30)).await;
    c
}

async fn wait_indexed(c: &ControllerProcess, n: usize) {
    let prefix = "reloader_watched_resources_total{kind=\"Deployment\"}";
    wait_for(&format!("{n} Deployment(s) indexed"), Duration::from_secs(30), || async {
        (c.metric(prefix).await? as usize == n).then_some(())
    })
    .await;
}

fn rss(c: &mut ControllerProcess) -> u64 {
    assert!(c.is_running(), "the controller died; log tail:\n{}", tail(&c.logs()));
    c.rss_kib().expect("VmRSS of the controller")
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The controller's RSS, sampled every 50 ms for `span`: the highest seen.
async fn peak_rss(c: &mut ControllerProcess, span: Duration) -> u64 {
    let end = std::time::Instant::now() + span;
    let mut peak = 0;
    while std::time::Instant::now() < end {
        peak = peak.max(rss(c));
        assert!(peak < RSS_LIMIT_KIB, "controller RSS {peak} KiB, over the {RSS_LIMIT_KIB} KiB bound");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    peak
}

/// The notes of the InvalidAnnotation Warnings on `name`, once they name every key in `keys`.
async fn warnings(client: &kube::Client, ns: &str, name: &str, keys: &[&str]) -> Vec<String> {
    wait_for(&format!("InvalidAnnotation Warnings on {name} naming {keys:?}"), Duration::from_secs(30), || async {
        let notes: Vec<String> = events_for(client, ns, name)
            .await
            .into_iter()
            .filter(|(t, r, _)| t == "Warning" && r == "InvalidAnnotation")
            .map(|(_, _, note)| note)
            .collect();
        let all_named = keys.iter().all(|k| notes.iter().any(|n| n.contains(k)));
        (!notes.is_empty() && all_named).then_some(notes)
    })
    .await
}

/// The log without terminal colour codes.
fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(ch) = chars.next() {
        if ch == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}

/// How often the controller logged parsing the policy of `ns/name`.
fn parses_logged(c: &ControllerProcess, ns: &str, name: &str) -> usize {
    plain(&c.logs())
        .lines()
        .filter(|l| {
            l.contains("policy parsed")
                && l.contains(&format!("namespace={ns}"))
                && l.ends_with(&format!("name={name}"))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_regexes_cost_little_warn_once_and_block_no_reloads() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "hostile").await;
    let n = ns.name.as_str();
    let mut c = controller_for(n).await;
    create(&client, n, configmap("cfg", json!({"key": "v1"}), json!({}), json!({}))).await;
    create(
        &client,
        n,
        workload(
            "Deployment",
            "good",
            &json!({"reloader.stakater.com/auto": "true"}),
            &json!({}),
            pod_spec(Res::ConfigMap, "cfg", Use::EnvFrom),
        ),
    )
    .await;
    wait_indexed(&c, 1).await;
    let idle = rss(&mut c);

    // 40 × `\w{200}`: a 319-byte annotation. Unbounded, about 540 MiB.
    let small = list(40, r"\w{200}");
    assert_eq!(small.len(), 319);
    create(
        &client,
        n,
        workload(
            "Deployment",
            "hostile",
            &json!({CM_LIST: small}),
            &json!({}),
            pod_spec(Res::ConfigMap, "none", Use::Nothing),
        ),
    )
    .await;
    // The longer variant: every list key, far over the entry and length caps.
    let long = json!({
        CM_LIST: list(2000, r"\w{200}"),
        CM_LIST_DH: list(64, r"\pL{100}"),
        SECRET_LIST: list(300, &"x".repeat(300)),
        SECRET_LIST_DH: list(1000, r"(\w{50}|\d{50}|[a-z]{50}){1,9}"),
        "configmaps.exclude.reloader.stakater.com/reload": list(300, &"e".repeat(250)),
    });
    create(
        &client,
        n,
        workload("Deployment", "hostile-long", &long, &json!({}), pod_spec(Res::ConfigMap, "none", Use::Nothing)),
    )
    .await;
    let peak = peak_rss(&mut c, Duration::from_secs(3)).await;
    wait_indexed(&c, 3).await;
    eprintln!("RSS idle {idle} KiB, peak with the hostile Deployments {peak} KiB");

    // Warnings naming each annotation key, short enough for the apiserver (1 KiB).
    let long_keys =
        [CM_LIST, CM_LIST_DH, SECRET_LIST, SECRET_LIST_DH, "configmaps.exclude.reloader.stakater.com/reload"];
    for (name, keys) in [("hostile", &[CM_LIST][..]), ("hostile-long", &long_keys[..])] {
        let notes = warnings(&client, n, name, keys).await;
        assert!(notes.iter().all(|note| note.len() <= 1024), "{name}: {notes:?}");
        assert_eq!(notes.len(), 1, "{name}: one Warning, not one per entry: {notes:?}");
    }
    let log = plain(&c.logs());
    assert!(
        log.lines()
            .any(|l| l.contains("malformed annotation") && l.contains(&format!("{n}/hostile")) && l.contains(CM_LIST)),
        "the log names the workload and the key:\n{}",
        tail(&log)
    );

    // Another workload in the namespace still reloads.
    set_value(&client, n, Res::ConfigMap, "cfg", "v2").await;
    wait_for("the good Deployment reloaded", Duration::from_secs(30), || async {
        let t = pod_template(&client, n, "Deployment", "good").await?;
        (env_value(&t, "app", "STAKATER_CFG_CONFIGMAP")? == sha1_hex(b"key=v2")).then_some(())
    })
    .await;

    // Updates that leave the annotations alone: status writes (as
    // kube-controller-manager makes) and label changes. Nothing is parsed
    // again and the memory stays where it was.
    let parsed_before = parses_logged(&c, n, "hostile");
    assert_eq!(parsed_before, 1, "parsed once so far");
    let before = rss(&mut c);
    let api: kube::Api<Deployment> = kube::Api::namespaced(client.clone(), n);
    for i in 0..30 {
        let condition =
            json!({"type": "Progressing", "status": "True", "reason": "TestTouch", "message": format!("touch {i}")});
        let status = json!({"status": {"conditions": [condition]}});
        api.patch_status("hostile", &PatchParams::default(), &Patch::Merge(status)).await.expect("status patch");
        let labels = json!({"metadata": {"labels": {"touch": format!("t{i}")}}});
        api.patch("hostile", &PatchParams::default(), &Patch::Merge(labels)).await.expect("label patch");
    }
    let mut after = peak_rss(&mut c, Duration::from_secs(2)).await;
    // A sentinel Deployment created after the updates comes after them on the
    // Deployment stream, which parses (and logs) in order: once the
    // controller has recorded it, every update has been through the parser.
    let barrier = Barrier::create(&client, n, &[Res::ConfigMap], json!({})).await;
    barrier.wait_followed().await;
    after = after.max(rss(&mut c));
    eprintln!("RSS before the 60 updates {before} KiB, after {after} KiB");
    assert!(after < before + 8 * 1024, "status updates grew RSS from {before} to {after} KiB");
    assert_eq!(parses_logged(&c, n, "hostile"), 1, "status and label updates parsed the policy again");
    // A change of the list is parsed (and warned about) again.
    api.patch(
        "hostile",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {CM_LIST: "cfg,[bad"}}})),
    )
    .await
    .expect("annotation patch");
    wait_for("the changed list parsed", Duration::from_secs(20), || async {
        (parses_logged(&c, n, "hostile") == 2).then_some(())
    })
    .await;
    assert!(c.get("/healthz").await.is_some_and(|(code, _)| code == 200), "controller alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_kib_malformed_value_gives_a_short_event_and_log_line() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "hostile-big").await;
    let n = ns.name.as_str();
    let c = controller_for(n).await;
    // 200 KiB, and 20 KiB for two more keys: together just under the
    // apiserver's 256 KiB for all annotations of an object.
    let big = "m".repeat(200 * 1024);
    let ann = json!({
        "reloader.stakater.com/auto": big,
        "deployment.reloader.stakater.com/pause-period": "p".repeat(20 * 1024),
        "deployment.reloader.stakater.com/paused-at": "t".repeat(20 * 1024),
    });
    create(&client, n, workload("Deployment", "big", &ann, &json!({}), pod_spec(Res::ConfigMap, "none", Use::Nothing)))
        .await;
    let keys = ["reloader.stakater.com/auto", "pause-period", "paused-at"];
    let notes = warnings(&client, n, "big", &keys).await;
    for note in &notes {
        assert!(note.len() <= 1024, "event note of {} bytes", note.len());
    }
    assert!(notes.iter().any(|n| n.contains("(truncated, 204800 bytes)")), "the cut is marked: {notes:?}");
    // The log has a line for each problem, each cut.
    wait_for("the paused-at problem logged", Duration::from_secs(10), || async {
        plain(&c.logs()).contains("(truncated, 20480 bytes)").then_some(())
    })
    .await;
    let log = plain(&c.logs());
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 4096, "a log line of {longest} bytes");
    assert!(log.contains("(truncated, 204800 bytes)"), "the log marks the cut");
}

/// The namespace of each Warning's object, with its note, for every
/// InvalidAnnotation Warning in `ns` (one list of the namespace's events).
async fn invalid_annotation_notes(client: &kube::Client, ns: &str) -> Vec<(String, String)> {
    let api: kube::Api<k8s_openapi::api::events::v1::Event> = kube::Api::namespaced(client.clone(), ns);
    let list = api.list(&Default::default()).await.expect("list events");
    list.items
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some("InvalidAnnotation"))
        .map(|e| {
            let name = e.regarding.and_then(|r| r.name).unwrap_or_default();
            (name, e.note.unwrap_or_default())
        })
        .collect()
}

/// A Deployment of no replicas (no pods, no ReplicaSet churn) with `annotations`.
fn idle_deployment(name: &str, annotations: &serde_json::Value, uses: Use) -> serde_json::Value {
    let mut d = workload("Deployment", name, annotations, &json!({}), pod_spec(Res::ConfigMap, "cfg", uses));
    d["spec"]["replicas"] = json!(0);
    d
}

/// 64 distinct large patterns (each compiles to about 24 KiB; no comma,
/// which would split the entry), unique to Deployment `d` and list `l`.
fn near_limit_list(d: usize, l: usize) -> String {
    (0..64).map(|i| format!("f{d}-{l}-{i}-[a-z0-9.-]{{230}}")).collect::<Vec<_>>().join(",")
}

const FLOOD: usize = 300;
const TOP_UP: usize = 100;

/// 300 Deployments in one namespace, each with its own lists of large
/// patterns (the per-workload bound alone lets each hold 512 KiB), then 100
/// with a name each to fill what room is left: the namespace's budget stops
/// them, the controller stays small, and reloads go on elsewhere and for
/// what the namespace had before the flood; what comes after is refused.
///
/// Before the budget (and the shared patterns) the controller went from
/// 35.7 MiB idle to 234 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_distinct_lists_is_held_to_the_namespace_budget() {
    let client = admin_client().await;
    let flood_ns = TestNamespace::create(&client, "flood").await;
    let calm_ns = TestNamespace::create(&client, "calm").await;
    let (f, o) = (flood_ns.name.clone(), calm_ns.name.clone());
    let args = [format!("--namespaces={f},{o}"), "--coalesce-window=0".to_string()];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut c = ControllerProcess::spawn(BIN, &args);
    c.wait_ready(Duration::from_secs(30)).await;
    for ns in [&f, &o] {
        create(&client, ns, configmap("cfg", json!({"key": "v1"}), json!({}), json!({}))).await;
    }
    // Followed by reference (auto) in the other namespace; by a small list in the flooded one, before the flood.
    create(&client, &o, idle_deployment("calm", &json!({"reloader.stakater.com/auto": "true"}), Use::EnvFrom)).await;
    create(&client, &f, idle_deployment("early", &json!({CM_LIST: "cfg"}), Use::Nothing)).await;
    wait_indexed(&c, 2).await;
    let idle = rss(&mut c);

    // Six requests at a time.
    let creator = {
        let (client, f) = (client.clone(), f.clone());
        tokio::spawn(async move {
            futures::stream::iter(0..FLOOD)
                .map(|d| {
                    let (client, f) = (client.clone(), f.clone());
                    async move {
                        let lists = json!({
                            CM_LIST: near_limit_list(d, 0),
                            CM_LIST_DH: near_limit_list(d, 1),
                            SECRET_LIST: near_limit_list(d, 2),
                            SECRET_LIST_DH: near_limit_list(d, 3),
                        });
                        create(&client, &f, idle_deployment(&format!("flood-{d}"), &lists, Use::Nothing)).await;
                    }
                })
                .buffer_unordered(6)
                .collect::<Vec<()>>()
                .await
        })
    };
    let started = std::time::Instant::now();
    let mut peak = idle;
    while !creator.is_finished() {
        peak = peak.max(peak_rss(&mut c, Duration::from_millis(500)).await);
    }
    creator.await.expect("flood created");
    eprintln!("{FLOOD} Deployments created in {:?}", started.elapsed());
    // RSS sampled until every Deployment is indexed.
    let indexed = "reloader_watched_resources_total{kind=\"Deployment\"}";
    while c.metric(indexed).await.map(|n| n as usize) != Some(FLOOD + 2) {
        assert!(started.elapsed() < Duration::from_secs(300), "{FLOOD} Deployments not indexed in 300 s");
        peak = peak.max(peak_rss(&mut c, Duration::from_millis(500)).await);
    }
    eprintln!("{FLOOD} Deployments indexed {:?} after the flood began", started.elapsed());
    peak = peak.max(peak_rss(&mut c, Duration::from_secs(3)).await);
    eprintln!("RSS idle {idle} KiB, peak during and after the flood {peak} KiB");

    // The large lists leave less room than one of them needs; small lists
    // of one name each fill it up.
    futures::stream::iter(0..TOP_UP)
        .map(|d| {
            let (client, f) = (&client, &f);
            async move {
                let list = json!({CM_LIST: format!("top-{d}")});
                create(client, f, idle_deployment(&format!("top-{d}"), &list, Use::Nothing)).await;
            }
        })
        .buffer_unordered(6)
        .collect::<Vec<()>>()
        .await;
    // Created after the flood, with a small list of its own: refused too.
    create(&client, &f, idle_deployment("late", &json!({CM_LIST: "cf[g]"}), Use::Nothing)).await;
    wait_for("every Deployment indexed", Duration::from_secs(60), || async {
        (c.metric(indexed).await? as usize == FLOOD + TOP_UP + 3).then_some(())
    })
    .await;

    // The over-budget Deployments and `late` are told why; `early` is not.
    let over_budget = wait_for("budget Warnings on the flood and on late", Duration::from_secs(120), || {
        let (client, f) = (&client, &f);
        async move {
            let notes = invalid_annotation_notes(client, f).await;
            let refused: std::collections::BTreeSet<String> =
                notes.into_iter().filter(|(_, note)| note.contains("namespace budget")).map(|(n, _)| n).collect();
            let flood = refused.iter().filter(|n| n.starts_with("flood-")).count();
            let topped_up = refused.iter().any(|n| n.starts_with("top-"));
            (refused.contains("late") && topped_up && flood >= FLOOD * 9 / 10).then_some(refused)
        }
    })
    .await;
    assert!(!over_budget.contains("early"), "early kept its list");
    let late_note = invalid_annotation_notes(&client, &f)
        .await
        .into_iter()
        .find(|(n, _)| n == "late")
        .map(|(_, note)| note)
        .expect("late's Warning");
    assert!(late_note.contains(CM_LIST) && late_note.contains("KiB"), "names the key and the budget: {late_note}");
    let refused = |prefix: &str| over_budget.iter().filter(|n| n.starts_with(prefix)).count();
    eprintln!(
        "refused: {} of {FLOOD} large, {} of {TOP_UP} small; late's Warning: {late_note}",
        refused("flood-"),
        refused("top-")
    );

    // Reloads go on: in the other namespace, and in this one for `early`; `late` has no list to follow.
    for ns in [&f, &o] {
        set_value(&client, ns, Res::ConfigMap, "cfg", "v2").await;
    }
    for (ns, name) in [(&o, "calm"), (&f, "early")] {
        wait_for(&format!("{name} reloaded"), Duration::from_secs(60), || async {
            let t = pod_template(&client, ns, "Deployment", name).await?;
            (env_value(&t, "app", "STAKATER_CFG_CONFIGMAP")? == sha1_hex(b"key=v2")).then_some(())
        })
        .await;
    }
    let late = pod_template(&client, &f, "Deployment", "late").await.expect("late's template");
    assert_eq!(env_value(&late, "app", "STAKATER_CFG_CONFIGMAP"), None, "late's refused list rolled it");
    let end = peak_rss(&mut c, Duration::from_secs(1)).await;
    eprintln!("RSS at the end {end} KiB");
}
