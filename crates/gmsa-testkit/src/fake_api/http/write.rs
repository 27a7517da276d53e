//! CREATE, UPDATE and DELETE: body decoding and the real server's refusals (`Status` bodies).

use super::list::parse_version;
use super::*;

/// Decodes a request body into an object of `rt`, checking its type against the path's.
pub(super) fn decode_body(
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

pub(super) fn rejection_status(
    rt: &ResourceType,
    version: &str,
    name: &str,
    rejection: Rejection,
) -> Status {
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

pub(super) fn write_status(rt: &ResourceType, name: &str, error: WriteError) -> Status {
    match error {
        WriteError::AlreadyExists => Status::already_exists(rt, name),
        WriteError::NotFound => Status::not_found(rt, name),
        WriteError::Conflict => Status::conflict(rt, name),
    }
}

/// The namespace an object names must be the request's, as the real server insists.
pub(super) fn check_namespace(
    map: &Map<String, Value>,
    namespace: Option<&str>,
) -> Result<(), Status> {
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

pub(super) fn create(
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

pub(super) fn update(
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

pub(super) fn delete(
    shared: &Shared,
    rt: ResourceType,
    namespace: Option<&str>,
    name: &str,
) -> Response {
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
