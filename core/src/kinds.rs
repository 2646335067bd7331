//! The workload kinds pod-reloader rolls, one descriptor ([`KindSpec`]) each:
//! where the kind is served, where its pod template lives, how a reload is
//! applied to it and which RBAC verbs that takes. The watch, the reload, the
//! events, `explain`, the settings and the hooks' RBAC all read the
//! descriptor; adding a kind is one entry in [`BUILTIN`] (or, for a custom
//! resource, one entry of the `customWorkloads` setting).
//!
//! [`WorkloadKind`] is the handle the rest of the code passes around: a
//! variant per built-in kind, and `Custom` for a descriptor built from the
//! settings at start-up. Nothing outside this file matches on it.

use std::fmt;
use std::sync::{Mutex, PoisonError};

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::Value;

/// How a reload reaches a kind's pod template.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ApplyMethod {
    /// A strategic-merge patch of the template (built-in kinds: containers
    /// and env vars merge by name).
    StrategicMerge,
    /// A JSON merge patch (RFC 7386) of exactly what changed in the template:
    /// custom resources take no strategic merge.
    MergePatchDiff,
    /// Delete the object and create it again with the new template (a Job,
    /// whose template is immutable).
    Recreate,
}

/// One workload kind.
#[derive(Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KindSpec {
    /// The Kubernetes kind, as in `kind:` and in events.
    pub kind: &'static str,
    /// The API group (`apps`, `batch`, `argoproj.io`).
    pub group: &'static str,
    pub version: &'static str,
    /// Lower-case plural: the REST resource, RBAC's `resources`, and the
    /// spelling of `--ignored-workload-types`.
    pub plural: &'static str,
    /// kubectl's short names, accepted by [`WorkloadKind::parse`].
    pub short_names: &'static [&'static str],
    /// Path of the pod template from the object's root.
    pub template_path: &'static [&'static str],
    pub apply: ApplyMethod,
    /// `pause-period` applies: the Deployment is paused with the reload
    /// (`spec.paused`) and resumed after the period.
    pub pause_period: bool,
    /// `rollout-strategy: restart` applies: a reload may set `spec.restartAt`
    /// instead of changing the template (Argo Rollouts).
    pub restart_at: bool,
    /// The pod template may instead come from the Deployment named at
    /// `spec.workloadRef` (Argo Rollouts): such an object follows that
    /// Deployment's references and is reloaded with `spec.restartAt` (it has
    /// no template of its own to patch).
    pub workload_ref: bool,
    /// The RBAC verbs the controller needs on the kind.
    pub verbs: &'static [&'static str],
    /// Watched only when asked for (Argo Rollouts need their CRD served).
    pub opt_in: bool,
}

/// Read, watch, and patch the template (and the record on the metadata).
const PATCH_VERBS: &[&str] = &["get", "list", "watch", "patch"];

pub static DEPLOYMENT: KindSpec = KindSpec {
    kind: "Deployment",
    group: "apps",
    version: "v1",
    plural: "deployments",
    short_names: &["deploy"],
    template_path: &["spec", "template"],
    apply: ApplyMethod::StrategicMerge,
    pause_period: true,
    restart_at: false,
    workload_ref: false,
    verbs: PATCH_VERBS,
    opt_in: false,
};

pub static DAEMONSET: KindSpec = KindSpec {
    kind: "DaemonSet",
    group: "apps",
    version: "v1",
    plural: "daemonsets",
    short_names: &["ds"],
    template_path: &["spec", "template"],
    apply: ApplyMethod::StrategicMerge,
    pause_period: false,
    restart_at: false,
    workload_ref: false,
    verbs: PATCH_VERBS,
    opt_in: false,
};

pub static STATEFULSET: KindSpec = KindSpec {
    kind: "StatefulSet",
    group: "apps",
    version: "v1",
    plural: "statefulsets",
    short_names: &["sts"],
    template_path: &["spec", "template"],
    apply: ApplyMethod::StrategicMerge,
    pause_period: false,
    restart_at: false,
    workload_ref: false,
    verbs: PATCH_VERBS,
    opt_in: false,
};

/// The job template is patched, so the next run uses the new configuration
/// without an unplanned run (Reloader starts a Job instead: docs/BEHAVIOUR.md).
pub static CRONJOB: KindSpec = KindSpec {
    kind: "CronJob",
    group: "batch",
    version: "v1",
    plural: "cronjobs",
    short_names: &["cj"],
    template_path: &["spec", "jobTemplate", "spec", "template"],
    apply: ApplyMethod::StrategicMerge,
    pause_period: false,
    restart_at: false,
    workload_ref: false,
    verbs: PATCH_VERBS,
    opt_in: false,
};

/// Recreated: create and delete; patch writes the record when only it changes.
pub static JOB: KindSpec = KindSpec {
    kind: "Job",
    group: "batch",
    version: "v1",
    plural: "jobs",
    short_names: &[],
    template_path: &["spec", "template"],
    apply: ApplyMethod::Recreate,
    pause_period: false,
    restart_at: false,
    workload_ref: false,
    verbs: &["get", "list", "watch", "create", "delete", "patch"],
    opt_in: false,
};

/// Patched, never updated (the RBAC grants no `update`).
pub static ROLLOUT: KindSpec = KindSpec {
    kind: "Rollout",
    group: "argoproj.io",
    version: "v1alpha1",
    plural: "rollouts",
    short_names: &["ro"],
    template_path: &["spec", "template"],
    apply: ApplyMethod::MergePatchDiff,
    pause_period: false,
    restart_at: true,
    workload_ref: true,
    verbs: PATCH_VERBS,
    opt_in: true,
};

impl KindSpec {
    /// `group/version` (`v1` for the core group).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }

    /// The pod template inside an object body (the object less its metadata,
    /// as in a dynamic object's `data`), typed. Taken out of `body`, not
    /// copied: the watch drops the rest of the object right after. `None`
    /// when the object has no template there (a Rollout with `workloadRef`)
    /// or it is not a pod template.
    pub fn take_template(&self, body: &mut Value) -> Option<PodTemplateSpec> {
        let at = self.template_path.iter().try_fold(body, |v, step| v.get_mut(*step))?;
        serde_json::from_value(at.take()).ok()
    }

    /// The pod template inside an object body, typed (a copy; `body` is left as it is).
    pub fn template(&self, body: &Value) -> Option<PodTemplateSpec> {
        let at = self.template_path.iter().try_fold(body, |v, step| v.get(*step))?;
        serde_json::from_value(at.clone()).ok()
    }

    /// The name of the Deployment whose template this object uses
    /// (`spec.workloadRef` of a kind that has it), if any.
    pub fn workload_ref<'a>(&self, body: &'a Value) -> Option<&'a str> {
        if !self.workload_ref {
            return None;
        }
        let r = body.get("spec")?.get("workloadRef")?;
        let deployment = r.get("kind")?.as_str()? == "Deployment"
            && r.get("apiVersion").and_then(Value::as_str).is_none_or(|v| v == "apps/v1");
        if deployment { r.get("name")?.as_str() } else { None }
    }

    /// Puts `template` at the template path of `body` (a template read elsewhere: see [`Self::workload_ref`]).
    pub fn put_template(&self, body: &mut Value, template: Value) {
        let Some((last, parents)) = self.template_path.split_last() else {
            return;
        };
        if !body.is_object() {
            return;
        }
        let mut at = body;
        for step in parents {
            if !at.get(*step).is_some_and(Value::is_object) {
                at[*step] = Value::Object(serde_json::Map::new());
            }
            at = &mut at[*step];
        }
        at[*last] = template;
    }

    /// `fragment` placed at the template path, for a patch body.
    pub fn at_template_path(&self, fragment: Value) -> Value {
        self.template_path.iter().rev().fold(fragment, |inner, step| {
            let mut outer = serde_json::Map::new();
            outer.insert((*step).to_string(), inner);
            Value::Object(outer)
        })
    }

    /// The same REST resource (group and plural) as `other`.
    pub fn same_resource(&self, other: &KindSpec) -> bool {
        self.group == other.group && self.plural == other.plural
    }

    /// Names kubectl accepts for the kind: `deployment`, `deployments`, `deploy`.
    fn is_called(&self, lower: &str) -> bool {
        self.kind.eq_ignore_ascii_case(lower) || self.plural == lower || self.short_names.contains(&lower)
    }
}

/// A custom resource kind (the `customWorkloads` setting, checked there):
/// rolled by a JSON merge patch of its template, with the verbs of the
/// built-in kinds that are patched. Its descriptor is leaked once per
/// distinct description and process (interned here), so validating the same
/// settings again allocates nothing, and their number is bounded by what the
/// settings allow.
pub fn custom(group: &str, version: &str, kind: &str, plural: &str, template_path: &[&str]) -> WorkloadKind {
    static INTERNED: Mutex<Vec<&'static KindSpec>> = Mutex::new(Vec::new());
    let mut interned = INTERNED.lock().unwrap_or_else(PoisonError::into_inner);
    let same = |s: &&KindSpec| {
        s.group == group
            && s.version == version
            && s.kind == kind
            && s.plural == plural
            && s.template_path == template_path
    };
    if let Some(spec) = interned.iter().copied().find(same) {
        return WorkloadKind::Custom(spec);
    }
    let leak = |s: &str| -> &'static str { Box::leak(s.to_owned().into_boxed_str()) };
    let path: Vec<&'static str> = template_path.iter().map(|p| leak(p)).collect();
    let spec: &'static KindSpec = Box::leak(Box::new(KindSpec {
        kind: leak(kind),
        group: leak(group),
        version: leak(version),
        plural: leak(plural),
        short_names: &[],
        template_path: Box::leak(path.into_boxed_slice()),
        apply: ApplyMethod::MergePatchDiff,
        pause_period: false,
        restart_at: false,
        workload_ref: false,
        verbs: PATCH_VERBS,
        opt_in: false,
    }));
    interned.push(spec);
    WorkloadKind::Custom(spec)
}

/// The built-in kinds, in the order of the generated RBAC rules (consecutive
/// kinds of one group with the same verbs share a rule).
pub static BUILTIN: [&KindSpec; 6] = [&DEPLOYMENT, &DAEMONSET, &STATEFULSET, &CRONJOB, &JOB, &ROLLOUT];

/// A workload kind: a built-in one, or a custom resource named in the settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
    CronJob,
    Job,
    Rollout,
    /// A kind described at start-up (leaked once; their number is bounded by
    /// the settings' validation).
    Custom(&'static KindSpec),
}

impl WorkloadKind {
    /// The built-in kinds.
    pub const ALL: [WorkloadKind; 6] = [
        WorkloadKind::Deployment,
        WorkloadKind::DaemonSet,
        WorkloadKind::StatefulSet,
        WorkloadKind::CronJob,
        WorkloadKind::Job,
        WorkloadKind::Rollout,
    ];

    /// The kind's descriptor.
    pub fn spec(self) -> &'static KindSpec {
        match self {
            WorkloadKind::Deployment => &DEPLOYMENT,
            WorkloadKind::StatefulSet => &STATEFULSET,
            WorkloadKind::DaemonSet => &DAEMONSET,
            WorkloadKind::CronJob => &CRONJOB,
            WorkloadKind::Job => &JOB,
            WorkloadKind::Rollout => &ROLLOUT,
            WorkloadKind::Custom(spec) => spec,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.spec().kind
    }

    /// Lower-case plural, as accepted by `--ignored-workload-types` and kubectl.
    pub fn plural(self) -> &'static str {
        self.spec().plural
    }

    /// Parses a built-in kind the way kubectl does: `deployment`,
    /// `deployments`, `deploy`, `Deployment`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::parse_among(s, &[])
    }

    /// As [`Self::parse`], the custom kinds `custom` included.
    pub fn parse_among(s: &str, custom: &[WorkloadKind]) -> Option<Self> {
        let lower = s.to_ascii_lowercase();
        Self::ALL.into_iter().chain(custom.iter().copied()).find(|k| k.spec().is_called(&lower))
    }

    /// The names [`Self::parse`] accepts, one per kind, for error messages:
    /// `deployments, daemonsets, … or rollouts`.
    pub fn plurals_text(kinds: impl IntoIterator<Item = WorkloadKind>) -> String {
        let names: Vec<&str> = kinds.into_iter().map(WorkloadKind::plural).collect();
        match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            Some((last, _)) => (*last).to_string(),
            None => String::new(),
        }
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_parse_like_kubectl() {
        assert_eq!(WorkloadKind::parse("deploy"), Some(WorkloadKind::Deployment));
        assert_eq!(WorkloadKind::parse("StatefulSets"), Some(WorkloadKind::StatefulSet));
        assert_eq!(WorkloadKind::parse("cj"), Some(WorkloadKind::CronJob));
        assert_eq!(WorkloadKind::parse("ro"), Some(WorkloadKind::Rollout));
        assert_eq!(WorkloadKind::parse("pod"), None);
    }

    #[test]
    fn every_builtin_variant_has_its_own_descriptor_listed_once() {
        for (kind, spec) in WorkloadKind::ALL.into_iter().zip(BUILTIN) {
            assert!(std::ptr::eq(kind.spec(), spec), "{kind}: ALL and BUILTIN in the same order");
            assert_eq!(WorkloadKind::parse(spec.kind), Some(kind));
            assert_eq!(WorkloadKind::parse(spec.plural), Some(kind));
        }
        let plurals: std::collections::BTreeSet<&str> = BUILTIN.iter().map(|s| s.plural).collect();
        assert_eq!(plurals.len(), BUILTIN.len());
    }

    #[test]
    fn api_versions() {
        assert_eq!(WorkloadKind::Deployment.spec().api_version(), "apps/v1");
        assert_eq!(WorkloadKind::Job.spec().api_version(), "batch/v1");
        assert_eq!(WorkloadKind::Rollout.spec().api_version(), "argoproj.io/v1alpha1");
    }

    #[test]
    fn template_is_found_at_the_kinds_path_and_taken_out() {
        let t = json!({"metadata": {"annotations": {"a": "1"}}, "spec": {"containers": [{"name": "c"}]}});
        let mut cronjob = json!({"spec": {"schedule": "x", "jobTemplate": {"spec": {"template": t.clone()}}}});
        assert_eq!(CRONJOB.template(&cronjob).unwrap().spec.unwrap().containers[0].name, "c");
        let taken = CRONJOB.take_template(&mut cronjob).unwrap();
        assert_eq!(taken.metadata.unwrap().annotations.unwrap()["a"], "1");
        assert_eq!(cronjob["spec"]["jobTemplate"]["spec"]["template"], Value::Null, "taken, not copied");
        assert!(DEPLOYMENT.template(&json!({"spec": {"workloadRef": {}}})).is_none());
        assert!(DEPLOYMENT.template(&json!({"spec": {"template": "not a template"}})).is_none());
    }

    #[test]
    fn patch_fragments_nest_at_the_template_path() {
        assert_eq!(
            CRONJOB.at_template_path(json!({"x": 1})),
            json!({"spec": {"jobTemplate": {"spec": {"template": {"x": 1}}}}})
        );
        assert_eq!(DEPLOYMENT.at_template_path(json!({})), json!({"spec": {"template": {}}}));
    }

    #[test]
    fn custom_kinds_are_interned_and_patched_by_merge_patch() {
        let a = custom("example.com", "v1", "Widget", "widgets", &["spec", "template"]);
        let b = custom("example.com", "v1", "Widget", "widgets", &["spec", "template"]);
        assert!(std::ptr::eq(a.spec(), b.spec()), "one descriptor per description");
        assert_eq!(a.as_str(), "Widget");
        assert_eq!(a.spec().api_version(), "example.com/v1");
        assert_eq!(a.spec().apply, ApplyMethod::MergePatchDiff);
        assert_eq!(a.spec().verbs, ["get", "list", "watch", "patch"]);
        assert_eq!(WorkloadKind::parse_among("widgets", &[a]), Some(a));
        assert_eq!(WorkloadKind::parse("widgets"), None, "only among the kinds given");
        let other = custom("example.com", "v1", "Widget", "widgets", &["spec", "pod"]);
        assert_ne!(a, other);
    }

    #[test]
    fn workload_refs_name_a_deployment_on_rollouts_only() {
        let body = json!({"spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}}});
        assert_eq!(ROLLOUT.workload_ref(&body), Some("web"));
        assert_eq!(DEPLOYMENT.workload_ref(&body), None);
        let other = json!({"spec": {"workloadRef": {"apiVersion": "v1", "kind": "PodTemplate", "name": "t"}}});
        assert_eq!(ROLLOUT.workload_ref(&other), None);
        let mut body = body;
        ROLLOUT.put_template(&mut body, json!({"spec": {"containers": []}}));
        assert!(ROLLOUT.template(&body).is_some());
        assert_eq!(body["spec"]["workloadRef"]["name"], "web");
    }

    #[test]
    fn plurals_text_reads_as_a_list() {
        assert_eq!(
            WorkloadKind::plurals_text(WorkloadKind::ALL),
            "deployments, daemonsets, statefulsets, cronjobs, jobs or rollouts"
        );
    }
}
