//! The baseline store: where a never-reloaded workload's record lives, so
//! that recording it costs no write of the workload.
//!
//! The first sight of a workload records what it runs (its baseline, see
//! `record`). Written on the workload, that is one PATCH per workload, and
//! kube-controller-manager then rewrites the Deployment's ReplicaSet: about
//! two writes per workload before the first reload. Kept here instead, in a
//! few ConfigMaps of the controller's own namespace, one write covers about
//! two thousand workloads.
//!
//! - Shards are ConfigMaps named `pod-reloader-baseline-<n>` and labelled
//!   [`STORE_LABEL`]` = "true"`; a workload's entry is in shard
//!   `fnv1a64(uid) mod count`, `count` a power of two that doubles when a
//!   shard would pass [`MAX_SHARD_BYTES`] (512 KiB, half the apiserver's
//!   object limit). A reader merges every shard, so an entry left in an older
//!   shard by a smaller `count` is still found until that shard is rewritten.
//! - Each `data` member maps a workload uid to that workload's record in the
//!   record's own format (`Record::render`): sealed under the record key when
//!   there is one, so no Secret hash is stored bare. 238 bytes for a
//!   workload following two resources, keyed (36 of uid, ~85 per sealed
//!   resource, 28 of key id, JSON quoting); 96 for one resource, unkeyed.
//! - In memory: one parsed [`Record`] per workload in the store (the uid,
//!   a map slot and a `BTreeMap` leaf node, which holds room for 11
//!   entries: about 0.9 KiB for two resources). That is what the record on
//!   the workload cost in its index entry before; a workload whose baseline
//!   is in the store has an empty record there (no allocation). Entries of
//!   workloads the controller does not know are dropped after the initial
//!   sync ([`BaselineStore::retain`]) and left out of the next write of
//!   their shard. A record larger than [`MAX_ENTRY_BYTES`] is refused
//!   ([`TooBig`]): the caller writes it on the workload as before.
//!
//! The uid, not the name, keys an entry: a workload deleted and created
//! again under its name is a new workload and gets a new baseline.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::hash::ContentHash;
use crate::keys::ResourceKind;
use crate::record::{Record, RecordKey};

/// The label every shard carries (the watch selects on it).
pub const STORE_LABEL: &str = "pod-reloader.deckhouse.io/baseline-store";
/// Shard names are this plus the shard's number.
pub const SHARD_PREFIX: &str = "pod-reloader-baseline-";
/// A shard is split (the shard count doubles) past this size.
pub const MAX_SHARD_BYTES: usize = 512 * 1024;
/// A workload record larger than this stays on the workload.
pub const MAX_ENTRY_BYTES: usize = 16 * 1024;
/// At most this many shards (about half a million workloads); a
/// ConfigMap named past it is not a shard. Bounds what a reader keeps.
pub const MAX_SHARDS: u32 = 256;

/// The name of shard `index`.
pub fn shard_name(index: u32) -> String {
    format!("{SHARD_PREFIX}{index}")
}

/// The number of a shard from its name; `None` for any other name.
pub fn shard_index(name: &str) -> Option<u32> {
    let digits = name.strip_prefix(SHARD_PREFIX)?;
    if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    digits.parse().ok().filter(|n| *n < MAX_SHARDS)
}

/// FNV-1a, 64 bits: stable across releases and platforms (a shard's
/// content must not depend on the build that wrote it).
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The shard a workload's entry belongs to when there are `count` shards.
pub fn shard_of(uid: &str, count: u32) -> u32 {
    (fnv1a64(uid.as_bytes()) % u64::from(count.max(1))) as u32
}

/// A workload's record would exceed [`MAX_ENTRY_BYTES`].
#[derive(Debug, PartialEq, Eq)]
pub struct TooBig;

/// One shard to write: its whole `data`, and the resourceVersion it was
/// last seen at (`None`: not seen, create it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardWrite {
    pub index: u32,
    pub name: String,
    pub resource_version: Option<String>,
    pub data: BTreeMap<String, String>,
}

impl ShardWrite {
    /// The bytes of `data` (keys and values).
    pub fn bytes(&self) -> usize {
        data_bytes(&self.data)
    }
}

fn data_bytes(data: &BTreeMap<String, String>) -> usize {
    data.iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// The store as the controller knows it: the records by workload uid, and
/// which shards must be written.
#[derive(Debug)]
pub struct BaselineStore {
    entries: HashMap<Arc<str>, Record>,
    /// Shards in use: a power of two.
    count: u32,
    /// Shards whose content in memory differs from what was last written.
    dirty: BTreeSet<u32>,
    /// The resourceVersion of each shard as last seen on the watch.
    versions: HashMap<u32, String>,
}

impl Default for BaselineStore {
    fn default() -> Self {
        BaselineStore { entries: HashMap::new(), count: 1, dirty: BTreeSet::new(), versions: HashMap::new() }
    }
}

impl BaselineStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The stored record of a workload.
    pub fn get(&self, uid: &str) -> Option<&Record> {
        self.entries.get(uid)
    }

    /// Workloads with an entry.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Shards in use.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether some shard waits to be written.
    pub fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// A shard as the watch delivered it. Its entries replace the ones in
    /// memory (the apiserver's copy is the store; another replica may have
    /// written it), except for workloads whose shard has baselines not yet
    /// written: those keep the ones in memory (they are newer). Members
    /// whose uid `keep` refuses are skipped; a value that does not parse is
    /// an empty record (a new baseline, never a rollout).
    pub fn shard_applied(
        &mut self,
        index: u32,
        resource_version: String,
        data: &BTreeMap<String, String>,
        keep: impl Fn(&str) -> bool,
    ) {
        self.versions.insert(index, resource_version);
        // A shard numbered past the count: it was written with more shards.
        while index >= self.count && self.count < MAX_SHARDS {
            self.count *= 2;
        }
        for (uid, raw) in data {
            if !keep(uid) {
                continue;
            }
            if self.entries.contains_key(uid.as_str()) && self.dirty.contains(&shard_of(uid, self.count)) {
                continue;
            }
            self.entries.insert(Arc::from(uid.as_str()), Record::parse_value(raw));
        }
    }

    /// A shard was deleted (by hand): what memory holds for it is written
    /// again. True when there is something to write.
    pub fn shard_deleted(&mut self, index: u32) -> bool {
        self.versions.remove(&index);
        let has = self.entries.keys().any(|uid| shard_of(uid, self.count) == index);
        if has {
            self.dirty.insert(index);
        }
        has
    }

    /// Records `h` as the baseline of `kind/name` for workload `uid` unless
    /// the entry has one; true when it was added (its shard is then dirty).
    pub fn record_baseline(
        &mut self,
        uid: &str,
        kind: ResourceKind,
        name: &str,
        h: ContentHash,
        key: Option<&RecordKey>,
    ) -> Result<bool, TooBig> {
        let mut record = self.entries.get(uid).cloned().unwrap_or_default();
        if !record.set_if_absent(kind, name, h, key) {
            return Ok(false);
        }
        if record.render(key).len() > MAX_ENTRY_BYTES {
            return Err(TooBig);
        }
        self.dirty.insert(shard_of(uid, self.count));
        self.entries.insert(Arc::from(uid), record);
        Ok(true)
    }

    /// A workload is gone: its entry leaves memory now and its shard at
    /// the shard's next write.
    pub fn forget(&mut self, uid: &str) {
        self.entries.remove(uid);
    }

    /// Keeps only the entries of workloads `keep` accepts (after the
    /// initial sync: the workloads that exist).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.entries.retain(|uid, _| keep(uid));
    }

    /// The content of every dirty shard under the current count, in one
    /// pass over the entries.
    fn render_dirty(&self, key: Option<&RecordKey>) -> BTreeMap<u32, BTreeMap<String, String>> {
        let mut out: BTreeMap<u32, BTreeMap<String, String>> =
            self.dirty.iter().map(|i| (*i, BTreeMap::new())).collect();
        for (uid, r) in &self.entries {
            if let Some(data) = out.get_mut(&shard_of(uid, self.count)) {
                data.insert(uid.to_string(), r.render(key));
            }
        }
        out
    }

    /// The dirty shards to write now, each whole. When one would pass
    /// [`MAX_SHARD_BYTES`] the count doubles first and every shard is
    /// written (entries move; stale copies in old shards are overwritten).
    pub fn take_writes(&mut self, key: Option<&RecordKey>) -> Vec<ShardWrite> {
        let mut rendered = self.render_dirty(key);
        while self.count < MAX_SHARDS && rendered.values().any(|d| data_bytes(d) > MAX_SHARD_BYTES) {
            self.count *= 2;
            self.dirty = (0..self.count).collect();
            rendered = self.render_dirty(key);
        }
        self.dirty.clear();
        rendered
            .into_iter()
            .map(|(index, data)| ShardWrite {
                index,
                name: shard_name(index),
                resource_version: self.versions.get(&index).cloned(),
                data,
            })
            .collect()
    }

    /// The shards seen on the watch (and not deleted since).
    pub fn seen_shards(&self) -> Vec<u32> {
        let mut out: Vec<u32> = self.versions.keys().copied().collect();
        out.sort_unstable();
        out
    }

    /// A write failed for good: its shard is written again at the next turn.
    pub fn write_failed(&mut self, index: u32) {
        self.dirty.insert(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::KEY_LEN;

    fn uid(i: usize) -> String {
        format!("{:08x}-0000-4000-8000-{:012x}", i, i * 7919)
    }

    fn key() -> RecordKey {
        RecordKey::new(&[5; KEY_LEN]).unwrap()
    }

    #[test]
    fn names_round_trip_and_strangers_are_no_shards() {
        assert_eq!(shard_name(3), "pod-reloader-baseline-3");
        assert_eq!(shard_index("pod-reloader-baseline-3"), Some(3));
        assert_eq!(shard_index("pod-reloader-baseline-0"), Some(0));
        for bad in ["pod-reloader-baseline-", "pod-reloader-baseline-03", "pod-reloader-baseline-x", "other-1"] {
            assert_eq!(shard_index(bad), None, "{bad}");
        }
        assert_eq!(shard_index(&shard_name(MAX_SHARDS)), None, "past the bound");
    }

    #[test]
    fn shard_of_is_stable_and_splits_by_doubling() {
        // Fixed values: a release that changed the hash would scatter every store.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        for i in 0..1000 {
            let u = uid(i);
            let (a, b) = (shard_of(&u, 4), shard_of(&u, 8));
            assert!(b == a || b == a + 4, "doubling moves an entry to k or k+count");
        }
    }

    #[test]
    fn baselines_are_sealed_and_only_dirty_shards_are_written() {
        let k = key();
        let mut s = BaselineStore::new();
        let secret = ContentHash::of(b"password=hunter2");
        assert_eq!(s.record_baseline(&uid(1), ResourceKind::Secret, "db", secret, Some(&k)), Ok(true));
        assert_eq!(s.record_baseline(&uid(1), ResourceKind::Secret, "db", secret, Some(&k)), Ok(false), "once");
        let w = s.take_writes(Some(&k));
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].name, "pod-reloader-baseline-0");
        assert_eq!(w[0].resource_version, None, "never seen: created");
        let text = &w[0].data[&uid(1)];
        assert!(!text.contains(&secret.to_hex()), "no bare SHA-1 of a Secret: {text}");
        assert!(text.contains(&k.seal(secret).to_string()) && text.contains(&k.id().to_string()));
        assert!(s.take_writes(Some(&k)).is_empty(), "nothing new: nothing to write");

        // What was written reads back as the same record (a restart).
        let mut back = BaselineStore::new();
        back.shard_applied(0, "7".into(), &w[0].data, |_| true);
        let r = back.get(&uid(1)).unwrap();
        assert!(r.get(ResourceKind::Secret, "db", Some(&k)).unwrap().is(secret, Some(&k)));
        assert!(!back.has_dirty(), "reading writes nothing");
    }

    #[test]
    fn shards_split_before_passing_the_size_bound() {
        let k = key();
        let mut s = BaselineStore::new();
        let n = 6000;
        for i in 0..n {
            let u = uid(i);
            s.record_baseline(&u, ResourceKind::ConfigMap, "app-config", ContentHash::of(u.as_bytes()), Some(&k))
                .unwrap();
            s.record_baseline(&u, ResourceKind::Secret, "app-tls", ContentHash::of(b"tls"), Some(&k)).unwrap();
        }
        let writes = s.take_writes(Some(&k));
        let total: usize = writes.iter().map(ShardWrite::bytes).sum();
        let per_workload = total / n;
        assert!((200..=300).contains(&per_workload), "{per_workload} bytes per workload of two resources");
        assert_eq!(s.count(), 4, "6000 × {per_workload} B over 512 KiB shards");
        assert_eq!(writes.len(), 4, "every shard written after a split");
        assert!(writes.iter().all(|w| w.bytes() <= MAX_SHARD_BYTES), "each under the bound");
        assert_eq!(writes.iter().map(|w| w.data.len()).sum::<usize>(), n, "every workload once");
        for w in &writes {
            assert!(w.data.keys().all(|u| shard_of(u, 4) == w.index));
        }
    }

    #[test]
    fn stale_entries_are_pruned_at_the_next_write_of_their_shard() {
        let mut s = BaselineStore::new();
        let h = ContentHash::of(b"v1");
        // Written by an earlier run: a workload that no longer exists.
        let old = BTreeMap::from([(uid(1), "{}".to_string()), (uid(2), "{}".to_string())]);
        s.shard_applied(0, "1".into(), &old, |_| true);
        s.retain(|u| u == uid(2));
        assert!(s.get(&uid(1)).is_none(), "unknown workloads are not kept");
        s.record_baseline(&uid(2), ResourceKind::ConfigMap, "c", h, None).unwrap();
        let w = s.take_writes(None);
        assert_eq!(w[0].resource_version.as_deref(), Some("1"), "an update at the version seen");
        assert_eq!(w[0].data.keys().collect::<Vec<_>>(), [&uid(2)]);
        s.forget(&uid(2));
        assert!(s.get(&uid(2)).is_none());
        assert!(!s.has_dirty(), "a deletion alone writes nothing");
    }

    #[test]
    fn a_deleted_shard_is_written_again_from_memory() {
        let mut s = BaselineStore::new();
        s.record_baseline(&uid(3), ResourceKind::ConfigMap, "c", ContentHash::of(b"1"), None).unwrap();
        let first = s.take_writes(None);
        s.shard_applied(0, "5".into(), &first[0].data, |_| true);
        assert!(s.shard_deleted(0));
        let again = s.take_writes(None);
        assert_eq!(again[0].data, first[0].data);
        assert_eq!(again[0].resource_version, None, "created anew");
        assert!(!BaselineStore::new().shard_deleted(0), "an empty shard deleted: nothing to write");
    }

    #[test]
    fn pending_baselines_survive_an_older_echo_and_others_take_the_apiserver_copy() {
        let mut s = BaselineStore::new();
        let h = ContentHash::of(b"1");
        s.record_baseline(&uid(1), ResourceKind::ConfigMap, "c", h, None).unwrap();
        // An echo of a write made before that baseline: the entry stays.
        s.shard_applied(0, "2".into(), &BTreeMap::from([(uid(1), "{}".to_string())]), |_| true);
        assert!(s.get(&uid(1)).unwrap().get(ResourceKind::ConfigMap, "c", None).is_some());
        let _ = s.take_writes(None);
        // Written by another replica (a handover): the apiserver's copy wins.
        let theirs = format!(r#"{{"ConfigMap/c":"{}"}}"#, ContentHash::of(b"0"));
        s.shard_applied(0, "3".into(), &BTreeMap::from([(uid(1), theirs)]), |_| true);
        assert!(
            s.get(&uid(1)).unwrap().get(ResourceKind::ConfigMap, "c", None).unwrap().is(ContentHash::of(b"0"), None)
        );
        // A garbled value is an empty record: a new baseline, never a rollout.
        s.shard_applied(0, "4".into(), &BTreeMap::from([(uid(1), "garbage".to_string())]), |_| true);
        assert!(s.get(&uid(1)).unwrap().is_empty());
    }

    #[test]
    fn a_record_too_big_for_the_store_is_refused() {
        let mut s = BaselineStore::new();
        let mut last = Ok(true);
        for i in 0..400 {
            last = s.record_baseline(
                &uid(1),
                ResourceKind::ConfigMap,
                &format!("cfg-{i:040}"),
                ContentHash::of(b"x"),
                None,
            );
            if last.is_err() {
                break;
            }
        }
        assert_eq!(last, Err(TooBig));
        assert!(s.get(&uid(1)).unwrap().render(None).len() <= MAX_ENTRY_BYTES);
    }

    #[test]
    fn a_shard_numbered_past_the_count_raises_it() {
        let mut s = BaselineStore::new();
        s.shard_applied(5, "1".into(), &BTreeMap::new(), |_| true);
        assert_eq!(s.count(), 8);
    }
}
