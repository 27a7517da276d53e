//! The HTTP surface: admission endpoints with the reference's status codes, health, readiness,
//! version and metrics. Transport (TLS, connections, drain) lives in [`crate::serve`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use gmsa_core::admission::{Answer, Endpoint, Review, API_VERSION_V1};
use gmsa_core::decision::random_hostname;
use gmsa_core::names::paths;
use gmsa_core::{Denial, Hook, Options, Verdict};
use tracing::Instrument;

use crate::backend::Backend;
use crate::config::VERSION;
use crate::metrics::{AdmissionLabels, Metrics, PathLabels};

/// Shared state of the request handlers.
pub struct App {
    pub backend: Backend,
    pub metrics: Arc<Metrics>,
    pub options: Options,
    pub body: BodyLimits,
    draining: AtomicBool,
}

/// What a request body may cost: its size, and how long it may take to arrive after the
/// headers (they have their own timeout in [`crate::serve`]).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    pub read_timeout: Duration,
}

impl BodyLimits {
    /// At most `max_bytes`, arriving within the default 10 s.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            read_timeout: Duration::from_secs(10),
        }
    }
}

impl App {
    pub fn new(
        backend: Backend,
        metrics: Arc<Metrics>,
        options: Options,
        body: BodyLimits,
    ) -> Arc<Self> {
        Arc::new(Self {
            backend,
            metrics,
            options,
            body,
            draining: AtomicBool::new(false),
        })
    }

    /// Marks the server as shutting down: `/readyz` fails from now on, serving goes on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether the server should receive new traffic.
    pub fn is_ready(&self) -> bool {
        !self.draining.load(Ordering::SeqCst) && self.backend.is_ready()
    }
}

/// The router of every endpoint. Unknown paths answer 404 with an empty body.
pub fn router(app: Arc<App>) -> Router {
    status_routes()
        .route(paths::MUTATE, any(mutate))
        .route(paths::VALIDATE, any(validate))
        .route(paths::VALIDATE_CREDSPEC, any(validate_credspec))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(app)
}

/// The router of the plain-HTTP probe port (`--probe-port`): health, readiness, version and
/// metrics, never an admission. Kubelet probes and scrapers reach it when `--client-ca`
/// makes the main port demand a client certificate they do not have.
pub fn probe_router(app: Arc<App>) -> Router {
    status_router(app)
}

/// What the status endpoints read: the admission server's [`App`], or, with
/// `--no-admission`, the contents keeper alone.
pub trait Status: Send + Sync + 'static {
    /// Whether `/readyz` answers 200.
    fn is_ready(&self) -> bool;
    /// What `/metrics` encodes.
    fn metrics(&self) -> &Metrics;
}

impl Status for App {
    fn is_ready(&self) -> bool {
        App::is_ready(self)
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

impl Status for crate::keeper::Keeper {
    fn is_ready(&self) -> bool {
        crate::keeper::Keeper::is_ready(self)
    }

    fn metrics(&self) -> &Metrics {
        crate::keeper::Keeper::metrics(self)
    }
}

/// Health, readiness, version and metrics of `state`; 404 elsewhere.
pub fn status_router<S: Status>(state: Arc<S>) -> Router {
    status_routes()
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(state)
}

fn status_routes<S: Status>() -> Router<Arc<S>> {
    Router::new()
        .route(paths::HEALTH, get(|| async { StatusCode::NO_CONTENT }))
        .route(paths::READYZ, get(readyz::<S>))
        .route(paths::INFO, get(info))
        .route(paths::METRICS, get(metrics::<S>))
}

async fn readyz<S: Status>(State(state): State<Arc<S>>) -> StatusCode {
    if state.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn info() -> Response {
    json_response(
        StatusCode::OK,
        format!(r#"{{"version":"{VERSION}"}}"#).into_bytes(),
    )
}

async fn metrics<S: Status>(State(state): State<Arc<S>>) -> Response {
    let mut response = state.metrics().encode().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

async fn mutate(State(app): State<Arc<App>>, request: Request) -> Response {
    admission(app, Endpoint::Pods(Hook::Mutate), request).await
}

async fn validate(State(app): State<Arc<App>>, request: Request) -> Response {
    admission(app, Endpoint::Pods(Hook::Validate), request).await
}

async fn validate_credspec(State(app): State<Arc<App>>, request: Request) -> Response {
    admission(app, Endpoint::CredentialSpecs, request).await
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The API server's deadline for this call (`?timeout=10s`), less a margin to answer in time.
fn deadline(query: Option<&str>) -> Duration {
    let given = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("timeout="))
        .and_then(|v| crate::config::parse_duration(v).ok())
        .unwrap_or(Duration::from_secs(10));
    given
        .saturating_sub(given / 10)
        .max(Duration::from_millis(100))
}

async fn admission(app: Arc<App>, endpoint: Endpoint, request: Request) -> Response {
    if request.method() != Method::POST {
        tracing::info!(method = %request.method(), path = endpoint.path(), "expected a POST request");
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let content_type = request.headers().get(header::CONTENT_TYPE);
    if content_type.map(HeaderValue::as_bytes) != Some(b"application/json") {
        tracing::info!(content_type = ?content_type, path = endpoint.path(), "expected JSON content-type header");
        return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
    }
    let deadline = deadline(request.uri().query());
    let declared_len = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_len.is_some_and(|n| n > app.body.max_bytes as u64) {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    }
    let version = request.version();
    let read = axum::body::to_bytes(request.into_body(), app.body.max_bytes);
    let body = match tokio::time::timeout(app.body.read_timeout, read).await {
        Ok(Ok(body)) => body,
        Err(_) => {
            tracing::info!(path = endpoint.path(), timeout = ?app.body.read_timeout, "request body not received in time");
            let mut response = StatusCode::REQUEST_TIMEOUT.into_response();
            // HTTP/1.1 cannot go on after an unfinished body; HTTP/2 ends just this stream.
            if version < axum::http::Version::HTTP_2 {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            return response;
        }
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                return StatusCode::PAYLOAD_TOO_LARGE.into_response();
            }
            let answer =
                Answer::refused(Denial::new(400, format!("couldn't read request body: {e}")));
            return json_response(StatusCode::OK, answer.body(API_VERSION_V1, ""));
        }
    };
    let started = Instant::now();
    let (body, operation, allowed) = review(&app, endpoint, &body, deadline).await;
    let path = endpoint.path();
    app.metrics
        .latency
        .get_or_create(&PathLabels { path })
        .observe(started.elapsed().as_secs_f64());
    app.metrics
        .admissions
        .get_or_create(&AdmissionLabels {
            path,
            operation: crate::metrics::operation_label(&operation),
            allowed: if allowed { "true" } else { "false" },
        })
        .inc();
    json_response(StatusCode::OK, body)
}

/// Reads, decides and answers one review of either endpoint; returns the body, the operation
/// and the outcome.
async fn review(
    app: &App,
    endpoint: Endpoint,
    body: &Bytes,
    deadline: Duration,
) -> (Vec<u8>, String, bool) {
    let review = Review::read(endpoint, body);
    // Debug level: formatting a span's fields for every admission costs more than deciding it.
    // A refusal, or an admission with warnings, which an operator must be able to find, is
    // logged at info with the same fields; a plain admission is counted in the metrics and
    // logged at debug.
    let span = tracing::debug_span!(
        "admission",
        hook = endpoint.as_str(),
        uid = review.uid(),
        namespace = %review.namespace,
        name = %review.name,
        operation = %review.operation,
    );
    async {
        let needs = review.needs();
        let ends = tokio::time::Instant::now() + deadline;
        let answer = match tokio::time::timeout_at(ends, app.backend.gather(&needs, ends)).await {
            Ok(facts) => review.decide(&facts, app.options, || random_hostname(&mut rand::rng())),
            Err(_) => Answer::refused(Denial::new(
                500,
                format!(
                    "timed out after {:?} looking up GMSA cred specs and authorizations: the Kubernetes API is too slow or unreachable",
                    deadline
                ),
            )),
        };
        let warnings = answer.warnings.len();
        match &answer.verdict {
            Verdict::Allowed { patch } if warnings == 0 => {
                tracing::debug!(patched = patch.is_some(), "admitted");
            }
            Verdict::Allowed { patch } => tracing::info!(
                hook = endpoint.as_str(),
                uid = review.uid(),
                namespace = %review.namespace,
                name = %review.name,
                operation = %review.operation,
                patched = patch.is_some(),
                warnings,
                "admitted"
            ),
            Verdict::Denied(d) => tracing::info!(
                hook = endpoint.as_str(),
                uid = review.uid(),
                namespace = %review.namespace,
                name = %review.name,
                operation = %review.operation,
                code = d.code,
                message = %d.message,
                warnings,
                "refused"
            ),
        }
        let allowed = answer.verdict.is_allowed();
        (review.respond(&answer), review.operation.clone(), allowed)
    }
    .instrument(span)
    .await
}
