//! A private CA and certificates signed by it, for development, tests and the
//! install command (which signs `<service>.<namespace>.svc` with it).

use std::fmt;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use time::{Duration, OffsetDateTime};

use super::{certified_key, crypto_provider, parse_chain, read, x509, TlsError};

/// Certificates start this far in the past so that clocks running slightly
/// behind ours still accept them.
pub const NOT_BEFORE_BACKDATE: Duration = Duration::hours(1);
/// Lifetime of a generated CA.
pub const CA_LIFETIME: Duration = Duration::days(3650);
/// Lifetime of a generated serving certificate.
pub const SERVING_CERT_LIFETIME: Duration = Duration::days(365);
/// Existing dev certificates are replaced when they expire sooner than this.
const MIN_REMAINING: Duration = Duration::days(1);

/// Common name of the development CA.
pub const DEV_CA_NAME: &str = "gmsa-webhook development CA";
/// Names the development serving certificate is valid for.
pub const DEV_SERVING_NAMES: &[&str] = &["localhost", "127.0.0.1"];

/// The validity window written into a certificate. Always explicit: rcgen's
/// default (1975 to 4096) would produce certificates that never expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// First moment the certificate is valid.
    pub not_before: OffsetDateTime,
    /// Last moment the certificate is valid.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// Valid from an hour ago until `lifetime` from now.
    pub fn starting_now(lifetime: Duration) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            not_before: now - NOT_BEFORE_BACKDATE,
            not_after: now + lifetime,
        }
    }
}

/// A certificate and its private key, PEM-encoded, ready to be written out or
/// put into a Secret.
#[derive(Clone)]
pub struct IssuedCert {
    /// The certificate (`tls.crt`).
    pub cert_pem: String,
    /// Its PKCS#8 private key (`tls.key`); keep it out of logs.
    pub key_pem: String,
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[redacted]")
            .finish()
    }
}

/// A CA that can sign certificates: its certificate plus signing key.
pub struct CertificateAuthority {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    subject: Vec<u8>,
    not_after: OffsetDateTime,
    issuer: Issuer<'static, KeyPair>,
    /// Shown in errors about this CA.
    origin: PathBuf,
}

impl CertificateAuthority {
    /// Creates a self-signed ECDSA P-256 CA.
    pub fn generate(common_name: &str, validity: Validity) -> Result<Self, TlsError> {
        let key = generate_key("a CA key")?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        let cert = params
            .self_signed(&key)
            .map_err(|source| TlsError::Generate {
                what: "a CA certificate",
                source,
            })?;
        let cert_pem = cert.pem();
        let origin = PathBuf::from(format!("<generated CA '{common_name}'>"));
        Self::assemble(cert_pem, cert.der().clone(), key, origin)
    }

    /// Loads a CA from a PEM certificate and an unencrypted PKCS#8 key,
    /// refusing a key that does not belong to the certificate.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let cert_pem = read(cert_path)?;
        let key_pem = read(key_path)?;
        Self::from_pem_at(cert_path, &cert_pem, key_path, &key_pem)
    }

    /// As [`CertificateAuthority::load`], from PEM text (a Secret's `ca.crt` and a key);
    /// `origin` names where it came from in errors.
    pub fn from_pem(origin: &str, cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        let path = Path::new(origin);
        Self::from_pem_at(path, cert_pem.as_bytes(), path, key_pem.as_bytes())
    }

    fn from_pem_at(
        cert_path: &Path,
        cert_pem: &[u8],
        key_path: &Path,
        key_pem: &[u8],
    ) -> Result<Self, TlsError> {
        // Same checks as for serving: parseable chain, matching key.
        certified_key(cert_path, cert_pem, key_path, key_pem)?;
        let cert_der = parse_chain(cert_path, cert_pem)?.swap_remove(0);
        let key_text = String::from_utf8_lossy(key_pem);
        let key = KeyPair::from_pem(&key_text).map_err(|source| TlsError::CaKey {
            path: key_path.to_owned(),
            source,
        })?;
        let cert_text = String::from_utf8_lossy(cert_pem).into_owned();
        Self::assemble(cert_text, cert_der, key, cert_path.to_owned())
    }

    fn assemble(
        cert_pem: String,
        cert_der: CertificateDer<'static>,
        key: KeyPair,
        origin: PathBuf,
    ) -> Result<Self, TlsError> {
        let info =
            x509::parse_certificate(&cert_der).map_err(|reason| TlsError::InvalidCertificate {
                path: origin.clone(),
                reason,
            })?;
        // rcgen reads the CA's name and subject key identifier from the certificate itself,
        // so issued certificates name it and point at its key exactly as it is written.
        let issuer = Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| TlsError::CaName {
            path: origin.clone(),
            reason: e.to_string(),
        })?;
        let subject = info.subject;
        let not_after = info.not_after;
        Ok(Self {
            cert_pem,
            cert_der,
            subject,
            not_after,
            issuer,
            origin,
        })
    }

    /// The CA certificate, PEM-encoded (the webhook configuration's `caBundle`).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER-encoded (for trust stores).
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The CA's private key, PEM-encoded PKCS#8.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// When the CA certificate expires.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("origin", &self.origin)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Issues a serving certificate (ECDSA P-256, `serverAuth`) for the given DNS
/// names and IP addresses, signed by `ca`. The first name becomes the common
/// name.
pub fn issue_serving_cert(
    ca: &CertificateAuthority,
    names: &[impl AsRef<str>],
    validity: Validity,
) -> Result<IssuedCert, TlsError> {
    let names: Vec<String> = names.iter().map(|n| n.as_ref().to_owned()).collect();
    let mut params =
        CertificateParams::new(names.clone()).map_err(|source| TlsError::Generate {
            what: "a serving certificate (invalid DNS name)",
            source,
        })?;
    params.distinguished_name = DistinguishedName::new();
    if let Some(first) = names.first() {
        params
            .distinguished_name
            .push(DnType::CommonName, first.as_str());
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    issue(ca, params, validity, "a serving certificate")
}

/// Issues a client certificate (ECDSA P-256, `clientAuth`) for `common_name`,
/// signed by `ca`; the counterpart of the server's client-CA mode.
pub fn issue_client_cert(
    ca: &CertificateAuthority,
    common_name: &str,
    validity: Validity,
) -> Result<IssuedCert, TlsError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    issue(ca, params, validity, "a client certificate")
}

fn issue(
    ca: &CertificateAuthority,
    mut params: CertificateParams,
    validity: Validity,
    what: &'static str,
) -> Result<IssuedCert, TlsError> {
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    let key = generate_key(what)?;
    let cert = params
        .signed_by(&key, &ca.issuer)
        .map_err(|source| TlsError::Generate { what, source })?;
    // Path building matches issuer to subject byte for byte; a CA name that
    // rcgen re-encoded differently would yield certificates nobody can verify.
    let issuer_matches = x509::parse_certificate(cert.der())
        .map(|info| info.issuer == ca.subject.as_slice())
        .unwrap_or(false);
    if !issuer_matches {
        return Err(TlsError::CaName {
            path: ca.origin.clone(),
            reason: "the issuer name written differs from the CA's subject".to_owned(),
        });
    }
    Ok(IssuedCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn generate_key(what: &'static str) -> Result<KeyPair, TlsError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|source| TlsError::Generate { what, source })
}

/// Where [`dev_certs`] put its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevCerts {
    /// The CA certificate clients should trust.
    pub ca: PathBuf,
    /// The CA key (mode 0600), kept so the serving certificate can be renewed
    /// without clients having to trust a new CA.
    pub ca_key: PathBuf,
    /// The serving certificate for `localhost` and `127.0.0.1`.
    pub cert: PathBuf,
    /// The serving key (mode 0600).
    pub key: PathBuf,
}

/// Makes sure `dir` holds a development CA (`ca.crt`, `ca.key`) and a serving
/// certificate signed by it (`tls.crt`, `tls.key`), reusing what is there
/// while it is valid for more than a day, so repeated runs keep the CA that
/// clients were told to trust.
pub fn dev_certs(dir: &Path) -> Result<DevCerts, TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let paths = DevCerts {
        ca: dir.join("ca.crt"),
        ca_key: dir.join("ca.key"),
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    };
    let renew_before = OffsetDateTime::now_utc() + MIN_REMAINING;

    let reused_ca = if paths.ca.exists() || paths.ca_key.exists() {
        match CertificateAuthority::load(&paths.ca, &paths.ca_key) {
            Ok(ca) if ca.not_after() > renew_before => Some(ca),
            Ok(_) => {
                tracing::info!(ca = %paths.ca.display(), "development CA expires within a day; creating a new one");
                None
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot reuse the development CA; creating a new one");
                None
            }
        }
    } else {
        None
    };

    let ca = match reused_ca {
        Some(ca) => {
            restrict_to_owner(&paths.ca_key)?;
            if serving_cert_is_reusable(&ca, &paths, renew_before) {
                restrict_to_owner(&paths.key)?;
                tracing::debug!(dir = %dir.display(), "reusing development certificates");
                return Ok(paths);
            }
            ca
        }
        None => {
            let ca =
                CertificateAuthority::generate(DEV_CA_NAME, Validity::starting_now(CA_LIFETIME))?;
            write_private(&paths.ca_key, ca.key_pem().as_bytes())?;
            write_public(&paths.ca, ca.cert_pem().as_bytes())?;
            ca
        }
    };

    let issued = issue_serving_cert(
        &ca,
        DEV_SERVING_NAMES,
        Validity::starting_now(SERVING_CERT_LIFETIME),
    )?;
    // Key first: a reloader that reads in between sees a mismatch and keeps
    // the old pair rather than serving a new key with an old certificate.
    write_private(&paths.key, issued.key_pem.as_bytes())?;
    write_public(&paths.cert, issued.cert_pem.as_bytes())?;
    tracing::info!(dir = %dir.display(), "created development certificates");
    Ok(paths)
}

/// Whether the existing serving pair matches, lasts past `renew_before`, is
/// signed by `ca` and covers every development name.
fn serving_cert_is_reusable(
    ca: &CertificateAuthority,
    paths: &DevCerts,
    renew_before: OffsetDateTime,
) -> bool {
    let check = || -> Result<bool, String> {
        let cert_pem = read(&paths.cert).map_err(|e| e.to_string())?;
        let key_pem = read(&paths.key).map_err(|e| e.to_string())?;
        let certified = certified_key(&paths.cert, &cert_pem, &paths.key, &key_pem)
            .map_err(|e| e.to_string())?;
        let leaf = certified.end_entity_cert().map_err(|e| e.to_string())?;
        let info = x509::parse_certificate(leaf)?;
        if info.not_after <= renew_before {
            return Ok(false);
        }
        let mut roots = RootCertStore::empty();
        roots
            .add(ca.cert_der().clone())
            .map_err(|e| e.to_string())?;
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), crypto_provider())
                .build()
                .map_err(|e| e.to_string())?;
        for name in DEV_SERVING_NAMES {
            let server_name = match name.parse::<IpAddr>() {
                Ok(ip) => ServerName::IpAddress(ip.into()),
                Err(_) => ServerName::try_from(*name).map_err(|e| e.to_string())?,
            };
            verifier
                .verify_server_cert(
                    leaf,
                    &certified.cert[1..],
                    &server_name,
                    &[],
                    UnixTime::now(),
                )
                .map_err(|e| format!("not valid for {name}: {e}"))?;
        }
        Ok(true)
    };
    match check() {
        Ok(reusable) => reusable,
        Err(reason) => {
            tracing::info!(cert = %paths.cert.display(), %reason, "replacing the development serving certificate");
            false
        }
    }
}

/// Writes a key readable by the owner only, replacing any file atomically so
/// that readers never see a partial key and old permissions do not linger.
fn write_private(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    write_atomically(path, contents, 0o600)
}

/// Tightens a reused key file that was made readable to others.
fn restrict_to_owner(path: &Path) -> Result<(), TlsError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let err = |source| TlsError::Write {
            path: path.to_owned(),
            source,
        };
        let mode = std::fs::metadata(path).map_err(err)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))
                .map_err(err)?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn write_public(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    write_atomically(path, contents, 0o644)
}

fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let err = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    // A stale temporary file from an interrupted run may carry other permissions.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let mut file = options.open(&tmp).map_err(err)?;
    file.write_all(contents).map_err(err)?;
    file.sync_all().map_err(err)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_is_explicit_and_backdated() {
        let before = OffsetDateTime::now_utc();
        let v = Validity::starting_now(Duration::days(365));
        assert!(v.not_before <= before - Duration::minutes(59));
        assert!(v.not_after >= before + Duration::days(365));
        assert!(v.not_after <= OffsetDateTime::now_utc() + Duration::days(366));
    }

    #[test]
    fn issued_certificates_carry_the_requested_validity_and_chain_to_a_loaded_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = CertificateAuthority::generate("test CA", Validity::starting_now(CA_LIFETIME))
            .expect("ca");
        let (ca_crt, ca_key) = (dir.path().join("ca.crt"), dir.path().join("ca.key"));
        std::fs::write(&ca_crt, ca.cert_pem()).expect("write");
        std::fs::write(&ca_key, ca.key_pem()).expect("write");
        let loaded = CertificateAuthority::load(&ca_crt, &ca_key).expect("load ca");
        assert_eq!(loaded.not_after(), ca.not_after());

        let validity = Validity::starting_now(Duration::days(30));
        let issued =
            issue_serving_cert(&loaded, &["gmsa.kube-system.svc"], validity).expect("issue");
        let chain = parse_chain(Path::new("x"), issued.cert_pem.as_bytes()).expect("chain");
        let info = x509::parse_certificate(&chain[0]).expect("parse");
        let ca_info = x509::parse_certificate(ca.cert_der()).expect("parse ca");
        assert_eq!(info.issuer, ca_info.subject);
        assert_eq!(
            info.not_after.unix_timestamp(),
            validity.not_after.unix_timestamp()
        );
        assert_eq!(
            info.not_before.unix_timestamp(),
            validity.not_before.unix_timestamp()
        );

        let mut roots = RootCertStore::empty();
        roots.add(ca.cert_der().clone()).expect("root");
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), crypto_provider())
                .build()
                .expect("verifier");
        let name = ServerName::try_from("gmsa.kube-system.svc").expect("name");
        verifier
            .verify_server_cert(&chain[0], &[], &name, &[], UnixTime::now())
            .expect("chains to the original CA");
        let other = ServerName::try_from("other.kube-system.svc").expect("name");
        assert!(verifier
            .verify_server_cert(&chain[0], &[], &other, &[], UnixTime::now())
            .is_err());
    }

    #[test]
    fn a_ca_key_that_does_not_match_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a =
            CertificateAuthority::generate("a", Validity::starting_now(CA_LIFETIME)).expect("a");
        let b =
            CertificateAuthority::generate("b", Validity::starting_now(CA_LIFETIME)).expect("b");
        let (crt, key) = (dir.path().join("ca.crt"), dir.path().join("ca.key"));
        std::fs::write(&crt, a.cert_pem()).expect("write");
        std::fs::write(&key, b.key_pem()).expect("write");
        let err = CertificateAuthority::load(&crt, &key).expect_err("mismatch");
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
    }
}
