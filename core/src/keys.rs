//! Identities of the objects pod-reloader relates: followed resources
//! (ConfigMaps, Secrets, SecretProviderClasses) and the workloads that
//! follow them.

use std::fmt;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

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

pub use crate::kinds::WorkloadKind;

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

    /// The key of an object of `kind` with metadata `meta`.
    pub fn of_object(kind: WorkloadKind, meta: &ObjectMeta) -> Self {
        Self::new(kind, meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
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
    fn keys_display_kubectl_style() {
        let k = ResourceKey::new(ResourceKind::Secret, "ns", "tls");
        assert_eq!(k.to_string(), "Secret ns/tls");
        let w = WorkloadKey::new(WorkloadKind::Deployment, "ns", "web");
        assert_eq!(w.to_string(), "Deployment ns/web");
    }
}
