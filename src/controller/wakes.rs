//! Requests to reconcile a Tenant now, from whatever notices a reason: a grant's watch, an
//! owned object changed behind the operator's back.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::runtime::reflector::ObjectRef;

use crate::crd::Tenant;

/// Requests to reconcile Tenants, by name, that a controller takes through
/// `Controller::reconcile_on`: a name already waiting is not queued again.
///
/// A burst of grant events (four or five per tenant) can find a controller with every
/// reconcile slot busy, when kube-runtime does not read its triggers; a plain unbounded channel would then
/// hold one request per event. Here at most one request per Tenant waits.
#[derive(Clone)]
pub struct Wakes {
    waiting: Arc<Mutex<std::collections::HashSet<String>>>,
    sender: futures::channel::mpsc::UnboundedSender<String>,
}

impl Wakes {
    /// The sending side, and the stream of requests for the controller.
    pub fn new() -> (
        Self,
        impl futures::Stream<Item = ObjectRef<Tenant>> + Send + 'static,
    ) {
        let (sender, receiver) = futures::channel::mpsc::unbounded::<String>();
        let waiting: Arc<Mutex<std::collections::HashSet<String>>> = Default::default();
        let taken = waiting.clone();
        let requests = receiver.map(move |name| {
            taken.lock().expect("wakes lock").remove(&name);
            ObjectRef::new(&name)
        });
        (Self { waiting, sender }, requests)
    }

    /// Asks for a reconcile of the Tenant `name`, unless one is already waiting.
    pub fn wake(&self, name: &str) {
        let mut waiting = self.waiting.lock().expect("wakes lock");
        if !waiting.contains(name) {
            // Fails only when the controllers are shutting down.
            if self.sender.unbounded_send(name.to_string()).is_ok() {
                waiting.insert(name.to_string());
            }
        }
    }
}
