//! The whole server on a real TLS socket: serving, and the drain on shutdown (readiness fails
//! at once, serving goes on through the grace period, an in-flight request still gets its
//! answer, then the server stops).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gmsa_webhook::config::{CertSource, ClusterSource, Config, LogFormat};
use gmsa_webhook::Server;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

const STATE: &str = r#"
apiVersion: windows.k8s.io/v1
kind: GMSACredentialSpec
metadata: {name: gmsa-webapp1}
credspec: {CmsPlugins: [ActiveDirectory], DomainJoinConfig: {DnsName: contoso.com}}
"#;

const REVIEW: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","kind":{"group":"","version":"v1","kind":"Pod"},"namespace":"default","operation":"CREATE","object":{"metadata":{"name":"p"},"spec":{"securityContext":{"windowsOptions":{"gmsaCredentialSpecName":"gmsa-webapp1"}},"containers":[{"name":"c"}]}}}}"#;

fn config(dir: &std::path::Path, grace: Duration) -> Config {
    std::fs::create_dir_all(dir.join("state")).unwrap();
    std::fs::write(dir.join("state/spec.yaml"), STATE).unwrap();
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        certs: CertSource::Dev { dir: dir.join("certs") },
        client_ca: None,
        cluster: ClusterSource::StateDir(dir.join("state")),
        random_hostname: false,
        shutdown_grace: grace,
        header_read_timeout: Duration::from_secs(5),
        cert_poll_interval: Duration::from_secs(10),
        max_body_bytes: 3 * 1024 * 1024,
        log_level: tracing::Level::INFO,
        log_format: LogFormat::Text,
    }
}

async fn connect(addr: SocketAddr, ca: &std::path::Path) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// Reads one HTTP/1.1 response with a Content-Length body; returns (status, body).
async fn read_response(stream: &mut TlsStream<TcpStream>) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed mid-body");
                buf.extend_from_slice(&chunk[..n]);
            }
            return (status, String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string());
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before a response");
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn get(addr: SocketAddr, ca: &std::path::Path, path: &str) -> u16 {
    let mut s = connect(addr, ca).await;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    read_response(&mut s).await.0
}

#[tokio::test]
async fn serves_over_tls_then_drains_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::bind(config(dir.path(), Duration::from_millis(800))).await.unwrap();
    let addr = server.addr;
    let ca = dir.path().join("certs/ca.crt");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async {
        let _ = stop_rx.await;
    }));

    assert_eq!(get(addr, &ca, "/readyz").await, 200);
    assert_eq!(get(addr, &ca, "/health").await, 204);

    // A keep-alive connection that answers one review, then starts a second one slowly.
    let mut slow = connect(addr, &ca).await;
    let request = |len: usize| format!("POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n");
    slow.write_all(request(REVIEW.len()).as_bytes()).await.unwrap();
    slow.write_all(REVIEW.as_bytes()).await.unwrap();
    let (status, body) = read_response(&mut slow).await;
    assert_eq!(status, 200);
    assert!(body.contains(r#""allowed":true"#) && body.contains("JSONPatch"), "{body}");
    slow.write_all(request(REVIEW.len()).as_bytes()).await.unwrap();
    slow.write_all(&REVIEW.as_bytes()[..10]).await.unwrap();

    stop_tx.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // During the grace period: not ready, but still serving new connections.
    assert_eq!(get(addr, &ca, "/readyz").await, 503);
    assert_eq!(get(addr, &ca, "/health").await, 204);

    // After the grace period the listener is closed, yet the in-flight request is answered.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(TcpStream::connect(addr).await.is_err(), "listener should be closed after the grace period");
    slow.write_all(&REVIEW.as_bytes()[10..]).await.unwrap();
    let (status, body) = read_response(&mut slow).await;
    assert_eq!(status, 200);
    assert!(body.contains(r#""uid":"u1""#), "{body}");

    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("server should stop once drained")
        .unwrap();
}
