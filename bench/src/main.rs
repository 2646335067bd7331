//! pod-reloader-bench: runs pod-reloader and Stakater Reloader in turn
//! against the same local apiserver and the same objects, and writes
//! benchmarks.md, benchmarks.json and benchmarks-rss.svg. Started by
//! `make bench` (scripts/bench.sh), which builds both controllers and starts
//! a test bed with an audit log. Not a test.

// A benchmark, not the shipped controller: a failed lock or a missing row
// should stop the run loudly, so it may unwrap.
#![allow(clippy::unwrap_used)]
#![forbid(unsafe_code)]

mod audit;
mod churn;
mod controller;
mod objects;
mod report;
mod scale;
mod scenarios;
mod tracker;
mod util;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::PostParams;
use kube::config::Kubeconfig;
use kube::{Api, Client};
use serde_json::json;

use crate::audit::AuditLog;
use crate::controller::{Controllers, PROBE, PROBE_NS, PROBE_SECRET};
use crate::report::Results;

/// Namespace of the two controllers' ServiceAccounts.
pub const SYSTEM_NS: &str = "bench-system";

#[derive(Debug, Parser)]
#[command(name = "pod-reloader-bench", about = "pod-reloader against Stakater Reloader on the local test bed")]
struct Args {
    /// A tenth of the scale and shorter waits.
    #[arg(long)]
    quick: bool,
    /// Rounds per scenario; each round runs every controller once, the order alternating.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(long)]
    pod_reloader: PathBuf,
    #[arg(long)]
    reloader: PathBuf,
    /// The kube-apiserver audit log (JSON lines).
    #[arg(long)]
    audit_log: PathBuf,
    /// Controller logs and kubeconfigs go here.
    #[arg(long)]
    work_dir: PathBuf,
    /// Where benchmarks.md, benchmarks.json and benchmarks-rss.svg are written.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_delimiter = ',', default_value = "S1,S2,S3,S4,S5,S5b,S7,S6")]
    scenarios: Vec<String>,
    /// Text appended to benchmarks.md (how things are measured).
    #[arg(long)]
    notes: Option<PathBuf>,
    /// S6's values of N instead of the scale's (1,000, 10,000, 100,000; QUICK up to 10,000).
    #[arg(long, value_delimiter = ',')]
    s6_points: Vec<usize>,
    /// Leave S6's objects in place (the test bed goes down after the run and
    /// takes them along; removing 200,000 objects takes the apiserver minutes).
    #[arg(long)]
    keep_s6_objects: bool,
    /// Facts for the page, `label=value`, repeated (versions, command).
    #[arg(long = "fact")]
    facts: Vec<String>,
}

/// Object counts and waits; `quick` is a tenth of the counts.
#[derive(Debug, Clone)]
pub struct Scale {
    pub s1_namespaces: usize,
    pub s1_secrets: usize,
    pub s1_configmaps: usize,
    pub s1_deployments: usize,
    pub s2_updates: usize,
    pub s3_deployments: usize,
    pub s4_edits: usize,
    pub s4_seconds: u64,
    pub s4_namespaces: usize,
    pub s5_secrets: usize,
    /// Secrets of just under 1 MiB in S5b.
    pub s5b_secrets: usize,
    /// The values of N in S6 (N ConfigMaps, N Secrets, N/10 Deployments).
    pub s6_points: Vec<usize>,
    /// Seconds of churn per S6 run.
    pub s6_churn_seconds: u64,
    /// Seconds of workload churn per S7 run.
    pub s7_seconds: u64,
    /// Wait after ready before the steady-RSS window, and the window itself.
    pub steady_wait: Duration,
    pub steady_window: Duration,
    /// Quiet time on the probe after a controller is ready.
    pub settle: Duration,
    /// Quiet time after the last change before counting patches.
    pub quiet: Duration,
    /// Numbers of Secrets (below the full count) for the extra chart points.
    pub curve_steps: Vec<usize>,
}

impl Scale {
    fn new(quick: bool) -> Scale {
        let d = if quick { 10 } else { 1 };
        Scale {
            s1_namespaces: 50 / d,
            s1_secrets: 10_000 / d,
            s1_configmaps: 5_000 / d,
            s1_deployments: 500 / d,
            s2_updates: 200 / d,
            s3_deployments: 1_000 / d,
            s4_edits: 1_000 / d,
            s4_seconds: 60 / d as u64,
            s4_namespaces: 100 / d,
            s5_secrets: 1_000 / d,
            s5b_secrets: 200 / d,
            // QUICK stops at 10,000 (the issue); N = 100,000 is the full run's.
            s6_points: if quick { vec![1_000, 10_000] } else { vec![1_000, 10_000, 100_000] },
            s6_churn_seconds: if quick { 10 } else { 15 },
            s7_seconds: if quick { 10 } else { 15 },
            // Counted after ready, the probes' settling and the idle wait
            // (no request for 1.5 s), so the start's work is over by then;
            // 5 s rather than 15 s keeps the full run within its hour.
            steady_wait: Duration::from_secs(if quick { 1 } else { 5 }),
            steady_window: Duration::from_secs(if quick { 2 } else { 10 }),
            settle: Duration::from_millis(if quick { 500 } else { 1500 }),
            // Over twice pod-reloader's 1 s coalescing window; Reloader
            // patches within milliseconds of the change it reacts to.
            quiet: Duration::from_secs(if quick { 2 } else { 3 }),
            // The first point holds the Secrets the Deployments use (one
            // each), so that S1's first start and every restart see the
            // same references resolved.
            curve_steps: if quick { vec![500 / d] } else { vec![500, 2_500, 5_000, 7_500] },
        }
    }
}

pub struct Ctx {
    pub client: Client,
    pub tracker: Arc<tracker::Tracker>,
    pub controllers: Controllers,
    pub audit: AuditLog,
    pub scale: Scale,
    pub rounds: usize,
    pub quick: bool,
    /// Scenarios whose namespaces are being deleted; waited for before the
    /// next controller starts, so their removal overlaps the next set-up.
    pub deleting: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?.block_on(run(args))
}

pub fn log(msg: impl AsRef<str>) {
    let t = jiff::Zoned::now().strftime("%H:%M:%S");
    eprintln!("bench {t} {}", msg.as_ref());
}

async fn run(args: Args) -> anyhow::Result<()> {
    let t_all = Instant::now();
    let started = jiff::Zoned::now();
    std::fs::create_dir_all(args.work_dir.join("logs"))?;
    let client = Client::try_default().await.context("connect to the test bed (KUBECONFIG)")?;
    let version = client.apiserver_version().await?;

    log("identities, probe and Deployment watch");
    let (pr_kc, rl_kc) = identities(&client, &args.work_dir).await?;
    let tracker = tracker::Tracker::start(client.clone());
    create_probe(&client).await?;
    let probe_keys = [tracker::key(PROBE_NS, PROBE), tracker::key(PROBE_NS, PROBE_SECRET)];
    anyhow::ensure!(
        tracker.wait_present(&probe_keys, Duration::from_secs(30)).await,
        "the Deployment watch never saw the probe Deployments"
    );

    let mut scale = Scale::new(args.quick);
    if !args.s6_points.is_empty() {
        scale.s6_points = args.s6_points.clone();
    }
    let mut ctx = Ctx {
        client,
        tracker,
        controllers: Controllers {
            pod_reloader_bin: args.pod_reloader.clone(),
            reloader_bin: args.reloader.clone(),
            pod_reloader_kubeconfig: pr_kc,
            reloader_kubeconfig: rl_kc,
            log_dir: args.work_dir.join("logs"),
        },
        audit: AuditLog::new(args.audit_log.clone()),
        scale,
        rounds: args.rounds,
        quick: args.quick,
        deleting: Vec::new(),
    };

    let mut res = Results::default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_kb: f64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0.0);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    res.setup.push(("Date".into(), started.strftime("%Y-%m-%d %H:%M %Z").to_string()));
    res.setup.push((
        "Machine".into(),
        format!(
            "{cores} cores ({cpu}), {:.1} GiB memory, Linux {}",
            mem_kb / 1024.0 / 1024.0,
            std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim()
        ),
    ));
    res.setup.push((
        "Kubernetes".into(),
        format!(
            "{} (test bed: etcd, kube-apiserver, kube-controller-manager on 127.0.0.1; no nodes, so pods stay Pending)",
            version.git_version
        ),
    ));
    for f in &args.facts {
        if let Some((k, v)) = f.split_once('=') {
            res.setup.push((k.into(), v.into()));
        }
    }
    let s = &ctx.scale;
    res.setup.push((
        "Scale".into(),
        if ctx.quick {
            format!(
                "QUICK: a tenth of the full scale ({} Secrets in S1, {} updates in S2, {} Deployments in S3, {} edits in S4, {} big Secrets in S5, {} in S5b), S6 up to N = {}",
                s.s1_secrets,
                s.s2_updates,
                s.s3_deployments,
                s.s4_edits,
                s.s5_secrets,
                s.s5b_secrets,
                s.s6_points.last().copied().unwrap_or(0)
            )
        } else {
            "full (the counts in the issue)".into()
        },
    ));
    res.setup.push((
        "Rounds".into(),
        format!(
            "{} per scenario; each round runs every controller once, one after the other (never together), the order alternating between rounds (A B, then B A, ...); tables show medians over the rounds",
            ctx.rounds
        ),
    ));
    res.curve_caption = format!(
        "{} ConfigMaps of 2 KiB and {} Deployments present; each point a freshly started controller",
        s.s1_configmaps, s.s1_deployments
    );
    let load_start = loadavg();
    let titles = scenarios::titles(&ctx.scale);
    let want = |s: &str| args.scenarios.iter().any(|x| x.eq_ignore_ascii_case(s));
    let write = |res: &mut Results, done: bool| -> anyhow::Result<()> {
        let mut res2_setup = res.setup.clone();
        res2_setup.push((
            "Load average (1 min)".into(),
            format!(
                "{load_start} at the start, {} at the end (the machine is shared; everything else running on it counts too)",
                loadavg()
            ),
        ));
        res2_setup.push((
            "Run time".into(),
            format!(
                "{:.1} minutes{}",
                t_all.elapsed().as_secs_f64() / 60.0,
                if done { "" } else { " so far (run still going)" }
            ),
        ));
        let saved = std::mem::replace(&mut res.setup, res2_setup);
        let targets = scenarios::targets(res);
        // Read at each write, so the page carries the notes as they are when it is written.
        let notes = match &args.notes {
            Some(p) => std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?,
            None => String::new(),
        };
        let r = report::write_all(&args.out, res, &targets, &notes, &titles);
        res.setup = saved;
        r
    };

    if want("S1") {
        scenarios::s1(&mut ctx, &mut res).await?;
        write(&mut res, false)?;
    }
    if want("S2") {
        scenarios::s2(&mut ctx, &mut res).await?;
        write(&mut res, false)?;
    }
    if want("S3") {
        scenarios::s3(&mut ctx, &mut res).await?;
        write(&mut res, false)?;
    }
    if want("S4") {
        scenarios::s4(&mut ctx, &mut res).await?;
        write(&mut res, false)?;
    }
    if want("S5") {
        scenarios::s5(&mut ctx, &mut res).await?;
        write(&mut res, false)?;
    }
    if want("S5b") {
        scenarios::s5b(&mut ctx, &mut res).await?;
        write(&mut res, false)?;
    }
    if want("S7") {
        churn::s7(&mut ctx, &mut res).await?;
        write(&mut res, false)?;
    }
    if want("S6") {
        // The last scenario: its 200,000 objects go with the test bed.
        scale::s6(&mut ctx, &mut res, args.keep_s6_objects).await?;
    }
    // The last scenario's namespaces go with the test bed (or on their own).
    write(&mut res, true)?;
    log(format!("done in {:.1} min; wrote {}", t_all.elapsed().as_secs_f64() / 60.0, args.out.display()));
    Ok(())
}

/// The 1-minute load average.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// A ServiceAccount per controller, bound to cluster-admin, and a
/// kubeconfig with its token: the audit log tells their requests apart.
async fn identities(client: &Client, dir: &std::path::Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    objects::create_namespace(client, SYSTEM_NS, "system").await?;
    let kc = Kubeconfig::read().context("read the admin kubeconfig")?;
    let cluster = kc.clusters.first().and_then(|c| c.cluster.clone()).context("no cluster in the admin kubeconfig")?;
    let server = cluster.server.clone().context("no server")?;
    let ca = cluster.certificate_authority_data.clone().context("no certificate-authority-data")?;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), SYSTEM_NS);
    let crbs: Api<ClusterRoleBinding> = Api::all(client.clone());
    let mut out = Vec::new();
    for name in ["pod-reloader", "reloader"] {
        let sa: ServiceAccount = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": SYSTEM_NS}
        }))?;
        ignore_exists(sas.create(&PostParams::default(), &sa).await)?;
        let crb: ClusterRoleBinding = serde_json::from_value(json!({
            "metadata": {"name": format!("bench-{name}")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": SYSTEM_NS}]
        }))?;
        ignore_exists(crbs.create(&PostParams::default(), &crb).await)?;
        let tr = TokenRequest {
            spec: TokenRequestSpec { audiences: vec![], expiration_seconds: Some(48 * 3600), ..Default::default() },
            ..Default::default()
        };
        let token = sas
            .create_token_request(name, &PostParams::default(), &tr)
            .await
            .with_context(|| format!("token for {name}"))?
            .status
            .context("no token status")?
            .token;
        let path = dir.join(format!("{name}.kubeconfig"));
        let body = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: bench\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {name}\n  user:\n    token: {token}\ncontexts:\n- name: {name}\n  context:\n    cluster: bench\n    user: {name}\ncurrent-context: {name}\n"
        );
        std::fs::write(&path, body)?;
        out.push(path);
    }
    Ok((out[0].clone(), out[1].clone()))
}

fn ignore_exists<T>(r: Result<T, kube::Error>) -> anyhow::Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The readiness probes, in a namespace of their own (left out of every
/// request count): a ConfigMap and a Secret, each used by an annotated
/// Deployment of its own. Reloader syncs ConfigMaps and Secrets in separate
/// informers, so one probe would tell only about one of them.
async fn create_probe(client: &Client) -> anyhow::Result<()> {
    objects::create_namespace(client, PROBE_NS, "probe").await?;
    objects::create_many(client, 1, 1, |_| Ok(objects::configmap(PROBE_NS, PROBE, "0".into()))).await?;
    objects::create_many(client, 1, 1, |_| Ok(objects::secret(PROBE_NS, PROBE, b"0".to_vec()))).await?;
    objects::create_many(client, 1, 1, |_| objects::deployment(PROBE_NS, PROBE, true, Some(PROBE), None)).await?;
    objects::create_many(client, 1, 1, |_| objects::deployment(PROBE_NS, PROBE_SECRET, true, None, Some(PROBE))).await
}
