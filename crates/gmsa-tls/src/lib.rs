//! TLS for the webhook and the tools around it: the served certificate, its hot reload, the
//! rustls server configuration, self-signed CAs and certificates, and certificate inspection.
//! The webhook serves with it; `kubectl-gmsa` issues and checks with it without linking the
//! server.
//!
//! The apiserver only talks to webhooks over HTTPS, and in a cluster the
//! certificate arrives through a Secret volume that cert-manager or an operator
//! rotates under our feet. Everything here is built so that a rotation never
//! needs a restart and a half-written or mismatched pair is never served.

mod client_ca;
mod config;
mod dev;
mod inspect;
mod reload;
pub mod self_signed;
mod store;
mod x509;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub use client_ca::ClientCa;
pub use config::{server_config, server_config_with, ALPN_PROTOCOLS, PROTOCOL_VERSIONS};
pub use dev::{
    dev_certs, issue_client_cert, issue_serving_cert, CertificateAuthority, DevCerts, IssuedCert,
    Validity, CA_LIFETIME, DEV_CA_NAME, DEV_SERVING_NAMES, NOT_BEFORE_BACKDATE,
    SERVING_CERT_LIFETIME,
};
pub use inspect::{
    certificate_validity, pem_certificates, verify_serving_chain, CertificateValidity,
};
pub use reload::{spawn_reloader, spawn_reloader_with, ReloaderOptions, DEFAULT_POLL_INTERVAL};
pub use store::CertStore;

/// Everything that can go wrong loading, checking or creating TLS material.
///
/// Each message names the file involved and what to do about it, because these
/// errors end up in pod logs read by someone who did not write this code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}: check that the directory exists and is writable")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("malformed PEM in {path}: {source}: expected base64 blocks between '-----BEGIN ...-----' and '-----END ...-----' lines")]
    Pem {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("no certificate found in {path}: expected a PEM 'CERTIFICATE' block")]
    NoCertificate { path: PathBuf },
    #[error("no private key found in {path}: expected a PEM 'PRIVATE KEY', 'RSA PRIVATE KEY' or 'EC PRIVATE KEY' block")]
    NoPrivateKey { path: PathBuf },
    #[error("the private key in {path} is encrypted: store it unencrypted (for example `openssl pkey -in {path} -out plain.key`)")]
    EncryptedKey { path: PathBuf },
    #[error("the private key in {path} cannot be used: {source}: use an RSA, ECDSA P-256/P-384 or Ed25519 key")]
    UnsupportedKey {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("the key in {key} does not match the certificate in {cert}: provide the key that was issued together with this certificate")]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    #[error("the certificate in {path} cannot be used: {reason}")]
    InvalidCertificate { path: PathBuf, reason: String },
    #[error("cannot require client certificates signed by {path}: {source}")]
    ClientCa {
        path: PathBuf,
        source: rustls::client::VerifierBuilderError,
    },
    #[error("the CA key in {path} cannot sign certificates: {source}: expected an unencrypted PKCS#8 'PRIVATE KEY' (ECDSA P-256/P-384, Ed25519 or RSA)")]
    CaKey { path: PathBuf, source: rcgen::Error },
    #[error("the subject name of the CA in {path} cannot be reproduced when signing ({reason}): use a CA whose subject has single-valued, non-repeated attributes")]
    CaName { path: PathBuf, reason: String },
    #[error("cannot generate {what}: {source}")]
    Generate {
        what: &'static str,
        source: rcgen::Error,
    },
    #[error("cannot build the TLS server configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The one crypto provider used for every TLS object in this crate.
///
/// Passing it explicitly keeps the server working even when no process-wide
/// default provider was installed, and keeps aws-lc-rs out of the picture.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses every `CERTIFICATE` block of a PEM file's contents.
fn parse_chain(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: path.to_owned(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

/// Parses the first private key (PKCS#8, PKCS#1 RSA or SEC1 EC) of a PEM file's contents.
fn parse_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|source| match source {
        rustls_pki_types::pem::Error::NoItemsFound
            if pem
                .windows(b"ENCRYPTED PRIVATE KEY".len())
                .any(|w| w == b"ENCRYPTED PRIVATE KEY") =>
        {
            TlsError::EncryptedKey {
                path: path.to_owned(),
            }
        }
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            path: path.to_owned(),
        },
        source => TlsError::Pem {
            path: path.to_owned(),
            source,
        },
    })
}

/// Builds a signing key from PEM contents and refuses it unless the key
/// belongs to the chain's first certificate: a mismatched pair would fail
/// every handshake, so it must never replace a working one.
fn certified_key(
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
) -> Result<CertifiedKey, TlsError> {
    let chain = parse_chain(cert_path, cert_pem)?;
    let key = parse_key(key_path, key_pem)?;
    let signing_key = crypto_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|source| TlsError::UnsupportedKey {
            path: key_path.to_owned(),
            source,
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch {
                key: key_path.to_owned(),
                cert: cert_path.to_owned(),
            })
        }
        // Unknown consistency is refused too: serving an unverified pair is the
        // failure this check exists to prevent.
        Err(err) => Err(TlsError::InvalidCertificate {
            path: cert_path.to_owned(),
            reason: err.to_string(),
        }),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_errors_name_the_file_and_the_expected_block() {
        let path = Path::new("/x/tls.crt");
        let err = parse_chain(path, b"nothing here").expect_err("no cert");
        assert_eq!(
            err.to_string(),
            "no certificate found in /x/tls.crt: expected a PEM 'CERTIFICATE' block"
        );

        let key_path = Path::new("/x/tls.key");
        let err = parse_key(
            key_path,
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .expect_err("no key");
        assert!(matches!(err, TlsError::NoPrivateKey { .. }), "{err}");

        let encrypted =
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let err = parse_key(key_path, encrypted).expect_err("encrypted");
        assert!(matches!(err, TlsError::EncryptedKey { .. }), "{err}");

        let err = parse_chain(
            path,
            b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .expect_err("bad base64");
        assert!(matches!(err, TlsError::Pem { .. }), "{err}");
    }

    #[test]
    fn accepts_pkcs8_pkcs1_and_sec1_keys() {
        let p = Path::new("fixture");
        let ecdsa = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .expect("params")
            .self_signed(&ecdsa)
            .expect("cert");
        // PKCS#8, as rcgen writes it.
        certified_key(
            p,
            cert.pem().as_bytes(),
            p,
            ecdsa.serialize_pem().as_bytes(),
        )
        .expect("pkcs8");
        // Fixtures made once with `openssl req -newkey rsa:2048` + `openssl rsa -traditional`
        // and `openssl ecparam -genkey -noout`.
        let rsa_cert = include_bytes!("fixtures/rsa.crt");
        let rsa_key = include_bytes!("fixtures/rsa-pkcs1.key");
        let ec_cert = include_bytes!("fixtures/ec.crt");
        let ec_key = include_bytes!("fixtures/ec-sec1.key");
        certified_key(p, rsa_cert, p, rsa_key).expect("pkcs1");
        certified_key(p, ec_cert, p, ec_key).expect("sec1");

        let err = certified_key(p, rsa_cert, p, ec_key).expect_err("mismatch");
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
        let err =
            certified_key(p, ec_cert, p, ecdsa.serialize_pem().as_bytes()).expect_err("mismatch");
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
    }
}
