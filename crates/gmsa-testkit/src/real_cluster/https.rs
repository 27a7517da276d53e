//! One-shot HTTPS requests to loopback servers that trust only a test CA (the API server, a
//! webhook under test), on hyper's HTTP/1.1 client connection: the tests stay synchronous
//! while hyper does the framing (chunked bodies included).

use std::error::Error;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::ClusterError;

/// Bound on every single HTTP request and kubectl call the helpers make.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on the TCP connect: a loopback server accepts at once or is not there.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// One HTTPS GET; see [`https_request`].
pub fn https_get(
    url: &str,
    ca_pem: &str,
    bearer: Option<&str>,
) -> Result<(u16, String), ClusterError> {
    https_request("GET", url, ca_pem, bearer, None)
}

/// One HTTP/1.1 request to a loopback `https://IP:port/path` URL, trusting only `ca_pem`;
/// `body` is sent as `application/json`. Returns the status code and the (de-chunked) body.
/// Enough for probes and for reading the exact `Status` of a refused request, without curl.
/// It blocks on a runtime of its own, so call it from synchronous code.
pub fn https_request(
    method: &str,
    url: &str,
    ca_pem: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> Result<(u16, String), ClusterError> {
    let fail = |reason: String| ClusterError::Https {
        url: url.to_string(),
        reason,
    };
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| fail("only https:// URLs are supported".into()))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddr = authority
        .parse()
        .map_err(|e| fail(format!("expected an IP:port authority: {e}")))?;
    let tls = trusting(ca_pem).map_err(fail)?;

    let body = body.unwrap_or("");
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, authority)
        .header(header::CONNECTION, "close")
        .header(header::ACCEPT, "application/json");
    if let Some(token) = bearer {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if !body.is_empty() || method != "GET" {
        request = request
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, body.len());
    }
    let request = request
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .map_err(|e| fail(e.to_string()))?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(format!("starting a runtime: {e}")))?;
    runtime
        .block_on(async {
            match tokio::time::timeout(REQUEST_TIMEOUT, exchange(addr, tls, request)).await {
                Ok(answer) => answer,
                Err(_) => Err(format!("no answer within {REQUEST_TIMEOUT:?}")),
            }
        })
        .map_err(fail)
}

/// A client configuration that trusts only the certificates in `ca_pem`, speaking HTTP/1.1.
fn trusting(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("bad CA PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("bad CA certificate: {e}"))?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Connects, sends `request` on a fresh connection and reads the whole answer.
async fn exchange(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    request: http::Request<Full<Bytes>>,
) -> Result<(u16, String), String> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("no connection within {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    let stream = TlsConnector::from(tls)
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| causes(&e))?;
    // The answer ends the connection (`Connection: close`); an error there shows up below.
    tokio::spawn(connection);
    let response = sender.send_request(request).await.map_err(|e| causes(&e))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| causes(&e))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// An error and its causes on one line: hyper's own message names only the stage that failed.
fn causes(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::super::LoopbackTls;
    use super::*;

    /// Framing is hyper's: a chunked answer (here with a chunk extension) comes back whole,
    /// and the request carries what the API server needs.
    #[test]
    fn sends_the_token_and_body_and_reads_a_chunked_answer() {
        let dir = tempfile::tempdir().unwrap();
        let tls = LoopbackTls::generate(dir.path(), "https").unwrap();
        let server = tls
            .answer_once(
                "HTTP/1.1 422 Unprocessable Entity\r\nTransfer-Encoding: chunked\r\n\
             Connection: close\r\n\r\n4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\n\r\n",
            )
            .unwrap();
        let url = format!("https://{}/apis/x?watch=false", server.addr());
        let answer = https_request("POST", &url, &tls.ca_pem, Some("t0ken"), Some("{}"));
        let request = server.request().unwrap().to_ascii_lowercase();
        assert_eq!(answer.unwrap(), (422, "Wikipedia".to_string()));
        assert!(
            request.starts_with("post /apis/x?watch=false http/1.1\r\n"),
            "{request}"
        );
        for line in [
            "authorization: bearer t0ken",
            "content-type: application/json",
            "content-length: 2",
            "accept: application/json",
            "connection: close",
        ] {
            assert!(request.contains(&format!("{line}\r\n")), "{request}");
        }
        assert!(request.ends_with("\r\n\r\n{}"), "{request}");
    }

    #[test]
    fn refuses_a_certificate_of_another_ca() {
        let dir = tempfile::tempdir().unwrap();
        let served = LoopbackTls::generate(dir.path(), "served").unwrap();
        let other = LoopbackTls::generate(dir.path(), "other").unwrap();
        let server = served.answer_once("HTTP/1.1 200 OK\r\n\r\n").unwrap();
        let url = format!("https://{}/readyz", server.addr());
        let err = https_get(&url, &other.ca_pem, None).unwrap_err();
        assert!(
            err.to_string().contains("invalid peer certificate"),
            "{err}"
        );
        assert!(server.request().is_err(), "no request got through");
    }
}
