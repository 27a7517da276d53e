//! Access reviews (`LocalSubjectAccessReview`, `SubjectAccessReview`), decided by the project's
//! RBAC evaluation over the stored roles and bindings, with the real server's validation.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gmsa_core::rbac::{Aggregation, Binding, RbacIndex, ResourceAttributes, Role, UserInfo};
use serde_json::{json, Map, Value};

use super::resources::{CLUSTER_ROLES, CLUSTER_ROLE_BINDINGS, ROLES, ROLE_BINDINGS};
use super::status::{json_response, quote, FieldError, Status};
use super::{lock, Shared};

const GROUP: &str = "authorization.k8s.io";
const API_VERSION: &str = "authorization.k8s.io/v1";
/// Members are allowed everything by the authorizer that runs before RBAC.
const PRIVILEGED_GROUP: &str = "system:masters";

/// `POST /apis/authorization.k8s.io/v1/namespaces/{namespace}/localsubjectaccessreviews`.
pub(crate) fn local(shared: &Shared, namespace: &str, body: &[u8]) -> Response {
    let result = (|| {
        let review = decode(body, "LocalSubjectAccessReview")?;
        // 1.20 does not fill the object's namespace from the path: a review without
        // `metadata.namespace` fails validation below, as on a real cluster.
        let object_ns = review
            .get("metadata")
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let spec = review.get("spec").cloned().unwrap_or_else(|| json!({}));
        let mut errors = spec_errors(&spec);
        if let Some(attributes) = spec.get("resourceAttributes").filter(|a| !a.is_null()) {
            let asked = text(attributes, "namespace");
            if asked != object_ns {
                errors.push(FieldError::invalid(
                    "spec.resourceAttributes.namespace",
                    quote(asked),
                    "must match metadata.namespace",
                ));
            }
        }
        if let Some(other) = spec.get("nonResourceAttributes").filter(|a| !a.is_null()) {
            errors.push(FieldError::invalid(
                "spec.nonResourceAttributes",
                other.to_string(),
                "disallowed on this kind of request",
            ));
        }
        if !errors.is_empty() {
            // The decoded object has no kind, hence the bare `.authorization.k8s.io ""`.
            return Err(Status::invalid("", GROUP, "", &errors));
        }
        if object_ns != namespace {
            return Err(Status::bad_request(format!(
                "spec.resourceAttributes.namespace must match namespace: {namespace}"
            )));
        }
        let metadata = json!({ "namespace": namespace, "creationTimestamp": null });
        Ok(answer(shared, "LocalSubjectAccessReview", metadata, spec))
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /apis/authorization.k8s.io/v1/subjectaccessreviews`.
pub(crate) fn cluster(shared: &Shared, body: &[u8]) -> Response {
    let result = (|| {
        let review = decode(body, "SubjectAccessReview")?;
        let spec = review.get("spec").cloned().unwrap_or_else(|| json!({}));
        let errors = spec_errors(&spec);
        if !errors.is_empty() {
            return Err(Status::invalid("", GROUP, "", &errors));
        }
        let metadata = json!({ "creationTimestamp": null });
        Ok(answer(shared, "SubjectAccessReview", metadata, spec))
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value.get(field).and_then(Value::as_str).unwrap_or_default()
}

fn decode(body: &[u8], kind: &str) -> Result<Map<String, Value>, Status> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        Status::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
    })?;
    let Value::Object(review) = value else {
        return Err(Status::bad_request(
            "couldn't get version/kind; json parse error: not an object",
        ));
    };
    let given_kind = review.get("kind").and_then(Value::as_str).unwrap_or(kind);
    let given_version = review
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or(API_VERSION);
    if given_kind != kind || given_version != API_VERSION {
        return Err(Status::bad_request(format!(
            "{given_kind} in version {} cannot be handled as a {kind}: expected {API_VERSION} {kind}",
            quote(given_version.rsplit('/').next().unwrap_or_default())
        )));
    }
    Ok(review)
}

/// `ValidateSubjectAccessReviewSpec`, in its order.
fn spec_errors(spec: &Value) -> Vec<FieldError> {
    let present = |field: &str| spec.get(field).is_some_and(|v| !v.is_null());
    let mut errors = Vec::new();
    match (
        present("resourceAttributes"),
        present("nonResourceAttributes"),
    ) {
        (true, true) => errors.push(FieldError::invalid(
            "spec.nonResourceAttributes",
            spec["nonResourceAttributes"].to_string(),
            "cannot be specified in combination with resourceAttributes",
        )),
        (false, false) => errors.push(FieldError::invalid(
            "spec.resourceAttributes",
            quote("null"),
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
        _ => {}
    }
    let user = text(spec, "user");
    if user.is_empty() && groups(spec).is_empty() {
        errors.push(FieldError::invalid(
            "spec.user",
            quote(user),
            "at least one of user or group must be specified",
        ));
    }
    errors
}

fn groups(spec: &Value) -> Vec<String> {
    spec.get("groups")
        .and_then(Value::as_array)
        .map(|g| {
            g.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// The review echoed back with its decision, HTTP 201 as the real server answers a create.
fn answer(shared: &Shared, kind: &str, metadata: Value, spec: Value) -> Response {
    let user = UserInfo {
        name: text(&spec, "user").to_string(),
        groups: groups(&spec),
    };
    let (allowed, reason) = if user.groups.iter().any(|g| g == PRIVILEGED_GROUP) {
        (true, String::new())
    } else if let Some(attributes) = spec.get("resourceAttributes").filter(|a| a.is_object()) {
        let asked = ResourceAttributes {
            namespace: text(attributes, "namespace").into(),
            verb: text(attributes, "verb").into(),
            group: text(attributes, "group").into(),
            resource: text(attributes, "resource").into(),
            subresource: text(attributes, "subresource").into(),
            name: text(attributes, "name").into(),
        };
        let decision = policy(shared).authorize(&user, &asked);
        (decision.allowed, decision.reason)
    } else {
        // RBAC as modelled here covers resource requests only.
        (false, String::new())
    };
    let mut status = Map::new();
    status.insert("allowed".into(), json!(allowed));
    if !reason.is_empty() {
        status.insert("reason".into(), json!(reason));
    }
    let body = json!({
        "kind": kind,
        "apiVersion": API_VERSION,
        "metadata": metadata,
        "spec": spec,
        "status": status,
    });
    json_response(StatusCode::CREATED, &body)
}

/// The RBAC policy as the stored roles and bindings make it now, aggregation computed: the fake
/// runs no aggregation controller.
fn policy(shared: &Shared) -> RbacIndex {
    let store = lock(&shared.store);
    let at = store.resource_version();
    let objects = |rt| {
        store
            .snapshot(rt, None, at)
            .into_iter()
            .map(|(_, o)| (*o).clone())
    };
    let mut policy = RbacIndex::new(Aggregation::Computed);
    for role in objects(&CLUSTER_ROLES).filter_map(|o| serde_json::from_value::<Role>(o).ok()) {
        policy.add_cluster_role(role);
    }
    for role in objects(&ROLES).filter_map(|o| serde_json::from_value::<Role>(o).ok()) {
        policy.add_role(role);
    }
    for binding in
        objects(&CLUSTER_ROLE_BINDINGS).filter_map(|o| serde_json::from_value::<Binding>(o).ok())
    {
        policy.add_cluster_role_binding(binding);
    }
    for binding in objects(&ROLE_BINDINGS).filter_map(|o| serde_json::from_value::<Binding>(o).ok())
    {
        policy.add_role_binding(binding);
    }
    policy
}
