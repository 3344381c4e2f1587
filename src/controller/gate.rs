//! A readiness flag for the caches that any number of tasks can wait on.

use std::sync::Arc;

use kube::runtime::watcher;

/// A flag that opens once, when a cache's first list has completed, and that any number of
/// tasks can wait for.
///
/// kube-runtime's `Store::wait_until_ready` wakes only the last of several tasks waiting at
/// once (its readiness is a oneshot channel, which keeps one waker): reconciles, which wait
/// by the dozen, would never wake. The gate is opened where a watch stream passes its first
/// `InitDone`, after the store took it.
#[derive(Clone)]
pub struct Gate(Arc<tokio::sync::watch::Sender<bool>>);

impl Default for Gate {
    fn default() -> Self {
        Self(Arc::new(tokio::sync::watch::channel(false).0))
    }
}

impl Gate {
    pub fn open(&self) {
        self.0.send_replace(true);
    }

    pub fn is_open(&self) -> bool {
        *self.0.borrow()
    }

    /// Returns once the gate is open; at once after that.
    pub async fn wait(&self) {
        let mut open = self.0.subscribe();
        let _ = open.wait_for(|o| *o).await;
    }

    /// Opens the gate when `event` ends a list.
    pub fn open_on<K, E>(&self, event: &Result<watcher::Event<K>, E>) {
        if matches!(event, Ok(watcher::Event::InitDone)) {
            self.open();
        }
    }
}
