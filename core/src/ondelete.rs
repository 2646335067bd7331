//! Restarting a StatefulSet whose `updateStrategy` is `OnDelete`: its
//! controller applies a new pod template only to pods created after the
//! change, so patching the template (what a reload does) restarts nothing.
//! pod-reloader then deletes the pods itself, the way the StatefulSet
//! controller's `RollingUpdate` would: one at a time, highest ordinal first,
//! each only once every higher ordinal runs the new revision and is Ready.
//!
//! This module decides the next step from what the pods look like now; the
//! controller (`controller/src/ondelete.rs`) reads them, acts, and asks again.
//! Deciding from the objects alone (no memory of what was deleted before)
//! is what lets a restarted controller carry on where the last one stopped.

/// One pod of the StatefulSet, as far as the order of restarts needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodState {
    pub name: String,
    pub uid: Option<String>,
    /// From the name: `<statefulset>-<ordinal>`.
    pub ordinal: u32,
    /// The `controller-revision-hash` label: the revision the pod was created from.
    pub revision: Option<String>,
    /// Since when (Unix seconds) the pod is Running with condition Ready=True; `None`: not ready.
    pub ready_since: Option<i64>,
    /// `metadata.deletionTimestamp` is set.
    pub terminating: bool,
}

/// The StatefulSet, as far as the order of restarts needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetState {
    /// `spec.ordinals.start` (0 unless set).
    pub start_ordinal: u32,
    pub replicas: u32,
    /// `status.updateRevision`: the revision of the current template.
    pub update_revision: String,
    /// `spec.minReadySeconds`: a replacement counts once Ready this long.
    pub min_ready_seconds: i64,
}

/// What to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Delete this pod: it runs an older revision and every higher ordinal is done.
    Delete { name: String, uid: Option<String>, revision: Option<String> },
    /// Wait: the pod of this ordinal does not exist yet (its controller creates it).
    WaitCreated { ordinal: u32 },
    /// Wait: this pod is being deleted.
    WaitTerminated { name: String },
    /// Wait: this pod runs the new revision but is not Ready (long enough) yet.
    WaitReady { name: String },
    /// Every pod runs the new revision and is Ready.
    Done,
}

/// The ordinal in a pod name `<set>-<ordinal>`, if the name is one of the set's.
pub fn ordinal_of(set_name: &str, pod_name: &str) -> Option<u32> {
    let digits = pod_name.strip_prefix(set_name)?.strip_prefix('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    digits.parse().ok()
}

/// The next step towards every pod of `set` running `set.update_revision`,
/// given its pods at time `now` (Unix seconds). Pods outside the set's
/// ordinal range (a scale-down in progress) are the StatefulSet
/// controller's business and ignored.
///
/// From the highest ordinal down, the first pod that is not done decides:
/// missing or terminating → wait for it; an older revision → delete it; the
/// new revision but not Ready → wait. A pod that is not Ready but runs an
/// older revision is deleted like any other (its replacement may be what
/// makes it well). Never more than one pod is down on our account.
pub fn next_step(set: &SetState, pods: &[PodState], now: i64) -> Step {
    let end = set.start_ordinal.saturating_add(set.replicas);
    for ordinal in (set.start_ordinal..end).rev() {
        let Some(pod) = pods.iter().find(|p| p.ordinal == ordinal) else {
            return Step::WaitCreated { ordinal };
        };
        if pod.terminating {
            return Step::WaitTerminated { name: pod.name.clone() };
        }
        if pod.revision.as_deref() != Some(set.update_revision.as_str()) {
            return Step::Delete { name: pod.name.clone(), uid: pod.uid.clone(), revision: pod.revision.clone() };
        }
        let available = pod.ready_since.is_some_and(|since| now.saturating_sub(since) >= set.min_ready_seconds);
        if !available {
            return Step::WaitReady { name: pod.name.clone() };
        }
    }
    Step::Done
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEW: &str = "web-new";
    const OLD: &str = "web-old";

    fn pod(ordinal: u32, revision: &str, ready: bool) -> PodState {
        PodState {
            name: format!("web-{ordinal}"),
            uid: Some(format!("uid-{ordinal}-{revision}")),
            ordinal,
            revision: Some(revision.into()),
            ready_since: ready.then_some(100),
            terminating: false,
        }
    }

    fn set(replicas: u32) -> SetState {
        SetState { start_ordinal: 0, replicas, update_revision: NEW.into(), min_ready_seconds: 0 }
    }

    fn deletes(step: &Step) -> Option<&str> {
        match step {
            Step::Delete { name, .. } => Some(name),
            _ => None,
        }
    }

    #[test]
    fn ordinals_come_from_the_set_name() {
        assert_eq!(ordinal_of("web", "web-0"), Some(0));
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        assert_eq!(ordinal_of("web", "web-api-1"), None, "another set's pod");
        assert_eq!(ordinal_of("web", "web-"), None);
        assert_eq!(ordinal_of("web", "web-01"), None, "not a name the controller makes");
        assert_eq!(ordinal_of("web", "web-x"), None);
        assert_eq!(ordinal_of("web", "web0"), None);
        assert_eq!(ordinal_of("web", "web-99999999999"), None, "overflows u32");
    }

    #[test]
    fn highest_ordinal_first_then_down_one_at_a_time() {
        let s = set(3);
        // All old: the highest goes first.
        let pods = vec![pod(0, OLD, true), pod(1, OLD, true), pod(2, OLD, true)];
        assert_eq!(deletes(&next_step(&s, &pods, 200)), Some("web-2"));
        // web-2 is going: wait for it, delete nothing else.
        let mut going = pods.clone();
        going[2].terminating = true;
        assert_eq!(next_step(&s, &going, 200), Step::WaitTerminated { name: "web-2".into() });
        // Gone, not recreated yet: wait.
        assert_eq!(next_step(&s, &pods[..2], 200), Step::WaitCreated { ordinal: 2 });
        // Recreated at the new revision, not Ready: wait for it.
        let pods = vec![pod(0, OLD, true), pod(1, OLD, true), pod(2, NEW, false)];
        assert_eq!(next_step(&s, &pods, 200), Step::WaitReady { name: "web-2".into() });
        // Ready: the next one down.
        let pods = vec![pod(0, OLD, true), pod(1, OLD, true), pod(2, NEW, true)];
        assert_eq!(deletes(&next_step(&s, &pods, 200)), Some("web-1"));
        let pods = vec![pod(0, OLD, true), pod(1, NEW, true), pod(2, NEW, true)];
        assert_eq!(deletes(&next_step(&s, &pods, 200)), Some("web-0"));
        let pods = vec![pod(0, NEW, true), pod(1, NEW, true), pod(2, NEW, true)];
        assert_eq!(next_step(&s, &pods, 200), Step::Done);
    }

    #[test]
    fn delete_carries_the_uid_and_old_revision() {
        let pods = vec![pod(0, OLD, true)];
        assert_eq!(
            next_step(&set(1), &pods, 0),
            Step::Delete { name: "web-0".into(), uid: Some("uid-0-web-old".into()), revision: Some(OLD.into()) }
        );
    }

    #[test]
    fn a_replacement_not_ready_blocks_every_lower_ordinal() {
        // web-1 replaced but not Ready: web-0 (old) must wait, however long.
        let pods = vec![pod(0, OLD, true), pod(1, NEW, false)];
        for now in [0, 1_000, 1_000_000] {
            assert_eq!(next_step(&set(2), &pods, now), Step::WaitReady { name: "web-1".into() });
        }
    }

    #[test]
    fn an_old_pod_that_is_not_ready_is_restarted_in_its_turn() {
        let pods = vec![pod(0, OLD, false), pod(1, NEW, true)];
        assert_eq!(deletes(&next_step(&set(2), &pods, 200)), Some("web-0"));
        // A pod without a revision label is not at the new revision either.
        let mut unlabelled = pod(0, OLD, true);
        unlabelled.revision = None;
        assert_eq!(deletes(&next_step(&set(1), &[unlabelled], 200)), Some("web-0"));
    }

    #[test]
    fn min_ready_seconds_counts_from_readiness() {
        let s = SetState { min_ready_seconds: 30, ..set(2) };
        let pods = vec![pod(0, OLD, true), pod(1, NEW, true)]; // Ready since 100
        assert_eq!(next_step(&s, &pods, 129), Step::WaitReady { name: "web-1".into() });
        assert_eq!(deletes(&next_step(&s, &pods, 130)), Some("web-0"));
    }

    #[test]
    fn pods_outside_the_ordinal_range_are_ignored() {
        // Scaled down from 3 to 2: web-2 (old, still there) is not ours to delete.
        let pods = vec![pod(0, NEW, true), pod(1, NEW, true), pod(2, OLD, true)];
        assert_eq!(next_step(&set(2), &pods, 200), Step::Done);
        // spec.ordinals.start = 5: ordinals 5 and 6.
        let s = SetState { start_ordinal: 5, ..set(2) };
        let pods = vec![pod(0, OLD, true), pod(5, OLD, true), pod(6, NEW, true)];
        assert_eq!(deletes(&next_step(&s, &pods, 200)), Some("web-5"));
        assert_eq!(next_step(&set(0), &pods, 200), Step::Done, "no replicas, nothing to restart");
    }
}
