//! Property test: whatever a workload's editors write into its annotations
//! (values up to 64 KiB, thousands of entries, regex metacharacters,
//! repetitions with huge counts, nesting), parsing its policy does not
//! panic, takes bounded time, and keeps bounded memory: at most
//! `MAX_ENTRIES` entries per list, none longer than `MAX_PATTERN_CHARS`,
//! each list's compiled regexes within `LIST_REGEX_BUDGET`, and a bounded
//! number of short problems.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pod_reloader_core::policy::{KindPolicy, WorkloadPolicy, limits};
use proptest::prelude::*;

const LIST_KEYS: [&str; 6] = [
    "configmap.reloader.stakater.com/reload",
    "pod-reloader.deckhouse.io/configmap-reload",
    "secret.reloader.stakater.com/reload",
    "pod-reloader.deckhouse.io/secret-reload",
    "configmaps.exclude.reloader.stakater.com/reload",
    "secrets.exclude.pod-reloader.deckhouse.io/reload",
];
const OTHER_KEYS: [&str; 4] = [
    "reloader.stakater.com/auto",
    "secret.reloader.stakater.com/auto",
    "deployment.reloader.stakater.com/pause-period",
    "deployment.reloader.stakater.com/paused-at",
];
const MAX_VALUE: usize = 64 * 1024;

/// One list entry: names, metacharacter soup, big repetitions of cheap and
/// of Unicode atoms, nested repetitions, arbitrary text.
fn entry() -> impl Strategy<Value = String> {
    let atom =
        proptest::sample::select(vec![r"\w", r"\d", r"\pL", ".", "a", "[a-z]", r"(\w|\d)", r"\p{Greek}", "(?i)k"]);
    prop_oneof![
        "[a-z0-9.-]{1,30}",
        r"[\\()\[\]{}*+?|^$.a-z0-9]{0,40}",
        (atom.clone(), 0u32..100_000).prop_map(|(a, n)| format!("{a}{{{n}}}")),
        (atom.clone(), 0u32..2_000, 0u32..2_000).prop_map(|(a, n, m)| format!("(({a}){{{n}}}){{1,{m}}}")),
        (atom, 1usize..80).prop_map(|(a, depth)| format!("{}{a}{}", "(".repeat(depth), ")*".repeat(depth))),
        any::<String>(),
        "[a-z]{200,400}",
    ]
}

/// A comma-separated value of up to 64 KiB: a few entries, or one repeated thousands of times.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(entry(), 0..100).prop_map(|v| v.join(",")),
        (entry(), 1usize..20_000).prop_map(|(e, n)| {
            let mut v = vec![e.as_str(); n].join(",");
            let mut end = v.len().min(MAX_VALUE);
            while !v.is_char_boundary(end) {
                end -= 1;
            }
            v.truncate(end);
            v
        }),
    ]
}

fn annotations() -> impl Strategy<Value = BTreeMap<String, String>> {
    let key = proptest::sample::select(LIST_KEYS.iter().chain(OTHER_KEYS.iter()).copied().collect::<Vec<_>>());
    proptest::collection::btree_map(key.prop_map(str::to_string), value(), 0..6)
}

fn check_kind(k: &KindPolicy) -> Result<(), TestCaseError> {
    // Two spellings of the list and of the exclude list.
    prop_assert!(k.reload_list.len() <= 2 * limits::MAX_ENTRIES, "{} entries kept", k.reload_list.len());
    prop_assert!(k.exclude.len() <= 2 * limits::MAX_ENTRIES, "{} excludes kept", k.exclude.len());
    for e in &k.reload_list {
        prop_assert!(e.pattern.chars().count() <= limits::MAX_PATTERN_CHARS);
    }
    for e in &k.exclude {
        prop_assert!(e.chars().count() <= limits::MAX_PATTERN_CHARS);
    }
    // Compilation fails above the size limits and the list budget stops the
    // rest, so what is kept is bounded by the budgets.
    let held: usize = k.reload_list.iter().map(|e| e.regex.memory_usage()).sum();
    prop_assert!(held <= 2 * limits::LIST_REGEX_BUDGET, "{held} bytes of regexes kept");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 64, ..ProptestConfig::default() })]

    #[test]
    fn hostile_annotations_parse_in_bounded_time_and_memory(meta in annotations(), tmpl in annotations(), name in "[a-z0-9.-]{1,63}") {
        let start = Instant::now();
        let p = WorkloadPolicy::parse(&meta, &tmpl);
        let _ = p.configmap.listed(&name);
        let _ = p.secret.listed(&name);
        let took = start.elapsed();
        // Generous for a debug build on a busy machine; unbounded inputs took minutes.
        prop_assert!(took < Duration::from_secs(10), "parsing took {took:?}");
        check_kind(&p.configmap)?;
        check_kind(&p.secret)?;
        // One problem per key and reason at most, each quoting a cut value.
        prop_assert!(p.problems.len() <= 40, "{} problems", p.problems.len());
        for problem in &p.problems {
            let shown = problem.to_string();
            prop_assert!(shown.len() <= 2048, "a problem of {} bytes", shown.len());
            prop_assert!(!shown.contains('\n'));
        }
    }
}
