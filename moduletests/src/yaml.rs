//! YAML in, JSON values out.

use std::path::Path;

use serde_json::Value;

/// One YAML document as a value.
pub fn parse(text: &str, what: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{what}: not YAML: {e}"))
}

/// A YAML file as a value.
pub fn load(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    parse(&text, &path.display().to_string())
}

/// Every non-empty document of a multi-document stream.
pub fn documents(text: &str, what: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).unwrap_or_else(|e| panic!("{what}: not YAML: {e}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}
