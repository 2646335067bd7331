//! When a failed watch is watching again.
//!
//! kube-runtime's watcher reports each failure, but not a successful
//! re-watch: it resumes from its resourceVersion without a new list and
//! swallows bookmarks, so a quiet stream says nothing until its next object
//! changes. [`noting_recovery`] adds that signal: a stream that failed and
//! then stayed quiet for [`WATCH_RECOVERED_WHEN_QUIET`] is watching again.

use std::time::Duration;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};

/// While a failure lasts the watcher reports it again at least every
/// backoff cap (`backoff::watch`, 5 s) plus the attempt, and an attempt ends
/// by the client's connect timeout (kube's default, 30 s) at the latest: 40 s
/// without a word means the re-watch holds. Without this a quiet stream
/// (DaemonSets in a namespace nobody touches) would keep the replica unready
/// after every network blip, until something in it changed.
pub const WATCH_RECOVERED_WHEN_QUIET: Duration = Duration::from_secs(40);

/// An item of the watch, or the news that it recovered from a failure.
pub enum Step<T> {
    Item(T),
    Recovered,
}

/// `stream` with a [`Step::Recovered`] after each failure followed by
/// [`WATCH_RECOVERED_WHEN_QUIET`] of quiet.
pub fn noting_recovery<S, T, E>(stream: S) -> BoxStream<'static, Step<Result<T, E>>>
where
    S: Stream<Item = Result<T, E>> + Unpin + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    noting_recovery_after(stream, WATCH_RECOVERED_WHEN_QUIET)
}

fn noting_recovery_after<S, T, E>(stream: S, quiet: Duration) -> BoxStream<'static, Step<Result<T, E>>>
where
    S: Stream<Item = Result<T, E>> + Unpin + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    futures::stream::unfold((stream, false), move |(mut stream, failing)| async move {
        let next = if failing {
            match tokio::time::timeout(quiet, stream.next()).await {
                Ok(next) => next,
                Err(_quiet) => return Some((Step::Recovered, (stream, false))),
            }
        } else {
            stream.next().await
        };
        let item = next?;
        let failed = item.is_err();
        Some((Step::Item(item), (stream, failed)))
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds<T, E>(steps: &[Step<Result<T, E>>]) -> Vec<&'static str> {
        steps
            .iter()
            .map(|s| match s {
                Step::Item(Ok(_)) => "ok",
                Step::Item(Err(_)) => "err",
                Step::Recovered => "recovered",
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_then_quiet_is_a_recovery_and_events_are_passed_on() {
        let (tx, rx) = futures::channel::mpsc::unbounded::<Result<u8, &str>>();
        let mut steps = noting_recovery_after(rx, Duration::from_secs(10));
        tx.unbounded_send(Ok(1)).unwrap();
        tx.unbounded_send(Err("reset")).unwrap();
        let mut seen = Vec::new();
        seen.push(steps.next().await.unwrap());
        seen.push(steps.next().await.unwrap());
        // Nothing for 10 s after the failure: recovered (the paused clock advances).
        seen.push(steps.next().await.unwrap());
        // Quiet without a failure before: no second recovery, just the next item.
        let later = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            tx.unbounded_send(Ok(2)).unwrap();
            tx.unbounded_send(Err("again")).unwrap();
            tx.unbounded_send(Err("still")).unwrap();
            tx.unbounded_send(Ok(3)).unwrap();
        });
        for _ in 0..4 {
            seen.push(steps.next().await.unwrap());
        }
        later.await.unwrap();
        assert_eq!(kinds(&seen), ["ok", "err", "recovered", "ok", "err", "err", "ok"]);
    }
}
