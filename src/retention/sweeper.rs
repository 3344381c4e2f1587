//! The task that runs the retention sweeps, started by the controllers' `run` (so only on the
//! leader) beside the controllers.
//!
//! It reads Tenants from the controllers' cache (a snapshot function, so this module does not
//! depend on the controllers), and writes only `status.retention`, by server-side apply under
//! its own field manager [`FIELD_MANAGER`]: the Tenant controller's status apply, which never
//! names that field, leaves it alone. A tick looks at every tenant: a newly shortened retention
//! is announced (status + Event) at once; a tenant whose sweep is due ([`super::next_sweep`])
//! is swept in a task of its own, at most `concurrentSweeps` at a time operator-wide.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;
use tokio::sync::Semaphore;

use super::{cutoff, decide, next_sweep, status_after, status_decided, SweepResult};
use crate::crd::tenant::{RetentionStatus, Tenant};
use crate::metrics::Metrics;
use crate::storage::retention::{SweepOutcome, SweepPlan, SweepTally};
use crate::storage::tenant::TenantStorage;

/// The field manager of `status.retention`.
pub const FIELD_MANAGER: &str = "recording-operator-retention";

/// Where the sweeper's Events go (the controllers' Event recorder).
#[async_trait]
pub trait Announce: Send + Sync {
    async fn announce(&self, tenant: &Tenant, warning: bool, reason: &str, note: String);
}

/// Every Tenant as last seen.
pub type TenantSnapshot = Arc<dyn Fn() -> Vec<Arc<Tenant>> + Send + Sync>;

/// What the sweeps need.
pub struct Sweeper {
    pub client: kube::Client,
    pub storage: TenantStorage,
    pub tenants: TenantSnapshot,
    pub events: Arc<dyn Announce>,
    pub metrics: Metrics,
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("writing status.retention of Tenant {tenant} failed: {source}")]
    Status {
        tenant: String,
        #[source]
        source: kube::Error,
    },
}

impl Sweeper {
    /// Sweeps tenants as they fall due, until dropped.
    pub async fn run(self) {
        let config = self.storage.retention().clone();
        if !config.enabled {
            tracing::info!("retention sweep disabled (storage.retention.enabled: false)");
            return std::future::pending().await;
        }
        let this = Arc::new(self);
        let permits = Arc::new(Semaphore::new(config.concurrent_sweeps));
        let running: Arc<Mutex<HashSet<String>>> = Default::default();
        // Next sweeps known before the cache shows the status that says so.
        let due_after: Arc<Mutex<HashMap<String, Timestamp>>> = Default::default();
        let mut announced: HashSet<(String, i32)> = HashSet::new();
        let mut first_seen: HashMap<String, Timestamp> = HashMap::new();
        let mut tasks = tokio::task::JoinSet::new();
        let tick =
            (config.interval / 20).clamp(Duration::from_millis(200), Duration::from_secs(30));
        loop {
            while tasks.try_join_next().is_some() {}
            let now = super::now();
            let tenants = (this.tenants)();
            // Forget tenants that are gone.
            let uids: HashSet<String> = tenants.iter().filter_map(|t| t.uid()).collect();
            first_seen.retain(|uid, _| uids.contains(uid));
            lock(&due_after).retain(|uid, _| uids.contains(uid));
            for tenant in tenants {
                if tenant.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let (name, uid) = (tenant.name_any(), tenant.uid().unwrap_or_default());
                let status = tenant.status.as_ref().and_then(|s| s.retention.as_ref());
                let decision = decide(
                    tenant.spec.retention.limit_days(),
                    status,
                    now,
                    config.grace_period,
                );
                if let (Some(note), Some(pending)) = (&decision.announce, &decision.pending) {
                    if announced.insert((uid.clone(), pending.days)) {
                        let status = status_decided(status, &decision);
                        if let Err(e) = this.write(&tenant, &status).await {
                            tracing::warn!(tenant = %name, error = %e, "announcing a shortened retention");
                            announced.remove(&(uid.clone(), pending.days));
                        } else {
                            this.events
                                .announce(&tenant, true, "RetentionShortened", note.clone())
                                .await;
                        }
                        continue;
                    }
                }
                let first_seen = *first_seen.entry(uid.clone()).or_insert(now);
                let mut due = next_sweep(
                    crate::hash64(&uid),
                    config.interval,
                    config.retry_failed_after,
                    status,
                    first_seen,
                );
                if let Some(known) = lock(&due_after).get(&uid) {
                    due = due.max(*known);
                }
                if due > now || !lock(&running).insert(name.clone()) {
                    continue;
                }
                let (this, permits, running, due_after) = (
                    this.clone(),
                    permits.clone(),
                    running.clone(),
                    due_after.clone(),
                );
                tasks.spawn(async move {
                    let Ok(_permit) = permits.acquire_owned().await else {
                        return;
                    };
                    match this.sweep_tenant(&tenant).await {
                        Ok(status) => {
                            let next = next_sweep(
                                crate::hash64(&uid),
                                this.storage.retention().interval,
                                this.storage.retention().retry_failed_after,
                                Some(&status),
                                super::now(),
                            );
                            lock(&due_after).insert(uid, next);
                        }
                        Err(e) => tracing::warn!(tenant = %name, error = %e, "retention sweep"),
                    }
                    lock(&running).remove(&name);
                });
            }
            tokio::time::sleep(tick).await;
        }
    }

    /// Sweeps one tenant now and writes its `status.retention`; returns what was written.
    pub async fn sweep_tenant(&self, tenant: &Tenant) -> Result<RetentionStatus, SweepError> {
        let config = self.storage.retention();
        let now = super::now();
        let previous = tenant.status.as_ref().and_then(|s| s.retention.as_ref());
        let decision = decide(
            tenant.spec.retention.limit_days(),
            previous,
            now,
            config.grace_period,
        );
        let (tally, result) = if decision.enforced.is_none() && decision.pending.is_none() {
            (SweepTally::default(), SweepResult::NotSwept)
        } else {
            let plan = SweepPlan {
                cutoff: decision
                    .enforced
                    .map_or(SystemTime::UNIX_EPOCH, |days| cutoff(now, days).into()),
                pending_cutoff: decision
                    .pending
                    .as_ref()
                    .map(|p| cutoff(now, u32::try_from(p.days).unwrap_or(0)).into()),
                dry_run: config.dry_run,
                deletes_in_flight: config.deletes_in_flight,
                page_size: config.page_size,
            };
            match self.storage.sweep(tenant, &plan).await {
                Ok(outcomes) => {
                    let mut tally = SweepTally::default();
                    let mut skipped = Vec::new();
                    for (_, outcome) in outcomes {
                        match outcome {
                            SweepOutcome::Swept(t) => tally.add(&t),
                            SweepOutcome::Skipped { reason } => skipped.push(reason),
                            SweepOutcome::Unsupported { reason } => {
                                skipped.push(format!("not swept: {reason}"))
                            }
                        }
                    }
                    skipped.dedup();
                    (tally, SweepResult::Completed { skipped })
                }
                Err(failure) => (
                    failure.tally,
                    SweepResult::Failed {
                        error: failure.error.to_string(),
                    },
                ),
            }
        };
        let status = status_after(previous, &decision, config.dry_run, &tally, &result, now);
        self.write(tenant, &status).await?;
        let outcome = match &result {
            SweepResult::Completed { .. } if config.dry_run => "dry_run",
            SweepResult::Completed { .. } => "completed",
            SweepResult::Failed { .. } => "failed",
            SweepResult::NotSwept => "not_swept",
        };
        self.metrics.retention_swept(
            outcome,
            &[
                ("deleted", tally.deleted),
                ("past_retention", tally.past_retention),
                ("kept_for_hold", tally.kept_for_hold),
                ("kept_unknown_age", tally.kept_unknown_age),
                ("refused", tally.errors),
            ],
            tally.bytes_deleted,
        );
        let message = status.message.clone().unwrap_or_default();
        if let Some(note) = &decision.announce {
            self.events
                .announce(tenant, true, "RetentionShortened", note.clone())
                .await;
        }
        match result {
            SweepResult::Failed { .. } => {
                self.events
                    .announce(tenant, true, "RetentionSweepFailed", message)
                    .await
            }
            _ if tally.deleted > 0 => {
                let days = decision.enforced.unwrap_or_default();
                self.events
                    .announce(
                        tenant,
                        false,
                        "RetentionSwept",
                        format!("recordings older than {days} days: {message}"),
                    )
                    .await
            }
            _ => {}
        }
        Ok(status)
    }

    async fn write(&self, tenant: &Tenant, status: &RetentionStatus) -> Result<(), SweepError> {
        let api: Api<Tenant> = Api::all(self.client.clone());
        let patch = json!({
            "apiVersion": "recording.m365.io/v1alpha1",
            "kind": "Tenant",
            "status": { "retention": status },
        });
        api.patch_status(
            &tenant.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map(|_| ())
        .map_err(|source| SweepError::Status {
            tenant: tenant.name_any(),
            source,
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
