//! The state on plain values: messages in, effects out, no cluster.

use std::collections::BTreeMap;
use std::time::Instant;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use pod_reloader_core::chosen_keys::KeyDigests;
use pod_reloader_core::record::{RECORD_ANNOTATION, Record};
use pod_reloader_core::settings::Settings;
use pod_reloader_core::{ResourceKind, WorkloadKind};
use serde_json::json;

use super::*;

const CM: Watched = Watched::Resource(ResourceKind::ConfigMap);
const DEPLOY: Watched = Watched::Workload(WorkloadKind::Deployment);

fn stream(watched: Watched) -> StreamId {
    StreamId { watched, namespace: None }
}

/// A state watching ConfigMaps and Deployments cluster-wide (and
/// Namespaces when a selector is set), leader, under `settings`.
fn state_with(edit: impl FnOnce(&mut Settings)) -> State {
    let mut s = Settings::default();
    edit(&mut s);
    let settings = Arc::new(s.validate().expect("valid settings"));
    let mut streams = vec![stream(CM), stream(DEPLOY)];
    if settings.namespace_selector.is_some() {
        streams.push(stream(Watched::Namespaces));
    }
    let mut state = State::new(settings, streams, Arc::new(Metrics::new(false)), Arc::default());
    assert!(state.set_leader(true).is_empty(), "nothing listed yet: nothing to reconcile");
    state
}

fn state() -> State {
    state_with(|_| {})
}

fn cm_key(ns: &str, name: &str) -> ResourceKey {
    ResourceKey::new(ResourceKind::ConfigMap, ns, name)
}

fn facts(content: &str) -> ResourceFacts {
    ResourceFacts { hash: ContentHash::of(content.as_bytes()), ignored: false, matched: false }
}

fn cm_applied(ns: &str, name: &str, content: &str) -> Msg {
    Msg::ResourceApplied {
        key: cm_key(ns, name),
        facts: facts(content),
        created: None,
        digests: None,
        seen: Instant::now(),
    }
}

fn cm_deleted(ns: &str, name: &str) -> Msg {
    Msg::ResourceDeleted { key: cm_key(ns, name), seen: Instant::now() }
}

/// A Deployment `ns/name` with `auto` (and `extra` annotations) using
/// ConfigMap `cfg` through envFrom, with the rolled-to `record`.
fn deployment(ns: &str, name: &str, extra: &[(&str, &str)], record: &Record) -> WorkloadEntry {
    let mut meta = BTreeMap::from([("reloader.stakater.com/auto".to_string(), "true".to_string())]);
    meta.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    if !record.is_empty() {
        meta.insert(RECORD_ANNOTATION.into(), record.render(None));
    }
    let t: PodTemplateSpec = serde_json::from_value(json!({"spec": {"containers": [
        {"name": "app", "envFrom": [{"configMapRef": {"name": "cfg"}}]}
    ]}}))
    .unwrap();
    WorkloadEntry::from_object(WorkloadKey::new(WorkloadKind::Deployment, ns, name), &meta, Some(&t))
}

fn applied(entry: WorkloadEntry) -> Msg {
    Msg::WorkloadApplied { entry: Box::new(entry), pause: PauseState::default() }
}

/// A record saying the workload rolled to ConfigMap `cfg` with `content`.
fn rolled_to(content: &str) -> Record {
    let mut r = Record::new();
    r.set(ResourceKind::ConfigMap, "cfg", ContentHash::of(content.as_bytes()), None);
    r
}

/// The reloads as `(workload name, resource name, hash)`; baselines as hash `"baseline"`.
fn reloads(fx: &Effects) -> Vec<(String, String, String)> {
    fx.reloads()
        .map(|r| match &r.work {
            Work::Reload(i) => (
                r.workload.name.to_string(),
                i.resource.name.to_string(),
                i.hash.map_or_else(|| "deleted".to_string(), |h| h.to_hex()),
            ),
            Work::Baseline(k, _) => (r.workload.name.to_string(), k.name.to_string(), "baseline".into()),
        })
        .collect()
}

fn hex(content: &str) -> String {
    ContentHash::of(content.as_bytes()).to_hex()
}

fn one(workload: &str, content: &str) -> Vec<(String, String, String)> {
    vec![(workload.into(), "cfg".into(), hex(content))]
}

/// Lists `cfg` in `ns` with `v1` and Deployment `web` (rolled to `v1`).
fn listed(state: &mut State, ns: &str) -> Effects {
    let _ = state.handle(Msg::ListStarted(stream(CM)));
    let _ = state.handle(cm_applied(ns, "cfg", "v1"));
    let _ = state.handle(Msg::ListDone(stream(CM)));
    let _ = state.handle(Msg::ListStarted(stream(DEPLOY)));
    let _ = state.handle(applied(deployment(ns, "web", &[], &rolled_to("v1"))));
    state.handle(Msg::ListDone(stream(DEPLOY)))
}

#[test]
fn start_up_rolls_nothing_before_every_stream_listed() {
    let mut s = state();
    let _ = s.handle(Msg::ListStarted(stream(CM)));
    let _ = s.handle(cm_applied("ns", "cfg", "v1"));
    let fx = s.handle(Msg::ListDone(stream(CM)));
    assert_eq!(fx.ready(), Some(false), "Deployments not listed yet");
    // A change while the Deployments are still listing: initial state, not a change.
    let fx = s.handle(cm_applied("ns", "cfg", "v2"));
    assert!(reloads(&fx).is_empty());
    let _ = s.handle(Msg::ListStarted(stream(DEPLOY)));
    let fx = s.handle(applied(deployment("ns", "web", &[], &rolled_to("v1"))));
    assert!(reloads(&fx).is_empty(), "no reconciliation before the initial sync");
    let fx = s.handle(Msg::ListDone(stream(DEPLOY)));
    assert_eq!(fx.ready(), Some(true));
    assert_eq!(reloads(&fx), one("web", "v2"), "the initial reconciliation rolls what changed meanwhile, once");
}

#[test]
fn a_change_reloads_and_a_no_change_update_does_not() {
    let mut s = state();
    assert!(reloads(&listed(&mut s, "ns")).is_empty(), "in sync at start-up");
    assert!(reloads(&s.handle(cm_applied("ns", "cfg", "v1"))).is_empty(), "same content");
    assert_eq!(s.metrics.skipped.with_label_values(&["no_data_change"]).get(), 1);
    assert_eq!(reloads(&s.handle(cm_applied("ns", "cfg", "v2"))), one("web", "v2"));
    let fx = s.handle(cm_applied("ns", "other", "x"));
    assert!(reloads(&fx).is_empty(), "not followed: {fx:?}");
}

#[test]
fn reload_on_create_and_delete_follow_the_settings() {
    for (on_create, on_delete) in [(false, false), (true, true)] {
        let mut s = state_with(|s| {
            s.reload_on_create = on_create;
            s.reload_on_delete = on_delete;
        });
        let _ = listed(&mut s, "ns");
        let deleted = reloads(&s.handle(cm_deleted("ns", "cfg")));
        let created = reloads(&s.handle(cm_applied("ns", "cfg", "v3")));
        if on_delete {
            assert_eq!(deleted, vec![("web".into(), "cfg".into(), "deleted".into())]);
        } else {
            assert!(deleted.is_empty(), "{deleted:?}");
        }
        if on_create {
            assert_eq!(created, one("web", "v3"));
        } else {
            assert!(created.is_empty(), "{created:?}");
        }
        // Deleting what is not held does nothing either way.
        assert!(s.handle(cm_deleted("ns", "never")).is_empty());
    }
}

#[test]
fn a_resource_older_than_its_workload_rolls_nothing_on_create() {
    // The workload `web` was created at 1000 (Unix seconds).
    let mut s = state_with(|s| s.reload_on_create = true);
    let _ = listed(&mut s, "ns");
    let mut web = deployment("ns", "web", &[], &rolled_to("v1"));
    web.created = Some(1000);
    let _ = s.handle(applied(web));
    let _ = s.handle(cm_deleted("ns", "cfg"));
    let created_at = |t: i64, content: &str| {
        let Msg::ResourceApplied { key, facts, digests, seen, .. } = cm_applied("ns", "cfg", content) else {
            unreachable!()
        };
        Msg::ResourceApplied { key, facts, created: Some(t), digests, seen }
    };
    // Created before the workload (its event handled after the workload's):
    // the workload's pods started with it.
    assert!(reloads(&s.handle(created_at(999, "v2"))).is_empty(), "older than the workload: started with it");
    let _ = s.handle(cm_deleted("ns", "cfg"));
    // The same second: the order is unknown, the workload rolls.
    assert_eq!(reloads(&s.handle(created_at(1000, "v3"))), one("web", "v3"));
    let _ = s.handle(cm_deleted("ns", "cfg"));
    // Created after the workload: its pods ran without it; reload-on-create rolls it.
    assert_eq!(reloads(&s.handle(created_at(1001, "v4"))), one("web", "v4"));
}

#[test]
fn an_object_missing_from_a_relist_was_deleted() {
    let mut s = state_with(|s| s.reload_on_delete = true);
    let _ = listed(&mut s, "ns");
    let _ = s.handle(cm_applied("ns", "gone", "g"));
    let _ = s.handle(Msg::StreamFailed(stream(CM), "connection refused".into()));
    let _ = s.handle(Msg::ListStarted(stream(CM)));
    let _ = s.handle(cm_applied("ns", "gone", "g"));
    let fx = s.handle(Msg::ListDone(stream(CM)));
    assert_eq!(fx.ready(), Some(true));
    assert_eq!(
        reloads(&fx),
        vec![("web".into(), "cfg".into(), "deleted".into())],
        "cfg was not listed again: deleted while away (and nothing else rolls)"
    );
    assert!(!s.resources.contains_key(&cm_key("ns", "cfg")));
    assert!(s.resources.contains_key(&cm_key("ns", "gone")));
}

#[test]
fn a_first_list_that_starts_over_forgets_what_only_the_failed_attempt_saw() {
    // kube's watcher reports an error when the list's stream fails, but
    // when the stream just ends (a connection cut mid-body, as the
    // streaming_list test's proxy does) it starts the list again at once
    // and only the second `Init` tells.
    for failure_reported in [true, false] {
        a_first_list_starts_over(failure_reported);
    }
}

fn a_first_list_starts_over(failure_reported: bool) {
    let mut s = state_with(|s| s.reload_on_delete = true);
    let _ = s.handle(Msg::ListStarted(stream(DEPLOY)));
    let _ = s.handle(applied(deployment("ns", "web", &[], &rolled_to("v1"))));
    let _ = s.handle(Msg::ListDone(stream(DEPLOY)));
    let _ = s.handle(Msg::ListStarted(stream(CM)));
    let _ = s.handle(cm_applied("ns", "cfg", "v1"));
    let _ = s.handle(cm_applied("ns", "gone", "g"));
    // The watch fails mid-list; "gone" is deleted before the list starts over.
    if failure_reported {
        let _ = s.handle(Msg::StreamFailed(stream(CM), "connection reset".into()));
    }
    let _ = s.handle(Msg::ListStarted(stream(CM)));
    let _ = s.handle(cm_applied("ns", "cfg", "v1"));
    let fx = s.handle(Msg::ListDone(stream(CM)));
    assert_eq!(fx.ready(), Some(true));
    assert!(reloads(&fx).is_empty(), "nothing changed for web; a deletion before the sync is no reload");
    assert!(!s.resources.contains_key(&cm_key("ns", "gone")), "no stale hash");
    assert!(s.resources.contains_key(&cm_key("ns", "cfg")));
    // Created again later: a new object (no reload on create by default), held again.
    assert!(reloads(&s.handle(cm_applied("ns", "gone", "g2"))).is_empty());
    assert!(s.resources.contains_key(&cm_key("ns", "gone")));
    // A change to what the restarted list delivered rolls once.
    assert_eq!(reloads(&s.handle(cm_applied("ns", "cfg", "v2"))), one("web", "v2"));
}

#[test]
fn a_workload_missing_from_a_relist_is_removed() {
    let mut s = state();
    let _ = listed(&mut s, "ns");
    let _ = s.handle(Msg::ListStarted(stream(DEPLOY)));
    let fx = s.handle(Msg::ListDone(stream(DEPLOY)));
    assert!(reloads(&fx).is_empty());
    assert_eq!(s.index.len(), 0);
    assert!(reloads(&s.handle(cm_applied("ns", "cfg", "v2"))).is_empty(), "nobody follows cfg any more");
}

#[test]
fn a_relist_reconciles_what_changed_during_the_gap() {
    let mut s = state();
    let _ = listed(&mut s, "ns");
    let _ = s.handle(Msg::ListStarted(stream(CM)));
    let fx = s.handle(cm_applied("ns", "cfg", "v2"));
    assert_eq!(reloads(&fx), one("web", "v2"), "a changed object during a re-list is a change");
    let fx = s.handle(Msg::ListDone(stream(CM)));
    // The index still holds the record of v1: the reconciliation asks again;
    // the reloader finds the workload current by its record and rolls once.
    assert_eq!(reloads(&fx), one("web", "v2"));
}

#[test]
fn a_standby_rolls_nothing_and_a_new_leader_reconciles_everything() {
    let mut s = state();
    let _ = s.set_leader(false);
    assert!(reloads(&listed(&mut s, "ns")).is_empty());
    let _ = s.handle(applied(deployment("ns", "fresh", &[], &Record::new())));
    assert!(reloads(&s.handle(cm_applied("ns", "cfg", "v2"))).is_empty(), "a standby keeps its state warm only");
    let fx = s.set_leader(true);
    assert_eq!(
        reloads(&fx),
        vec![("fresh".into(), "cfg".into(), "baseline".into()), ("web".into(), "cfg".into(), hex("v2"))],
        "every workload compared: a baseline for the one never rolled, a reload for the stale one"
    );
    assert!(s.set_leader(true).is_empty(), "no change, nothing to do");
    assert!(s.set_leader(false).is_empty());
}

#[test]
fn namespace_selection_skips_unselected_namespaces() {
    let mut s = state_with(|s| s.namespace_selector = "team=a".into());
    let _ = s.handle(Msg::ListStarted(stream(Watched::Namespaces)));
    let _ = s.handle(Msg::NamespaceApplied { name: "selected".into() });
    let _ = s.handle(Msg::ListDone(stream(Watched::Namespaces)));
    let _ = listed(&mut s, "selected");
    let _ = s.handle(cm_applied("other", "cfg", "v1"));
    let _ = s.handle(applied(deployment("other", "web", &[], &rolled_to("v1"))));

    assert_eq!(reloads(&s.handle(cm_applied("selected", "cfg", "v2"))), one("web", "v2"));
    assert!(reloads(&s.handle(cm_applied("other", "cfg", "v2"))).is_empty());
    assert_eq!(s.metrics.skipped.with_label_values(&["namespace_not_selected"]).get(), 1);

    // The namespace gets the label: its workloads are followed from now on.
    let _ = s.handle(Msg::NamespaceApplied { name: "other".into() });
    assert_eq!(reloads(&s.handle(cm_applied("other", "cfg", "v3"))), one("web", "v3"));
    // And loses it again.
    let _ = s.handle(Msg::NamespaceDeleted { name: "other".into() });
    assert!(reloads(&s.handle(cm_applied("other", "cfg", "v4"))).is_empty());
    // A workload seen in an unselected namespace is not reconciled either.
    let fx = s.handle(applied(deployment("other", "late", &[], &Record::new())));
    assert!(reloads(&fx).is_empty(), "{fx:?}");
}

#[test]
fn invalid_annotations_are_noticed_once_per_policy_change() {
    let mut s = state();
    let _ = listed(&mut s, "ns");
    let bad = [("configmap.reloader.stakater.com/reload", "[bad")];
    let invalid = |fx: &Effects| fx.notices().filter(|n| matches!(n, Notice::InvalidAnnotations { .. })).count();

    let first = deployment("ns", "web", &bad, &rolled_to("v1"));
    let fx = s.handle(applied(first.clone()));
    assert_eq!(invalid(&fx), 1);
    let Some(Notice::InvalidAnnotations { messages, .. }) = fx.notices().next() else { panic!("{fx:?}") };
    assert_eq!(messages[0], "keys configmap.reloader.stakater.com/reload");
    assert_eq!(invalid(&s.handle(applied(first))), 0, "the same policy (a status update): no new notice");
    // Parsed anew from the same annotations: the same problems, no new notice.
    assert_eq!(invalid(&s.handle(applied(deployment("ns", "web", &bad, &rolled_to("v1"))))), 0);
    let other = [("configmap.reloader.stakater.com/reload", "(other")];
    assert_eq!(invalid(&s.handle(applied(deployment("ns", "web", &other, &rolled_to("v1"))))), 1, "new problems");
    assert_eq!(invalid(&s.handle(applied(deployment("ns", "web", &[], &rolled_to("v1"))))), 0, "fixed");
    assert_eq!(s.metrics.reload_errors.with_label_values(&["invalid_annotation"]).get(), 2);
}

#[test]
fn a_paused_deployment_gets_its_resume_and_loses_it_when_deleted() {
    let mut s = state();
    let _ = listed(&mut s, "ns");
    let paused = [
        ("deployment.reloader.stakater.com/pause-period", "5m"),
        ("deployment.reloader.stakater.com/paused-at", "2026-11-29T00:00:00Z"),
    ];
    let pause = PauseState { paused: true, paused_at_key: Some("deployment.reloader.stakater.com/paused-at") };
    let entry = deployment("ns", "web", &paused, &rolled_to("v1"));
    let fx = s.handle(Msg::WorkloadApplied { entry: Box::new(entry), pause });
    assert!(matches!(fx.notices().next(), Some(Notice::ScheduleResume { period, .. }) if period.as_secs() == 300));
    let fx = s.handle(Msg::WorkloadDeleted { key: WorkloadKey::new(WorkloadKind::Deployment, "ns", "web") });
    assert!(matches!(fx.notices().next(), Some(Notice::CancelResume { .. })), "{fx:?}");
}

#[test]
fn a_failing_stream_makes_the_replica_unready_until_it_hears_again() {
    let mut s = state();
    let _ = listed(&mut s, "ns");
    let fx = s.handle(Msg::StreamFailed(stream(CM), "gone".into()));
    assert_eq!(fx.ready(), Some(false));
    let fx = s.handle(Msg::StreamFailed(stream(CM), "gone".into()));
    assert_eq!(fx.ready(), Some(false));
    let fx = s.handle(cm_applied("ns", "cfg", "v1"));
    assert_eq!(fx.ready(), Some(true), "an event on the stream: healthy again");
}

#[test]
fn a_failed_stream_that_went_quiet_is_healthy_again() {
    let mut s = state();
    let _ = listed(&mut s, "ns");
    let fx = s.handle(Msg::StreamFailed(stream(CM), "connection reset".into()));
    assert_eq!(fx.ready(), Some(false));
    let fx = s.handle(Msg::StreamRecovered(stream(CM)));
    assert_eq!(fx.ready(), Some(true), "the re-watch held: ready without waiting for an event");
}

const KEYS: (&str, &str) = ("reloader.stakater.com/reload-on-keys", "a");

/// ConfigMap data `{a, b}`: its facts, and its digests of key `a`.
fn ab(a: &str, b: &str) -> (ResourceFacts, Box<KeyDigests>) {
    let data = BTreeMap::from([("a".to_string(), a.to_string()), ("b".to_string(), b.to_string())]);
    let hash = pod_reloader_core::hash::configmap_hash(Some(&data), None);
    let digests = KeyDigests::of_configmap(hash, Some(&data), None, ["a"]);
    (ResourceFacts { hash, ignored: false, matched: false }, Box::new(digests))
}

fn digest_of_a(a: &str) -> ContentHash {
    ab(a, "-").1.digest(&pod_reloader_core::chosen_keys::ChosenKeys::from(["a"])).unwrap()
}

fn cm_ab(a: &str, b: &str, with_digests: bool) -> Msg {
    let (facts, digests) = ab(a, b);
    Msg::ResourceApplied {
        key: cm_key("ns", "cfg"),
        facts,
        created: None,
        digests: with_digests.then_some(digests),
        seen: Instant::now(),
    }
}

fn fetched(a: &str, b: &str) -> Msg {
    Msg::KeyDigests { key: cm_key("ns", "cfg"), digests: ab(a, b).1 }
}

/// Lists `cfg` (a=1, b=1) before anyone wants its digests, then `web` with
/// `reload-on-keys: a` rolled to `record`; returns the effects of the last list.
fn keyed_listed(s: &mut State, record: Record) -> Effects {
    let _ = s.handle(Msg::ListStarted(stream(CM)));
    let _ = s.handle(cm_ab("1", "1", false));
    let _ = s.handle(Msg::ListDone(stream(CM)));
    let _ = s.handle(Msg::ListStarted(stream(DEPLOY)));
    let fx = s.handle(applied(deployment("ns", "web", &[KEYS], &record)));
    assert_eq!(fx.fetches().collect::<Vec<_>>(), [&cm_key("ns", "cfg")], "listed before it was wanted: read anew");
    assert_eq!(
        s.chosen_wanted(&cm_key("ns", "cfg")),
        Some(vec!["a".to_string()]),
        "the watch digests key a of cfg from now on"
    );
    s.handle(Msg::ListDone(stream(DEPLOY)))
}

#[test]
fn reload_on_keys_rolls_on_a_chosen_key_only() {
    let mut s = state();
    let fx = keyed_listed(&mut s, Record::new());
    assert!(reloads(&fx).is_empty(), "no digests yet: neither a baseline nor a reload: {fx:?}");
    let fx = s.handle(fetched("1", "1"));
    assert_eq!(reloads(&fx), vec![("web".into(), "cfg".into(), "baseline".into())]);
    let Some(Work::Baseline(_, h)) = fx.reloads().next().map(|r| &r.work) else { panic!() };
    assert_eq!(*h, digest_of_a("1"), "the baseline holds the digest of the chosen keys");

    assert!(reloads(&s.handle(cm_ab("1", "2", true))).is_empty(), "b changed");
    assert_eq!(s.metrics.skipped.with_label_values(&["chosen_keys_unchanged"]).get(), 1);
    let fx = s.handle(cm_ab("2", "2", true));
    assert_eq!(reloads(&fx), vec![("web".into(), "cfg".into(), digest_of_a("2").to_hex())]);
    assert!(fx.fetches().next().is_none(), "digested by the watch: nothing to read");
}

#[test]
fn reload_on_keys_after_a_restart_rolls_what_changed_while_away() {
    let mut rolled = Record::new();
    rolled.set(ResourceKind::ConfigMap, "cfg", digest_of_a("0"), None);
    let mut s = state();
    let _ = keyed_listed(&mut s, rolled);
    let fx = s.handle(fetched("1", "1"));
    assert_eq!(reloads(&fx), vec![("web".into(), "cfg".into(), digest_of_a("1").to_hex())], "once");

    let mut current = Record::new();
    current.set(ResourceKind::ConfigMap, "cfg", digest_of_a("1"), None);
    let mut s = state();
    let _ = keyed_listed(&mut s, current);
    assert!(reloads(&s.handle(fetched("1", "7"))).is_empty(), "only b differs from what it runs");
}

#[test]
fn a_stale_read_is_dropped_and_the_watch_digests_the_next_event() {
    let mut s = state();
    let _ = keyed_listed(&mut s, Record::new());
    // The read saw a newer content than the state holds: not used.
    assert!(s.handle(fetched("2", "1")).is_empty());
    // The watch's event of that content comes digested.
    let fx = s.handle(cm_ab("2", "1", true));
    assert_eq!(reloads(&fx), vec![("web".into(), "cfg".into(), digest_of_a("2").to_hex())], "no record: a change");
    // An event reduced before cfg was wanted (no digests) asks for a read again.
    let fx = s.handle(cm_ab("3", "1", false));
    assert!(reloads(&fx).is_empty());
    assert_eq!(fx.fetches().count(), 1);
    assert_eq!(s.handle(cm_ab("3", "2", false)).fetches().count(), 1, "a new content: a new read");
}

#[test]
fn objects_stop_being_digested_when_no_workload_chooses_keys() {
    let mut s = state();
    let _ = keyed_listed(&mut s, Record::new());
    let _ = s.handle(applied(deployment("ns", "web", &[], &Record::new())));
    assert_eq!(s.chosen_wanted(&cm_key("ns", "cfg")), None);
    let _ = s.handle(applied(deployment("ns", "web", &[KEYS], &Record::new())));
    let _ = s.handle(Msg::WorkloadDeleted { key: WorkloadKey::new(WorkloadKind::Deployment, "ns", "web") });
    assert_eq!(s.chosen_wanted(&cm_key("ns", "cfg")), None);
}

#[test]
fn the_note_names_every_key_first() {
    let meta: BTreeMap<String, String> = [
        ("reloader.stakater.com/auto", "x".repeat(10_000)),
        ("configmap.reloader.stakater.com/reload", "[bad".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let policy = pod_reloader_core::policy::WorkloadPolicy::parse(&meta, &Default::default());
    let messages = event_messages(&policy.problems);
    assert_eq!(messages[0], "keys reloader.stakater.com/auto, configmap.reloader.stakater.com/reload");
    assert_eq!(messages.len(), 1 + policy.problems.len());
    assert!(messages.iter().all(|m| m.len() < 400), "values are cut: {messages:?}");
}

/// A leader state with the baseline store in `d8-pod-reloader`; every stream
/// listed with ConfigMap `ns/cfg` at `content`, the store's shards
/// `shards` and Deployment `ns/web` (uid `uid-web`, no record).
fn with_store(content: &str, shards: &[(u32, BTreeMap<String, String>)]) -> (State, Effects) {
    let settings = Arc::new(Settings::default().validate().expect("valid settings"));
    let store = StreamId { watched: Watched::BaselineStore, namespace: Some(Arc::from("d8-pod-reloader")) };
    let streams = vec![stream(CM), stream(DEPLOY), store.clone()];
    let mut s = State::new(settings, streams, Arc::new(Metrics::new(false)), Arc::default())
        .with_baseline_store(Arc::from("d8-pod-reloader"));
    let _ = s.set_leader(true);
    let _ = s.handle(Msg::ListStarted(store.clone()));
    for (index, data) in shards {
        let _ = s.handle(Msg::ShardApplied { index: *index, resource_version: "1".into(), data: data.clone() });
    }
    let _ = s.handle(Msg::ListDone(store));
    let _ = s.handle(Msg::ListStarted(stream(CM)));
    let _ = s.handle(cm_applied("ns", "cfg", content));
    // The store's own ConfigMaps reach the ConfigMap stream too: not resources.
    let _ = s.handle(cm_applied("d8-pod-reloader", "pod-reloader-baseline-0", "x"));
    let _ = s.handle(Msg::ListDone(stream(CM)));
    let _ = s.handle(Msg::ListStarted(stream(DEPLOY)));
    let mut web = deployment("ns", "web", &[], &Record::new());
    web.uid = Some(Arc::from("uid-web"));
    let _ = s.handle(applied(web));
    let fx = s.handle(Msg::ListDone(stream(DEPLOY)));
    (s, fx)
}

#[test]
fn first_sight_with_a_store_writes_a_shard_not_the_workload() {
    let (mut s, fx) = with_store("v1", &[]);
    assert!(reloads(&fx).is_empty(), "no baseline PATCH of the workload: {:?}", reloads(&fx));
    assert!(!s.is_shard(&cm_key("ns", "pod-reloader-baseline-0")), "only in the store's namespace");
    assert!(!s.resources.contains_key(&cm_key("d8-pod-reloader", "pod-reloader-baseline-0")));
    let flushed = s.flush_store();
    let writes: Vec<_> = flushed.shard_writes().collect();
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].name, "pod-reloader-baseline-0");
    assert_eq!(writes[0].data.keys().collect::<Vec<_>>(), ["uid-web"]);
    assert!(writes[0].data["uid-web"].contains(&hex("v1")));
    assert!(s.flush_store().is_empty(), "written once");

    // A standby writes nothing.
    let (mut standby, _) = with_store("v1", &[]);
    let _ = standby.set_leader(false);
    assert!(standby.flush_store().is_empty());
}

#[test]
fn a_stored_baseline_is_known_before_the_first_reconcile() {
    let shard = |content: &str| {
        let rec = rolled_to(content).render(None);
        vec![(0, BTreeMap::from([("uid-web".to_string(), rec), ("uid-gone".to_string(), "{}".to_string())]))]
    };
    let (mut s, fx) = with_store("v1", &shard("v1"));
    assert!(reloads(&fx).is_empty(), "current: nothing");
    assert!(s.flush_store().is_empty(), "nothing new to write");
    assert!(s.store.as_ref().unwrap().shards.get("uid-gone").is_none(), "unknown workloads pruned");

    let (_, fx) = with_store("v2", &shard("v1"));
    assert_eq!(reloads(&fx), one("web", "v2"), "changed while down: rolled once, from the store");
}

#[test]
fn a_store_entry_the_workloads_own_record_covers_is_dropped() {
    let shard = vec![(0, BTreeMap::from([("uid-web".to_string(), rolled_to("v1").render(None))]))];
    let (mut s, _) = with_store("v2", &shard);
    assert!(s.store.as_ref().unwrap().shards.get("uid-web").is_some());
    // The reload wrote the record on the workload: the store entry is redundant.
    let mut web = deployment("ns", "web", &[], &rolled_to("v2"));
    web.uid = Some(Arc::from("uid-web"));
    let fx = s.handle(applied(web));
    assert!(reloads(&fx).is_empty(), "current by its own record: {:?}", reloads(&fx));
    assert!(s.store.as_ref().unwrap().shards.get("uid-web").is_none(), "dropped from memory");
    assert!(s.flush_store().is_empty(), "and from its shard only at the shard's next write");
}

#[test]
fn a_shard_deleted_during_a_watch_gap_is_written_again() {
    let (mut s, _) = with_store("v1", &[]);
    let written = s.flush_store().shard_writes().cloned().collect::<Vec<_>>();
    let store = StreamId { watched: Watched::BaselineStore, namespace: Some(Arc::from("d8-pod-reloader")) };
    let _ = s.handle(Msg::ShardApplied { index: 0, resource_version: "2".into(), data: written[0].data.clone() });
    // The watch re-lists and the shard is not there any more.
    let _ = s.handle(Msg::ListStarted(store.clone()));
    let _ = s.handle(Msg::ListDone(store));
    let again: Vec<_> = s.flush_store().shard_writes().cloned().collect();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].data, written[0].data);
    assert_eq!(again[0].resource_version, None, "created anew");
}
