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
mod list;
mod write;

use list::{list, watch_collection};
use write::{create, delete, update};

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

#[cfg(test)]
mod tests {
    use super::list::{decode_continue, encode_continue};
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
