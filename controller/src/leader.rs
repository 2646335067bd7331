//! Leader election on a `coordination.k8s.io` Lease (kube-lease-manager).
//! Every replica watches and keeps its state warm; only the leader patches.
//! A new leader reconciles every workload first, so a change made during
//! the handover is rolled exactly once.

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use pod_reloader_core::settings::ValidSettings;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Lease duration and renewal grace, in seconds: a killed leader is
/// replaced within about `DURATION` seconds.
const LEASE_DURATION_SECONDS: u64 = 8;
const LEASE_GRACE_SECONDS: u64 = 2;

/// The Lease's namespace with leader election on: the setting, else the
/// pod's own (`None`: neither, the Lease goes to `default`); `None` without
/// leader election.
pub fn lease_namespace(settings: &ValidSettings) -> Option<String> {
    if !settings.leader_election.enabled {
        return None;
    }
    Some(settings.leader_election.lease_namespace.clone())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
}

pub struct Leadership {
    pub receiver: watch::Receiver<bool>,
    /// Held so the lease task runs; dropping every receiver releases the lease.
    task: Option<JoinHandle<()>>,
    _always: Option<watch::Sender<bool>>,
}

impl Leadership {
    /// Without leader election this replica is always the leader.
    pub fn always() -> Self {
        let (tx, rx) = watch::channel(true);
        Leadership { receiver: rx, task: None, _always: Some(tx) }
    }

    pub async fn elect(client: Client, settings: &ValidSettings) -> anyhow::Result<Self> {
        let namespace = lease_namespace(settings).unwrap_or_else(|| "default".into());
        let identity = std::env::var("POD_NAME").unwrap_or_else(|_| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        });
        let manager = LeaseManagerBuilder::new(client, &settings.leader_election.lease_name)
            .with_namespace(&namespace)
            .with_identity(&identity)
            .with_duration(LEASE_DURATION_SECONDS)
            .with_grace(LEASE_GRACE_SECONDS)
            .build()
            .await
            .map_err(|e| {
                anyhow::anyhow!("cannot use Lease {namespace}/{}: {e}", settings.leader_election.lease_name)
            })?;
        tracing::info!(lease = %format!("{namespace}/{}", settings.leader_election.lease_name), identity = %identity, "leader election on");
        let (receiver, handle) = manager.watch().await;
        let task = tokio::spawn(async move {
            match handle.await {
                Ok(Ok(_)) => tracing::info!("lease released"),
                Ok(Err(e)) => tracing::error!(error = %e, "leader election stopped"),
                Err(e) => tracing::error!(error = %e, "leader election task failed"),
            }
        });
        Ok(Leadership { receiver, task: Some(task), _always: None })
    }

    /// Releases the lease (if held) so a standby takes over at once.
    pub async fn release(self) {
        let Leadership { receiver, task, _always } = self;
        drop(receiver);
        if let Some(task) = task {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(3), task).await;
        }
    }
}
