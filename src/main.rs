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
use recording_operator::metrics::Metrics;
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
            runtime()?.block_on(run(config, concurrency, http, leader))
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

/// glibc's allocator arenas the process may use, unless `MALLOC_ARENA_MAX` says otherwise.
const MALLOC_ARENAS: i32 = 2;

/// Caps glibc's allocator at [`MALLOC_ARENAS`] arenas, before any thread starts.
///
/// glibc gives threads up to eight arenas per core, and each keeps the memory freed into it
/// for reuse by that arena only. The operator's live heap is small (28 MiB at 1,000 tenants)
/// but passes through several runtime threads: at 1,000 tenants the default arenas held the
/// process at 71–72 MiB RSS, two arenas at 60–65 MiB, with no measurable cost in time.
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
    let client = kube_client(kube_config, idle_connections(concurrency))?;

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
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };

    let state = HttpState::new(metrics.clone());
    let router =
        http::router(state.clone()).merge(controller::consent::callback_router(client.clone()));
    let server = tokio::spawn(http::serve(http_args.http_addr, router, stopped()));

    let controllers = controller::run(
        controller::Parts {
            client: client.clone(),
            config: config.clone(),
            checker,
            metrics: metrics.clone(),
            storage,
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
            LeaderOutcome::LeadershipLost => Err(anyhow::anyhow!(
                "leadership lost; exiting so the pod restarts as a standby"
            )),
            _ => Ok(()),
        }
    } else {
        controllers.await;
        Ok(())
    };
    let _ = server.await;
    result
}

/// How many idle connections to the API server the client keeps: enough for the requests of
/// every running reconcile (three controllers, `concurrency` reconciles each, one request at
/// a time), so a busy operator reuses connections rather than opening new ones.
fn idle_connections(concurrency: u16) -> usize {
    3 * usize::from(concurrency.max(1))
}

/// Connections to the API server being opened at once; more requests wait for one of these
/// or for a connection to come free, whichever is first.
const CONNECTS_IN_FLIGHT: usize = 8;

/// An HTTP/2 connection to the API server that has carried no frame for this long is pinged.
const H2_PING_AFTER: std::time::Duration = std::time::Duration::from_secs(30);
/// A ping unanswered for this long closes the connection; requests and watches reconnect.
const H2_PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// The Kubernetes client: kube's own stack (base URL, retries of server errors, credentials,
/// extra headers, TLS, timeouts) over a connection pool that speaks HTTP/2 when the API server
/// offers it, and otherwise keeps at most `max_idle` idle HTTP/1.1 connections.
///
/// With HTTP/2 (every kube-apiserver offers it by ALPN) all requests and watches share one
/// connection, as with client-go. Over HTTP/1.1 the pool opens a connection for every request
/// that finds no idle one and finishes that connect in the background even when another
/// connection frees up first: after a burst of reconciles (1,000 onboarding Tenants) it went
/// on opening — and at once closing, beyond `max_idle` — thousands of TLS connections for
/// seconds after the last request. HTTP/1.1 stays bounded as before: at most
/// [`CONNECTS_IN_FLIGHT`] connections being opened at a time, none kept idle beyond
/// `max_idle`.
///
/// With an HTTP proxy in the kubeconfig, kube's default client is used as is.
fn kube_client(config: kube::Config, max_idle: usize) -> anyhow::Result<kube::Client> {
    use kube::client::ConfigExt as _;
    if config.proxy_url.is_some() {
        return kube::Client::try_from(config).context("building the Kubernetes client");
    }
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    // kube's TLS settings (CA, client certificate, exec identity, insecure flag), offering
    // HTTP/2 and HTTP/1.1 by ALPN, where kube's own connector offers HTTP/1.1 only.
    let mut tls = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(
            config
                .rustls_client_config()
                .context("configuring TLS for the Kubernetes API")?,
        )
        .https_or_http();
    if let Some(name) = &config.tls_server_name {
        let name = rustls::pki_types::ServerName::try_from(name.clone())
            .context("the kubeconfig's tls-server-name is not a valid server name")?;
        tls = tls.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
    }
    let https = tls.enable_all_versions().wrap_connector(http);
    let mut connector = hyper_timeout::TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let connector = tower::limit::ConcurrencyLimit::new(connector, CONNECTS_IN_FLIGHT);
    let pool = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(max_idle)
        .timer(hyper_util::rt::TokioTimer::new())
        .pool_timer(hyper_util::rt::TokioTimer::new())
        // A silent HTTP/2 connection is found out by a ping, as client-go does (a ping
        // after 30 s without frames, 15 s for its answer): every request and watch shares it.
        .http2_keep_alive_interval(H2_PING_AFTER)
        .http2_keep_alive_timeout(H2_PING_TIMEOUT)
        .http2_keep_alive_while_idle(true)
        .build(connector);
    // One debug span per request — method, path and query, status — as kube's own client
    // stack has, which this one replaces. Headers (the bearer token) are never recorded.
    let request_spans = tower_http::trace::TraceLayer::new_for_http()
        .make_span_with(|req: &::http::Request<kube::client::Body>| {
            tracing::debug_span!(
                target: KUBE_HTTP,
                "kube_request",
                http.method = %req.method(),
                http.url = %req.uri(),
                http.status_code = tracing::field::Empty,
            )
        })
        .on_request(())
        .on_response(
            |res: &::http::Response<_>, latency: std::time::Duration, span: &tracing::Span| {
                span.record("http.status_code", res.status().as_u16());
                tracing::debug!(
                    target: KUBE_HTTP,
                    latency_ms = latency.as_millis() as u64,
                    "answered"
                );
            },
        )
        .on_body_chunk(())
        .on_eos(())
        .on_failure(
            |failure: tower_http::classify::ServerErrorsFailureClass,
             latency: std::time::Duration,
             _span: &tracing::Span| {
                tracing::debug!(
                    target: KUBE_HTTP,
                    %failure,
                    latency_ms = latency.as_millis() as u64,
                    "failed"
                );
            },
        );
    let service = tower::ServiceBuilder::new()
        .layer(request_spans)
        .layer(config.base_uri_layer())
        .option_layer(config.default_retry.then(|| {
            tower::retry::RetryLayer::new(kube::client::retry::RetryPolicy::server_retry())
        }))
        .option_layer(
            config
                .auth_layer()
                .context("configuring credentials for the Kubernetes API")?,
        )
        .layer(
            config
                .extra_headers_layer()
                .context("configuring headers for the Kubernetes API")?,
        )
        .map_err(tower::BoxError::from)
        .service(pool);
    Ok(kube::Client::new(service, config.default_namespace))
}

/// Where the Kubernetes client's request spans and events go: `RUST_LOG=info,{KUBE_HTTP}=debug`
/// shows every API request with its status and duration.
const KUBE_HTTP: &str = "recording_operator::kube_http";

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
