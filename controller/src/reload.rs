//! Carrying out a reload: plan the template change and apply it the way the
//! kind's descriptor says (`KindSpec::apply`): a strategic-merge patch at the
//! template path (built-in kinds; for CronJobs the job template, so the next
//! run uses the new configuration without starting an unplanned run),
//! planned on the version the watch delivered and sent with its
//! resourceVersion as precondition (no read; the object is read only after a
//! 409 Conflict); a JSON merge patch of the template diff (custom resources
//! such as Argo Rollouts), or delete-and-create (Jobs, whose template is
//! immutable), both of which read the whole object first. One path per
//! method, none per kind.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use pod_reloader_core::WorkloadKey;
use pod_reloader_core::annotations::{AnnotationNames, PAUSED_AT};
use pod_reloader_core::kinds::{ApplyMethod, KindSpec};
use pod_reloader_core::patch::{ReloadItem, Strategy, TemplateChange, plan};
use pod_reloader_core::policy::RolloutStrategy;
use pod_reloader_core::record::{RECORD_ANNOTATION, Record, RecordKey, stated_source};
use serde_json::{Value, json};
use thiserror::Error;

use crate::alerts::Alerter;
use crate::events::{Events, reference};
use crate::followup::Followups;
use crate::messages::Batch;
use crate::metrics::Metrics;
use crate::scheduler::Execute;
use crate::watch::workload_api;
use pod_reloader_core::ResourceKey;
use pod_reloader_core::alert::{self, AlertFacts};

pub const FIELD_MANAGER: &str = "pod-reloader";

#[derive(Debug, Error)]
pub enum ReloadError {
    #[error("{0}")]
    Api(#[from] kube::Error),
    #[error("cannot read the workload: {0}")]
    Decode(String),
    #[error("timed out recreating the Job: the old one is still being deleted")]
    JobStillDeleting,
}

impl ReloadError {
    /// The `reason` label of `reloader_reload_errors_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            ReloadError::Api(kube::Error::Api(s)) => match s.code {
                409 => "conflict",
                403 => "forbidden",
                404 => "not_found",
                422 => "invalid",
                429 => "throttled",
                c if c >= 500 => "server_error",
                _ => "api",
            },
            ReloadError::Api(_) => "connection",
            ReloadError::Decode(_) => "decode",
            ReloadError::JobStillDeleting => "job_recreate",
        }
    }

    fn retryable(&self) -> bool {
        matches!(self.reason(), "conflict" | "throttled" | "server_error" | "connection" | "job_recreate")
    }
}

enum Outcome {
    /// The template changed: the workload rolls.
    Patched {
        uid: Option<String>,
        containers: Vec<String>,
        rolled: Vec<ResourceKey>,
    },
    /// Only the record changed (a baseline): nothing rolls.
    Recorded,
    AlreadyCurrent,
    Gone,
}

/// What a strategic-merge patch is planned on: the workload as the watch
/// delivered it (`messages::Batch::base`) or as read just now.
struct PlanBase {
    template: PodTemplateSpec,
    recorded: Arc<Record>,
    resource_version: Option<String>,
    uid: Option<String>,
    paused: bool,
}

pub struct Reloader {
    client: Client,
    strategy: Strategy,
    events: Events,
    metrics: Arc<Metrics>,
    alerter: Option<Alerter>,
    /// Seals the rolled-to record; `None` writes it unkeyed.
    record_key: Option<RecordKey>,
    /// What follows a template patch (OnDelete StatefulSets' pods, …).
    followups: Followups,
}

fn alert_facts(workload: &WorkloadKey, resource: &ResourceKey) -> AlertFacts {
    AlertFacts {
        resource: alert::AlertResource {
            kind: resource.kind.reloader_type().into(),
            name: resource.name.to_string(),
            namespace: resource.namespace.to_string(),
        },
        workload: alert::AlertWorkload {
            kind: workload.kind.as_str().into(),
            name: workload.name.to_string(),
            namespace: workload.namespace.to_string(),
        },
    }
}

fn now_unix() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now().round(jiff::Unit::Second).unwrap_or_else(|_| jiff::Timestamp::now()).to_string()
}

fn params() -> PatchParams {
    PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() }
}

fn post_params() -> PostParams {
    PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() }
}

/// `pause-period` on a kind that has it (a Deployment): pause it with the
/// reload and record when, so the resume can be scheduled from the object
/// (it survives restarts). `paused`: the Deployment is paused already.
fn pause_with_reload(spec: &KindSpec, paused: bool, batch: &Batch, body: &mut Value) {
    if spec.pause_period && batch.pause_period.is_some() && !paused {
        body["spec"]["paused"] = json!(true);
        body["metadata"]["annotations"][AnnotationNames::global().key(PAUSED_AT).stakater] = json!(now_rfc3339());
    }
}

/// The containers some items mark, for the event and log.
fn containers_of(items: &[ReloadItem]) -> Vec<String> {
    let mut c: Vec<String> = items.iter().map(|i| i.container.clone()).collect();
    c.sort();
    c.dedup();
    c
}

fn rolled(items: &[ReloadItem]) -> Vec<ResourceKey> {
    items.iter().map(|i| i.resource.clone()).collect()
}

/// What a batch still has to do to a workload, measured against its record.
struct Pending {
    /// The items it has not rolled to yet.
    items: Vec<ReloadItem>,
    /// The record after this reload.
    record: Record,
    /// Whether what the record says changes (it is then written).
    changed: bool,
}

impl Pending {
    /// The annotations strategy keeps one resource in `last-reloaded-from`:
    /// when `change` replaces it, what it stated goes into the record, as it
    /// stood in for that resource's baseline (see `reconcile`) and would
    /// otherwise be lost with it.
    fn keep_replaced_source(
        &mut self,
        change: &TemplateChange,
        template: &PodTemplateSpec,
        namespace: &str,
        key: Option<&RecordKey>,
    ) {
        if change.last_reloaded_from.is_none() {
            return;
        }
        if let Some(((kind, name), h)) = stated_source(template, namespace) {
            self.changed |= self.record.set_if_absent(kind, &name, h, key);
        }
    }

    /// The record annotation's new value, if it changes. A record in the
    /// unkeyed form that says the same is left as it is: the keyed form is
    /// written only with a change (no write storm when a key is introduced).
    fn rendered(&self, key: Option<&RecordKey>) -> Option<String> {
        self.changed.then(|| self.record.render(key))
    }
}

/// Measured against the workload's record `old`: the items it has not
/// rolled to yet, and the record to write.
fn pending(batch: &Batch, old: &Record, key: Option<&RecordKey>) -> Pending {
    let mut new = old.clone();
    let mut changed = false;
    let mut items = Vec::new();
    for item in &batch.items {
        let (kind, name) = (item.resource.kind, item.resource.name.as_ref());
        match item.hash {
            Some(h) => {
                if !old.get(kind, name, key).is_some_and(|r| r.is(h, key)) {
                    items.push(item.clone());
                }
                changed |= new.set(kind, name, h, key);
            }
            None => {
                changed |= new.remove(kind, name);
                items.push(item.clone());
            }
        }
    }
    for (res, h) in &batch.baseline {
        changed |= new.set_if_absent(res.kind, &res.name, *h, key);
    }
    Pending { items, record: new, changed }
}

/// The record on an object's metadata.
fn record_of(meta: &kube::api::ObjectMeta) -> Record {
    meta.annotations.as_ref().map(Record::parse).unwrap_or_default()
}

/// The JSON merge patch (RFC 7386) that turns `before` into `after`:
/// changed and new keys, `null` for removed ones, objects recursed into,
/// anything else (arrays included) replaced whole.
fn merge_patch_diff(before: &Value, after: &Value) -> Value {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            let mut out = serde_json::Map::new();
            for (k, av) in a {
                match b.get(k) {
                    Some(bv) if bv == av => {}
                    Some(bv) if bv.is_object() && av.is_object() => {
                        out.insert(k.clone(), merge_patch_diff(bv, av));
                    }
                    _ => {
                        out.insert(k.clone(), av.clone());
                    }
                }
            }
            for k in b.keys().filter(|k| !a.contains_key(*k)) {
                out.insert(k.clone(), Value::Null);
            }
            Value::Object(out)
        }
        (_, a) => a.clone(),
    }
}

/// `metadata` of a patch: the record (if it changes) and the resourceVersion
/// the plan was made on, so a concurrent writer (another replica during a
/// handover, a user, a stale watch) makes this patch fail with a conflict
/// and be re-planned, never applied twice.
fn patch_metadata(resource_version: Option<String>, record: Option<&String>) -> Value {
    let mut meta = json!({"resourceVersion": resource_version, "annotations": {}});
    if let Some(r) = record {
        meta["annotations"][RECORD_ANNOTATION] = json!(r);
    }
    meta
}

impl Reloader {
    pub fn new(client: Client, strategy: Strategy, metrics: Arc<Metrics>, alerter: Option<Alerter>) -> Self {
        Reloader {
            events: Events::new(client.clone()),
            client,
            strategy,
            metrics,
            alerter,
            record_key: None,
            followups: Followups::default(),
        }
    }

    pub fn with_followups(mut self, followups: Followups) -> Self {
        self.followups = followups;
        self
    }

    /// Seals the record under `key` (see `pod_reloader_core::record`).
    pub fn with_record_key(mut self, key: Option<RecordKey>) -> Self {
        self.record_key = key;
        self
    }

    /// Reloads one workload, retrying transient failures; records the outcome
    /// in metrics, logs and an Event.
    pub async fn reload(&self, batch: Batch) {
        let key = &batch.workload;
        let resources: Vec<String> = batch.items.iter().map(|i| i.resource.to_string()).collect();
        let mut delays = crate::backoff::reload();
        for attempt in 1.. {
            match self.try_reload(&batch, attempt == 1).await {
                Ok(Outcome::Patched { uid, containers, rolled }) => {
                    let secs = batch.first_seen.elapsed().as_secs_f64();
                    self.metrics.reloaded(key, key.kind.as_str(), secs);
                    let rolled_text: Vec<String> = rolled.iter().map(ToString::to_string).collect();
                    tracing::info!(
                        kind = key.kind.as_str(), namespace = %key.namespace, name = %key.name,
                        resources = %rolled_text.join(", "), strategy = %self.strategy,
                        containers = %containers.join(","), latency_seconds = secs,
                        "reloaded"
                    );
                    let note = format!(
                        "Rolled because {} changed (strategy {}, container {})",
                        rolled_text.join(", "),
                        self.strategy,
                        containers.join(",")
                    );
                    self.events.publish(&reference(key, uid), false, "Reloaded", note).await;
                    if let Some(alerter) = &self.alerter {
                        for r in &rolled {
                            alerter.notify(alert_facts(key, r));
                        }
                    }
                    self.followups.patched(key).await;
                    return;
                }
                Ok(Outcome::Recorded) => {
                    tracing::debug!(kind = key.kind.as_str(), namespace = %key.namespace, name = %key.name, "recorded the hashes it runs");
                    return;
                }
                Ok(Outcome::AlreadyCurrent) => {
                    self.metrics.already_current(key.kind);
                    tracing::debug!(kind = key.kind.as_str(), namespace = %key.namespace, name = %key.name, "already carries the new hashes");
                    return;
                }
                Ok(Outcome::Gone) => {
                    self.metrics.skipped("workload_gone");
                    return;
                }
                Err(e)
                    if e.retryable()
                        && let Some(delay) = delays.next() =>
                {
                    tracing::debug!(kind = key.kind.as_str(), namespace = %key.namespace, name = %key.name, error = %e, attempt, "reload failed; retrying");
                    self.metrics.retried();
                    tokio::time::sleep(delay).await;
                }
                Err(e) => {
                    self.metrics.reload_failed(key, key.kind.as_str(), e.reason());
                    tracing::error!(
                        kind = key.kind.as_str(), namespace = %key.namespace, name = %key.name,
                        resources = %resources.join(", "), reason = e.reason(), error = %e,
                        "reload failed"
                    );
                    let note = if resources.is_empty() {
                        format!("Cannot record the ConfigMap/Secret hashes it runs: {e}")
                    } else {
                        format!("Reload for {} failed: {e}", resources.join(", "))
                    };
                    self.events.publish(&reference(key, None), true, "ReloadFail", note).await;
                    return;
                }
            }
        }
    }

    /// `watched`: a strategic merge may patch the workload version the watch
    /// delivered (first attempt); later attempts read the object.
    async fn try_reload(&self, batch: &Batch, watched: bool) -> Result<Outcome, ReloadError> {
        let now = now_unix();
        let spec = batch.workload.kind.spec();
        match spec.apply {
            ApplyMethod::StrategicMerge => self.strategic_merge(spec, batch, now, watched).await,
            ApplyMethod::MergePatchDiff => self.merge_patch_diff(spec, batch, now).await,
            ApplyMethod::Recreate => self.recreate_job(batch, now).await,
        }
    }

    /// Plans the template change and sends it as a strategic-merge patch at
    /// the kind's template path (with the pause of `pause-period` where the
    /// kind has it). Planned first on the version the watch delivered (the
    /// batch's `base`), without reading the object: one request. Only when
    /// that version is no longer current (409 Conflict: a status write the
    /// watch has not delivered yet, another writer) is the object read and
    /// the change planned again on it.
    async fn strategic_merge(
        &self,
        spec: &KindSpec,
        batch: &Batch,
        now: i64,
        watched: bool,
    ) -> Result<Outcome, ReloadError> {
        let key = &batch.workload;
        let api = workload_api(&self.client, key.kind, Some(&key.namespace));
        if watched && let Some(base) = &batch.base {
            let on = PlanBase {
                template: base.template.template(),
                recorded: base.recorded.clone(),
                resource_version: Some(base.resource_version.to_string()),
                uid: base.uid.as_deref().map(String::from),
                paused: base.paused,
            };
            match self.patch_template(&api, spec, batch, now, on).await {
                Err(ReloadError::Api(kube::Error::Api(s))) if s.code == 409 => {
                    self.metrics.retried();
                    tracing::debug!(kind = key.kind.as_str(), namespace = %key.namespace, name = %key.name, "the watched version is no longer current; reading the workload");
                }
                Err(ReloadError::Api(kube::Error::Api(s))) if s.code == 404 => return Ok(Outcome::Gone),
                done => return done,
            }
        }
        let Some(obj) = api.get_opt(&key.name).await? else {
            return Ok(Outcome::Gone);
        };
        let template = spec.template(&obj.data).ok_or_else(|| ReloadError::Decode("no pod template".into()))?;
        let on = PlanBase {
            template,
            recorded: Arc::new(record_of(&obj.metadata)),
            resource_version: obj.metadata.resource_version.clone(),
            uid: obj.metadata.uid.clone(),
            paused: obj.data.pointer("/spec/paused").and_then(Value::as_bool).unwrap_or(false),
        };
        self.patch_template(&api, spec, batch, now, on).await
    }

    /// The strategic-merge patch planned on `on`, with its resourceVersion as
    /// the precondition.
    async fn patch_template(
        &self,
        api: &Api<DynamicObject>,
        spec: &KindSpec,
        batch: &Batch,
        now: i64,
        on: PlanBase,
    ) -> Result<Outcome, ReloadError> {
        let name = &batch.workload.name;
        let mut p = pending(batch, &on.recorded, self.record_key.as_ref());
        let change = plan(self.strategy, &on.template, &p.items, now);
        p.keep_replaced_source(&change, &on.template, &batch.workload.namespace, self.record_key.as_ref());
        let record = p.rendered(self.record_key.as_ref());
        let metadata = patch_metadata(on.resource_version, record.as_ref());
        if change.is_empty() {
            if record.is_none() {
                return Ok(Outcome::AlreadyCurrent);
            }
            api.patch(name, &params(), &Patch::Merge(json!({"metadata": metadata}))).await?;
            return Ok(Outcome::Recorded);
        }
        let mut body = spec.at_template_path(change.strategic_merge_fragment());
        body["metadata"] = metadata;
        pause_with_reload(spec, on.paused, batch, &mut body);
        api.patch(name, &params(), &Patch::Strategic(body)).await?;
        Ok(Outcome::Patched { uid: on.uid, containers: containers_of(&p.items), rolled: rolled(&p.items) })
    }

    /// A Job's pod template is immutable: delete it and create it again with
    /// the new template (Reloader does the same), without the labels and
    /// selector the Job controller generated for the old one. Reads the Job
    /// first: its successor is built from the whole object, which the index
    /// does not keep.
    async fn recreate_job(&self, batch: &Batch, now: i64) -> Result<Outcome, ReloadError> {
        let key = &batch.workload;
        let api: Api<Job> = Api::namespaced(self.client.clone(), &key.namespace);
        let Some(old) = api.get_opt(&key.name).await? else {
            return Ok(Outcome::Gone);
        };
        let Some(spec) = old.spec.clone() else {
            return Err(ReloadError::Decode("no spec".into()));
        };
        let mut p = pending(batch, &record_of(&old.metadata), self.record_key.as_ref());
        let change = plan(self.strategy, &spec.template, &p.items, now);
        p.keep_replaced_source(&change, &spec.template, &key.namespace, self.record_key.as_ref());
        let (items, record) = (&p.items, p.rendered(self.record_key.as_ref()));
        if change.is_empty() {
            if record.is_none() {
                return Ok(Outcome::AlreadyCurrent);
            }
            let metadata = patch_metadata(old.metadata.resource_version.clone(), record.as_ref());
            api.patch(&key.name, &params(), &Patch::Merge(json!({"metadata": metadata}))).await?;
            return Ok(Outcome::Recorded);
        }
        let generated = |k: &String| k == "controller-uid" || k == "job-name" || k.starts_with("batch.kubernetes.io/");
        let mut new = Job::default();
        new.metadata.name = old.metadata.name.clone();
        new.metadata.namespace = old.metadata.namespace.clone();
        new.metadata.labels = old.metadata.labels.clone().map(|mut l| {
            l.retain(|k, _| !generated(k));
            l
        });
        let mut annotations = old.metadata.annotations.clone().unwrap_or_default();
        if let Some(r) = record {
            annotations.insert(RECORD_ANNOTATION.into(), r);
        }
        new.metadata.annotations = Some(annotations);
        new.metadata.owner_references = old.metadata.owner_references.clone();
        let mut new_spec = spec;
        new_spec.selector = None;
        new_spec.manual_selector = None;
        if let Some(labels) = new_spec.template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            labels.retain(|k, _| !generated(k));
        }
        change.apply_to(&mut new_spec.template);
        new.spec = Some(new_spec);

        // Delete exactly the Job that was read (uid precondition), then create its successor.
        let mut delete = DeleteParams::background();
        delete.preconditions = Some(kube::api::Preconditions { uid: old.metadata.uid.clone(), resource_version: None });
        api.delete(&key.name, &delete).await?;
        let mut waits = crate::backoff::job_recreate();
        loop {
            match api.create(&post_params(), &new).await {
                Ok(created) => {
                    return Ok(Outcome::Patched {
                        uid: created.metadata.uid,
                        containers: containers_of(items),
                        rolled: rolled(items),
                    });
                }
                Err(kube::Error::Api(s))
                    if s.code == 409
                        && let Some(wait) = waits.next() =>
                {
                    tokio::time::sleep(wait).await
                }
                Err(kube::Error::Api(s)) if s.code == 409 => return Err(ReloadError::JobStillDeleting),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Custom resources (Argo Rollouts, `customWorkloads`): the pod template
    /// is changed with a JSON merge patch of exactly what changed (no
    /// strategic merge for custom resources), carrying the resourceVersion
    /// that was read, so a concurrent writer makes it a 409 that is retried.
    /// A patch, not an update: the RBAC grants no `update`. On a kind with
    /// `restartAt` (a Rollout), `rollout-strategy: restart` and a
    /// `workloadRef` set `spec.restartAt` instead. Reads the object first: the
    /// diff replaces arrays (containers, env) whole, so it is computed from
    /// the whole template, which the index does not keep.
    async fn merge_patch_diff(&self, spec: &KindSpec, batch: &Batch, now: i64) -> Result<Outcome, ReloadError> {
        let key = &batch.workload;
        let api = workload_api(&self.client, key.kind, Some(&key.namespace));
        let Some(obj) = api.get_opt(&key.name).await? else {
            return Ok(Outcome::Gone);
        };
        let uid = obj.metadata.uid.clone();
        let mut p = pending(batch, &record_of(&obj.metadata), self.record_key.as_ref());
        let record = p.rendered(self.record_key.as_ref());
        let items = p.items.clone();
        let metadata = patch_metadata(obj.metadata.resource_version.clone(), record.as_ref());
        if items.is_empty() {
            if record.is_none() {
                return Ok(Outcome::AlreadyCurrent);
            }
            api.patch(&key.name, &params(), &Patch::Merge(json!({"metadata": metadata}))).await?;
            return Ok(Outcome::Recorded);
        }
        let containers = containers_of(&items);
        // A Rollout with a workloadRef has no template to patch: restartAt
        // (docs/BEHAVIOUR.md, Argo Rollouts with workloadRef).
        let restart = batch.rollout_strategy == RolloutStrategy::Restart || spec.workload_ref(&obj.data).is_some();
        if spec.restart_at && restart {
            let body = json!({"metadata": metadata, "spec": {"restartAt": now_rfc3339()}});
            api.patch(&key.name, &params(), &Patch::Merge(body)).await?;
            return Ok(Outcome::Patched { uid, containers, rolled: rolled(&items) });
        }
        let mut template = spec.template(&obj.data).ok_or_else(|| ReloadError::Decode("no pod template".into()))?;
        let change = plan(self.strategy, &template, &items, now);
        p.keep_replaced_source(&change, &template, &key.namespace, self.record_key.as_ref());
        let record = p.rendered(self.record_key.as_ref());
        let metadata = patch_metadata(obj.metadata.resource_version.clone(), record.as_ref());
        if change.is_empty() && record.is_none() {
            return Ok(Outcome::AlreadyCurrent);
        }
        let before = serde_json::to_value(&template).map_err(|e| ReloadError::Decode(e.to_string()))?;
        change.apply_to(&mut template);
        let after = serde_json::to_value(&template).map_err(|e| ReloadError::Decode(e.to_string()))?;
        let mut body = spec.at_template_path(merge_patch_diff(&before, &after));
        body["metadata"] = metadata;
        api.patch(&key.name, &params(), &Patch::Merge(body)).await?;
        if change.is_empty() {
            return Ok(Outcome::Recorded);
        }
        Ok(Outcome::Patched { uid, containers, rolled: rolled(&items) })
    }

    /// Publishes a Warning event for malformed annotations on a workload.
    pub async fn warn_invalid(&self, key: &WorkloadKey, messages: &[String]) {
        let note = format!("Malformed pod-reloader annotation: {}", messages.join("; "));
        self.events.publish(&reference(key, None), true, "InvalidAnnotation", note).await;
    }

    /// Resumes a Deployment paused by a reload once its pause period is over.
    /// Scheduled from the watched object, so a controller restart loses nothing.
    pub async fn resume_after(
        &self,
        key: WorkloadKey,
        paused_at_key: &'static str,
        period: Duration,
        paused_at: String,
    ) {
        let due = match paused_at.parse::<jiff::Timestamp>() {
            Ok(t) => t.checked_add(jiff::SignedDuration::try_from(period).unwrap_or_default()).unwrap_or(t),
            Err(e) => {
                tracing::warn!(kind = key.kind.as_str(), namespace = %key.namespace, name = %key.name, annotation = paused_at_key, value = %paused_at, error = %e, "paused-at is not an RFC 3339 time; resuming now");
                jiff::Timestamp::now()
            }
        };
        let wait = jiff::Timestamp::now().duration_until(due);
        if wait.is_positive() {
            tokio::time::sleep(Duration::try_from(wait).unwrap_or_default()).await;
        }
        let api = workload_api(&self.client, key.kind, Some(&key.namespace));
        let current = match api.get_opt(&key.name).await {
            Ok(Some(d)) => d,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(kind = key.kind.as_str(), namespace = %key.namespace, name = %key.name, error = %e, "cannot read Deployment to resume it");
                return;
            }
        };
        let still_ours = current.metadata.annotations.as_ref().and_then(|a| a.get(paused_at_key)) == Some(&paused_at);
        if !still_ours || !current.data.pointer("/spec/paused").and_then(Value::as_bool).unwrap_or(false) {
            return;
        }
        let body = json!({"spec": {"paused": false}, "metadata": {"annotations": {paused_at_key: null}}});
        match api.patch(&key.name, &params(), &Patch::Merge(body)).await {
            Ok(_) => {
                tracing::info!(kind = key.kind.as_str(), namespace = %key.namespace, name = %key.name, "resumed after pause period")
            }
            Err(e) => {
                tracing::warn!(kind = key.kind.as_str(), namespace = %key.namespace, name = %key.name, error = %e, "cannot resume Deployment")
            }
        }
    }
}

/// The scheduler hands each coalesced batch to the reloader.
impl Execute for Reloader {
    fn execute(&self, batch: Batch) -> impl Future<Output = ()> + Send {
        self.reload(batch)
    }
}

#[cfg(test)]
mod merge_patch_diff_tests {
    use super::*;

    /// RFC 7386 applied, to check the diff against.
    fn apply(target: &Value, patch: &Value) -> Value {
        match (target, patch) {
            (t, Value::Object(p)) => {
                let mut out = t.as_object().cloned().unwrap_or_default();
                for (k, v) in p {
                    if v.is_null() {
                        out.remove(k);
                    } else {
                        let merged = apply(out.get(k).unwrap_or(&Value::Null), v);
                        out.insert(k.clone(), merged);
                    }
                }
                Value::Object(out)
            }
            (_, p) => p.clone(),
        }
    }

    #[test]
    fn diff_holds_only_the_change_and_applies_back() {
        let before = json!({"metadata": {"annotations": {"a": "1", "gone": "x"}, "labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "env": [{"name": "A", "value": "1"}]}]}});
        let after = json!({"metadata": {"annotations": {"a": "2"}, "labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "h"}]}]}});
        let diff = merge_patch_diff(&before, &after);
        assert_eq!(
            diff,
            json!({"metadata": {"annotations": {"a": "2", "gone": null}},
                   "spec": {"containers": after["spec"]["containers"].clone()}})
        );
        assert_eq!(apply(&before, &diff), after);
        assert_eq!(merge_patch_diff(&after, &after), json!({}));
    }
}

#[cfg(test)]
mod pending_tests {
    use super::*;
    use crate::messages::{ReloadRequest, Work};
    use pod_reloader_core::{ContentHash, ResourceKind};

    fn batch(resource: ResourceKey, hash: ContentHash) -> Batch {
        Batch::new(ReloadRequest {
            workload: WorkloadKey::new(pod_reloader_core::WorkloadKind::Deployment, "ns", "web"),
            work: Work::Reload(ReloadItem { resource, hash: Some(hash), container: "app".into() }),
            pause_period: None,
            rollout_strategy: RolloutStrategy::Rollout,
            seen: std::time::Instant::now(),
            base: None,
        })
    }

    /// A template whose `last-reloaded-from` says it runs ConfigMap `a` at `hash`.
    fn stating_a(hash: ContentHash) -> PodTemplateSpec {
        let last = format!(
            r#"{{"type":"CONFIGMAP","name":"a","namespace":"ns","hash":"{hash}","containerRefs":["app"],"observedAt":1}}"#
        );
        serde_json::from_value(json!({
            "metadata": {"annotations": {"reloader.stakater.com/last-reloaded-from": last}},
            "spec": {"containers": [{"name": "app"}]}
        }))
        .unwrap()
    }

    #[test]
    fn a_replaced_last_reloaded_from_is_kept_in_the_record() {
        let (a, b) = (ContentHash::of(b"a1"), ContentHash::of(b"b2"));
        let t = stating_a(a);
        let batch = batch(ResourceKey::new(ResourceKind::Secret, "ns", "b"), b);
        let mut p = pending(&batch, &Record::new(), None);
        let change = plan(Strategy::Annotations, &t, &p.items, 0);
        assert!(change.last_reloaded_from.is_some());
        p.keep_replaced_source(&change, &t, "ns", None);
        assert!(p.record.get(ResourceKind::ConfigMap, "a", None).is_some_and(|r| r.is(a, None)), "{:?}", p.record);
        assert!(p.record.get(ResourceKind::Secret, "b", None).is_some_and(|r| r.is(b, None)));

        // A record entry of its own wins; the env-vars strategy replaces nothing.
        let mut own = Record::new();
        own.set(ResourceKind::ConfigMap, "a", ContentHash::of(b"a0"), None);
        let mut p = pending(&batch, &own, None);
        p.keep_replaced_source(&change, &t, "ns", None);
        assert!(p.record.get(ResourceKind::ConfigMap, "a", None).is_some_and(|r| r.is(ContentHash::of(b"a0"), None)));
        let mut p = pending(&batch, &Record::new(), None);
        let env = plan(Strategy::EnvVars, &t, &p.items, 0);
        p.keep_replaced_source(&env, &t, "ns", None);
        assert!(p.record.get(ResourceKind::ConfigMap, "a", None).is_none());
    }
}
