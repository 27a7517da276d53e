//! `install --admission policies`: the admission policies instead of the webhook. Order
//! matters twice: every credential spec's contents are published before the policies go live
//! (a pod naming a spec would otherwise be refused), and a webhook install being replaced is
//! unregistered only once the policies visibly answer (no pod is ever admitted unchecked).

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use gmsa_deploy::{names, policies, removed_by, Admission, Kind, ObjectRef, Removal, Settings};
use gmsa_kube::credential_spec_resource;
use kube::api::{Api, DynamicObject, ListParams};

use crate::apply::{Applier, Outcome};
use crate::exit::ExitStatus;
use crate::rollout::{
    apply_step, delete_ours, preflight, wait_available, wait_established, wait_refused_by,
    Unchecked,
};

/// Whether an object is one of the two webhook configurations.
fn is_webhook_configuration(object: &ObjectRef) -> bool {
    matches!(
        object.kind,
        Kind::MutatingWebhookConfiguration | Kind::ValidatingWebhookConfiguration
    )
}

/// What the command line asks of a policy install besides the settings.
pub struct Options<'a> {
    /// Also write the rendered objects here (`-o`), and whether to overwrite.
    pub output: Option<&'a Path>,
    pub force: bool,
    /// How long the keeper gets to have a ready replica; `None`: do not wait.
    pub wait: Option<Duration>,
    /// Delete what is left of a reference webhook once the policies are applied.
    pub retire_reference: bool,
}

pub async fn install(
    options: Options<'_>,
    applier: &Applier,
    settings: &Settings,
) -> anyhow::Result<ExitStatus> {
    let manifest = gmsa_deploy::render(settings, None)?;
    if options.output.is_some() {
        crate::output::write(
            options.output,
            options.force,
            &crate::output::yaml_documents(&manifest.bodies())?,
        )?;
    }
    let server_dry_run = applier.server_dry_run;
    if !server_dry_run {
        let objects: Vec<_> = manifest.objects().collect();
        preflight(applier, &objects, &settings.namespace).await?;
    }
    let mut unchecked = Unchecked::new(&settings.namespace);
    // The keeper's Deployment is the webhook's, with another template: it is rolled only
    // once the webhook configurations are gone, so no pod is sent to a webhook whose
    // replicas are being replaced (below).
    for object in manifest
        .before_admission()
        .filter(|o| o.id.kind != Kind::Deployment)
    {
        let (outcome, line) = apply_step(applier, object, &mut unchecked).await?;
        println!("{line}");
        if object.id.kind == Kind::CustomResourceDefinition
            && outcome == Some(Outcome::Created)
            && !server_dry_run
        {
            wait_established(applier).await?;
        }
    }
    if !server_dry_run {
        let published = match publish_all(applier).await {
            Err(e) if webhook_unreachable(&e) => {
                // Our webhook validates spec writes, and it is down: the reason to switch,
                // often. Without the validating configuration the mutating one still refuses
                // every GMSA pod (it fails closed), so nothing is admitted unchecked meanwhile.
                eprintln!("note: the webhook's credential spec validation is unreachable; unregistering the validating webhook configuration first (GMSA pods stay refused by the mutating one until the policies answer)");
                let validating: Vec<ObjectRef> = removed_by(settings, Removal::SwitchToPolicies)
                    .into_iter()
                    .filter(|o| o.kind == Kind::ValidatingWebhookConfiguration)
                    .collect();
                for line in delete_ours(applier, settings, &validating, Some("unreachable")).await?
                {
                    println!("{line}");
                }
                publish_all(applier).await?
            }
            other => other?,
        };
        eprintln!(
            "contents: {} credential spec(s) published for the policies",
            published.written
        );
        if let Some(warning) = policies::cost_warning(published.specs) {
            let webhook = gmsa_deploy::reinstall_command(&Settings {
                admission: Admission::Webhook,
                ..settings.clone()
            });
            eprintln!("warning: {warning}; `{webhook}` switches to the webhook");
        }
    }
    for object in &manifest.admission {
        println!("{}", apply_step(applier, object, &mut unchecked).await?.1);
    }
    // The guard an uninstall left would answer the probe below in the policies' place (the
    // API server reports one refusal, whichever policy it evaluated first). It goes once the
    // policies are applied: their creation precedes its deletion in the API server's watches.
    for line in delete_ours(
        applier,
        settings,
        &removed_by(settings, Removal::NextInstall),
        Some("GMSA admission is installed again"),
    )
    .await?
    {
        println!("{line}");
    }
    if !server_dry_run {
        // Both admit, and agree, until the webhook configurations go; then only the policies.
        wait_policies_answer(applier, settings).await?;
        let (configurations, rest): (Vec<ObjectRef>, Vec<ObjectRef>) =
            removed_by(settings, Removal::SwitchToPolicies)
                .into_iter()
                .partition(is_webhook_configuration);
        for line in delete_ours(
            applier,
            settings,
            &configurations,
            Some("replaced by the admission policies"),
        )
        .await?
        {
            println!("{line}");
        }
        for object in manifest
            .workload
            .iter()
            .filter(|o| o.id.kind == Kind::Deployment)
        {
            println!("{}", apply_step(applier, object, &mut unchecked).await?.1);
        }
        if let Some(timeout) = options.wait {
            wait_available(applier, settings, timeout).await?;
        }
        for line in delete_ours(
            applier,
            settings,
            &rest,
            Some("replaced by the admission policies"),
        )
        .await?
        {
            println!("{line}");
        }
    } else {
        for object in manifest
            .workload
            .iter()
            .filter(|o| o.id.kind == Kind::Deployment)
        {
            println!("{}", apply_step(applier, object, &mut unchecked).await?.1);
        }
        if let Some(note) = unchecked.note() {
            eprintln!("{note}");
        }
    }
    if options.retire_reference {
        retire_reference(applier).await?;
    }
    Ok(ExitStatus::Success)
}

/// What [`publish_all`] found and did.
#[derive(Debug, Clone, Copy)]
pub struct Published {
    /// Every credential spec in the cluster.
    pub specs: usize,
    /// Those whose contents annotations were written.
    pub written: usize,
}

/// Publishes every spec whose annotations are not current, as `credspec --apply` does (the
/// keeper does the same from then on).
pub async fn publish_all(applier: &Applier) -> anyhow::Result<Published> {
    let api: Api<DynamicObject> =
        Api::all_with(applier.client.clone(), &credential_spec_resource());
    let list = api
        .list(&ListParams::default())
        .await
        .context("cannot list GMSACredentialSpecs to publish their contents")?;
    let specs = list.items.len();
    let mut written = 0;
    for item in list.items {
        let name = item.metadata.name.clone().unwrap_or_default();
        let published = crate::credspec::apply::publish(&api, item)
            .await
            .with_context(|| format!("cannot publish the contents of GMSACredentialSpec {name} (needs patch on gmsacredentialspecs)"))?;
        written += usize::from(published.written);
    }
    Ok(Published { specs, written })
}

/// Whether a write failed because the API server could not call our credential spec webhook.
fn webhook_unreachable(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        matches!(cause.downcast_ref::<kube::Error>(), Some(kube::Error::Api(s))
            if s.message.contains(&format!("failed calling webhook \"{}\"", names::CREDSPEC_WEBHOOK)))
    })
}

/// Waits (30 s) until the API server refuses, by a policy, a server-dry-run pod that names no
/// existing spec: the policies are loaded and evaluated.
async fn wait_policies_answer(applier: &Applier, settings: &Settings) -> anyhow::Result<()> {
    let policy = policies::pods_policy(&settings.name);
    if let Err(last) = wait_refused_by(applier, settings, &policy).await {
        bail!(
            "the admission policies did not answer within 30 s (last answer: {last}); the webhook, if any, is still registered: check `kubectl get validatingadmissionpolicies` and run install again"
        );
    }
    Ok(())
}

/// `--retire-reference` in policy mode: the reference's webhooks go once the policies answer,
/// as they do once our webhook does in webhook mode.
async fn retire_reference(applier: &Applier) -> anyhow::Result<()> {
    match crate::reference::find(&applier.client).await? {
        Some(found) => {
            for line in found.retire(applier).await? {
                println!("{line}");
            }
            eprintln!("the reference webhook is retired; its CRD and credential specs are kept");
        }
        None => eprintln!("--retire-reference: no reference webhook is registered"),
    }
    Ok(())
}

/// Whether any of policy mode's objects is in the cluster (a switch back to the webhook).
pub async fn policies_present(applier: &Applier, settings: &Settings) -> anyhow::Result<bool> {
    for object in removed_by(settings, Removal::SwitchToWebhook) {
        if applier
            .get(object.kind.info(), object.namespace(), &object.name)
            .await?
            .is_some()
        {
            return Ok(true);
        }
    }
    Ok(false)
}
