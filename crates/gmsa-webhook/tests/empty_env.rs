//! The binary as the container image runs it: no environment but the documented variables
//! (`env -i TLS_CRT=... TLS_KEY=... HTTPS_PORT=... gmsa-webhook --state-dir ...`), no HOME, no
//! PATH. It must start and answer `/health`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gmsa_testkit::real_cluster::{free_port, https_get};
use gmsa_testkit::reviews::{gmsa_pod, ReviewBody};

#[test]
fn starts_with_only_the_documented_environment() {
    let dir = tempfile::tempdir().unwrap();
    let certs = gmsa_tls::dev_certs(dir.path()).unwrap();
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

/// The shared libraries `gcr.io/distroless/cc-debian12` holds (glibc, libgcc, libstdc++,
/// libgomp, OpenSSL): what the image's binary may link, and all it may find at run time.
const IMAGE_LIBRARIES: &[&str] = &[
    "linux-vdso.so.1",
    "ld-linux-x86-64.so.2",
    "libc.so.6",
    "libm.so.6",
    "libdl.so.2",
    "libpthread.so.0",
    "librt.so.1",
    "libgcc_s.so.1",
    "libstdc++.so.6",
    "libgomp.so.1",
    "libssl.so.3",
    "libcrypto.so.3",
];

/// The binary the image ships: the release build `hack/test.sh` makes (`GMSA_RELEASE_WEBHOOK`),
/// else this test run's own build, which links the same way.
fn shipped_binary() -> std::path::PathBuf {
    match std::env::var_os("GMSA_RELEASE_WEBHOOK") {
        Some(path) => path.into(),
        None => {
            eprintln!("GMSA_RELEASE_WEBHOOK unset: checking the test build instead of the release build (hack/test.sh sets it)");
            env!("CARGO_BIN_EXE_gmsa-webhook").into()
        }
    }
}

/// Item 12 of the hardening issue: the binary that is tested is the one the image ships, and
/// it runs in a root holding only what the image holds: itself, the image's libraries, an
/// empty `/tmp`, and the state it is given. The image used to be a musl build with musl's
/// allocator, which nothing here built, ran or measured.
#[test]
fn runs_in_a_root_holding_only_what_the_image_holds() {
    let binary = shipped_binary();
    // Every library it needs is one the image has.
    let ldd = Command::new("ldd").arg(&binary).output().unwrap();
    let listing = String::from_utf8_lossy(&ldd.stdout).into_owned();
    let mut needed = Vec::new();
    for line in listing.lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let file = std::path::Path::new(name)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            IMAGE_LIBRARIES.contains(&file.as_str()),
            "{} needs {file}, which distroless/cc does not have:\n{listing}",
            binary.display()
        );
        // The resolved path, to copy into the root where the loader will look.
        let path = line
            .split("=>")
            .nth(1)
            .map(|rest| rest.split_whitespace().next().unwrap_or_default())
            .unwrap_or(name);
        if path.starts_with('/') {
            needed.push(std::path::PathBuf::from(path));
        }
    }
    assert!(
        !needed.is_empty(),
        "a dynamically linked glibc binary: {listing}"
    );

    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !is_root {
        eprintln!("not root: the libraries are checked, the chroot run is skipped");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let put = |from: &std::path::Path, to: &str| {
        let target = root.path().join(to.trim_start_matches('/'));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(from, &target).unwrap();
    };
    put(&binary, "/usr/local/bin/gmsa-webhook");
    for lib in &needed {
        put(lib, &lib.to_string_lossy());
    }
    let state = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/state");
    for entry in std::fs::read_dir(state).unwrap() {
        let entry = entry.unwrap();
        put(
            &entry.path(),
            &format!("/state/{}", entry.file_name().to_string_lossy()),
        );
    }
    std::fs::create_dir_all(root.path().join("tmp")).unwrap();
    let port = free_port().unwrap();
    // By its path: the environment below is cleared, PATH included.
    let mut child = Command::new("/usr/sbin/chroot")
        .arg(root.path())
        .arg("/usr/local/bin/gmsa-webhook")
        .args(["--dev-certs", "/tmp/certs", "--state-dir", "/state"])
        .args(["--bind-address", "127.0.0.1", "--port", &port.to_string()])
        .env_clear()
        .env("LOG_LEVEL", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ca_path = root.path().join("tmp/certs/ca.crt");
    let deadline = Instant::now() + Duration::from_secs(20);
    let review = ReviewBody::pod(gmsa_pod("p", "gmsa-webapp1"))
        .uid("img")
        .to_string();
    let answer = loop {
        if let Ok(Some(exit)) = child.try_wait() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "exited {exit} in the image's root: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let ca = std::fs::read_to_string(&ca_path).unwrap_or_default();
        let url = format!("https://127.0.0.1:{port}/mutate");
        match gmsa_testkit::real_cluster::https_request("POST", &url, &ca, None, Some(&review)) {
            Ok(answer) => break answer,
            Err(e) if Instant::now() > deadline => panic!("no answer from the chroot: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(answer.0, 200, "{}", answer.1);
    assert!(answer.1.contains(r#""allowed":true"#), "{}", answer.1);
    assert!(
        answer.1.contains(r#""patchType":"JSONPatch""#),
        "{}",
        answer.1
    );
}
