//! Access decisions on a real kube-apiserver: validate throughput and latency with the
//! webhook's client defaults (QPS 5, BURST 10) when one service account is admitted, while
//! RoleBindings churn in another namespace, with many service accounts of one namespace granted
//! through its group, and in a burst of new keys as in a node drain; `--authorization api`
//! (every decision by an access review, briefly cached) against `hybrid` (RBAC from the watch
//! caches), side by side on the same server.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use bytes::Bytes;
use gmsa_core::names::paths;
use gmsa_testkit::real_cluster::{RealCluster, ServerVersion};
use gmsa_webhook::config::{Authorization, CertSource, ClusterSource, Config, LogFormat};
use serde::Serialize;
use serde_json::{json, Value};

use crate::in_process::{InProcess, Serving};
use crate::load::{self, Cell};
use crate::rounds;
use crate::section::ACCESS_DECISIONS;
use crate::world::ALLOWED;

const NS: &str = "bench";
const CHURN_NS: &str = "churn";
const SPEC: &str = "gmsa-bench";

/// One measured situation under one authorization mode.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub situation: String,
    pub mode: String,
    pub requests: u64,
    pub failures: u64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// LocalSubjectAccessReviews the webhook sent during the window.
    pub reviews: u64,
    pub first_failure: Option<String>,
}

/// How long each window lasts, and how many service accounts the many-keys rows use.
pub struct Plan {
    pub seconds: f64,
    pub service_accounts: Vec<usize>,
    pub burst: usize,
    /// The modes, in the order they run.
    pub modes: Vec<Authorization>,
    /// Rounds of the quiet and churn windows, interleaved (the median counts): they differ
    /// by less than this machine's run-to-run noise otherwise.
    pub rounds: usize,
}

impl Plan {
    pub fn full() -> Self {
        Self {
            seconds: 10.0,
            service_accounts: vec![300, 3000],
            burst: 1000,
            modes: vec![Authorization::Api, Authorization::Hybrid],
            rounds: 3,
        }
    }
    pub fn quick() -> Self {
        Self {
            seconds: 2.0,
            service_accounts: vec![300],
            burst: 200,
            modes: vec![Authorization::Api, Authorization::Hybrid],
            rounds: 1,
        }
    }
}

/// A validate review of a pod naming the spec, run as `service_account` of [`NS`].
fn review(service_account: &str) -> Bytes {
    let body = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "00000000-0000-0000-0000-000000000001",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": NS,
            "operation": "CREATE",
            "object": {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "iis", "namespace": NS},
                "spec": {
                    "serviceAccountName": service_account,
                    "securityContext": {"windowsOptions": {"gmsaCredentialSpecName": SPEC}},
                    "containers": [{"name": "iis", "image": "mcr.microsoft.com/windows/servercore/iis"}]
                }
            }
        }
    });
    Bytes::from(body.to_string())
}

fn bodies(prefix: &str, count: usize) -> Arc<[Bytes]> {
    (0..count)
        .map(|i| review(&format!("{prefix}-{i}")))
        .collect()
}

/// The spec, its `use` grant to every service account of [`NS`] through the namespace's
/// group, and what the webhook's user needs to read.
fn set_up(cluster: &RealCluster) -> anyhow::Result<()> {
    let apply = |v: Value| {
        cluster
            .apply(&v.to_string())
            .map(drop)
            .map_err(|e| anyhow!("{e}"))
    };
    cluster
        .apply_crd(&gmsa_deploy::crd::custom_resource_definition().to_string())
        .map_err(|e| anyhow!("{e}"))?;
    let rbac = "rbac.authorization.k8s.io";
    let webhook = crate::real_server::webhook_user_grant();
    apply(json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": CHURN_NS}},
        {"apiVersion": "windows.k8s.io/v1", "kind": "GMSACredentialSpec", "metadata": {"name": SPEC},
         "credspec": {"ActiveDirectoryConfig": {"GroupManagedServiceAccounts": [{"Name": "WebApp1", "Scope": "CONTOSO"}]},
                      "CmsPlugins": ["ActiveDirectory"],
                      "DomainJoinConfig": {"DnsName": "contoso.com", "DnsTreeName": "contoso.com",
                          "Guid": "244818ae-87ac-4fcd-92ec-e79e5252348a", "MachineAccountName": "WebApp1",
                          "NetBiosName": "CONTOSO", "Sid": "S-1-5-21-2126449477-2524075714-3094792973"}}},
        webhook[0], webhook[1],
        {"apiVersion": format!("{rbac}/v1"), "kind": "ClusterRole", "metadata": {"name": "use-gmsa-bench"},
         "rules": [{"apiGroups": ["windows.k8s.io"], "resources": ["gmsacredentialspecs"], "verbs": ["use"], "resourceNames": [SPEC]}]},
        {"apiVersion": format!("{rbac}/v1"), "kind": "RoleBinding", "metadata": {"name": "use-gmsa-bench", "namespace": NS},
         "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": "use-gmsa-bench"},
         "subjects": [{"apiGroup": rbac, "kind": "Group", "name": format!("system:serviceaccounts:{NS}")}]}
    ]}))
}

/// The webhook in this process, on a runtime of its own, until dropped.
struct Webhook {
    addr: SocketAddr,
    ca: std::path::PathBuf,
    metrics_url: String,
    /// Stops the webhook when the benchmark drops it.
    _server: InProcess,
}

impl Webhook {
    fn start(cluster: &RealCluster, mode: Authorization) -> anyhow::Result<Self> {
        let certs = cluster.dir().join(format!("bench-certs-{mode}"));
        let config = Config {
            listen: "127.0.0.1:0".parse()?,
            certs: CertSource::Dev { dir: certs.clone() },
            client_ca: None,
            probe_listen: None,
            cluster: ClusterSource::Kubernetes {
                kubeconfig: Some(cluster.webhook_kubeconfig().to_path_buf()),
                // The webhook's defaults, as users run it.
                qps: 5.0,
                burst: 10,
                allow_ttl: Duration::from_secs(10),
                deny_ttl: Duration::from_secs(2),
                caches: true,
                authorization: mode,
                stale_after: Duration::from_secs(60),
            },
            random_hostname: false,
            shutdown_grace: Duration::ZERO,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            cert_poll_interval: Duration::from_secs(10),
            max_body_bytes: 3 * 1024 * 1024,
            log_level: tracing::Level::WARN,
            log_format: LogFormat::Text,
            renewal: None,
        };
        let (addr, server) = InProcess::start(move |shutdown| async move {
            let server = gmsa_webhook::Server::bind(config)
                .await
                .map_err(|e| anyhow!("{e:#}"))?;
            let addr = server.addr;
            let serving: Serving = Box::pin(server.run(shutdown));
            Ok((addr, serving))
        })?;
        Ok(Self {
            addr,
            ca: certs.join("ca.crt"),
            metrics_url: "/metrics".to_string(),
            _server: server,
        })
    }
}

/// LocalSubjectAccessReviews sent so far, from the webhook's `/metrics`.
async fn reviews_sent(webhook: &Webhook, tls: &Arc<rustls::ClientConfig>) -> anyhow::Result<u64> {
    let text = load::get_text(webhook.addr, tls, &webhook.metrics_url).await?;
    Ok(text
        .lines()
        .filter(|l| {
            l.starts_with("gmsa_webhook_api_calls_total") && l.contains("LocalSubjectAccessReview")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

/// Creates and deletes a RoleBinding in [`CHURN_NS`] `per_second` times a second until `stop`.
fn churn(cluster: &RealCluster, per_second: u32, stop: &AtomicBool, pairs: &AtomicU64) {
    let pause = Duration::from_secs_f64(1.0 / f64::from(per_second.max(1)));
    let rbac = "rbac.authorization.k8s.io";
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let began = Instant::now();
        i += 1;
        let name = format!("churn-{i}");
        let binding = json!({"apiVersion": format!("{rbac}/v1"), "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": CHURN_NS},
            "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": "use-gmsa-bench"},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": CHURN_NS}]});
        let path = format!("/apis/{rbac}/v1/namespaces/{CHURN_NS}/rolebindings");
        let created = cluster.request("POST", &path, Some(&binding.to_string()));
        let deleted = cluster.request("DELETE", &format!("{path}/{name}"), None);
        if matches!((created, deleted), (Ok((201, _)), Ok((200, _)))) {
            pairs.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(rest) = pause.checked_sub(began.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}

/// Runs every situation under `api` and `hybrid` on one current kube-apiserver.
pub fn run(plan: &Plan) -> anyhow::Result<Vec<Row>> {
    let cluster = RealCluster::start(ServerVersion::Current).map_err(|e| anyhow!("{e}"))?;
    eprintln!("kube-apiserver {} ready", cluster.version());
    set_up(&cluster)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    for &mode in &plan.modes {
        let webhook = Webhook::start(&cluster, mode)?;
        let tls = load::client_tls(&webhook.ca)?;
        runtime.block_on(load::wait_ready(
            webhook.addr,
            &tls,
            Duration::from_secs(60),
        ))?;
        let duration = Duration::from_secs_f64(plan.seconds);
        let cell = |bodies: Arc<[Bytes]>, warmup: Duration, connections: usize, cap: u64| Cell {
            addr: webhook.addr,
            tls: tls.clone(),
            path: paths::VALIDATE,
            bodies,
            connections,
            warmup,
            duration,
            expect: ALLOWED,
            max_requests_per_connection: cap,
        };
        let mut situations: Vec<(String, Cell, bool)> = Vec::new();
        for _ in 0..plan.rounds.max(1) {
            situations.push((
                QUIET.into(),
                cell(bodies("app", 1), Duration::from_secs(1), 16, 2_000_000),
                false,
            ));
            situations.push((
                CHURN.into(),
                cell(bodies("app", 1), Duration::from_secs(1), 16, 2_000_000),
                true,
            ));
        }
        for &n in &plan.service_accounts {
            situations.push((
                format!("{n} service accounts of one namespace, granted through its group"),
                cell(
                    bodies(&format!("many{n}"), n),
                    Duration::from_secs(1),
                    16,
                    2_000_000,
                ),
                false,
            ));
        }
        // A drain: every key new, each asked once, 50 at a time.
        let per_connection = plan.burst.div_ceil(50) as u64;
        let mut burst = cell(
            bodies(&format!("burst-{mode}"), plan.burst),
            Duration::ZERO,
            50,
            per_connection,
        );
        burst.duration = Duration::from_secs(60);
        situations.push((
            format!(
                "a burst of {} new service accounts at once (a drain)",
                plan.burst
            ),
            burst,
            false,
        ));

        for (situation, cell, with_churn) in situations {
            let stop = AtomicBool::new(false);
            let pairs = AtomicU64::new(0);
            let before = runtime.block_on(reviews_sent(&webhook, &tls))?;
            let outcome = std::thread::scope(|s| {
                if with_churn {
                    s.spawn(|| churn(&cluster, 10, &stop, &pairs));
                }
                let outcome = runtime.block_on(load::run(cell, || {}, || {}));
                stop.store(true, Ordering::Relaxed);
                outcome
            })?;
            let after = runtime.block_on(reviews_sent(&webhook, &tls))?;
            let row = Row {
                situation: situation.clone(),
                mode: mode.to_string(),
                requests: outcome.requests,
                failures: outcome.failures,
                rps: outcome.rps(),
                p50_ms: outcome.percentile_ms(0.5),
                p99_ms: outcome.percentile_ms(0.99),
                reviews: after.saturating_sub(before),
                first_failure: outcome.first_failure.clone(),
            };
            eprintln!(
                "{mode:>6}  {situation}: {:.0} req/s, p99 {:.1} ms, {} failed, {} reviews{}",
                row.rps,
                row.p99_ms,
                row.failures,
                row.reviews,
                if with_churn {
                    format!(", {} churn pairs", pairs.load(Ordering::Relaxed))
                } else {
                    String::new()
                }
            );
            rows.push(row);
        }
    }
    // The round with the median throughput, per (situation, mode).
    Ok(rounds::median(
        rows,
        |r| (r.situation.clone(), r.mode.clone()),
        |r| r.rps,
    ))
}

const QUIET: &str = "one service account, quiet";
const CHURN: &str =
    "one service account, 10 RoleBinding create+delete pairs/s in another namespace";

/// The rows as a Markdown section for BENCHMARKS.md, between its markers.
pub fn markdown(rows: &[Row], command: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", ACCESS_DECISIONS.begin);
    let _ = writeln!(out, "## Access decisions on a real kube-apiserver\n");
    let _ = writeln!(
        out,
        "kube-apiserver v1.37.2 and etcd 3.6 on loopback, the webhook with its client defaults (QPS 5, BURST 10), \
         16 concurrent validate reviews (50 for the burst, where every key is new and asked once, within \
         60 s: read its failed column; req/s counts admitted reviews). Quiet and churn windows are interleaved, \
         three rounds each, the median shown. \
         `api` asks an access review for every decision (cached 10 s allowed, 2 s denied, dropped by the scope of each RBAC change); \
         `hybrid` (the default) finds RBAC grants in the watch caches. Measured with `{command}`.\n"
    );
    let _ = writeln!(
        out,
        "| situation | mode | validate req/s | p50 | p99 | failed | access reviews |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|");
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.2} ms | {:.2} ms | {} of {} | {} |",
            row.situation,
            row.mode,
            row.rps,
            row.p50_ms,
            row.p99_ms,
            row.failures,
            row.requests + row.failures,
            row.reviews
        );
    }
    let _ = writeln!(out, "{}", ACCESS_DECISIONS.end);
    out
}
