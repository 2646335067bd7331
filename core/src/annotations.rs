//! Annotation names. Two families mean the same thing:
//! Stakater Reloader's `reloader.stakater.com/*` and the names Deckhouse's
//! earlier pod-reloader module passed to Reloader (`pod-reloader.deckhouse.io/*`).
//! Where both are set on one object, the Stakater name is read first and
//! lists are joined.
//!
//! Reloader's `--*-annotation` flags rename the Reloader-family name of some
//! keys ([`RENAMEABLE`]); a controller started with them reads the names in
//! its [`AnnotationNames`] (the `pod-reloader.deckhouse.io` names stay).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use crate::keys::ResourceKind;

/// One meaning, its spelling in each family. The constants below are
/// Reloader's names; [`AnnotationNames::key`] gives a key as renamed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key<'a> {
    pub stakater: &'a str,
    pub deckhouse: &'a str,
}

impl<'a> Key<'a> {
    pub const fn names(&self) -> [&'a str; 2] {
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

/// pod-reloader's record of what each workload last rolled to (see `record`).
pub const RECORD_ANNOTATION: &str = "pod-reloader.deckhouse.io/reloaded-hashes";

/// The typed auto key for a resource kind.
pub fn typed_auto(kind: ResourceKind) -> Key<'static> {
    match kind {
        ResourceKind::ConfigMap => CONFIGMAP_AUTO,
        ResourceKind::Secret => SECRET_AUTO,
        ResourceKind::SecretProviderClass => SECRETPROVIDERCLASS_AUTO,
    }
}

/// The reload-list key for a resource kind.
pub fn reload_list(kind: ResourceKind) -> Key<'static> {
    match kind {
        ResourceKind::ConfigMap => CONFIGMAP_RELOAD,
        ResourceKind::Secret => SECRET_RELOAD,
        ResourceKind::SecretProviderClass => SECRETPROVIDERCLASS_RELOAD,
    }
}

/// The exclude-list key for a resource kind.
pub fn exclude_list(kind: ResourceKind) -> Key<'static> {
    match kind {
        ResourceKind::ConfigMap => CONFIGMAPS_EXCLUDE,
        ResourceKind::Secret => SECRETS_EXCLUDE,
        ResourceKind::SecretProviderClass => SECRETPROVIDERCLASSES_EXCLUDE,
    }
}

/// Every key a workload may carry; the controller keeps only these.
pub const WORKLOAD_KEYS: [Key<'static>; 15] = [
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
pub const RESOURCE_KEYS: [Key<'static>; 2] = [IGNORE, MATCH];

/// Reads one meaning from a map of annotations: the Stakater spelling first.
pub fn get<'m>(annotations: &'m BTreeMap<String, String>, key: Key<'_>) -> Option<&'m str> {
    key.names().iter().find_map(|n| annotations.get(*n).map(String::as_str))
}

/// A key whose Reloader-family name a Reloader flag renames: the flag, the
/// controller's setting (the same path in its config file and in the
/// module's settings) and the key with Reloader's default name.
#[derive(Clone, Copy, Debug)]
pub struct Renameable {
    pub flag: &'static str,
    pub setting: &'static str,
    pub key: Key<'static>,
}

/// Reloader's annotation-name flags (v1.4.21 has no such flag for the
/// exclude lists, `rollout-strategy` or `last-reloaded-from`).
pub const RENAMEABLE: [Renameable; 10] = [
    Renameable { flag: "--auto-annotation", setting: "annotations.auto", key: AUTO },
    Renameable { flag: "--configmap-auto-annotation", setting: "annotations.configMapAuto", key: CONFIGMAP_AUTO },
    Renameable { flag: "--secret-auto-annotation", setting: "annotations.secretAuto", key: SECRET_AUTO },
    Renameable { flag: "--configmap-annotation", setting: "annotations.configMapReload", key: CONFIGMAP_RELOAD },
    Renameable { flag: "--secret-annotation", setting: "annotations.secretReload", key: SECRET_RELOAD },
    Renameable { flag: "--auto-search-annotation", setting: "annotations.search", key: SEARCH },
    Renameable { flag: "--search-match-annotation", setting: "annotations.match", key: MATCH },
    Renameable { flag: "--ignore-annotation", setting: "annotations.ignore", key: IGNORE },
    Renameable { flag: "--pause-deployment-annotation", setting: "annotations.pausePeriod", key: PAUSE_PERIOD },
    Renameable { flag: "--pause-deployment-time-annotation", setting: "annotations.pausedAt", key: PAUSED_AT },
];

/// The annotation names a controller reads (and writes: `paused-at`): Reloader's, with the
/// Reloader-family names its flags renamed. At most one entry per [`RENAMEABLE`] key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnnotationNames {
    /// Reloader's default name of a renamed key, and its name here.
    renamed: BTreeMap<&'static str, String>,
}

/// Why a name cannot be used: the [`Renameable::flag`] is the caller's to name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{0}")]
    Invalid(String),
    #[error("already used by the annotation {0}")]
    Taken(String),
}

impl AnnotationNames {
    /// Reloader's names (no rename).
    pub fn reloader() -> Self {
        Self::default()
    }

    /// Reloader's names with the Reloader-family name of each given key
    /// replaced: each a valid annotation key that no other key uses (checked
    /// after all renames, so two keys may trade names). The error says which
    /// rename is refused.
    pub fn renamed<'r>(
        renames: impl IntoIterator<Item = (&'static Renameable, &'r str)>,
    ) -> Result<Self, (&'static Renameable, NameError)> {
        let mut names = Self::reloader();
        let mut given = Vec::new();
        for (which, name) in renames {
            valid_key(name).map_err(|e| (which, NameError::Invalid(e)))?;
            if name == which.key.stakater {
                names.renamed.remove(which.key.stakater);
            } else {
                names.renamed.insert(which.key.stakater, name.to_string());
            }
            given.push((which, name));
        }
        for (which, name) in given {
            let own = names.key(which.key);
            let taken = names.all_keys().filter(|k| *k != own).find(|k| k.names().contains(&name));
            let taken = taken.map(|k| k.names().join(" / "));
            let written = [LAST_RELOADED_FROM, RECORD_ANNOTATION].into_iter().find(|w| *w == name);
            if let Some(other) = taken.or(written.map(|w| format!("{w} (written by the controller)"))) {
                return Err((which, NameError::Taken(other)));
            }
        }
        Ok(names)
    }

    /// `key` as read here: its Reloader-family name renamed if a flag did.
    pub fn key(&self, key: Key<'static>) -> Key<'_> {
        match self.renamed.get(key.stakater) {
            Some(name) => Key { stakater: name, deckhouse: key.deckhouse },
            None => key,
        }
    }

    /// Every key a workload may carry, as read here.
    pub fn workload_keys(&self) -> impl Iterator<Item = Key<'_>> {
        WORKLOAD_KEYS.into_iter().map(|k| self.key(k))
    }

    /// Every key a workload or a ConfigMap/Secret may carry, as read here.
    pub fn all_keys(&self) -> impl Iterator<Item = Key<'_>> {
        self.workload_keys().chain(RESOURCE_KEYS.into_iter().map(|k| self.key(k)))
    }

    /// The renamed keys: (flag, name), for the start log.
    pub fn renames(&self) -> Vec<(&'static str, &str)> {
        RENAMEABLE.iter().filter_map(|r| self.renamed.get(r.key.stakater).map(|n| (r.flag, n.as_str()))).collect()
    }

    /// The names of this process (set once by the controller at start;
    /// Reloader's until then), for the watch streams and the reload path,
    /// which see no settings.
    pub fn global() -> &'static AnnotationNames {
        static RELOADER: AnnotationNames = AnnotationNames { renamed: BTreeMap::new() };
        GLOBAL.get().unwrap_or(&RELOADER)
    }

    /// Sets [`Self::global`]; only the first call has an effect (false after).
    pub fn set_global(names: AnnotationNames) -> bool {
        GLOBAL.set(names).is_ok()
    }
}

static GLOBAL: OnceLock<AnnotationNames> = OnceLock::new();

/// Longest prefix of an annotation key (a DNS subdomain) and longest name part.
const MAX_PREFIX: usize = 253;
const MAX_NAME: usize = 63;

/// A Kubernetes annotation key: an optional DNS-subdomain prefix and `/`,
/// then a name of at most 63 characters (alphanumerics, `-`, `_`, `.`,
/// starting and ending alphanumeric). The message says what is wrong.
pub fn valid_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let alnum = |c: u8| c.is_ascii_alphanumeric();
    let name_ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().all(|c| alnum(c) || matches!(c, b'-' | b'_' | b'.'))
        && name.bytes().next().is_some_and(alnum)
        && name.bytes().last().is_some_and(alnum);
    if !name_ok {
        return Err(format!(
            "not an annotation key: the name part must be 1-{MAX_NAME} characters of [A-Za-z0-9-_.], \
             starting and ending alphanumeric"
        ));
    }
    if let Some(prefix) = prefix {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if prefix.is_empty() || prefix.len() > MAX_PREFIX || !prefix.split('.').all(label_ok) {
            return Err(format!(
                "not an annotation key: the prefix before '/' must be a DNS subdomain of at most {MAX_PREFIX} \
                 characters (lower-case labels separated by dots)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn which(key: Key<'static>) -> &'static Renameable {
        RENAMEABLE.iter().find(|r| r.key == key).unwrap()
    }

    fn renamed(pairs: &[(Key<'static>, &str)]) -> AnnotationNames {
        AnnotationNames::renamed(pairs.iter().map(|(k, n)| (which(*k), *n))).unwrap()
    }

    fn refusal(pairs: &[(Key<'static>, &str)]) -> (&'static str, NameError) {
        let e = AnnotationNames::renamed(pairs.iter().map(|(k, n)| (which(*k), *n))).unwrap_err();
        (e.0.flag, e.1)
    }

    #[test]
    fn a_rename_replaces_the_reloader_name_and_keeps_the_deckhouse_one() {
        let names = renamed(&[(AUTO, "example.com/auto")]);
        assert_eq!(names.key(AUTO).names(), ["example.com/auto", "pod-reloader.deckhouse.io/auto"]);
        assert_eq!(names.key(SEARCH), SEARCH);
        let map: BTreeMap<String, String> = [("reloader.stakater.com/auto".to_string(), "true".to_string())].into();
        assert_eq!(get(&map, names.key(AUTO)), None, "Reloader's name is not read once renamed");
        assert_eq!(get(&map, AUTO), Some("true"));
        assert_eq!(names.renames(), [("--auto-annotation", "example.com/auto")]);
    }

    #[test]
    fn every_flag_renames_a_distinct_key_of_the_key_lists() {
        let all: Vec<Key<'static>> = WORKLOAD_KEYS.into_iter().chain(RESOURCE_KEYS).collect();
        for r in &RENAMEABLE {
            assert!(all.contains(&r.key), "{} renames a key the lists lack", r.flag);
            assert_eq!(RENAMEABLE.iter().filter(|o| o.key == r.key).count(), 1);
        }
    }

    #[test]
    fn invalid_or_taken_names_are_refused() {
        for bad in ["", "a/", "/a", "Example.com/auto", "a..b/c", "-a", "a b", &format!("{}/a", "x".repeat(254))] {
            assert!(matches!(refusal(&[(AUTO, bad)]), ("--auto-annotation", NameError::Invalid(_))), "{bad:?}");
        }
        assert!(matches!(refusal(&[(AUTO, &"a".repeat(64))]).1, NameError::Invalid(_)));
        let taken = |other: &str| NameError::Taken(other.to_string());
        assert_eq!(
            refusal(&[(AUTO, "reloader.stakater.com/search")]),
            ("--auto-annotation", taken("reloader.stakater.com/search / pod-reloader.deckhouse.io/search"))
        );
        assert_eq!(
            refusal(&[(SEARCH, "x.io/s"), (IGNORE, "pod-reloader.deckhouse.io/auto")]).1,
            taken("reloader.stakater.com/auto / pod-reloader.deckhouse.io/auto")
        );
        assert_eq!(
            refusal(&[(PAUSED_AT, "pod-reloader.deckhouse.io/reloaded-hashes")]),
            (
                "--pause-deployment-time-annotation",
                taken("pod-reloader.deckhouse.io/reloaded-hashes (written by the controller)")
            )
        );
        assert!(matches!(refusal(&[(AUTO, "x.io/a"), (MATCH, "x.io/a")]).1, NameError::Taken(_)));
        assert_eq!(renamed(&[(AUTO, "reloader.stakater.com/auto")]), AnnotationNames::reloader());
        // Two keys may trade names.
        let traded = renamed(&[(AUTO, "reloader.stakater.com/search"), (SEARCH, "reloader.stakater.com/auto")]);
        assert_eq!(traded.key(AUTO).stakater, "reloader.stakater.com/search");
        assert_eq!(traded.key(SEARCH).stakater, "reloader.stakater.com/auto");
        assert_eq!(renamed(&[(AUTO, "auto")]).key(AUTO).stakater, "auto", "a key without prefix is valid");
    }
}
