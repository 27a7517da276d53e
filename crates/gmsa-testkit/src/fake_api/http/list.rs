//! LIST and WATCH of a collection: continue tokens, selectors, and waiting for a
//! resourceVersion, as the real server pages and resumes.

use super::*;

/// A continue token, shaped like the real server's: base64 of `{"v","rv","start"}`.
pub(super) fn encode_continue(rv: u64, last_key: &str) -> String {
    let token = json!({ "v": "meta.k8s.io/v1", "rv": rv, "start": format!("{last_key}\u{0}") });
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

pub(super) fn decode_continue(token: &str) -> Result<(u64, String), String> {
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

pub(super) fn selectors(
    rt: &ResourceType,
    params: &BTreeMap<String, String>,
) -> Result<(LabelSelector, FieldSelector), Status> {
    let labels = LabelSelector::parse(params.get("labelSelector").map_or("", String::as_str))
        .map_err(Status::bad_request)?;
    let fields = FieldSelector::parse(params.get("fieldSelector").map_or("", String::as_str))
        .map_err(|e| Status::bad_request(e.message(rt.custom)))?;
    Ok((labels, fields))
}

pub(super) fn parse_version(text: &str) -> Result<u64, Status> {
    text.parse()
        .map_err(|_| Status::bad_request(format!("invalid resource version: {}", quote(text))))
}

/// Waits until the store reaches `rv`; false when it did not within the configured wait.
pub(super) async fn reached(shared: &Shared, rv: u64) -> bool {
    let mut versions = shared.versions.subscribe();
    let wait = versions.wait_for(|current| *current >= rv);
    let reached = matches!(
        tokio::time::timeout(shared.options.future_version_wait, wait).await,
        Ok(Ok(_))
    );
    reached
}

pub(super) async fn list(
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

pub(super) async fn list_body(
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

pub(super) fn watch_collection(
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
