//! Property tests: annotation parsing, selectors, durations and the
//! canonical hash take arbitrary input without panicking, and the hash
//! equals SHA-1 of Reloader's canonical string built independently.
#![allow(clippy::unwrap_used)]

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

/// Keys that are often prefixes of one another, sometimes arbitrary.
fn hash_key() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[ab=;-]{0,3}", 1 => any::<String>()]
}

fn sha1_hex(bytes: &[u8]) -> String {
    use sha1::Digest as _;
    sha1::Sha1::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
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
        let _ = Selector::parse_reloader_forms(&s);
        let _ = parse_go_duration(&s);
        let _ = parse_go_duration(&d);
    }

    /// The hash is SHA-1 of Reloader's canonical string, checked against a
    /// reference built another way (whole strings, `sort`, `join`) rather
    /// than through `hash_entries`. Keys come from a small alphabet holding
    /// `=`, `-` and `;`, so that one key is often a prefix of another: the
    /// canonical order is of whole `k=v` entries (Go's `sort.Strings`), which
    /// differs from the key order a map iterates in ("a-b=…" < "a=…"), and
    /// `data` and `binaryData` entries sort together, not one map after the other.
    #[test]
    fn hash_is_sha1_of_the_sorted_canonical_string(
        data in proptest::collection::btree_map(hash_key(), any::<String>(), 0..8),
        bin in proptest::collection::btree_map(hash_key(), any::<Vec<u8>>(), 0..4),
    ) {
        use base64::Engine as _;
        let b: BTreeMap<String, ByteString> = bin.iter().map(|(k, v)| (k.clone(), ByteString(v.clone()))).collect();

        let mut cm: Vec<String> = data.iter().map(|(k, v)| format!("{k}={v}")).collect();
        cm.extend(bin.iter().map(|(k, v)| format!("{k}={}", base64::engine::general_purpose::STANDARD.encode(v))));
        cm.sort();
        prop_assert_eq!(configmap_hash(Some(&data), Some(&b)).to_hex(), sha1_hex(cm.join(";").as_bytes()));

        let mut sec: Vec<Vec<u8>> = bin.iter().map(|(k, v)| [k.as_bytes(), b"=", v].concat()).collect();
        sec.sort();
        prop_assert_eq!(secret_hash(Some(&b)).to_hex(), sha1_hex(&sec.join(&b';')));
    }
}
