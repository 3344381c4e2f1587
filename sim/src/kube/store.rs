//! Object storage: one global resourceVersion counter (like etcd's revision), the objects of
//! every resource, and a bounded history of changes that watches replay from.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
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
    /// Shared with the store (and with the next change's `previous`): never copied.
    pub object: Arc<Value>,
    /// The object before a modification (to tell selector entry/exit apart).
    pub previous: Option<Arc<Value>>,
    /// `object` as JSON, written once by whichever needs it first: the write's response or
    /// a watch sending the event.
    json: OnceLock<Bytes>,
}

impl Change {
    /// The object as JSON (what `object.to_string()` gives).
    pub fn json(&self) -> &Bytes {
        self.json.get_or_init(|| {
            Bytes::from(serde_json::to_vec(&*self.object).expect("a JSON value serializes"))
        })
    }
}

pub type ObjectKey = (String, String); // (namespace, name)

pub struct Store {
    rv: u64,
    objects: BTreeMap<StoreKey, BTreeMap<ObjectKey, Arc<Value>>>,
    /// Owners as garbage collection needs them: which stored objects carry a uid, and which
    /// name each uid in their ownerReferences (so dependents are found without a scan).
    owners: Owners,
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
            owners: Owners::default(),
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
            .map(|o| &**o)
    }

    /// The stored object itself, shared rather than copied.
    pub fn shared(&self, key: &StoreKey, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.objects
            .get(key)?
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Objects of a resource, in namespace/name order; `namespace` empty means all.
    pub fn list(&self, key: &StoreKey, namespace: &str) -> Vec<&Value> {
        self.objects_after(key, namespace, None)
            .map(|(_, v)| v)
            .collect()
    }

    /// How many objects of a resource one namespace holds (all of them when empty).
    pub fn count(&self, key: &StoreKey, namespace: &str) -> usize {
        self.objects_after(key, namespace, None).count()
    }

    /// Objects of a resource in namespace/name order (`namespace` empty means all), starting
    /// after the key `after` when given. One namespace is a contiguous range of the
    /// (namespace, name) keys, so reading it costs its own size, not the whole resource's.
    pub fn objects_after<'a>(
        &'a self,
        key: &StoreKey,
        namespace: &str,
        after: Option<&ObjectKey>,
    ) -> impl Iterator<Item = (&'a ObjectKey, &'a Value)> + 'a {
        let first = (namespace.to_string(), String::new());
        let start = match after {
            Some(after) if *after >= first => Bound::Excluded(after.clone()),
            _ => Bound::Included(first.clone()),
        };
        let namespace = first.0;
        self.objects
            .get(key)
            .map(|objs| objs.range((start, Bound::Unbounded)))
            .into_iter()
            .flatten()
            .take_while(move |((ns, _), _)| namespace.is_empty() || *ns == namespace)
            .map(|(k, v)| (k, &**v))
    }

    /// The resources and names of every object in one (non-empty) namespace.
    pub fn in_namespace(&self, namespace: &str) -> Vec<(StoreKey, String)> {
        self.objects
            .iter()
            .flat_map(|(key, objs)| {
                objs.range((namespace.to_string(), String::new())..)
                    .take_while(|((ns, _), _)| ns == namespace)
                    .map(|((_, name), _)| (key.clone(), name.clone()))
            })
            .collect()
    }

    /// Is some stored object's `metadata.uid` this one?
    pub fn uid_exists(&self, uid: &str) -> bool {
        self.owners.uids.get(uid).is_some_and(|n| *n > 0)
    }

    /// The objects naming `owner_uid` in their ownerReferences, in resource/namespace/name
    /// order.
    pub fn dependents(&self, owner_uid: &str) -> Vec<(StoreKey, ObjectKey, Value)> {
        self.owners
            .dependents
            .get(owner_uid)
            .into_iter()
            .flatten()
            .filter_map(|(key, at)| {
                let object = self.objects.get(key)?.get(at)?;
                Some((key.clone(), at.clone(), (**object).clone()))
            })
            .collect()
    }

    /// Write an object (create or replace), assigning the next resourceVersion.
    pub fn put(&mut self, key: &StoreKey, object: Value) -> Arc<Value> {
        self.put_change(key, object).object.clone()
    }

    /// [`Store::put`], answering with the change it recorded.
    pub fn put_change(&mut self, key: &StoreKey, mut object: Value) -> Arc<Change> {
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
        let object = Arc::new(object);
        let at = (ns.clone(), name);
        let previous = self
            .objects
            .entry(key.clone())
            .or_default()
            .insert(at.clone(), object.clone());
        if let Some(previous) = &previous {
            self.owners.forget(key, &at, previous);
        }
        self.owners.note(key, &at, &object);
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
            object,
            previous,
            json: OnceLock::new(),
        })
    }

    /// Remove an object for good; the DELETED event carries a fresh resourceVersion.
    pub fn remove(&mut self, key: &StoreKey, namespace: &str, name: &str) -> Option<Arc<Value>> {
        let stored = self
            .objects
            .get_mut(key)?
            .remove(&(namespace.to_string(), name.to_string()))?;
        self.owners
            .forget(key, &(namespace.to_string(), name.to_string()), &stored);
        self.rv += 1;
        let mut object = Arc::unwrap_or_clone(stored);
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let object = Arc::new(object);
        self.record(Change {
            rv: self.rv,
            key: key.clone(),
            namespace: namespace.to_string(),
            kind: EventType::Deleted,
            object: object.clone(),
            previous: None,
            json: OnceLock::new(),
        });
        Some(object)
    }

    fn record(&mut self, change: Change) -> Arc<Change> {
        let change = Arc::new(change);
        self.history.push_back(change.clone());
        while self.history.len() > HISTORY_LIMIT {
            if let Some(old) = self.history.pop_front() {
                self.oldest_watchable = old.rv;
            }
        }
        // No receivers is fine: nobody watches.
        let _ = self.changes.send(change.clone());
        change
    }

    /// Changes after `rv`, or `Err(oldest)` when history no longer reaches back that far.
    pub fn changes_since(&self, rv: u64) -> Result<Vec<Arc<Change>>, u64> {
        if rv < self.oldest_watchable {
            return Err(self.oldest_watchable + 1);
        }
        // History is in resourceVersion order: find the first newer change, then copy the rest.
        let first = self.history.partition_point(|c| c.rv <= rv);
        Ok(self.history.range(first..).cloned().collect())
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
        self.owners = Owners::default();
        self.compact();
    }
}

/// The uids of stored objects (counted: nothing stops two objects from carrying the same one)
/// and, per uid, the objects whose ownerReferences name it.
#[derive(Default)]
struct Owners {
    uids: HashMap<String, usize>,
    dependents: HashMap<String, BTreeSet<(StoreKey, ObjectKey)>>,
}

impl Owners {
    fn note(&mut self, key: &StoreKey, at: &ObjectKey, object: &Value) {
        if let Some(uid) = object["metadata"]["uid"].as_str() {
            *self.uids.entry(uid.to_string()).or_default() += 1;
        }
        for owner in owner_uids(object) {
            self.dependents
                .entry(owner.to_string())
                .or_default()
                .insert((key.clone(), at.clone()));
        }
    }

    fn forget(&mut self, key: &StoreKey, at: &ObjectKey, object: &Value) {
        if let Some(uid) = object["metadata"]["uid"].as_str() {
            if let Some(n) = self.uids.get_mut(uid) {
                *n -= 1;
                if *n == 0 {
                    self.uids.remove(uid);
                }
            }
        }
        for owner in owner_uids(object) {
            if let Some(set) = self.dependents.get_mut(owner) {
                set.remove(&(key.clone(), at.clone()));
                if set.is_empty() {
                    self.dependents.remove(owner);
                }
            }
        }
    }
}

fn owner_uids(object: &Value) -> impl Iterator<Item = &str> {
    object["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["uid"].as_str())
}
