//! How the watches read the objects that exist when they start (the
//! initial list, and every re-list after a desync), so that memory stays
//! bounded by one object rather than by a page of them.
//!
//! The preferred way is the apiserver's streaming list (a watch with
//! `sendInitialEvents=true`, the WatchList feature, on by default since
//! Kubernetes 1.32): the objects arrive one watch event at a time, each is
//! hashed and dropped as it is decoded, and the end of the list is a
//! bookmark. An apiserver that refuses it (older than 1.27, or the WatchList
//! feature gate turned off) answers the first watch with 422 Invalid naming
//! `sendInitialEvents` (or, before 1.27, `resourceVersionMatch`); the stream
//! then logs once and falls back to paged lists with pages sized by bytes
//! ([`PAGE_SIZE`]), and every stream started afterwards begins paged.

use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use futures::stream::BoxStream;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

/// The most list data one page may carry.
pub const PAGE_BUDGET_BYTES: u32 = 8 << 20;

/// The largest object the apiserver can hand out, as JSON. etcd refuses a
/// write above its request limit (`--max-request-bytes`, 1.5 MiB by
/// default), and the apiserver stores objects as protobuf, where a Secret's
/// data is raw bytes; the JSON a list returns carries that data in base64
/// (4/3 of it), so one stored object reads back as at most about 2 MiB.
pub const MAX_OBJECT_JSON_BYTES: u32 = 2 << 20;

/// Objects per page of a paged list: the budget over the largest object
/// (8 MiB / 2 MiB = 4). A page is read whole, and its objects are decoded
/// while the text is still held, so a page costs about twice its size at
/// worst (16 MiB), whatever the objects are. With small objects this asks
/// for more pages than needed; it only applies where streaming lists are
/// refused.
pub const PAGE_SIZE: u32 = PAGE_BUDGET_BYTES / MAX_OBJECT_JSON_BYTES;

/// Set once an apiserver refused a streaming list, or by the hidden
/// `--initial-list=paged` flag (tests of the fallback).
static PAGED: AtomicBool = AtomicBool::new(false);

/// Makes every stream started from now on use paged lists.
pub fn force_paged() {
    PAGED.store(true, Ordering::Relaxed);
}

fn paged() -> bool {
    PAGED.load(Ordering::Relaxed)
}

/// Whether a watcher error is the apiserver refusing the streaming list's
/// parameters (rather than a transient failure worth retrying as is).
pub fn refuses_streaming(err: &watcher::Error) -> bool {
    let watcher::Error::WatchStartFailed(kube::Error::Api(status)) = err else {
        return false;
    };
    (status.code == 422 || status.code == 400)
        && ["sendInitialEvents", "resourceVersionMatch"].iter().any(|field| {
            status.message.contains(field)
                || status.details.as_ref().is_some_and(|d| d.causes.iter().any(|c| c.field == *field))
        })
}

fn start<K>(api: &Api<K>, config: &watcher::Config, streaming: bool) -> BoxStream<'static, watcher::Result<Event<K>>>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let config = if streaming { config.clone().streaming_lists() } else { config.clone().page_size(PAGE_SIZE) };
    watcher::watcher(api.clone(), config).backoff(crate::backoff::watch()).boxed()
}

/// A watcher (with the watch backoff) that lists by streaming where the
/// apiserver allows it and by pages of [`PAGE_SIZE`] otherwise. `config`
/// carries the selectors; its list strategy and page size are set here.
pub fn watch<K>(api: Api<K>, config: watcher::Config) -> BoxStream<'static, watcher::Result<Event<K>>>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let streaming = !paged();
    let inner = start(&api, &config, streaming);
    futures::stream::unfold((api, config, streaming, inner), |(api, config, mut streaming, mut inner)| async move {
        loop {
            let event = inner.next().await?;
            if streaming
                && let Err(e) = &event
                && refuses_streaming(e)
            {
                // The refusal comes before the watcher's Init: nothing of a
                // list was delivered yet, so the paged watcher starts clean.
                if !PAGED.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        error = %e,
                        page_size = PAGE_SIZE,
                        "the apiserver refuses streaming lists (WatchList): listing in pages instead"
                    );
                }
                streaming = false;
                inner = start(&api, &config, streaming);
                continue;
            }
            return Some((event, (api, config, streaming, inner)));
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use kube::core::Status;
    use kube::core::response::{StatusCause, StatusDetails};

    use super::*;

    fn start_failed(code: u16, message: &str, cause_field: Option<&str>) -> watcher::Error {
        let details = cause_field.map(|field| StatusDetails {
            name: String::new(),
            group: "meta.k8s.io".into(),
            kind: "ListOptions".into(),
            uid: String::new(),
            causes: vec![StatusCause {
                reason: "FieldValueForbidden".into(),
                message: "Forbidden".into(),
                field: field.into(),
            }],
            retry_after_seconds: 0,
        });
        let status = Status { code, message: message.into(), reason: "Invalid".into(), details, ..Default::default() };
        watcher::Error::WatchStartFailed(kube::Error::Api(Box::new(status)))
    }

    #[test]
    fn the_gate_off_answer_is_a_refusal() {
        // Verbatim from kube-apiserver v1.36.3 with --feature-gates=WatchList=false.
        let msg = "ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: sendInitialEvents is \
                   forbidden for watch unless the WatchList feature gate is enabled";
        assert!(refuses_streaming(&start_failed(422, msg, Some("sendInitialEvents"))));
        // The cause alone is enough (a message reworded by a proxy or a later release).
        assert!(refuses_streaming(&start_failed(422, "invalid", Some("sendInitialEvents"))));
        // Before 1.27 the parameter is unknown and resourceVersionMatch is what is refused.
        assert!(refuses_streaming(&start_failed(
            422,
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch",
            None
        )));
    }

    #[test]
    fn other_failures_are_retried_as_they_are() {
        assert!(!refuses_streaming(&start_failed(403, "secrets is forbidden: sendInitialEvents", None)));
        assert!(!refuses_streaming(&start_failed(422, "labelSelector: Invalid value", Some("labelSelector"))));
        assert!(!refuses_streaming(&start_failed(500, "etcdserver: request timed out", None)));
        let during_watch = watcher::Error::WatchFailed(kube::Error::Api(Box::new(Status {
            code: 422,
            message: "sendInitialEvents".into(),
            ..Default::default()
        })));
        assert!(!refuses_streaming(&during_watch), "only the start of a watch is refused");
    }

    #[test]
    fn a_page_holds_a_handful_of_the_largest_objects() {
        assert_eq!(PAGE_SIZE, 4);
        assert!(u64::from(PAGE_SIZE) * u64::from(MAX_OBJECT_JSON_BYTES) <= u64::from(PAGE_BUDGET_BYTES));
    }
}
