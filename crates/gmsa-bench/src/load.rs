//! The load generator: N keep-alive HTTPS/1.1 connections (as the API server calls webhooks),
//! each sending its requests one after another, every answer checked.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::sync::Barrier;
use tokio_rustls::TlsConnector;

/// A TLS client configuration trusting only the CA in `ca`, speaking HTTP/1.1.
pub fn client_tls(ca: &Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).with_context(|| ca.display().to_string())? {
        roots.add(cert?)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A keep-alive HTTP/1.1 connection to send requests on.
pub type Sender = http1::SendRequest<Full<Bytes>>;

/// Opens one keep-alive connection.
pub async fn connect(addr: SocketAddr, tls: &Arc<rustls::ClientConfig>) -> anyhow::Result<Sender> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let stream = TlsConnector::from(tls.clone())
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// GET `path` on a new connection; the status code.
pub async fn get_status(
    addr: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    path: &str,
) -> anyhow::Result<u16> {
    Ok(get(addr, tls, path).await?.0)
}

/// GET `path` on a new connection; the body as text, when the answer is 200.
pub async fn get_text(
    addr: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    path: &str,
) -> anyhow::Result<String> {
    match get(addr, tls, path).await? {
        (200, body) => Ok(String::from_utf8_lossy(&body).into_owned()),
        (status, _) => Err(anyhow!("GET {path}: HTTP {status}")),
    }
}

async fn get(
    addr: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    path: &str,
) -> anyhow::Result<(u16, Bytes)> {
    let tcp = TcpStream::connect(addr).await?;
    let stream = TlsConnector::from(tls.clone())
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let request = http::Request::get(path)
        .header(http::header::HOST, "localhost")
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// Polls `/readyz` until it answers 200; how long that took.
pub async fn wait_ready(
    addr: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Ok(200) = get_status(addr, tls, "/readyz").await {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(anyhow!("{addr} not ready within {limit:?}"))
}

/// One measurement: where to send what, how hard and how long.
#[derive(Clone)]
pub struct Cell {
    pub addr: SocketAddr,
    pub tls: Arc<rustls::ClientConfig>,
    pub path: &'static str,
    /// The request bodies, taken in turn across all connections (one body: always that one).
    pub bodies: Arc<[Bytes]>,
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Bytes every successful answer contains.
    pub expect: &'static [u8],
    /// Hard cap on requests per connection (warm-up, successes and failures alike), so a cell
    /// is bounded in count as well as time.
    pub max_requests_per_connection: u64,
}

/// What a measurement saw.
pub struct Outcome {
    /// Requests started during the measured window (all completed before it was closed).
    pub requests: u64,
    pub failures: u64,
    pub elapsed: Duration,
    /// Latency of measured requests, microseconds.
    pub latency: Histogram<u64>,
    /// The first failure, for the report.
    pub first_failure: Option<String>,
}

impl Outcome {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn percentile_ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }
}

/// Runs a cell. `between` is called once every connection is open and warmed up and idle,
/// right before the measured window opens, and `after` once it has closed and every request
/// has completed: the fake API server's counters are read there, so API calls are attributed
/// exactly to the measured admissions.
pub async fn run(
    cell: Cell,
    between: impl FnOnce(),
    after: impl FnOnce(),
) -> anyhow::Result<Outcome> {
    let n = cell.connections;
    let barrier = Arc::new(Barrier::new(n + 1));
    let failures = Arc::new(AtomicU64::new(0));
    let first_failure = Arc::new(std::sync::Mutex::new(None::<String>));
    let mut tasks = Vec::with_capacity(n);
    for connection in 0..n {
        let cell = cell.clone();
        let barrier = barrier.clone();
        let failures = failures.clone();
        let first_failure = first_failure.clone();
        tasks.push(tokio::spawn(async move {
            let mut latency = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)
                .map_err(|e| anyhow!("histogram: {e}"))?;
            let connected = connect(cell.addr, &cell.tls).await;
            // Every connection reaches every barrier, even a failed one, or the cell would hang.
            barrier.wait().await;
            let mut sender = connected.ok();
            let note = |what: String| {
                failures.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = first_failure.lock() {
                    first.get_or_insert(what);
                }
            };
            let mut count = 0u64;
            let mut sent = 0usize;
            for measured in [false, true] {
                let window = if measured { cell.duration } else { cell.warmup };
                let end = Instant::now() + window;
                // Failed requests count too: a burst asks each key once, and a refusal is final.
                while Instant::now() < end && (sent as u64) < cell.max_requests_per_connection {
                    let Some(s) = sender.as_mut() else {
                        note("no connection".into());
                        break;
                    };
                    let body = &cell.bodies[(connection + sent * n) % cell.bodies.len().max(1)];
                    sent += 1;
                    let started = Instant::now();
                    match send(s, &cell, body).await {
                        Ok(()) => {
                            if measured {
                                let us = started.elapsed().as_micros().max(1) as u64;
                                let _ = latency.record(us.min(120_000_000));
                                count += 1;
                            }
                        }
                        Err(e) => {
                            if measured {
                                note(e.to_string());
                            }
                            // A broken connection is replaced.
                            sender = connect(cell.addr, &cell.tls).await.ok();
                        }
                    }
                }
                if !measured {
                    barrier.wait().await;
                    barrier.wait().await;
                }
            }
            Ok::<_, anyhow::Error>((count, latency))
        }));
    }
    barrier.wait().await;
    // Warm-up runs; then every connection waits, idle, at the second barrier.
    barrier.wait().await;
    between();
    let opened = Instant::now();
    barrier.wait().await;
    let mut latency = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)
        .map_err(|e| anyhow!("histogram: {e}"))?;
    let mut requests = 0;
    for task in tasks {
        let (count, hist) = task.await??;
        requests += count;
        latency.add(&hist).map_err(|e| anyhow!("histogram: {e}"))?;
    }
    let elapsed = opened.elapsed();
    after();
    let first_failure = first_failure.lock().ok().and_then(|f| f.clone());
    Ok(Outcome {
        requests,
        failures: failures.load(Ordering::Relaxed),
        elapsed,
        latency,
        first_failure,
    })
}

async fn send(sender: &mut Sender, cell: &Cell, body: &Bytes) -> anyhow::Result<()> {
    sender.ready().await?;
    let request = http::Request::post(cell.path)
        .header(http::header::HOST, "localhost")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body.clone()))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if status != http::StatusCode::OK {
        return Err(anyhow!("HTTP {status}"));
    }
    if !contains(&body, cell.expect) {
        return Err(anyhow!(
            "unexpected answer: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ));
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}
