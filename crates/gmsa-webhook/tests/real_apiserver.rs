//! End to end against a real kube-apiserver, on every version the tier covers (v1.20.2 and the
//! current release): the webhook binary runs as a plain process, is registered by URL with the
//! webhook configurations exactly as `install` renders them for that version, and pods are
//! created through the API. Assertions are on what the API server stored or answered, which is
//! what users see.
//!
//! One cluster per version serves every scenario (start-up dominates the cost); scenarios run
//! in order and all of them run even when one fails, so a failure report lists every broken
//! behaviour. Scenarios that need a newer server (native sidecars, `pods/ephemeralcontainers`,
//! CEL `matchConditions`) run where the server has the feature. The last phase stops the
//! webhook and checks what fails closed and what does not.
//!
//! Needs `hack/build-kube-apiserver.sh` to have run; `GMSA_SKIP_REAL_APISERVER=1` skips.

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use gmsa_testkit::real_cluster::{
    free_port, skip_requested, Feature, LoopbackTls, ManagedProcess, RealCluster, ServerVersion,
    SKIP_ENV, WEBHOOK_USER,
};
use serde_json::{json, Value};

#[path = "real_apiserver/policies.rs"]
mod policies;

/// Namespace where the grants live.
const NS: &str = "gmsa-e2e";
/// A namespace with no grants at all.
const OTHER_NS: &str = "gmsa-other";
/// A namespace labelled `gmsa-webhook: disabled`, with no grants.
const OPT_OUT_NS: &str = "gmsa-opted-out";
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

/// Created while the keeper is down (policy mode).
const OUTAGE: &str = r#"{"ActiveDirectoryConfig":{"GroupManagedServiceAccounts":[{"Name":"Outage","Scope":"CONTOSO"}]},"CmsPlugins":["ActiveDirectory"],"DomainJoinConfig":{"DnsName":"contoso.com","DnsTreeName":"contoso.com","Guid":"244818ae-87ac-4fcd-92ec-e79e5252348a","MachineAccountName":"Outage","NetBiosName":"CONTOSO","Sid":"S-1-5-21-2126449477-2524075714-3094792973"}}"#;

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
        .apply_crd(&gmsa_deploy::crd::custom_resource_definition().to_string())
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
    cluster
        .create_service_account(OPT_OUT_NS, "default")
        .map_err(|e| e.to_string())?;
    let opted_out = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": OPT_OUT_NS, "labels": {"gmsa-webhook": "disabled"}}});
    cluster
        .apply(&opted_out.to_string())
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

/// Registers the webhooks by URL with the configurations `install --webhook-url` renders for
/// this server's version, and checks that the API server stored them as sent: the CEL
/// `matchConditions` compiled (a condition that does not is refused on create).
fn register_webhooks(cluster: &RealCluster, webhook: &Webhook) -> Result<(), String> {
    let settings = gmsa_deploy::Settings {
        kube_version: gmsa_deploy::KubeVersion::new(1, cluster.version().minor()),
        certs: gmsa_deploy::CertMode::Secret("unused".into()),
        webhook_url: Some(format!("https://127.0.0.1:{}", webhook.port)),
        ..gmsa_deploy::Settings::default()
    };
    let tls = gmsa_deploy::TlsMaterial {
        ca_bundle_pem: webhook.tls.ca_pem.clone(),
        ..gmsa_deploy::TlsMaterial::default()
    };
    let manifest = gmsa_deploy::render(&settings, Some(&tls)).map_err(|e| e.to_string())?;
    let configs: Vec<&Value> = manifest.admission.iter().map(|o| &o.body).collect();
    if configs.len() != 2 {
        return Err(format!(
            "install renders {} webhook configurations",
            configs.len()
        ));
    }
    for config in configs {
        cluster
            .apply(&config.to_string())
            .map_err(|e| e.to_string())?;
        let kind = config["kind"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let name = config["metadata"]["name"].as_str().unwrap_or_default();
        let stored = cluster
            .kubectl_ok(&["get", &kind, name, "-o", "json"], None)
            .map_err(|e| e.to_string())?;
        let stored: Value = serde_json::from_str(&stored).map_err(|e| e.to_string())?;
        let conditions = |c: &Value| c["webhooks"][0]["matchConditions"].clone();
        if conditions(&stored) != conditions(config) {
            return Err(format!(
                "{kind} {name}: stored matchConditions {} differ from the rendered {}",
                conditions(&stored),
                conditions(config)
            ));
        }
        let has = !conditions(&stored).is_null();
        if has != cluster.version().has(Feature::MatchConditions) {
            return Err(format!(
                "{kind} {name} on {}: matchConditions present = {has}",
                cluster.version()
            ));
        }
    }
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

/// What decides admissions in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    /// Our webhook process, registered by URL.
    Webhook,
    /// The admission policies `install --admission policies` renders, with no webhook at all:
    /// they read each namespace's published contents, which the keeper writes.
    Policies,
}

/// What scenarios share: the cluster and a way to create and read pods.
struct E2e<'a> {
    cluster: &'a RealCluster,
    admission: Admission,
}

impl E2e<'_> {
    fn policies(&self) -> bool {
        self.admission == Admission::Policies
    }

    /// How a pod of `service_account` (granted no `gmsa-missing`) naming the spec
    /// `gmsa-missing`, which does not exist, is refused: the webhook looks the spec up first;
    /// policy mode asks the authorizer first (a namespace's published contents
    /// cannot tell a missing spec from one not granted here, and an unauthorized account
    /// learns nothing of which specs exist).
    fn missing_spec_refusal(&self, service_account: &str) -> (&'static str, u16, String) {
        if self.policies() {
            let message = format!(
                "service account \"{service_account}\" is not authorized to `use` GMSA cred spec \"gmsa-missing\""
            );
            return (VALIDATING_WEBHOOK, 403, message);
        }
        (
            MUTATING_WEBHOOK,
            404,
            "cred spec gmsa-missing does not exist".into(),
        )
    }

    /// `Ok` when the API server refused with `code` and the message `webhook` gave; in policy
    /// mode, with the message a policy gave and the status its `reason` maps to (README: what
    /// policy mode answers differently).
    fn denial(
        &self,
        got_code: u16,
        status: &Value,
        webhook: &str,
        code: u16,
        message: &str,
    ) -> Result<(), String> {
        let got = status["message"].as_str().unwrap_or_default();
        let mut problems = Vec::new();
        let code = match self.admission {
            Admission::Webhook => {
                let expected =
                    format!("admission webhook \"{webhook}\" denied the request: {message}");
                if got != expected {
                    problems.push(format!(
                        "message\n      got:      {got:?}\n      expected: {expected:?}"
                    ));
                }
                code
            }
            Admission::Policies => {
                let expected = format!("denied request: {}", policy_message(message));
                if !got.ends_with(&expected) || !got.contains("ValidatingAdmissionPolicy '") {
                    problems.push(format!(
                        "message\n      got:      {got:?}\n      expected: a ValidatingAdmissionPolicy's {expected:?}"
                    ));
                }
                policy_code(code)
            }
        };
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
        self.send("POST", &format!("/api/v1/namespaces/{namespace}/pods"), pod)
    }

    /// One request as the admin; the status code and the JSON answer (an object or a `Status`).
    fn send(&self, method: &str, path: &str, body: &Value) -> Result<(u16, Value), String> {
        let (code, answer) = self
            .cluster
            .request(method, path, Some(&body.to_string()))
            .map_err(|e| e.to_string())?;
        let answer: Value = serde_json::from_str(&answer)
            .map_err(|e| format!("answer {code} is not JSON ({e}): {answer}"))?;
        Ok((code, answer))
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
        self.denial(got_code, &status, webhook, code, message)
    }

    /// Adds `ephemeral` to the pod through the `pods/ephemeralcontainers` subresource (a PUT
    /// of the whole pod, as 1.25+ takes it); returns the status code and the answer.
    fn add_ephemeral(
        &self,
        namespace: &str,
        name: &str,
        ephemeral: Value,
    ) -> Result<(u16, Value), String> {
        let mut pod = self.get_pod(namespace, name)?;
        match pod["spec"]["ephemeralContainers"].as_array_mut() {
            Some(list) => list.push(ephemeral),
            None => pod["spec"]["ephemeralContainers"] = json!([ephemeral]),
        }
        self.send(
            "PUT",
            &format!("/api/v1/namespaces/{namespace}/pods/{name}/ephemeralcontainers"),
            &pod,
        )
    }
}

/// A policy's `reason` has four codes: the webhook's 404 (no such spec) and 417 (no
/// `credspec` key) become 422 Invalid.
fn policy_code(webhook_code: u16) -> u16 {
    match webhook_code {
        404 | 417 => 422,
        code => code,
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
        if e.policies() {
            // CEL cannot parse JSON: policies compare the text, so only the published
            // encoding itself matches (README: what policy mode answers differently).
            let mut exact = windows_pod("preset-exact", Some("webapp"));
            exact["spec"]["containers"] = json!([container(
                "app",
                Some(
                    json!({"gmsaCredentialSpecName": "gmsa-webapp1", "gmsaCredentialSpec": WEBAPP1})
                )
            )]);
            let stored = e.create_pod(&exact)?;
            same(
                "container contents",
                container_contents(&stored, "containers", "app"),
                Some(WEBAPP1),
            )?;
            return e.expect_denied(
                &pod,
                VALIDATING_WEBHOOK,
                422,
                r#"the GMSA cred spec contents for container "app" does not match the contents of GMSA resource "gmsa-webapp1""#,
            );
        }
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
    (
        "the opt-out label skips mutation, never authorization",
        |e| {
            let mut pod = with_pod_gmsa(
                windows_pod("opted-out", None),
                json!({"gmsaCredentialSpecName": "gmsa-webapp1"}),
            );
            pod["metadata"]["namespace"] = json!(OPT_OUT_NS);
            if e.cluster.version().minor() >= 21 {
                e.expect_denied(
                &pod,
                VALIDATING_WEBHOOK,
                403,
                r#"service account "default" is not authorized to `use` GMSA cred spec "gmsa-webapp1""#,
            )
            } else {
                // Before 1.21 the label is how the webhook's own namespace is skipped, so it skips
                // validation too (README: Kubernetes versions).
                let (code, stored) = e.post_pod(OPT_OUT_NS, &pod)?;
                same("status", Some(&code.to_string()), Some("201"))?;
                same("pod-level contents", pod_contents(&stored), None)
            }
        },
    ),
    (
        "pre-set contents under a name no spec has still need a grant",
        |e| {
            let mut pod = windows_pod("preset-ghost", Some("nogrant"));
            pod["spec"]["containers"] = json!([container(
                "app",
                Some(
                    json!({"gmsaCredentialSpecName": "gmsa-ghost", "gmsaCredentialSpec": WEBAPP1})
                )
            )]);
            e.expect_denied(
            &pod,
            VALIDATING_WEBHOOK,
            403,
            r#"service account "nogrant" is not authorized to `use` GMSA cred spec "gmsa-ghost""#,
        )
        },
    ),
    ("unknown spec is denied", |e| {
        let mut pod = windows_pod("unknown-spec", Some("webapp"));
        pod["spec"]["containers"] = json!([container("app", named("gmsa-missing"))]);
        let (webhook, code, message) = e.missing_spec_refusal("webapp");
        e.expect_denied(&pod, webhook, code, &message)
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
        let (mut code, mut answer) = e.post_pod(NS, &pod)?;
        if e.policies() {
            // The keeper publishes the contents moments after the spec appears; until then
            // the pod is refused, never admitted without them.
            let deadline = Instant::now() + Duration::from_secs(30);
            while code != 201 && Instant::now() < deadline {
                let message = answer["message"].as_str().unwrap_or_default();
                if !message.ends_with(&policy_message("cred spec gmsa-late does not exist")) {
                    return Err(format!("refused for another reason: {code}: {answer}"));
                }
                thread::sleep(Duration::from_millis(100));
                (code, answer) = e.post_pod(NS, &pod)?;
            }
        }
        if code != 201 {
            return Err(format!("creating the pod: HTTP {code}: {answer}"));
        }
        let stored = e.get_pod(NS, "late-spec")?;
        same("pod-level contents", pod_contents(&stored), Some(LATE))
    }),
];

/// Scenarios for features the oldest server lacks; each runs where the server has it.
const FEATURE_SCENARIOS: &[(&str, Feature, Scenario)] = &[
    (
        "native sidecar name is inlined",
        Feature::NativeSidecars,
        |e| {
            let mut pod = windows_pod("sidecar", Some("webapp"));
            pod["spec"]["initContainers"] = json!([sidecar("proxy", named("gmsa-webapp2"))]);
            let stored = e.create_pod(&pod)?;
            same(
                "restartPolicy",
                stored["spec"]["initContainers"][0]["restartPolicy"].as_str(),
                Some("Always"),
            )?;
            same(
                "sidecar contents",
                container_contents(&stored, "initContainers", "proxy"),
                Some(WEBAPP2),
            )
        },
    ),
    (
        "native sidecar without a grant is denied",
        Feature::NativeSidecars,
        |e| {
            let mut pod = windows_pod("sidecar-no-grant", Some("limited"));
            pod["spec"]["initContainers"] = json!([sidecar("proxy", named("gmsa-webapp1"))]);
            e.expect_denied(
                &pod,
                VALIDATING_WEBHOOK,
                403,
                r#"service account "limited" is not authorized to `use` GMSA cred spec "gmsa-webapp1""#,
            )
        },
    ),
    (
        "native sidecar with mismatching contents is denied",
        Feature::NativeSidecars,
        |e| {
            let mut pod = windows_pod("sidecar-mismatch", Some("webapp"));
            pod["spec"]["initContainers"] = json!([sidecar(
                "proxy",
                Some(
                    json!({"gmsaCredentialSpecName": "gmsa-webapp2", "gmsaCredentialSpec": WEBAPP1})
                )
            )]);
            e.expect_denied(
                &pod,
                VALIDATING_WEBHOOK,
                422,
                r#"the GMSA cred spec contents for init container "proxy" does not match the contents of GMSA resource "gmsa-webapp2""#,
            )
        },
    ),
    (
        "ephemeral container added by kubectl debug gets the contents",
        Feature::EphemeralContainers,
        |e| {
            e.create_pod(&windows_pod("debug-target", Some("webapp")))?;
            let custom = e.cluster.dir().join("debug-gmsa.json");
            let partial = json!({"securityContext": {"windowsOptions": {"gmsaCredentialSpecName": "gmsa-webapp1"}}});
            std::fs::write(&custom, partial.to_string()).map_err(|e| e.to_string())?;
            e.cluster
                .kubectl_ok(
                    &[
                        "debug",
                        "-n",
                        NS,
                        "debug-target",
                        &format!("--image={IMAGE}"),
                        "--container=debugger",
                        "--profile=general",
                        &format!("--custom={}", custom.display()),
                    ],
                    None,
                )
                .map_err(|e| e.to_string())?;
            let stored = e.get_pod(NS, "debug-target")?;
            same(
                "ephemeral container contents",
                container_contents(&stored, "ephemeralContainers", "debugger"),
                Some(WEBAPP1),
            )?;
            same(
                "app contents",
                container_contents(&stored, "containers", "app"),
                None,
            )
        },
    ),
    (
        "ephemeral container naming a spec its service account may not use is refused",
        Feature::EphemeralContainers,
        |e| {
            e.create_pod(&windows_pod("debug-limited", Some("limited")))?;
            let (code, status) = e.add_ephemeral(
                NS,
                "debug-limited",
                container("debugger", named("gmsa-webapp1")),
            )?;
            e.denial(
                code,
                &status,
                VALIDATING_WEBHOOK,
                403,
                r#"service account "limited" is not authorized to `use` GMSA cred spec "gmsa-webapp1""#,
            )?;
            let stored = e.get_pod(NS, "debug-limited")?;
            same(
                "ephemeral containers after the refusal",
                stored["spec"]["ephemeralContainers"]
                    .as_array()
                    .map(|_| "some"),
                None,
            )
        },
    ),
    (
        "ephemeral container naming a missing spec is refused",
        Feature::EphemeralContainers,
        |e| {
            let (code, status) = e.add_ephemeral(
                NS,
                "debug-target",
                container("missing", named("gmsa-missing")),
            )?;
            let (webhook, expected, message) = e.missing_spec_refusal("webapp");
            e.denial(code, &status, webhook, expected, &message)
        },
    ),
];

/// A native sidecar: an init container that keeps running (`restartPolicy: Always`).
fn sidecar(name: &str, windows_options: Option<Value>) -> Value {
    let mut c = container(name, windows_options);
    c["restartPolicy"] = json!("Always");
    c
}

/// Scenarios on every server that `SCENARIOS` does not hold because they create pods other
/// ways than `kubectl create`.
const WRITE_PATH_SCENARIOS: &[(&str, Scenario)] = &[
    (
        "server dry run returns the contents and stores nothing",
        |e| {
            let pod = with_pod_gmsa(
                windows_pod("dry-run", None),
                json!({"gmsaCredentialSpecName": "gmsa-webapp1"}),
            );
            let answer = e
                .cluster
                .kubectl_ok(
                    &["create", "--dry-run=server", "-o", "json", "-f", "-"],
                    Some(&pod.to_string()),
                )
                .map_err(|e| e.to_string())?;
            let answer: Value = serde_json::from_str(&answer).map_err(|e| e.to_string())?;
            same("dry-run contents", pod_contents(&answer), Some(WEBAPP1))?;
            let stored = e.cluster.kubectl_ok(
                &[
                    "get",
                    "pod",
                    "-n",
                    NS,
                    "dry-run",
                    "--ignore-not-found",
                    "-o",
                    "name",
                ],
                None,
            );
            same(
                "stored pod",
                Some(stored.map_err(|e| e.to_string())?.trim()),
                Some(""),
            )
        },
    ),
    (
        "server dry run of a refused pod is refused the same way",
        |e| {
            let mut pod = windows_pod("dry-run-no-grant", Some("nogrant"));
            pod["spec"]["containers"] = json!([container("app", named("gmsa-webapp1"))]);
            let (code, status) = e.send(
                "POST",
                &format!("/api/v1/namespaces/{NS}/pods?dryRun=All"),
                &pod,
            )?;
            e.denial(
                code,
                &status,
                VALIDATING_WEBHOOK,
                403,
                r#"service account "nogrant" is not authorized to `use` GMSA cred spec "gmsa-webapp1""#,
            )
        },
    ),
    (
        "host-name warnings reach kubectl and change no patch",
        |e| {
            // kubectl prints the API server's `Warning` headers, which carry the webhooks'
            // admission warnings, on stderr as `Warning: TEXT`.
            let dry_run = |pod: &Value| -> Result<(Value, Vec<String>), String> {
                let out = e.cluster.kubectl(
                    &["create", "--dry-run=server", "-o", "json", "-f", "-"],
                    Some(&pod.to_string()),
                );
                let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
                if !out.status.success() {
                    return Err(format!("creating {}: {stderr}", pod_name(pod)));
                }
                let answer = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
                let warnings = stderr
                    .lines()
                    .filter_map(|l| l.strip_prefix("Warning: "))
                    .map(str::to_string)
                    .collect();
                Ok((answer, warnings))
            };
            let gmsa = json!({"gmsaCredentialSpecName": "gmsa-webapp1"});
            let warned = |what: &str, warnings: &[String], start: &str| {
                if e.policies() {
                    // Policy mode gives neither host-name warning (README); the pod is
                    // admitted all the same.
                    return if warnings.is_empty() {
                        Ok(())
                    } else {
                        Err(format!("{what}: warnings {warnings:?} in policy mode"))
                    };
                }
                if warnings.len() == 1 && warnings[0].starts_with(start) {
                    Ok(())
                } else {
                    Err(format!(
                        "{what}: warnings {warnings:?}, expected one starting {start:?}"
                    ))
                }
            };

            // Made by a ReplicaSet, with a fixed host name: the mutation's warning.
            let mut shared = with_pod_gmsa(windows_pod("web-7776966999-n5nzr", None), gmsa.clone());
            shared["metadata"]["generateName"] = json!("web-7776966999-");
            shared["metadata"]["ownerReferences"] = json!([{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7776966999",
                "uid": "0b6a4f0e-4b4c-4b8e-9a51-6f1c1f1d2c3e", "controller": true
            }]);
            shared["spec"]["hostname"] = json!("web1");
            let (answer, warnings) = dry_run(&shared)?;
            same(
                "contents with a warning",
                pod_contents(&answer),
                Some(WEBAPP1),
            )?;
            same(
                "hostname",
                answer["spec"]["hostname"].as_str(),
                Some("web1"),
            )?;
            warned(
                "ReplicaSet pod",
                &warnings,
                r#"GMSA pod sets spec.hostname "web1" and its ReplicaSet "web-7776966999" may run several pods with it under the same gMSA: they share the NetBIOS name "WEB1""#,
            )?;

            // A StatefulSet's pod: its controller gave it its own name as host name.
            let mut ordinal = with_pod_gmsa(windows_pod("db-0", None), gmsa.clone());
            ordinal["metadata"]["ownerReferences"] = json!([{
                "apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db",
                "uid": "5d0c2b8e-0c7e-4a57-8f0e-2b8e6a3f9c11", "controller": true
            }]);
            ordinal["spec"]["hostname"] = json!("db-0");
            let (_, warnings) = dry_run(&ordinal)?;
            if !warnings.is_empty() {
                return Err(format!("StatefulSet pod warned: {warnings:?}"));
            }

            // A host name longer than a NetBIOS name: the validation's warning.
            let long = with_pod_gmsa(windows_pod("iis-7776966999-n5nzr", None), gmsa);
            let (answer, warnings) = dry_run(&long)?;
            same(
                "contents with a long name",
                pod_contents(&answer),
                Some(WEBAPP1),
            )?;
            warned(
                "long host name",
                &warnings,
                r#"GMSA pod host name "iis-7776966999-n5nzr" has 20 characters"#,
            )
        },
    ),
    ("server-side apply of a pod that names a spec", |e| {
        let mut pod = windows_pod("applied", Some("webapp"));
        pod["spec"]["containers"] = json!([container("app", named("gmsa-webapp1"))]);
        let apply = || {
            e.cluster.kubectl_ok(
                &["apply", "--server-side", "--field-manager=e2e", "-f", "-"],
                Some(&pod.to_string()),
            )
        };
        apply().map_err(|e| e.to_string())?;
        let stored = e.get_pod(NS, "applied")?;
        same(
            "applied contents",
            container_contents(&stored, "containers", "app"),
            Some(WEBAPP1),
        )?;
        // The same manifest again, as GitOps tools do on every sync.
        let again = apply();
        let after = e.get_pod(NS, "applied")?;
        same(
            "contents after re-apply",
            container_contents(&after, "containers", "app"),
            Some(WEBAPP1),
        )?;
        match again {
            Ok(_) => Ok(()),
            Err(err) => Err(format!("re-applying the same manifest failed: {err}")),
        }
    }),
];

/// The webhook process is gone: pods that mention GMSA must be refused (fail closed), and,
/// where `matchConditions` exist, every other pod is created as if there were no webhook.
fn fail_closed(e: &E2e, webhook: &mut Webhook) -> Vec<String> {
    webhook.process.stop();
    let version = e.cluster.version();
    let unreachable = |name: &str, pod: &Value| -> Result<(), String> {
        let (code, status) = e.post_pod(NS, pod)?;
        unreachable_refusal(name, code, &status)
    };
    let mut cases: Vec<(String, Result<(), String>)> = Vec::new();

    let plain = windows_pod("down-plain", Some("webapp"));
    let outcome = if version.has(Feature::MatchConditions) {
        e.post_pod(NS, &plain)
            .and_then(|(code, status)| match code {
                201 => Ok(()),
                _ => Err(format!("a pod without GMSA was refused: {code} {status}")),
            })
    } else {
        unreachable("down-plain", &plain)
    };
    let plain_case = if version.has(Feature::MatchConditions) {
        "pod without GMSA is created while the webhook is down"
    } else {
        "pod without GMSA is refused while the webhook is down (no matchConditions before 1.28)"
    };
    cases.push((plain_case.into(), outcome));

    let pod_level = with_pod_gmsa(
        windows_pod("down-pod", Some("webapp")),
        json!({"gmsaCredentialSpecName": "gmsa-webapp1"}),
    );
    let mut in_container = windows_pod("down-container", Some("webapp"));
    in_container["spec"]["containers"] = json!([container("app", named("gmsa-webapp1"))]);
    let mut in_init = windows_pod("down-init", Some("webapp"));
    in_init["spec"]["initContainers"] = json!([container("init", named("gmsa-webapp1"))]);
    let mut contents_only = windows_pod("down-contents", Some("webapp"));
    contents_only["spec"]["containers"] = json!([container(
        "app",
        Some(json!({"gmsaCredentialSpec": WEBAPP1}))
    )]);
    let mut refused = vec![
        ("pod-level name", pod_level),
        ("container name", in_container),
        ("init container name", in_init),
        ("contents without a name", contents_only),
    ];
    if version.has(Feature::NativeSidecars) {
        let mut in_sidecar = windows_pod("down-sidecar", Some("webapp"));
        in_sidecar["spec"]["initContainers"] = json!([sidecar("proxy", named("gmsa-webapp1"))]);
        refused.push(("native sidecar name", in_sidecar));
    }
    for (what, pod) in &refused {
        cases.push((
            format!("{what}: refused while the webhook is down"),
            unreachable(pod_name(pod), pod),
        ));
    }
    if version.has(Feature::EphemeralContainers) && version.has(Feature::MatchConditions) {
        let outcome = e
            .add_ephemeral(
                NS,
                "down-plain",
                container("debugger", named("gmsa-webapp1")),
            )
            .and_then(|(code, status)| unreachable_refusal("down-plain", code, &status));
        cases.push((
            "ephemeral container name: refused while the webhook is down".into(),
            outcome,
        ));
    }
    let mut failures = Vec::new();
    for (name, outcome) in cases {
        match outcome {
            Ok(()) => eprintln!("ok    {name}"),
            Err(problem) => {
                eprintln!("FAIL  {name}");
                failures.push(format!("  {name}: {problem}"));
            }
        }
    }
    failures
}

/// The API server's answer when it cannot reach a webhook whose failurePolicy is Fail.
fn unreachable_refusal(name: &str, code: u16, status: &Value) -> Result<(), String> {
    let message = status["message"].as_str().unwrap_or_default();
    let expected = format!("failed calling webhook \"{MUTATING_WEBHOOK}\"");
    if code == 500 && message.contains(&expected) {
        Ok(())
    } else {
        Err(format!(
            "{name}: expected 500 with {expected:?}, got {code}: {message}"
        ))
    }
}

/// Every scenario the server can run, in order, all of them even when one fails: how many
/// ran, and what failed.
fn run_scenarios(e2e: &E2e) -> (usize, Vec<String>) {
    let version = e2e.cluster.version();
    let scenarios = SCENARIOS
        .iter()
        .chain(WRITE_PATH_SCENARIOS)
        .map(|(name, run)| (*name, *run))
        .chain(
            FEATURE_SCENARIOS
                .iter()
                .filter(|(_, feature, _)| version.has(*feature))
                .map(|(name, _, run)| (*name, *run)),
        );
    let mut failures = Vec::new();
    let mut count = 0;
    for (name, scenario) in scenarios {
        count += 1;
        let began = Instant::now();
        match scenario(e2e) {
            Ok(()) => eprintln!("ok    {name} ({:.1?})", began.elapsed()),
            Err(problem) => {
                eprintln!("FAIL  {name} ({:.1?})", began.elapsed());
                failures.push(format!("  {name}: {problem}"));
            }
        }
    }
    (count, failures)
}

#[test]
fn webhook_behind_kube_1_20() {
    webhook_behind_a_real_kube_apiserver(ServerVersion::V1_20);
}

#[test]
fn webhook_behind_current_kube() {
    webhook_behind_a_real_kube_apiserver(ServerVersion::Current);
}

/// The whole tier on one server: cluster, webhook, registration, every scenario the server
/// can run, then the webhook stopped.
fn webhook_behind_a_real_kube_apiserver(version: ServerVersion) {
    if skip_requested() {
        eprintln!("skipped: {SKIP_ENV}=1");
        return;
    }
    let cluster = RealCluster::start(version).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "kube-apiserver {version} ready in {:.1?} at {}",
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
    let e2e = E2e {
        cluster: &cluster,
        admission: Admission::Webhook,
    };
    if let Err(e) = wait_until_webhooks_answer(&e2e) {
        panic!("{e}\n--- webhook log ---\n{}", webhook.process.log_tail(60));
    }

    let (count, mut failures) = run_scenarios(&e2e);
    let still_running = webhook.process.check_running();
    let log = webhook.process.log_tail(80);
    let closed = fail_closed(&e2e, &mut webhook);
    eprintln!(
        "{version}: {count} scenarios with the webhook up, {} failed; fail-closed phase: {} failed",
        failures.len(),
        closed.len()
    );
    failures.extend(closed);
    if !failures.is_empty() || still_running.is_err() {
        panic!(
            "{} failures on {version}:\n{}\nwebhook running: {:?}\n--- webhook log (last 80 lines) ---\n{log}",
            failures.len(),
            failures.join("\n"),
            still_running.err().map(|e| e.to_string()),
        );
    }
}

/// The message a policy gives where the webhook gives `message` (README: what policy mode
/// answers differently): a spec that does not exist, has no contents, or is not granted here
/// is not published for the namespace ([`NS`] in the scenarios).
fn policy_message(message: &str) -> String {
    let unusable = message.strip_prefix("cred spec ").and_then(|rest| {
        rest.strip_suffix(" does not exist")
            .or_else(|| rest.strip_suffix(" does not have a credspec key"))
    });
    match unusable {
        Some(name) => format!(
            "cred spec {name} is not published for namespace {NS}: {}",
            gmsa_deploy::policies::NOT_PUBLISHED
        ),
        None => message.to_string(),
    }
}
