//! Argo Rollouts with `spec.workloadRef` (Reloader #1090): such a Rollout
//! has no template of its own; Argo runs the template of the Deployment it
//! names (usually scaled to 0). Its watch stream therefore also watches
//! Deployments and gives each such Rollout the references of its
//! Deployment's template, again whenever that template changes. The reload
//! sets the Rollout's `spec.restartAt` (docs/BEHAVIOUR.md says why).
//!
//! What is kept: for each Deployment some Rollout references, its pod
//! template (as JSON) and the annotations of the Rollouts referencing it (the
//! policy and the record live there). Nothing for other Deployments: their
//! events are dropped as they come. Bounded by the number of Rollouts with a
//! `workloadRef`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use kube::Client;
use kube::api::DynamicObject;
use kube::runtime::watcher::{self, Event};
use pod_reloader_core::{KindSpec, WorkloadKind};
use serde_json::{Value, json};
use tokio::sync::mpsc::Sender;

use crate::list_mode;
use crate::messages::{Msg, StreamId, Watched};
use crate::watch::{Reduce, Workloads, workload_api};
use crate::watch_health::noting_recovery;

type Annotations = BTreeMap<String, String>;

/// The Deployments referenced by Rollouts of one scope, by `namespace/name`.
#[derive(Default)]
struct Referenced {
    deployments: HashMap<(Arc<str>, String), Target>,
    /// Rollout `namespace/name` → the Deployment it references.
    rollouts: HashMap<(Arc<str>, String), String>,
}

#[derive(Default)]
struct Target {
    /// The Deployment's pod template; `None` until read, `Some(Null)` when it does not exist.
    template: Option<Value>,
    /// The referencing Rollouts and their annotations.
    rollouts: BTreeMap<String, Annotations>,
}

impl Referenced {
    /// Records that Rollout `ns/name` references Deployment `ns/deployment`
    /// (or nothing), dropping what an earlier reference kept.
    fn follow(&mut self, ns: &Arc<str>, name: &str, deployment: Option<&str>, annotations: Annotations) {
        let key = (ns.clone(), name.to_string());
        if let Some(old) = self.rollouts.remove(&key) {
            let dkey = (ns.clone(), old);
            if let Some(t) = self.deployments.get_mut(&dkey) {
                t.rollouts.remove(name);
                if t.rollouts.is_empty() {
                    self.deployments.remove(&dkey);
                }
            }
        }
        if let Some(d) = deployment {
            self.rollouts.insert(key, d.to_string());
            self.deployments
                .entry((ns.clone(), d.to_string()))
                .or_default()
                .rollouts
                .insert(name.to_string(), annotations);
        }
    }
}

/// The Rollout as the generic reducer sees it: its own metadata, the
/// referenced Deployment's template at its template path.
fn with_template(mut rollout: DynamicObject, spec: &KindSpec, template: &Value) -> DynamicObject {
    if !template.is_null() {
        spec.put_template(&mut rollout.data, template.clone());
    }
    rollout
}

/// A Deployment's template, read once when a Rollout references a Deployment
/// the stream has not seen yet (its events may come later or not at all).
async fn read_template(client: &Client, ns: &str, name: &str) -> Value {
    let api = workload_api(client, WorkloadKind::Deployment, Some(ns));
    match api.get_opt(name).await {
        Ok(Some(mut d)) => deployment_template(&mut d),
        Ok(None) => Value::Null,
        Err(e) => {
            tracing::warn!(namespace = ns, name, error = %e, "cannot read the Deployment a Rollout references");
            Value::Null
        }
    }
}

fn deployment_template(d: &mut DynamicObject) -> Value {
    d.data.pointer_mut("/spec/template").map(Value::take).unwrap_or(Value::Null)
}

enum Side {
    Own(Result<Event<DynamicObject>, watcher::Error>),
    Deployment(Result<Event<DynamicObject>, watcher::Error>),
}

/// Watches a kind with `workloadRef` (Argo Rollouts) in one scope, with the
/// Deployments of the scope beside it.
pub async fn workloads(client: Client, kind: WorkloadKind, namespace: Option<Arc<str>>, tx: Sender<Msg>) {
    let spec = kind.spec();
    let id = StreamId { watched: Watched::Workload(kind), namespace: namespace.clone() };
    let config = watcher::Config::default();
    let own = noting_recovery(
        list_mode::watch(workload_api(&client, kind, namespace.as_deref()), config.clone()),
        tx.clone(),
        id.clone(),
    )
    .map(Side::Own);
    let deployments = list_mode::watch(workload_api(&client, WorkloadKind::Deployment, namespace.as_deref()), config)
        .map(Side::Deployment);
    let mut events = futures::stream::select(own.boxed(), deployments.boxed());
    let mut reduce = Workloads::new(kind);
    let mut referenced = Referenced::default();
    while let Some(event) = events.next().await {
        let msgs: Vec<Msg> = match event {
            Side::Own(Ok(Event::Init)) => {
                reduce.list_started();
                vec![Msg::ListStarted(id.clone())]
            }
            Side::Own(Ok(Event::InitDone)) => {
                reduce.list_done();
                vec![Msg::ListDone(id.clone())]
            }
            Side::Own(Ok(Event::InitApply(obj) | Event::Apply(obj))) => {
                let ns: Arc<str> = obj.metadata.namespace.clone().unwrap_or_default().into();
                let name = obj.metadata.name.clone().unwrap_or_default();
                let deployment = spec.workload_ref(&obj.data).map(str::to_string);
                let annotations = obj.metadata.annotations.clone().unwrap_or_default();
                referenced.follow(&ns, &name, deployment.as_deref(), annotations);
                let obj = match &deployment {
                    Some(d) => {
                        let key = (ns.clone(), d.clone());
                        let known = referenced.deployments.get(&key).and_then(|t| t.template.clone());
                        let template = match known {
                            Some(t) => t,
                            None => read_template(&client, &ns, d).await,
                        };
                        let obj = with_template(obj, spec, &template);
                        if let Some(t) = referenced.deployments.get_mut(&key) {
                            t.template = Some(template);
                        }
                        obj
                    }
                    None => obj,
                };
                reduce.applied(obj).into_iter().collect()
            }
            Side::Own(Ok(Event::Delete(obj))) => {
                let ns: Arc<str> = obj.metadata.namespace.clone().unwrap_or_default().into();
                referenced.follow(&ns, &obj.metadata.name.clone().unwrap_or_default(), None, Annotations::new());
                reduce.deleted(obj).into_iter().collect()
            }
            Side::Own(Err(e)) => vec![Msg::StreamFailed(id.clone(), e.to_string())],
            Side::Deployment(Ok(Event::InitApply(mut d) | Event::Apply(mut d))) => {
                let template = deployment_template(&mut d);
                changed(&mut referenced, &mut reduce, spec, d, template)
            }
            Side::Deployment(Ok(Event::Delete(d))) => changed(&mut referenced, &mut reduce, spec, d, Value::Null),
            Side::Deployment(Ok(Event::Init | Event::InitDone)) => Vec::new(),
            Side::Deployment(Err(e)) => {
                tracing::warn!(stream = %id, error = %e, "watch of the Deployments Rollouts reference failed; retrying");
                Vec::new()
            }
        };
        for msg in msgs {
            if tx.send(msg).await.is_err() {
                return;
            }
        }
    }
}

/// A referenced Deployment changed (or is gone: `template` null): each
/// Rollout referencing it is indexed again with the new template.
fn changed(
    referenced: &mut Referenced,
    reduce: &mut Workloads,
    spec: &KindSpec,
    d: DynamicObject,
    template: Value,
) -> Vec<Msg> {
    let ns: Arc<str> = d.metadata.namespace.clone().unwrap_or_default().into();
    let Some(target) = referenced.deployments.get_mut(&(ns.clone(), d.metadata.name.clone().unwrap_or_default()))
    else {
        return Vec::new();
    };
    if target.template.as_ref() == Some(&template) {
        return Vec::new();
    }
    target.template = Some(template.clone());
    let mut msgs = Vec::new();
    for (name, annotations) in &target.rollouts {
        let rollout: DynamicObject = match serde_json::from_value(json!({
            "apiVersion": spec.api_version(), "kind": spec.kind,
            "metadata": {"name": name, "namespace": &*ns, "annotations": annotations},
        })) {
            Ok(o) => o,
            Err(_) => continue,
        };
        msgs.extend(reduce.applied(with_template(rollout, spec, &template)));
    }
    msgs
}
