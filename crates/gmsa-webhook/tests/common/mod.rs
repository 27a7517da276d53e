//! Test support shared by the server-level tests: a webhook on the embedded state with dev
//! certificates, and a minimal HTTPS/1.1 client that can also misbehave on purpose.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gmsa_testkit::reviews::{gmsa_pod, ReviewBody};
use gmsa_webhook::config::{CertSource, ClusterSource, Config, LogFormat};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

pub const STATE: &str = r#"
apiVersion: windows.k8s.io/v1
kind: GMSACredentialSpec
metadata: {name: gmsa-webapp1}
credspec: {CmsPlugins: [ActiveDirectory], DomainJoinConfig: {DnsName: contoso.com}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: everyone-may-use}
subjects: [{kind: Group, name: system:serviceaccounts}]
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: gmsa-user}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: gmsa-user}
rules: [{apiGroups: [windows.k8s.io], resources: [gmsacredentialspecs], verbs: [use]}]
"#;

/// A review of a pod CREATE in `default`, uid `u1`, naming gmsa-webapp1 at pod level.
pub fn review() -> String {
    ReviewBody::pod(gmsa_pod("p", "gmsa-webapp1")).to_string()
}

/// A configuration serving the embedded [`STATE`] with dev certificates under `dir`.
pub fn config(dir: &Path, grace: Duration) -> Config {
    std::fs::create_dir_all(dir.join("state")).unwrap();
    std::fs::write(dir.join("state/spec.yaml"), STATE).unwrap();
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        certs: CertSource::Dev {
            dir: dir.join("certs"),
        },
        client_ca: None,
        probe_listen: None,
        cluster: ClusterSource::StateDir(dir.join("state")),
        random_hostname: false,
        shutdown_grace: grace,
        header_read_timeout: Duration::from_secs(5),
        body_read_timeout: Duration::from_secs(10),
        cert_poll_interval: Duration::from_secs(10),
        max_body_bytes: 3 * 1024 * 1024,
        log_level: tracing::Level::INFO,
        log_format: LogFormat::Text,
        renewal: None,
    }
}

pub async fn connect(addr: SocketAddr, ca: &Path) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
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
pub async fn read_response(stream: &mut TlsStream<TcpStream>) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed mid-body");
                buf.extend_from_slice(&chunk[..n]);
            }
            return (
                status,
                String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string(),
            );
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before a response");
        buf.extend_from_slice(&chunk[..n]);
    }
}

pub async fn get(addr: SocketAddr, ca: &Path, path: &str) -> u16 {
    let mut s = connect(addr, ca).await;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    read_response(&mut s).await.0
}

/// Sends one POST with a body and returns (status, body).
pub async fn post(addr: SocketAddr, ca: &Path, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = connect(addr, ca).await;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (413) and close before the whole body is sent.
    let _ = s.write_all(body).await;
    read_response(&mut s).await
}
