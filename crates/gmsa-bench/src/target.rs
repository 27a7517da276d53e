//! The servers under test, all on the webhook's own HTTP/TLS stack (`serve::serve`): the
//! webhook on the Kubernetes backend with and without caches, on the embedded state, and a
//! no-op router that answers a fixed review (the cost floor of the stack itself).
//!
//! A target runs either in a child process (`gmsa-bench target ...`, the default: its memory
//! is its own, and the load generator and fake API server do not share its heap) or on its own
//! runtime in this process (the smoke test).

use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use axum::routing::{get, post};
use axum::Router;
use gmsa_tls as tls;
use gmsa_webhook::backend::embedded::EmbeddedState;
use gmsa_webhook::backend::Backend;
use gmsa_webhook::config::{CertSource, ClusterSource, Config, LogFormat};
use gmsa_webhook::http::App;
use gmsa_webhook::metrics::Metrics;
use gmsa_webhook::serve::{self, ServeOptions};
use gmsa_webhook::Server;
use tokio::net::TcpListener;

use crate::in_process::{InProcess, Serving};
use crate::world::NOOP_ANSWER;

/// Which server to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TargetKind {
    /// Kubernetes backend, watch caches and decision cache on (the default configuration).
    KubeCached,
    /// Kubernetes backend with every cache off: a GET and a review per reference.
    KubeUncached,
    /// The embedded state (`--state-dir`).
    Embedded,
    /// A router whose /mutate and /validate read the body and answer a constant review.
    Noop,
}

impl TargetKind {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::KubeCached => "kube-cached",
            TargetKind::KubeUncached => "kube-uncached",
            TargetKind::Embedded => "embedded",
            TargetKind::Noop => "noop",
        }
    }

    /// Whether admissions go through a fake API server.
    pub fn uses_api(self) -> bool {
        matches!(self, TargetKind::KubeCached | TargetKind::KubeUncached)
    }
}

/// Everything a target needs to start.
#[derive(Debug, Clone)]
pub struct TargetSpec {
    pub kind: TargetKind,
    /// Kubeconfig pointing at the fake API server (Kubernetes targets).
    pub kubeconfig: Option<PathBuf>,
    /// Manifests directory (embedded target).
    pub state_dir: Option<PathBuf>,
    /// Where the development CA and serving certificate are made (and reused).
    pub certs: PathBuf,
    /// Log level of the target, as `LOG_LEVEL` would set it; `off` for none. Production logs
    /// every admission at info.
    pub log_level: String,
}

impl TargetSpec {
    fn config(&self) -> anyhow::Result<Config> {
        let cluster = match self.kind {
            TargetKind::KubeCached | TargetKind::KubeUncached => ClusterSource::Kubernetes {
                kubeconfig: Some(
                    self.kubeconfig
                        .clone()
                        .context("a Kubernetes target needs --kubeconfig")?,
                ),
                // Off: measure the design (round trips), not the client-side throttle.
                qps: 0.0,
                burst: 10,
                // The defaults of `--allow-cache-ttl` and `--deny-cache-ttl`.
                allow_ttl: Duration::from_secs(10),
                deny_ttl: Duration::from_secs(2),
                caches: self.kind == TargetKind::KubeCached,
                // What ships: RBAC grants from the watch caches.
                authorization: gmsa_webhook::config::Authorization::default(),
                stale_after: Duration::from_secs(60),
            },
            TargetKind::Embedded => ClusterSource::StateDir(
                self.state_dir
                    .clone()
                    .context("the embedded target needs --state-dir")?,
            ),
            TargetKind::Noop => bail!("the no-op target has no configuration"),
        };
        Ok(Config {
            listen: "127.0.0.1:0".parse()?,
            certs: CertSource::Dev {
                dir: self.certs.clone(),
            },
            client_ca: None,
            probe_listen: None,
            cluster,
            random_hostname: false,
            shutdown_grace: Duration::ZERO,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            cert_poll_interval: Duration::from_secs(10),
            max_body_bytes: 3 * 1024 * 1024,
            log_level: tracing::Level::INFO,
            log_format: LogFormat::Text,
            renewal: None,
        })
    }

    /// The CA clients must trust.
    pub fn ca(&self) -> PathBuf {
        self.certs.join("ca.crt")
    }

    /// Arguments that make `gmsa-bench target` start this target.
    fn child_args(&self) -> Vec<String> {
        let mut args = vec![
            "target".to_string(),
            "--kind".into(),
            self.kind.name().into(),
            "--certs".into(),
            self.certs.display().to_string(),
            "--log-level".into(),
            self.log_level.clone(),
        ];
        if let Some(k) = &self.kubeconfig {
            args.extend(["--kubeconfig".into(), k.display().to_string()]);
        }
        if let Some(s) = &self.state_dir {
            args.extend(["--state-dir".into(), s.display().to_string()]);
        }
        args
    }
}

/// Binds the target and returns its address and the future that serves it until `shutdown`.
pub async fn start(
    spec: &TargetSpec,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    if spec.kind != TargetKind::Noop {
        let server = Server::bind(spec.config()?).await?;
        let addr = server.addr;
        return Ok((addr, tokio::spawn(server.run(shutdown))));
    }
    let dev = tls::dev_certs(&spec.certs)?;
    let store = Arc::new(tls::CertStore::load(dev.cert, dev.key)?);
    let tls_config = tls::server_config(store, None)?;
    // `serve` needs an App for its drain; an empty embedded state is the cheapest one.
    let empty = tempfile::tempdir()?;
    let backend = Backend::Embedded(EmbeddedState::load(empty.path())?);
    let app = App::new(
        backend,
        Metrics::new("bench"),
        gmsa_core::Options::default(),
        gmsa_webhook::http::BodyLimits::new(3 * 1024 * 1024),
    );
    let router = Router::new()
        .route(gmsa_core::names::paths::MUTATE, post(noop_answer))
        .route(gmsa_core::names::paths::VALIDATE, post(noop_answer))
        .route(
            gmsa_core::names::paths::READYZ,
            get(|| async { http::StatusCode::OK }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let options = ServeOptions {
        header_read_timeout: Duration::from_secs(10),
        shutdown_grace: Duration::ZERO,
    };
    let task = tokio::spawn(async move {
        serve::serve(listener, tls_config, router, app, options, shutdown).await;
        drop(empty);
    });
    Ok((addr, task))
}

/// The no-op handler: reads the body, as any handler must, and answers a fixed review.
async fn noop_answer(_body: bytes::Bytes) -> impl axum::response::IntoResponse {
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        NOOP_ANSWER,
    )
}

/// `gmsa-bench target ...`: serves until standard input closes, after printing
/// `listening <addr>` on standard output.
pub fn run_child(spec: TargetSpec) -> anyhow::Result<()> {
    if spec.log_level != "off" {
        let filter = tracing_subscriber::EnvFilter::builder().parse_lossy(format!(
            "{},hyper=warn,rustls=warn,kube=warn,tower=warn",
            spec.log_level
        ));
        // As the webhook's main.rs sets it up.
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .init();
    }
    // As the webhook's main: a multi-threaded runtime with one worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
            let _ = tx.send(());
        });
        let (addr, task) = start(&spec, async {
            let _ = rx.await;
        })
        .await?;
        println!("listening {addr}");
        use std::io::Write;
        std::io::stdout().flush()?;
        task.await?;
        Ok(())
    })
}

/// Where a target runs.
enum Host {
    Child(Child),
    InProcess(InProcess),
}

/// A started target.
pub struct Running {
    pub kind: TargetKind,
    pub addr: SocketAddr,
    pub ca: PathBuf,
    host: Host,
}

impl Running {
    /// Starts `spec` in a child process running `exe target ...`.
    pub fn child(exe: &Path, spec: &TargetSpec) -> anyhow::Result<Self> {
        Self::child_under(&[], exe, spec)
    }

    /// As [`Running::child`], the command prefixed by `wrapper` (e.g. valgrind and its options).
    pub fn child_under(wrapper: &[String], exe: &Path, spec: &TargetSpec) -> anyhow::Result<Self> {
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        let mut child = command
            .args(spec.child_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // GMSA_BENCH_TARGET_LOGS=1 shows the target's logs (and why it failed to start).
            .stderr(if std::env::var_os("GMSA_BENCH_TARGET_LOGS").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let stdout = child.stdout.take().context("child stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .ok_or_else(|| anyhow!("target {} did not start: {line:?}", spec.kind.name()))?
            .parse()?;
        Ok(Self {
            kind: spec.kind,
            addr,
            ca: spec.ca(),
            host: Host::Child(child),
        })
    }

    /// Starts `spec` on a runtime of its own (two workers) in this process.
    pub fn in_process(spec: &TargetSpec) -> anyhow::Result<Self> {
        let spec_for_thread = spec.clone();
        let (addr, server) = InProcess::start(move |shutdown| async move {
            let (addr, task) = start(&spec_for_thread, shutdown).await?;
            let serving: Serving = Box::pin(async move {
                let _ = task.await;
            });
            Ok((addr, serving))
        })?;
        Ok(Self {
            kind: spec.kind,
            addr,
            ca: spec.ca(),
            host: Host::InProcess(server),
        })
    }

    /// The target's process memory: (current, peak) resident set in KiB. For an in-process
    /// target this is the whole benchmark process.
    pub fn memory_kib(&self) -> Option<(u64, u64)> {
        let path = match &self.host {
            Host::Child(child) => format!("/proc/{}/status", child.id()),
            Host::InProcess(_) => "/proc/self/status".to_string(),
        };
        crate::machine::rss_kib(Path::new(&path))
    }

    /// CPU time the target's process has used (the whole process when in process).
    pub fn cpu_time(&self) -> Option<Duration> {
        let path = match &self.host {
            Host::Child(child) => format!("/proc/{}/stat", child.id()),
            Host::InProcess(_) => "/proc/self/stat".to_string(),
        };
        crate::machine::cpu_time(Path::new(&path))
    }

    /// The child's process id.
    pub fn pid(&self) -> Option<u32> {
        match &self.host {
            Host::Child(child) => Some(child.id()),
            Host::InProcess(_) => None,
        }
    }

    /// Whether memory figures are the target's alone.
    pub fn isolated(&self) -> bool {
        matches!(self.host, Host::Child(_))
    }

    /// Stops the target and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    /// Stops the target, waiting up to `limit` for it to exit by itself (under valgrind, exiting
    /// is what writes the counts).
    pub fn stop_within(mut self, limit: Duration) {
        if let Host::Child(child) = &mut self.host {
            drop(child.stdin.take());
            let deadline = std::time::Instant::now() + limit;
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.shutdown();
    }

    fn shutdown(&mut self) {
        match &mut self.host {
            Host::Child(child) => {
                drop(child.stdin.take());
                for _ in 0..100 {
                    if let Ok(Some(_)) = child.try_wait() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
            Host::InProcess(server) => server.stop(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown();
    }
}
