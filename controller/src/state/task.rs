//! The state task: feeds watch messages and leadership changes to the
//! [`State`] one at a time and carries out what it asks for. The only
//! `await`s are here; the state itself is plain, synchronous code.

use std::sync::Arc;

use pod_reloader_core::ResourceKey;
use pod_reloader_core::baseline_store::ShardWrite;
use tokio::sync::mpsc::{Receiver, Sender, UnboundedSender};
use tokio::sync::watch;

use super::State;
use super::effects::{Effect, Effects, Notice};
use crate::health::Health;
use crate::messages::{Msg, ReloadRequest};

/// Where the effects go.
pub struct Outputs {
    pub reloads: Sender<ReloadRequest>,
    pub notices: Sender<Notice>,
    pub health: Arc<Health>,
    /// To the fetch task (`chosen_keys::fetch`). Unbounded, so the state
    /// never waits on a task that waits on the state; at most one request
    /// per object is outstanding (see `state::chosen`).
    pub fetches: UnboundedSender<ResourceKey>,
    /// To the baseline store's writer (`baseline_store::writer`), if the store is on.
    pub store_writes: Option<Sender<ShardWrite>>,
}

impl Outputs {
    /// Carries out `effects` in order. A full channel holds the state task
    /// back (backpressure on the watches); a closed one drops what it would
    /// have carried (the process is ending).
    async fn carry(&self, effects: Effects) {
        for effect in effects {
            match effect {
                Effect::Reload(r) => {
                    let _ = self.reloads.send(r).await;
                }
                Effect::Notice(n) => {
                    let _ = self.notices.send(n).await;
                }
                Effect::Ready(ready) => self.health.set_ready(ready),
                Effect::ReleaseFreeHeap => crate::memory::release_free_heap(),
                Effect::FetchKeyDigests(key) => {
                    let _ = self.fetches.send(key);
                }
                Effect::WriteShard(w) => {
                    if let Some(tx) = &self.store_writes {
                        let _ = tx.send(w).await;
                    }
                }
            }
        }
    }
}

/// Runs until every watch is gone.
pub async fn run(mut state: State, mut rx: Receiver<Msg>, mut leadership: watch::Receiver<bool>, out: Outputs) {
    let first = *leadership.borrow_and_update();
    out.carry(state.set_leader(first)).await;
    // False once the lease task ended (its `changed` would then be ready forever).
    let mut lease_alive = true;
    // Dirty baseline store shards are written at most once a second each.
    let mut flush = tokio::time::interval(std::time::Duration::from_secs(1));
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = flush.tick() => out.carry(state.flush_store()).await,
            msg = rx.recv() => {
                let Some(msg) = msg else { return };
                out.carry(state.handle(msg)).await;
            }
            changed = leadership.changed(), if lease_alive => {
                // The lease task ended: act as a standby from now on.
                lease_alive = changed.is_ok();
                let leader = lease_alive && *leadership.borrow_and_update();
                out.carry(state.set_leader(leader)).await;
            }
        }
    }
}
