//! Restarts for StatefulSets with `updateStrategy: OnDelete` (Reloader #1057).
//! Their controller gives the new template only to pods created after the
//! change, so the reload's template patch restarts nothing. After that patch
//! this module deletes the pods one at a time, highest ordinal first, each
//! only once the replacements above it run the new revision and are Ready
//! (the order is `pod_reloader_core::ondelete::next_step`).
//!
//! One task per StatefulSet: a newer reload of the same StatefulSet cancels
//! the running task and starts another (the template changed again, so the
//! target revision did). Every step is decided from the objects as they are
//! (pods' `controller-revision-hash` labels against `status.updateRevision`),
//! never from memory, and the StatefulSet carries [`PENDING`] while a
//! restart is unfinished: a controller that starts (or becomes leader) lists
//! the StatefulSets carrying it and carries on. Only the leader deletes pods.
//!
//! A StatefulSet opts out with `pod-reloader.deckhouse.io/on-delete-restart: "false"`
//! (the template is still patched, as for every StatefulSet); the
//! `statefulSetOnDeleteRestart` setting turns the whole module off.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::{Api, Client};
use pod_reloader_core::ondelete::{PodState, SetState, Step, next_step, ordinal_of};
use pod_reloader_core::{WorkloadKey, WorkloadKind};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::events::{Events, reference};

/// Set by a user to `"false"` on a StatefulSet: patch its template only.
pub const OPT_OUT: &str = "pod-reloader.deckhouse.io/on-delete-restart";
/// Written by the controller while a restart is unfinished: the StatefulSet's
/// `metadata.generation` of the reload that asked for it. Removed when done.
pub const PENDING: &str = "pod-reloader.deckhouse.io/on-delete-restart-pending";

/// Between two looks at the pods while waiting for one. A look is one GET
/// of the StatefulSet and one LIST of its pods (by its selector).
const POLL: Duration = Duration::from_secs(2);
/// After an API error: doubling from `POLL` up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Waits longer than this for one pod are logged at info (once per pod and step).
const LONG_WAIT: Duration = Duration::from_secs(300);

const FIELD_MANAGER: &str = "pod-reloader";

struct Running {
    id: u64,
    task: AbortHandle,
}

/// The restarts in progress, one per StatefulSet.
pub struct OnDeleteRestarts {
    client: Client,
    events: Events,
    running: Mutex<HashMap<WorkloadKey, Running>>,
    next_id: AtomicU64,
    leader: watch::Receiver<bool>,
}

fn params() -> PatchParams {
    PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() }
}

fn is_on_delete(s: &StatefulSet) -> bool {
    s.spec.as_ref().and_then(|s| s.update_strategy.as_ref()).and_then(|u| u.type_.as_deref()) == Some("OnDelete")
}

fn opted_out(s: &StatefulSet) -> bool {
    s.metadata.annotations.as_ref().and_then(|a| a.get(OPT_OUT)).is_some_and(|v| v == "false")
}

fn pending_generation(s: &StatefulSet) -> Option<i64> {
    s.metadata.annotations.as_ref()?.get(PENDING)?.parse().ok()
}

/// `spec.selector` as a label selector string (`matchLabels` and `matchExpressions`).
fn selector_string(sel: &LabelSelector) -> String {
    let mut parts: Vec<String> = sel.match_labels.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.as_deref().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            // Unknown operators are refused by the apiserver; match more, the owner check narrows.
            _ => continue,
        });
    }
    parts.join(",")
}

/// What the order of restarts needs from a pod.
fn pod_state(set_name: &str, pod: &Pod) -> Option<PodState> {
    let name = pod.metadata.name.clone()?;
    let ordinal = ordinal_of(set_name, &name)?;
    let status = pod.status.as_ref();
    let running = status.and_then(|s| s.phase.as_deref()) == Some("Running");
    let ready_since = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready" && c.status == "True"))
        .map(|c| c.last_transition_time.as_ref().map(|t| t.0.as_second()).unwrap_or(0))
        .filter(|_| running);
    Some(PodState {
        name,
        uid: pod.metadata.uid.clone(),
        ordinal,
        revision: pod.metadata.labels.as_ref().and_then(|l| l.get("controller-revision-hash")).cloned(),
        ready_since,
        terminating: pod.metadata.deletion_timestamp.is_some(),
    })
}

fn owned_by(pod: &Pod, uid: &str) -> bool {
    pod.metadata.owner_references.iter().flatten().any(|o| o.controller == Some(true) && o.uid == uid)
}

/// Why a task ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Done,
    Gone,
    NotOnDelete,
    /// The pending marker was removed or replaced by someone else.
    Superseded,
}

impl OnDeleteRestarts {
    pub fn new(client: Client, leader: watch::Receiver<bool>) -> Arc<Self> {
        Arc::new(OnDeleteRestarts {
            events: Events::new(client.clone()),
            client,
            running: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            leader,
        })
    }

    fn api(&self, key: &WorkloadKey) -> Api<StatefulSet> {
        Api::namespaced(self.client.clone(), &key.namespace)
    }

    /// After a reload patched the template of StatefulSet `key`: if it is an
    /// `OnDelete` one that did not opt out, mark it and start restarting its
    /// pods (replacing a restart in progress).
    pub async fn after_patch(self: &Arc<Self>, key: &WorkloadKey) {
        if key.kind != WorkloadKind::StatefulSet {
            return;
        }
        let api = self.api(key);
        let set = match api.get_opt(&key.name).await {
            Ok(Some(s)) => s,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(namespace = %key.namespace, name = %key.name, error = %e, "cannot read the StatefulSet to restart its OnDelete pods");
                return;
            }
        };
        if !is_on_delete(&set) {
            return;
        }
        if opted_out(&set) {
            tracing::info!(namespace = %key.namespace, name = %key.name, annotation = OPT_OUT, "OnDelete StatefulSet opted out: template patched, pods left to their owner");
            return;
        }
        let Some(generation) = set.metadata.generation else { return };
        let body = json!({"metadata": {"annotations": {PENDING: generation.to_string()}}});
        if let Err(e) = api.patch(&key.name, &params(), &Patch::Merge(body)).await {
            // Without the marker a restarted controller would not resume; the restart itself still runs.
            tracing::warn!(namespace = %key.namespace, name = %key.name, error = %e, "cannot mark the StatefulSet as restarting");
        }
        self.start(key.clone(), generation);
    }

    /// Starts (or restarts) the task of `key` towards `generation`.
    fn start(self: &Arc<Self>, key: WorkloadKey, generation: i64) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let this = Arc::clone(self);
        let task_key = key.clone();
        let mut running = self.running.lock().expect("restarts lock");
        if let Some(old) = running.remove(&key) {
            old.task.abort();
        }
        let task = tokio::spawn(async move {
            let end = this.drive(&task_key, generation).await;
            tracing::info!(namespace = %task_key.namespace, name = %task_key.name, end = ?end, "OnDelete restart ended");
            let mut running = this.running.lock().expect("restarts lock");
            if running.get(&task_key).is_some_and(|r| r.id == id) {
                running.remove(&task_key);
            }
        });
        running.insert(key, Running { id, task: task.abort_handle() });
    }

    /// Whether a restart of `key` is in progress (for tests and the resume scan).
    fn is_running(&self, key: &WorkloadKey) -> bool {
        self.running.lock().expect("restarts lock").get(key).is_some_and(|r| !r.task.is_finished())
    }

    fn abort_all(&self) {
        for (_, r) in self.running.lock().expect("restarts lock").drain() {
            r.task.abort();
        }
    }

    /// Follows leadership: on becoming leader (and at start, if leader),
    /// resumes the restarts the StatefulSets say are unfinished; on losing
    /// it, stops every task (the next leader resumes them).
    pub async fn run(self: Arc<Self>, namespaces: Vec<String>) {
        let mut leader = self.leader.clone();
        loop {
            if *leader.borrow_and_update() {
                self.resume(&namespaces).await;
            } else {
                self.abort_all();
            }
            if leader.changed().await.is_err() {
                self.abort_all();
                return;
            }
        }
    }

    /// Lists the StatefulSets (paged) and restarts those carrying [`PENDING`].
    async fn resume(self: &Arc<Self>, namespaces: &[String]) {
        let apis: Vec<Api<StatefulSet>> = if namespaces.is_empty() {
            vec![Api::all(self.client.clone())]
        } else {
            namespaces.iter().map(|n| Api::namespaced(self.client.clone(), n)).collect()
        };
        for api in apis {
            // Pages sized by bytes: StatefulSets are whole objects here.
            let mut params = ListParams::default().limit(crate::list_mode::PAGE_SIZE);
            loop {
                let page = match api.list(&params).await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot list StatefulSets to resume their OnDelete restarts");
                        break;
                    }
                };
                for set in &page.items {
                    let (Some(ns), Some(name), Some(generation)) =
                        (set.metadata.namespace.as_deref(), set.metadata.name.as_deref(), pending_generation(set))
                    else {
                        continue;
                    };
                    let key = WorkloadKey::new(WorkloadKind::StatefulSet, ns, name);
                    if !self.is_running(&key) {
                        tracing::info!(namespace = ns, name, generation, "resuming an unfinished OnDelete restart");
                        self.start(key, generation);
                    }
                }
                match page.metadata.continue_.filter(|c| !c.is_empty()) {
                    Some(c) => params = params.continue_token(&c),
                    None => break,
                }
            }
        }
    }

    /// Takes the StatefulSet to every pod at its update revision.
    async fn drive(&self, key: &WorkloadKey, generation: i64) -> End {
        let api = self.api(key);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        let mut backoff = POLL;
        let mut last_wait: Option<(Step, tokio::time::Instant)> = None;
        loop {
            match self.look(&api, &pods, key, generation).await {
                Ok(Look::End(end)) => {
                    if end == End::Done || end == End::NotOnDelete {
                        self.clear_marker(&api, key, generation).await;
                    }
                    return end;
                }
                Ok(Look::Wait(step)) => {
                    backoff = POLL;
                    tracing::debug!(namespace = %key.namespace, name = %key.name, step = ?step, "OnDelete restart waiting");
                    let now = tokio::time::Instant::now();
                    match &last_wait {
                        Some((s, since)) if *s == step => {
                            if now.duration_since(*since) > LONG_WAIT {
                                tracing::info!(namespace = %key.namespace, name = %key.name, step = ?step, waited_seconds = now.duration_since(*since).as_secs(), "OnDelete restart still waiting");
                                last_wait = Some((step, now));
                            }
                        }
                        _ => last_wait = Some((step, now)),
                    }
                    tokio::time::sleep(POLL).await;
                }
                Ok(Look::CatchingUp) => tokio::time::sleep(POLL / 2).await,
                Ok(Look::Deleted) => {
                    backoff = POLL;
                    last_wait = None;
                    tokio::time::sleep(POLL / 2).await;
                }
                Err(e) => {
                    tracing::warn!(namespace = %key.namespace, name = %key.name, error = %e, "OnDelete restart: API call failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// One look at the StatefulSet and its pods, and the step it calls for
    /// (a deletion is carried out here).
    async fn look(
        &self,
        api: &Api<StatefulSet>,
        pods: &Api<Pod>,
        key: &WorkloadKey,
        generation: i64,
    ) -> Result<Look, kube::Error> {
        let Some(set) = api.get_opt(&key.name).await? else {
            return Ok(Look::End(End::Gone));
        };
        if !is_on_delete(&set) {
            return Ok(Look::End(End::NotOnDelete));
        }
        if pending_generation(&set).is_some_and(|g| g != generation) {
            return Ok(Look::End(End::Superseded));
        }
        let status = set.status.as_ref();
        // The StatefulSet controller has not seen the reloaded template yet:
        // its updateRevision is still the old one.
        if status.and_then(|s| s.observed_generation).unwrap_or(0) < generation {
            return Ok(Look::CatchingUp);
        }
        let Some(update_revision) = status.and_then(|s| s.update_revision.clone()) else {
            return Ok(Look::CatchingUp);
        };
        let spec = set.spec.as_ref();
        let state = SetState {
            start_ordinal: spec.and_then(|s| s.ordinals.as_ref()).and_then(|o| o.start).unwrap_or(0).max(0) as u32,
            replicas: spec.and_then(|s| s.replicas).unwrap_or(1).max(0) as u32,
            update_revision,
            min_ready_seconds: spec.and_then(|s| s.min_ready_seconds).unwrap_or(0).into(),
        };
        let uid = set.metadata.uid.clone().unwrap_or_default();
        let selector = spec.map(|s| selector_string(&s.selector)).unwrap_or_default();
        let listed = pods.list(&ListParams::default().labels(&selector)).await?;
        let states: Vec<PodState> =
            listed.items.iter().filter(|p| owned_by(p, &uid)).filter_map(|p| pod_state(&key.name, p)).collect();
        let now = jiff::Timestamp::now().as_second();
        match next_step(&state, &states, now) {
            Step::Done => Ok(Look::End(End::Done)),
            Step::Delete { name, uid: pod_uid, revision } => {
                if !*self.leader.borrow() {
                    return Ok(Look::CatchingUp); // this task is about to be stopped
                }
                let pod_uid_for_event = pod_uid.clone();
                let params = DeleteParams {
                    preconditions: Some(Preconditions { uid: pod_uid, resource_version: None }),
                    ..Default::default()
                };
                match pods.delete(&name, &params).await {
                    Ok(_) => {}
                    // Gone already, or replaced meanwhile: look again.
                    Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => return Ok(Look::Deleted),
                    Err(e) => return Err(e),
                }
                let done =
                    states.iter().filter(|p| p.revision.as_deref() == Some(state.update_revision.as_str())).count();
                tracing::info!(
                    namespace = %key.namespace, name = %key.name, pod = %name,
                    from_revision = revision.as_deref().unwrap_or("none"), to_revision = %state.update_revision,
                    "deleted an OnDelete StatefulSet's pod to restart it with the reloaded template"
                );
                let note = format!(
                    "Deleted pod {name} (revision {}) so that it is recreated from the reloaded template \
                     (revision {}, updateStrategy OnDelete); {done} of {} pods already run it",
                    revision.as_deref().unwrap_or("none"),
                    state.update_revision,
                    state.replicas
                );
                // The pod as the related object: one Event per pod, not one series for the StatefulSet.
                let pod_ref = ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(name.clone()),
                    namespace: Some(key.namespace.to_string()),
                    uid: pod_uid_for_event,
                    ..Default::default()
                };
                let regarding = reference(key, set.metadata.uid.clone());
                self.events.publish_related(&regarding, Some(pod_ref), false, "OnDeleteRestart", note).await;
                Ok(Look::Deleted)
            }
            wait => Ok(Look::Wait(wait)),
        }
    }

    /// Removes [`PENDING`] if it still names `generation`.
    async fn clear_marker(&self, api: &Api<StatefulSet>, key: &WorkloadKey, generation: i64) {
        let current = match api.get_opt(&key.name).await {
            Ok(Some(s)) => s,
            _ => return,
        };
        if pending_generation(&current) != Some(generation) {
            return;
        }
        let body =
            json!({"metadata": {"resourceVersion": current.metadata.resource_version, "annotations": {PENDING: null}}});
        if let Err(e) = api.patch(&key.name, &params(), &Patch::Merge(body)).await {
            tracing::warn!(namespace = %key.namespace, name = %key.name, error = %e, "cannot clear the OnDelete restart marker");
        }
    }
}

/// The outcome of one look.
enum Look {
    End(End),
    /// A step of `next_step` that waits.
    Wait(Step),
    /// The StatefulSet controller has not computed the reloaded template's
    /// revision yet (or this replica is losing leadership): look again.
    CatchingUp,
    Deleted,
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    #[test]
    fn selectors_become_label_selector_strings() {
        let sel = LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["a".into(), "b".into()]),
                },
                LabelSelectorRequirement { key: "skip".into(), operator: "DoesNotExist".into(), values: None },
            ]),
        };
        assert_eq!(selector_string(&sel), "app=web,tier in (a,b),!skip");
    }

    #[test]
    fn pod_state_reads_revision_readiness_and_ordinal() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-3", "uid": "u", "labels": {"controller-revision-hash": "web-abc"}},
            "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:10Z"}]}
        }))
        .unwrap();
        let s = pod_state("web", &pod).unwrap();
        assert_eq!((s.ordinal, s.revision.as_deref(), s.terminating), (3, Some("web-abc"), false));
        assert_eq!(s.ready_since, Some(1_767_225_610));
        let pending: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-0"},
            "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        assert_eq!(pod_state("web", &pending).unwrap().ready_since, None, "Ready counts only when Running");
        let other: Pod = serde_json::from_value(json!({"metadata": {"name": "web-api-0"}})).unwrap();
        assert!(pod_state("web", &other).is_none());
    }
}
