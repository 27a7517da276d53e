//! The contents keeper (`--keep-published-contents`) as this process runs it: the keeper
//! itself is [`gmsa_kube::contents`]; here it gets the process's client (its calls counted),
//! its readiness and its metrics.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gmsa_core::contents::Step;
use gmsa_kube::contents::{describe_step, ContentsError, ContentsKeeper};
use gmsa_kube::watch::Health;

use crate::backend::kubernetes::{build_client, KubeError, Readiness, Source};
use crate::metrics::{Metrics, PublishOutcome};

/// Where the keeper reads and writes.
#[derive(Debug, Clone, PartialEq)]
pub struct KeeperSettings {
    /// `--kubeconfig`/`KUBECONFIG`; in-cluster config when absent.
    pub kubeconfig: Option<PathBuf>,
    /// Passes failing this long make the keeper not ready.
    pub stale_after: Duration,
    /// The install whose objects it keeps (`--install-name`).
    pub install: String,
    /// Its namespace (`--install-namespace`), whose contents object is always written.
    pub install_namespace: String,
}

/// One process's keeper, with how its passes fare.
pub struct Keeper {
    keeper: ContentsKeeper,
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
}

impl Keeper {
    /// Builds the client (counting its calls in `metrics`); does not contact the API server.
    pub async fn connect(
        settings: &KeeperSettings,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, KubeError> {
        let config = gmsa_kube::load_config(settings.kubeconfig.as_deref()).await?;
        tracing::info!(url = %config.cluster_url, install = %settings.install,
            "keeping policy mode's published contents");
        let readiness = Arc::new(
            Readiness::new(&[Source::CredentialSpecs], settings.stale_after)
                .announcing("keeper ready: every namespace's published contents are current"),
        );
        let client = build_client(config, metrics.clone(), readiness.clone())?;
        Ok(Arc::new(Self {
            keeper: ContentsKeeper::new(client, &settings.install, &settings.install_namespace),
            readiness,
            metrics,
        }))
    }

    /// Whether a pass has brought the contents up to date, and passes have not been failing
    /// for too long.
    pub fn is_ready(&self) -> bool {
        self.readiness.is_ready()
    }

    /// The metrics the keeper counts in.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Keeps the contents until the task is aborted.
    pub async fn run(self: Arc<Self>) {
        self.keeper.run(|outcome| self.on_pass(outcome)).await;
        tracing::error!("the keeper's watches ended; published contents are no longer kept");
    }

    fn on_pass(&self, outcome: &Result<Vec<Step>, ContentsError>) {
        match outcome {
            Ok(steps) => {
                for step in steps {
                    tracing::info!("{}", describe_step(step));
                    let counted = match step {
                        Step::Delete(_) | Step::Release(_) => PublishOutcome::Withdrawn,
                        _ => PublishOutcome::Published,
                    };
                    self.metrics.published_contents_write(counted);
                }
                self.readiness
                    .watched(Source::CredentialSpecs, Health::Following);
                self.readiness.mark(Source::CredentialSpecs);
            }
            Err(ContentsError::KeptChanging(..)) => {
                tracing::debug!("the cluster changed during the pass; another follows");
            }
            Err(e) => {
                let forbidden = e.to_string().contains("forbidden");
                self.metrics.published_contents_write(if forbidden {
                    PublishOutcome::Forbidden
                } else {
                    PublishOutcome::Failed
                });
                self.readiness
                    .watched(Source::CredentialSpecs, Health::Failing);
                tracing::warn!(error = %e, "cannot bring the published contents up to date; retrying with backoff");
            }
        }
    }
}
