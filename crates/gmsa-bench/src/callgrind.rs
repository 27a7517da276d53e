//! Instruction counts under valgrind's callgrind, which do not move with other work on the
//! machine: the pure decision path (`gmsa-bench decide`, see `decision_path`) and whole target
//! processes per request. Each runs twice with different N; the difference divided by the
//! difference in N is the cost of one admission, with start-up cancelled out.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use gmsa_core::names::paths;
use gmsa_core::Hook;
use serde::Serialize;

use crate::cluster::Cluster;
use crate::load;
use crate::target::{Running, TargetKind, TargetSpec};
use crate::world::{self, ALLOWED};

/// Everything counted with callgrind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// The pure decision path.
    pub decide: Vec<InstructionCount>,
    /// The whole server process, per request.
    pub server: Vec<ServerInstructions>,
}

/// Instructions per admission, measured with callgrind over `n1` and `n2` iterations.
#[derive(Debug, Clone, Serialize)]
pub struct InstructionCount {
    pub hook: &'static str,
    pub refs: usize,
    pub n1: u64,
    pub n2: u64,
    pub instructions_n1: u64,
    pub instructions_n2: u64,
    pub per_admission: u64,
}

/// Runs `exe decide` under callgrind for `n1` and `n2` iterations.
pub fn decision_path(
    exe: &Path,
    hook: Hook,
    refs: usize,
    n1: u64,
    n2: u64,
) -> anyhow::Result<InstructionCount> {
    let dir = tempfile::tempdir()?;
    let mut counts = [0u64; 2];
    for (slot, n) in counts.iter_mut().zip([n1, n2]) {
        let out = dir.path().join(format!("callgrind.{n}.out"));
        let status = Command::new("valgrind")
            .arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg(exe)
            .args(["decide", "--iterations", &n.to_string()])
            .args(["--hook", hook.as_str(), "--refs", &refs.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .context("cannot run valgrind (apt-get install valgrind)")?;
        if !status.success() {
            bail!("valgrind failed: {status}");
        }
        *slot = total_instructions(&std::fs::read_to_string(&out)?)
            .context("no instruction total in the callgrind output")?;
    }
    Ok(InstructionCount {
        hook: hook.as_str(),
        refs,
        n1,
        n2,
        instructions_n1: counts[0],
        instructions_n2: counts[1],
        per_admission: counts[1].saturating_sub(counts[0]) / (n2 - n1).max(1),
    })
}

/// Instructions the target process executes per request, over the whole stack (TLS, HTTP,
/// routing, logging, deciding), counted by callgrind: the target serves `n1` and then, in a
/// second run, `n2` requests on one keep-alive connection; (I2 − I1) / (n2 − n1) cancels start-up,
/// the handshake and the cache sync. Deterministic, so it compares targets on a busy machine.
#[derive(Debug, Clone, Serialize)]
pub struct ServerInstructions {
    pub target: &'static str,
    pub hook: &'static str,
    pub refs: usize,
    pub n1: u64,
    pub n2: u64,
    pub per_request: u64,
}

/// Measures [`ServerInstructions`] for each of `kinds` and both hooks, one reference.
pub async fn server_instructions(
    exe: &Path,
    kinds: &[TargetKind],
    n1: u64,
    n2: u64,
    log_level: &str,
) -> anyhow::Result<Vec<ServerInstructions>> {
    let dir = tempfile::tempdir()?;
    let certs = dir.path().join("certs");
    gmsa_tls::dev_certs(&certs)?;
    let tls = load::client_tls(&certs.join("ca.crt"))?;
    let cluster = Cluster::start(dir.path(), "small", 10, 10).await?;
    let mut out = Vec::new();
    for &kind in kinds {
        for hook in [Hook::Mutate, Hook::Validate] {
            let body = Bytes::from(world::review(
                hook,
                1,
                "705ab4f5-6393-11e8-b7cc-42010a800002",
            ));
            let mut totals = [0u64; 2];
            for (slot, n) in totals.iter_mut().zip([n1, n2]) {
                let file =
                    dir.path()
                        .join(format!("{}-{}-{n}.callgrind", kind.name(), hook.as_str()));
                let wrapper = vec![
                    "valgrind".to_string(),
                    "--tool=callgrind".to_string(),
                    format!("--callgrind-out-file={}", file.display()),
                ];
                let spec = TargetSpec {
                    kind,
                    kubeconfig: Some(cluster.kubeconfig.clone()),
                    state_dir: Some(cluster.state_dir.clone()),
                    certs: certs.clone(),
                    log_level: log_level.to_string(),
                };
                let target = Running::child_under(&wrapper, exe, &spec)?;
                serve_sequentially(&target, &tls, hook, &body, n).await?;
                target.stop_within(Duration::from_secs(60));
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("no callgrind output in {}", file.display()))?;
                *slot = total_instructions(&text)
                    .context("no instruction total in the callgrind output")?;
            }
            let per_request = totals[1].saturating_sub(totals[0]) / (n2 - n1).max(1);
            eprintln!(
                "callgrind: {} {}: {per_request} instructions per request (whole server)",
                kind.name(),
                hook.as_str()
            );
            out.push(ServerInstructions {
                target: kind.name(),
                hook: hook.as_str(),
                refs: 1,
                n1,
                n2,
                per_request,
            });
        }
    }
    Ok(out)
}

/// Waits for readiness and sends `n` checked reviews, all on one connection.
async fn serve_sequentially(
    target: &Running,
    tls: &Arc<rustls::ClientConfig>,
    hook: Hook,
    body: &Bytes,
    n: u64,
) -> anyhow::Result<()> {
    let mut sender = load::connect(target.addr, tls).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        sender.ready().await?;
        let request = http::Request::get(paths::READYZ)
            .header(http::header::HOST, "localhost")
            .body(http_body_util::Full::new(Bytes::new()))?;
        let response = sender.send_request(request).await?;
        if response.status() == http::StatusCode::OK {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} never became ready",
            target.kind.name()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let path = match hook {
        Hook::Mutate => paths::MUTATE,
        Hook::Validate => paths::VALIDATE,
    };
    for _ in 0..n {
        sender.ready().await?;
        let request = http::Request::post(path)
            .header(http::header::HOST, "localhost")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(body.clone()))?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let answer = http_body_util::BodyExt::collect(response.into_body())
            .await?
            .to_bytes();
        anyhow::ensure!(
            status == http::StatusCode::OK && answer.windows(ALLOWED.len()).any(|w| w == ALLOWED),
            "unexpected answer: {status}"
        );
    }
    Ok(())
}

/// The `summary:` (or `totals:`) line of a callgrind output file: instructions executed.
fn total_instructions(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_callgrind_total() {
        assert_eq!(
            total_instructions("events: Ir\nsummary: 12345\n"),
            Some(12345)
        );
        assert_eq!(total_instructions("totals: 77\n"), Some(77));
        assert_eq!(total_instructions("nothing"), None);
    }
}
