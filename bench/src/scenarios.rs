//! The five scenarios of the issue. Each sets up its objects, runs every
//! controller once per round (order alternating), records per-round values
//! and removes its namespaces.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use crate::audit::Counts;
use crate::controller::{Finished, Kind, PROBE_NS, Run, Variant, user_of};
use crate::report::{CurvePoint, Results, Target, Unit};
use crate::tracker::key;
use crate::util::{Rng, percentile};
use crate::{Ctx, Scale, log, objects};

pub fn titles(s: &Scale) -> Vec<(&'static str, String)> {
    vec![
        (
            "S1",
            format!(
                "scale ({} Secrets of 8 KiB and {} ConfigMaps of 2 KiB over {} namespaces, {} Deployments using them)",
                s.s1_secrets, s.s1_configmaps, s.s1_namespaces, s.s1_deployments
            ),
        ),
        (
            "S2",
            format!("latency ({} sequential ConfigMap updates, each ConfigMap used by one Deployment)", s.s2_updates),
        ),
        ("S3", format!("fan-out storm (one ConfigMap used by {} Deployments, changed once)", s.s3_deployments)),
        (
            "S4",
            format!(
                "churn ({} ConfigMap edits over {} s across {} namespaces, a third metadata-only)",
                s.s4_edits, s.s4_seconds, s.s4_namespaces
            ),
        ),
        ("S5", format!("big objects ({} Secrets of 512 KiB)", s.s5_secrets)),
        (
            "S5b",
            format!(
                "objects at the etcd limit ({} Secrets of {} bytes, just under 1 MiB)",
                s.s5b_secrets, S5B_SECRET_BYTES
            ),
        ),
        (
            "S7",
            format!(
                "workload churn (Deployments created and deleted for {} s, ~20 at a time, their ConfigMap changing every 2 s)",
                s.s7_seconds
            ),
        ),
        (
            "S6",
            format!(
                "scale curve (N ConfigMaps + N Secrets of 1 KiB, N/10 Deployments; N = {}; {} edits/s)",
                s.s6_points.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", "),
                crate::scale::CHURN_PER_SECOND
            ),
        ),
    ]
}

pub fn order(round: usize, variants: &[Variant]) -> Vec<Variant> {
    let mut v = variants.to_vec();
    let n = v.len();
    v.rotate_left(round % n);
    v
}

const READY_TIMEOUT: Duration = Duration::from_secs(600);

pub async fn start_ready(ctx: &mut Ctx, v: &Variant, tag: &str) -> anyhow::Result<Run> {
    if !ctx.deleting.is_empty() {
        let t = Instant::now();
        for sc in std::mem::take(&mut ctx.deleting) {
            objects::wait_scenario_gone(&ctx.client, &sc).await?;
        }
        log(format!("waited {:.1} s for the previous scenario's namespaces to go", t.elapsed().as_secs_f64()));
    }
    let mut run = Run::start(ctx, v, tag)?;
    run.wait_ready(ctx, READY_TIMEOUT).await?;
    let idle = run.wait_idle(ctx, ctx.scale.settle.max(Duration::from_secs(1)), Duration::from_secs(300)).await?;
    log(format!(
        "  {tag} {}: ready after {:.2} s (first reaction {:.2} s), idle {:.1} s later",
        v.label,
        run.ready_s.unwrap_or(f64::NAN),
        run.reaction_s.unwrap_or(f64::NAN),
        idle.as_secs_f64()
    ));
    Ok(run)
}

/// kube-controller-manager's deployment controller: its ReplicaSet writes
/// are what a Deployment patch costs the cluster beyond the patch itself.
pub const DEPLOYMENT_CONTROLLER: &str = "system:serviceaccount:kube-system:deployment-controller";

/// Stops the run and takes its requests from the audit log: (before the
/// mark, after it).
pub async fn stop(ctx: &mut Ctx, run: Run) -> anyhow::Result<(Finished, Counts, Counts)> {
    let (fin, before, after, _) = stop_with_kcm(ctx, run, false).await?;
    Ok((fin, before, after))
}

/// [`stop`], plus the ReplicaSet writes kube-controller-manager made from
/// the controller's start until it had written nothing for 2 s after the
/// stop (it reacts to the controller's writes with a lag), outside the
/// probe namespace; with `settle` false, only those until the stop.
pub async fn stop_with_kcm(
    ctx: &mut Ctx,
    run: Run,
    settle: bool,
) -> anyhow::Result<(Finished, Counts, Counts, Counts)> {
    let kind = run.variant.kind;
    let fin = run.stop().await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let kcm_until = if settle {
        wait_kcm_quiet(ctx, Duration::from_secs(2), Duration::from_secs(60)).await?;
        jiff::Timestamp::now()
    } else {
        fin.stopped_wall
    };
    // Read before `take`, which drops every event older than the run's end.
    let kcm = ctx.audit.writes(DEPLOYMENT_CONTROLLER, fin.started_wall, kcm_until, PROBE_NS)?;
    let (before, after) =
        ctx.audit.take(&user_of(kind), fin.started_wall, fin.mark_wall, fin.stopped_wall, PROBE_NS)?;
    Ok((fin, before, after, kcm))
}

struct Passive {
    fin: Finished,
    steady: f64,
    requests: Counts,
    /// ReplicaSet writes of kube-controller-manager during the run.
    kcm: Counts,
    /// User+system CPU seconds of the controller in the steady window.
    steady_cpu: f64,
}

/// Start, wait until ready, let it sit, sample RSS, stop.
async fn passive(ctx: &mut Ctx, v: &Variant, tag: &str) -> anyhow::Result<Passive> {
    let run = start_ready(ctx, v, tag).await?;
    tokio::time::sleep(ctx.scale.steady_wait).await;
    let from = Instant::now();
    let cpu0 = run.cpu_seconds();
    tokio::time::sleep(ctx.scale.steady_window).await;
    let to = Instant::now();
    let steady_cpu = run.cpu_seconds() - cpu0;
    let (fin, requests, _, kcm) = stop_with_kcm(ctx, run, true).await?;
    let steady = fin.rss_between(from, to).unwrap_or(f64::NAN);
    log(format!(
        "  {tag} {}: RSS steady {:.1} MiB, peak {:.1} MiB, {} requests ({} writes; kube-controller-manager: {} ReplicaSet writes), {steady_cpu:.2} CPU s in the steady window",
        v.label,
        crate::util::mib(steady),
        crate::util::mib(fin.hwm as f64),
        requests.total,
        requests.writes,
        kcm.writes,
    ));
    Ok(Passive { fin, steady, requests, kcm, steady_cpu })
}

pub fn is_pod(v: &Variant) -> bool {
    v.kind == Kind::PodReloader
}

pub async fn namespaces(ctx: &Ctx, names: &[String], scenario: &str) -> anyhow::Result<()> {
    futures::stream::iter(names)
        .map(|n| objects::create_namespace(&ctx.client, n, scenario))
        .buffer_unordered(objects::PARALLEL)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Deletes the scenario's namespaces; the next controller start waits until they are gone.
pub async fn cleanup(ctx: &mut Ctx, scenario: &str) -> anyhow::Result<()> {
    objects::delete_scenario(&ctx.client, scenario).await?;
    ctx.deleting.push(scenario.into());
    Ok(())
}

pub fn rate_note(what: &str, n: usize, t: Duration) -> String {
    format!(
        "{n} {what} created in {:.1} s ({:.0}/s, {} requests in flight).",
        t.as_secs_f64(),
        n as f64 / t.as_secs_f64().max(1e-3),
        objects::PARALLEL
    )
}

// ---------------------------------------------------------------- S1

pub async fn s1(ctx: &mut Ctx, res: &mut Results) -> anyhow::Result<()> {
    let sc = ctx.scale.clone();
    log(format!(
        "S1: {} Secrets, {} ConfigMaps, {} Deployments over {} namespaces",
        sc.s1_secrets, sc.s1_configmaps, sc.s1_deployments, sc.s1_namespaces
    ));
    let nn = sc.s1_namespaces;
    let nss: Vec<String> = (0..nn).map(|i| format!("s1-{i:02}")).collect();
    namespaces(ctx, &nss, "s1").await?;
    let t = Instant::now();
    objects::create_many(&ctx.client, sc.s1_configmaps, objects::PARALLEL, |i| {
        let mut rng = Rng::new(i as u64);
        Ok(objects::configmap(&nss[i % nn], &format!("c-{:04}", i / nn), rng.text(2048)))
    })
    .await?;
    res.note("S1", rate_note("ConfigMaps", sc.s1_configmaps, t.elapsed()));
    let dep_keys: Vec<String> =
        (0..sc.s1_deployments).map(|i| key(&nss[i % nn], &format!("d-{:04}", i / nn))).collect();
    objects::create_many(&ctx.client, sc.s1_deployments, objects::PARALLEL, |i| {
        objects::deployment(
            &nss[i % nn],
            &format!("d-{:04}", i / nn),
            true,
            Some(&format!("c-{:04}", i / nn)),
            Some(&format!("s-{:05}", i / nn)),
        )
    })
    .await?;
    anyhow::ensure!(
        ctx.tracker.wait_present(&dep_keys, Duration::from_secs(120)).await,
        "S1 Deployments not seen by the watch"
    );

    // kube-controller-manager makes a ReplicaSet per new Deployment: let it
    // finish, so that the first start's count holds only its reactions.
    wait_kcm_quiet(ctx, Duration::from_secs(2), Duration::from_secs(120)).await?;
    let mut have = 0usize;
    let mut secret_time = Duration::ZERO;
    let steps = sc.curve_steps.clone();
    let both = [Variant::pod_reloader(), Variant::reloader()];
    for (k, &want) in steps.iter().enumerate() {
        secret_time += create_secrets(ctx, &nss, have, want).await?;
        have = want;
        let mut p = CurvePoint {
            secrets: want,
            pod_steady: f64::NAN,
            pod_peak: f64::NAN,
            rel_steady: f64::NAN,
            rel_peak: f64::NAN,
        };
        for v in order(k, &both) {
            let r = passive(ctx, &v, &format!("s1-curve-{want}")).await?;
            if k == 0 {
                // The first start of either controller on this cluster:
                // nothing of it was recorded anywhere before.
                let per = |n: usize| n as f64 / sc.s1_deployments as f64;
                let pod = is_pod(&v);
                res.add(
                    "S1",
                    "first_start_writes_per_workload",
                    Unit::PerReload,
                    "writes (create/update/patch/delete) per workload at the first start (one run: the controller never ran on this cluster)",
                    pod,
                    per(r.requests.writes),
                );
                res.add(
                    "S1",
                    "first_start_kcm_writes_per_workload",
                    Unit::PerReload,
                    "ReplicaSet writes of kube-controller-manager per workload in reaction, at the first start (one run)",
                    pod,
                    per(r.kcm.writes),
                );
                res.note(
                    "S1",
                    format!(
                        "First start of {}: {} writes ({}) for {} Deployments; kube-controller-manager: {} ReplicaSet writes.",
                        controller_name(v.kind),
                        r.requests.writes,
                        write_kinds(&r.requests),
                        sc.s1_deployments,
                        r.kcm.writes
                    ),
                );
            }
            if is_pod(&v) {
                (p.pod_steady, p.pod_peak) = (r.steady, r.fin.hwm as f64);
            } else {
                (p.rel_steady, p.rel_peak) = (r.steady, r.fin.hwm as f64);
            }
        }
        res.curve.push(p);
    }
    secret_time += create_secrets(ctx, &nss, have, sc.s1_secrets).await?;
    res.note("S1", rate_note("Secrets", sc.s1_secrets, secret_time));

    let mut last_requests: HashMap<Kind, Counts> = HashMap::new();
    for r in 0..ctx.rounds {
        log(format!("S1 round {}", r + 1));
        for v in order(r, &both) {
            let p = passive(ctx, &v, &format!("s1-r{r}")).await?;
            let pod = is_pod(&v);
            res.add("S1", "rss_peak_bytes", Unit::Bytes, "peak RSS (VmHWM)", pod, p.fin.hwm as f64);
            res.add(
                "S1",
                "rss_steady_bytes",
                Unit::Bytes,
                "steady RSS (median VmRSS in the steady window)",
                pod,
                p.steady,
            );
            res.add("S1", "ready_seconds", Unit::Seconds, "start to ready", pod, p.fin.ready_s);
            res.add(
                "S1",
                "first_reaction_seconds",
                Unit::Seconds,
                "start to both probes rolled",
                pod,
                p.fin.reaction_s,
            );
            res.add(
                "S1",
                "http_answer_seconds",
                Unit::Seconds,
                "start to HTTP endpoint answering (/healthz; Reloader /metrics)",
                pod,
                p.fin.http_s.unwrap_or(f64::NAN),
            );
            res.add(
                "S1",
                "api_requests",
                Unit::Count,
                "API requests from start to the end of the steady window",
                pod,
                p.requests.total as f64,
            );
            res.add(
                "S1",
                "restart_writes_per_workload",
                Unit::PerReload,
                "writes per workload at a restart (the controller ran on these objects before)",
                pod,
                p.requests.writes as f64 / sc.s1_deployments as f64,
            );
            res.add(
                "S1",
                "restart_kcm_writes_per_workload",
                Unit::PerReload,
                "ReplicaSet writes of kube-controller-manager per workload in reaction, at a restart",
                pod,
                p.kcm.writes as f64 / sc.s1_deployments as f64,
            );
            res.add(
                "S1",
                "cpu_steady_seconds",
                Unit::Seconds,
                &format!("user+system CPU seconds in the {} s steady window", sc.steady_window.as_secs()),
                pod,
                p.steady_cpu,
            );
            last_requests.insert(v.kind, p.requests);
        }
    }
    for (kind, c) in last_requests {
        res.breakdown.insert(("S1".into(), controller_name(kind).into()), c.by_kind);
    }
    let med = |m: &str, pod: bool| {
        res.find("S1", m).map(|r| if pod { r.pod_median() } else { r.rel_median() }).unwrap_or(f64::NAN)
    };
    let top = CurvePoint {
        secrets: sc.s1_secrets,
        pod_steady: med("rss_steady_bytes", true),
        pod_peak: med("rss_peak_bytes", true),
        rel_steady: med("rss_steady_bytes", false),
        rel_peak: med("rss_peak_bytes", false),
    };
    res.curve.push(top);
    cleanup(ctx, "s1").await
}

pub fn controller_name(k: Kind) -> &'static str {
    match k {
        Kind::PodReloader => "pod-reloader",
        Kind::Reloader => "Reloader",
    }
}

/// Waits until kube-controller-manager's deployment controller has written
/// no ReplicaSet for `quiet` (by the audit log), at most `timeout`.
async fn wait_kcm_quiet(ctx: &mut Ctx, quiet: Duration, timeout: Duration) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let since = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(3600);
    loop {
        let last = ctx.audit.last_request(DEPLOYMENT_CONTROLLER, since, PROBE_NS)?;
        let idle = last.map(|t| jiff::Timestamp::now().duration_since(t).unsigned_abs()).unwrap_or(Duration::MAX);
        if idle >= quiet || t0.elapsed() >= timeout {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The write requests of a run by kind, "patch deployments.apps: 500, ...", or "none".
fn write_kinds(c: &Counts) -> String {
    let v: Vec<String> = c
        .by_kind
        .iter()
        .filter(|(k, _)| k.split(' ').next().is_some_and(crate::audit::is_write))
        .map(|(k, n)| format!("{k}: {n}"))
        .collect();
    if v.is_empty() { "none".into() } else { v.join(", ") }
}

/// Creates Secrets `from..to` (8 KiB each) spread over the namespaces.
async fn create_secrets(ctx: &Ctx, nss: &[String], from: usize, to: usize) -> anyhow::Result<Duration> {
    if to <= from {
        return Ok(Duration::ZERO);
    }
    let t = Instant::now();
    let nn = nss.len();
    objects::create_many(&ctx.client, to - from, objects::PARALLEL, |k| {
        let i = from + k;
        let mut rng = Rng::new(1_000_000 + i as u64);
        Ok(objects::secret(&nss[i % nn], &format!("s-{:05}", i / nn), rng.bytes(8192)))
    })
    .await?;
    log(format!("S1: {to} Secrets present"));
    Ok(t.elapsed())
}

// ---------------------------------------------------------------- S2

pub async fn s2(ctx: &mut Ctx, res: &mut Results) -> anyhow::Result<()> {
    let n = ctx.scale.s2_updates;
    let per_ns = 20usize;
    let nn = n.div_ceil(per_ns);
    log(format!("S2: {n} sequential updates, {n} ConfigMaps and Deployments in {nn} namespaces"));
    let nss: Vec<String> = (0..nn).map(|i| format!("s2-{i:02}")).collect();
    namespaces(ctx, &nss, "s2").await?;
    let place = |i: usize| (nss[i / per_ns].clone(), format!("c-{:03}", i % per_ns));
    objects::create_many(&ctx.client, n, objects::PARALLEL, |i| {
        let (ns, name) = place(i);
        Ok(objects::configmap(&ns, &name, format!("initial-{i}")))
    })
    .await?;
    objects::create_many(&ctx.client, n, objects::PARALLEL, |i| {
        let (ns, name) = place(i);
        objects::deployment(&ns, &name, true, Some(&name), None)
    })
    .await?;
    let keys: Vec<String> = (0..n)
        .map(|i| {
            let (ns, name) = place(i);
            key(&ns, &name)
        })
        .collect();
    anyhow::ensure!(
        ctx.tracker.wait_present(&keys, Duration::from_secs(120)).await,
        "S2 Deployments not seen by the watch"
    );

    let variants = [Variant::pod_reloader(), Variant::reloader(), Variant::pod_reloader_window0()];
    let mut last: HashMap<&'static str, Counts> = HashMap::new();
    for r in 0..ctx.rounds {
        log(format!("S2 round {}", r + 1));
        for v in order(r, &variants) {
            let mut run = start_ready(ctx, &v, &format!("s2-r{r}")).await?;
            run.mark();
            let g_start = ctx.tracker.generations(&keys);
            let mut lat = Vec::with_capacity(n);
            let mut missed = 0usize;
            let mut rng = Rng::new(0x5200 + r as u64 * 7 + v.label.len() as u64);
            for (i, k) in keys.iter().enumerate() {
                let (ns, name) = place(i);
                let g0 = ctx.tracker.get(k).map(|s| s.generation).unwrap_or(0);
                objects::set_configmap_data(&ctx.client, &ns, &name, &rng.text(2048)).await?;
                let t0 = Instant::now();
                let ok = ctx
                    .tracker
                    .wait_until(Duration::from_secs(30), |m| m.get(k).is_some_and(|s| s.generation > g0))
                    .await;
                match ctx.tracker.get(k) {
                    Some(s) if ok => lat.push(s.changed_at.saturating_duration_since(t0).as_secs_f64()),
                    _ => missed += 1,
                }
            }
            ctx.tracker.wait_quiet(ctx.scale.quiet, Duration::from_secs(60)).await;
            let g_end = ctx.tracker.generations(&keys);
            let (fin, _, after) = stop(ctx, run).await?;
            let patches: i64 = g_end.iter().zip(&g_start).map(|(a, b)| a - b).sum();
            let reloaded = g_end.iter().zip(&g_start).filter(|(a, b)| a > b).count();
            let dups = patches - reloaded as i64;
            let p50 = percentile(&lat, 50.0).unwrap_or(f64::NAN);
            let p99 = percentile(&lat, 99.0).unwrap_or(f64::NAN);
            let per_reload = after.total as f64 / (reloaded.max(1)) as f64;
            log(format!(
                "  {}: p50 {:.3} s, p99 {:.3} s, missed {missed}, duplicates {dups}, {} requests ({per_reload:.2} per reload)",
                v.label, p50, p99, after.total
            ));
            // The Reloader values stand against both pod-reloader settings.
            let suffixes: &[&str] = match v.label {
                "pod-reloader" => &[""],
                "pod-reloader-window0" => &["_window0"],
                _ => &["", "_window0"],
            };
            let pod = is_pod(&v);
            for sfx in suffixes {
                let w = if sfx.is_empty() { "coalesce-window 1s, the default" } else { "coalesce-window 0" };
                res.add(
                    "S2",
                    &format!("p50_latency_seconds{sfx}"),
                    Unit::Seconds,
                    &format!("update to patch landing, p50 (pod-reloader: {w})"),
                    pod,
                    p50,
                );
                res.add(
                    "S2",
                    &format!("p99_latency_seconds{sfx}"),
                    Unit::Seconds,
                    &format!("update to patch landing, p99 (pod-reloader: {w})"),
                    pod,
                    p99,
                );
                res.add(
                    "S2",
                    &format!("missed{sfx}"),
                    Unit::Count,
                    &format!("updates not rolled within 30 s (pod-reloader: {w})"),
                    pod,
                    missed as f64,
                );
                res.add(
                    "S2",
                    &format!("duplicates{sfx}"),
                    Unit::Count,
                    &format!("extra patches beyond one per update (pod-reloader: {w})"),
                    pod,
                    dups as f64,
                );
                res.add(
                    "S2",
                    &format!("api_requests_per_reload{sfx}"),
                    Unit::PerReload,
                    &format!("API requests per reloaded workload (pod-reloader: {w})"),
                    pod,
                    per_reload,
                );
                res.add(
                    "S2",
                    &format!("rss_peak_bytes{sfx}"),
                    Unit::Bytes,
                    &format!("peak RSS (pod-reloader: {w})"),
                    pod,
                    fin.hwm as f64,
                );
            }
            last.insert(v.label, after);
        }
    }
    for (label, c) in last {
        let who = match label {
            "pod-reloader" => "pod-reloader (coalesce-window 1s)",
            "pod-reloader-window0" => "pod-reloader (coalesce-window 0)",
            _ => "Reloader",
        };
        res.breakdown.insert(("S2".into(), who.into()), c.by_kind);
    }
    cleanup(ctx, "s2").await
}

// ---------------------------------------------------------------- S3

pub async fn s3(ctx: &mut Ctx, res: &mut Results) -> anyhow::Result<()> {
    let n = ctx.scale.s3_deployments;
    log(format!("S3: one ConfigMap used by {n} Deployments"));
    let ns = "s3".to_string();
    namespaces(ctx, std::slice::from_ref(&ns), "s3").await?;
    objects::create_many(&ctx.client, 1, 1, |_| Ok(objects::configmap(&ns, "shared", "initial".into()))).await?;
    let t = Instant::now();
    objects::create_many(&ctx.client, n, objects::PARALLEL, |i| {
        objects::deployment(&ns, &format!("d-{i:04}"), true, Some("shared"), None)
    })
    .await?;
    res.note("S3", rate_note("Deployments", n, t.elapsed()));
    let keys: Vec<String> = (0..n).map(|i| key(&ns, &format!("d-{i:04}"))).collect();
    anyhow::ensure!(
        ctx.tracker.wait_present(&keys, Duration::from_secs(120)).await,
        "S3 Deployments not seen by the watch"
    );
    let both = [Variant::pod_reloader(), Variant::reloader()];
    let mut last: HashMap<Kind, Counts> = HashMap::new();
    for r in 0..ctx.rounds {
        log(format!("S3 round {}", r + 1));
        for v in order(r, &both) {
            let mut run = start_ready(ctx, &v, &format!("s3-r{r}")).await?;
            run.mark();
            let g0 = ctx.tracker.generations(&keys);
            let value = format!("round-{r}-{}", v.label);
            objects::set_configmap_data(&ctx.client, &ns, "shared", &value).await?;
            let t0 = Instant::now();
            let all = ctx
                .tracker
                .wait_until(Duration::from_secs(1800), |m| {
                    keys.iter().zip(&g0).all(|(k, g)| m.get(k).is_some_and(|s| s.generation > *g))
                })
                .await;
            let t_all = if all {
                keys.iter()
                    .filter_map(|k| ctx.tracker.get(k))
                    .map(|s| s.changed_at.saturating_duration_since(t0).as_secs_f64())
                    .fold(0.0, f64::max)
            } else {
                f64::NAN
            };
            // Late duplicates would come within seconds.
            ctx.tracker.wait_quiet(ctx.scale.quiet, Duration::from_secs(120)).await;
            let g1 = ctx.tracker.generations(&keys);
            let (fin, _, after) = stop(ctx, run).await?;
            let deltas: Vec<i64> = g1.iter().zip(&g0).map(|(a, b)| a - b).collect();
            let missed = deltas.iter().filter(|d| **d == 0).count();
            let duplicates = deltas.iter().filter(|d| **d > 1).count();
            let patches: i64 = deltas.iter().sum();
            let reloaded = deltas.iter().filter(|d| **d > 0).count();
            let per_reload = after.total as f64 / reloaded.max(1) as f64;
            log(format!(
                "  {}: all patched after {t_all:.2} s, missed {missed}, duplicated {duplicates} ({patches} patches), {} requests ({per_reload:.2} per reload)",
                v.label, after.total
            ));
            let pod = is_pod(&v);
            res.add("S3", "all_patched_seconds", Unit::Seconds, "update to the last Deployment patched", pod, t_all);
            res.add("S3", "duplicates", Unit::Count, "Deployments patched more than once", pod, duplicates as f64);
            res.add("S3", "missed", Unit::Count, "Deployments never patched", pod, missed as f64);
            res.add("S3", "patches", Unit::Count, "patches in all", pod, patches as f64);
            res.add(
                "S3",
                "api_requests_per_reload",
                Unit::PerReload,
                "API requests per reloaded workload",
                pod,
                per_reload,
            );
            res.add("S3", "rss_peak_bytes", Unit::Bytes, "peak RSS", pod, fin.hwm as f64);
            res.add(
                "S3",
                "cpu_seconds_per_1000_reloads",
                Unit::Seconds,
                "user+system CPU seconds per 1,000 reloads (from the change to the stop)",
                pod,
                fin.cpu_after_mark / reloaded.max(1) as f64 * 1000.0,
            );
            last.insert(v.kind, after);
        }
    }
    for (kind, c) in last {
        res.breakdown.insert(("S3".into(), controller_name(kind).into()), c.by_kind);
    }
    cleanup(ctx, "s3").await
}

// ---------------------------------------------------------------- S4

pub async fn s4(ctx: &mut Ctx, res: &mut Results) -> anyhow::Result<()> {
    let sc = ctx.scale.clone();
    let nn = sc.s4_namespaces;
    const PER_NS: usize = 5; // c-0..c-3 used by annotated Deployments, c-4 by one without the annotation
    log(format!("S4: {} edits over {} s across {nn} namespaces", sc.s4_edits, sc.s4_seconds));
    let nss: Vec<String> = (0..nn).map(|i| format!("s4-{i:03}")).collect();
    namespaces(ctx, &nss, "s4").await?;
    let cms = nn * PER_NS;
    objects::create_many(&ctx.client, cms, objects::PARALLEL, |i| {
        Ok(objects::configmap(&nss[i / PER_NS], &format!("c-{}", i % PER_NS), "initial".into()))
    })
    .await?;
    objects::create_many(&ctx.client, cms, objects::PARALLEL, |i| {
        let j = i % PER_NS;
        objects::deployment(&nss[i / PER_NS], &format!("d-{j}"), j < 4, Some(&format!("c-{j}")), None)
    })
    .await?;
    let keys: Vec<String> = (0..cms).map(|i| key(&nss[i / PER_NS], &format!("d-{}", i % PER_NS))).collect();
    anyhow::ensure!(
        ctx.tracker.wait_present(&keys, Duration::from_secs(120)).await,
        "S4 Deployments not seen by the watch"
    );

    // The schedule, the same for every run: each ConfigMap is edited
    // `edits / cms` times, in passes over one shuffled order (so two edits
    // of one ConfigMap are half the duration apart); a third of the edits,
    // picked at random, change only an annotation.
    let mut rng = Rng::new(0x54);
    let mut pass: Vec<usize> = (0..cms).collect();
    rng.shuffle(&mut pass);
    let edits: Vec<usize> = (0..sc.s4_edits).map(|k| pass[k % cms]).collect();
    let mut idx: Vec<usize> = (0..edits.len()).collect();
    rng.shuffle(&mut idx);
    let mut metadata_only = vec![false; edits.len()];
    for &k in &idx[..edits.len() / 3] {
        metadata_only[k] = true;
    }
    let mut expected_per = vec![0i64; cms];
    for (k, &c) in edits.iter().enumerate() {
        if !metadata_only[k] && c % PER_NS < 4 {
            expected_per[c] += 1;
        }
    }
    let expected: i64 = expected_per.iter().sum();
    let content = metadata_only.iter().filter(|m| !**m).count();
    res.note(
        "S4",
        format!(
            "{} edits: {content} change data, {} only an annotation; {expected} of the data changes are to ConfigMaps used by annotated Deployments (the expected reloads), the rest to the one ConfigMap per namespace whose Deployment has no annotation.",
            edits.len(),
            edits.len() - content
        ),
    );

    let both = [Variant::pod_reloader(), Variant::reloader()];
    let mut last: HashMap<Kind, Counts> = HashMap::new();
    let duration = Duration::from_secs(sc.s4_seconds);
    for r in 0..ctx.rounds {
        log(format!("S4 round {}", r + 1));
        for v in order(r, &both) {
            let mut run = start_ready(ctx, &v, &format!("s4-r{r}")).await?;
            run.mark();
            let g0 = ctx.tracker.generations(&keys);
            let t_start = tokio::time::Instant::now();
            let mut tasks = FuturesUnordered::new();
            for (k, &c) in edits.iter().enumerate() {
                let at = t_start + duration.mul_f64(k as f64 / edits.len() as f64);
                let ns = nss[c / PER_NS].clone();
                let name = format!("c-{}", c % PER_NS);
                let value = format!("r{r}-{}-e{k}-{}", v.label, "x".repeat(64));
                let client = ctx.client.clone();
                let meta = metadata_only[k];
                tasks.push(async move {
                    tokio::time::sleep_until(at).await;
                    if meta {
                        objects::touch_configmap(&client, &ns, &name, &value).await
                    } else {
                        objects::set_configmap_data(&client, &ns, &name, &value).await
                    }
                });
            }
            while let Some(r) = tasks.next().await {
                r?;
            }
            let took = t_start.elapsed().as_secs_f64();
            ctx.tracker.wait_quiet(ctx.scale.quiet, Duration::from_secs(300)).await;
            let g1 = ctx.tracker.generations(&keys);
            let (fin, _, after) = stop(ctx, run).await?;
            let (mut executed, mut unexpected, mut missed, mut dups) = (0i64, 0i64, 0i64, 0i64);
            for i in 0..cms {
                let d = g1[i] - g0[i];
                if i % PER_NS < 4 {
                    executed += d;
                    missed += (expected_per[i] - d).max(0);
                    dups += (d - expected_per[i]).max(0);
                } else {
                    unexpected += d;
                }
            }
            let reloaded = executed + unexpected;
            let per_reload = after.total as f64 / reloaded.max(1) as f64;
            log(format!(
                "  {}: edits sent in {took:.1} s; reloads {executed} of {expected} expected, missed {missed}, extra {dups}, unannotated {unexpected}; {} requests ({per_reload:.2} per reload)",
                v.label, after.total
            ));
            let pod = is_pod(&v);
            res.add(
                "S4",
                "reloads_executed",
                Unit::Count,
                "reloads executed (patches to annotated Deployments)",
                pod,
                executed as f64,
            );
            res.add(
                "S4",
                "reloads_expected",
                Unit::Count,
                "reloads expected (data changes to their ConfigMaps)",
                pod,
                expected as f64,
            );
            res.add("S4", "missed", Unit::Count, "expected reloads not executed", pod, missed as f64);
            res.add(
                "S4",
                "duplicates",
                Unit::Count,
                "reloads beyond the expected ones",
                pod,
                (dups + unexpected) as f64,
            );
            res.add(
                "S4",
                "api_requests_per_reload",
                Unit::PerReload,
                "API requests per reloaded workload",
                pod,
                per_reload,
            );
            res.add("S4", "rss_peak_bytes", Unit::Bytes, "peak RSS", pod, fin.hwm as f64);
            res.add(
                "S4",
                "cpu_seconds_per_1000_reloads",
                Unit::Seconds,
                "user+system CPU seconds per 1,000 reloads (from the first edit to the stop)",
                pod,
                fin.cpu_after_mark / reloaded.max(1) as f64 * 1000.0,
            );
            last.insert(v.kind, after);
        }
    }
    for (kind, c) in last {
        res.breakdown.insert(("S4".into(), controller_name(kind).into()), c.by_kind);
    }
    cleanup(ctx, "s4").await
}

// ---------------------------------------------------------------- S5

pub async fn s5(ctx: &mut Ctx, res: &mut Results) -> anyhow::Result<()> {
    let n = ctx.scale.s5_secrets;
    big_secrets(ctx, res, "S5", n, 512 * 1024, 5_000_000).await
}

/// Data per Secret in S5b: the largest Secret etcd stores is about 1 MiB
/// (its request limit is 1.5 MiB, and the object carries metadata and the
/// apiserver's encoding besides the data), so just under 1 MiB of data.
pub const S5B_SECRET_BYTES: usize = 1024 * 1024 - 4 * 1024;

pub async fn s5b(ctx: &mut Ctx, res: &mut Results) -> anyhow::Result<()> {
    let n = ctx.scale.s5b_secrets;
    big_secrets(ctx, res, "S5b", n, S5B_SECRET_BYTES, 6_000_000).await
}

/// `n` Secrets of `size` bytes over up to 10 namespaces; every controller
/// started on them in turn, passive (peak and steady RSS, ready time).
async fn big_secrets(
    ctx: &mut Ctx,
    res: &mut Results,
    scenario: &str,
    n: usize,
    size: usize,
    seed: u64,
) -> anyhow::Result<()> {
    let nn = 10usize.min(n.max(1));
    let lower = scenario.to_lowercase();
    log(format!("{scenario}: {n} Secrets of {} KiB", size / 1024));
    let nss: Vec<String> = (0..nn).map(|i| format!("{lower}-{i:02}")).collect();
    namespaces(ctx, &nss, &lower).await?;
    let t = Instant::now();
    objects::create_many(&ctx.client, n, 8, |i| {
        let mut rng = Rng::new(seed + i as u64);
        Ok(objects::secret(&nss[i % nn], &format!("big-{:04}", i / nn), rng.bytes(size)))
    })
    .await?;
    res.note(
        scenario,
        format!(
            "{n} Secrets of {} bytes ({:.1} MiB of data in all) created in {:.1} s (8 requests in flight).",
            size,
            crate::util::mib((n * size) as f64),
            t.elapsed().as_secs_f64()
        ),
    );
    let both = [Variant::pod_reloader(), Variant::reloader()];
    let mut last: HashMap<Kind, Counts> = HashMap::new();
    for r in 0..ctx.rounds {
        log(format!("{scenario} round {}", r + 1));
        for v in order(r, &both) {
            let p = passive(ctx, &v, &format!("{lower}-r{r}")).await?;
            last.insert(v.kind, p.requests.clone());
            let pod = is_pod(&v);
            res.add(scenario, "rss_peak_bytes", Unit::Bytes, "peak RSS (VmHWM)", pod, p.fin.hwm as f64);
            res.add(scenario, "rss_steady_bytes", Unit::Bytes, "steady RSS", pod, p.steady);
            res.add(scenario, "ready_seconds", Unit::Seconds, "start to ready", pod, p.fin.ready_s);
            res.add(
                scenario,
                "api_requests",
                Unit::Count,
                "API requests from start to the end of the steady window",
                pod,
                p.requests.total as f64,
            );
        }
    }
    for (kind, c) in last {
        res.breakdown.insert((scenario.into(), controller_name(kind).into()), c.by_kind);
    }
    cleanup(ctx, &lower).await
}

// ---------------------------------------------------------------- targets

pub fn targets(res: &Results) -> Vec<Target> {
    let mut out = Vec::new();
    let mib = |v: f64| format!("{:.1} MiB", crate::util::mib(v));
    // S1 RSS
    match (res.find("S1", "rss_steady_bytes"), res.find("S1", "rss_peak_bytes")) {
        (Some(s), Some(p)) => {
            let (rs, rp) = (s.ratio().unwrap_or(f64::NAN), p.ratio().unwrap_or(f64::NAN));
            out.push(Target {
                text: "S1: RSS at most 1/10 of Reloader's".into(),
                measured: format!(
                    "steady {} vs {} (ratio {rs:.3}); peak {} vs {} (ratio {rp:.3})",
                    mib(s.pod_median()),
                    mib(s.rel_median()),
                    mib(p.pod_median()),
                    mib(p.rel_median())
                ),
                met: Some(rs <= 0.1 && rp <= 0.1),
                report_only: false,
            });
        }
        _ => out.push(Target {
            text: "S1: RSS at most 1/10 of Reloader's".into(),
            measured: "-".into(),
            met: None,
            report_only: false,
        }),
    }
    for (sfx, what) in [
        ("", "S2: p99 latency at most 1/2 of Reloader's (pod-reloader default coalesce-window 1s)"),
        ("_window0", "S2: p99 latency at most 1/2 of Reloader's (pod-reloader --coalesce-window=0)"),
    ] {
        let t = match res.find("S2", &format!("p99_latency_seconds{sfx}")) {
            Some(r) => {
                let ratio = r.ratio().unwrap_or(f64::NAN);
                Target {
                    text: what.into(),
                    measured: format!("p99 {:.3} s vs {:.3} s (ratio {ratio:.2})", r.pod_median(), r.rel_median()),
                    met: Some(ratio <= 0.5),
                    report_only: false,
                }
            }
            None => Target { text: what.into(), measured: "-".into(), met: None, report_only: false },
        };
        out.push(t);
    }
    let worst = |sc: &str, m: &str| -> Option<(f64, f64)> {
        let r = res.find(sc, m)?;
        let mx = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        Some((mx(&r.pod_reloader), mx(&r.reloader)))
    };
    match (worst("S3", "duplicates"), worst("S3", "missed")) {
        (Some((pd, rd)), Some((pm, rm))) => out.push(Target {
            text: "S3: zero duplicates and zero misses".into(),
            measured: format!(
                "pod-reloader: at most {pd:.0} duplicated and {pm:.0} missed Deployments in any round (Reloader: {rd:.0} and {rm:.0})"
            ),
            met: Some(pd == 0.0 && pm == 0.0),
 report_only: false,
        }),
        _ => out.push(Target {
            text: "S3: zero duplicates and zero misses".into(),
            measured: "-".into(),
            met: None,
 report_only: false,
        }),
    }
    match (res.find("S4", "reloads_executed"), res.find("S4", "reloads_expected")) {
        (Some(e), Some(x)) => {
            let all_equal = e.pod_reloader.iter().zip(&x.pod_reloader).all(|(a, b)| a == b);
            out.push(Target {
                text: "S4: reloads exactly equal to the content changes".into(),
                measured: format!(
                    "pod-reloader executed {:?} of {:?} expected per round (Reloader {:?})",
                    e.pod_reloader, x.pod_reloader, e.reloader
                ),
                met: Some(all_equal),
                report_only: false,
            });
        }
        _ => out.push(Target {
            text: "S4: reloads exactly equal to the content changes".into(),
            measured: "-".into(),
            met: None,
            report_only: false,
        }),
    }
    let mut parts = Vec::new();
    let mut ok = true;
    let mut any = false;
    for (sc, m) in [
        ("S2", "api_requests_per_reload"),
        ("S2", "api_requests_per_reload_window0"),
        ("S3", "api_requests_per_reload"),
        ("S4", "api_requests_per_reload"),
    ] {
        if let Some(r) = res.find(sc, m) {
            any = true;
            ok &= r.pod_median() <= 1.5;
            parts.push(format!(
                "{sc}{}: {:.2} (Reloader {:.2})",
                if m.ends_with("window0") { " window 0" } else { "" },
                r.pod_median(),
                r.rel_median()
            ));
        }
    }
    out.push(Target {
        text: "At most 1.5 API requests per reloaded workload".into(),
        measured: if any { parts.join("; ") } else { "-".into() },
        met: any.then_some(ok),
        report_only: false,
    });
    extended_targets(res, &mut out);
    out
}

/// A target that compares a measured figure with a threshold.
fn target(text: impl Into<String>, measured: Option<(String, bool)>) -> Target {
    match measured {
        Some((m, ok)) => Target { text: text.into(), measured: m, met: Some(ok), report_only: false },
        None => Target { text: text.into(), measured: "-".into(), met: None, report_only: false },
    }
}

/// A figure the issue asks for without a threshold.
fn figure(text: impl Into<String>, measured: Option<String>) -> Target {
    Target { text: text.into(), measured: measured.unwrap_or_else(|| "-".into()), met: None, report_only: true }
}

/// The targets of issue 15 (requests at their floor, memory bounded by
/// one object, the scale curve, start-up writes, CPU).
fn extended_targets(res: &Results, out: &mut Vec<Target>) {
    let mib = |v: f64| format!("{:.1} MiB", crate::util::mib(v));
    const PER_RELOAD: [(&str, &str); 4] = [
        ("S2", "api_requests_per_reload"),
        ("S2", "api_requests_per_reload_window0"),
        ("S3", "api_requests_per_reload"),
        ("S4", "api_requests_per_reload"),
    ];
    let rows: Vec<(String, &crate::report::Row)> = PER_RELOAD
        .iter()
        .filter_map(|(sc, m)| {
            let label = format!("{sc}{}", if m.ends_with("window0") { " window 0" } else { "" });
            res.find(sc, m).map(|r| (label, r))
        })
        .collect();
    let floor = (!rows.is_empty()).then(|| {
        let ok = rows.iter().all(|(_, r)| r.pod_median() <= 2.0);
        let m = rows.iter().map(|(l, r)| format!("{l}: {:.2}", r.pod_median())).collect::<Vec<_>>().join("; ");
        (m, ok)
    });
    out.push(target("S2, S3, S4: at most 2.0 API requests per reloaded workload (the PATCH and the Event)", floor));
    let vs = (!rows.is_empty()).then(|| {
        let ok = rows.iter().all(|(_, r)| r.pod_median() <= r.rel_median());
        let m = rows
            .iter()
            .map(|(l, r)| {
                format!(
                    "{l}: {:.2} vs {:.2} (ratio {:.2})",
                    r.pod_median(),
                    r.rel_median(),
                    r.ratio().unwrap_or(f64::NAN)
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        (m, ok)
    });
    out.push(target("Every scenario: API requests per reloaded workload at most Reloader's", vs));
    out.push(target(
        "S5: peak RSS at most 48 MiB and at most 0.07 × Reloader's",
        res.find("S5", "rss_peak_bytes").map(|r| {
            let ratio = r.ratio().unwrap_or(f64::NAN);
            (
                format!("{} vs {} (ratio {ratio:.3})", mib(r.pod_median()), mib(r.rel_median())),
                r.pod_median() <= 48.0 * 1024.0 * 1024.0 && ratio <= 0.07,
            )
        }),
    ));
    out.push(target(
        "S5b (Secrets of just under 1 MiB): peak RSS under 48 MiB",
        res.find("S5b", "rss_peak_bytes").map(|r| {
            (
                format!(
                    "{} (Reloader {}, ratio {:.3})",
                    mib(r.pod_median()),
                    mib(r.rel_median()),
                    r.ratio().unwrap_or(f64::NAN)
                ),
                r.pod_median() < 48.0 * 1024.0 * 1024.0,
            )
        }),
    ));
    let points = res.scale_points();
    let slope = (points.len() >= 2).then(|| {
        let (a, b) = (&points[0], &points[points.len() - 1]);
        let (ps, rs) = crate::report::slope(a, b);
        let ratio = ps / rs;
        (
            format!(
                "N {} to {}: {ps:.0} vs {rs:.0} bytes per watched object (ratio {ratio:.3}, target 0.050)",
                a.n, b.n
            ),
            rs > 0.0 && ratio <= 0.05,
        )
    });
    out.push(target("S6: steady RSS per watched object at most 1/20 of Reloader's (slope between N points)", slope));
    let ready = points
        .iter()
        .find(|p| p.n == 100_000)
        .map(|p| (format!("{:.2} s (Reloader {:.2} s)", p.pod_ready, p.rel_ready), p.pod_ready < 10.0));
    out.push(target("S6: start to ready at N = 100,000 under 10 s", ready));
    let first = res.find("S1", "first_start_writes_per_workload").map(|w| {
        let kcm = res.find("S1", "first_start_kcm_writes_per_workload");
        let restart = res.find("S1", "restart_writes_per_workload");
        format!(
            "first start: {:.2} per workload (Reloader {:.2}), kube-controller-manager ReplicaSet writes in reaction {}; restart: {}",
            w.pod_median(),
            w.rel_median(),
            kcm.map(|k| format!("{:.2} (Reloader {:.2})", k.pod_median(), k.rel_median())).unwrap_or_else(|| "-".into()),
            restart
                .map(|r| format!("{:.2} per workload (Reloader {:.2})", r.pod_median(), r.rel_median()))
                .unwrap_or_else(|| "-".into())
        )
    });
    out.push(figure(
        "S1: start-up writes per workload, first start and restart (down from 1 PATCH per workload)",
        first,
    ));
    let cpu = ["S3", "S4"]
        .iter()
        .filter_map(|sc| {
            res.find(sc, "cpu_seconds_per_1000_reloads")
                .map(|r| format!("{sc}: {:.2} s vs {:.2} s per 1,000 reloads", r.pod_median(), r.rel_median()))
        })
        .chain(
            res.find("S1", "cpu_steady_seconds")
                .map(|r| format!("S1 steady window: {:.3} s vs {:.3} s", r.pod_median(), r.rel_median())),
        )
        .collect::<Vec<_>>();
    out.push(figure("CPU (user+system) of the controller process", (!cpu.is_empty()).then(|| cpu.join("; "))));
}

#[cfg(test)]
mod tests {
    /// The report puts each title in a heading, and headings cannot be
    /// wrapped: dmt's markdownlint refuses one longer than 120 characters.
    #[test]
    fn scenario_headings_fit_the_markdown_line_limit() {
        for quick in [false, true] {
            for (id, title) in super::titles(&crate::Scale::new(quick)) {
                let heading = format!("## {id}: {title}");
                assert!(heading.len() <= 120, "{} characters: {heading}", heading.len());
            }
        }
    }
}
