//! The Kubernetes backend against the loopback fake API server: readiness, the credential-spec
//! watch cache and its GET fallback, access reviews and their cache, and the caches-off mode.

use gmsa_testkit::wait::eventually;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gmsa_core::{AccessCheck, Facts, Needs, SpecLookup};
use gmsa_testkit::FakeApiServer;
use gmsa_webhook::backend::kubernetes::{KubeCluster, KubeError, KubeSettings};
use gmsa_webhook::config::Authorization;
use gmsa_webhook::metrics::{ApiCallKind, ApiCallLabels, CacheKind, CacheLabels, Metrics};
use serde_json::{json, Value};
use tempfile::TempDir;

const SPECS: &str = "gmsacredentialspecs";
const NS: &str = "team-a";
/// Long enough that no test passes by waiting for a TTL.
const LONG_TTL: Duration = Duration::from_secs(600);
/// Bound on waiting for readiness or for a watch event to arrive.
const WAIT: Duration = Duration::from_secs(15);

/// A fake API server, a kubeconfig pointing at it, and a backend connected through it.
struct Rig {
    fake: FakeApiServer,
    cluster: Arc<KubeCluster>,
    metrics: Arc<Metrics>,
    _dir: TempDir,
}

/// Settings of a backend that asks an access review for every decision (`--authorization
/// api`), whose cache these tests follow; `hybrid_settings` for RBAC from the watch caches.
fn settings(kubeconfig: PathBuf, caches: bool) -> KubeSettings {
    KubeSettings {
        kubeconfig: Some(kubeconfig),
        qps: 1000.0,
        burst: 1000,
        allow_ttl: LONG_TTL,
        deny_ttl: LONG_TTL,
        caches,
        authorization: Authorization::Api,
        stale_after: Duration::from_secs(60),
    }
}

fn write_kubeconfig(dir: &TempDir, url: &str) -> PathBuf {
    let path = dir.path().join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\n\
         users:\n- name: webhook\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: webhook\n\
         current-context: fake\n"
    );
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}

impl Rig {
    /// Starts the fake with `objects`, then connects with `adjust`ed settings.
    async fn start(objects: Vec<Value>, adjust: impl FnOnce(&mut KubeSettings)) -> Self {
        let fake = FakeApiServer::start().await;
        fake.apply_all(objects).expect("seed objects");
        Self::connect(fake, adjust).await
    }

    async fn connect(fake: FakeApiServer, adjust: impl FnOnce(&mut KubeSettings)) -> Self {
        let dir = TempDir::new().expect("temp dir");
        let mut settings = settings(write_kubeconfig(&dir, &fake.url()), true);
        adjust(&mut settings);
        let metrics = Metrics::new("test");
        let cluster = KubeCluster::connect(settings, metrics.clone())
            .await
            .expect("connect");
        Self {
            fake,
            cluster,
            metrics,
            _dir: dir,
        }
    }

    /// Starts and waits for readiness.
    async fn ready(objects: Vec<Value>, adjust: impl FnOnce(&mut KubeSettings)) -> Self {
        let rig = Self::start(objects, adjust).await;
        assert!(
            rig.wait_ready(WAIT).await,
            "backend not ready within {WAIT:?}"
        );
        rig
    }

    async fn wait_ready(&self, limit: Duration) -> bool {
        eventually(limit, || async { self.cluster.is_ready() }).await
    }

    async fn gather(&self, needs: &Needs) -> Facts {
        bounded(self.cluster.gather(needs, soon())).await
    }

    async fn spec(&self, name: &str) -> SpecLookup {
        let facts = self.gather(&specs(&[name])).await;
        facts.specs.get(name).cloned().expect("spec looked up")
    }

    async fn grant(&self, sa: &str, spec: &str) -> AccessCheck {
        let facts = self.gather(&grants(NS, sa, &[spec])).await;
        facts.grants.get(spec).cloned().expect("grant looked up")
    }

    fn api_calls(&self, kind: ApiCallKind) -> u64 {
        self.metrics
            .api_calls
            .get_or_create(&ApiCallLabels { kind })
            .get()
    }

    fn cache(&self, cache: CacheKind, hit: bool) -> u64 {
        let family = if hit {
            &self.metrics.cache_hits
        } else {
            &self.metrics.cache_misses
        };
        family.get_or_create(&CacheLabels { cache }).get()
    }
}

/// The deadline the API server gives a webhook by default.
fn soon() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(10)
}

async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), future)
        .await
        .expect("bounded wait elapsed")
}

fn credential_spec(name: &str, account: &str) -> Value {
    json!({
        "apiVersion": "windows.k8s.io/v1",
        "kind": "GMSACredentialSpec",
        "metadata": {"name": name},
        "credspec": {
            "ActiveDirectoryConfig": {
                "GroupManagedServiceAccounts": [{"Name": account, "Scope": "contoso.com"}]
            },
            "CmsPlugins": ["ActiveDirectory"],
            "DomainJoinConfig": {
                "DnsName": "contoso.com",
                "MachineAccountName": account,
                "NetBiosName": "CONTOSO"
            }
        }
    })
}

/// A ClusterRole allowing `use` of `spec`, bound in `namespace` to service account `sa`.
fn grant_objects(namespace: &str, sa: &str, spec: &str) -> Vec<Value> {
    let role = format!("use-{spec}");
    vec![
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": role},
            "rules": [{
                "apiGroups": ["windows.k8s.io"],
                "resources": ["gmsacredentialspecs"],
                "verbs": ["use"],
                "resourceNames": [spec]
            }]
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": format!("{role}-{sa}"), "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}]
        }),
    ]
}

fn specs(names: &[&str]) -> Needs {
    Needs {
        specs: names.iter().map(|n| n.to_string()).collect(),
        namespace: NS.into(),
        service_account: "default".into(),
        ..Needs::default()
    }
}

fn grants(namespace: &str, sa: &str, names: &[&str]) -> Needs {
    Needs {
        grants: names.iter().map(|n| n.to_string()).collect(),
        namespace: namespace.into(),
        service_account: sa.into(),
        ..Needs::default()
    }
}

fn encoded(lookup: &SpecLookup) -> String {
    match lookup {
        SpecLookup::Found(spec) => spec.contents().expect("contents").encoded.to_string(),
        other => panic!("expected a spec, got {other:?}"),
    }
}

fn web_world() -> Vec<Value> {
    let mut objects = vec![credential_spec("gmsa-web", "WebApp1")];
    objects.extend(grant_objects(NS, "web", "gmsa-web"));
    objects
}

#[tokio::test]
async fn becomes_ready_after_the_watches_sync() {
    let rig = Rig::start(web_world(), |_| {}).await;
    assert!(rig.wait_ready(WAIT).await);
    assert!(rig.fake.lists(SPECS) >= 1);
    for rbac in [
        "roles",
        "clusterroles",
        "rolebindings",
        "clusterrolebindings",
    ] {
        assert!(rig.fake.lists(rbac) >= 1, "{rbac} listed");
        assert!(
            rig.fake.wait_for_watches(rbac, 1, WAIT).await,
            "{rbac} watched"
        );
    }
    assert!(rig.fake.wait_for_watches(SPECS, 1, WAIT).await);
    // The client counts what the watcher sends, too.
    assert!(rig.api_calls(ApiCallKind::ListCredentialSpecs) >= 1);
    assert!(rig.api_calls(ApiCallKind::ListRbac) >= 4);
    assert!(
        eventually(WAIT, || async {
            rig.api_calls(ApiCallKind::WatchRbac) >= 4
        })
        .await
    );
}

#[tokio::test]
async fn an_unusable_kubeconfig_is_the_only_start_error() {
    let metrics = Metrics::new("test");
    let missing = settings(PathBuf::from("/nonexistent/kubeconfig"), true);
    let result = KubeCluster::connect(missing, metrics.clone()).await;
    assert!(matches!(result, Err(KubeError::Config(_))));

    // Nothing listening: connect still succeeds; readiness just never comes.
    let dir = TempDir::new().expect("temp dir");
    let nowhere = write_kubeconfig(&dir, "http://127.0.0.1:9");
    let cluster = KubeCluster::connect(settings(nowhere, true), metrics)
        .await
        .expect("connect without a server");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!cluster.is_ready());
    let facts = bounded(cluster.gather(&specs(&["gmsa-web"]), soon())).await;
    assert!(matches!(
        facts.specs.get("gmsa-web"),
        Some(SpecLookup::Failed(_))
    ));
}

#[tokio::test]
async fn not_ready_while_the_api_server_is_down_and_ready_once_it_is_back() {
    let fake = FakeApiServer::start().await;
    fake.apply_all(web_world()).expect("seed");
    fake.set_down(true);
    let rig = Rig::connect(fake, |_| {}).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!rig.cluster.is_ready());
    assert!(rig.fake.lists(SPECS) >= 1, "the watch kept trying");
    rig.fake.set_down(false);
    // The watcher's backoff is at most a few seconds after two seconds of failures.
    assert!(rig.wait_ready(Duration::from_secs(30)).await);
    assert!(matches!(rig.spec("gmsa-web").await, SpecLookup::Found(_)));
}

#[tokio::test]
async fn steady_state_lookups_make_no_api_requests() {
    let rig = Rig::ready(web_world(), |_| {}).await;
    let needs = Needs {
        specs: ["gmsa-web".to_string()].into(),
        grants: ["gmsa-web".to_string()].into(),
        namespace: NS.into(),
        service_account: "web".into(),
    };
    // The first review fills the decision cache.
    let facts = rig.gather(&needs).await;
    assert_eq!(facts.grants.get("gmsa-web"), Some(&AccessCheck::Allowed));
    let before: BTreeMap<String, u64> = rig.fake.counts();
    for _ in 0..100 {
        let facts = rig.gather(&needs).await;
        assert!(matches!(
            facts.specs.get("gmsa-web"),
            Some(SpecLookup::Found(_))
        ));
        assert_eq!(facts.grants.get("gmsa-web"), Some(&AccessCheck::Allowed));
    }
    assert_eq!(
        rig.fake.counts(),
        before,
        "no request reached the API server"
    );
    assert_eq!(rig.cache(CacheKind::CredentialSpec, true), 101);
    assert_eq!(rig.cache(CacheKind::CredentialSpec, false), 0);
    assert_eq!(rig.cache(CacheKind::Authorization, true), 100);
    assert_eq!(rig.cache(CacheKind::Authorization, false), 1);
    assert_eq!(rig.api_calls(ApiCallKind::GetCredentialSpec), 0);
    assert_eq!(rig.api_calls(ApiCallKind::LocalSubjectAccessReview), 1);
}

#[tokio::test]
async fn cached_specs_are_encoded_like_the_reference() {
    let rig = Rig::ready(vec![credential_spec("gmsa-web", "A<B>&C")], |_| {}).await;
    let lookup = rig.spec("gmsa-web").await;
    assert_eq!(
        encoded(&lookup),
        r#"{"ActiveDirectoryConfig":{"GroupManagedServiceAccounts":[{"Name":"A\u003cB\u003e\u0026C","Scope":"contoso.com"}]},"CmsPlugins":["ActiveDirectory"],"DomainJoinConfig":{"DnsName":"contoso.com","MachineAccountName":"A\u003cB\u003e\u0026C","NetBiosName":"CONTOSO"}}"#
    );
    assert_eq!(rig.fake.gets(SPECS), 0);
}

#[tokio::test]
async fn the_watch_brings_new_changed_and_deleted_specs() {
    let rig = Rig::ready(web_world(), |_| {}).await;
    let before = encoded(&rig.spec("gmsa-web").await);

    rig.fake
        .apply(credential_spec("gmsa-new", "NewApp"))
        .expect("create");
    rig.fake
        .apply(credential_spec("gmsa-web", "WebApp2"))
        .expect("update");
    // Served from the cache (no GET) once the watch has delivered it.
    let arrived = eventually(WAIT, || async {
        let gets = rig.fake.gets(SPECS);
        let found = matches!(rig.spec("gmsa-new").await, SpecLookup::Found(_));
        found && rig.fake.gets(SPECS) == gets
    })
    .await;
    assert!(arrived, "new spec reached the cache");
    assert!(
        eventually(WAIT, || async {
            encoded(&rig.spec("gmsa-web").await) != before
        })
        .await,
        "changed contents reached the cache"
    );
    assert!(encoded(&rig.spec("gmsa-web").await).contains("WebApp2"));

    rig.fake
        .delete("GMSACredentialSpec", None, "gmsa-new")
        .expect("delete");
    assert!(
        eventually(WAIT, || async {
            matches!(rig.spec("gmsa-new").await, SpecLookup::NotFound)
        })
        .await
    );
}

#[tokio::test]
async fn a_spec_created_just_before_its_pod_is_fetched_directly() {
    // A current-thread runtime: nothing else runs between the create and the lookup, so the
    // watch cannot have delivered the spec yet.
    let rig = Rig::ready(web_world(), |_| {}).await;
    rig.fake
        .apply(credential_spec("gmsa-fresh", "Fresh"))
        .expect("create");
    let gets = rig.fake.gets(SPECS);
    let lookup = rig.spec("gmsa-fresh").await;
    assert!(encoded(&lookup).contains("Fresh"));
    assert_eq!(rig.fake.gets(SPECS), gets + 1);
    assert_eq!(rig.api_calls(ApiCallKind::GetCredentialSpec), 1);
    assert_eq!(rig.cache(CacheKind::CredentialSpec, false), 1);
}

#[tokio::test]
async fn a_missing_spec_is_not_found() {
    let rig = Rig::ready(web_world(), |_| {}).await;
    assert!(matches!(rig.spec("nope").await, SpecLookup::NotFound));
    assert_eq!(rig.api_calls(ApiCallKind::GetCredentialSpec), 1);
}

#[tokio::test]
async fn a_failing_get_names_the_api_error() {
    let rig = Rig::ready(web_world(), |_| {}).await;
    // Only the GET fails: the spec watch, re-watching meanwhile, must not use up the failure.
    rig.fake.fail_next_verb_on("get", SPECS, 1, 500);
    match rig.spec("gmsa-other").await {
        SpecLookup::Failed(text) => assert_eq!(
            text,
            "Internal error occurred: injected by the fake API server"
        ),
        other => panic!("expected a failure, got {other:?}"),
    }
    // Not remembered: the next lookup asks again.
    assert!(matches!(rig.spec("gmsa-other").await, SpecLookup::NotFound));
}

#[tokio::test]
async fn access_reviews_map_to_allowed_denied_and_failed() {
    let rig = Rig::ready(web_world(), |_| {}).await;
    assert_eq!(rig.grant("web", "gmsa-web").await, AccessCheck::Allowed);
    assert_eq!(
        rig.grant("other", "gmsa-web").await,
        AccessCheck::Denied {
            reason: String::new()
        }
    );

    // API errors are failures, never denials, 403 included; and they are not cached.
    for code in [500, 403] {
        rig.fake.fail_next_on("localsubjectaccessreviews", 1, code);
        match rig.grant("third", "gmsa-web").await {
            AccessCheck::Failed(text) => {
                assert!(text.contains("injected by the fake API server"), "{text}")
            }
            other => panic!("expected a failure for {code}, got {other:?}"),
        }
    }
    let reviews = rig.fake.access_reviews();
    assert!(matches!(
        rig.grant("third", "gmsa-web").await,
        AccessCheck::Denied { .. }
    ));
    assert_eq!(rig.fake.access_reviews(), reviews + 1);
}

#[tokio::test]
async fn reviews_ask_for_the_service_account_in_the_pods_namespace() {
    // The same service-account name in another namespace has no binding.
    let rig = Rig::ready(web_world(), |_| {}).await;
    let facts = rig.gather(&grants("team-b", "web", &["gmsa-web"])).await;
    assert!(matches!(
        facts.grants.get("gmsa-web"),
        Some(AccessCheck::Denied { .. })
    ));
    // A binding to the namespace's service-account group covers every account there.
    let mut objects = grant_objects("team-b", "unused", "gmsa-web");
    objects[1]["metadata"]["name"] = json!("group-binding");
    objects[1]["subjects"] = json!([{
        "kind": "Group",
        "apiGroup": "rbac.authorization.k8s.io",
        "name": "system:serviceaccounts:team-b"
    }]);
    rig.fake.apply_all(objects).expect("grant group");
    assert!(
        eventually(WAIT, || async {
            rig.gather(&grants("team-b", "web", &["gmsa-web"]))
                .await
                .grants
                .get("gmsa-web")
                == Some(&AccessCheck::Allowed)
        })
        .await
    );
}

#[tokio::test]
async fn decisions_are_cached_and_flushed_when_rbac_changes() {
    let rig = Rig::ready(web_world(), |_| {}).await;
    let denied = AccessCheck::Denied {
        reason: String::new(),
    };
    assert_eq!(rig.grant("late", "gmsa-web").await, denied);
    let reviews = rig.fake.access_reviews();
    assert_eq!(rig.grant("late", "gmsa-web").await, denied);
    assert_eq!(rig.fake.access_reviews(), reviews, "served from the cache");
    assert_eq!(rig.cache(CacheKind::Authorization, true), 1);

    // Granting takes effect without waiting for the (ten-minute) deny TTL.
    rig.fake
        .apply_all(grant_objects(NS, "late", "gmsa-web"))
        .expect("grant");
    assert!(
        eventually(WAIT, || async {
            rig.grant("late", "gmsa-web").await == AccessCheck::Allowed
        })
        .await
    );
    // And revoking, without waiting for the allow TTL.
    rig.fake
        .delete("rolebindings", Some(NS), "use-gmsa-web-late")
        .expect("revoke");
    assert!(
        eventually(WAIT, || async {
            rig.grant("late", "gmsa-web").await == denied
        })
        .await
    );
}

#[tokio::test]
async fn decisions_expire_after_their_ttl() {
    let rig = Rig::ready(web_world(), |s| s.allow_ttl = Duration::from_millis(300)).await;
    assert_eq!(rig.grant("web", "gmsa-web").await, AccessCheck::Allowed);
    let reviews = rig.fake.access_reviews();
    assert_eq!(rig.grant("web", "gmsa-web").await, AccessCheck::Allowed);
    assert_eq!(rig.fake.access_reviews(), reviews);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(rig.grant("web", "gmsa-web").await, AccessCheck::Allowed);
    assert_eq!(rig.fake.access_reviews(), reviews + 1);
}

#[tokio::test]
async fn a_zero_ttl_asks_every_time() {
    let rig = Rig::ready(web_world(), |s| {
        s.allow_ttl = Duration::ZERO;
        s.deny_ttl = Duration::ZERO;
    })
    .await;
    let reviews = rig.fake.access_reviews();
    for _ in 0..3 {
        assert_eq!(rig.grant("web", "gmsa-web").await, AccessCheck::Allowed);
    }
    assert_eq!(rig.fake.access_reviews(), reviews + 3);
}

#[tokio::test]
async fn concurrent_admissions_share_one_review() {
    let rig = Rig::ready(web_world(), |_| {}).await;
    rig.fake.set_latency(Duration::from_millis(200));
    let needs = grants(NS, "web", &["gmsa-web"]);
    let reviews = rig.fake.access_reviews();
    let all = futures::future::join_all((0..20).map(|_| rig.cluster.gather(&needs, soon())));
    let answers = bounded(all).await;
    assert!(answers
        .iter()
        .all(|f| f.grants.get("gmsa-web") == Some(&AccessCheck::Allowed)));
    assert_eq!(rig.fake.access_reviews(), reviews + 1);
}

#[tokio::test]
async fn a_gather_resolves_its_needs_concurrently() {
    let mut objects = web_world();
    for name in ["gmsa-a", "gmsa-b", "gmsa-c"] {
        objects.extend(grant_objects(NS, "web", name));
    }
    let rig = Rig::ready(objects, |_| {}).await;
    rig.fake.set_latency(Duration::from_millis(300));
    let needs = Needs {
        specs: ["x", "y", "z"].iter().map(|s| s.to_string()).collect(),
        grants: ["gmsa-a", "gmsa-b", "gmsa-c"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        namespace: NS.into(),
        service_account: "web".into(),
    };
    let started = tokio::time::Instant::now();
    let facts = rig.gather(&needs).await;
    // Six requests of 300 ms each, at once.
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "{:?}",
        started.elapsed()
    );
    assert!(facts
        .specs
        .values()
        .all(|s| matches!(s, SpecLookup::NotFound)));
    assert!(facts.grants.values().all(|g| *g == AccessCheck::Allowed));
}

#[tokio::test]
async fn a_watch_that_fell_behind_relists_and_catches_up() {
    let mut objects = web_world();
    objects.push(credential_spec("gmsa-old", "Old"));
    let rig = Rig::ready(objects, |_| {}).await;
    assert!(rig.fake.wait_for_watches(SPECS, 1, WAIT).await);
    let lists = rig.fake.lists(SPECS);
    // The server goes away (watches cut, reconnects refused), things change meanwhile and
    // history is compacted: resuming gets 410, so the watcher must list again.
    rig.fake.set_down(true);
    assert!(eventually(WAIT, || async { rig.fake.open_watches(SPECS) == 0 }).await);
    rig.fake
        .delete("GMSACredentialSpec", None, "gmsa-old")
        .expect("delete");
    rig.fake
        .apply(credential_spec("gmsa-later", "Later"))
        .expect("create");
    rig.fake.compact();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rig.cluster.is_ready(), "readiness survives a watch failure");
    // The cache still serves what it had while the server is away.
    assert!(matches!(rig.spec("gmsa-old").await, SpecLookup::Found(_)));
    rig.fake.set_down(false);
    let caught_up = eventually(Duration::from_secs(30), || async {
        let gets = rig.fake.gets(SPECS);
        let later = matches!(rig.spec("gmsa-later").await, SpecLookup::Found(_));
        let old = rig.spec("gmsa-old").await;
        later && matches!(old, SpecLookup::NotFound) && rig.fake.gets(SPECS) == gets + 1
    })
    .await;
    assert!(caught_up, "the watch caught up");
    assert!(rig.fake.lists(SPECS) > lists, "the watcher listed again");
}

#[tokio::test]
async fn without_caches_every_reference_costs_a_get_and_a_review() {
    let mut objects = web_world();
    objects.push(credential_spec("gmsa-two", "Two"));
    objects.extend(grant_objects(NS, "web", "gmsa-two"));
    let rig = Rig::start(objects, |s| s.caches = false).await;
    assert!(rig.wait_ready(WAIT).await);
    let needs = Needs {
        specs: ["gmsa-web".to_string(), "gmsa-two".to_string()].into(),
        grants: ["gmsa-web".to_string(), "gmsa-two".to_string()].into(),
        namespace: NS.into(),
        service_account: "web".into(),
    };
    let (gets, reviews) = (rig.fake.gets(SPECS), rig.fake.access_reviews());
    for round in 1..=3 {
        let facts = rig.gather(&needs).await;
        assert!(facts
            .specs
            .values()
            .all(|s| matches!(s, SpecLookup::Found(_))));
        assert!(facts.grants.values().all(|g| *g == AccessCheck::Allowed));
        assert_eq!(rig.fake.gets(SPECS), gets + 2 * round);
        assert_eq!(rig.fake.access_reviews(), reviews + 2 * round);
    }
    assert_eq!(rig.fake.watches(SPECS), 0, "no watch with the caches off");
    assert_eq!(rig.fake.watches("rolebindings"), 0);
    assert_eq!(rig.cache(CacheKind::CredentialSpec, true), 0);
    assert_eq!(rig.cache(CacheKind::Authorization, true), 0);
}

#[tokio::test]
async fn without_caches_readiness_waits_for_the_api_server() {
    let fake = FakeApiServer::start().await;
    fake.set_down(true);
    let rig = Rig::connect(fake, |s| s.caches = false).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!rig.cluster.is_ready());
    rig.fake.set_down(false);
    assert!(rig.wait_ready(WAIT).await);
}

#[tokio::test]
async fn requests_on_an_admissions_behalf_are_rate_limited() {
    let rig = Rig::start(web_world(), |s| {
        s.caches = false;
        s.qps = 10.0;
        s.burst = 1;
    })
    .await;
    assert!(rig.wait_ready(WAIT).await);
    // The readiness probe took the burst token; six more at 10/s take about 0.6 s.
    let started = tokio::time::Instant::now();
    for _ in 0..3 {
        rig.gather(&Needs {
            specs: ["gmsa-web".to_string()].into(),
            grants: ["gmsa-web".to_string()].into(),
            namespace: NS.into(),
            service_account: "web".into(),
        })
        .await;
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(450), "{elapsed:?}");
}

/// A RoleBinding in `namespace` of the `use-<spec>` ClusterRole to `sa`, alone.
fn role_binding(namespace: &str, sa: &str, spec: &str) -> Value {
    grant_objects(namespace, sa, spec).remove(1)
}

impl Rig {
    /// Applies `object` and waits until the RBAC index holds `count` objects.
    async fn apply_rbac(&self, object: Value, count: usize) {
        self.fake.apply(object).expect("apply");
        let indexed = eventually(WAIT, || async {
            self.cluster.rbac_objects() == Some(count)
        });
        assert!(
            indexed.await,
            "the RBAC index holds {:?}, not {count}",
            self.cluster.rbac_objects()
        );
    }
}

#[tokio::test]
async fn hybrid_finds_rbac_grants_without_a_review() {
    let rig = Rig::ready(web_world(), |s| s.authorization = Authorization::Hybrid).await;
    let reviews = || rig.api_calls(ApiCallKind::LocalSubjectAccessReview);
    for _ in 0..50 {
        assert_eq!(rig.grant("web", "gmsa-web").await, AccessCheck::Allowed);
    }
    assert_eq!(reviews(), 0, "a grant RBAC makes needs no review");
    assert_eq!(rig.cache(CacheKind::Rbac, true), 50);

    // RBAC says no: the API server is asked (another authorizer might allow), once.
    assert!(matches!(
        rig.grant("other", "gmsa-web").await,
        AccessCheck::Denied { .. }
    ));
    assert!(matches!(
        rig.grant("other", "gmsa-web").await,
        AccessCheck::Denied { .. }
    ));
    assert_eq!(reviews(), 1);
    assert_eq!(rig.cache(CacheKind::Rbac, false), 2);

    // A binding in another namespace cannot affect the denial: it stays cached.
    let held = rig.cluster.rbac_objects().expect("caches on");
    rig.apply_rbac(role_binding("elsewhere", "other", "gmsa-web"), held + 1)
        .await;
    assert!(matches!(
        rig.grant("other", "gmsa-web").await,
        AccessCheck::Denied { .. }
    ));
    assert_eq!(
        reviews(),
        1,
        "no review for a change that cannot affect the decision"
    );

    // One in its namespace can (it names a role that grants use): asked again.
    rig.apply_rbac(role_binding(NS, "third", "gmsa-web"), held + 2)
        .await;
    assert!(matches!(
        rig.grant("other", "gmsa-web").await,
        AccessCheck::Denied { .. }
    ));
    assert_eq!(reviews(), 2);

    // Granted at last: found in RBAC, no review.
    rig.apply_rbac(role_binding(NS, "other", "gmsa-web"), held + 3)
        .await;
    assert_eq!(rig.grant("other", "gmsa-web").await, AccessCheck::Allowed);
    assert_eq!(reviews(), 2);

    // Revoked: RBAC no longer allows, and the API server is asked again.
    rig.fake
        .delete("rolebindings", Some(NS), "use-gmsa-web-other")
        .expect("delete");
    let revoked = eventually(WAIT, || async {
        rig.cluster.rbac_objects() == Some(held + 2)
    });
    assert!(revoked.await);
    assert!(matches!(
        rig.grant("other", "gmsa-web").await,
        AccessCheck::Denied { .. }
    ));
    assert_eq!(reviews(), 3);
}

#[tokio::test]
async fn local_authorization_never_asks_the_api_server() {
    let rig = Rig::ready(web_world(), |s| s.authorization = Authorization::Local).await;
    assert_eq!(rig.grant("web", "gmsa-web").await, AccessCheck::Allowed);
    assert!(matches!(
        rig.grant("other", "gmsa-web").await,
        AccessCheck::Denied { .. }
    ));
    assert_eq!(rig.api_calls(ApiCallKind::LocalSubjectAccessReview), 0);
}

#[tokio::test]
async fn api_authorization_keeps_answers_a_change_elsewhere_cannot_affect() {
    let rig = Rig::ready(web_world(), |_| {}).await;
    let reviews = || rig.api_calls(ApiCallKind::LocalSubjectAccessReview);
    assert_eq!(rig.grant("web", "gmsa-web").await, AccessCheck::Allowed);
    assert_eq!(reviews(), 1);
    let held = rig.cluster.rbac_objects().expect("caches on");
    rig.apply_rbac(role_binding("elsewhere", "web", "gmsa-web"), held + 1)
        .await;
    assert_eq!(rig.grant("web", "gmsa-web").await, AccessCheck::Allowed);
    assert_eq!(reviews(), 1, "the cached answer survives");
    rig.apply_rbac(role_binding(NS, "third", "gmsa-web"), held + 2)
        .await;
    assert_eq!(rig.grant("web", "gmsa-web").await, AccessCheck::Allowed);
    assert_eq!(reviews(), 2, "a change in its namespace drops it");
}
