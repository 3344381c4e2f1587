#![allow(dead_code)]

//! The real `kubectl` against the Kubernetes simulator, with a kubeconfig of its own.

use std::path::{Path, PathBuf};
use std::process::Output;

use sim::kube::KubeSim;

pub struct Kubectl {
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl Kubectl {
    pub fn new(sim: &KubeSim, test: &str) -> Kubectl {
        let dir =
            std::env::temp_dir().join(format!("recording-operator-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = dir.join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig).unwrap();
        Kubectl { dir, kubeconfig }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub async fn run(&self, args: &[&str]) -> Output {
        tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.join("cache"))
            .args(args)
            .env("HOME", &self.dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .kill_on_drop(true)
            .output()
            .await
            .expect("kubectl runs (scripts/install-test-deps.sh installs it)")
    }

    /// Runs and expects success; returns standard output.
    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Kubectl {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
