//! Pod creation on a real kube-apiserver under each admission mode, side by side on one
//! server: no GMSA admission at all (the floor), the webhook (a child process registered by URL
//! with the configurations install renders) and the admission policies install renders (no
//! process at all). Each cell creates pods naming a credential spec, as a client would, and
//! reports their latency and the CPU time the API server (and the webhook) spent per created
//! pod, with 1, 100, 1,000 and 10,000 specs in the cluster, of which the pods' namespace may use
//! a few (its published contents hold those).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use gmsa_testkit::real_cluster::{RealCluster, ServerVersion};
use serde::Serialize;
use serde_json::{json, Value};

use crate::machine;
use crate::rounds;

mod admission;
mod pods;
mod report;

use admission::Admission;
use pods::{pod, Client};
pub use report::markdown;

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
    /// Specs the bench namespace's service account may `use` (the first of the cluster's),
    /// so its namespace's published contents hold that many.
    pub namespace_specs: usize,
}

/// Specs a namespace's service accounts may use, by default: one app or a few per namespace.
pub const NAMESPACE_SPECS: usize = 10;

impl Plan {
    pub fn full(exe: PathBuf) -> Self {
        Self {
            spec_counts: vec![1, 100, 1000, 10000],
            modes: vec![Mode::None, Mode::Webhook, Mode::Policies],
            pods: 400,
            warmup: 40,
            connections: 4,
            rounds: 3,
            exe,
            namespace_specs: NAMESPACE_SPECS,
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
            namespace_specs: NAMESPACE_SPECS,
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
    /// The kube-apiserver's live heap at the end of the window, right after a collection
    /// (`go_memstats_heap_alloc_bytes`), MiB.
    pub apiserver_heap_mib: f64,
    pub first_failure: Option<String>,
}

/// Runs every cell on one current kube-apiserver.
pub fn run(plan: &Plan) -> anyhow::Result<Vec<Row>> {
    // /debug/pprof: its heap profile with gc=1 collects garbage before the heap is read, and
    // it shows where the API server's time goes.
    let mut options = gmsa_testkit::real_cluster::ApiServerOptions::default();
    options.extra_args.push("--profiling=true".into());
    let cluster =
        RealCluster::start_with(ServerVersion::Current, &options).map_err(|e| anyhow!("{e}"))?;
    eprintln!("kube-apiserver {} ready", cluster.version());
    set_up(&cluster, plan.namespace_specs)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let client = Client::new(&cluster)?;
    let mut rows = Vec::new();
    let mut created: Vec<String> = Vec::new();
    let mut cell_number = 0;
    for &specs in &plan.spec_counts {
        while created.len() < specs {
            created.push(create_spec(&cluster, created.len())?);
        }
        eprintln!("{specs} credential specs");
        for _ in 0..plan.rounds.max(1) {
            for &mode in &plan.modes {
                cell_number += 1;
                let on = Admission::enable(&cluster, plan, &runtime, mode)?;
                wait_until(&cluster, mode != Mode::None)?;
                let prefix = format!("c{cell_number}");
                let (pods, warmup) = (plan.pods, plan.warmup);
                let warm = runtime.block_on(client.create_pods(
                    &format!("{prefix}w"),
                    warmup,
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
                    runtime.block_on(client.create_pods(&prefix, pods, plan.connections))?;
                let apiserver = apiserver_cpu(&cluster)?.saturating_sub(apiserver_before);
                let webhook = on
                    .webhook_cpu()
                    .zip(webhook_before)
                    .map(|(after, before)| after.saturating_sub(before));
                let apiserver_heap_mib = apiserver_heap_mib(&cluster)?;
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
                    apiserver_heap_mib,
                    first_failure: outcome.first_failure,
                };
                eprintln!(
                    "{specs:>5} specs {:>8}: {:.0} pods/s, p50 {:.1} ms, p99 {:.1} ms, API server {:.2} ms CPU/pod, {:.0} MiB{}, {} failed",
                    row.mode,
                    row.pods_per_s,
                    row.p50_ms,
                    row.p99_ms,
                    row.apiserver_cpu_ms,
                    row.apiserver_heap_mib,
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
    // The round with the median API-server CPU per pod, per (specs, mode).
    Ok(rounds::median(
        rows,
        |r| (r.specs, r.mode),
        |r| r.apiserver_cpu_ms,
    ))
}

/// The namespace, its service account granted `use` of the first `namespace_specs` specs,
/// the CRDs, and what the webhook's user needs to read.
fn set_up(cluster: &RealCluster, namespace_specs: usize) -> anyhow::Result<()> {
    for crd in [
        gmsa_deploy::crd::custom_resource_definition(),
        gmsa_deploy::crd::namespace_contents_definition(&gmsa_deploy::Settings::default()),
    ] {
        cluster
            .apply_crd(&crd.to_string())
            .map_err(|e| anyhow!("{e}"))?;
    }
    let rbac = "rbac.authorization.k8s.io";
    let webhook = crate::real_server::webhook_user_grant();
    let usable: Vec<String> = (0..namespace_specs.max(1))
        .map(|i| format!("spec-{i}"))
        .collect();
    let objects = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
        webhook[0], webhook[1],
        {"apiVersion": format!("{rbac}/v1"), "kind": "ClusterRole", "metadata": {"name": "use-bench-specs"},
         "rules": [{"apiGroups": ["windows.k8s.io"], "resources": ["gmsacredentialspecs"],
                    "resourceNames": usable, "verbs": ["use"]}]},
        {"apiVersion": format!("{rbac}/v1"), "kind": "RoleBinding", "metadata": {"name": "use-bench-specs", "namespace": NS},
         "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": "use-bench-specs"},
         "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NS}]}
    ]});
    cluster
        .apply(&objects.to_string())
        .map_err(|e| anyhow!("{e}"))?;
    cluster
        .create_service_account(NS, SERVICE_ACCOUNT)
        .map_err(|e| anyhow!("{e}"))
}

/// Creates `spec-<i>`; returns its name.
fn create_spec(cluster: &RealCluster, i: usize) -> anyhow::Result<String> {
    let name = format!("spec-{i}");
    let spec = json!({
        "apiVersion": "windows.k8s.io/v1", "kind": "GMSACredentialSpec",
        "metadata": {"name": name},
        "credspec": {
            "ActiveDirectoryConfig": {"GroupManagedServiceAccounts": [{"Name": format!("WebApp{i}"), "Scope": "CONTOSO"}]},
            "CmsPlugins": ["ActiveDirectory"],
            "DomainJoinConfig": {"DnsName": "contoso.com", "DnsTreeName": "contoso.com",
                "Guid": "244818ae-87ac-4fcd-92ec-e79e5252348a", "MachineAccountName": format!("WebApp{i}"),
                "NetBiosName": "CONTOSO", "Sid": "S-1-5-21-2126449477-2524075714-3094792973"}}
    });
    let (status, body) = cluster
        .request(
            "POST",
            "/apis/windows.k8s.io/v1/gmsacredentialspecs",
            Some(&spec.to_string()),
        )
        .map_err(|e| anyhow!("{e}"))?;
    if status != 201 {
        bail!("creating {name}: HTTP {status}: {body}");
    }
    Ok(name)
}

/// Waits until GMSA admission is on (a dry-run pod naming a spec gets its contents, one
/// naming a missing spec is refused) or off (neither).
fn wait_until(cluster: &RealCluster, on: bool) -> anyhow::Result<()> {
    let began = Instant::now();
    let mut held = 0;
    loop {
        let (named, named_body) = dry_run(cluster, NAMED)?;
        // A mode slow to turn on shows why, once it has had time to.
        if named != 201 && began.elapsed() > Duration::from_secs(20) {
            eprintln!("{}", &named_body[..named_body.len().min(600)]);
        }
        let (missing, _) = dry_run(cluster, MISSING)?;
        let mutated = named == 201 && named_body.contains("\"gmsaCredentialSpec\":");
        let refused = missing != 201;
        // Held over three probes a second apart: the API server activates policies and
        // bindings one refresh at a time, and a parameter informer over many specs takes a
        // while to sync (until then the binding refuses every pod).
        if mutated == on && refused == on {
            held += 1;
            if held >= 3 {
                return Ok(());
            }
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        held = 0;
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

/// The API server's heap after a collection: resident memory keeps what Go has not yet
/// returned from earlier cells.
fn apiserver_heap_mib(cluster: &RealCluster) -> anyhow::Result<f64> {
    let (status, _) = cluster
        .request("GET", "/debug/pprof/heap?gc=1", None)
        .map_err(|e| anyhow!("{e}"))?;
    if status != 200 {
        bail!("/debug/pprof/heap: HTTP {status}");
    }
    let (status, metrics) = cluster
        .request("GET", "/metrics", None)
        .map_err(|e| anyhow!("{e}"))?;
    let bytes = metrics
        .lines()
        .find_map(|l| l.strip_prefix("go_memstats_heap_alloc_bytes "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    match (status, bytes) {
        (200, Some(bytes)) => Ok(bytes / 1024.0 / 1024.0),
        _ => bail!("/metrics: HTTP {status}, no go_memstats_heap_alloc_bytes"),
    }
}

fn apiserver_cpu(cluster: &RealCluster) -> anyhow::Result<Duration> {
    let stat = format!("/proc/{}/stat", cluster.apiserver_pid());
    machine::cpu_time(Path::new(&stat)).with_context(|| format!("cannot read {stat}"))
}
