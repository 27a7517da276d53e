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
