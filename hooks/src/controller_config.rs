//! The controller's config file (`internal.controllerConfig`, mounted by the
//! chart at `/etc/pod-reloader/config.yaml`): the controller's own typed
//! [`Settings`], filled from the module settings over [`module_defaults`] and
//! checked the way the controller checks it, so the hook refuses what the
//! controller would refuse. Also the parsed selectors and the watch scope the
//! templates read.
//!
//! Every default is defined once, in `pod_reloader_core::settings`; the few
//! the module sets differently are the lines of [`module_defaults`]. The
//! schema's defaults (`openapi/config-values.yaml`) are checked against them
//! by `tests/openapi_defaults.rs`.

use pod_reloader_core::selector::{Requirement, Selector};
use pod_reloader_core::settings::{AlertingSettings, Settings};
use serde_json::{Value, json};

use crate::settings::{CHART_NAME, Inputs};
use crate::violation::Violation;

/// Where the chart mounts the alert webhook URL (Secret `pod-reloader-alert`,
/// or the operator's Secret of `alerting.webhook.urlSecretRef`).
pub const WEBHOOK_URL_FILE: &str = "/etc/pod-reloader/alert/url";
/// Where the chart mounts the URL of the webhook mode (`webhookMode`:
/// Secret `pod-reloader-webhook-mode`, or the operator's Secret of
/// `webhookMode.urlSecretRef`). The controller is in webhook mode exactly
/// when its config names this file.
pub const WEBHOOK_MODE_URL_FILE: &str = "/etc/pod-reloader/webhook-mode/url";

/// The controller's defaults are Reloader's (a drop-in controller started
/// with Reloader's flags behaves as Reloader); the module's differ here only.
pub fn module_defaults() -> Settings {
    Settings {
        // Deckhouse's earlier pod-reloader module reloaded on create: an
        // existing ModuleConfig keeps its behaviour (Reloader: false).
        reload_on_create: true,
        // Deckhouse's log shipping reads one JSON object a line (Reloader: text).
        log_format: "json".into(),
        alerting: AlertingSettings {
            // The module's alerting sends "a message to a chat"; Slack's payload
            // is the one Slack-compatible chats take (Reloader: plain-text webhook).
            sink: "slack".into(),
            ..AlertingSettings::default()
        },
        ..Settings::default()
    }
}

/// A selector as a Kubernetes LabelSelector plus its canonical string form.
fn selector_value(sel: &Selector) -> Value {
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
    /// `env-vars` or `annotations`.
    pub reload_strategy: String,
    pub selectors: Value,
    pub watch_scope: Value,
    pub controller_config: Value,
}

/// The controller's settings for the module settings `inputs` (already in
/// the controller's spellings): [`module_defaults`] with every given
/// setting laid over it, and what the hooks decide (scope, Argo Rollouts,
/// leader election, the mounted URL file).
pub fn controller_settings(inputs: &Inputs) -> Settings {
    fn set<T: Clone>(dst: &mut T, src: &Option<T>) {
        if let Some(v) = src {
            *dst = v.clone();
        }
    }
    let s = &inputs.settings;
    let mut c = module_defaults();
    set(&mut c.reload_strategy, &s.reload_strategy);
    set(&mut c.reload_on_create, &s.reload_on_create);
    set(&mut c.reload_on_delete, &s.reload_on_delete);
    set(&mut c.auto_reload_all, &s.auto_reload_all);
    set(&mut c.coalesce_window, &s.coalesce_window);
    set(&mut c.log_format, &s.log_format);
    set(&mut c.log_level, &s.log_level);
    set(&mut c.stateful_set_on_delete_restart, &s.stateful_set_on_delete_restart);
    set(&mut c.cron_job_trigger, &s.cron_job_trigger);
    c.namespaces = s.namespaces.clone();
    // The namespace filters apply to the cluster-wide mode only.
    if inputs.cluster_wide() {
        c.namespaces_to_ignore = s.namespaces_to_ignore.clone();
        c.namespace_selector = s.namespace_selector.clone();
    }
    c.resource_label_selector = s.resource_label_selector.clone();
    c.resources_to_ignore = s.resources_to_ignore.clone();
    c.ignored_workload_types = s.ignored_workload_types.clone();
    c.custom_workloads = s.custom_workloads.clone();
    set(&mut c.max_rollouts_per_second, &s.max_rollouts_per_second);
    c.csi_integration = s.csi_integration;
    set(&mut c.metrics_count_by_namespace, &s.metrics_count_by_namespace);
    c.argo_rollouts = inputs.argo_rollouts;
    c.leader_election.enabled = inputs.high_availability();
    // The Lease the RBAC names (`rbac.rs`).
    c.leader_election.lease_name = CHART_NAME.into();
    c.alerting.enabled = inputs.alerting_enabled();
    set(&mut c.alerting.sink, &s.alerting.webhook.sink);
    c.alerting.webhook_url_file = WEBHOOK_URL_FILE.into();
    c.alerting.additional_info = s.alerting.webhook.additional_info.clone();
    c.annotations = s.annotations.clone();
    if s.webhook_mode.enabled {
        c.webhook_url_file = WEBHOOK_MODE_URL_FILE.into();
    }
    c
}

/// Converts the settings; every problem the schema cannot see (a selector
/// the controller's parser refuses, a config the controller would reject) is
/// a violation.
pub fn convert(inputs: &Inputs) -> Result<Converted, Vec<Violation>> {
    let s = &inputs.settings;
    let mut errors = Vec::new();
    let resource_sel = parse_selector("resourceLabelSelector", &s.resource_label_selector)
        .map_err(|e| errors.push(e))
        .unwrap_or_default();
    let namespace_sel =
        parse_selector("namespaceSelector", &s.namespace_selector).map_err(|e| errors.push(e)).unwrap_or_default();
    if let Err(e) = crate::netpol::webhook_targets(inputs) {
        errors.extend(e);
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    let watch_scope = if inputs.cluster_wide() {
        json!({
            "mode": "ClusterWide",
            "namespaces": [],
            "namespacesToIgnore": s.namespaces_to_ignore,
            "namespaceSelector": namespace_sel.to_string(),
        })
    } else {
        json!({"mode": "Namespaces", "namespaces": s.namespaces, "namespacesToIgnore": [], "namespaceSelector": ""})
    };
    let settings = controller_settings(inputs);
    // The controller must accept what the chart will mount.
    if let Err(e) = settings.validate() {
        return Err(vec![Violation {
            path: format!("$.{}", e.setting),
            message: format!("{:?} is refused by the controller: {}", e.value, e.message),
        }]);
    }
    let controller_config = serde_json::to_value(&settings).map_err(|e| {
        vec![Violation { path: "$".into(), message: format!("the controller's config cannot be written: {e}") }]
    })?;
    Ok(Converted {
        reload_strategy: settings.reload_strategy,
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
    fn unset_settings_take_the_module_defaults() {
        let c = controller_settings(&inputs(json!({})));
        let d = module_defaults();
        assert_eq!((c.reload_on_create, &c.log_format, &c.alerting.sink), (true, &d.log_format, &d.alerting.sink));
        assert_eq!((&c.reload_strategy, &c.coalesce_window), (&d.reload_strategy, &d.coalesce_window));
        // The controller's own defaults stay Reloader's.
        let r = Settings::default();
        assert_eq!((r.reload_on_create, r.log_format.as_str(), r.alerting.sink.as_str()), (false, "text", "webhook"));
    }

    #[test]
    fn the_config_round_trips_through_the_controllers_parser() {
        let c = convert(&inputs(json!({"reloadOnDelete": true, "coalesceWindow": "5s"}))).expect("valid");
        let back: Settings = serde_json::from_value(c.controller_config.clone()).expect("the controller reads it");
        assert_eq!(back, controller_settings(&inputs(json!({"reloadOnDelete": true, "coalesceWindow": "5s"}))));
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
    fn controller_refusals_are_violations() {
        let e = convert(&inputs(json!({"coalesceWindow": "2m"}))).unwrap_err();
        assert_eq!(e[0].path, "$.coalesceWindow");
        // A name the schema admits but another annotation has.
        let e = convert(&inputs(json!({"annotations": {"auto": "reloader.stakater.com/search"}}))).unwrap_err();
        assert_eq!(e[0].path, "$.annotations.auto");
        assert!(e[0].message.contains("already used by the annotation reloader.stakater.com/search"), "{e:?}");
    }

    #[test]
    fn renamed_annotations_reach_the_controller_and_none_leaves_the_config_as_it_was() {
        let c = convert(&inputs(json!({"annotations": {"auto": "example.com/auto", "pausedAt": "example.com/at"}})))
            .expect("valid");
        assert_eq!(
            c.controller_config["annotations"],
            json!({"auto": "example.com/auto", "pausedAt": "example.com/at"})
        );
        let c = convert(&inputs(json!({"annotations": {}}))).expect("valid");
        assert_eq!(c.controller_config.get("annotations"), None);
    }

    #[test]
    fn max_rollouts_per_second_reaches_the_controller() {
        let c = convert(&inputs(json!({"maxRolloutsPerSecond": 20}))).unwrap();
        assert_eq!(c.controller_config["maxRolloutsPerSecond"], 20);
        let c = convert(&inputs(json!({}))).unwrap();
        assert_eq!(c.controller_config["maxRolloutsPerSecond"], 0, "off by default");
        let e = convert(&inputs(json!({"maxRolloutsPerSecond": 5000}))).unwrap_err();
        assert_eq!(e[0].path, "$.maxRolloutsPerSecond");
    }

    #[test]
    fn metrics_count_by_namespace_reaches_the_controller() {
        let c = convert(&inputs(json!({"metricsCountByNamespace": true}))).unwrap();
        assert_eq!(c.controller_config["metricsCountByNamespace"], true);
        let c = convert(&inputs(json!({}))).unwrap();
        assert_eq!(c.controller_config["metricsCountByNamespace"], false, "off by default, as in Reloader");
    }

    #[test]
    fn webhook_mode_names_the_mounted_file_never_the_url() {
        let url = "https://hooks.example/T0K3N";
        let c = convert(&inputs(json!({"webhookMode": {"enabled": true, "url": url}}))).unwrap();
        assert_eq!(c.controller_config["webhookUrlFile"], WEBHOOK_MODE_URL_FILE);
        assert!(!c.controller_config.to_string().contains("T0K3N"), "{}", c.controller_config);
        let c = convert(&inputs(json!({"webhookMode": {"enabled": true, "urlSecretRef": {"name": "s"}}}))).unwrap();
        assert_eq!(c.controller_config["webhookUrlFile"], WEBHOOK_MODE_URL_FILE);
        // Off (the default, or a URL left behind): the controller rolls workloads.
        for off in [json!({}), json!({"webhookMode": {"url": url}})] {
            assert_eq!(convert(&inputs(off)).unwrap().controller_config["webhookUrlFile"], "");
        }
        let e = convert(&inputs(json!({"webhookMode": {"enabled": true}}))).unwrap_err();
        assert_eq!(e[0].path, "$.webhookMode");
        let e = convert(&inputs(json!({"webhookMode": {"enabled": true, "url": url, "urlSecretRef": {"name": "s"}},
            "alerting": {"enabled": true}})))
        .unwrap_err();
        let paths: Vec<&str> = e.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(paths, ["$.alerting", "$.webhookMode"], "every webhook's problem is reported");
    }
}
