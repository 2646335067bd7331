//! S7, workload churn (Stakater Reloader's load-test S5): Deployments using
//! one ConfigMap are created and deleted in a steady stream while the
//! ConfigMap keeps changing. What it costs the controller (memory before
//! and after, peak, CPU, requests, failed requests), not which reloads land:
//! a workload created a moment before a change may or may not be due one.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::DeleteParams;

use crate::controller::{Kind, Variant};
use crate::report::{Results, Unit};
use crate::scenarios::{cleanup, controller_name, is_pod, namespaces, order, start_ready, stop};
use crate::{Ctx, log, objects};

const NS: &str = "s7";
/// A Deployment is created every this often, and the one created
/// `LIVE` steps earlier deleted.
const STEP: Duration = Duration::from_millis(250);
const LIVE: usize = 20;
/// The shared ConfigMap changes every this often.
const CHANGE_EVERY: usize = 8; // steps: every 2 s

pub async fn s7(ctx: &mut Ctx, res: &mut Results) -> anyhow::Result<()> {
    let secs = ctx.scale.s7_seconds;
    let steps = (Duration::from_secs(secs).as_millis() / STEP.as_millis()) as usize;
    log(format!("S7: {steps} Deployments created and deleted over {secs} s, the ConfigMap changed every 2 s"));
    namespaces(ctx, &[NS.to_string()], "s7").await?;
    objects::create_many(&ctx.client, 1, 1, |_| Ok(objects::configmap(NS, "shared", "initial".into()))).await?;
    res.note(
        "S7",
        format!(
            "Per run: {steps} Deployments created (one every {} ms, each annotated auto and using the ConfigMap through envFrom), each deleted {LIVE} creations later (so about {LIVE} exist at a time), the ConfigMap's data changed every 2 s ({} changes); memory after is the median RSS over the steady window once the churn is over and nothing has changed for the quiet time.",
            STEP.as_millis(),
            steps / CHANGE_EVERY
        ),
    );
    let both = [Variant::pod_reloader(), Variant::reloader()];
    let mut last = std::collections::HashMap::new();
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), NS);
    for r in 0..ctx.rounds {
        log(format!("S7 round {}", r + 1));
        for v in order(r, &both) {
            let mut run = start_ready(ctx, &v, &format!("s7-r{r}")).await?;
            let before = steady(ctx, &run).await;
            run.mark();
            let t0 = tokio::time::Instant::now();
            for k in 0..steps {
                tokio::time::sleep_until(t0 + STEP * k as u32).await;
                let name = format!("r{r}-{}-{k:04}", short(v.kind));
                let d = objects::deployment(NS, &name, true, Some("shared"), None)?;
                objects::create_many(&ctx.client, 1, 1, |_| Ok(d.clone())).await?;
                if k >= LIVE {
                    let old = format!("r{r}-{}-{:04}", short(v.kind), k - LIVE);
                    delete(&api, &old).await?;
                }
                if k % CHANGE_EVERY == 0 {
                    objects::set_configmap_data(&ctx.client, NS, "shared", &format!("r{r}-{}-{k}", v.label)).await?;
                }
            }
            for k in steps.saturating_sub(LIVE)..steps {
                delete(&api, &format!("r{r}-{}-{k:04}", short(v.kind))).await?;
            }
            let cpu = run.cpu_seconds() - run.mark_cpu.unwrap_or(f64::NAN);
            ctx.tracker.wait_quiet(ctx.scale.quiet, Duration::from_secs(60)).await;
            let after = steady(ctx, &run).await;
            let (fin, _, reqs) = stop(ctx, run).await?;
            log(format!(
                "  {}: RSS {:.1} MiB before, {:.1} MiB after, peak {:.1} MiB; {cpu:.2} CPU s; {} requests, {} failed",
                v.label,
                crate::util::mib(before),
                crate::util::mib(after),
                crate::util::mib(fin.hwm as f64),
                reqs.total,
                reqs.failed
            ));
            let pod = is_pod(&v);
            res.add("S7", "rss_before_bytes", Unit::Bytes, "steady RSS before the churn", pod, before);
            res.add("S7", "rss_after_bytes", Unit::Bytes, "steady RSS after the churn", pod, after);
            res.add("S7", "rss_peak_bytes", Unit::Bytes, "peak RSS", pod, fin.hwm as f64);
            res.add("S7", "cpu_seconds", Unit::Seconds, "user+system CPU seconds during the churn", pod, cpu);
            res.add(
                "S7",
                "api_requests",
                Unit::Count,
                "API requests from the churn's start to the stop",
                pod,
                reqs.total as f64,
            );
            res.add(
                "S7",
                "failed_requests",
                Unit::Count,
                "of them answered with an HTTP error (4xx/5xx)",
                pod,
                reqs.failed as f64,
            );
            last.insert(v.kind, reqs);
        }
    }
    for (kind, c) in last {
        res.breakdown.insert(("S7".into(), controller_name(kind).into()), c.by_kind);
    }
    cleanup(ctx, "s7").await
}

fn short(k: Kind) -> &'static str {
    match k {
        Kind::PodReloader => "p",
        Kind::Reloader => "r",
    }
}

async fn delete(api: &Api<Deployment>, name: &str) -> anyhow::Result<()> {
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(anyhow::Error::from(e).context(format!("delete Deployment {NS}/{name}"))),
    }
}

/// Median RSS over the steady window, after at most 2 s more (it follows
/// the idle wait, or the quiet time after the churn).
async fn steady(ctx: &Ctx, run: &crate::controller::Run) -> f64 {
    tokio::time::sleep(ctx.scale.steady_wait.min(Duration::from_secs(2))).await;
    let from = Instant::now();
    tokio::time::sleep(ctx.scale.steady_window).await;
    run.rss_between(from, Instant::now()).unwrap_or(f64::NAN)
}
