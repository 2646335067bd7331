//! Stakater Reloader's CronJob behaviour, as an opt-in: a change starts a
//! Job from the CronJob at once. pod-reloader's own behaviour is to patch
//! the job template only, so that the next scheduled run uses the new
//! configuration and nothing runs off schedule (Reloader issue #543); a
//! CronJob opts in with [`ANNOTATION`]` = "true"`, or every CronJob with the
//! `cronJobTrigger` setting (a CronJob opts out with `"false"`).
//!
//! The template is patched either way (that is what records the new hashes,
//! so a restarted controller does not start the Job again); the Job is made
//! from the patched template the way Reloader makes it: `generateName:
//! <cronjob>-`, the job template's labels and annotations plus
//! `cronjob.kubernetes.io/instantiate: manual` (what `kubectl create job
//! --from=cronjob/…` writes), the CronJob as its controlling owner, and the
//! job template's spec. Unlike Reloader, a suspended CronJob starts nothing
//! (Reloader issue #822), and the owner reference does not block the
//! owner's deletion (that would need `update` on `cronjobs/finalizers`).
//! A create that fails for a transient reason (409 on a generateName
//! collision, 429, 5xx, no connection) is retried on `backoff::job_create`;
//! Reloader does not retry it.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::PostParams;
use kube::{Api, Client};
use pod_reloader_core::{WorkloadKey, WorkloadKind};

use crate::events::{Events, reference};

/// On a CronJob: `"true"` starts a Job on every reload, `"false"` never.
pub const ANNOTATION: &str = "pod-reloader.deckhouse.io/cronjob-trigger";
/// What `kubectl create job --from=cronjob/…` and Reloader mark a manual run with.
const INSTANTIATE: &str = "cronjob.kubernetes.io/instantiate";

pub struct CronJobTrigger {
    client: Client,
    events: Events,
    /// The `cronJobTrigger` setting: CronJobs without the annotation start a Job.
    default_on: bool,
}

/// Whether this CronJob starts a Job on a reload.
fn wanted(cj: &CronJob, default_on: bool) -> bool {
    match cj.metadata.annotations.as_ref().and_then(|a| a.get(ANNOTATION)).map(String::as_str) {
        Some("true") => true,
        Some("false") => false,
        _ => default_on,
    }
}

/// The Job Reloader would create from `cj`; `None` when the CronJob lacks
/// what it takes (a name, a uid, a job template).
fn job_from(cj: &CronJob) -> Option<Job> {
    let name = cj.metadata.name.clone()?;
    let uid = cj.metadata.uid.clone()?;
    let template = cj.spec.as_ref()?.job_template.clone();
    let template_meta = template.metadata.unwrap_or_default();
    let mut annotations = template_meta.annotations.unwrap_or_default();
    annotations.insert(INSTANTIATE.into(), "manual".into());
    Some(Job {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: cj.metadata.namespace.clone(),
            labels: template_meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "CronJob".into(),
                name,
                uid,
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    })
}

/// Whether a failed create may succeed when tried again: a generateName
/// collision (409 AlreadyExists), throttling (429), a server error, or no
/// answer at all. A 403/422 (quota, RBAC, an invalid template) stays.
fn transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 409 || s.code == 429 || s.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

/// Calls `create` until it succeeds, fails for good, or `delays` runs out
/// (one attempt more than there are delays); logs each retry.
async fn create_retrying<F, Fut>(
    key: &WorkloadKey,
    mut delays: impl Iterator<Item = Duration>,
    mut create: F,
) -> Result<Job, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Job, kube::Error>>,
{
    for attempt in 1.. {
        match create().await {
            Err(e)
                if transient(&e)
                    && let Some(delay) = delays.next() =>
            {
                tracing::debug!(namespace = %key.namespace, name = %key.name, error = %e, attempt, "starting a Job from the CronJob failed; retrying");
                tokio::time::sleep(delay).await;
            }
            result => return result,
        }
    }
    unreachable!("the loop returns")
}

impl CronJobTrigger {
    pub fn new(client: Client, default_on: bool) -> Self {
        CronJobTrigger { events: Events::new(client.clone()), client, default_on }
    }

    /// After a reload patched the job template of CronJob `key`: start a Job
    /// from it if the CronJob (or the setting) asks for one.
    pub async fn after_patch(&self, key: &WorkloadKey) {
        if key.kind != WorkloadKind::CronJob {
            return;
        }
        let cronjobs: Api<CronJob> = Api::namespaced(self.client.clone(), &key.namespace);
        let cj = match cronjobs.get_opt(&key.name).await {
            Ok(Some(c)) => c,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(namespace = %key.namespace, name = %key.name, error = %e, "cannot read the CronJob to start a Job from it");
                return;
            }
        };
        if !wanted(&cj, self.default_on) {
            tracing::debug!(namespace = %key.namespace, name = %key.name, "CronJob reloaded by its template only");
            return;
        }
        if cj.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false) {
            tracing::info!(namespace = %key.namespace, name = %key.name, "CronJob is suspended: no Job started on reload");
            return;
        }
        let Some(job) = job_from(&cj) else { return };
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &key.namespace);
        let params = PostParams { field_manager: Some(crate::reload::FIELD_MANAGER.into()), ..Default::default() };
        let regarding = reference(key, cj.metadata.uid.clone());
        match create_retrying(key, crate::backoff::job_create(), || jobs.create(&params, &job)).await {
            Ok(created) => {
                let job_name = created.metadata.name.unwrap_or_default();
                tracing::info!(namespace = %key.namespace, name = %key.name, job = %job_name, "started a Job from the reloaded CronJob");
                let note = format!("Created Job {job_name} from the reloaded job template ({ANNOTATION})");
                self.events.publish(&regarding, false, "TriggeredJob", note).await;
            }
            Err(e) => {
                tracing::error!(namespace = %key.namespace, name = %key.name, error = %e, "cannot start a Job from the reloaded CronJob");
                let note = format!("Job template reloaded, but starting a Job from it failed: {e}");
                self.events.publish(&regarding, true, "ReloadFail", note).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cron_job(annotations: serde_json::Value) -> CronJob {
        serde_json::from_value(json!({
            "metadata": {"name": "nightly", "namespace": "shop", "uid": "cj-uid", "annotations": annotations},
            "spec": {"schedule": "0 0 * * *", "jobTemplate": {
                "metadata": {"labels": {"app": "n"}, "annotations": {"note": "keep"}},
                "spec": {"backoffLimit": 2, "template": {"spec": {"restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "i", "env": [{"name": "STAKATER_CFG_CONFIGMAP", "value": "h"}]}]}}}
            }}
        }))
        .unwrap()
    }

    #[test]
    fn the_job_is_the_template_owned_by_the_cronjob_and_marked_manual() {
        let cj = cron_job(json!({}));
        let job = serde_json::to_value(job_from(&cj).unwrap()).unwrap();
        assert_eq!(job["metadata"]["generateName"], "nightly-");
        assert!(job["metadata"].get("name").is_none());
        assert_eq!(job["metadata"]["namespace"], "shop");
        assert_eq!(job["metadata"]["labels"], json!({"app": "n"}));
        assert_eq!(
            job["metadata"]["annotations"],
            json!({"note": "keep", "cronjob.kubernetes.io/instantiate": "manual"})
        );
        assert_eq!(
            job["metadata"]["ownerReferences"],
            json!([{"apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly", "uid": "cj-uid", "controller": true}])
        );
        let template_spec = serde_json::to_value(&cj.spec.unwrap().job_template.spec).unwrap();
        assert_eq!(job["spec"], template_spec);
        assert_eq!(job["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"], "h");
    }

    #[test]
    fn the_annotation_overrides_the_setting() {
        assert!(!wanted(&cron_job(json!({})), false));
        assert!(wanted(&cron_job(json!({})), true));
        assert!(wanted(&cron_job(json!({ANNOTATION: "true"})), false));
        assert!(!wanted(&cron_job(json!({ANNOTATION: "false"})), true));
        assert!(!wanted(&cron_job(json!({ANNOTATION: "yes"})), false), "only \"true\" opts in");
    }

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(kube::core::Status::failure("test", "Test").with_code(code).boxed())
    }

    fn key() -> WorkloadKey {
        WorkloadKey::new(WorkloadKind::CronJob, "shop", "nightly")
    }

    /// `create_retrying` over a scripted sequence of answers: the result and
    /// how many times it asked.
    async fn run(answers: Vec<Result<(), u16>>, delays: usize) -> (Result<Job, kube::Error>, usize) {
        let answers = std::sync::Mutex::new(answers.into_iter());
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let result = create_retrying(&key(), std::iter::repeat_n(Duration::from_millis(200), delays), || {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let next = answers.lock().unwrap().next().expect("asked more often than scripted");
            async move { next.map(|()| job_from(&cron_job(json!({}))).unwrap()).map_err(api_error) }
        })
        .await;
        (result, calls.into_inner())
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_until_the_job_is_created() {
        let t0 = tokio::time::Instant::now();
        let (result, calls) = run(vec![Err(409), Err(429), Err(500), Err(503), Ok(())], 5).await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(calls, 5, "four failures, then the create");
        assert_eq!(t0.elapsed(), Duration::from_millis(800), "slept the four delays");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lasting_failure_is_not_retried() {
        for code in [400, 403, 404, 422] {
            let (result, calls) = run(vec![Err(code)], 5).await;
            assert!(matches!(result, Err(kube::Error::Api(ref s)) if s.code == code), "{result:?}");
            assert_eq!(calls, 1, "{code} is not transient");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_end_with_the_schedule() {
        let (result, calls) = run(vec![Err(500); 6], 5).await;
        assert!(matches!(result, Err(kube::Error::Api(ref s)) if s.code == 500), "{result:?}");
        assert_eq!(calls, 6, "the first attempt and five retries");
    }

    #[test]
    fn connection_errors_are_transient() {
        assert!(transient(&kube::Error::Service("connection refused".into())));
        assert!(transient(&api_error(409)) && transient(&api_error(429)) && transient(&api_error(502)));
        assert!(!transient(&api_error(403)) && !transient(&api_error(422)));
    }

    #[test]
    fn no_uid_no_job() {
        let mut cj = cron_job(json!({}));
        cj.metadata.uid = None;
        assert!(job_from(&cj).is_none());
    }
}
