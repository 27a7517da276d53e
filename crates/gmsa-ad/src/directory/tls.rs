//! Securing the connection: the rustls configuration for the domain controller's certificate,
//! and errors that say whether TCP, TLS or StartTLS failed and what to do about it.

use std::io;
use std::sync::Arc;

use ldap3::LdapError;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use super::{Context, Transport, Trust};
use crate::error::AdError;

/// Names what went wrong while connecting: TCP, TLS or StartTLS.
pub(super) fn connect_error(context: &Context, transport: Transport, error: LdapError) -> AdError {
    let url = context.url.clone();
    match error {
        LdapError::Timeout { .. } => AdError::Unreachable {
            url,
            reason: format!("no answer within {:?}", context.timeout),
        },
        LdapError::Rustls { source } => tls_error(url, &source),
        LdapError::Io { source } => {
            if let Some(tls) = source
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                return tls_error(url, tls);
            }
            if transport.uses_tls() && source.kind() == io::ErrorKind::UnexpectedEof {
                return AdError::Tls {
                    url,
                    reason: "the server closed the connection during the handshake".to_string(),
                };
            }
            AdError::Unreachable {
                url,
                reason: source.to_string(),
            }
        }
        LdapError::LdapResult { result } => AdError::StartTlsRefused {
            url,
            code: result.rc,
            text: result.text,
        },
        LdapError::DNSName { .. } => AdError::InvalidUrl {
            url,
            reason: "the host is not a valid TLS server name".to_string(),
        },
        LdapError::UrlParsing { source } => AdError::InvalidUrl {
            url,
            reason: source.to_string(),
        },
        source => AdError::Ldap {
            url,
            operation: "connect",
            source: Box::new(source),
        },
    }
}

fn tls_error(url: String, error: &rustls::Error) -> AdError {
    use rustls::CertificateError as Cert;
    match error {
        rustls::Error::InvalidCertificate(cert) => AdError::UntrustedCertificate {
            url,
            reason: match cert {
                Cert::UnknownIssuer => {
                    "it was not issued by a trusted CA (unknown issuer)".to_string()
                }
                Cert::NotValidForName | Cert::NotValidForNameContext { .. } => {
                    "it does not list the host name or address of the URL".to_string()
                }
                Cert::Expired | Cert::ExpiredContext { .. } => "it has expired".to_string(),
                Cert::NotValidYet | Cert::NotValidYetContext { .. } => {
                    "it is not valid yet (check the clocks)".to_string()
                }
                other => format!("{other:?}"),
            },
        },
        other => AdError::Tls {
            url,
            reason: other.to_string(),
        },
    }
}

/// A rustls client configuration (ring, TLS 1.2 and 1.3) trusting `trust`.
pub(super) fn client_config(url: &str, trust: &Trust) -> Result<Arc<ClientConfig>, AdError> {
    let mut roots = RootCertStore::empty();
    match trust {
        Trust::CaFile(path) => {
            let ca_error = |reason: String| AdError::CaFile {
                path: path.clone(),
                reason,
            };
            let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| ca_error(e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| ca_error(e.to_string()))?;
            if certificates.is_empty() {
                return Err(ca_error("it holds no PEM CERTIFICATE block".to_string()));
            }
            for certificate in certificates {
                roots
                    .add(certificate)
                    .map_err(|e| ca_error(e.to_string()))?;
            }
        }
        Trust::SystemRoots => {
            let loaded = rustls_native_certs::load_native_certs();
            let (added, _unparsable) = roots.add_parsable_certificates(loaded.certs);
            if added == 0 {
                let reason = if loaded.errors.is_empty() {
                    "the store is empty".to_string()
                } else {
                    loaded
                        .errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                return Err(AdError::SystemRoots { reason });
            }
        }
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| AdError::Tls {
                url: url.to_string(),
                reason: e.to_string(),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}
