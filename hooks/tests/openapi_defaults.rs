//! The defaults of `openapi/config-values.yaml` against the module's
//! defaults (`controller_config::module_defaults`, over the controller's
//! `Settings::default()`): a default written in the schema that the
//! controller's config does not have is a failure, so the schema cannot drift
//! from the one place the defaults are defined.

mod common;

use common::module_dir;

use pod_reloader_hooks::controller_config::{controller_settings, module_defaults};
use pod_reloader_hooks::schema::SettingsSchema;
use pod_reloader_hooks::settings::Inputs;
use serde_json::{Map, Value, json};

/// Settings with a default that does not reach the controller's config:
/// the chart (container resources) and the hooks (the URL Secret's key, the
/// NetworkPolicy's egress) use them.
const NOT_IN_CONTROLLER_CONFIG: &[&str] = &[
    "resources.requests.cpu",
    "resources.requests.memory",
    "resources.limits.memory",
    "alerting.webhook.urlSecretRef.key",
    "alerting.webhook.egress",
    // The webhook mode reaches the controller as `webhookUrlFile` (set only when it is on).
    "webhookMode.enabled",
    "webhookMode.urlSecretRef.key",
    "webhookMode.egress",
];

fn openapi() -> Value {
    let text = std::fs::read_to_string(module_dir().join("openapi/config-values.yaml")).expect("config-values.yaml");
    serde_saphyr::from_str(&text).expect("config-values.yaml parses")
}

/// Every `default:` on a value setting (not on an object that has
/// properties of its own, whose `{}` only lets the defaults below it apply),
/// as (dotted path, default).
fn leaf_defaults(schema: &Value, prefix: &str, out: &mut Vec<(String, Value)>) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else { return };
    for (name, sub) in props {
        let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
        if sub.get("properties").is_some() {
            leaf_defaults(sub, &path, out);
        } else if let Some(d) = sub.get("default") {
            out.push((path, d.clone()));
        }
    }
}

/// `{"a": {"b": value}}` for the path `a.b`.
fn nested(path: &str, value: Value) -> Value {
    path.rsplit('.').fold(value, |inner, key| Value::Object(Map::from_iter([(key.to_string(), inner)])))
}

/// Where a module setting lands in the controller's config: the same path,
/// except that the webhook's settings are the controller's `alerting.*`.
fn controller_pointer(path: &str) -> String {
    format!("/{}", path.replace("alerting.webhook.", "alerting.").replace('.', "/"))
}

fn config_of(settings: Value) -> Value {
    let inputs = Inputs::from_values(&json!({"podReloader": settings})).expect("settings read");
    serde_json::to_value(controller_settings(&inputs)).expect("serialises")
}

#[test]
fn every_schema_default_is_the_module_default() {
    let mut defaults = Vec::new();
    leaf_defaults(&openapi(), "", &mut defaults);
    assert!(defaults.len() >= 15, "the walk found the defaults: {defaults:?}");
    let module = serde_json::to_value(module_defaults()).expect("serialises");
    let mut checked = 0;
    for (path, default) in &defaults {
        if NOT_IN_CONTROLLER_CONFIG.contains(&path.as_str()) {
            continue;
        }
        let pointer = controller_pointer(path);
        let want = module.pointer(&pointer).unwrap_or_else(|| {
            panic!("openapi default of {path} has no controller setting at {pointer}; map it or list it as chart-only")
        });
        // Given alone, in Deckhouse's spelling, through the hooks' reading.
        let got = config_of(nested(path, default.clone()));
        assert_eq!(got.pointer(&pointer), Some(want), "openapi default of {path} ({default}) is not the module's");
        checked += 1;
    }
    assert!(checked >= 12, "{checked} defaults checked");
    for path in NOT_IN_CONTROLLER_CONFIG {
        assert!(defaults.iter().any(|(p, _)| p == path), "{path} is listed as chart-only but has no default");
    }
}

#[test]
fn all_schema_defaults_together_give_the_module_defaults() {
    let schema = SettingsSchema::load(Some(&module_dir())).expect("schema loads");
    // What the hooks write when addon-operator filled in every default
    // equals what they write for settings given as nothing at all.
    assert_eq!(config_of(schema.with_defaults(&json!({}))), config_of(json!({})));
}
