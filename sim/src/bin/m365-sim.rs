//! Runs the Microsoft identity platform + Graph simulator on its own, from a YAML seed.
//!
//! `m365-sim --listen 127.0.0.1:8365 --seed sim/examples/m365-seed.yaml`

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use sim::m365::{M365Sim, Seed};

/// Microsoft identity platform + Graph simulator (tests and demos only).
#[derive(Debug, Parser)]
#[command(name = "m365-sim", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8365")]
    listen: SocketAddr,
    /// YAML seed file: tenants, apps, secrets, consents, settings (see sim/README.md).
    #[arg(long)]
    seed: PathBuf,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let seed = Seed::load(&args.seed)?;
    let summary = format!(
        "{} tenant(s), {} app(s)",
        seed.tenants.len(),
        seed.apps.len()
    );
    let sim = M365Sim::start_on(args.listen, seed).await?;
    println!(
        "m365-sim listening on {} ({summary}); Ctrl-C stops it",
        sim.url()
    );
    println!("authority and Graph endpoint: {}", sim.url());
    tokio::signal::ctrl_c().await?;
    sim.shutdown().await;
    Ok(())
}
