//! The GMSA admission webhook server, and the keeper of published contents for policy mode.
//! `main.rs` parses the command line; everything else, including [`run`] and [`launch`], lives
//! here so tests can start the server in process. The modules the in-process tests build
//! servers from are public (`backend`, `config`, `http`, `keeper`, `metrics`), and `serve`,
//! through which the benchmarks' no-op floor answers on the same stack; the rest is private.
//! Certificates are the `gmsa-tls` crate's.

pub mod backend;
pub mod config;
pub mod http;
pub mod keeper;
pub mod metrics;
pub mod serve;

use gmsa_tls as tls;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use gmsa_core::Options;
use tokio::net::TcpListener;

use crate::backend::kubernetes::{KubeCluster, KubeSettings};
use crate::backend::Backend;
use crate::config::{CertSource, ClusterSource, Config, KeeperOnly, Launch};
use crate::keeper::Keeper;
use crate::metrics::Metrics;

/// A server that is bound and ready to serve.
pub struct Server {
    pub addr: SocketAddr,
    /// The plain-HTTP probe port, when `--probe-port` asked for one.
    pub probe_addr: Option<SocketAddr>,
    pub app: Arc<http::App>,
    listener: TcpListener,
    probe_listener: Option<TcpListener>,
    tls: Arc<rustls::ServerConfig>,
    config: Config,
}

impl Server {
    /// Loads certificates, connects the backend and binds the port. Errors here are the
    /// operator's to fix, and say how.
    pub async fn bind(config: Config) -> anyhow::Result<Self> {
        let (cert, key) = match &config.certs {
            CertSource::Files { cert, key } => (cert.clone(), key.clone()),
            CertSource::Dev { dir } => {
                let dev = tls::dev_certs(dir)?;
                tracing::info!(ca = %dev.ca.display(), "development certificates ready; clients must trust the CA");
                (dev.cert, dev.key)
            }
        };
        let store = Arc::new(tls::CertStore::load(cert, key)?);
        let client_ca = config
            .client_ca
            .as_deref()
            .map(tls::ClientCa::load)
            .transpose()?;
        if let Some(ca) = &client_ca {
            ca.spawn_reloader(config.cert_poll_interval);
        }
        let tls_config = tls::server_config_with(store.clone(), client_ca)?;
        tls::spawn_reloader(
            store.clone(),
            config.cert_poll_interval,
            std::future::pending(),
        );

        let metrics = Metrics::new(config::VERSION);
        {
            let store = store.clone();
            metrics.track_cert_reloads(move || store.reloads());
        }
        {
            let store = store.clone();
            metrics.track_certificate_expiry(move || {
                let left = store.not_after()? - time::OffsetDateTime::now_utc();
                Some(left.whole_seconds())
            });
        }
        let backend = match &config.cluster {
            ClusterSource::StateDir(dir) => {
                let state = backend::embedded::EmbeddedState::load(dir)?;
                state.spawn_reloader(std::time::Duration::from_secs(2));
                Backend::Embedded(state)
            }
            ClusterSource::Kubernetes {
                kubeconfig,
                qps,
                burst,
                allow_ttl,
                deny_ttl,
                caches,
                authorization,
                stale_after,
            } => {
                let settings = KubeSettings {
                    kubeconfig: kubeconfig.clone(),
                    qps: *qps,
                    burst: *burst,
                    allow_ttl: *allow_ttl,
                    deny_ttl: *deny_ttl,
                    caches: *caches,
                    authorization: *authorization,
                    stale_after: *stale_after,
                };
                Backend::Kubernetes(KubeCluster::connect(settings, metrics.clone()).await?)
            }
        };
        tracing::info!(backend = %backend.describe(), "cluster backend ready to sync");
        if let (Some(renewal), ClusterSource::Kubernetes { kubeconfig, .. }) =
            (&config.renewal, &config.cluster)
        {
            let client = backend::kubernetes::plain_client(kubeconfig.as_deref()).await?;
            let settings = gmsa_kube::renewal::RenewalSettings {
                namespace: renewal
                    .namespace
                    .clone()
                    .unwrap_or_else(|| client.default_namespace().to_string()),
                secret: renewal.secret.clone(),
                configuration: renewal.configuration.clone(),
                policy: renewal.policy,
                interval: renewal.interval,
            };
            gmsa_kube::renewal::Renewal::new(client, settings, store.clone(), metrics.clone())
                .spawn();
        }
        let options = Options {
            random_hostname: config.random_hostname,
        };
        let app = http::App::new(
            backend,
            metrics,
            options,
            http::BodyLimits {
                max_bytes: config.max_body_bytes,
                read_timeout: config.body_read_timeout,
            },
        );
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let probe_listener = match config.probe_listen {
            Some(probe) => Some(
                TcpListener::bind(probe)
                    .await
                    .with_context(|| format!("cannot listen on {probe} (--probe-port)"))?,
            ),
            None => None,
        };
        let probe_addr = probe_listener
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()?;
        Ok(Self {
            addr,
            probe_addr,
            app,
            listener,
            probe_listener,
            tls: tls_config,
            config,
        })
    }

    /// Serves until `shutdown` completes, then drains (see [`serve::serve`]).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tracing::info!(addr = %self.addr, "serving");
        // Probes keep answering through the drain (readiness 503) and stop with the server.
        let probes = self.probe_listener.map(|listener| {
            tracing::info!(addr = ?self.probe_addr, "serving probes and metrics over plain HTTP");
            let router = http::probe_router(self.app.clone());
            let header_timeout = self.config.header_read_timeout;
            tokio::spawn(serve::serve_plain(listener, router, header_timeout))
        });
        let router = http::router(self.app.clone());
        let options = serve::ServeOptions {
            header_read_timeout: self.config.header_read_timeout,
            shutdown_grace: self.config.shutdown_grace,
        };
        serve::serve(self.listener, self.tls, router, self.app, options, shutdown).await;
        if let Some(probes) = probes {
            probes.abort();
        }
    }
}

/// Binds and serves until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    Server::bind(config).await?.run(shutdown).await;
    Ok(())
}

/// Runs what the flags asked for until `shutdown` completes: the server, with the contents
/// keeper beside it (its writes counted in the server's metrics), or the keeper alone.
pub async fn launch(launch: Launch, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    match launch {
        Launch::Server { config, keeper } => {
            let server = Server::bind(*config).await?;
            let keeper = match keeper {
                Some(settings) => {
                    let keeper = Keeper::connect(&settings, server.app.metrics.clone()).await?;
                    Some(tokio::spawn(keeper.run()))
                }
                None => None,
            };
            server.run(shutdown).await;
            if let Some(keeper) = keeper {
                keeper.abort();
            }
            Ok(())
        }
        Launch::Keeper(only) => run_keeper(only, shutdown).await,
    }
}

/// `--no-admission`: the keeper, and the status endpoints over plain HTTP when a port is
/// given. Stops at once on `shutdown`: an interrupted write is harmless, as every write is
/// guarded by the resourceVersion it was decided from.
async fn run_keeper(only: KeeperOnly, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let keeper = Keeper::connect(
        &only.keeper,
        Metrics::for_role(config::VERSION, metrics::Role::Keeper),
    )
    .await?;
    let status = match only.listen {
        Some(listen) => {
            let listener = TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen} (--probe-port)"))?;
            tracing::info!(addr = %listener.local_addr()?, "serving probes and metrics over plain HTTP");
            let router = http::status_router(keeper.clone());
            Some(tokio::spawn(serve::serve_plain(
                listener,
                router,
                only.header_read_timeout,
            )))
        }
        None => None,
    };
    let task = tokio::spawn(keeper.run());
    shutdown.await;
    task.abort();
    if let Some(status) = status {
        status.abort();
    }
    tracing::info!("stopped");
    Ok(())
}
