//! What a workload last rolled to, per followed resource.
//!
//! pod-reloader keeps this record on the workload's own metadata (never the
//! pod template, so writing it never rolls anything), in the annotation
//! `pod-reloader.deckhouse.io/reloaded-hashes`: a JSON object from
//! `ConfigMap/<name>` or `Secret/<name>` to the 40-hex hash. It is written
//! with every reload and as a baseline when a workload is first seen, so a
//! controller that starts after a change (restart, failover, outage) can
//! tell which workloads still have to roll: level-triggered, not
//! event-triggered.
//!
//! Workloads migrated from Stakater Reloader, or Deckhouse's earlier module,
//! have no record yet; their `STAKATER_*` env vars and `last-reloaded-from`
//! annotation stand in for it until the first baseline is written.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;

use crate::envvar::env_var_name;
use crate::hash::ContentHash;
use crate::keys::ResourceKind;
use crate::patch::current_reload_source;

pub const RECORD_ANNOTATION: &str = "pod-reloader.deckhouse.io/reloaded-hashes";

pub type Record = BTreeMap<(ResourceKind, String), ContentHash>;

fn kind_of(s: &str) -> Option<ResourceKind> {
    match s {
        "ConfigMap" => Some(ResourceKind::ConfigMap),
        "Secret" => Some(ResourceKind::Secret),
        _ => None,
    }
}

/// Parses the record annotation; entries that do not parse are dropped
/// (a hand-edited record then simply lacks them and gets a new baseline).
pub fn parse(annotations: &BTreeMap<String, String>) -> Record {
    let Some(raw) = annotations.get(RECORD_ANNOTATION) else {
        return Record::new();
    };
    let Ok(map) = serde_json::from_str::<BTreeMap<String, String>>(raw) else {
        return Record::new();
    };
    map.into_iter()
        .filter_map(|(k, v)| {
            let (kind, name) = k.split_once('/')?;
            Some(((kind_of(kind)?, name.to_string()), ContentHash::parse_hex(&v)?))
        })
        .collect()
}

/// Renders a record as the annotation value (sorted, compact).
pub fn render(record: &Record) -> String {
    let map: BTreeMap<String, String> =
        record.iter().map(|((kind, name), h)| (format!("{}/{name}", kind.as_str()), h.to_hex())).collect();
    serde_json::to_string(&map).expect("string map serialises")
}

/// Hashes Reloader (or an earlier pod-reloader without a record) left on
/// the pod template for `followed` resources: `STAKATER_*` env vars on any
/// container, and the resource named by `last-reloaded-from`.
pub fn legacy(template: &PodTemplateSpec, namespace: &str, followed: &[(ResourceKind, String)]) -> Record {
    let mut out = Record::new();
    let containers = template.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or(&[]);
    for (kind, name) in followed {
        let var = env_var_name(*kind, name);
        let found = containers
            .iter()
            .flat_map(|c| c.env.iter().flatten())
            .find(|e| e.name == var)
            .and_then(|e| e.value.as_deref())
            .and_then(ContentHash::parse_hex);
        if let Some(h) = found {
            out.insert((*kind, name.clone()), h);
        }
    }
    if let Some(src) = current_reload_source(template) {
        let kind = match src.kind.as_str() {
            "CONFIGMAP" => Some(ResourceKind::ConfigMap),
            "SECRET" => Some(ResourceKind::Secret),
            _ => None,
        };
        if let (Some(kind), Some(h)) = (kind, ContentHash::parse_hex(&src.hash))
            && src.namespace == namespace
            && followed.iter().any(|(k, n)| *k == kind && *n == src.name)
        {
            out.entry((kind, src.name)).or_insert(h);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_and_drops_garbage() {
        let mut r = Record::new();
        r.insert((ResourceKind::ConfigMap, "a".into()), ContentHash::of(b"1"));
        r.insert((ResourceKind::Secret, "b".into()), ContentHash::of(b"2"));
        let ann = BTreeMap::from([(RECORD_ANNOTATION.to_string(), render(&r))]);
        assert_eq!(parse(&ann), r);
        let bad = BTreeMap::from([(RECORD_ANNOTATION.to_string(), r#"{"Pod/x":"00","ConfigMap/y":"zz"}"#.to_string())]);
        assert!(parse(&bad).is_empty());
        let not_json = BTreeMap::from([(RECORD_ANNOTATION.to_string(), "nope".to_string())]);
        assert!(parse(&not_json).is_empty());
    }

    #[test]
    fn legacy_reads_env_vars_and_last_reloaded_from() {
        let h1 = ContentHash::of(b"x");
        let h2 = ContentHash::of(b"y");
        let last = format!(
            r#"{{"type":"SECRET","name":"tls","namespace":"ns","hash":"{h2}","containerRefs":["app"],"observedAt":1}}"#
        );
        let t: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"annotations": {"reloader.stakater.com/last-reloaded-from": last}},
            "spec": {"containers": [{"name": "app", "env": [{"name": "STAKATER_CFG_CONFIGMAP", "value": h1.to_hex()}]}]}
        }))
        .unwrap();
        let followed = [(ResourceKind::ConfigMap, "cfg".to_string()), (ResourceKind::Secret, "tls".to_string())];
        let r = legacy(&t, "ns", &followed);
        assert_eq!(r.get(&(ResourceKind::ConfigMap, "cfg".into())), Some(&h1));
        assert_eq!(r.get(&(ResourceKind::Secret, "tls".into())), Some(&h2));
        assert!(legacy(&t, "other-ns", &followed[1..]).is_empty(), "namespace must match");
    }
}
