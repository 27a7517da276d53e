//! Prometheus metrics, served at `/metrics` in OpenMetrics text.

use std::sync::{Arc, OnceLock};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// Labels of one admission.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdmissionLabels {
    pub path: &'static str,
    /// From a fixed set ([`operation_label`]): a caller must not be able to make new series.
    pub operation: &'static str,
    pub allowed: &'static str,
}

/// The label for a review's `operation`: one of the four the API server sends, `none` when
/// the review had none (an unreadable body), `unknown` for anything else a caller invents.
pub fn operation_label(operation: &str) -> &'static str {
    match operation {
        "CREATE" => "CREATE",
        "UPDATE" => "UPDATE",
        "DELETE" => "DELETE",
        "CONNECT" => "CONNECT",
        "" => "none",
        _ => "unknown",
    }
}

/// Labels of one latency observation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabels {
    pub path: &'static str,
}

/// What a cache lookup was for.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum CacheKind {
    CredentialSpec,
    /// Access reviews' answers.
    Authorization,
    /// RBAC in the watch caches: a hit is a grant found there, needing no access review.
    Rbac,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub cache: CacheKind,
}

/// The kind of a Kubernetes API request the webhook made.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum ApiCallKind {
    GetCredentialSpec,
    ListCredentialSpecs,
    WatchCredentialSpecs,
    LocalSubjectAccessReview,
    ListRbac,
    WatchRbac,
    /// The contents keeper's annotation writes (`--keep-published-contents`).
    PatchCredentialSpec,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiCallLabels {
    pub kind: ApiCallKind,
}

/// What a certificate renewal round did (`--renew-certs-secret`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum RenewalStep {
    Nothing,
    Wait,
    Trust,
    Stage,
    Promote,
    Retire,
    /// Another replica wrote first.
    Conflict,
    Error,
}

impl RenewalStep {
    pub fn of(step: &gmsa_tls::self_signed::Step) -> Self {
        use gmsa_tls::self_signed::Step;
        match step {
            Step::Nothing => Self::Nothing,
            Step::Wait(_) => Self::Wait,
            Step::Trust { .. } => Self::Trust,
            Step::Stage { .. } => Self::Stage,
            Step::Promote => Self::Promote,
            Step::Retire => Self::Retire,
        }
    }
}

/// The renewal's rounds, counted by the step each took.
impl gmsa_kube::renewal::RenewalReport for Metrics {
    fn stepped(&self, step: &gmsa_tls::self_signed::Step) {
        self.renewal_step(RenewalStep::of(step));
    }

    fn conflicted(&self) {
        self.renewal_step(RenewalStep::Conflict);
    }

    fn failed(&self) {
        self.renewal_step(RenewalStep::Error);
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RenewalLabels {
    pub step: RenewalStep,
}

/// What one of the keeper's writes did (`--keep-published-contents`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum PublishOutcome {
    /// Contents written in a namespace, its namespace listed, or a spec finalized.
    Published,
    /// A namespace's contents deleted, or a spec released after they were withdrawn.
    Withdrawn,
    /// 403: the keeper's identity lacks a permission install grants it.
    Forbidden,
    /// Any other failure; the pass is retried with backoff.
    Failed,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PublishLabels {
    pub outcome: PublishOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// A function that reads a count kept elsewhere.
pub type CountSource = Box<dyn Fn() -> u64 + Send + Sync>;

/// What a process exports metrics for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The admission server (with the keeper beside it or not): every metric.
    Server,
    /// The keeper alone (`--no-admission`): its writes, its API calls and build info; no
    /// admission, cache or certificate metric, since nothing admits or serves TLS.
    Keeper,
}

/// Every metric the webhook exports, shared by the server and the backends.
pub struct Metrics {
    registry: Registry,
    role: Role,
    pub admissions: Family<AdmissionLabels, Counter>,
    pub latency: Family<PathLabels, Histogram>,
    pub cache_hits: Family<CacheLabels, Counter>,
    pub cache_misses: Family<CacheLabels, Counter>,
    pub api_calls: Family<ApiCallLabels, Counter>,
    pub renewal_rounds: Family<RenewalLabels, Counter>,
    pub published_contents_writes: Family<PublishLabels, Counter>,
    /// Certificate reloads, read from the TLS store when metrics are scraped.
    cert_reloads: OnceLock<CountSource>,
    /// Access reviews under way, read from the decision cache when metrics are scraped.
    reviews_in_flight: OnceLock<CountSource>,
    /// Seconds until the served certificate's `notAfter` (negative once expired), read from
    /// the TLS store when metrics are scraped; `None` when it could not be read.
    cert_expiry: OnceLock<ExpirySource>,
}

/// A family of counters, registered in `registry` under `name`.
fn counters<L>(registry: &mut Registry, name: &str, help: &str) -> Family<L, Counter>
where
    L: Clone
        + std::hash::Hash
        + Eq
        + prometheus_client::encoding::EncodeLabelSet
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let family = Family::<L, Counter>::default();
    registry.register(name, help, family.clone());
    family
}

/// A function that reads the seconds until the served certificate expires.
pub type ExpirySource = Box<dyn Fn() -> Option<i64> + Send + Sync>;

impl Metrics {
    /// Creates and registers every metric under the `gmsa_webhook` prefix.
    pub fn new(version: &'static str) -> Arc<Self> {
        Self::for_role(version, Role::Server)
    }

    /// Creates the metrics `role` exports; the others still count, but are never encoded.
    pub fn for_role(version: &'static str, role: Role) -> Arc<Self> {
        let mut registry = Registry::with_prefix("gmsa_webhook");
        // Registered only for the server; a keeper alone keeps them in this throwaway one.
        let mut admission_only = Registry::default();
        let server = match role {
            Role::Server => &mut registry,
            Role::Keeper => &mut admission_only,
        };
        let admissions = counters(server, "admissions", "Admission reviews answered");
        let latency = Family::<PathLabels, Histogram>::new_with_constructor(|| {
            // 50 µs .. ~3 s.
            Histogram::new(exponential_buckets(0.00005, 2.0, 16))
        });
        server.register(
            "admission_duration_seconds",
            "Time from request body received to answer",
            latency.clone(),
        );
        let cache_hits = counters(server, "cache_hits", "Lookups answered from a cache");
        let cache_misses = counters(server, "cache_misses", "Lookups that needed the API server");
        let renewal_rounds = counters(
            server,
            "certificate_renewal_rounds",
            "Self-signed certificate renewal rounds, by the step taken",
        );
        let api_calls = counters(
            &mut registry,
            "api_calls",
            "Requests made to the Kubernetes API",
        );
        let published_contents_writes = counters(
            &mut registry,
            "published_contents_writes",
            "The keeper's writes of policy mode's published contents (namespace objects, the elsewhere binding, finalizers), by outcome",
        );
        registry.register(
            "build",
            "Build information",
            Info::new(BuildLabels { version }),
        );
        Arc::new(Self {
            registry,
            role,
            admissions,
            latency,
            cache_hits,
            cache_misses,
            api_calls,
            renewal_rounds,
            published_contents_writes,
            cert_reloads: OnceLock::new(),
            reviews_in_flight: OnceLock::new(),
            cert_expiry: OnceLock::new(),
        })
    }

    /// Counts one API request.
    pub fn api_call(&self, kind: ApiCallKind) {
        self.api_calls.get_or_create(&ApiCallLabels { kind }).inc();
    }

    /// Counts one certificate renewal round.
    pub fn renewal_step(&self, step: RenewalStep) {
        self.renewal_rounds
            .get_or_create(&RenewalLabels { step })
            .inc();
    }

    /// Counts one of the keeper's writes, or one failed pass.
    pub fn published_contents_write(&self, outcome: PublishOutcome) {
        self.published_contents_writes
            .get_or_create(&PublishLabels { outcome })
            .inc();
    }

    /// Counts a cache hit or miss.
    pub fn cache(&self, cache: CacheKind, hit: bool) {
        let family = if hit {
            &self.cache_hits
        } else {
            &self.cache_misses
        };
        family.get_or_create(&CacheLabels { cache }).inc();
    }

    /// Where the certificate-reload count is read from (the TLS store owns it). Set once.
    pub fn track_cert_reloads(&self, source: impl Fn() -> u64 + Send + Sync + 'static) {
        let _ = self.cert_reloads.set(Box::new(source));
    }

    /// Where the count of access reviews under way is read from. Set once.
    pub fn track_reviews_in_flight(&self, source: impl Fn() -> u64 + Send + Sync + 'static) {
        let _ = self.reviews_in_flight.set(Box::new(source));
    }

    /// Where the seconds until the served certificate expires are read from. Set once.
    pub fn track_certificate_expiry(
        &self,
        source: impl Fn() -> Option<i64> + Send + Sync + 'static,
    ) {
        let _ = self.cert_expiry.set(Box::new(source));
    }

    /// OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if self.role == Role::Keeper {
            let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
            return out;
        }
        let reloads = self.cert_reloads.get().map_or(0, |f| f());
        // Reload count lives in the TLS layer; encode it alongside the registry.
        let mut extra = Registry::with_prefix("gmsa_webhook");
        extra.register(
            "certificate_reloads",
            "Serving certificates loaded after start",
            ConstCounter::new(reloads),
        );
        let in_flight = self.reviews_in_flight.get().map_or(0, |f| f());
        extra.register(
            "access_reviews_in_flight",
            "LocalSubjectAccessReviews under way that admissions wait for",
            ConstGauge::new(i64::try_from(in_flight).unwrap_or(i64::MAX)),
        );
        if let Some(left) = self.cert_expiry.get().and_then(|f| f()) {
            extra.register(
                "certificate_expiry_seconds",
                "Seconds until the served certificate's notAfter; negative once expired",
                ConstGauge::new(left),
            );
        }
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &extra);
        let _ = prometheus_client::encoding::text::encode_eof(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str) -> Vec<&str> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .collect()
    }

    #[test]
    fn a_keeper_alone_exports_only_its_own_metrics() {
        let metrics = Metrics::for_role("1.2.3", Role::Keeper);
        metrics.published_contents_write(PublishOutcome::Published);
        metrics.api_call(ApiCallKind::PatchCredentialSpec);
        // Counted by shared code paths, but never exported by a keeper.
        metrics.cache(CacheKind::CredentialSpec, true);
        metrics.track_cert_reloads(|| 3);
        metrics.track_certificate_expiry(|| Some(10));
        let text = metrics.encode();
        assert_eq!(
            names(&text),
            [
                "gmsa_webhook_api_calls",
                "gmsa_webhook_published_contents_writes",
                "gmsa_webhook_build"
            ],
            "{text}"
        );
        assert!(
            text.contains("gmsa_webhook_published_contents_writes_total{outcome=\"Published\"} 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn the_server_exports_admission_and_certificate_metrics() {
        let metrics = Metrics::new("1.2.3");
        metrics.track_certificate_expiry(|| Some(10));
        let admission = AdmissionLabels {
            path: "/mutate",
            operation: "CREATE",
            allowed: "true",
        };
        metrics.admissions.get_or_create(&admission).inc();
        metrics.renewal_step(RenewalStep::Nothing);
        metrics.published_contents_write(PublishOutcome::Published);
        let text = metrics.encode();
        for name in [
            "gmsa_webhook_admissions",
            "gmsa_webhook_certificate_renewal_rounds",
            "gmsa_webhook_certificate_reloads",
            "gmsa_webhook_certificate_expiry_seconds",
            "gmsa_webhook_access_reviews_in_flight",
            "gmsa_webhook_published_contents_writes",
            "gmsa_webhook_build",
        ] {
            assert!(names(&text).contains(&name), "{name}: {text}");
        }
    }
}
