//! Reload on chosen keys only (`reload-on-keys`, a pod-reloader extension;
//! Reloader's issue #129): a workload names keys of the ConfigMaps/Secrets
//! it follows, and only a change of one of those keys (a value changed, the
//! key added or removed) rolls it.
//!
//! The controller keeps one hash per object. For the objects a workload
//! with this annotation follows, and only for the keys such workloads name,
//! it also keeps a digest per key ([`KeyDigests`]), computed by the watch
//! while the object's data is at hand. What such a workload is compared
//! with, what its rolled-to record and Reloader's env var hold for a
//! resource, is the digest of its chosen keys ([`KeyDigests::digest`]),
//! never the whole hash; so after a restart the level-triggered
//! reconciliation compares like with like. A record holding the whole hash
//! of the current content (written before the annotation was added) also
//! counts as current: the workload runs every key as it is now.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use k8s_openapi::ByteString;
use sha1::{Digest, Sha1};

use crate::hash::ContentHash;
use crate::policy::Problem;

/// Bounds on one annotation (whoever may edit the workload writes it).
pub mod limits {
    /// Keys named by one annotation; the rest are dropped (reported).
    pub const MAX_KEYS: usize = 64;
    /// Characters of one key: a ConfigMap/Secret key has at most 253.
    pub const MAX_KEY_CHARS: usize = 253;
}

/// The keys a workload's `reload-on-keys` names: sorted, without duplicates,
/// each a valid ConfigMap/Secret key, at most [`limits::MAX_KEYS`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChosenKeys(BTreeSet<String>);

/// `[-._a-zA-Z0-9]+`, at most 253 characters: what the apiserver accepts as
/// a key of `data`.
fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= limits::MAX_KEY_CHARS
        && k.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl ChosenKeys {
    /// Parses the values of the annotation (both spellings, joined) as
    /// comma-separated keys. Keys past the count or not valid are dropped
    /// and reported; `None` when no valid key remains (then the annotation
    /// does not apply: every key reloads, as without it).
    pub fn parse(values: &[(&'static str, &str)], problems: &mut Vec<Problem>) -> Option<Self> {
        let mut keys = BTreeSet::new();
        for &(annotation, value) in values {
            let all: Vec<&str> = value.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
            if all.len() > limits::MAX_KEYS {
                problems.push(Problem::new(
                    annotation,
                    value,
                    format!("{} keys; only the first {} are used", all.len(), limits::MAX_KEYS),
                ));
            }
            let mut invalid = all.iter().take(limits::MAX_KEYS).filter(|k| !valid_key(k));
            if let Some(first) = invalid.next() {
                let more = invalid.count();
                let tail = if more > 0 { format!(" (and {more} more)") } else { String::new() };
                problems.push(Problem::new(
                    annotation,
                    first,
                    format!(
                        "not a ConfigMap/Secret key ([-._a-zA-Z0-9], at most {} characters), skipped{tail}",
                        limits::MAX_KEY_CHARS
                    ),
                ));
            }
            for k in all.into_iter().take(limits::MAX_KEYS).filter(|k| valid_key(k)) {
                if keys.len() < limits::MAX_KEYS {
                    keys.insert(k.to_string());
                }
            }
        }
        (!keys.is_empty()).then_some(ChosenKeys(keys))
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.0.contains(key)
    }
}

impl<const N: usize> From<[&str; N]> for ChosenKeys {
    fn from(keys: [&str; N]) -> Self {
        ChosenKeys(keys.into_iter().map(String::from).collect())
    }
}

/// The digests of some keys of one object's content: for each key asked
/// for, the SHA-1 of its Reloader entry (`key=value`, value as in
/// [`crate::hash`]), or `None` when the object lacks the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyDigests {
    /// The whole hash of the content these digests were taken from.
    pub of: ContentHash,
    digests: BTreeMap<String, Option<[u8; 20]>>,
}

fn entry_digest(key: &str, value: &[u8]) -> [u8; 20] {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(b"=");
    h.update(value);
    h.finalize().into()
}

impl KeyDigests {
    /// Digests of the `wanted` keys of a ConfigMap with hash `of`.
    pub fn of_configmap<'a>(
        of: ContentHash,
        data: Option<&BTreeMap<String, String>>,
        binary_data: Option<&BTreeMap<String, ByteString>>,
        wanted: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let digests = wanted
            .into_iter()
            .map(|k| {
                let d = match (data.and_then(|d| d.get(k)), binary_data.and_then(|b| b.get(k))) {
                    (Some(v), _) => Some(entry_digest(k, v.as_bytes())),
                    (None, Some(b)) => {
                        Some(entry_digest(k, base64::engine::general_purpose::STANDARD.encode(&b.0).as_bytes()))
                    }
                    (None, None) => None,
                };
                (k.to_string(), d)
            })
            .collect();
        KeyDigests { of, digests }
    }

    /// Digests of the `wanted` keys of a Secret with hash `of`.
    pub fn of_secret<'a>(
        of: ContentHash,
        data: Option<&BTreeMap<String, ByteString>>,
        wanted: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let digests = wanted
            .into_iter()
            .map(|k| (k.to_string(), data.and_then(|d| d.get(k)).map(|v| entry_digest(k, &v.0))))
            .collect();
        KeyDigests { of, digests }
    }

    /// Whether these digests cover every key of `chosen`.
    pub fn covers<'a>(&self, mut chosen: impl Iterator<Item = &'a str>) -> bool {
        chosen.all(|k| self.digests.contains_key(k))
    }

    /// The digest of the `chosen` keys: SHA-1 over the entry digests of the
    /// chosen keys the object has, in key order (none: SHA-1 of nothing).
    /// `None` when some chosen key was not digested.
    pub fn digest(&self, chosen: &ChosenKeys) -> Option<ContentHash> {
        let mut h = Sha1::new();
        for k in chosen.iter() {
            if let Some(d) = self.digests.get(k)? {
                h.update(d);
            }
        }
        Some(ContentHash::from_bytes(h.finalize().into()))
    }
}

/// Whether a workload that rolled to `rolled` (a digest or hash from its
/// record) runs the current content for its `chosen` keys: the digest of the
/// chosen keys now is `chosen_digest`, the whole hash now `whole`.
pub fn is_current(rolled: impl Fn(ContentHash) -> bool, chosen_digest: ContentHash, whole: ContentHash) -> bool {
    rolled(chosen_digest) || rolled(whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn digests(data: &BTreeMap<String, String>, wanted: &[&str]) -> KeyDigests {
        KeyDigests::of_configmap(
            crate::hash::configmap_hash(Some(data), None),
            Some(data),
            None,
            wanted.iter().copied(),
        )
    }

    #[test]
    fn only_a_chosen_key_moves_the_digest() {
        let chosen = ChosenKeys::from(["a"]);
        let v1 = digests(&cm(&[("a", "1"), ("b", "1")]), &["a"]);
        let b_changed = digests(&cm(&[("a", "1"), ("b", "2")]), &["a"]);
        let a_changed = digests(&cm(&[("a", "2"), ("b", "1")]), &["a"]);
        let a_removed = digests(&cm(&[("b", "1")]), &["a"]);
        assert_ne!(v1.of, b_changed.of, "the whole hash sees every key");
        assert_eq!(v1.digest(&chosen), b_changed.digest(&chosen));
        assert_ne!(v1.digest(&chosen), a_changed.digest(&chosen));
        assert_ne!(v1.digest(&chosen), a_removed.digest(&chosen));
        assert_eq!(a_removed.digest(&chosen), Some(ContentHash::of(b"")), "no chosen key present");
    }

    #[test]
    fn a_digest_needs_every_chosen_key_digested() {
        let d = digests(&cm(&[("a", "1"), ("b", "1")]), &["a"]);
        assert_eq!(d.digest(&ChosenKeys::from(["a", "b"])), None);
        assert!(!d.covers(["a", "b"].into_iter()) && d.covers(["a"].into_iter()));
        let both = digests(&cm(&[("a", "1"), ("b", "1")]), &["a", "b"]);
        assert_eq!(both.digest(&ChosenKeys::from(["a"])), d.digest(&ChosenKeys::from(["a"])));
    }

    #[test]
    fn values_are_told_apart_from_keys_and_kinds_agree_with_the_hash() {
        // "a=1" in a ConfigMap and in a Secret digest alike, as Reloader's hash does.
        let s = BTreeMap::from([("a".to_string(), ByteString(b"1".to_vec()))]);
        let secret = KeyDigests::of_secret(crate::hash::secret_hash(Some(&s)), Some(&s), ["a"]);
        let chosen = ChosenKeys::from(["a"]);
        assert_eq!(secret.digest(&chosen), digests(&cm(&[("a", "1")]), &["a"]).digest(&chosen));
        let bin = BTreeMap::from([("a".to_string(), ByteString(vec![0, 255]))]);
        let b = KeyDigests::of_configmap(ContentHash::of(b""), None, Some(&bin), ["a"]);
        assert_eq!(b.digests["a"], Some(entry_digest("a", b"AP8=")), "binaryData as base64, as in the hash");
    }

    #[test]
    fn parse_is_bounded_and_reports_what_it_drops() {
        let mut problems = Vec::new();
        let k = ChosenKeys::parse(
            &[("reloader.stakater.com/reload-on-keys", " cfg.yaml, tls.crt ,,cfg.yaml")],
            &mut problems,
        );
        assert_eq!(k, Some(ChosenKeys::from(["cfg.yaml", "tls.crt"])));
        assert!(problems.is_empty());

        let many: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
        let long = "x".repeat(300);
        let value = format!("{},bad/key,{long}", many.join(","));
        let k = ChosenKeys::parse(&[("pod-reloader.deckhouse.io/reload-on-keys", &value)], &mut problems).unwrap();
        assert_eq!(k.iter().count(), limits::MAX_KEYS);
        assert_eq!(problems.len(), 1, "the invalid ones are past the first 64: {problems:?}");
        assert!(problems[0].to_string().contains("102 keys; only the first 64"), "{}", problems[0]);

        problems.clear();
        let k = ChosenKeys::parse(
            &[("reloader.stakater.com/reload-on-keys", &format!("ok,bad/key,{long}"))],
            &mut problems,
        );
        assert_eq!(k, Some(ChosenKeys::from(["ok"])));
        assert_eq!(problems.len(), 1);
        assert!(problems[0].to_string().contains("bad/key") && problems[0].to_string().contains("and 1 more"));

        problems.clear();
        assert_eq!(ChosenKeys::parse(&[("reloader.stakater.com/reload-on-keys", "a b")], &mut problems), None);
        assert_eq!(problems.len(), 1, "no valid key: the annotation does not apply, and says so");
        assert_eq!(ChosenKeys::parse(&[("reloader.stakater.com/reload-on-keys", " , ")], &mut problems), None);
    }

    #[test]
    fn a_record_of_the_whole_current_content_counts_as_current() {
        let (d, whole, old) = (ContentHash::of(b"d"), ContentHash::of(b"w"), ContentHash::of(b"o"));
        assert!(is_current(|h| h == d, d, whole));
        assert!(is_current(|h| h == whole, d, whole));
        assert!(!is_current(|h| h == old, d, whole));
    }
}
