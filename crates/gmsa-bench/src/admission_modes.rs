//! Pod creation on a real kube-apiserver under each admission mode, side by side on one
//! server: no GMSA admission at all (the floor), the webhook (a child process registered by URL
//! with the configurations install renders) and the admission policies install renders (no
//! process at all). Each cell creates pods naming a credential spec, as a client would, and
//! reports their latency and the CPU time the API server (and the webhook) spent per created
//! pod, with 1, 100 and 1,000 specs: policies with parameters are evaluated once per spec.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use gmsa_core::published::{self, Publication};
use gmsa_testkit::real_cluster::{RealCluster, ServerVersion, WEBHOOK_USER};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use serde::Serialize;
use serde_json::{json, Value};

use crate::load;
use crate::machine;
use crate::section::ADMISSION_MODES;
use crate::target::{Running, TargetKind, TargetSpec};

const NS: &str = "bench";
const SERVICE_ACCOUNT: &str = "app";
/// The spec every measured pod names.
const NAMED: &str = "spec-0";
/// Named by the probe that tells whether GMSA admission is on.
const MISSING: &str = "no-such-spec";
/// How long a mode may take to take effect (or to go away) once its objects are applied.
const SETTLE_LIMIT: Duration = Duration::from_secs(90);

/// What admits GMSA pods during a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// No GMSA admission: the cost of a pod create on this server.
    None,
    /// `install --admission webhook`: the webhook process, called twice per pod.
    Webhook,
    /// `install --admission policies`: CEL in the API server, no process.
    Policies,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::None => "none",
            Mode::Webhook => "webhook",
            Mode::Policies => "policies",
        }
    }
}

/// The cells to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub spec_counts: Vec<usize>,
    pub modes: Vec<Mode>,
    /// Pods created (and measured) per cell, after `warmup` unmeasured ones.
    pub pods: usize,
    pub warmup: usize,
    /// Concurrent keep-alive connections creating pods.
    pub connections: usize,
    /// Rounds of every mode per spec count, interleaved; the median round is shown.
    pub rounds: usize,
    /// This program: the webhook runs as `<exe> target --kind kube-cached`.
    pub exe: PathBuf,
}

impl Plan {
    pub fn full(exe: PathBuf) -> Self {
        Self {
            spec_counts: vec![1, 100, 1000],
            modes: vec![Mode::None, Mode::Webhook, Mode::Policies],
            pods: 400,
            warmup: 40,
            connections: 4,
            rounds: 3,
            exe,
        }
    }

    pub fn quick(exe: PathBuf) -> Self {
        Self {
            spec_counts: vec![1, 20],
            modes: vec![Mode::None, Mode::Webhook, Mode::Policies],
            pods: 40,
            warmup: 8,
            connections: 2,
            rounds: 1,
            exe,
        }
    }
}

/// One measured cell.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub specs: usize,
    pub mode: &'static str,
    /// Pods created in the measured window.
    pub pods: u64,
    pub failures: u64,
    pub pods_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// kube-apiserver user+system CPU over the window, per created pod.
    pub apiserver_cpu_ms: f64,
    /// The webhook process's CPU per created pod (webhook mode only).
    pub webhook_cpu_ms: Option<f64>,
    pub first_failure: Option<String>,
}

/// Runs every cell on one current kube-apiserver.
pub fn run(plan: &Plan) -> anyhow::Result<Vec<Row>> {
    let cluster = RealCluster::start(ServerVersion::Current).map_err(|e| anyhow!("{e}"))?;
    eprintln!("kube-apiserver {} ready", cluster.version());
    set_up(&cluster)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let client = Client::new(&cluster)?;
    let mut rows = Vec::new();
    let mut created = 0;
    let mut cell_number = 0;
    for &specs in &plan.spec_counts {
        while created < specs {
            create_spec(&cluster, created)?;
            created += 1;
        }
        eprintln!("{specs} credential specs, published");
        for _ in 0..plan.rounds.max(1) {
            for &mode in &plan.modes {
                cell_number += 1;
                let on = Admission::enable(&cluster, plan, mode)?;
                wait_until(&cluster, mode != Mode::None)?;
                let prefix = format!("c{cell_number}");
                let warm = runtime.block_on(client.create_pods(
                    &format!("{prefix}w"),
                    plan.warmup,
                    plan.connections,
                ))?;
                if warm.failures > 0 {
                    bail!(
                        "{} mode, {specs} specs: warm-up creates failed: {}",
                        mode.name(),
                        warm.first_failure.unwrap_or_default()
                    );
                }
                let apiserver_before = apiserver_cpu(&cluster)?;
                let webhook_before = on.webhook_cpu();
                let outcome =
                    runtime.block_on(client.create_pods(&prefix, plan.pods, plan.connections))?;
                let apiserver = apiserver_cpu(&cluster)?.saturating_sub(apiserver_before);
                let webhook = on
                    .webhook_cpu()
                    .zip(webhook_before)
                    .map(|(after, before)| after.saturating_sub(before));
                check_stored(&cluster, &format!("{prefix}-0"), mode)?;
                let per_pod =
                    |cpu: Duration| cpu.as_secs_f64() * 1000.0 / outcome.created.max(1) as f64;
                let row = Row {
                    specs,
                    mode: mode.name(),
                    pods: outcome.created,
                    failures: outcome.failures,
                    pods_per_s: outcome.created as f64 / outcome.elapsed.as_secs_f64().max(1e-9),
                    p50_ms: outcome.latency.value_at_quantile(0.5) as f64 / 1000.0,
                    p99_ms: outcome.latency.value_at_quantile(0.99) as f64 / 1000.0,
                    apiserver_cpu_ms: per_pod(apiserver),
                    webhook_cpu_ms: webhook.map(per_pod),
                    first_failure: outcome.first_failure,
                };
                eprintln!(
                    "{specs:>5} specs {:>8}: {:.0} pods/s, p50 {:.1} ms, p99 {:.1} ms, API server {:.2} ms CPU/pod{}, {} failed",
                    row.mode,
                    row.pods_per_s,
                    row.p50_ms,
                    row.p99_ms,
                    row.apiserver_cpu_ms,
                    row.webhook_cpu_ms
                        .map(|w| format!(", webhook {w:.2} ms"))
                        .unwrap_or_default(),
                    row.failures
                );
                rows.push(row);
                on.disable(&cluster)?;
                wait_until(&cluster, false)?;
                delete_pods(&cluster)?;
            }
        }
    }
    Ok(medians(rows))
}

/// The namespace, its service account granted `use` of every spec, the CRD, and what the
/// webhook's user needs to read.
fn set_up(cluster: &RealCluster) -> anyhow::Result<()> {
    cluster
        .apply_crd(&gmsa_deploy::crd::custom_resource_definition().to_string())
        .map_err(|e| anyhow!("{e}"))?;
    let rbac = "rbac.authorization.k8s.io";
    let objects = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
        {"apiVersion": format!("{rbac}/v1"), "kind": "ClusterRole", "metadata": {"name": "bench-webhook"},
         "rules": [
            {"apiGroups": ["windows.k8s.io"], "resources": ["gmsacredentialspecs"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [rbac], "resources": ["roles", "clusterroles", "rolebindings", "clusterrolebindings"], "verbs": ["list", "watch"]},
            {"apiGroups": ["authorization.k8s.io"], "resources": ["localsubjectaccessreviews"], "verbs": ["create"]}
         ]},
        {"apiVersion": format!("{rbac}/v1"), "kind": "ClusterRoleBinding", "metadata": {"name": "bench-webhook"},
         "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": "bench-webhook"},
         "subjects": [{"apiGroup": rbac, "kind": "User", "name": WEBHOOK_USER}]},
        {"apiVersion": format!("{rbac}/v1"), "kind": "ClusterRole", "metadata": {"name": "use-every-spec"},
         "rules": [{"apiGroups": ["windows.k8s.io"], "resources": ["gmsacredentialspecs"], "verbs": ["use"]}]},
        {"apiVersion": format!("{rbac}/v1"), "kind": "RoleBinding", "metadata": {"name": "use-every-spec", "namespace": NS},
         "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": "use-every-spec"},
         "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NS}]}
    ]});
    cluster
        .apply(&objects.to_string())
        .map_err(|e| anyhow!("{e}"))?;
    cluster
        .create_service_account(NS, SERVICE_ACCOUNT)
        .map_err(|e| anyhow!("{e}"))
}

/// Creates `spec-<i>` with its contents already published: a new custom resource has
/// generation 1, which the response confirms (policies use the contents only then).
fn create_spec(cluster: &RealCluster, i: usize) -> anyhow::Result<()> {
    let name = format!("spec-{i}");
    let mut spec = json!({
        "apiVersion": "windows.k8s.io/v1", "kind": "GMSACredentialSpec",
        "metadata": {"name": name, "generation": 1},
        "credspec": {
            "ActiveDirectoryConfig": {"GroupManagedServiceAccounts": [{"Name": format!("WebApp{i}"), "Scope": "CONTOSO"}]},
            "CmsPlugins": ["ActiveDirectory"],
            "DomainJoinConfig": {"DnsName": "contoso.com", "DnsTreeName": "contoso.com",
                "Guid": "244818ae-87ac-4fcd-92ec-e79e5252348a", "MachineAccountName": format!("WebApp{i}"),
                "NetBiosName": "CONTOSO", "Sid": "S-1-5-21-2126449477-2524075714-3094792973"}}
    });
    let Publication::Publish {
        contents,
        generation,
    } = published::publication(&spec)?
    else {
        bail!("{name}: nothing to publish");
    };
    spec["metadata"]["annotations"] = json!({
        published::CONTENTS_ANNOTATION: contents,
        published::CONTENTS_GENERATION_ANNOTATION: generation.to_string(),
    });
    let (status, body) = cluster
        .request(
            "POST",
            "/apis/windows.k8s.io/v1/gmsacredentialspecs",
            Some(&spec.to_string()),
        )
        .map_err(|e| anyhow!("{e}"))?;
    let stored: Value = serde_json::from_str(&body).unwrap_or_default();
    if status != 201 || stored["metadata"]["generation"] != json!(generation) {
        bail!("creating {name}: HTTP {status}: {body}");
    }
    Ok(())
}

/// What a mode put in the cluster, taken out by [`Admission::disable`].
struct Admission {
    /// (kubectl kind, name) of every object applied.
    objects: Vec<(String, String)>,
    webhook: Option<Running>,
}

impl Admission {
    fn enable(cluster: &RealCluster, plan: &Plan, mode: Mode) -> anyhow::Result<Self> {
        let version = gmsa_deploy::KubeVersion::new(1, cluster.version().minor());
        let (objects, webhook) = match mode {
            Mode::None => (Vec::new(), None),
            Mode::Webhook => {
                let spec = TargetSpec {
                    kind: TargetKind::KubeCached,
                    kubeconfig: Some(cluster.webhook_kubeconfig().to_path_buf()),
                    state_dir: None,
                    certs: cluster.dir().join("bench-webhook-certs"),
                    log_level: "info".into(),
                };
                let running = Running::child(&plan.exe, &spec)?;
                let ca_bundle_pem = std::fs::read_to_string(&running.ca)
                    .with_context(|| running.ca.display().to_string())?;
                let settings = gmsa_deploy::Settings {
                    kube_version: version,
                    certs: gmsa_deploy::CertMode::Secret("unused".into()),
                    webhook_url: Some(format!("https://{}", running.addr)),
                    ..gmsa_deploy::Settings::default()
                };
                let tls = gmsa_deploy::TlsMaterial {
                    ca_bundle_pem,
                    ..gmsa_deploy::TlsMaterial::default()
                };
                let objects = gmsa_deploy::render(&settings, Some(&tls))?
                    .objects
                    .into_iter()
                    .filter(|o| kind(o).ends_with("WebhookConfiguration"))
                    .collect();
                (objects, Some(running))
            }
            Mode::Policies => {
                let settings = gmsa_deploy::Settings {
                    kube_version: version,
                    admission: gmsa_deploy::Admission::Policies,
                    ..gmsa_deploy::Settings::default()
                };
                let objects = gmsa_deploy::render(&settings, None)?
                    .objects
                    .into_iter()
                    .filter(|o| kind(o).contains("AdmissionPolicy"))
                    .collect();
                (objects, None)
            }
        };
        let mut applied = Vec::new();
        for object in &objects {
            cluster
                .apply(&object.to_string())
                .map_err(|e| anyhow!("{e}"))?;
            applied.push((
                kind(object).to_ascii_lowercase(),
                object["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ));
        }
        Ok(Self {
            objects: applied,
            webhook,
        })
    }

    fn webhook_cpu(&self) -> Option<Duration> {
        self.webhook.as_ref().and_then(Running::cpu_time)
    }

    fn disable(self, cluster: &RealCluster) -> anyhow::Result<()> {
        for (kind, name) in &self.objects {
            cluster
                .kubectl_ok(&["delete", kind, name, "--ignore-not-found"], None)
                .map_err(|e| anyhow!("{e}"))?;
        }
        if let Some(webhook) = self.webhook {
            webhook.stop();
        }
        Ok(())
    }
}

fn kind(object: &Value) -> &str {
    object["kind"].as_str().unwrap_or_default()
}

/// Waits until GMSA admission is on (a dry-run pod naming a spec gets its contents, one
/// naming a missing spec is refused) or off (neither).
fn wait_until(cluster: &RealCluster, on: bool) -> anyhow::Result<()> {
    let began = Instant::now();
    loop {
        let (named, named_body) = dry_run(cluster, NAMED)?;
        let (missing, _) = dry_run(cluster, MISSING)?;
        let mutated = named == 201 && named_body.contains("\"gmsaCredentialSpec\":");
        let refused = missing != 201;
        if mutated == on && refused == on {
            return Ok(());
        }
        if began.elapsed() > SETTLE_LIMIT {
            bail!(
                "GMSA admission did not turn {} within {SETTLE_LIMIT:?}: a pod naming {NAMED} got \
                 HTTP {named} (contents inlined: {mutated}), one naming {MISSING} HTTP {missing}",
                if on { "on" } else { "off" }
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn dry_run(cluster: &RealCluster, spec: &str) -> anyhow::Result<(u16, String)> {
    cluster
        .request(
            "POST",
            &format!("/api/v1/namespaces/{NS}/pods?dryRun=All"),
            Some(&pod("probe", spec)),
        )
        .map_err(|e| anyhow!("{e}"))
}

/// A measured pod was stored as its mode says: with the contents inlined, or without.
fn check_stored(cluster: &RealCluster, name: &str, mode: Mode) -> anyhow::Result<()> {
    let (status, body) = cluster
        .request("GET", &format!("/api/v1/namespaces/{NS}/pods/{name}"), None)
        .map_err(|e| anyhow!("{e}"))?;
    let stored: Value = serde_json::from_str(&body).unwrap_or_default();
    let contents = &stored["spec"]["securityContext"]["windowsOptions"]["gmsaCredentialSpec"];
    if status != 200 || contents.is_string() != (mode != Mode::None) {
        bail!(
            "{} mode: pod {name} stored as HTTP {status} with contents {contents}",
            mode.name()
        );
    }
    Ok(())
}

fn delete_pods(cluster: &RealCluster) -> anyhow::Result<()> {
    // Pods never scheduled to a node go at once, without a grace period.
    let (status, body) = cluster
        .request("DELETE", &format!("/api/v1/namespaces/{NS}/pods"), None)
        .map_err(|e| anyhow!("{e}"))?;
    if status != 200 {
        bail!("deleting the pods: HTTP {status}: {body}");
    }
    Ok(())
}

fn apiserver_cpu(cluster: &RealCluster) -> anyhow::Result<Duration> {
    let stat = format!("/proc/{}/stat", cluster.apiserver_pid());
    machine::cpu_time(Path::new(&stat)).with_context(|| format!("cannot read {stat}"))
}

/// A Windows pod of [`SERVICE_ACCOUNT`] naming `spec` at pod level.
fn pod(name: &str, spec: &str) -> String {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "serviceAccountName": SERVICE_ACCOUNT,
            "nodeSelector": {"kubernetes.io/os": "windows"},
            "securityContext": {"windowsOptions": {"gmsaCredentialSpecName": spec}},
            "containers": [{"name": "iis", "image": "mcr.microsoft.com/windows/servercore/iis"}]
        }
    })
    .to_string()
}

/// Creates pods over keep-alive connections as the admin, the way a controller would.
struct Client {
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    authorization: String,
}

/// What one batch of creates saw.
struct Created {
    created: u64,
    failures: u64,
    elapsed: Duration,
    /// Microseconds per successful create.
    latency: Histogram<u64>,
    first_failure: Option<String>,
}

impl Client {
    fn new(cluster: &RealCluster) -> anyhow::Result<Self> {
        let addr = cluster
            .url()
            .strip_prefix("https://")
            .context("API server URL")?
            .parse()?;
        Ok(Self {
            addr,
            tls: load::client_tls(cluster.ca_path())?,
            authorization: format!("Bearer {}", cluster.admin_token()),
        })
    }

    /// Creates `<prefix>-0` .. `<prefix>-<count-1>` over `connections` connections.
    async fn create_pods(
        &self,
        prefix: &str,
        count: usize,
        connections: usize,
    ) -> anyhow::Result<Created> {
        let next = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(AtomicU64::new(0));
        let first_failure = Arc::new(Mutex::new(None::<String>));
        let path = format!("/api/v1/namespaces/{NS}/pods");
        let began = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..connections.max(1) {
            let (next, failures, first_failure) =
                (next.clone(), failures.clone(), first_failure.clone());
            let (addr, tls, authorization, path, prefix) = (
                self.addr,
                self.tls.clone(),
                self.authorization.clone(),
                path.clone(),
                prefix.to_string(),
            );
            tasks.push(tokio::spawn(async move {
                let mut latency = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)
                    .map_err(|e| anyhow!("histogram: {e}"))?;
                let mut sender = load::connect(addr, &tls).await.ok();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let body = Bytes::from(pod(&format!("{prefix}-{i}"), NAMED));
                    let started = Instant::now();
                    let answer = match sender.as_mut() {
                        Some(s) => create(s, &path, &authorization, body).await,
                        None => Err(anyhow!("no connection")),
                    };
                    match answer {
                        Ok(()) => {
                            let us = started.elapsed().as_micros().max(1) as u64;
                            let _ = latency.record(us.min(120_000_000));
                        }
                        Err(e) => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            if let Ok(mut first) = first_failure.lock() {
                                first.get_or_insert(e.to_string());
                            }
                            sender = load::connect(addr, &tls).await.ok();
                        }
                    }
                }
                Ok::<_, anyhow::Error>(latency)
            }));
        }
        let mut latency = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)
            .map_err(|e| anyhow!("histogram: {e}"))?;
        for task in tasks {
            latency
                .add(&task.await??)
                .map_err(|e| anyhow!("histogram: {e}"))?;
        }
        let first_failure = first_failure.lock().ok().and_then(|f| f.clone());
        Ok(Created {
            created: latency.len(),
            failures: failures.load(Ordering::Relaxed),
            elapsed: began.elapsed(),
            latency,
            first_failure,
        })
    }
}

async fn create(
    sender: &mut load::Sender,
    path: &str,
    authorization: &str,
    body: Bytes,
) -> anyhow::Result<()> {
    sender.ready().await?;
    let request = http::Request::post(path)
        .header(http::header::HOST, "localhost")
        .header(http::header::AUTHORIZATION, authorization)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json")
        .body(Full::new(body))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if status != http::StatusCode::CREATED {
        bail!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
    }
    Ok(())
}

/// One row per (specs, mode): the round with the median API-server CPU per pod, in first-seen
/// order.
fn medians(rows: Vec<Row>) -> Vec<Row> {
    let mut groups: Vec<((usize, &'static str), Vec<Row>)> = Vec::new();
    for row in rows {
        let key = (row.specs, row.mode);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, group)) => group.push(row),
            None => groups.push((key, vec![row])),
        }
    }
    groups
        .into_iter()
        .filter_map(|(_, mut group)| {
            group.sort_by(|a, b| a.apiserver_cpu_ms.total_cmp(&b.apiserver_cpu_ms));
            let middle = group.len() / 2;
            group.into_iter().nth(middle)
        })
        .collect()
}

/// The rows as the section of BENCHMARKS.md, markers included.
pub fn markdown(rows: &[Row], plan: &Plan, command: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", ADMISSION_MODES.begin);
    let _ = writeln!(out, "## Policy mode: pod creation by admission mode\n");
    let _ = writeln!(
        out,
        "kube-apiserver v1.37.2 and etcd 3.6 on loopback; the admin creates {} pods per cell \
         (after {} unmeasured) over {} keep-alive connections, each pod naming a credential spec \
         its service account may `use`. `none` has no GMSA admission at all (the floor: what a \
         pod create costs on this server); `webhook` is the webhook (kube backend, caches on, \
         its own process) registered by URL with the configurations install renders; \
         `policies` is the admission policies `install --admission policies` renders, with no \
         process on the path. CPU is the kube-apiserver's user+system time over the window \
         (`/proc`, 10 ms ticks) divided by the pods created, and the webhook's the same way. \
         Every mode's first pod is read back: contents inlined in `webhook` and `policies`, \
         none in `none`. Modes interleave, {} rounds; the round with the median API-server CPU \
         is shown. Measured with `{command}`.\n",
        plan.pods,
        plan.warmup,
        plan.connections,
        plan.rounds.max(1)
    );
    let _ = writeln!(
        out,
        "| specs | mode | pods/s | p50 | p99 | API server CPU/pod | vs none | webhook CPU/pod | failed |"
    );
    let _ = writeln!(out, "|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let floor = rows
            .iter()
            .find(|r| r.specs == row.specs && r.mode == Mode::None.name())
            .map(|r| r.apiserver_cpu_ms);
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {} | {} | {} of {} |",
            row.specs,
            row.mode,
            row.pods_per_s,
            row.p50_ms,
            row.p99_ms,
            row.apiserver_cpu_ms,
            floor
                .filter(|f| *f > 0.0)
                .map(|f| format!("{:.2}×", row.apiserver_cpu_ms / f))
                .unwrap_or_else(|| "–".into()),
            row.webhook_cpu_ms
                .map(|w| format!("{w:.2} ms"))
                .unwrap_or_else(|| "–".into()),
            row.failures,
            row.pods + row.failures
        );
    }
    if let Some(growth) = growth(rows, Mode::Policies) {
        let _ = writeln!(out, "\n{growth}");
    }
    let _ = writeln!(out, "{}", ADMISSION_MODES.end);
    out
}

/// How a mode's cost grows with the number of specs, from its smallest to its largest count.
fn growth(rows: &[Row], mode: Mode) -> Option<String> {
    let mine: Vec<&Row> = rows.iter().filter(|r| r.mode == mode.name()).collect();
    let first = mine.iter().min_by_key(|r| r.specs)?;
    let last = mine.iter().max_by_key(|r| r.specs)?;
    if last.specs <= first.specs {
        return None;
    }
    let extra = (last.specs - first.specs) as f64;
    Some(format!(
        "In `{}` mode, going from {} to {} specs adds {:.1} µs of API-server CPU and {:.1} µs \
         of p50 latency per pod for each spec added: the API server evaluates the mutating \
         policy and the `use` policy once per spec (parameter), and each spec the pod does not \
         name, though it stops at the policies' one match condition, costs that much.",
        mode.name(),
        first.specs,
        last.specs,
        (last.apiserver_cpu_ms - first.apiserver_cpu_ms) * 1000.0 / extra,
        (last.p50_ms - first.p50_ms) * 1000.0 / extra,
    ))
}
