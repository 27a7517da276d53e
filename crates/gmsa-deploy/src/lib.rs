//! The GMSA webhook's Kubernetes objects, rendered from [`Settings`]: the CRD, the namespace,
//! least-privilege RBAC, certificates (self-signed, cert-manager or an existing Secret), the
//! Deployment with its Service and PodDisruptionBudget, the webhook configurations and the
//! optional Windows node setup. Pure: the CLI applies the result, tests compare it with the
//! Helm chart's, and nothing here talks to a cluster or makes keys.

pub mod crd;
mod kinds;
mod manifest;
mod meta;
pub mod names;
mod objects;
mod owned;
pub mod policies;
pub mod version;
mod webhooks;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

pub use gmsa_tls::self_signed::SelfSignedSecret;
use k8s_openapi::api::core::v1::Toleration;
use thiserror::Error;

pub use kinds::{Kind, KindInfo};
pub use manifest::{render, tls_secret, Manifest, Object, ObjectRef};
/// The webhook's ClusterRole, for harnesses that run the webhook as another user.
pub use objects::rbac::cluster_role as webhook_cluster_role;
pub use owned::{owned, removed_by, Owned, Removal};
pub use version::{KubeVersion, KubeVersionError};
pub use webhooks::match_condition_expression;

/// The image rendered when none is given: what `docker build -t gmsa-webhook:<version> .`
/// makes from this repository's Dockerfile. Push it somewhere your nodes pull from and pass
/// `--image`.
pub const DEFAULT_IMAGE: &str = concat!("gmsa-webhook:", env!("CARGO_PKG_VERSION"));

/// Where the serving certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertMode {
    /// A CA and serving certificate made by the installer, kept in `<name>-tls`.
    SelfSigned,
    /// cert-manager issues `<name>-tls` and injects its CA into the webhook configurations.
    CertManager,
    /// An existing `kubernetes.io/tls` Secret; its CA is given separately.
    Secret(String),
}

impl fmt::Display for CertMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertMode::SelfSigned => f.write_str("self-signed"),
            CertMode::CertManager => f.write_str("cert-manager"),
            CertMode::Secret(name) => write!(f, "secret:{name}"),
        }
    }
}

/// A `--certs` value that is none of the three.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0:?}: write self-signed, cert-manager or secret:NAME")]
pub struct CertModeError(String);

impl FromStr for CertMode {
    type Err = CertModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "self-signed" => Ok(CertMode::SelfSigned),
            "cert-manager" => Ok(CertMode::CertManager),
            _ => match s.strip_prefix("secret:") {
                Some(name) if gmsa_core::syntax::object_name(name).is_ok() => {
                    Ok(CertMode::Secret(name.to_string()))
                }
                _ => Err(CertModeError(s.to_string())),
            },
        }
    }
}

/// What decides GMSA admissions: our webhook, or admission policies inside the API server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Admission {
    #[default]
    Webhook,
    /// MutatingAdmissionPolicy and ValidatingAdmissionPolicy (Kubernetes 1.36+), with a
    /// keeper publishing each spec's contents; no process on the admission path.
    Policies,
}

impl fmt::Display for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Admission::Webhook => "webhook",
            Admission::Policies => "policies",
        })
    }
}

/// An `--admission` value that is neither.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0:?}: write webhook or policies")]
pub struct AdmissionError(String);

impl FromStr for Admission {
    type Err = AdmissionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "webhook" => Ok(Admission::Webhook),
            "policies" => Ok(Admission::Policies),
            _ => Err(AdmissionError(s.to_string())),
        }
    }
}

/// Container resources, as Kubernetes quantities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    pub requests_cpu: String,
    pub requests_memory: String,
    pub limits_memory: String,
}

impl Default for Resources {
    fn default() -> Self {
        Self {
            requests_cpu: "50m".into(),
            requests_memory: "64Mi".into(),
            limits_memory: "256Mi".into(),
        }
    }
}

/// Everything the objects depend on.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub namespace: String,
    pub name: String,
    pub image: String,
    pub replicas: i32,
    pub certs: CertMode,
    /// Webhook or admission policies.
    pub admission: Admission,
    /// The API server's version: picks API versions and whether `matchConditions` exist.
    pub kube_version: KubeVersion,
    /// `None`: CEL `matchConditions` when the version has them.
    pub match_conditions: Option<bool>,
    /// `RANDOM_HOSTNAME=true` in the container.
    pub random_hostname: bool,
    /// The webhook's `--authorization`.
    pub authorization: gmsa_core::rbac::AuthorizationMode,
    /// Kubernetes client rate limit (`QPS`, `BURST`); the webhook's defaults when `None`.
    pub qps: Option<String>,
    pub burst: Option<u32>,
    pub resources: Resources,
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the webhook's pods.
    pub tolerations: Vec<Toleration>,
    pub pod_disruption_budget: bool,
    /// A ClusterRole that lets the built-in `view` role read credential specs.
    pub aggregate_to_view: bool,
    /// Register the webhooks by this `https://host:port` URL instead of the Service: for a
    /// webhook running outside the cluster (development and tests).
    pub webhook_url: Option<String>,
    /// The Windows node setup DaemonSet (HostProcess) that sets `EnableCompartmentNamespace`.
    pub node_setup: bool,
    /// The image of the node setup: any Windows image with `reg.exe` and `powershell.exe`.
    pub node_setup_image: String,
    /// A Prometheus Operator `PrometheusRule` alerting on the serving certificate's expiry.
    pub prometheus_rule: bool,
    /// PEM of the CA whose client certificates the webhook requires (`--client-ca`): the API
    /// server's webhook client certificate must chain to it. Probes then use the plain
    /// `--probe-port`.
    pub client_ca_pem: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        let mut node_selector = BTreeMap::new();
        node_selector.insert("kubernetes.io/os".to_string(), "linux".to_string());
        Self {
            namespace: names::DEFAULT_NAMESPACE.into(),
            name: names::DEFAULT_NAME.into(),
            image: DEFAULT_IMAGE.into(),
            replicas: names::DEFAULT_REPLICAS,
            certs: CertMode::SelfSigned,
            admission: Admission::Webhook,
            kube_version: KubeVersion::OFFLINE_DEFAULT,
            match_conditions: None,
            random_hostname: false,
            authorization: gmsa_core::rbac::AuthorizationMode::Hybrid,
            qps: None,
            burst: None,
            resources: Resources::default(),
            node_selector,
            tolerations: Vec::new(),
            pod_disruption_budget: true,
            aggregate_to_view: false,
            webhook_url: None,
            node_setup: false,
            node_setup_image: DEFAULT_NODE_SETUP_IMAGE.into(),
            prometheus_rule: false,
            client_ca_pem: None,
        }
    }
}

/// The node setup's default image: Nano Server has `reg.exe`; HostProcess containers run on
/// the host's own OS whatever their image, so its version does not need to match the node's.
pub const DEFAULT_NODE_SETUP_IMAGE: &str =
    "mcr.microsoft.com/oss/kubernetes/windows-host-process-containers-base-image:v1.0.0";

impl Settings {
    /// Whether the webhook configurations carry CEL `matchConditions`.
    pub fn uses_match_conditions(&self) -> bool {
        self.match_conditions
            .unwrap_or_else(|| self.kube_version.at_least(KubeVersion::MATCH_CONDITIONS))
    }

    /// The names the serving certificate must cover: the Service's, plus the URL's host.
    pub fn serving_names(&self) -> Vec<String> {
        let mut names = names::service_dns_names(&self.name, &self.namespace);
        if let Some(host) = self.webhook_url.as_deref().and_then(url_host) {
            names.push(host.to_string());
        }
        names
    }

    /// Checks what the API server would refuse, before anything is sent.
    pub fn check(&self) -> Result<(), SettingsError> {
        gmsa_core::syntax::namespace(&self.namespace)
            .map_err(|e| SettingsError::Namespace(e.to_string()))?;
        gmsa_core::syntax::object_name(&self.name)
            .map_err(|e| SettingsError::Name(e.to_string()))?;
        if self.name.len() > 40 {
            return Err(SettingsError::Name(
                "keep it to 40 characters: the Secret and DaemonSet add suffixes".into(),
            ));
        }
        if self.replicas < 1 {
            return Err(SettingsError::Replicas(self.replicas));
        }
        if self.match_conditions == Some(true)
            && !self.kube_version.at_least(KubeVersion::MATCH_CONDITIONS)
        {
            return Err(SettingsError::MatchConditions(self.kube_version));
        }
        if self.admission == Admission::Policies
            && !self.kube_version.at_least(KubeVersion::ADMISSION_POLICIES)
        {
            return Err(SettingsError::Policies(self.kube_version));
        }
        if self.admission == Admission::Policies && self.random_hostname {
            return Err(SettingsError::PoliciesRandomHostname);
        }
        if self.node_setup && !self.kube_version.at_least(KubeVersion::HOST_PROCESS) {
            return Err(SettingsError::HostProcess(self.kube_version));
        }
        if let Some(url) = &self.webhook_url {
            if url_host(url).is_none() || url.trim_end_matches('/').matches('/').count() != 2 {
                return Err(SettingsError::Url(url.clone()));
            }
        }
        Ok(())
    }
}

/// The host of an `https://host[:port]` URL (brackets kept off IPv6 addresses).
fn url_host(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split('/').next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    (!host.is_empty()).then_some(host)
}

/// Settings the API server would refuse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SettingsError {
    #[error("--namespace: {0}")]
    Namespace(String),
    #[error("--name: {0}")]
    Name(String),
    #[error("--replicas {0}: give at least 1")]
    Replicas(i32),
    #[error("matchConditions need Kubernetes 1.28 or later; this is {0}: leave them off")]
    MatchConditions(KubeVersion),
    #[error("--admission policies needs MutatingAdmissionPolicy v1 (Kubernetes 1.36 or later); this is {0}: upgrade the control plane or keep --admission webhook")]
    Policies(KubeVersion),
    #[error("--random-hostname needs the webhook: CEL has no randomness, so admission policies cannot pick a hostname; leave it off or keep --admission webhook")]
    PoliciesRandomHostname,
    #[error("the node setup needs HostProcess containers (Kubernetes 1.26 or later); this is {0}")]
    HostProcess(KubeVersion),
    #[error("--webhook-url {0:?}: give https://HOST:PORT, without a path")]
    Url(String),
    #[error("--certs {0} needs the CA that signed the Secret's certificate: pass --ca-bundle FILE (PEM), or apply to a cluster where the Secret has a ca.crt")]
    NoCaBundle(String),
    #[error("--certs self-signed needs the certificates (the installer makes them)")]
    NoCertificates,
}

/// The serving certificate material for [`CertMode::SelfSigned`], and the CA bundle for every
/// mode but cert-manager's (where the injector fills it in).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsMaterial {
    /// PEM of every CA the webhook configurations trust (more than one while rotating).
    pub ca_bundle_pem: String,
    /// What the self-signed Secret holds; `None` outside self-signed mode.
    pub secret: Option<SelfSignedSecret>,
    /// The self-signed Secret's resourceVersion as install read it: its apply then fails
    /// (409) instead of undoing a renewal the replicas wrote meanwhile.
    pub secret_resource_version: Option<String>,
    /// CAs (PEM blocks) the webhook configurations trust besides `ca_bundle_pem`: what the
    /// replicas renewed while install waited for them.
    pub also_trusted: Vec<String>,
}

/// The labels every rendered object carries; uninstall deletes only objects that have them.
/// The `kubectl gmsa install ... --apply` line that installs `settings`' admission mode under
/// its name and namespace again, flags left out where they are the defaults: what the guard
/// and doctor tell users to run. A bare `install --apply` on a policy install would put the
/// webhook back instead.
pub fn reinstall_command(settings: &Settings) -> String {
    let mut command = String::from("kubectl gmsa install");
    if settings.admission == Admission::Policies {
        command.push_str(" --admission policies");
    }
    if settings.namespace != names::DEFAULT_NAMESPACE {
        command.push_str(" --namespace ");
        command.push_str(&settings.namespace);
    }
    if settings.name != names::DEFAULT_NAME {
        command.push_str(" --name ");
        command.push_str(&settings.name);
    }
    command.push_str(" --apply");
    command
}

pub fn labels(settings: &Settings, component: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(settings);
    labels.insert(names::LABEL_COMPONENT.into(), component.into());
    labels
}

/// The labels that select the webhook replicas, not the keeper's: the Service's and the
/// PodDisruptionBudget's selector.
pub fn webhook_selector_labels(settings: &Settings) -> BTreeMap<String, String> {
    labels(settings, names::WEBHOOK_ROLE)
}

/// [`selector_labels`] as a label selector (`key=value,...`), for lists of the install's
/// Deployment and pods in any namespace.
pub fn selector(settings: &Settings) -> String {
    selector_labels(settings)
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The labels that select the Deployment's pods, whatever their role.
pub fn selector_labels(settings: &Settings) -> BTreeMap<String, String> {
    BTreeMap::from([
        (names::LABEL_NAME.to_string(), names::APP_NAME.to_string()),
        (names::LABEL_INSTANCE.to_string(), settings.name.clone()),
    ])
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::disallowed_macros)] // fixtures are JSON
mod tests;
