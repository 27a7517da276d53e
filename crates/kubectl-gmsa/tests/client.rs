//! The commands' Kubernetes client against the loopback fake API server: a transient status
//! (429, 503, 504) is reported at once. kube retries those by default up to 15 times with a
//! backoff growing to minutes, which made `doctor` wait minutes on every Service without
//! endpoints (its service proxy answers 503) before it said so.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod support;

use gmsa_testkit::FakeApiServer;
use serde_json::Value;

/// A kubeconfig for the fake's plain-HTTP address, with no credentials.
fn kubeconfig(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\n\
         users:\n- name: nobody\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    \
         cluster: fake\n    user: nobody\ncurrent-context: fake\n"
    )
}

#[test]
fn a_transient_status_is_reported_not_retried() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(FakeApiServer::start());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, kubeconfig(&server.url())).unwrap();

    for (code, reason) in [
        (429u16, "TooManyRequests"),
        (503, "ServiceUnavailable"),
        (504, "Timeout"),
    ] {
        server.reset_counts();
        server.fail_next_on("version", 1, code);
        let out = support::on_cluster(&path, &["doctor", "-o", "json"]);
        let stdout = &out.stdout;
        assert_eq!(
            server.gets("version"),
            1,
            "HTTP {code} was retried behind the user's back: {stdout}"
        );
        let report: Value = serde_json::from_str(stdout)
            .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", out.stderr));
        let findings = report["findings"].as_array().cloned().unwrap_or_default();
        let cluster = support::find(&findings, "cluster", "")
            .cloned()
            .unwrap_or(Value::Null);
        assert_eq!(cluster["status"], "fail", "HTTP {code}: {report:#}");
        assert!(
            cluster["detail"]
                .as_str()
                .unwrap_or_default()
                .contains(reason),
            "HTTP {code} is not named: {cluster:#}"
        );
        assert_eq!(out.code, 2, "a cluster that cannot be read is an error");
    }
    runtime.block_on(server.shutdown());
}
