//! `kube-sim`: the Kubernetes API simulator as a standalone server.
//!
//! `kube-sim --listen 127.0.0.1:6443 --kubeconfig ./kubeconfig` writes a kubeconfig for
//! `kubectl --kubeconfig ./kubeconfig` and serves until Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use sim::kube::{KubeSim, KubeSimConfig};

#[derive(Parser)]
#[command(about = "Kubernetes API simulator on loopback (tests and demos only)")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Where to write the kubeconfig.
    #[arg(long, default_value = "kubeconfig")]
    kubeconfig: PathBuf,
    /// Bearer token clients must present (random when absent).
    #[arg(long, env = "KUBE_SIM_TOKEN")]
    token: Option<String>,
    /// Milliseconds until a created or changed Deployment reports ready.
    #[arg(long, default_value_t = 300)]
    deployment_ready_ms: u64,
    /// Serve plain HTTP instead of HTTPS (kubectl then sends no token, so it cannot log in).
    #[arg(long)]
    plain_http: bool,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    // RUST_LOG=sim=debug logs every request (method, URL, Accept, status code).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let mut config = KubeSimConfig {
        deployment_ready_delay: Duration::from_millis(args.deployment_ready_ms),
        tls: !args.plain_http,
        ..KubeSimConfig::default()
    };
    if let Some(token) = args.token {
        config.token = token;
    }
    let sim = KubeSim::start_on(args.listen, config).await?;
    sim.write_kubeconfig(&args.kubeconfig)?;
    println!(
        "kube-sim serving {} (kubeconfig: {})",
        sim.url(),
        args.kubeconfig.display()
    );
    tokio::signal::ctrl_c().await?;
    sim.shutdown().await;
    Ok(())
}
