//! S6, the scale curve: N ConfigMaps and N Secrets of 1 KiB over N/100
//! namespaces and N/10 Deployments (each using one ConfigMap and one Secret
//! of its namespace, annotated auto), for growing N. Each point adds the
//! namespaces the previous one lacks, so the objects of a smaller N are a
//! subset of the next. Per N and controller: start to ready, steady and
//! peak RSS, and the change-to-patch latency under a steady churn of edits
//! to ConfigMaps used by Deployments.

use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Secret};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client};

use crate::controller::Variant;
use crate::report::{Results, Unit};
use crate::scenarios::{is_pod, namespaces, order, start_ready, stop};
use crate::tracker::key;
use crate::util::{Rng, mib, percentile};
use crate::{Ctx, log, objects};

/// Edits per second during the churn.
pub const CHURN_PER_SECOND: usize = 20;
/// ConfigMaps (and Secrets) per namespace: N/100 namespaces.
const PER_NS: usize = 100;
/// Deployments per namespace: N/10 in all; Deployment `d-m` uses `c-m` and `s-m`.
const DEPLOYMENTS_PER_NS: usize = 10;
/// How long an edit's patch may take before it counts as missed.
const PATCH_TIMEOUT: Duration = Duration::from_secs(60);

/// Objects the controllers watch at scale point `n`: N ConfigMaps, N
/// Secrets, N/10 Deployments.
pub fn watched_objects(n: usize) -> usize {
    2 * n + n / 10
}

fn ns_name(i: usize) -> String {
    format!("s6-{i:04}")
}

/// `keep`: leave the objects in place at the end (nothing runs after S6,
/// and the test bed's removal takes them along).
pub async fn s6(ctx: &mut Ctx, res: &mut Results, keep: bool) -> anyhow::Result<()> {
    let points = ctx.scale.s6_points.clone();
    let mut have = 0usize; // namespaces already filled
    for &n in &points {
        let nn = n / PER_NS;
        log(format!("S6: N = {n} ({nn} namespaces, {} Deployments)", nn * DEPLOYMENTS_PER_NS));
        grow(ctx, res, have, nn, n).await?;
        have = nn;
        let keys: Vec<String> =
            (0..nn).flat_map(|i| (0..DEPLOYMENTS_PER_NS).map(move |m| key(&ns_name(i), &format!("d-{m}")))).collect();
        anyhow::ensure!(
            ctx.tracker.wait_present(&keys, Duration::from_secs(600)).await,
            "S6 Deployments not seen by the watch"
        );
        // The edit schedule: every used ConfigMap in a seeded order, round robin.
        let mut used: Vec<(usize, usize)> =
            (0..nn).flat_map(|i| (0..DEPLOYMENTS_PER_NS).map(move |m| (i, m))).collect();
        Rng::new(0x56 + n as u64).shuffle(&mut used);
        let both = [Variant::pod_reloader(), Variant::reloader()];
        for r in 0..ctx.rounds {
            log(format!("S6 N={n} round {}", r + 1));
            for v in order(r, &both) {
                point_run(ctx, res, &v, n, r, &used).await?;
            }
        }
    }
    res.s6_points = points;
    if keep {
        res.note("S6", format!("The {have} namespaces were left in place; the test bed's removal takes them."));
        return Ok(());
    }
    cleanup(ctx, res, have).await
}

/// Creates namespaces `from..to` with their ConfigMaps, Secrets and Deployments.
async fn grow(ctx: &mut Ctx, res: &mut Results, from: usize, to: usize, n: usize) -> anyhow::Result<()> {
    if to <= from {
        return Ok(());
    }
    let t = Instant::now();
    let nss: Vec<String> = (from..to).map(ns_name).collect();
    namespaces(ctx, &nss, "s6").await?;
    let objs = (to - from) * PER_NS;
    objects::create_many(&ctx.client, objs, objects::PARALLEL, |k| {
        let (i, m) = (from + k / PER_NS, k % PER_NS);
        let mut rng = Rng::new(6_000_000 + (i * PER_NS + m) as u64);
        Ok(objects::configmap(&ns_name(i), &format!("c-{m:02}"), rng.text(1024)))
    })
    .await?;
    objects::create_many(&ctx.client, objs, objects::PARALLEL, |k| {
        let (i, m) = (from + k / PER_NS, k % PER_NS);
        let mut rng = Rng::new(7_000_000 + (i * PER_NS + m) as u64);
        Ok(objects::secret(&ns_name(i), &format!("s-{m:02}"), rng.bytes(1024)))
    })
    .await?;
    let deps = (to - from) * DEPLOYMENTS_PER_NS;
    objects::create_many(&ctx.client, deps, objects::PARALLEL, |k| {
        let (i, m) = (from + k / DEPLOYMENTS_PER_NS, k % DEPLOYMENTS_PER_NS);
        objects::deployment(
            &ns_name(i),
            &format!("d-{m}"),
            true,
            Some(&format!("c-{m:02}")),
            Some(&format!("s-{m:02}")),
        )
    })
    .await?;
    let made = 2 * objs + deps + nss.len();
    let took = t.elapsed();
    log(format!("S6: {made} objects created in {:.1} s", took.as_secs_f64()));
    res.note(
        "S6",
        format!(
            "N = {n}: {made} objects added ({} namespaces, {objs} ConfigMaps, {objs} Secrets, {deps} Deployments) in {:.1} s ({:.0}/s, {} requests in flight).",
            nss.len(),
            took.as_secs_f64(),
            made as f64 / took.as_secs_f64().max(1e-3),
            objects::PARALLEL
        ),
    );
    Ok(())
}

/// One controller at one N: ready, steady window, churn, stop.
async fn point_run(
    ctx: &mut Ctx,
    res: &mut Results,
    v: &Variant,
    n: usize,
    round: usize,
    used: &[(usize, usize)],
) -> anyhow::Result<()> {
    let tag = format!("s6-n{n}-r{round}");
    let mut run = start_ready(ctx, v, &tag).await?;
    // start_ready has waited until the controller sent nothing for a while;
    // 18 runs make every second of waiting count in the full run's hour.
    tokio::time::sleep(ctx.scale.steady_wait.min(Duration::from_secs(2))).await;
    let from = Instant::now();
    tokio::time::sleep(ctx.scale.steady_window).await;
    let to = Instant::now();
    run.mark();

    // Churn: edits evenly spaced, each to the next used ConfigMap in the order.
    let edits = CHURN_PER_SECOND * ctx.scale.s6_churn_seconds as usize;
    let t_start = tokio::time::Instant::now();
    let mut tasks = FuturesUnordered::new();
    for k in 0..edits {
        let at = t_start + Duration::from_secs_f64(k as f64 / CHURN_PER_SECOND as f64);
        let (i, m) = used[k % used.len()];
        let ns = ns_name(i);
        let dkey = key(&ns, &format!("d-{m}"));
        let value = format!("r{round}-{}-e{k}-{}", v.label, "x".repeat(64));
        let client = ctx.client.clone();
        let tracker = ctx.tracker.clone();
        tasks.push(async move {
            tokio::time::sleep_until(at).await;
            let g0 = tracker.get(&dkey).map(|s| s.generation).unwrap_or(0);
            objects::set_configmap_data(&client, &ns, &format!("c-{m:02}"), &value).await?;
            anyhow::Ok((dkey, g0, Instant::now()))
        });
    }
    let mut sent = Vec::with_capacity(edits);
    while let Some(r) = tasks.next().await {
        sent.push(r?);
    }
    let took = t_start.elapsed().as_secs_f64();
    ctx.tracker
        .wait_until(PATCH_TIMEOUT, |m| sent.iter().all(|(k, g, _)| m.get(k).is_some_and(|s| s.generation > *g)))
        .await;
    ctx.tracker.wait_quiet(ctx.scale.quiet, Duration::from_secs(60)).await;
    let mut lat = Vec::with_capacity(sent.len());
    let mut missed = 0usize;
    for (k, g0, returned) in &sent {
        match ctx.tracker.first_change_above(k, *g0) {
            Some(at) => lat.push(at.saturating_duration_since(*returned).as_secs_f64()),
            None => missed += 1,
        }
    }
    let (fin, _, _) = stop(ctx, run).await?;
    let steady = fin.rss_between(from, to).unwrap_or(f64::NAN);
    // A missed edit counts as slower than any seen: the p99 is only a number
    // while misses stay within the top 1 %.
    let p99 = if (missed as f64) <= 0.01 * sent.len() as f64 {
        let mut all = lat.clone();
        all.extend(std::iter::repeat_n(f64::INFINITY, missed));
        percentile(&all, 99.0).filter(|x| x.is_finite()).unwrap_or(f64::NAN)
    } else {
        f64::NAN
    };
    let p50 = percentile(&lat, 50.0).unwrap_or(f64::NAN);
    log(format!(
        "  {tag} {}: ready {:.2} s, RSS steady {:.1} MiB, peak {:.1} MiB; {edits} edits in {took:.1} s, p50 {p50:.3} s, p99 {p99:.3} s, {missed} not patched within {} s; {:.2} CPU s for the churn",
        v.label,
        fin.ready_s,
        mib(steady),
        mib(fin.hwm as f64),
        PATCH_TIMEOUT.as_secs(),
        fin.cpu_after_mark
    ));
    let pod = is_pod(v);
    let sfx = format!("_n{n}");
    res.add("S6", &format!("ready_seconds{sfx}"), Unit::Seconds, &format!("N={n}: start to ready"), pod, fin.ready_s);
    res.add("S6", &format!("rss_steady_bytes{sfx}"), Unit::Bytes, &format!("N={n}: steady RSS"), pod, steady);
    res.add(
        "S6",
        &format!("rss_peak_bytes{sfx}"),
        Unit::Bytes,
        &format!("N={n}: peak RSS (start, steady window and churn)"),
        pod,
        fin.hwm as f64,
    );
    res.add(
        "S6",
        &format!("p99_latency_seconds{sfx}"),
        Unit::Seconds,
        &format!(
            "N={n}: edit to patch landing under {CHURN_PER_SECOND} edits/s, p99 (pod-reloader: coalesce-window 1s)"
        ),
        pod,
        p99,
    );
    res.add(
        "S6",
        &format!("missed{sfx}"),
        Unit::Count,
        &format!("N={n}: edits whose Deployment was not patched within {} s", PATCH_TIMEOUT.as_secs()),
        pod,
        missed as f64,
    );
    Ok(())
}

/// Empties the namespaces with one deletecollection per resource and
/// namespace, many namespaces at a time, then deletes them: the namespace
/// controller of kube-controller-manager would otherwise delete 200,000
/// objects one namespace after another. Both phases are timed.
async fn cleanup(ctx: &mut Ctx, res: &mut Results, nn: usize) -> anyhow::Result<()> {
    let t = Instant::now();
    let client = ctx.client.clone();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter((0..nn).map(ns_name))
        .map(|ns| empty_namespace(client.clone(), ns))
        .buffer_unordered(objects::PARALLEL)
        .collect()
        .await;
    results.into_iter().collect::<anyhow::Result<()>>()?;
    let emptied = t.elapsed();
    objects::delete_scenario(&ctx.client, "s6").await?;
    let t2 = Instant::now();
    objects::wait_scenario_gone(&ctx.client, "s6").await?;
    let gone = t2.elapsed();
    log(format!(
        "S6: {nn} namespaces emptied in {:.1} s (deletecollection), then gone {:.1} s after their deletion",
        emptied.as_secs_f64(),
        gone.as_secs_f64()
    ));
    res.note(
        "S6",
        format!(
            "Clean-up: the {nn} namespaces emptied in {:.1} s (deletecollection of Deployments, ReplicaSets, ConfigMaps, Secrets and Events per namespace, {} namespaces at a time), then gone {:.1} s after their deletion.",
            emptied.as_secs_f64(),
            objects::PARALLEL,
            gone.as_secs_f64()
        ),
    );
    Ok(())
}

async fn empty_namespace(client: Client, ns: String) -> anyhow::Result<()> {
    let dp = DeleteParams::background();
    let lp = ListParams::default();
    let what = |k: &str| format!("deletecollection {k} in {ns}");
    let d: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    objects::retry(&what("Deployments"), || d.delete_collection(&dp, &lp)).await?;
    let rs: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    objects::retry(&what("ReplicaSets"), || rs.delete_collection(&dp, &lp)).await?;
    let cm: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    objects::retry(&what("ConfigMaps"), || cm.delete_collection(&dp, &lp)).await?;
    let s: Api<Secret> = Api::namespaced(client.clone(), &ns);
    objects::retry(&what("Secrets"), || s.delete_collection(&dp, &lp)).await?;
    let e: Api<Event> = Api::namespaced(client, &ns);
    objects::retry(&what("Events"), || e.delete_collection(&dp, &lp)).await?;
    Ok(())
}
