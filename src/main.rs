//! `recording-operator`: run the controllers, print the CRDs, or try everything on loopback.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use recording_operator::config::{OperatorConfig, SecretSource, Secrets};
use recording_operator::controller::{self, RunOptions};
use recording_operator::graph::ConsentChecker;
use recording_operator::http::{self, HttpArgs, HttpState};
use recording_operator::leader::{LeaderArgs, LeaderOutcome};
use recording_operator::links::QuickStartLinks;
use recording_operator::metrics::Metrics;
use recording_operator::signals::StopSignals;
use recording_operator::storage::{backend_from_config, tenant::TenantStorage};
use recording_operator::telemetry::{self, LogArgs};

#[derive(Parser)]
#[command(name = "recording-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers against the cluster of the kubeconfig (or the in-cluster account).
    Run {
        /// Operator configuration file (YAML); see docs/operations.md.
        #[arg(long, env = "RECORDING_OPERATOR_CONFIG")]
        config: Option<PathBuf>,
        /// Reconciles running at once per controller.
        #[arg(long, default_value_t = 16)]
        concurrency: u16,
        #[command(flatten)]
        http: HttpArgs,
        #[command(flatten)]
        leader: LeaderArgs,
        #[command(flatten)]
        log: LogArgs,
    },
    /// Print the CustomResourceDefinitions generated from the Rust types.
    Crdgen {
        /// Write one file per CRD into this folder instead of printing them.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Start both simulators on loopback, run the controllers against them and onboard the
    /// example tenants (deploy/examples/).
    #[cfg(feature = "demo")]
    Demo(recording_operator::demo::runner::DemoArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crdgen { out_dir: None } => {
            print!("{}", recording_operator::crd::crds_yaml());
            Ok(())
        }
        Command::Crdgen { out_dir: Some(dir) } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for crd in recording_operator::crd::crds() {
                let path = dir.join(recording_operator::crd::crd_file_name(&crd));
                std::fs::write(&path, recording_operator::crd::crd_yaml(&crd))
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(())
        }
        Command::Run {
            config,
            concurrency,
            http,
            leader,
            log,
        } => {
            telemetry::init(log.log_format)?;
            let runtime = runtime()?;
            let result = runtime.block_on(run(config, concurrency, http, leader));
            // Whatever is still running (a connection, a blocking lookup) does not hold the
            // exit: leadership lost must end the process promptly.
            runtime.shutdown_timeout(EXIT_GRACE);
            result
        }
        #[cfg(feature = "demo")]
        Command::Demo(args) => {
            let code = runtime()?.block_on(recording_operator::demo::runner::run(args))?;
            std::process::exit(code);
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    limit_malloc_arenas();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Longest the process waits for its HTTP servers and tasks once it is exiting.
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// glibc's allocator arenas the process may use, unless `MALLOC_ARENA_MAX` says otherwise.
const MALLOC_ARENAS: i32 = 2;

/// Caps glibc's allocator at [`MALLOC_ARENAS`] arenas, before any thread starts.
///
/// glibc gives threads up to eight arenas per core, and each keeps the memory freed into it
/// for reuse by that arena only; the operator's heap passes through several runtime threads.
/// Two arenas keep the resident set lower at no measurable cost in time (figures in
/// BENCHMARKS.md).
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes allocator tuning; called before the runtime's threads.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
        }
    }
}

/// The operator process: configuration, clients, the HTTP endpoint, and the controllers while
/// this replica leads.
async fn run(
    config_path: Option<PathBuf>,
    concurrency: u16,
    http_args: HttpArgs,
    leader: LeaderArgs,
) -> anyhow::Result<()> {
    let config =
        OperatorConfig::load(config_path.as_deref()).context("reading the configuration")?;
    config.validate().context("invalid configuration")?;
    let config = Arc::new(config);
    let kube_config = kube::Config::infer()
        .await
        .context("connecting to Kubernetes (kubeconfig or in-cluster service account)")?;
    let client = recording_operator::kube_client::build(
        kube_config,
        recording_operator::kube_client::idle_connections(concurrency),
    )?;

    let secrets: Arc<dyn SecretSource> = Arc::new(Secrets::with_kube(client.clone()));
    let checker =
        ConsentChecker::new(&config, secrets.clone()).context("configuring the Graph client")?;
    let metrics = Metrics::new(checker.counters());
    let storage = match &config.storage {
        Some(storage_config) => {
            let backend = backend_from_config(storage_config, client.clone(), secrets.clone())
                .context("configuring storage")?;
            Some(TenantStorage::new(
                storage_config,
                backend,
                secrets.clone(),
                config.operator_namespace.clone(),
            ))
        }
        None => None,
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut signals = StopSignals::listen().context("listening for SIGINT and SIGTERM")?;
    let signal_stop = stop_tx.clone();
    tokio::spawn(async move {
        let signal = signals.recv().await;
        tracing::info!(signal, "shutting down");
        let _ = signal_stop.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };

    let links = QuickStartLinks::from_config(&config, secrets.clone());
    if links.is_none() {
        tracing::info!("no publicUrl configured: Tenants get no Quick Start link");
    }
    let state = HttpState::new(metrics.clone());
    let server = tokio::spawn(http::serve(
        http_args.http_addr,
        http::router(state.clone()),
        stopped(),
    ));
    // The public listener answers on every replica, leader or not: it reads the API server.
    let signin =
        recording_operator::signin::SignIn::from_config(&config, secrets.as_ref(), client.clone())
            .await
            .context("configuring sign-in")?;
    if signin.is_some() {
        tracing::info!("sign-in with Microsoft is on: /signin/start, /signin/callback");
    }
    let limits = http_args.public_limits();
    let public = http::public::router_with(
        http::public::PublicState {
            client: client.clone(),
            config: config.clone(),
            links: links.clone(),
            signin,
        },
        &limits,
    );
    let public = public.layer(axum::middleware::from_fn_with_state(
        metrics.clone(),
        recording_operator::metrics::count_public_request,
    ));
    let public_listener = http::bind(http_args.public_addr).await?;
    let public_server = tokio::spawn(http::public::serve_with(
        public_listener,
        public,
        limits.max_connections,
        stopped(),
    ));

    let controllers = controller::run(
        controller::Parts {
            client: client.clone(),
            config: config.clone(),
            checker,
            metrics: metrics.clone(),
            storage,
            links,
        },
        RunOptions {
            concurrency,
            ..Default::default()
        },
        state.ready.clone(),
        stopped(),
    );
    let result = if leader.enabled {
        // A standby is ready: it serves /metrics and waits for the Lease.
        state.ready.store(true, std::sync::atomic::Ordering::SeqCst);
        let elector = leader
            .elector(client.clone())?
            .with_metrics(metrics.clone());
        match elector.run_as_leader(controllers, stopped()).await? {
            LeaderOutcome::LeadershipLost => {
                // The controllers are stopped already; /healthz fails from now on, and the
                // process exits without waiting for a signal.
                state
                    .healthy
                    .store(false, std::sync::atomic::Ordering::SeqCst);
                let _ = stop_tx.send(true);
                Err(anyhow::anyhow!(
                    "leadership lost; exiting so the pod restarts as a standby"
                ))
            }
            _ => Ok(()),
        }
    } else {
        controllers.await;
        Ok(())
    };
    // Requests in flight finish; when leadership was lost, for a short while only.
    let servers = async {
        let _ = server.await;
        let _ = public_server.await;
    };
    if result.is_err() {
        let _ = tokio::time::timeout(EXIT_GRACE, servers).await;
    } else {
        servers.await;
    }
    result
}
