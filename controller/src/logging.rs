//! Logs: text or JSON lines with stable field names (`namespace`, `name`,
//! `kind`, `resource`, `reason`, …). `RUST_LOG` overrides the level.

use pod_reloader_core::settings::{LogFormat, ValidSettings};
use tracing_subscriber::EnvFilter;

pub fn init(settings: &ValidSettings) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{},kube=warn,kube_runtime=off,kube_client=error,hyper_util=error,hyper=warn,tower=warn",
            settings.log_level
        ))
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    match settings.log_format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
        LogFormat::Text => builder.init(),
    }
}
