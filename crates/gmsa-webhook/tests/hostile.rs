//! Hostile and broken input on a real TLS socket: every request body gets a well-formed answer
//! (or the documented HTTP status), slow or garbage clients are dropped, and the server keeps
//! answering everyone else correctly.

mod common;

use std::time::Duration;

use base64::Engine;
use common::{config, connect, post, review};
use gmsa_webhook::Server;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(
    header_timeout: Duration,
) -> (tempfile::TempDir, std::net::SocketAddr, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), Duration::from_millis(10));
    cfg.header_read_timeout = header_timeout;
    cfg.body_read_timeout = header_timeout;
    let server = Server::bind(cfg).await.unwrap();
    let addr = server.addr;
    tokio::spawn(server.run(std::future::pending()));
    let ca = dir.path().join("certs/ca.crt");
    (dir, addr, ca)
}

/// A correct review still gets the correct answer.
async fn still_serves(addr: std::net::SocketAddr, ca: &std::path::Path) {
    let (status, body) = post(addr, ca, "/mutate", review().as_bytes()).await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["response"]["allowed"], true, "{body}");
    assert_eq!(v["response"]["patchType"], "JSONPatch");
}

fn review_answer(body: &str) -> Value {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    assert_eq!(v["kind"], "AdmissionReview", "{body}");
    assert!(v["response"]["allowed"].is_boolean(), "{body}");
    v
}

#[tokio::test]
async fn huge_nested_and_invalid_bodies() {
    let (_dir, addr, ca) = start(Duration::from_secs(5)).await;

    // 50 MiB: refused by size without being read.
    let big = vec![b'{'; 50 * 1024 * 1024];
    let (status, _) =
        tokio::time::timeout(Duration::from_secs(30), post(addr, &ca, "/validate", &big))
            .await
            .unwrap();
    assert_eq!(status, 413);
    still_serves(addr, &ca).await;

    // Deep nesting: a parse error, not a stack overflow.
    let mut deep = String::from(
        r#"{"request":{"uid":"d","kind":{"kind":"Pod"},"operation":"CREATE","object":"#,
    );
    deep.push_str(&"[".repeat(200_000));
    let (status, body) = post(addr, &ca, "/mutate", deep.as_bytes()).await;
    assert_eq!(status, 200);
    let v = review_answer(&body);
    assert_eq!(v["response"]["status"]["code"], 400);

    // Invalid UTF-8 inside a string.
    let mut bad = br#"{"request":{"uid":""#.to_vec();
    bad.extend_from_slice(&[0xff, 0xfe, 0xc3]);
    bad.extend_from_slice(br#"","kind":{"kind":"Pod"}}}"#);
    let (status, body) = post(addr, &ca, "/validate", &bad).await;
    assert_eq!(status, 200);
    assert_eq!(review_answer(&body)["response"]["status"]["code"], 400);
    still_serves(addr, &ca).await;
}

#[tokio::test]
async fn wrong_json_types_in_every_field() {
    let (_dir, addr, ca) = start(Duration::from_secs(5)).await;
    let base: Value = serde_json::from_str(&review()).unwrap();
    let pointers = [
        "/apiVersion",
        "/request",
        "/request/uid",
        "/request/kind",
        "/request/kind/kind",
        "/request/operation",
        "/request/namespace",
        "/request/object",
        "/request/object/metadata",
        "/request/object/metadata/name",
        "/request/object/spec",
        "/request/object/spec/securityContext",
        "/request/object/spec/securityContext/windowsOptions",
        "/request/object/spec/securityContext/windowsOptions/gmsaCredentialSpecName",
        "/request/object/spec/containers",
        "/request/object/spec/containers/0",
        "/request/object/spec/containers/0/name",
    ];
    let wrong = [
        json!(7),
        json!("x"),
        json!([1]),
        json!({"a": 1}),
        json!(true),
        Value::Null,
        json!(1.5e300),
    ];
    let mut answered = 0;
    for pointer in pointers {
        for value in &wrong {
            let mut review = base.clone();
            *review.pointer_mut(pointer).unwrap() = value.clone();
            for path in ["/mutate", "/validate"] {
                let (status, body) = post(addr, &ca, path, review.to_string().as_bytes()).await;
                assert_eq!(status, 200, "{pointer} = {value} at {path}");
                let v = review_answer(&body);
                if v["response"]["allowed"] == false {
                    let code = v["response"]["status"]["code"].as_u64().unwrap();
                    assert!(
                        [400, 403, 404, 422].contains(&code),
                        "{pointer} = {value}: {body}"
                    );
                }
                answered += 1;
            }
        }
    }
    assert_eq!(answered, pointers.len() * wrong.len() * 2);
    still_serves(addr, &ca).await;
}

#[tokio::test]
async fn a_thousand_containers_and_duplicate_names() {
    let (_dir, addr, ca) = start(Duration::from_secs(5)).await;
    let mut review: Value = serde_json::from_str(&review()).unwrap();
    let containers: Vec<Value> = (0..1000)
        .map(|i| {
            json!({"name": if i % 2 == 0 { "same".to_string() } else { format!("c{i}") },
            "securityContext": {"windowsOptions": {"gmsaCredentialSpecName": "gmsa-webapp1"}}})
        })
        .collect();
    review["request"]["object"]["spec"]["containers"] = Value::Array(containers);
    let (status, body) = post(addr, &ca, "/mutate", review.to_string().as_bytes()).await;
    assert_eq!(status, 200);
    let v = review_answer(&body);
    let patch = base64::engine::general_purpose::STANDARD
        .decode(v["response"]["patch"].as_str().unwrap())
        .unwrap();
    let ops: Vec<Value> = serde_json::from_slice(&patch).unwrap();
    assert_eq!(ops.len(), 1001, "pod level plus every container");
    assert_eq!(
        ops[1000]["path"],
        "/spec/containers/999/securityContext/windowsOptions/gmsaCredentialSpec"
    );
    let (status, body) = post(addr, &ca, "/validate", review.to_string().as_bytes()).await;
    assert_eq!(status, 200);
    assert_eq!(review_answer(&body)["response"]["allowed"], true, "{body}");
}

#[tokio::test]
async fn slow_headers_and_tls_garbage_are_dropped() {
    let (_dir, addr, ca) = start(Duration::from_secs(1)).await;

    // Headers that never finish: the connection is closed after the header timeout.
    let mut slow = connect(addr, &ca).await;
    slow.write_all(b"POST /mutate HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "a client that never finishes its headers must be dropped"
    );

    // Not TLS at all.
    for garbage in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0xff, 0xff, 0, 0, 0][..],
        &[0u8; 4096][..],
    ] {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let _ = tcp.write_all(garbage).await;
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            let mut buf = [0u8; 256];
            loop {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "garbage connections must be closed");
    }
    still_serves(addr, &ca).await;
}

/// Reads until the server closes the connection; `true` if it did within `limit`.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Item 2 of the hardening issue: complete headers, then a body that stops after a few bytes.
/// Before the body had a deadline, all 100 such connections were still open 40 s later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_stall_are_cut_off_on_http1_and_http2() {
    const STALLERS: usize = 100;
    let (_dir, addr, ca) = start(Duration::from_secs(1)).await;
    let mut stallers = Vec::new();
    for _ in 0..STALLERS {
        let mut s = connect(addr, &ca).await;
        s.write_all(
            b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"request\"",
        )
        .await
        .unwrap();
        stallers.push(s);
    }
    let started = std::time::Instant::now();
    // Everyone else is served meanwhile.
    still_serves(addr, &ca).await;
    let mut closed = 0;
    let mut answered_408 = 0;
    for mut s in stallers {
        let mut head = [0u8; 12];
        if tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut head))
            .await
            .is_ok_and(|r| r.is_ok())
            && &head == b"HTTP/1.1 408"
        {
            answered_408 += 1;
        }
        if closed_within(&mut s, Duration::from_secs(10)).await {
            closed += 1;
        }
    }
    let took = started.elapsed();
    assert_eq!(answered_408, STALLERS, "each stalled body is answered 408");
    assert_eq!(
        closed, STALLERS,
        "each stalled HTTP/1.1 connection is closed"
    );

    // HTTP/2: the stalled stream is answered 408; the connection stays usable.
    let (mut sender, driver) = h2_connect(addr, &ca).await;
    let request = http::Request::post(format!("https://localhost:{}/validate", addr.port()))
        .header("content-type", "application/json")
        .header("content-length", "1000")
        .body(())
        .unwrap();
    let (response, mut stream) = sender.send_request(request, false).unwrap();
    stream
        .send_data(bytes::Bytes::from_static(b"{\"request\""), false)
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("the stalled h2 stream is answered")
        .unwrap();
    assert_eq!(response.status(), 408);
    let request = http::Request::get(format!("https://localhost:{}/health", addr.port()))
        .body(())
        .unwrap();
    let (response, _) = sender.send_request(request, true).unwrap();
    assert_eq!(response.await.unwrap().status(), 204);
    drop(sender);
    driver.abort();
    still_serves(addr, &ca).await;
    println!(
        "stalled bodies: {STALLERS} HTTP/1.1 connections answered 408 and closed within {} ms of a 1 s body timeout; an h2 stream answered 408",
        took.as_millis()
    );
}

/// An h2 client connection trusting `ca`; the sender and the connection's driver.
async fn h2_connect(
    addr: std::net::SocketAddr,
    ca: &std::path::Path,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    tokio::task::JoinHandle<()>,
) {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, connection) = h2::client::handshake(tls).await.unwrap();
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    (sender, driver)
}

/// HTTP/2 rapid reset (CVE-2023-44487): one connection opens streams and cancels them at once,
/// as fast as it can. The server bounds what that costs (hyper counts pending resets and ends
/// such a connection with GOAWAY); everyone else keeps getting answers, during and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_rapid_reset_does_not_stop_the_server() {
    const STREAMS: usize = 5_000;
    let (_dir, addr, ca) = start(Duration::from_secs(5)).await;
    let attack_ca = ca.clone();
    let attacker = tokio::spawn(async move { rapid_reset(addr, &attack_ca, STREAMS).await });
    // Others are served while the attack runs.
    let mut served_during = 0;
    while !attacker.is_finished() && served_during < 50 {
        still_serves(addr, &ca).await;
        served_during += 1;
    }
    let (opened, ended_by) = tokio::time::timeout(Duration::from_secs(60), attacker)
        .await
        .expect("the attack is bounded")
        .unwrap();
    for _ in 0..5 {
        still_serves(addr, &ca).await;
    }
    println!(
        "h2 rapid reset: {opened} streams opened and reset on one connection ({ended_by}); {served_during} reviews served to others meanwhile"
    );
    assert!(opened > 0);
}

/// Opens and resets up to `streams` streams on one h2 connection; returns how many were opened
/// and how the connection ended.
async fn rapid_reset(
    addr: std::net::SocketAddr,
    ca: &std::path::Path,
    streams: usize,
) -> (usize, String) {
    let (mut sender, driver) = h2_connect(addr, ca).await;
    let mut opened = 0;
    let mut ended_by = "all streams sent".to_string();
    for _ in 0..streams {
        let ready = tokio::time::timeout(Duration::from_secs(5), sender.clone().ready()).await;
        let mut ready = match ready {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                ended_by = format!("server ended the connection: {e}");
                break;
            }
            Err(_) => {
                ended_by = "no stream capacity for 5 s".into();
                break;
            }
        };
        let request = http::Request::post(format!("https://localhost:{}/mutate", addr.port()))
            .header("content-type", "application/json")
            .body(())
            .unwrap();
        match ready.send_request(request, false) {
            Ok((_response, mut stream)) => {
                stream.send_reset(h2::Reason::CANCEL);
                opened += 1;
            }
            Err(e) => {
                ended_by = format!("server ended the connection: {e}");
                break;
            }
        }
        sender = ready;
    }
    drop(sender);
    let _ = tokio::time::timeout(Duration::from_secs(5), driver).await;
    (opened, ended_by)
}
