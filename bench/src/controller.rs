//! One run of a controller under test: start the process under its own
//! identity, sample its memory, tell when it is ready, stop it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use jiff::Timestamp;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::Ctx;
use crate::objects;
use crate::tracker::key;
use crate::util::{free_port, http_status};

/// Stakater Reloader serves /metrics on this port on every interface; it has no flag for it.
pub const RELOADER_METRICS_PORT: u16 = 9090;
pub const PROBE_NS: &str = "bench-probe";
/// The probe ConfigMap, the probe Secret and the Deployment using the ConfigMap.
pub const PROBE: &str = "probe";
/// The Deployment using the probe Secret.
pub const PROBE_SECRET: &str = "probe-secret";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    PodReloader,
    Reloader,
}

#[derive(Debug, Clone)]
pub struct Variant {
    pub kind: Kind,
    /// Shown in logs and file names.
    pub label: &'static str,
    pub args: Vec<String>,
}

impl Variant {
    pub fn pod_reloader() -> Self {
        Variant { kind: Kind::PodReloader, label: "pod-reloader", args: vec![] }
    }

    pub fn pod_reloader_window0() -> Self {
        Variant { kind: Kind::PodReloader, label: "pod-reloader-window0", args: vec!["--coalesce-window=0".into()] }
    }

    pub fn reloader() -> Self {
        Variant { kind: Kind::Reloader, label: "reloader", args: vec![] }
    }
}

/// The two controllers' binaries and identities.
pub struct Controllers {
    pub pod_reloader_bin: PathBuf,
    pub reloader_bin: PathBuf,
    pub pod_reloader_kubeconfig: PathBuf,
    pub reloader_kubeconfig: PathBuf,
    pub log_dir: PathBuf,
}

/// The audit-log user names of the two ServiceAccounts.
pub fn user_of(kind: Kind) -> String {
    let sa = match kind {
        Kind::PodReloader => "pod-reloader",
        Kind::Reloader => "reloader",
    };
    format!("system:serviceaccount:{}:{sa}", crate::SYSTEM_NS)
}

#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: Instant,
    pub rss: u64,
    pub hwm: u64,
}

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`;
/// 100 on every Linux this runs on, read once in case it is not).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// User + system CPU seconds the process has used so far (`utime` +
/// `stime` of `/proc/<pid>/stat`; its children are not counted).
pub fn read_cpu(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it start past its ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): utime is field 14, stime field 15.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// VmRSS and VmHWM of a process, in bytes.
fn read_status(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = s.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

pub struct Run {
    pub variant: Variant,
    child: Child,
    pid: u32,
    port: u16,
    log: PathBuf,
    pub started: Instant,
    pub started_wall: Timestamp,
    samples: Arc<Mutex<Vec<Sample>>>,
    sampler: JoinHandle<()>,
    /// Seconds from start until its HTTP endpoint answered (/healthz, or Reloader's /metrics).
    pub http_s: Option<f64>,
    /// Seconds from start until ready: pod-reloader's /readyz; for Reloader,
    /// which has no readiness for its caches, the probe reaction.
    pub ready_s: Option<f64>,
    /// Seconds from start until it had rolled both probe Deployments.
    pub reaction_s: Option<f64>,
    /// When the scenario started changing things (requests after it are reactions).
    pub mark_wall: Option<Timestamp>,
    /// CPU seconds used up to the mark.
    pub mark_cpu: Option<f64>,
}

/// What a finished run leaves.
pub struct Finished {
    pub samples: Vec<Sample>,
    pub hwm: u64,
    pub started_wall: Timestamp,
    pub mark_wall: Timestamp,
    pub stopped_wall: Timestamp,
    pub http_s: Option<f64>,
    pub ready_s: f64,
    pub reaction_s: f64,
    /// CPU seconds from the mark (or the start) to the stop.
    pub cpu_after_mark: f64,
}

impl Finished {
    /// Median VmRSS of the samples taken in `[from, to]`.
    pub fn rss_between(&self, from: Instant, to: Instant) -> Option<f64> {
        let v: Vec<f64> = self.samples.iter().filter(|s| s.at >= from && s.at <= to).map(|s| s.rss as f64).collect();
        crate::util::median(&v)
    }
}

fn tail(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

impl Run {
    pub fn start(ctx: &Ctx, variant: &Variant, tag: &str) -> anyhow::Result<Run> {
        let c = &ctx.controllers;
        let log = c.log_dir.join(format!("{tag}-{}.log", variant.label));
        let out = File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let err = out.try_clone()?;
        let (mut cmd, port) = match variant.kind {
            Kind::PodReloader => {
                let port = free_port()?;
                let mut cmd = Command::new(&c.pod_reloader_bin);
                // POD_NAMESPACE as the module's Deployment sets it (downward
                // API): the controller keeps its baseline store there.
                cmd.arg(format!("--listen-address=127.0.0.1:{port}"))
                    .arg("--log-format=json")
                    .env("KUBECONFIG", &c.pod_reloader_kubeconfig)
                    .env("POD_NAMESPACE", crate::SYSTEM_NS);
                (cmd, port)
            }
            Kind::Reloader => {
                if std::net::TcpListener::bind(("0.0.0.0", RELOADER_METRICS_PORT)).is_err() {
                    bail!("port {RELOADER_METRICS_PORT} is taken; Stakater Reloader needs it (hard-coded)");
                }
                let mut cmd = Command::new(&c.reloader_bin);
                cmd.env("KUBECONFIG", &c.reloader_kubeconfig);
                (cmd, RELOADER_METRICS_PORT)
            }
        };
        // Both read KUBERNETES_NAMESPACE as "watch only this namespace".
        cmd.env_remove("KUBERNETES_NAMESPACE")
            .args(&variant.args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true);
        let started_wall = Timestamp::now();
        let started = Instant::now();
        let child = cmd.spawn().with_context(|| format!("start {}", variant.label))?;
        let pid = child.id().context("no pid")?;
        let samples = Arc::new(Mutex::new(Vec::new()));
        let s2 = samples.clone();
        let sampler = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                let Some((rss, hwm)) = read_status(pid) else {
                    return;
                };
                s2.lock().unwrap().push(Sample { at: Instant::now(), rss, hwm });
            }
        });
        Ok(Run {
            variant: variant.clone(),
            child,
            pid,
            port,
            log,
            started,
            started_wall,
            samples,
            sampler,
            http_s: None,
            ready_s: None,
            reaction_s: None,
            mark_wall: None,
            mark_cpu: None,
        })
    }

    /// Waits until the controller is ready and has rolled both probe
    /// Deployments once (the probe ConfigMap and Secret are changed every
    /// 200 ms until their Deployment is rolled), then until the probes have
    /// been quiet for a moment.
    pub async fn wait_ready(&mut self, ctx: &Ctx, timeout: Duration) -> anyhow::Result<()> {
        let keys = [key(PROBE_NS, PROBE), key(PROBE_NS, PROBE_SECRET)];
        let g0: Vec<i64> = ctx.tracker.generations(&keys);
        let mut reacted: [Option<f64>; 2] = [None, None];
        let mut n = 0u64;
        let mut next_probe = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited ({status}) before it was ready; last lines of {}:\n{}",
                    self.variant.label,
                    self.log.display(),
                    tail(&self.log)
                );
            }
            let el = self.started.elapsed();
            if el > timeout {
                bail!("{} not ready after {timeout:?}; see {}", self.variant.label, self.log.display());
            }
            let secs = el.as_secs_f64();
            match self.variant.kind {
                Kind::PodReloader => {
                    if self.http_s.is_none() && http_status(self.port, "/healthz").await == Some(200) {
                        self.http_s = Some(secs);
                    }
                    if self.ready_s.is_none() && http_status(self.port, "/readyz").await == Some(200) {
                        self.ready_s = Some(secs);
                    }
                }
                Kind::Reloader => {
                    if self.http_s.is_none() && http_status(self.port, "/metrics").await == Some(200) {
                        self.http_s = Some(secs);
                    }
                }
            }
            for (i, k) in keys.iter().enumerate() {
                if reacted[i].is_none()
                    && let Some(s) = ctx.tracker.get(k)
                    && s.generation > g0[i]
                {
                    reacted[i] = Some(s.changed_at.saturating_duration_since(self.started).as_secs_f64());
                }
            }
            if let [Some(a), Some(b)] = reacted {
                self.reaction_s = Some(a.max(b));
                if self.variant.kind == Kind::Reloader {
                    self.ready_s = self.reaction_s;
                }
            }
            if self.reaction_s.is_none() && Instant::now() >= next_probe {
                n += 1;
                let v = format!("{}-{n}", self.started_wall.as_millisecond());
                if reacted[0].is_none() {
                    objects::set_configmap_data(&ctx.client, PROBE_NS, PROBE, &v).await?;
                }
                if reacted[1].is_none() {
                    objects::set_secret_data(&ctx.client, PROBE_NS, PROBE, &v).await?;
                }
                next_probe = Instant::now() + Duration::from_millis(200);
            }
            if self.ready_s.is_some() && self.reaction_s.is_some() && self.http_s.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ctx.tracker.wait_quiet(ctx.scale.settle, Duration::from_secs(60)).await;
        Ok(())
    }

    /// Waits until the controller has sent no request (outside the probe
    /// namespace) for `quiet`, by the audit log. pod-reloader reconciles
    /// every workload against its record on start (after Reloader ran, it
    /// re-records the hashes Reloader rolled to); that work must be over
    /// before a scenario starts changing things and counting requests.
    /// Returns how long it waited.
    pub async fn wait_idle(&self, ctx: &mut Ctx, quiet: Duration, timeout: Duration) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        let user = user_of(self.variant.kind);
        loop {
            let last = ctx.audit.last_request(&user, self.started_wall, PROBE_NS)?;
            let since = match last {
                Some(t) => Timestamp::now().duration_since(t).unsigned_abs(),
                None => self.started.elapsed(),
            };
            if since >= quiet || t0.elapsed() >= timeout {
                return Ok(t0.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// From now on, requests count as reactions to the scenario's changes.
    pub fn mark(&mut self) {
        self.mark_wall = Some(Timestamp::now());
        self.mark_cpu = read_cpu(self.pid);
    }

    /// Median VmRSS of the samples so far taken in `[from, to]`.
    pub fn rss_between(&self, from: Instant, to: Instant) -> Option<f64> {
        let v: Vec<f64> =
            self.samples.lock().unwrap().iter().filter(|s| s.at >= from && s.at <= to).map(|s| s.rss as f64).collect();
        crate::util::median(&v)
    }

    /// CPU seconds the controller has used since it started.
    pub fn cpu_seconds(&self) -> f64 {
        read_cpu(self.pid).unwrap_or(f64::NAN)
    }

    pub async fn stop(mut self) -> anyhow::Result<Finished> {
        let last = read_status(self.pid);
        let cpu_end = read_cpu(self.pid).unwrap_or(f64::NAN);
        // The process we started, by its handle. Neither controller needs a
        // graceful stop here, and SIGKILL keeps the runs short.
        self.child.kill().await?;
        let stopped_wall = Timestamp::now();
        self.sampler.abort();
        let samples = std::mem::take(&mut *self.samples.lock().unwrap());
        let hwm = last.map(|(_, h)| h).or_else(|| samples.last().map(|s| s.hwm)).unwrap_or(0);
        Ok(Finished {
            hwm,
            started_wall: self.started_wall,
            mark_wall: self.mark_wall.unwrap_or(stopped_wall),
            stopped_wall,
            http_s: self.http_s,
            ready_s: self.ready_s.unwrap_or(f64::NAN),
            reaction_s: self.reaction_s.unwrap_or(f64::NAN),
            cpu_after_mark: cpu_end - self.mark_cpu.unwrap_or(0.0),
            samples,
        })
    }
}
