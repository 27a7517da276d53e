//! The rustls server configuration the webhook listener uses.

use std::path::Path;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};

use super::{crypto_provider, parse_chain, read, CertStore, TlsError};

/// TLS versions offered: 1.3 and 1.2 only. The apiserver speaks both, and
/// anything older is refused by current compliance baselines.
pub const PROTOCOL_VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// ALPN protocols in order of preference: the server handles both HTTP/2 and
/// HTTP/1.1 (the apiserver uses HTTP/1.1 keep-alive for webhooks).
pub const ALPN_PROTOCOLS: &[&[u8]] = &[b"h2", b"http/1.1"];

/// Builds the server configuration around a reloadable certificate.
///
/// With `client_ca`, every client must present a certificate signed by one of
/// the CAs in that PEM file (for clusters that configure the apiserver's
/// webhook client certificate); without it, clients are not authenticated.
pub fn server_config(
    store: Arc<CertStore>,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = crypto_provider();
    let verifier = match client_ca {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in parse_chain(path, &read(path)?)? {
                roots
                    .add(cert)
                    .map_err(|err| TlsError::InvalidCertificate {
                        path: path.to_owned(),
                        reason: err.to_string(),
                    })?;
            }
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                .build()
                .map_err(|source| TlsError::ClientCa {
                    path: path.to_owned(),
                    source,
                })?
        }
        None => WebPkiClientVerifier::no_client_auth(),
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(PROTOCOL_VERSIONS)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(store);
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}
