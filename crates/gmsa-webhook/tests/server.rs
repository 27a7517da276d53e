//! The whole server on a real TLS socket: serving, and the drain on shutdown (readiness fails
//! at once, serving goes on through the grace period, an in-flight request still gets its
//! answer, then the server stops).

mod common;

use std::time::Duration;

use common::{config, connect, get, read_response, REVIEW};
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
    let mut slow = connect(addr, &ca).await;
    let request = |len: usize| {
        format!("POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n")
    };
    slow.write_all(request(REVIEW.len()).as_bytes())
        .await
        .unwrap();
    slow.write_all(REVIEW.as_bytes()).await.unwrap();
    let (status, body) = read_response(&mut slow).await;
    assert_eq!(status, 200);
    assert!(
        body.contains(r#""allowed":true"#) && body.contains("JSONPatch"),
        "{body}"
    );
    slow.write_all(request(REVIEW.len()).as_bytes())
        .await
        .unwrap();
    slow.write_all(&REVIEW.as_bytes()[..10]).await.unwrap();

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
    slow.write_all(&REVIEW.as_bytes()[10..]).await.unwrap();
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
    use gmsa_webhook::config::CertSource;
    use gmsa_webhook::tls::{issue_serving_cert, CertificateAuthority, Validity};
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
