//! The access-decision cache: answers of LocalSubjectAccessReviews per (namespace, service
//! account, credential spec), kept for a short TTL and dropped all at once whenever any Role,
//! ClusterRole, RoleBinding or ClusterRoleBinding changes. Working out which decisions one RBAC
//! change affects would mean re-implementing the authorizer; changes are rare, reviews cheap.
//!
//! Concurrent admissions that need the same decision share one review, so a Deployment scaling
//! out sends one review, not one per pod.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, StreamExt};
use gmsa_core::AccessCheck;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use tokio::time::Instant;

use super::readiness::{Readiness, Source};

/// Above this many decisions, expired ones are swept (and if none had expired, all dropped), so
/// a flood of distinct service accounts cannot grow the cache without bound.
const MAX_ENTRIES: usize = 10_000;

/// A review in progress, awaited by every admission that needs its answer.
pub(super) type Flight = Shared<BoxFuture<'static, AccessCheck>>;

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
    /// decision, so none is kept.
    armed: AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Bumped by every flush; a review started under an older generation is not stored.
    generation: u64,
    entries: HashMap<DecisionKey, Entry>,
    flights: HashMap<DecisionKey, Flight>,
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
        }
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
        if let Some(flight) = state.flights.get(&key) {
            return Lookup::Pending(flight.clone());
        }
        let generation = state.generation;
        // Weak: the flight is stored in this cache, and must not keep it alive.
        let cache = Arc::downgrade(self);
        let review = review();
        let flight_key = key.clone();
        let flight = async move {
            let check = review.await;
            if let Some(cache) = cache.upgrade() {
                cache.complete(&flight_key, generation, &check);
            }
            check
        }
        .boxed()
        .shared();
        state.flights.insert(key, flight.clone());
        Lookup::Pending(flight)
    }

    /// Stores a review's answer, unless RBAC changed while it was under way.
    fn complete(&self, key: &DecisionKey, generation: u64, check: &AccessCheck) {
        let mut state = self.state();
        if state.generation != generation {
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
        state.generation += 1;
        if !state.entries.is_empty() {
            tracing::debug!(count = state.entries.len(), "access decisions flushed");
        }
        state.entries.clear();
        state.flights.clear();
    }

    /// Flushes on every change of one RBAC kind until the task is aborted. Watch errors are
    /// logged and retried with backoff, and do not flush: while the API server is unreachable,
    /// decisions within their TTL keep answering (and the TTL bounds how stale they get); the
    /// resumed watch delivers what was missed, or re-lists, and either flushes.
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
        let mut events = pin!(watcher::watcher(api, watcher::Config::default()).default_backoff());
        while let Some(event) = events.next().await {
            match event {
                Ok(Event::InitApply(_)) => {}
                Ok(Event::InitDone) => {
                    self.flush();
                    readiness.mark(source);
                    if readiness.all_synced(&Source::RBAC) {
                        self.arm();
                    }
                }
                Ok(Event::Init | Event::Apply(_) | Event::Delete(_)) => self.flush(),
                Err(e) => {
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
