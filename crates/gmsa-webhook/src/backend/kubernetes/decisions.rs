//! Access decisions without the API server where RBAC can answer, and a short-lived cache of
//! the API server's answers where it must.
//!
//! The four RBAC watches keep an [`RbacIndex`] of every Role, ClusterRole and binding, so a
//! grant RBAC makes is found locally. The answers of LocalSubjectAccessReviews (asked when RBAC
//! alone says no, or always in `api` mode) are kept per (namespace, service account, credential
//! spec) for a short TTL, and dropped by scope when RBAC changes: only the decisions a change
//! can affect ([`gmsa_core::rbac::Invalidation`]), everything only after a re-list.
//!
//! Concurrent admissions that need the same review share it, so a Deployment scaling out sends
//! one review, not one per pod.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};
use std::time::Duration;

use futures::future::{BoxFuture, Shared, WeakShared};
use futures::{FutureExt, StreamExt};
use gmsa_core::rbac::{self, Aggregation, Invalidation, RbacIndex};
use gmsa_core::AccessCheck;
use gmsa_kube::watch::{self, Change};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::Client;
use tokio::time::Instant;

use super::readiness::{Readiness, Source};

/// Above this many decisions, expired ones are swept (and if none had expired, all dropped), so
/// a flood of distinct service accounts cannot grow the cache without bound.
const MAX_ENTRIES: usize = 10_000;

/// At most this many reviews are shared at once; beyond it (a flood of distinct, invented
/// names) a review still runs for its admission but is not registered for others to join.
const MAX_FLIGHTS: usize = 4_096;

/// A review in progress, awaited by every admission that needs its answer. The review runs
/// only while someone awaits it: when every waiter has given up, it is dropped, and with it
/// its entry in the map (see [`FlightEntry`]).
pub(super) type Flight = Shared<BoxFuture<'static, AccessCheck>>;

/// What the map holds of a flight: its number and a weak handle, so the map alone keeps no
/// review alive.
type FlightSlot = (u64, WeakShared<BoxFuture<'static, AccessCheck>>);

/// Whom a decision is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct DecisionKey {
    pub namespace: String,
    pub service_account: String,
    pub spec: String,
}

/// What a lookup found.
pub(super) enum Lookup {
    /// A decision still within its TTL.
    Cached(AccessCheck),
    /// A review to await: started by this lookup or already under way.
    Pending(Flight),
}

/// Decisions with their expiry, and the reviews under way.
pub(super) struct DecisionCache {
    allow_ttl: Duration,
    deny_ttl: Duration,
    /// Set once all four RBAC watches have synced: before that, no change could flush a stale
    /// decision, so none is kept, and the index is not complete enough to answer.
    armed: AtomicBool,
    state: Mutex<State>,
    rbac: RwLock<RbacIndex>,
}

#[derive(Default)]
struct State {
    /// Numbers flights; a flight's answer is stored only while it is still the key's flight
    /// (an invalidation detaches it: its answer may predate the change).
    next_flight: u64,
    entries: HashMap<DecisionKey, Entry>,
    flights: HashMap<DecisionKey, FlightSlot>,
}

/// Owned by a flight's future: removes the flight from the map when the future ends or is
/// dropped (every waiter gave up), unless a newer flight has taken the key.
struct FlightEntry {
    cache: Weak<DecisionCache>,
    key: DecisionKey,
    id: u64,
}

impl Drop for FlightEntry {
    fn drop(&mut self) {
        if let Some(cache) = self.cache.upgrade() {
            let mut state = cache.state();
            if state.flights.get(&self.key).map(|(id, _)| *id) == Some(self.id) {
                state.flights.remove(&self.key);
            }
        }
    }
}

struct Entry {
    check: AccessCheck,
    expires: Instant,
}

impl DecisionCache {
    /// A cache keeping allowed answers for `allow_ttl` and denied ones for `deny_ttl`; zero
    /// keeps none of that kind. Failed reviews are never kept.
    pub(super) fn new(allow_ttl: Duration, deny_ttl: Duration) -> Self {
        Self {
            allow_ttl,
            deny_ttl,
            armed: AtomicBool::new(false),
            state: Mutex::new(State::default()),
            rbac: RwLock::new(RbacIndex::new(Aggregation::Stored)),
        }
    }

    /// How many Roles, ClusterRoles and bindings the index holds.
    pub(super) fn rbac_objects(&self) -> usize {
        self.rbac
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether RBAC alone grants the service account `use` of the spec; `None` until every
    /// RBAC watch has synced.
    pub(super) fn rbac_allows(
        &self,
        namespace: &str,
        service_account: &str,
        spec: &str,
    ) -> Option<bool> {
        if !self.armed.load(Ordering::Acquire) {
            return None;
        }
        let index = self.rbac.read().unwrap_or_else(PoisonError::into_inner);
        Some(index.may_use(namespace, service_account, spec))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts keeping decisions (the RBAC watches are in place to flush them).
    pub(super) fn arm(&self) {
        self.armed.store(true, Ordering::Release);
    }

    /// The cached decision for `key`, or the review to await: joins one under way, or starts
    /// `review` when there is none.
    pub(super) fn lookup(
        self: &Arc<Self>,
        key: DecisionKey,
        review: impl FnOnce() -> BoxFuture<'static, AccessCheck>,
    ) -> Lookup {
        let mut state = self.state();
        match state.entries.get(&key) {
            Some(entry) if entry.expires > Instant::now() => {
                return Lookup::Cached(entry.check.clone());
            }
            Some(_) => {
                state.entries.remove(&key);
            }
            None => {}
        }
        if let Some(flight) = state.flights.get(&key).and_then(|(_, w)| w.upgrade()) {
            return Lookup::Pending(flight);
        }
        state.next_flight += 1;
        let id = state.next_flight;
        // Weak: the flight is stored in this cache, and must not keep it alive.
        let entry = FlightEntry {
            cache: Arc::downgrade(self),
            key: key.clone(),
            id,
        };
        let review = review();
        let flight = async move {
            let check = review.await;
            if let Some(cache) = entry.cache.upgrade() {
                cache.complete(&entry.key, id, &check);
            }
            drop(entry);
            check
        }
        .boxed()
        .shared();
        if state.flights.len() >= MAX_FLIGHTS {
            state.flights.remove(&key);
            return Lookup::Pending(flight);
        }
        if let Some(weak) = flight.downgrade() {
            state.flights.insert(key, (id, weak));
        }
        Lookup::Pending(flight)
    }

    /// How many reviews are under way and joinable.
    pub(super) fn flights(&self) -> usize {
        self.state().flights.len()
    }

    /// Stores a review's answer, unless an RBAC change it may predate detached it.
    fn complete(&self, key: &DecisionKey, id: u64, check: &AccessCheck) {
        let mut state = self.state();
        if state.flights.get(key).map(|(current, _)| *current) != Some(id) {
            return;
        }
        state.flights.remove(key);
        let ttl = match check {
            AccessCheck::Allowed => self.allow_ttl,
            AccessCheck::Denied { .. } => self.deny_ttl,
            AccessCheck::Failed(_) => return,
        };
        if ttl.is_zero() || !self.armed.load(Ordering::Acquire) {
            return;
        }
        let now = Instant::now();
        if state.entries.len() >= MAX_ENTRIES {
            state.entries.retain(|_, e| e.expires > now);
            if state.entries.len() >= MAX_ENTRIES {
                state.entries.clear();
            }
        }
        state.entries.insert(
            key.clone(),
            Entry {
                check: check.clone(),
                expires: now + ttl,
            },
        );
    }

    /// Forgets every decision, and detaches the reviews under way so their answers, possibly
    /// made under the old RBAC, are not stored or shared with later admissions.
    pub(super) fn flush(&self) {
        let mut state = self.state();
        if !state.entries.is_empty() {
            tracing::debug!(count = state.entries.len(), "access decisions flushed");
        }
        state.entries.clear();
        state.flights.clear();
    }

    /// Forgets the decisions (and detaches the reviews under way) that `scope` covers.
    pub(super) fn invalidate(&self, scope: &Invalidation) {
        if scope.everything {
            self.flush();
            return;
        }
        if scope.is_empty() {
            return;
        }
        let mut state = self.state();
        let affected = |key: &DecisionKey| scope.affects(&key.namespace, &key.service_account);
        state.entries.retain(|key, _| !affected(key));
        state.flights.retain(|key, _| !affected(key));
    }

    /// Applies one watch event's object to the index; returns what it invalidates.
    fn index_change(&self, source: Source, object: &DynamicObject, deleted: bool) -> Invalidation {
        let value = match serde_json::to_value(object) {
            Ok(value) => value,
            Err(_) => return Invalidation::everything(),
        };
        let mut index = self.rbac.write().unwrap_or_else(PoisonError::into_inner);
        let parsed = match source {
            Source::Roles | Source::ClusterRoles => serde_json::from_value::<rbac::Role>(value)
                .map(|role| {
                    let namespaced = source == Source::Roles;
                    if deleted {
                        index.delete_role(&role, namespaced)
                    } else {
                        index.apply_role(role, namespaced)
                    }
                }),
            _ => serde_json::from_value::<rbac::Binding>(value).map(|binding| {
                let namespaced = source == Source::RoleBindings;
                if deleted {
                    index.delete_binding(&binding, namespaced)
                } else {
                    index.apply_binding(binding, namespaced)
                }
            }),
        };
        parsed.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "unreadable RBAC object; every decision is re-checked");
            Invalidation::everything()
        })
    }

    /// Replaces every object of one kind, after a (re-)list.
    fn index_replace(&self, source: Source, objects: Vec<DynamicObject>) {
        let values = objects.iter().filter_map(|o| serde_json::to_value(o).ok());
        let mut index = self.rbac.write().unwrap_or_else(PoisonError::into_inner);
        match source {
            Source::Roles | Source::ClusterRoles => {
                let roles = values
                    .filter_map(|v| serde_json::from_value(v).ok())
                    .collect();
                index.replace_roles(roles, source == Source::Roles);
            }
            _ => {
                let bindings = values
                    .filter_map(|v| serde_json::from_value(v).ok())
                    .collect();
                index.replace_bindings(bindings, source == Source::RoleBindings);
            }
        }
    }

    /// Keeps one RBAC kind in the index, and invalidates what each change can affect, until the
    /// task is aborted. Watch errors are logged and retried with backoff, and invalidate
    /// nothing: while the API server is unreachable the index and decisions within their TTL
    /// keep answering; the resumed watch delivers what was missed, or re-lists (a re-list
    /// replaces the kind in the index and flushes every decision).
    pub(super) async fn run_rbac_watch(
        self: Arc<Self>,
        client: Client,
        source: Source,
        readiness: Arc<Readiness>,
    ) {
        let Some(resource) = rbac_resource(source) else {
            return;
        };
        let api: Api<DynamicObject> = Api::all_with(client, &resource);
        let mut changes = pin!(watch::changes(api));
        while let Some(change) = changes.next().await {
            readiness.watched(source, change.health());
            match change {
                Change::Listing => {}
                Change::Listed(objects) => {
                    self.index_replace(source, objects);
                    self.flush();
                    readiness.mark(source);
                    if readiness.all_synced(&Source::RBAC) {
                        self.arm();
                    }
                }
                Change::Applied(object) => {
                    let scope = self.index_change(source, &object, false);
                    self.invalidate(&scope);
                }
                Change::Deleted(object) => {
                    let scope = self.index_change(source, &object, true);
                    self.invalidate(&scope);
                }
                Change::Failed(e) => {
                    tracing::warn!(
                        kind = %resource.kind,
                        error = %e,
                        "RBAC watch failed; retrying with backoff"
                    );
                }
            }
        }
        tracing::error!(kind = %resource.kind, "RBAC watch ended; access decisions are no longer flushed on change");
    }
}

fn rbac_resource(source: Source) -> Option<ApiResource> {
    Some(match source {
        Source::Roles => ApiResource::erase::<Role>(&()),
        Source::ClusterRoles => ApiResource::erase::<ClusterRole>(&()),
        Source::RoleBindings => ApiResource::erase::<RoleBinding>(&()),
        Source::ClusterRoleBindings => ApiResource::erase::<ClusterRoleBinding>(&()),
        Source::CredentialSpecs | Source::ApiReachable => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn key(sa: &str) -> DecisionKey {
        DecisionKey {
            namespace: "team-a".into(),
            service_account: sa.into(),
            spec: "web".into(),
        }
    }

    /// Looks `key` up, answering a new review with `answer`; returns the answer and whether a
    /// review was started.
    async fn ask(
        cache: &Arc<DecisionCache>,
        key: DecisionKey,
        answer: AccessCheck,
    ) -> (AccessCheck, bool) {
        let mut started = false;
        let lookup = cache.lookup(key, || {
            started = true;
            async move { answer }.boxed()
        });
        match lookup {
            Lookup::Cached(check) => (check, false),
            Lookup::Pending(flight) => (flight.await, started),
        }
    }

    fn armed(allow: u64, deny: u64) -> Arc<DecisionCache> {
        let cache = Arc::new(DecisionCache::new(
            Duration::from_secs(allow),
            Duration::from_secs(deny),
        ));
        cache.arm();
        cache
    }

    fn denied() -> AccessCheck {
        AccessCheck::Denied {
            reason: String::new(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn decisions_are_kept_for_their_ttl() {
        let cache = armed(10, 2);
        assert_eq!(
            ask(&cache, key("a"), AccessCheck::Allowed).await,
            (AccessCheck::Allowed, true)
        );
        assert_eq!(ask(&cache, key("b"), denied()).await, (denied(), true));
        // Cached answers win over what a new review would say.
        assert_eq!(
            ask(&cache, key("a"), denied()).await,
            (AccessCheck::Allowed, false)
        );
        assert_eq!(
            ask(&cache, key("b"), AccessCheck::Allowed).await,
            (denied(), false)
        );
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(
            ask(&cache, key("a"), denied()).await,
            (AccessCheck::Allowed, false)
        );
        assert_eq!(
            ask(&cache, key("b"), AccessCheck::Allowed).await,
            (AccessCheck::Allowed, true)
        );
        tokio::time::advance(Duration::from_secs(8)).await;
        assert_eq!(ask(&cache, key("a"), denied()).await, (denied(), true));
    }

    #[tokio::test]
    async fn zero_ttl_failures_and_an_unarmed_cache_keep_nothing() {
        let cache = armed(0, 10);
        ask(&cache, key("a"), AccessCheck::Allowed).await;
        assert!(ask(&cache, key("a"), AccessCheck::Allowed).await.1);
        ask(&cache, key("f"), AccessCheck::Failed("boom".into())).await;
        assert!(ask(&cache, key("f"), denied()).await.1);

        let unarmed = Arc::new(DecisionCache::new(
            Duration::from_secs(10),
            Duration::from_secs(10),
        ));
        ask(&unarmed, key("a"), AccessCheck::Allowed).await;
        assert!(ask(&unarmed, key("a"), AccessCheck::Allowed).await.1);
    }

    #[tokio::test]
    async fn a_flush_forgets_everything() {
        let cache = armed(60, 60);
        ask(&cache, key("a"), denied()).await;
        cache.flush();
        assert_eq!(
            ask(&cache, key("a"), AccessCheck::Allowed).await,
            (AccessCheck::Allowed, true)
        );
    }

    #[tokio::test]
    async fn concurrent_lookups_share_one_review_and_a_flush_detaches_it() {
        let cache = armed(60, 60);
        let reviews = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let released = released.shared();
        let start = |cache: &Arc<DecisionCache>| {
            let reviews = reviews.clone();
            let released = released.clone();
            cache.lookup(key("a"), move || {
                reviews.fetch_add(1, Ordering::SeqCst);
                async move {
                    let _ = released.await;
                    denied()
                }
                .boxed()
            })
        };
        let (Lookup::Pending(first), Lookup::Pending(second)) = (start(&cache), start(&cache))
        else {
            panic!("expected reviews under way");
        };
        assert_eq!(reviews.load(Ordering::SeqCst), 1);
        // RBAC changes while the review runs: its answer must not be kept.
        cache.flush();
        let _ = release.send(());
        assert_eq!(first.await, denied());
        assert_eq!(second.await, denied());
        assert_eq!(
            ask(&cache, key("a"), AccessCheck::Allowed).await,
            (AccessCheck::Allowed, true)
        );
    }
}
