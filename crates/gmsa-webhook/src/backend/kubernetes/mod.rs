//! The Kubernetes API backend: credential specs from a watch cache with a direct GET on a miss;
//! `use` grants from RBAC in watch caches, and by LocalSubjectAccessReview where RBAC alone
//! does not allow (or always, with `--authorization api`), the reviews' answers cached briefly
//! and dropped by the scope of each RBAC change. With the caches off it behaves as the
//! reference does: a GET per spec and a review per grant on every admission.

mod client;
mod decisions;
mod rate_limit;
mod readiness;
mod specs;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use futures::FutureExt;
use gmsa_core::{AccessCheck, Facts, Needs, SpecLookup};
use thiserror::Error;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::Authorization;
use crate::metrics::{CacheKind, Metrics};

pub(crate) use client::build_client;
pub(crate) use client::plain_client;
use client::ApiAccess;
pub use client::API_CALL_TIMEOUT;
use decisions::{DecisionCache, DecisionKey, Lookup};
use rate_limit::RateLimiter;
pub(crate) use readiness::{Readiness, Source};
use specs::SpecCache;

/// How to reach and use the API server.
#[derive(Debug, Clone)]
pub struct KubeSettings {
    /// `--kubeconfig`/`KUBECONFIG`; in-cluster config when absent.
    pub kubeconfig: Option<PathBuf>,
    /// Client rate limit (`QPS`, `BURST`) for the requests made on an admission's behalf;
    /// a non-positive `qps` turns it off.
    pub qps: f32,
    pub burst: u32,
    /// How long an allowed / denied access review is reused; zero disables.
    pub allow_ttl: Duration,
    pub deny_ttl: Duration,
    /// `false` turns every cache off: a GET and a review per reference, the reference's design
    /// (for benchmarks); decisions are then always by review.
    pub caches: bool,
    /// Where `use` decisions come from.
    pub authorization: Authorization,
    /// A watch failing to resync for longer than this makes the backend not ready.
    pub stale_after: Duration,
}

/// Errors that stop the backend from starting. An unreachable API server is not one: the
/// backend starts, stays unready, and keeps trying.
#[derive(Debug, Error)]
pub enum KubeError {
    #[error("cannot load Kubernetes client configuration: {0}")]
    Config(String),
}

impl From<gmsa_kube::ConfigError> for KubeError {
    fn from(error: gmsa_kube::ConfigError) -> Self {
        KubeError::Config(error.to_string())
    }
}

/// A connection to the cluster with its caches.
pub struct KubeCluster {
    inner: Arc<Inner>,
    /// The watches (or the reachability probe); aborted when the cluster is dropped.
    tasks: Vec<JoinHandle<()>>,
}

/// What lookups share with each other and with the background tasks.
struct Inner {
    api: Arc<ApiAccess>,
    metrics: Arc<Metrics>,
    /// `None` with the caches off.
    specs: Option<Arc<SpecCache>>,
    decisions: Option<Arc<DecisionCache>>,
    authorization: Authorization,
    readiness: Arc<Readiness>,
}

impl KubeCluster {
    /// Builds the client and starts the watches; does not wait for them to sync. Fails only on
    /// an unusable configuration.
    pub async fn connect(
        settings: KubeSettings,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, KubeError> {
        let config = gmsa_kube::load_config(settings.kubeconfig.as_deref()).await?;
        tracing::info!(
            url = %config.cluster_url,
            caches = settings.caches,
            qps = settings.qps,
            burst = settings.burst,
            "using the Kubernetes API"
        );
        let readiness = Arc::new(if settings.caches {
            let mut sources = vec![Source::CredentialSpecs];
            sources.extend(Source::RBAC);
            Readiness::new(&sources, settings.stale_after)
        } else {
            Readiness::new(&[Source::ApiReachable], settings.stale_after)
        });
        let client = build_client(config, metrics.clone(), readiness.clone())?;
        let limiter = RateLimiter::new(settings.qps, settings.burst);
        let api = Arc::new(ApiAccess::new(client.clone(), limiter));

        let mut tasks = Vec::new();
        let inner = if settings.caches {
            let specs = Arc::new(SpecCache::default());
            let decisions = Arc::new(DecisionCache::new(settings.allow_ttl, settings.deny_ttl));
            tasks.push(tokio::spawn(
                specs.clone().run_watch(client.clone(), readiness.clone()),
            ));
            for source in Source::RBAC {
                tasks.push(tokio::spawn(decisions.clone().run_rbac_watch(
                    client.clone(),
                    source,
                    readiness.clone(),
                )));
            }
            Inner {
                api,
                metrics,
                specs: Some(specs),
                decisions: Some(decisions),
                authorization: settings.authorization,
                readiness,
            }
        } else {
            tasks.push(tokio::spawn(probe_until_reachable(
                api.clone(),
                readiness.clone(),
            )));
            Inner {
                api,
                metrics,
                specs: None,
                decisions: None,
                authorization: Authorization::Api,
                readiness,
            }
        };
        if let Some(decisions) = &inner.decisions {
            let decisions = Arc::downgrade(decisions);
            inner.metrics.track_reviews_in_flight(move || {
                decisions.upgrade().map_or(0, |d| d.flights() as u64)
            });
        }
        Ok(Arc::new(Self {
            inner: Arc::new(inner),
            tasks,
        }))
    }

    /// Answers a review's needs, every lookup at once. Each name is looked up once (the needs
    /// are sets). A request to the API server that the rate limit would start after
    /// `deadline` fails at once.
    pub async fn gather(&self, needs: &Needs, deadline: Instant) -> Facts {
        let specs = join_all(needs.specs.iter().map(|name| async move {
            (
                name.clone(),
                self.inner.credential_spec(name, deadline).await,
            )
        }));
        let grants = join_all(needs.grants.iter().map(|name| async move {
            let check = self
                .inner
                .may_use(&needs.namespace, &needs.service_account, name, deadline)
                .await;
            (name.clone(), check)
        }));
        let (specs, grants) = futures::join!(specs, grants);
        Facts {
            specs: specs.into_iter().collect(),
            grants: grants.into_iter().collect(),
        }
    }

    /// How many Roles, ClusterRoles and bindings the RBAC index holds (`None` with the caches
    /// off): how far the watches have got.
    pub fn rbac_objects(&self) -> Option<usize> {
        self.inner.decisions.as_ref().map(|d| d.rbac_objects())
    }

    /// How many access reviews are under way for admissions waiting on them.
    pub fn reviews_in_flight(&self) -> usize {
        self.inner.decisions.as_ref().map_or(0, |d| d.flights())
    }

    /// Whether the credential-spec and RBAC watches have synced (with the caches off: whether
    /// the API server has answered once) and none has been failing to resync for longer than
    /// the stale limit.
    pub fn is_ready(&self) -> bool {
        self.inner.readiness.is_ready()
    }
}

impl Drop for KubeCluster {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Inner {
    /// From the watch cache; a name it has not seen (a spec created a moment ago, or a cache
    /// not yet synced) is fetched directly.
    async fn credential_spec(&self, name: &str, deadline: Instant) -> SpecLookup {
        if let Some(cache) = &self.specs {
            let cached = cache.get(name);
            self.metrics
                .cache(CacheKind::CredentialSpec, cached.is_some());
            if let Some(spec) = cached {
                return SpecLookup::Found(spec);
            }
        }
        self.api.get_credential_spec(name, deadline).await
    }

    /// From RBAC in the watch caches (unless `--authorization api`); else from the decision
    /// cache, or by a review (shared with concurrent admissions asking the same). Joining a
    /// review under way counts as a miss: the answer came from the API.
    async fn may_use(
        &self,
        namespace: &str,
        service_account: &str,
        spec: &str,
        deadline: Instant,
    ) -> AccessCheck {
        let Some(cache) = &self.decisions else {
            return self
                .api
                .review_access(namespace, service_account, spec, deadline)
                .await;
        };
        // The local answer first: it needs no owned key, and in a cluster whose grants are all
        // RBAC it is the only work an admission does.
        if self.authorization != Authorization::Api {
            if let Some(allowed) = cache.rbac_allows(namespace, service_account, spec) {
                self.metrics.cache(CacheKind::Rbac, allowed);
                if allowed {
                    return AccessCheck::Allowed;
                }
                if self.authorization == Authorization::Local {
                    return AccessCheck::Denied {
                        reason: String::new(),
                    };
                }
            }
        }
        let key = DecisionKey {
            namespace: namespace.to_string(),
            service_account: service_account.to_string(),
            spec: spec.to_string(),
        };
        let api = self.api.clone();
        let lookup = cache.lookup(key.clone(), move || {
            async move {
                api.review_access(&key.namespace, &key.service_account, &key.spec, deadline)
                    .await
            }
            .boxed()
        });
        match lookup {
            Lookup::Cached(check) => {
                self.metrics.cache(CacheKind::Authorization, true);
                check
            }
            Lookup::Pending(flight) => {
                self.metrics.cache(CacheKind::Authorization, false);
                flight.await
            }
        }
    }
}

/// With the caches off nothing syncs, so readiness means the API server answered once.
async fn probe_until_reachable(api: Arc<ApiAccess>, readiness: Arc<Readiness>) {
    let mut delay = Duration::from_millis(500);
    loop {
        match api.check_reachable().await {
            Ok(()) => {
                readiness.mark(Source::ApiReachable);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "Kubernetes API not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}
