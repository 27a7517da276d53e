//! The API client and the requests made on an admission's behalf: one credential-spec GET, one
//! LocalSubjectAccessReview. Both are rate limited (`QPS`/`BURST`) and bounded in time, so a
//! slow API server turns into a clear denial instead of an admission timeout.

use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use gmsa_core::credspec::CredentialSpecError;
use gmsa_core::{names, AccessCheck, CredentialSpec, SpecLookup};
use gmsa_kube::describe_error;
use k8s_openapi::api::authorization::v1::{
    LocalSubjectAccessReview, ResourceAttributes, SubjectAccessReviewSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::client::ClientBuilder;
use kube::{Client, Config};
use serde_json::{Map, Value};
use tokio::time::Instant;
use tower::{Layer, Service};

use super::rate_limit::{RateLimited, RateLimiter};
use super::readiness::{Readiness, Source};
use super::KubeError;
use crate::metrics::{ApiCallKind, Metrics};

/// Bound on one request made for an admission, rate-limit wait included. The API server gives
/// a webhook 10 s by default; answering within that lets us deny with a message that names the
/// problem instead of leaving the user with a webhook timeout.
pub const API_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Time kept for the request itself when waiting for the rate limit: a token granted at the
/// deadline's last moment would only turn a clear refusal into a timeout.
const CALL_RESERVE: Duration = Duration::from_millis(100);

/// A client without the admission path's counting and limits, and its default namespace:
/// for the certificate renewal, which makes a few requests a minute.
pub(crate) async fn plain_client(kubeconfig: Option<&Path>) -> Result<Client, KubeError> {
    let config = gmsa_kube::load_config(kubeconfig).await?;
    gmsa_kube::client(config)
        .map_err(|e| KubeError::Config(format!("cannot build the Kubernetes client: {e}")))
}

/// Builds the client, counting every request it makes in `metrics`, and telling `readiness`
/// when a list or watch of a watched source is accepted again (a resumed watch may deliver no
/// event for a long time; the accepted request is the evidence it follows the cluster).
pub(crate) fn build_client(
    config: Config,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
) -> Result<Client, KubeError> {
    gmsa_kube::install_crypto_provider();
    let builder = ClientBuilder::try_from(config)
        .map_err(|e| KubeError::Config(format!("cannot build the Kubernetes client: {e}")))?;
    Ok(builder
        .with_layer(&CountApiCalls { metrics, readiness })
        .build())
}

/// The client and what every admission-time request goes through.
pub(super) struct ApiAccess {
    pub(super) client: Client,
    limiter: RateLimiter,
    credential_specs: Api<DynamicObject>,
}

impl ApiAccess {
    pub(super) fn new(client: Client, limiter: RateLimiter) -> Self {
        let credential_specs =
            Api::all_with(client.clone(), &gmsa_kube::credential_spec_resource());
        Self {
            client,
            limiter,
            credential_specs,
        }
    }

    /// Waits for this request's turn at the rate limit; refused at once if the turn would come
    /// after `deadline` (less [`CALL_RESERVE`] for the request itself) or [`API_CALL_TIMEOUT`].
    async fn limit(&self, deadline: Instant) -> Result<(), RateLimited> {
        let deadline = deadline
            .checked_sub(CALL_RESERVE)
            .unwrap_or(deadline)
            .min(Instant::now() + API_CALL_TIMEOUT);
        self.limiter.acquire(deadline).await
    }

    /// One GET of a credential spec, if the rate limit lets it start before `deadline`.
    pub(super) async fn get_credential_spec(&self, name: &str, deadline: Instant) -> SpecLookup {
        if let Err(limited) = self.limit(deadline).await {
            return SpecLookup::Failed(limited.to_string());
        }
        let call = self.credential_specs.get_opt(name);
        match tokio::time::timeout(API_CALL_TIMEOUT, call).await {
            Ok(Ok(Some(object))) => match credential_spec_from_object(object) {
                Ok(spec) => SpecLookup::Found(Arc::new(spec)),
                Err(e) => SpecLookup::Failed(format!(
                    "the API server returned an unusable GMSACredentialSpec: {e}"
                )),
            },
            Ok(Ok(None)) => SpecLookup::NotFound,
            Ok(Err(e)) => SpecLookup::Failed(describe_error(&e)),
            Err(_) => SpecLookup::Failed(timeout_text()),
        }
    }

    /// One LocalSubjectAccessReview: may this service account `use` this credential spec; if
    /// the rate limit lets it start before `deadline`.
    pub(super) async fn review_access(
        &self,
        namespace: &str,
        service_account: &str,
        spec: &str,
        deadline: Instant,
    ) -> AccessCheck {
        if let Err(limited) = self.limit(deadline).await {
            return AccessCheck::Failed(limited.to_string());
        }
        let review = access_review(namespace, service_account, spec);
        let api: Api<LocalSubjectAccessReview> = Api::namespaced(self.client.clone(), namespace);
        let params = PostParams::default();
        let call = api.create(&params, &review);
        match tokio::time::timeout(API_CALL_TIMEOUT, call).await {
            Ok(Ok(answer)) => match answer.status {
                Some(status) if status.allowed => AccessCheck::Allowed,
                Some(status) => AccessCheck::Denied {
                    reason: status.reason.unwrap_or_default(),
                },
                None => AccessCheck::Failed(
                    "the API server answered the LocalSubjectAccessReview without a status"
                        .to_string(),
                ),
            },
            Ok(Err(e)) => AccessCheck::Failed(describe_error(&e)),
            Err(_) => AccessCheck::Failed(timeout_text()),
        }
    }

    /// Whether the API server answers a list of credential specs: what readiness means when
    /// the caches are off.
    pub(super) async fn check_reachable(&self) -> Result<(), String> {
        self.limit(Instant::now() + API_CALL_TIMEOUT)
            .await
            .map_err(|limited| limited.to_string())?;
        let params = ListParams::default().limit(1);
        let call = self.credential_specs.list(&params);
        match tokio::time::timeout(API_CALL_TIMEOUT, call).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(describe_error(&e)),
            Err(_) => Err(timeout_text()),
        }
    }
}

/// The review the reference makes, plus the `system:authenticated` group it forgets.
fn access_review(namespace: &str, service_account: &str, spec: &str) -> LocalSubjectAccessReview {
    LocalSubjectAccessReview {
        metadata: ObjectMeta {
            namespace: Some(namespace.to_string()),
            ..ObjectMeta::default()
        },
        spec: SubjectAccessReviewSpec {
            user: Some(names::service_account_user(namespace, service_account)),
            groups: Some(names::service_account_groups(namespace)),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(namespace.to_string()),
                verb: Some(names::USE_VERB.to_string()),
                group: Some(names::GROUP.to_string()),
                version: Some(names::VERSION.to_string()),
                resource: Some(names::RESOURCE.to_string()),
                name: Some(spec.to_string()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        status: None,
    }
}

/// Builds the ready-to-inline spec from an object the API server sent, keeping only what the
/// spec needs (annotations such as `last-applied-configuration` are dropped, not copied).
pub(super) fn credential_spec_from_object(
    object: DynamicObject,
) -> Result<CredentialSpec, CredentialSpecError> {
    let DynamicObject {
        types,
        metadata,
        data,
    } = object;
    let mut resource = match data {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let mut meta = Map::new();
    if let Some(name) = metadata.name {
        meta.insert("name".to_string(), Value::String(name));
    }
    if let Some(rv) = metadata.resource_version {
        meta.insert("resourceVersion".to_string(), Value::String(rv));
    }
    resource.insert("metadata".to_string(), Value::Object(meta));
    if let Some(types) = types.filter(|t| !t.kind.is_empty()) {
        resource.insert("kind".to_string(), Value::String(types.kind));
    }
    CredentialSpec::from_resource(&Value::Object(resource))
}

fn timeout_text() -> String {
    format!(
        "no answer from the Kubernetes API within {}s",
        API_CALL_TIMEOUT.as_secs()
    )
}

/// Counts every request the client sends by what it is for, watches and re-lists included
/// (the watcher makes those itself, out of our sight).
#[derive(Clone)]
struct CountApiCalls {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

impl<S> Layer<S> for CountApiCalls {
    type Service = CountedService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CountedService {
            inner,
            metrics: self.metrics.clone(),
            readiness: self.readiness.clone(),
        }
    }
}

struct CountedService<S> {
    inner: S,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

impl<S, B, R> Service<http::Request<B>> for CountedService<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let kind = classify(request.method(), request.uri());
        if let Some(kind) = &kind {
            self.metrics.api_call(kind.clone());
        }
        let source = kind.and_then(|kind| watched_source(&kind, request.uri()));
        let call = self.inner.call(request);
        let readiness = self.readiness.clone();
        Box::pin(async move {
            let response = call.await?;
            if let Some(source) = source {
                if response.status().is_success() {
                    readiness.accepted(source);
                }
            }
            Ok(response)
        })
    }
}

/// The watched source a list or watch request is for.
fn watched_source(kind: &ApiCallKind, uri: &http::Uri) -> Option<Source> {
    match kind {
        ApiCallKind::ListCredentialSpecs | ApiCallKind::WatchCredentialSpecs => {
            Some(Source::CredentialSpecs)
        }
        ApiCallKind::ListRbac | ApiCallKind::WatchRbac => {
            match uri.path().trim_end_matches('/').rsplit('/').next()? {
                "roles" => Some(Source::Roles),
                "clusterroles" => Some(Source::ClusterRoles),
                "rolebindings" => Some(Source::RoleBindings),
                "clusterrolebindings" => Some(Source::ClusterRoleBindings),
                _ => None,
            }
        }
        _ => None,
    }
}

/// RBAC collections the decision cache watches.
pub(super) const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
const RBAC_RESOURCES: [&str; 4] = [
    "roles",
    "clusterroles",
    "rolebindings",
    "clusterrolebindings",
];

/// What kind of request this is, from its method and path.
fn classify(method: &http::Method, uri: &http::Uri) -> Option<ApiCallKind> {
    let path = uri.path();
    let watch = uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["apis", "authorization.k8s.io", "v1", "namespaces", _, "localsubjectaccessreviews"]
            if method == http::Method::POST =>
        {
            Some(ApiCallKind::LocalSubjectAccessReview)
        }
        ["apis", group, _, resource, _name]
            if *group == names::GROUP
                && *resource == names::RESOURCE
                && method == http::Method::PATCH =>
        {
            Some(ApiCallKind::PatchCredentialSpec)
        }
        ["apis", group, _, resource, rest @ ..]
            if *group == names::GROUP
                && *resource == names::RESOURCE
                && method == http::Method::GET =>
        {
            Some(match (rest, watch) {
                ([], true) => ApiCallKind::WatchCredentialSpecs,
                ([], false) => ApiCallKind::ListCredentialSpecs,
                _ => ApiCallKind::GetCredentialSpec,
            })
        }
        ["apis", group, "v1", resource]
            if *group == RBAC_GROUP
                && RBAC_RESOURCES.contains(resource)
                && method == http::Method::GET =>
        {
            Some(if watch {
                ApiCallKind::WatchRbac
            } else {
                ApiCallKind::ListRbac
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(method: http::Method, uri: &str) -> Option<ApiCallKind> {
        classify(&method, &uri.parse().expect("test uri"))
    }

    #[test]
    fn requests_are_classified_by_path() {
        use ApiCallKind::*;
        let cases = [
            (http::Method::GET, "/apis/windows.k8s.io/v1/gmsacredentialspecs/web", Some(GetCredentialSpec)),
            (http::Method::GET, "/apis/windows.k8s.io/v1/gmsacredentialspecs?limit=500", Some(ListCredentialSpecs)),
            (
                http::Method::GET,
                "/apis/windows.k8s.io/v1/gmsacredentialspecs?allowWatchBookmarks=true&watch=true&resourceVersion=5",
                Some(WatchCredentialSpecs),
            ),
            (
                http::Method::POST,
                "/apis/authorization.k8s.io/v1/namespaces/team-a/localsubjectaccessreviews?",
                Some(LocalSubjectAccessReview),
            ),
            (http::Method::GET, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings?limit=500", Some(ListRbac)),
            (http::Method::GET, "/apis/rbac.authorization.k8s.io/v1/roles?watch=true", Some(WatchRbac)),
            (http::Method::PATCH, "/apis/windows.k8s.io/v1/gmsacredentialspecs/web?fieldManager=gmsa-webhook", Some(PatchCredentialSpec)),
            (http::Method::GET, "/version", None),
            (http::Method::GET, "/api/v1/namespaces/default/pods", None),
        ];
        for (method, uri, want) in cases {
            assert_eq!(kind(method, uri), want, "{uri}");
        }
    }

    #[test]
    fn objects_become_specs_without_their_annotations() {
        let object: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "windows.k8s.io/v1",
            "kind": "GMSACredentialSpec",
            "metadata": {
                "name": "web",
                "resourceVersion": "42",
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}
            },
            "credspec": {"CmsPlugins": ["ActiveDirectory"], "DomainJoinConfig": {"DnsName": "a&b"}}
        }))
        .expect("object");
        let spec = credential_spec_from_object(object).expect("spec");
        assert_eq!(spec.name, "web");
        assert_eq!(spec.resource_version.as_deref(), Some("42"));
        let contents = spec.contents().expect("contents");
        assert_eq!(
            &*contents.encoded,
            r#"{"CmsPlugins":["ActiveDirectory"],"DomainJoinConfig":{"DnsName":"a\u0026b"}}"#
        );
    }

    #[test]
    fn reviews_ask_what_the_reference_asks() {
        let review =
            serde_json::to_value(access_review("team-a", "web", "gmsa-web")).expect("json");
        assert_eq!(
            review["spec"],
            serde_json::json!({
                "user": "system:serviceaccount:team-a:web",
                "groups": ["system:serviceaccounts", "system:serviceaccounts:team-a", "system:authenticated"],
                "resourceAttributes": {
                    "namespace": "team-a", "verb": "use", "group": "windows.k8s.io",
                    "version": "v1", "resource": "gmsacredentialspecs", "name": "gmsa-web"
                }
            })
        );
        assert_eq!(review["metadata"]["namespace"], "team-a");
    }
}
