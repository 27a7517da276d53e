//! Properties of the HTTP surface over generated requests, in process through the router:
//! any method, content type and body gets either the reference's status with an empty body
//! (405, 415, 413) or HTTP 200 with a well-formed AdmissionReview echoing the request's uid and
//! apiVersion; an allowed patch applies to the object it was made for. 128 cases per property.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine;
use gmsa_core::Options;
use gmsa_testkit::reviews::ReviewBody;
use gmsa_webhook::backend::embedded::EmbeddedState;
use gmsa_webhook::backend::Backend;
use gmsa_webhook::http::{router, App};
use gmsa_webhook::metrics::Metrics;
use proptest::prelude::*;
use serde_json::{json, Value};
use tower::ServiceExt;

const STATE: &str = r#"
apiVersion: windows.k8s.io/v1
kind: GMSACredentialSpec
metadata: {name: gmsa-a}
credspec: {CmsPlugins: [ActiveDirectory], DomainJoinConfig: {DnsName: "contoso.com", MachineAccountName: "A<&>"}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: use-a}
rules: [{apiGroups: [windows.k8s.io], resources: [gmsacredentialspecs], verbs: [use], resourceNames: [gmsa-a]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: use-a, namespace: default}
subjects: [{kind: ServiceAccount, name: web, namespace: default}]
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: use-a}
"#;

/// Bodies above this are refused with 413; small here so the property reaches it.
const MAX_BODY: usize = 16 * 1024;

fn app() -> (tempfile::TempDir, Arc<App>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("state.yaml"), STATE).unwrap();
    let state = EmbeddedState::load(dir.path()).unwrap();
    let app = App::new(
        Backend::Embedded(state),
        Metrics::new("proptest"),
        Options {
            random_hostname: true,
        },
        gmsa_webhook::http::BodyLimits::new(MAX_BODY),
    );
    (dir, app)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn call(app: &Arc<App>, request: Request<Body>) -> (StatusCode, Vec<u8>) {
    let response = router(app.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, body.to_vec())
}

fn places() -> impl Strategy<Value = Vec<Value>> {
    let options = prop_oneof![
        Just(json!(null)),
        Just(json!({})),
        Just(json!({"gmsaCredentialSpecName": "gmsa-a"})),
        Just(json!({"gmsaCredentialSpecName": "gmsa-missing"})),
        Just(json!({"gmsaCredentialSpecName": "gmsa-a", "gmsaCredentialSpec": "{}"})),
        Just(json!({"gmsaCredentialSpec": "{\"x\":1}"})),
        Just(json!({"gmsaCredentialSpecName": 7})),
    ];
    prop::collection::vec(options, 0..4)
}

fn review() -> impl Strategy<Value = (Value, String, Option<String>)> {
    (
        prop::option::of(prop::sample::select(vec![
            "admission.k8s.io/v1",
            "admission.k8s.io/v1beta1",
        ])),
        "[a-f0-9-]{0,12}",
        prop::sample::select(vec!["CREATE", "UPDATE", "DELETE"]),
        prop::sample::select(vec!["web", "default", ""]),
        places(),
        prop::sample::select(vec!["Pod", "Pod", "Deployment"]),
    )
        .prop_map(|(version, uid, op, sa, places, kind)| {
            let mut spec = json!({"serviceAccountName": sa});
            let mut containers = Vec::new();
            for (i, p) in places.iter().enumerate() {
                if i == 0 {
                    spec["securityContext"] = json!({"windowsOptions": p});
                } else {
                    containers.push(json!({"name": format!("c{i}"),
                        "securityContext": {"windowsOptions": p}}));
                }
            }
            spec["containers"] = Value::Array(containers);
            let object = json!({"metadata": {"name": "p"}, "spec": spec});
            let review = ReviewBody::pod(object.clone())
                .api_version(version)
                .uid(&uid)
                .kind(kind)
                .operation(op)
                .old(object)
                .to_value();
            (review, uid, version.map(str::to_string))
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn reviews_get_well_formed_answers_and_applicable_patches(
        (review, uid, version) in review(),
        validate in any::<bool>(),
    ) {
        let (_dir, app) = app();
        let path = if validate { "/validate" } else { "/mutate" };
        let request = Request::post(path)
            .header("content-type", "application/json")
            .body(Body::from(review.to_string()))
            .unwrap();
        let (status, body) = runtime().block_on(call(&app, request));
        prop_assert_eq!(status, StatusCode::OK);
        let out: Value = serde_json::from_slice(&body).unwrap();
        prop_assert_eq!(&out["kind"], "AdmissionReview");
        let want = version.unwrap_or_else(|| "admission.k8s.io/v1".into());
        prop_assert_eq!(out["apiVersion"].as_str(), Some(want.as_str()));
        prop_assert_eq!(out["response"]["uid"].as_str(), Some(uid.as_str()));
        if let Some(patch) = out["response"]["patch"].as_str() {
            let bytes = base64::engine::general_purpose::STANDARD.decode(patch).unwrap();
            let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
            let mut object = review["request"]["object"].clone();
            prop_assert!(json_patch::patch(&mut object, &patch).is_ok());
        }
    }

    #[test]
    fn any_method_content_type_and_body_gets_a_documented_answer(
        method in prop::sample::select(vec![Method::POST, Method::POST, Method::GET, Method::PUT, Method::DELETE]),
        content_type in prop::option::of(prop::sample::select(vec![
            "application/json", "application/json", "text/plain", "application/json; charset=utf-8",
        ])),
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..512),
            Just(vec![b' '; MAX_BODY + 1]),
        ],
        validate in any::<bool>(),
    ) {
        let (_dir, app) = app();
        let path = if validate { "/validate" } else { "/mutate" };
        let mut request = Request::builder().method(method.clone()).uri(path);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let too_big = body.len() > MAX_BODY;
        let request = request.body(Body::from(body)).unwrap();
        let (status, answer) = runtime().block_on(call(&app, request));
        if method != Method::POST {
            prop_assert_eq!((status, answer.len()), (StatusCode::METHOD_NOT_ALLOWED, 0));
        } else if content_type != Some("application/json") {
            prop_assert_eq!((status, answer.len()), (StatusCode::UNSUPPORTED_MEDIA_TYPE, 0));
        } else if too_big {
            prop_assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        } else {
            prop_assert_eq!(status, StatusCode::OK);
            let out: Value = serde_json::from_slice(&answer).unwrap();
            prop_assert_eq!(&out["kind"], "AdmissionReview");
            prop_assert!(out["response"]["allowed"].is_boolean());
        }
    }
}
