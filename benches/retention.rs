//! Retention sweep benchmark: one container of many recordings, a tenth of them past retention.
//!
//! `cargo bench --bench retention -- [--blobs 100000] [--page-size 1000] [--in-flight 16]`
//!
//! Azurite (the real emulator) first runs 400 days in the past (libfaketime) while the old
//! recordings are written, then restarts on the real clock for the young ones, so the ages are
//! Azurite's own. The sweep is the operator's code, in this process: the Azure backend's sweep
//! of one location. Two containers are swept, a small one (a tenth of `--blobs`) and the large
//! one, so the memory figures show whether the sweep's memory grows with the container.
//! Reported: time, blobs deleted per second, requests per deleted blob, and this process's
//! resident memory before and at its peak during each sweep (sampled every 20 ms).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use recording_operator::config::{AccountConfig, EnvSecrets, SecretRef, StorageConfig};
use recording_operator::storage::azure::AzureBlobBackend;
use recording_operator::storage::retention::{SweepOutcome, SweepPlan};
use recording_operator::storage::{container_name, EnsureStorage, ManagedRole, StorageBackend};
use sim::azurite::{Azurite, BlobData, SasPermissions};

const DAY: Duration = Duration::from_secs(86_400);
const REGION: &str = "westeurope";
/// Size of each recording (the sweep never reads contents; only the count matters).
const BLOB_BYTES: usize = 64;

struct Args {
    blobs: usize,
    page_size: u32,
    in_flight: usize,
}

fn args() -> Args {
    let mut args = Args {
        blobs: 100_000,
        page_size: 1000,
        in_flight: 16,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().and_then(|v| v.parse::<usize>().ok());
        match arg.as_str() {
            "--blobs" => args.blobs = value().expect("--blobs N"),
            "--page-size" => args.page_size = value().expect("--page-size N") as u32,
            "--in-flight" => args.in_flight = value().expect("--in-flight N"),
            _ => {} // cargo bench passes --bench
        }
    }
    args
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn request(tenant: &str) -> EnsureStorage {
    EnsureStorage {
        tenant: tenant.to_string(),
        location: REGION.to_string(),
        role: ManagedRole::Default,
        retention_days: Some(365),
        license: "Essentials".to_string(),
        tenant_uid: Some(format!("uid-{tenant}")),
    }
}

async fn write(data: &BlobData, container: &str, prefix: &str, n: usize) -> Duration {
    let started = Instant::now();
    let results: Vec<_> = futures::stream::iter(0..n)
        .map(|i| async move {
            data.put_blob(
                container,
                &format!("{prefix}-{i:07}"),
                vec![b'r'; BLOB_BYTES],
            )
            .await
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for r in results {
        r.expect("blob written");
    }
    started.elapsed()
}

struct Figures {
    blobs: usize,
    deleted: u64,
    requests: u64,
    elapsed: Duration,
    rss_before_mib: f64,
    rss_peak_mib: f64,
}

async fn sweep(backend: &AzureBlobBackend, tenant: &str, blobs: usize, args: &Args) -> Figures {
    let plan = SweepPlan {
        cutoff: SystemTime::now() - 365 * DAY,
        pending_cutoff: None,
        dry_run: false,
        deletes_in_flight: args.in_flight,
        page_size: args.page_size,
    };
    let before = rss_kib();
    let peak = Arc::new(AtomicU64::new(before));
    let sampler = tokio::spawn({
        let peak = peak.clone();
        async move {
            loop {
                peak.fetch_max(rss_kib(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let started = Instant::now();
    let outcome = backend.sweep(&request(tenant), &plan).await;
    let elapsed = started.elapsed();
    sampler.abort();
    let tally = match outcome {
        Ok(SweepOutcome::Swept(tally)) => tally,
        other => panic!("the sweep did not run: {other:?}"),
    };
    assert_eq!(tally.deleted as usize, blobs / 10, "{tally:?}");
    Figures {
        blobs,
        deleted: tally.deleted,
        requests: tally.requests,
        elapsed,
        rss_before_mib: before as f64 / 1024.0,
        rss_peak_mib: peak.load(Ordering::Relaxed) as f64 / 1024.0,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let mut azurite = Azurite::start_behind(&[REGION], Some(400 * DAY))
        .await
        .expect("Azurite starts under libfaketime (run scripts/install-test-deps.sh)");
    let sas = azurite
        .account_sas(REGION, SasPermissions::OPERATOR, 3 * 365 * DAY)
        .unwrap();
    // SAFETY of intent: the benchmark sets its own variable before any thread reads it.
    std::env::set_var("BENCH_STORAGE_SAS", sas);
    let config = StorageConfig {
        accounts: [(
            REGION.to_string(),
            AccountConfig {
                endpoint: azurite.account_endpoint(REGION).unwrap(),
                credential: SecretRef::Env("BENCH_STORAGE_SAS".into()),
                signing_key: None,
            },
        )]
        .into(),
        ..Default::default()
    };
    let backend = AzureBlobBackend::new(&config, Arc::new(EnvSecrets)).unwrap();
    let data = azurite.data_client(REGION).unwrap();
    let sizes = [("small", args.blobs / 10), ("large", args.blobs)];
    for (tenant, _) in sizes {
        backend.ensure(&request(tenant)).await.expect("container");
    }
    let mut wrote = Duration::ZERO;
    for (tenant, n) in sizes {
        wrote += write(
            &data,
            &container_name(tenant, ManagedRole::Default),
            "old",
            n / 10,
        )
        .await;
    }
    azurite.set_clock_behind(None);
    azurite.start_again().await.unwrap();
    for (tenant, n) in sizes {
        wrote += write(
            &data,
            &container_name(tenant, ManagedRole::Default),
            "young",
            n - n / 10,
        )
        .await;
    }
    let written = sizes.iter().map(|(_, n)| n).sum::<usize>();
    println!(
        "wrote {written} blobs in {:.1} s ({:.0}/s)",
        wrote.as_secs_f64(),
        written as f64 / wrote.as_secs_f64()
    );
    println!(
        "| container | blobs | deleted | time (s) | deleted/s | requests per deleted blob | RSS before (MiB) | RSS peak (MiB) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (tenant, n) in sizes {
        let f = sweep(&backend, tenant, n, &args).await;
        println!(
            "| {tenant} | {} | {} | {:.1} | {:.0} | {:.3} | {:.1} | {:.1} |",
            f.blobs,
            f.deleted,
            f.elapsed.as_secs_f64(),
            f.deleted as f64 / f.elapsed.as_secs_f64(),
            f.requests as f64 / f.deleted as f64,
            f.rss_before_mib,
            f.rss_peak_mib,
        );
    }
    azurite.stop().await;
}
