//! The plugin as the container image (or kubectl) may run it: no environment at all.

#![allow(clippy::unwrap_used)] // tests may panic

use std::process::Command;

#[test]
fn help_works_with_an_empty_environment() {
    for args in [
        &["--help"][..],
        &["install", "--help"],
        &["doctor", "--help"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_kubectl-gmsa"))
            .env_clear()
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage:"), "{text}");
    }
    // Rendering needs nothing from the environment either.
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-gmsa"))
        .env_clear()
        .args(["install", "--kube-version", "1.30"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("kind: MutatingWebhookConfiguration"));
}
