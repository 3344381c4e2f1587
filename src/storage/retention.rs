//! Retention at the storage level: the sweep of one container the operator created.
//!
//! The policy (which retention applies, when, and how often a tenant is swept) lives in
//! the top-level retention module; this module is what a sweep does to one location, given a cutoff:
//!
//! - [`verdict`], the pure rule for one blob: delete only when its creation time is known and
//!   before the cutoff, and nothing under a legal hold or an unexpired immutability policy;
//! - [`sweep_container`], the Azure Blob shell: one page of the listing at a time
//!   (`maxresults`, continuation marker kept in memory only, so memory does not grow with the
//!   container), the page's deletes with a bounded number in flight, each conditional on the
//!   ETag seen in the listing. The SDK's retry policy waits out 429/503 answers for as long as
//!   their `Retry-After` asks. Any error other than a per-blob refusal stops the sweep: what
//!   was deleted stays deleted, nothing more is, and the next sweep lists again from the start.
//!
//! Blob Batch (`comp=batch`, up to 256 deletes per request) would cut the request count, but
//! the `azure_storage_blob` 1.x SDK does not expose it; deletes are single requests, several in
//! flight.

use std::time::{Duration, SystemTime};

use azure_core::time::OffsetDateTime;
use azure_storage_blob::models::{
    BlobClientDeleteOptions, BlobContainerClientListBlobsOptions, BlobItem,
    DeleteSnapshotsOptionType, ListBlobsIncludeItem,
};
use azure_storage_blob::BlobContainerClient;
use futures::{StreamExt, TryStreamExt};

use super::StorageError;

// ---------------------------------------------------------------------------------------------
// The rule for one blob
// ---------------------------------------------------------------------------------------------

/// What one sweep of one location is asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SweepPlan {
    /// Blobs created before this instant are past retention.
    pub cutoff: SystemTime,
    /// A shortened retention waiting for its grace period: blobs created before this (and not
    /// before `cutoff`) are counted, not deleted, so the announcement can say how many.
    pub pending_cutoff: Option<SystemTime>,
    /// Count, never delete.
    pub dry_run: bool,
    pub deletes_in_flight: usize,
    pub page_size: u32,
}

/// What the sweep does with one blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Past retention, and nothing holds it.
    Delete,
    /// Within retention.
    Keep,
    /// Within retention, but past a pending shortened one.
    KeepPending,
    /// The listing gave no creation time: its age is unknown, so it stays.
    UnknownAge,
    /// Past retention, but under a legal hold or an unexpired immutability policy.
    Held,
}

/// The rule for one blob, from what the listing says of it.
pub fn verdict(
    created: Option<SystemTime>,
    legal_hold: bool,
    immutable_until: Option<SystemTime>,
    now: SystemTime,
    plan: &SweepPlan,
) -> Verdict {
    let Some(created) = created else {
        return Verdict::UnknownAge;
    };
    if created >= plan.cutoff {
        return match plan.pending_cutoff {
            Some(pending) if created < pending => Verdict::KeepPending,
            _ => Verdict::Keep,
        };
    }
    if legal_hold || immutable_until.is_some_and(|until| until > now) {
        return Verdict::Held;
    }
    Verdict::Delete
}

/// What a sweep of one location did (or, in a dry run, would have done).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepTally {
    /// Blobs listed.
    pub listed: u64,
    /// Blobs past retention (deleted, or in a dry run to be deleted).
    pub past_retention: u64,
    pub deleted: u64,
    pub bytes_deleted: u64,
    /// Past retention but under a legal hold or immutability policy.
    pub kept_for_hold: u64,
    /// Without a readable creation time.
    pub kept_unknown_age: u64,
    /// Within retention but past a pending shortened retention.
    pub pending: u64,
    /// Deletes refused for a reason of the blob's own (a lease, a changed ETag).
    pub errors: u64,
    /// Requests sent to the storage service (listing pages and deletes).
    pub requests: u64,
}

impl SweepTally {
    pub fn add(&mut self, other: &SweepTally) {
        self.listed += other.listed;
        self.past_retention += other.past_retention;
        self.deleted += other.deleted;
        self.bytes_deleted += other.bytes_deleted;
        self.kept_for_hold += other.kept_for_hold;
        self.kept_unknown_age += other.kept_unknown_age;
        self.pending += other.pending;
        self.errors += other.errors;
        self.requests += other.requests;
    }
}

/// What became of a location's sweep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SweepOutcome {
    Swept(SweepTally),
    /// The location is not the operator's for this tenant (adopted, another tenant's, another
    /// cluster's), or it does not exist: nothing is listed, nothing deleted.
    Skipped {
        reason: String,
    },
    /// The backend has no blob ages (PersistentVolumeClaims): the recording bots keep the
    /// retention of their configuration.
    Unsupported {
        reason: String,
    },
}

/// A sweep that stopped: what it did until then, and why it stopped.
#[derive(Debug)]
pub struct SweepFailure {
    pub tally: SweepTally,
    pub error: StorageError,
}

// ---------------------------------------------------------------------------------------------
// The Azure Blob shell
// ---------------------------------------------------------------------------------------------

/// How one deletion ended.
enum Deleted {
    Yes(u64),
    /// Already gone: someone else deleted it.
    Gone,
    /// Refused because of a legal hold or immutability policy.
    Held,
    /// Refused for a reason of this blob (lease, ETag changed since the listing).
    Refused,
}

fn system_time(at: OffsetDateTime) -> Option<SystemTime> {
    let nanos = at.unix_timestamp_nanos();
    let nanos = u64::try_from(nanos).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos))
}

/// Sweeps one container page by page; `classify` turns SDK errors into [`StorageError`]s and
/// `timeout` bounds each request.
pub(super) async fn sweep_container(
    client: &BlobContainerClient,
    endpoint: &str,
    plan: &SweepPlan,
    timeout: Duration,
    classify: fn(azure_core::Error, &str) -> StorageError,
) -> Result<SweepTally, SweepFailure> {
    let mut tally = SweepTally::default();
    let mut marker: Option<String> = None;
    loop {
        let options = BlobContainerClientListBlobsOptions {
            marker: marker.clone(),
            maxresults: Some(i32::try_from(plan.page_size).unwrap_or(5000)),
            include: Some(vec![
                ListBlobsIncludeItem::LegalHold,
                ListBlobsIncludeItem::ImmutabilityPolicy,
            ]),
            ..Default::default()
        };
        tally.requests += 1;
        let page = async {
            let mut pages = client.list_blobs(Some(options))?.into_pages();
            match pages.try_next().await? {
                Some(page) => page.into_model().map(Some),
                None => Ok(None),
            }
        };
        let page = match tokio::time::timeout(timeout, page).await {
            Ok(Ok(page)) => page,
            Ok(Err(e)) => {
                return Err(SweepFailure {
                    tally,
                    error: classify(e, endpoint),
                })
            }
            Err(_) => {
                return Err(SweepFailure {
                    tally,
                    error: StorageError::Timeout {
                        endpoint: endpoint.to_string(),
                        seconds: timeout.as_secs(),
                    },
                })
            }
        };
        let Some(page) = page else { break };
        let now = SystemTime::now();
        let mut doomed: Vec<BlobItem> = Vec::new();
        for blob in page.blob_items {
            tally.listed += 1;
            let properties = blob.properties.as_ref();
            let created = properties
                .and_then(|p| p.creation_time)
                .and_then(system_time);
            let legal_hold = properties.and_then(|p| p.legal_hold).unwrap_or(false);
            let immutable_until = properties
                .and_then(|p| p.immutability_policy_expires_on)
                .and_then(system_time);
            match verdict(created, legal_hold, immutable_until, now, plan) {
                Verdict::Delete => {
                    tally.past_retention += 1;
                    if !plan.dry_run && blob.name.is_some() {
                        doomed.push(blob);
                    }
                }
                Verdict::Keep => {}
                Verdict::KeepPending => tally.pending += 1,
                Verdict::UnknownAge => tally.kept_unknown_age += 1,
                Verdict::Held => {
                    tally.past_retention += 1;
                    tally.kept_for_hold += 1;
                }
            }
        }
        let mut first_error = None;
        let mut outcomes = futures::stream::iter(doomed)
            .map(|blob| delete_blob(client, endpoint, blob, timeout, classify))
            .buffer_unordered(plan.deletes_in_flight.max(1));
        while let Some(outcome) = outcomes.next().await {
            tally.requests += 1;
            match outcome {
                Ok(Deleted::Yes(bytes)) => {
                    tally.deleted += 1;
                    tally.bytes_deleted += bytes;
                }
                Ok(Deleted::Gone) => {}
                Ok(Deleted::Held) => tally.kept_for_hold += 1,
                Ok(Deleted::Refused) => tally.errors += 1,
                Err(error) => {
                    // Stop here: the deletes still in flight are dropped (each either happened
                    // or not; the next sweep lists again), none is started.
                    first_error = Some(error);
                    break;
                }
            }
        }
        drop(outcomes);
        if let Some(error) = first_error {
            return Err(SweepFailure { tally, error });
        }
        marker = page.next_marker.filter(|m| !m.is_empty());
        if marker.is_none() {
            break;
        }
    }
    Ok(tally)
}

/// Deletes one blob (with its snapshots) if it is still the one listed.
async fn delete_blob(
    client: &BlobContainerClient,
    endpoint: &str,
    blob: BlobItem,
    timeout: Duration,
    classify: fn(azure_core::Error, &str) -> StorageError,
) -> Result<Deleted, StorageError> {
    let name = blob.name.unwrap_or_default();
    let properties = blob.properties.unwrap_or_default();
    let options = BlobClientDeleteOptions {
        delete_snapshots: Some(DeleteSnapshotsOptionType::Include),
        if_match: properties.etag,
        ..Default::default()
    };
    let blob_client = client.blob_client(&name);
    let result = tokio::time::timeout(timeout, blob_client.delete(Some(options)))
        .await
        .map_err(|_| StorageError::Timeout {
            endpoint: endpoint.to_string(),
            seconds: timeout.as_secs(),
        })?;
    match result {
        Ok(_) => Ok(Deleted::Yes(properties.content_length.unwrap_or(0))),
        Err(e) => {
            let (status, code) = match e.kind() {
                azure_core::error::ErrorKind::HttpResponse {
                    status, error_code, ..
                } => (u16::from(*status), error_code.clone().unwrap_or_default()),
                _ => (0, String::new()),
            };
            match (status, code.as_str()) {
                (404, _) => Ok(Deleted::Gone),
                (409, "BlobImmutableDueToPolicy" | "BlobImmutableDueToLegalHold") => {
                    Ok(Deleted::Held)
                }
                (412, _) | (409, "LeaseIdMissing" | "LeaseIdMismatchWithBlobOperation") => {
                    tracing::info!(%endpoint, blob = %name, code, "blob past retention kept: the storage service refused its deletion");
                    Ok(Deleted::Refused)
                }
                _ => Err(classify(e, endpoint)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn plan(cutoff: u64, pending: Option<u64>) -> SweepPlan {
        SweepPlan {
            cutoff: at(cutoff),
            pending_cutoff: pending.map(at),
            dry_run: false,
            deletes_in_flight: 4,
            page_size: 100,
        }
    }

    #[test]
    fn only_a_known_age_past_the_cutoff_is_deleted() {
        let p = plan(1000, None);
        let now = at(5000);
        assert_eq!(
            verdict(Some(at(999)), false, None, now, &p),
            Verdict::Delete
        );
        assert_eq!(verdict(Some(at(1000)), false, None, now, &p), Verdict::Keep);
        assert_eq!(verdict(Some(at(4000)), false, None, now, &p), Verdict::Keep);
        assert_eq!(verdict(None, false, None, now, &p), Verdict::UnknownAge);
    }

    #[test]
    fn holds_and_unexpired_immutability_keep_old_blobs() {
        let p = plan(1000, None);
        let now = at(5000);
        assert_eq!(verdict(Some(at(1)), true, None, now, &p), Verdict::Held);
        assert_eq!(
            verdict(Some(at(1)), false, Some(at(6000)), now, &p),
            Verdict::Held
        );
        // An immutability period that has run out no longer protects the blob.
        assert_eq!(
            verdict(Some(at(1)), false, Some(at(4000)), now, &p),
            Verdict::Delete
        );
        // A hold on a young blob is irrelevant: it is kept anyway, and not counted as held.
        assert_eq!(verdict(Some(at(2000)), true, None, now, &p), Verdict::Keep);
    }

    #[test]
    fn a_pending_shorter_retention_only_counts() {
        let p = plan(1000, Some(3000));
        let now = at(5000);
        assert_eq!(
            verdict(Some(at(500)), false, None, now, &p),
            Verdict::Delete
        );
        assert_eq!(
            verdict(Some(at(2000)), false, None, now, &p),
            Verdict::KeepPending
        );
        assert_eq!(verdict(Some(at(3500)), false, None, now, &p), Verdict::Keep);
    }
}
