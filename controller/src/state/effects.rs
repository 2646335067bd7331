//! What the state asks the world to do after one message: reloads for the
//! scheduler, notices for the notice task, the readiness to show. Kept in
//! order; the state task's loop (`task`) carries them out.

use std::time::Duration;

use pod_reloader_core::baseline_store::ShardWrite;
use pod_reloader_core::{ResourceKey, WorkloadKey};

use crate::messages::ReloadRequest;

/// Side effects the state task asks for besides reloads.
#[derive(Debug, PartialEq, Eq)]
pub enum Notice {
    /// A workload's annotations are malformed: a Warning event on it.
    InvalidAnnotations { workload: WorkloadKey, messages: Vec<String> },
    /// A Deployment paused by a reload is due to resume at `paused_at + period`.
    ScheduleResume { workload: WorkloadKey, paused_at_key: &'static str, period: Duration, paused_at: String },
    /// The Deployment was deleted, or is no longer paused by a reload: its
    /// scheduled resume, if any, is dropped.
    CancelResume { workload: WorkloadKey },
}

/// One thing to carry out.
#[derive(Debug)]
pub enum Effect {
    /// Hand a reload (or baseline) to the scheduler.
    Reload(ReloadRequest),
    Notice(Notice),
    /// Readiness is now this (every stream listed and healthy).
    Ready(bool),
    /// A list (or re-list) passed through: give the heap it left free back.
    ReleaseFreeHeap,
    /// Read this object anew for its key digests (see `chosen_keys`).
    FetchKeyDigests(ResourceKey),
    /// Write a shard of the baseline store (see `store`).
    WriteShard(ShardWrite),
}

/// The effects of one message, in the order they are to be carried out.
#[derive(Debug, Default)]
#[must_use = "the effects must be carried out"]
pub struct Effects(Vec<Effect>);

impl Effects {
    pub fn push(&mut self, e: Effect) {
        self.0.push(e);
    }

    pub fn reload(&mut self, r: ReloadRequest) {
        self.0.push(Effect::Reload(r));
    }

    pub fn notice(&mut self, n: Notice) {
        self.0.push(Effect::Notice(n));
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The reload requests, in order.
    #[cfg(test)]
    pub fn reloads(&self) -> impl Iterator<Item = &ReloadRequest> {
        self.0.iter().filter_map(|e| match e {
            Effect::Reload(r) => Some(r),
            _ => None,
        })
    }

    /// The notices, in order.
    #[cfg(test)]
    pub fn notices(&self) -> impl Iterator<Item = &Notice> {
        self.0.iter().filter_map(|e| match e {
            Effect::Notice(n) => Some(n),
            _ => None,
        })
    }

    /// The objects to read anew, in order.
    #[cfg(test)]
    pub fn fetches(&self) -> impl Iterator<Item = &ResourceKey> {
        self.0.iter().filter_map(|e| match e {
            Effect::FetchKeyDigests(k) => Some(k),
            _ => None,
        })
    }

    /// The shard writes, in order.
    #[cfg(test)]
    pub fn shard_writes(&self) -> impl Iterator<Item = &ShardWrite> {
        self.0.iter().filter_map(|e| match e {
            Effect::WriteShard(w) => Some(w),
            _ => None,
        })
    }

    /// The last readiness asked for, if any.
    #[cfg(test)]
    pub fn ready(&self) -> Option<bool> {
        self.0.iter().rev().find_map(|e| match e {
            Effect::Ready(r) => Some(*r),
            _ => None,
        })
    }
}

impl IntoIterator for Effects {
    type Item = Effect;
    type IntoIter = std::vec::IntoIter<Effect>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}
