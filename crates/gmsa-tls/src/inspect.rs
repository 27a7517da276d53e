//! Reading certificates someone else made: their validity, and whether a CA bundle vouches
//! for them under a name. The installer decides from this whether a Secret can be kept, and
//! the doctor whether the API server will trust the webhook.

use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use time::OffsetDateTime;

use super::{crypto_provider, parse_chain, x509, TlsError};

/// When a certificate is valid, and who issued it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateValidity {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// The DNS names and IP addresses it is issued for.
    pub names: Vec<String>,
}

/// Every certificate of a PEM text, in order; `origin` names it in errors.
pub fn pem_certificates(origin: &str, pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    parse_chain(std::path::Path::new(origin), pem.as_bytes())
}

/// The validity window of a DER certificate.
pub fn certificate_validity(cert: &CertificateDer<'_>) -> Result<CertificateValidity, TlsError> {
    let info = x509::parse_certificate(cert).map_err(|reason| TlsError::InvalidCertificate {
        path: "<certificate>".into(),
        reason,
    })?;
    Ok(CertificateValidity {
        not_before: info.not_before,
        not_after: info.not_after,
        names: info.names,
    })
}

/// Whether `chain` (leaf first) is a valid serving certificate for `name` (DNS name or IP
/// address) at `now`, trusting only the CAs in `ca_bundle_pem`. The error says why not, in
/// the words of the TLS library (expired, unknown issuer, not valid for name).
pub fn verify_serving_chain(
    ca_bundle_pem: &str,
    chain: &[CertificateDer<'static>],
    name: &str,
    now: OffsetDateTime,
) -> Result<(), String> {
    let roots_der = pem_certificates("caBundle", ca_bundle_pem).map_err(|e| e.to_string())?;
    let mut roots = RootCertStore::empty();
    for root in roots_der {
        roots
            .add(root)
            .map_err(|e| format!("caBundle holds an unusable CA: {e}"))?;
    }
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), crypto_provider())
        .build()
        .map_err(|e| e.to_string())?;
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or_else(|| "no certificate".to_string())?;
    let server_name = match name.parse::<std::net::IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?,
    };
    let seconds = u64::try_from(now.unix_timestamp()).unwrap_or(0);
    verifier
        .verify_server_cert(
            leaf,
            intermediates,
            &server_name,
            &[],
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(seconds)),
        )
        .map(drop)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{issue_serving_cert, CertificateAuthority, Validity, CA_LIFETIME};
    use time::Duration;

    #[test]
    fn verifies_names_expiry_and_issuer() {
        let ca =
            CertificateAuthority::generate("a", Validity::starting_now(CA_LIFETIME)).expect("ca");
        let other =
            CertificateAuthority::generate("b", Validity::starting_now(CA_LIFETIME)).expect("ca");
        let issued = issue_serving_cert(
            &ca,
            &["gmsa-webhook.gmsa-system.svc", "127.0.0.1"],
            Validity::starting_now(Duration::days(40)),
        )
        .expect("issue");
        let chain = pem_certificates("tls.crt", &issued.cert_pem).expect("chain");
        let now = OffsetDateTime::now_utc();
        verify_serving_chain(ca.cert_pem(), &chain, "gmsa-webhook.gmsa-system.svc", now)
            .expect("valid");
        verify_serving_chain(ca.cert_pem(), &chain, "127.0.0.1", now).expect("ip");
        let both = format!("{}{}", other.cert_pem(), ca.cert_pem());
        verify_serving_chain(&both, &chain, "127.0.0.1", now).expect("bundle of two");
        assert!(verify_serving_chain(other.cert_pem(), &chain, "127.0.0.1", now).is_err());
        assert!(verify_serving_chain(ca.cert_pem(), &chain, "other.svc", now).is_err());
        let later = now + Duration::days(41);
        let err = verify_serving_chain(ca.cert_pem(), &chain, "127.0.0.1", later).unwrap_err();
        assert!(err.contains("xpired"), "{err}");
        let validity = certificate_validity(&chain[0]).expect("validity");
        assert!(validity.not_after > now + Duration::days(39));

        let again = CertificateAuthority::from_pem("ca.crt", ca.cert_pem(), &ca.key_pem())
            .expect("from pem");
        assert_eq!(again.cert_pem(), ca.cert_pem());
    }
}
