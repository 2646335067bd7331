//! Alerts on reload (Reloader's `ALERT_ON_RELOAD`): one message per reloaded
//! workload and resource, to Slack, Teams, Google Chat or a raw webhook.
//! Sending happens on a task of its own behind a bounded queue, so a slow or
//! failing sink never delays a reload; failures are retried with backoff
//! and then given up. The webhook URL is read from a file (a mounted
//! Secret) or `ALERT_WEBHOOK_URL`, and never logged.

use std::sync::Arc;
use std::time::Duration;

use handlebars::Handlebars;
use pod_reloader_core::alert::{AlertFacts, DEFAULT_TEMPLATE, payload, with_additional_info};
use pod_reloader_core::settings::{AlertSink, AlertingSettings};
use tokio::sync::mpsc;

use crate::backoff;
use crate::metrics::Metrics;

/// Alerts waiting to be sent; beyond this they are dropped (and counted).
const QUEUE: usize = 1000;
const TIMEOUT: Duration = Duration::from_secs(5);

pub struct Alerter {
    queue: mpsc::Sender<AlertFacts>,
    metrics: Arc<Metrics>,
}

struct Sender {
    client: reqwest::Client,
    url: String,
    sink: AlertSink,
    additional_info: String,
    templates: Handlebars<'static>,
    metrics: Arc<Metrics>,
}

impl Alerter {
    /// Starts the alert task; errors name the setting at fault.
    pub fn start(sink: AlertSink, settings: &AlertingSettings, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let url = if settings.webhook_url_file.is_empty() {
            std::env::var("ALERT_WEBHOOK_URL").map_err(|_| {
                anyhow::anyhow!("invalid setting alerting.webhookUrlFile=\"\": alerting is on but neither it nor ALERT_WEBHOOK_URL gives the webhook URL")
            })?
        } else {
            std::fs::read_to_string(&settings.webhook_url_file).map_err(|e| {
                anyhow::anyhow!(
                    "invalid setting alerting.webhookUrlFile={:?}: cannot read it: {e}",
                    settings.webhook_url_file
                )
            })?
        };
        let url = url.trim().to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            // Say what is wrong without echoing the URL (it may carry a token).
            anyhow::bail!(
                "invalid setting alerting.webhookUrlFile: the webhook URL must start with http:// or https://"
            );
        }
        let mut templates = Handlebars::new();
        templates.register_escape_fn(handlebars::no_escape);
        templates.set_strict_mode(true);
        let template = if settings.template.is_empty() { DEFAULT_TEMPLATE } else { settings.template.as_str() };
        templates
            .register_template_string("message", template)
            .map_err(|e| anyhow::anyhow!("invalid setting alerting.template: {e}"))?;

        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder().timeout(TIMEOUT).redirect(reqwest::redirect::Policy::none());
        if let Ok(proxy) = std::env::var("ALERT_WEBHOOK_PROXY") {
            builder = builder.proxy(
                reqwest::Proxy::all(&proxy)
                    .map_err(|_| anyhow::anyhow!("invalid ALERT_WEBHOOK_PROXY: not a proxy URL"))?,
            );
        }
        let client = builder.build().map_err(|e| anyhow::anyhow!("cannot build the alert HTTP client: {e}"))?;
        let (queue, rx) = mpsc::channel(QUEUE);
        let sender = Sender {
            client,
            url,
            sink,
            additional_info: settings.additional_info.clone(),
            templates,
            metrics: metrics.clone(),
        };
        tokio::spawn(sender.run(rx));
        tracing::info!(sink = ?sink, "alerts on reload are on");
        Ok(Alerter { queue, metrics })
    }

    /// Queues an alert; never waits.
    pub fn notify(&self, facts: AlertFacts) {
        if self.queue.try_send(facts).is_err() {
            self.metrics.alert("dropped");
            tracing::warn!("alert queue full; alert dropped");
        }
    }
}

impl Sender {
    async fn run(self, mut rx: mpsc::Receiver<AlertFacts>) {
        while let Some(facts) = rx.recv().await {
            let message = match self.templates.render("message", &facts) {
                Ok(m) => with_additional_info(&self.additional_info, &m),
                Err(e) => {
                    self.metrics.alert("failed");
                    tracing::warn!(error = %e, "cannot render the alert template");
                    continue;
                }
            };
            let (content_type, body) = payload(self.sink, &message);
            let result = self.send(content_type, body).await;
            let label = if result.is_ok() { "sent" } else { "failed" };
            self.metrics.alert(label);
            if let Err(e) = result {
                tracing::warn!(
                    workload = %format!("{} {}/{}", facts.workload.kind, facts.workload.namespace, facts.workload.name),
                    error = %e,
                    attempts = backoff::ALERT_ATTEMPTS,
                    "alert not delivered; giving up"
                );
            }
        }
    }

    /// Posts with retries; errors carry the status or cause, never the URL.
    async fn send(&self, content_type: &'static str, body: Vec<u8>) -> Result<(), String> {
        let mut delays = backoff::alert();
        let mut attempt = 1;
        loop {
            let request = self.client.post(&self.url).header("Content-Type", content_type).body(body.clone());
            let last = match request.send().await {
                Ok(resp) if resp.status().is_success() => return Ok(()),
                Ok(resp) => format!("webhook answered {}", resp.status()),
                Err(e) => e.without_url().to_string(),
            };
            let Some(delay) = delays.next() else { return Err(last) };
            tracing::debug!(attempt, error = %last, "alert failed; retrying");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }
}
