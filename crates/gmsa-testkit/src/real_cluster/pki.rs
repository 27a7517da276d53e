//! Key material as files the servers and clients read: the private CA and serving certificate
//! a loopback server presents (the API server, a webhook under test), and the key that signs
//! service account tokens.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::{write_file, ClusterError};

/// A private CA and a serving certificate it signed for `127.0.0.1` and `localhost`,
/// written as PEM files (ECDSA P-256, valid from an hour ago for a week).
#[derive(Debug, Clone)]
pub struct LoopbackTls {
    /// The CA certificate, PEM; what clients trust (a webhook's `caBundle`, a kubeconfig's CA).
    pub ca_pem: String,
    pub ca_path: PathBuf,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl LoopbackTls {
    /// A server on a free loopback port that presents this certificate and answers one
    /// request with `answer` (raw HTTP), keeping the request for the test to read.
    pub fn answer_once(&self, answer: &str) -> std::io::Result<crate::one_answer::OneAnswer> {
        crate::one_answer::OneAnswer::start(&self.cert_path, &self.key_path, answer)
    }

    /// Generates the CA and serving certificate into `dir` as `<prefix>-ca.crt`,
    /// `<prefix>.crt` and `<prefix>.key`.
    pub fn generate(dir: &Path, prefix: &str) -> Result<Self, ClusterError> {
        Self::generate_for(dir, prefix, &[])
    }

    /// Like [`LoopbackTls::generate`], with more subject names (IP addresses or DNS names)
    /// beside `127.0.0.1` and `localhost`: a node's address, a Service's names.
    pub fn generate_for(
        dir: &Path,
        prefix: &str,
        extra_names: &[String],
    ) -> Result<Self, ClusterError> {
        let now = time::OffsetDateTime::now_utc();
        let not_before = now - time::Duration::hours(1);
        let not_after = now + time::Duration::days(7);

        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::default();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{prefix} test CA"));
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca_params.not_before = not_before;
        ca_params.not_after = not_after;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let key = KeyPair::generate()?;
        let mut names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        names.extend(extra_names.iter().cloned());
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name.push(DnType::CommonName, prefix);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.signed_by(&key, &issuer)?;

        let tls = Self {
            ca_pem: ca_cert.pem(),
            ca_path: dir.join(format!("{prefix}-ca.crt")),
            cert_path: dir.join(format!("{prefix}.crt")),
            key_path: dir.join(format!("{prefix}.key")),
        };
        write_file(&tls.ca_path, &tls.ca_pem)?;
        write_file(&tls.cert_path, &cert.pem())?;
        write_file(&tls.key_path, &key.serialize_pem())?;
        Ok(tls)
    }

    /// The CA as a webhook `caBundle` (base64 of the PEM).
    pub fn ca_bundle(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.ca_pem)
    }
}

/// The key pair that signs and verifies service account tokens (ECDSA P-256), as PEM files.
#[derive(Debug)]
pub(super) struct ServiceAccountKey {
    pub(super) private_path: PathBuf,
    pub(super) public_path: PathBuf,
}

impl ServiceAccountKey {
    /// Generates the pair into `dir` as `service-account.key` and `service-account.pub`.
    pub(super) fn generate(dir: &Path) -> Result<Self, ClusterError> {
        let key = KeyPair::generate()?;
        let pair = Self {
            private_path: dir.join("service-account.key"),
            public_path: dir.join("service-account.pub"),
        };
        write_file(&pair.private_path, &key.serialize_pem())?;
        // 1.20 reads verification keys only as PKIX "PUBLIC KEY" (or RSA/EC private key) blocks.
        write_file(&pair.public_path, &key.public_key_pem())?;
        Ok(pair)
    }
}

/// A CA that signs client certificates (x509 authentication), with its key kept to sign more.
pub struct ClientCa {
    /// The CA certificate, PEM: what a server's client CA file holds.
    pub ca_pem: String,
    pub ca_path: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    dir: PathBuf,
}

impl std::fmt::Debug for ClientCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCa")
            .field("ca_path", &self.ca_path)
            .finish_non_exhaustive()
    }
}

impl ClientCa {
    /// Generates the CA into `dir` as `<prefix>-client-ca.crt` (valid a week).
    pub fn generate(dir: &Path, prefix: &str) -> Result<Self, ClusterError> {
        let now = time::OffsetDateTime::now_utc();
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{prefix} client CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(7);
        let cert = params.self_signed(&key)?;
        let ca = Self {
            ca_pem: cert.pem(),
            ca_path: dir.join(format!("{prefix}-client-ca.crt")),
            issuer: Issuer::new(params, key),
            dir: dir.to_path_buf(),
        };
        write_file(&ca.ca_path, &ca.ca_pem)?;
        Ok(ca)
    }

    /// A client certificate for user `common_name` in `group` (the subject's organization:
    /// one, as rcgen keeps one value per attribute), as `<file>.crt` and `<file>.key`;
    /// returns both paths.
    pub fn client(
        &self,
        file: &str,
        common_name: &str,
        group: Option<&str>,
    ) -> Result<(PathBuf, PathBuf), ClusterError> {
        let now = time::OffsetDateTime::now_utc();
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        if let Some(group) = group {
            params
                .distinguished_name
                .push(DnType::OrganizationName, group);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(7);
        let cert = params.signed_by(&key, &self.issuer)?;
        let cert_path = self.dir.join(format!("{file}.crt"));
        let key_path = self.dir.join(format!("{file}.key"));
        write_file(&cert_path, &cert.pem())?;
        write_file(&key_path, &key.serialize_pem())?;
        Ok((cert_path, key_path))
    }
}
