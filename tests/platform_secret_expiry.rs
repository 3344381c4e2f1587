//! The platform's own applications' client secrets reach the expiry gauge: with
//! `homeTenantId` configured, the operator reads every platform app's `passwordCredentials`
//! in the home tenant (through the Graph simulator, with the directory app's token) and
//! `/metrics` shows the days left beside the customers' app registrations.

mod common;

use std::time::Duration;

use common::{wait_for, Harness};
use recording_operator::demo::PlatformOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_platform_app_secret_has_its_days_to_expiry() {
    let h = Harness::start_with(PlatformOptions {
        platform_secrets: true,
        ..Default::default()
    })
    .await;
    let config = h.platform.config.clone();
    let line = |text: &str, key: &str, app_id: &str| -> Option<f64> {
        let prefix = format!(
            r#"recording_operator_client_secret_expiry_days{{kind="platform_app",owner="{key}",app_id="{app_id}"}} "#
        );
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
    };
    let metrics = wait_for(
        Duration::from_secs(30),
        || async { Some(h.metrics.encode()) },
        |text: &String| {
            config
                .consents
                .iter()
                .all(|(key, c)| line(text, key, &c.app_id).is_some())
        },
        "a gauge line per platform application",
    )
    .await;
    for (key, consent) in &config.consents {
        // The simulated platform's secrets are valid for a year.
        let days = line(&metrics, key, &consent.app_id).unwrap();
        assert!((364.0..=365.0).contains(&days), "{key}: {days}");
    }
    assert!(
        !metrics.contains("Secret\""),
        "no secret value in the metrics"
    );
    h.stop().await;
}
