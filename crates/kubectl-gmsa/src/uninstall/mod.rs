//! `uninstall`: removes what `install` made, webhook configurations first so pod creation
//! never waits on a webhook being removed; the CRD and credential specs stay unless asked.
//! It names the workloads that still reference a credential spec and, unless told not to,
//! leaves a guard that refuses new GMSA pods rather than have them admitted without contents.

pub mod references;
mod workloads;

use anyhow::bail;
use clap::{Args, ValueEnum};
use gmsa_deploy::policies::guard;
use gmsa_deploy::{names, Settings};

use crate::apply::{apply_one, Applier};
use crate::cluster::{client, cluster_version, kind, runtime};
use crate::exit::ExitStatus;
use crate::install_policies::{guard_only, policies_only};
use crate::rollout::{delete_ours, wait_refused_by};
use references::{describe, plan, Ending, GuardPlan, RefuseGmsaPods};

pub const UNINSTALL_EXAMPLES: &str = "\
Deletes the webhook configurations first (so pod creation never waits on a webhook being
removed), then everything else install made. The CRD and every GMSACredentialSpec stay unless
--delete-crd is given; the namespace stays unless --delete-namespace is given. Objects without
the install's labels are left alone.

Without GMSA admission, a new pod that names a credential spec is admitted without its
contents and fails to start on Windows nodes (and one carrying contents is admitted unchecked).
So uninstall first names every pod, Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob
and ReplicationController that still references a spec, and by default (--refuse-gmsa-pods=auto)
leaves a guard when any does: ValidatingAdmissionPolicy <name>-uninstalled (Kubernetes 1.30+)
refuses new GMSA pods, saying how to get out, until `kubectl gmsa install --apply` deletes it.
Running pods are not touched. Older servers cannot hold the guard: uninstall says so and goes
on. --refuse-gmsa-pods=never leaves none (and deletes one left earlier).

Examples:
  kubectl gmsa uninstall --dry-run=server
  kubectl gmsa uninstall
  kubectl gmsa uninstall --refuse-gmsa-pods=always
  kubectl gmsa uninstall --refuse-gmsa-pods=never --delete-crd --delete-namespace";

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
    /// Leave a ValidatingAdmissionPolicy that refuses new pods naming a credential spec,
    /// instead of having them admitted without its contents: `auto` when workloads still
    /// reference one, `always`, or `never` (also deletes one left earlier). Kubernetes 1.30+.
    #[arg(
        long = "refuse-gmsa-pods",
        value_enum,
        value_name = "WHEN",
        default_value = "auto"
    )]
    pub refuse_gmsa_pods: RefuseGmsaPods,
}

/// Dry run of uninstall: only the server kind makes sense.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UninstallDryRun {
    Server,
}

/// `uninstall`.
pub fn uninstall(args: &UninstallArgs) -> anyhow::Result<ExitStatus> {
    if args.delete_namespace
        && ["default", "kube-system", "kube-public", "kube-node-lease"]
            .contains(&args.namespace.as_str())
    {
        bail!("--delete-namespace refuses to delete {}", args.namespace);
    }
    runtime()?.block_on(uninstall_from_cluster(args))
}

async fn uninstall_from_cluster(args: &UninstallArgs) -> anyhow::Result<ExitStatus> {
    let client = client().await?;
    let version = cluster_version(&client).await?;
    let applier = Applier {
        client,
        server_dry_run: args.dry_run.is_some(),
        force_conflicts: false,
    };
    let settings = Settings {
        namespace: args.namespace.clone(),
        name: args.name.clone(),
        ..Settings::default()
    };
    let (references, unread) = workloads::read(&applier.client).await;
    let referenced = !references.is_empty() || !unread.is_empty();
    // Decided before anything is deleted: `always` on an old server deletes nothing.
    let plan = plan(args.refuse_gmsa_pods, version, referenced)?;
    if plan == GuardPlan::Leave {
        for object in guard::guard_objects(&settings) {
            println!("{}", apply_one(&applier, &object).await?.1);
        }
    }
    // Policy mode's objects first: its bindings stop admission before anything else goes.
    for line in delete_ours(&applier, &settings, &policies_only(&settings), None).await? {
        println!("{line}");
    }
    if plan == GuardPlan::Leave && args.dry_run.is_none() {
        // Before the webhooks go. After the policies, which would answer the same probe.
        wait_guard(&applier, &settings).await?;
    }
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
    let mut targets = vec![
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
    ];
    if plan == GuardPlan::Remove {
        targets.extend(guard_only(&settings));
    }
    for line in delete_ours(&applier, &settings, &targets, None).await? {
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
    let guard_found = plan == GuardPlan::Untouched
        && applier
            .get(
                kind(
                    "admissionregistration.k8s.io/v1",
                    "ValidatingAdmissionPolicy",
                ),
                None,
                &guard::guard(name),
            )
            .await?
            .is_some();
    let ending = Ending::of(plan, name, version, guard_found);
    if args.dry_run.is_some() {
        eprintln!("server dry run: nothing changed; without it, uninstall would leave this:");
    }
    for line in describe(&references, &unread, &ending) {
        eprintln!("{line}");
    }
    Ok(ExitStatus::Success)
}

/// Waits until the guard refuses a GMSA pod, so admission is never gone with nothing in its
/// place. The probe runs as the install's ServiceAccount; without it (an earlier uninstall
/// got that far) there is nothing left to wait for.
async fn wait_guard(applier: &Applier, settings: &Settings) -> anyhow::Result<()> {
    let account = applier
        .get(
            kind("v1", "ServiceAccount"),
            Some(&settings.namespace),
            &settings.name,
        )
        .await?;
    if account.is_none() {
        return Ok(());
    }
    let policy = guard::guard(&settings.name);
    if let Err(last) = wait_refused_by(applier, settings, &policy).await {
        bail!(
            "ValidatingAdmissionPolicy {policy} did not refuse a GMSA pod within 30 s (last answer: {last}); the webhook configurations are still there: check `kubectl get validatingadmissionpolicy {policy}` and run uninstall again, or pass --refuse-gmsa-pods=never"
        );
    }
    Ok(())
}
