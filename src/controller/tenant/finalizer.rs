//! The storage finalizer: a Tenant with `deletionPolicy: Delete` is held until its storage is deleted.

use super::*;

/// Finalizer that holds a `deletionPolicy: Delete` Tenant until its storage is deleted.
pub const STORAGE_FINALIZER: &str = "recording.m365.io/storage-cleanup";

/// Whether the tenant needs the storage finalizer: only when deleting it must delete storage
/// outside the cluster.
pub(super) fn needs_finalizer(tenant: &Tenant, ctx: &Context) -> bool {
    ctx.storage.is_some() && tenant.spec.deletion_policy == DeletionPolicy::Delete
}

/// Adds or removes the storage finalizer to match the deletion policy.
pub(super) async fn ensure_finalizer(tenant: &Tenant, ctx: &Context) -> Result<()> {
    let has = tenant.finalizers().iter().any(|f| f == STORAGE_FINALIZER);
    let needs = needs_finalizer(tenant, ctx);
    if has == needs {
        return Ok(());
    }
    let mut finalizers: Vec<String> = tenant
        .finalizers()
        .iter()
        .filter(|f| f.as_str() != STORAGE_FINALIZER)
        .cloned()
        .collect();
    if needs {
        finalizers.push(STORAGE_FINALIZER.to_string());
    }
    set_finalizers(tenant, finalizers, ctx).await
}

/// Replaces the finalizer list, guarded by the resourceVersion it was read at (a concurrent
/// change by someone else is a conflict and a retry, never a lost finalizer).
pub(super) async fn set_finalizers(
    tenant: &Tenant,
    finalizers: Vec<String>,
    ctx: &Context,
) -> Result<()> {
    let api: Api<Tenant> = Api::all(ctx.client.clone());
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": tenant.resource_version()}});
    let writing = ctx.caches.own_writes.writing(&tenant.name_any());
    let answer = api
        .patch(
            &tenant.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    writing.answered(&answer);
    Ok(())
}

/// A Tenant being deleted: with `deletionPolicy: Delete` its storage is deleted first; a
/// failure keeps the finalizer, says why on the Tenant, and is retried with backoff.
pub(super) async fn finalize(tenant: &Tenant, ctx: &Context) -> Result<Option<Duration>> {
    if !tenant.finalizers().iter().any(|f| f == STORAGE_FINALIZER) {
        return Ok(None);
    }
    let key = crate::controller::object_key(tenant);
    let outcome = match &ctx.storage {
        Some(storage) => storage.cleanup(tenant).await,
        None => Ok(Vec::new()),
    };
    match outcome {
        Ok(done) => {
            let note = if done.is_empty() {
                "nothing to delete".to_string()
            } else {
                done.iter()
                    .map(|(request, outcome)| {
                        format!(
                            "{} storage in {}: {outcome}",
                            request.role.as_str(),
                            request.location
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            ctx.events
                .publish(
                    tenant,
                    false,
                    "StorageDeleted",
                    "Cleanup",
                    format!("deletionPolicy Delete: {note}"),
                )
                .await;
            let rest = tenant
                .finalizers()
                .iter()
                .filter(|f| f.as_str() != STORAGE_FINALIZER)
                .cloned()
                .collect();
            set_finalizers(tenant, rest, ctx).await?;
            ctx.backoff.succeeded(&key, Retried::Cleanup);
            Ok(None)
        }
        Err(error) => {
            let message = format!(
                "deleting the tenant's storage failed, the Tenant is kept until it succeeds: {error}"
            );
            let mut status = tenant.status.clone().unwrap_or_default();
            drop_fields_of_other_managers(&mut status);
            let generation = tenant.meta().generation;
            // Only Ready changes; the other conditions stay as last computed.
            let ready = conditions::merge(
                &status.conditions,
                vec![Desired::new(
                    READY,
                    Status::False,
                    reason::CLEANUP_FAILED,
                    message.clone(),
                )],
                generation,
                Timestamp::now(),
            );
            status.conditions.retain(|c| c.type_ != READY);
            for c in &mut status.conditions {
                c.observed_generation = generation;
            }
            status.conditions.extend(ready);
            status.health = Some(Health::Warning);
            status.alarm = Some(message.clone());
            write_status(tenant, &status, ctx).await?;
            ctx.events
                .publish(tenant, true, reason::CLEANUP_FAILED, "Cleanup", message)
                .await;
            Ok(Some(ctx.backoff.failed(&key, Retried::Cleanup)))
        }
    }
}
