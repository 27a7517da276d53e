//! The DC's certificates (a test CA, the server certificate for its address, and an unrelated
//! CA for refusal tests) and the LDAP client the harness itself uses to seed the directory.

use super::*;

/// The test CA, the DC's certificate and key, and an unrelated CA.
pub(super) struct TestTls {
    pub(super) ca_pem: String,
    pub(super) ca_path: PathBuf,
    pub(super) wrong_ca_path: PathBuf,
    pub(super) cert_path: PathBuf,
    pub(super) key_path: PathBuf,
}

impl TestTls {
    pub(super) fn generate(dir: &Path, address: Ipv4Addr) -> Result<Self, SambaError> {
        let now = time::OffsetDateTime::now_utc();
        let (not_before, not_after) = (
            now - time::Duration::hours(1),
            now + time::Duration::days(2),
        );

        let ca = |name: &str| -> Result<(String, Issuer<'static, KeyPair>), SambaError> {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::default();
            params.distinguished_name.push(DnType::CommonName, name);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            params.not_before = not_before;
            params.not_after = not_after;
            let cert = params.self_signed(&key)?;
            Ok((cert.pem(), Issuer::new(params, key)))
        };
        let (ca_pem, issuer) = ca("gmsa-testkit Samba test CA")?;
        let (wrong_ca_pem, _) = ca("gmsa-testkit unrelated CA")?;

        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![
            address.to_string(),
            "127.0.0.1".to_string(),
            "localhost".to_string(),
            format!("{}.{DNS_NAME}", HOST_NAME.to_lowercase()),
        ])?;
        params.distinguished_name.push(
            DnType::CommonName,
            format!("{}.{DNS_NAME}", HOST_NAME.to_lowercase()),
        );
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.signed_by(&key, &issuer)?;

        let tls = Self {
            ca_pem,
            ca_path: dir.join("ca.pem"),
            wrong_ca_path: dir.join("wrong-ca.pem"),
            cert_path: dir.join("dc1.pem"),
            key_path: dir.join("dc1.key"),
        };
        write(&tls.ca_path, &tls.ca_pem)?;
        write(&tls.wrong_ca_path, &wrong_ca_pem)?;
        write(&tls.cert_path, &cert.pem())?;
        write(&tls.key_path, &key.serialize_pem())?;
        // Samba refuses a private key that others can read.
        fs::set_permissions(&tls.key_path, fs::Permissions::from_mode(0o600))
            .map_err(io_err("restricting the key file"))?;
        Ok(tls)
    }
}

pub(super) fn client_config(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>, SambaError> {
    let tls_err = |reason: String| SambaError::Ldap {
        what: "building the TLS client".into(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| tls_err(e.to_string()))?;
        roots.add(cert).map_err(|e| tls_err(e.to_string()))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls_err(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

pub(super) async fn connect_and_bind(
    url: &str,
    config: Arc<rustls::ClientConfig>,
    principal: &str,
    password: &str,
) -> Result<ldap3::Ldap, String> {
    let settings = LdapConnSettings::new()
        .set_config(config)
        .set_conn_timeout(Duration::from_secs(2));
    let (conn, mut ldap) = LdapConnAsync::with_settings(settings, url)
        .await
        .map_err(|e| e.to_string())?;
    ldap3::drive!(conn);
    ldap.with_timeout(LDAP_OPERATION_TIMEOUT)
        .simple_bind(principal, password)
        .await
        .and_then(|result| result.success())
        .map_err(|e| e.to_string())?;
    Ok(ldap)
}
