//! `--client-ca`: client certificates checked against a CA file that is re-read when it
//! changes, so a rotated CA (a ConfigMap or Secret volume update) takes effect without a
//! restart. A file that stops parsing keeps the last good CA, and says so in the log.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

use super::{crypto_provider, parse_chain, read, TlsError};

/// The client CA in use, and the file it came from.
pub struct ClientCa {
    path: PathBuf,
    current: ArcSwap<Loaded>,
}

struct Loaded {
    contents: Vec<u8>,
    verifier: Arc<dyn ClientCertVerifier>,
}

impl std::fmt::Debug for ClientCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCa")
            .field("path", &self.path)
            .finish()
    }
}

impl ClientCa {
    /// Reads and checks the CA file; errors name the file and what it must hold.
    pub fn load(path: &Path) -> Result<Arc<Self>, TlsError> {
        let contents = read(path)?;
        let verifier = verifier(path, &contents)?;
        Ok(Arc::new(Self {
            path: path.to_owned(),
            current: ArcSwap::from_pointee(Loaded { contents, verifier }),
        }))
    }

    /// Re-reads the file; `Ok(true)` when a changed, valid CA is now in use. An invalid file
    /// is an error and changes nothing.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let contents = read(&self.path)?;
        if contents == self.current.load().contents {
            return Ok(false);
        }
        let verifier = verifier(&self.path, &contents)?;
        self.current.store(Arc::new(Loaded { contents, verifier }));
        Ok(true)
    }

    /// Re-checks the file every `interval` for as long as the runtime lives.
    pub fn spawn_reloader(self: &Arc<Self>, interval: std::time::Duration) {
        let ca = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match ca.reload_if_changed() {
                    Ok(true) => tracing::info!(file = %ca.path.display(), "client CA reloaded"),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "client CA not reloaded; keeping the one in use")
                    }
                }
            }
        });
    }

    fn verifier(&self) -> Arc<dyn ClientCertVerifier> {
        Arc::clone(&self.current.load().verifier)
    }
}

fn verifier(path: &Path, contents: &[u8]) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in parse_chain(path, contents)? {
        roots
            .add(cert)
            .map_err(|err| TlsError::InvalidCertificate {
                path: path.to_owned(),
                reason: err.to_string(),
            })?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), crypto_provider())
        .build()
        .map_err(|source| TlsError::ClientCa {
            path: path.to_owned(),
            source,
        })
}

impl ClientCertVerifier for ClientCa {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    /// No hints: they would have to outlive a reload. Clients send their certificate anyway
    /// (the API server's webhook client has exactly one).
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verifier()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.verifier().supported_verify_schemes()
    }
}
