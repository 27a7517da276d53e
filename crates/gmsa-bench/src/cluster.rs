//! The cluster the targets run against: a loopback fake API server holding the benchmark's
//! objects, its kubeconfig, and the same objects as a state directory for the embedded target.

use std::path::{Path, PathBuf};

use gmsa_testkit::FakeApiServer;

use crate::world;

/// A cluster to measure against: the fake API server (with its kubeconfig) and the same
/// objects as a state directory.
pub struct Cluster {
    pub fake: FakeApiServer,
    pub kubeconfig: PathBuf,
    pub state_dir: PathBuf,
}

impl Cluster {
    /// Starts the fake API server with `specs` credential specs and `bindings` unrelated RBAC
    /// bindings, and writes the kubeconfig and the state directory under `dir`.
    pub async fn start(
        dir: &Path,
        name: &str,
        specs: usize,
        bindings: usize,
    ) -> anyhow::Result<Self> {
        let fake = FakeApiServer::try_start_with(Default::default()).await?;
        fake.apply_all(world::objects(specs, bindings))?;
        let kubeconfig = dir.join(format!("{name}.kubeconfig"));
        std::fs::write(&kubeconfig, kubeconfig_text(&fake.url()))?;
        let state_dir = dir.join(format!("{name}-state"));
        std::fs::create_dir_all(&state_dir)?;
        for (i, text) in world::state_files(specs, bindings, 1000).iter().enumerate() {
            std::fs::write(state_dir.join(format!("world-{i:03}.yaml")), text)?;
        }
        Ok(Self {
            fake,
            kubeconfig,
            state_dir,
        })
    }

    /// Requests the fake API server has answered so far.
    pub fn api_requests(&self) -> u64 {
        self.fake.counts().values().sum()
    }
}

/// A kubeconfig for a plain-HTTP loopback API server without credentials.
pub fn kubeconfig_text(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\n\
         users:\n- name: webhook\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: webhook\n\
         current-context: fake\n"
    )
}
