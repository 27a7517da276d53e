//! Routing and the GET/LIST/CREATE/UPDATE/DELETE handlers.
//!
//! One fallback handler parses paths itself, so unknown paths get the real server's 404 and
//! every request is counted and subject to injected latency and failures.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{Query, Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use serde_json::{json, Map, Value};

use super::resources::ResourceType;
use super::selector::{FieldSelector, LabelSelector};
use super::status::{json_response, quote, FieldError, Status};
use super::store::{Key, WriteError, WriteMode};
use super::watch::{self, WatchRequest, WatchStart};
use super::{lock, review, Rejection, Shared};

/// The real server's request body limit.
const MAX_BODY: usize = 3 * 1024 * 1024;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(dispatch).with_state(shared)
}

/// What a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Version,
    Collection {
        rt: ResourceType,
        version: String,
        namespace: Option<String>,
    },
    Object {
        rt: ResourceType,
        version: String,
        namespace: Option<String>,
        name: String,
    },
    LocalReview {
        namespace: String,
    },
    ClusterReview,
    Unknown,
}

fn parse_target(path: &str) -> Target {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["version"] => Target::Version,
        ["apis", "authorization.k8s.io", "v1", "namespaces", ns, "localsubjectaccessreviews"] => {
            Target::LocalReview {
                namespace: (*ns).to_string(),
            }
        }
        ["apis", "authorization.k8s.io", "v1", "subjectaccessreviews"] => Target::ClusterReview,
        ["apis", group, version, rest @ ..] => {
            let found = |plural: &str, namespaced: bool| {
                ResourceType::at(group, version, plural).filter(|rt| rt.namespaced == namespaced)
            };
            let version = (*version).to_string();
            match rest {
                [plural] => match ResourceType::at(group, &version, plural) {
                    // Namespaced kinds are listable across all namespaces at the bare path.
                    Some(rt) => Target::Collection {
                        rt,
                        version,
                        namespace: None,
                    },
                    None => Target::Unknown,
                },
                [plural, name] => match found(plural, false) {
                    Some(rt) => Target::Object {
                        rt,
                        version,
                        namespace: None,
                        name: (*name).into(),
                    },
                    None => Target::Unknown,
                },
                ["namespaces", ns, plural] => match found(plural, true) {
                    Some(rt) => Target::Collection {
                        rt,
                        version,
                        namespace: Some((*ns).into()),
                    },
                    None => Target::Unknown,
                },
                ["namespaces", ns, plural, name] => match found(plural, true) {
                    Some(rt) => Target::Object {
                        rt,
                        version,
                        namespace: Some((*ns).into()),
                        name: (*name).into(),
                    },
                    None => Target::Unknown,
                },
                _ => Target::Unknown,
            }
        }
        _ => Target::Unknown,
    }
}

fn is_true(params: &BTreeMap<String, String>, name: &str) -> bool {
    params.get(name).is_some_and(|v| v == "true" || v == "1")
}

/// The audit verb and resource a request counts under.
fn verb_and_resource(
    method: &Method,
    target: &Target,
    params: &BTreeMap<String, String>,
) -> (String, String) {
    let verb = |m: &Method| match *m {
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::DELETE => "delete",
        Method::PATCH => "patch",
        _ => "other",
    };
    match target {
        Target::Version => ("get".into(), "version".into()),
        Target::Collection { rt, .. } => {
            let v = match *method {
                Method::GET if is_true(params, "watch") => "watch",
                Method::GET => "list",
                _ => verb(method),
            };
            (v.into(), rt.plural.into())
        }
        Target::Object { rt, .. } => (verb(method).into(), rt.plural.into()),
        Target::LocalReview { .. } => (verb(method).into(), "localsubjectaccessreviews".into()),
        Target::ClusterReview => (verb(method).into(), "subjectaccessreviews".into()),
        Target::Unknown => (verb(method).into(), "unknown".into()),
    }
}

async fn dispatch(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let params = query_params(&parts.uri);
    let target = parse_target(parts.uri.path());
    let (verb, resource) = verb_and_resource(&parts.method, &target, &params);
    tracing::debug!(method = %parts.method, uri = %parts.uri, %verb, %resource, "fake API request");
    let admission = shared.admit(&verb, &resource);
    if !admission.latency.is_zero() {
        tokio::time::sleep(admission.latency).await;
    }
    if let Some(code) = admission.fail_with {
        return Status::injected(code).into_response();
    }
    let body = match to_bytes(body, MAX_BODY).await {
        Ok(bytes) => bytes,
        Err(e) => {
            return Status::bad_request(format!("unable to read the request body: {e}"))
                .into_response()
        }
    };

    match (parts.method, target) {
        (Method::GET, Target::Version) => json_response(StatusCode::OK, &version()),
        (
            Method::GET,
            Target::Collection {
                rt,
                version,
                namespace,
            },
        ) if is_true(&params, "watch") => {
            watch_collection(&shared, rt, version, namespace, &params)
        }
        (
            Method::GET,
            Target::Collection {
                rt,
                version,
                namespace,
            },
        ) => list(&shared, rt, &version, namespace.as_deref(), &params).await,
        (
            Method::POST,
            Target::Collection {
                rt,
                version,
                namespace,
            },
        ) => create(&shared, rt, &version, namespace.as_deref(), &body),
        (
            Method::GET,
            Target::Object {
                rt,
                version,
                namespace,
                name,
            },
        ) => get(&shared, rt, &version, namespace.as_deref(), &name),
        (
            Method::PUT,
            Target::Object {
                rt,
                version,
                namespace,
                name,
            },
        ) => update(&shared, rt, &version, namespace.as_deref(), &name, &body),
        (
            Method::DELETE,
            Target::Object {
                rt,
                namespace,
                name,
                ..
            },
        ) => delete(&shared, rt, namespace.as_deref(), &name),
        (Method::POST, Target::LocalReview { namespace }) => {
            review::local(&shared, &namespace, &body)
        }
        (Method::POST, Target::ClusterReview) => review::cluster(&shared, &body),
        (_, Target::Unknown) => not_found(parts.uri.path()),
        (method, Target::Collection { rt, .. } | Target::Object { rt, .. }) => {
            Status::method_not_allowed(&verb_for_message(&method), &rt.qualified()).into_response()
        }
        (method, Target::LocalReview { .. } | Target::ClusterReview | Target::Version) => {
            Status::method_not_allowed(&verb_for_message(&method), "authorization.k8s.io")
                .into_response()
        }
    }
}

/// Groups served by kube-apiserver's own handlers, which answer unknown paths with a `Status`.
/// Other groups (custom resources such as `windows.k8s.io`, unknown groups) fall through to a
/// plain-text 404, as on the real server.
const BUILT_IN_GROUP_PREFIXES: &[&str] = &[
    "/api/",
    "/apis/rbac.authorization.k8s.io/",
    "/apis/authorization.k8s.io/",
];

fn not_found(path: &str) -> Response {
    if path.starts_with("/apis/") && !BUILT_IN_GROUP_PREFIXES.iter().any(|p| path.starts_with(p)) {
        return (
            StatusCode::NOT_FOUND,
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; charset=utf-8",
            )],
            "404 page not found\n",
        )
            .into_response();
    }
    Status::path_not_found().into_response()
}

fn verb_for_message(method: &Method) -> String {
    method.as_str().to_ascii_lowercase()
}

fn query_params(uri: &Uri) -> BTreeMap<String, String> {
    Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|Query(pairs)| pairs.into_iter().collect())
        .unwrap_or_default()
}

fn version() -> Value {
    json!({
        "major": "1",
        "minor": "20",
        "gitVersion": "v1.20.2",
        "gitCommit": "faecb196815e248d3ecfb03c680a4507229c2a56",
        "gitTreeState": "clean",
        "buildDate": "2021-01-13T13:20:00Z",
        "goVersion": "go1.15.5",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

fn key_of(rt: &ResourceType, namespace: Option<&str>, name: &str) -> Key {
    Key {
        resource: rt.plural,
        namespace: if rt.namespaced {
            namespace.unwrap_or_default().to_string()
        } else {
            String::new()
        },
        name: name.to_string(),
    }
}

fn get(
    shared: &Shared,
    rt: ResourceType,
    version: &str,
    namespace: Option<&str>,
    name: &str,
) -> Response {
    let found = lock(&shared.store).get(&key_of(&rt, namespace, name));
    match found {
        Some(object) => json_response(StatusCode::OK, &rt.served(&object, version)),
        None => Status::not_found(&rt, name).into_response(),
    }
}

/// A continue token, shaped like the real server's: base64 of `{"v","rv","start"}`.
fn encode_continue(rv: u64, last_key: &str) -> String {
    let token = json!({ "v": "meta.k8s.io/v1", "rv": rv, "start": format!("{last_key}\u{0}") });
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(u64, String), String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|e| e.to_string())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if value.get("v").and_then(Value::as_str) != Some("meta.k8s.io/v1") {
        return Err("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)".into());
    }
    let rv = value.get("rv").and_then(Value::as_i64).unwrap_or(0);
    let start = value
        .get("start")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let start = start.strip_suffix('\u{0}').unwrap_or(start);
    Ok((u64::try_from(rv).unwrap_or(0), start.to_string()))
}

fn selectors(
    rt: &ResourceType,
    params: &BTreeMap<String, String>,
) -> Result<(LabelSelector, FieldSelector), Status> {
    let labels = LabelSelector::parse(params.get("labelSelector").map_or("", String::as_str))
        .map_err(Status::bad_request)?;
    let fields = FieldSelector::parse(params.get("fieldSelector").map_or("", String::as_str))
        .map_err(|e| Status::bad_request(e.message(rt.custom)))?;
    Ok((labels, fields))
}

fn parse_version(text: &str) -> Result<u64, Status> {
    text.parse()
        .map_err(|_| Status::bad_request(format!("invalid resource version: {}", quote(text))))
}

/// Waits until the store reaches `rv`; false when it did not within the configured wait.
async fn reached(shared: &Shared, rv: u64) -> bool {
    let mut versions = shared.versions.subscribe();
    let wait = versions.wait_for(|current| *current >= rv);
    let reached = matches!(
        tokio::time::timeout(shared.options.future_version_wait, wait).await,
        Ok(Ok(_))
    );
    reached
}

async fn list(
    shared: &Shared,
    rt: ResourceType,
    version: &str,
    namespace: Option<&str>,
    params: &BTreeMap<String, String>,
) -> Response {
    match list_body(shared, rt, version, namespace, params).await {
        Ok(body) => json_response(StatusCode::OK, &body),
        Err(status) => status.into_response(),
    }
}

async fn list_body(
    shared: &Shared,
    rt: ResourceType,
    version: &str,
    namespace: Option<&str>,
    params: &BTreeMap<String, String>,
) -> Result<Value, Status> {
    let (labels, fields) = selectors(&rt, params)?;
    let limit = match params.get("limit").filter(|l| !l.is_empty()) {
        Some(text) => text
            .parse::<i64>()
            .map_err(|_| Status::bad_request(format!("invalid limit: {}", quote(text))))?,
        None => 0,
    };
    let requested_rv = params
        .get("resourceVersion")
        .map(String::as_str)
        .unwrap_or("");
    let exact_match = params.get("resourceVersionMatch").map(String::as_str) == Some("Exact");
    let no_match = params
        .get("resourceVersionMatch")
        .is_none_or(|m| m.is_empty());
    let continue_token = params.get("continue").filter(|c| !c.is_empty());

    // The watch cache serves resourceVersion=0 and ignores the limit; everything else pages.
    let paging = limit > 0 && (requested_rv != "0" || continue_token.is_some());
    let mut start_after: Option<String> = None;
    let at = if let Some(token) = continue_token {
        let (rv, start) = decode_continue(token)
            .map_err(|e| Status::bad_request(format!("continue key is not valid: {e}")))?;
        if rv < lock(&shared.store).compacted() {
            return Err(Status::continue_expired(encode_continue(0, &start)));
        }
        start_after = Some(start);
        if rv == 0 {
            lock(&shared.store).resource_version()
        } else {
            rv
        }
    } else if requested_rv.is_empty() || requested_rv == "0" {
        lock(&shared.store).resource_version()
    } else {
        let rv = parse_version(requested_rv)?;
        let current = lock(&shared.store).resource_version();
        if rv > current && !reached(shared, rv).await {
            let current = lock(&shared.store).resource_version();
            return Err(Status::too_large_resource_version(rv, current));
        }
        let exact = exact_match || (no_match && paging);
        if exact {
            if rv < lock(&shared.store).compacted() {
                return Err(Status::gone(
                    "The resourceVersion for the provided list is too old.",
                ));
            }
            rv
        } else {
            lock(&shared.store).resource_version()
        }
    };

    let across_namespaces = rt.namespaced && namespace.is_none();
    let mut items: Vec<(String, Arc<Value>)> = lock(&shared.store)
        .snapshot(&rt, namespace, at)
        .into_iter()
        .map(|(key, object)| (key.relative(across_namespaces), object))
        .filter(|(_, object)| labels.matches(object) && fields.matches(object))
        .collect();
    // etcd orders by key bytes, so `a-b/x` sorts before `a/x`.
    items.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(start) = &start_after {
        items.retain(|(key, _)| key.as_str() > start.as_str());
    }

    let mut metadata = Map::new();
    let mut continue_out = String::new();
    if paging {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        if items.len() > limit {
            let remaining = items.len() - limit;
            items.truncate(limit);
            if let Some((last, _)) = items.last() {
                continue_out = encode_continue(at, last);
            }
            // The real server counts what is left only when no selector filtered the list.
            if labels.is_empty() && fields.is_empty() {
                metadata.insert("remainingItemCount".into(), json!(remaining));
            }
        }
    }
    metadata.insert("resourceVersion".into(), json!(at.to_string()));
    if rt.custom || !continue_out.is_empty() {
        metadata.insert("continue".into(), json!(continue_out));
    }

    let items: Vec<Value> = items
        .into_iter()
        .map(|(_, object)| {
            let mut item = rt.served(&object, version);
            // Typed lists carry no type information on their items; unstructured ones do.
            if !rt.custom {
                if let Some(map) = item.as_object_mut() {
                    map.remove("apiVersion");
                    map.remove("kind");
                }
            }
            item
        })
        .collect();
    Ok(json!({
        "apiVersion": rt.api_version(version),
        "kind": format!("{}List", rt.kind),
        "metadata": metadata,
        "items": items,
    }))
}

fn watch_collection(
    shared: &Arc<Shared>,
    rt: ResourceType,
    version: String,
    namespace: Option<String>,
    params: &BTreeMap<String, String>,
) -> Response {
    let (labels, fields) = match selectors(&rt, params) {
        Ok(s) => s,
        Err(status) => return status.into_response(),
    };
    let start = match params.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => WatchStart::Now,
        Some(text) => match parse_version(text) {
            Ok(rv) => WatchStart::After(rv),
            Err(status) => return status.into_response(),
        },
    };
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|t| *t > 0)
        .map(Duration::from_secs)
        .unwrap_or(shared.options.default_watch_timeout);
    let request = WatchRequest {
        rt,
        version,
        namespace,
        labels,
        fields,
        start,
        bookmarks: is_true(params, "allowWatchBookmarks"),
        timeout,
    };
    let body = watch::stream(shared.clone(), request);
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response()
}

/// Decodes a request body into an object of `rt`, checking its type against the path's.
fn decode_body(
    rt: &ResourceType,
    version: &str,
    body: &[u8],
) -> Result<Map<String, Value>, Status> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        Status::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
    })?;
    let Value::Object(map) = value else {
        return Err(Status::bad_request(
            "couldn't get version/kind; json parse error: not an object",
        ));
    };
    let text = |field: &str| map.get(field).and_then(Value::as_str).unwrap_or_default();
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    if !kind.is_empty() && kind != rt.kind {
        return Err(Status::bad_request(format!(
            "{kind} in version {} cannot be handled as a {}: the kind does not match",
            quote(version),
            rt.kind
        )));
    }
    if !api_version.is_empty() && ResourceType::of(api_version, rt.kind) != Some(*rt) {
        return Err(Status::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            rt.api_version(version)
        )));
    }
    Ok(map)
}

fn rejection_status(rt: &ResourceType, version: &str, name: &str, rejection: Rejection) -> Status {
    match rejection {
        Rejection::MissingName => Status::invalid(
            rt.kind,
            rt.group,
            "",
            &[FieldError::required(
                "metadata.name",
                "name or generateName is required",
            )],
        ),
        Rejection::Malformed(reason) => Status::bad_request(format!(
            "{} in version {} cannot be handled as a {}: {reason} ({})",
            rt.kind,
            quote(version),
            rt.kind,
            quote(name)
        )),
    }
}

fn write_status(rt: &ResourceType, name: &str, error: WriteError) -> Status {
    match error {
        WriteError::AlreadyExists => Status::already_exists(rt, name),
        WriteError::NotFound => Status::not_found(rt, name),
        WriteError::Conflict => Status::conflict(rt, name),
    }
}

/// The namespace an object names must be the request's, as the real server insists.
fn check_namespace(map: &Map<String, Value>, namespace: Option<&str>) -> Result<(), Status> {
    let body_ns = map
        .get("metadata")
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    match namespace {
        Some(ns) if !body_ns.is_empty() && body_ns != ns => Err(Status::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => Ok(()),
    }
}

fn create(
    shared: &Shared,
    rt: ResourceType,
    version: &str,
    namespace: Option<&str>,
    body: &[u8],
) -> Response {
    if rt.namespaced && namespace.is_none() {
        return Status::path_not_found().into_response();
    }
    let result = (|| {
        let map = decode_body(&rt, version, body)?;
        check_namespace(&map, namespace)?;
        let (key, map) = shared
            .prepare(&rt, map, namespace)
            .map_err(|r| rejection_status(&rt, version, "", r))?;
        let name = key.name.clone();
        shared
            .commit(&rt, key, map, WriteMode::Create)
            .map_err(|e| write_status(&rt, &name, e))
    })();
    match result {
        Ok(written) => json_response(StatusCode::CREATED, &rt.served(&written.object, version)),
        Err(status) => status.into_response(),
    }
}

fn update(
    shared: &Shared,
    rt: ResourceType,
    version: &str,
    namespace: Option<&str>,
    name: &str,
    body: &[u8],
) -> Response {
    let result = (|| {
        let mut map = decode_body(&rt, version, body)?;
        check_namespace(&map, namespace)?;
        let body_name = map
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if !body_name.is_empty() && body_name != name {
            return Err(Status::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let precondition = match map.get("metadata").and_then(|m| m.get("resourceVersion")) {
            Some(Value::String(rv)) if !rv.is_empty() => Some(parse_version(rv)?),
            _ => None,
        };
        if precondition.is_none() && rt.needs_version_on_update() {
            return Err(Status::invalid(
                rt.kind,
                rt.group,
                name,
                &[FieldError::invalid(
                    "metadata.resourceVersion",
                    "0x0".into(),
                    "must be specified for an update",
                )],
            ));
        }
        let meta = map.entry("metadata").or_insert_with(|| json!({}));
        if let Value::Object(meta) = meta {
            meta.insert("name".into(), json!(name));
        }
        let (key, map) = shared
            .prepare(&rt, map, namespace)
            .map_err(|r| rejection_status(&rt, version, name, r))?;
        let mode = WriteMode::Update {
            precondition,
            create_if_missing: rt.creates_on_update(),
        };
        shared
            .commit(&rt, key, map, mode)
            .map_err(|e| write_status(&rt, name, e))
    })();
    match result {
        Ok(written) => {
            let code = if written.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            json_response(code, &rt.served(&written.object, version))
        }
        Err(status) => status.into_response(),
    }
}

fn delete(shared: &Shared, rt: ResourceType, namespace: Option<&str>, name: &str) -> Response {
    match shared.remove(&rt, &key_of(&rt, namespace, name)) {
        Some(last) => {
            let uid = last
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or_default();
            json_response(StatusCode::OK, &Status::deleted(&rt, name, uid))
        }
        None => Status::not_found(&rt, name).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_api::resources::{CREDENTIAL_SPECS, ROLES};

    #[test]
    fn paths_route_like_the_real_server() {
        let object = |rt, version: &str, namespace: Option<&str>, name: &str| Target::Object {
            rt,
            version: version.into(),
            namespace: namespace.map(Into::into),
            name: name.into(),
        };
        assert_eq!(
            parse_target("/apis/windows.k8s.io/v1alpha1/gmsacredentialspecs/x"),
            object(CREDENTIAL_SPECS, "v1alpha1", None, "x")
        );
        assert_eq!(
            parse_target("/apis/rbac.authorization.k8s.io/v1/namespaces/team-c/roles/r"),
            object(ROLES, "v1", Some("team-c"), "r")
        );
        assert_eq!(
            parse_target("/apis/rbac.authorization.k8s.io/v1/roles"),
            Target::Collection {
                rt: ROLES,
                version: "v1".into(),
                namespace: None
            }
        );
        for unknown in [
            "/apis/rbac.authorization.k8s.io/v1/roles/r",
            "/apis/windows.k8s.io/v2/gmsacredentialspecs",
            "/apis/windows.k8s.io/v1/namespaces/a/gmsacredentialspecs",
            "/api/v1/pods",
            "/",
        ] {
            assert_eq!(parse_target(unknown), Target::Unknown, "{unknown}");
        }
    }

    #[test]
    fn continue_tokens_round_trip() {
        let token = encode_continue(321, "team-c/reader");
        assert_eq!(
            decode_continue(&token),
            Ok((321, "team-c/reader".to_string()))
        );
        assert!(decode_continue("not a token").is_err());
    }
}
