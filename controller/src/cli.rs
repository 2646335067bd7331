//! Command line: Reloader-compatible flags laid over the `--config` file.
//! A flag that is given overrides the file; one that is not leaves it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use pod_reloader_core::settings::{CustomWorkload, Settings};

use crate::webhook_mode::WebhookUrl;

#[derive(Debug, Parser)]
#[command(name = "pod-reloader", version, about = "Rolls workloads when the ConfigMaps and Secrets they use change.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunFlags,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller (the default).
    Run,
    /// Show which ConfigMaps and Secrets a workload follows and why, their
    /// current hash against the hash the workload runs, and what a change would do.
    Explain {
        /// <kind>/<name>, e.g. deployment/web
        target: String,
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
}

/// Flags of the controller. Names follow Stakater Reloader's.
#[derive(Debug, Args, Default)]
pub struct RunFlags {
    /// Settings file (YAML or JSON), as rendered by the Helm chart.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:9090", global = true)]
    pub listen_address: String,
    /// env-vars or annotations (EnvVars/Annotations accepted too).
    #[arg(long)]
    pub reload_strategy: Option<String>,
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub reload_on_create: Option<bool>,
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub reload_on_delete: Option<bool>,
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub auto_reload_all: Option<bool>,
    /// Comma list: watch only these namespaces.
    #[arg(long, value_delimiter = ',', env = "KUBERNETES_NAMESPACE")]
    pub namespaces: Option<Vec<String>>,
    #[arg(long, value_delimiter = ',')]
    pub namespaces_to_ignore: Option<Vec<String>>,
    #[arg(long)]
    pub namespace_selector: Option<String>,
    #[arg(long)]
    pub resource_label_selector: Option<String>,
    /// configmaps or secrets.
    #[arg(long, value_delimiter = ',')]
    pub resources_to_ignore: Option<Vec<String>>,
    /// jobs, cronjobs, deployments, statefulsets, daemonsets, rollouts.
    #[arg(long, value_delimiter = ',')]
    pub ignored_workload_types: Option<Vec<String>>,
    /// A custom resource rolled like a Deployment, repeatable:
    /// `<group>/<version>/<Kind>/<plural>[=<template path>]`, e.g.
    /// `example.com/v1/Widget/widgets=spec.template`.
    #[arg(long = "custom-workload", value_parser = custom_workload)]
    pub custom_workloads: Option<Vec<CustomWorkload>>,
    /// Watch and reload Argo Rollouts (Reloader spells it --is-Argo-Rollouts).
    #[arg(long, alias = "is-Argo-Rollouts", num_args = 0..=1, default_missing_value = "true")]
    pub is_argo_rollouts: Option<bool>,
    /// Reload on SecretProviderClass changes (Secrets Store CSI driver), seen in
    /// the SecretProviderClassPodStatus objects the driver writes (Reloader's flag;
    /// also read by `explain`, so it may follow the subcommand).
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true", value_parser = go_bool)]
    pub enable_csi_integration: Option<bool>,
    /// Changes to one workload within this window land in one rollout (0 turns it off).
    #[arg(long)]
    pub coalesce_window: Option<String>,
    /// Leader election on a Lease (Reloader's --enable-ha).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub enable_ha: Option<bool>,
    /// Alert on every reload (Reloader's ALERT_ON_RELOAD).
    #[arg(long, env = "ALERT_ON_RELOAD", num_args = 0..=1, default_missing_value = "true")]
    pub alert_on_reload: Option<bool>,
    /// slack, teams, gchat or webhook (Reloader's ALERT_SINK).
    #[arg(long, env = "ALERT_SINK")]
    pub alert_sink: Option<String>,
    /// Prefix of every alert message (Reloader's ALERT_ADDITIONAL_INFO).
    #[arg(long, env = "ALERT_ADDITIONAL_INFO")]
    pub alert_additional_info: Option<String>,
    /// "" or text, or json.
    #[arg(long)]
    pub log_format: Option<String>,
    #[arg(long)]
    pub log_level: Option<String>,
    /// File holding the 32-byte key of the rolled-to record (the module mounts
    /// it from a Secret); without it the record holds bare SHA-1s.
    #[arg(long, global = true)]
    pub record_key_file: Option<String>,
    /// After reloading a StatefulSet with updateStrategy OnDelete, delete its
    /// pods one at a time (highest ordinal first, each after the previous
    /// replacement is Ready) so they restart; false: only patch the template.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = go_bool)]
    pub statefulset_on_delete_restart: Option<bool>,
    /// A reloaded CronJob also starts a Job from its new template at once, as
    /// Stakater Reloader does (false: the job template is patched only); the
    /// CronJob annotation pod-reloader.deckhouse.io/cronjob-trigger overrides it.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = go_bool)]
    pub cronjob_trigger: Option<bool>,
    /// Reloader's; accepted, nothing to do: every start reconciles (see the start log).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = go_bool)]
    pub sync_after_restart: Option<bool>,
    /// Reloader's; accepted, nothing to do: there is no Go profiler here.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = go_bool)]
    pub enable_pprof: Option<bool>,
    /// Reloader's; accepted with --enable-pprof, nothing to do.
    #[arg(long)]
    pub pprof_addr: Option<String>,
    /// Accepted (Reloader's chart has passed it), nothing to do: nothing here is OpenShift-specific.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = go_bool)]
    pub is_openshift: Option<bool>,
    /// Export reloader_reload_executed_total_by_namespace (Reloader's METRICS_COUNT_BY_NAMESPACE=enabled).
    #[arg(long, env = "METRICS_COUNT_BY_NAMESPACE", num_args = 0..=1, default_missing_value = "enabled", value_parser = enabled_or_not)]
    pub metrics_count_by_namespace: Option<bool>,
    /// At most this many workload rollouts start per second across the cluster (0: no limit).
    #[arg(long)]
    pub max_rollouts_per_second: Option<u32>,
    /// Reloader's webhook mode: POST {"webhook":"update successful"} to this URL instead of rolling workloads.
    /// Prefer --webhook-url-file (a mounted Secret): a flag shows in the process list.
    #[arg(long, env = "WEBHOOK_URL", hide_env_values = true, value_parser = WebhookUrl::unchecked)]
    pub webhook_url: Option<WebhookUrl>,
    /// A file holding the webhook mode's URL.
    #[arg(long)]
    pub webhook_url_file: Option<String>,
    /// Reloader's annotation-name flags: each replaces the Reloader-family
    /// name of one annotation (`pod-reloader.deckhouse.io/*` stays).
    /// Default reloader.stakater.com/auto.
    #[arg(long)]
    pub auto_annotation: Option<String>,
    /// Default configmap.reloader.stakater.com/auto.
    #[arg(long)]
    pub configmap_auto_annotation: Option<String>,
    /// Default secret.reloader.stakater.com/auto.
    #[arg(long)]
    pub secret_auto_annotation: Option<String>,
    /// Default configmap.reloader.stakater.com/reload.
    #[arg(long)]
    pub configmap_annotation: Option<String>,
    /// Default secret.reloader.stakater.com/reload.
    #[arg(long)]
    pub secret_annotation: Option<String>,
    /// Default reloader.stakater.com/search.
    #[arg(long)]
    pub auto_search_annotation: Option<String>,
    /// Default reloader.stakater.com/match.
    #[arg(long)]
    pub search_match_annotation: Option<String>,
    /// Default reloader.stakater.com/ignore.
    #[arg(long)]
    pub ignore_annotation: Option<String>,
    /// Default deployment.reloader.stakater.com/pause-period.
    #[arg(long)]
    pub pause_deployment_annotation: Option<String>,
    /// Default deployment.reloader.stakater.com/paused-at.
    #[arg(long)]
    pub pause_deployment_time_annotation: Option<String>,
    /// Hidden, for tests: `paged` lists in pages as where the apiserver
    /// refuses streaming lists (`streaming`, the default, falls back on its own).
    #[arg(long, hide = true, value_parser = ["streaming", "paged"])]
    pub initial_list: Option<String>,
}

/// Reloader's `METRICS_COUNT_BY_NAMESPACE`: `enabled` turns it on; `true`
/// and `false`/`disabled`/empty are accepted too; anything else is refused
/// rather than silently read as off.
fn enabled_or_not(s: &str) -> Result<bool, String> {
    match s {
        "enabled" | "true" => Ok(true),
        "" | "disabled" | "false" => Ok(false),
        other => Err(format!("{other:?} is neither enabled nor disabled")),
    }
}

/// `<group>/<version>/<Kind>/<plural>[=<template path>]` (the path
/// `spec.template` when left out); the fields are checked with the rest of
/// the settings.
fn custom_workload(s: &str) -> Result<CustomWorkload, String> {
    let want =
        "want <group>/<version>/<Kind>/<plural>=<template path>, e.g. example.com/v1/Widget/widgets=spec.template";
    let (resource, template_path) = s.split_once('=').unwrap_or((s, "spec.template"));
    let parts: Vec<&str> = resource.split('/').collect();
    let [group, version, kind, plural] = parts[..] else {
        return Err(want.into());
    };
    Ok(CustomWorkload {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        plural: plural.into(),
        template_path: template_path.into(),
    })
}

/// Parses a boolean as Go's `strconv.ParseBool` does (Reloader's flag parser):
/// 1, t, T, TRUE, true, True and their false counterparts.
fn go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        other => Err(format!("{other:?} is not a boolean (want true or false)")),
    }
}

/// Why a Reloader flag that is accepted needs nothing here: one line per flag given.
const SYNC_AFTER_RESTART: &str = "pod-reloader is level-triggered: after every start it compares each workload's \
    recorded hashes with its ConfigMaps and Secrets and reloads what changed while it was down, without replaying creates";
const PPROF: &str = "pprof is Go's profiler and pod-reloader is not a Go program; its work and memory are in /metrics";
const OPENSHIFT: &str = "nothing here is OpenShift-specific: Deployments, DaemonSets, StatefulSets, CronJobs, Jobs and \
    Rollouts are handled alike everywhere, and DeploymentConfigs are not reloaded (Reloader dropped them in v1.4.5)";

impl RunFlags {
    /// Lays the given flags over `settings`.
    pub fn overlay(&self, mut s: Settings) -> Settings {
        fn set<T: Clone>(dst: &mut T, src: &Option<T>) {
            if let Some(v) = src {
                *dst = v.clone();
            }
        }
        set(&mut s.reload_strategy, &self.reload_strategy);
        set(&mut s.reload_on_create, &self.reload_on_create);
        set(&mut s.reload_on_delete, &self.reload_on_delete);
        set(&mut s.auto_reload_all, &self.auto_reload_all);
        set(&mut s.namespaces, &self.namespaces.as_ref().map(|v| clean(v)));
        set(&mut s.namespaces_to_ignore, &self.namespaces_to_ignore.as_ref().map(|v| clean(v)));
        set(&mut s.namespace_selector, &self.namespace_selector);
        set(&mut s.resource_label_selector, &self.resource_label_selector);
        set(&mut s.resources_to_ignore, &self.resources_to_ignore.as_ref().map(|v| clean(v)));
        set(&mut s.ignored_workload_types, &self.ignored_workload_types.as_ref().map(|v| clean(v)));
        set(&mut s.argo_rollouts, &self.is_argo_rollouts);
        set(&mut s.coalesce_window, &self.coalesce_window);
        set(&mut s.leader_election.enabled, &self.enable_ha);
        set(&mut s.alerting.enabled, &self.alert_on_reload);
        set(&mut s.alerting.sink, &self.alert_sink);
        set(&mut s.alerting.additional_info, &self.alert_additional_info);
        set(&mut s.log_format, &self.log_format);
        set(&mut s.log_level, &self.log_level);
        set(&mut s.record_key_file, &self.record_key_file);
        set(&mut s.metrics_count_by_namespace, &self.metrics_count_by_namespace);
        set(&mut s.custom_workloads, &self.custom_workloads);
        set(&mut s.max_rollouts_per_second, &self.max_rollouts_per_second);
        set(&mut s.webhook_url_file, &self.webhook_url_file);
        set(&mut s.csi_integration, &self.enable_csi_integration);
        let a = &mut s.annotations;
        let renames = [
            (&mut a.auto, &self.auto_annotation),
            (&mut a.config_map_auto, &self.configmap_auto_annotation),
            (&mut a.secret_auto, &self.secret_auto_annotation),
            (&mut a.config_map_reload, &self.configmap_annotation),
            (&mut a.secret_reload, &self.secret_annotation),
            (&mut a.search, &self.auto_search_annotation),
            (&mut a.match_, &self.search_match_annotation),
            (&mut a.ignore, &self.ignore_annotation),
            (&mut a.pause_period, &self.pause_deployment_annotation),
            (&mut a.paused_at, &self.pause_deployment_time_annotation),
        ];
        for (dst, flag) in renames {
            if flag.is_some() {
                dst.clone_from(flag);
            }
        }
        set(&mut s.stateful_set_on_delete_restart, &self.statefulset_on_delete_restart);
        set(&mut s.cron_job_trigger, &self.cronjob_trigger);
        s
    }
}

impl RunFlags {
    /// The Reloader flags given that have no effect here, each with the
    /// reason, for one log line apiece at start.
    pub fn accepted_without_effect(&self) -> Vec<(&'static str, &'static str)> {
        let given = [
            ("--sync-after-restart", self.sync_after_restart.is_some(), SYNC_AFTER_RESTART),
            ("--enable-pprof", self.enable_pprof.is_some(), PPROF),
            ("--pprof-addr", self.pprof_addr.is_some(), PPROF),
            ("--is-openshift", self.is_openshift.is_some(), OPENSHIFT),
        ];
        given.into_iter().filter(|(_, given, _)| *given).map(|(flag, _, why)| (flag, why)).collect()
    }
}

/// Trims entries and drops empty ones (`--namespaces=a,,b ` → a, b).
fn clean(v: &[String]) -> Vec<String> {
    v.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_absent_flags_do_not() {
        let cli = Cli::try_parse_from([
            "pod-reloader",
            "--reload-strategy=annotations",
            "--auto-reload-all",
            "--namespaces=a, b,",
            "--is-Argo-Rollouts=true",
            "--record-key-file=/k",
        ])
        .unwrap();
        let file = Settings { reload_on_delete: true, coalesce_window: "2s".into(), ..Default::default() };
        let s = cli.run.overlay(file);
        assert_eq!(s.reload_strategy, "annotations");
        assert!(s.auto_reload_all && s.reload_on_delete && s.argo_rollouts);
        assert_eq!(s.namespaces, ["a", "b"]);
        assert_eq!(s.coalesce_window, "2s");
        assert_eq!(s.record_key_file, "/k");
    }

    /// Settings whose flag is named differently (Reloader's names), and
    /// those only the config file sets (the module's chart wires them).
    const FLAG_OF: &[(&str, &str)] = &[
        ("argoRollouts", "is_argo_rollouts"),
        ("leaderElection.enabled", "enable_ha"),
        ("alerting.enabled", "alert_on_reload"),
        ("alerting.sink", "alert_sink"),
        ("alerting.additionalInfo", "alert_additional_info"),
        ("csiIntegration", "enable_csi_integration"),
        ("statefulSetOnDeleteRestart", "statefulset_on_delete_restart"),
        ("cronJobTrigger", "cronjob_trigger"),
    ];
    const FILE_ONLY: &[&str] = &["leaderElection.leaseName", "alerting.webhookUrlFile"];

    #[test]
    fn annotation_flags_rename_and_errors_name_the_flag() {
        use pod_reloader_core::annotations::{AUTO, PAUSED_AT, RENAMEABLE};
        let s = parse(&["--auto-annotation=example.com/auto", "--pause-deployment-time-annotation", "example.com/at"])
            .run
            .overlay(Settings::default());
        let names = s.validate().unwrap().annotation_names;
        assert_eq!(names.key(AUTO).stakater, "example.com/auto");
        assert_eq!(names.key(PAUSED_AT).stakater, "example.com/at");
        // Every flag of the table exists and reaches its setting.
        for (i, which) in RENAMEABLE.iter().enumerate() {
            let s = parse(&[&format!("{}=x.io/n{i}", which.flag)]).run.overlay(Settings::default());
            let e = Settings { annotations: s.annotations.clone(), ..Settings::default() }.validate();
            assert_eq!(e.unwrap().annotation_names.key(which.key).stakater, format!("x.io/n{i}"), "{}", which.flag);
            let bad = parse(&[&format!("{}=not valid", which.flag)]).run.overlay(Settings::default());
            let e = bad.validate().unwrap_err().to_string();
            assert!(e.contains(which.flag) && e.contains(which.setting), "{e}");
        }
    }

    fn leaves(v: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
        match v.as_object() {
            Some(m) => m.iter().for_each(|(k, v)| {
                leaves(v, &if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") }, out)
            }),
            None => out.push(prefix.to_string()),
        }
    }

    #[test]
    fn every_setting_has_a_flag_or_is_file_only() {
        use clap::CommandFactory;
        let cmd = Cli::command();
        let flags: Vec<&str> = cmd.get_arguments().map(|a| a.get_id().as_str()).collect();
        // Settings left out of a written file when unset are set here, so they are walked too.
        let annotations = serde_json::from_value(serde_json::json!({
            "auto": "a", "configMapAuto": "a", "secretAuto": "a", "configMapReload": "a", "secretReload": "a",
            "search": "a", "match": "a", "ignore": "a", "pausePeriod": "a", "pausedAt": "a",
        }))
        .unwrap();
        let all = Settings { annotations, ..Settings::default() };
        let mut settings = Vec::new();
        leaves(&serde_json::to_value(all).unwrap(), "", &mut settings);
        let renames = pod_reloader_core::annotations::RENAMEABLE.map(|r| (r.setting, r.flag));
        for setting in &settings {
            if FILE_ONLY.contains(&setting.as_str()) {
                continue;
            }
            let snake: String = setting
                .chars()
                .flat_map(|c| if c.is_ascii_uppercase() { vec!['_', c.to_ascii_lowercase()] } else { vec![c] })
                .collect();
            let renamed = renames.iter().find(|(s, _)| s == setting).map(|(_, f)| f[2..].replace('-', "_"));
            let flag = match FLAG_OF.iter().find(|(s, _)| s == setting) {
                Some((_, f)) => f.to_string(),
                None => renamed.unwrap_or(snake),
            };
            let flag = flag.as_str();
            assert!(flags.contains(&flag), "setting {setting} has no flag {flag} (add it, or list it as file-only)");
        }
    }

    #[test]
    fn enable_csi_integration_in_reloader_spellings() {
        let file = Settings::default();
        assert!(!parse(&[]).run.overlay(file.clone()).csi_integration);
        assert!(parse(&["--enable-csi-integration"]).run.overlay(file.clone()).csi_integration);
        assert!(parse(&["--enable-csi-integration=True"]).run.overlay(file.clone()).csi_integration);
        let on = Settings { csi_integration: true, ..Default::default() };
        assert!(!parse(&["--enable-csi-integration=false"]).run.overlay(on).csi_integration);
    }

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("pod-reloader").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?} refused: {e}"))
    }

    fn flags_of(cli: &Cli) -> Vec<&'static str> {
        cli.run.accepted_without_effect().into_iter().map(|(f, _)| f).collect()
    }

    #[test]
    fn reloader_flags_without_effect_are_accepted_in_every_spelling() {
        // Booleans bare, with =value (Go's spellings) and, as clap allows, a separate value.
        for args in [
            &["--sync-after-restart", "--enable-pprof", "--pprof-addr=:6060", "--is-openshift"][..],
            &["--sync-after-restart=true", "--enable-pprof=True", "--pprof-addr", ":6061", "--is-openshift=1"],
            &["--sync-after-restart=false", "--enable-pprof=F", "--pprof-addr=127.0.0.1:6060", "--is-openshift=FALSE"],
        ] {
            let cli = parse(args);
            assert_eq!(
                flags_of(&cli),
                ["--sync-after-restart", "--enable-pprof", "--pprof-addr", "--is-openshift"],
                "{args:?}"
            );
        }
        let cli = parse(&["--enable-pprof", "--pprof-addr", ":6060", "--sync-after-restart", "true"]);
        assert_eq!(cli.run.enable_pprof, Some(true));
        assert_eq!(cli.run.pprof_addr.as_deref(), Some(":6060"));
        assert_eq!(cli.run.sync_after_restart, Some(true));
    }

    #[test]
    fn each_flag_without_effect_says_why() {
        let cli = parse(&["--sync-after-restart", "--enable-pprof", "--pprof-addr=:6060", "--is-openshift"]);
        let notes = cli.run.accepted_without_effect();
        assert!(notes.iter().find(|(f, _)| *f == "--sync-after-restart").unwrap().1.contains("level-triggered"));
        assert!(notes.iter().find(|(f, _)| *f == "--enable-pprof").unwrap().1.contains("/metrics"));
        assert!(notes.iter().find(|(f, _)| *f == "--is-openshift").unwrap().1.contains("OpenShift"));
        assert!(parse(&[]).run.accepted_without_effect().is_empty(), "nothing logged when none is given");
    }

    #[test]
    fn flags_without_effect_change_no_setting() {
        let with = parse(&["--sync-after-restart", "--enable-pprof", "--pprof-addr=:6060", "--is-openshift"]);
        let without = parse(&[]);
        let (a, b) = (with.run.overlay(Settings::default()), without.run.overlay(Settings::default()));
        assert_eq!(a, b);
    }

    #[test]
    fn bad_boolean_is_refused_with_the_flag_named() {
        let e = Cli::try_parse_from(["pod-reloader", "--enable-pprof=yes"]).unwrap_err().to_string();
        assert!(e.contains("--enable-pprof") && e.contains("\"yes\" is not a boolean"), "{e}");
    }

    #[test]
    fn custom_workload_flags_repeat() {
        let s = parse(&[
            "--custom-workload=example.com/v1/Widget/widgets=spec.template",
            "--custom-workload",
            "ci.example.org/v1beta1/Runner/runners=spec.pod.template",
        ])
        .run
        .overlay(Settings::default());
        assert_eq!(s.custom_workloads.len(), 2);
        assert_eq!(s.custom_workloads[1].group, "ci.example.org");
        assert_eq!(s.custom_workloads[1].template_path, "spec.pod.template");
        assert!(s.validate().is_ok());
        let s = parse(&["--custom-workload=example.com/v1/Widget/widgets"]).run.overlay(Settings::default());
        assert_eq!(s.custom_workloads[0].template_path, "spec.template");
        for bad in ["example.com/v1/Widget=spec.template", "example.com/v1/Widget/widgets/x"] {
            let e = Cli::try_parse_from(["pod-reloader", &format!("--custom-workload={bad}")]).unwrap_err();
            assert!(e.to_string().contains("want <group>/<version>/<Kind>/<plural>"), "{bad}: {e}");
        }
    }

    #[test]
    fn is_argo_rollouts_keeps_its_effect() {
        let s = parse(&["--is-Argo-Rollouts=true"]).run.overlay(Settings::default());
        assert!(s.argo_rollouts);
        let s = parse(&["--is-Argo-Rollouts"]).run.overlay(Settings::default());
        assert!(s.argo_rollouts);
        let s =
            parse(&["--is-Argo-Rollouts=false"]).run.overlay(Settings { argo_rollouts: true, ..Default::default() });
        assert!(!s.argo_rollouts);
    }

    #[test]
    fn metrics_count_by_namespace_takes_reloaders_value() {
        let on = |args: &[&str]| parse(args).run.overlay(Settings::default()).metrics_count_by_namespace;
        assert!(on(&["--metrics-count-by-namespace=enabled"]));
        assert!(on(&["--metrics-count-by-namespace"]));
        assert!(!on(&["--metrics-count-by-namespace=disabled"]));
        let e = Cli::try_parse_from(["pod-reloader", "--metrics-count-by-namespace=yes"]).unwrap_err().to_string();
        assert!(e.contains("\"yes\" is neither enabled nor disabled"), "{e}");
    }

    #[test]
    fn webhook_url_flag_never_shows_in_debug_output() {
        let cli = parse(&["--webhook-url=https://hooks.example/T0K3N"]);
        assert!(cli.run.webhook_url.is_some());
        assert!(!format!("{cli:?}").contains("T0K3N"));
    }

    #[test]
    fn reloader_log_levels_fatal_and_panic_mean_error() {
        for level in ["fatal", "panic"] {
            let s = parse(&[&format!("--log-level={level}")]).run.overlay(Settings::default());
            assert_eq!(s.validate().unwrap().log_level, "error", "{level}");
        }
    }
}
