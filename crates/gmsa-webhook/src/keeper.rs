//! The contents keeper (`--keep-published-contents`) as this process runs it: the keeper
//! itself is [`gmsa_kube::keeper`]; here it gets the process's client (its calls counted), its
//! readiness and its metrics.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gmsa_kube::keeper::{KeeperReport, WriteOutcome};
use gmsa_kube::watch::Health;

use crate::backend::kubernetes::{build_client, KubeError, Readiness, Source};
use crate::metrics::Metrics;

/// Where the keeper reads and writes.
#[derive(Debug, Clone, PartialEq)]
pub struct KeeperSettings {
    /// `--kubeconfig`/`KUBECONFIG`; in-cluster config when absent.
    pub kubeconfig: Option<PathBuf>,
    /// A watch failing to resync this long makes the keeper not ready.
    pub stale_after: Duration,
}

/// One process's keeper: the keeper, and how far its watch follows the cluster.
pub struct Keeper {
    keeper: gmsa_kube::keeper::Keeper,
    report: Arc<Report>,
}

/// The process's readiness and metrics, as the keeper reports into them.
struct Report {
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
}

impl KeeperReport for Report {
    fn watched(&self, health: Health) {
        self.readiness.watched(Source::CredentialSpecs, health);
    }

    fn listed(&self) {
        self.readiness.mark(Source::CredentialSpecs);
    }

    fn written(&self, outcome: WriteOutcome) {
        self.metrics.published_contents_write(outcome.into());
    }
}

impl Keeper {
    /// Builds the client (counting its calls in `metrics`); does not contact the API server.
    pub async fn connect(
        settings: &KeeperSettings,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, KubeError> {
        let config = gmsa_kube::load_config(settings.kubeconfig.as_deref()).await?;
        tracing::info!(url = %config.cluster_url, "keeping GMSACredentialSpecs' published contents");
        let readiness = Arc::new(
            Readiness::new(&[Source::CredentialSpecs], settings.stale_after)
                .announcing("keeper ready: watching credential specs, publishing their contents"),
        );
        let client = build_client(config, metrics.clone(), readiness.clone())?;
        let report = Arc::new(Report { readiness, metrics });
        Ok(Arc::new(Self {
            keeper: gmsa_kube::keeper::Keeper::new(client, report.clone()),
            report,
        }))
    }

    /// Whether the watch has listed every spec and has not been failing for too long.
    pub fn is_ready(&self) -> bool {
        self.report.readiness.is_ready()
    }

    /// The metrics the keeper counts in.
    pub fn metrics(&self) -> &Metrics {
        &self.report.metrics
    }

    /// Keeps the annotations until the task is aborted.
    pub async fn run(self: Arc<Self>) {
        self.keeper.run().await;
    }
}
