//! `install --admission policies`: the admission policies instead of the webhook. Order
//! matters twice: every namespace's contents are published before the policies go live (a pod
//! naming a spec would otherwise be refused), and a webhook install being replaced is
//! unregistered only once the policies visibly answer (no pod is ever admitted unchecked).

use std::path::Path;
use std::time::Duration;

use std::collections::BTreeSet;

use anyhow::bail;
use gmsa_deploy::{names, policies, removed_by, Kind, ObjectRef, Removal, Settings};
use gmsa_kube::contents::{ContentsError, ContentsKeeper, Scope};

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
            wait_established(applier, &object.body).await?;
        }
    }
    // The policies on specs first: from now on no `credspec` changes and every spec created
    // gets its finalizer, so what is published next stays true.
    let on_specs = [
        policies::specs_policy(&settings.name),
        policies::finalize_policy(&settings.name),
    ];
    let (first, mut admission): (Vec<_>, Vec<_>) = manifest
        .admission
        .iter()
        .cloned()
        .partition(|o| on_specs.contains(&o.id.name));
    for object in &first {
        println!("{}", apply_step(applier, object, &mut unchecked).await?.1);
    }
    if !server_dry_run {
        let keeper =
            ContentsKeeper::new(applier.client.clone(), &settings.name, &settings.namespace);
        let published = match keeper.settle(PASSES, Scope::Publish).await {
            Err(e) if webhook_unreachable(&e) => {
                // Our webhook validates spec writes (the finalizer), and it is down: the
                // reason to switch, often. Without the validating configuration the mutating
                // one still refuses every GMSA pod (it fails closed), so nothing is admitted
                // unchecked meanwhile.
                eprintln!("note: the webhook's credential spec validation is unreachable; unregistering the validating webhook configuration first (GMSA pods stay refused by the mutating one until the policies answer)");
                let validating: Vec<ObjectRef> = removed_by(settings, Removal::SwitchToPolicies)
                    .into_iter()
                    .filter(|o| o.kind == Kind::ValidatingWebhookConfiguration)
                    .collect();
                for line in delete_ours(applier, settings, &validating, Some("unreachable")).await?
                {
                    println!("{line}");
                }
                keeper.settle(PASSES, Scope::Publish).await?
            }
            other => other?,
        };
        let observed = keeper.observe_contents().await?;
        eprintln!(
            "contents: {} write(s); {} namespace(s) hold the contents of the specs their service accounts may use",
            published.len(),
            observed.objects.len()
        );
        // A first install lists the namespaces holding an object already, so their GMSA pods
        // are admitted from the first moment the policies answer. Once the binding exists the
        // list is the keeper's: install applies it as stored, on the condition that it has not
        // changed since (a keeper may be unlisting a namespace whose object goes next).
        let elsewhere = policies::elsewhere_policy(&settings.name);
        let listing = keeper.listing().await?;
        let listed: BTreeSet<String> = match &listing {
            Some(stored) => stored.listed.clone(),
            None => observed.objects.keys().cloned().collect(),
        };
        for object in admission.iter_mut().filter(|o| {
            o.id.kind == Kind::ValidatingAdmissionPolicyBinding && o.id.name == elsewhere
        }) {
            *object = policies::elsewhere_binding_object(settings, &listed);
            if let Some(stored) = &listing {
                object.body["metadata"]["resourceVersion"] =
                    serde_json::Value::String(stored.resource_version.clone());
            }
        }
    }
    for object in &admission {
        println!("{}", apply_step(applier, object, &mut unchecked).await?.1);
    }
    if !server_dry_run {
        // What changed meanwhile; listing, deleting and releasing are the keeper's alone (two
        // writers deciding from different observations could list a namespace the other
        // just emptied).
        ContentsKeeper::new(applier.client.clone(), &settings.name, &settings.namespace)
            .settle(PASSES, Scope::Publish)
            .await?;
        let retired: Vec<ObjectRef> = policies::retired(&settings.name)
            .into_iter()
            .map(|(kind, name)| ObjectRef::cluster(kind, name))
            .collect();
        for line in delete_ours(
            applier,
            settings,
            &retired,
            Some("replaced by the namespaces' published contents"),
        )
        .await?
        {
            println!("{line}");
        }
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

/// How often install observes and writes the contents before giving up on a cluster that
/// keeps changing (the keeper carries on from there).
const PASSES: usize = 5;

/// Whether a write failed because the API server could not call our credential spec webhook.
fn webhook_unreachable(e: &ContentsError) -> bool {
    e.to_string().contains(&format!(
        "failed calling webhook \"{}\"",
        names::CREDSPEC_WEBHOOK
    ))
}

/// Waits (30 s) until the API server refuses, by the `-pods` policy, a server-dry-run pod
/// that names no existing spec, in the install's namespace: the policies are loaded, and read
/// that namespace's published contents (always written, if empty). Until the API server can
/// read them (a new CRD is not known to it at once), the pod policies would skip every
/// namespace as if it had none, so nothing is switched before.
async fn wait_policies_answer(applier: &Applier, settings: &Settings) -> anyhow::Result<()> {
    let policy = [policies::pods_policy(&settings.name)];
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

/// Policy mode is gone (uninstall, a switch to the webhook): removes the finalizer it kept on
/// every credential spec, or deleting a spec would wait forever for a keeper that no longer
/// runs. Retried for a while: the API server may still apply the `-specs` policy, which lets
/// only the keeper remove it, for a moment after its deletion.
pub async fn release_specs(applier: &Applier, settings: &Settings) -> anyhow::Result<()> {
    if applier.server_dry_run {
        return Ok(());
    }
    let keeper = ContentsKeeper::new(applier.client.clone(), &settings.name, &settings.namespace);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut passes = 0;
    loop {
        match keeper.release_every_spec().await {
            Ok(released) => {
                if !released.is_empty() {
                    println!(
                        "released {} credential spec(s) from finalizer {}",
                        released.len(),
                        gmsa_core::names::contents::FINALIZER
                    );
                }
                // Once more after a while when there were any: a keeper in the middle of a
                // pass when its binding went may have finalized a spec again.
                passes += 1;
                if passes == 2 || released.is_empty() {
                    return Ok(());
                }
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(e) => bail!(
                "cannot remove finalizer {} from the credential specs: {e}; remove it by hand \
                 (kubectl patch gmsacredentialspec NAME --type=json -p '[{{\"op\":\"remove\",\"path\":\"/metadata/finalizers/0\"}}]')",
                gmsa_core::names::contents::FINALIZER
            ),
        }
    }
}
