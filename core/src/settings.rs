//! The controller's settings: the `--config` file (YAML or JSON) that the
//! Helm chart renders, after flags are laid over it. Parsed loosely into
//! [`Settings`] (field names as in the file), then checked once into
//! [`ValidSettings`], so an invalid value stops start-up with one line that
//! names the setting and the value.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::duration::parse_go_duration;
use crate::keys::{ResourceKind, WorkloadKind};
use crate::kinds;
use crate::patch::Strategy;
use crate::selector::Selector;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Settings {
    pub reload_strategy: String,
    pub reload_on_create: bool,
    pub reload_on_delete: bool,
    pub auto_reload_all: bool,
    pub namespaces: Vec<String>,
    pub namespaces_to_ignore: Vec<String>,
    pub namespace_selector: String,
    pub resource_label_selector: String,
    pub resources_to_ignore: Vec<String>,
    pub ignored_workload_types: Vec<String>,
    pub argo_rollouts: bool,
    pub coalesce_window: String,
    pub log_format: String,
    pub log_level: String,
    pub leader_election: LeaderElectionSettings,
    pub alerting: AlertingSettings,
    /// A file holding the 32-byte key of the rolled-to record (a mounted
    /// Secret); empty: the record is written unkeyed (see `record`).
    /// (Left out of a written config when empty, as are the other
    /// settings whose empty value means "not set".)
    #[serde(skip_serializing_if = "String::is_empty")]
    pub record_key_file: String,
    /// Export `reloader_reload_executed_total_by_namespace` (Reloader's
    /// `METRICS_COUNT_BY_NAMESPACE=enabled`).
    pub metrics_count_by_namespace: bool,
    /// Custom resources rolled like the built-in kinds (at most
    /// [`MAX_CUSTOM_WORKLOADS`]).
    pub custom_workloads: Vec<CustomWorkload>,
    /// At most this many workload rollouts start per second across the
    /// cluster (Reloader #220); 0: no limit.
    pub max_rollouts_per_second: u32,
    /// A file holding the URL of Reloader's `--webhook-url` mode (a mounted
    /// Secret): changes are posted there instead of rolling workloads.
    pub webhook_url_file: String,
}

/// At most this many `customWorkloads`: each is one more watch stream.
pub const MAX_CUSTOM_WORKLOADS: usize = 16;

/// A custom resource kind with a pod template, rolled like a built-in kind
/// (its template patched with a JSON merge patch).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct CustomWorkload {
    pub group: String,
    pub version: String,
    pub kind: String,
    /// The REST resource (`widgets`); Reloader's users may say `resource`.
    #[serde(alias = "resource")]
    pub plural: String,
    /// Dotted path of the pod template from the object's root.
    pub template_path: String,
}

impl Default for CustomWorkload {
    fn default() -> Self {
        CustomWorkload {
            group: String::new(),
            version: String::new(),
            kind: String::new(),
            plural: String::new(),
            template_path: "spec.template".into(),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            reload_strategy: "env-vars".into(),
            reload_on_create: false,
            reload_on_delete: false,
            auto_reload_all: false,
            namespaces: Vec::new(),
            namespaces_to_ignore: Vec::new(),
            namespace_selector: String::new(),
            resource_label_selector: String::new(),
            resources_to_ignore: Vec::new(),
            ignored_workload_types: Vec::new(),
            argo_rollouts: false,
            coalesce_window: "1s".into(),
            log_format: "text".into(),
            log_level: "info".into(),
            leader_election: LeaderElectionSettings::default(),
            alerting: AlertingSettings::default(),
            record_key_file: String::new(),
            metrics_count_by_namespace: false,
            custom_workloads: Vec::new(),
            max_rollouts_per_second: 0,
            webhook_url_file: String::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct LeaderElectionSettings {
    pub enabled: bool,
    pub lease_name: String,
    /// Defaults to the controller's own namespace (`POD_NAMESPACE`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub lease_namespace: String,
}

impl Default for LeaderElectionSettings {
    fn default() -> Self {
        LeaderElectionSettings { enabled: false, lease_name: "pod-reloader".into(), lease_namespace: String::new() }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct AlertingSettings {
    pub enabled: bool,
    pub sink: String,
    /// A file holding the webhook URL (a mounted Secret); the URL is never in
    /// the config. Without it, `ALERT_WEBHOOK_URL` from the environment (Reloader's).
    pub webhook_url_file: String,
    pub additional_info: String,
    /// A handlebars template for the message; empty means the Reloader-like default.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub template: String,
}

impl Default for AlertingSettings {
    fn default() -> Self {
        AlertingSettings {
            enabled: false,
            sink: "webhook".into(),
            webhook_url_file: String::new(),
            additional_info: String::new(),
            template: String::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertSink {
    Slack,
    Teams,
    GChat,
    Webhook,
}

/// A setting that cannot be used: names the setting and the value.
#[derive(Debug, Error, PartialEq, Eq)]
pub struct SettingsError {
    pub setting: &'static str,
    pub value: String,
    pub message: String,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid setting {}={:?}: {}", self.setting, self.value, self.message)
    }
}

/// Settings checked and parsed into the types the controller uses.
#[derive(Clone, Debug)]
pub struct ValidSettings {
    pub strategy: Strategy,
    pub reload_on_create: bool,
    pub reload_on_delete: bool,
    pub auto_reload_all: bool,
    /// Empty: watch cluster-wide.
    pub namespaces: Vec<String>,
    pub namespaces_to_ignore: BTreeSet<String>,
    pub namespace_selector: Option<Selector>,
    pub resource_label_selector: Option<Selector>,
    pub resource_kinds: BTreeSet<ResourceKind>,
    pub workload_kinds: BTreeSet<WorkloadKind>,
    pub coalesce_window: Duration,
    pub log_format: LogFormat,
    pub log_level: String,
    pub leader_election: LeaderElectionSettings,
    pub alerting: Option<(AlertSink, AlertingSettings)>,
    /// The record key read from `recordKeyFile`. Core does no I/O: `validate`
    /// leaves it empty and the controller fills it in when it loads the file.
    pub record_key: Option<crate::record::RecordKey>,
    pub metrics_count_by_namespace: bool,
    /// 0: no limit; else at most [`MAX_ROLLOUTS_PER_SECOND`].
    pub max_rollouts_per_second: u32,
    /// The controller reads the file (core does no I/O).
    pub webhook_url_file: String,
}

/// The highest `maxRolloutsPerSecond` accepted: above it the limit would not
/// protect the apiserver any more than no limit does.
pub const MAX_ROLLOUTS_PER_SECOND: u32 = 1000;

fn dns_label(setting: &'static str, name: &str) -> Result<(), SettingsError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(SettingsError {
            setting,
            value: name.into(),
            message: "not a valid namespace name (RFC 1123 label)".into(),
        })
    }
}

/// A lower-case RFC 1123 label (`plural`, `version`, a part of a group).
fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

impl CustomWorkload {
    /// `widgets.example.com/v1 Widget`, for messages.
    pub fn name(&self) -> String {
        format!("{}.{}/{} {}", self.plural, self.group, self.version, self.kind)
    }

    /// The kind (its descriptor interned, see [`kinds::custom`]), or the
    /// field that is wrong: (field, value, why).
    fn kind(&self) -> Result<WorkloadKind, (&'static str, &str, &'static str)> {
        let group_ok = !self.group.is_empty()
            && self.group.len() <= 253
            && self.group.contains('.')
            && self.group.split('.').all(is_label);
        if !group_ok {
            return Err(("group", &self.group, "must be the API group of a custom resource (example.com)"));
        }
        if !is_label(&self.version) {
            return Err(("version", &self.version, "must be an API version such as v1 or v1alpha1"));
        }
        let kind_ok = self.kind.len() <= 63
            && self.kind.starts_with(|c: char| c.is_ascii_uppercase())
            && self.kind.bytes().all(|b| b.is_ascii_alphanumeric());
        if !kind_ok {
            return Err(("kind", &self.kind, "must be a Kubernetes kind (Widget: a capital, then letters and digits)"));
        }
        if !is_label(&self.plural) {
            return Err(("plural", &self.plural, "must be the lower-case resource name (widgets)"));
        }
        let path: Vec<&str> = self.template_path.split('.').collect();
        let path_ok = path.len() <= 8
            && path.iter().all(|p| !p.is_empty() && p.len() <= 63 && p.bytes().all(|b| b.is_ascii_alphanumeric()))
            && path.first() != Some(&"metadata");
        if !path_ok {
            return Err((
                "templatePath",
                &self.template_path,
                "must be at most 8 dotted field names outside metadata (spec.template)",
            ));
        }
        Ok(kinds::custom(&self.group, &self.version, &self.kind, &self.plural, &path))
    }
}

impl Settings {
    pub fn validate(&self) -> Result<ValidSettings, SettingsError> {
        let err = |setting: &'static str, value: &str, message: String| SettingsError {
            setting,
            value: value.into(),
            message,
        };

        let strategy: Strategy =
            self.reload_strategy.parse().map_err(|m| err("reloadStrategy", &self.reload_strategy, m))?;

        for ns in &self.namespaces {
            dns_label("namespaces", ns)?;
        }
        for ns in &self.namespaces_to_ignore {
            dns_label("namespacesToIgnore", ns)?;
        }
        let namespace_selector = match self.namespace_selector.trim() {
            "" => None,
            s => Some(Selector::parse_reloader_forms(s).map_err(|e| err("namespaceSelector", s, e.reason))?),
        };
        let resource_label_selector = match self.resource_label_selector.trim() {
            "" => None,
            s => Some(Selector::parse_reloader_forms(s).map_err(|e| err("resourceLabelSelector", s, e.reason))?),
        };

        let mut resource_kinds: BTreeSet<ResourceKind> = ResourceKind::ALL.into_iter().collect();
        for r in &self.resources_to_ignore {
            let kind = match r.to_ascii_lowercase().as_str() {
                "configmaps" | "configmap" => ResourceKind::ConfigMap,
                "secrets" | "secret" => ResourceKind::Secret,
                _ => {
                    return Err(err("resourcesToIgnore", r, "want configmaps or secrets".into()));
                }
            };
            resource_kinds.remove(&kind);
        }
        if resource_kinds.is_empty() {
            return Err(err(
                "resourcesToIgnore",
                &self.resources_to_ignore.join(","),
                "ignoring both configmaps and secrets leaves nothing to watch".into(),
            ));
        }

        // The opt-in kind (Argo Rollouts) only with `argoRollouts`.
        let mut workload_kinds: BTreeSet<WorkloadKind> =
            WorkloadKind::ALL.into_iter().filter(|k| !k.spec().opt_in || self.argo_rollouts).collect();
        for w in &self.ignored_workload_types {
            let kind = WorkloadKind::parse(w).ok_or_else(|| {
                err("ignoredWorkloadTypes", w, format!("want {}", WorkloadKind::plurals_text(WorkloadKind::ALL)))
            })?;
            workload_kinds.remove(&kind);
        }

        if self.custom_workloads.len() > MAX_CUSTOM_WORKLOADS {
            return Err(err(
                "customWorkloads",
                &format!("{} entries", self.custom_workloads.len()),
                format!("at most {MAX_CUSTOM_WORKLOADS}: each is one more watch"),
            ));
        }
        for (i, custom) in self.custom_workloads.iter().enumerate() {
            let kind = custom.kind().map_err(|(field, value, why)| {
                err("customWorkloads", value, format!("customWorkloads[{i}].{field} ({}) {why}", custom.name()))
            })?;
            let builtin = WorkloadKind::ALL.iter().any(|b| b.spec().same_resource(kind.spec()));
            let listed = workload_kinds.iter().any(|w| w.spec().same_resource(kind.spec()));
            if builtin || listed {
                return Err(err(
                    "customWorkloads",
                    &custom.name(),
                    format!(
                        "customWorkloads[{i}]: {}.{} is a built-in kind or listed twice",
                        custom.plural, custom.group
                    ),
                ));
            }
            workload_kinds.insert(kind);
        }

        let coalesce_window = parse_go_duration(&self.coalesce_window).map_err(|_| {
            err("coalesceWindow", &self.coalesce_window, "want a duration such as 1s, 500ms or 0".into())
        })?;
        if coalesce_window > Duration::from_secs(60) {
            return Err(err(
                "coalesceWindow",
                &self.coalesce_window,
                "at most 60s: a longer wait delays every reload".into(),
            ));
        }

        let log_format = match self.log_format.as_str() {
            "" | "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => return Err(err("logFormat", other, "want text or json".into())),
        };
        let log_level = match self.log_level.to_ascii_lowercase().as_str() {
            l @ ("trace" | "debug" | "info" | "warn" | "error") => l.to_string(),
            "warning" => "warn".into(),
            // Reloader's levels above error: this controller never exits on a
            // log line, so they mean "errors only".
            "fatal" | "panic" => "error".into(),
            other => {
                return Err(err("logLevel", other, "want trace, debug, info, warn, error, fatal or panic".into()));
            }
        };

        if self.leader_election.enabled && self.leader_election.lease_name.is_empty() {
            return Err(err("leaderElection.leaseName", "", "must not be empty when leader election is on".into()));
        }

        let alerting = if self.alerting.enabled {
            let sink = match self.alerting.sink.as_str() {
                "slack" => AlertSink::Slack,
                "teams" => AlertSink::Teams,
                "gchat" => AlertSink::GChat,
                "webhook" | "raw" | "" => AlertSink::Webhook,
                other => {
                    return Err(err("alerting.sink", other, "want slack, teams, gchat or webhook".into()));
                }
            };
            Some((sink, self.alerting.clone()))
        } else {
            None
        };

        if self.max_rollouts_per_second > MAX_ROLLOUTS_PER_SECOND {
            return Err(err(
                "maxRolloutsPerSecond",
                &self.max_rollouts_per_second.to_string(),
                format!("at most {MAX_ROLLOUTS_PER_SECOND} (0 turns the limit off)"),
            ));
        }

        Ok(ValidSettings {
            strategy,
            reload_on_create: self.reload_on_create,
            reload_on_delete: self.reload_on_delete,
            auto_reload_all: self.auto_reload_all,
            namespaces: self.namespaces.clone(),
            namespaces_to_ignore: self.namespaces_to_ignore.iter().cloned().collect(),
            namespace_selector,
            resource_label_selector,
            resource_kinds,
            workload_kinds,
            coalesce_window,
            log_format,
            log_level,
            leader_election: self.leader_election.clone(),
            alerting,
            record_key: None,
            metrics_count_by_namespace: self.metrics_count_by_namespace,
            max_rollouts_per_second: self.max_rollouts_per_second,
            webhook_url_file: self.webhook_url_file.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let v = Settings::default().validate().unwrap();
        assert_eq!(v.strategy, Strategy::EnvVars);
        assert_eq!(v.coalesce_window, Duration::from_secs(1));
        assert!(!v.workload_kinds.contains(&WorkloadKind::Rollout));
        assert_eq!(v.resource_kinds.len(), 2);
    }

    #[test]
    fn file_fields_are_camel_case_and_unknown_ones_refused() {
        let s: Settings =
            serde_json::from_str(r#"{"reloadStrategy":"Annotations","ignoredWorkloadTypes":["jobs"]}"#).unwrap();
        let v = s.validate().unwrap();
        assert_eq!(v.strategy, Strategy::Annotations);
        assert!(!v.workload_kinds.contains(&WorkloadKind::Job));
        assert!(serde_json::from_str::<Settings>(r#"{"reloadStrategyy":"x"}"#).is_err());
    }

    #[test]
    fn max_rollouts_per_second_is_bounded() {
        let ok = Settings { max_rollouts_per_second: 1000, ..Default::default() };
        assert_eq!(ok.validate().unwrap().max_rollouts_per_second, 1000);
        assert_eq!(Settings::default().validate().unwrap().max_rollouts_per_second, 0, "off by default");
        let e = Settings { max_rollouts_per_second: 1001, ..Default::default() }.validate().unwrap_err();
        assert_eq!((e.setting, e.value.as_str()), ("maxRolloutsPerSecond", "1001"));
    }

    #[test]
    fn errors_name_setting_and_value() {
        let s = Settings { reload_strategy: "restart".into(), ..Default::default() };
        let e = s.validate().unwrap_err();
        assert_eq!(e.setting, "reloadStrategy");
        assert!(e.to_string().starts_with("invalid setting reloadStrategy=\"restart\""), "{e}");

        let s = Settings { resource_label_selector: "a in b".into(), ..Default::default() };
        assert_eq!(s.validate().unwrap_err().setting, "resourceLabelSelector");
        let s = Settings { namespaces: vec!["Bad_NS".into()], ..Default::default() };
        assert_eq!(s.validate().unwrap_err().setting, "namespaces");
        let s = Settings { resources_to_ignore: vec!["configmaps".into(), "secrets".into()], ..Default::default() };
        assert_eq!(s.validate().unwrap_err().setting, "resourcesToIgnore");
        let s = Settings { coalesce_window: "soon".into(), ..Default::default() };
        assert_eq!(s.validate().unwrap_err().setting, "coalesceWindow");
    }

    fn widget(template_path: &str) -> CustomWorkload {
        CustomWorkload {
            group: "example.com".into(),
            version: "v1".into(),
            kind: "Widget".into(),
            plural: "widgets".into(),
            template_path: template_path.into(),
        }
    }

    #[test]
    fn custom_workloads_become_watched_kinds() {
        let s: Settings = serde_json::from_value(serde_json::json!({"customWorkloads": [
            {"group": "example.com", "version": "v1", "kind": "Widget", "resource": "widgets",
             "templatePath": "spec.runner.template"}]}))
        .unwrap();
        let v = s.validate().unwrap();
        let custom: Vec<_> = v.workload_kinds.iter().filter(|k| k.as_str() == "Widget").collect();
        assert_eq!(custom.len(), 1);
        assert_eq!(custom[0].spec().template_path, ["spec", "runner", "template"]);
        assert_eq!(custom[0].spec().api_version(), "example.com/v1");
    }

    #[test]
    fn custom_workload_errors_name_the_entry_and_field() {
        let bad = |c: CustomWorkload| {
            let s = Settings { custom_workloads: vec![widget("spec.template"), c], ..Default::default() };
            s.validate().unwrap_err()
        };
        let e = bad(CustomWorkload { group: "".into(), ..widget("spec.template") });
        assert_eq!(e.setting, "customWorkloads");
        assert!(e.message.starts_with("customWorkloads[1].group"), "{e}");
        let e = bad(CustomWorkload { kind: "widget".into(), ..widget("spec.template") });
        assert!(e.message.starts_with("customWorkloads[1].kind"), "{e}");
        let e = bad(CustomWorkload { plural: "Widgets".into(), ..widget("spec.template") });
        assert!(e.message.starts_with("customWorkloads[1].plural"), "{e}");
        let e = bad(CustomWorkload { version: "".into(), ..widget("spec.template") });
        assert!(e.message.starts_with("customWorkloads[1].version"), "{e}");
        for path in ["", "spec..template", "metadata.annotations", "a.b.c.d.e.f.g.h.i", "spec.template[0]"] {
            let e = bad(widget(path));
            assert!(e.message.starts_with("customWorkloads[1].templatePath"), "{path}: {e}");
        }
        let e = bad(widget("spec.template"));
        assert!(e.message.contains("listed twice"), "{e}");
        let e = bad(CustomWorkload { group: "apps.".into(), ..widget("spec.template") });
        assert!(e.message.starts_with("customWorkloads[1].group"), "{e}");
        let s = Settings {
            custom_workloads: vec![widget("spec.template"); MAX_CUSTOM_WORKLOADS + 1],
            ..Default::default()
        };
        assert!(s.validate().unwrap_err().message.starts_with("at most 16"));
    }

    #[test]
    fn reloader_selector_forms_become_standard_selectors() {
        let s = Settings {
            namespace_selector: "team:*".into(),
            resource_label_selector: "reloader:enabled,tier=*".into(),
            ..Default::default()
        };
        let v = s.validate().unwrap();
        assert_eq!(v.namespace_selector.unwrap().to_string(), "team");
        assert_eq!(v.resource_label_selector.unwrap().to_string(), "reloader=enabled,tier");
    }

    #[test]
    fn reloader_fatal_and_panic_log_levels_mean_error() {
        for level in ["fatal", "panic", "Fatal", "PANIC"] {
            let s = Settings { log_level: level.into(), ..Default::default() };
            assert_eq!(s.validate().unwrap().log_level, "error", "{level}");
        }
        let s = Settings { log_level: "verbose".into(), ..Default::default() };
        assert_eq!(s.validate().unwrap_err().setting, "logLevel");
    }
}
