//! The client the webhook uses (kube-rs) against the fake: reads, a reflector that follows
//! changes and recovers from a compaction by re-listing, typed RBAC lists and access reviews.

mod support;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use gmsa_testkit::{FakeApiServer, FakeOptions};
use k8s_openapi::api::authorization::v1::{
    LocalSubjectAccessReview, ResourceAttributes, SubjectAccessReviewSpec,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, ObjectMeta, PostParams,
};
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Config};
use support::{credspec, webapp1_grant, WAIT};

fn client(server: &FakeApiServer) -> Client {
    let url = server.url().parse().expect("the fake's URL is a valid URI");
    Client::try_from(Config::new(url)).expect("client")
}

fn credspecs(version: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("windows.k8s.io", version, "GMSACredentialSpec"),
        "gmsacredentialspecs",
    )
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn kube_reads_credential_specs_and_sees_real_errors() {
    let server = FakeApiServer::start().await;
    server
        .apply(credspec("gmsa-webapp1", "WebApp1"))
        .expect("apply");
    let ar = credspecs("v1");
    let api: Api<DynamicObject> = Api::all_with(client(&server), &ar);

    let spec = api.get("gmsa-webapp1").await.expect("get");
    assert_eq!(
        spec.data["credspec"]["DomainJoinConfig"]["MachineAccountName"],
        "WebApp1"
    );
    assert_eq!(spec.metadata.generation, Some(1));

    let list = api
        .list(&ListParams::default().limit(500))
        .await
        .expect("list");
    assert_eq!(list.items.len(), 1);
    assert_eq!(
        list.metadata.resource_version,
        Some(server.resource_version().to_string())
    );

    match api.get("nope").await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 404);
            assert_eq!(status.reason, "NotFound");
            assert!(status.is_not_found());
        }
        other => panic!("expected a 404 Status, got {other:?}"),
    }
    assert_eq!(api.get_opt("nope").await.expect("get_opt"), None);

    server.fail_next(1, 500);
    match api.get("gmsa-webapp1").await {
        Err(kube::Error::Api(status)) => assert_eq!(
            (status.code, status.reason.as_str()),
            (500, "InternalError")
        ),
        other => panic!("expected a 500 Status, got {other:?}"),
    }
    // kube-rs retries 503 (and 429, 504) by itself: one failure costs a second request.
    server.reset_counts();
    server.fail_next(1, 503);
    api.get("gmsa-webapp1").await.expect("retried past one 503");
    assert_eq!(server.gets("gmsacredentialspecs"), 2);

    // An unreachable server fails calls at once, with a transport error rather than a Status.
    server.set_unreachable(true);
    let started = std::time::Instant::now();
    let failed = api.get("gmsa-webapp1").await;
    assert!(
        matches!(failed, Err(ref e) if !matches!(e, kube::Error::Api(_))),
        "{failed:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    server.set_unreachable(false);
    api.get("gmsa-webapp1").await.expect("reachable again");

    let alpha: Api<DynamicObject> = Api::all_with(client(&server), &credspecs("v1alpha1"));
    let old = alpha
        .get("gmsa-webapp1")
        .await
        .expect("get through v1alpha1");
    assert_eq!(
        old.types.map(|t| t.api_version),
        Some("windows.k8s.io/v1alpha1".to_string())
    );
}

#[tokio::test]
async fn kube_reflector_follows_changes_and_relists_after_compaction() {
    let server = FakeApiServer::start_with(
        FakeOptions::default().bookmark_interval(Duration::from_millis(100)),
    )
    .await;
    server
        .apply(credspec("gmsa-webapp1", "WebApp1"))
        .expect("apply");
    let ar = credspecs("v1");
    let api: Api<DynamicObject> = Api::all_with(client(&server), &ar);
    let writer = Writer::<DynamicObject>::new(ar.clone());
    let store = writer.as_reader();
    let config = watcher::Config::default().timeout(30);
    let stream = reflector::reflector(writer, watcher(api, config))
        .default_backoff()
        .applied_objects();
    let driver = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            // Errors (the 410 below) are part of the exercise; the watcher recovers by itself.
            let _ = event;
        }
    });

    tokio::time::timeout(WAIT, store.wait_until_ready())
        .await
        .expect("ready in time")
        .expect("writer alive");
    assert_eq!(store.state().len(), 1);
    assert!(
        server
            .wait_for_watches("gmsacredentialspecs", 1, WAIT)
            .await
    );
    assert_eq!(server.lists("gmsacredentialspecs"), 1);

    server
        .apply(credspec("gmsa-ccg", "Reports"))
        .expect("apply");
    eventually("the new spec in the cache", || store.state().len() == 2).await;
    server
        .delete("GMSACredentialSpec", None, "gmsa-webapp1")
        .expect("delete");
    eventually("the deleted spec gone from the cache", || {
        store.state().len() == 1
    })
    .await;

    // While the server is down, a change happens and history is compacted: the watcher's
    // resourceVersion is now too old, so it must get 410 and list again.
    server.set_down(true);
    server.apply(credspec("gmsa-late", "Late")).expect("apply");
    server.compact();
    server.set_down(false);
    eventually("a second list", || server.lists("gmsacredentialspecs") >= 2).await;
    eventually("the late spec in the cache", || store.state().len() == 2).await;
    let names: Vec<String> = store
        .state()
        .iter()
        .filter_map(|o| o.metadata.name.clone())
        .collect();
    assert!(
        names.contains(&"gmsa-late".to_string()) && names.contains(&"gmsa-ccg".to_string()),
        "{names:?}"
    );
    driver.abort();
}

#[tokio::test]
async fn kube_typed_rbac_lists_and_access_reviews() {
    let server = FakeApiServer::start().await;
    server.apply_all(webapp1_grant()).expect("grant");
    let client = client(&server);

    let roles: Api<ClusterRole> = Api::all(client.clone());
    let listed = roles
        .list(&ListParams::default())
        .await
        .expect("typed list without item kinds");
    assert_eq!(listed.items.len(), 1);
    assert_eq!(
        listed.items[0].metadata.name.as_deref(),
        Some("webapp1-role")
    );
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), "default");
    let binding = bindings
        .get("allow-default-svc-account-read-on-gmsa-WebApp1")
        .await
        .expect("get");
    assert_eq!(binding.role_ref.name, "webapp1-role");
    let all_bindings: Vec<RoleBinding> = watcher(
        Api::<RoleBinding>::all(client.clone()),
        watcher::Config::default(),
    )
    .applied_objects()
    .take(1)
    .try_collect()
    .await
    .expect("watch rolebindings");
    assert_eq!(all_bindings.len(), 1);

    let reviews: Api<LocalSubjectAccessReview> = Api::namespaced(client, "default");
    let review = |spec_name: &str| LocalSubjectAccessReview {
        metadata: ObjectMeta {
            namespace: Some("default".into()),
            ..ObjectMeta::default()
        },
        spec: SubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: Some("default".into()),
                verb: Some("use".into()),
                group: Some("windows.k8s.io".into()),
                resource: Some("gmsacredentialspecs".into()),
                name: Some(spec_name.into()),
                ..ResourceAttributes::default()
            }),
            user: Some("system:serviceaccount:default:default".into()),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                "system:serviceaccounts:default".into(),
            ]),
            ..SubjectAccessReviewSpec::default()
        },
        status: None,
    };
    let allowed = reviews
        .create(&PostParams::default(), &review("gmsa-webapp1"))
        .await
        .expect("review");
    let status = allowed.status.expect("status");
    assert!(status.allowed);
    assert!(status
        .reason
        .is_some_and(|r| r.starts_with("RBAC: allowed by RoleBinding")));
    let denied = reviews
        .create(&PostParams::default(), &review("gmsa-other"))
        .await
        .expect("review");
    assert_eq!(
        denied.status.map(|s| (s.allowed, s.reason)),
        Some((false, None))
    );
    assert_eq!(server.access_reviews(), 2);
}
