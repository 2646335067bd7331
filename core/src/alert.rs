//! Alert payloads, as Reloader sends them after a reload (`ALERT_ON_RELOAD`):
//! the message text and the body each sink expects. The text itself comes
//! from a handlebars template in the controller; [`DEFAULT_TEMPLATE`]
//! reads like Reloader's message.

use serde::Serialize;
use serde_json::json;

use crate::settings::AlertSink;

/// Reloader's message, as a handlebars template over [`AlertFacts`].
pub const DEFAULT_TEMPLATE: &str = "Reloader detected changes in *{{resource.name}}* of type *{{resource.type}}* \
in namespace *{{resource.namespace}}*. Hence reloaded *{{workload.name}}* of type *{{workload.kind}}* \
in namespace *{{workload.namespace}}*";

/// What a template may use. Names only: no data, no hashes of Secrets.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AlertFacts {
    pub resource: AlertResource,
    pub workload: AlertWorkload,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AlertResource {
    /// `CONFIGMAP` or `SECRET`, as in Reloader's message.
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub namespace: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AlertWorkload {
    pub kind: String,
    pub name: String,
    pub namespace: String,
}

/// Prefixes `additionalInfo` the way Reloader does (`"<info> : <message>"`).
pub fn with_additional_info(additional_info: &str, message: &str) -> String {
    if additional_info.is_empty() { message.to_string() } else { format!("{additional_info} : {message}") }
}

/// The request body and content type for a sink.
pub fn payload(sink: AlertSink, message: &str) -> (&'static str, Vec<u8>) {
    match sink {
        AlertSink::Slack => (
            "application/json",
            json!({"attachments": [{"color": "good", "author_name": "Reloader", "text": message}]})
                .to_string()
                .into_bytes(),
        ),
        AlertSink::Teams | AlertSink::GChat => ("application/json", json!({"text": message}).to_string().into_bytes()),
        // The raw webhook gets plain text without Slack's *bold* markers.
        AlertSink::Webhook => ("text/plain", message.replace('*', "").into_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_per_sink() {
        let (ct, body) = payload(AlertSink::Slack, "hi *x*");
        assert_eq!(ct, "application/json");
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"attachments":[{"author_name":"Reloader","color":"good","text":"hi *x*"}]}"#
        );
        assert_eq!(payload(AlertSink::Teams, "m").1, br#"{"text":"m"}"#);
        assert_eq!(payload(AlertSink::GChat, "m").1, br#"{"text":"m"}"#);
        assert_eq!(payload(AlertSink::Webhook, "a *b*"), ("text/plain", b"a b".to_vec()));
    }

    #[test]
    fn additional_info_prefix() {
        assert_eq!(with_additional_info("", "m"), "m");
        assert_eq!(with_additional_info("prod", "m"), "prod : m");
    }
}
