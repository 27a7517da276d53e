//! The certificate the server presents, swappable while connections are live.

use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use time::OffsetDateTime;

use super::{certified_key, read, x509, TlsError};

/// How often a read is retried when the certificate file changed while the
/// pair was being read (a rotation landing between the two reads).
const TORN_READ_RETRIES: usize = 3;
const TORN_READ_PAUSE: Duration = Duration::from_millis(25);

/// The serving certificate and key, loaded from two PEM files and replaced
/// atomically when they change.
///
/// Handshakes read the current pair lock-free through [`ResolvesServerCert`];
/// reloads build a complete new pair first and swap it in only when the key
/// matches the certificate, so a bad rotation leaves the old pair in service.
pub struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: ArcSwap<Served>,
    /// Serialises reloads and remembers which file contents were already tried.
    state: Mutex<ReloadState>,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
}

struct Served {
    key: Arc<CertifiedKey>,
    not_after: Option<OffsetDateTime>,
}

struct ReloadState {
    /// Hash of the file contents behind the pair being served.
    served: u64,
    /// Hash of the file contents last tried, successfully or not.
    attempted: u64,
}

impl CertStore {
    /// Loads the pair the server starts with; start-up fails rather than
    /// serving something the apiserver would reject.
    pub fn load(
        cert_path: impl Into<PathBuf>,
        key_path: impl Into<PathBuf>,
    ) -> Result<Self, TlsError> {
        let cert_path = cert_path.into();
        let key_path = key_path.into();
        let (cert_pem, key_pem) = read_pair(&cert_path, &key_path)?;
        let served = build(&cert_path, &cert_pem, &key_path, &key_pem)?;
        let hash = content_hash(&cert_pem, &key_pem);
        log_loaded(&cert_path, &served, "loaded serving certificate");
        Ok(Self {
            cert_path,
            key_path,
            current: ArcSwap::from_pointee(served),
            state: Mutex::new(ReloadState {
                served: hash,
                attempted: hash,
            }),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
        })
    }

    /// Re-reads both files and swaps the pair in if they hold a new, valid,
    /// matching one. Returns whether the served certificate changed.
    ///
    /// On error the previous pair keeps being served and a warning is logged.
    /// This does blocking file I/O; call it from a blocking context.
    pub fn reload(&self) -> Result<bool, TlsError> {
        self.reload_inner(false)
    }

    /// Like [`reload`](Self::reload), but skips contents that were already
    /// tried, so a watcher does not re-log the same broken pair on every tick.
    pub(crate) fn reload_if_changed(&self) -> Result<bool, TlsError> {
        self.reload_inner(true)
    }

    fn reload_inner(&self, skip_attempted: bool) -> Result<bool, TlsError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let result = read_pair(&self.cert_path, &self.key_path).and_then(|(cert_pem, key_pem)| {
            let hash = content_hash(&cert_pem, &key_pem);
            if hash == state.served || (skip_attempted && hash == state.attempted) {
                return Ok(None);
            }
            state.attempted = hash;
            let served = build(&self.cert_path, &cert_pem, &self.key_path, &key_pem)?;
            Ok(Some((hash, served)))
        });
        match result {
            Ok(None) => Ok(false),
            Ok(Some((hash, served))) => {
                state.served = hash;
                if served.key.cert == self.current.load().key.cert {
                    return Ok(false);
                }
                log_loaded(&self.cert_path, &served, "reloaded serving certificate");
                self.current.store(Arc::new(served));
                self.reloads.fetch_add(1, Ordering::Relaxed);
                Ok(true)
            }
            Err(err) => {
                self.reload_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %err, "keeping the previous serving certificate");
                Err(err)
            }
        }
    }

    /// The pair handshakes currently use.
    pub fn current(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.current.load().key)
    }

    /// When the served certificate expires, for metrics and diagnostics;
    /// `None` if its validity could not be read.
    pub fn not_after(&self) -> Option<OffsetDateTime> {
        self.current.load().not_after
    }

    /// Number of reloads that replaced the served certificate.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// Number of reloads refused (unreadable files, bad PEM, mismatched key).
    pub fn reload_failures(&self) -> u64 {
        self.reload_failures.load(Ordering::Relaxed)
    }

    /// The certificate chain file this store reads.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The private key file this store reads.
    pub fn key_path(&self) -> &Path {
        &self.key_path
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("not_after", &self.not_after())
            .field("reloads", &self.reloads())
            .field("reload_failures", &self.reload_failures())
            .finish_non_exhaustive()
    }
}

fn build(
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
) -> Result<Served, TlsError> {
    let key = certified_key(cert_path, cert_pem, key_path, key_pem)?;
    let not_after = key
        .cert
        .first()
        .and_then(|cert| x509::parse_certificate(cert).ok())
        .map(|info| info.not_after);
    Ok(Served {
        key: Arc::new(key),
        not_after,
    })
}

fn log_loaded(cert_path: &Path, served: &Served, message: &str) {
    let expired = served
        .not_after
        .is_some_and(|t| t <= OffsetDateTime::now_utc());
    if expired {
        tracing::warn!(cert = %cert_path.display(), not_after = ?served.not_after, "{message}, but it has expired");
    } else {
        tracing::info!(cert = %cert_path.display(), not_after = ?served.not_after, "{message}");
    }
}

/// Reads certificate and key as one consistent pair: if the certificate file
/// changed while the key was read, a rotation was in progress, so read again.
fn read_pair(cert_path: &Path, key_path: &Path) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let mut cert = read(cert_path)?;
    let mut key = read(key_path)?;
    for _ in 0..TORN_READ_RETRIES {
        let again = read(cert_path)?;
        if again == cert {
            break;
        }
        std::thread::sleep(TORN_READ_PAUSE);
        cert = read(cert_path)?;
        key = read(key_path)?;
    }
    Ok((cert, key))
}

fn content_hash(cert_pem: &[u8], key_pem: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    cert_pem.hash(&mut hasher);
    key_pem.hash(&mut hasher);
    hasher.finish()
}
