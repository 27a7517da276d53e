//! A minimal HTTPS client for loopback servers that trust only a test CA.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};

use super::process::tail;
use super::ClusterError;

/// Bound on every single HTTP request and kubectl call the helpers make.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

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

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| fail(format!("bad CA PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| fail(format!("bad CA certificate: {e}")))?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| fail(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let server_name = ServerName::IpAddress(addr.ip().into());
    let connection = rustls::ClientConnection::new(Arc::new(config), server_name)
        .map_err(|e| fail(e.to_string()))?;

    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| fail(e.to_string()))?;
    tcp.set_read_timeout(Some(REQUEST_TIMEOUT))
        .and_then(|()| tcp.set_write_timeout(Some(REQUEST_TIMEOUT)))
        .map_err(|e| fail(e.to_string()))?;
    let mut stream = rustls::StreamOwned::new(connection, tcp);

    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nAccept: application/json\r\n"
    );
    if let Some(token) = bearer {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method != "GET" {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream
        .write_all(request.as_bytes())
        .map_err(|e| fail(e.to_string()))?;

    let mut response = Vec::new();
    if let Err(e) = stream.read_to_end(&mut response) {
        // Servers may close without a TLS close_notify; what arrived is still the answer.
        if e.kind() != io::ErrorKind::UnexpectedEof || response.is_empty() {
            return Err(fail(e.to_string()));
        }
    }
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| fail(format!("not an HTTP response: {}", tail(&text, 3))))?;
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().replace(' ', "") == "transfer-encoding:chunked");
    let body = if chunked {
        dechunk(body).ok_or_else(|| fail("malformed chunked body".into()))?
    } else {
        body.to_string()
    };
    Ok((status, body))
}

/// Decodes an HTTP/1.1 chunked body (no trailers expected).
fn dechunk(mut rest: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size_line, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size_line.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(after.get(..size)?);
        rest = after.get(size..)?.strip_prefix("\r\n")?;
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks_bodies() {
        assert_eq!(
            dechunk("4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\n\r\n").as_deref(),
            Some("Wikipedia")
        );
        assert_eq!(dechunk("5\r\nWiki"), None);
    }
}
