//! The X.509 fields this crate needs that rustls does not expose: validity, the encoded names
//! (path building compares them byte for byte), read with `x509-parser`.

use std::net::IpAddr;

use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// The parts of a certificate used for expiry checks and for checking what a CA signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertInfo {
    /// The whole encoded issuer `Name`.
    pub issuer: Vec<u8>,
    /// The whole encoded subject `Name`.
    pub subject: Vec<u8>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// DNS names and IP addresses of the subject alternative name extension, as text.
    pub names: Vec<String>,
}

/// Reads a DER certificate; the error says what is wrong with it, for a `TlsError`.
pub(crate) fn parse_certificate(der: &[u8]) -> Result<CertInfo, String> {
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    if !rest.is_empty() {
        return Err(format!("{} bytes after the certificate's end", rest.len()));
    }
    let validity = cert.validity();
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.push((*dns).to_string()),
                GeneralName::IPAddress(bytes) => match bytes.len() {
                    4 => names.push(
                        IpAddr::from(<[u8; 4]>::try_from(*bytes).unwrap_or_default()).to_string(),
                    ),
                    16 => names.push(
                        IpAddr::from(<[u8; 16]>::try_from(*bytes).unwrap_or_default()).to_string(),
                    ),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Ok(CertInfo {
        issuer: cert.issuer().as_raw().to_vec(),
        subject: cert.subject().as_raw().to_vec(),
        not_before: validity.not_before.to_datetime(),
        not_after: validity.not_after.to_datetime(),
        names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
    use time::{Month, PrimitiveDateTime, Time};

    fn utc(year: i32, month: Month, day: u8, h: u8, m: u8, s: u8) -> OffsetDateTime {
        PrimitiveDateTime::new(
            time::Date::from_calendar_date(year, month, day).unwrap(),
            Time::from_hms(h, m, s).unwrap(),
        )
        .assume_utc()
    }

    /// Both time encodings (UTCTime before 2050, GeneralizedTime after), and the names as
    /// encoded.
    #[test]
    fn reads_validity_and_names() {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "reader test");
        dn.push(DnType::OrganizationName, "gmsa");
        params.distinguished_name = dn;
        params.not_before = utc(2020, Month::January, 2, 3, 4, 5);
        params.not_after = utc(2150, Month::February, 3, 4, 5, 6);
        let cert = params.self_signed(&key).unwrap();
        let info = parse_certificate(cert.der()).unwrap();
        assert_eq!(info.not_before, utc(2020, Month::January, 2, 3, 4, 5));
        assert_eq!(info.not_after, utc(2150, Month::February, 3, 4, 5, 6));
        assert_eq!(info.issuer, info.subject, "self-signed");
        assert!(info.names.is_empty());
        let named =
            CertificateParams::new(vec!["svc.ns.svc".into(), "127.0.0.1".into(), "::1".into()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
        assert_eq!(
            parse_certificate(named.der()).unwrap().names,
            ["svc.ns.svc", "127.0.0.1", "::1"]
        );
        let text = String::from_utf8_lossy(&info.subject).into_owned();
        assert!(
            text.contains("reader test") && text.contains("gmsa"),
            "{text}"
        );
    }

    #[test]
    fn rejects_garbage_and_trailing_bytes() {
        assert!(parse_certificate(b"not der").is_err());
        assert!(parse_certificate(&[]).is_err());
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::default().self_signed(&key).unwrap();
        let mut padded = cert.der().to_vec();
        padded.push(0);
        let err = parse_certificate(&padded).unwrap_err();
        assert!(err.contains("after the certificate"), "{err}");
    }
}
