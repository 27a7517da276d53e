//! `install --admission policies`, `doctor` and `uninstall` against a real kube-apiserver: the
//! switch from a webhook install and back, each namespace's contents published by install
//! itself, what doctor says about policy mode, and the refusal on a server without admission
//! policies v1.
//!
//! There is no kubelet, so the keeper's Deployment never runs: install's own publishing is
//! what makes pods work here, and doctor is expected to say the keeper has no ready replica.
//! (The keeper itself is tested in gmsa-webhook's `keeper_real` and `real_apiserver` tiers.)
//!
//! Needs `hack/build-kube-apiserver.sh` to have run; `GMSA_SKIP_REAL_APISERVER=1` skips.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod support;

use std::thread;
use std::time::{Duration, Instant};

use gmsa_testkit::real_cluster::{skip_requested, RealCluster, ServerVersion, SKIP_ENV};
use serde_json::{json, Value};
use support::{expect, Run};

const NS: &str = "gmsa-policies-e2e";
const CONFIGURATION: &str = "gmsa-webhook-admission";
/// Nothing listens here: while the webhook configurations exist, GMSA pods fail closed.
const DEAD_WEBHOOK: &str = "https://127.0.0.1:9";

fn gmsa(cluster: &RealCluster, args: &[&str]) -> Run {
    support::on_cluster(cluster.admin_kubeconfig(), args)
}

fn gmsa_ok(cluster: &RealCluster, args: &[&str]) -> Run {
    support::on_cluster_ok(cluster.admin_kubeconfig(), args, "")
}

fn doctor(cluster: &RealCluster) -> (i32, Vec<Value>) {
    let out = gmsa(cluster, &["doctor", "-o", "json"]);
    let report: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor printed no JSON ({e}):\n{}\n{}",
            out.stdout, out.stderr
        )
    });
    (out.code, report["findings"].as_array().unwrap().clone())
}

fn exists(cluster: &RealCluster, kind: &str, name: &str) -> bool {
    let out = cluster.kubectl(
        &[
            "get",
            kind,
            name,
            "-n",
            "gmsa-system",
            "--ignore-not-found",
            "-o",
            "name",
        ],
        None,
    );
    !String::from_utf8_lossy(&out.stdout).trim().is_empty()
}

fn credspec(name: &str, account: &str) -> Value {
    json!({
        "apiVersion": "windows.k8s.io/v1",
        "kind": "GMSACredentialSpec",
        "metadata": {"name": name},
        "credspec": {
            "ActiveDirectoryConfig": {"GroupManagedServiceAccounts": [{"Name": account, "Scope": "CONTOSO"}]},
            "CmsPlugins": ["ActiveDirectory"],
            "DomainJoinConfig": {
                "DnsName": "contoso.com", "DnsTreeName": "contoso.com",
                "Guid": "244818ae-87ac-4fcd-92ec-e79e5252348a",
                "MachineAccountName": account, "NetBiosName": "CONTOSO",
                "Sid": "S-1-5-21-2126449477-2524075714-3094792973"
            }
        }
    })
}

fn pod(name: &str, spec: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "serviceAccountName": "app",
            "securityContext": {"windowsOptions": {"gmsaCredentialSpecName": spec}},
            "containers": [{"name": "iis", "image": "mcr.microsoft.com/windows/servercore/iis:windowsservercore-ltsc2019"}]
        }
    })
}

fn post_pod(cluster: &RealCluster, pod: &Value) -> (u16, Value) {
    let (code, body) = cluster
        .request(
            "POST",
            &format!("/api/v1/namespaces/{NS}/pods"),
            Some(&pod.to_string()),
        )
        .unwrap();
    (code, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Posts `pod` until it is created (30 s; the API server loads policies asynchronously).
fn created(cluster: &RealCluster, pod: &Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, answer) = post_pod(cluster, pod);
        if code == 201 {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "pod never created: {code} {answer}"
        );
        thread::sleep(Duration::from_millis(300));
    }
}

/// The stored spec's finalizers (`null` when it has none).
fn finalizers(cluster: &RealCluster, name: &str) -> Value {
    let text = cluster
        .kubectl_ok(&["get", "gmsacredentialspec", name, "-o", "json"], None)
        .unwrap();
    let spec: Value = serde_json::from_str(&text).unwrap();
    spec["metadata"]["finalizers"].clone()
}

fn contents(pod: &Value) -> Option<&str> {
    pod["spec"]["securityContext"]["windowsOptions"]["gmsaCredentialSpec"].as_str()
}

#[test]
fn switching_to_policies_and_back_on_current_kube() {
    if skip_requested() {
        eprintln!("skipped: {SKIP_ENV}=1");
        return;
    }
    let cluster = RealCluster::start(ServerVersion::Current).unwrap_or_else(|e| panic!("{e}"));
    let webhook_install = [
        "install",
        "--apply",
        "--no-wait",
        "--webhook-url",
        DEAD_WEBHOOK,
    ];
    // Specs before the webhook: its credspec validation would refuse writes while it is down.
    cluster
        .apply_crd(&gmsa_deploy::crd::custom_resource_definition().to_string())
        .unwrap();
    cluster.create_service_account(NS, "app").unwrap();
    cluster
        .apply(&json!({"apiVersion": "v1", "kind": "List", "items": [
            credspec("gmsa-web", "Web"),
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
             "metadata": {"name": "gmsa-web-user"},
             "rules": [{"apiGroups": ["windows.k8s.io"], "resources": ["gmsacredentialspecs"],
                        "resourceNames": ["gmsa-web"], "verbs": ["use"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": "gmsa-web-users", "namespace": NS},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "gmsa-web-user"},
             "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": NS}]},
        ]})
        .to_string())
        .unwrap();
    gmsa_ok(&cluster, &webhook_install);
    // The webhook is registered but not running: GMSA pods fail closed.
    let (code, _) = post_pod(&cluster, &pod("while-webhook", "gmsa-web"));
    assert_eq!(
        code, 500,
        "a GMSA pod was not refused while the webhook is unreachable"
    );

    // To policies: contents published by install, policies live, then the webhook retired.
    let out = gmsa_ok(
        &cluster,
        &["install", "--apply", "--no-wait", "--admission", "policies"],
    );
    assert!(
        out.stderr.contains("2 namespace(s) hold the contents"),
        "{}",
        out.stderr
    );
    for line in [
        // Down, it cannot validate the spec's finalizer: its validating configuration goes
        // first, while the mutating one keeps refusing GMSA pods.
        "validatingwebhookconfiguration.admissionregistration.k8s.io/gmsa-webhook-admission deleted (unreachable)",
        "mutatingadmissionpolicy.admissionregistration.k8s.io/gmsa-webhook-inline created",
        "validatingadmissionpolicybinding.admissionregistration.k8s.io/gmsa-webhook-pods created",
        "mutatingwebhookconfiguration.admissionregistration.k8s.io/gmsa-webhook-admission deleted (replaced by the admission policies)",
        "service/gmsa-webhook deleted (replaced by the admission policies)",
    ] {
        assert!(out.stdout.contains(line), "missing {line:?} in:\n{}", out.stdout);
    }
    assert!(!exists(
        &cluster,
        "validatingwebhookconfiguration",
        CONFIGURATION
    ));
    assert!(!exists(&cluster, "secret", "gmsa-webhook-tls"));
    let stored = created(&cluster, &pod("with-policies", "gmsa-web"));
    let spec: Value = serde_json::from_str(
        &cluster
            .kubectl_ok(
                &["get", "gmsacredentialspec", "gmsa-web", "-o", "json"],
                None,
            )
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        contents(&stored),
        Some(gmsa_core::canonical::to_go_json(&spec["credspec"]).as_str()),
        "the policies inlined other bytes than the webhook would"
    );
    let deployment: Value = serde_json::from_str(
        &cluster
            .kubectl_ok(
                &[
                    "get",
                    "deployment",
                    "-n",
                    "gmsa-system",
                    "gmsa-webhook",
                    "-o",
                    "json",
                ],
                None,
            )
            .unwrap(),
    )
    .unwrap();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["name"], "keeper");
    assert!(deployment["spec"]["template"]["spec"]["containers"][1].is_null());

    // Doctor: policies and contents are fine, the keeper (no kubelet here) is not.
    let (code, findings) = doctor(&cluster);
    expect(
        &findings,
        "admission-policies",
        "gmsa-webhook",
        "pass",
        "each bound",
    );
    expect(
        &findings,
        "published-contents",
        "",
        "pass",
        "2 namespace(s) hold the contents",
    );
    expect(
        &findings,
        "keeper",
        "gmsa-system/gmsa-webhook",
        "fail",
        "no ready replica",
    );
    assert!(
        !findings
            .iter()
            .any(|f| f["check"] == "webhook-configurations"),
        "doctor looked for webhook configurations in policy mode"
    );
    assert_eq!(code, 1, "a failing row exits 1");

    // An edit of credspec is refused: a spec is deleted and created again instead.
    let edit = cluster.kubectl(
        &[
            "patch",
            "gmsacredentialspec",
            "gmsa-web",
            "--type=merge",
            "-p",
            r#"{"credspec":{"DomainJoinConfig":{"MachineAccountName":"Web2"}}}"#,
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&edit.stderr);
    assert!(
        !edit.status.success() && stderr.contains("delete the spec and create it again"),
        "{stderr}"
    );
    // A spec created and granted with no keeper running: doctor says its namespace's contents
    // are behind, its pods are refused.
    cluster
        .apply(
            &json!({"apiVersion": "v1", "kind": "List", "items": [
                credspec("gmsa-new", "New"),
                {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                 "metadata": {"name": "gmsa-web-user"},
                 "rules": [{"apiGroups": ["windows.k8s.io"], "resources": ["gmsacredentialspecs"],
                            "resourceNames": ["gmsa-web", "gmsa-new"], "verbs": ["use"]}]},
            ]})
            .to_string(),
        )
        .unwrap();
    let (_, findings) = doctor(&cluster);
    expect(
        &findings,
        "published-contents",
        "",
        "fail",
        "1 namespace(s) whose contents are not current",
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let refusal = format!("cred spec gmsa-new is not published for namespace {NS}");
    loop {
        let (code, answer) = post_pod(&cluster, &pod("unpublished", "gmsa-new"));
        assert_ne!(code, 201, "a pod was admitted without contents: {answer}");
        if answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains(&refusal)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never refused as not published: {answer}"
        );
        thread::sleep(Duration::from_millis(300));
    }
    // Re-running install publishes it (as the keeper would).
    let out = gmsa_ok(
        &cluster,
        &["install", "--apply", "--no-wait", "--admission", "policies"],
    );
    assert!(
        out.stderr.contains("2 namespace(s) hold the contents"),
        "{}",
        out.stderr
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while post_pod(&cluster, &pod("published", "gmsa-new")).0 != 201 {
        assert!(Instant::now() < deadline, "gmsa-new never served");
        thread::sleep(Duration::from_millis(300));
    }

    // Back to the webhook: its configurations are registered, then the policies deleted.
    let out = gmsa_ok(&cluster, &webhook_install);
    assert!(
        out.stdout.contains("mutatingadmissionpolicy.admissionregistration.k8s.io/gmsa-webhook-inline deleted (replaced by the webhook)"),
        "{}",
        out.stdout
    );
    assert!(exists(
        &cluster,
        "mutatingwebhookconfiguration",
        CONFIGURATION
    ));
    assert!(!exists(
        &cluster,
        "validatingadmissionpolicy",
        "gmsa-webhook-pods"
    ));
    assert!(!exists(
        &cluster,
        "customresourcedefinition",
        "gmsanamespacecontents.policy.gmsa.dev"
    ));
    // The webhook does not run here: its credspec validation refuses the finalizer's removal,
    // which the switch says, leaving it to the next install.
    assert_eq!(
        finalizers(&cluster, "gmsa-web"),
        json!(["policy.gmsa.dev/withdraw-contents"]),
    );
    assert!(
        out.stderr
            .contains("warning: cannot remove finalizer policy.gmsa.dev/withdraw-contents"),
        "{}",
        out.stderr
    );

    // Uninstall from policy mode removes the policies, the keeper and its RBAC.
    gmsa_ok(
        &cluster,
        &["install", "--apply", "--no-wait", "--admission", "policies"],
    );
    let out = gmsa_ok(&cluster, &["uninstall"]);
    // The guard and the closing lines name the policy install, not a bare one that would put
    // the webhook back.
    assert!(
        out.stderr
            .contains("until `kubectl gmsa install --admission policies --apply`"),
        "{}",
        out.stderr
    );
    for (kind, name) in [
        ("mutatingadmissionpolicy", "gmsa-webhook-inline"),
        ("mutatingadmissionpolicybinding", "gmsa-webhook-inline"),
        ("validatingadmissionpolicy", "gmsa-webhook-pods"),
        ("validatingadmissionpolicybinding", "gmsa-webhook-elsewhere"),
        ("mutatingadmissionpolicy", "gmsa-webhook-finalize"),
        ("clusterrole", "gmsa-webhook"),
    ] {
        assert!(
            !exists(&cluster, kind, name),
            "{kind} {name} left after uninstall"
        );
    }
    assert!(
        exists(&cluster, "gmsacredentialspec", "gmsa-web"),
        "uninstall deleted a spec"
    );
    assert_eq!(
        finalizers(&cluster, "gmsa-web"),
        Value::Null,
        "uninstall left the finalizer on a spec"
    );
    // The pods above name gmsa-web: the guard stays in the policies' place, and a policy
    // install deletes it again before its own probe (the guard would answer that probe).
    assert!(exists(
        &cluster,
        "validatingadmissionpolicy",
        "gmsa-webhook-uninstalled"
    ));
    let out = gmsa_ok(
        &cluster,
        &["install", "--apply", "--no-wait", "--admission", "policies"],
    );
    assert!(
        out.stdout.contains("validatingadmissionpolicy.admissionregistration.k8s.io/gmsa-webhook-uninstalled deleted (GMSA admission is installed again)"),
        "{}",
        out.stdout
    );
    created(&cluster, &pod("after-guard", "gmsa-web"));

    // Whatever the number of specs, a GMSA pod costs one read of its namespace's contents:
    // no warning from install, and doctor says what the largest holds.
    let more: Vec<Value> = (1..=10)
        .map(|i| credspec(&format!("gmsa-more-{i}"), &format!("More{i}")))
        .collect();
    cluster
        .apply(&json!({"apiVersion": "v1", "kind": "List", "items": more}).to_string())
        .unwrap();
    let out = gmsa_ok(
        &cluster,
        &["install", "--apply", "--no-wait", "--admission", "policies"],
    );
    assert!(!out.stderr.contains("warning:"), "{}", out.stderr);
    let (_, findings) = doctor(&cluster);
    expect(
        &findings,
        "admission-cost",
        "",
        "pass",
        "the largest, gmsa-policies-e2e's, holds 2 spec(s)",
    );

    // A second install under another name is refused before it changes anything: both would
    // answer every GMSA pod, and its wait could see the other's policies answer instead.
    let out = gmsa(
        &cluster,
        &[
            "install",
            "--apply",
            "--no-wait",
            "--admission",
            "policies",
            "--name",
            "gmsa-second",
        ],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "nothing was changed: another GMSA admission install is in this cluster: \
             MutatingAdmissionPolicy gmsa-webhook-finalize (install --name gmsa-webhook)"
        ),
        "{}",
        out.stderr
    );
    assert!(!exists(
        &cluster,
        "mutatingadmissionpolicy",
        "gmsa-second-inline"
    ));
    // An install from before that refusal (here only its labelled configuration) is what
    // doctor names.
    cluster
        .apply(
            &json!({"apiVersion": "admissionregistration.k8s.io/v1",
                    "kind": "MutatingWebhookConfiguration",
                    "metadata": {"name": "gmsa-old-admission", "labels": {
                        "app.kubernetes.io/name": "gmsa-webhook",
                        "app.kubernetes.io/instance": "gmsa-old"}},
                    "webhooks": []})
            .to_string(),
        )
        .unwrap();
    let (_, findings) = doctor(&cluster);
    let row = expect(
        &findings,
        "other-install",
        "MutatingWebhookConfiguration gmsa-old-admission",
        "warn",
        "install --name gmsa-old answers GMSA pods too, beside gmsa-webhook",
    );
    assert!(
        row["fix"]
            .as_str()
            .unwrap()
            .starts_with("keep one: kubectl gmsa uninstall --name gmsa-old"),
        "{row:#}"
    );
    cluster
        .kubectl_ok(
            &[
                "delete",
                "mutatingwebhookconfiguration",
                "gmsa-old-admission",
            ],
            None,
        )
        .unwrap();

    // The same install moved to a namespace of its own: doctor finds it there, and its fixes
    // reinstall it there rather than put a second copy in gmsa-system.
    gmsa_ok(&cluster, &["uninstall"]);
    gmsa_ok(
        &cluster,
        &[
            "install",
            "--apply",
            "--no-wait",
            "--admission",
            "policies",
            "--namespace",
            "gmsa-alt-system",
        ],
    );
    cluster
        .kubectl_ok(
            &[
                "delete",
                "validatingadmissionpolicybinding",
                "gmsa-webhook-pods",
            ],
            None,
        )
        .unwrap();
    let (_, findings) = doctor(&cluster);
    let row = expect(
        &findings,
        "admission-policies",
        "gmsa-webhook",
        "fail",
        "ValidatingAdmissionPolicyBinding gmsa-webhook-pods missing",
    );
    assert_eq!(
        row["fix"], "kubectl gmsa install --admission policies --namespace gmsa-alt-system --apply",
        "{row:#}"
    );
    expect(
        &findings,
        "published-contents",
        "",
        "pass",
        "2 namespace(s) hold the contents",
    );
}

#[test]
fn policies_are_refused_on_kube_1_20() {
    if skip_requested() {
        eprintln!("skipped: {SKIP_ENV}=1");
        return;
    }
    let cluster = RealCluster::start(ServerVersion::V1_20).unwrap_or_else(|e| panic!("{e}"));
    let out = gmsa(
        &cluster,
        &["install", "--apply", "--no-wait", "--admission", "policies"],
    );
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("Kubernetes 1.36 or later); this is 1.20"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout.is_empty(),
        "something was applied: {}",
        out.stdout
    );
}
