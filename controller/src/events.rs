//! Kubernetes Events on workloads (`kubectl describe` shows them):
//! `Reloaded` (Normal), `ReloadFail` and `InvalidAnnotation` (Warning).
//! Messages name the ConfigMap/Secret, never its data.
//!
//! The apiserver refuses an `events.k8s.io/v1` Event whose note is over
//! 1 KiB, so notes are cut to fit (values quoted in them are cut already,
//! see `pod_reloader_core::quote`; several of them may still add up).

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use pod_reloader_core::WorkloadKey;

pub struct Events {
    recorder: Recorder,
}

pub fn reference(key: &WorkloadKey, uid: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some(key.kind.spec().api_version()),
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
        self.publish_related(regarding, None, warning, reason, note).await
    }

    /// An Event about `regarding` that names a second object (`related`):
    /// kube's recorder folds repeated Events into one series by reason and
    /// objects, so Events about different related objects stay apart.
    pub async fn publish_related(
        &self,
        regarding: &ObjectReference,
        related: Option<ObjectReference>,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        let event = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.into(),
            note: Some(bounded_note(note)),
            action: "Reload".into(),
            secondary: related,
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

/// The apiserver's limit on an Event note (`events.k8s.io/v1`), in bytes.
pub const MAX_NOTE_BYTES: usize = 1024;

/// `note`, cut at a character boundary to fit [`MAX_NOTE_BYTES`] with a marker.
fn bounded_note(mut note: String) -> String {
    const MARKER: &str = " …(cut)";
    if note.len() <= MAX_NOTE_BYTES {
        return note;
    }
    let mut end = MAX_NOTE_BYTES - MARKER.len();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    note.truncate(end);
    note.push_str(MARKER);
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_fit_the_apiserver_limit() {
        assert_eq!(bounded_note("short".into()), "short");
        let exact = "x".repeat(MAX_NOTE_BYTES);
        assert_eq!(bounded_note(exact.clone()), exact);
        let long = bounded_note("é".repeat(MAX_NOTE_BYTES));
        assert!(long.len() <= MAX_NOTE_BYTES, "{}", long.len());
        assert!(long.ends_with(" …(cut)"));
        assert!(long.starts_with("éé"));
    }
}
