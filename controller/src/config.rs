//! Loading settings: the `--config` file (YAML or JSON), flags over it,
//! then one validation pass.

use std::path::Path;

use pod_reloader_core::settings::{Settings, ValidSettings};

use crate::cli::RunFlags;

pub fn load(flags: &RunFlags) -> anyhow::Result<ValidSettings> {
    let file = match &flags.config {
        Some(path) => read_file(path)?,
        None => Settings::default(),
    };
    Ok(flags.overlay(file).validate()?)
}

fn read_file(path: &Path) -> anyhow::Result<Settings> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read --config {}: {e}", path.display()))?;
    if text.trim().is_empty() {
        return Ok(Settings::default());
    }
    // JSON is read as JSON for its precise error positions; anything else as YAML.
    let parsed = if text.trim_start().starts_with('{') {
        serde_json::from_str(&text).map_err(|e| e.to_string())
    } else {
        serde_saphyr::from_str(&text).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| anyhow::anyhow!("invalid --config {}: {e}", path.display()))
}
