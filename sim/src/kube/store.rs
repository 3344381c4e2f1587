//! Object storage: one global resourceVersion counter (like etcd's revision), the objects of
//! every resource, and a bounded history of changes that watches replay from.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::resources::StoreKey;

/// How many past changes a watch can resume from before it gets 410 Gone.
const HISTORY_LIMIT: usize = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One change, as recorded in history and broadcast to open watches.
#[derive(Debug)]
pub struct Change {
    pub rv: u64,
    pub key: StoreKey,
    pub namespace: String,
    pub kind: EventType,
    pub object: Value,
    /// The object before a modification (to tell selector entry/exit apart).
    pub previous: Option<Value>,
}

pub type ObjectKey = (String, String); // (namespace, name)

pub struct Store {
    rv: u64,
    objects: BTreeMap<StoreKey, BTreeMap<ObjectKey, Value>>,
    history: VecDeque<Arc<Change>>,
    /// Watches must start at or after this resourceVersion.
    oldest_watchable: u64,
    changes: broadcast::Sender<Arc<Change>>,
}

impl Store {
    pub fn new(changes: broadcast::Sender<Arc<Change>>, start_rv: u64) -> Self {
        Store {
            rv: start_rv,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            oldest_watchable: start_rv,
            changes,
        }
    }

    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    pub fn oldest_watchable(&self) -> u64 {
        self.oldest_watchable
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.changes.subscribe()
    }

    pub fn get(&self, key: &StoreKey, namespace: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(key)?
            .get(&(namespace.to_string(), name.to_string()))
    }

    /// Objects of a resource, in namespace/name order; `namespace` empty means all.
    pub fn list(&self, key: &StoreKey, namespace: &str) -> Vec<&Value> {
        match self.objects.get(key) {
            None => Vec::new(),
            Some(objs) => objs
                .iter()
                .filter(|((ns, _), _)| namespace.is_empty() || ns == namespace)
                .map(|(_, v)| v)
                .collect(),
        }
    }

    /// Every object of every resource: for garbage collection and namespace cleanup.
    pub fn all(&self) -> Vec<(StoreKey, ObjectKey, &Value)> {
        self.objects
            .iter()
            .flat_map(|(k, objs)| objs.iter().map(move |(ok, v)| (k.clone(), ok.clone(), v)))
            .collect()
    }

    /// Write an object (create or replace), assigning the next resourceVersion.
    pub fn put(&mut self, key: &StoreKey, mut object: Value) -> Value {
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let previous = self
            .objects
            .entry(key.clone())
            .or_default()
            .insert((ns.clone(), name), object.clone());
        let kind = if previous.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(Change {
            rv: self.rv,
            key: key.clone(),
            namespace: ns,
            kind,
            object: object.clone(),
            previous,
        });
        object
    }

    /// Remove an object for good; the DELETED event carries a fresh resourceVersion.
    pub fn remove(&mut self, key: &StoreKey, namespace: &str, name: &str) -> Option<Value> {
        let mut object = self
            .objects
            .get_mut(key)?
            .remove(&(namespace.to_string(), name.to_string()))?;
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record(Change {
            rv: self.rv,
            key: key.clone(),
            namespace: namespace.to_string(),
            kind: EventType::Deleted,
            object: object.clone(),
            previous: None,
        });
        Some(object)
    }

    fn record(&mut self, change: Change) {
        let change = Arc::new(change);
        self.history.push_back(change.clone());
        while self.history.len() > HISTORY_LIMIT {
            if let Some(old) = self.history.pop_front() {
                self.oldest_watchable = old.rv;
            }
        }
        // No receivers is fine: nobody watches.
        let _ = self.changes.send(change);
    }

    /// Changes after `rv`, or `Err(oldest)` when history no longer reaches back that far.
    pub fn changes_since(&self, rv: u64) -> Result<Vec<Arc<Change>>, u64> {
        if rv < self.oldest_watchable {
            return Err(self.oldest_watchable + 1);
        }
        Ok(self.history.iter().filter(|c| c.rv > rv).cloned().collect())
    }

    /// Forget all history: every resourceVersion handed out so far becomes too old to watch
    /// from (the compaction itself takes a revision, as etcd's does).
    pub fn compact(&mut self) {
        self.history.clear();
        self.rv += 1;
        self.oldest_watchable = self.rv;
    }

    /// Drop every object (a fresh cluster) while keeping the counter moving forward.
    pub fn wipe(&mut self) {
        self.objects.clear();
        self.compact();
    }
}
