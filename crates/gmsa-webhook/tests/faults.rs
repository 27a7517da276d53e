//! Faults, on real sockets: the Kubernetes API server down at start, gone after sync, its watch
//! streams cut, too slow for the API server's deadline; certificate files swapped under load;
//! SIGTERM under load with the real binary. Every test bounds itself in count and time, and
//! prints what it did (`cargo test --test faults -- --nocapture` shows the numbers).
#![cfg(unix)]

mod common;

use gmsa_testkit::reviews::{gmsa_pod, ReviewBody};
use gmsa_testkit::secret_volume::SecretVolume;
use gmsa_testkit::wait::eventually;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gmsa_testkit::FakeApiServer;
use gmsa_tls::{self as tls, CertificateAuthority, IssuedCert, Validity};
use gmsa_webhook::config::{Authorization, CertSource, ClusterSource};
use gmsa_webhook::Server;
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Bound on any wait for a condition.
const WAIT: Duration = Duration::from_secs(30);
const NS: &str = "team-a";

// ------------------------------------------------------------------ client ---

/// A keep-alive HTTPS/1.1 client trusting one CA, as the API server calls webhooks.
#[derive(Clone)]
struct Client {
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
}

type Sender = http1::SendRequest<Full<Bytes>>;

impl Client {
    fn new(addr: SocketAddr, ca: &Path) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).expect("CA file") {
            roots.add(cert.expect("CA cert")).expect("trust anchor");
        }
        let mut config = rustls::ClientConfig::builder_with_provider(tls::crypto_provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // Every new connection does a full handshake, so it sees the current certificate.
        config.resumption = rustls::client::Resumption::disabled();
        Self {
            addr,
            tls: Arc::new(config),
        }
    }

    async fn connect(&self) -> Result<Sender, String> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let stream = TlsConnector::from(self.tls.clone())
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// POSTs a review on `sender`; the HTTP status and the parsed answer.
    async fn review(sender: &mut Sender, path: &str, body: &[u8]) -> Result<(u16, Value), String> {
        sender
            .ready()
            .await
            .map_err(|e| format!("not ready: {e}"))?;
        let request = http::Request::post(path)
            .header(http::header::HOST, "localhost")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        let value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))?;
        Ok((status, value))
    }

    /// One review on a new connection.
    async fn once(&self, path: &str, body: &[u8]) -> (u16, Value) {
        let mut sender = self.connect().await.expect("connection");
        Self::review(&mut sender, path, body)
            .await
            .expect("an answer")
    }

    /// The body of a GET, as text.
    async fn text(&self, path: &str) -> Result<String, String> {
        let mut sender = self.connect().await?;
        let request = http::Request::get(path)
            .header(http::header::HOST, "localhost")
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    async fn status(&self, path: &str) -> Result<u16, String> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| e.to_string())?;
        let stream = TlsConnector::from(self.tls.clone())
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let request = http::Request::get(path)
            .header(http::header::HOST, "localhost")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        Ok(response.status().as_u16())
    }
}

// ------------------------------------------------------------------- world ---

fn credential_spec(name: &str, account: &str) -> Value {
    json!({
        "apiVersion": "windows.k8s.io/v1",
        "kind": "GMSACredentialSpec",
        "metadata": {"name": name},
        "credspec": {
            "CmsPlugins": ["ActiveDirectory"],
            "DomainJoinConfig": {"DnsName": "contoso.com", "MachineAccountName": account}
        }
    })
}

/// `gmsa-web`, usable by service accounts `web` and `other` in `team-a`.
fn world() -> Vec<Value> {
    vec![
        credential_spec("gmsa-web", "WebApp1"),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "use-gmsa-web"},
            "rules": [{"apiGroups": ["windows.k8s.io"], "resources": ["gmsacredentialspecs"],
                "verbs": ["use"], "resourceNames": ["gmsa-web"]}]
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "use-gmsa-web", "namespace": NS},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "use-gmsa-web"},
            "subjects": [
                {"kind": "ServiceAccount", "name": "web", "namespace": NS},
                {"kind": "ServiceAccount", "name": "other", "namespace": NS}
            ]
        }),
    ]
}

/// A review of a new pod in `team-a` run by `sa`, naming `spec` at pod level; with
/// `contents`, as validation sees it after mutation.
fn review(uid: &str, sa: &str, spec: &str, contents: Option<&str>) -> Vec<u8> {
    let mut pod = gmsa_pod("p", spec);
    pod["spec"]["serviceAccountName"] = json!(sa);
    if let Some(c) = contents {
        pod["spec"]["securityContext"]["windowsOptions"]["gmsaCredentialSpec"] = json!(c);
    }
    ReviewBody::pod(pod).uid(uid).namespace(NS).to_bytes()
}

const WEB_CONTENTS: &str = r#"{"CmsPlugins":["ActiveDirectory"],"DomainJoinConfig":{"DnsName":"contoso.com","MachineAccountName":"WebApp1"}}"#;

fn allowed(answer: &Value) -> bool {
    answer["response"]["allowed"] == true
}

fn denial(answer: &Value) -> (u64, String) {
    (
        answer["response"]["status"]["code"].as_u64().unwrap_or(0),
        answer["response"]["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

fn kubeconfig(dir: &Path, url: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\n\
         users:\n- name: webhook\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: webhook\n\
         current-context: fake\n"
    );
    std::fs::write(&path, text).expect("kubeconfig");
    path
}

/// A webhook on the Kubernetes backend against `fake`, serving in the background.
struct KubeWebhook {
    client: Client,
    _dir: tempfile::TempDir,
}

async fn kube_webhook(fake: &FakeApiServer, allow_ttl: Duration) -> KubeWebhook {
    kube_webhook_with(fake, allow_ttl, Tuning::default()).await
}

/// Settings some faults need other than the defaults.
struct Tuning {
    qps: f32,
    burst: u32,
    stale_after: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            qps: 0.0,
            burst: 10,
            stale_after: Duration::from_secs(60),
        }
    }
}

/// As [`kube_webhook`], tuned.
async fn kube_webhook_with(
    fake: &FakeApiServer,
    allow_ttl: Duration,
    Tuning {
        qps,
        burst,
        stale_after,
    }: Tuning,
) -> KubeWebhook {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = common::config(dir.path(), Duration::from_millis(10));
    cfg.cluster = ClusterSource::Kubernetes {
        kubeconfig: Some(kubeconfig(dir.path(), &fake.url())),
        qps,
        burst,
        allow_ttl,
        deny_ttl: allow_ttl,
        caches: true,
        // These faults are about access reviews: ask one for every decision.
        authorization: Authorization::Api,
        stale_after,
    };
    let server = Server::bind(cfg).await.expect("bind");
    let client = Client::new(server.addr, &dir.path().join("certs/ca.crt"));
    tokio::spawn(server.run(std::future::pending()));
    KubeWebhook { client, _dir: dir }
}

impl KubeWebhook {
    async fn ready(&self) -> bool {
        self.client.status("/readyz").await == Ok(200)
    }

    async fn wait_ready(&self) {
        assert!(
            eventually(WAIT, || self.ready()).await,
            "webhook not ready within {WAIT:?}"
        );
    }
}

// ------------------------------------------------------------ API faults ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_down_at_start_means_not_ready_then_ready_when_it_appears() {
    let fake = FakeApiServer::start().await;
    fake.apply_all(world()).expect("seed");
    fake.set_down(true);
    let started = Instant::now();
    let hook = kube_webhook(&fake, Duration::from_secs(60)).await;

    // Up and answering, but not ready: no crash, health fine, admissions denied clearly.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(hook.client.status("/readyz").await, Ok(503));
    assert_eq!(hook.client.status("/health").await, Ok(204));
    let (status, answer) = hook
        .client
        .once("/mutate", &review("m1", "web", "gmsa-web", None))
        .await;
    assert_eq!(status, 200);
    let (code, message) = denial(&answer);
    assert_eq!(code, 500, "{answer}");
    assert!(
        message.starts_with("unable to retrieve the contents of cred spec gmsa-web: "),
        "{message}"
    );

    fake.set_down(false);
    hook.wait_ready().await;
    let ready_after = started.elapsed();
    let (_, answer) = hook
        .client
        .once("/mutate", &review("m2", "web", "gmsa-web", None))
        .await;
    assert!(allowed(&answer), "{answer}");
    assert_eq!(answer["response"]["patchType"], "JSONPatch");
    println!(
        "api down at start: not ready for 1.5 s, ready {:.1} s after start once the API appeared",
        ready_after.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_gone_after_sync_mutate_serves_the_cache_validate_uses_fresh_decisions() {
    let fake = FakeApiServer::start().await;
    fake.apply_all(world()).expect("seed");
    let hook = kube_webhook(&fake, Duration::from_secs(120)).await;
    hook.wait_ready().await;
    // `web` has a fresh cached decision; `other` has never been asked about.
    let (_, answer) = hook
        .client
        .once(
            "/validate",
            &review("v0", "web", "gmsa-web", Some(WEB_CONTENTS)),
        )
        .await;
    assert!(allowed(&answer), "{answer}");

    fake.shutdown().await;
    let mut answered = 0;
    for i in 0..20 {
        let (status, answer) = hook
            .client
            .once(
                "/mutate",
                &review(&format!("m{i}"), "web", "gmsa-web", None),
            )
            .await;
        assert_eq!(status, 200);
        assert!(allowed(&answer), "mutate from the cache: {answer}");
        assert_eq!(answer["response"]["patchType"], "JSONPatch");
        let (_, answer) = hook
            .client
            .once(
                "/validate",
                &review(&format!("v{i}"), "web", "gmsa-web", Some(WEB_CONTENTS)),
            )
            .await;
        assert!(
            allowed(&answer),
            "validate from a cached decision: {answer}"
        );
        answered += 2;
    }
    let started = Instant::now();
    let (status, answer) = hook
        .client
        .once(
            "/validate",
            &review("v-other", "other", "gmsa-web", Some(WEB_CONTENTS)),
        )
        .await;
    assert_eq!(status, 200);
    let (code, message) = denial(&answer);
    assert_eq!(code, 500, "{answer}");
    assert!(
        message.starts_with(
            r#"unable to check whether service account "other" may `use` GMSA cred spec "gmsa-web": "#
        ),
        "{message}"
    );
    println!(
        "api gone after sync: {answered} admissions answered from caches; an uncached decision denied with 500 after {} ms: {message}",
        started.elapsed().as_millis()
    );
    // Readiness stays: the caches still serve what they had.
    assert!(hook.ready().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_watch_relists_and_sees_the_changes() {
    let mut objects = world();
    objects.push(credential_spec("gmsa-old", "Old"));
    let fake = FakeApiServer::start().await;
    fake.apply_all(objects).expect("seed");
    let hook = kube_webhook(&fake, Duration::from_secs(60)).await;
    hook.wait_ready().await;
    assert!(fake.wait_for_watches("gmsacredentialspecs", 1, WAIT).await);
    let lists = fake.lists("gmsacredentialspecs");

    // The streams end; meanwhile a spec is added, one deleted, and history is compacted, so
    // resuming fails with 410 and the cache must list again.
    fake.set_down(true);
    assert!(
        eventually(WAIT, || async {
            fake.open_watches("gmsacredentialspecs") == 0
        })
        .await
    );
    fake.apply(credential_spec("gmsa-new", "New")).expect("add");
    fake.delete("GMSACredentialSpec", None, "gmsa-old")
        .expect("delete");
    fake.compact();
    fake.set_down(false);
    let cut_at = Instant::now();
    assert!(
        eventually(WAIT, || async {
            fake.lists("gmsacredentialspecs") > lists
                && fake.open_watches("gmsacredentialspecs") >= 1
        })
        .await,
        "the watch listed again"
    );
    // Served from the cache: no direct GET reaches the API server for either answer.
    let gets = fake.gets("gmsacredentialspecs");
    let caught_up = eventually(WAIT, || async {
        let (_, new) = hook
            .client
            .once("/mutate", &review("n", "web", "gmsa-new", None))
            .await;
        let (_, old) = hook
            .client
            .once("/mutate", &review("o", "web", "gmsa-old", None))
            .await;
        allowed(&new) && denial(&old).0 == 404
    })
    .await;
    assert!(caught_up, "the cache saw the new and the deleted spec");
    let relisted_gets = fake.gets("gmsacredentialspecs") - gets;
    println!(
        "watch cut: re-listed ({} lists in all) and caught up {} ms after the API returned; {relisted_gets} direct GETs while catching up",
        fake.lists("gmsacredentialspecs"),
        cut_at.elapsed().as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_api_server_gets_a_clear_denial_before_the_api_servers_deadline() {
    let fake = FakeApiServer::start().await;
    fake.apply_all(world()).expect("seed");
    let hook = kube_webhook(&fake, Duration::from_secs(60)).await;
    hook.wait_ready().await;
    // Every API request now takes longer than the API server will wait for the webhook.
    fake.set_latency(Duration::from_secs(10));
    let body = review("slow", "web", "gmsa-web", Some(WEB_CONTENTS));
    let started = Instant::now();
    let (status, answer) = hook.client.once("/validate?timeout=3s", &body).await;
    let took = started.elapsed();
    assert_eq!(status, 200);
    let (code, message) = denial(&answer);
    assert_eq!(code, 500, "{answer}");
    assert!(message.starts_with("timed out after "), "{message}");
    assert!(message.contains("Kubernetes API"), "{message}");
    // The contract: an answer before the API server gives up (3 s), not a hang.
    assert!(took < Duration::from_secs(3), "answered after {took:?}");
    println!(
        "slow API (10 s per request), ?timeout=3s: denied after {} ms: {message}",
        took.as_millis()
    );
    // The cached parts still answer at once.
    let (_, answer) = hook
        .client
        .once("/mutate?timeout=3s", &review("m", "web", "gmsa-web", None))
        .await;
    assert!(allowed(&answer), "{answer}");
}

/// Every service account in `team-a` may use `gmsa-web`, so any invented name is allowed by
/// an access review that gets answered.
fn team_wide_grant() -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "team-uses-gmsa-web", "namespace": NS},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "use-gmsa-web"},
        "subjects": [{"kind": "Group", "name": format!("system:serviceaccounts:{NS}")}]
    })
}

/// Sends `count` validations at once, each for its own service account, with `?timeout=`;
/// returns the answers.
async fn validations_at_once(
    client: &Client,
    prefix: &str,
    count: usize,
    timeout: &str,
) -> Vec<Value> {
    let path = format!("/validate?timeout={timeout}");
    let answers = futures::future::join_all((0..count).map(|i| {
        let (client, path) = (client.clone(), path.clone());
        let body = review(
            &format!("{prefix}-{i}"),
            &format!("{prefix}-{i}"),
            "gmsa-web",
            Some(WEB_CONTENTS),
        );
        async move { client.once(&path, &body).await.1 }
    }))
    .await;
    answers
}

/// The value of an unlabelled metric in the webhook's `/metrics` text.
async fn metric(client: &Client, name: &str) -> Option<f64> {
    let text = client.text("/metrics").await.ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Item 3 of the hardening issue: admissions that gave up waiting for the client rate limit
/// must not have spent its tokens. A reserving bucket at QPS 5 left 100 abandoned waits 19 s
/// of debt, so every later review timed out too, a run that fed itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_rate_limit_waits_leave_the_limit_whole() {
    let mut objects = world();
    objects.push(team_wide_grant());
    let fake = FakeApiServer::start().await;
    fake.apply_all(objects).expect("seed");
    let hook = kube_webhook_with(
        &fake,
        Duration::ZERO,
        Tuning {
            qps: 5.0,
            burst: 5,
            ..Tuning::default()
        },
    )
    .await;
    hook.wait_ready().await;
    let reviews_before = fake.access_reviews();

    // A burst of 100 cache misses with a 1 s deadline: the limit admits about 5–10, and the
    // rest are refused, naming the limit, as soon as the wait is known to end too late (on a
    // loaded machine a few granted late may time out instead).
    let started = Instant::now();
    let burst = validations_at_once(&hook.client, "burst", 100, "1s").await;
    let took = started.elapsed();
    let admitted = burst.iter().filter(|a| allowed(a)).count();
    let limited: Vec<String> = burst
        .iter()
        .filter(|a| !allowed(a))
        .map(|a| denial(a).1)
        .collect();
    let named = limited
        .iter()
        .filter(|m| {
            m.contains("client rate limit (QPS 5, BURST 5) would start this request in")
                && m.contains("queued")
        })
        .count();
    assert!(admitted >= 5, "{admitted} admitted: {limited:?}");
    assert!(
        limited
            .iter()
            .all(|m| m.contains("client rate limit") || m.contains("timed out after")),
        "{limited:?}"
    );
    assert!(named >= limited.len() / 2, "{limited:?}");

    // After a quiet second the limit has refilled: every review gets its answer.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut later = Vec::new();
    for i in 0..5 {
        let body = review(
            &format!("later-{i}"),
            &format!("later-{i}"),
            "gmsa-web",
            Some(WEB_CONTENTS),
        );
        later.push(hook.client.once("/validate?timeout=2s", &body).await.1);
    }
    let denied: Vec<_> = later.iter().filter(|a| !allowed(a)).collect();
    assert!(denied.is_empty(), "after the burst: {denied:?}");
    println!(
        "rate limit QPS 5 BURST 5: a burst of 100 misses, {admitted} admitted and {} refused ({named} naming the limit) in {} ms; 5 of 5 admitted after 1.2 s quiet; {} access reviews sent",
        limited.len(),
        took.as_millis(),
        fake.access_reviews() - reviews_before
    );
}

/// One validation of a closed-loop run: by which client, when it was sent and answered
/// (client side), and the denial message if it was refused.
struct Sent {
    client: usize,
    sent: Instant,
    answered: Instant,
    refusal: Option<String>,
}

/// `clients` keep-alive connections, each sending validations one after the other (the next
/// as soon as the last is answered, as the API server's callers do) for `length`; every
/// validation is for its own service account, so every one needs an access review.
async fn closed_loop(
    client: &Client,
    clients: usize,
    timeout: &str,
    length: Duration,
) -> Vec<Sent> {
    let path = format!("/validate?timeout={timeout}");
    let started = Instant::now();
    let runs = futures::future::join_all((0..clients).map(|c| {
        let (client, path) = (client.clone(), path.clone());
        async move {
            let mut sender = client.connect().await.expect("connection");
            let mut sent = Vec::new();
            while started.elapsed() < length {
                let name = format!("loop-{timeout}-{clients}-{c}-{}", sent.len());
                let body = review(&name, &name, "gmsa-web", Some(WEB_CONTENTS));
                let at = Instant::now();
                let (status, answer) = Client::review(&mut sender, &path, &body)
                    .await
                    .expect("an answer");
                assert_eq!(status, 200, "{answer}");
                sent.push(Sent {
                    client: c,
                    sent: at,
                    answered: Instant::now(),
                    refusal: (!allowed(&answer)).then(|| denial(&answer).1),
                });
            }
            sent
        }
    }))
    .await;
    runs.into_iter().flatten().collect()
}

/// Issue 24, item 8: at QPS 5 / BURST 10 four clients each needing an access review per
/// validation had 4% refused by our own rate limit, although the limit could serve them all in
/// time: a waiter kept losing the token to later arrivals. Served in order, a request waits at
/// most one period (1/QPS) for each request queued ahead of it plus its own; a refusal is fair
/// only when even that is past its deadline. Every refusal is checked against that bound, with
/// every other client that had a request in flight when it was sent counted as possibly ahead
/// of it (generous to the limiter). At 1x and 2x the issue's load with a 3 s admission timeout
/// every request fits, so none may be refused; with 1 s at 2x some cannot fit, and only those
/// may be. Closed loops, so 2x offers twice the clients, not twice the rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_refuses_only_requests_it_could_not_serve_in_time() {
    const QPS: f64 = 5.0;
    const PHASE: Duration = Duration::from_secs(4);
    /// How much later than a request another may have been sent and still reached the
    /// webhook first, and slack for timers: both only make the check more forgiving.
    const SKEW: Duration = Duration::from_millis(100);
    const SLACK: Duration = Duration::from_millis(200);
    let mut objects = world();
    objects.push(team_wide_grant());
    let fake = FakeApiServer::start().await;
    fake.apply_all(objects).expect("seed");
    let hook = kube_webhook_with(
        &fake,
        Duration::ZERO,
        Tuning {
            qps: QPS as f32,
            burst: 10,
            ..Tuning::default()
        },
    )
    .await;
    hook.wait_ready().await;

    let period = Duration::from_secs_f64(1.0 / QPS);
    for (clients, timeout, all_fit) in [(4, "3s", true), (8, "3s", true), (8, "1s", false)] {
        // The webhook's own arithmetic: 10% of the API server's timeout kept to answer, and
        // 100 ms of that for the request itself; the rate-limit wait must end before that.
        let seconds: f64 = timeout.trim_end_matches('s').parse().expect("seconds");
        let latest_start = Duration::from_secs_f64(seconds * 0.9 - 0.1);
        let sent = closed_loop(&hook.client, clients, timeout, PHASE).await;
        let mut unfair = Vec::new();
        let mut limited = 0;
        let mut other = Vec::new();
        for request in &sent {
            let Some(message) = &request.refusal else {
                continue;
            };
            if !message.contains("client rate limit") {
                other.push(message.clone());
                continue;
            }
            limited += 1;
            // A client has one request in flight at a time, so at most one ahead.
            let ahead = (0..clients)
                .filter(|&c| {
                    c != request.client
                        && sent.iter().any(|other| {
                            other.client == c
                                && other.sent <= request.sent + SKEW
                                && other.answered >= request.sent
                        })
                })
                .count();
            let in_order = period * (ahead as u32 + 1);
            if in_order + SLACK <= latest_start {
                unfair.push(format!(
                    "at most {ahead} ahead ({} ms in order) yet refused: {message}",
                    in_order.as_millis()
                ));
            }
        }
        let mut waits: Vec<Duration> = sent.iter().map(|s| s.answered - s.sent).collect();
        waits.sort();
        let at = |q: f64| waits[((waits.len() - 1) as f64 * q) as usize].as_millis();
        let line = format!(
            "{clients} clients, ?timeout={timeout}, {} s: {} validations, {} admitted, {limited} refused by the rate limit ({} of them unfair), {} other denials; median {} ms, p90 {} ms, max {} ms",
            PHASE.as_secs(),
            sent.len(),
            sent.iter().filter(|s| s.refusal.is_none()).count(),
            unfair.len(),
            other.len(),
            at(0.5),
            at(0.9),
            at(1.0)
        );
        println!("{line}");
        assert!(unfair.is_empty(), "{line}\n{unfair:#?}");
        if all_fit {
            assert_eq!(limited, 0, "{line}");
            assert!(other.is_empty(), "{line}\n{other:#?}");
        }
    }
}

/// Item 4 of the hardening issue: when every admission waiting for an access review has given
/// up, the review is dropped and its entry with it; invented names cannot grow the map.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_no_one_waits_for_are_dropped() {
    let mut objects = world();
    objects.push(team_wide_grant());
    let fake = FakeApiServer::start().await;
    fake.apply_all(objects).expect("seed");
    let hook = kube_webhook(&fake, Duration::from_secs(60)).await;
    hook.wait_ready().await;
    let gauge = "gmsa_webhook_access_reviews_in_flight";
    assert_eq!(metric(&hook.client, gauge).await, Some(0.0));

    // Access reviews now take 10 s; 300 admissions with invented names give up after ~1 s.
    fake.set_latency(Duration::from_secs(10));
    let answers = validations_at_once(&hook.client, "invented", 300, "1s").await;
    assert!(answers.iter().all(|a| denial(a).0 == 500), "all time out");
    let gone = eventually(Duration::from_secs(5), || async {
        metric(&hook.client, gauge).await == Some(0.0)
    })
    .await;
    assert!(
        gone,
        "abandoned reviews still held: {:?}",
        metric(&hook.client, gauge).await
    );

    // A review someone still waits for is kept and shared meanwhile.
    fake.set_latency(Duration::from_millis(800));
    let shared = validations_at_once(&hook.client, "same", 1, "5s");
    let watcher = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        metric(&hook.client, gauge).await
    };
    let (answers, during) = futures::join!(shared, watcher);
    assert!(allowed(&answers[0]), "{:?}", answers[0]);
    assert_eq!(during, Some(1.0), "the review under way is counted");
    assert_eq!(metric(&hook.client, gauge).await, Some(0.0));
    println!("300 abandoned access reviews dropped once their admissions gave up; gauge back to 0");
}

/// A ready webhook on the seeded fake API server whose watches may fail for `stale_after`
/// before it stops being ready.
async fn ready_with_stale_limit(stale_after: Duration) -> (FakeApiServer, KubeWebhook) {
    let fake = FakeApiServer::start().await;
    fake.apply_all(world()).expect("seed");
    let hook = kube_webhook_with(
        &fake,
        Duration::from_secs(60),
        Tuning {
            stale_after,
            ..Tuning::default()
        },
    )
    .await;
    hook.wait_ready().await;
    (fake, hook)
}

/// Item 10 of the hardening issue: a replica whose watches cannot resync for longer than the
/// limit is taken out of the Service (not ready), and comes back when they follow the cluster
/// again, even when the resumed watch delivers no event. Before, readiness never went back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_broken_longer_than_the_limit_makes_the_replica_not_ready() {
    let stale_after = Duration::from_secs(2);
    let (fake, hook) = ready_with_stale_limit(stale_after).await;

    fake.set_down(true);
    let down_at = Instant::now();
    // A brief failure keeps readiness: the cache still serves.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(hook.ready().await, "ready within the limit");
    assert!(
        eventually(WAIT, || async { !hook.ready().await }).await,
        "not ready once the watches have failed for longer than {stale_after:?}"
    );
    let unready_after = down_at.elapsed();
    assert!(unready_after > stale_after, "{unready_after:?}");
    assert_eq!(
        hook.client.status("/health").await,
        Ok(204),
        "alive, not ready"
    );

    // Back, with nothing changed: the watches resume without an event, and readiness returns.
    let lists = fake.lists("gmsacredentialspecs");
    fake.set_down(false);
    let up_at = Instant::now();
    assert!(
        eventually(WAIT, || hook.ready()).await,
        "ready again once the watches are accepted"
    );
    let ready_after = up_at.elapsed();
    println!(
        "watches broken: not ready {} ms after the API went down (limit {} ms); ready again {} ms after it returned ({} re-lists of specs)",
        unready_after.as_millis(),
        stale_after.as_millis(),
        ready_after.as_millis(),
        fake.lists("gmsacredentialspecs") - lists
    );
}

/// A re-list that keeps failing (the watch expired, then every list answers 500) makes the
/// replica not ready once the limit has passed, and it stays so through the retries: kube
/// announces each list before asking for it, and an announcement is no answer. Before, every
/// retry restarted the failure clock, and the replica came back ready between retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_list_that_keeps_failing_keeps_the_replica_not_ready() {
    let stale_after = Duration::from_secs(2);
    let (fake, hook) = ready_with_stale_limit(stale_after).await;

    // Another kind's write moves the cluster's resourceVersion past the spec watch's, which
    // compaction then forgets: the resumed watch gets 410 and kube lists again.
    fake.apply(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "unrelated"}, "rules": []}),
    )
    .expect("a write");
    fake.fail_next_verb_on("list", "gmsacredentialspecs", 1_000_000, 500);
    fake.compact();
    fake.cut_watches();
    let cut_at = Instant::now();
    assert!(
        eventually(WAIT, || async { !hook.ready().await }).await,
        "not ready once the re-list has failed for longer than {stale_after:?}"
    );
    let unready_after = cut_at.elapsed();
    // kube retries the list after 0.8, 1.6, 3.2, 6.4 s (and jitter): eight seconds span
    // several retries, each announced before it fails.
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(8) {
        assert!(
            !hook.ready().await,
            "ready again {:?} into a re-list that still fails",
            cut_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lists = fake.lists("gmsacredentialspecs");

    fake.clear_failures();
    let cleared = Instant::now();
    assert!(
        eventually(Duration::from_secs(60), || hook.ready()).await,
        "ready again once a list succeeds"
    );
    println!(
        "re-list failing: not ready {} ms after the watch was cut (limit {} ms) and all through {} list requests; ready {} ms after lists succeeded again",
        unready_after.as_millis(),
        stale_after.as_millis(),
        lists,
        cleared.elapsed().as_millis()
    );
}

// ---------------------------------------------------- certificate swaps ---

fn serving_cert(ca: &CertificateAuthority) -> IssuedCert {
    tls::issue_serving_cert(
        ca,
        &["localhost", "127.0.0.1"],
        Validity::starting_now(time::Duration::days(1)),
    )
    .expect("serving cert")
}

/// Counts of a load run.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    connections: AtomicU64,
    first_failure: std::sync::Mutex<Option<String>>,
}

impl Tally {
    fn fail(&self, what: String) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut first) = self.first_failure.lock() {
            first.get_or_insert(what);
        }
    }
}

/// Sends mutate reviews until `stop`, checking each answer; every `reconnect_every` requests
/// the connection is replaced (0: keep one connection).
async fn mutate_until(
    client: Client,
    body: Arc<Vec<u8>>,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    reconnect_every: u64,
    max_requests: u64,
) {
    let mut sender: Option<Sender> = None;
    let mut sent = 0u64;
    let mut on_this_connection = 0u64;
    while !stop.load(Ordering::SeqCst) && sent < max_requests {
        if sender.is_none() || (reconnect_every > 0 && on_this_connection >= reconnect_every) {
            match client.connect().await {
                Ok(s) => {
                    tally.connections.fetch_add(1, Ordering::SeqCst);
                    sender = Some(s);
                    on_this_connection = 0;
                }
                Err(e) => {
                    tally.fail(e);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    sent += 1;
                    continue;
                }
            }
        }
        let Some(s) = sender.as_mut() else { continue };
        sent += 1;
        on_this_connection += 1;
        match Client::review(s, "/mutate", &body).await {
            Ok((200, answer))
                if allowed(&answer) && answer["response"]["patchType"] == "JSONPatch" =>
            {
                tally.ok.fetch_add(1, Ordering::SeqCst);
            }
            Ok((status, answer)) => tally.fail(format!("HTTP {status}: {answer}")),
            Err(e) => {
                tally.fail(e);
                sender = None;
            }
        }
    }
}

fn embedded_review() -> Vec<u8> {
    common::review().into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_swapped_100_times_under_load_fail_no_request() {
    const SWAPS: usize = 100;
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = CertificateAuthority::generate(
        "faults-ca",
        Validity::starting_now(time::Duration::days(2)),
    )
    .expect("ca");
    std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).expect("ca file");
    let tls_dir = dir.path().join("tls");
    std::fs::create_dir(&tls_dir).expect("tls dir");
    let first = serving_cert(&ca);
    let mut volume =
        SecretVolume::create(&tls_dir, &first.cert_pem, &first.key_pem).expect("secret volume");
    let mut cfg = common::config(dir.path(), Duration::from_millis(10));
    cfg.certs = CertSource::Files {
        cert: tls_dir.join("tls.crt"),
        key: tls_dir.join("tls.key"),
    };
    cfg.cert_poll_interval = Duration::from_millis(500);
    let server = Server::bind(cfg).await.expect("bind");
    let client = Client::new(server.addr, &dir.path().join("ca.crt"));
    let app = server.app.clone();
    tokio::spawn(server.run(std::future::pending()));

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let body = Arc::new(embedded_review());
    let mut load = Vec::new();
    // Two keep-alive connections and two that reconnect (a new handshake) every 5 requests.
    for reconnect_every in [0, 0, 5, 5] {
        load.push(tokio::spawn(mutate_until(
            client.clone(),
            body.clone(),
            stop.clone(),
            tally.clone(),
            reconnect_every,
            200_000,
        )));
    }
    let started = Instant::now();
    let mut last = None;
    for _ in 0..SWAPS {
        let next = serving_cert(&ca);
        volume
            .rotate(&next.cert_pem, &next.key_pem)
            .expect("rotate");
        last = Some(next);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    // The last certificate is the one served in the end.
    let last = last.expect("swapped");
    let last_der = CertificateDer::from_pem_slice(last.cert_pem.as_bytes()).expect("der");
    let served_last = eventually(WAIT, || async {
        served_certificate(&client).await.as_ref() == Some(&last_der)
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for task in load {
        tokio::time::timeout(WAIT, task)
            .await
            .expect("load stops")
            .expect("load task");
    }
    let metrics = app.metrics.encode();
    let reloads = metrics
        .lines()
        .find(|l| l.contains("certificate_reloads") && !l.starts_with('#'))
        .unwrap_or("certificate reloads not reported")
        .to_string();
    let (ok, failed) = (
        tally.ok.load(Ordering::SeqCst),
        tally.failed.load(Ordering::SeqCst),
    );
    println!(
        "certificate swaps: {SWAPS} swaps in {:.1} s; {ok} admissions on {} connections, {failed} failed; {reloads}",
        started.elapsed().as_secs_f64(),
        tally.connections.load(Ordering::SeqCst)
    );
    assert!(served_last, "the last certificate is served");
    assert_eq!(
        failed,
        0,
        "first failure: {:?}",
        tally.first_failure.lock().ok().and_then(|f| f.clone())
    );
    assert!(ok > 0);
}

/// The certificate a new handshake presents.
async fn served_certificate(client: &Client) -> Option<CertificateDer<'static>> {
    let tcp = TcpStream::connect(client.addr).await.ok()?;
    let stream = TlsConnector::from(client.tls.clone())
        .connect(ServerName::try_from("localhost").ok()?, tcp)
        .await
        .ok()?;
    let (_, conn) = stream.get_ref();
    conn.peer_certificates()?
        .first()
        .map(|c| c.clone().into_owned())
}

// ---------------------------------------------------- SIGTERM under load ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_fails_no_admission_and_exits_zero() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("state")).expect("state dir");
    std::fs::write(dir.path().join("state/spec.yaml"), common::STATE).expect("state");
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe port");
        probe.local_addr().expect("addr").port()
    };
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_gmsa-webhook"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--dev-certs")
        .arg(dir.path().join("certs"))
        .args(["--bind-address", "127.0.0.1", "--port", &port.to_string()])
        .args(["--shutdown-grace", "1s"])
        .env_remove("TLS_CRT")
        .env_remove("TLS_KEY")
        .env("LOG_LEVEL", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start gmsa-webhook");
    let mut child = KillOnDrop(Some(child));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let ca = dir.path().join("certs/ca.crt");
    assert!(
        eventually(WAIT, || async {
            ca.exists() && Client::new(addr, &ca).status("/readyz").await == Ok(200)
        })
        .await,
        "the webhook came up"
    );
    let client = Client::new(addr, &ca);

    // Load on keep-alive connections, and on connections made anew every few requests (new
    // connections must still be accepted during the grace period).
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let body = Arc::new(embedded_review());
    let mut load = Vec::new();
    for reconnect_every in [0, 0, 0, 10] {
        load.push(tokio::spawn(mutate_until(
            client.clone(),
            body.clone(),
            stop.clone(),
            tally.clone(),
            reconnect_every,
            200_000,
        )));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = tally.ok.load(Ordering::SeqCst);
    let pid = child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let term_at = Instant::now();
    // Keep sending well inside the 1 s grace period.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let readyz_during_grace = client.status("/readyz").await;
    stop.store(true, Ordering::SeqCst);
    for task in load {
        tokio::time::timeout(WAIT, task)
            .await
            .expect("load stops")
            .expect("load task");
    }
    let sent_during_grace = tally.ok.load(Ordering::SeqCst) - before;
    let status = child
        .wait(WAIT)
        .await
        .expect("the webhook exits after draining");
    let (ok, failed) = (
        tally.ok.load(Ordering::SeqCst),
        tally.failed.load(Ordering::SeqCst),
    );
    println!(
        "SIGTERM under load: {ok} admissions ({sent_during_grace} after SIGTERM) on {} connections, {failed} failed; readyz during grace {readyz_during_grace:?}; exited {status} {:.2} s after SIGTERM",
        tally.connections.load(Ordering::SeqCst),
        term_at.elapsed().as_secs_f64()
    );
    assert_eq!(
        failed,
        0,
        "first failure: {:?}",
        tally.first_failure.lock().ok().and_then(|f| f.clone())
    );
    assert!(sent_during_grace > 0, "load continued after SIGTERM");
    assert_eq!(readyz_during_grace, Ok(503), "readiness fails during grace");
    assert!(status.success(), "exit status {status}");
}

/// The webhook process, killed if the test ends before it exits.
struct KillOnDrop(Option<std::process::Child>);

impl KillOnDrop {
    fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, std::process::Child::id)
    }

    /// Waits up to `limit` for the process to exit.
    async fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.0.as_mut().map(std::process::Child::try_wait) {
                self.0 = None;
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
