//! Loading settings: the `--config` file (YAML or JSON), flags over it,
//! then one validation pass; then the record key file, if one is named.

use std::io::Read;
use std::path::Path;

use pod_reloader_core::record::{KEY_LEN, RecordKey};
use pod_reloader_core::settings::{Settings, ValidSettings};

use crate::cli::RunFlags;

pub fn load(flags: &RunFlags) -> anyhow::Result<ValidSettings> {
    let file = match &flags.config {
        Some(path) => read_file(path)?,
        None => Settings::default(),
    };
    let settings = flags.overlay(file);
    let mut valid = settings.validate()?;
    if !settings.record_key_file.is_empty() {
        valid.record_key = Some(read_record_key(Path::new(&settings.record_key_file))?);
    }
    Ok(valid)
}

/// The record key: exactly 32 bytes, as the module's Secret holds them. The
/// error names the file and the length, never the content.
pub fn read_record_key(path: &Path) -> anyhow::Result<RecordKey> {
    let fail = |why: String| anyhow::anyhow!("invalid --record-key-file {}: {why}", path.display());
    let mut bytes = Vec::with_capacity(KEY_LEN + 1);
    std::fs::File::open(path)
        .and_then(|f| f.take(KEY_LEN as u64 + 1).read_to_end(&mut bytes))
        .map_err(|e| fail(format!("cannot read it: {e}")))?;
    if bytes.len() > KEY_LEN {
        return Err(fail(format!("longer than {KEY_LEN} bytes (want exactly {KEY_LEN} random bytes)")));
    }
    RecordKey::new(&bytes).map_err(|e| fail(e.to_string()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_key_file_is_exactly_32_bytes() {
        let dir = std::env::temp_dir().join(format!("pod-reloader-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good");
        std::fs::write(&good, [7u8; KEY_LEN]).unwrap();
        let key = read_record_key(&good).unwrap();
        assert_eq!(key.id(), RecordKey::new(&[7u8; KEY_LEN]).unwrap().id());
        for (name, content) in [("short", vec![1u8; 31]), ("long", vec![1u8; 33]), ("empty", vec![])] {
            let p = dir.join(name);
            std::fs::write(&p, &content).unwrap();
            let e = read_record_key(&p).unwrap_err().to_string();
            assert!(e.contains(&p.display().to_string()) && e.contains("32"), "{e}");
        }
        let e = read_record_key(&dir.join("absent")).unwrap_err().to_string();
        assert!(e.contains("cannot read"), "{e}");
        let flags = RunFlags { record_key_file: Some(good.display().to_string()), ..Default::default() };
        assert!(load(&flags).unwrap().record_key.is_some());
        assert!(load(&RunFlags::default()).unwrap().record_key.is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
