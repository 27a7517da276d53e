//! In-process router tests of `POST /validate-credspec`: the pod endpoints' transport answers
//! (405, 415, 413, denied reviews for unreadable bodies) and the credential-spec checks.

#![allow(clippy::unwrap_used)] // tests may panic

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use gmsa_core::names::paths::VALIDATE_CREDSPEC;
use gmsa_core::Options;
use gmsa_testkit::reviews::ReviewBody;
use gmsa_webhook::backend::embedded::EmbeddedState;
use gmsa_webhook::backend::Backend;
use gmsa_webhook::http::{router, App};
use gmsa_webhook::metrics::Metrics;
use serde_json::{json, Value};
use tower::ServiceExt;

const MAX_BODY: usize = 3 * 1024 * 1024;

struct Fixture {
    _dir: tempfile::TempDir,
    app: Arc<App>,
}

/// The endpoint needs no state; an empty directory will do.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let state = EmbeddedState::load(dir.path()).unwrap();
    let app = App::new(
        Backend::Embedded(state),
        Metrics::new("test"),
        Options::default(),
        gmsa_webhook::http::BodyLimits::new(MAX_BODY),
    );
    Fixture { _dir: dir, app }
}

async fn call(app: &Arc<App>, req: Request<Body>) -> (StatusCode, Vec<u8>) {
    let resp = router(app.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, body.to_vec())
}

fn post(body: impl Into<Body>) -> Request<Body> {
    Request::post(VALIDATE_CREDSPEC)
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap()
}

fn webapp1() -> Value {
    gmsa_testkit::credspecs::webapp1("gmsa-webapp1")
}

fn review(api_version: &str, kind: &str, operation: &str, object: Value) -> String {
    ReviewBody::credential_spec(object)
        .api_version(Some(api_version))
        .uid("uid-7")
        .kind(kind)
        .operation(operation)
        .old(webapp1())
        .to_string()
}

/// Posts a review and returns the decoded answer.
async fn answer(app: &Arc<App>, body: String) -> Value {
    let (status, bytes) = call(app, post(body)).await;
    assert_eq!(status, StatusCode::OK);
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn transport_answers_match_the_pod_endpoints() {
    let f = fixture();
    let (s, b) = call(
        &f.app,
        Request::get(VALIDATE_CREDSPEC).body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!((s, b.len()), (StatusCode::METHOD_NOT_ALLOWED, 0));
    let req = Request::post(VALIDATE_CREDSPEC)
        .header("content-type", "text/yaml")
        .body(Body::from("{}"))
        .unwrap();
    let (s, b) = call(&f.app, req).await;
    assert_eq!((s, b.len()), (StatusCode::UNSUPPORTED_MEDIA_TYPE, 0));
    let (s, _) = call(&f.app, post(vec![b' '; MAX_BODY + 1])).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn unreadable_bodies_get_a_denied_review() {
    let f = fixture();
    for (body, prefix) in [
        (
            "{not json",
            "unable to unmarshall JSON body as an admission review: ",
        ),
        ("{}", "no 'Request' field in JSON body"),
        (
            r#"{"request":{"uid":"u","kind":{"kind":"GMSACredentialSpec"},"operation":"CREATE","object":[1]}}"#,
            "unable to unmarshall GMSACredentialSpec JSON object: ",
        ),
    ] {
        let r = answer(&f.app, body.to_string()).await;
        assert_eq!(r["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(r["response"]["allowed"], false, "{body}");
        assert_eq!(r["response"]["status"]["code"], 400, "{body}");
        let msg = r["response"]["status"]["message"].as_str().unwrap();
        assert!(
            msg.starts_with(prefix),
            "{msg:?} should start with {prefix:?}"
        );
    }
}

#[tokio::test]
async fn other_kinds_are_refused_with_400() {
    let f = fixture();
    let r = answer(
        &f.app,
        review(
            "admission.k8s.io/v1",
            "Pod",
            "CREATE",
            json!({"metadata": {"name": "p"}}),
        ),
    )
    .await;
    assert_eq!(r["response"]["uid"], "uid-7");
    assert_eq!(r["response"]["allowed"], false);
    assert_eq!(
        r["response"]["status"],
        json!({"metadata": {}, "code": 400, "message": "expected a GMSACredentialSpec object, got a Pod"})
    );
}

#[tokio::test]
async fn valid_specs_are_admitted_on_create_and_update() {
    let f = fixture();
    for (api_version, operation) in [
        ("admission.k8s.io/v1", "CREATE"),
        ("admission.k8s.io/v1beta1", "UPDATE"),
    ] {
        let r = answer(
            &f.app,
            review(api_version, "GMSACredentialSpec", operation, webapp1()),
        )
        .await;
        assert_eq!(
            r,
            json!({"kind": "AdmissionReview", "apiVersion": api_version,
                "response": {"uid": "uid-7", "allowed": true}})
        );
    }
}

#[tokio::test]
async fn problems_are_listed_in_a_422_denial() {
    let f = fixture();
    let mut spec = webapp1();
    spec["credspec"]["DomainJoinConfig"]["Sid"] = json!("S-1-5-21-1-2-3-1105");
    spec["credspec"]["CmsPlugins"] = json!([]);
    let r = answer(
        &f.app,
        review("admission.k8s.io/v1", "GMSACredentialSpec", "UPDATE", spec),
    )
    .await;
    assert_eq!(r["response"]["allowed"], false);
    assert_eq!(r["response"]["status"]["code"], 422);
    let msg = r["response"]["status"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with(r#"GMSACredentialSpec "gmsa-webapp1" is invalid: credspec.CmsPlugins: does not list ActiveDirectory: add it; credspec.DomainJoinConfig.Sid: "S-1-5-21-1-2-3-1105" is the SID of an account"#),
        "{msg}"
    );

    // What the reference webhook would inline without a word.
    let mut empty = webapp1();
    empty["credspec"] = json!({});
    let r = answer(
        &f.app,
        review("admission.k8s.io/v1", "GMSACredentialSpec", "CREATE", empty),
    )
    .await;
    assert_eq!(r["response"]["status"]["code"], 422);
}

#[tokio::test]
async fn deletions_pass() {
    let f = fixture();
    let r = answer(
        &f.app,
        review(
            "admission.k8s.io/v1",
            "GMSACredentialSpec",
            "DELETE",
            Value::Null,
        ),
    )
    .await;
    assert_eq!(r["response"]["allowed"], true);
}

/// Each plugin's spec, as `credspec new --plugin` writes it, is admitted without a warning.
#[tokio::test]
async fn plugin_specs_are_admitted() {
    let f = fixture();
    for (plugin, spec) in gmsa_testkit::credspecs::plugin_specs() {
        let r = answer(
            &f.app,
            review("admission.k8s.io/v1", "GMSACredentialSpec", "CREATE", spec),
        )
        .await;
        assert_eq!(
            r["response"],
            json!({"uid": "uid-7", "allowed": true}),
            "{plugin}"
        );
    }
}

/// Every mistake is refused (422, its message) or admitted with its admission warning.
#[tokio::test]
async fn each_mistake_is_refused_or_warned() {
    let f = fixture();
    for mistake in gmsa_testkit::credspecs::mistakes() {
        let r = answer(
            &f.app,
            review(
                "admission.k8s.io/v1",
                "GMSACredentialSpec",
                "CREATE",
                mistake.spec,
            ),
        )
        .await;
        let response = &r["response"];
        let text = if mistake.refused {
            assert_eq!(response["allowed"], false, "{}: {response}", mistake.id);
            assert_eq!(response["status"]["code"], 422, "{}", mistake.id);
            response["status"]["message"].as_str().unwrap().to_string()
        } else {
            assert_eq!(response["allowed"], true, "{}: {response}", mistake.id);
            let warnings = response["warnings"].as_array().unwrap();
            assert_eq!(warnings.len(), 1, "{}: {warnings:?}", mistake.id);
            warnings[0].as_str().unwrap().to_string()
        };
        for word in mistake.words {
            assert!(
                text.contains(word),
                "{}: {word:?} not in {text}",
                mistake.id
            );
        }
    }
}
