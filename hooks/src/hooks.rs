//! The module's hooks: their configs (what `hook config` prints) and what
//! each does on `hook run <index>`.
//!
//! | index | name             | runs on                                                    | sets under `podReloader.internal`                          |
//! |-------|------------------|------------------------------------------------------------|------------------------------------------------------------|
//! | 0     | `settings`       | beforeHelm (10)                                            | `reloadStrategy`, `selectors`, `watchScope`, `controllerConfig` |
//! | 1     | `argo_rollouts`  | CRD `rollouts.argoproj.io` (kubernetes), beforeHelm (5)   | `argoRolloutsEnabled`                                      |
//! | 2     | `rbac`           | beforeHelm (10)                                            | `rbac`                                                     |
//! | 3     | `network_policy` | EndpointSlices of `default/kubernetes` (kubernetes), beforeHelm (10) | `apiserverEndpoints`, `networkPolicy`            |
//! | 4     | `record_key`     | Secret `d8-pod-reloader/pod-reloader-record-key` (kubernetes), beforeHelm (10) | `recordKey`                         |
//!
//! Every hook works from the values it is given (settings with defaults,
//! `global`, the current `internal`), so none depends on another having run
//! in the same pass; Argo Rollouts detection runs first so the others see its
//! result.

use serde_json::{Value, json};

use crate::controller_config;
use crate::error::HookError;
use crate::netpol::{self, ENDPOINTSLICE_JQ, Endpoint};
use crate::protocol::{self, BindingContext, Item, Metric, Output};
use crate::rbac;
use crate::record_key;
use crate::schema::SettingsSchema;
use crate::settings::{self, Inputs, VALUES_KEY};
use crate::violation::{Violation, join_violations};

pub const ARGO_BINDING: &str = "argo_rollouts_crd";
pub const ARGO_CRD: &str = "rollouts.argoproj.io";
pub const ARGO_VERSION: &str = "v1alpha1";
pub const ENDPOINTS_BINDING: &str = "apiserver_endpointslices";

/// The jqFilter of the CRD binding: its name and served versions.
pub const CRD_JQ: &str = "{name: .metadata.name, served: [.spec.versions[]? | select(.served) | .name]}";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Settings,
    ArgoRollouts,
    Rbac,
    NetworkPolicy,
    RecordKey,
}

pub const HOOKS: [Hook; 5] = [Hook::Settings, Hook::ArgoRollouts, Hook::Rbac, Hook::NetworkPolicy, Hook::RecordKey];

impl Hook {
    pub fn name(self) -> &'static str {
        match self {
            Hook::Settings => "settings",
            Hook::ArgoRollouts => "argo_rollouts",
            Hook::Rbac => "rbac",
            Hook::NetworkPolicy => "network_policy",
            Hook::RecordKey => "record_key",
        }
    }

    pub fn by_index(index: &str) -> Option<Self> {
        index.parse::<usize>().ok().and_then(|i| HOOKS.get(i).copied())
    }

    /// The module-sdk `HookConfig` of the hook.
    pub fn config(self) -> Value {
        let mut c = json!({
            "configVersion": "v1",
            "metadata": {"name": self.name(), "path": format!("pod-reloader-hooks/{}", self.name())},
        });
        match self {
            Hook::Settings | Hook::Rbac => c["beforeHelm"] = json!(10),
            Hook::ArgoRollouts => {
                c["beforeHelm"] = json!(5);
                c["kubernetes"] = json!([{
                    "name": ARGO_BINDING,
                    "apiVersion": "apiextensions.k8s.io/v1",
                    "kind": "CustomResourceDefinition",
                    "nameSelector": {"matchNames": [ARGO_CRD]},
                    "executeHookOnEvent": true,
                    "executeHookOnSynchronization": true,
                    "waitForSynchronization": true,
                    "keepFullObjectsInMemory": false,
                    "jqFilter": CRD_JQ,
                }]);
            }
            Hook::NetworkPolicy => {
                c["beforeHelm"] = json!(10);
                c["kubernetes"] = json!([{
                    "name": ENDPOINTS_BINDING,
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "namespace": {"nameSelector": {"matchNames": ["default"]}},
                    "labelSelector": {"matchLabels": {"kubernetes.io/service-name": "kubernetes"}},
                    "executeHookOnEvent": true,
                    "executeHookOnSynchronization": true,
                    "waitForSynchronization": true,
                    "keepFullObjectsInMemory": false,
                    "jqFilter": ENDPOINTSLICE_JQ,
                }]);
            }
            Hook::RecordKey => {
                c["beforeHelm"] = json!(10);
                c["kubernetes"] = json!([record_key::binding()]);
            }
        }
        c
    }

    /// Runs the hook on parsed inputs.
    pub fn run(
        self,
        schema: &SettingsSchema,
        contexts: &[BindingContext],
        values: &Value,
    ) -> Result<Output, HookError> {
        match self {
            Hook::Settings => run_settings(schema, values),
            Hook::ArgoRollouts => Ok(run_argo(contexts, values)),
            Hook::Rbac => run_rbac(schema, values),
            Hook::NetworkPolicy => run_network_policy(schema, contexts, values),
            Hook::RecordKey => record_key::run(contexts, values),
        }
    }
}

/// The `hook config` document (module-sdk `BatchHookConfig` v1).
pub fn batch_config() -> Value {
    json!({
        "version": "v1",
        "hooks": HOOKS.iter().map(|h| h.config()).collect::<Vec<_>>(),
        "has_settings_check": true,
    })
}

/// The `hook list` text.
pub fn list() -> String {
    let mut out = format!("Found {} items:\n", HOOKS.len());
    for (i, h) in HOOKS.iter().enumerate() {
        out.push_str(&format!("{i} - {}\n", h.name()));
    }
    out
}

/// Validates the settings in `values` against the schema and reads them.
fn checked_inputs(schema: &SettingsSchema, values: &Value) -> Result<Inputs, HookError> {
    let module = protocol::module_values(values, VALUES_KEY);
    let settings = settings::settings_of(&Value::Object(module.clone()));
    let violations = schema.violations(&settings);
    if !violations.is_empty() {
        return Err(HookError::InvalidSettings(violations));
    }
    // Defaults are filled in by addon-operator already; filling them in again
    // makes the hook independent of that (and of hand-written test values).
    let mut full = values.clone();
    let mut module = schema.with_defaults(&settings);
    if let Some(internal) = values.pointer(&format!("/{VALUES_KEY}/internal")) {
        module["internal"] = internal.clone();
    }
    full[VALUES_KEY] = module;
    Inputs::from_values(&full).map_err(HookError::InvalidSettings)
}

fn run_settings(schema: &SettingsSchema, values: &Value) -> Result<Output, HookError> {
    let inputs = checked_inputs(schema, values)?;
    let c = controller_config::convert(&inputs).map_err(HookError::InvalidSettings)?;
    let scope = c.watch_scope["mode"].as_str().unwrap_or_default().to_string();
    let values_patch = protocol::set_internal(
        values,
        VALUES_KEY,
        vec![
            ("reloadStrategy", json!(c.reload_strategy)),
            ("selectors", c.selectors),
            ("watchScope", c.watch_scope),
            ("controllerConfig", c.controller_config),
        ],
    );
    let metrics = vec![Metric::set(
        "pod_reloader_settings",
        "d8_pod_reloader_settings_info",
        1.0,
        &[("reload_strategy", &c.reload_strategy), ("watch_scope", &scope)],
    )];
    Ok(Output { values_patch, metrics, warnings: url_warnings(&inputs) })
}

/// Argo Rollouts is served: the CRD exists and serves `v1alpha1`.
fn argo_served(items: &[Item]) -> bool {
    items.iter().any(|i| {
        let served = match (&i.filter_result, &i.object) {
            (Some(f), _) if f.is_object() => f.get("served").and_then(Value::as_array).cloned().unwrap_or_default(),
            (_, Some(o)) if o.is_object() => o
                .pointer("/spec/versions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|v| v.get("served").and_then(Value::as_bool).unwrap_or(false))
                .filter_map(|v| v.get("name").cloned())
                .collect(),
            _ => Vec::new(),
        };
        served.iter().any(|v| v.as_str() == Some(ARGO_VERSION))
    })
}

fn run_argo(contexts: &[BindingContext], values: &Value) -> Output {
    let current = values.pointer(&format!("/{VALUES_KEY}/internal/argoRolloutsEnabled")).and_then(Value::as_bool);
    let enabled = match protocol::binding_state(contexts, ARGO_BINDING) {
        Some(items) => argo_served(&items),
        // Nothing known about the CRD in this run: keep what was detected.
        None => current.unwrap_or(false),
    };
    Output {
        values_patch: protocol::set_internal(values, VALUES_KEY, vec![("argoRolloutsEnabled", json!(enabled))]),
        metrics: vec![Metric::set(
            "pod_reloader_argo_rollouts",
            "d8_pod_reloader_argo_rollouts_enabled",
            if enabled { 1.0 } else { 0.0 },
            &[],
        )],
        ..Default::default()
    }
}

fn run_rbac(schema: &SettingsSchema, values: &Value) -> Result<Output, HookError> {
    let inputs = checked_inputs(schema, values)?;
    let r = rbac::rbac(&inputs);
    let count = |k: &str| r[k].as_array().map_or(0, Vec::len);
    let rules = count("clusterRules")
        + count("namespacedRules") * count("namespaces").max(1)
        + count("leaderElectionRules")
        + count("baselineStoreRules");
    let scope = if inputs.cluster_wide() { "ClusterWide" } else { "Namespaces" };
    Ok(Output {
        values_patch: protocol::set_internal(values, VALUES_KEY, vec![("rbac", r)]),
        metrics: vec![Metric::set(
            "pod_reloader_rbac",
            "d8_pod_reloader_rbac_rules",
            rules as f64,
            &[("watch_scope", scope)],
        )],
        ..Default::default()
    })
}

fn run_network_policy(
    schema: &SettingsSchema,
    contexts: &[BindingContext],
    values: &Value,
) -> Result<Output, HookError> {
    let inputs = checked_inputs(schema, values)?;
    let endpoints = apiserver_endpoints(contexts, values);
    let np = netpol::network_policy(&inputs, &endpoints).map_err(|v: Violation| HookError::InvalidSettings(vec![v]))?;
    let warnings = netpol::warnings(&inputs, !endpoints.is_empty());
    Ok(Output {
        values_patch: protocol::set_internal(
            values,
            VALUES_KEY,
            vec![
                ("apiserverEndpoints", Value::Array(endpoints.iter().map(Endpoint::to_value).collect())),
                ("networkPolicy", np),
            ],
        ),
        metrics: vec![
            Metric::set(
                "pod_reloader_network_policy",
                "d8_pod_reloader_apiserver_endpoints",
                endpoints.len() as f64,
                &[],
            ),
            Metric::set(
                "pod_reloader_network_policy",
                "d8_pod_reloader_network_policy_warnings",
                warnings.len() as f64,
                &[],
            ),
        ],
        warnings,
    })
}

/// The kube-apiserver endpoints: from the binding when this run tells
/// anything about it, else the ones found before.
fn apiserver_endpoints(contexts: &[BindingContext], values: &Value) -> Vec<Endpoint> {
    match protocol::binding_state(contexts, ENDPOINTS_BINDING) {
        Some(items) => netpol::endpoints(&items),
        None => values
            .pointer(&format!("/{VALUES_KEY}/internal/apiserverEndpoints"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Endpoint::from_value).collect())
            .unwrap_or_default(),
    }
}

/// The result of `hook check` (module-sdk `settingscheck.Result`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CheckResult {
    pub valid: bool,
    pub message: String,
    pub warnings: Vec<String>,
}

/// Checks a settings document (ModuleConfig `spec.settings`): the schema
/// first, then what the hooks would refuse when converting it.
pub fn check(schema: &SettingsSchema, settings: &Value) -> CheckResult {
    let settings = crate::schema::unwrap_settings(settings.clone(), VALUES_KEY);
    let mut violations = schema.violations(&settings);
    let mut warnings = Vec::new();
    if violations.is_empty() {
        let values = json!({VALUES_KEY: schema.with_defaults(&settings)});
        match Inputs::from_values(&values) {
            Ok(inputs) => {
                if let Err(v) = controller_config::convert(&inputs) {
                    violations.extend(v);
                }
                let s = &inputs.settings;
                if !inputs.cluster_wide() && (!s.namespace_selector.is_empty() || !s.namespaces_to_ignore.is_empty()) {
                    warnings.push(
                        "namespaceSelector and namespacesToIgnore are not used when namespaces is set (scoped mode)"
                            .into(),
                    );
                }
                if !inputs.alerting_enabled() && s.alerting.webhook.url.is_some() {
                    warnings
                        .push("alerting.webhook.url is set but alerting.enabled is false: no messages are sent".into());
                }
                if !s.webhook_mode.enabled && s.webhook_mode.url.is_some() {
                    warnings.push(
                        "webhookMode.url is set but webhookMode.enabled is false: workloads are rolled, nothing is \
                         posted"
                            .into(),
                    );
                }
                warnings.extend(webhook_warnings(&inputs));
            }
            Err(v) => violations.extend(v),
        }
    }
    CheckResult { valid: violations.is_empty(), message: join_violations(&violations), warnings }
}

/// Warnings about the alert webhook for `hook check` (never quoting the URL):
/// its URL, and what the NetworkPolicy cannot open for it.
fn webhook_warnings(inputs: &Inputs) -> Vec<String> {
    let mut out = url_warnings(inputs);
    out.extend(netpol::warnings(inputs, true));
    out
}

/// Warnings about the webhook URLs themselves (the settings hook logs them too).
fn url_warnings(inputs: &Inputs) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(targets) = netpol::webhook_targets(inputs) else { return out };
    for (w, target) in targets {
        let s = w.setting;
        if target.scheme.as_deref() == Some("http") {
            out.push(format!(
                "{s}.url uses http://: the messages, and any credentials or token in the URL, cross the \
                 network unencrypted; use https://"
            ));
        }
        if target.scheme.is_some() && w.port.is_some() {
            out.push(format!("{s}.port is used only with urlSecretRef; with url the port is the URL's"));
        }
    }
    out
}
