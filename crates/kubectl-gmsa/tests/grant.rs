//! `kubectl gmsa grant`, run as the built binary.

#![allow(clippy::unwrap_used)] // tests may panic

mod support;

use gmsa_testkit::FakeApiServer;
use serde_json::{json, Value};
use support::{kubernetes_validate_strict, run, run_env};

fn role(name: &str, spec: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": [{
            "apiGroups": ["windows.k8s.io"],
            "resources": ["gmsacredentialspecs"],
            "verbs": ["use"],
            "resourceNames": [spec]
        }]
    })
}

fn binding(name: &str, namespace: &str, sa: &str, role: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role}
    })
}

#[test]
fn prints_a_cluster_role_and_a_binding_per_service_account() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &[
            "grant",
            "gmsa-webapp1",
            "--service-account",
            "default:default",
            "--service-account",
            "system:serviceaccount:team-c:web",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.docs(),
        [
            role("gmsa-webapp1-user", "gmsa-webapp1"),
            binding(
                "allow-default-use-gmsa-webapp1",
                "default",
                "default",
                "gmsa-webapp1-user"
            ),
            binding(
                "allow-web-use-gmsa-webapp1",
                "team-c",
                "web",
                "gmsa-webapp1-user"
            ),
        ]
    );
}

#[test]
fn names_can_be_chosen_as_in_the_documentation() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &[
            "grant",
            "gmsa-webapp1",
            "--service-account",
            "default:default",
            "--role-name",
            "webapp1-role",
            "--binding-name",
            "allow-default-svc-account-read-on-gmsa-webapp1",
            "-o",
            "rbac.yaml",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "");
    let text = std::fs::read_to_string(dir.path().join("rbac.yaml")).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    assert_eq!(
        docs,
        [
            role("webapp1-role", "gmsa-webapp1"),
            binding(
                "allow-default-svc-account-read-on-gmsa-webapp1",
                "default",
                "default",
                "webapp1-role"
            ),
        ]
    );
    // The file is not overwritten without --force.
    let out = run(
        dir.path(),
        &[
            "grant",
            "gmsa-webapp1",
            "--service-account",
            "a:b",
            "-o",
            "rbac.yaml",
        ],
    );
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("--force"), "{}", out.stderr);
}

#[test]
fn output_passes_kubernetes_validate_strict() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &[
            "grant",
            "gmsa-webapp1",
            "--service-account",
            "default:default",
            "--service-account",
            "web:iis",
            "-o",
            "grant.yaml",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    kubernetes_validate_strict(&dir.path().join("grant.yaml"));
}

#[test]
fn refuses_bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (
            &[
                "grant",
                "gmsa-WebApp1",
                "--service-account",
                "default:default",
            ],
            r#"SPEC "gmsa-WebApp1" is not a valid Kubernetes name"#,
        ),
        (
            &["grant", "gmsa-webapp1", "--service-account", "default"],
            "write NAMESPACE:NAME, such as default:default",
        ),
        (
            &["grant", "gmsa-webapp1", "--service-account", "Team_C:web"],
            r#"namespace "Team_C" is not a valid namespace"#,
        ),
        (&["grant", "gmsa-webapp1"], "--service-account"),
        (
            &[
                "grant",
                "gmsa-webapp1",
                "--service-account",
                "a:one",
                "--service-account",
                "a:two",
                "--binding-name",
                "same",
            ],
            "service accounts a:one and a:two are in the same namespace",
        ),
        (
            &[
                "grant",
                "gmsa-webapp1",
                "--service-account",
                "a:b",
                "--dry-run",
                "server",
            ],
            "--apply",
        ),
    ];
    for (argv, expected) in cases {
        let out = run(dir.path(), argv);
        assert_eq!(out.code, 2, "{argv:?}: {}", out.stderr);
        assert!(out.stderr.contains(expected), "{argv:?}: {:?}", out.stderr);
        assert_eq!(out.stdout, "", "{argv:?}");
    }
}

#[test]
fn client_dry_run_only_prints() {
    let dir = tempfile::tempdir().unwrap();
    // A kubeconfig that points nowhere: nothing may be sent.
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, kubeconfig_for("http://127.0.0.1:9")).unwrap();
    let out = run_env(
        dir.path(),
        &[
            "grant",
            "gmsa-webapp1",
            "--service-account",
            "default:default",
            "--apply",
            "--dry-run=client",
        ],
        None,
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.docs().len(), 2);
}

fn kubeconfig_for(server: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: {server}
users:
- name: tester
  user:
    token: test
contexts:
- name: fake
  context:
    cluster: fake
    user: tester
current-context: fake
"
    )
}

/// The loopback fake API server does not implement PATCH yet, so this only checks that
/// `--apply` sends its server-side apply to the ClusterRole's path and reports the server's
/// refusal cleanly; a successful apply is covered by the real-API-server tier.
#[tokio::test(flavor = "multi_thread")]
async fn apply_sends_server_side_apply_and_reports_refusals() {
    let fake = FakeApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, kubeconfig_for(&fake.url())).unwrap();
    let path = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        run_env(
            &path,
            &[
                "grant",
                "gmsa-webapp1",
                "--service-account",
                "default:default",
                "--apply",
                "--dry-run=server",
            ],
            None,
            &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
        )
    })
    .await
    .unwrap();
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .starts_with("error: cannot apply ClusterRole gmsa-webapp1-user: "),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert_eq!(
        fake.count("patch", "clusterroles"),
        1,
        "{:?}",
        fake.counts()
    );
}
