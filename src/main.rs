//! `recording-operator`: run the controllers, print the CRDs, or try everything on loopback.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

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
        /// Operator configuration file (YAML).
        #[arg(long, env = "RECORDING_OPERATOR_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Print the CustomResourceDefinitions generated from the Rust types.
    Crdgen {
        /// Write one file per CRD into this folder instead of printing them.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Start both simulators on loopback, run the controllers against them and onboard the
    /// example tenants.
    Demo,
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
        Command::Run { .. } => anyhow::bail!("the controllers are not wired into `run` yet"),
        Command::Demo => {
            println!("demo: not yet available");
            Ok(())
        }
    }
}
