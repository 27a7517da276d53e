//! Self-signed certificates at install: what the cluster's Secret holds, read into the layout
//! the webhook's replicas renew in place, and the installer's decision on it
//! ([`SelfSignedSecret::install`]): keep a pair good for more than 30 days, else serve a new
//! one at once with the replaced CA still trusted.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use gmsa_deploy::{names, Kind, Object, Settings, TlsMaterial};
use gmsa_tls::self_signed::{Policy, SelfSignedSecret};
use serde_json::Value;
use time::OffsetDateTime;

use crate::apply::Applier;

/// How long the API server gets to load caBundles that trust a new CA before the Secret
/// serves a certificate it signed.
pub const ROTATION_SETTLE: Duration = Duration::from_secs(3);

pub use gmsa_tls::self_signed::pem_blocks;

/// When doctor warns about an expiring certificate: when the renewal would replace it.
pub fn renew_before() -> time::Duration {
    Policy::default().renew_before
}

/// The self-signed layout of a Secret object (as JSON), or an empty one when there is none.
pub fn read_secret(secret: Option<&Value>) -> SelfSignedSecret {
    let Some(secret) = secret else {
        return SelfSignedSecret::default();
    };
    let data: BTreeMap<String, String> = secret["data"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v.as_str()?)
                .ok()?;
            Some((k.clone(), String::from_utf8(bytes).ok()?))
        })
        .collect();
    let annotations: BTreeMap<String, String> =
        serde_json::from_value(secret["metadata"]["annotations"].clone()).unwrap_or_default();
    SelfSignedSecret::from_secret(&data, &annotations)
}

/// The self-signed Secret as stored, if there is one.
pub async fn stored_secret(
    applier: &Applier,
    settings: &Settings,
) -> anyhow::Result<Option<Value>> {
    let secret = names::tls_secret(&settings.name);
    applier
        .get(Kind::Secret.info(), Some(&settings.namespace), &secret)
        .await
}

/// The material to apply and, when a new pair was issued, why.
pub fn self_signed(
    settings: &Settings,
    mut secret: SelfSignedSecret,
    rotate: bool,
    now: OffsetDateTime,
) -> anyhow::Result<(TlsMaterial, Option<String>)> {
    let issued = secret.install(&settings.serving_names(), rotate, now, &Policy::default())?;
    let material = TlsMaterial {
        ca_bundle_pem: secret.trusted(now).concat(),
        secret: Some(secret),
        ..TlsMaterial::default()
    };
    Ok((material, issued))
}

/// The first half of a rotation: the new pair staged in the Secret (beside the one served),
/// then every caBundle (`admission`, trusting both), then a pause for the API server to load
/// them, as the replicas' renewal does; a replica that looks in between sees a staged CA, not
/// an unknown one to drop. The install then promotes the pair with the resourceVersion left
/// in `material`.
pub async fn stage_rotation(
    applier: &Applier,
    settings: &Settings,
    existing: &SelfSignedSecret,
    material: &mut TlsMaterial,
    admission: &[Object],
) -> anyhow::Result<()> {
    let staged = TlsMaterial {
        secret: Some(SelfSignedSecret {
            current: existing.current.clone(),
            staged: material.secret.as_ref().and_then(|s| s.current.clone()),
            previous: existing.previous.clone(),
        }),
        ..material.clone()
    };
    let secret = gmsa_deploy::tls_secret(settings, &staged);
    println!("{} (new CA staged)", applier.apply(&secret).await?.1);
    for object in admission {
        println!("{}", applier.apply(object).await?.1);
    }
    if !applier.server_dry_run {
        eprintln!("certificates: the webhook configurations trust the new CA; waiting for the API server to load them");
        tokio::time::sleep(ROTATION_SETTLE).await;
        // The staged write moved the resourceVersion; a replica may even have promoted
        // the staged pair itself, which is what this install is about to write.
        let now = stored_secret(applier, settings).await?;
        if let Some(rv) = now
            .as_ref()
            .and_then(|s| s["metadata"]["resourceVersion"].as_str())
        {
            material.secret_resource_version = Some(rv.to_owned());
        }
    }
    Ok(())
}

pub fn decode_bundle(b64: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    String::from_utf8(bytes).ok()
}

/// What the webhook configurations trust now (the mutating one's first caBundle).
pub async fn current_ca_bundle(applier: &Applier, name: &str) -> anyhow::Result<Option<String>> {
    let info = Kind::MutatingWebhookConfiguration.info();
    Ok(applier
        .get(info, None, &names::webhook_configuration(name))
        .await?
        .and_then(|c| {
            c["webhooks"][0]["clientConfig"]["caBundle"]
                .as_str()
                .map(str::to_owned)
        })
        .and_then(|b| decode_bundle(&b)))
}
