//! Which ConfigMaps, Secrets and SecretProviderClasses a pod template uses,
//! and which container Reloader would put the env var on for each
//! (`getContainerUsingResource`).
//!
//! Precedence, as in Reloader:
//! 1. a volume naming the resource (`configMap`, `secret`, a `projected`
//!    source, or a `csi` volume whose `volumeAttributes.secretProviderClass`
//!    names a SecretProviderClass) → the first container mounting that
//!    volume; mounted only by an init container → the first regular container;
//! 2. else `env[].valueFrom.{configMapKeyRef,secretKeyRef}` or
//!    `envFrom[].{configMapRef,secretRef}` → the first container using it;
//!    used only by an init container → the first regular container.
//!
//! A SecretProviderClass is only ever used through a volume. The CSI
//! driver's name is not checked (Reloader does not either): the attribute
//! is the Secrets Store driver's own.
//!
//! Not considered (as in Reloader): `imagePullSecrets`, ephemeral containers.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec, Volume};

use crate::keys::ResourceKind;

/// How a pod template uses a resource; shown by `pod-reloader explain`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// Volume `volume` (plain or projected) mounted by the container.
    Volume { volume: String, projected: bool },
    /// `env[].valueFrom` in the container.
    EnvValueFrom { env: String },
    /// `envFrom` in the container.
    EnvFrom,
}

/// One used resource and the container the reload marks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub kind: ResourceKind,
    pub name: String,
    /// The container whose env gets the `STAKATER_*` var.
    pub container: String,
    /// How the resource is used.
    pub via: Via,
    /// True when only an init container uses it (the var then goes on the
    /// first regular container, as in Reloader).
    pub init_only: bool,
}

/// Every resource the pod spec uses, keyed by (kind, name), one entry each.
pub fn extract(spec: &PodSpec) -> BTreeMap<(ResourceKind, String), Reference> {
    let mut out = BTreeMap::new();
    let first = spec.containers.first().map(|c| c.name.clone());
    let init: &[Container] = spec.init_containers.as_deref().unwrap_or(&[]);

    // 1. Volumes (first matching volume wins, as getVolumeMountName does).
    for vol in spec.volumes.iter().flatten() {
        for (kind, name, projected) in volume_sources(vol) {
            let key = (kind, name.clone());
            if out.contains_key(&key) {
                continue;
            }
            let via = Via::Volume { volume: vol.name.clone(), projected };
            if let Some(c) = spec.containers.iter().find(|c| mounts(c, &vol.name)) {
                out.insert(key, Reference { kind, name, container: c.name.clone(), via, init_only: false });
            } else if init.iter().any(|c| mounts(c, &vol.name))
                && let Some(first) = &first
            {
                out.insert(key, Reference { kind, name, container: first.clone(), via, init_only: true });
            }
            // A volume nobody mounts falls through to env references.
        }
    }

    // 2. Env references, regular containers first, then init containers.
    for (containers, init_only) in [(&spec.containers[..], false), (init, true)] {
        for c in containers {
            for (kind, name, via) in env_sources(c) {
                let key = (kind, name.clone());
                if out.contains_key(&key) {
                    continue;
                }
                let container = if init_only { first.clone() } else { Some(c.name.clone()) };
                if let Some(container) = container {
                    out.insert(key, Reference { kind, name, container, via, init_only });
                }
            }
        }
    }
    out
}

/// The `volumeAttributes` key of a Secrets Store CSI volume naming its class.
pub const SECRET_PROVIDER_CLASS_ATTRIBUTE: &str = "secretProviderClass";

fn mounts(c: &Container, volume: &str) -> bool {
    c.volume_mounts.iter().flatten().any(|m| m.name == volume)
}

fn volume_sources(vol: &Volume) -> Vec<(ResourceKind, String, bool)> {
    let mut out = Vec::new();
    if let Some(cm) = &vol.config_map {
        out.push((ResourceKind::ConfigMap, cm.name.clone(), false));
    }
    if let Some(s) = vol.secret.as_ref().and_then(|s| s.secret_name.clone()) {
        out.push((ResourceKind::Secret, s, false));
    }
    if let Some(spc) = vol.csi.as_ref().and_then(|c| c.volume_attributes.as_ref()?.get(SECRET_PROVIDER_CLASS_ATTRIBUTE))
    {
        out.push((ResourceKind::SecretProviderClass, spc.clone(), false));
    }
    for src in vol.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
        if let Some(cm) = &src.config_map {
            out.push((ResourceKind::ConfigMap, cm.name.clone(), true));
        }
        if let Some(s) = &src.secret {
            out.push((ResourceKind::Secret, s.name.clone(), true));
        }
    }
    out
}

fn env_sources(c: &Container) -> Vec<(ResourceKind, String, Via)> {
    let mut out = Vec::new();
    for e in c.env.iter().flatten() {
        let Some(from) = &e.value_from else { continue };
        if let Some(r) = &from.config_map_key_ref {
            out.push((ResourceKind::ConfigMap, r.name.clone(), Via::EnvValueFrom { env: e.name.clone() }));
        }
        if let Some(r) = &from.secret_key_ref {
            out.push((ResourceKind::Secret, r.name.clone(), Via::EnvValueFrom { env: e.name.clone() }));
        }
    }
    for ef in c.env_from.iter().flatten() {
        if let Some(r) = &ef.config_map_ref {
            out.push((ResourceKind::ConfigMap, r.name.clone(), Via::EnvFrom));
        }
        if let Some(r) = &ef.secret_ref {
            out.push((ResourceKind::Secret, r.name.clone(), Via::EnvFrom));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> PodSpec {
        serde_json::from_value(v).unwrap()
    }

    fn get(refs: &BTreeMap<(ResourceKind, String), Reference>, kind: ResourceKind, name: &str) -> Reference {
        refs.get(&(kind, name.to_string())).cloned().unwrap_or_else(|| panic!("{kind} {name} not found in {refs:?}"))
    }

    #[test]
    fn volume_mount_picks_the_mounting_container() {
        let refs = extract(&spec(json!({
            "containers": [{"name": "a"}, {"name": "b", "volumeMounts": [{"name": "cfg", "mountPath": "/c"}]}],
            "volumes": [{"name": "cfg", "configMap": {"name": "app-config"}}]
        })));
        let r = get(&refs, ResourceKind::ConfigMap, "app-config");
        assert_eq!(r.container, "b");
        assert_eq!(r.via, Via::Volume { volume: "cfg".into(), projected: false });
    }

    #[test]
    fn projected_sources_count() {
        let refs = extract(&spec(json!({
            "containers": [{"name": "a", "volumeMounts": [{"name": "all", "mountPath": "/p"}]}],
            "volumes": [{"name": "all", "projected": {"sources": [
                {"configMap": {"name": "cm1"}}, {"secret": {"name": "s1"}}
            ]}}]
        })));
        assert_eq!(get(&refs, ResourceKind::ConfigMap, "cm1").container, "a");
        assert!(matches!(get(&refs, ResourceKind::Secret, "s1").via, Via::Volume { projected: true, .. }));
    }

    #[test]
    fn env_references_and_init_only_use_first_container() {
        let refs = extract(&spec(json!({
            "initContainers": [{"name": "init", "envFrom": [{"secretRef": {"name": "init-secret"}}]}],
            "containers": [
                {"name": "main"},
                {"name": "side", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "x"}}}]}
            ]
        })));
        assert_eq!(get(&refs, ResourceKind::ConfigMap, "cm").container, "side");
        let init = get(&refs, ResourceKind::Secret, "init-secret");
        assert_eq!(init.container, "main");
        assert!(init.init_only);
    }

    #[test]
    fn unmounted_volume_falls_through_to_env() {
        let refs = extract(&spec(json!({
            "containers": [{"name": "a"}, {"name": "b", "envFrom": [{"configMapRef": {"name": "cm"}}]}],
            "volumes": [{"name": "v", "configMap": {"name": "cm"}}]
        })));
        let r = get(&refs, ResourceKind::ConfigMap, "cm");
        assert_eq!((r.container.as_str(), r.via), ("b", Via::EnvFrom));
    }

    #[test]
    fn csi_volumes_reference_their_secret_provider_class() {
        let refs = extract(&spec(json!({
            "initContainers": [{"name": "init", "volumeMounts": [{"name": "early", "mountPath": "/e"}]}],
            "containers": [
                {"name": "a"},
                {"name": "b", "volumeMounts": [{"name": "vault", "mountPath": "/mnt/secrets"}]}
            ],
            "volumes": [
                {"name": "vault", "csi": {"driver": "secrets-store.csi.k8s.io", "readOnly": true,
                    "volumeAttributes": {"secretProviderClass": "vault-db"}}},
                {"name": "early", "csi": {"driver": "secrets-store.csi.k8s.io",
                    "volumeAttributes": {"secretProviderClass": "init-spc"}}},
                {"name": "other-csi", "csi": {"driver": "example.com/no-class", "volumeAttributes": {"x": "y"}}}
            ]
        })));
        let r = get(&refs, ResourceKind::SecretProviderClass, "vault-db");
        assert_eq!((r.container.as_str(), r.via), ("b", Via::Volume { volume: "vault".into(), projected: false }));
        let init = get(&refs, ResourceKind::SecretProviderClass, "init-spc");
        assert_eq!(init.container, "a", "mounted by an init container only: the first container");
        assert!(init.init_only);
        assert_eq!(refs.len(), 2, "a csi volume without the attribute is no reference: {refs:?}");
        // A Secret of the same name is another resource.
        assert!(!refs.contains_key(&(ResourceKind::Secret, "vault-db".to_string())));
    }

    #[test]
    fn image_pull_secrets_are_not_references() {
        let refs = extract(&spec(json!({
            "containers": [{"name": "a"}], "imagePullSecrets": [{"name": "regcred"}]
        })));
        assert!(refs.is_empty());
    }
}
