//! `install`'s arguments, and the settings they make once checked.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use gmsa_deploy::{names, Admission, CertMode, KubeVersion, Settings};

use crate::args::{ApplyArgs, OutputFile};

pub const INSTALL_EXAMPLES: &str = "\
Renders the CRD, the namespace (labelled so the webhooks skip it), the webhook's service
account and least-privilege RBAC, its certificates, Service, Deployment, PodDisruptionBudget
and the two webhook configurations. With --apply they are applied by server-side apply (field
manager kubectl-gmsa); re-running changes nothing that is already right, never deletes the CRD
or a credential spec, and keeps self-signed certificates valid for more than 30 days. Every
object is first sent as a server-side dry run: when any would fail, nothing is changed.

Switching from the reference webhook (kubernetes-sigs/windows-gmsa): install takes over its
CRD (this install owns it now; credential specs are untouched), registers webhook
configurations of its own (<name>-admission), and says what is left of the reference.
--retire-reference then deletes the reference's webhook configurations, Service and
Deployment, so pods are no longer sent to two webhooks.

Without --kube-version, rendering (no --apply) is for Kubernetes 1.30: CEL matchConditions are
included, so only pods that mention GMSA reach the webhook. With --apply the cluster's own
version decides. Kubernetes before 1.28 gets no matchConditions.

Examples:
  kubectl gmsa install --image registry.example/gmsa-webhook:0.1.0 -o gmsa-webhook.yaml
  kubectl gmsa install --image registry.example/gmsa-webhook:0.1.0 --apply --dry-run=server
  kubectl gmsa install --image registry.example/gmsa-webhook:0.1.0 --apply
  kubectl gmsa install --certs cert-manager --apply
  kubectl gmsa install --apply --rotate-certs
  kubectl gmsa install --image registry.example/gmsa-webhook:0.1.0 --apply --retire-reference
  kubectl gmsa install --node-setup --kube-version 1.30 -o node-setup.yaml
  kubectl gmsa install --admission policies --image registry.example/gmsa-webhook:0.1.0 --apply

--admission policies (Kubernetes 1.36+) installs admission policies instead of the webhook:
the API server itself inlines and checks credential specs, and the only Deployment is the
keeper that publishes each spec's contents (annotations the policies read). Older servers are
refused. Switching either way is safe: the new mode is live before the old one is removed.";

/// Whether the webhook configurations carry CEL `matchConditions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Toggle {
    /// When the Kubernetes version has them (1.28+).
    Auto,
    On,
    Off,
}

/// `install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Namespace of the webhook.
    #[arg(short = 'n', long, default_value = names::DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Name of the Deployment, Service, RBAC objects and webhook configurations.
    #[arg(long, default_value = names::DEFAULT_NAME)]
    pub name: String,
    /// The webhook image (build it with the repository's Dockerfile).
    #[arg(long, value_name = "REF", default_value = gmsa_deploy::DEFAULT_IMAGE)]
    pub image: String,
    /// Webhook replicas.
    #[arg(long, default_value_t = names::DEFAULT_REPLICAS)]
    pub replicas: i32,
    /// Serving certificate: self-signed (made here), cert-manager, or secret:NAME (yours).
    #[arg(long, value_name = "MODE", default_value = "self-signed")]
    pub certs: CertMode,
    /// What admits GMSA pods: `webhook` (our webhook server), or `policies`: admission
    /// policies inside the API server (Kubernetes 1.36+), no webhook on the admission path.
    #[arg(long, value_name = "MODE", default_value = "webhook")]
    pub admission: Admission,
    /// With --certs secret:NAME: the CA that signed it (PEM) [default: the Secret's ca.crt].
    #[arg(long = "ca-bundle", value_name = "FILE")]
    pub ca_bundle: Option<PathBuf>,
    /// Kubernetes version to render for [default: the cluster's with --apply, else 1.30].
    #[arg(long = "kube-version", value_name = "X.Y")]
    pub kube_version: Option<KubeVersion>,
    /// CEL matchConditions on the pod webhooks.
    #[arg(long = "match-conditions", value_enum, default_value = "auto")]
    pub match_conditions: Toggle,
    /// Give GMSA pods without a hostname a random one (RANDOM_HOSTNAME=true), so replicas do
    /// not share a NetBIOS name.
    #[arg(long = "random-hostname")]
    pub random_hostname: bool,
    /// Where the webhook's `use` decisions come from: hybrid (RBAC from its watch caches, an
    /// access review only when RBAC alone does not allow), api (a review every time: when an
    /// authorizer ahead of RBAC can deny), local (never a review).
    #[arg(long, value_name = "MODE", default_value = "hybrid", value_parser = str::parse::<gmsa_core::rbac::AuthorizationMode>)]
    pub authorization: gmsa_core::rbac::AuthorizationMode,
    /// Kubernetes client rate limit of the webhook (QPS env) [default: the webhook's, 5].
    #[arg(long, value_name = "N")]
    pub qps: Option<f32>,
    /// Kubernetes client burst of the webhook (BURST env) [default: the webhook's, 10].
    #[arg(long, value_name = "N")]
    pub burst: Option<u32>,
    /// Leave out the PodDisruptionBudget.
    #[arg(long = "no-pdb")]
    pub no_pdb: bool,
    /// Also let holders of the built-in `view` role read credential specs.
    #[arg(long = "aggregate-to-view")]
    pub aggregate_to_view: bool,
    /// Add the Windows node setup: a HostProcess DaemonSet that sets the hns
    /// EnableCompartmentNamespace registry value (Kubernetes 1.26+).
    #[arg(long = "node-setup")]
    pub node_setup: bool,
    /// Add a PrometheusRule (Prometheus Operator) that alerts when the serving certificate
    /// has under 30 days left and when it has expired.
    #[arg(long = "prometheus-rule")]
    pub prometheus_rule: bool,
    /// Require client certificates from this CA (PEM) on the webhook's port: the API server's
    /// webhook client certificate (its admission configuration's kubeConfigFile) must chain to
    /// it. Stored in a ConfigMap and re-read on change; probes move to a plain port.
    #[arg(long = "client-ca", value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
    /// Register the webhooks at https://HOST:PORT instead of the Service: for a webhook
    /// running outside the cluster (development and tests only).
    #[arg(long = "webhook-url", value_name = "URL", hide = true)]
    pub webhook_url: Option<String>,
    #[command(flatten)]
    pub output: OutputFile,
    #[command(flatten)]
    pub apply: ApplyArgs,
    /// With --apply: new self-signed CA and certificate; the old CA stays trusted for 15
    /// minutes so no admission fails while the webhook reloads.
    #[arg(long = "rotate-certs", requires = "apply")]
    pub rotate_certs: bool,
    /// With --apply: once this webhook is registered, delete what is left of a reference
    /// install (kubernetes-sigs/windows-gmsa): its two webhook configurations, and the Service
    /// and Deployment they call. Its CRD and credential specs are kept.
    #[arg(long = "retire-reference", requires = "apply")]
    pub retire_reference: bool,
    /// With --apply: do not wait for a ready webhook before registering it.
    #[arg(long = "no-wait")]
    pub no_wait: bool,
    /// With --apply: how long to wait for a ready webhook.
    #[arg(long = "wait-timeout", value_name = "SECONDS", default_value_t = 180)]
    pub wait_timeout: u64,
}

impl InstallArgs {
    /// The settings for `kube_version`, after every refusal that depends on the arguments alone
    /// and not on the cluster (doctor's fixes are checked against it).
    pub fn validate(&self, kube_version: KubeVersion) -> anyhow::Result<Settings> {
        let settings = self.settings(kube_version)?;
        settings.check()?;
        if settings.admission == Admission::Policies && self.rotate_certs {
            bail!("--rotate-certs: policy mode has no certificates (nothing serves admissions)");
        }
        Ok(settings)
    }

    fn settings(&self, kube_version: KubeVersion) -> anyhow::Result<Settings> {
        if let Some(qps) = self.qps {
            if !qps.is_finite() || qps <= 0.0 {
                bail!("--qps {qps}: give a positive number");
            }
        }
        let client_ca_pem = self.client_ca.as_deref().map(read_client_ca).transpose()?;
        Ok(Settings {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            image: self.image.clone(),
            replicas: self.replicas,
            certs: self.certs.clone(),
            admission: self.admission,
            kube_version,
            match_conditions: match self.match_conditions {
                Toggle::Auto => None,
                Toggle::On => Some(true),
                Toggle::Off => Some(false),
            },
            random_hostname: self.random_hostname,
            authorization: self.authorization,
            qps: self.qps.map(|q| q.to_string()),
            burst: self.burst,
            pod_disruption_budget: !self.no_pdb,
            aggregate_to_view: self.aggregate_to_view,
            webhook_url: self.webhook_url.clone(),
            node_setup: self.node_setup,
            prometheus_rule: self.prometheus_rule,
            client_ca_pem,
            ..Settings::default()
        })
    }
}

/// The `--client-ca` file, checked to hold at least one PEM certificate and nothing else.
fn read_client_ca(path: &std::path::Path) -> anyhow::Result<String> {
    use rustls_pki_types::pem::PemObject;
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("--client-ca {}: cannot read it", path.display()))?;
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("--client-ca {}: not PEM: {e}", path.display()))?;
    if certs.is_empty() {
        bail!(
            "--client-ca {}: no CERTIFICATE block: give the PEM of the CA that signed the API server's webhook client certificate",
            path.display()
        );
    }
    Ok(pem)
}
