//! Watches: a chunked stream of `{"type": …, "object": …}` lines, starting from a
//! resourceVersion (replaying history), from "now" with synthetic ADDED events, or with
//! `sendInitialEvents` and the initial-events-end bookmark; 410 Gone once history is gone.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use super::cluster::{in_served_form, served_cow};
use super::error::ApiError;
use super::http::{streaming_response, Shared};
use super::resources::ResourceType;
use super::selectors::Filter;
use super::store::{Change, EventType};
use super::table::{self, partial_metadata, IncludeObject};

/// How often a watch that asked for bookmarks gets one while nothing happens.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(5);

pub struct WatchRequest {
    pub rt: Arc<ResourceType>,
    pub namespace: String,
    pub filter: Filter,
    pub resource_version: String,
    pub send_initial_events: bool,
    pub bookmarks: bool,
    pub timeout: Duration,
    pub table: Option<IncludeObject>,
    pub metadata_only: bool,
}

/// Encodes one event the way this watch asked for objects.
struct Encoder {
    rt: Arc<ResourceType>,
    table: Option<IncludeObject>,
    metadata_only: bool,
    headers_sent: bool,
}

impl Encoder {
    fn event(&mut self, kind: &str, object: &Value) -> Bytes {
        let object = served_cow(&self.rt, object);
        let object = match self.table {
            Some(include) => {
                let meta = json!({"resourceVersion": object["metadata"]["resourceVersion"]});
                let t = table::table(
                    &self.rt,
                    &[object.into_owned()],
                    meta,
                    include,
                    !self.headers_sent,
                );
                self.headers_sent = true;
                Cow::Owned(t)
            }
            None if self.metadata_only => Cow::Owned(partial_metadata(&object)),
            None => object,
        };
        event_line(kind, &object)
    }

    /// The event of a change, its object as the change's JSON (shared with the write's
    /// response and the other watches) when this watch sends objects as stored.
    fn change_event(&mut self, kind: &str, change: &Change) -> Bytes {
        if self.table.is_some() || self.metadata_only || !in_served_form(&self.rt, &change.object) {
            return self.event(kind, &change.object);
        }
        let json = change.json();
        let mut out = Vec::with_capacity(json.len() + 32);
        out.extend_from_slice(b"{\"object\":");
        out.extend_from_slice(json);
        out.extend_from_slice(b",\"type\":");
        serde_json::to_writer(&mut out, kind).expect("a string serializes");
        out.extend_from_slice(b"}\n");
        Bytes::from(out)
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        line(
            json!({"type": "BOOKMARK", "object": {"kind": self.rt.kind, "apiVersion": self.rt.api_version(), "metadata": meta}}),
        )
    }
}

/// `{"object":…,"type":…}` and a newline, as `line(json!({"type": kind, "object": object}))`
/// writes it (keys in order), without copying the object into a new value first.
fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(b"{\"object\":");
    serde_json::to_writer(&mut out, object).expect("a JSON value serializes");
    out.extend_from_slice(b",\"type\":");
    serde_json::to_writer(&mut out, kind).expect("a string serializes");
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

fn line(v: Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

/// What a change means for this watch: which event (if any) it sees.
fn translate<'c>(request: &WatchRequest, change: &'c Change) -> Option<(&'static str, &'c Value)> {
    if change.key != request.rt.store_key()
        || (!request.namespace.is_empty() && change.namespace != request.namespace)
    {
        return None;
    }
    let selected = |o: &Value| {
        request.filter.selects_all() || request.filter.matches(&served_cow(&request.rt, o))
    };
    let now = selected(&change.object);
    match change.kind {
        EventType::Added => now.then_some(("ADDED", &*change.object)),
        EventType::Deleted => now.then_some(("DELETED", &*change.object)),
        EventType::Modified => {
            let before = change.previous.as_deref().is_some_and(selected);
            match (before, now) {
                (true, true) => Some(("MODIFIED", &*change.object)),
                (false, true) => Some(("ADDED", &*change.object)),
                (true, false) => Some(("DELETED", &*change.object)),
                (false, false) => None,
            }
        }
    }
}

/// The most bytes of waiting events sent as one body chunk.
const BATCH_BYTES: usize = 64 * 1024;

/// `first` and the events already waiting behind it, as one chunk: a busy watch then costs
/// one write (and one TLS record) per batch rather than per event. Lines stay whole and in
/// order; only the chunk boundaries move, which a line-reading client does not see.
fn with_waiting(first: Bytes, waiting: &mut mpsc::Receiver<Bytes>) -> Bytes {
    let mut batch: Option<Vec<u8>> = None;
    while batch.as_ref().map_or(first.len(), Vec::len) < BATCH_BYTES {
        let Ok(next) = waiting.try_recv() else { break };
        batch
            .get_or_insert_with(|| first.to_vec())
            .extend_from_slice(&next);
    }
    batch.map(Bytes::from).unwrap_or(first)
}

pub fn start(shared: Arc<Shared>, request: WatchRequest) -> Result<Response, ApiError> {
    let mut encoder = Encoder {
        rt: request.rt.clone(),
        table: request.table,
        metadata_only: request.metadata_only,
        headers_sent: false,
    };
    let mut initial: Vec<Bytes> = Vec::new();
    let (receiver, mut last_rv) = {
        let cluster = shared.lock();
        let store = &cluster.store;
        let current = store.current_rv();
        let from_now = request.resource_version.is_empty() || request.resource_version == "0";
        if request.send_initial_events || from_now {
            for o in store.list(&request.rt.store_key(), &request.namespace) {
                if request.filter.selects_all()
                    || request.filter.matches(&served_cow(&request.rt, o))
                {
                    initial.push(encoder.event("ADDED", o));
                }
            }
            if request.send_initial_events {
                initial.push(encoder.bookmark(current, true));
            }
        } else {
            let rv: u64 = request.resource_version.parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "resourceVersion: Invalid value: \"{}\": must be a non-negative integer",
                    request.resource_version
                ))
            })?;
            match store.changes_since(rv) {
                Err(oldest) => {
                    let gone =
                        ApiError::expired(format!("too old resource version: {rv} ({oldest})"));
                    initial.push(line(json!({"type": "ERROR", "object": gone.status()})));
                    let body = Body::from_stream(futures::stream::iter(
                        initial.into_iter().map(Ok::<_, std::convert::Infallible>),
                    ));
                    return Ok(streaming_response(body));
                }
                Ok(changes) => {
                    for c in changes {
                        if let Some((kind, _)) = translate(&request, &c) {
                            initial.push(encoder.change_event(kind, &c));
                        }
                    }
                }
            }
        }
        (store.subscribe(), current)
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let mut dropped = shared.drop_watches.subscribe();
    tokio::spawn(async move {
        let mut receiver = receiver;
        for chunk in initial {
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(request.timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
        ticker.tick().await;
        loop {
            let chunk = tokio::select! {
                _ = &mut deadline => return,
                _ = dropped.changed() => return,
                _ = ticker.tick(), if request.bookmarks => encoder.bookmark(last_rv, false),
                change = receiver.recv() => match change {
                    Ok(c) => {
                        if c.rv <= last_rv {
                            continue;
                        }
                        last_rv = c.rv;
                        match translate(&request, &c) {
                            Some((kind, _)) => encoder.change_event(kind, &c),
                            None => continue,
                        }
                    }
                    // Too slow or the server is going away: the client re-watches.
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let first = rx.recv().await?;
        Some((
            Ok::<_, std::convert::Infallible>(with_waiting(first, &mut rx)),
            rx,
        ))
    });
    Ok(streaming_response(Body::from_stream(stream)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_line_is_what_the_json_value_of_the_event_writes() {
        let object = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a\"b", "resourceVersion": "7"}, "data": {"k": "v\n"}});
        let expected = line(json!({"type": "MODIFIED", "object": object.clone()}));
        assert_eq!(event_line("MODIFIED", &object), expected);
    }

    #[test]
    fn a_change_event_shares_the_changes_json_and_reads_as_the_object_event() {
        let rt = super::super::resources::Registry::default()
            .find("", "v1", "configmaps")
            .unwrap();
        let (changes, _) = broadcast::channel(4);
        let mut store = super::super::store::Store::new(changes, 0);
        let change = store.put_change(
            &rt.store_key(),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "c", "namespace": "d"}, "data": {"k": "v"}}),
        );
        let mut encoder = Encoder {
            rt: rt.clone(),
            table: None,
            metadata_only: false,
            headers_sent: false,
        };
        assert_eq!(
            encoder.change_event("ADDED", &change),
            encoder.event("ADDED", &change.object)
        );
        assert_eq!(change.json(), &Bytes::from(change.object.to_string()));
    }

    #[tokio::test]
    async fn waiting_events_go_out_as_one_chunk_in_order() {
        let (tx, mut rx) = mpsc::channel::<Bytes>(8);
        let alone = with_waiting(Bytes::from_static(b"{\"a\":1}\n"), &mut rx);
        assert_eq!(alone, Bytes::from_static(b"{\"a\":1}\n"));
        for line in ["{\"b\":2}\n", "{\"c\":3}\n"] {
            tx.send(Bytes::from(line)).await.unwrap();
        }
        let batch = with_waiting(Bytes::from_static(b"{\"a\":1}\n"), &mut rx);
        assert_eq!(
            batch,
            Bytes::from_static(b"{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n")
        );
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_batch_stops_growing_past_its_limit() {
        let (tx, mut rx) = mpsc::channel::<Bytes>(8);
        let big = Bytes::from(vec![b'x'; BATCH_BYTES * 2 / 3]);
        for _ in 0..2 {
            tx.send(big.clone()).await.unwrap();
        }
        let batch = with_waiting(big.clone(), &mut rx);
        assert_eq!(batch.len(), big.len() * 2);
        assert_eq!(rx.try_recv().unwrap(), big);
    }
}
