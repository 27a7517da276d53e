//! End to end against a real kube-apiserver v1.20.2: the webhook binary runs as a plain
//! process, is registered by URL, and pods are created through the API. Assertions are on what
//! the API server stored or answered, which is what users of the reference webhook see.
//!
//! One cluster serves every scenario (start-up dominates the cost); scenarios run in order and
//! all of them run even when one fails, so a failure report lists every broken behaviour.
//!
//! Needs `hack/build-kube-apiserver.sh` to have run; `GMSA_SKIP_REAL_APISERVER=1` skips.

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use gmsa_testkit::real_cluster::{
    free_port, skip_requested, LoopbackTls, ManagedProcess, RealCluster, SKIP_ENV, WEBHOOK_USER,
};
use serde_json::{json, Value};

/// Namespace where the grants live.
const NS: &str = "gmsa-e2e";
/// A namespace with no grants at all.
const OTHER_NS: &str = "gmsa-other";
const IMAGE: &str = "mcr.microsoft.com/windows/servercore/iis:windowsservercore-ltsc2019";
const IMAGE_2: &str = "mcr.microsoft.com/windows/servercore/iis:windowsservercore-ltsc2022";
const MUTATING_WEBHOOK: &str = "pod-mutation.gmsa.windows.k8s.io";
const VALIDATING_WEBHOOK: &str = "pod-validation.gmsa.windows.k8s.io";

/// Go's `json.Marshal` of gmsa-webapp1's `credspec`: compact, keys sorted at every level.
const WEBAPP1: &str = r#"{"ActiveDirectoryConfig":{"GroupManagedServiceAccounts":[{"Name":"WebApp1","Scope":"CONTOSO"},{"Name":"WebApp1","Scope":"contoso.com"}]},"CmsPlugins":["ActiveDirectory"],"DomainJoinConfig":{"DnsName":"contoso.com","DnsTreeName":"contoso.com","Guid":"244818ae-87ac-4fcd-92ec-e79e5252348a","MachineAccountName":"WebApp1","NetBiosName":"CONTOSO","Sid":"S-1-5-21-2126449477-2524075714-3094792973"}}"#;
const WEBAPP2: &str = r#"{"ActiveDirectoryConfig":{"GroupManagedServiceAccounts":[{"Name":"WebApp2","Scope":"CONTOSO"},{"Name":"WebApp2","Scope":"contoso.com"}]},"CmsPlugins":["ActiveDirectory"],"DomainJoinConfig":{"DnsName":"contoso.com","DnsTreeName":"contoso.com","Guid":"244818ae-87ac-4fcd-92ec-e79e5252348a","MachineAccountName":"WebApp2","NetBiosName":"CONTOSO","Sid":"S-1-5-21-2126449477-2524075714-3094792973"}}"#;
/// Created through `windows.k8s.io/v1alpha1`.
const LEGACY: &str = r#"{"ActiveDirectoryConfig":{"GroupManagedServiceAccounts":[{"Name":"Legacy","Scope":"contoso.com"},{"Name":"Legacy","Scope":"CONTOSO"}]},"CmsPlugins":["ActiveDirectory"],"DomainJoinConfig":{"DnsName":"contoso.com","DnsTreeName":"contoso.com","Guid":"244818ae-87ac-4fcd-92ec-e79e5252348a","MachineAccountName":"Legacy","NetBiosName":"CONTOSO","Sid":"S-1-5-21-2126449477-2524075714-3094792973"}}"#;
/// Go escapes `<`, `>` and `&` inside strings; so must we, byte for byte.
const ESCAPE: &str = r#"{"ActiveDirectoryConfig":{"GroupManagedServiceAccounts":[{"Name":"R\u0026D","Scope":"CONTOSO"}]},"CmsPlugins":["ActiveDirectory"],"DomainJoinConfig":{"DnsName":"contoso.com","DnsTreeName":"contoso.com","Guid":"244818ae-87ac-4fcd-92ec-e79e5252348a","MachineAccountName":"\u003cR\u0026D\u003e","NetBiosName":"CONTOSO","Sid":"S-1-5-21-2126449477-2524075714-3094792973"}}"#;
const LATE: &str = r#"{"ActiveDirectoryConfig":{"GroupManagedServiceAccounts":[{"Name":"Late","Scope":"CONTOSO"}]},"CmsPlugins":["ActiveDirectory"],"DomainJoinConfig":{"DnsName":"contoso.com","DnsTreeName":"contoso.com","Guid":"244818ae-87ac-4fcd-92ec-e79e5252348a","MachineAccountName":"Late","NetBiosName":"CONTOSO","Sid":"S-1-5-21-2126449477-2524075714-3094792973"}}"#;

/// Least privilege for the webhook: read specs and RBAC objects, ask access reviews.
fn webhook_rbac() -> Value {
    json!({"apiVersion": "v1", "kind": "List", "items": [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "gmsa-webhook"},
            "rules": [
                {"apiGroups": ["windows.k8s.io"], "resources": ["gmsacredentialspecs"],
                 "verbs": ["get", "list", "watch"]},
                {"apiGroups": ["rbac.authorization.k8s.io"],
                 "resources": ["roles", "clusterroles", "rolebindings", "clusterrolebindings"],
                 "verbs": ["get", "list", "watch"]},
                {"apiGroups": ["authorization.k8s.io"], "resources": ["localsubjectaccessreviews"],
                 "verbs": ["create"]}
            ]
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "gmsa-webhook"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "gmsa-webhook"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": WEBHOOK_USER}]
        }
    ]})
}

/// A credential spec with keys deliberately out of order, so sorting is the webhook's job.
fn credspec(api_version: &str, name: &str, account: &str, scopes: &[&str], machine: &str) -> Value {
    let accounts: Vec<Value> = scopes
        .iter()
        .map(|scope| json!({"Scope": scope, "Name": account}))
        .collect();
    json!({
        "apiVersion": api_version,
        "kind": "GMSACredentialSpec",
        "metadata": {"name": name},
        "credspec": {
            "DomainJoinConfig": {
                "Sid": "S-1-5-21-2126449477-2524075714-3094792973",
                "NetBiosName": "CONTOSO",
                "MachineAccountName": machine,
                "Guid": "244818ae-87ac-4fcd-92ec-e79e5252348a",
                "DnsTreeName": "contoso.com",
                "DnsName": "contoso.com"
            },
            "CmsPlugins": ["ActiveDirectory"],
            "ActiveDirectoryConfig": {"GroupManagedServiceAccounts": accounts}
        }
    })
}

fn cluster_role_use(name: &str, specs: &[&str]) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": [{"apiGroups": ["windows.k8s.io"], "resources": ["gmsacredentialspecs"],
                   "verbs": ["use"], "resourceNames": specs}]
    })
}

fn role_binding(name: &str, role: &str, service_accounts: &[&str]) -> Value {
    let subjects: Vec<Value> = service_accounts
        .iter()
        .map(|sa| json!({"kind": "ServiceAccount", "name": sa, "namespace": NS}))
        .collect();
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": NS},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects
    })
}

/// CRD, webhook RBAC, service accounts, credential specs and `use` grants:
/// - `default` and `webapp` may use everything; `limited` all but gmsa-webapp1;
///   `nogrant` nothing; namespace gmsa-other has no grants.
fn set_up_cluster(cluster: &RealCluster) -> Result<(), String> {
    cluster
        .apply(&gmsa_deploy::crd::custom_resource_definition().to_string())
        .map_err(|e| e.to_string())?;
    cluster
        .kubectl_ok(
            &[
                "wait",
                "--for=condition=established",
                "--timeout=60s",
                &format!("crd/{}", gmsa_deploy::crd::crd_name()),
            ],
            None,
        )
        .map_err(|e| e.to_string())?;
    cluster
        .apply(&webhook_rbac().to_string())
        .map_err(|e| e.to_string())?;

    for sa in ["default", "webapp", "limited", "nogrant"] {
        cluster
            .create_service_account(NS, sa)
            .map_err(|e| e.to_string())?;
    }
    cluster
        .create_service_account(OTHER_NS, "default")
        .map_err(|e| e.to_string())?;

    let specs = json!({"apiVersion": "v1", "kind": "List", "items": [
        credspec("windows.k8s.io/v1", "gmsa-webapp1", "WebApp1", &["CONTOSO", "contoso.com"], "WebApp1"),
        credspec("windows.k8s.io/v1", "gmsa-webapp2", "WebApp2", &["CONTOSO", "contoso.com"], "WebApp2"),
        credspec("windows.k8s.io/v1", "gmsa-escape", "R&D", &["CONTOSO"], "<R&D>"),
        {"apiVersion": "windows.k8s.io/v1", "kind": "GMSACredentialSpec", "metadata": {"name": "gmsa-nokey"}},
        cluster_role_use("gmsa-webapp1-user", &["gmsa-webapp1"]),
        cluster_role_use("gmsa-others-user",
            &["gmsa-webapp2", "gmsa-legacy", "gmsa-escape", "gmsa-nokey", "gmsa-late"]),
        role_binding("gmsa-webapp1-users", "gmsa-webapp1-user", &["default", "webapp"]),
        role_binding("gmsa-others-users", "gmsa-others-user", &["default", "webapp", "limited"]),
    ]});
    cluster
        .apply(&specs.to_string())
        .map_err(|e| e.to_string())?;
    // Through the old version, as clusters upgraded from v1alpha1 still do.
    let legacy = credspec(
        "windows.k8s.io/v1alpha1",
        "gmsa-legacy",
        "Legacy",
        &["contoso.com", "CONTOSO"],
        "Legacy",
    );
    cluster
        .apply(&legacy.to_string())
        .map_err(|e| e.to_string())?;

    // The RBAC we gave the webhook is what it needs, and not more.
    let webhook = cluster.webhook_kubeconfig();
    for (args, expected) in [
        (
            [
                "auth",
                "can-i",
                "watch",
                "gmsacredentialspecs.windows.k8s.io",
            ],
            "yes",
        ),
        (
            [
                "auth",
                "can-i",
                "create",
                "localsubjectaccessreviews.authorization.k8s.io",
            ],
            "yes",
        ),
        (["auth", "can-i", "list", "pods"], "no"),
        (
            ["auth", "can-i", "use", "gmsacredentialspecs.windows.k8s.io"],
            "no",
        ),
    ] {
        let out = cluster.kubectl_as(webhook, &args, None);
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if answer != expected {
            return Err(format!(
                "webhook user: kubectl {} = {answer:?}, expected {expected}",
                args.join(" ")
            ));
        }
    }
    Ok(())
}

/// The webhook under test and the CA clients must trust to reach it.
struct Webhook {
    process: ManagedProcess,
    tls: LoopbackTls,
    port: u16,
}

/// Starts the webhook binary against the cluster and waits (30 s) for its `/readyz`.
fn start_webhook(cluster: &RealCluster) -> Result<Webhook, String> {
    let tls = LoopbackTls::generate(cluster.dir(), "webhook").map_err(|e| e.to_string())?;
    let port = free_port().map_err(|e| e.to_string())?;
    let mut command = Command::new(env!("CARGO_BIN_EXE_gmsa-webhook"));
    command
        .arg("--kubeconfig")
        .arg(cluster.webhook_kubeconfig())
        .arg("--tls-cert")
        .arg(&tls.cert_path)
        .arg("--tls-key")
        .arg(&tls.key_path)
        .arg("--port")
        .arg(port.to_string())
        .arg("--bind-address")
        .arg("127.0.0.1")
        .env("LOG_LEVEL", "debug")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env_remove("KUBECONFIG")
        .env_remove("TLS_CRT")
        .env_remove("TLS_KEY")
        .env_remove("HTTPS_PORT")
        .env_remove("RANDOM_HOSTNAME");
    let mut process = cluster
        .spawn("gmsa-webhook", command)
        .map_err(|e| e.to_string())?;
    process
        .wait_https_ok(
            &format!("https://127.0.0.1:{port}/readyz"),
            &tls.ca_pem,
            None,
            Duration::from_secs(30),
        )
        .map_err(|e| e.to_string())?;
    Ok(Webhook { process, tls, port })
}

/// Registers both webhooks by URL, `failurePolicy: Fail`, as a real deployment would.
fn register_webhooks(cluster: &RealCluster, webhook: &Webhook) -> Result<(), String> {
    let client = |path: &str| json!({"url": format!("https://127.0.0.1:{}{path}", webhook.port), "caBundle": webhook.tls.ca_bundle()});
    let common = |name: &str, path: &str, operations: &[&str]| {
        json!({
            "name": name,
            "clientConfig": client(path),
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": operations,
                       "resources": ["pods"], "scope": "Namespaced"}],
            "admissionReviewVersions": ["v1", "v1beta1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "timeoutSeconds": 5
        })
    };
    let configs = json!({"apiVersion": "v1", "kind": "List", "items": [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "gmsa-webhook"},
            "webhooks": [common(MUTATING_WEBHOOK, "/mutate", &["CREATE"])]
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "gmsa-webhook"},
            "webhooks": [common(VALIDATING_WEBHOOK, "/validate", &["CREATE", "UPDATE"])]
        }
    ]});
    cluster
        .apply(&configs.to_string())
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The API server picks up webhook configurations asynchronously: probe until both webhooks
/// visibly answer (bounded), with pods that only they would refuse.
fn wait_until_webhooks_answer(e2e: &E2e) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let probes = [
        (
            MUTATING_WEBHOOK,
            with_pod_gmsa(
                windows_pod("probe-mutate", None),
                json!({"gmsaCredentialSpecName": "gmsa-probe"}),
            ),
        ),
        (
            VALIDATING_WEBHOOK,
            with_pod_gmsa(
                windows_pod("probe-validate", None),
                json!({"gmsaCredentialSpec": "{}"}),
            ),
        ),
    ];
    for (webhook, pod) in probes {
        loop {
            let (code, status) = e2e.post_pod(NS, &pod)?;
            let message = status["message"].as_str().unwrap_or_default().to_string();
            if message.contains(&format!("admission webhook \"{webhook}\"")) {
                break;
            }
            if code == 201 {
                e2e.cluster
                    .kubectl_ok(
                        &["delete", "pod", "-n", NS, pod_name(&pod), "--wait=false"],
                        None,
                    )
                    .map_err(|e| e.to_string())?;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{webhook} never answered; last answer {code}: {status}"
                ));
            }
            thread::sleep(Duration::from_millis(300));
        }
    }
    Ok(())
}

/// What scenarios share: the cluster and a way to create and read pods.
struct E2e<'a> {
    cluster: &'a RealCluster,
}

impl E2e<'_> {
    /// Creates a pod with kubectl (as a user would) and returns what the API server stored.
    fn create_pod(&self, pod: &Value) -> Result<Value, String> {
        self.cluster
            .kubectl_ok(&["create", "-f", "-"], Some(&pod.to_string()))
            .map_err(|e| format!("creating pod {}: {e}", pod_name(pod)))?;
        self.get_pod(pod_namespace(pod), pod_name(pod))
    }

    fn get_pod(&self, namespace: &str, name: &str) -> Result<Value, String> {
        let json = self
            .cluster
            .kubectl_ok(&["get", "pod", "-n", namespace, name, "-o", "json"], None)
            .map_err(|e| e.to_string())?;
        serde_json::from_str(&json).map_err(|e| format!("kubectl get pod {name}: {e}"))
    }

    /// POSTs a pod straight to the API: the exact status code and `Status` message of a refusal.
    fn post_pod(&self, namespace: &str, pod: &Value) -> Result<(u16, Value), String> {
        let (code, body) = self
            .cluster
            .request(
                "POST",
                &format!("/api/v1/namespaces/{namespace}/pods"),
                Some(&pod.to_string()),
            )
            .map_err(|e| e.to_string())?;
        let status: Value = serde_json::from_str(&body)
            .map_err(|e| format!("answer {code} is not JSON ({e}): {body}"))?;
        Ok((code, status))
    }

    /// Expects the pod to be refused by `webhook` with `code` and a message ending in `message`,
    /// and not stored.
    fn expect_denied(
        &self,
        pod: &Value,
        webhook: &str,
        code: u16,
        message: &str,
    ) -> Result<(), String> {
        let namespace = pod_namespace(pod);
        let (got_code, status) = self.post_pod(namespace, pod)?;
        let expected = format!("admission webhook \"{webhook}\" denied the request: {message}");
        let got = status["message"].as_str().unwrap_or_default();
        let mut problems = Vec::new();
        if got != expected {
            problems.push(format!(
                "message\n      got:      {got:?}\n      expected: {expected:?}"
            ));
        }
        if got_code != code || status["code"] != json!(code) {
            problems.push(format!(
                "HTTP {got_code}, Status.code {}, expected {code}",
                status["code"]
            ));
        }
        if got_code == 201 {
            problems.push("the pod was created".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

fn pod_name(pod: &Value) -> &str {
    pod["metadata"]["name"].as_str().unwrap_or_default()
}

fn pod_namespace(pod: &Value) -> &str {
    pod["metadata"]["namespace"].as_str().unwrap_or(NS)
}

/// A Windows pod with one container `app`, in [`NS`].
fn windows_pod(name: &str, service_account: Option<&str>) -> Value {
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "nodeSelector": {"kubernetes.io/os": "windows"},
            "containers": [{"name": "app", "image": IMAGE}]
        }
    });
    if let Some(sa) = service_account {
        pod["spec"]["serviceAccountName"] = json!(sa);
    }
    pod
}

fn with_pod_gmsa(mut pod: Value, windows_options: Value) -> Value {
    pod["spec"]["securityContext"] = json!({"windowsOptions": windows_options});
    pod
}

fn container(name: &str, windows_options: Option<Value>) -> Value {
    let mut c = json!({"name": name, "image": IMAGE});
    if let Some(options) = windows_options {
        c["securityContext"] = json!({"windowsOptions": options});
    }
    c
}

fn named(spec: &str) -> Option<Value> {
    Some(json!({"gmsaCredentialSpecName": spec}))
}

fn pod_contents(pod: &Value) -> Option<&str> {
    pod["spec"]["securityContext"]["windowsOptions"]["gmsaCredentialSpec"].as_str()
}

fn container_contents<'p>(pod: &'p Value, list: &str, name: &str) -> Option<&'p str> {
    pod["spec"][list]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)?["securityContext"]["windowsOptions"]["gmsaCredentialSpec"]
        .as_str()
}

/// `Ok` when `got` is exactly `expected`.
fn same(what: &str, got: Option<&str>, expected: Option<&str>) -> Result<(), String> {
    if got == expected {
        Ok(())
    } else {
        Err(format!(
            "{what}:\n      got:      {got:?}\n      expected: {expected:?}"
        ))
    }
}

type Scenario = fn(&E2e) -> Result<(), String>;

/// Every behaviour checked, in order (the update scenarios reuse `pod-level`'s pod).
const SCENARIOS: &[(&str, Scenario)] = &[
    ("pod without GMSA passes untouched", |e| {
        let stored = e.create_pod(&windows_pod("plain", None))?;
        same(
            "pod-level windowsOptions",
            stored["spec"]["securityContext"]["windowsOptions"].as_str(),
            None,
        )?;
        same(
            "container contents",
            container_contents(&stored, "containers", "app"),
            None,
        )
    }),
    ("pod-level name is inlined (default service account)", |e| {
        let pod = with_pod_gmsa(
            windows_pod("pod-level", None),
            json!({"gmsaCredentialSpecName": "gmsa-webapp1"}),
        );
        let stored = e.create_pod(&pod)?;
        same(
            "serviceAccountName",
            stored["spec"]["serviceAccountName"].as_str(),
            Some("default"),
        )?;
        same("pod-level contents", pod_contents(&stored), Some(WEBAPP1))?;
        same(
            "container contents",
            container_contents(&stored, "containers", "app"),
            None,
        )
    }),
    ("container-level name is inlined", |e| {
        let mut pod = windows_pod("container-level", Some("webapp"));
        pod["spec"]["containers"] = json!([container("app", named("gmsa-webapp1"))]);
        let stored = e.create_pod(&pod)?;
        same(
            "container contents",
            container_contents(&stored, "containers", "app"),
            Some(WEBAPP1),
        )?;
        same("pod-level contents", pod_contents(&stored), None)
    }),
    ("init container name is inlined", |e| {
        let mut pod = windows_pod("init-container", Some("webapp"));
        pod["spec"]["initContainers"] = json!([container("init", named("gmsa-webapp2"))]);
        let stored = e.create_pod(&pod)?;
        same(
            "init container contents",
            container_contents(&stored, "initContainers", "init"),
            Some(WEBAPP2),
        )?;
        same(
            "container contents",
            container_contents(&stored, "containers", "app"),
            None,
        )
    }),
    ("several containers get their own specs", |e| {
        let mut pod = with_pod_gmsa(
            windows_pod("several", Some("webapp")),
            json!({"gmsaCredentialSpecName": "gmsa-webapp1"}),
        );
        pod["spec"]["containers"] = json!([
            container("a", named("gmsa-webapp2")),
            container("b", named("gmsa-legacy")),
            container("c", None),
        ]);
        pod["spec"]["initContainers"] = json!([container("init", named("gmsa-webapp1"))]);
        let stored = e.create_pod(&pod)?;
        same("pod-level contents", pod_contents(&stored), Some(WEBAPP1))?;
        same(
            "container a",
            container_contents(&stored, "containers", "a"),
            Some(WEBAPP2),
        )?;
        same(
            "container b",
            container_contents(&stored, "containers", "b"),
            Some(LEGACY),
        )?;
        same(
            "container c",
            container_contents(&stored, "containers", "c"),
            None,
        )?;
        same(
            "init container",
            container_contents(&stored, "initContainers", "init"),
            Some(WEBAPP1),
        )
    }),
    ("pre-set matching contents are kept as written", |e| {
        let value: Value = serde_json::from_str(WEBAPP1).map_err(|e| e.to_string())?;
        let pretty = serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?;
        let mut pod = windows_pod("preset-match", Some("webapp"));
        pod["spec"]["containers"] = json!([container(
            "app",
            Some(json!({"gmsaCredentialSpecName": "gmsa-webapp1", "gmsaCredentialSpec": pretty}))
        )]);
        let stored = e.create_pod(&pod)?;
        same(
            "container contents",
            container_contents(&stored, "containers", "app"),
            Some(&pretty),
        )
    }),
    ("pre-set mismatching contents are denied", |e| {
        let mut pod = windows_pod("preset-mismatch", Some("webapp"));
        pod["spec"]["containers"] = json!([container(
            "app",
            Some(json!({"gmsaCredentialSpecName": "gmsa-webapp1", "gmsaCredentialSpec": WEBAPP2}))
        )]);
        e.expect_denied(
            &pod,
            VALIDATING_WEBHOOK,
            422,
            r#"the GMSA cred spec contents for container "app" does not match the contents of GMSA resource "gmsa-webapp1""#,
        )
    }),
    (
        "pre-set mismatching contents on an init container are denied",
        |e| {
            let mut pod = windows_pod("preset-mismatch-init", Some("webapp"));
            pod["spec"]["initContainers"] = json!([container(
                "init",
                Some(
                    json!({"gmsaCredentialSpecName": "gmsa-webapp2", "gmsaCredentialSpec": WEBAPP1})
                )
            )]);
            e.expect_denied(
            &pod,
            VALIDATING_WEBHOOK,
            422,
            r#"the GMSA cred spec contents for init container "init" does not match the contents of GMSA resource "gmsa-webapp2""#,
        )
        },
    ),
    ("service account without a grant is denied", |e| {
        let mut pod = windows_pod("no-grant", Some("nogrant"));
        pod["spec"]["containers"] = json!([container("app", named("gmsa-webapp1"))]);
        e.expect_denied(
            &pod,
            VALIDATING_WEBHOOK,
            403,
            r#"service account "nogrant" is not authorized to `use` GMSA cred spec "gmsa-webapp1""#,
        )
    }),
    ("a grant for another spec is not enough", |e| {
        let mut pod = windows_pod("partial-grant", Some("limited"));
        pod["spec"]["containers"] = json!([
            container("a", named("gmsa-webapp2")),
            container("b", named("gmsa-webapp1")),
        ]);
        e.expect_denied(
            &pod,
            VALIDATING_WEBHOOK,
            403,
            r#"service account "limited" is not authorized to `use` GMSA cred spec "gmsa-webapp1""#,
        )
    }),
    ("a grant in another namespace is not enough", |e| {
        let mut pod = with_pod_gmsa(
            windows_pod("other-ns", None),
            json!({"gmsaCredentialSpecName": "gmsa-webapp1"}),
        );
        pod["metadata"]["namespace"] = json!(OTHER_NS);
        e.expect_denied(
            &pod,
            VALIDATING_WEBHOOK,
            403,
            r#"service account "default" is not authorized to `use` GMSA cred spec "gmsa-webapp1""#,
        )
    }),
    ("unknown spec is denied", |e| {
        let mut pod = windows_pod("unknown-spec", Some("webapp"));
        pod["spec"]["containers"] = json!([container("app", named("gmsa-missing"))]);
        e.expect_denied(
            &pod,
            MUTATING_WEBHOOK,
            404,
            "cred spec gmsa-missing does not exist",
        )
    }),
    ("spec without a credspec key is denied", |e| {
        let mut pod = windows_pod("no-credspec-key", Some("webapp"));
        pod["spec"]["containers"] = json!([container("app", named("gmsa-nokey"))]);
        e.expect_denied(
            &pod,
            MUTATING_WEBHOOK,
            417,
            "cred spec gmsa-nokey does not have a credspec key",
        )
    }),
    ("container contents without a name are denied", |e| {
        let mut pod = windows_pod("contents-only", Some("webapp"));
        pod["spec"]["containers"] = json!([container(
            "app",
            Some(json!({"gmsaCredentialSpec": WEBAPP1}))
        )]);
        e.expect_denied(
            &pod,
            VALIDATING_WEBHOOK,
            422,
            r#"container "app" has a GMSA cred spec set, but does not define the name of the corresponding resource"#,
        )
    }),
    ("pod contents without a name are denied", |e| {
        let pod = with_pod_gmsa(
            windows_pod("pod-contents-only", None),
            json!({"gmsaCredentialSpec": WEBAPP1}),
        );
        e.expect_denied(
            &pod,
            VALIDATING_WEBHOOK,
            422,
            r#"pod "pod-contents-only" has a GMSA cred spec set, but does not define the name of the corresponding resource"#,
        )
    }),
    ("spec created as v1alpha1 is inlined", |e| {
        let pod = with_pod_gmsa(
            windows_pod("v1alpha1", None),
            json!({"gmsaCredentialSpecName": "gmsa-legacy"}),
        );
        let stored = e.create_pod(&pod)?;
        same("pod-level contents", pod_contents(&stored), Some(LEGACY))
    }),
    ("contents are escaped like Go's encoder", |e| {
        let pod = with_pod_gmsa(
            windows_pod("escaping", None),
            json!({"gmsaCredentialSpecName": "gmsa-escape"}),
        );
        let stored = e.create_pod(&pod)?;
        same("pod-level contents", pod_contents(&stored), Some(ESCAPE))
    }),
    ("update changing only the image is allowed", |e| {
        e.cluster
            .kubectl_ok(
                &[
                    "set",
                    "image",
                    "-n",
                    NS,
                    "pod/pod-level",
                    &format!("app={IMAGE_2}"),
                ],
                None,
            )
            .map_err(|e| e.to_string())?;
        let stored = e.get_pod(NS, "pod-level")?;
        same(
            "image",
            stored["spec"]["containers"][0]["image"].as_str(),
            Some(IMAGE_2),
        )?;
        same("pod-level contents", pod_contents(&stored), Some(WEBAPP1))
    }),
    ("update adding a label is allowed", |e| {
        e.cluster
            .kubectl_ok(
                &["label", "-n", NS, "pod/pod-level", "gmsa-e2e=labelled"],
                None,
            )
            .map_err(|e| e.to_string())?;
        let stored = e.get_pod(NS, "pod-level")?;
        same(
            "label",
            stored["metadata"]["labels"]["gmsa-e2e"].as_str(),
            Some("labelled"),
        )
    }),
    ("update changing the GMSA name is refused", |e| {
        let before = e.get_pod(NS, "pod-level")?;
        let patch = json!([{"op": "replace",
            "path": "/spec/securityContext/windowsOptions/gmsaCredentialSpecName", "value": "gmsa-webapp2"}]);
        let out = e.cluster.kubectl(
            &[
                "patch",
                "-n",
                NS,
                "pod/pod-level",
                "--type=json",
                "-p",
                &patch.to_string(),
            ],
            None,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            return Err(format!(
                "the update was accepted: {}",
                String::from_utf8_lossy(&out.stdout)
            ));
        }
        // 1.20 refuses changes to a pod's security context before the validating webhooks run;
        // either refusal is correct, anything else is not.
        let by_webhook = stderr.contains(&format!(
            "admission webhook \"{VALIDATING_WEBHOOK}\" denied"
        ));
        if !by_webhook && !stderr.contains("pod updates may not change fields") {
            return Err(format!("refused for an unexpected reason: {stderr}"));
        }
        eprintln!(
            "      (refused by {})",
            if by_webhook {
                "the webhook"
            } else {
                "the API server's pod validation"
            }
        );
        let after = e.get_pod(NS, "pod-level")?;
        same(
            "name after refused update",
            after["spec"]["securityContext"]["windowsOptions"]["gmsaCredentialSpecName"].as_str(),
            before["spec"]["securityContext"]["windowsOptions"]["gmsaCredentialSpecName"].as_str(),
        )?;
        same(
            "contents after refused update",
            pod_contents(&after),
            Some(WEBAPP1),
        )
    }),
    ("spec created just before its pod is found", |e| {
        let late = credspec(
            "windows.k8s.io/v1",
            "gmsa-late",
            "Late",
            &["CONTOSO"],
            "Late",
        );
        // Raw POSTs back to back: milliseconds apart, so the pod usually arrives before the
        // webhook's watch has seen the spec.
        let (code, body) = e
            .cluster
            .request(
                "POST",
                "/apis/windows.k8s.io/v1/gmsacredentialspecs",
                Some(&late.to_string()),
            )
            .map_err(|e| e.to_string())?;
        if code != 201 {
            return Err(format!("creating gmsa-late: HTTP {code}: {body}"));
        }
        let pod = with_pod_gmsa(
            windows_pod("late-spec", None),
            json!({"gmsaCredentialSpecName": "gmsa-late"}),
        );
        let (code, answer) = e.post_pod(NS, &pod)?;
        if code != 201 {
            return Err(format!("creating the pod: HTTP {code}: {answer}"));
        }
        let stored = e.get_pod(NS, "late-spec")?;
        same("pod-level contents", pod_contents(&stored), Some(LATE))
    }),
];

/// The whole tier: cluster, webhook, registration, then every scenario.
#[test]
fn webhook_behind_a_real_kube_apiserver() {
    if skip_requested() {
        eprintln!("skipped: {SKIP_ENV}=1");
        return;
    }
    let cluster = RealCluster::start().unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "kube-apiserver ready in {:.1?} at {}",
        cluster.startup_time(),
        cluster.url()
    );
    set_up_cluster(&cluster).unwrap_or_else(|e| panic!("setting up the cluster: {e}"));

    let mut webhook = match start_webhook(&cluster) {
        Ok(webhook) => webhook,
        Err(e) => panic!("starting the webhook: {e}"),
    };
    register_webhooks(&cluster, &webhook)
        .unwrap_or_else(|e| panic!("registering the webhooks: {e}"));
    let e2e = E2e { cluster: &cluster };
    if let Err(e) = wait_until_webhooks_answer(&e2e) {
        panic!("{e}\n--- webhook log ---\n{}", webhook.process.log_tail(60));
    }

    let mut failures = Vec::new();
    for (name, scenario) in SCENARIOS {
        let began = Instant::now();
        match scenario(&e2e) {
            Ok(()) => eprintln!("ok    {name} ({:.1?})", began.elapsed()),
            Err(problem) => {
                eprintln!("FAIL  {name} ({:.1?})", began.elapsed());
                failures.push(format!("  {name}: {problem}"));
            }
        }
    }
    let still_running = webhook.process.check_running();
    if !failures.is_empty() || still_running.is_err() {
        panic!(
            "{} of {} scenarios failed:\n{}\nwebhook running: {:?}\n--- webhook log (last 80 lines) ---\n{}",
            failures.len(),
            SCENARIOS.len(),
            failures.join("\n"),
            still_running.err().map(|e| e.to_string()),
            webhook.process.log_tail(80)
        );
    }
}
