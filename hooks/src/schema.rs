//! The settings schema (`openapi/config-values.yaml`): loaded from the module
//! directory at run time, embedded at build time as a fallback, prepared the
//! way addon-operator prepares it (`additionalProperties: false` wherever it is
//! not set, through `properties` and `items`), compiled once, and used to
//! validate settings and to fill in their defaults.

use std::fmt;
use std::path::{Path, PathBuf};

use jsonschema::Validator;
use jsonschema::error::ValidationErrorKind;
use jsonschema::paths::LocationSegment;
use serde_json::{Map, Value};

use crate::error::HookError;
use crate::violation::Violation;

/// `openapi/config-values.yaml` as it was when the binary was built.
pub const EMBEDDED_CONFIG_VALUES: &str = include_str!("../../openapi/config-values.yaml");

/// Where the schema came from, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    Embedded,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::Embedded => f.write_str("embedded openapi/config-values.yaml"),
        }
    }
}

/// The module directory: `MODULE_DIR` when set, else the parent of the
/// directory holding the binary (`<module>/hooks/pod-reloader-hooks`); only
/// one that has `openapi/config-values.yaml` (else the embedded copy is used,
/// as in addon-operator's chroot without /proc).
pub fn module_dir(env_module_dir: Option<&str>, exe: Option<&Path>) -> Option<PathBuf> {
    let has_schema = |dir: &Path| dir.join("openapi").join("config-values.yaml").is_file();
    if let Some(dir) = env_module_dir.filter(|d| !d.is_empty()).map(PathBuf::from)
        && has_schema(&dir)
    {
        return Some(dir);
    }
    let dir = exe?.parent()?.parent()?;
    has_schema(dir).then(|| dir.to_path_buf())
}

/// Settings whose values may carry secrets (a webhook URL with credentials or
/// a token): no message ever quotes a value at or under them. A setting added
/// later that may hold a secret belongs here.
pub const SECRET_BEARING: &[&str] = &["$.alerting.webhook", "$.webhookMode.url", "$.webhookMode.urlSecretRef"];

/// How a violation at `path` may show the value it is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shown {
    /// Not secret and holding nothing secret: quoted as it is.
    Plain,
    /// At or under a secret-bearing setting: never quoted.
    Secret,
    /// Holds a secret-bearing setting (`$`, `$.alerting`): quoted with the
    /// values under it replaced.
    Holder,
}

fn shown(path: &str) -> Shown {
    let under =
        |p: &str, s: &str| p == s || p.strip_prefix(s).is_some_and(|r| r.starts_with('.') || r.starts_with('['));
    if SECRET_BEARING.iter().any(|s| under(path, s)) {
        Shown::Secret
    } else if SECRET_BEARING.iter().any(|s| under(s, path)) {
        Shown::Holder
    } else {
        Shown::Plain
    }
}

/// `value` (found at `path`) with every value under a secret-bearing setting
/// replaced by `"(redacted)"`.
fn redacted(path: &str, value: &Value) -> Value {
    match (shown(path), value) {
        (Shown::Plain, v) => v.clone(),
        (Shown::Holder, Value::Object(m)) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), redacted(&format!("{path}.{k}"), v))).collect())
        }
        // A secret, or a holder of the wrong shape (which may be the secret itself).
        _ => Value::String("(redacted)".into()),
    }
}

/// The compiled settings schema.
pub struct SettingsSchema {
    /// The schema as validated (strict), kept to fill in defaults and to explain errors.
    schema: Value,
    validator: Validator,
    pub origin: Origin,
}

impl SettingsSchema {
    /// The schema of the module directory if there is one, else the embedded copy.
    pub fn load(module_dir: Option<&Path>) -> Result<Self, HookError> {
        if let Some(dir) = module_dir {
            let path = dir.join("openapi").join("config-values.yaml");
            let text = std::fs::read_to_string(&path).map_err(|source| HookError::Read {
                what: "settings schema",
                path: path.clone(),
                source,
            })?;
            return Self::from_yaml(&text, Origin::File(path));
        }
        Self::embedded()
    }

    pub fn embedded() -> Result<Self, HookError> {
        Self::from_yaml(EMBEDDED_CONFIG_VALUES, Origin::Embedded)
    }

    pub fn from_yaml(text: &str, origin: Origin) -> Result<Self, HookError> {
        let raw: Value = serde_saphyr::from_str(text)
            .map_err(|e| HookError::Schema { origin: origin.to_string(), message: e.to_string() })?;
        if !raw.is_object() {
            return Err(HookError::Schema { origin: origin.to_string(), message: "not a mapping".into() });
        }
        let schema = strictify(raw);
        let validator = jsonschema::draft7::new(&schema)
            .map_err(|e| HookError::Schema { origin: origin.to_string(), message: e.to_string() })?;
        Ok(SettingsSchema { schema, validator, origin })
    }

    /// Every violation of `settings`, in document order.
    pub fn violations(&self, settings: &Value) -> Vec<Violation> {
        let mut out: Vec<Violation> = self
            .validator
            .iter_errors(settings)
            .map(|e| {
                let path = json_path(e.instance_path().segments());
                let node = schema_node(&self.schema, e.schema_path().segments());
                // jsonschema's own text quotes the instance: used only where
                // nothing secret can be in it.
                let (instance, fallback) = match shown(&path) {
                    Shown::Plain => (e.instance().to_string(), e.to_string()),
                    Shown::Secret => ("the value".to_string(), fallback_redacted(&e)),
                    Shown::Holder => (redacted(&path, e.instance()).to_string(), fallback_redacted(&e)),
                };
                let mut message = explain(e.kind(), &instance, node, &fallback);
                if shown(&path) == Shown::Secret && !message.contains("(value redacted)") {
                    message.push_str(" (value redacted)");
                }
                Violation { path, message }
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path).then(a.message.cmp(&b.message)));
        out.dedup();
        out
    }

    /// `settings` with the schema's defaults filled in, top-down, as
    /// addon-operator does: a missing property with a default gets a copy of
    /// it, and objects (given or defaulted) are descended into.
    pub fn with_defaults(&self, settings: &Value) -> Value {
        apply_defaults(&self.schema, settings.clone())
    }

    /// The top-level setting names.
    pub fn setting_names(&self) -> Vec<String> {
        self.schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }
}

/// `additionalProperties: false` wherever it is not set, through `properties`
/// and `items` (not into `anyOf`/`oneOf`/`allOf` branches), like
/// addon-operator's AdditionalPropertiesTransformer.
pub fn strictify(mut schema: Value) -> Value {
    let Some(obj) = schema.as_object_mut() else { return schema };
    if !obj.contains_key("additionalProperties") && !obj.contains_key("x-kubernetes-preserve-unknown-fields") {
        obj.insert("additionalProperties".into(), Value::Bool(false));
    }
    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        for (_, sub) in props.iter_mut() {
            *sub = strictify(sub.take());
        }
    }
    if let Some(items) = obj.get_mut("items").filter(|i| i.is_object()) {
        *items = strictify(items.take());
    }
    schema
}

fn apply_defaults(schema: &Value, value: Value) -> Value {
    match value {
        Value::Object(mut map) => {
            if let Some(Value::Object(props)) = schema.get("properties") {
                for (name, sub) in props {
                    if !map.contains_key(name)
                        && let Some(d) = sub.get("default")
                    {
                        map.insert(name.clone(), d.clone());
                    }
                    if let Some(v) = map.remove(name) {
                        map.insert(name.clone(), apply_defaults(sub, v));
                    }
                }
            }
            Value::Object(map)
        }
        Value::Array(items) => match schema.get("items") {
            Some(item_schema) if item_schema.is_object() => {
                Value::Array(items.into_iter().map(|v| apply_defaults(item_schema, v)).collect())
            }
            _ => Value::Array(items),
        },
        other => other,
    }
}

/// `$`, `.name` for properties (`["na me"]` when not a plain identifier), `[i]` for indexes.
fn json_path<'a>(segments: impl Iterator<Item = LocationSegment<'a>>) -> String {
    let mut out = String::from("$");
    for seg in segments {
        match seg {
            LocationSegment::Property(p) => {
                if !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                    out.push('.');
                    out.push_str(&p);
                } else {
                    out.push_str(&format!("[{}]", Value::String(p.to_string())));
                }
            }
            LocationSegment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The schema object holding the failed keyword (the schema path less its last segment).
fn schema_node<'s, 'a>(schema: &'s Value, segments: impl Iterator<Item = LocationSegment<'a>>) -> &'s Value {
    let segs: Vec<LocationSegment<'a>> = segments.collect();
    let mut node = schema;
    for seg in segs.iter().take(segs.len().saturating_sub(1)) {
        let next = match seg {
            LocationSegment::Property(p) => node.get(p.as_ref()),
            LocationSegment::Index(i) => node.get(*i),
        };
        match next {
            Some(n) => node = n,
            None => return &Value::Null,
        }
    }
    node
}

fn list(values: &[Value]) -> String {
    values.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ")
}

fn examples(node: &Value) -> Option<String> {
    let ex = node.get("x-examples")?.as_array()?;
    let shown: Vec<Value> = ex.iter().filter(|v| !v.is_object() && !v.is_array()).cloned().collect();
    (!shown.is_empty()).then(|| list(&shown))
}

/// What failed, without the instance: the schema keyword and its argument.
fn fallback_redacted(e: &jsonschema::ValidationError<'_>) -> String {
    let keyword = e.schema_path().segments().last().map(|s| match s {
        LocationSegment::Property(p) => p.to_string(),
        LocationSegment::Index(i) => i.to_string(),
    });
    format!("fails the schema rule {:?}", keyword.unwrap_or_default())
}

fn explain(kind: &ValidationErrorKind, instance: &str, node: &Value, fallback: &str) -> String {
    match kind {
        ValidationErrorKind::Enum { options } => {
            let allowed = options.as_array().map(|a| list(a)).unwrap_or_else(|| options.to_string());
            format!("{instance} is not an allowed value; allowed values: {allowed}")
        }
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let names: Vec<String> = unexpected.iter().map(|u| format!("{u:?}")).collect();
            let allowed: Vec<&String> =
                node.get("properties").and_then(Value::as_object).map(|p| p.keys().collect()).unwrap_or_default();
            if allowed.is_empty() {
                format!("unknown field {}; no fields are allowed here", names.join(", "))
            } else {
                format!(
                    "unknown field {}; allowed fields: {}",
                    names.join(", "),
                    allowed.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                )
            }
        }
        ValidationErrorKind::Pattern { pattern } => match examples(node) {
            Some(ex) => format!("{instance} has the wrong format; allowed values look like: {ex}"),
            None => format!("{instance} does not match the pattern {pattern}"),
        },
        ValidationErrorKind::MaxLength { limit } => format!("{instance} is longer than {limit} characters"),
        ValidationErrorKind::MaxItems { limit } => format!("{instance} has more than {limit} item(s)"),
        ValidationErrorKind::Minimum { limit } => format!("{instance} is less than the minimum {limit}"),
        ValidationErrorKind::Maximum { limit } => format!("{instance} is greater than the maximum {limit}"),
        ValidationErrorKind::Type { .. } => {
            let mut msg = format!("{instance} has the wrong type; expected {}", type_name(node));
            if let Some(Value::Array(e)) = node.get("enum") {
                msg.push_str(&format!("; allowed values: {}", list(e)));
            } else if node.get("type").and_then(Value::as_str) == Some("boolean") {
                msg.push_str("; allowed values: true, false");
            }
            msg
        }
        ValidationErrorKind::AnyOf { .. }
        | ValidationErrorKind::OneOfNotValid { .. }
        | ValidationErrorKind::Not { .. } => {
            let rules: Vec<&str> = node
                .get("x-deckhouse-validations")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|r| r.get("message").and_then(Value::as_str)).collect())
                .unwrap_or_default();
            if rules.is_empty() { fallback.to_string() } else { rules.join("; ") }
        }
        ValidationErrorKind::Required { property } => format!("required field {property} is missing"),
        ValidationErrorKind::UniqueItems => "items must be unique".into(),
        _ => fallback.to_string(),
    }
}

fn type_name(node: &Value) -> String {
    match node.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => list(ts),
        _ => "another type".into(),
    }
}

/// Settings as given in a settings file: either the settings object itself or
/// `{"podReloader": {...}}`.
pub fn unwrap_settings(value: Value, values_key: &str) -> Value {
    match value {
        Value::Object(mut m) if m.len() == 1 && m.get(values_key).is_some_and(Value::is_object) => {
            m.remove(values_key).unwrap_or(Value::Object(Map::new()))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> SettingsSchema {
        SettingsSchema::embedded().expect("embedded schema compiles")
    }

    #[test]
    fn defaults_fill_nested_objects() {
        let s = schema().with_defaults(&json!({"alerting": {"enabled": true}}));
        assert_eq!(s["reloadStrategy"], "EnvVars");
        assert_eq!(s["reloadOnCreate"], true);
        assert_eq!(s["alerting"]["webhook"]["sink"], "Slack");
        assert_eq!(s["resources"]["requests"]["cpu"], "10m");
        assert!(s.get("highAvailability").is_none());
    }

    #[test]
    fn violations_name_path_and_allowed_values() {
        let v = schema().violations(&json!({"reloadStrategy": "restart", "logLevel": 3, "bogus": 1}));
        let text: Vec<String> = v.iter().map(|v| v.to_string()).collect();
        assert!(text.iter().any(|t| t.starts_with("$.reloadStrategy:") && t.contains("\"EnvVars\"")), "{text:?}");
        assert!(text.iter().any(|t| t.starts_with("$.logLevel:") && t.contains("\"Debug\"")), "{text:?}");
        assert!(text.iter().any(|t| t.starts_with("$:") && t.contains("\"bogus\"") && t.contains("reloadOnCreate")));
    }

    #[test]
    fn anyof_uses_the_deckhouse_validation_message() {
        let v = schema().violations(&json!({"alerting": {"enabled": true}}));
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].path, "$.alerting");
        assert!(v[0].message.contains("alerting.webhook.url or alerting.webhook.urlSecretRef is required"), "{v:?}");
    }

    #[test]
    fn webhook_values_are_never_quoted() {
        let url = "https://admin:pa55w0rd@hooks.example.com:99999/x?token=s3cr3t";
        let cases = [
            json!({"alerting": {"enabled": true, "webhook": {"url": url}}}),
            json!({"alerting": {"enabled": true, "webhook": {"url": url, "urlSecretRef": {"name": "s"}}}}),
            json!({"alerting": {"webhook": {"url": url, "bogus": url}}}),
            json!({"alerting": {"webhook": {"url": 7, "additionalInfo": url, "egress": [url]}}}),
            json!({"alerting": {"webhook": {"url": url, "sink": url}}}),
            json!({"alerting": {"enabled": "yes", "webhook": {"url": url}}}),
            json!({"alerting": [url]}),
            json!({"alerting": {"webhook": url}}),
            json!({"webhookMode": {"enabled": true, "url": url}}),
            json!({"webhookMode": {"enabled": true, "url": url, "urlSecretRef": {"name": "s"}}}),
            json!({"webhookMode": {"url": url, "bogus": url}}),
            json!({"webhookMode": {"enabled": "yes", "url": url}}),
            json!({"webhookMode": {"urlSecretRef": url}}),
            json!({"webhookMode": [url]}),
            json!({"webhookMode": url}),
        ];
        for settings in cases {
            let v = schema().violations(&settings);
            assert!(!v.is_empty(), "{settings} should be refused");
            for violation in &v {
                let text = violation.to_string();
                for part in ["pa55w0rd", "s3cr3t", "admin", "hooks.example.com"] {
                    assert!(!text.contains(part), "{text} quotes {part} of {settings}");
                }
                if violation.path.starts_with("$.alerting.webhook") || violation.path.starts_with("$.webhookMode.url") {
                    assert!(text.contains("redacted"), "{text}");
                }
            }
        }
        let v = schema().violations(&json!({"alerting": {"webhook": {"url": url}}}));
        assert_eq!(v[0].path, "$.alerting.webhook.url");
        assert!(v[0].message.contains("has the wrong format") && v[0].message.ends_with("(value redacted)"), "{v:?}");
    }

    #[test]
    fn url_and_url_secret_ref_are_exclusive() {
        let v = schema().violations(
            &json!({"alerting": {"enabled": true, "webhook": {"url": "https://h/x", "urlSecretRef": {"name": "s"}}}}),
        );
        assert!(v.iter().any(|v| v.path == "$.alerting.webhook" && v.message.contains("mutually exclusive")), "{v:?}");
        assert!(
            schema()
                .violations(&json!({"alerting": {"enabled": true, "webhook": {"urlSecretRef": {"name": "s"}}}}))
                .is_empty()
        );
    }

    #[test]
    fn module_dir_from_env_or_binary_location() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
        assert_eq!(module_dir(root.to_str(), None), Some(root.to_path_buf()));
        assert_eq!(module_dir(Some("/nonexistent"), None), None);
        let exe = root.join("hooks").join("pod-reloader-hooks");
        assert_eq!(module_dir(None, Some(&exe)), Some(root.to_path_buf()));
        assert_eq!(module_dir(None, Some(Path::new("/nonexistent/bin/x"))), None);
    }
}
