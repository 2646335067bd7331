//! Property tests: annotation parsing, selectors, durations and the
//! canonical hash take arbitrary input without panicking, and the hash
//! does not depend on map order.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use pod_reloader_core::annotations::{RESOURCE_KEYS, WORKLOAD_KEYS};
use pod_reloader_core::duration::parse_go_duration;
use pod_reloader_core::hash::{configmap_hash, secret_hash};
use pod_reloader_core::policy::WorkloadPolicy;
use pod_reloader_core::selector::Selector;
use proptest::prelude::*;

fn known_key() -> impl Strategy<Value = String> {
    let keys: Vec<String> =
        WORKLOAD_KEYS.iter().chain(RESOURCE_KEYS.iter()).flat_map(|k| k.names()).map(str::to_string).collect();
    prop_oneof![proptest::sample::select(keys), "[a-z./-]{1,40}"]
}

fn annotations() -> impl Strategy<Value = BTreeMap<String, String>> {
    proptest::collection::btree_map(known_key(), any::<String>(), 0..12)
}

proptest! {
    #[test]
    fn policy_parsing_never_panics(meta in annotations(), tmpl in annotations(), name in any::<String>()) {
        let p = WorkloadPolicy::parse(&meta, &tmpl);
        // Lookups with arbitrary names are total too.
        let _ = p.configmap.listed(&name);
        let _ = p.secret.excludes(&name);
        for problem in &p.problems {
            prop_assert!(!problem.message.contains('\n'), "one-line messages: {problem}");
        }
    }

    #[test]
    fn regex_lists_never_panic(list in "[ -~]{0,60}", name in "[a-z0-9.-]{0,30}") {
        let meta = BTreeMap::from([("configmap.reloader.stakater.com/reload".to_string(), list)]);
        let p = WorkloadPolicy::parse(&meta, &BTreeMap::new());
        let _ = p.configmap.listed(&name);
    }

    #[test]
    fn selectors_and_durations_never_panic(s in any::<String>(), d in "[0-9.hmsuµn]{0,12}") {
        if let Ok(sel) = Selector::parse(&s) {
            // What parses renders to something that parses to the same.
            prop_assert_eq!(Selector::parse(&sel.to_string()).unwrap(), sel);
        }
        let _ = Selector::parse_namespace_selector(&s);
        let _ = parse_go_duration(&s);
        let _ = parse_go_duration(&d);
    }

    #[test]
    fn hash_is_total_and_order_independent(
        data in proptest::collection::vec((any::<String>(), any::<String>()), 0..8),
        bin in proptest::collection::vec((any::<String>(), any::<Vec<u8>>()), 0..4),
    ) {
        let forward: BTreeMap<String, String> = data.iter().cloned().collect();
        let backward: BTreeMap<String, String> = data.iter().rev().cloned().collect();
        let b: BTreeMap<String, ByteString> = bin.iter().map(|(k, v)| (k.clone(), ByteString(v.clone()))).collect();
        // Same keys may collapse differently when reversed; compare only when the maps agree.
        if forward == backward {
            prop_assert_eq!(configmap_hash(Some(&forward), Some(&b)), configmap_hash(Some(&backward), Some(&b)));
        }
        let _ = secret_hash(Some(&b));
    }
}
