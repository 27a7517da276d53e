//! The binary as the container image runs it: no environment but the documented variables
//! (`env -i TLS_CRT=... TLS_KEY=... HTTPS_PORT=... gmsa-webhook --state-dir ...`), no HOME, no
//! PATH. It must start and answer `/health`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gmsa_testkit::real_cluster::{free_port, https_get};

#[test]
fn starts_with_only_the_documented_environment() {
    let dir = tempfile::tempdir().unwrap();
    let certs = gmsa_webhook::tls::dev_certs(dir.path()).unwrap();
    let ca = std::fs::read_to_string(&certs.ca).unwrap();
    let port = free_port().unwrap();
    let state = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/state");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gmsa-webhook"))
        .env_clear()
        .env("TLS_CRT", &certs.cert)
        .env("TLS_KEY", &certs.key)
        .env("HTTPS_PORT", port.to_string())
        .env("LOG_LEVEL", "warn")
        .args(["--state-dir", state, "--bind-address", "127.0.0.1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("https://127.0.0.1:{port}/health");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Ok(Some(exit)) = child.try_wait() {
            let out = child.wait_with_output().unwrap();
            panic!("exited {exit}: {}", String::from_utf8_lossy(&out.stderr));
        }
        match https_get(&url, &ca, None) {
            Ok((status, _)) => break status,
            Err(e) if Instant::now() > deadline => panic!("no answer: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 204);

    let version = Command::new(env!("CARGO_BIN_EXE_gmsa-webhook"))
        .env_clear()
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("windows-gmsa-webhook v"));
}
