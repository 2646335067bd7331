//! `pod-reloader explain`: for one workload, which ConfigMaps and Secrets it
//! follows and why, the hash each has now against the hash the workload
//! runs, and what a change would do. Pure: the caller reads the objects.

use std::fmt::Write as _;

use crate::decision::{Decision, decide};
use crate::envvar::env_var_name;
use crate::facts::ResourceFacts;
use crate::index::WorkloadEntry;
use crate::keys::ResourceKind;
use crate::patch::Strategy;
use crate::record::{RecordKey, RolledTo};
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
fn runs_and_sync(
    entry: &WorkloadEntry,
    kind: ResourceKind,
    name: &str,
    current: Option<ResourceFacts>,
    key: Option<&RecordKey>,
) -> (Option<String>, Sync) {
    let Some((rolled, ours)) = entry.rolled_to(kind, name, key) else {
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
    let source = if ours { "record" } else { "Reloader's env var/annotation" };
    let in_sync = current.map(|c| rolled.is(c.hash, key));
    let shown = match rolled {
        RolledTo::Plain(h) => format!("{} ({source})", short(&h.to_hex())),
        // A sealed value tells nothing by itself: show the current hash when it matches.
        RolledTo::Sealed(_) => match (in_sync, current) {
            (Some(true), Some(c)) => format!("{} ({source}, keyed)", short(&c.hash.to_hex())),
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
/// namespace that a reload list names without a reference.
pub fn rows(
    entry: &WorkloadEntry,
    namespace_resources: &[(ResourceKind, String, ResourceFacts)],
    auto_reload_all: bool,
    key: Option<&RecordKey>,
) -> Vec<Row> {
    let current_of = |kind: ResourceKind, name: &str| {
        namespace_resources.iter().find(|(k, n, _)| *k == kind && n == name).map(|(_, _, c)| *c)
    };
    let mut out = Vec::new();
    let mut push = |kind: ResourceKind, name: &str, used: String| {
        let cur = current_of(kind, name);
        let (runs, sync) = runs_and_sync(entry, kind, name, cur, key);
        out.push(Row {
            kind,
            name: name.to_string(),
            used,
            decision: decide(entry, kind, name, cur.as_ref(), auto_reload_all),
            current: cur.map(|c| c.hash.to_hex()),
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
    for (label, p) in [("ConfigMaps", &entry.policy.configmap), ("Secrets", &entry.policy.secret)] {
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
