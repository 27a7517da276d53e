//! Talking to a webhook registered by URL, directly: which certificate it presents (whatever
//! it is, so the doctor can say what is wrong with it), and what `/readyz` and `/info` answer.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use http::header;
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Bound on the connect, and on the handshake and answer after it.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts any certificate (its signatures are still checked): the doctor judges the presented
/// chain afterwards, with messages that say what is wrong instead of a failed handshake.
#[derive(Debug)]
struct AcceptAny {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl AcceptAny {
    /// The provider's signature algorithms: signatures are checked, whoever signed.
    fn algorithms(&self) -> &rustls::crypto::WebPkiSupportedAlgorithms {
        &self.provider.signature_verification_algorithms
    }
}

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, self.algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, self.algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms().supported_schemes()
    }
}

/// `https://host:port[/path]` split into the address to dial, the TLS name and the path.
pub struct Target {
    pub host: String,
    pub addr: SocketAddr,
    pub path: String,
}

/// Reads an `https://` URL.
pub fn target(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| format!("{url} is not an https:// URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']').ok_or("bad IPv6 address")?;
            (host, after.strip_prefix(':').unwrap_or("443"))
        }
        None => authority.rsplit_once(':').unwrap_or((authority, "443")),
    };
    let port: u16 = port.parse().map_err(|_| format!("bad port in {url}"))?;
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    Ok(Target {
        host: host.to_string(),
        addr,
        path: path.to_string(),
    })
}

/// What one GET saw: the presented chain, the status and the body.
pub struct Answer {
    pub chain: Vec<CertificateDer<'static>>,
    pub status: u16,
    pub body: String,
}

/// One HTTPS GET of `path` at `target`, accepting any certificate. It blocks on a runtime of
/// its own, so call it from synchronous code (the doctor does, in `spawn_blocking`).
pub fn get(target: &Target, path: &str) -> Result<Answer, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting a runtime: {e}"))?
        .block_on(fetch(target, path))
}

async fn fetch(target: &Target, path: &str) -> Result<Answer, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AcceptAny {
        provider: provider.clone(),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = match target.host.parse::<std::net::IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(target.host.clone()).map_err(|e| e.to_string())?,
    };
    let request = http::Request::get(path)
        .header(header::HOST, &target.host)
        .header(header::CONNECTION, "close")
        .header(header::ACCEPT, "*/*")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;

    let tcp = tokio::time::timeout(TIMEOUT, TcpStream::connect(target.addr))
        .await
        .map_err(|_| {
            format!(
                "cannot connect to {}: no answer within {TIMEOUT:?}",
                target.addr
            )
        })?
        .map_err(|e| format!("cannot connect to {}: {e}", target.addr))?;
    let exchange = async {
        let stream = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        let chain = stream
            .get_ref()
            .1
            .peer_certificates()
            .map(<[_]>::to_vec)
            .unwrap_or_default();
        let (mut sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(causes)?;
        // The answer ends the connection (`Connection: close`); an error there shows up below.
        tokio::spawn(connection);
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request failed: {}", causes(e)))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the answer failed: {}", causes(e)))?
            .to_bytes();
        Ok(Answer {
            chain,
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer from {} within {TIMEOUT:?}", target.addr))?
}

/// A hyper error and its causes on one line: hyper's own message names only the stage that
/// failed.
fn causes(error: hyper::Error) -> String {
    format!("{:#}", anyhow::Error::new(error))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use std::net::{Ipv4Addr, TcpListener};
    use std::time::Instant;

    use gmsa_testkit::real_cluster::LoopbackTls;
    use rustls::pki_types::pem::PemObject as _;

    use super::*;

    /// Whatever signed it, the presented chain comes back with the status and the whole body.
    #[test]
    fn returns_the_presented_chain_status_and_body() {
        let dir = tempfile::tempdir().unwrap();
        let tls = LoopbackTls::generate(dir.path(), "webhook").unwrap();
        let server = tls
            .answer_once(
                "HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n\
             3\r\nnot\r\n6\r\n ready\r\n0\r\n\r\n",
            )
            .unwrap();
        let target = target(&format!(
            "https://localhost:{}/mutate",
            server.addr().port()
        ))
        .unwrap();
        assert_eq!(target.path, "/mutate");
        let answer = get(&target, "/readyz").unwrap();
        let request = server.request().unwrap();
        assert_eq!((answer.status, answer.body.as_str()), (503, "not ready"));
        let served = CertificateDer::pem_file_iter(&tls.cert_path)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        assert_eq!(answer.chain, served);
        assert!(request.starts_with("GET /readyz HTTP/1.1\r\n"), "{request}");
        assert!(request.contains("host: localhost\r\n"), "{request}");
    }

    #[test]
    fn says_when_nothing_listens() {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let target = target(&format!("https://127.0.0.1:{port}")).unwrap();
        let err = get(&target, "/health").map(|_| ()).unwrap_err();
        assert!(err.starts_with("cannot connect to 127.0.0.1:"), "{err}");
    }

    /// A webhook that accepts and then says nothing costs the doctor one bounded wait.
    #[test]
    fn a_silent_server_is_given_up_on() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let target = target(&format!("https://{}", listener.local_addr().unwrap())).unwrap();
        let began = Instant::now();
        let err = get(&target, "/readyz").map(|_| ()).unwrap_err();
        assert!(err.contains("no answer"), "{err}");
        assert!(began.elapsed() < TIMEOUT * 2, "{:?}", began.elapsed());
        drop(listener);
    }
}
