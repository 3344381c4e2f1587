//! `recording-operator demo`: the whole onboarding story on one machine, with no cluster and no
//! Microsoft cloud — both simulators on loopback, the operator's controllers in this process,
//! the example manifests applied, and the customer's admin (played by the demo, or by you with
//! `curl -L`) accepting each consent link while the tenant table changes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kube::api::Api;
use kube::ResourceExt;

use super::{Platform, PlatformOptions, StorageMode};
use crate::crd::{Health, Tenant};
use crate::signals::StopSignals;

/// The example manifests, built into the binary so the demo runs from any folder.
const EXAMPLES: &[(&str, &str)] = &[
    (
        "tenant-essentials.yaml",
        include_str!("../../deploy/examples/tenant-essentials.yaml"),
    ),
    (
        "tenant-pro-byos.yaml",
        include_str!("../../deploy/examples/tenant-pro-byos.yaml"),
    ),
    (
        "recording-service.yaml",
        include_str!("../../deploy/examples/recording-service.yaml"),
    ),
];

/// Azurite version the demo installs when it is missing.
const AZURITE_PACKAGE: &str = "azurite@3.37.0";
/// MailDev version the demo installs when it is missing.
const MAILDEV_PACKAGE: &str = "maildev@2.2.1";

#[derive(Clone, Debug, clap::Args)]
pub struct DemoArgs {
    /// Do not play the customer's admin: accept the consent links yourself (`curl -L '<url>'`).
    #[arg(long)]
    pub no_auto_consent: bool,
    /// Where to write the kubeconfig for `kubectl`.
    #[arg(long, default_value = "demo.kubeconfig")]
    pub kubeconfig: PathBuf,
    /// Exit 0 once every example tenant is Ready (non-zero after --timeout).
    #[arg(long)]
    pub exit_when_ready: bool,
    /// How long --exit-when-ready waits.
    #[arg(long, default_value = "300s", value_parser = humantime_serde::re::humantime::parse_duration)]
    pub timeout: Duration,
    /// Address of the operator's metrics and probes endpoint (/metrics, /healthz, /readyz).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub http_addr: SocketAddr,
    /// Address of the operator's public listener (/consent/callback, the Quick Start pages).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub public_addr: SocketAddr,
    /// Pause before the simulated admin accepts the links.
    #[arg(long, default_value = "3s", value_parser = humantime_serde::re::humantime::parse_duration)]
    pub consent_pause: Duration,
}

/// Runs the demo; returns the process exit code.
///
/// SIGINT (Ctrl-C) and SIGTERM stop it in order at any point — the controllers, then Azurite,
/// then the simulators — and it exits 0. Its child processes die with it even when it is killed
/// outright (see [`sim::process`]).
pub async fn run(args: DemoArgs) -> anyhow::Result<i32> {
    let mut signals = StopSignals::listen()?;
    let listener = crate::http::bind(args.http_addr).await?;
    let addr = listener.local_addr()?;
    let public_listener = crate::http::bind(args.public_addr).await?;
    let public_addr = public_listener.local_addr()?;
    let platform = tokio::select! {
        started = start_platform(public_addr) => started?,
        signal = signals.recv() => {
            // Dropping what was started so far kills the children among it.
            println!("{signal}: stopped while starting.");
            return Ok(0);
        }
    };
    let platform = std::sync::Arc::new(platform);
    platform.kube.write_kubeconfig(&args.kubeconfig)?;
    let kubeconfig = std::fs::canonicalize(&args.kubeconfig).unwrap_or(args.kubeconfig.clone());

    println!("Simulated Kubernetes API:        {}", platform.kube.url());
    println!(
        "Simulated Microsoft identity/Graph: {}",
        platform.m365.url()
    );
    println!("Operator metrics:                http://{addr}/metrics");
    println!("Operator public listener:        http://{public_addr} (/consent/callback, Quick Start pages)");
    match &platform.azurite {
        Some(azurite) => {
            let azurite = azurite.lock().await;
            println!("Storage:                         Azure Blob on Azurite (one account per region + the customer's own)");
            println!(
                "Azurite:                         {} (process {}, data in {})",
                azurite.blob_service_url(),
                azurite.pid().map(|p| p.to_string()).unwrap_or_default(),
                azurite.data_dir().display()
            );
        }
        None => println!("Storage:                         PersistentVolumeClaims (Azurite not available: fabrikam's bring-your-own-storage cannot be reached and stays Warning)"),
    }
    match &platform.maildev {
        Some(maildev) => {
            let web = maildev.lock().await.web_url();
            println!("E-mail to the contacts:          SMTP on MailDev, web UI {web} (REST: {web}/email)");
        }
        None => println!("E-mail to the contacts:          none (MailDev not available)"),
    }
    if platform.signin.is_some() {
        let users: Vec<String> = super::CUSTOMERS
            .iter()
            .flat_map(|(_, domain)| {
                super::CUSTOMER_ADMINS
                    .iter()
                    .map(move |name| format!("{name}@{domain}"))
            })
            .collect();
        println!(
            "Sign-in on the Quick Start pages: {} (password {}); a Tenant's page admits only its spec.adminUpns",
            users.join(", "),
            super::DEMO_PASSWORD
        );
    }
    println!();
    println!(
        "Use kubectl against it:\n  export KUBECONFIG={}\n  kubectl get recording -A\n",
        kubeconfig.display()
    );
    println!(
        "Stop it with Ctrl-C or SIGTERM (kill {}).\n",
        std::process::id()
    );

    // The operator: controllers in this process, plus its HTTP endpoint.
    let (metrics_tx, metrics_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let operator = {
        let platform = platform.clone();
        let stop = stopped();
        tokio::spawn(async move { platform.run_operator(Some(metrics_tx), stop).await })
    };
    let metrics = metrics_rx.await?;
    let public = platform
        .public_router()
        .layer(axum::middleware::from_fn_with_state(
            metrics.clone(),
            crate::metrics::count_public_request,
        ));
    let state = crate::http::HttpState::new(metrics);
    state.ready.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::spawn(crate::http::serve_on(
        listener,
        crate::http::router(state),
        stopped(),
    ));
    tokio::spawn(crate::http::public::serve(
        public_listener,
        public,
        stopped(),
    ));

    let outcome = tokio::select! {
        outcome = onboard_examples(&platform, &args) => outcome,
        signal = signals.recv() => {
            println!("{signal}: stopping the operator, Azurite and the simulators ...");
            Ok(0)
        }
    };
    let _ = stop_tx.send(true);
    let _ = operator.await;
    platform.stop().await;
    println!("Stopped.");
    outcome
}

/// Azurite if it can be had, then both simulators as one platform, whose apps send the admin
/// back to the operator's public listener at `public_addr`.
async fn start_platform(public_addr: SocketAddr) -> anyhow::Result<Platform> {
    let storage = prepare_azurite().await;
    let maildev = prepare_maildev().await;
    let platform = Platform::start(PlatformOptions {
        redirect_uri: format!("http://{public_addr}/consent/callback"),
        storage,
        maildev,
        sign_in: true,
        polling: crate::config::PollingConfig {
            pending_initial: Duration::from_secs(2),
            pending_max: Duration::from_secs(10),
            granted_interval: Duration::from_secs(6 * 3600),
            check_cache_ttl: Duration::from_millis(500),
            ..Default::default()
        },
        ..Default::default()
    })
    .await?;
    Ok(platform)
}

/// Applies the example manifests, prints the tenant table as it changes and plays the
/// customer's admin; returns the exit code once `--exit-when-ready` is settled, else runs until
/// it is stopped.
async fn onboard_examples(platform: &Platform, args: &DemoArgs) -> anyhow::Result<i32> {
    for (file, yaml) in EXAMPLES {
        // The RecordingService lives in the tenant's namespace, which exists once the operator
        // has reconciled the Tenant: retry as Argo CD or Flux would.
        let deadline = Instant::now() + Duration::from_secs(60);
        let applied = loop {
            match platform.apply_yaml(yaml).await {
                Ok(applied) => break applied,
                Err(super::DemoError::Kube(kube::Error::Api(s)))
                    if s.code == 404 && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        println!("applied deploy/examples/{file}: {}", applied.join(", "));
    }
    println!();

    let names: Vec<String> = EXAMPLES
        .iter()
        .flat_map(|(_, yaml)| yaml.split("\n---"))
        .filter(|doc| doc.contains("kind: Tenant"))
        .filter_map(|doc| {
            doc.lines()
                .skip_while(|l| !l.starts_with("metadata:"))
                .find_map(|l| l.trim().strip_prefix("name: ").map(str::to_string))
        })
        .collect();

    let started = Instant::now();
    let mut last_table = String::new();
    let mut consented = args.no_auto_consent;
    let mut links_shown = false;
    let http = reqwest::Client::new();
    let tenants: Api<Tenant> = Api::all(platform.client.clone());
    let code = loop {
        let list = tenants.list(&Default::default()).await?.items;
        let table = tenant_table(&list);
        if table != last_table {
            println!("[{:>5.1}s]\n{table}", started.elapsed().as_secs_f64());
            last_table = table;
        }
        let linked = names.iter().all(|n| {
            list.iter()
                .find(|t| &t.name_any() == n)
                .and_then(|t| t.status.as_ref())
                .is_some_and(|s| {
                    !s.consents.is_empty() && s.consents.iter().all(|c| c.consent_url.is_some())
                })
        });
        if linked && !links_shown {
            links_shown = true;
            print_links(&list, &names);
            if args.no_auto_consent {
                println!(
                    "Open a Quick Start page in a browser and click each consent as the customer's Global admin would\n(or open each consent link, e.g.  curl -L '<link>')\n"
                );
            }
        }
        if linked && !consented {
            println!(
                "The customer's Global admin opens each link in {:?} ...",
                args.consent_pause
            );
            tokio::time::sleep(args.consent_pause).await;
            for name in &names {
                let accepted = platform.accept_all_consents(name, &http).await?;
                println!("  {name}: admin accepted {accepted} consent link(s)");
            }
            println!();
            consented = true;
        }
        let all_ready = names
            .iter()
            .all(|n| list.iter().any(|t| &t.name_any() == n && is_ready(t)));
        // With e-mail, the "you are live" e-mails are part of the story: wait for them too.
        let all_told = platform.maildev.is_none()
            || names.iter().all(|n| {
                list.iter()
                    .any(|t| &t.name_any() == n && live_e_mail_sent(t))
            });
        if args.exit_when_ready && all_ready && all_told {
            println!("Every example tenant is Ready.");
            if platform.maildev.is_some() {
                print_notifications(&list, &names);
            }
            break 0;
        }
        if args.exit_when_ready && started.elapsed() > args.timeout {
            eprintln!(
                "Not every example tenant was Ready within {:?}.",
                args.timeout
            );
            break 1;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    Ok(code)
}

fn live_e_mail_sent(t: &Tenant) -> bool {
    t.status.as_ref().is_some_and(|s| {
        s.notifications.iter().any(|n| {
            n.kind == crate::crd::NotificationKind::TenantLive
                && n.state == crate::crd::NotificationState::Sent
        })
    })
}

/// What each tenant's contacts were sent, from `status.notifications`.
fn print_notifications(tenants: &[Tenant], names: &[String]) {
    println!("E-mails sent to the contacts (status.notifications):");
    for t in tenants.iter().filter(|t| names.contains(&t.name_any())) {
        for n in t.status.iter().flat_map(|s| &s.notifications) {
            println!(
                "  {}: {} {:?} to {} recipient(s)",
                t.name_any(),
                n.kind.as_str(),
                n.state,
                n.recipients
            );
        }
    }
    println!();
}

fn is_ready(t: &Tenant) -> bool {
    t.status.as_ref().is_some_and(|s| {
        s.health == Some(Health::Ok)
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
            && s.observed_generation == t.metadata.generation
    })
}

/// The tenants as `kubectl get tenants` shows them.
pub fn tenant_table(tenants: &[Tenant]) -> String {
    let mut rows = vec![["NAME", "CUSTOMER", "LICENSE", "USERS", "STATUS", "READY"]
        .map(String::from)
        .to_vec()];
    for t in tenants {
        let status = t.status.clone().unwrap_or_default();
        rows.push(vec![
            t.name_any(),
            t.spec.customer_name.clone(),
            status.license_type.unwrap_or_default(),
            t.spec.included_users.to_string(),
            match status.health {
                Some(Health::Ok) => "OK".into(),
                Some(Health::Warning) => "Warning".into(),
                None => String::new(),
            },
            status
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")
                .map(|c| c.status.clone())
                .unwrap_or_default(),
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    for t in tenants {
        if let Some(alarm) = t.status.as_ref().and_then(|s| s.alarm.as_ref()) {
            out.push_str(&format!("  {}: {alarm}\n", t.name_any()));
        }
    }
    out
}

fn print_links(tenants: &[Tenant], names: &[String]) {
    println!("Quick Start pages (the link the customer's admin receives):");
    for t in tenants.iter().filter(|t| names.contains(&t.name_any())) {
        let url = t.status.as_ref().and_then(|s| s.quick_start_url.as_deref());
        println!("  {}: {}", t.name_any(), url.unwrap_or("(not signed yet)"));
    }
    println!();
    println!("Consent links to hand each customer's Global admin:");
    for t in tenants.iter().filter(|t| names.contains(&t.name_any())) {
        for c in t.status.iter().flat_map(|s| &s.consents) {
            println!(
                "  {} / {}{}: {}",
                t.name_any(),
                c.name,
                if c.optional { " (optional)" } else { "" },
                c.consent_url.as_deref().unwrap_or("")
            );
        }
    }
    println!();
}

/// Azure Blob storage on Azurite when it can be had — installed by the project's
/// `scripts/install-test-deps.sh`, or installed now from the npm registry into a cache folder —
/// else PersistentVolumeClaims.
async fn prepare_azurite() -> StorageMode {
    if npm_tool(
        "AZURITE_BLOB_BIN",
        "azurite-blob",
        "the Azure Storage emulator",
    )
    .await
    .is_some()
    {
        StorageMode::Azurite
    } else {
        println!(
            "Could not install Azurite (is npm installed?); using PersistentVolumeClaims instead."
        );
        StorageMode::Pvc
    }
}

/// Whether MailDev, a real SMTP server for the example tenants' e-mails, can be had (found or
/// installed like Azurite); without it the demo sends no e-mail.
async fn prepare_maildev() -> bool {
    let found = npm_tool("MAILDEV_BIN", "maildev", "the MailDev SMTP server")
        .await
        .is_some();
    if !found {
        println!("Could not install MailDev (is npm installed?); the demo sends no e-mail.");
    }
    found
}

/// The npm tool `node_modules/.bin/<bin>`: named by the environment variable `env`, in this
/// folder or one above it (`scripts/install-test-deps.sh`), or installed now from the npm
/// registry into a cache folder; `env` then names it for the harness that starts it.
async fn npm_tool(env: &str, bin: &str, what: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path));
    }
    let rel = format!("node_modules/.bin/{bin}");
    if let Some(local) = std::env::current_dir()
        .ok()
        .and_then(|cwd| cwd.ancestors().map(|d| d.join(&rel)).find(|p| p.is_file()))
    {
        return Some(local);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("recording-operator-demo");
    let path = cache.join(&rel);
    if !path.is_file() {
        println!(
            "Installing {what} ({AZURITE_PACKAGE}, {MAILDEV_PACKAGE}) from the npm registry into {} ...",
            cache.display()
        );
        let _ = std::fs::create_dir_all(&cache);
        // Both tools at once: npm removes from the folder what a `--no-save` install omits.
        let mut npm = tokio::process::Command::new("npm");
        npm.args([
            "install",
            "--no-save",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            "--prefix",
        ])
        .arg(&cache)
        .args([AZURITE_PACKAGE, MAILDEV_PACKAGE]);
        let status = match sim::process::spawn_child(npm) {
            Ok(mut child) => child.wait().await,
            Err(e) => Err(e),
        };
        if !matches!(status, Ok(s) if s.success()) || !path.is_file() {
            return None;
        }
    }
    std::env::set_var(env, &path);
    Some(path)
}
