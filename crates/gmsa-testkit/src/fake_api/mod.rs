//! A loopback fake of kube-apiserver 1.20, serving the resources the GMSA webhook reads.
//!
//! Tests point a real client (`kube::Config::new(url)`) at it, so the client's own paging,
//! watch resumption, bookmark and 410 handling run as they would against a cluster. The wire
//! shapes and messages follow captures from a real 1.20 server.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use gmsa_testkit::FakeApiServer;
//!
//! let server = FakeApiServer::start().await;
//! server
//!     .apply(serde_json::json!({
//!         "apiVersion": "windows.k8s.io/v1",
//!         "kind": "GMSACredentialSpec",
//!         "metadata": { "name": "gmsa-webapp1" },
//!         "credspec": { "CmsPlugins": ["ActiveDirectory"] }
//!     }))
//!     .expect("a credential spec");
//! // Point the code under test at `server.url()`, e.g. `kube::Config::new(url)`, then
//! // assert on what it asked for.
//! assert_eq!(server.gets("gmsacredentialspecs"), 0);
//! server.shutdown().await;
//! # }
//! ```

mod http;
mod reachability;
mod resources;
mod review;
mod selector;
mod shared;
mod status;
mod store;
mod watch;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::sync::{broadcast, watch as signal};
use tokio::task::JoinHandle;

use resources::ResourceType;
pub(crate) use shared::*;
use store::{Change, Key, Store, WriteError, WriteMode, Written};

/// How many unread changes a watch may fall behind before the server drops it, as the real
/// watch cache drops watchers that do not keep up.
const WATCH_BUFFER: usize = 4096;

/// Tuning for the fake; the defaults suit tests (fast bookmarks), not fidelity of timing.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// How often an open watch that allows bookmarks gets one. The real server sends one a
    /// minute (and one 2 s before the watch times out).
    pub bookmark_interval: Duration,
    /// How long a watch without `timeoutSeconds` stays open; the real server picks 30–60 min.
    pub default_watch_timeout: Duration,
    /// How long a LIST for a resourceVersion the server has not reached waits before it fails
    /// with 504, as the real watch cache waits 3 s.
    pub future_version_wait: Duration,
}

impl Default for FakeOptions {
    fn default() -> Self {
        Self {
            bookmark_interval: Duration::from_secs(1),
            default_watch_timeout: Duration::from_secs(1800),
            future_version_wait: Duration::from_secs(3),
        }
    }
}

impl FakeOptions {
    /// Sets [`FakeOptions::bookmark_interval`].
    pub fn bookmark_interval(mut self, interval: Duration) -> Self {
        self.bookmark_interval = interval;
        self
    }
}

/// Why the test side could not change the fake's state.
#[derive(Debug, thiserror::Error)]
pub enum FakeApiError {
    /// No loopback port could be bound.
    #[error("cannot listen on 127.0.0.1")]
    Bind(#[source] std::io::Error),
    /// The object is not a JSON object.
    #[error("an object must be a JSON object with apiVersion, kind and metadata.name")]
    NotAnObject,
    /// The kind (or `apiVersion`) is not one the fake serves.
    #[error("the fake API server does not serve {api_version} {kind}; it serves GMSACredentialSpec, ClusterRole, ClusterRoleBinding, Role and RoleBinding")]
    UnsupportedKind { api_version: String, kind: String },
    /// The object has neither `metadata.name` nor `metadata.generateName`.
    #[error("{kind} has no metadata.name")]
    MissingName { kind: String },
    /// The object does not decode as its kind (e.g. a binding without `roleRef`).
    #[error("{kind} {name:?} is malformed: {reason}")]
    Malformed {
        kind: String,
        name: String,
        reason: String,
    },
    /// Nothing to delete.
    #[error("{resource} {name:?} not found")]
    NotFound { resource: String, name: String },
}

/// A running fake API server on 127.0.0.1. Stops when dropped.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl FakeApiServer {
    /// Starts with default options. Panics if no loopback port can be bound.
    pub async fn start() -> Self {
        Self::start_with(FakeOptions::default()).await
    }

    /// Starts with `options`. Panics if no loopback port can be bound.
    pub async fn start_with(options: FakeOptions) -> Self {
        match Self::try_start_with(options).await {
            Ok(server) => server,
            Err(e) => panic!("fake API server: {e}"),
        }
    }

    /// Starts with `options`, reporting a bind failure instead of panicking.
    pub async fn try_start_with(options: FakeOptions) -> Result<Self, FakeApiError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(FakeApiError::Bind)?;
        let addr = listener.local_addr().map_err(FakeApiError::Bind)?;
        let shared = Arc::new(Shared::new(options));
        let app = http::router(shared.clone());
        let listener = reachability::GatedListener::new(listener, shared.unreachable.clone());
        let mut stop = shared.shutdown.subscribe();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "fake API server stopped with an error");
            }
        });
        tracing::debug!(%addr, "fake API server listening");
        Ok(Self {
            shared,
            addr,
            task: Some(task),
        })
    }

    /// The base URL for `kube::Config::new`, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, ends open watches and waits (up to 5 s) for connections to finish.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.send_replace(true);
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }

    /// Creates or replaces an object of any served kind (chosen by `apiVersion` and `kind`),
    /// as `kubectl apply` would: the server assigns resourceVersion, uid, creationTimestamp
    /// (and generation for credential specs) and open watches see the change. Returns the
    /// stored object. Namespaced kinds without a namespace go to `default`.
    pub fn apply(&self, object: Value) -> Result<Value, FakeApiError> {
        let Value::Object(map) = object else {
            return Err(FakeApiError::NotAnObject);
        };
        let text = |field: &str| {
            map.get(field)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let (api_version, kind) = (text("apiVersion"), text("kind"));
        let rt =
            ResourceType::of(&api_version, &kind).ok_or_else(|| FakeApiError::UnsupportedKind {
                api_version,
                kind: kind.clone(),
            })?;
        let name = map
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let (key, map) = self.shared.prepare(&rt, map, None).map_err(|r| match r {
            Rejection::MissingName => FakeApiError::MissingName { kind: kind.clone() },
            Rejection::Malformed(reason) => FakeApiError::Malformed {
                kind: kind.clone(),
                name: name.clone(),
                reason,
            },
        })?;
        match self.shared.commit(&rt, key, map, WriteMode::Upsert) {
            Ok(written) => Ok((*written.object).clone()),
            // Upserts neither conflict nor miss; report it rather than panic if that changes.
            Err(e) => Err(FakeApiError::Malformed {
                kind,
                name,
                reason: format!("{e:?}"),
            }),
        }
    }

    /// Applies every object in turn, stopping at the first failure.
    pub fn apply_all(
        &self,
        objects: impl IntoIterator<Item = Value>,
    ) -> Result<Vec<Value>, FakeApiError> {
        objects.into_iter().map(|o| self.apply(o)).collect()
    }

    /// Deletes an object; `kind` is a kind or plural resource name in any case
    /// (`"GMSACredentialSpec"`, `"rolebindings"`). Returns the object's last state.
    pub fn delete(
        &self,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, FakeApiError> {
        let rt = resource_named(kind)?;
        let key = key_for(&rt, namespace, name);
        self.shared
            .remove(&rt, &key)
            .map(|last| (*last).clone())
            .ok_or_else(|| FakeApiError::NotFound {
                resource: rt.qualified(),
                name: name.into(),
            })
    }

    /// The stored object, as a GET through the storage version would return it.
    pub fn get(&self, kind: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let rt = resource_named(kind).ok()?;
        let object = lock(&self.shared.store).get(&key_for(&rt, namespace, name))?;
        Some((*object).clone())
    }

    /// The current (global) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        lock(&self.shared.store).resource_version()
    }

    /// Forgets all history, as etcd compaction does: watches and paged lists from any older
    /// resourceVersion now get 410.
    pub fn compact(&self) {
        lock(&self.shared.store).compact();
    }

    /// Ends every open watch stream cleanly, as an apiserver restart or a load balancer does.
    /// Clients resume from their last resourceVersion; combine with [`Self::compact`] to make
    /// them re-list.
    pub fn cut_watches(&self) {
        self.shared.cut_watches();
    }

    /// How many watches of `resource` (plural, e.g. `"gmsacredentialspecs"`) are open.
    pub fn open_watches(&self, resource: &str) -> usize {
        lock(&self.shared.open_watches)
            .get(resource)
            .copied()
            .unwrap_or(0)
    }

    /// Waits until at least `count` watches of `resource` are open; false on timeout.
    pub async fn wait_for_watches(&self, resource: &str, count: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.open_watches(resource) >= count {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Requests received, keyed `"<verb> <resource>"`, e.g. `"list gmsacredentialspecs"`,
    /// `"create localsubjectaccessreviews"`, `"get version"` (`"<verb> unknown"` for paths
    /// the fake does not serve). Requests answered by an injected failure count too.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        lock(&self.shared.controls).counts.clone()
    }

    /// Requests received with `verb` on `resource`.
    pub fn count(&self, verb: &str, resource: &str) -> u64 {
        lock(&self.shared.controls)
            .counts
            .get(&format!("{verb} {resource}"))
            .copied()
            .unwrap_or(0)
    }

    /// GETs of single objects of `resource`.
    pub fn gets(&self, resource: &str) -> u64 {
        self.count("get", resource)
    }

    /// LISTs of `resource`.
    pub fn lists(&self, resource: &str) -> u64 {
        self.count("list", resource)
    }

    /// WATCHes of `resource` started.
    pub fn watches(&self, resource: &str) -> u64 {
        self.count("watch", resource)
    }

    /// Access reviews received, local and cluster-wide.
    pub fn access_reviews(&self) -> u64 {
        self.count("create", "localsubjectaccessreviews")
            + self.count("create", "subjectaccessreviews")
    }

    /// Zeroes every counter.
    pub fn reset_counts(&self) {
        lock(&self.shared.controls).counts.clear();
    }

    /// Delays every request (before it is answered) by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        lock(&self.shared.controls).latency = latency;
    }

    /// Fails the next `n` requests of any kind with a `Status` of HTTP `code` (e.g. 500
    /// `InternalError`, 503 `ServiceUnavailable`, 429 `TooManyRequests`).
    pub fn fail_next(&self, n: u32, code: u16) {
        lock(&self.shared.controls).failures.push(FailureRule {
            resource: None,
            verb: None,
            remaining: n,
            code,
        });
    }

    /// Like [`Self::fail_next`], but only requests for `resource` (plural, e.g.
    /// `"localsubjectaccessreviews"`) fail, so a background watcher cannot use up the failures.
    pub fn fail_next_on(&self, resource: &str, n: u32, code: u16) {
        lock(&self.shared.controls).failures.push(FailureRule {
            resource: Some(resource.to_string()),
            verb: None,
            remaining: n,
            code,
        });
    }

    /// Like [`Self::fail_next_on`], but only requests with `verb` (`get`, `list`, `watch`, …)
    /// fail: a GET's failure cannot be used up by the watcher re-listing the same resource.
    pub fn fail_next_verb_on(&self, verb: &str, resource: &str, n: u32, code: u16) {
        lock(&self.shared.controls).failures.push(FailureRule {
            resource: Some(resource.to_string()),
            verb: Some(verb.to_string()),
            remaining: n,
            code,
        });
    }

    /// Drops every failure rule not used up yet: requests succeed again.
    pub fn clear_failures(&self) {
        lock(&self.shared.controls).failures.clear();
    }

    /// While down, every request fails with 503 `ServiceUnavailable`; going down also ends
    /// open watches, as a dying server's connections do. Note that kube-rs retries 503 (15
    /// times, backing off exponentially from 5 ms), so a kube-rs call against a down server
    /// takes minutes to fail; use [`Self::set_unreachable`] to make calls fail at once.
    pub fn set_down(&self, down: bool) {
        lock(&self.shared.controls).down = down;
        if down {
            self.shared.cut_watches();
        }
    }

    /// While unreachable, every connection is dropped (new ones on accept, open ones at their
    /// next read or write) and open watches end: clients get transport errors, as from a dead
    /// or partitioned apiserver, which kube-rs does not retry.
    pub fn set_unreachable(&self, unreachable: bool) {
        self.shared.unreachable.store(unreachable, Ordering::SeqCst);
        if unreachable {
            self.shared.cut_watches();
        }
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn resource_named(kind: &str) -> Result<ResourceType, FakeApiError> {
    ResourceType::named(kind).ok_or_else(|| FakeApiError::UnsupportedKind {
        api_version: String::new(),
        kind: kind.into(),
    })
}

fn key_for(rt: &ResourceType, namespace: Option<&str>, name: &str) -> Key {
    Key {
        resource: rt.plural,
        namespace: if rt.namespaced {
            namespace.unwrap_or("default").to_string()
        } else {
            String::new()
        },
        name: name.to_string(),
    }
}
