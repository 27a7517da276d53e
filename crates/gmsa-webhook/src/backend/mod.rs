//! Where the webhook gets its facts: a Kubernetes API server (watch caches and access reviews)
//! or the embedded state (a directory of manifests). One decision code serves both.

pub mod embedded;
pub mod kubernetes;

use std::sync::Arc;

use gmsa_core::{Facts, Needs};

/// The cluster the webhook answers for.
pub enum Backend {
    Embedded(Arc<embedded::EmbeddedState>),
    Kubernetes(Arc<kubernetes::KubeCluster>),
}

impl Backend {
    /// Gathers what a review needs, API requests starting no later than `deadline`. Never
    /// fails: lookup errors become facts that deny.
    pub async fn gather(&self, needs: &Needs, deadline: tokio::time::Instant) -> Facts {
        if needs.is_empty() {
            return Facts::default();
        }
        match self {
            Backend::Embedded(state) => state.gather(needs),
            Backend::Kubernetes(cluster) => cluster.gather(needs, deadline).await,
        }
    }

    /// Whether the caches have synced, so answers reflect the cluster.
    pub fn is_ready(&self) -> bool {
        match self {
            Backend::Embedded(_) => true,
            Backend::Kubernetes(cluster) => cluster.is_ready(),
        }
    }

    /// A short name for logs.
    pub fn describe(&self) -> String {
        match self {
            Backend::Embedded(state) => format!("embedded state from {}", state.dir().display()),
            Backend::Kubernetes(_) => "Kubernetes API".to_string(),
        }
    }
}
