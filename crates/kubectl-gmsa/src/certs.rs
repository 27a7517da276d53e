//! Self-signed certificates at install: what the cluster's Secret holds, read into the layout
//! the webhook's replicas renew in place, and the installer's decision on it
//! ([`SelfSignedSecret::install`]): keep a pair good for more than 30 days, else serve a new
//! one at once with the replaced CA still trusted.

use std::collections::BTreeMap;

use base64::Engine as _;
use gmsa_deploy::{Settings, TlsMaterial};
use gmsa_tls::self_signed::{Policy, SelfSignedSecret};
use serde_json::Value;
use time::OffsetDateTime;

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
    };
    Ok((material, issued))
}
