//! `uninstall`: removes what `install` made, webhook configurations first so pod creation
//! never waits on a webhook being removed; the CRD and credential specs stay unless asked.
//! It names the workloads that still reference a credential spec and, unless told not to,
//! leaves a guard that refuses new GMSA pods rather than have them admitted without contents.

pub mod references;
mod workloads;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use gmsa_deploy::policies::guard;
use gmsa_deploy::{names, owned, removed_by, Kind, ObjectRef, Removal, Settings};

use crate::apply::{installed_admission, Applier};
use crate::cluster::{client, cluster_version, runtime};
use crate::exit::ExitStatus;
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
    let mut settings = Settings {
        namespace: args.namespace.clone(),
        name: args.name.clone(),
        ..Settings::default()
    };
    // The mode being removed, so the guard and the closing lines name the install to run again.
    settings.admission = installed_admission(&applier.client, &settings)
        .await
        .context("cannot tell which admission mode is installed")?;
    let (references, unread) = workloads::read(&applier.client).await;
    let referenced = !references.is_empty() || !unread.is_empty();
    // Decided before anything is deleted: `always` on an old server deletes nothing.
    let plan = plan(args.refuse_gmsa_pods, version, referenced)?;
    if plan == GuardPlan::Leave {
        for object in guard::guard_objects(&settings) {
            println!("{}", applier.apply(&object).await?.1);
        }
    }
    // Policy mode's objects first: its bindings stop admission before anything else goes.
    let policies = removed_by(&settings, Removal::SwitchToWebhook);
    for line in delete_ours(&applier, &settings, &policies, None).await? {
        println!("{line}");
    }
    crate::install::policies::release_specs(&applier, &settings).await?;
    if plan == GuardPlan::Leave && args.dry_run.is_none() {
        // Before the webhooks go. After the policies, which would answer the same probe.
        wait_guard(&applier, &settings).await?;
    }
    let mut targets = after_the_policies(&settings);
    if plan == GuardPlan::Remove {
        targets.extend(removed_by(&settings, Removal::NextInstall));
    }
    for line in delete_ours(&applier, &settings, &targets, None).await? {
        println!("{line}");
    }
    for kept in removed_by(&settings, Removal::OnRequest) {
        let asked = match kept.kind {
            Kind::Namespace => args.delete_namespace,
            Kind::CustomResourceDefinition => args.delete_crd,
            _ => false,
        };
        if asked {
            if let Some(line) = applier
                .delete(kept.kind.info(), kept.namespace(), &kept.name)
                .await?
            {
                println!("{line}");
            }
        } else if kept.kind == Kind::CustomResourceDefinition {
            eprintln!(
                "kept {kept} and every GMSACredentialSpec (pass --delete-crd to delete them)"
            );
        }
    }
    let guard_found = plan == GuardPlan::Untouched
        && applier
            .get(
                Kind::ValidatingAdmissionPolicy.info(),
                None,
                &guard::guard(&settings.name),
            )
            .await?
            .is_some();
    let ending = Ending::of(plan, &settings.name, version, guard_found);
    if args.dry_run.is_some() {
        eprintln!("server dry run: nothing changed; without it, uninstall would leave this:");
    }
    let reinstall = gmsa_deploy::reinstall_command(&settings);
    for line in describe(&references, &unread, &ending, &reinstall) {
        eprintln!("{line}");
    }
    Ok(ExitStatus::Success)
}

/// What uninstall deletes once the policies are gone: the webhook configurations first (under
/// their earlier names too), then what they call, identities last; not the guard, the
/// namespace or the CRD, which depend on the arguments.
fn after_the_policies(settings: &Settings) -> Vec<ObjectRef> {
    owned(settings)
        .into_iter()
        .filter(|o| {
            matches!(
                o.removed_by,
                Removal::SwitchToPolicies | Removal::Superseded | Removal::Uninstall
            )
        })
        .map(|o| o.object)
        .collect()
}

/// Waits until the guard refuses a GMSA pod, so admission is never gone with nothing in its
/// place. The probe runs as the install's ServiceAccount; without it (an earlier uninstall
/// got that far) there is nothing left to wait for.
async fn wait_guard(applier: &Applier, settings: &Settings) -> anyhow::Result<()> {
    let account = applier
        .get(
            Kind::ServiceAccount.info(),
            Some(&settings.namespace),
            &settings.name,
        )
        .await?;
    if account.is_none() {
        return Ok(());
    }
    let policy = guard::guard(&settings.name);
    if let Err(last) = wait_refused_by(applier, settings, std::slice::from_ref(&policy)).await {
        bail!(
            "ValidatingAdmissionPolicy {policy} did not refuse a GMSA pod within 30 s (last answer: {last}); the webhook configurations are still there: check `kubectl get validatingadmissionpolicy {policy}` and run uninstall again, or pass --refuse-gmsa-pods=never"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The order uninstall has always deleted in: no pod waits on a webhook being removed,
    /// and nothing is left without the identity it runs as.
    #[test]
    fn uninstall_deletes_the_configurations_first_and_identities_last() {
        let settings = Settings {
            name: "gw".into(),
            namespace: "ns".into(),
            ..Settings::default()
        };
        let names: Vec<String> = after_the_policies(&settings)
            .iter()
            .map(|o| match o.namespace() {
                Some(ns) => format!("{ns}:{o}"),
                None => o.to_string(),
            })
            .collect();
        let admission = "admissionregistration.k8s.io";
        let rbac = "rbac.authorization.k8s.io";
        assert_eq!(
            names,
            [
                format!("validatingwebhookconfiguration.{admission}/gw-admission"),
                format!("mutatingwebhookconfiguration.{admission}/gw-admission"),
                format!("validatingwebhookconfiguration.{admission}/gw"),
                format!("mutatingwebhookconfiguration.{admission}/gw"),
                "ns:daemonset.apps/gw-node-setup".into(),
                "ns:prometheusrule.monitoring.coreos.com/gw".into(),
                "ns:poddisruptionbudget.policy/gw".into(),
                "ns:poddisruptionbudget.policy/gw".into(),
                "ns:deployment.apps/gw".into(),
                "ns:service/gw".into(),
                "ns:certificate.cert-manager.io/gw-tls".into(),
                "ns:issuer.cert-manager.io/gw-ca".into(),
                "ns:certificate.cert-manager.io/gw-ca".into(),
                "ns:secret/gw-ca".into(),
                "ns:issuer.cert-manager.io/gw-selfsigned".into(),
                "ns:secret/gw-tls".into(),
                format!("ns:rolebinding.{rbac}/gw-certificates"),
                format!("ns:role.{rbac}/gw-certificates"),
                "ns:configmap/gw-client-ca".into(),
                format!("clusterrole.{rbac}/gw-view"),
                format!("clusterrolebinding.{rbac}/gw"),
                format!("clusterrole.{rbac}/gw"),
                "ns:serviceaccount/gw".into(),
            ]
        );
        let beta = &after_the_policies(&settings)[7];
        assert_eq!(beta.kind.info().api_version, "policy/v1beta1");
    }
}
