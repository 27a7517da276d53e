//! `install` and `uninstall`: render the webhook's objects with `gmsa-deploy`, and apply them
//! by server-side apply in an order where the API server never calls a webhook that is not
//! there; remove them again without touching the CRD or credential specs unless asked.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine as _;
use clap::{Args, ValueEnum};
use gmsa_deploy::{names, Admission, CertMode, KubeVersion, Settings, TlsMaterial};
use serde_json::Value;

use crate::apply::{is_crd, is_webhook_config, Applier, Outcome};
use crate::args::{DryRun, OutputFile};
use crate::certs::{self, add_to_ca_bundles, current_ca_bundle, secret_info, set_resource_version};
use crate::cluster::{client, cluster_version, runtime};
use crate::exit::ExitStatus;
use crate::rollout::{
    apply_step, preflight, wait_available, wait_endpoints, wait_established, Unchecked,
};

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
    #[arg(long, value_name = "MODE", default_value = "hybrid", value_parser = str::parse::<gmsa_core::rbac_index::AuthorizationMode>)]
    pub authorization: gmsa_core::rbac_index::AuthorizationMode,
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
    /// Apply to the cluster of the current kubectl context.
    #[arg(long)]
    pub apply: bool,
    /// With --apply: `server` sends a dry run, `client` only prints.
    #[arg(long = "dry-run", value_enum, value_name = "MODE", requires = "apply")]
    pub dry_run: Option<DryRun>,
    /// With --apply: take over fields another manager owns.
    #[arg(long = "force-conflicts", requires = "apply")]
    pub force_conflicts: bool,
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

fn to_yaml(objects: &[Value]) -> anyhow::Result<String> {
    Ok(crate::output::yaml_documents(objects)?)
}

fn read_ca_bundle(path: &PathBuf) -> anyhow::Result<String> {
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --ca-bundle {}", path.display()))?;
    if certs::pem_blocks(&pem).is_empty() {
        bail!("--ca-bundle {}: no PEM certificate in it", path.display());
    }
    Ok(pem)
}

/// `install`.
pub fn install(args: &InstallArgs) -> anyhow::Result<ExitStatus> {
    let sends = args.apply && args.dry_run != Some(DryRun::Client);
    if !sends {
        if args.rotate_certs {
            bail!("--rotate-certs changes the cluster: it needs --apply without --dry-run=client");
        }
        let kube_version = match args.kube_version {
            Some(v) => v,
            None if args.admission == Admission::Policies => {
                eprintln!(
                    "note: rendering for Kubernetes {} (no --kube-version given), the first with admission policies v1",
                    KubeVersion::ADMISSION_POLICIES
                );
                KubeVersion::ADMISSION_POLICIES
            }
            None => {
                eprintln!(
                    "note: rendering for Kubernetes {} (no --kube-version given): CEL matchConditions included; pass --kube-version for older clusters",
                    KubeVersion::OFFLINE_DEFAULT
                );
                KubeVersion::OFFLINE_DEFAULT
            }
        };
        let settings = args.validate(kube_version)?;
        let tls = offline_tls(args, &settings)?;
        let manifest = gmsa_deploy::render(&settings, tls.as_ref())?;
        crate::output::write(
            args.output.output.as_deref(),
            args.output.force,
            &to_yaml(&manifest.objects)?,
        )?;
        return Ok(ExitStatus::Success);
    }
    runtime()?.block_on(install_to_cluster(args))
}

/// Certificates for output without a cluster: new self-signed ones, or the given CA.
fn offline_tls(args: &InstallArgs, settings: &Settings) -> anyhow::Result<Option<TlsMaterial>> {
    Ok(match &settings.certs {
        CertMode::SelfSigned => Some(
            certs::self_signed(
                settings,
                Default::default(),
                false,
                time::OffsetDateTime::now_utc(),
            )?
            .0,
        ),
        CertMode::CertManager => None,
        CertMode::Secret(_) => args
            .ca_bundle
            .as_ref()
            .map(read_ca_bundle)
            .transpose()?
            .map(|pem| TlsMaterial {
                ca_bundle_pem: pem,
                ..TlsMaterial::default()
            }),
    })
}

fn secret_text(secret: &Value, key: &str) -> Option<String> {
    let b64 = secret["data"][key].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    String::from_utf8(bytes).ok()
}

async fn install_to_cluster(args: &InstallArgs) -> anyhow::Result<ExitStatus> {
    let client = client().await?;
    let discovered = cluster_version(&client).await?;
    let kube_version = match args.kube_version {
        Some(v) if v != discovered => {
            eprintln!("note: the cluster runs Kubernetes {discovered}; rendering for {v} as asked");
            v
        }
        _ => discovered,
    };
    let settings = args.validate(kube_version)?;
    // Looking is a courtesy, as for the reference webhook below.
    match crate::storage::read(&client).await {
        Ok(Some(stored)) => {
            if let Some(advice) = stored.advice() {
                eprintln!("note: {advice}; after installing, run `kubectl gmsa migrate-storage`");
            }
        }
        Ok(None) => {}
        Err(e) => eprintln!("note: could not read the CRD's stored versions ({e:#}); `kubectl gmsa doctor` checks again"),
    }
    let server_dry_run = args.dry_run == Some(DryRun::Server);
    let applier = Applier {
        client: client.clone(),
        server_dry_run,
        force_conflicts: args.force_conflicts,
    };
    if settings.admission == Admission::Policies {
        let options = crate::install_policies::Options {
            output: args.output.output.as_deref(),
            force: args.output.force,
            wait: (!args.no_wait).then(|| Duration::from_secs(args.wait_timeout)),
            retire_reference: args.retire_reference,
        };
        return crate::install_policies::install(options, &applier, &settings).await;
    }
    let ns = settings.namespace.as_str();

    // The self-signed Secret as read: its state, to stage a rotation from, and its
    // resourceVersion, so a renewal the replicas make meanwhile is never overwritten.
    let mut read_secret: Option<(gmsa_deploy::SelfSignedSecret, Option<String>)> = None;
    let tls = match &settings.certs {
        CertMode::SelfSigned => {
            let secret = applier
                .get(secret_info(), Some(ns), &names::tls_secret(&settings.name))
                .await?;
            let existing = certs::read_secret(secret.as_ref());
            let rv = secret
                .as_ref()
                .and_then(|s| s["metadata"]["resourceVersion"].as_str())
                .map(str::to_owned);
            read_secret = Some((existing.clone(), rv));
            let (material, issued) = certs::self_signed(
                &settings,
                existing,
                args.rotate_certs,
                time::OffsetDateTime::now_utc(),
            )?;
            match &issued {
                None => {
                    eprintln!("certificates: keeping the Secret's (valid for more than 30 days)")
                }
                Some(reason) => {
                    eprintln!("certificates: issuing a new CA and serving certificate ({reason})")
                }
            }
            Some((material, issued))
        }
        CertMode::CertManager => {
            if args.rotate_certs {
                bail!("--rotate-certs rotates self-signed certificates; with cert-manager run `cmctl renew -n {ns} {}`", names::tls_secret(&settings.name));
            }
            None
        }
        CertMode::Secret(secret_name) => {
            if args.rotate_certs {
                bail!("--rotate-certs rotates self-signed certificates; update Secret {secret_name} yourself (add the new CA to --ca-bundle first)");
            }
            let pem = match &args.ca_bundle {
                Some(path) => read_ca_bundle(path)?,
                None => applier
                    .get(secret_info(), Some(ns), secret_name)
                    .await?
                    .as_ref()
                    .and_then(|s| secret_text(s, names::CA_CERT_KEY))
                    .with_context(|| format!("Secret {ns}/{secret_name} is missing or has no ca.crt: create it, or pass --ca-bundle FILE"))?,
            };
            Some((
                TlsMaterial {
                    ca_bundle_pem: pem,
                    ..TlsMaterial::default()
                },
                None,
            ))
        }
    };
    let mut manifest = gmsa_deploy::render(&settings, tls.as_ref().map(|(m, _)| m))?;
    if let Some((_, Some(rv))) = &read_secret {
        set_resource_version(&mut manifest.objects, rv);
    }
    if args.output.output.is_some() {
        crate::output::write(
            args.output.output.as_deref(),
            args.output.force,
            &to_yaml(&manifest.objects)?,
        )?;
    }
    if !server_dry_run {
        preflight(&applier, &manifest.objects, ns).await?;
    }
    // Looking is a courtesy: a user who may not list webhook configurations still installs.
    let (reference, looked) = match crate::reference::find(&client).await {
        Ok(found) => (found, true),
        Err(e) => {
            eprintln!("note: could not look for a reference webhook ({e:#}); `kubectl gmsa doctor` checks again");
            (None, false)
        }
    };

    // A new CA is trusted before any replica can serve a certificate it signed, and staged in
    // the Secret before any caBundle trusts it (as the replicas' renewal does: a replica that
    // looks in between sees a staged CA, not an unknown one to drop).
    let rotating = matches!(tls, Some((_, Some(_))))
        && current_ca_bundle(&applier, &settings.name).await?.is_some();
    if let (true, Some((existing, rv)), Some((material, _))) = (rotating, &read_secret, &tls) {
        certs::stage_rotation(
            &applier,
            &settings,
            existing,
            rv.as_deref(),
            material,
            &mut manifest.objects,
        )
        .await?;
    }

    let mut unchecked = Unchecked::new(ns);
    for object in manifest.objects.iter().filter(|o| !is_webhook_config(o)) {
        let (outcome, line) = apply_step(&applier, object, &mut unchecked).await?;
        println!("{line}");
        if is_crd(object) && outcome == Some(Outcome::Created) && !server_dry_run {
            wait_established(&applier).await?;
        }
    }
    let wait = !args.no_wait && !server_dry_run && settings.webhook_url.is_none();
    if wait {
        // A ready replica of the role being replaced (the keeper, back from policy mode) does
        // not count: the rollout of the webhook's template, and its Service's endpoints.
        let timeout = Duration::from_secs(args.wait_timeout);
        wait_available(&applier, &settings, timeout).await?;
        wait_endpoints(&applier, &settings, timeout).await?;
    }
    // Waiting may have taken minutes: trust whatever the replicas renewed meanwhile too.
    if matches!(settings.certs, CertMode::SelfSigned) && !server_dry_run {
        let now = applier
            .get(secret_info(), Some(ns), &names::tls_secret(&settings.name))
            .await?;
        let trusted = certs::read_secret(now.as_ref()).trusted(time::OffsetDateTime::now_utc());
        add_to_ca_bundles(&mut manifest.objects, &trusted);
    }
    for object in manifest.objects.iter().filter(|o| is_webhook_config(o)) {
        println!("{}", apply_step(&applier, object, &mut unchecked).await?.1);
    }
    if let Some(note) = unchecked.note() {
        eprintln!("{note}");
    }
    for line in crate::reference::remove_superseded(&applier, &settings).await? {
        println!("{line}");
    }
    // Back from policy mode: the policies go once the API server visibly sends pods to the
    // webhook (until then both admit, and agree).
    if !server_dry_run && crate::install_policies::policies_present(&applier, &settings).await? {
        if let Err(last) = crate::rollout::wait_webhook_answers(&applier).await {
            bail!(
                "the API server did not send a probe pod in namespace default to the webhook within 30 s (last answer: {last}); \
                 the admission policies stay in place meanwhile: check `kubectl -n {ns} get pods` and run install again",
                ns = settings.namespace
            );
        }
    }
    for line in crate::rollout::delete_ours(
        &applier,
        &settings,
        &crate::install_policies::policies_only(&settings),
        Some("replaced by the webhook"),
    )
    .await?
    {
        println!("{line}");
    }
    // And the guard an uninstall left: GMSA pods are admitted with their contents again.
    for line in crate::rollout::delete_ours(
        &applier,
        &settings,
        &crate::install_policies::guard_only(&settings),
        Some("GMSA admission is installed again"),
    )
    .await?
    {
        println!("{line}");
    }
    match (&reference, args.retire_reference) {
        (Some(found), true) => {
            for line in found.retire(&applier).await? {
                println!("{line}");
            }
            eprintln!("the reference webhook is retired; its CRD and credential specs are kept");
        }
        (Some(found), false) => eprintln!("\n{}\n", found.describe()),
        (None, true) if looked => {
            eprintln!("--retire-reference: no reference webhook is registered")
        }
        (None, true) => bail!(
            "--retire-reference: could not look for the reference webhook (see the note above)"
        ),
        (None, false) => {}
    }
    if rotating && !server_dry_run {
        eprintln!(
            "certificates: rotated; the previous CA stays trusted for {} minutes, then the webhook's replicas drop it",
            gmsa_tls::self_signed::Policy::default().previous_ca_grace.whole_minutes()
        );
    }
    Ok(ExitStatus::Success)
}
