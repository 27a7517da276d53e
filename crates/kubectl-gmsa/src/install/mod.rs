//! `install`: render the webhook's objects with `gmsa-deploy`, and apply them phase by phase
//! by server-side apply, in an order where the API server never calls a webhook that is not
//! there; the objects of the other mode and the uninstall guard go once admission answers.

mod args;
pub mod certificates;
pub mod policies;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine as _;
use gmsa_deploy::{
    names, removed_by, Admission, CertMode, Kind, KubeVersion, Manifest, Removal, Settings,
    TlsMaterial,
};
use serde_json::Value;

use crate::apply::{Applier, Outcome};
use crate::cluster::{client, cluster_version, runtime};
use crate::exit::ExitStatus;
use crate::rollout::{
    apply_step, delete_ours, preflight, wait_available, wait_endpoints, wait_established, Unchecked,
};
pub use args::{InstallArgs, Toggle, INSTALL_EXAMPLES};
use certificates::current_ca_bundle;

fn to_yaml(manifest: &Manifest) -> anyhow::Result<String> {
    Ok(crate::output::yaml_documents(&manifest.bodies())?)
}

fn read_ca_bundle(path: &PathBuf) -> anyhow::Result<String> {
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --ca-bundle {}", path.display()))?;
    if certificates::pem_blocks(&pem).is_empty() {
        bail!("--ca-bundle {}: no PEM certificate in it", path.display());
    }
    Ok(pem)
}

/// `install`.
pub fn install(args: &InstallArgs) -> anyhow::Result<ExitStatus> {
    let sends = args.apply.sends();
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
            &to_yaml(&manifest)?,
        )?;
        return Ok(ExitStatus::Success);
    }
    runtime()?.block_on(install_to_cluster(args))
}

/// Certificates for output without a cluster: new self-signed ones, or the given CA.
fn offline_tls(args: &InstallArgs, settings: &Settings) -> anyhow::Result<Option<TlsMaterial>> {
    Ok(match &settings.certs {
        CertMode::SelfSigned => Some(
            certificates::self_signed(
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
    // Two installs would both answer every GMSA pod, and each waits for its own answer.
    match crate::apply::other_install(&client, &settings).await {
        Ok(Some(other)) => bail!("nothing was changed: {other}"),
        Ok(None) => {}
        Err(e) => eprintln!("note: could not look for another GMSA install ({e:#})"),
    }
    let server_dry_run = args.apply.server_dry_run();
    let applier = Applier {
        client: client.clone(),
        server_dry_run,
        force_conflicts: args.apply.force_conflicts,
    };
    if settings.admission == Admission::Policies {
        let options = policies::Options {
            output: args.output.output.as_deref(),
            force: args.output.force,
            wait: (!args.no_wait).then(|| Duration::from_secs(args.wait_timeout)),
            retire_reference: args.retire_reference,
        };
        return policies::install(options, &applier, &settings).await;
    }
    let ns = settings.namespace.as_str();

    // The self-signed Secret as read: its state, to stage a rotation from; its
    // resourceVersion goes with the apply, so a renewal the replicas make meanwhile is never
    // overwritten.
    let mut read_secret: Option<gmsa_deploy::SelfSignedSecret> = None;
    let mut tls = match &settings.certs {
        CertMode::SelfSigned => {
            let secret = certificates::stored_secret(&applier, &settings).await?;
            let existing = certificates::read_secret(secret.as_ref());
            let rv = secret
                .as_ref()
                .and_then(|s| s["metadata"]["resourceVersion"].as_str())
                .map(str::to_owned);
            read_secret = Some(existing.clone());
            let (mut material, issued) = certificates::self_signed(
                &settings,
                existing,
                args.rotate_certs,
                time::OffsetDateTime::now_utc(),
            )?;
            material.secret_resource_version = rv;
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
                    .get(Kind::Secret.info(), Some(ns), secret_name)
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
    if args.output.output.is_some() {
        crate::output::write(
            args.output.output.as_deref(),
            args.output.force,
            &to_yaml(&manifest)?,
        )?;
    }
    if !server_dry_run {
        preflight(&applier, &manifest.objects().collect::<Vec<_>>(), ns).await?;
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
    if let (true, Some(existing), Some((material, _))) = (rotating, &read_secret, &mut tls) {
        certificates::stage_rotation(&applier, &settings, existing, material, &manifest.admission)
            .await?;
        // The Secret is promoted with the resourceVersion the staging left.
        manifest = gmsa_deploy::render(&settings, Some(material))?;
    }

    let mut unchecked = Unchecked::new(ns);
    for object in manifest.before_admission() {
        let (outcome, line) = apply_step(&applier, object, &mut unchecked).await?;
        println!("{line}");
        if object.id.kind == Kind::CustomResourceDefinition
            && outcome == Some(Outcome::Created)
            && !server_dry_run
        {
            wait_established(&applier, &object.body).await?;
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
    if let (CertMode::SelfSigned, false, Some((material, _))) =
        (&settings.certs, server_dry_run, &mut tls)
    {
        let now = certificates::stored_secret(&applier, &settings).await?;
        material.also_trusted =
            certificates::read_secret(now.as_ref()).trusted(time::OffsetDateTime::now_utc());
        manifest = gmsa_deploy::render(&settings, Some(material))?;
    }
    for object in &manifest.admission {
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
    if !server_dry_run && policies::policies_present(&applier, &settings).await? {
        if let Err(last) = crate::rollout::wait_webhook_answers(&applier).await {
            bail!(
                "the API server did not send a probe pod in namespace default to the webhook within 30 s (last answer: {last}); \
                 the admission policies stay in place meanwhile: check `kubectl -n {ns} get pods` and run install again",
                ns = settings.namespace
            );
        }
    }
    for line in delete_ours(
        &applier,
        &settings,
        &removed_by(&settings, Removal::SwitchToWebhook),
        Some("replaced by the webhook"),
    )
    .await?
    {
        println!("{line}");
    }
    // Once the webhook answers (its validation compares pre-set contents with the live spec)
    // and the policies are gone: the finalizer policy mode kept on every spec. The webhook's
    // credspec validation is asked about each removal; while its replicas do not serve, the
    // finalizers stay, and the next install removes them.
    if !server_dry_run {
        if let Err(e) = policies::release_specs(&applier, &settings).await {
            eprintln!(
                "warning: {e:#}; run `{}` again once the webhook answers",
                gmsa_deploy::reinstall_command(&settings)
            );
        }
    }
    // And the guard an uninstall left: GMSA pods are admitted with their contents again.
    for line in delete_ours(
        &applier,
        &settings,
        &removed_by(&settings, Removal::NextInstall),
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
