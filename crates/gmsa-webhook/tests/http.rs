//! In-process tests of the router: the reference's status codes and bodies, our additions,
//! and whole reviews decided on the embedded state.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use gmsa_core::Options;
use gmsa_testkit::reviews::ReviewBody;
use gmsa_webhook::backend::embedded::EmbeddedState;
use gmsa_webhook::backend::Backend;
use gmsa_webhook::http::{router, App};
use gmsa_webhook::metrics::Metrics;
use serde_json::{json, Value};
use tower::ServiceExt;

const SPEC: &str = r#"
apiVersion: windows.k8s.io/v1
kind: GMSACredentialSpec
metadata: {name: gmsa-webapp1}
credspec:
  CmsPlugins: [ActiveDirectory]
  DomainJoinConfig: {DnsName: contoso.com, MachineAccountName: WebApp1, NetBiosName: CONTOSO,
    Guid: 244818ae-87ac-4fcd-92ec-e79e5252348a, DnsTreeName: contoso.com, Sid: "S-1-5-21-1-2-3"}
  ActiveDirectoryConfig:
    GroupManagedServiceAccounts: [{Name: WebApp1, Scope: "contoso.com"}, {Name: WebApp1, Scope: "<CONTOSO & co>"}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: webapp1-role}
rules: [{apiGroups: [windows.k8s.io], resources: [gmsacredentialspecs], verbs: [use], resourceNames: [gmsa-webapp1]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: allow-default, namespace: default}
subjects: [{kind: ServiceAccount, name: default, namespace: default}]
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: webapp1-role}
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    app: Arc<App>,
}

fn fixture(options: Options) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("state.yaml"), SPEC).unwrap();
    let state = EmbeddedState::load(dir.path()).unwrap();
    let app = App::new(
        Backend::Embedded(state),
        Metrics::new("test"),
        options,
        gmsa_webhook::http::BodyLimits::new(3 * 1024 * 1024),
    );
    Fixture { _dir: dir, app }
}

async fn call(app: &Arc<App>, req: Request<Body>) -> (StatusCode, Vec<u8>, Option<String>) {
    let resp = router(app.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, body.to_vec(), ctype)
}

fn post(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap()
}

/// A review of the pod `web` run by `sa`, its container naming `spec_name`; an UPDATE's old pod
/// is the same.
fn review(api_version: &str, operation: &str, sa: &str, spec_name: &str) -> String {
    let pod = json!({"metadata": {"name": "web"}, "spec": {
        "serviceAccountName": sa,
        "containers": [{"name": "iis", "securityContext": {"windowsOptions": {"gmsaCredentialSpecName": spec_name}}}]
    }});
    ReviewBody::pod(pod.clone())
        .api_version(Some(api_version))
        .uid("uid-1")
        .operation(operation)
        .old(pod)
        .to_string()
}

fn response_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap()
}

#[tokio::test]
async fn routing_codes_match_the_reference() {
    let f = fixture(Options::default());
    for path in ["/mutate", "/validate"] {
        let (s, b, _) = call(&f.app, Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!((s, b.len()), (StatusCode::METHOD_NOT_ALLOWED, 0), "{path}");
        let req = Request::post(path)
            .header("content-type", "text/plain")
            .body(Body::from("{}"))
            .unwrap();
        let (s, b, _) = call(&f.app, req).await;
        assert_eq!(
            (s, b.len()),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, 0),
            "{path}"
        );
        let req = Request::post(path).body(Body::from("{}")).unwrap();
        assert_eq!(
            call(&f.app, req).await.0,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }
    let (s, b, _) = call(&f.app, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!((s, b.len()), (StatusCode::NO_CONTENT, 0));
    let (s, b, ct) = call(&f.app, Request::get("/info").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ct.as_deref(), Some("application/json"));
    assert_eq!(
        response_of(&b),
        json!({"version": env!("CARGO_PKG_VERSION")})
    );
    let (s, _, _) = call(&f.app, Request::get("/nope").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn readiness_follows_draining() {
    let f = fixture(Options::default());
    let get = || Request::get("/readyz").body(Body::empty()).unwrap();
    assert_eq!(call(&f.app, get()).await.0, StatusCode::OK);
    f.app.start_draining();
    assert_eq!(call(&f.app, get()).await.0, StatusCode::SERVICE_UNAVAILABLE);
    // Draining does not stop serving.
    let (s, _, _) = call(
        &f.app,
        post(
            "/mutate",
            review("admission.k8s.io/v1", "CREATE", "default", "gmsa-webapp1"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn broken_bodies_get_a_denied_review() {
    let f = fixture(Options::default());
    let cases: [(&[u8], &str); 5] = [
        (b"", "unable to unmarshall JSON body as an admission review: "),
        (b"{not json", "unable to unmarshall JSON body as an admission review: "),
        (b"\xff\xfe\x00", "unable to unmarshall JSON body as an admission review: "),
        (b"{}", "no 'Request' field in JSON body"),
        (br#"{"request":{"uid":"u","kind":{"kind":"Pod"},"operation":"CREATE","object":{"spec":{"containers":7}}}}"#,
            "unable to unmarshall pod JSON object: "),
    ];
    for (body, prefix) in cases {
        let (s, b, ct) = call(&f.app, post("/validate", body.to_vec())).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(ct.as_deref(), Some("application/json"));
        let r = response_of(&b);
        assert_eq!(r["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(r["response"]["allowed"], false);
        assert_eq!(r["response"]["status"]["code"], 400);
        let msg = r["response"]["status"]["message"].as_str().unwrap();
        assert!(
            msg.starts_with(prefix),
            "{msg:?} should start with {prefix:?}"
        );
    }
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let f = fixture(Options::default());
    let big = vec![b' '; 3 * 1024 * 1024 + 1];
    assert_eq!(
        call(&f.app, post("/mutate", big.clone())).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    // Without a content length (chunked), the limit still holds.
    let stream = futures::stream::iter(
        big.chunks(64 * 1024)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let req = Request::post("/mutate")
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap();
    assert_eq!(call(&f.app, req).await.0, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn mutate_inlines_go_encoded_contents_and_echoes_version() {
    let f = fixture(Options::default());
    for version in ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"] {
        let (s, b, _) = call(
            &f.app,
            post(
                "/mutate",
                review(version, "CREATE", "default", "gmsa-webapp1"),
            ),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        let r = response_of(&b);
        assert_eq!(r["apiVersion"], version);
        assert_eq!(r["kind"], "AdmissionReview");
        assert_eq!(r["response"]["uid"], "uid-1");
        assert_eq!(r["response"]["allowed"], true);
        assert_eq!(r["response"]["patchType"], "JSONPatch");
        let patch = base64::engine::general_purpose::STANDARD
            .decode(r["response"]["patch"].as_str().unwrap())
            .unwrap();
        let expected = concat!(
            r#"[{"op":"add","path":"/spec/containers/0/securityContext/windowsOptions/gmsaCredentialSpec","value":"#,
            r#""{\"ActiveDirectoryConfig\":{\"GroupManagedServiceAccounts\":[{\"Name\":\"WebApp1\",\"Scope\":\"contoso.com\"},"#,
            r#"{\"Name\":\"WebApp1\",\"Scope\":\"\\u003cCONTOSO \\u0026 co\\u003e\"}]},\"CmsPlugins\":[\"ActiveDirectory\"],"#,
            r#"\"DomainJoinConfig\":{\"DnsName\":\"contoso.com\",\"DnsTreeName\":\"contoso.com\",\"Guid\":\"244818ae-87ac-4fcd-92ec-e79e5252348a\","#,
            r#"\"MachineAccountName\":\"WebApp1\",\"NetBiosName\":\"CONTOSO\",\"Sid\":\"S-1-5-21-1-2-3\"}}"}]"#
        );
        assert_eq!(String::from_utf8(patch).unwrap(), expected);
    }
}

#[tokio::test]
async fn invented_operations_make_no_new_metric_series() {
    let f = fixture(Options::default());
    for i in 0..300 {
        let operation = format!("INVENTED-{i}");
        call(
            &f.app,
            post(
                "/validate",
                review("admission.k8s.io/v1", &operation, "default", "gmsa-webapp1"),
            ),
        )
        .await;
    }
    let (_, m, _) = call(
        &f.app,
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    let m = String::from_utf8(m).unwrap();
    let series: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("gmsa_webhook_admissions_total{"))
        .collect();
    assert_eq!(
        series,
        [
            r#"gmsa_webhook_admissions_total{path="/validate",operation="unknown",allowed="false"} 300"#
        ],
        "{m}"
    );
}

#[tokio::test]
async fn validate_refuses_an_unauthorized_service_account_and_counts_it() {
    let f = fixture(Options::default());
    let (_, b, _) = call(
        &f.app,
        post(
            "/validate",
            review("admission.k8s.io/v1", "CREATE", "builder", "gmsa-webapp1"),
        ),
    )
    .await;
    let r = response_of(&b);
    assert_eq!(r["response"]["allowed"], false);
    assert_eq!(r["response"]["status"]["code"], 403);
    assert_eq!(
        r["response"]["status"]["message"],
        "service account \"builder\" is not authorized to `use` GMSA cred spec \"gmsa-webapp1\""
    );
    assert!(r["response"].get("patch").is_none());
    let (_, b, _) = call(
        &f.app,
        post(
            "/validate",
            review("admission.k8s.io/v1", "CREATE", "default", "gmsa-webapp1"),
        ),
    )
    .await;
    assert_eq!(response_of(&b)["response"]["allowed"], true);
    let (_, m, _) = call(
        &f.app,
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    let m = String::from_utf8(m).unwrap();
    assert!(m.contains(r#"gmsa_webhook_admissions_total{path="/validate",operation="CREATE",allowed="false"} 1"#), "{m}");
    assert!(
        m.contains(
            r#"gmsa_webhook_admissions_total{path="/validate",operation="CREATE",allowed="true"} 1"#
        ),
        "{m}"
    );
    assert!(
        m.contains("gmsa_webhook_admission_duration_seconds_count{path=\"/validate\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("gmsa_webhook_build_info{version=\"test\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("gmsa_webhook_certificate_reloads_total 0"),
        "{m}"
    );
    assert!(m.trim_end().ends_with("# EOF"));
}

#[tokio::test]
async fn random_hostname_is_added_only_when_enabled() {
    let f = fixture(Options {
        random_hostname: true,
    });
    let (_, b, _) = call(
        &f.app,
        post(
            "/mutate",
            review("admission.k8s.io/v1", "CREATE", "default", "gmsa-webapp1"),
        ),
    )
    .await;
    let r = response_of(&b);
    let patch: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(r["response"]["patch"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let ops = patch.as_array().unwrap();
    assert_eq!(ops.len(), 2);
    assert_eq!(ops[1]["path"], "/spec/hostname");
    let host = ops[1]["value"].as_str().unwrap();
    assert_eq!(host.len(), 15);
    assert!(host.chars().next().unwrap().is_ascii_lowercase());
    assert!(host
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
}

#[tokio::test]
async fn unknown_spec_is_404_and_update_of_name_is_403() {
    let f = fixture(Options::default());
    let (_, b, _) = call(
        &f.app,
        post(
            "/mutate",
            review("admission.k8s.io/v1", "CREATE", "default", "nope"),
        ),
    )
    .await;
    let r = response_of(&b);
    assert_eq!(r["response"]["status"]["code"], 404);
    assert_eq!(
        r["response"]["status"]["message"],
        "cred spec nope does not exist"
    );
    let mut update: Value = serde_json::from_str(&review(
        "admission.k8s.io/v1",
        "UPDATE",
        "default",
        "gmsa-webapp1",
    ))
    .unwrap();
    update["request"]["object"]["spec"]["containers"][0]["securityContext"]["windowsOptions"]
        ["gmsaCredentialSpecName"] = json!("other");
    let (_, b, _) = call(&f.app, post("/validate", update.to_string())).await;
    let r = response_of(&b);
    assert_eq!(r["response"]["status"]["code"], 403);
    assert_eq!(
        r["response"]["status"]["message"],
        "cannot update an existing pod's GMSA settings (GMSA name modified on container \"iis\")"
    );
}

/// A GMSA pod whose host name is longer than a NetBIOS name is admitted with a warning.
#[tokio::test]
async fn validate_warns_of_a_long_host_name() {
    let f = fixture(Options::default());
    let mut body: Value = serde_json::from_str(&review(
        "admission.k8s.io/v1",
        "CREATE",
        "default",
        "gmsa-webapp1",
    ))
    .unwrap();
    body["request"]["object"]["metadata"]["name"] = json!("web-7776966999-n5nzr");
    let (_, b, _) = call(&f.app, post("/validate", body.to_string())).await;
    let r = response_of(&b);
    assert_eq!(r["response"]["allowed"], true);
    let warnings = r["response"]["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0]
            .as_str()
            .unwrap()
            .starts_with(r#"GMSA pod host name "web-7776966999-n5nzr" has 20 characters"#),
        "{warnings:?}"
    );
    // The short name of the other tests gets none.
    let (_, b, _) = call(
        &f.app,
        post(
            "/validate",
            review("admission.k8s.io/v1", "CREATE", "default", "gmsa-webapp1"),
        ),
    )
    .await;
    assert!(response_of(&b)["response"].get("warnings").is_none());
}

/// A GMSA pod with a fixed host name, made by a ReplicaSet, is admitted by the mutation with a
/// warning, in both answer versions, and the same patch as without it.
#[tokio::test]
async fn mutate_warns_of_a_fixed_host_name_under_a_replica_set() {
    let f = fixture(Options::default());
    for version in ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"] {
        let mut body: Value =
            serde_json::from_str(&review(version, "CREATE", "default", "gmsa-webapp1")).unwrap();
        body["request"]["object"]["spec"]["hostname"] = json!("web1");
        let (_, plain, _) = call(&f.app, post("/mutate", body.to_string())).await;
        body["request"]["object"]["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7776966999",
            "uid": "u1", "controller": true
        }]);
        let (_, warned, _) = call(&f.app, post("/mutate", body.to_string())).await;
        let mut warned = response_of(&warned);
        let warnings = warned["response"]
            .as_object_mut()
            .unwrap()
            .remove("warnings")
            .unwrap();
        assert_eq!(warnings.as_array().unwrap().len(), 1, "{warnings}");
        assert!(
            warnings[0].as_str().unwrap().starts_with(
                r#"GMSA pod sets spec.hostname "web1" and its ReplicaSet "web-7776966999" may run several pods"#
            ),
            "{warnings}"
        );
        assert_eq!(warned, response_of(&plain), "{version}");
        assert!(warned["response"]["patch"].is_string());
    }
}
