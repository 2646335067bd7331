//! The controller's RBAC: exactly the verbs the controller calls, for what
//! the settings enable (controller/src: watch.rs lists and watches, reload.rs
//! reads a workload with get before patching it, events.rs records through
//! kube's Recorder, leader.rs holds the Lease through kube-lease-manager):
//!
//! - ConfigMaps/Secrets: list/watch (reflectors; never a get), minus the kind
//!   in `resourcesToIgnore`.
//! - Workloads: apps deployments/daemonsets/statefulsets get/list/watch/patch,
//!   batch cronjobs get/list/watch/patch (the job template is patched), jobs
//!   get/list/watch/create/delete/patch (a Job is recreated; patch records
//!   the rolled-to hashes), argoproj.io rollouts get/list/watch/patch only
//!   when Argo Rollouts is served; kinds in `ignoredWorkloadTypes` are left out;
//!   each kind of `customWorkloads` get/list/watch/patch (core/src/kinds.rs);
//!   with Rollouts and Deployments ignored, deployments get/list/watch (a
//!   Rollout's workloadRef names a Deployment whose template it follows).
//! - Secrets Store CSI driver, only with `csiIntegration`:
//!   secretproviderclasspodstatuses list/watch (watch_spc.rs's watcher) and
//!   secretproviderclasses get (their `ignore`/`match` annotations, read
//!   when a class changes).
//! - Pods: list/delete, only with `statefulSetOnDeleteRestart` (default on) and
//!   StatefulSets not ignored: the pods of an OnDelete StatefulSet are deleted
//!   in order after a reload (never get, watch or patch).
//! - Jobs create alone when Jobs are ignored but `cronJobTrigger` makes a
//!   reloaded CronJob start one (controller/src/cronjob_trigger.rs).
//! - Events: events.k8s.io create/patch (kube's Recorder writes only
//!   `events.k8s.io/v1` Events; a repeated Event is patched).
//! - Namespaces list/watch only with a `namespaceSelector` (cluster-wide).
//! - Leases in the module's namespace only with leader election (HA): get and
//!   patch on the Lease `pod-reloader` by name; create, which RBAC cannot
//!   restrict by name (the name is not known before the object exists), in
//!   a rule of its own.
//!
//! - ConfigMaps in the module's namespace, always: the baseline store
//!   (controller/src/baseline_store.rs) lists and watches its shards by
//!   label, creates them, replaces them with a resourceVersion precondition
//!   (update) and reads one again on a conflict (get). Shard names are not
//!   known before the store grows, so no `resourceNames`.
//!
//! Cluster-wide mode: one ClusterRole. Scoped mode (`namespaces`): a Role and
//! a RoleBinding in each listed namespace, no ClusterRole.

use pod_reloader_core::kinds;
use serde_json::{Value, json};

use crate::settings::{CHART_NAME, Inputs};

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": [group], "resources": resources, "verbs": verbs})
}

/// The rules every Role (scoped) or the ClusterRole (cluster-wide) holds.
fn namespaced_rules(inputs: &Inputs) -> Vec<Value> {
    let mut rules = Vec::new();
    let resources: Vec<&str> = ["configmaps", "secrets"].into_iter().filter(|r| inputs.resource_enabled(r)).collect();
    if !resources.is_empty() {
        rules.push(rule("", &resources, &["list", "watch"]));
    }
    // From the kinds' descriptors: consecutive kinds of one group with the
    // same verbs share a rule.
    let mut kinds: Vec<(&str, Vec<&str>, &[&str])> = Vec::new();
    let builtin = kinds::BUILTIN.iter().copied().filter(|s| inputs.workload_enabled(s));
    for spec in builtin.chain(inputs.custom_kinds()) {
        match kinds.last_mut() {
            Some((group, resources, verbs)) if *group == spec.group && *verbs == spec.verbs => {
                resources.push(spec.plural)
            }
            _ => kinds.push((spec.group, vec![spec.plural], spec.verbs)),
        }
    }
    rules.extend(kinds.iter().map(|(group, resources, verbs)| rule(group, resources, verbs)));
    // A Rollout with a workloadRef follows the template of the Deployment it
    // names (controller/src/workload_ref.rs): read Deployments even when
    // they are not rolled themselves.
    let reads_deployments = kinds::BUILTIN.iter().any(|s| s.workload_ref && inputs.workload_enabled(s));
    if reads_deployments && !inputs.workload_enabled(&kinds::DEPLOYMENT) {
        rules.push(rule(kinds::DEPLOYMENT.group, &[kinds::DEPLOYMENT.plural], &["get", "list", "watch"]));
    }
    if inputs.settings.csi_integration {
        rules.push(rule(CSI_GROUP, &["secretproviderclasspodstatuses"], &["list", "watch"]));
        rules.push(rule(CSI_GROUP, &["secretproviderclasses"], &["get"]));
    }
    if !inputs.workload_enabled(&kinds::JOB) && inputs.workload_enabled(&kinds::CRONJOB) && inputs.cron_job_trigger() {
        // Jobs are not reloaded, but reloaded CronJobs start one (cronJobTrigger).
        rules.push(rule(kinds::JOB.group, &[kinds::JOB.plural], &["create"]));
    }
    // OnDelete StatefulSets: their pods are listed (by the StatefulSet's
    // selector) and deleted one at a time after a reload (controller/src/ondelete.rs).
    if inputs.stateful_set_on_delete_restart() && inputs.workload_enabled(&kinds::STATEFULSET) {
        rules.push(rule("", &["pods"], &["list", "delete"]));
    }
    rules.push(rule("events.k8s.io", &["events"], &["create", "patch"]));
    rules
}

/// The Secrets Store CSI driver's API group.
const CSI_GROUP: &str = "secrets-store.csi.x-k8s.io";

/// `internal.rbac`: the ClusterRole's rules (empty in the scoped mode), the
/// namespaces that get a Role with `namespacedRules`, and the rules of the
/// leader-election Role (empty without HA), and the rules of the baseline
/// store's Role in the module's namespace.
pub fn rbac(inputs: &Inputs) -> Value {
    let store_rules = vec![rule("", &["configmaps"], &["get", "list", "watch", "create", "update"])];
    let rules = namespaced_rules(inputs);
    let lease_rules: Vec<Value> = if inputs.high_availability() {
        let mut named = rule("coordination.k8s.io", &["leases"], &["get", "patch"]);
        named["resourceNames"] = json!([CHART_NAME]);
        vec![named, rule("coordination.k8s.io", &["leases"], &["create"])]
    } else {
        Vec::new()
    };
    if inputs.cluster_wide() {
        let mut cluster_rules = rules;
        if !inputs.settings.namespace_selector.trim().is_empty() {
            cluster_rules.push(rule("", &["namespaces"], &["list", "watch"]));
        }
        json!({
            "clusterRules": cluster_rules,
            "namespaces": [],
            "namespacedRules": [],
            "leaderElectionRules": lease_rules,
            "baselineStoreRules": store_rules,
        })
    } else {
        json!({
            "clusterRules": [],
            "namespaces": inputs.settings.namespaces,
            "namespacedRules": rules,
            "leaderElectionRules": lease_rules,
            "baselineStoreRules": store_rules,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(settings: Value, argo: bool) -> Inputs {
        let mut module = settings;
        module["internal"] = json!({"argoRolloutsEnabled": argo});
        Inputs::from_values(&json!({"podReloader": module})).expect("inputs")
    }

    fn resources(rules: &Value) -> Vec<String> {
        rules
            .as_array()
            .expect("rules")
            .iter()
            .flat_map(|r| {
                let g = r["apiGroups"][0].as_str().unwrap_or_default().to_string();
                r["resources"]
                    .as_array()
                    .expect("resources")
                    .iter()
                    .map(move |x| format!("{g}/{}", x.as_str().unwrap_or_default()))
            })
            .collect()
    }

    #[test]
    fn cluster_wide_defaults() {
        let r = rbac(&inputs(json!({}), false));
        assert_eq!(
            resources(&r["clusterRules"]),
            [
                "/configmaps",
                "/secrets",
                "apps/deployments",
                "apps/daemonsets",
                "apps/statefulsets",
                "batch/cronjobs",
                "batch/jobs",
                "/pods",
                "events.k8s.io/events"
            ]
        );
        assert_eq!(r["clusterRules"][0]["verbs"], json!(["list", "watch"]), "no get on ConfigMaps/Secrets");
        assert_eq!(r["clusterRules"][4]["verbs"], json!(["list", "delete"]), "pods: list and delete only");
        assert_eq!(r["namespaces"], json!([]));
        assert_eq!(r["leaderElectionRules"], json!([]));
        // The baseline store's shards in the module's namespace, HA or not.
        assert_eq!(
            r["baselineStoreRules"],
            json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "create", "update"]}])
        );
    }

    #[test]
    fn scoped_with_argo_and_ignores() {
        let r = rbac(&inputs(
            json!({"namespaces": ["shop"], "resourcesToIgnore": ["Secrets"], "ignoredWorkloadTypes": ["Job", "DaemonSet"], "highAvailability": true}),
            true,
        ));
        assert_eq!(r["clusterRules"], json!([]));
        assert_eq!(r["namespaces"], json!(["shop"]));
        assert_eq!(
            resources(&r["namespacedRules"]),
            [
                "/configmaps",
                "apps/deployments",
                "apps/statefulsets",
                "batch/cronjobs",
                "argoproj.io/rollouts",
                "/pods",
                "events.k8s.io/events"
            ]
        );
        assert_eq!(r["namespacedRules"][3]["verbs"], json!(["get", "list", "watch", "patch"]), "rollouts: no update");
        assert_eq!(
            r["leaderElectionRules"],
            json!([
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "patch"],
                 "resourceNames": ["pod-reloader"]},
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]}
            ])
        );
    }

    #[test]
    fn custom_workloads_get_exactly_their_rules() {
        let widget = json!({"group": "example.com", "version": "v1", "kind": "Widget", "plural": "widgets",
            "templatePath": "spec.template"});
        let gadget = json!({"group": "example.com", "version": "v1", "kind": "Gadget", "plural": "gadgets",
            "templatePath": "spec.pod.template"});
        let runner = json!({"group": "ci.example.org", "version": "v1beta1", "kind": "Runner", "plural": "runners",
            "templatePath": "spec.template"});
        let r =
            rbac(&inputs(json!({"customWorkloads": [widget, gadget, runner], "ignoredWorkloadTypes": ["Job"]}), false));
        let all = resources(&r["clusterRules"]);
        let custom: Vec<&String> =
            all.iter().filter(|r| r.starts_with("example.com/") || r.starts_with("ci.example.org/")).collect();
        assert_eq!(custom, ["example.com/widgets", "example.com/gadgets", "ci.example.org/runners"]);
        let example =
            r["clusterRules"].as_array().unwrap().iter().find(|r| r["apiGroups"][0] == "example.com").unwrap();
        assert_eq!(
            *example,
            json!({"apiGroups": ["example.com"], "resources": ["widgets", "gadgets"],
            "verbs": ["get", "list", "watch", "patch"]})
        );
        let without = rbac(&inputs(json!({"ignoredWorkloadTypes": ["Job"]}), false));
        assert_eq!(all.len(), resources(&without["clusterRules"]).len() + 3, "nothing else changes");
    }

    #[test]
    fn rollouts_read_deployments_they_may_reference() {
        let r = rbac(&inputs(json!({"ignoredWorkloadTypes": ["Deployment"]}), true));
        let reads = r["clusterRules"].as_array().unwrap().iter().find(|r| r["resources"] == json!(["deployments"]));
        assert_eq!(reads.unwrap()["verbs"], json!(["get", "list", "watch"]), "no patch on ignored Deployments");
        let r = rbac(&inputs(json!({"ignoredWorkloadTypes": ["Deployment"]}), false));
        assert!(!resources(&r["clusterRules"]).contains(&"apps/deployments".to_string()));
    }

    #[test]
    fn csi_rules_only_with_csi_integration() {
        let csi = |r: &Value, key: &str| -> Vec<(String, Value)> {
            r[key]
                .as_array()
                .expect("rules")
                .iter()
                .filter(|rule| rule["apiGroups"][0] == "secrets-store.csi.x-k8s.io")
                .map(|rule| (rule["resources"][0].as_str().unwrap_or_default().to_string(), rule["verbs"].clone()))
                .collect()
        };
        let want = vec![
            ("secretproviderclasspodstatuses".to_string(), json!(["list", "watch"])),
            ("secretproviderclasses".to_string(), json!(["get"])),
        ];
        assert_eq!(csi(&rbac(&inputs(json!({}), false)), "clusterRules"), []);
        assert_eq!(csi(&rbac(&inputs(json!({"csiIntegration": false}), false)), "clusterRules"), []);
        assert_eq!(csi(&rbac(&inputs(json!({"csiIntegration": true}), false)), "clusterRules"), want);
        let scoped = rbac(&inputs(json!({"csiIntegration": true, "namespaces": ["shop"]}), false));
        assert_eq!(csi(&scoped, "namespacedRules"), want);
        assert_eq!(scoped["clusterRules"], json!([]));
    }

    #[test]
    fn pods_only_with_on_delete_restart_and_statefulsets() {
        let has_pods =
            |settings: Value| resources(&rbac(&inputs(settings, false))["clusterRules"]).contains(&"/pods".into());
        assert!(has_pods(json!({})), "on by default");
        assert!(has_pods(json!({"statefulSetOnDeleteRestart": true})));
        assert!(!has_pods(json!({"statefulSetOnDeleteRestart": false})));
        assert!(!has_pods(json!({"ignoredWorkloadTypes": ["StatefulSet"]})), "no StatefulSets, no restarts");
    }

    #[test]
    fn jobs_create_alone_for_cronjob_runs_when_jobs_are_ignored() {
        let jobs = |settings: Value| {
            let r = rbac(&inputs(settings, false));
            r["clusterRules"].as_array().unwrap().iter().find(|r| r["resources"] == json!(["jobs"])).cloned()
        };
        assert_eq!(jobs(json!({"ignoredWorkloadTypes": ["Job"]})), None);
        assert_eq!(
            jobs(json!({"ignoredWorkloadTypes": ["Job"], "cronJobTrigger": true})).unwrap()["verbs"],
            json!(["create"])
        );
        assert_eq!(jobs(json!({"ignoredWorkloadTypes": ["Job", "CronJob"], "cronJobTrigger": true})), None);
        let all = jobs(json!({"cronJobTrigger": true})).unwrap();
        assert_eq!(all["verbs"], json!(["get", "list", "watch", "create", "delete", "patch"]), "Jobs reloaded too");
    }

    #[test]
    fn namespace_selector_reads_namespaces() {
        let r = rbac(&inputs(json!({"namespaceSelector": "team=a"}), false));
        assert!(resources(&r["clusterRules"]).contains(&"/namespaces".to_string()));
    }
}
