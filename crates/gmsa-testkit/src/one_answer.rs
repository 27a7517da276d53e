//! A loopback HTTPS server that reads one request and sends one canned answer byte for byte:
//! for testing what a client makes of the framing (chunked bodies) and of the certificate it
//! is shown, which a real server would not let a test choose.

use std::io::{self, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Bound on the client's arrival and on each read, so a broken client fails its test instead
/// of hanging it.
const LIMIT: Duration = Duration::from_secs(10);

/// The server of one answer; see the module documentation.
#[derive(Debug)]
pub struct OneAnswer {
    addr: SocketAddr,
    server: JoinHandle<Result<String, String>>,
}

impl OneAnswer {
    /// Listens on a free loopback port, presenting the PEM chain in `cert_path` and the key in
    /// `key_path`, and sends `answer` after the first request.
    pub fn start(cert_path: &Path, key_path: &Path, answer: &str) -> io::Result<Self> {
        let certs = CertificateDer::pem_file_iter(cert_path)
            .map_err(io::Error::other)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(io::Error::other)?;
        let key = PrivateKeyDer::from_pem_file(key_path).map_err(io::Error::other)?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(io::Error::other)?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = listener.local_addr()?;
        let answer = answer.as_bytes().to_vec();
        let server = thread::spawn(move || serve(&listener, config, &answer));
        Ok(Self { addr, server })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The request it read (head and body, as text), or why it read none: the client refused
    /// the handshake, or never came.
    pub fn request(self) -> Result<String, String> {
        let deadline = Instant::now() + LIMIT * 2;
        while !self.server.is_finished() {
            if Instant::now() >= deadline {
                return Err("no client came".into());
            }
            thread::sleep(Duration::from_millis(10));
        }
        self.server
            .join()
            .unwrap_or_else(|_| Err("the server panicked".into()))
    }
}

fn serve(
    listener: &TcpListener,
    config: rustls::ServerConfig,
    answer: &[u8],
) -> Result<String, String> {
    let (tcp, _) = listener.accept().map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(LIMIT))
        .map_err(|e| e.to_string())?;
    let connection = rustls::ServerConnection::new(Arc::new(config)).map_err(|e| e.to_string())?;
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !is_whole_request(&seen) {
        match stream.read(&mut buf) {
            Ok(0) => return Err("the client closed before its request was whole".into()),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) => return Err(e.to_string()),
        }
    }
    stream.write_all(answer).map_err(|e| e.to_string())?;
    stream.conn.send_close_notify();
    stream.flush().map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&seen).into_owned())
}

/// Whether `seen` holds a whole head and as much body as its `Content-Length` says.
fn is_whole_request(seen: &[u8]) -> bool {
    let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse::<usize>().ok())
        .unwrap_or(0);
    seen.len() >= end + 4 + length
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_whole_with_its_announced_body() {
        assert!(!is_whole_request(b"GET / HTTP/1.1\r\nHost: x\r\n"));
        assert!(is_whole_request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!is_whole_request(
            b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n{"
        ));
        assert!(is_whole_request(
            b"POST / HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}"
        ));
    }
}
