//! Reloader's `--webhook-url` mode: instead of patching a workload whose
//! ConfigMaps or Secrets changed, POST Reloader's fixed body
//! `{"webhook":"update successful"}` to the URL and patch nothing. Chosen at
//! start-up as the scheduler's executor, in place of the reloader.
//!
//! Where it differs from Reloader (docs/BEHAVIOUR.md): Reloader posts once
//! per changed ConfigMap/Secret, followed or not; here one post goes out per
//! workload that would have rolled (coalesced like a rollout), so a change
//! nobody follows, an ignored object or an excluded name posts nothing.
//! Nothing is written to the workload, so no record says what it was posted
//! for: the hashes posted are kept in memory instead, so a workload seen again
//! (a re-list, a status update) is not posted for twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pod_reloader_core::{ContentHash, ResourceKey, WorkloadKey};

use crate::messages::Batch;
use crate::metrics::Metrics;
use crate::scheduler::Execute;

/// Reloader's body, byte for byte (`internal/pkg/handler/upgrade.go`).
pub const PAYLOAD: &str = r#"{"webhook":"update successful"}"#;
const TIMEOUT: Duration = Duration::from_secs(10);
/// Workload/resource pairs remembered; past it the memory is cleared (a
/// workload seen again may then be posted for once more), so it never grows
/// without bound.
const MAX_REMEMBERED: usize = 100_000;

/// A URL that never shows in a log or a panic message (it may carry a token).
#[derive(Clone)]
pub struct WebhookUrl(String);

impl std::fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookUrl(redacted)")
    }
}

impl WebhookUrl {
    /// Checks the scheme without echoing the URL; `source` names where it came from.
    pub fn parse(raw: &str, source: &str) -> anyhow::Result<Self> {
        let url = raw.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            anyhow::bail!("invalid {source}: the webhook URL must start with http:// or https:// (value redacted)");
        }
        reqwest::Url::parse(url).map_err(|_| anyhow::anyhow!("invalid {source}: not a URL (value redacted)"))?;
        Ok(WebhookUrl(url.to_string()))
    }

    /// As given on the command line, checked later by [`WebhookUrl::configured`]
    /// (clap would echo a refused value in its error).
    pub fn unchecked(raw: &str) -> Result<Self, std::convert::Infallible> {
        Ok(WebhookUrl(raw.to_string()))
    }

    /// The URL from `--webhook-url` (or `WEBHOOK_URL`) or, failing that,
    /// from the file `webhookUrlFile` names (a mounted Secret); `None`: the
    /// mode is off.
    pub fn configured(flag: Option<&WebhookUrl>, file: &str) -> anyhow::Result<Option<Self>> {
        if let Some(url) = flag {
            return Self::parse(&url.0, "--webhook-url").map(Some);
        }
        if file.is_empty() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("invalid setting webhookUrlFile={file:?}: cannot read it: {e}"))?;
        Self::parse(&text, &format!("setting webhookUrlFile={file:?}")).map(Some)
    }
}

pub struct WebhookMode {
    client: reqwest::Client,
    url: WebhookUrl,
    metrics: Arc<Metrics>,
    /// What each workload was last posted for.
    posted: Mutex<HashMap<WorkloadKey, HashMap<ResourceKey, Option<ContentHash>>>>,
}

impl WebhookMode {
    pub fn new(url: WebhookUrl, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the webhook HTTP client: {e}"))?;
        Ok(WebhookMode { client, url, metrics, posted: Mutex::new(HashMap::new()) })
    }

    fn posted(&self) -> std::sync::MutexGuard<'_, HashMap<WorkloadKey, HashMap<ResourceKey, Option<ContentHash>>>> {
        self.posted.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Posts for the batch's changes not posted for yet; baselines roll nothing and post nothing.
    pub async fn send(&self, batch: Batch) {
        let key = &batch.workload;
        let new: Vec<(ResourceKey, Option<ContentHash>)> = {
            let posted = self.posted();
            let before = posted.get(key);
            batch
                .items
                .iter()
                .filter(|i| before.and_then(|b| b.get(&i.resource)) != Some(&i.hash))
                .map(|i| (i.resource.clone(), i.hash))
                .collect()
        };
        if new.is_empty() {
            if !batch.items.is_empty() {
                self.metrics.skipped("already_current");
            }
            return;
        }
        let resources: Vec<String> = new.iter().map(|(r, _)| r.to_string()).collect();
        match self.post().await {
            Ok(status) => {
                self.metrics.reloaded(key, "webhook", batch.first_seen.elapsed().as_secs_f64());
                tracing::info!(
                    kind = key.kind.as_str(), namespace = %key.namespace, name = %key.name,
                    resources = %resources.join(", "), status,
                    "sent the reload to the webhook instead of rolling the workload"
                );
                let mut posted = self.posted();
                if posted.len() >= MAX_REMEMBERED {
                    posted.clear();
                }
                posted.entry(key.clone()).or_default().extend(new);
            }
            Err(e) => {
                self.metrics.reload_failed(key, "webhook", "webhook");
                tracing::error!(
                    kind = key.kind.as_str(), namespace = %key.namespace, name = %key.name,
                    resources = %resources.join(", "), error = %e, attempts = crate::backoff::WEBHOOK_MODE_ATTEMPTS,
                    "webhook not reached; giving up"
                );
            }
        }
    }

    /// POSTs Reloader's body, retrying failures; errors never carry the URL.
    async fn post(&self) -> Result<u16, String> {
        let mut delays = crate::backoff::webhook_mode();
        let mut attempt = 1;
        loop {
            let request =
                self.client.post(&self.url.0).header("Content-Type", "application/json").body(PAYLOAD.as_bytes());
            let last = match request.send().await {
                Ok(resp) if resp.status().is_success() => return Ok(resp.status().as_u16()),
                Ok(resp) => format!("webhook answered {}", resp.status()),
                Err(e) => e.without_url().to_string(),
            };
            let Some(delay) = delays.next() else { return Err(last) };
            self.metrics.retried();
            tracing::debug!(attempt, error = %last, "webhook post failed; retrying");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }
}

impl Execute for WebhookMode {
    fn execute(&self, batch: Batch) -> impl Future<Output = ()> + Send {
        self.send(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_is_never_shown() {
        let url = WebhookUrl::parse(" https://hooks.example/T0K3N \n", "--webhook-url").unwrap();
        assert_eq!(format!("{url:?}"), "WebhookUrl(redacted)");
        let e = WebhookUrl::parse("ftp://T0K3N@host/x", "--webhook-url").unwrap_err().to_string();
        assert!(e.contains("--webhook-url") && !e.contains("T0K3N"), "{e}");
        let e = WebhookUrl::parse("https://[T0K3N", "--webhook-url").unwrap_err().to_string();
        assert!(e.contains("not a URL") && !e.contains("T0K3N"), "{e}");
    }

    #[test]
    fn the_flag_wins_over_the_file_and_neither_means_off() {
        assert!(WebhookUrl::configured(None, "").unwrap().is_none());
        let flag = WebhookUrl::unchecked("http://a/").unwrap();
        assert!(WebhookUrl::configured(Some(&flag), "/nonexistent").unwrap().is_some());
        let bad = WebhookUrl::unchecked("T0K3N").unwrap();
        let e = WebhookUrl::configured(Some(&bad), "").unwrap_err().to_string();
        assert!(e.contains("--webhook-url") && !e.contains("T0K3N"), "{e}");
        let e = WebhookUrl::configured(None, "/nonexistent/url").unwrap_err().to_string();
        assert!(e.contains("webhookUrlFile"), "{e}");
    }

    #[test]
    fn payload_is_reloaders() {
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(PAYLOAD).unwrap(),
            serde_json::json!({"webhook": "update successful"})
        );
    }
}
