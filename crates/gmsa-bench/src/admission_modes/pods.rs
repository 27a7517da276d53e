//! Pods to create, and the client that creates them over keep-alive connections.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use gmsa_testkit::real_cluster::RealCluster;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use serde_json::json;

use super::{NAMED, NS, SERVICE_ACCOUNT};
use crate::load;

/// A Windows pod of [`SERVICE_ACCOUNT`] naming `spec` at pod level.
pub(super) fn pod(name: &str, spec: &str) -> String {
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
pub(super) struct Client {
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    authorization: String,
}

/// What one batch of creates saw.
pub(super) struct Created {
    pub(super) created: u64,
    pub(super) failures: u64,
    pub(super) elapsed: Duration,
    /// Microseconds per successful create.
    pub(super) latency: Histogram<u64>,
    pub(super) first_failure: Option<String>,
}

impl Client {
    pub(super) fn new(cluster: &RealCluster) -> anyhow::Result<Self> {
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
    pub(super) async fn create_pods(
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
