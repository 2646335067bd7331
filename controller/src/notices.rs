//! The notice task: Warning events for malformed annotations and the
//! resumes of Deployments paused by a reload, off the state task's path.
//!
//! Resumes are one task per paused Deployment at most: a new `paused-at`
//! value replaces the task of the old one, a resumed, unpaused or deleted
//! Deployment takes its task and entry away. Whoever may edit a Deployment
//! can write `paused-at` as often as they like; that changes which task
//! runs, never how many.

use std::collections::HashMap;
use std::sync::Arc;

use pod_reloader_core::WorkloadKey;
use tokio::sync::mpsc::{self, Receiver};
use tokio::task::{AbortHandle, JoinHandle};

use crate::reload::Reloader;
use crate::state::Notice;

struct Scheduled {
    paused_at: String,
    task: AbortHandle,
    /// Tells this task's completion from that of one it replaced.
    id: u64,
}

/// The scheduled resumes, one per Deployment.
#[derive(Default)]
pub struct Resumes {
    scheduled: HashMap<WorkloadKey, Scheduled>,
    next_id: u64,
}

impl Resumes {
    /// Schedules the resume of `key` paused at `paused_at`, unless that very
    /// resume is already scheduled. A resume scheduled for another
    /// `paused-at` is cancelled. `start` gets the id the task reports to
    /// [`Self::finished`]; returns whether it was called.
    pub fn schedule(&mut self, key: WorkloadKey, paused_at: String, start: impl FnOnce(u64) -> JoinHandle<()>) -> bool {
        if let Some(s) = self.scheduled.get(&key) {
            if s.paused_at == paused_at && !s.task.is_finished() {
                return false;
            }
            s.task.abort();
        }
        let id = self.next_id;
        self.next_id += 1;
        let task = start(id).abort_handle();
        self.scheduled.insert(key, Scheduled { paused_at, task, id });
        true
    }

    /// The Deployment is gone, or no longer paused by a reload.
    pub fn cancel(&mut self, key: &WorkloadKey) {
        if let Some(s) = self.scheduled.remove(key) {
            s.task.abort();
        }
    }

    /// The resume task `id` ended (resumed, or found nothing to do).
    pub fn finished(&mut self, key: &WorkloadKey, id: u64) {
        if self.scheduled.get(key).is_some_and(|s| s.id == id) {
            self.scheduled.remove(key);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.scheduled.len()
    }
}

/// Runs until the state task is gone.
pub async fn run(mut notices: Receiver<Notice>, reloader: Arc<Reloader>) {
    let mut resumes = Resumes::default();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(WorkloadKey, u64)>();
    loop {
        tokio::select! {
            notice = notices.recv() => {
                let Some(notice) = notice else { return };
                handle(notice, &mut resumes, &reloader, &done_tx).await;
            }
            Some((key, id)) = done_rx.recv() => resumes.finished(&key, id),
        }
    }
}

async fn handle(
    notice: Notice,
    resumes: &mut Resumes,
    reloader: &Arc<Reloader>,
    done: &mpsc::UnboundedSender<(WorkloadKey, u64)>,
) {
    match notice {
        Notice::InvalidAnnotations { workload, messages } => reloader.warn_invalid(&workload, &messages).await,
        Notice::ScheduleResume { workload, paused_at_key, period, paused_at } => {
            resumes.schedule(workload.clone(), paused_at.clone(), |id| {
                let (reloader, done) = (reloader.clone(), done.clone());
                tokio::spawn(async move {
                    reloader.resume_after(workload.clone(), paused_at_key, period, paused_at).await;
                    let _ = done.send((workload, id));
                })
            });
        }
        Notice::CancelResume { workload } => resumes.cancel(&workload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pod_reloader_core::WorkloadKind;
    use std::time::Duration;

    fn key(name: &str) -> WorkloadKey {
        WorkloadKey::new(WorkloadKind::Deployment, "ns", name)
    }

    fn sleeper(_: u64) -> JoinHandle<()> {
        tokio::spawn(tokio::time::sleep(Duration::from_secs(3600)))
    }

    #[tokio::test]
    async fn one_resume_per_deployment_whatever_paused_at_says() {
        let mut r = Resumes::default();
        let mut started = Vec::new();
        for i in 0..100 {
            r.schedule(key("web"), format!("2026-01-01T00:00:{i:02}Z"), |id| {
                let h = sleeper(id);
                started.push(h.abort_handle());
                h
            });
        }
        assert_eq!(r.len(), 1);
        assert_eq!(started.len(), 100);
        tokio::task::yield_now().await;
        // Every replaced task was aborted; only the last one runs.
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(started.iter().filter(|h| !h.is_finished()).count(), 1);
        // The same paused-at again starts nothing.
        assert!(!r.schedule(key("web"), "2026-01-01T00:00:99Z".into(), |_| panic!("not started twice")));
    }

    #[tokio::test]
    async fn resumed_and_deleted_deployments_are_pruned() {
        let mut r = Resumes::default();
        r.schedule(key("a"), "t0".into(), sleeper);
        let replaced = r.scheduled[&key("a")].id;
        r.schedule(key("a"), "t1".into(), sleeper);
        r.schedule(key("b"), "t1".into(), sleeper);
        // A stale completion (of the replaced paused-at) removes nothing.
        r.finished(&key("a"), replaced);
        assert_eq!(r.len(), 2);
        r.finished(&key("a"), r.scheduled[&key("a")].id);
        assert_eq!(r.len(), 1);
        let b = r.scheduled.get(&key("b")).map(|s| s.task.clone()).unwrap();
        r.cancel(&key("b"));
        assert_eq!(r.len(), 0);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(b.is_finished(), "the cancelled task is aborted");
    }

    #[tokio::test]
    async fn a_finished_task_may_be_scheduled_again() {
        // A resume that failed (apiserver away) ends; the next event of the
        // still paused Deployment schedules it again.
        let mut r = Resumes::default();
        r.schedule(key("a"), "t1".into(), |_| tokio::spawn(async {}));
        let first = r.scheduled[&key("a")].id;
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(r.schedule(key("a"), "t1".into(), sleeper));
        // The first task's late completion leaves the second one tracked.
        r.finished(&key("a"), first);
        assert_eq!(r.len(), 1);
    }
}
