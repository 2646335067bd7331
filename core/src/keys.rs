//! Identities of the objects pod-reloader relates: followed resources
//! (ConfigMaps, Secrets, SecretProviderClasses) and the workloads that
//! follow them.

use std::fmt;
use std::sync::Arc;

/// The kinds of object whose content a workload can follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    ConfigMap,
    Secret,
    /// A Secrets Store CSI driver `SecretProviderClass`
    /// (`secrets-store.csi.x-k8s.io/v1`), followed through the
    /// `SecretProviderClassPodStatus` objects the driver writes for each pod
    /// that mounts it (only with the CSI integration enabled).
    SecretProviderClass,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 3] =
        [ResourceKind::ConfigMap, ResourceKind::Secret, ResourceKind::SecretProviderClass];

    /// The Kubernetes kind, as in `kind:` and in events.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::ConfigMap => "ConfigMap",
            ResourceKind::Secret => "Secret",
            ResourceKind::SecretProviderClass => "SecretProviderClass",
        }
    }

    /// Reloader's env var postfix and the `type` field of `last-reloaded-from`.
    pub fn reloader_type(self) -> &'static str {
        match self {
            ResourceKind::ConfigMap => "CONFIGMAP",
            ResourceKind::Secret => "SECRET",
            ResourceKind::SecretProviderClass => "SECRETPROVIDERCLASS",
        }
    }

    /// Lower-case plural, as in RBAC resources and `--resources-to-ignore`.
    pub fn plural(self) -> &'static str {
        match self {
            ResourceKind::ConfigMap => "configmaps",
            ResourceKind::Secret => "secrets",
            ResourceKind::SecretProviderClass => "secretproviderclasses",
        }
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A ConfigMap, Secret or SecretProviderClass, by kind and `namespace/name`.
///
/// The namespace is shared (`Arc<str>`) because thousands of keys live in a
/// handful of namespaces.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    pub kind: ResourceKind,
    pub namespace: Arc<str>,
    pub name: Box<str>,
}

impl ResourceKey {
    pub fn new(kind: ResourceKind, namespace: impl Into<Arc<str>>, name: impl Into<Box<str>>) -> Self {
        Self { kind, namespace: namespace.into(), name: name.into() }
    }
}

impl fmt::Display for ResourceKey {
    /// `ConfigMap ns/name`, kubectl style.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// The workload kinds pod-reloader rolls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
    CronJob,
    Job,
    Rollout,
}

impl WorkloadKind {
    pub const ALL: [WorkloadKind; 6] = [
        WorkloadKind::Deployment,
        WorkloadKind::StatefulSet,
        WorkloadKind::DaemonSet,
        WorkloadKind::CronJob,
        WorkloadKind::Job,
        WorkloadKind::Rollout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
            WorkloadKind::CronJob => "CronJob",
            WorkloadKind::Job => "Job",
            WorkloadKind::Rollout => "Rollout",
        }
    }

    /// Lower-case plural, as accepted by `--ignored-workload-types` and kubectl.
    pub fn plural(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployments",
            WorkloadKind::StatefulSet => "statefulsets",
            WorkloadKind::DaemonSet => "daemonsets",
            WorkloadKind::CronJob => "cronjobs",
            WorkloadKind::Job => "jobs",
            WorkloadKind::Rollout => "rollouts",
        }
    }

    /// Parses a kind the way kubectl does: `deployment`, `deployments`, `deploy`, `Deployment`.
    pub fn parse(s: &str) -> Option<Self> {
        let lower = s.to_ascii_lowercase();
        Some(match lower.as_str() {
            "deployment" | "deployments" | "deploy" => WorkloadKind::Deployment,
            "statefulset" | "statefulsets" | "sts" => WorkloadKind::StatefulSet,
            "daemonset" | "daemonsets" | "ds" => WorkloadKind::DaemonSet,
            "cronjob" | "cronjobs" | "cj" => WorkloadKind::CronJob,
            "job" | "jobs" => WorkloadKind::Job,
            "rollout" | "rollouts" | "ro" => WorkloadKind::Rollout,
            _ => return None,
        })
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A workload, by kind and `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadKey {
    pub kind: WorkloadKind,
    pub namespace: Arc<str>,
    pub name: Box<str>,
}

impl WorkloadKey {
    pub fn new(kind: WorkloadKind, namespace: impl Into<Arc<str>>, name: impl Into<Box<str>>) -> Self {
        Self { kind, namespace: namespace.into(), name: name.into() }
    }
}

impl fmt::Display for WorkloadKey {
    /// `Deployment ns/name`, kubectl style.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_like_kubectl() {
        assert_eq!(WorkloadKind::parse("deploy"), Some(WorkloadKind::Deployment));
        assert_eq!(WorkloadKind::parse("StatefulSets"), Some(WorkloadKind::StatefulSet));
        assert_eq!(WorkloadKind::parse("cj"), Some(WorkloadKind::CronJob));
        assert_eq!(WorkloadKind::parse("pod"), None);
    }

    #[test]
    fn keys_display_kubectl_style() {
        let k = ResourceKey::new(ResourceKind::Secret, "ns", "tls");
        assert_eq!(k.to_string(), "Secret ns/tls");
        let w = WorkloadKey::new(WorkloadKind::Deployment, "ns", "web");
        assert_eq!(w.to_string(), "Deployment ns/web");
    }
}
