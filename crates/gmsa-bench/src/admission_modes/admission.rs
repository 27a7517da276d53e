//! What each admission mode puts in the cluster for a cell, and takes out after it.

use std::time::Duration;

use anyhow::{anyhow, Context};
use gmsa_testkit::real_cluster::RealCluster;
use serde_json::Value;

use super::{Mode, Plan};
use crate::target::{Running, TargetKind, TargetSpec};

/// What a mode put in the cluster, taken out by [`Admission::disable`].
pub(super) struct Admission {
    /// (kubectl kind, name) of every object applied.
    objects: Vec<(String, String)>,
    webhook: Option<Running>,
}

impl Admission {
    pub(super) fn enable(
        cluster: &RealCluster,
        plan: &Plan,
        runtime: &tokio::runtime::Runtime,
        mode: Mode,
    ) -> anyhow::Result<Self> {
        let version = gmsa_deploy::KubeVersion::new(1, cluster.version().minor());
        let (objects, webhook) = match mode {
            Mode::Webhook => {
                let spec = TargetSpec {
                    kind: TargetKind::KubeCached,
                    kubeconfig: Some(cluster.webhook_kubeconfig().to_path_buf()),
                    state_dir: None,
                    certs: cluster.dir().join("bench-webhook-certs"),
                    log_level: "info".into(),
                };
                let running = Running::child(&plan.exe, &spec)?;
                let ca_bundle_pem = std::fs::read_to_string(&running.ca)
                    .with_context(|| running.ca.display().to_string())?;
                let settings = gmsa_deploy::Settings {
                    kube_version: version,
                    certs: gmsa_deploy::CertMode::Secret("unused".into()),
                    webhook_url: Some(format!("https://{}", running.addr)),
                    ..gmsa_deploy::Settings::default()
                };
                let tls = gmsa_deploy::TlsMaterial {
                    ca_bundle_pem,
                    ..gmsa_deploy::TlsMaterial::default()
                };
                let objects = gmsa_deploy::render(&settings, Some(&tls))?
                    .admission
                    .into_iter()
                    .map(|o| o.body)
                    .collect();
                (objects, Some(running))
            }
            Mode::Policies => {
                let settings = gmsa_deploy::Settings {
                    kube_version: version,
                    admission: gmsa_deploy::Admission::Policies,
                    ..gmsa_deploy::Settings::default()
                };
                let objects = gmsa_deploy::render(&settings, None)?
                    .admission
                    .into_iter()
                    .map(|o| o.body)
                    .collect();
                (objects, None)
            }
            Mode::None => (Vec::new(), None),
        };
        let mut applied = Vec::new();
        for object in &objects {
            cluster
                .apply(&object.to_string())
                .map_err(|e| anyhow!("{e}"))?;
            applied.push((
                kind(object).to_ascii_lowercase(),
                object["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ));
        }
        if mode == Mode::Policies {
            // The keeper's work, done here as the admin: specs finalized, the bench namespace's
            // contents written and listed.
            runtime.block_on(async {
                let config = gmsa_kube::load_config(Some(cluster.admin_kubeconfig())).await?;
                let client = kube::Client::try_from(config)?;
                gmsa_kube::contents::ContentsKeeper::new(
                    client,
                    gmsa_deploy::names::DEFAULT_NAME,
                    gmsa_deploy::names::DEFAULT_NAMESPACE,
                )
                .settle(5, gmsa_kube::contents::Scope::NoRelease)
                .await?;
                anyhow::Ok(())
            })?;
        }
        Ok(Self {
            objects: applied,
            webhook,
        })
    }

    pub(super) fn webhook_cpu(&self) -> Option<Duration> {
        self.webhook.as_ref().and_then(Running::cpu_time)
    }

    pub(super) fn disable(self, cluster: &RealCluster) -> anyhow::Result<()> {
        for (kind, name) in &self.objects {
            cluster
                .kubectl_ok(&["delete", kind, name, "--ignore-not-found"], None)
                .map_err(|e| anyhow!("{e}"))?;
        }
        if let Some(webhook) = self.webhook {
            webhook.stop();
        }
        Ok(())
    }
}

fn kind(object: &Value) -> &str {
    object["kind"].as_str().unwrap_or_default()
}
