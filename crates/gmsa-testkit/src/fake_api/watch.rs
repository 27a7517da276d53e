//! WATCH streams: newline-delimited JSON events, replayed from history and then live, with
//! bookmarks and the 410 `Expired` error, following the 1.20 watch cache.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{broadcast, watch as signal};
use tokio::time::Instant;

use super::resources::ResourceType;
use super::selector::{FieldSelector, LabelSelector};
use super::status::Status;
use super::store::Change;
use super::{lock, Shared};

/// The real server's last bookmark comes this long before the watch times out.
const FINAL_BOOKMARK_LEAD: Duration = Duration::from_secs(2);

/// Where a watch begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatchStart {
    /// `resourceVersion` unset or `0`: synthetic ADDED events for what exists, then changes.
    Now,
    /// Every change after this resourceVersion.
    After(u64),
}

#[derive(Debug, Clone)]
pub(crate) struct WatchRequest {
    pub rt: ResourceType,
    pub version: String,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub start: WatchStart,
    pub bookmarks: bool,
    pub timeout: Duration,
}

impl WatchRequest {
    fn selects(&self, object: &Value) -> bool {
        let in_namespace = self.namespace.as_deref().is_none_or(|ns| {
            object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                == Some(ns)
        });
        in_namespace && self.labels.matches(object) && self.fields.matches(object)
    }

    /// The event a change makes for this watch, if any. Objects that start or stop matching
    /// the selectors show up as ADDED or DELETED, as the watch cache reports them.
    fn event_for(&self, change: &Change) -> Option<Bytes> {
        let was = change.prev.as_deref().is_some_and(|o| self.selects(o));
        match change.object.as_deref() {
            Some(now) if self.selects(now) => {
                Some(self.encode(if was { "MODIFIED" } else { "ADDED" }, now, None))
            }
            _ if was => change
                .prev
                .as_deref()
                .map(|prev| self.encode("DELETED", prev, Some(change.rv))),
            _ => None,
        }
    }

    fn encode(&self, kind: &str, object: &Value, resource_version: Option<u64>) -> Bytes {
        let mut object = self.rt.served(object, &self.version);
        if let Some(rv) = resource_version {
            if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.insert("resourceVersion".into(), json!(rv.to_string()));
            }
        }
        encode_event(kind, &object)
    }
}

#[derive(Serialize)]
struct WireEvent<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    object: &'a Value,
}

fn encode_event(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&WireEvent { kind, object }).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// Counts a watch as open for as long as its stream lives.
struct OpenWatch {
    shared: Arc<Shared>,
    resource: &'static str,
}

impl OpenWatch {
    fn new(shared: Arc<Shared>, resource: &'static str) -> Self {
        *lock(&shared.open_watches).entry(resource).or_default() += 1;
        Self { shared, resource }
    }
}

impl Drop for OpenWatch {
    fn drop(&mut self) {
        if let Some(n) = lock(&self.shared.open_watches).get_mut(self.resource) {
            *n = n.saturating_sub(1);
        }
    }
}

struct Watcher {
    request: WatchRequest,
    queue: VecDeque<Bytes>,
    changes: broadcast::Receiver<Arc<Change>>,
    cuts: signal::Receiver<u64>,
    shutdown: signal::Receiver<bool>,
    /// Live changes up to here were already replayed from history.
    replayed_through: u64,
    /// Bookmarks go out only for versions past this, as the cache watcher filters them.
    bookmark_floor: u64,
    /// The last change to this resource type, whatever the selectors: what bookmarks carry.
    resource_rv: u64,
    bookmark_interval: Duration,
    next_bookmark: Option<Instant>,
    deadline: Instant,
    finished: bool,
    _open: OpenWatch,
}

enum Wake {
    Change(Arc<Change>),
    Bookmark,
    End,
}

/// Opens a watch and returns its body stream.
pub(crate) fn stream(
    shared: Arc<Shared>,
    request: WatchRequest,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let watcher = open(shared, request);
    futures::stream::unfold(watcher, |mut watcher| async move {
        let chunk = watcher.next_chunk().await?;
        Some((Ok(chunk), watcher))
    })
}

fn open(shared: Arc<Shared>, request: WatchRequest) -> Watcher {
    let rt = request.rt;
    let namespace = request.namespace.clone();
    let store = lock(&shared.store);
    // Subscribing under the store lock makes history and live changes meet without a gap.
    let changes = shared.changes.subscribe();
    let cuts = shared.cuts.subscribe();
    let shutdown = shared.shutdown.subscribe();
    let current = store.resource_version();
    let mut queue = VecDeque::new();
    let mut finished = *shutdown.borrow();
    let (replayed_through, bookmark_floor) = match request.start {
        WatchStart::Now => {
            for (_, object) in store.snapshot(&rt, namespace.as_deref(), current) {
                if request.selects(&object) {
                    queue.push_back(request.encode("ADDED", &object, None));
                }
            }
            (current, 0)
        }
        WatchStart::After(rv) if rv < store.compacted() => {
            let status = Status::expired(format!(
                "too old resource version: {rv} ({})",
                store.compacted()
            ));
            queue.push_back(encode_event("ERROR", &status.to_value()));
            finished = true;
            (rv, rv)
        }
        WatchStart::After(rv) => {
            for change in store.changes_since(&rt, namespace.as_deref(), rv) {
                if let Some(event) = request.event_for(&change) {
                    queue.push_back(event);
                }
            }
            (current.max(rv), rv)
        }
    };
    let resource_rv = store.last_change(rt.plural);
    drop(store);

    let now = Instant::now();
    let deadline = now + request.timeout;
    let bookmark_interval = shared.options.bookmark_interval;
    let mut watcher = Watcher {
        queue,
        changes,
        cuts,
        shutdown,
        replayed_through,
        bookmark_floor,
        resource_rv,
        bookmark_interval,
        next_bookmark: None,
        deadline,
        finished,
        _open: OpenWatch::new(shared, rt.plural),
        request,
    };
    watcher.schedule_bookmark(now);
    watcher
}

impl Watcher {
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if let Some(chunk) = self.queue.pop_front() {
                return Some(chunk);
            }
            if self.finished {
                return None;
            }
            let bookmark_at = self.next_bookmark;
            // Biased so that a cut or shutdown wins over changes made after it: a test that
            // cuts and then writes knows the write is not delivered on the old stream.
            let wake = tokio::select! {
                biased;
                _ = self.shutdown.changed() => Wake::End,
                _ = self.cuts.changed() => Wake::End,
                () = tokio::time::sleep_until(self.deadline) => Wake::End,
                received = self.changes.recv() => match received {
                    Ok(change) => Wake::Change(change),
                    // A watcher that cannot keep up is closed, as the watch cache does.
                    Err(_) => Wake::End,
                },
                () = sleep_until_some(bookmark_at) => Wake::Bookmark,
            };
            match wake {
                Wake::Change(change) => self.on_change(&change),
                Wake::Bookmark => self.on_bookmark_due(),
                Wake::End => self.finished = true,
            }
        }
    }

    fn on_change(&mut self, change: &Change) {
        if change.resource != self.request.rt.plural {
            return;
        }
        self.resource_rv = self.resource_rv.max(change.rv);
        if change.rv <= self.replayed_through {
            return;
        }
        if let Some(event) = self.request.event_for(change) {
            self.queue.push_back(event);
        }
    }

    fn on_bookmark_due(&mut self) {
        // 1.20 sends no bookmark before this resource changed at all, nor one that would not
        // move the client past where it started.
        if self.resource_rv != 0 && self.resource_rv > self.bookmark_floor {
            let object = self
                .request
                .rt
                .bookmark(&self.request.version, self.resource_rv);
            self.queue.push_back(encode_event("BOOKMARK", &object));
        }
        self.schedule_bookmark(Instant::now());
    }

    /// Every interval, and once just before the deadline, like `nextBookmarkTime` upstream.
    fn schedule_bookmark(&mut self, now: Instant) {
        if !self.request.bookmarks {
            self.next_bookmark = None;
            return;
        }
        let mut next = now + self.bookmark_interval;
        if let Some(final_one) = self.deadline.checked_sub(FINAL_BOOKMARK_LEAD) {
            if final_one < next {
                next = final_one;
            }
        }
        self.next_bookmark = (next > now).then_some(next);
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
