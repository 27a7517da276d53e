//! The fake API server over plain HTTP, checked against what a real kube-apiserver 1.20 sends.

mod support;

use std::time::{Duration, Instant};

use gmsa_testkit::{FakeApiServer, FakeOptions};
use http::{Method, StatusCode};
use serde_json::{json, Value};
use support::{credspec, rv_of, webapp1_grant, Http, WAIT};

const CREDSPECS: &str = "/apis/windows.k8s.io/v1/gmsacredentialspecs";
const LSAR_DEFAULT: &str =
    "/apis/authorization.k8s.io/v1/namespaces/default/localsubjectaccessreviews";

async fn started() -> (FakeApiServer, Http) {
    let server = FakeApiServer::start_with(
        FakeOptions::default().bookmark_interval(Duration::from_millis(200)),
    )
    .await;
    let http = Http::new(server.url());
    (server, http)
}

fn use_review(namespace: &str, service_account_ns: &str, spec: &str) -> Value {
    json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "LocalSubjectAccessReview",
        "metadata": { "namespace": service_account_ns },
        "spec": {
            "resourceAttributes": {
                "namespace": namespace,
                "verb": "use",
                "group": "windows.k8s.io",
                "version": "v1",
                "resource": "gmsacredentialspecs",
                "name": spec
            },
            "user": format!("system:serviceaccount:{service_account_ns}:default"),
            "groups": [
                "system:serviceaccounts",
                format!("system:serviceaccounts:{service_account_ns}"),
                "system:authenticated"
            ]
        }
    })
}

#[tokio::test]
async fn get_returns_the_object_or_the_real_not_found_status() {
    let (server, http) = started().await;
    let stored = server
        .apply(credspec("gmsa-webapp1", "WebApp1"))
        .expect("apply");

    let found = http.get(&format!("{CREDSPECS}/gmsa-webapp1")).await;
    assert_eq!(found.status, StatusCode::OK);
    assert_eq!(found.headers["content-type"], "application/json");
    assert_eq!(found.body, stored);
    assert_eq!(found.body["apiVersion"], "windows.k8s.io/v1");
    assert_eq!(found.body["kind"], "GMSACredentialSpec");
    assert_eq!(
        found.body["credspec"]["CmsPlugins"],
        json!(["ActiveDirectory"])
    );
    assert!(found.body.get("spec").is_none());
    let meta = &found.body["metadata"];
    assert_eq!(meta["generation"], 1);
    assert_eq!(meta["uid"].as_str().map(str::len), Some(36));
    assert!(meta["creationTimestamp"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z') && t.len() == 20));
    assert_eq!(rv_of(&found.body), server.resource_version());

    let alpha = http
        .get("/apis/windows.k8s.io/v1alpha1/gmsacredentialspecs/gmsa-webapp1")
        .await;
    assert_eq!(alpha.status, StatusCode::OK);
    assert_eq!(alpha.body["apiVersion"], "windows.k8s.io/v1alpha1");
    assert_eq!(alpha.body["metadata"], found.body["metadata"]);

    let missing = http.get(&format!("{CREDSPECS}/nope")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.body,
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "gmsacredentialspecs.windows.k8s.io \"nope\" not found",
            "reason": "NotFound",
            "details": { "name": "nope", "group": "windows.k8s.io", "kind": "gmsacredentialspecs" },
            "code": 404
        })
    );

    let role = http
        .get("/apis/rbac.authorization.k8s.io/v1/namespaces/team-c/rolebindings/x")
        .await;
    assert_eq!(role.status, StatusCode::NOT_FOUND);
    assert_eq!(
        role.body["message"],
        "rolebindings.rbac.authorization.k8s.io \"x\" not found"
    );
}

#[tokio::test]
async fn list_carries_the_global_resource_version_and_pages() {
    let (server, http) = started().await;
    server
        .apply(credspec("gmsa-webapp1", "WebApp1"))
        .expect("apply");
    server
        .apply(credspec("gmsa-ccg", "Reports"))
        .expect("apply");
    server.apply_all(webapp1_grant()).expect("grant");
    server
        .apply(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": { "name": "reader", "namespace": "team-c" },
            "rules": []
        }))
        .expect("role");

    let list = http.get(&format!("{CREDSPECS}?limit=500")).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["kind"], "GMSACredentialSpecList");
    assert_eq!(list.body["apiVersion"], "windows.k8s.io/v1");
    // The list is as of now: RBAC writes after the last spec count too.
    assert_eq!(
        list.body["metadata"],
        json!({ "continue": "", "resourceVersion": server.resource_version().to_string() })
    );
    let items = list.body["items"].as_array().expect("items");
    let names: Vec<&str> = items
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["gmsa-ccg", "gmsa-webapp1"]);
    for item in items {
        assert_eq!(item["kind"], "GMSACredentialSpec");
        assert_eq!(item["apiVersion"], "windows.k8s.io/v1");
        assert!(
            item["metadata"]["uid"].is_string() && item["metadata"]["resourceVersion"].is_string()
        );
    }

    // Built-in kinds: typed lists, no type on items, no empty continue.
    let roles = http.get("/apis/rbac.authorization.k8s.io/v1/roles").await;
    assert_eq!(roles.body["kind"], "RoleList");
    assert_eq!(
        roles.body["metadata"],
        json!({ "resourceVersion": server.resource_version().to_string() })
    );
    assert_eq!(roles.body["items"][0]["metadata"]["namespace"], "team-c");
    assert!(roles.body["items"][0].get("kind").is_none());
    let in_default = http
        .get("/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles")
        .await;
    assert_eq!(in_default.body["items"], json!([]));
    let bindings = http
        .get("/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings")
        .await;
    assert_eq!(bindings.body["items"].as_array().map(Vec::len), Some(1));

    // Paging: a token and a count of what is left, then the rest at the same version.
    let first = http.get(&format!("{CREDSPECS}?limit=1")).await;
    assert_eq!(first.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(first.body["metadata"]["remainingItemCount"], 1);
    let token = first.body["metadata"]["continue"]
        .as_str()
        .expect("continue token")
        .to_string();
    assert!(!token.is_empty());
    server.apply(credspec("gmsa-zzz", "Late")).expect("apply");
    let second = http
        .get(&format!("{CREDSPECS}?limit=1&continue={token}"))
        .await;
    assert_eq!(second.body["items"][0]["metadata"]["name"], "gmsa-webapp1");
    // The late object is not in the snapshot the token pins, so the list ends here.
    assert_eq!(second.body["metadata"]["continue"], "");
    assert_eq!(
        second.body["metadata"]["resourceVersion"],
        first.body["metadata"]["resourceVersion"]
    );

    // resourceVersion=0 is served from the watch cache, which ignores the limit.
    let cached = http
        .get(&format!("{CREDSPECS}?limit=1&resourceVersion=0"))
        .await;
    assert_eq!(cached.body["items"].as_array().map(Vec::len), Some(3));

    // Selectors.
    let one = http
        .get(&format!(
            "{CREDSPECS}?fieldSelector=metadata.name%3Dgmsa-ccg"
        ))
        .await;
    assert_eq!(one.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(one.body["items"][0]["metadata"]["name"], "gmsa-ccg");
    let none = http
        .get(&format!("{CREDSPECS}?labelSelector=team%3Dc"))
        .await;
    assert_eq!(none.body["items"], json!([]));
    let bad = http
        .get(&format!("{CREDSPECS}?fieldSelector=spec.x%3D1"))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["message"], "field label not supported: spec.x");

    // A token from before a compaction has expired.
    server.compact();
    let stale = http
        .get(&format!("{CREDSPECS}?limit=1&continue={token}"))
        .await;
    assert_eq!(stale.status, StatusCode::GONE);
    assert_eq!(stale.body["reason"], "Expired");
    assert!(stale.body["metadata"]["continue"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));
}

#[tokio::test]
async fn list_waits_for_a_future_version_then_gives_up() {
    let options = FakeOptions {
        future_version_wait: Duration::from_millis(300),
        ..FakeOptions::default()
    };
    let server = FakeApiServer::start_with(options).await;
    let http = Http::new(server.url());
    let ahead = server.resource_version() + 5;
    let reply = http
        .get(&format!("{CREDSPECS}?resourceVersion={ahead}"))
        .await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(reply.body["reason"], "Timeout");
    assert_eq!(
        reply.body["details"]["causes"][0]["reason"],
        "ResourceVersionTooLarge"
    );
}

#[tokio::test]
async fn watch_sees_a_change_made_after_list_then_a_bookmark() {
    let (server, http) = started().await;
    server
        .apply(credspec("gmsa-ccg", "Reports"))
        .expect("apply");
    let list = http.get(CREDSPECS).await;
    let listed_at = list.body["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();

    // The change lands between LIST and WATCH: the watch must still replay it.
    let mut touched = credspec("gmsa-ccg", "Reports");
    touched["metadata"]["annotations"] = json!({ "acceptance.example/touched": "yes" });
    let modified = server.apply(touched).expect("apply");

    let mut events = http
        .watch(&format!("{CREDSPECS}?watch=true&resourceVersion={listed_at}&allowWatchBookmarks=true&timeoutSeconds=30"))
        .await;
    let event = events.next().await.expect("an event");
    assert_eq!(event["type"], "MODIFIED");
    assert_eq!(
        event["object"]["metadata"]["annotations"]["acceptance.example/touched"],
        "yes"
    );
    assert_eq!(event["object"]["apiVersion"], "windows.k8s.io/v1");
    assert_eq!(rv_of(&event["object"]), rv_of(&modified));
    // Annotations are metadata: the generation stays.
    assert_eq!(event["object"]["metadata"]["generation"], 1);

    let bookmark = events
        .next_within(Duration::from_secs(3))
        .await
        .expect("a bookmark");
    assert_eq!(
        bookmark,
        json!({
            "type": "BOOKMARK",
            "object": {
                "apiVersion": "windows.k8s.io/v1",
                "kind": "GMSACredentialSpec",
                "metadata": { "resourceVersion": rv_of(&modified).to_string() }
            }
        })
    );

    // Live changes follow, with deletes carrying the deletion's version.
    server
        .delete("GMSACredentialSpec", None, "gmsa-ccg")
        .expect("delete");
    let deleted = loop {
        let event = events.next().await.expect("an event");
        if event["type"] != "BOOKMARK" {
            break event;
        }
    };
    assert_eq!(deleted["type"], "DELETED");
    assert_eq!(deleted["object"]["metadata"]["name"], "gmsa-ccg");
    assert_eq!(rv_of(&deleted["object"]), server.resource_version());
}

#[tokio::test]
async fn watch_from_now_starts_with_added_events_and_ends_at_its_timeout() {
    let (server, http) = started().await;
    server
        .apply(credspec("gmsa-webapp1", "WebApp1"))
        .expect("apply");
    server.apply_all(webapp1_grant()).expect("grant");

    let started_at = Instant::now();
    let mut events = http
        .watch("/apis/rbac.authorization.k8s.io/v1/rolebindings?watch=1&timeoutSeconds=1")
        .await;
    let added = events.next().await.expect("an event");
    assert_eq!(added["type"], "ADDED");
    assert_eq!(added["object"]["kind"], "RoleBinding");
    assert_eq!(
        added["object"]["apiVersion"],
        "rbac.authorization.k8s.io/v1"
    );
    assert_eq!(added["object"]["metadata"]["namespace"], "default");
    assert_eq!(server.open_watches("rolebindings"), 1);
    // No bookmarks were asked for, and nothing else changes: the stream just ends.
    assert_eq!(
        events.until_end(Duration::from_secs(5)).await,
        Vec::<Value>::new()
    );
    assert!(started_at.elapsed() >= Duration::from_millis(900));
    assert!(server.wait_for_watches("rolebindings", 0, WAIT).await);
    assert_eq!(server.open_watches("rolebindings"), 0);
}

#[tokio::test]
async fn watch_follows_selectors_in_and_out() {
    let (server, http) = started().await;
    let mut events = http
        .watch(&format!(
            "{CREDSPECS}?watch=true&labelSelector=tier%3Dweb&timeoutSeconds=30"
        ))
        .await;
    assert!(
        server
            .wait_for_watches("gmsacredentialspecs", 1, WAIT)
            .await
    );
    server
        .apply(credspec("gmsa-other", "Other"))
        .expect("apply");
    let mut labelled = credspec("gmsa-web", "Web");
    labelled["metadata"]["labels"] = json!({ "tier": "web" });
    server.apply(labelled.clone()).expect("apply");
    labelled["metadata"]["labels"] = json!({ "tier": "db" });
    server.apply(labelled).expect("apply");

    let first = events.next().await.expect("event");
    assert_eq!(
        (
            first["type"].as_str(),
            first["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("gmsa-web"))
    );
    // Leaving the selector reads as a deletion.
    let second = events.next().await.expect("event");
    assert_eq!(second["type"], "DELETED");
    assert_eq!(rv_of(&second["object"]), server.resource_version());
}

#[tokio::test]
async fn watch_from_a_compacted_version_gets_410_expired() {
    let (server, http) = started().await;
    let old = rv_of(
        &server
            .apply(credspec("gmsa-webapp1", "WebApp1"))
            .expect("apply"),
    );
    server
        .apply(credspec("gmsa-webapp1", "WebApp1-renamed"))
        .expect("apply");
    server.compact();

    let mut events = http
        .watch(&format!(
            "{CREDSPECS}?watch=true&resourceVersion={old}&allowWatchBookmarks=true"
        ))
        .await;
    let all = events.until_end(WAIT).await;
    assert_eq!(
        all,
        vec![json!({
            "type": "ERROR",
            "object": {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": format!("too old resource version: {old} ({})", server.resource_version()),
                "reason": "Expired",
                "code": 410
            }
        })]
    );

    // The current version is still good after compaction.
    let current = server.resource_version();
    let mut events = http
        .watch(&format!(
            "{CREDSPECS}?watch=true&resourceVersion={current}&timeoutSeconds=1"
        ))
        .await;
    assert_eq!(
        events.until_end(Duration::from_secs(5)).await,
        Vec::<Value>::new()
    );
}

#[tokio::test]
async fn cut_watches_ends_open_streams() {
    let (server, http) = started().await;
    let mut events = http.watch(&format!("{CREDSPECS}?watch=true")).await;
    assert!(
        server
            .wait_for_watches("gmsacredentialspecs", 1, WAIT)
            .await
    );
    server.cut_watches();
    assert_eq!(
        events.until_end(Duration::from_secs(5)).await,
        Vec::<Value>::new()
    );
    assert!(
        server
            .wait_for_watches("gmsacredentialspecs", 0, WAIT)
            .await
    );
    assert_eq!(server.open_watches("gmsacredentialspecs"), 0);
}

#[tokio::test]
async fn local_review_is_allowed_with_the_rbac_reason() {
    let (server, http) = started().await;
    server.apply_all(webapp1_grant()).expect("grant");

    let request = use_review("default", "default", "gmsa-webapp1");
    let reply = http.post(LSAR_DEFAULT, &request).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(reply.body["kind"], "LocalSubjectAccessReview");
    assert_eq!(reply.body["metadata"]["namespace"], "default");
    assert_eq!(reply.body["spec"], request["spec"]);
    assert_eq!(
        reply.body["status"],
        json!({
            "allowed": true,
            "reason": "RBAC: allowed by RoleBinding \"allow-default-svc-account-read-on-gmsa-WebApp1/default\" of ClusterRole \"webapp1-role\" to ServiceAccount \"default/default\""
        })
    );

    // Another spec is not granted: denied, and RBAC gives no reason.
    let other = http
        .post(
            LSAR_DEFAULT,
            &use_review("default", "default", "gmsa-other"),
        )
        .await;
    assert_eq!(other.status, StatusCode::CREATED);
    assert_eq!(other.body["status"], json!({ "allowed": false }));
}

#[tokio::test]
async fn local_review_in_another_namespace_is_denied_without_a_reason() {
    let (server, http) = started().await;
    server.apply_all(webapp1_grant()).expect("grant");
    let request = use_review("team-c", "team-c", "gmsa-webapp1");
    let reply = http
        .post(
            "/apis/authorization.k8s.io/v1/namespaces/team-c/localsubjectaccessreviews",
            &request,
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(reply.body["metadata"]["namespace"], "team-c");
    assert_eq!(reply.body["status"], json!({ "allowed": false }));

    // Removing the binding takes the grant away from `default` too.
    server
        .delete(
            "rolebindings",
            Some("default"),
            "allow-default-svc-account-read-on-gmsa-WebApp1",
        )
        .expect("delete");
    let revoked = http
        .post(
            LSAR_DEFAULT,
            &use_review("default", "default", "gmsa-webapp1"),
        )
        .await;
    assert_eq!(revoked.body["status"], json!({ "allowed": false }));
}

#[tokio::test]
async fn local_review_with_a_mismatched_namespace_is_invalid() {
    let (_server, http) = started().await;
    let mut request = use_review("team-c", "default", "gmsa-webapp1");
    request["metadata"] = json!({});
    let reply = http.post(LSAR_DEFAULT, &request).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        reply.body,
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": ".authorization.k8s.io \"\" is invalid: spec.resourceAttributes.namespace: Invalid value: \"team-c\": must match metadata.namespace",
            "reason": "Invalid",
            "details": {
                "group": "authorization.k8s.io",
                "causes": [{
                    "reason": "FieldValueInvalid",
                    "message": "Invalid value: \"team-c\": must match metadata.namespace",
                    "field": "spec.resourceAttributes.namespace"
                }]
            },
            "code": 422
        })
    );
}

#[tokio::test]
async fn local_review_needs_its_namespace_in_the_object() {
    let (server, http) = started().await;
    server.apply_all(webapp1_grant()).expect("grant");
    // 1.20 does not take the namespace from the path: without metadata.namespace the
    // review is invalid even though the path and the attributes agree.
    let mut request = use_review("default", "default", "gmsa-webapp1");
    request.as_object_mut().expect("object").remove("metadata");
    let reply = http.post(LSAR_DEFAULT, &request).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        reply.body["details"]["causes"][0]["message"],
        "Invalid value: \"default\": must match metadata.namespace"
    );

    // An object for another namespace, posted to this one's path.
    let elsewhere = use_review("team-c", "team-c", "gmsa-webapp1");
    let reply = http.post(LSAR_DEFAULT, &elsewhere).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.body["message"],
        "spec.resourceAttributes.namespace must match namespace: default"
    );
}

#[tokio::test]
async fn cluster_review_uses_cluster_bindings_and_the_privileged_group() {
    let (server, http) = started().await;
    server
        .apply_all([
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": { "name": "gmsa-reader" },
                "rules": [{ "apiGroups": ["windows.k8s.io"], "resources": ["gmsacredentialspecs"], "verbs": ["get", "list", "watch"] }]
            }),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": { "name": "webhook-reads-specs" },
                "subjects": [{ "kind": "Group", "name": "gmsa-webhooks", "apiGroup": "rbac.authorization.k8s.io" }],
                "roleRef": { "kind": "ClusterRole", "name": "gmsa-reader", "apiGroup": "rbac.authorization.k8s.io" }
            }),
        ])
        .expect("rbac");
    let review = |user: &str, group: &str, verb: &str| {
        json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "resourceAttributes": { "verb": verb, "group": "windows.k8s.io", "resource": "gmsacredentialspecs" },
                "user": user,
                "groups": [group]
            }
        })
    };
    let path = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
    let allowed = http
        .post(path, &review("webhook", "gmsa-webhooks", "list"))
        .await;
    assert_eq!(allowed.status, StatusCode::CREATED);
    assert_eq!(allowed.body["kind"], "SubjectAccessReview");
    assert_eq!(
        allowed.body["status"]["reason"],
        "RBAC: allowed by ClusterRoleBinding \"webhook-reads-specs\" of ClusterRole \"gmsa-reader\" to Group \"gmsa-webhooks\""
    );
    let denied = http
        .post(path, &review("webhook", "gmsa-webhooks", "delete"))
        .await;
    assert_eq!(denied.body["status"], json!({ "allowed": false }));
    // system:masters is allowed before RBAC is asked, so there is no RBAC reason.
    let admin = http
        .post(path, &review("admin", "system:masters", "delete"))
        .await;
    assert_eq!(admin.body["status"], json!({ "allowed": true }));

    let empty = http
        .post(
            path,
            &json!({ "spec": { "resourceAttributes": { "verb": "get" } } }),
        )
        .await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        empty.body["message"],
        ".authorization.k8s.io \"\" is invalid: spec.user: Invalid value: \"\": at least one of user or group must be specified"
    );
}

#[tokio::test]
async fn counters_count_each_verb_and_resource() {
    let (server, http) = started().await;
    server.apply_all(webapp1_grant()).expect("grant");
    http.get(&format!("{CREDSPECS}/a")).await;
    http.get(&format!("{CREDSPECS}/b")).await;
    http.get(CREDSPECS).await;
    let mut events = http
        .watch(&format!("{CREDSPECS}?watch=true&timeoutSeconds=1"))
        .await;
    http.post(
        LSAR_DEFAULT,
        &use_review("default", "default", "gmsa-webapp1"),
    )
    .await;
    http.get("/version").await;

    assert_eq!(server.gets("gmsacredentialspecs"), 2);
    assert_eq!(server.lists("gmsacredentialspecs"), 1);
    assert_eq!(server.watches("gmsacredentialspecs"), 1);
    assert_eq!(server.access_reviews(), 1);
    assert_eq!(server.lists("clusterroles"), 0);
    assert_eq!(server.counts().get("get version"), Some(&1));
    assert_eq!(server.counts().len(), 5);
    server.reset_counts();
    assert!(server.counts().is_empty());
    assert_eq!(server.gets("gmsacredentialspecs"), 0);
    events.until_end(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn latency_delays_every_answer() {
    let (server, http) = started().await;
    let latency = Duration::from_secs(1);
    server.set_latency(latency);
    let started_at = Instant::now();
    let reply = http.get(&format!("{CREDSPECS}/x")).await;
    let took = started_at.elapsed();
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(took >= latency, "took {took:?}");
    server.set_latency(Duration::ZERO);
    let started_at = Instant::now();
    http.get(&format!("{CREDSPECS}/x")).await;
    assert!(started_at.elapsed() < latency);
}

#[tokio::test]
async fn injected_failures_answer_real_status_bodies() {
    let (server, http) = started().await;
    server
        .apply(credspec("gmsa-webapp1", "WebApp1"))
        .expect("apply");
    let path = format!("{CREDSPECS}/gmsa-webapp1");

    server.fail_next(2, 500);
    for _ in 0..2 {
        let failed = http.get(&path).await;
        assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(failed.body["kind"], "Status");
        assert_eq!(failed.body["reason"], "InternalError");
        assert_eq!(failed.body["code"], 500);
    }
    assert_eq!(http.get(&path).await.status, StatusCode::OK);
    assert_eq!(server.gets("gmsacredentialspecs"), 3);

    // Scoped failures leave other resources alone.
    server.fail_next_on("localsubjectaccessreviews", 1, 429);
    assert_eq!(http.get(&path).await.status, StatusCode::OK);
    let throttled = http
        .post(
            LSAR_DEFAULT,
            &use_review("default", "default", "gmsa-webapp1"),
        )
        .await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(throttled.body["reason"], "TooManyRequests");
    assert_eq!(throttled.headers["retry-after"], "1");
    assert_eq!(
        http.post(
            LSAR_DEFAULT,
            &use_review("default", "default", "gmsa-webapp1")
        )
        .await
        .status,
        StatusCode::CREATED
    );

    // Down: every request fails with 503 and open watches end, until it is back.
    let mut events = http.watch(&format!("{CREDSPECS}?watch=true")).await;
    assert!(
        server
            .wait_for_watches("gmsacredentialspecs", 1, WAIT)
            .await
    );
    server.set_down(true);
    let seen = events.until_end(Duration::from_secs(5)).await;
    let types: Vec<&str> = seen.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types, ["ADDED"]);
    let down = http.get(&path).await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(down.body["reason"], "ServiceUnavailable");
    assert_eq!(
        http.get("/version").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    server.set_down(false);
    assert_eq!(http.get(&path).await.status, StatusCode::OK);
}

/// One request on a fresh connection; the raw answer, or what broke.
async fn raw_get(server: &FakeApiServer, path: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.addr()).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: fake\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test]
async fn unreachable_drops_connections_until_reachable_again() {
    let (server, http) = started().await;
    // A pooled keep-alive connection exists before the outage.
    assert_eq!(http.get("/version").await.status, StatusCode::OK);
    let mut events = http.watch(&format!("{CREDSPECS}?watch=true")).await;
    assert!(
        server
            .wait_for_watches("gmsacredentialspecs", 1, WAIT)
            .await
    );

    server.set_unreachable(true);
    let during = tokio::time::timeout(WAIT, raw_get(&server, "/version"))
        .await
        .expect("answer or break in time");
    assert!(
        during
            .as_deref()
            .map_or(true, |text| !text.starts_with("HTTP/")),
        "{during:?}"
    );
    // Cut mid-stream: the client sees a broken body, not a clean end.
    assert!(events.ends_or_breaks(WAIT).await);
    let before = server.count("get", "version");

    server.set_unreachable(false);
    let after = tokio::time::timeout(WAIT, raw_get(&server, "/version"))
        .await
        .expect("in time")
        .expect("answer");
    assert!(after.starts_with("HTTP/1.1 200"), "{after}");
    // Dropped connections never reached a handler.
    assert_eq!(server.count("get", "version"), before + 1);
}

#[tokio::test]
async fn unknown_paths_and_version() {
    let (_server, http) = started().await;
    // kube-apiserver's own groups answer with a Status...
    for path in [
        "/api/v1/namespaces/default/pods",
        "/apis/rbac.authorization.k8s.io/v1/roles/r",
        "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
    ] {
        let reply = http.get(path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(reply.body["kind"], "Status", "{path}");
        assert_eq!(reply.body["reason"], "NotFound");
        assert_eq!(
            reply.body["message"],
            "the server could not find the requested resource"
        );
        assert_eq!(reply.body["details"], json!({}));
    }
    // ...while custom-resource and unknown groups fall through to a plain-text 404.
    for path in [
        "/apis/windows.k8s.io/v2/gmsacredentialspecs",
        "/apis/windows.k8s.io/v1/namespaces/a/gmsacredentialspecs",
        "/apis/example.com/v1/things",
    ] {
        let reply = http.get(path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(reply.text, "404 page not found\n", "{path}");
        assert_eq!(reply.headers["content-type"], "text/plain; charset=utf-8");
    }
    let version = http.get("/version").await;
    assert_eq!(version.status, StatusCode::OK);
    assert_eq!(
        (
            version.body["major"].as_str(),
            version.body["minor"].as_str(),
            version.body["gitVersion"].as_str()
        ),
        (Some("1"), Some("20"), Some("v1.20.2"))
    );
}

#[tokio::test]
async fn credential_specs_can_be_written_over_http() {
    let (server, http) = started().await;
    let created = http
        .post(CREDSPECS, &credspec("gmsa-webapp1", "WebApp1"))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.body["metadata"]["generation"], 1);
    assert_eq!(
        server.get("gmsacredentialspecs", None, "gmsa-webapp1"),
        Some(created.body.clone())
    );

    let again = http
        .post(CREDSPECS, &credspec("gmsa-webapp1", "WebApp1"))
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.body["reason"], "AlreadyExists");

    let path = format!("{CREDSPECS}/gmsa-webapp1");
    let unconditional = http
        .send(
            Method::PUT,
            &path,
            Some(&credspec("gmsa-webapp1", "WebApp2")),
        )
        .await;
    assert_eq!(unconditional.status, StatusCode::UNPROCESSABLE_ENTITY);

    let mut stale = credspec("gmsa-webapp1", "WebApp2");
    stale["metadata"]["resourceVersion"] = json!("1");
    let conflict = http.send(Method::PUT, &path, Some(&stale)).await;
    assert_eq!(conflict.status, StatusCode::CONFLICT);
    assert_eq!(conflict.body["reason"], "Conflict");

    let mut fresh = credspec("gmsa-webapp1", "WebApp2");
    fresh["metadata"]["resourceVersion"] = created.body["metadata"]["resourceVersion"].clone();
    let updated = http.send(Method::PUT, &path, Some(&fresh)).await;
    assert_eq!(updated.status, StatusCode::OK);
    assert_eq!(updated.body["metadata"]["generation"], 2);
    assert_eq!(
        updated.body["metadata"]["uid"],
        created.body["metadata"]["uid"]
    );
    assert!(rv_of(&updated.body) > rv_of(&created.body));

    let deleted = http.send(Method::DELETE, &path, None).await;
    assert_eq!(deleted.status, StatusCode::OK);
    assert_eq!(deleted.body["status"], "Success");
    assert_eq!(
        deleted.body["details"]["uid"],
        created.body["metadata"]["uid"]
    );
    assert_eq!(http.get(&path).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        http.send(Method::DELETE, &path, None).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn apply_refuses_what_the_server_would_not_store() {
    let (server, _http) = started().await;
    assert!(server
        .apply(json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "p" } }))
        .is_err());
    assert!(server
        .apply(json!({ "apiVersion": "windows.k8s.io/v1", "kind": "GMSACredentialSpec" }))
        .is_err());
    let no_role_ref = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": { "name": "b" }
    });
    assert!(server.apply(no_role_ref).is_err());
    assert!(server
        .delete("GMSACredentialSpec", None, "missing")
        .is_err());
    assert_eq!(
        server.resource_version(),
        FakeApiServer::start().await.resource_version()
    );
}

#[tokio::test]
async fn shutdown_closes_the_port() {
    let (server, http) = started().await;
    let url = server.url();
    assert_eq!(http.get("/version").await.status, StatusCode::OK);
    tokio::time::timeout(WAIT, server.shutdown())
        .await
        .expect("shutdown within the wait");
    let address = url.trim_start_matches("http://").to_string();
    assert!(tokio::net::TcpStream::connect(address).await.is_err());
}
