//! The TLS layer on real sockets: every test completes (or fails) real
//! handshakes on 127.0.0.1 against a server built from `server_config`.
#![cfg(unix)]

use gmsa_testkit::secret_volume::SecretVolume;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gmsa_tls::{
    self as tls, CertStore, CertificateAuthority, IssuedCert, ReloaderOptions, TlsError, Validity,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ProtocolVersion, RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const STEP: Duration = Duration::from_secs(5);
/// What the server writes after a successful handshake, so the client can tell
/// a completed session from one the server aborted after the handshake (TLS
/// 1.3 client-certificate failures surface only on the first read).
const GREETING: &[u8] = b"hello over tls";

// ---------------------------------------------------------------- harness ---

/// A TLS server on an ephemeral loopback port that reports each accepted
/// connection's handshake outcome.
struct TestServer {
    addr: SocketAddr,
    outcomes: mpsc::UnboundedReceiver<Result<(), String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(config: Arc<ServerConfig>) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = TlsAcceptor::from(config);
    let (tx, outcomes) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let outcome = match acceptor.accept(tcp).await {
                    Ok(mut stream) => {
                        let _ = stream.write_all(GREETING).await;
                        let _ = stream.shutdown().await;
                        Ok(())
                    }
                    Err(err) => Err(err.to_string()),
                };
                let _ = tx.send(outcome);
            });
        }
    });
    TestServer {
        addr,
        outcomes,
        task,
    }
}

impl TestServer {
    async fn next_outcome(&mut self) -> Result<(), String> {
        tokio::time::timeout(STEP, self.outcomes.recv())
            .await
            .expect("server reported no handshake outcome in time")
            .expect("server task ended")
    }
}

/// What the client saw of one session.
#[derive(Debug)]
struct Session {
    peer: CertificateDer<'static>,
    version: ProtocolVersion,
    alpn: Option<Vec<u8>>,
}

struct Client {
    config: ClientConfig,
}

impl Client {
    /// A client that trusts only `ca`, offers TLS 1.3 and 1.2 and both ALPN protocols.
    fn trusting(ca: &CertificateDer<'static>) -> Self {
        Self::builder(ca, tls::PROTOCOL_VERSIONS, None)
    }

    fn builder(
        ca: &CertificateDer<'static>,
        versions: &[&'static rustls::SupportedProtocolVersion],
        identity: Option<&IssuedCert>,
    ) -> Self {
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone()).expect("trust anchor");
        let builder = ClientConfig::builder_with_provider(tls::crypto_provider())
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots);
        let mut config = match identity {
            Some(issued) => {
                let (chain, key) = pem_pair(issued);
                builder
                    .with_client_auth_cert(chain, key)
                    .expect("client cert")
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // A resumed session reports the certificate of the session it resumes;
        // every check here needs a full handshake.
        config.resumption = rustls::client::Resumption::disabled();
        Self { config }
    }

    /// Connects as `localhost`, completes the handshake and reads the
    /// server's greeting; any failure is returned as text.
    async fn session(&self, addr: SocketAddr) -> Result<Session, String> {
        self.session_as(addr, "localhost").await
    }

    async fn session_as(&self, addr: SocketAddr, name: &str) -> Result<Session, String> {
        let connector = TlsConnector::from(Arc::new(self.config.clone()));
        let name = ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
        let attempt = async {
            let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            let mut stream = connector
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            let (_, conn) = stream.get_ref();
            let session = Session {
                peer: conn
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .ok_or("no peer certificate")?
                    .clone()
                    .into_owned(),
                version: conn.protocol_version().ok_or("no version")?,
                alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            };
            let mut body = Vec::new();
            stream
                .read_to_end(&mut body)
                .await
                .map_err(|e| e.to_string())?;
            if body != GREETING {
                return Err(format!("unexpected body {body:?}"));
            }
            Ok(session)
        };
        tokio::time::timeout(STEP, attempt)
            .await
            .map_err(|_| "handshake timed out".to_owned())?
    }

    /// Polls with fresh handshakes until the server presents `expected`.
    async fn wait_for_cert(&self, addr: SocketAddr, expected: &CertificateDer<'_>) -> Session {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let last = self.session(addr).await;
            if let Ok(session) = &last {
                if session.peer.as_ref() == expected.as_ref() {
                    return last.expect("checked");
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "server did not present the new certificate within {STEP:?}; last: {:?}",
                last.map(|s| fingerprint(&s.peer))
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

fn pem_pair(issued: &IssuedCert) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let chain = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("chain");
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).expect("key");
    (chain, key)
}

fn leaf(issued: &IssuedCert) -> CertificateDer<'static> {
    pem_pair(issued).0.remove(0)
}

/// Short, printable identity of a certificate for assertion messages.
fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let tail = &cert.as_ref()[cert.as_ref().len().saturating_sub(8)..];
    tail.iter().map(|b| format!("{b:02x}")).collect()
}

fn test_ca(name: &str) -> CertificateAuthority {
    CertificateAuthority::generate(name, Validity::starting_now(time::Duration::days(2)))
        .expect("ca")
}

fn localhost_cert(ca: &CertificateAuthority) -> IssuedCert {
    tls::issue_serving_cert(
        ca,
        &["localhost", "127.0.0.1"],
        Validity::starting_now(time::Duration::days(1)),
    )
    .expect("serving cert")
}

/// Replaces a file by rename, as editors and most tools do.
fn replace(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn write_pair(dir: &Path, issued: &IssuedCert) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    replace(&key, &issued.key_pem);
    replace(&cert, &issued.cert_pem);
    (cert, key)
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + STEP;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn shutdown_signal() -> (
    oneshot::Sender<()>,
    impl Future<Output = ()> + Send + 'static,
) {
    let (tx, rx) = oneshot::channel::<()>();
    (tx, async move {
        let _ = rx.await;
    })
}

// ------------------------------------------------------------------ tests ---

#[tokio::test]
async fn serves_dev_certificates_with_tls13_tls12_and_alpn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dev = tls::dev_certs(dir.path()).expect("dev certs");
    let store = Arc::new(CertStore::load(&dev.cert, &dev.key).expect("load"));
    let server = serve(tls::server_config(store.clone(), None).expect("config")).await;

    let ca = CertificateDer::from_pem_file(&dev.ca).expect("ca pem");
    let served = CertificateDer::from_pem_file(&dev.cert).expect("cert pem");
    let client = Client::trusting(&ca);

    let session = client.session(server.addr).await.expect("tls 1.3 session");
    assert_eq!(session.peer, served);
    assert_eq!(session.version, ProtocolVersion::TLSv1_3);
    assert_eq!(session.alpn.as_deref(), Some(&b"h2"[..]));

    let by_ip = client
        .session_as(server.addr, "127.0.0.1")
        .await
        .expect("session by IP");
    assert_eq!(by_ip.peer, served);

    let tls12 = Client::builder(&ca, &[&rustls::version::TLS12], None);
    let session = tls12.session(server.addr).await.expect("tls 1.2 session");
    assert_eq!(session.version, ProtocolVersion::TLSv1_2);

    let mut http1 = Client::trusting(&ca);
    http1.config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let session = http1.session(server.addr).await.expect("http/1.1 session");
    assert_eq!(session.alpn.as_deref(), Some(&b"http/1.1"[..]));

    // The client really verifies: one that trusts another CA is refused.
    let stranger = Client::trusting(test_ca("someone else").cert_der());
    let err = stranger.session(server.addr).await.expect_err("untrusted");
    assert!(err.contains("UnknownIssuer"), "{err}");

    assert!(store.not_after().is_some_and(|t| {
        let left = t - time::OffsetDateTime::now_utc();
        left > time::Duration::days(364) && left <= time::Duration::days(365)
    }));
}

#[tokio::test]
async fn tls_1_1_and_older_are_refused() {
    let versions: Vec<_> = tls::PROTOCOL_VERSIONS.iter().map(|v| v.version).collect();
    assert_eq!(
        versions,
        [ProtocolVersion::TLSv1_3, ProtocolVersion::TLSv1_2]
    );

    let ca = test_ca("ca");
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = write_pair(dir.path(), &localhost_cert(&ca));
    let store = Arc::new(CertStore::load(cert, key).expect("load"));
    let mut server = serve(tls::server_config(store, None).expect("config")).await;

    // rustls clients cannot speak TLS 1.1 or 1.0, so send such a ClientHello
    // by hand. It offers what the server could otherwise accept (an ECDHE-ECDSA
    // GCM suite, P-256, ECDSA signatures) so the version is the only obstacle.
    for (minor, label) in [(0x02u8, "TLS 1.1"), (0x01, "TLS 1.0")] {
        let mut body = vec![0x03, minor];
        body.extend_from_slice(&[0x5a; 32]); // random
        body.push(0); // empty session id
        body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x2b, 0xc0, 0x09]); // cipher suites
        body.extend_from_slice(&[0x01, 0x00]); // null compression
        let extensions: &[u8] = &[
            0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x17, // supported_groups: secp256r1
            0x00, 0x0b, 0x00, 0x02, 0x01, 0x00, // ec_point_formats: uncompressed
            0x00, 0x0d, 0x00, 0x04, 0x00, 0x02, 0x04,
            0x03, // signature_algorithms: ecdsa_secp256r1_sha256
        ];
        body.extend_from_slice(&[0x00, u8::try_from(extensions.len()).expect("len")]);
        body.extend_from_slice(extensions);
        let mut handshake = vec![0x01, 0x00, 0x00, u8::try_from(body.len()).expect("len")];
        handshake.extend_from_slice(&body);
        let mut record = vec![
            0x16,
            0x03,
            0x01,
            0x00,
            u8::try_from(handshake.len()).expect("len"),
        ];
        record.extend_from_slice(&handshake);

        let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
        tcp.write_all(&record).await.expect("send hello");
        let mut reply = Vec::new();
        tokio::time::timeout(STEP, tcp.read_to_end(&mut reply))
            .await
            .expect("server answered in time")
            .expect("read");
        // An alert record: content type 21, level fatal (2), protocol_version (70).
        assert!(reply.len() >= 7, "{label}: short reply {reply:?}");
        assert_eq!(reply[0], 0x15, "{label}: expected an alert, got {reply:?}");
        let server_side = server.next_outcome().await.expect_err("server must refuse");
        assert_eq!(
            &reply[5..7],
            &[2, 70],
            "{label}: expected a protocol_version alert; server said {server_side}"
        );
    }
}

#[tokio::test]
async fn client_ca_mode_requires_a_certificate_from_that_ca() {
    let server_ca = test_ca("server ca");
    let client_ca = test_ca("client ca");
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = write_pair(dir.path(), &localhost_cert(&server_ca));
    let client_ca_path = dir.path().join("client-ca.crt");
    std::fs::write(&client_ca_path, client_ca.cert_pem()).expect("write");
    let store = Arc::new(CertStore::load(cert, key).expect("load"));
    let config = tls::server_config(store, Some(&client_ca_path)).expect("config");
    let mut server = serve(config).await;

    let anonymous = Client::trusting(server_ca.cert_der());
    let err = anonymous
        .session(server.addr)
        .await
        .expect_err("no client cert");
    let server_side = server.next_outcome().await.expect_err("server must refuse");
    assert!(server_side.contains("no certificates"), "{server_side}");
    assert!(!err.is_empty());

    let validity = Validity::starting_now(time::Duration::days(1));
    let stranger_cert = tls::issue_client_cert(&server_ca, "intruder", validity).expect("issue");
    let stranger = Client::builder(
        server_ca.cert_der(),
        tls::PROTOCOL_VERSIONS,
        Some(&stranger_cert),
    );
    stranger
        .session(server.addr)
        .await
        .expect_err("foreign client cert");
    let server_side = server.next_outcome().await.expect_err("server must refuse");
    assert!(server_side.contains("UnknownIssuer"), "{server_side}");

    let apiserver_cert =
        tls::issue_client_cert(&client_ca, "kube-apiserver", validity).expect("issue");
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        let apiserver = Client::builder(server_ca.cert_der(), versions, Some(&apiserver_cert));
        apiserver.session(server.addr).await.expect("accepted");
        server.next_outcome().await.expect("server accepted");
    }
}

#[tokio::test]
async fn a_mismatched_pair_is_refused_at_load_and_never_replaces_a_good_one() {
    let ca = test_ca("ca");
    let dir = tempfile::tempdir().expect("tempdir");
    let good = localhost_cert(&ca);
    let other = localhost_cert(&ca);
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, &good.cert_pem).expect("write");
    std::fs::write(&key, &other.key_pem).expect("write");

    let err = CertStore::load(&cert, &key).expect_err("mismatch at load");
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "the key in {} does not match the certificate in {}: provide the key that was issued together with this certificate",
            key.display(),
            cert.display()
        )
    );

    std::fs::write(&key, &good.key_pem).expect("write");
    let store = Arc::new(CertStore::load(&cert, &key).expect("load"));
    let server = serve(tls::server_config(store.clone(), None).expect("config")).await;
    let client = Client::trusting(ca.cert_der());
    assert_eq!(
        client.session(server.addr).await.expect("session").peer,
        leaf(&good)
    );

    // A rotation that delivers a certificate without its key.
    std::fs::write(&cert, &other.cert_pem).expect("write");
    let err = store.reload().expect_err("mismatch on reload");
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
    assert_eq!((store.reloads(), store.reload_failures()), (0, 1));
    assert_eq!(
        client.session(server.addr).await.expect("session").peer,
        leaf(&good)
    );

    // The same through the background reloader.
    let (stop, shutdown) = shutdown_signal();
    let options = ReloaderOptions {
        poll_interval: Duration::from_millis(100),
        ..ReloaderOptions::default()
    };
    let reloader = tls::spawn_reloader_with(store.clone(), options, shutdown);
    let third = localhost_cert(&ca);
    std::fs::write(&cert, &third.cert_pem).expect("write");
    wait_until("the reloader refuses the pair", || {
        store.reload_failures() >= 2
    })
    .await;
    assert_eq!(
        client.session(server.addr).await.expect("session").peer,
        leaf(&good)
    );
    assert_eq!(store.reloads(), 0);

    // Once the matching key arrives, the new certificate goes live.
    std::fs::write(&key, &third.key_pem).expect("write");
    client.wait_for_cert(server.addr, &leaf(&third)).await;
    assert_eq!(store.reloads(), 1);

    stop.send(()).expect("reloader alive");
    tokio::time::timeout(STEP, reloader)
        .await
        .expect("reloader stops on shutdown")
        .expect("reloader did not panic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_volume_rotations_are_picked_up_by_the_directory_watch() {
    const ROTATIONS: u64 = 25;
    let ca = test_ca("ca");
    let dir = tempfile::tempdir().expect("tempdir");
    let first = localhost_cert(&ca);
    let mut volume =
        SecretVolume::create(dir.path(), &first.cert_pem, &first.key_pem).expect("secret volume");
    let store = Arc::new(CertStore::load(volume.cert(), volume.key()).expect("load"));
    let server = serve(tls::server_config(store.clone(), None).expect("config")).await;
    let client = Client::trusting(ca.cert_der());
    assert_eq!(
        client.session(server.addr).await.expect("session").peer,
        leaf(&first)
    );

    // Polling is pushed out of the test's reach: only notifications can explain a reload.
    let (stop, shutdown) = shutdown_signal();
    let reloader = tls::spawn_reloader(store.clone(), Duration::from_secs(3600), shutdown);

    for rotation in 1..=ROTATIONS {
        let next = localhost_cert(&ca);
        volume
            .rotate(&next.cert_pem, &next.key_pem)
            .expect("rotate");
        let session = client.wait_for_cert(server.addr, &leaf(&next)).await;
        assert_eq!(session.version, ProtocolVersion::TLSv1_3);
        assert_eq!(store.reloads(), rotation, "one reload per rotation");
    }
    assert_eq!(store.reload_failures(), 0);

    stop.send(()).expect("reloader alive");
    tokio::time::timeout(STEP, reloader)
        .await
        .expect("reloader stops on shutdown")
        .expect("reloader did not panic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_alone_picks_up_changes() {
    let ca = test_ca("ca");
    let dir = tempfile::tempdir().expect("tempdir");
    let first = localhost_cert(&ca);
    let mut volume =
        SecretVolume::create(dir.path(), &first.cert_pem, &first.key_pem).expect("secret volume");
    let store = Arc::new(CertStore::load(volume.cert(), volume.key()).expect("load"));
    let server = serve(tls::server_config(store.clone(), None).expect("config")).await;
    let client = Client::trusting(ca.cert_der());

    let (stop, shutdown) = shutdown_signal();
    let options = ReloaderOptions {
        poll_interval: Duration::from_millis(200),
        watch: false,
        ..ReloaderOptions::default()
    };
    let reloader = tls::spawn_reloader_with(store.clone(), options, shutdown);

    for rotation in 1..=3 {
        let next = localhost_cert(&ca);
        volume
            .rotate(&next.cert_pem, &next.key_pem)
            .expect("rotate");
        client.wait_for_cert(server.addr, &leaf(&next)).await;
        assert_eq!(store.reloads(), rotation);
    }
    // Files rewritten in place (no symlinks) are noticed too.
    let plain = tempfile::tempdir().expect("tempdir");
    let (cert, key) = write_pair(plain.path(), &first);
    let plain_store = Arc::new(CertStore::load(&cert, &key).expect("load"));
    let (stop_plain, shutdown_plain) = shutdown_signal();
    let options = ReloaderOptions {
        poll_interval: Duration::from_millis(200),
        watch: false,
        ..ReloaderOptions::default()
    };
    let plain_reloader = tls::spawn_reloader_with(plain_store.clone(), options, shutdown_plain);
    let next = localhost_cert(&ca);
    std::fs::write(&key, &next.key_pem).expect("write");
    std::fs::write(&cert, &next.cert_pem).expect("write");
    wait_until("polling reloads the rewritten files", || {
        plain_store.current().cert[0] == leaf(&next)
    })
    .await;

    for (stop, reloader) in [(stop, reloader), (stop_plain, plain_reloader)] {
        stop.send(()).expect("reloader alive");
        tokio::time::timeout(STEP, reloader)
            .await
            .expect("reloader stops on shutdown")
            .expect("reloader did not panic");
    }
}

#[tokio::test]
async fn dev_certificates_are_reused_renewed_and_private() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().expect("tempdir");
    let dev = tls::dev_certs(dir.path()).expect("create");
    for key in [&dev.ca_key, &dev.key] {
        let mode = std::fs::metadata(key).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", key.display());
    }
    let read = |p: &Path| std::fs::read(p).expect("read");
    let (ca, cert) = (read(&dev.ca), read(&dev.cert));

    // Explicit validity: not rcgen's 1975-4096 default.
    let ca_authority = CertificateAuthority::load(&dev.ca, &dev.ca_key).expect("load ca");
    let now = time::OffsetDateTime::now_utc();
    let ca_left = ca_authority.not_after() - now;
    assert!(ca_left > time::Duration::days(3649) && ca_left <= time::Duration::days(3650));

    // A second run reuses everything.
    let again = tls::dev_certs(dir.path()).expect("reuse");
    assert_eq!(again, dev);
    assert_eq!((read(&dev.ca), read(&dev.cert)), (ca.clone(), cert.clone()));

    // A serving certificate about to expire is renewed under the same CA.
    let short = tls::issue_serving_cert(
        &ca_authority,
        &["localhost", "127.0.0.1"],
        Validity::starting_now(time::Duration::hours(12)),
    )
    .expect("issue");
    std::fs::write(&dev.cert, &short.cert_pem).expect("write");
    std::fs::write(&dev.key, &short.key_pem).expect("write");
    tls::dev_certs(dir.path()).expect("renew");
    assert_eq!(read(&dev.ca), ca, "the CA clients trust is kept");
    let renewed = read(&dev.cert);
    assert_ne!(renewed, short.cert_pem.as_bytes());

    // A key that does not match its certificate is replaced too.
    std::fs::write(&dev.key, &short.key_pem).expect("write");
    tls::dev_certs(dir.path()).expect("repair");
    assert_ne!(read(&dev.cert), renewed);
    assert_eq!(read(&dev.ca), ca);

    // And the result serves: the repaired pair loads and chains to the kept CA.
    let store = Arc::new(CertStore::load(&dev.cert, &dev.key).expect("load"));
    let server = serve(tls::server_config(store, None).expect("config")).await;
    let client = Client::trusting(&CertificateDer::from_pem_slice(&ca).expect("ca"));
    client.session(server.addr).await.expect("session");

    // Loose permissions on a reused key are tightened.
    std::fs::set_permissions(&dev.ca_key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    tls::dev_certs(dir.path()).expect("reuse");
    let mode = std::fs::metadata(&dev.ca_key)
        .expect("stat")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

#[tokio::test]
async fn load_errors_name_the_file_and_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");

    let err = CertStore::load(&cert, &key).expect_err("missing");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot read {}", cert.display())),
        "{err}"
    );

    std::fs::write(&cert, "not pem").expect("write");
    std::fs::write(&key, "not pem").expect("write");
    let err = CertStore::load(&cert, &key).expect_err("empty");
    assert_eq!(
        err.to_string(),
        format!(
            "no certificate found in {}: expected a PEM 'CERTIFICATE' block",
            cert.display()
        )
    );

    std::fs::write(&cert, localhost_cert(&test_ca("ca")).cert_pem).expect("write");
    let err = CertStore::load(&cert, &key).expect_err("no key");
    assert!(matches!(err, TlsError::NoPrivateKey { .. }), "{err}");
    assert!(
        err.to_string().contains(&key.display().to_string()),
        "{err}"
    );

    let client_ca = dir.path().join("client-ca.crt");
    std::fs::write(&client_ca, "").expect("write");
    let issued = localhost_cert(&test_ca("ca"));
    let (cert, key) = write_pair(dir.path(), &issued);
    let store = Arc::new(CertStore::load(cert, key).expect("load"));
    let err = tls::server_config(store, Some(&client_ca)).expect_err("empty client CA");
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
}
