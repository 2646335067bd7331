//! What follows a successful template patch, for the workloads where the
//! patch alone does not restart what the user asked to restart: StatefulSets
//! with `updateStrategy: OnDelete` (their pods are deleted in order,
//! `ondelete`) and, where asked, CronJobs (a Job is started from the new
//! template at once, `cronjob_trigger`). The reloader calls [`Followups::patched`] once per workload
//! it rolled; each follow-up picks the kinds it is for and is present only
//! when its setting is on.

use std::sync::Arc;

use pod_reloader_core::WorkloadKey;

use crate::cronjob_trigger::CronJobTrigger;
use crate::ondelete::OnDeleteRestarts;

#[derive(Default)]
pub struct Followups {
    pub on_delete: Option<Arc<OnDeleteRestarts>>,
    pub cron_jobs: Option<CronJobTrigger>,
}

impl Followups {
    /// The reload patched `key`'s pod template.
    pub async fn patched(&self, key: &WorkloadKey) {
        if let Some(on_delete) = &self.on_delete {
            on_delete.after_patch(key).await;
        }
        if let Some(cron_jobs) = &self.cron_jobs {
            cron_jobs.after_patch(key).await;
        }
    }
}
