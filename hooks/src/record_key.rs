//! The key of the controller's rolled-to record (see `pod_reloader_core::record`):
//! 32 random bytes per cluster, generated once and kept in the Secret
//! `d8-pod-reloader/pod-reloader-record-key` that the chart renders from
//! `podReloader.internal.recordKey` (standard base64, exactly as the Secret's
//! `data.key` holds it) and mounts into the controller.
//!
//! Which key a run sets, in order:
//! 1. the Secret's, when it holds a valid one (the Secret survives
//!    addon-operator restarts; editing it is how an operator replaces the key);
//! 2. the one in values, when valid (the Secret was deleted or spoilt while
//!    addon-operator kept its values: Helm writes it back unchanged);
//! 3. a new one from the operating system's random generator.
//!
//! A Secret that exists but holds no valid key is reported as a warning
//! (never its content). A new key makes the controller treat every record
//! written under the old one as no record: it records new baselines and rolls
//! nothing.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::error::HookError;
use crate::protocol::{self, BindingContext, Item, Metric, Output};
use crate::settings::VALUES_KEY;

pub const BINDING: &str = "record_key_secret";
pub const SECRET_NAMESPACE: &str = "d8-pod-reloader";
pub const SECRET_NAME: &str = "pod-reloader-record-key";
/// The value under `podReloader.internal`.
pub const VALUE: &str = "recordKey";
/// Bytes of a key (`pod_reloader_core::record::KEY_LEN`).
pub const KEY_LEN: usize = pod_reloader_core::record::KEY_LEN;
/// The jqFilter of the binding: the Secret's name and `data.key` (base64).
pub const SECRET_JQ: &str = r#"{name: .metadata.name, key: (.data.key // "")}"#;

/// The kubernetes binding of the hook.
pub fn binding() -> Value {
    json!({
        "name": BINDING,
        "apiVersion": "v1",
        "kind": "Secret",
        "namespace": {"nameSelector": {"matchNames": [SECRET_NAMESPACE]}},
        "nameSelector": {"matchNames": [SECRET_NAME]},
        "executeHookOnEvent": true,
        "executeHookOnSynchronization": true,
        "waitForSynchronization": true,
        "keepFullObjectsInMemory": false,
        "jqFilter": SECRET_JQ,
    })
}

/// Checks a key in its base64 form: why it cannot be used, else nothing.
/// The message tells the shape, never the content.
pub fn check(encoded: &str) -> Result<(), String> {
    if encoded.len() > 4 * KEY_LEN {
        return Err(format!("{} characters, far more than a {KEY_LEN}-byte key", encoded.len()));
    }
    match STANDARD.decode(encoded) {
        Ok(b) if b.len() == KEY_LEN => Ok(()),
        Ok(b) => Err(format!("{} bytes instead of {KEY_LEN}", b.len())),
        Err(_) => Err("not base64".into()),
    }
}

/// A new key from the operating system's generator, base64.
fn generate() -> Result<String, HookError> {
    let mut key = [0u8; KEY_LEN];
    getrandom::fill(&mut key)
        .map_err(|e| HookError::Usage(format!("cannot get random bytes for the record key: {e}")))?;
    Ok(STANDARD.encode(key))
}

/// What the Secret's snapshot tells: `None` when it does not exist.
fn secret_key(items: &[Item]) -> Option<Value> {
    items.iter().find_map(|i| match (&i.filter_result, &i.object) {
        (Some(f), _) if f.get("name").and_then(Value::as_str) == Some(SECRET_NAME) => {
            Some(f.get("key").cloned().unwrap_or(Value::Null))
        }
        (_, Some(o)) if o.pointer("/metadata/name").and_then(Value::as_str) == Some(SECRET_NAME) => {
            Some(o.pointer("/data/key").cloned().unwrap_or(Value::Null))
        }
        _ => None,
    })
}

/// Where the key of a run came from (the metric's label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Secret,
    Values,
    Generated,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Source::Secret => "secret",
            Source::Values => "values",
            Source::Generated => "generated",
        }
    }
}

pub fn run(contexts: &[BindingContext], values: &Value) -> Result<Output, HookError> {
    let in_values = values
        .pointer(&format!("/{VALUES_KEY}/internal/{VALUE}"))
        .and_then(Value::as_str)
        .filter(|k| check(k).is_ok())
        .map(str::to_string);
    let mut warnings = Vec::new();
    let mut from_secret = None;
    if let Some(found) = protocol::binding_state(contexts, BINDING).as_deref().and_then(secret_key) {
        let problem = match found.as_str() {
            Some(k) => check(k).err(),
            None => Some("data.key is not a string".to_string()),
        };
        match problem {
            None => from_secret = found.as_str().map(str::to_string),
            Some(why) => warnings.push(format!(
                "Secret {SECRET_NAMESPACE}/{SECRET_NAME} holds no valid record key ({why}); {}",
                if in_values.is_some() {
                    "keeping the key in the module's values, which Helm writes back"
                } else {
                    "generating a new one: records written under the old key get new baselines, nothing rolls"
                }
            )),
        }
    }
    let (key, source) = match (from_secret, in_values) {
        (Some(k), _) => (k, Source::Secret),
        (None, Some(k)) => (k, Source::Values),
        (None, None) => (generate()?, Source::Generated),
    };
    Ok(Output {
        values_patch: protocol::set_internal(values, VALUES_KEY, vec![(VALUE, json!(key))]),
        metrics: vec![Metric::set(
            "pod_reloader_record_key",
            "d8_pod_reloader_record_key_info",
            1.0,
            &[("source", source.label())],
        )],
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(items: Value) -> Vec<BindingContext> {
        serde_json::from_value(json!([{"binding": "beforeHelm", "snapshots": {BINDING: items}}])).unwrap()
    }

    fn key_of(out: &Output) -> String {
        let op = out.values_patch.iter().find(|o| o.path.ends_with(VALUE)).expect("recordKey set");
        op.value.as_ref().and_then(Value::as_str).expect("a string").to_string()
    }

    #[test]
    fn generated_keys_are_32_random_bytes() {
        let a = key_of(&run(&snapshot(json!([])), &json!({})).unwrap());
        let b = key_of(&run(&snapshot(json!([])), &json!({})).unwrap());
        assert_eq!(check(&a), Ok(()));
        assert_ne!(a, b, "two generations differ");
    }

    #[test]
    fn secret_wins_then_values_then_a_new_key() {
        let secret = STANDARD.encode([1u8; KEY_LEN]);
        let kept = STANDARD.encode([2u8; KEY_LEN]);
        let values = json!({"podReloader": {"internal": {"recordKey": kept}}});
        let present = snapshot(json!([{"filterResult": {"name": SECRET_NAME, "key": secret}}]));
        assert_eq!(key_of(&run(&present, &values).unwrap()), secret);
        let out = run(&snapshot(json!([])), &values).unwrap();
        assert_eq!(key_of(&out), kept, "Secret deleted: values keep the key");
        assert!(out.warnings.is_empty());
        let spoilt = snapshot(json!([{"filterResult": {"name": SECRET_NAME, "key": "c2hvcnQ="}}]));
        let out = run(&spoilt, &values).unwrap();
        assert_eq!(key_of(&out), kept);
        assert!(out.warnings[0].contains("5 bytes instead of 32"), "{:?}", out.warnings);
        assert!(!out.warnings[0].contains("c2hvcnQ="), "never the content");
    }

    #[test]
    fn check_names_the_shape() {
        assert_eq!(check(&STANDARD.encode([0u8; 32])), Ok(()));
        assert_eq!(check("!!"), Err("not base64".into()));
        assert!(check(&"A".repeat(1 << 20)).unwrap_err().contains("far more"));
    }
}
