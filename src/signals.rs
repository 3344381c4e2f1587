//! The signals that stop the operator and the demo: Ctrl-C (SIGINT) and SIGTERM, which `kill`,
//! `timeout`, systemd, process managers and the kubelet send. Both lead to the same orderly
//! stop; neither ends the process on the spot once [`StopSignals::listen`] has run.

use std::io;

/// Listens for SIGINT and SIGTERM from the moment it is made.
pub struct StopSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Takes both signals over at once (call it before starting anything that must be stopped
    /// in order); must be called within a Tokio runtime.
    pub fn listen() -> io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// Waits for the next stop signal and names it (`SIGINT` or `SIGTERM`).
    pub async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => "SIGINT",
                _ = self.terminate.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}
