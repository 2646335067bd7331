//! When a failed watch is watching again.
//!
//! kube-runtime's watcher reports each failure, but not a successful
//! re-watch: it resumes from its resourceVersion without a new list and
//! swallows bookmarks, so a quiet stream says nothing until its next object
//! changes. [`noting_recovery`] tells the state instead: a stream that failed
//! and then stayed quiet for [`WATCH_RECOVERED_WHEN_QUIET`] is watching
//! again (`Msg::StreamRecovered`).

use std::time::Duration;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc::Sender;

use crate::messages::{Msg, StreamId};

/// While a failure lasts the watcher reports it again at least every
/// backoff cap (`backoff::watch`, 5 s) plus the attempt, and an attempt ends
/// by the client's connect timeout (kube's default, 30 s) at the latest: 40 s
/// without a word means the re-watch holds. Without this a quiet stream
/// (DaemonSets in a namespace nobody touches) would keep the replica unready
/// after every network blip, until something in it changed.
pub const WATCH_RECOVERED_WHEN_QUIET: Duration = Duration::from_secs(40);

/// `stream`, passed on unchanged; after each failure followed by
/// [`WATCH_RECOVERED_WHEN_QUIET`] of quiet, `Msg::StreamRecovered(id)` goes
/// to `tx`. Ends with `stream`, or when `tx` is closed.
pub fn noting_recovery<S, T, E>(stream: S, tx: Sender<Msg>, id: StreamId) -> BoxStream<'static, Result<T, E>>
where
    S: Stream<Item = Result<T, E>> + Unpin + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    noting_recovery_after(stream, tx, id, WATCH_RECOVERED_WHEN_QUIET)
}

fn noting_recovery_after<S, T, E>(
    stream: S,
    tx: Sender<Msg>,
    id: StreamId,
    quiet: Duration,
) -> BoxStream<'static, Result<T, E>>
where
    S: Stream<Item = Result<T, E>> + Unpin + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    futures::stream::unfold((stream, false), move |(mut stream, mut failing)| {
        let (tx, id) = (tx.clone(), id.clone());
        async move {
            let item = loop {
                if !failing {
                    break stream.next().await?;
                }
                match tokio::time::timeout(quiet, stream.next()).await {
                    Ok(next) => break next?,
                    Err(_quiet) => {
                        tx.send(Msg::StreamRecovered(id.clone())).await.ok()?;
                        failing = false;
                    }
                }
            };
            let failed = item.is_err();
            Some((item, (stream, failed)))
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::Watched;
    use pod_reloader_core::ResourceKind;

    #[tokio::test(start_paused = true)]
    async fn a_failure_then_quiet_is_reported_as_recovered_and_items_pass_unchanged() {
        let (src, rx) = futures::channel::mpsc::unbounded::<Result<u8, &str>>();
        let (tx, mut msgs) = tokio::sync::mpsc::channel(8);
        let id = StreamId { watched: Watched::Resource(ResourceKind::ConfigMap), namespace: None };
        let mut items = noting_recovery_after(rx, tx, id, Duration::from_secs(10));
        src.unbounded_send(Ok(1)).unwrap();
        src.unbounded_send(Err("reset")).unwrap();
        assert_eq!(items.next().await, Some(Ok(1)));
        assert_eq!(items.next().await, Some(Err("reset")));
        // Quiet for 10 s after the failure (the paused clock advances): recovered.
        // Quiet without a failure before it: no second report.
        let later = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            src.unbounded_send(Ok(2)).unwrap();
            src.unbounded_send(Err("again")).unwrap();
            src.unbounded_send(Ok(3)).unwrap();
        });
        assert_eq!(items.next().await, Some(Ok(2)));
        assert!(matches!(msgs.try_recv(), Ok(Msg::StreamRecovered(_))), "one report after the quiet");
        assert!(msgs.try_recv().is_err(), "only one");
        assert_eq!(items.next().await, Some(Err("again")));
        assert_eq!(items.next().await, Some(Ok(3)), "an item right after a failure: no report");
        assert!(msgs.try_recv().is_err());
        later.await.unwrap();
    }
}
