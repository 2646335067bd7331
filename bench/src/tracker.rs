//! Watches the bench's Deployments and records when each one's
//! `metadata.generation` goes up. The bench itself never changes a
//! Deployment after creating it (kube-controller-manager only writes status
//! and metadata, which leave the generation alone), so every increase is a
//! patch of the spec by the controller under test: a reload landing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::Notify;

use crate::objects::MANAGED;

#[derive(Debug, Clone, Copy)]
pub struct DeployState {
    pub generation: i64,
    /// When the watch delivered the latest generation increase (or the
    /// object first), on the bench's monotonic clock.
    pub changed_at: Instant,
}

#[derive(Default)]
pub struct Tracker {
    map: Mutex<HashMap<String, DeployState>>,
    notify: Notify,
    /// Any generation increase, on any Deployment.
    last_change: Mutex<Option<Instant>>,
    /// Every generation increase per Deployment, in order: (generation, when
    /// the watch delivered it). S6 attributes patches to edits with it.
    history: Mutex<HashMap<String, Vec<(i64, Instant)>>>,
}

pub fn key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

impl Tracker {
    /// Starts the watch in the background.
    pub fn start(client: Client) -> Arc<Tracker> {
        let t = Arc::new(Tracker::default());
        let tt = t.clone();
        tokio::spawn(async move {
            let api: Api<Deployment> = Api::all(client);
            let cfg = watcher::Config::default().labels(&format!("{MANAGED}=true"));
            let mut s = watcher::watcher(api, cfg).default_backoff().boxed();
            while let Some(ev) = s.next().await {
                match ev {
                    Ok(Event::Apply(d) | Event::InitApply(d)) => tt.apply(&d),
                    Ok(Event::Delete(d)) => {
                        let k = key(
                            d.metadata.namespace.as_deref().unwrap_or_default(),
                            d.metadata.name.as_deref().unwrap_or_default(),
                        );
                        tt.map.lock().unwrap().remove(&k);
                        tt.history.lock().unwrap().remove(&k);
                        tt.notify.notify_waiters();
                    }
                    Ok(_) => {}
                    Err(e) => eprintln!("bench: Deployment watch: {e}"),
                }
            }
        });
        t
    }

    fn apply(&self, d: &Deployment) {
        let now = Instant::now();
        let k =
            key(d.metadata.namespace.as_deref().unwrap_or_default(), d.metadata.name.as_deref().unwrap_or_default());
        let generation = d.metadata.generation.unwrap_or(0);
        let mut map = self.map.lock().unwrap();
        match map.get_mut(&k) {
            Some(s) if generation > s.generation => {
                s.generation = generation;
                s.changed_at = now;
                *self.last_change.lock().unwrap() = Some(now);
                self.history.lock().unwrap().entry(k.clone()).or_default().push((generation, now));
            }
            Some(_) => {}
            None => {
                map.insert(k, DeployState { generation, changed_at: now });
            }
        }
        drop(map);
        self.notify.notify_waiters();
    }

    pub fn get(&self, k: &str) -> Option<DeployState> {
        self.map.lock().unwrap().get(k).copied()
    }

    /// When the watch first delivered a generation above `generation` of
    /// Deployment `k`, if it has.
    pub fn first_change_above(&self, k: &str, generation: i64) -> Option<Instant> {
        let h = self.history.lock().unwrap();
        h.get(k)?.iter().find(|(g, _)| *g > generation).map(|(_, at)| *at)
    }

    pub fn generations(&self, keys: &[String]) -> Vec<i64> {
        let map = self.map.lock().unwrap();
        keys.iter().map(|k| map.get(k).map(|s| s.generation).unwrap_or(0)).collect()
    }

    pub fn last_change(&self) -> Option<Instant> {
        *self.last_change.lock().unwrap()
    }

    /// Waits until `cond` holds over the map, or the timeout passes.
    pub async fn wait_until<F>(&self, timeout: Duration, cond: F) -> bool
    where
        F: Fn(&HashMap<String, DeployState>) -> bool,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if cond(&self.map.lock().unwrap()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return cond(&self.map.lock().unwrap());
            }
        }
    }

    /// Waits until the watch has seen all of `keys`.
    pub async fn wait_present(&self, keys: &[String], timeout: Duration) -> bool {
        self.wait_until(timeout, |m| keys.iter().all(|k| m.contains_key(k))).await
    }

    /// Waits until no generation has gone up for `quiet`, at most `timeout`.
    pub async fn wait_quiet(&self, quiet: Duration, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let last = self.last_change();
            let since = last.map(|t| t.elapsed()).unwrap_or(Duration::MAX);
            if since >= quiet {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(quiet - since).await;
        }
    }
}
