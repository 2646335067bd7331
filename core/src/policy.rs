//! A workload's reload policy, parsed once from its annotations when the
//! workload is seen, so a ConfigMap change costs no annotation parsing.
//!
//! Reloader reads the workload's `metadata.annotations`, and only when none
//! of the reload-list, auto, typed-auto or search keys is there (per resource
//! kind), the pod template's annotations. Exclude lists and the pause period
//! are read from `metadata.annotations` only.

use std::collections::BTreeMap;
use std::time::Duration;

use regex::Regex;

use crate::annotations::{self, Key};
use crate::duration::parse_go_duration;
use crate::keys::ResourceKind;

/// A boolean annotation as Reloader reads it (`strconv.ParseBool`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Flag {
    /// Not set, or set to "" (Reloader cannot tell the two apart).
    #[default]
    Unset,
    True,
    False,
    /// Set to something `strconv.ParseBool` refuses; acts as false.
    Invalid(String),
}

impl Flag {
    fn parse(value: Option<&str>) -> Self {
        match value {
            None | Some("") => Flag::Unset,
            Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Flag::True,
            Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Flag::False,
            Some(other) => Flag::Invalid(other.to_string()),
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

/// One entry of a reload list: the text as written and its anchored regex.
#[derive(Clone, Debug)]
pub struct ListEntry {
    pub pattern: String,
    pub regex: Regex,
}

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
    pub fn listed(&self, name: &str) -> Option<&ListEntry> {
        self.reload_list.iter().find(|e| e.regex.is_match(name))
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
/// rest of the policy still applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub annotation: String,
    pub value: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "annotation {}={:?}: {}", self.annotation, self.value, self.message)
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
}

impl WorkloadPolicy {
    pub fn for_kind(&self, kind: ResourceKind) -> &KindPolicy {
        match kind {
            ResourceKind::ConfigMap => &self.configmap,
            ResourceKind::Secret => &self.secret,
        }
    }

    /// True when no annotation could make this workload reload on its own
    /// (it may still follow everything under `autoReloadAll`).
    pub fn is_silent(&self) -> bool {
        [&self.configmap, &self.secret]
            .iter()
            .all(|k| k.auto == Flag::Unset && k.typed_auto == Flag::Unset && !k.search && k.reload_list.is_empty())
    }

    /// Parses the annotations of a workload (`meta`) and its pod template (`template`).
    pub fn parse(meta: &BTreeMap<String, String>, template: &BTreeMap<String, String>) -> Self {
        let mut problems = Vec::new();
        let configmap = parse_kind(ResourceKind::ConfigMap, meta, template, &mut problems);
        let secret = parse_kind(ResourceKind::Secret, meta, template, &mut problems);

        let pause_period = match get_with_name(meta, annotations::PAUSE_PERIOD) {
            Some((name, value)) => match parse_go_duration(value) {
                Ok(d) => Some(d),
                Err(e) => {
                    problems.push(Problem { annotation: name.into(), value: value.into(), message: e.to_string() });
                    None
                }
            },
            None => None,
        };
        let paused_at = annotations::get(meta, annotations::PAUSED_AT).map(str::to_string);
        let rollout_strategy = match annotations::get(meta, annotations::ROLLOUT_STRATEGY) {
            Some("restart") => RolloutStrategy::Restart,
            _ => RolloutStrategy::Rollout,
        };
        WorkloadPolicy { configmap, secret, pause_period, paused_at, rollout_strategy, problems }
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
        let Some(value) = src_map.get(name) else {
            continue;
        };
        for raw in value.split(',') {
            let pattern = raw.trim();
            if pattern.is_empty() {
                continue;
            }
            match Regex::new(&format!("^{pattern}$")) {
                Ok(regex) => reload_list.push(ListEntry { pattern: pattern.to_string(), regex }),
                Err(e) => problems.push(Problem {
                    annotation: name.into(),
                    value: pattern.into(),
                    message: format!("invalid regular expression, entry skipped: {}", first_line(&e.to_string())),
                }),
            }
        }
    }

    let exclude = annotations::exclude_list(kind)
        .names()
        .iter()
        .filter_map(|n| meta.get(*n))
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();

    KindPolicy { auto, typed_auto, search, reload_list, exclude, source: Some(source) }
}

/// regex errors span several lines with a caret diagram; an event wants one.
fn first_line(s: &str) -> String {
    s.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn flags_follow_parse_bool() {
        let p = WorkloadPolicy::parse(&map(&[("reloader.stakater.com/auto", "True")]), &map(&[]));
        assert_eq!(p.configmap.auto, Flag::True);
        let p = WorkloadPolicy::parse(&map(&[("reloader.stakater.com/auto", "maybe")]), &map(&[]));
        assert_eq!(p.secret.auto, Flag::Invalid("maybe".into()));
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
    fn search_must_be_exactly_true() {
        let p = WorkloadPolicy::parse(&map(&[("reloader.stakater.com/search", "True")]), &map(&[]));
        assert!(!p.configmap.search);
        let p = WorkloadPolicy::parse(&map(&[("pod-reloader.deckhouse.io/search", "true")]), &map(&[]));
        assert!(p.configmap.search && p.secret.search);
    }
}
