//! helm for the tests that run it: from `hack/install-helm.sh` (cached under
//! ~/.cache/gmsa-k8s/helm), or `GMSA_HELM`; its state always in a directory of the test's own.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // shared by test binaries

use std::path::{Path, PathBuf};
use std::process::Command;

/// The helm binary.
pub fn helm() -> PathBuf {
    if let Some(path) = std::env::var_os("GMSA_HELM").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let cache = match (
        std::env::var_os("GMSA_CACHE_DIR"),
        std::env::var_os("XDG_CACHE_HOME"),
    ) {
        (Some(dir), _) if !dir.is_empty() => PathBuf::from(dir),
        (_, Some(dir)) if !dir.is_empty() => PathBuf::from(dir).join("gmsa-k8s"),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
            .join(".cache/gmsa-k8s"),
    };
    let path = cache.join("helm/2.1.0/helm");
    assert!(
        path.is_file(),
        "helm not found at {}: run hack/install-helm.sh (or set GMSA_HELM)",
        path.display()
    );
    path
}

pub fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../charts/gmsa-webhook")
}

/// helm with `args`, its state in `home`.
pub fn helm_command(home: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(helm());
    command
        .args(args)
        .env("HOME", home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env_remove("KUBECONFIG");
    command
}

/// [`run_helm`] against the cluster of `kubeconfig`, if any.
pub fn run_helm_on(home: &Path, kubeconfig: Option<&Path>, args: &[&str]) -> String {
    let mut command = helm_command(home, args);
    if let Some(kubeconfig) = kubeconfig {
        command.env("KUBECONFIG", kubeconfig);
    }
    let out = command.output().expect("run helm");
    assert!(
        out.status.success(),
        "helm {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
