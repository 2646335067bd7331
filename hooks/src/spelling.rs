//! Deckhouse's spellings of the enum settings (ModuleConfig is Deckhouse's
//! surface, where every enum value is CamelCase) and the controller's
//! Reloader-compatible spellings the hooks write into its config file
//! (`--reload-strategy env-vars`, `--resources-to-ignore configmaps`,
//! `--ignored-workload-types jobs`, `ALERT_SINK=slack`, `--log-format json`).
//!
//! The schema admits only the left column; anything else here is a
//! violation naming the setting (the hooks may run on values the schema has
//! not seen, such as hand-written test values).

use pod_reloader_core::kinds::BUILTIN;

use crate::violation::Violation;

/// `reloadStrategy`.
pub const RELOAD_STRATEGIES: &[(&str, &str)] = &[("EnvVars", "env-vars"), ("Annotations", "annotations")];
/// `resourcesToIgnore` items.
pub const RESOURCES: &[(&str, &str)] = &[("ConfigMaps", "configmaps"), ("Secrets", "secrets")];
/// `ignoredWorkloadTypes` items: each built-in kind's `kind` and `plural`
/// (core/src/kinds.rs).
pub const WORKLOADS: &[(&str, &str)] = &workload_spellings();

const fn workload_spellings() -> [(&'static str, &'static str); BUILTIN.len()] {
    let mut out = [("", ""); BUILTIN.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = (BUILTIN[i].kind, BUILTIN[i].plural);
        i += 1;
    }
    out
}
/// `alerting.webhook.sink`.
pub const SINKS: &[(&str, &str)] =
    &[("Slack", "slack"), ("Teams", "teams"), ("GChat", "gchat"), ("Webhook", "webhook")];
/// `logFormat`.
pub const LOG_FORMATS: &[(&str, &str)] = &[("Text", "text"), ("JSON", "json")];
/// `logLevel`.
pub const LOG_LEVELS: &[(&str, &str)] = &[("Debug", "debug"), ("Info", "info"), ("Warn", "warn"), ("Error", "error")];

/// The controller's spelling of the Deckhouse spelling `value` of `setting`
/// (a JSON path such as `$.logLevel`).
pub fn to_controller(table: &[(&str, &'static str)], setting: &str, value: &str) -> Result<&'static str, Violation> {
    table.iter().find(|(deckhouse, _)| *deckhouse == value).map(|(_, controller)| *controller).ok_or_else(|| {
        let allowed: Vec<String> = table.iter().map(|(d, _)| format!("{d:?}")).collect();
        Violation {
            path: setting.into(),
            message: format!("{value:?} is not an allowed value; allowed values: {}", allowed.join(", ")),
        }
    })
}

/// Every item of a list setting in the controller's spelling.
pub fn list_to_controller(
    table: &[(&str, &'static str)],
    setting: &str,
    values: &[String],
) -> Result<Vec<String>, Violation> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| to_controller(table, &format!("{setting}[{i}]"), v).map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deckhouse_spellings_become_reloader_flag_values() {
        assert_eq!(to_controller(RELOAD_STRATEGIES, "$.reloadStrategy", "EnvVars").unwrap(), "env-vars");
        assert_eq!(to_controller(SINKS, "$.s", "GChat").unwrap(), "gchat");
        assert_eq!(to_controller(LOG_FORMATS, "$.f", "JSON").unwrap(), "json");
        assert_eq!(
            list_to_controller(WORKLOADS, "$.w", &["CronJob".into(), "Rollout".into()]).unwrap(),
            ["cronjobs", "rollouts"]
        );
    }

    /// The schema's enum of `ignoredWorkloadTypes` names exactly the built-in kinds.
    #[test]
    fn the_schema_lists_every_workload_kind() {
        let schema: serde_json::Value =
            serde_saphyr::from_str(crate::schema::EMBEDDED_CONFIG_VALUES).expect("config-values.yaml");
        let listed: Vec<&str> = schema["properties"]["ignoredWorkloadTypes"]["items"]["enum"]
            .as_array()
            .expect("an enum")
            .iter()
            .filter_map(serde_json::Value::as_str)
            .collect();
        let mut listed = listed;
        listed.sort_unstable();
        let mut kinds: Vec<&str> = WORKLOADS.iter().map(|(k, _)| *k).collect();
        kinds.sort_unstable();
        assert_eq!(listed, kinds);
    }

    #[test]
    fn reloader_spellings_are_refused_with_the_allowed_values() {
        let e = to_controller(RELOAD_STRATEGIES, "$.reloadStrategy", "env-vars").unwrap_err();
        assert_eq!(e.path, "$.reloadStrategy");
        assert!(e.message.contains("\"EnvVars\", \"Annotations\""), "{e}");
        let e = list_to_controller(RESOURCES, "$.resourcesToIgnore", &["Secrets".into(), "pods".into()]).unwrap_err();
        assert_eq!(e.path, "$.resourcesToIgnore[1]");
    }
}
