//! The image built without Docker (`hack/build-image.sh`, an OCI archive) and the Dockerfile
//! agree: the same binaries built the same way, the same user, entrypoint, environment and
//! ports; and the archive is what containerd and skopeo read (an index naming the image, a
//! manifest, a config, one layer whose files are the binaries and what they need).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The words of the Dockerfile's `cargo build` and of the image script's.
fn cargo_build_words(text: &str) -> Vec<String> {
    let joined = text.replace("\\\n", " ");
    let line = joined
        .lines()
        .find(|l| l.contains("cargo build --release --locked"))
        .unwrap_or_else(|| panic!("no cargo build --release in:\n{text}"));
    let from = line.find("cargo build").unwrap();
    let mut words: Vec<String> = line[from..]
        .split_whitespace()
        .take_while(|w| !matches!(*w, "&&" | "|" | "2>/dev/null"))
        .filter(|w| !matches!(*w, "-q" | "--message-format=json"))
        .map(str::to_string)
        .collect();
    words.sort();
    words
}

/// The value of a Dockerfile instruction (the last one of the final stage).
fn instruction(dockerfile: &str, name: &str) -> Vec<String> {
    dockerfile
        .lines()
        .filter(|l| l.starts_with(&format!("{name} ")))
        .map(|l| l[name.len() + 1..].trim().to_string())
        .collect()
}

#[test]
fn the_script_builds_what_the_dockerfile_builds() {
    let dockerfile = read(&repo().join("Dockerfile"));
    let script = read(&repo().join("hack/build-image.sh"));
    assert_eq!(cargo_build_words(&dockerfile), cargo_build_words(&script));
    assert_eq!(instruction(&dockerfile, "USER"), ["65532:65532"]);
    assert!(script.contains("--user 65532:65532"));
    assert_eq!(
        instruction(&dockerfile, "ENTRYPOINT"),
        [r#"["/usr/local/bin/gmsa-webhook"]"#]
    );
    assert!(script.contains("--entrypoint /usr/local/bin/gmsa-webhook "));
    assert_eq!(instruction(&dockerfile, "ENV"), ["HTTPS_PORT=8443"]);
    assert!(script.contains("--env HTTPS_PORT=8443"));
    assert_eq!(instruction(&dockerfile, "EXPOSE"), ["8443 8081"]);
    assert!(script.contains("--expose 8443 --expose 8081"));
    let copied = instruction(&dockerfile, "COPY");
    let last = copied.last().unwrap();
    for binary in ["gmsa-webhook", "kubectl-gmsa"] {
        assert!(last.contains(&format!("/out/{binary}")), "{last}");
        assert!(script.contains(&format!("$root/usr/local/bin/{binary}")));
    }
}

fn tar_member(archive: &Path, member: &str) -> Vec<u8> {
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(archive)
        .arg(member)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{member}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn blob(archive: &Path, digest: &str) -> Vec<u8> {
    tar_member(
        archive,
        &format!("blobs/sha256/{}", digest.trim_start_matches("sha256:")),
    )
}

#[test]
fn the_archive_is_the_image_the_dockerfile_describes() {
    let Some(archive) = std::env::var_os("GMSA_IMAGE_ARCHIVE").map(PathBuf::from) else {
        eprintln!("GMSA_IMAGE_ARCHIVE unset: the archive is checked where hack/test.sh built it");
        return;
    };
    let index: Value = serde_json::from_slice(&tar_member(&archive, "index.json")).unwrap();
    let layout: Value = serde_json::from_slice(&tar_member(&archive, "oci-layout")).unwrap();
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    let manifest_desc = &index["manifests"][0];
    let name = manifest_desc["annotations"]["io.containerd.image.name"]
        .as_str()
        .unwrap();
    assert_eq!(
        name,
        concat!("docker.io/library/gmsa-webhook:", env!("CARGO_PKG_VERSION"))
    );
    let manifest: Value =
        serde_json::from_slice(&blob(&archive, manifest_desc["digest"].as_str().unwrap())).unwrap();
    let config: Value = serde_json::from_slice(&blob(
        &archive,
        manifest["config"]["digest"].as_str().unwrap(),
    ))
    .unwrap();
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/usr/local/bin/gmsa-webhook"])
    );
    let env = config["config"]["Env"].as_array().unwrap();
    assert!(env.iter().any(|e| e == "HTTPS_PORT=8443"), "{env:?}");
    assert_eq!(config["os"], "linux");

    // The layer: both binaries, the loader and libraries they link, CA certificates, the
    // nonroot user, a /tmp anyone may write.
    let layer_digest = manifest["layers"][0]["digest"].as_str().unwrap();
    let layer = std::env::temp_dir().join(format!("gmsa-image-layer-{}.tgz", std::process::id()));
    std::fs::write(&layer, blob(&archive, layer_digest)).unwrap();
    let listing = Command::new("tar")
        .args(["-tvzf"])
        .arg(&layer)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&layer);
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    for path in [
        "usr/local/bin/gmsa-webhook",
        "usr/local/bin/kubectl-gmsa",
        "etc/ssl/certs/ca-certificates.crt",
        "etc/passwd",
        "lib64/ld-linux-x86-64.so.2",
        "libc.so.6",
        "libgcc_s.so.1",
    ] {
        assert!(
            listing.contains(path),
            "{path} missing from the layer:\n{listing}"
        );
    }
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("drwxrwxrwt")
                && l.trim_end().trim_end_matches('/').ends_with(" tmp")),
        "{listing}"
    );
    let passwd = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -xOf {} blobs/sha256/{} | tar -xzOf - etc/passwd",
            archive.display(),
            layer_digest.trim_start_matches("sha256:")
        ))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&passwd.stdout).contains("nonroot:x:65532:65532"));
}

/// The same binaries give the same image, byte for byte: the digest is reproducible.
#[test]
fn the_image_digest_is_reproducible() {
    let root = tempfile::tempdir().unwrap();
    let outputs = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("bin")).unwrap();
    std::fs::write(root.path().join("bin/tool"), b"#!/bin/sh\necho hi\n").unwrap();
    let digest = |out: &Path| {
        let result = Command::new("python3")
            .arg(repo().join("hack/oci-image.py"))
            .arg("--root")
            .arg(root.path())
            .args([
                "--name",
                "docker.io/library/repro:1",
                "--entrypoint",
                "/bin/tool",
            ])
            .arg("--out")
            .arg(out)
            .output()
            .unwrap();
        assert!(
            result.status.success(),
            "{}",
            String::from_utf8_lossy(&result.stderr)
        );
        String::from_utf8_lossy(&result.stdout).trim().to_string()
    };
    let first = digest(&outputs.path().join("a.tar"));
    // Another mtime on the same contents changes nothing.
    let file = std::fs::File::options()
        .write(true)
        .open(root.path().join("bin/tool"))
        .unwrap();
    file.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(12345))
        .unwrap();
    let second = digest(&outputs.path().join("b.tar"));
    assert!(first.starts_with("sha256:"), "{first}");
    assert_eq!(first, second);
    assert_eq!(
        std::fs::read(outputs.path().join("a.tar")).unwrap(),
        std::fs::read(outputs.path().join("b.tar")).unwrap()
    );
}
