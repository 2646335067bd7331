//! The module's settings (ModuleConfig `spec.settings`, defaults applied) and
//! what the settings hook derives from them: the normalised reload strategy,
//! the parsed selectors, the watch scope and the controller's config file.

use pod_reloader_core::selector::{Requirement, Selector};
use pod_reloader_core::settings::Settings as ControllerSettings;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::spelling::{self, LOG_FORMATS, LOG_LEVELS, RELOAD_STRATEGIES, RESOURCES, SINKS, WORKLOADS};
use crate::violation::Violation;

/// The values key of the module (`pod-reloader` in camelCase).
pub const VALUES_KEY: &str = "podReloader";
/// The name of the Lease, the ServiceAccount, the Deployment.
pub const CHART_NAME: &str = "pod-reloader";
/// Where the chart mounts the alert webhook URL (Secret `pod-reloader-alert`,
/// or the operator's Secret of `alerting.webhook.urlSecretRef`).
pub const WEBHOOK_URL_FILE: &str = "/etc/pod-reloader/alert/url";

/// The settings as read from the values. [`Inputs::from_values`] turns the
/// enum settings into the controller's spellings ([`crate::spelling`]), so
/// everything after it works with `env-vars`, `configmaps`, `jobs`, `slack`…
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ModuleSettings {
    pub reload_on_create: Option<bool>,
    pub reload_on_delete: bool,
    pub auto_reload_all: bool,
    pub reload_strategy: Option<String>,
    pub resource_label_selector: String,
    pub namespace_selector: String,
    pub namespaces_to_ignore: Vec<String>,
    pub namespaces: Vec<String>,
    pub resources_to_ignore: Vec<String>,
    pub ignored_workload_types: Vec<String>,
    pub coalesce_window: Option<String>,
    pub alerting: Alerting,
    pub log_format: Option<String>,
    pub log_level: Option<String>,
    pub high_availability: Option<bool>,
    pub stateful_set_on_delete_restart: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Alerting {
    pub enabled: bool,
    pub webhook: Webhook,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Webhook {
    pub url: Option<String>,
    pub url_secret_ref: Option<SecretRef>,
    /// CIDRs the controller may reach the webhook in (NetworkPolicy egress).
    pub egress: Vec<String>,
    /// The webhook's port when the URL is in `url_secret_ref`.
    pub port: Option<u16>,
    pub sink: Option<String>,
    pub additional_info: String,
}

/// An operator's Secret in the module namespace holding the webhook URL.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct SecretRef {
    pub name: String,
    pub key: Option<String>,
}

impl SecretRef {
    pub fn key(&self) -> &str {
        self.key.as_deref().filter(|k| !k.is_empty()).unwrap_or("url")
    }
}

impl ModuleSettings {
    /// The enum settings in the controller's spellings (Deckhouse's
    /// spellings in, Reloader's out); every unknown spelling is a violation.
    fn into_controller_spellings(mut self) -> Result<Self, Vec<Violation>> {
        let mut errors = Vec::new();
        let mut one = |table, setting: &str, v: &mut Option<String>| {
            if let Some(s) = v.as_deref() {
                match spelling::to_controller(table, setting, s) {
                    Ok(c) => *v = Some(c.to_string()),
                    Err(e) => errors.push(e),
                }
            }
        };
        one(RELOAD_STRATEGIES, "$.reloadStrategy", &mut self.reload_strategy);
        one(SINKS, "$.alerting.webhook.sink", &mut self.alerting.webhook.sink);
        one(LOG_FORMATS, "$.logFormat", &mut self.log_format);
        one(LOG_LEVELS, "$.logLevel", &mut self.log_level);
        match spelling::list_to_controller(RESOURCES, "$.resourcesToIgnore", &self.resources_to_ignore) {
            Ok(v) => self.resources_to_ignore = v,
            Err(e) => errors.push(e),
        }
        match spelling::list_to_controller(WORKLOADS, "$.ignoredWorkloadTypes", &self.ignored_workload_types) {
            Ok(v) => self.ignored_workload_types = v,
            Err(e) => errors.push(e),
        }
        if errors.is_empty() { Ok(self) } else { Err(errors) }
    }
}

/// Everything the hooks read from a values file.
#[derive(Clone, Debug)]
pub struct Inputs {
    pub settings: ModuleSettings,
    /// `global.highAvailability` of Deckhouse.
    pub global_ha: bool,
    /// `internal.argoRolloutsEnabled` as set by the Argo Rollouts hook.
    pub argo_rollouts: bool,
}

impl Inputs {
    /// Reads the module settings (the module's values less `internal` and
    /// `registry`), in the controller's spellings, and the few other values
    /// the hooks use.
    pub fn from_values(values: &Value) -> Result<Self, Vec<Violation>> {
        let module = values.get(VALUES_KEY).cloned().unwrap_or(json!({}));
        let argo_rollouts = module.pointer("/internal/argoRolloutsEnabled").and_then(Value::as_bool).unwrap_or(false);
        let settings = settings_of(&module);
        // serde's message may quote the value it could not read: the schema
        // check before this names the field, so only the kind of error is kept.
        let settings: ModuleSettings = serde_json::from_value(settings).map_err(|e| {
            vec![Violation {
                path: "$".into(),
                message: format!("the settings cannot be read ({:?} error)", e.classify()),
            }]
        })?;
        let settings = settings.into_controller_spellings()?;
        let global_ha = values.pointer("/global/highAvailability").and_then(Value::as_bool).unwrap_or(false);
        Ok(Inputs { settings, global_ha, argo_rollouts })
    }

    pub fn high_availability(&self) -> bool {
        self.settings.high_availability.unwrap_or(self.global_ha)
    }

    pub fn cluster_wide(&self) -> bool {
        self.settings.namespaces.is_empty()
    }

    /// A workload kind (the controller's spelling: plural, lower case) is rolled: not ignored, and for
    /// `rollouts` only when Argo Rollouts is served.
    pub fn workload_enabled(&self, kind: &str) -> bool {
        !self.settings.ignored_workload_types.iter().any(|k| k == kind) && (kind != "rollouts" || self.argo_rollouts)
    }

    pub fn resource_enabled(&self, kind: &str) -> bool {
        !self.settings.resources_to_ignore.iter().any(|k| k == kind)
    }

    /// OnDelete StatefulSets get their pods deleted after a reload (default on).
    pub fn stateful_set_on_delete_restart(&self) -> bool {
        self.settings.stateful_set_on_delete_restart.unwrap_or(true)
    }

    pub fn alerting_enabled(&self) -> bool {
        self.settings.alerting.enabled
    }
}

/// The settings part of the module's values.
pub fn settings_of(module: &Value) -> Value {
    let mut s = module.clone();
    if let Some(m) = s.as_object_mut() {
        m.remove("internal");
        m.remove("registry");
    }
    s
}

/// The reload strategy in the controller's spelling (already translated by
/// [`Inputs::from_values`]; `env-vars` when unset).
pub fn controller_strategy(s: Option<&str>) -> &'static str {
    match s {
        Some("annotations") => "annotations",
        _ => "env-vars",
    }
}

/// A selector as a Kubernetes LabelSelector plus its canonical string form.
pub fn selector_value(sel: &Selector) -> Value {
    let exprs: Vec<Value> = sel
        .0
        .iter()
        .map(|r| match r {
            Requirement::Equals(k, v) => json!({"key": k, "operator": "In", "values": [v]}),
            Requirement::NotEquals(k, v) => json!({"key": k, "operator": "NotIn", "values": [v]}),
            Requirement::In(k, vs) => json!({"key": k, "operator": "In", "values": vs}),
            Requirement::NotIn(k, vs) => json!({"key": k, "operator": "NotIn", "values": vs}),
            Requirement::Exists(k) => json!({"key": k, "operator": "Exists"}),
            Requirement::DoesNotExist(k) => json!({"key": k, "operator": "DoesNotExist"}),
        })
        .collect();
    json!({"selector": sel.to_string(), "matchExpressions": exprs})
}

fn parse_selector(setting: &str, input: &str) -> Result<Selector, Violation> {
    let parsed = Selector::parse_reloader_forms(input);
    parsed.map_err(|e| Violation {
        path: format!("$.{setting}"),
        message: format!("{input:?} is not a label selector: {}", e.reason),
    })
}

/// What the settings hook writes under `internal`.
#[derive(Clone, Debug, PartialEq)]
pub struct Converted {
    pub reload_strategy: &'static str,
    pub selectors: Value,
    pub watch_scope: Value,
    pub controller_config: Value,
}

/// Converts the settings; every problem the schema cannot see (a selector
/// the controller's parser refuses, a config the controller would reject) is
/// a violation.
pub fn convert(inputs: &Inputs) -> Result<Converted, Vec<Violation>> {
    let s = &inputs.settings;
    let mut errors = Vec::new();
    let strategy = controller_strategy(s.reload_strategy.as_deref());
    let resource_sel = parse_selector("resourceLabelSelector", &s.resource_label_selector)
        .map_err(|e| errors.push(e))
        .unwrap_or_default();
    let namespace_sel =
        parse_selector("namespaceSelector", &s.namespace_selector).map_err(|e| errors.push(e)).unwrap_or_default();
    if let Err(e) = crate::netpol::webhook_target(inputs) {
        errors.push(e);
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    let cluster_wide = inputs.cluster_wide();
    let watch_scope = if cluster_wide {
        json!({
            "mode": "ClusterWide",
            "namespaces": [],
            "namespacesToIgnore": s.namespaces_to_ignore,
            "namespaceSelector": namespace_sel.to_string(),
        })
    } else {
        json!({"mode": "Namespaces", "namespaces": s.namespaces, "namespacesToIgnore": [], "namespaceSelector": ""})
    };
    let (ignore, ns_selector): (&[String], &str) =
        if cluster_wide { (&s.namespaces_to_ignore, &s.namespace_selector) } else { (&[], "") };
    let controller_config = json!({
        "reloadStrategy": strategy,
        "reloadOnCreate": s.reload_on_create.unwrap_or(true),
        "reloadOnDelete": s.reload_on_delete,
        "autoReloadAll": s.auto_reload_all,
        "namespaces": s.namespaces,
        "namespacesToIgnore": ignore,
        "namespaceSelector": ns_selector,
        "resourceLabelSelector": s.resource_label_selector,
        "resourcesToIgnore": s.resources_to_ignore,
        "ignoredWorkloadTypes": s.ignored_workload_types,
        "argoRollouts": inputs.argo_rollouts,
        "coalesceWindow": s.coalesce_window.as_deref().unwrap_or("1s"),
        "logFormat": s.log_format.as_deref().unwrap_or("json"),
        "logLevel": s.log_level.as_deref().unwrap_or("info"),
        "leaderElection": {"enabled": inputs.high_availability(), "leaseName": CHART_NAME},
        "alerting": {
            "enabled": inputs.alerting_enabled(),
            "sink": s.alerting.webhook.sink.as_deref().unwrap_or("slack"),
            "webhookUrlFile": WEBHOOK_URL_FILE,
            "additionalInfo": s.alerting.webhook.additional_info,
        },
        "statefulSetOnDeleteRestart": inputs.stateful_set_on_delete_restart(),
    });
    // The controller must accept what the chart will mount.
    let parsed: ControllerSettings = serde_json::from_value(controller_config.clone()).map_err(|e| {
        vec![Violation { path: "$".into(), message: format!("the controller's config would be refused: {e}") }]
    })?;
    if let Err(e) = parsed.validate() {
        return Err(vec![Violation {
            path: format!("$.{}", e.setting),
            message: format!("{:?} is refused by the controller: {}", e.value, e.message),
        }]);
    }
    Ok(Converted {
        reload_strategy: strategy,
        selectors: json!({
            "resourceLabelSelector": selector_value(&resource_sel),
            "namespaceSelector": selector_value(&namespace_sel),
        }),
        watch_scope,
        controller_config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(settings: Value) -> Inputs {
        Inputs::from_values(&json!({"podReloader": settings})).expect("inputs")
    }

    #[test]
    fn deckhouse_spellings_reach_the_controller_as_reloader_spellings() {
        let c = convert(&inputs(json!({
            "reloadStrategy": "Annotations", "resourcesToIgnore": ["Secrets"], "ignoredWorkloadTypes": ["CronJob", "Job"],
            "logFormat": "Text", "logLevel": "Debug",
            "alerting": {"enabled": true, "webhook": {"url": "https://h.example/x", "sink": "GChat"}},
        })))
        .expect("valid");
        let cfg = &c.controller_config;
        assert_eq!(c.reload_strategy, "annotations");
        assert_eq!(cfg["reloadStrategy"], "annotations");
        assert_eq!(cfg["resourcesToIgnore"], json!(["secrets"]));
        assert_eq!(cfg["ignoredWorkloadTypes"], json!(["cronjobs", "jobs"]));
        assert_eq!((cfg["logFormat"].as_str(), cfg["logLevel"].as_str()), (Some("text"), Some("debug")));
        assert_eq!(cfg["alerting"]["sink"], "gchat");
        assert_eq!(convert(&inputs(json!({}))).expect("defaults").reload_strategy, "env-vars");
    }

    #[test]
    fn reloader_spellings_are_refused_naming_the_setting() {
        let e = Inputs::from_values(&json!({"podReloader": {"reloadStrategy": "env-vars", "logLevel": "debug"}}))
            .unwrap_err();
        let paths: Vec<&str> = e.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(paths, ["$.reloadStrategy", "$.logLevel"]);
    }

    #[test]
    fn selectors_become_match_expressions() {
        let c =
            convert(&inputs(json!({"resourceLabelSelector": "a=b, c notin (x,y),!d", "namespaceSelector": "team"})))
                .expect("valid");
        assert_eq!(
            c.selectors["resourceLabelSelector"],
            json!({"selector": "a=b,c notin (x,y),!d", "matchExpressions": [
                {"key": "a", "operator": "In", "values": ["b"]},
                {"key": "c", "operator": "NotIn", "values": ["x", "y"]},
                {"key": "d", "operator": "DoesNotExist"}]})
        );
        assert_eq!(c.watch_scope["namespaceSelector"], "team");
    }

    #[test]
    fn scoped_mode_drops_cluster_wide_filters() {
        let c =
            convert(&inputs(json!({"namespaces": ["shop"], "namespaceSelector": "a=b", "namespacesToIgnore": ["x"]})))
                .expect("valid");
        assert_eq!(c.watch_scope["mode"], "Namespaces");
        assert_eq!(c.controller_config["namespaceSelector"], "");
        assert_eq!(c.controller_config["namespacesToIgnore"], json!([]));
    }

    #[test]
    fn ha_from_setting_or_global() {
        let v = json!({"global": {"highAvailability": true}, "podReloader": {}});
        assert!(Inputs::from_values(&v).unwrap().high_availability());
        let v = json!({"global": {"highAvailability": true}, "podReloader": {"highAvailability": false}});
        assert!(!Inputs::from_values(&v).unwrap().high_availability());
    }

    #[test]
    fn controller_refusals_are_violations() {
        let e = convert(&inputs(json!({"coalesceWindow": "2m"}))).unwrap_err();
        assert_eq!(e[0].path, "$.coalesceWindow");
    }
}
