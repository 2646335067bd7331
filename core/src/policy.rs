//! A workload's reload policy, parsed once from its annotations when the
//! workload is seen, so a ConfigMap change costs no annotation parsing.
//!
//! Reloader reads the workload's `metadata.annotations`, and only when none
//! of the reload-list, auto, typed-auto or search keys is there (per resource
//! kind), the pod template's annotations. Exclude lists and the pause period
//! are read from `metadata.annotations` only.
//!
//! Annotations are written by whoever may edit the workload, so everything
//! parsed here is bounded (see [`limits`]): a list keeps at most
//! [`limits::MAX_ENTRIES`] entries of at most [`limits::MAX_PATTERN_CHARS`]
//! characters, and each regex is compiled under a size limit. What breaks a
//! limit is dropped and reported as a [`Problem`]; the rest of the policy
//! applies.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use regex_automata::Input;
use sha1::{Digest, Sha1};

use crate::annotations::{self, Key, WORKLOAD_KEYS};
use crate::chosen_keys::ChosenKeys;
use crate::duration::{WANT_DURATION, parse_go_duration};
use crate::keys::ResourceKind;
use crate::pattern::PatternError;
use crate::pattern_pool::{CompiledPattern, PatternPool};
use crate::quote::UserValue;

pub use crate::limits;

/// A boolean annotation as Reloader reads it (`strconv.ParseBool`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Flag {
    /// Not set, or set to "" (Reloader cannot tell the two apart).
    #[default]
    Unset,
    True,
    False,
    /// Set to something `strconv.ParseBool` refuses; acts as false. Kept
    /// only as far as it is shown (long values are cut).
    Invalid(UserValue),
}

impl Flag {
    fn parse(value: Option<&str>) -> Self {
        match value {
            None | Some("") => Flag::Unset,
            Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Flag::True,
            Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Flag::False,
            Some(other) => Flag::Invalid(UserValue::new(other)),
        }
    }

    pub fn is_true(&self) -> bool {
        *self == Flag::True
    }
}

/// Where the policy keys for a resource kind were read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    WorkloadMetadata,
    PodTemplate,
}

/// One entry of a reload list: the text as written and its anchored regex
/// (compiled for bytes in ASCII mode; see `compile`), shared with every
/// other list holding the same text (see `pattern_pool`).
pub type ListEntry = Arc<CompiledPattern>;

/// The policy for one resource kind (ConfigMaps or Secrets).
#[derive(Clone, Debug, Default)]
pub struct KindPolicy {
    pub auto: Flag,
    pub typed_auto: Flag,
    /// `search: "true"` (exact, as in Reloader).
    pub search: bool,
    pub reload_list: Vec<ListEntry>,
    pub exclude: Vec<String>,
    pub source: Option<Source>,
}

impl KindPolicy {
    /// The first list entry matching `name`, Reloader-style (`^entry$`).
    ///
    /// Each match gets a fresh cache, dropped right after: kept caches
    /// (the regex crate keeps one per regex and thread) would add up to
    /// [`limits::REGEX_DFA_SIZE_LIMIT`] and more for every compiled entry.
    pub fn listed(&self, name: &str) -> Option<&ListEntry> {
        let input = Input::new(name);
        self.reload_list.iter().find(|e| e.regex.is_match_with(&mut e.regex.create_cache(), &input))
    }

    pub fn excludes(&self, name: &str) -> bool {
        self.exclude.iter().any(|e| e == name)
    }
}

/// Argo Rollouts: how a reload is carried out (`rollout-strategy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RolloutStrategy {
    /// Mutate the pod template (Reloader's default).
    #[default]
    Rollout,
    /// Set `spec.restartAt`, leaving the template alone.
    Restart,
}

/// A malformed annotation: reported as a Warning event on the workload; the
/// rest of the policy still applies. The value is kept cut to what is shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub annotation: String,
    pub value: UserValue,
    pub message: String,
}

impl Problem {
    pub(crate) fn new(annotation: &str, value: &str, message: impl Into<String>) -> Self {
        Problem { annotation: annotation.into(), value: UserValue::new(value), message: message.into() }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "annotation {}={}: {}", self.annotation, self.value, self.message)
    }
}

/// A digest of everything [`WorkloadPolicy::parse`] reads: equal digests,
/// equal policies. Lets the controller skip parsing (and compiling) when an
/// update left those annotations alone, as status updates do.
///
/// SHA-1 over length-prefixed values: only the workload's own editors
/// choose the inputs, and a collision they forged would only keep their own
/// workload's previous policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PolicyDigest([u8; 20]);

impl PolicyDigest {
    pub fn of(meta: &BTreeMap<String, String>, template: &BTreeMap<String, String>) -> Self {
        let mut h = Sha1::new();
        // Whether the template has annotations at all decides where the keys are read from.
        h.update([u8::from(template.is_empty())]);
        for map in [meta, template] {
            for name in WORKLOAD_KEYS.iter().flat_map(|k| k.names()) {
                match map.get(name) {
                    Some(v) => {
                        h.update([1]);
                        h.update((v.len() as u64).to_le_bytes());
                        h.update(v.as_bytes());
                    }
                    None => h.update([0]),
                }
            }
        }
        PolicyDigest(h.finalize().into())
    }
}

/// Everything pod-reloader needs from a workload's annotations.
#[derive(Clone, Debug, Default)]
pub struct WorkloadPolicy {
    pub configmap: KindPolicy,
    pub secret: KindPolicy,
    /// `pause-period` (Deployments only).
    pub pause_period: Option<Duration>,
    /// `paused-at` as written (RFC 3339), when the controller paused the Deployment.
    pub paused_at: Option<String>,
    pub rollout_strategy: RolloutStrategy,
    pub problems: Vec<Problem>,
    /// `reload-on-keys`: only a change of these keys reloads (`None`: any change).
    pub chosen_keys: Option<ChosenKeys>,
}

impl WorkloadPolicy {
    pub fn for_kind(&self, kind: ResourceKind) -> &KindPolicy {
        match kind {
            ResourceKind::ConfigMap => &self.configmap,
            ResourceKind::Secret => &self.secret,
        }
    }

    /// Every compiled pattern of the reload lists (both kinds).
    pub fn patterns(&self) -> Vec<ListEntry> {
        self.configmap.reload_list.iter().chain(&self.secret.reload_list).cloned().collect()
    }

    /// Drops both reload lists, the rest of the policy kept, and reports it
    /// as one problem on the first list key set, naming every list key set
    /// (`why`: the budget broken). It goes first: the Warning's note is cut
    /// at 1 KiB, and the other problems of hostile lists are long.
    /// `meta` and `template` are the annotations the policy was parsed from.
    pub fn refuse_lists(
        &mut self,
        meta: &BTreeMap<String, String>,
        template: &BTreeMap<String, String>,
        why: impl std::fmt::Display,
    ) {
        let mut keys: Vec<(&'static str, &str)> = Vec::new();
        for kind in [ResourceKind::ConfigMap, ResourceKind::Secret] {
            let map = match self.for_kind(kind).source {
                Some(Source::PodTemplate) => template,
                _ => meta,
            };
            keys.extend(
                annotations::reload_list(kind).names().into_iter().filter_map(|n| map.get(n).map(|v| (n, v.as_str()))),
            );
        }
        self.configmap.reload_list = Vec::new();
        self.secret.reload_list = Vec::new();
        let Some(&(first, first_value)) = keys.first() else {
            return;
        };
        let names: Vec<&str> = keys.iter().map(|(n, _)| *n).collect();
        self.problems.insert(0, Problem::new(first, first_value, format!("{why}: {}", names.join(", "))));
    }

    /// Parses the annotations of a workload (`meta`) and its pod template (`template`).
    pub fn parse(meta: &BTreeMap<String, String>, template: &BTreeMap<String, String>) -> Self {
        let mut problems = Vec::new();
        let configmap = parse_kind(ResourceKind::ConfigMap, meta, template, &mut problems);
        let secret = parse_kind(ResourceKind::Secret, meta, template, &mut problems);

        let pause_period = match get_with_name(meta, annotations::PAUSE_PERIOD) {
            Some((name, value)) => match parse_go_duration(value) {
                Ok(d) => Some(d),
                Err(_) => {
                    problems.push(Problem::new(name, value, WANT_DURATION));
                    None
                }
            },
            None => None,
        };
        let paused_at = match get_with_name(meta, annotations::PAUSED_AT) {
            Some((name, value)) if value.len() > limits::MAX_PAUSED_AT_BYTES => {
                problems.push(Problem::new(
                    name,
                    value,
                    format!(
                        "longer than {} bytes, not a time pod-reloader wrote; the Deployment is not resumed by it",
                        limits::MAX_PAUSED_AT_BYTES
                    ),
                ));
                None
            }
            Some((_, value)) => Some(value.to_string()),
            None => None,
        };
        let rollout_strategy = match annotations::get(meta, annotations::ROLLOUT_STRATEGY) {
            Some("restart") => RolloutStrategy::Restart,
            _ => RolloutStrategy::Rollout,
        };
        // Read from the workload's metadata only, both spellings joined.
        let chosen_values: Vec<(&'static str, &str)> = annotations::RELOAD_ON_KEYS
            .names()
            .into_iter()
            .filter_map(|n| meta.get(n).map(|v| (n, v.as_str())))
            .collect();
        let chosen_keys = ChosenKeys::parse(&chosen_values, &mut problems);
        WorkloadPolicy { configmap, secret, pause_period, paused_at, rollout_strategy, problems, chosen_keys }
    }
}

fn get_with_name(map: &BTreeMap<String, String>, key: Key) -> Option<(&'static str, &str)> {
    key.names().into_iter().find_map(|n| map.get(n).map(|v| (n, v.as_str())))
}

fn present(map: &BTreeMap<String, String>, key: Key) -> bool {
    key.names().iter().any(|n| map.contains_key(*n))
}

fn parse_kind(
    kind: ResourceKind,
    meta: &BTreeMap<String, String>,
    template: &BTreeMap<String, String>,
    problems: &mut Vec<Problem>,
) -> KindPolicy {
    let list_key = annotations::reload_list(kind);
    let typed_key = annotations::typed_auto(kind);
    let in_meta = [list_key, typed_key, annotations::AUTO, annotations::SEARCH].into_iter().any(|k| present(meta, k));
    let (src_map, source) =
        if in_meta || template.is_empty() { (meta, Source::WorkloadMetadata) } else { (template, Source::PodTemplate) };

    let mut flag = |key: Key| match get_with_name(src_map, key) {
        Some((name, value)) => {
            let f = Flag::parse(Some(value));
            if let Flag::Invalid(v) = &f {
                problems.push(Problem {
                    annotation: name.into(),
                    value: v.clone(),
                    message: "not a boolean (want true or false); treated as false".into(),
                });
            }
            f
        }
        None => Flag::Unset,
    };
    let auto = flag(annotations::AUTO);
    let typed_auto = flag(typed_key);

    let search = annotations::get(src_map, annotations::SEARCH) == Some("true");

    let mut reload_list = Vec::new();
    for name in list_key.names() {
        if let Some(value) = src_map.get(name) {
            let mut invalid = Skipped::new(name);
            let mut budget = limits::LIST_REGEX_BUDGET;
            for pattern in entries(name, value, problems) {
                match PatternPool::global().get(pattern).and_then(|p| take_budget(p, &mut budget)) {
                    Ok(entry) => reload_list.push(entry),
                    Err(e) => invalid.add(pattern, || format!("{e}, entry skipped")),
                }
            }
            invalid.report(problems);
        }
    }

    let mut exclude = Vec::new();
    for name in annotations::exclude_list(kind).names() {
        if let Some(value) = meta.get(name) {
            exclude.extend(entries(name, value, problems).into_iter().map(str::to_string));
        }
    }

    KindPolicy { auto, typed_auto, search, reload_list, exclude, source: Some(source) }
}

/// Keeps `entry` if its memory fits in what is left of the list's budget.
/// (A pattern shared with other workloads counts in full here: the list
/// budget bounds what one workload may make the controller hold.)
fn take_budget(entry: ListEntry, budget: &mut usize) -> Result<ListEntry, PatternError> {
    *budget = budget.checked_sub(entry.size()).ok_or(PatternError::OverBudget)?;
    Ok(entry)
}

/// The non-empty, trimmed entries of a comma-separated list, at most
/// [`limits::MAX_ENTRIES`] of them and none longer than
/// [`limits::MAX_PATTERN_CHARS`]. What is dropped is reported: one problem
/// for the entries over the count, one for those over the length.
fn entries<'a>(annotation: &'static str, value: &'a str, problems: &mut Vec<Problem>) -> Vec<&'a str> {
    let all = value.split(',').map(str::trim).filter(|s| !s.is_empty());
    let total = all.clone().count();
    if total > limits::MAX_ENTRIES {
        problems.push(Problem::new(
            annotation,
            value,
            format!("{total} entries; only the first {} are used", limits::MAX_ENTRIES),
        ));
    }
    let mut too_long = Skipped::new(annotation);
    let mut kept = Vec::new();
    for entry in all.take(limits::MAX_ENTRIES) {
        if entry.chars().count() > limits::MAX_PATTERN_CHARS {
            too_long.add(entry, || format!("entry longer than {} characters, skipped", limits::MAX_PATTERN_CHARS));
        } else {
            kept.push(entry);
        }
    }
    too_long.report(problems);
    kept
}

/// Entries of one annotation skipped for one kind of reason: the first is
/// reported with its value, the others only counted, so a hostile list
/// makes one line in the log and the Event, not 64.
struct Skipped<'a> {
    annotation: &'static str,
    first: Option<(&'a str, String)>,
    more: usize,
}

impl<'a> Skipped<'a> {
    fn new(annotation: &'static str) -> Self {
        Skipped { annotation, first: None, more: 0 }
    }

    fn add(&mut self, entry: &'a str, why: impl FnOnce() -> String) {
        match self.first {
            None => self.first = Some((entry, why())),
            Some(_) => self.more += 1,
        }
    }

    fn report(self, problems: &mut Vec<Problem>) {
        if let Some((entry, why)) = self.first {
            let message = match self.more {
                0 => why,
                n => format!("{why} (and {n} more entries skipped)"),
            };
            problems.push(Problem::new(self.annotation, entry, message));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::compile;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn flags_follow_parse_bool() {
        let p = WorkloadPolicy::parse(&map(&[("reloader.stakater.com/auto", "True")]), &map(&[]));
        assert_eq!(p.configmap.auto, Flag::True);
        let p = WorkloadPolicy::parse(&map(&[("reloader.stakater.com/auto", "maybe")]), &map(&[]));
        assert_eq!(p.secret.auto, Flag::Invalid(UserValue::new("maybe")));
        assert_eq!(p.problems.len(), 2, "reported once per kind: {:?}", p.problems);
    }

    #[test]
    fn template_annotations_used_only_when_metadata_has_none() {
        let tmpl = map(&[("reloader.stakater.com/auto", "true")]);
        let p = WorkloadPolicy::parse(&map(&[]), &tmpl);
        assert_eq!(p.configmap.source, Some(Source::PodTemplate));
        assert!(p.configmap.auto.is_true());
        // A secret list in metadata switches only the Secret policy to metadata.
        let p = WorkloadPolicy::parse(&map(&[("secret.reloader.stakater.com/reload", "s")]), &tmpl);
        assert_eq!(p.secret.source, Some(Source::WorkloadMetadata));
        assert_eq!(p.secret.auto, Flag::Unset);
        assert!(p.configmap.auto.is_true());
    }

    #[test]
    fn lists_are_anchored_regexes_from_both_families() {
        let p = WorkloadPolicy::parse(
            &map(&[
                ("configmap.reloader.stakater.com/reload", "app-.*, exact"),
                ("pod-reloader.deckhouse.io/configmap-reload", "dh"),
            ]),
            &map(&[]),
        );
        assert!(p.configmap.listed("app-config").is_some());
        assert!(p.configmap.listed("exact").is_some());
        assert!(p.configmap.listed("dh").is_some());
        assert!(p.configmap.listed("my-app-config").is_none(), "anchored at start");
        assert!(p.configmap.listed("exactly").is_none(), "anchored at end");
    }

    #[test]
    fn bad_regex_is_a_problem_not_a_failure() {
        let p = WorkloadPolicy::parse(&map(&[("secret.reloader.stakater.com/reload", "ok,[bad")]), &map(&[]));
        assert!(p.secret.listed("ok").is_some());
        assert_eq!(p.problems.len(), 1);
        assert_eq!(p.problems[0].annotation, "secret.reloader.stakater.com/reload");
        assert_eq!(p.problems[0].value, "[bad");
        assert!(!p.problems[0].message.contains('\n'));
    }

    #[test]
    fn excludes_pause_and_strategy() {
        let p = WorkloadPolicy::parse(
            &map(&[
                ("configmaps.exclude.reloader.stakater.com/reload", "a, b"),
                ("deployment.reloader.stakater.com/pause-period", "5m"),
                ("reloader.stakater.com/rollout-strategy", "restart"),
            ]),
            &map(&[]),
        );
        assert!(p.configmap.excludes("b"));
        assert!(!p.secret.excludes("b"));
        assert_eq!(p.pause_period, Some(Duration::from_secs(300)));
        assert_eq!(p.rollout_strategy, RolloutStrategy::Restart);
        let p = WorkloadPolicy::parse(&map(&[("pod-reloader.deckhouse.io/pause-period", "soon")]), &map(&[]));
        assert_eq!(p.pause_period, None);
        assert_eq!(p.problems[0].annotation, "pod-reloader.deckhouse.io/pause-period");
    }

    #[test]
    fn reload_on_keys_joins_both_families_from_metadata_only() {
        use crate::chosen_keys::ChosenKeys;
        let p = WorkloadPolicy::parse(
            &map(&[
                ("reloader.stakater.com/reload-on-keys", "cfg.yaml"),
                ("pod-reloader.deckhouse.io/reload-on-keys", "tls.crt, cfg.yaml"),
            ]),
            &map(&[]),
        );
        assert_eq!(p.chosen_keys, Some(ChosenKeys::from(["cfg.yaml", "tls.crt"])));
        let p = WorkloadPolicy::parse(&map(&[]), &map(&[("reloader.stakater.com/reload-on-keys", "a")]));
        assert_eq!(p.chosen_keys, None, "not read from the pod template");
        let p = WorkloadPolicy::parse(&map(&[("reloader.stakater.com/reload-on-keys", "a/b")]), &map(&[]));
        assert_eq!((p.chosen_keys, p.problems.len()), (None, 1), "reported as a problem (InvalidAnnotation)");
    }

    #[test]
    fn search_must_be_exactly_true() {
        let p = WorkloadPolicy::parse(&map(&[("reloader.stakater.com/search", "True")]), &map(&[]));
        assert!(!p.configmap.search);
        let p = WorkloadPolicy::parse(&map(&[("pod-reloader.deckhouse.io/search", "true")]), &map(&[]));
        assert!(p.configmap.search && p.secret.search);
    }

    fn list(n: usize, entry: &str) -> String {
        vec![entry; n].join(",")
    }

    #[test]
    fn measured_sizes_of_usual_patterns() {
        // The figures quoted in `limits` (memory held by the compiled regex).
        for (pattern, at_most_kib) in [
            ("exact", 2),
            ("app-.*", 2),
            (r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", 3),
            ("(?i)app-[a-z]{1,63}", 10),
            ("[a-z0-9.-]{1,253}", 38),
        ] {
            let size = compile(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}")).memory_usage();
            assert!(size <= at_most_kib * 1024, "{pattern}: {size} bytes");
        }
        // Unicode classes, which no Kubernetes name needs, are what the limit stops.
        assert!(matches!(compile(r"\pL+"), Err(PatternError::TooLarge)));
        assert!(matches!(compile("[bad"), Err(PatternError::Syntax(_))));
        // ASCII `\w` as in Go, and a pattern ASCII mode refuses still compiles in Unicode mode.
        assert!(compile(r"\w{200}").is_ok());
        let greek = compile(r"\p{Greek}").unwrap();
        assert!(greek.is_match("λ") && !greek.is_match("a"));
    }

    #[test]
    fn hostile_lists_are_bounded_and_the_rest_applies() {
        let meta = map(&[
            ("configmap.reloader.stakater.com/reload", &list(40, r"\w{200}")),
            ("pod-reloader.deckhouse.io/configmap-reload", &list(100, r"\pL{100}")),
            ("secret.reloader.stakater.com/reload", &format!("ok-.*,{},{}", "x".repeat(300), list(100, "s"))),
            ("configmaps.exclude.reloader.stakater.com/reload", &list(1000, "e")),
            ("deployment.reloader.stakater.com/pause-period", "5m"),
        ]);
        let p = WorkloadPolicy::parse(&meta, &map(&[]));
        let used: usize =
            p.configmap.reload_list.iter().chain(&p.secret.reload_list).map(|e| e.regex.memory_usage()).sum();
        assert!(used <= 4 * limits::LIST_REGEX_BUDGET, "{used}");
        let cm_used: usize = p.configmap.reload_list.iter().map(|e| e.regex.memory_usage()).sum();
        assert!(cm_used <= limits::LIST_REGEX_BUDGET, "{cm_used}");
        assert!(p.secret.listed("ok-1").is_some(), "the good entry stays");
        assert_eq!(p.secret.reload_list.len(), limits::MAX_ENTRIES - 1, "64 entries read, the long one skipped");
        assert_eq!(p.configmap.exclude.len(), limits::MAX_ENTRIES);
        assert_eq!(p.pause_period, Some(Duration::from_secs(300)), "the rest of the policy applies");
        let shown: Vec<String> = p.problems.iter().map(ToString::to_string).collect();
        let has = |key: &str, what: &str| shown.iter().any(|s| s.contains(key) && s.contains(what));
        assert!(has("configmap.reloader.stakater.com/reload", "more entries skipped"), "{shown:#?}");
        assert!(has("configmap-reload", "too large"), "{shown:#?}");
        assert!(has("secret.reloader.stakater.com/reload", "longer than 256"), "{shown:#?}");
        assert!(has("secret.reloader.stakater.com/reload", "102 entries"), "{shown:#?}");
        assert!(has("configmaps.exclude", "1000 entries"), "{shown:#?}");
        assert!(shown.len() <= 8, "one problem per key and reason: {shown:#?}");
        assert!(shown.iter().all(|s| s.len() < 512), "{shown:#?}");
    }

    #[test]
    fn long_values_are_kept_cut() {
        let big = "m".repeat(200 * 1024);
        let p = WorkloadPolicy::parse(
            &map(&[("reloader.stakater.com/auto", &big), ("deployment.reloader.stakater.com/paused-at", &big)]),
            &map(&[]),
        );
        assert!(matches!(&p.configmap.auto, Flag::Invalid(v) if v.is_cut() && v.head().len() == 256));
        assert_eq!(p.paused_at, None, "a paused-at over 64 bytes is not ours");
        for problem in &p.problems {
            let s = problem.to_string();
            assert!(s.len() < 512 && s.contains("(truncated, 204800 bytes)"), "{s}");
        }
    }
}
