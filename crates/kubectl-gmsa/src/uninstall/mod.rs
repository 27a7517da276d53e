//! `uninstall`: removes what `install` made, webhook configurations first so pod creation
//! never waits on a webhook being removed; the CRD and credential specs stay unless asked.

use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, ValueEnum};
use gmsa_deploy::{names, Settings};

use crate::apply::Applier;
use crate::cluster::{client, kind, runtime};

pub const UNINSTALL_EXAMPLES: &str = "\
Deletes the webhook configurations first (so pod creation never waits on a webhook being
removed), then everything else install made. The CRD and every GMSACredentialSpec stay unless
--delete-crd is given; the namespace stays unless --delete-namespace is given. Objects without
the install's labels are left alone.

Examples:
  kubectl gmsa uninstall --dry-run=server
  kubectl gmsa uninstall
  kubectl gmsa uninstall --delete-crd --delete-namespace";

/// `uninstall`.
#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// Namespace of the webhook.
    #[arg(short = 'n', long, default_value = names::DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Name given to install.
    #[arg(long, default_value = names::DEFAULT_NAME)]
    pub name: String,
    /// Also delete the CRD, and with it EVERY GMSACredentialSpec in the cluster.
    #[arg(long = "delete-crd")]
    pub delete_crd: bool,
    /// Also delete the namespace (refused for default, kube-system, kube-public).
    #[arg(long = "delete-namespace")]
    pub delete_namespace: bool,
    /// `server`: the API server checks and answers, but deletes nothing.
    #[arg(long = "dry-run", value_enum, value_name = "MODE")]
    pub dry_run: Option<UninstallDryRun>,
}

/// Dry run of uninstall: only the server kind makes sense.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UninstallDryRun {
    Server,
}

/// `uninstall`.
pub fn uninstall(args: &UninstallArgs) -> anyhow::Result<ExitCode> {
    if args.delete_namespace
        && ["default", "kube-system", "kube-public", "kube-node-lease"]
            .contains(&args.namespace.as_str())
    {
        bail!("--delete-namespace refuses to delete {}", args.namespace);
    }
    runtime()?.block_on(uninstall_from_cluster(args))
}

async fn uninstall_from_cluster(args: &UninstallArgs) -> anyhow::Result<ExitCode> {
    let applier = Applier {
        client: client().await?,
        server_dry_run: args.dry_run.is_some(),
        force_conflicts: false,
    };
    let settings = Settings {
        namespace: args.namespace.clone(),
        name: args.name.clone(),
        ..Settings::default()
    };
    // In the install's namespace (`true`) or cluster-scoped.
    let ns = true;
    let name = args.name.as_str();
    let validating = kind(
        "admissionregistration.k8s.io/v1",
        "ValidatingWebhookConfiguration",
    );
    let mutating = kind(
        "admissionregistration.k8s.io/v1",
        "MutatingWebhookConfiguration",
    );
    let configurations = names::webhook_configuration(name);
    // Policy mode's objects first: its bindings stop admission before anything else goes.
    let mut targets = crate::install_policies::policies_only(&settings);
    targets.extend([
        (validating, false, configurations.clone()),
        (mutating, false, configurations),
        // The name earlier versions gave them.
        (validating, false, name.into()),
        (mutating, false, name.into()),
        (kind("apps/v1", "DaemonSet"), ns, names::node_setup(name)),
        (
            kind("monitoring.coreos.com/v1", "PrometheusRule"),
            ns,
            name.into(),
        ),
        (kind("policy/v1", "PodDisruptionBudget"), ns, name.into()),
        (
            kind("policy/v1beta1", "PodDisruptionBudget"),
            ns,
            name.into(),
        ),
        (kind("apps/v1", "Deployment"), ns, name.into()),
        (kind("v1", "Service"), ns, name.into()),
        (
            kind("cert-manager.io/v1", "Certificate"),
            ns,
            names::tls_secret(name),
        ),
        (
            kind("cert-manager.io/v1", "Issuer"),
            ns,
            names::ca_issuer(name),
        ),
        (
            kind("cert-manager.io/v1", "Certificate"),
            ns,
            names::ca_certificate(name),
        ),
        (kind("v1", "Secret"), ns, names::ca_certificate(name)),
        (
            kind("cert-manager.io/v1", "Issuer"),
            ns,
            names::issuer(name),
        ),
        (kind("v1", "Secret"), ns, names::tls_secret(name)),
        (
            kind("rbac.authorization.k8s.io/v1", "RoleBinding"),
            ns,
            names::certificates_role(name),
        ),
        (
            kind("rbac.authorization.k8s.io/v1", "Role"),
            ns,
            names::certificates_role(name),
        ),
        (kind("v1", "ConfigMap"), ns, names::client_ca(name)),
        (
            kind("rbac.authorization.k8s.io/v1", "ClusterRole"),
            false,
            names::view_role(name),
        ),
        (
            kind("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
            false,
            name.into(),
        ),
        (
            kind("rbac.authorization.k8s.io/v1", "ClusterRole"),
            false,
            name.into(),
        ),
        (kind("v1", "ServiceAccount"), ns, name.into()),
    ]);
    for line in crate::rollout::delete_ours(&applier, &settings, &targets, None).await? {
        println!("{line}");
    }
    if args.delete_namespace {
        if let Some(line) = applier
            .delete(kind("v1", "Namespace"), None, &args.namespace)
            .await?
        {
            println!("{line}");
        }
    }
    let crd = gmsa_deploy::crd::crd_name();
    if args.delete_crd {
        if let Some(line) = applier
            .delete(
                kind("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
                None,
                &crd,
            )
            .await?
        {
            println!("{line}");
        }
    } else {
        eprintln!("kept customresourcedefinition.apiextensions.k8s.io/{crd} and every GMSACredentialSpec (pass --delete-crd to delete them)");
    }
    Ok(ExitCode::SUCCESS)
}
