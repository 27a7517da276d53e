//! What each admission mode puts in the cluster for a cell, and takes out after it.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use gmsa_testkit::real_cluster::RealCluster;
use serde_json::Value;

use super::{routed, Mode, Plan, NS};
use crate::target::{Running, TargetKind, TargetSpec};

/// What a mode put in the cluster, taken out by [`Admission::disable`].
pub(super) struct Admission {
    /// (kubectl kind, name) of every object applied.
    objects: Vec<(String, String)>,
    /// Collections to delete by [`routed::MODE_LABEL`] (API paths).
    collections: Vec<String>,
    webhook: Option<Running>,
}

impl Admission {
    pub(super) fn enable(
        cluster: &RealCluster,
        plan: &Plan,
        mode: Mode,
        specs: &[(String, String)],
    ) -> anyhow::Result<Self> {
        let version = gmsa_deploy::KubeVersion::new(1, cluster.version().minor());
        let mut collections = Vec::new();
        let (objects, webhook) = match mode.prototype() {
            Some(prototype) => {
                let (objects, made) = create_prototype(cluster, plan, version, prototype, specs)?;
                collections = made;
                (objects, None)
            }
            None => match mode {
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
                // Mode::None, and the prototypes above.
                _ => (Vec::new(), None),
            },
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
        Ok(Self {
            objects: applied,
            collections,
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
        for collection in &self.collections {
            let path = format!(
                "{collection}?labelSelector={}%3D{}",
                routed::MODE_LABEL,
                "routed"
            );
            let mut tries = 0;
            let (status, body) = loop {
                let (status, body) = cluster
                    .request("DELETE", &path, None)
                    .map_err(|e| anyhow!("{e}"))?;
                tries += 1;
                // A custom resource's storage may still be starting (429): retry a while.
                if status != 429 || tries > 30 {
                    break (status, body);
                }
                std::thread::sleep(Duration::from_secs(1));
            };
            if status != 200 {
                bail!("deleting {collection}: HTTP {status}: {body}");
            }
        }
        if let Some(webhook) = self.webhook {
            webhook.stop();
        }
        Ok(())
    }
}

/// Creates a prototype's per-spec bindings and contents objects (the keeper's writes) and
/// returns the objects to apply and the collections its cell leaves behind.
fn create_prototype(
    cluster: &RealCluster,
    plan: &Plan,
    version: gmsa_deploy::KubeVersion,
    prototype: routed::Prototype,
    specs: &[(String, String)],
) -> anyhow::Result<(Vec<Value>, Vec<String>)> {
    let settings = gmsa_deploy::Settings {
        kube_version: version,
        admission: gmsa_deploy::Admission::Policies,
        ..gmsa_deploy::Settings::default()
    };
    let kind = prototype.kind;
    // Bindings first, then the shards vouching for the specs (the keeper's order).
    // Created, not applied: a shard is too big for kubectl's last-applied copy.
    let bindings = specs
        .iter()
        .filter(|_| prototype.per_spec_bindings)
        .enumerate()
        .map(|(i, (name, _))| {
            (
                ROUTED_COLLECTIONS[0].to_string(),
                routed::use_binding(i, name),
            )
        });
    let held = if kind == routed::ShardKind::Namespaced {
        &specs[..plan.namespace_specs.min(specs.len())]
    } else {
        specs
    };
    let shards = routed::shards(held, kind)
        .into_iter()
        .map(|shard| (kind.collection(NS), shard));
    for (collection, object) in bindings.chain(shards) {
        let (status, body) = cluster
            .request("POST", &collection, Some(&object.to_string()))
            .map_err(|e| anyhow!("{e}"))?;
        if status != 201 {
            bail!(
                "creating {}: HTTP {status}: {}",
                object["metadata"]["name"],
                &body[..body.len().min(400)]
            );
        }
    }
    let mut collections: Vec<String> = ROUTED_COLLECTIONS.iter().map(|c| c.to_string()).collect();
    collections.push(format!("/api/v1/namespaces/{NS}/configmaps"));
    collections.push(routed::ShardKind::Namespaced.collection(NS));
    Ok((
        routed::objects(&settings, kind, NS, prototype.uses),
        collections,
    ))
}

/// What the routed prototype creates, by collection.
const ROUTED_COLLECTIONS: [&str; 5] = [
    "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings",
    "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies",
    "/apis/admissionregistration.k8s.io/v1/mutatingadmissionpolicybindings",
    "/apis/admissionregistration.k8s.io/v1/mutatingadmissionpolicies",
    "/apis/windows.k8s.io/v1alpha1/gmsacontentsshards",
];

fn kind(object: &Value) -> &str {
    object["kind"].as_str().unwrap_or_default()
}
