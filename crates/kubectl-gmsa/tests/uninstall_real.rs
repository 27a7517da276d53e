//! `uninstall` with workloads that still reference a credential spec, against a real
//! kube-apiserver: it names them, and on a server with ValidatingAdmissionPolicy v1 leaves the
//! guard that refuses new GMSA pods (and only those) until `install` deletes it; on v1.20.2 it
//! says no guard can be left.
//!
//! No webhook runs: install registers a dead URL, which only matters for pods created while it
//! is registered (none are). There is no controller-manager either, so the Deployment and
//! CronJob never make pods: their templates are what uninstall reads.
//!
//! Needs `hack/build-kube-apiserver.sh` to have run; `GMSA_SKIP_REAL_APISERVER=1` skips.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod support;

use gmsa_testkit::real_cluster::{skip_requested, RealCluster, ServerVersion, SKIP_ENV};
use serde_json::{json, Value};
use support::{expect, Run};

const NS: &str = "gmsa-uninstall-e2e";
const GUARD: &str = "gmsa-webhook-uninstalled";
const CONFIGURATION: &str = "gmsa-webhook-admission";
/// Nothing listens here.
const DEAD_WEBHOOK: &str = "https://127.0.0.1:9";

fn gmsa(cluster: &RealCluster, args: &[&str]) -> Run {
    support::on_cluster(cluster.admin_kubeconfig(), args)
}

fn gmsa_ok(cluster: &RealCluster, args: &[&str]) -> Run {
    support::on_cluster_ok(cluster.admin_kubeconfig(), args, "")
}

fn install(cluster: &RealCluster) -> Run {
    gmsa_ok(
        cluster,
        &["install", "--apply", "--webhook-url", DEAD_WEBHOOK],
    )
}

fn exists(cluster: &RealCluster, kind: &str, name: &str) -> bool {
    let out = cluster.kubectl(
        &[
            "get",
            kind,
            name,
            "-n",
            NS,
            "--ignore-not-found",
            "-o",
            "name",
        ],
        None,
    );
    !String::from_utf8_lossy(&out.stdout).trim().is_empty()
}

/// A pod spec whose `place` (`pod`, `containers`, `initContainers`) names `spec`.
fn pod_spec(place: &str, spec: &str) -> Value {
    let context = json!({"windowsOptions": {"gmsaCredentialSpecName": spec}});
    let mut pod = json!({"containers": [{"name": "app", "image": "app"}]});
    match place {
        "pod" => pod["securityContext"] = context,
        "containers" => pod["containers"][0]["securityContext"] = context,
        list => pod[list] = json!([{"name": "init", "image": "init", "securityContext": context}]),
    }
    pod
}

fn deployment(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        },
    })
}

fn pod(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS}, "spec": spec})
}

/// A server-side dry run of `pod`: the status code and the API server's message.
fn dry_run(cluster: &RealCluster, pod: &Value) -> (u16, String) {
    let (code, body) = cluster
        .request(
            "POST",
            &format!("/api/v1/namespaces/{NS}/pods?dryRun=All"),
            Some(&pod.to_string()),
        )
        .unwrap();
    let message = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or(body);
    (code, message)
}

/// The workloads both versions see: a Deployment naming a spec in a container, a plain one,
/// and a pod naming a spec at pod level, created before install (nothing admits it then).
fn workloads(cluster: &RealCluster) {
    cluster.create_service_account(NS, "default").unwrap();
    let items = json!({"apiVersion": "v1", "kind": "List", "items": [
        deployment("web", pod_spec("containers", "gmsa-webapp1")),
        deployment("plain", json!({"containers": [{"name": "app", "image": "app"}]})),
        pod("lone", pod_spec("pod", "gmsa-lone")),
    ]});
    cluster.apply(&items.to_string()).unwrap();
}

#[test]
fn uninstall_leaves_a_guard_on_current_kube() {
    if skip_requested() {
        eprintln!("skipped: {SKIP_ENV}=1");
        return;
    }
    let cluster = RealCluster::start(ServerVersion::Current).unwrap_or_else(|e| panic!("{e}"));
    workloads(&cluster);
    let mut job_pod = pod_spec("initContainers", "gmsa-batch");
    job_pod["restartPolicy"] = json!("Never");
    let cron_job = json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "nightly", "namespace": NS},
        "spec": {"schedule": "0 1 * * *", "jobTemplate": {"spec": {"template": {"spec": job_pod}}}},
    });
    cluster.apply(&cron_job.to_string()).unwrap();
    install(&cluster);

    let out = gmsa_ok(&cluster, &["uninstall"]);
    for line in [
        format!("validatingadmissionpolicy.admissionregistration.k8s.io/{GUARD} created"),
        format!("validatingadmissionpolicybinding.admissionregistration.k8s.io/{GUARD} created"),
        format!(
            "mutatingwebhookconfiguration.admissionregistration.k8s.io/{CONFIGURATION} deleted"
        ),
    ] {
        assert!(out.stdout.contains(&line), "{line}:\n{}", out.stdout);
    }
    for line in [
        "warning: 3 workload(s) still reference a GMSA credential spec:",
        &format!("  cronjob.batch/nightly in {NS}: gmsa-batch"),
        &format!("  deployment.apps/web in {NS}: gmsa-webapp1"),
        &format!("  pod/lone in {NS}: gmsa-lone"),
        &format!("ValidatingAdmissionPolicy {GUARD} now refuses every new pod that names a credential spec"),
    ] {
        assert!(out.stderr.contains(line), "{line}:\n{}", out.stderr);
    }
    assert!(!out.stderr.contains("plain"), "{}", out.stderr);

    // The guard refuses a GMSA pod, with the way out; admits a plain one; and lets the
    // running GMSA pod be updated.
    let (code, message) = dry_run(
        &cluster,
        &pod("new", pod_spec("containers", "gmsa-webapp1")),
    );
    assert_eq!(code, 403, "{message}");
    assert!(
        message.contains(&format!("ValidatingAdmissionPolicy '{GUARD}'"))
            && message.contains("GMSA admission is not installed (kubectl gmsa uninstall left this guard): reinstall with `kubectl gmsa install --apply`")
            && message.contains(&format!("delete ValidatingAdmissionPolicy {GUARD} to admit GMSA pods without their credential specs")),
        "{message}"
    );
    let (code, message) = dry_run(
        &cluster,
        &pod(
            "new",
            json!({"containers": [{"name": "app", "image": "app"}]}),
        ),
    );
    assert_eq!(code, 201, "a plain pod is admitted: {message}");
    cluster
        .kubectl_ok(&["label", "pod", "-n", NS, "lone", "touched=yes"], None)
        .unwrap_or_else(|e| panic!("the running GMSA pod can be updated: {e}"));

    let (code, findings) = {
        let out = gmsa(&cluster, &["doctor", "-o", "json"]);
        let report: Value = serde_json::from_str(&out.stdout).unwrap();
        (out.code, report["findings"].as_array().unwrap().clone())
    };
    assert_eq!(code, 1, "a failing row exits 1");
    expect(
        &findings,
        "uninstall-guard",
        GUARD,
        "fail",
        "GMSA pods are refused",
    );

    // A later uninstall knows the guard as its own and keeps it.
    let out = gmsa_ok(&cluster, &["uninstall"]);
    assert!(
        out.stdout.contains(&format!(
            "validatingadmissionpolicy.admissionregistration.k8s.io/{GUARD} unchanged"
        )),
        "{}",
        out.stdout
    );

    // Installing again deletes it.
    let out = install(&cluster);
    assert!(
        out.stdout.contains(&format!(
            "validatingadmissionpolicy.admissionregistration.k8s.io/{GUARD} deleted (GMSA admission is installed again)"
        )),
        "{}",
        out.stdout
    );
    assert!(!exists(&cluster, "validatingadmissionpolicy", GUARD));
    assert!(!exists(&cluster, "validatingadmissionpolicybinding", GUARD));

    // With no GMSA workload left, uninstall leaves no guard and says what that means.
    for (kind, name) in [
        ("deployment", "web"),
        ("cronjob", "nightly"),
        ("pod", "lone"),
    ] {
        cluster
            .kubectl_ok(&["delete", kind, "-n", NS, name, "--wait=false"], None)
            .unwrap();
    }
    let out = gmsa_ok(&cluster, &["uninstall"]);
    assert!(
        out.stderr
            .contains("no workload references a credential spec; no guard is left"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains(GUARD), "{}", out.stdout);
    // The guard the install before deleted may still be in the API server's policy cache
    // for a moment (its informer follows the deletion): admitted within seconds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let (code, message) = loop {
        let answer = dry_run(&cluster, &pod("new", pod_spec("pod", "gmsa-webapp1")));
        if answer.0 == 201 || std::time::Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    assert_eq!(code, 201, "no guard, no admission: {message}");

    // Asked for, the guard is left anyway; `never` deletes it.
    let out = gmsa_ok(&cluster, &["uninstall", "--refuse-gmsa-pods=always"]);
    assert!(
        out.stdout.contains(&format!("{GUARD} created")),
        "{}",
        out.stdout
    );
    let out = gmsa_ok(&cluster, &["uninstall", "--refuse-gmsa-pods=never"]);
    assert!(
        out.stdout.contains(&format!(
            "validatingadmissionpolicy.admissionregistration.k8s.io/{GUARD} deleted"
        )),
        "{}",
        out.stdout
    );
    assert!(!exists(&cluster, "validatingadmissionpolicy", GUARD));
}

#[test]
fn uninstall_says_no_guard_is_possible_on_kube_1_20() {
    if skip_requested() {
        eprintln!("skipped: {SKIP_ENV}=1");
        return;
    }
    let cluster = RealCluster::start(ServerVersion::V1_20).unwrap_or_else(|e| panic!("{e}"));
    workloads(&cluster);
    install(&cluster);

    // Asking for the guard where none can be left deletes nothing.
    let out = gmsa(&cluster, &["uninstall", "--refuse-gmsa-pods=always"]);
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("this is 1.20, so no guard can be left: nothing was deleted"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    let configuration = cluster.kubectl(
        &[
            "get",
            "mutatingwebhookconfiguration",
            CONFIGURATION,
            "-o",
            "name",
        ],
        None,
    );
    assert!(
        configuration.status.success(),
        "the webhook is still registered"
    );

    let out = gmsa_ok(&cluster, &["uninstall"]);
    for line in [
        "warning: 2 workload(s) still reference a GMSA credential spec:",
        &format!("  deployment.apps/web in {NS}: gmsa-webapp1"),
        &format!("  pod/lone in {NS}: gmsa-lone"),
        "Kubernetes 1.20 has no ValidatingAdmissionPolicy v1 (1.30+), so no guard can be left on this version",
        "fail to start on Windows nodes",
    ] {
        assert!(out.stderr.contains(line), "{line}:\n{}", out.stderr);
    }
    assert!(!out.stdout.contains(GUARD), "{}", out.stdout);
    let (code, message) = dry_run(&cluster, &pod("new", pod_spec("pod", "gmsa-webapp1")));
    assert_eq!(code, 201, "nothing refuses it on 1.20: {message}");
}
