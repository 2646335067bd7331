//! `pod-reloader explain`: for one workload, which ConfigMaps and Secrets it
//! follows and why, the hash each has now against the hash the workload
//! runs, and what a change would do. Pure: the caller reads the objects.

use std::fmt::Write as _;

use crate::chosen_keys::{ChosenKeys, is_current};
use crate::decision::{Decision, decide};
use crate::envvar::env_var_name;
use crate::facts::ResourceFacts;
use crate::hash::ContentHash;
use crate::index::WorkloadEntry;
use crate::keys::ResourceKind;
use crate::patch::Strategy;
use crate::record::{Record, RecordKey, RolledTo};
use crate::references::Via;

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub kind: ResourceKind,
    pub name: String,
    pub used: String,
    pub decision: Decision,
    pub current: Option<String>,
    /// What the workload runs, as shown (a hash and where it was read).
    pub runs: Option<String>,
    pub sync: Sync,
}

/// The current content against what the workload runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// The resource does not exist.
    Missing,
    NoRecord,
    InSync,
    Differs,
    /// The record is keyed and this report has no key to compare with.
    NeedsKey,
    /// The record was written under another key than the controller's.
    OtherKey,
}

/// What the workload runs for one resource, and how that compares.
/// `current` is what the workload is compared on now (the hash, or with
/// `reload-on-keys` the digest of its chosen keys) and the whole hash.
fn runs_and_sync(
    entry: &WorkloadEntry,
    kind: ResourceKind,
    name: &str,
    current: Option<(ContentHash, ContentHash)>,
    key: Option<&RecordKey>,
    stored: Option<&Record>,
) -> (Option<String>, Sync) {
    let Some((rolled, ours)) = entry.rolled_to_stored(kind, name, key, stored) else {
        // A sealed entry not usable under `key`: say why rather than "no record".
        if let Some(RolledTo::Sealed(_)) = entry.recorded.raw(kind, name) {
            let id = entry.recorded.key_id().map(|i| i.to_string()).unwrap_or_else(|| "unnamed".into());
            let (text, sync) = match key {
                Some(_) => (format!("(record under another key, {id})"), Sync::OtherKey),
                None => (format!("(keyed record, key {id})"), Sync::NeedsKey),
            };
            return (Some(text), if current.is_some() { sync } else { Sync::Missing });
        }
        return (None, if current.is_some() { Sync::NoRecord } else { Sync::Missing });
    };
    let source = match (ours, entry.recorded.get(kind, name, key).is_some()) {
        (false, _) => "Reloader's env var/annotation",
        (true, true) => "record",
        (true, false) => "baseline store",
    };
    let in_sync = current.map(|(now, whole)| is_current(|h| rolled.is(h, key), now, whole));
    let shown = match rolled {
        RolledTo::Plain(h) => format!("{} ({source})", short(&h.to_hex())),
        // A sealed value tells nothing by itself: show the current hash when it matches.
        RolledTo::Sealed(_) => match (in_sync, current) {
            (Some(true), Some((now, _))) => format!("{} ({source}, keyed)", short(&now.to_hex())),
            _ => format!("another content ({source}, keyed)"),
        },
    };
    let sync = match in_sync {
        None => Sync::Missing,
        Some(true) => Sync::InSync,
        Some(false) => Sync::Differs,
    };
    (Some(shown), sync)
}

fn short(h: &str) -> String {
    h.chars().take(12).collect()
}

fn via_text(r: &crate::references::Reference) -> String {
    let how = match &r.via {
        Via::Volume { volume, projected: false } => format!("volume {volume}"),
        Via::Volume { volume, projected: true } => format!("projected volume {volume}"),
        Via::EnvValueFrom { env } => format!("env {env}"),
        Via::EnvFrom => "envFrom".to_string(),
    };
    if r.init_only {
        format!("{how} (init container only; marks {})", r.container)
    } else {
        format!("{how} in {}", r.container)
    }
}

/// Builds the rows: every referenced resource, then every resource in the
/// namespace that a reload list names without a reference. With
/// `reload-on-keys`, `chosen_digest` gives the digest of the chosen keys of
/// a resource, which is what is shown and compared.
pub fn rows(
    entry: &WorkloadEntry,
    namespace_resources: &[(ResourceKind, String, ResourceFacts)],
    chosen_digest: impl Fn(ResourceKind, &str, &ChosenKeys) -> Option<ContentHash>,
    auto_reload_all: bool,
    key: Option<&RecordKey>,
    stored: Option<&Record>,
) -> Vec<Row> {
    let current_of = |kind: ResourceKind, name: &str| {
        namespace_resources.iter().find(|(k, n, _)| *k == kind && n == name).map(|(_, _, c)| *c)
    };
    let mut out = Vec::new();
    let mut push = |kind: ResourceKind, name: &str, used: String| {
        let cur = current_of(kind, name);
        let compared = cur.map(|c| match &entry.policy.chosen_keys {
            Some(chosen) => (chosen_digest(kind, name, chosen).unwrap_or(c.hash), c.hash),
            None => (c.hash, c.hash),
        });
        let (runs, sync) = runs_and_sync(entry, kind, name, compared, key, stored);
        out.push(Row {
            kind,
            name: name.to_string(),
            used,
            decision: decide(entry, kind, name, cur.as_ref(), auto_reload_all),
            current: compared.map(|(now, _)| now.to_hex()),
            runs,
            sync,
        });
    };
    for ((kind, name), r) in &entry.references {
        push(*kind, name, via_text(r));
    }
    for (kind, name, _) in namespace_resources {
        if entry.references.contains_key(&(*kind, name.clone())) {
            continue;
        }
        if entry.policy.for_kind(*kind).listed(name).is_some() {
            push(*kind, name, "not referenced; named by a reload list".into());
        }
    }
    out
}

/// Renders the report as plain text, kubectl-describe style.
pub fn render(entry: &WorkloadEntry, rows: &[Row], strategy: Strategy, auto_reload_all: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}", entry.key);
    let _ = writeln!(s, "Strategy:        {strategy} (autoReloadAll: {auto_reload_all})");
    // SecretProviderClasses only where the workload has anything to do with them.
    let spc = &entry.policy.secret_provider_class;
    let spc_shown = entry.references.keys().any(|(k, _)| *k == ResourceKind::SecretProviderClass)
        || spc.typed_auto != crate::policy::Flag::Unset
        || !spc.reload_list.is_empty()
        || !spc.exclude.is_empty();
    let kinds = [("ConfigMaps", &entry.policy.configmap), ("Secrets", &entry.policy.secret)]
        .into_iter()
        .chain(spc_shown.then_some(("SecretProviderClasses", spc)));
    for (label, p) in kinds {
        let mut parts = Vec::new();
        if p.auto.is_true() {
            parts.push("auto".to_string());
        }
        if p.typed_auto.is_true() {
            parts.push("typed auto".to_string());
        }
        if p.search {
            parts.push("search".to_string());
        }
        if !p.reload_list.is_empty() {
            let pats: Vec<&str> = p.reload_list.iter().map(|e| e.pattern.as_str()).collect();
            parts.push(format!("reload list [{}]", pats.join(", ")));
        }
        if !p.exclude.is_empty() {
            parts.push(format!("exclude [{}]", p.exclude.join(", ")));
        }
        if parts.is_empty() {
            parts.push("none".into());
        }
        let _ = writeln!(s, "{:<17}{}", format!("{label}:"), parts.join("; "));
    }
    if let Some(keys) = &entry.policy.chosen_keys {
        let keys: Vec<&str> = keys.iter().collect();
        let _ = writeln!(s, "Reload on keys:  {} (hashes below are of these keys)", keys.join(", "));
    }
    if let Some(p) = entry.policy.pause_period {
        let _ = writeln!(s, "Pause period:    {}", crate::duration::format_duration(p));
    }
    for p in &entry.policy.problems {
        let _ = writeln!(s, "Problem:         {p}");
    }
    if rows.is_empty() {
        let _ = writeln!(s, "\nIt uses no ConfigMap or Secret, and no reload list names one in its namespace.");
        return s;
    }
    for r in rows {
        let _ = writeln!(s, "\n{} {}/{}", r.kind, entry.key.namespace, r.name);
        let _ = writeln!(s, "  Used by:       {}", r.used);
        let _ = writeln!(
            s,
            "  Current hash:  {}",
            r.current.as_deref().map(short).unwrap_or_else(|| "(does not exist)".into())
        );
        let _ = writeln!(s, "  Workload runs: {}", r.runs.as_deref().unwrap_or("(nothing recorded)"));
        match &r.decision {
            Decision::Reload { container, why } => {
                let _ = writeln!(s, "  Followed:      yes, {why}");
                let how = match strategy {
                    Strategy::EnvVars => format!("sets {} on container {container}", env_var_name(r.kind, &r.name)),
                    Strategy::Annotations => {
                        "writes reloader.stakater.com/last-reloaded-from on the pod template".into()
                    }
                };
                let _ = writeln!(s, "  On change:     rolls the workload ({how})");
                let state = match r.sync {
                    Sync::InSync => "in sync",
                    Sync::Differs => "DIFFERS: the controller rolls it at its next reconciliation",
                    Sync::NoRecord => "no record yet: the controller records a baseline without rolling",
                    Sync::Missing => "the resource does not exist",
                    Sync::NeedsKey => {
                        "unknown: the record is keyed; give --record-key-file or read access to the key Secret"
                    }
                    Sync::OtherKey => {
                        "recorded under another key: the controller records a new baseline without rolling"
                    }
                };
                let _ = writeln!(s, "  State:         {state}");
            }
            Decision::Skip(why) => {
                let _ = writeln!(s, "  Followed:      no, {why}");
                let _ = writeln!(s, "  On change:     nothing");
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chosen_keys::KeyDigests;
    use crate::hash::configmap_hash;
    use crate::keys::{WorkloadKey, WorkloadKind};
    use crate::record::{RECORD_ANNOTATION, Record};
    use k8s_openapi::api::core::v1::PodTemplateSpec;
    use serde_json::json;
    use std::collections::BTreeMap;

    #[test]
    fn reload_on_keys_is_shown_and_compared_on_the_chosen_keys() {
        let data =
            |a: &str, b: &str| BTreeMap::from([("a".to_string(), a.to_string()), ("b".to_string(), b.to_string())]);
        let now = data("1", "2");
        let whole = configmap_hash(Some(&now), None);
        let digests = KeyDigests::of_configmap(whole, Some(&now), None, ["a"]);
        let chosen = ChosenKeys::from(["a"]);
        let digest = digests.digest(&chosen).unwrap();
        let rows_for = |rolled: ContentHash| {
            let mut rec = Record::new();
            rec.set(ResourceKind::ConfigMap, "cfg", rolled, None);
            let meta = BTreeMap::from([
                ("reloader.stakater.com/auto".to_string(), "true".to_string()),
                ("reloader.stakater.com/reload-on-keys".to_string(), "a".to_string()),
                (RECORD_ANNOTATION.to_string(), rec.render(None)),
            ]);
            let t: PodTemplateSpec = serde_json::from_value(
                json!({"spec": {"containers": [{"name": "app", "envFrom": [{"configMapRef": {"name": "cfg"}}]}]}}),
            )
            .unwrap();
            let e =
                WorkloadEntry::from_object(WorkloadKey::new(WorkloadKind::Deployment, "ns", "web"), &meta, Some(&t));
            let facts = ResourceFacts { hash: whole, ignored: false, matched: false };
            let rows = rows(
                &e,
                &[(ResourceKind::ConfigMap, "cfg".into(), facts)],
                |_, _, c| digests.digest(c),
                false,
                None,
                None,
            );
            (render(&e, &rows, Strategy::EnvVars, false), rows)
        };
        let (text, rows) = rows_for(digest);
        assert_eq!(rows[0].sync, Sync::InSync, "{text}");
        assert_eq!(rows[0].current, Some(digest.to_hex()), "the digest of the chosen keys is shown");
        assert!(text.contains("Reload on keys:  a"), "{text}");
        assert_eq!(rows_for(whole).1[0].sync, Sync::InSync, "the whole current content was rolled to");
        let old = KeyDigests::of_configmap(whole, Some(&data("0", "2")), None, ["a"]).digest(&chosen).unwrap();
        assert_eq!(rows_for(old).1[0].sync, Sync::Differs);
    }
}
