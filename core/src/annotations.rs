//! Annotation names. Two families mean the same thing:
//! Stakater Reloader's `reloader.stakater.com/*` and the names Deckhouse's
//! earlier pod-reloader module passed to Reloader (`pod-reloader.deckhouse.io/*`).
//! Where both are set on one object, the Stakater name is read first and
//! lists are joined.

use crate::keys::ResourceKind;

/// One meaning, its spelling in each family.
#[derive(Clone, Copy, Debug)]
pub struct Key {
    pub stakater: &'static str,
    pub deckhouse: &'static str,
}

impl Key {
    pub const fn names(&self) -> [&'static str; 2] {
        [self.stakater, self.deckhouse]
    }
}

pub const AUTO: Key = Key { stakater: "reloader.stakater.com/auto", deckhouse: "pod-reloader.deckhouse.io/auto" };
pub const CONFIGMAP_AUTO: Key =
    Key { stakater: "configmap.reloader.stakater.com/auto", deckhouse: "configmap.pod-reloader.deckhouse.io/auto" };
pub const SECRET_AUTO: Key =
    Key { stakater: "secret.reloader.stakater.com/auto", deckhouse: "secret.pod-reloader.deckhouse.io/auto" };
pub const SECRETPROVIDERCLASS_AUTO: Key = Key {
    stakater: "secretproviderclass.reloader.stakater.com/auto",
    deckhouse: "secretproviderclass.pod-reloader.deckhouse.io/auto",
};
pub const SEARCH: Key = Key { stakater: "reloader.stakater.com/search", deckhouse: "pod-reloader.deckhouse.io/search" };
pub const MATCH: Key = Key { stakater: "reloader.stakater.com/match", deckhouse: "pod-reloader.deckhouse.io/match" };
pub const CONFIGMAP_RELOAD: Key =
    Key { stakater: "configmap.reloader.stakater.com/reload", deckhouse: "pod-reloader.deckhouse.io/configmap-reload" };
pub const SECRET_RELOAD: Key =
    Key { stakater: "secret.reloader.stakater.com/reload", deckhouse: "pod-reloader.deckhouse.io/secret-reload" };
pub const SECRETPROVIDERCLASS_RELOAD: Key = Key {
    stakater: "secretproviderclass.reloader.stakater.com/reload",
    deckhouse: "pod-reloader.deckhouse.io/secretproviderclass-reload",
};
pub const CONFIGMAPS_EXCLUDE: Key = Key {
    stakater: "configmaps.exclude.reloader.stakater.com/reload",
    deckhouse: "configmaps.exclude.pod-reloader.deckhouse.io/reload",
};
pub const SECRETS_EXCLUDE: Key = Key {
    stakater: "secrets.exclude.reloader.stakater.com/reload",
    deckhouse: "secrets.exclude.pod-reloader.deckhouse.io/reload",
};
pub const SECRETPROVIDERCLASSES_EXCLUDE: Key = Key {
    stakater: "secretproviderclasses.exclude.reloader.stakater.com/reload",
    deckhouse: "secretproviderclasses.exclude.pod-reloader.deckhouse.io/reload",
};
pub const IGNORE: Key = Key { stakater: "reloader.stakater.com/ignore", deckhouse: "pod-reloader.deckhouse.io/ignore" };
pub const PAUSE_PERIOD: Key = Key {
    stakater: "deployment.reloader.stakater.com/pause-period",
    deckhouse: "pod-reloader.deckhouse.io/pause-period",
};
pub const PAUSED_AT: Key =
    Key { stakater: "deployment.reloader.stakater.com/paused-at", deckhouse: "pod-reloader.deckhouse.io/paused-at" };
/// A pod-reloader extension (Reloader has no such annotation; its issue
/// #129 asks for it): the keys of the followed ConfigMaps/Secrets whose
/// change reloads; a change of other keys rolls nothing (see `chosen_keys`).
pub const RELOAD_ON_KEYS: Key =
    Key { stakater: "reloader.stakater.com/reload-on-keys", deckhouse: "pod-reloader.deckhouse.io/reload-on-keys" };
pub const ROLLOUT_STRATEGY: Key =
    Key { stakater: "reloader.stakater.com/rollout-strategy", deckhouse: "pod-reloader.deckhouse.io/rollout-strategy" };

/// Written on the pod template by the `annotations` strategy; Reloader's name,
/// kept so that migrated workloads compare equal.
pub const LAST_RELOADED_FROM: &str = "reloader.stakater.com/last-reloaded-from";

/// The typed auto key for a resource kind.
pub fn typed_auto(kind: ResourceKind) -> Key {
    match kind {
        ResourceKind::ConfigMap => CONFIGMAP_AUTO,
        ResourceKind::Secret => SECRET_AUTO,
        ResourceKind::SecretProviderClass => SECRETPROVIDERCLASS_AUTO,
    }
}

/// The reload-list key for a resource kind.
pub fn reload_list(kind: ResourceKind) -> Key {
    match kind {
        ResourceKind::ConfigMap => CONFIGMAP_RELOAD,
        ResourceKind::Secret => SECRET_RELOAD,
        ResourceKind::SecretProviderClass => SECRETPROVIDERCLASS_RELOAD,
    }
}

/// The exclude-list key for a resource kind.
pub fn exclude_list(kind: ResourceKind) -> Key {
    match kind {
        ResourceKind::ConfigMap => CONFIGMAPS_EXCLUDE,
        ResourceKind::Secret => SECRETS_EXCLUDE,
        ResourceKind::SecretProviderClass => SECRETPROVIDERCLASSES_EXCLUDE,
    }
}

/// Every key a workload may carry; the controller keeps only these.
pub const WORKLOAD_KEYS: [Key; 15] = [
    AUTO,
    CONFIGMAP_AUTO,
    SECRET_AUTO,
    SECRETPROVIDERCLASS_AUTO,
    SEARCH,
    CONFIGMAP_RELOAD,
    SECRET_RELOAD,
    SECRETPROVIDERCLASS_RELOAD,
    CONFIGMAPS_EXCLUDE,
    SECRETS_EXCLUDE,
    SECRETPROVIDERCLASSES_EXCLUDE,
    PAUSE_PERIOD,
    PAUSED_AT,
    ROLLOUT_STRATEGY,
    RELOAD_ON_KEYS,
];

/// The keys a ConfigMap, Secret or SecretProviderClass may carry.
pub const RESOURCE_KEYS: [Key; 2] = [IGNORE, MATCH];

/// Reads one meaning from a map of annotations: the Stakater spelling first.
pub fn get(annotations: &std::collections::BTreeMap<String, String>, key: Key) -> Option<&str> {
    key.names().iter().find_map(|n| annotations.get(*n).map(String::as_str))
}
