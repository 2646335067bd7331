//! The HTTP server: /metrics, /healthz (and Reloader's /live), /readyz.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::health::Health;
use crate::metrics::Metrics;

#[derive(Clone)]
struct Shared {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

pub async fn serve(addr: &str, metrics: Arc<Metrics>, health: Arc<Health>) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        // Reloader's liveness path: a Reloader manifest's probe keeps working.
        .route("/live", get(|| async { "ok" }))
        .route("/readyz", get(ready_handler))
        .with_state(Shared { metrics, health });
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on --listen-address {addr}: {e}"))?;
    tracing::info!(address = addr, "serving /metrics, /healthz, /live, /readyz");
    axum::serve(listener, app).await?;
    Ok(())
}

async fn metrics_handler(State(s): State<Shared>) -> String {
    s.metrics.render()
}

async fn ready_handler(State(s): State<Shared>) -> (StatusCode, &'static str) {
    if s.health.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: initial sync pending or the apiserver is unreachable")
    }
}
