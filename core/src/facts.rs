//! What the controller keeps of one ConfigMap/Secret: its content hash and
//! the two annotations on it that matter. One type for the watch, the state
//! task, the reload decision, the level-triggered reconciliation and
//! `explain`; the object's kind, namespace and name travel beside it (a
//! `ResourceKey`, or the kind and name within a workload's namespace).

use std::collections::BTreeMap;

use crate::annotations::{AnnotationNames, IGNORE, MATCH};
use crate::hash::ContentHash;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceFacts {
    /// Reloader's canonical hash of the whole content.
    pub hash: ContentHash,
    /// `reloader.stakater.com/ignore: "true"` on the resource.
    pub ignored: bool,
    /// `reloader.stakater.com/match: "true"` on the resource.
    pub matched: bool,
}

impl ResourceFacts {
    /// The facts of an object whose content hashes to `hash`, its `ignore`
    /// and `match` annotations read under `names` (Reloader's, or as the
    /// annotation-name settings renamed them). One reading for ConfigMaps,
    /// Secrets and SecretProviderClasses, in the watch and in `explain`.
    pub fn of(hash: ContentHash, annotations: Option<&BTreeMap<String, String>>, names: &AnnotationNames) -> Self {
        let set = |key| annotations.and_then(|a| crate::annotations::get(a, names.key(key))) == Some("true");
        ResourceFacts { hash, ignored: set(IGNORE), matched: set(MATCH) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::AnnotationSettings;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn ignore_and_match_are_read_under_the_configured_names() {
        let hash = ContentHash::of(b"v");
        let reloader = AnnotationNames::reloader();
        let a = map(&[("reloader.stakater.com/ignore", "true"), ("pod-reloader.deckhouse.io/match", "true")]);
        assert_eq!(ResourceFacts::of(hash, Some(&a), &reloader), ResourceFacts { hash, ignored: true, matched: true });
        assert_eq!(ResourceFacts::of(hash, None, &reloader), ResourceFacts { hash, ignored: false, matched: false });
        let renamed = AnnotationSettings { ignore: Some("example.com/ignore".into()), ..Default::default() }
            .names()
            .expect("valid names");
        let b = map(&[("example.com/ignore", "true")]);
        assert!(ResourceFacts::of(hash, Some(&b), &renamed).ignored);
        assert!(!ResourceFacts::of(hash, Some(&a), &renamed).ignored, "Reloader's name is replaced");
        assert!(ResourceFacts::of(hash, Some(&a), &renamed).matched, "match is not renamed");
    }
}
