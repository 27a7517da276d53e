//! The benchmark suite: every target, hook, reference count and concurrency, then the large
//! cluster, each bounded in time and count, all on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use gmsa_core::names::paths;
use gmsa_core::Hook;
use serde::Serialize;

use crate::cluster::Cluster;
use crate::load::{self, Cell, Outcome};
use crate::target::{Running, TargetKind, TargetSpec};
use crate::world::{self, ALLOWED};

/// Where targets run.
#[derive(Debug, Clone)]
pub enum Placement {
    /// `exe target ...` in a child process: memory figures are the target's own.
    Child(PathBuf),
    /// On a runtime of its own in this process (memory figures are the whole process's).
    InProcess,
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct Plan {
    pub targets: Vec<TargetKind>,
    pub hooks: Vec<Hook>,
    pub refs: Vec<usize>,
    pub concurrencies: Vec<usize>,
    pub warmup: Duration,
    pub duration: Duration,
    /// Each cell is measured this many times (interleaved across targets); the median counts.
    pub rounds: usize,
    pub max_requests_per_connection: u64,
    /// Latency the fake API server adds to every request.
    pub api_latency: Duration,
    /// Credential specs and unrelated RBAC bindings of the ordinary cluster.
    pub small: (usize, usize),
    /// The large cluster, if measured.
    pub scale: Option<(usize, usize)>,
    pub placement: Placement,
    pub log_level: String,
}

impl Plan {
    /// The full matrix: three interleaved rounds of 2 s per cell after 0.5 s of warm-up.
    pub fn full(placement: Placement) -> Self {
        Self {
            targets: vec![
                TargetKind::Noop,
                TargetKind::KubeCached,
                TargetKind::KubeUncached,
                TargetKind::Embedded,
            ],
            hooks: vec![Hook::Mutate, Hook::Validate],
            refs: vec![1, 10],
            concurrencies: vec![1, 16, 64],
            warmup: Duration::from_millis(500),
            duration: Duration::from_secs(2),
            rounds: 3,
            max_requests_per_connection: 2_000_000,
            api_latency: Duration::from_millis(2),
            small: (10, 10),
            scale: Some((10_000, 1_000)),
            placement,
            log_level: "info".into(),
        }
    }

    /// The same matrix in well under a minute: short cells, the large cluster included.
    pub fn quick(placement: Placement) -> Self {
        Self {
            warmup: Duration::from_millis(150),
            duration: Duration::from_millis(500),
            rounds: 1,
            ..Self::full(placement)
        }
    }

    /// A tiny run for the smoke test: the headline cells only.
    pub fn smoke(placement: Placement) -> Self {
        Self {
            targets: vec![TargetKind::Noop, TargetKind::KubeCached],
            refs: vec![1],
            concurrencies: vec![16],
            warmup: Duration::from_millis(100),
            duration: Duration::from_millis(300),
            rounds: 1,
            max_requests_per_connection: 100_000,
            scale: None,
            log_level: "off".into(),
            ..Self::full(placement)
        }
    }
}

/// One measured cell.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub target: &'static str,
    pub hook: &'static str,
    pub refs: usize,
    pub concurrency: usize,
    pub requests: u64,
    pub failures: u64,
    pub seconds: f64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Fake API server requests during the window / admissions (Kubernetes targets).
    pub api_calls_per_admission: Option<f64>,
    /// CPU time of the target process per request, microseconds (child processes only): a
    /// measure of cost that background load on the machine does not skew.
    pub server_cpu_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_failure: Option<String>,
}

/// Memory and start-up of one target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetSummary {
    pub target: &'static str,
    /// Start until `/readyz` answered 200 (caches synced), milliseconds.
    pub ready_ms: f64,
    pub rss_mib: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    /// Whether memory is the target's own process (true) or the whole benchmark's.
    pub isolated: bool,
}

/// The large-cluster measurements.
#[derive(Debug, Clone, Serialize)]
pub struct Scale {
    pub credential_specs: usize,
    pub rbac_bindings: usize,
    pub summaries: Vec<TargetSummary>,
    pub rows: Vec<Row>,
}

/// Everything measured.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub rows: Vec<Row>,
    pub targets: Vec<TargetSummary>,
    pub scale: Option<Scale>,
    pub api_latency_ms: f64,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub rounds: usize,
    pub log_level: String,
    pub total_s: f64,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Runs the plan. Progress goes to standard error.
pub async fn run(plan: &Plan) -> anyhow::Result<Results> {
    let started = Instant::now();
    let dir = tempfile::tempdir()?;
    let certs = dir.path().join("certs");
    // Made once here; every target reuses them.
    gmsa_tls::dev_certs(&certs)?;
    let tls = load::client_tls(&certs.join("ca.crt"))?;

    let (specs, bindings) = plan.small;
    let cluster = Cluster::start(dir.path(), "small", specs, bindings).await?;
    cluster.fake.set_latency(plan.api_latency);
    let (targets, rows) = measure(
        plan,
        &plan.targets,
        &cluster,
        &certs,
        &tls,
        &plan.refs,
        &plan.concurrencies,
    )
    .await?;
    drop(cluster);

    let scale = match plan.scale {
        Some((specs, bindings)) => {
            eprintln!("scale: {specs} credential specs, {bindings} RBAC bindings");
            let cluster = Cluster::start(dir.path(), "large", specs, bindings).await?;
            cluster.fake.set_latency(plan.api_latency);
            let kinds: Vec<TargetKind> = [TargetKind::KubeCached, TargetKind::Embedded]
                .into_iter()
                .filter(|k| plan.targets.contains(k))
                .collect();
            let (summaries, rows) =
                measure(plan, &kinds, &cluster, &certs, &tls, &[1], &[16]).await?;
            Some(Scale {
                credential_specs: specs,
                rbac_bindings: bindings,
                summaries,
                rows,
            })
        }
        None => None,
    };

    Ok(Results {
        rows,
        targets,
        scale,
        api_latency_ms: plan.api_latency.as_secs_f64() * 1000.0,
        warmup_s: plan.warmup.as_secs_f64(),
        duration_s: plan.duration.as_secs_f64(),
        rounds: plan.rounds,
        log_level: plan.log_level.clone(),
        total_s: started.elapsed().as_secs_f64(),
    })
}

/// Starts every target of `kinds` against `cluster`, then measures each cell on each target
/// in turn, `plan.rounds` times over: targets that are compared see the same background load,
/// and each cell reports its median round (by throughput).
async fn measure(
    plan: &Plan,
    kinds: &[TargetKind],
    cluster: &Cluster,
    certs: &Path,
    tls: &Arc<rustls::ClientConfig>,
    refs: &[usize],
    concurrencies: &[usize],
) -> anyhow::Result<(Vec<TargetSummary>, Vec<Row>)> {
    let mut running = Vec::new();
    let mut summaries = Vec::new();
    for &kind in kinds {
        let spec = TargetSpec {
            kind,
            kubeconfig: Some(cluster.kubeconfig.clone()),
            state_dir: Some(cluster.state_dir.clone()),
            certs: certs.to_path_buf(),
            log_level: plan.log_level.clone(),
        };
        let launched = Instant::now();
        let target = match &plan.placement {
            Placement::Child(exe) => Running::child(exe, &spec)?,
            Placement::InProcess => Running::in_process(&spec)?,
        };
        load::wait_ready(target.addr, tls, Duration::from_secs(120))
            .await
            .with_context(|| format!("target {}", kind.name()))?;
        let ready_ms = launched.elapsed().as_secs_f64() * 1000.0;
        eprintln!(
            "{}: ready after {ready_ms:.0} ms{}",
            kind.name(),
            target
                .pid()
                .map_or(String::new(), |p| format!(" (pid {p})"))
        );
        summaries.push(TargetSummary {
            target: kind.name(),
            ready_ms,
            rss_mib: target.memory_kib().map(|(rss, _)| mib(rss)),
            peak_rss_mib: None,
            isolated: target.isolated(),
        });
        running.push(target);
    }

    let mut rows = Vec::new();
    for &hook in &plan.hooks {
        for &r in refs {
            let body = Bytes::from(world::review(
                hook,
                r,
                "705ab4f5-6393-11e8-b7cc-42010a800002",
            ));
            for &connections in concurrencies {
                let mut rounds: Vec<Vec<Row>> = vec![Vec::new(); running.len()];
                for round in 0..plan.rounds.max(1) {
                    for (i, target) in running.iter().enumerate() {
                        let row = measure_cell(
                            plan,
                            target,
                            cluster,
                            tls,
                            hook,
                            r,
                            connections,
                            body.clone(),
                        )
                        .await?;
                        if plan.rounds > 1 {
                            eprintln!("  round {}: {:>8.0} req/s", round + 1, row.rps);
                        }
                        rounds[i].push(row);
                    }
                }
                for mut measured in rounds {
                    measured.sort_by(|a, b| a.rps.total_cmp(&b.rps));
                    let median = measured.swap_remove(measured.len() / 2);
                    log_row(&median);
                    rows.push(median);
                }
            }
        }
    }
    for (summary, target) in summaries.iter_mut().zip(&running) {
        summary.peak_rss_mib = target.memory_kib().map(|(_, peak)| mib(peak));
    }
    for target in running {
        target.stop();
    }
    Ok((summaries, rows))
}

#[allow(clippy::too_many_arguments)]
async fn measure_cell(
    plan: &Plan,
    target: &Running,
    cluster: &Cluster,
    tls: &Arc<rustls::ClientConfig>,
    hook: Hook,
    refs: usize,
    connections: usize,
    body: Bytes,
) -> anyhow::Result<Row> {
    let cell = Cell {
        addr: target.addr,
        tls: tls.clone(),
        path: match hook {
            Hook::Mutate => paths::MUTATE,
            Hook::Validate => paths::VALIDATE,
        },
        bodies: Arc::from(vec![body]),
        connections,
        warmup: plan.warmup,
        duration: plan.duration,
        expect: ALLOWED,
        max_requests_per_connection: plan.max_requests_per_connection,
    };
    let calls = Mutex::new((0u64, 0u64));
    let cpu = Mutex::new((None, None));
    let outcome = load::run(
        cell,
        || {
            if let Ok(mut c) = calls.lock() {
                c.0 = cluster.api_requests();
            }
            if let Ok(mut c) = cpu.lock() {
                c.0 = target.cpu_time();
            }
        },
        || {
            if let Ok(mut c) = calls.lock() {
                c.1 = cluster.api_requests();
            }
            if let Ok(mut c) = cpu.lock() {
                c.1 = target.cpu_time();
            }
        },
    )
    .await?;
    let (before, after) = calls.lock().map(|c| *c).unwrap_or_default();
    let mut row = row(
        target.kind,
        hook,
        refs,
        connections,
        &outcome,
        before,
        after,
    );
    if let Ok((Some(start), Some(end))) = cpu.lock().map(|c| *c) {
        if target.isolated() {
            let used = end.saturating_sub(start).as_secs_f64();
            row.server_cpu_us = Some(used * 1e6 / outcome.requests.max(1) as f64);
        }
    }
    Ok(row)
}

fn log_row(row: &Row) {
    eprintln!(
        "{:>13} {:>8} refs={:<2} conc={:<2} {:>8.0} req/s  p50 {:>6.3} ms  p99 {:>6.3} ms  p99.9 {:>6.3} ms  cpu/req {} µs  api/adm {}  failures {}",
        row.target,
        row.hook,
        row.refs,
        row.concurrency,
        row.rps,
        row.p50_ms,
        row.p99_ms,
        row.p999_ms,
        row.server_cpu_us.map_or("-".to_string(), |v| format!("{v:.1}")),
        row.api_calls_per_admission
            .map_or("-".to_string(), |v| format!("{v:.4}")),
        row.failures
    );
}

fn row(
    kind: TargetKind,
    hook: Hook,
    refs: usize,
    concurrency: usize,
    outcome: &Outcome,
    api_before: u64,
    api_after: u64,
) -> Row {
    Row {
        target: kind.name(),
        hook: hook.as_str(),
        refs,
        concurrency,
        requests: outcome.requests,
        failures: outcome.failures,
        seconds: outcome.elapsed.as_secs_f64(),
        rps: outcome.rps(),
        p50_ms: outcome.percentile_ms(0.5),
        p99_ms: outcome.percentile_ms(0.99),
        p999_ms: outcome.percentile_ms(0.999),
        max_ms: outcome.latency.max() as f64 / 1000.0,
        api_calls_per_admission: kind
            .uses_api()
            .then(|| api_after.saturating_sub(api_before) as f64 / outcome.requests.max(1) as f64),
        first_failure: outcome.first_failure.clone(),
        server_cpu_us: None,
    }
}
