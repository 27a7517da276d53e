//! Self-signed certificates for the webhook: keep what the cluster has while it is good for
//! more than 30 days, otherwise make a new CA and serving certificate with the webhook's own
//! TLS code. A new CA never replaces the old one at once: the webhook configurations trust
//! both for a while, so replicas still serving the old certificate keep being trusted until
//! the kubelet has delivered the new Secret and the webhook has reloaded it.

use std::collections::BTreeMap;

use gmsa_deploy::{names, Settings, TlsMaterial};
use gmsa_tls::{
    certificate_validity, issue_serving_cert, pem_certificates, verify_serving_chain,
    CertificateAuthority, Validity, CA_LIFETIME, SERVING_CERT_LIFETIME,
};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

/// Certificates are replaced when they expire sooner than this.
pub const RENEW_BEFORE: Duration = Duration::days(30);
/// How long the replaced CA stays trusted: the kubelet refreshes Secret volumes within about
/// a minute and the webhook reloads within seconds; this leaves a wide margin.
pub const PREVIOUS_CA_GRACE: Duration = Duration::minutes(15);
/// Common name of the installer's CA.
pub const CA_NAME: &str = "gmsa-webhook CA";

/// What the cluster holds now.
#[derive(Debug, Clone, Default)]
pub struct Existing {
    /// The Secret's `tls.crt`, `tls.key`, `ca.crt`, if the Secret exists.
    pub cert_pem: Option<String>,
    pub key_pem: Option<String>,
    pub ca_pem: Option<String>,
    pub annotations: BTreeMap<String, String>,
    /// The webhook configurations' current `caBundle` (PEM).
    pub ca_bundle_pem: Option<String>,
}

/// What was decided, for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Reused,
    Issued(String),
}

/// Why a Secret's certificates cannot be kept, or `None` when they can.
fn unusable(settings: &Settings, existing: &Existing, now: OffsetDateTime) -> Option<String> {
    let (Some(cert), Some(_key), Some(ca)) =
        (&existing.cert_pem, &existing.key_pem, &existing.ca_pem)
    else {
        return Some("no certificate yet".into());
    };
    let chain = match pem_certificates(names::TLS_CERT_KEY, cert) {
        Ok(chain) => chain,
        Err(e) => return Some(e.to_string()),
    };
    let deadline = now + RENEW_BEFORE;
    for name in settings.serving_names() {
        if let Err(e) = verify_serving_chain(ca, &chain, &name, deadline) {
            return Some(format!(
                "the certificate will not do for {name} in 30 days: {e}"
            ));
        }
    }
    let ca_chain = match pem_certificates(names::CA_CERT_KEY, ca) {
        Ok(chain) => chain,
        Err(e) => return Some(e.to_string()),
    };
    match certificate_validity(&ca_chain[0]) {
        Ok(v) if v.not_after > deadline => None,
        Ok(_) => Some("the CA expires within 30 days".into()),
        Err(e) => Some(e.to_string()),
    }
}

/// PEM blocks of a bundle that are still valid at `now`, without duplicates.
fn valid_cas(pem: &str, now: OffsetDateTime) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for block in pem_blocks(pem) {
        let keep = pem_certificates("caBundle", &block)
            .ok()
            .and_then(|c| certificate_validity(&c[0]).ok())
            .is_some_and(|v| v.not_after > now);
        if keep && !out.contains(&block) {
            out.push(block);
        }
    }
    out
}

/// The `-----BEGIN CERTIFICATE-----` blocks of a PEM text, normalised.
pub fn pem_blocks(pem: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in pem.lines().map(str::trim) {
        if line == "-----BEGIN CERTIFICATE-----" {
            current = Some(String::new());
        }
        if let Some(block) = current.as_mut() {
            block.push_str(line);
            block.push('\n');
        }
        if line == "-----END CERTIFICATE-----" {
            if let Some(block) = current.take() {
                blocks.push(block);
            }
        }
    }
    blocks
}

fn grace_until(existing: &Existing) -> Option<OffsetDateTime> {
    existing
        .annotations
        .get(names::PREVIOUS_CA_UNTIL_ANNOTATION)
        .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
}

/// Decides the self-signed material: reuse, or issue (always when `rotate`).
pub fn self_signed(
    settings: &Settings,
    existing: &Existing,
    rotate: bool,
    now: OffsetDateTime,
) -> anyhow::Result<(TlsMaterial, Decision)> {
    let reason = if rotate {
        Some("--rotate-certs".to_string())
    } else {
        unusable(settings, existing, now)
    };
    let Some(reason) = reason else {
        let ca = existing.ca_pem.clone().unwrap_or_default();
        let mut bundle = pem_blocks(&ca);
        let mut annotations = BTreeMap::new();
        if grace_until(existing).is_some_and(|until| until > now) {
            // Still within a rotation: keep trusting the CAs the bundle had.
            for block in valid_cas(existing.ca_bundle_pem.as_deref().unwrap_or(""), now) {
                if !bundle.contains(&block) {
                    bundle.push(block);
                }
            }
            if let Some(value) = existing
                .annotations
                .get(names::PREVIOUS_CA_UNTIL_ANNOTATION)
            {
                annotations.insert(names::PREVIOUS_CA_UNTIL_ANNOTATION.into(), value.clone());
            }
        }
        let material = TlsMaterial {
            ca_bundle_pem: bundle.concat(),
            ca_pem: ca,
            cert_pem: existing.cert_pem.clone().unwrap_or_default(),
            key_pem: existing.key_pem.clone().unwrap_or_default(),
            secret_annotations: annotations,
        };
        return Ok((material, Decision::Reused));
    };

    let ca = CertificateAuthority::generate(CA_NAME, Validity::starting_now(CA_LIFETIME))?;
    let issued = issue_serving_cert(
        &ca,
        &settings.serving_names(),
        Validity::starting_now(SERVING_CERT_LIFETIME),
    )?;
    let mut bundle = pem_blocks(ca.cert_pem());
    let mut previous = valid_cas(existing.ca_pem.as_deref().unwrap_or(""), now);
    previous.extend(valid_cas(
        existing.ca_bundle_pem.as_deref().unwrap_or(""),
        now,
    ));
    let mut annotations = BTreeMap::new();
    for block in previous {
        if !bundle.contains(&block) {
            bundle.push(block);
        }
    }
    if bundle.len() > 1 {
        let until = (now + PREVIOUS_CA_GRACE)
            .replace_nanosecond(0)
            .unwrap_or(now + PREVIOUS_CA_GRACE);
        annotations.insert(
            names::PREVIOUS_CA_UNTIL_ANNOTATION.into(),
            until.format(&Rfc3339)?,
        );
    }
    let material = TlsMaterial {
        ca_bundle_pem: bundle.concat(),
        ca_pem: ca.cert_pem().to_string(),
        cert_pem: issued.cert_pem,
        key_pem: issued.key_pem,
        secret_annotations: annotations,
    };
    Ok((material, Decision::Issued(reason)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn existing_from(m: &TlsMaterial) -> Existing {
        Existing {
            cert_pem: Some(m.cert_pem.clone()),
            key_pem: Some(m.key_pem.clone()),
            ca_pem: Some(m.ca_pem.clone()),
            annotations: m.secret_annotations.clone(),
            ca_bundle_pem: Some(m.ca_bundle_pem.clone()),
        }
    }

    #[test]
    fn issues_then_reuses_then_rotates_with_both_cas() {
        let settings = Settings::default();
        let now = OffsetDateTime::now_utc();
        let (first, decision) = self_signed(&settings, &Existing::default(), false, now).unwrap();
        assert!(matches!(decision, Decision::Issued(_)));
        assert_eq!(pem_blocks(&first.ca_bundle_pem).len(), 1);
        assert!(first.secret_annotations.is_empty());

        let (again, decision) = self_signed(&settings, &existing_from(&first), false, now).unwrap();
        assert_eq!(decision, Decision::Reused);
        assert_eq!(again, first);

        let (rotated, decision) =
            self_signed(&settings, &existing_from(&first), true, now).unwrap();
        assert!(matches!(decision, Decision::Issued(_)));
        let bundle = pem_blocks(&rotated.ca_bundle_pem);
        assert_eq!(bundle.len(), 2);
        assert_eq!(bundle[0], rotated.ca_pem);
        assert_eq!(bundle[1], first.ca_pem);

        // Within the grace period a re-install keeps both; after it, only the new CA.
        let (during, _) = self_signed(&settings, &existing_from(&rotated), false, now).unwrap();
        assert_eq!(during, rotated);
        let later = now + PREVIOUS_CA_GRACE + Duration::minutes(1);
        let (after, decision) =
            self_signed(&settings, &existing_from(&rotated), false, later).unwrap();
        assert_eq!(decision, Decision::Reused);
        assert_eq!(
            pem_blocks(&after.ca_bundle_pem),
            vec![rotated.ca_pem.clone()]
        );
        assert!(after.secret_annotations.is_empty());
    }

    #[test]
    fn replaces_certificates_that_expire_soon_or_do_not_fit() {
        let settings = Settings::default();
        let now = OffsetDateTime::now_utc();
        let (first, _) = self_signed(&settings, &Existing::default(), false, now).unwrap();
        let in_a_year = now + Duration::days(340);
        let (_, decision) =
            self_signed(&settings, &existing_from(&first), false, in_a_year).unwrap();
        assert!(
            matches!(decision, Decision::Issued(ref r) if r.contains("30 days")),
            "{decision:?}"
        );
        let renamed = Settings {
            name: "other".into(),
            ..Settings::default()
        };
        let (_, decision) = self_signed(&renamed, &existing_from(&first), false, now).unwrap();
        assert!(matches!(decision, Decision::Issued(_)));
    }
}
