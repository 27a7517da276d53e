//! The whole server on a real TLS socket: serving, and the drain on shutdown (readiness fails
//! at once, serving goes on through the grace period, an in-flight request still gets its
//! answer, then the server stops).

mod common;

use std::time::Duration;

use common::{config, connect, get, read_response, review};
use gmsa_webhook::Server;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn serves_over_tls_then_drains_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::bind(config(dir.path(), Duration::from_millis(800)))
        .await
        .unwrap();
    let addr = server.addr;
    let ca = dir.path().join("certs/ca.crt");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async {
        let _ = stop_rx.await;
    }));

    assert_eq!(get(addr, &ca, "/readyz").await, 200);
    assert_eq!(get(addr, &ca, "/health").await, 204);

    // A keep-alive connection that answers one review, then starts a second one slowly.
    let review = review();
    let mut slow = connect(addr, &ca).await;
    let request = |len: usize| {
        format!("POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n")
    };
    slow.write_all(request(review.len()).as_bytes())
        .await
        .unwrap();
    slow.write_all(review.as_bytes()).await.unwrap();
    let (status, body) = read_response(&mut slow).await;
    assert_eq!(status, 200);
    assert!(
        body.contains(r#""allowed":true"#) && body.contains("JSONPatch"),
        "{body}"
    );
    slow.write_all(request(review.len()).as_bytes())
        .await
        .unwrap();
    slow.write_all(&review.as_bytes()[..10]).await.unwrap();

    stop_tx.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // During the grace period: not ready, but still serving new connections.
    assert_eq!(get(addr, &ca, "/readyz").await, 503);
    assert_eq!(get(addr, &ca, "/health").await, 204);

    // After the grace period the listener is closed, yet the in-flight request is answered.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "listener should be closed after the grace period"
    );
    slow.write_all(&review.as_bytes()[10..]).await.unwrap();
    let (status, body) = read_response(&mut slow).await;
    assert_eq!(status, 200);
    assert!(body.contains(r#""uid":"u1""#), "{body}");

    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("server should stop once drained")
        .unwrap();
}

/// The seconds left on the served certificate, from `/metrics` text.
fn expiry_seconds(metrics: &str) -> Option<i64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix("gmsa_webhook_certificate_expiry_seconds ")?
            .parse()
            .ok()
    })
}

/// Item 7 of the hardening issue: the time left on the served certificate is a metric that
/// follows reloads, and goes negative once the certificate has expired (an alert's input).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_certificates_expiry_is_a_gauge_that_follows_reloads() {
    use gmsa_tls::{issue_serving_cert, CertificateAuthority, Validity};
    use gmsa_webhook::config::CertSource;
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::generate(
        "expiry CA",
        Validity::starting_now(time::Duration::days(30)),
    )
    .unwrap();
    let write = |validity: Validity| {
        let issued = issue_serving_cert(&ca, &["localhost"], validity).unwrap();
        for (file, pem) in [("tls.key", &issued.key_pem), ("tls.crt", &issued.cert_pem)] {
            let tmp = dir.path().join(format!("{file}.tmp"));
            std::fs::write(&tmp, pem).unwrap();
            std::fs::rename(&tmp, dir.path().join(file)).unwrap();
        }
    };
    write(Validity::starting_now(time::Duration::days(3)));
    let mut cfg = config(dir.path(), Duration::from_millis(10));
    cfg.certs = CertSource::Files {
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
    };
    cfg.cert_poll_interval = Duration::from_millis(100);
    let server = Server::bind(cfg).await.unwrap();
    let app = server.app.clone();
    tokio::spawn(server.run(std::future::pending()));

    let three_days = 3 * 24 * 3600;
    let left = expiry_seconds(&app.metrics.encode()).expect("the gauge is exported");
    assert!(
        (three_days - 120..=three_days).contains(&left),
        "{left} s left on a certificate valid for 3 days"
    );

    let now = time::OffsetDateTime::now_utc();
    write(Validity {
        not_before: now - time::Duration::days(10),
        not_after: now - time::Duration::days(1),
    });
    let expired = gmsa_testkit::wait::eventually(Duration::from_secs(20), || async {
        expiry_seconds(&app.metrics.encode()).is_some_and(|s| s < 0)
    })
    .await;
    assert!(expired, "{:?}", expiry_seconds(&app.metrics.encode()));
    let left = expiry_seconds(&app.metrics.encode()).unwrap();
    assert!((-24 * 3600 - 120..=-24 * 3600).contains(&left), "{left}");
}

/// GET `path` over TLS with an optional client certificate; the status, or why none came.
async fn get_with_client_cert(
    addr: std::net::SocketAddr,
    server_ca: &gmsa_tls::CertificateAuthority,
    client: Option<&gmsa_tls::IssuedCert>,
    path: &str,
) -> Result<u16, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio::io::AsyncReadExt;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server_ca.cert_der().clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(gmsa_tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some(issued) => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
                    .collect::<Result<_, _>>()
                    .unwrap();
            let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no HTTP answer: {text:?}"))
}

/// GET `path` over plain HTTP; the status.
async fn plain_get(addr: std::net::SocketAddr, path: &str) -> u16 {
    use tokio::io::AsyncReadExt;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

/// Item 9 of the hardening issue: with `--client-ca`, kubelet probes and scrapers use the
/// plain probe port (which serves no admission), the main port takes only certificates from
/// the client CA, and a replaced CA file takes effect without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ca_mode_has_a_plain_probe_port_and_reloads_the_ca() {
    use gmsa_tls::{issue_client_cert, issue_serving_cert, CertificateAuthority, Validity};
    use gmsa_webhook::config::CertSource;
    let dir = tempfile::tempdir().unwrap();
    let day = || Validity::starting_now(time::Duration::days(1));
    let server_ca = CertificateAuthority::generate("server CA", day()).unwrap();
    let serving = issue_serving_cert(&server_ca, &["localhost"], day()).unwrap();
    std::fs::write(dir.path().join("tls.crt"), &serving.cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), &serving.key_pem).unwrap();
    let (old_ca, new_ca) = (
        CertificateAuthority::generate("client CA 1", day()).unwrap(),
        CertificateAuthority::generate("client CA 2", day()).unwrap(),
    );
    let ca_file = dir.path().join("client-ca.crt");
    std::fs::write(&ca_file, old_ca.cert_pem()).unwrap();
    let mut cfg = config(dir.path(), Duration::from_millis(10));
    cfg.certs = CertSource::Files {
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
    };
    cfg.client_ca = Some(ca_file.clone());
    cfg.probe_listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.cert_poll_interval = Duration::from_millis(100);
    cfg.header_read_timeout = Duration::from_secs(1);
    let server = Server::bind(cfg).await.unwrap();
    let (addr, probes) = (server.addr, server.probe_addr.expect("probe port bound"));
    tokio::spawn(server.run(std::future::pending()));

    // Probes and metrics without any certificate, on the plain port; no admission there.
    assert_eq!(plain_get(probes, "/readyz").await, 200);
    assert_eq!(plain_get(probes, "/health").await, 204);
    assert_eq!(plain_get(probes, "/metrics").await, 200);
    assert_eq!(plain_get(probes, "/mutate").await, 404);
    // Headers that never finish are dropped there too.
    {
        use tokio::io::AsyncReadExt;
        let mut slow = TcpStream::connect(probes).await.unwrap();
        slow.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            while slow.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        })
        .await;
        assert!(
            closed.is_ok(),
            "the probe port drops a client that never finishes its headers"
        );
    }

    let old_client = issue_client_cert(&old_ca, "kube-apiserver", day()).unwrap();
    let new_client = issue_client_cert(&new_ca, "kube-apiserver", day()).unwrap();
    assert!(get_with_client_cert(addr, &server_ca, None, "/health")
        .await
        .is_err());
    assert_eq!(
        get_with_client_cert(addr, &server_ca, Some(&old_client), "/health").await,
        Ok(204)
    );
    assert!(
        get_with_client_cert(addr, &server_ca, Some(&new_client), "/health")
            .await
            .is_err()
    );

    // The CA file is replaced (a ConfigMap update): the new CA counts, the old one no longer.
    let tmp = dir.path().join("client-ca.tmp");
    std::fs::write(&tmp, new_ca.cert_pem()).unwrap();
    std::fs::rename(&tmp, &ca_file).unwrap();
    let switched = gmsa_testkit::wait::eventually(Duration::from_secs(20), || async {
        get_with_client_cert(addr, &server_ca, Some(&new_client), "/health").await == Ok(204)
    })
    .await;
    assert!(switched, "the replaced client CA is used");
    assert!(
        get_with_client_cert(addr, &server_ca, Some(&old_client), "/health")
            .await
            .is_err()
    );

    // A broken file keeps the CA in use.
    std::fs::write(&ca_file, "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        get_with_client_cert(addr, &server_ca, Some(&new_client), "/health").await,
        Ok(204)
    );
}
