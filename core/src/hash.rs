//! Reloader's canonical content hash.
//!
//! The value must be byte-identical to Stakater Reloader's (SHA-1 over a
//! canonical string), so that workloads migrated from Reloader, or a mixed
//! fleet, see no difference. That is why this is SHA-1 and not SHA-256: it
//! is a change detector shared with Reloader, not a security boundary.
//!
//! - ConfigMap: `k=v` per `data` entry and `k=<base64 std>` per `binaryData`
//!   entry; sorted byte-wise; joined with `;`.
//! - Secret: `k=<raw bytes>` per `data` entry; sorted; joined with `;`.
//! - SecretProviderClassPodStatus (Secrets Store CSI driver): `id=version`
//!   per `status.objects` entry plus `SecretProviderClassName=<class>`;
//!   sorted; joined with `;` (Reloader's
//!   `GetSHAfromSecretProviderClassPodStatus`). Only the versions the
//!   driver observed enter it, never secret content.
//!
//! No escaping of `;` or `=` (Reloader has none).

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use k8s_openapi::ByteString;
use sha1::{Digest, Sha1};

/// A 20-byte SHA-1, printed as 40 lowercase hex digits.
///
/// Stored as bytes, not a `String`: the controller holds one per watched
/// ConfigMap/Secret and nothing else of their content.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash([u8; 20]);

impl ContentHash {
    /// SHA-1 of arbitrary bytes.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha1::digest(bytes).into())
    }

    /// The hash Reloader writes when a resource is deleted (annotations strategy).
    pub fn delete_marker() -> Self {
        Self::of(b"__RELOADER_EMPTY_DELETE_MARKER__")
    }

    /// Parses 40 hex digits (either case), as found in an env var or annotation.
    pub fn parse_hex(s: &str) -> Option<Self> {
        crate::hex::decode(s).map(Self)
    }

    pub fn to_hex(&self) -> String {
        self.to_string()
    }

    /// A hash from its 20 bytes (a digest computed elsewhere, see `chosen_keys`).
    pub fn from_bytes(bytes: [u8; 20]) -> Self {
        Self(bytes)
    }

    /// The 20 bytes of the SHA-1.
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::hex::write(f, &self.0)
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({self})")
    }
}

/// Sorts the entries byte-wise (Go's `sort.Strings`), joins them with `;`
/// and hashes the result, without building one big string first.
fn hash_entries(mut entries: Vec<Vec<u8>>) -> ContentHash {
    entries.sort_unstable();
    let mut hasher = Sha1::new();
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            hasher.update(b";");
        }
        hasher.update(e);
    }
    ContentHash(hasher.finalize().into())
}

fn entry(key: &str, value: &[u8]) -> Vec<u8> {
    let mut e = Vec::with_capacity(key.len() + 1 + value.len());
    e.extend_from_slice(key.as_bytes());
    e.push(b'=');
    e.extend_from_slice(value);
    e
}

/// Reloader's hash of a ConfigMap's `data` and `binaryData`.
pub fn configmap_hash(
    data: Option<&BTreeMap<String, String>>,
    binary_data: Option<&BTreeMap<String, ByteString>>,
) -> ContentHash {
    let mut entries = Vec::new();
    for (k, v) in data.into_iter().flatten() {
        entries.push(entry(k, v.as_bytes()));
    }
    for (k, v) in binary_data.into_iter().flatten() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(&v.0);
        entries.push(entry(k, b64.as_bytes()));
    }
    hash_entries(entries)
}

/// Reloader's hash of a Secret's `data` (raw bytes; `stringData` is write-only
/// and already folded into `data` by the apiserver).
pub fn secret_hash(data: Option<&BTreeMap<String, ByteString>>) -> ContentHash {
    let entries = data.into_iter().flatten().map(|(k, v)| entry(k, &v.0)).collect();
    hash_entries(entries)
}

/// Reloader's hash of a SecretProviderClassPodStatus's `status`: the
/// `(id, version)` of each of `status.objects` and the class it is for
/// (`status.secretProviderClassName`).
pub fn secret_provider_class_pod_status_hash<'a>(
    class_name: &str,
    objects: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> ContentHash {
    let mut entries: Vec<Vec<u8>> = objects.into_iter().map(|(id, version)| entry(id, version.as_bytes())).collect();
    entries.push(entry("SecretProviderClassName", class_name.as_bytes()));
    hash_entries(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha1_hex(s: &[u8]) -> String {
        // Independent of `hash_entries`: hash the whole canonical string.
        ContentHash::of(s).to_hex()
    }

    #[test]
    fn empty_is_sha1_of_empty_string() {
        assert_eq!(configmap_hash(None, None).to_hex(), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(secret_hash(None).to_hex(), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    }

    #[test]
    fn configmap_matches_reloader_example() {
        // reloader.md: {a:1,b:2} -> "a=1;b=2" -> f83e99e3…646a
        let data = BTreeMap::from([("b".to_string(), "2".to_string()), ("a".to_string(), "1".to_string())]);
        let h = configmap_hash(Some(&data), None).to_hex();
        assert_eq!(h, sha1_hex(b"a=1;b=2"));
        assert!(h.starts_with("f83e99e3") && h.ends_with("646a"), "{h}");
    }

    #[test]
    fn configmap_binary_data_is_base64_and_sorted_with_data() {
        let data = BTreeMap::from([("z".to_string(), "last".to_string())]);
        let bin = BTreeMap::from([("bin".to_string(), ByteString(vec![0, 1, 2, 255]))]);
        assert_eq!(configmap_hash(Some(&data), Some(&bin)).to_hex(), sha1_hex(b"bin=AAEC/w==;z=last"));
    }

    #[test]
    fn secret_uses_raw_bytes() {
        let data = BTreeMap::from([
            ("password".to_string(), ByteString(b"s3cr;et".to_vec())),
            ("user".to_string(), ByteString(b"admin".to_vec())),
        ]);
        assert_eq!(secret_hash(Some(&data)).to_hex(), sha1_hex(b"password=s3cr;et;user=admin"));
    }

    #[test]
    fn secret_provider_class_pod_status_matches_reloader() {
        // Reloader's test fixture (`GetSecretProviderClassPodStatus`): one
        // object `parameter1` whose version is the test data, the class
        // named like the status object. Expected values from `sha1sum` of
        // the canonical strings ("S" sorts before "p").
        let h = |v| secret_provider_class_pod_status_hash("spc-a", [("parameter1", v)]).to_hex();
        assert_eq!(h("v1"), "e8d9b9938186a90c9c16ac0c5e6c14dcb8ab1c02");
        assert_eq!(h("v2"), "20f18db0cae9b8e8a521f13062a663627ebb5083");
        // Objects in any order give one hash; no objects leaves the class name.
        let two = secret_provider_class_pod_status_hash("vault-db", [("db/password", "3"), ("cert/tls", "7")]);
        assert_eq!(two.to_hex(), "66025ca3ccf09557b26a8a1aab80cd69fa6582c8");
        assert_eq!(secret_provider_class_pod_status_hash("x", []).to_hex(), sha1_hex(b"SecretProviderClassName=x"));
    }

    #[test]
    fn hex_round_trip() {
        let h = ContentHash::of(b"x");
        assert_eq!(ContentHash::parse_hex(&h.to_hex()), Some(h));
        assert_eq!(ContentHash::parse_hex(&h.to_hex().to_uppercase()), Some(h));
        assert_eq!(ContentHash::parse_hex("zz"), None);
        assert_eq!(ContentHash::parse_hex(&"g".repeat(40)), None);
    }
}
