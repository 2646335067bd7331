//! Kubernetes Events on workloads (`kubectl describe` shows them):
//! `Reloaded` (Normal), `ReloadFailed` and `InvalidAnnotation` (Warning).
//! Messages name the ConfigMap/Secret, never its data.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use pod_reloader_core::{WorkloadKey, WorkloadKind};

pub struct Events {
    recorder: Recorder,
}

/// apiVersion of each workload kind, for event references.
pub fn api_version(kind: WorkloadKind) -> &'static str {
    match kind {
        WorkloadKind::Deployment | WorkloadKind::StatefulSet | WorkloadKind::DaemonSet => "apps/v1",
        WorkloadKind::CronJob | WorkloadKind::Job => "batch/v1",
        WorkloadKind::Rollout => "argoproj.io/v1alpha1",
    }
}

pub fn reference(key: &WorkloadKey, uid: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some(api_version(key.kind).into()),
        kind: Some(key.kind.as_str().into()),
        name: Some(key.name.to_string()),
        namespace: Some(key.namespace.to_string()),
        uid,
        ..Default::default()
    }
}

impl Events {
    pub fn new(client: Client) -> Self {
        let instance = std::env::var("POD_NAME").ok();
        Events { recorder: Recorder::new(client, Reporter { controller: "pod-reloader".into(), instance }) }
    }

    pub async fn publish(&self, regarding: &ObjectReference, warning: bool, reason: &str, note: String) {
        let event = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.into(),
            note: Some(note),
            action: "Reload".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, regarding).await {
            tracing::warn!(
                kind = regarding.kind.as_deref().unwrap_or_default(),
                namespace = regarding.namespace.as_deref().unwrap_or_default(),
                name = regarding.name.as_deref().unwrap_or_default(),
                error = %e,
                "cannot publish event"
            );
        }
    }
}
