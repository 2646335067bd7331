//! Whether a change to a ConfigMap/Secret reloads a workload, and on which
//! container. Order of checks, as in Reloader's `ShouldReload`:
//! resource `ignore` → exclude list → reload list → search + match →
//! auto / typed auto → `autoReloadAll` (only when neither auto value is set,
//! so `auto: "false"` opts out).
//!
//! A reload-list match reloads even a workload that does not reference the
//! resource (its first container gets the var); every other reason requires
//! a reference.

use std::fmt;

use crate::facts::ResourceFacts;
use crate::index::WorkloadEntry;
use crate::keys::ResourceKind;
use crate::policy::Flag;

/// Why a workload follows a resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    /// Named by a reload-list entry (the pattern as written).
    Listed { pattern: String },
    /// `search: "true"` on the workload and `match: "true"` on the resource.
    SearchMatch,
    /// `auto: "true"`.
    Auto,
    /// `configmap…/auto` or `secret…/auto`.
    TypedAuto,
    /// The controller's `autoReloadAll` setting.
    AutoReloadAll,
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Listed { pattern } => {
                write!(f, "listed in the reload annotation (pattern {pattern:?})")
            }
            Why::SearchMatch => f.write_str("search annotation on the workload and match annotation on the resource"),
            Why::Auto => f.write_str("auto annotation"),
            Why::TypedAuto => f.write_str("typed auto annotation"),
            Why::AutoReloadAll => f.write_str("autoReloadAll setting"),
        }
    }
}

/// Why a change does not reload a workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    ResourceIgnored,
    Excluded,
    /// Followed for a reason that needs a reference, but the pod template has none.
    NotReferenced,
    /// `search` is on but the resource lacks `match: "true"`.
    SearchWithoutMatch,
    /// Referenced, but no annotation or setting asks for reloads.
    NotAnnotated,
    /// Listed, but the pod template has no container to mark.
    NoContainer,
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Skip::ResourceIgnored => "the resource carries the ignore annotation",
            Skip::Excluded => "the workload excludes it by name",
            Skip::NotReferenced => "the workload does not reference it",
            Skip::SearchWithoutMatch => "search is on but the resource has no match annotation",
            Skip::NotAnnotated => "no reload annotation covers it",
            Skip::NoContainer => "the pod template has no container",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Reload { container: String, why: Why },
    Skip(Skip),
}

/// Decides for one workload and one resource of its namespace, `kind`
/// `name`. `facts` is `None` for a resource that does not exist (`explain`
/// shows what a creation would do): it carries no annotations then.
pub fn decide(
    entry: &WorkloadEntry,
    kind: ResourceKind,
    name: &str,
    facts: Option<&ResourceFacts>,
    auto_reload_all: bool,
) -> Decision {
    let policy = entry.policy.for_kind(kind);
    let (ignored, matched) = facts.map_or((false, false), |f| (f.ignored, f.matched));
    if ignored {
        return Decision::Skip(Skip::ResourceIgnored);
    }
    if policy.excludes(name) {
        return Decision::Skip(Skip::Excluded);
    }
    let referenced = entry.references.get(&(kind, name.to_string())).map(|r| r.container.clone());

    if let Some(listed) = policy.listed(name) {
        let why = Why::Listed { pattern: listed.pattern.clone() };
        return match referenced.or_else(|| entry.first_container.clone()) {
            Some(container) => Decision::Reload { container, why },
            None => Decision::Skip(Skip::NoContainer),
        };
    }

    let why = if policy.search && matched {
        Some(Why::SearchMatch)
    } else if policy.auto.is_true() {
        Some(Why::Auto)
    } else if policy.typed_auto.is_true() {
        Some(Why::TypedAuto)
    } else if auto_reload_all && policy.auto == Flag::Unset && policy.typed_auto == Flag::Unset {
        Some(Why::AutoReloadAll)
    } else {
        None
    };
    match (why, referenced) {
        (Some(why), Some(container)) => Decision::Reload { container, why },
        (Some(_), None) => Decision::Skip(Skip::NotReferenced),
        (None, _) if policy.search => Decision::Skip(Skip::SearchWithoutMatch),
        (None, _) => Decision::Skip(Skip::NotAnnotated),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{WorkloadKey, WorkloadKind};
    use serde_json::json;
    use std::collections::BTreeMap;

    fn entry(meta: &[(&str, &str)], spec: serde_json::Value) -> WorkloadEntry {
        let meta: BTreeMap<String, String> = meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        WorkloadEntry::new(
            WorkloadKey::new(WorkloadKind::Deployment, "ns", "web"),
            &meta,
            &BTreeMap::new(),
            &serde_json::from_value(spec).unwrap(),
        )
    }

    fn uses_cm() -> serde_json::Value {
        json!({"containers": [{"name": "app", "envFrom": [{"configMapRef": {"name": "cfg"}}]}]})
    }

    fn plain() -> ResourceFacts {
        ResourceFacts { hash: crate::ContentHash::of(b"v1"), ignored: false, matched: false }
    }

    /// The decision for ConfigMap `name`, plain (no annotations).
    fn cm(e: &WorkloadEntry, name: &str, auto_reload_all: bool) -> Decision {
        decide(e, ResourceKind::ConfigMap, name, Some(&plain()), auto_reload_all)
    }

    fn reload(container: &str, why: Why) -> Decision {
        Decision::Reload { container: container.into(), why }
    }

    #[test]
    fn auto_needs_a_reference() {
        let e = entry(&[("reloader.stakater.com/auto", "true")], uses_cm());
        assert_eq!(cm(&e, "cfg", false), reload("app", Why::Auto));
        assert_eq!(cm(&e, "other", false), Decision::Skip(Skip::NotReferenced));
    }

    #[test]
    fn typed_auto_covers_only_its_kind() {
        let e = entry(&[("secret.reloader.stakater.com/auto", "true")], uses_cm());
        assert_eq!(cm(&e, "cfg", false), Decision::Skip(Skip::NotAnnotated));
        let e = entry(&[("configmap.reloader.stakater.com/auto", "true")], uses_cm());
        assert_eq!(cm(&e, "cfg", false), reload("app", Why::TypedAuto));
    }

    #[test]
    fn list_reloads_without_reference_on_first_container() {
        let e = entry(&[("configmap.reloader.stakater.com/reload", "other,cfg")], uses_cm());
        assert_eq!(cm(&e, "other", false), reload("app", Why::Listed { pattern: "other".into() }));
        assert_eq!(cm(&e, "nope", false), Decision::Skip(Skip::NotAnnotated));
    }

    #[test]
    fn ignore_and_exclude_win() {
        let e = entry(
            &[("reloader.stakater.com/auto", "true"), ("configmaps.exclude.reloader.stakater.com/reload", "cfg")],
            uses_cm(),
        );
        assert_eq!(cm(&e, "cfg", false), Decision::Skip(Skip::Excluded));
        let e = entry(&[("reloader.stakater.com/auto", "true")], uses_cm());
        let ignored = ResourceFacts { ignored: true, ..plain() };
        assert_eq!(
            decide(&e, ResourceKind::ConfigMap, "cfg", Some(&ignored), false),
            Decision::Skip(Skip::ResourceIgnored)
        );
    }

    #[test]
    fn search_needs_match() {
        let e = entry(&[("reloader.stakater.com/search", "true")], uses_cm());
        assert_eq!(cm(&e, "cfg", false), Decision::Skip(Skip::SearchWithoutMatch));
        let matched = ResourceFacts { matched: true, ..plain() };
        assert_eq!(decide(&e, ResourceKind::ConfigMap, "cfg", Some(&matched), false), reload("app", Why::SearchMatch));
        assert_eq!(
            decide(&e, ResourceKind::ConfigMap, "cfg", None, false),
            Decision::Skip(Skip::SearchWithoutMatch),
            "a resource that does not exist carries no match annotation"
        );
    }

    #[test]
    fn auto_reload_all_respects_opt_out() {
        let e = entry(&[], uses_cm());
        assert_eq!(cm(&e, "cfg", true), reload("app", Why::AutoReloadAll));
        assert_eq!(cm(&e, "cfg", false), Decision::Skip(Skip::NotAnnotated));
        let e = entry(&[("reloader.stakater.com/auto", "false")], uses_cm());
        assert_eq!(cm(&e, "cfg", true), Decision::Skip(Skip::NotAnnotated));
    }

    #[test]
    fn invalid_auto_acts_as_false_and_blocks_auto_reload_all() {
        let e = entry(&[("reloader.stakater.com/auto", "maybe")], uses_cm());
        assert_eq!(cm(&e, "cfg", true), Decision::Skip(Skip::NotAnnotated));
    }
}
