//! pod-reloader: rolls workloads when the ConfigMaps and Secrets they use
//! change. Wiring only; each concern lives in its own module.

mod alerts;
mod backoff;
mod baseline_store;
mod chosen_keys;
mod cli;
mod config;
mod cronjob_trigger;
mod events;
mod explain;
mod followup;
mod health;
mod http;
mod leader;
mod list_mode;
mod logging;
mod memory;
mod messages;
mod metrics;
mod notices;
mod ondelete;
mod reload;
mod scheduler;
mod state;
mod watch;
mod watch_health;
mod watch_spc;
mod webhook_mode;
mod workload_ref;

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use kube::Client;
use pod_reloader_core::WorkloadKind;
use pod_reloader_core::settings::ValidSettings;
use tokio::sync::mpsc;

use crate::cli::Cli;
use crate::followup::Followups;
use crate::health::Health;
use crate::messages::{StreamId, Watched};
use crate::metrics::Metrics;
use crate::ondelete::OnDeleteRestarts;
use crate::reload::Reloader;
use crate::state::{Notice, Outputs, State};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match config::load(&cli.run) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pod-reloader: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(cli::Command::Explain { target, namespace }) = &cli.command {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
        let result = match runtime {
            Ok(rt) => rt.block_on(explain::run(target, namespace, &settings)),
            Err(e) => Err(e.into()),
        };
        return match result {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    logging::init(&settings);
    if cli.run.initial_list.as_deref() == Some("paged") {
        list_mode::force_paged();
    }
    for (flag, why) in cli.run.accepted_without_effect() {
        tracing::info!(flag, "Reloader flag accepted, nothing to do: {why}");
    }
    for (flag, name) in settings.annotation_names.renames() {
        tracing::info!(flag, name, "annotation renamed: read instead of Reloader's name");
    }
    // The watch streams and the reload path read the names from here.
    pod_reloader_core::annotations::AnnotationNames::set_global(settings.annotation_names.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pod-reloader: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.run.listen_address.clone(), cli.run.webhook_url.clone(), settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "pod-reloader stopped");
            ExitCode::FAILURE
        }
    }
}

/// Every watch stream the settings ask for (and the baseline store's, in `store_ns`).
fn streams(settings: &ValidSettings, store_ns: Option<&Arc<str>>) -> Vec<StreamId> {
    let scopes: Vec<Option<Arc<str>>> = if settings.namespaces.is_empty() {
        vec![None]
    } else {
        let unique: HashSet<&String> = settings.namespaces.iter().collect();
        unique.into_iter().map(|n| Some(Arc::from(n.as_str()))).collect()
    };
    let mut out = Vec::new();
    for scope in &scopes {
        for kind in &settings.resource_kinds {
            out.push(StreamId { watched: Watched::Resource(*kind), namespace: scope.clone() });
        }
        for kind in &settings.workload_kinds {
            out.push(StreamId { watched: Watched::Workload(*kind), namespace: scope.clone() });
        }
    }
    if settings.namespace_selector.is_some() {
        out.push(StreamId { watched: Watched::Namespaces, namespace: None });
    }
    if let Some(ns) = store_ns {
        out.push(StreamId { watched: Watched::BaselineStore, namespace: Some(ns.clone()) });
    }
    out
}

async fn run(
    listen_address: String,
    webhook_url: Option<webhook_mode::WebhookUrl>,
    settings: ValidSettings,
) -> anyhow::Result<()> {
    let settings = Arc::new(settings);
    let client =
        Client::try_default().await.map_err(|e| anyhow::anyhow!("cannot configure the Kubernetes client: {e}"))?;
    let metrics = Arc::new(Metrics::new(settings.metrics_count_by_namespace));
    // Checked before any watch starts: a bad URL stops start-up (without echoing it).
    let webhook = webhook_mode::WebhookUrl::configured(webhook_url.as_ref(), &settings.webhook_url_file)?;
    let health = Arc::new(Health::default());
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        strategy = %settings.strategy,
        namespaces = %if settings.namespaces.is_empty() { "all".to_string() } else { settings.namespaces.join(",") },
        "starting pod-reloader"
    );
    match &settings.record_key {
        Some(key) => tracing::info!(key_id = %key.id(), "the rolled-to record is keyed (HMAC-SHA-256)"),
        None => tracing::warn!(
            "no --record-key-file: the rolled-to record on workloads holds bare SHA-1s of the ConfigMaps and Secrets \
             they use, readable by anyone who can read the workloads (the module always passes a key)"
        ),
    }

    let (msg_tx, msg_rx) = mpsc::channel(1024);
    let (reload_tx, reload_rx) = mpsc::channel(1024);
    let (notice_tx, notice_rx) = mpsc::channel::<Notice>(256);
    let (fetch_tx, fetch_rx) = mpsc::unbounded_channel();
    let wanted = Arc::new(chosen_keys::WantedKeys::default());
    let alerter = match &settings.alerting {
        Some((sink, alerting)) => Some(alerts::Alerter::start(*sink, alerting, metrics.clone())?),
        None => None,
    };

    // Webhook mode rolls nothing and records nothing.
    let store_ns: Option<Arc<str>> =
        baseline_store::namespace(leader::lease_namespace(&settings)).filter(|_| webhook.is_none()).map(Arc::from);
    match &store_ns {
        Some(ns) => tracing::info!(namespace = %ns, "new baselines go to the baseline store"),
        None => tracing::info!("no own namespace: new baselines are recorded on the workloads"),
    }
    let stream_ids = streams(&settings, store_ns.as_ref());
    let label_selector = settings.resource_label_selector.as_ref().map(ToString::to_string);
    for id in &stream_ids {
        let (client, tx) = (client.clone(), msg_tx.clone());
        match &id.watched {
            Watched::Resource(kind) => {
                let (selector, wanted) = (label_selector.clone(), wanted.clone());
                tokio::spawn(watch::resources(client, *kind, id.namespace.clone(), selector, wanted, tx));
            }
            Watched::Workload(kind) => {
                tokio::spawn(watch::workloads(client, *kind, id.namespace.clone(), tx));
            }
            Watched::Namespaces => {
                let selector = settings.namespace_selector.as_ref().map(ToString::to_string).unwrap_or_default();
                tokio::spawn(watch::namespaces(client, selector, tx));
            }
            Watched::BaselineStore => {
                let ns = id.namespace.clone().unwrap_or_else(|| Arc::from("default"));
                tokio::spawn(baseline_store::watch(client, ns, tx));
            }
        }
    }
    tokio::spawn(chosen_keys::fetch(client.clone(), label_selector, wanted.clone(), fetch_rx, msg_tx.downgrade()));
    drop(msg_tx);

    let leadership = if settings.leader_election.enabled {
        leader::Leadership::elect(client.clone(), &settings).await?
    } else {
        leader::Leadership::always()
    };
    let mut followups = Followups::default();
    if settings.stateful_set_on_delete_restart && settings.workload_kinds.contains(&WorkloadKind::StatefulSet) {
        let restarts = OnDeleteRestarts::new(client.clone(), leadership.receiver.clone());
        tokio::spawn(restarts.clone().run(settings.namespaces.clone()));
        followups.on_delete = Some(restarts);
    }
    if settings.workload_kinds.contains(&WorkloadKind::CronJob) {
        followups.cron_jobs = Some(cronjob_trigger::CronJobTrigger::new(client.clone(), settings.cron_job_trigger));
    }
    let reloader = Arc::new(
        Reloader::new(client.clone(), settings.strategy, metrics.clone(), alerter)
            .with_record_key(settings.record_key.clone())
            .with_followups(followups),
    );
    let mut state = State::new(settings.clone(), stream_ids, metrics.clone(), wanted);
    let mut store_writes = None;
    if let Some(ns) = &store_ns {
        state = state.with_baseline_store(ns.clone());
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(baseline_store::writer(client.clone(), ns.clone(), rx));
        store_writes = Some(tx);
    }
    let outputs =
        Outputs { reloads: reload_tx, notices: notice_tx, health: health.clone(), fetches: fetch_tx, store_writes };
    let state_task = tokio::spawn(state::run(state, msg_rx, leadership.receiver.clone(), outputs));
    let pacing = scheduler::Pacing {
        window: settings.coalesce_window,
        max_rollouts_per_second: settings.max_rollouts_per_second,
    };
    if pacing.max_rollouts_per_second > 0 {
        tracing::info!(max_rollouts_per_second = pacing.max_rollouts_per_second, "cluster-wide rollout rate limit on");
    }
    // Reloader's --webhook-url mode posts instead of rolling: the executor is chosen here, once.
    match webhook {
        Some(url) => {
            tracing::info!("webhook mode: changes are posted to the webhook, workloads are not rolled");
            let executor = Arc::new(webhook_mode::WebhookMode::new(url, metrics.clone())?);
            tokio::spawn(scheduler::run(pacing, reload_rx, executor, metrics.clone()));
        }
        None => {
            tokio::spawn(scheduler::run(pacing, reload_rx, reloader.clone(), metrics.clone()));
        }
    }

    // Notices: warnings and scheduled resumes, off the state task's path.
    tokio::spawn(notices::run(notice_rx, reloader.clone()));

    let server = http::serve(&listen_address, metrics.clone(), health.clone());
    let result = tokio::select! {
        r = server => r,
        _ = state_task => Err(anyhow::anyhow!("all watches ended")),
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            Ok(())
        }
    };
    leadership.release().await;
    result
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return ctrl_c.await.unwrap_or(()),
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
}
