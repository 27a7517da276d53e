//! The rustls server configuration the webhook listener uses.

use std::path::Path;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{ServerConfig, SupportedProtocolVersion};

use super::{crypto_provider, CertStore, ClientCa, TlsError};

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
    let client_ca = client_ca.map(ClientCa::load).transpose()?;
    server_config_with(store, client_ca)
}

/// [`server_config`] with a client CA already loaded (and possibly reloading).
pub fn server_config_with(
    store: Arc<CertStore>,
    client_ca: Option<Arc<ClientCa>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = crypto_provider();
    let verifier: Arc<dyn rustls::server::danger::ClientCertVerifier> = match client_ca {
        Some(ca) => ca,
        None => WebPkiClientVerifier::no_client_auth(),
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(PROTOCOL_VERSIONS)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(store);
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}
