//! The module's settings (ModuleConfig `spec.settings`, defaults applied) as
//! the hooks read them from the values, in the controller's spellings. What
//! the settings hook derives from them (the controller's config file, the
//! selectors, the watch scope) is in [`crate::controller_config`].

use pod_reloader_core::kinds::{self, KindSpec};
use pod_reloader_core::settings::AnnotationSettings;
use pod_reloader_core::settings::Settings;
use pod_reloader_core::settings::{CustomWorkload, MAX_CUSTOM_WORKLOADS};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::spelling::{self, LOG_FORMATS, LOG_LEVELS, RELOAD_STRATEGIES, RESOURCES, SINKS, WORKLOADS};
use crate::violation::Violation;

/// The values key of the module (`pod-reloader` in camelCase).
pub const VALUES_KEY: &str = "podReloader";
/// The name of the Lease, the ServiceAccount, the Deployment.
pub const CHART_NAME: &str = "pod-reloader";

/// The settings as read from the values. [`Inputs::from_values`] turns the
/// enum settings into the controller's spellings ([`crate::spelling`]), so
/// everything after it works with `env-vars`, `configmaps`, `jobs`, `slack`…
/// A setting left out is `None` (or empty): its default is the module's
/// ([`crate::controller_config::module_defaults`]), not written here.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ModuleSettings {
    pub reload_on_create: Option<bool>,
    pub reload_on_delete: Option<bool>,
    pub auto_reload_all: Option<bool>,
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
    pub custom_workloads: Vec<CustomWorkload>,
    pub max_rollouts_per_second: Option<u32>,
    pub csi_integration: bool,
    /// The controller's own type: the module's setting has its shape.
    pub annotations: AnnotationSettings,
    pub stateful_set_on_delete_restart: Option<bool>,
    pub cron_job_trigger: Option<bool>,
    pub metrics_count_by_namespace: Option<bool>,
    pub webhook_mode: WebhookMode,
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

/// Reloader's `--webhook-url` mode (`webhookMode`): changes are posted to
/// the webhook instead of rolling workloads. Its URL is mounted like the
/// alert webhook's.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WebhookMode {
    pub enabled: bool,
    pub url: Option<String>,
    pub url_secret_ref: Option<SecretRef>,
    pub egress: Vec<String>,
    pub port: Option<u16>,
}

/// A webhook the controller posts to (the alert webhook, the webhook
/// mode's), as the URL checks and the NetworkPolicy see it: both are given
/// the same way (`url` or `urlSecretRef`, `egress`, `port`).
#[derive(Clone, Copy, Debug)]
pub struct WebhookEndpoint<'a> {
    /// The settings object holding `url`…, for messages: `alerting.webhook`, `webhookMode`.
    pub setting: &'static str,
    /// The settings object holding the `enabled` switch: `alerting`, `webhookMode`.
    pub section: &'static str,
    pub url: Option<&'a str>,
    pub url_secret_ref: Option<&'a SecretRef>,
    pub egress: &'a [String],
    pub port: Option<u16>,
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

    /// A workload kind is rolled: not ignored (`ignoredWorkloadTypes`, in the controller's spelling: its
    /// plural), and an opt-in kind (Argo Rollouts) only when it is served.
    pub fn workload_enabled(&self, kind: &KindSpec) -> bool {
        !self.settings.ignored_workload_types.iter().any(|k| k == kind.plural) && (!kind.opt_in || self.argo_rollouts)
    }

    /// The descriptors of `customWorkloads` (the schema bounds them; the
    /// conversion checks them as the controller does).
    pub fn custom_kinds(&self) -> Vec<&'static KindSpec> {
        let custom = self.settings.custom_workloads.iter().take(MAX_CUSTOM_WORKLOADS);
        custom
            .map(|c| {
                let path: Vec<&str> = c.template_path.split('.').collect();
                kinds::custom(&c.group, &c.version, &c.kind, &c.plural, &path).spec()
            })
            .collect()
    }

    pub fn resource_enabled(&self, kind: &str) -> bool {
        !self.settings.resources_to_ignore.iter().any(|k| k == kind)
    }

    /// OnDelete StatefulSets get their pods deleted after a reload (the
    /// module's default: the controller's).
    pub fn stateful_set_on_delete_restart(&self) -> bool {
        self.settings.stateful_set_on_delete_restart.unwrap_or(Settings::default().stateful_set_on_delete_restart)
    }

    /// Reloaded CronJobs start a Job at once (off by default, the controller's default).
    pub fn cron_job_trigger(&self) -> bool {
        self.settings.cron_job_trigger.unwrap_or(Settings::default().cron_job_trigger)
    }

    pub fn alerting_enabled(&self) -> bool {
        self.settings.alerting.enabled
    }

    /// The webhooks that are switched on: the alert webhook, then the webhook mode's.
    pub fn webhook_endpoints(&self) -> Vec<WebhookEndpoint<'_>> {
        let (alert, mode) = (&self.settings.alerting.webhook, &self.settings.webhook_mode);
        let mut out = Vec::new();
        if self.alerting_enabled() {
            out.push(WebhookEndpoint {
                setting: "alerting.webhook",
                section: "alerting",
                url: alert.url.as_deref(),
                url_secret_ref: alert.url_secret_ref.as_ref(),
                egress: &alert.egress,
                port: alert.port,
            });
        }
        if mode.enabled {
            out.push(WebhookEndpoint {
                setting: "webhookMode",
                section: "webhookMode",
                url: mode.url.as_deref(),
                url_secret_ref: mode.url_secret_ref.as_ref(),
                egress: &mode.egress,
                port: mode.port,
            });
        }
        out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reloader_spellings_are_refused_naming_the_setting() {
        let e = Inputs::from_values(&json!({"podReloader": {"reloadStrategy": "env-vars", "logLevel": "debug"}}))
            .unwrap_err();
        let paths: Vec<&str> = e.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(paths, ["$.reloadStrategy", "$.logLevel"]);
    }

    #[test]
    fn ha_from_setting_or_global() {
        let v = json!({"global": {"highAvailability": true}, "podReloader": {}});
        assert!(Inputs::from_values(&v).unwrap().high_availability());
        let v = json!({"global": {"highAvailability": true}, "podReloader": {"highAvailability": false}});
        assert!(!Inputs::from_values(&v).unwrap().high_availability());
    }
}
