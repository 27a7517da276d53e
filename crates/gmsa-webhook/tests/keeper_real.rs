//! The contents keeper (`--keep-published-contents`) against the real current kube-apiserver:
//! the built binary runs as processes authenticated as the webhook user, and what the API
//! server stored is checked. One cluster serves the phases, in order: a missing grant (logged,
//! not ready, retried), publication in the namespaces a grant reaches, a grant taken away and
//! given back, a hand edit of a namespace's contents, a spec deleted (held by its finalizer until its contents are withdrawn), specs
//! created while no keeper runs, and two keepers at once (one alone, one beside the admission
//! server).
//!
//! Waits are polls with a deadline, never sleeps. Needs `hack/build-kube-apiserver.sh v1.37.2`
//! and `hack/build-etcd.sh` to have run; `GMSA_SKIP_REAL_APISERVER=1` skips.

#![allow(clippy::unwrap_used)] // tests may panic

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use gmsa_core::canonical::to_go_json;
use gmsa_core::names::contents::FINALIZER;
use gmsa_testkit::real_cluster::{
    free_port, https_get, skip_requested, LoopbackTls, ManagedProcess, RealCluster, ServerVersion,
    SKIP_ENV, WEBHOOK_USER,
};
use serde_json::{json, Value};

/// How long any one change may take to show; far above what it takes.
const DEADLINE: Duration = Duration::from_secs(60);
/// The namespace whose service account is granted the specs.
const APPS: &str = "apps";
/// The install's name: of the contents objects and the `-elsewhere` binding.
const INSTALL: &str = "gmsa-webhook";

/// `web`'s contents as Go's `json.Marshal` writes them: sorted, compact, `<>&` and
/// U+2028/U+2029 escaped. Written out rather than computed, so the encoder is checked too.
const WEB_CONTENTS: &str = r#"{"CmsPlugins":["ActiveDirectory"],"DomainJoinConfig":{"MachineAccountName":"\u003cR\u0026D\u003e","Note":"a\u2028b\u2029c","Sid":"S-1-5-21-1"}}"#;

fn web_credspec() -> Value {
    json!({
        "DomainJoinConfig": {"Sid": "S-1-5-21-1", "Note": "a\u{2028}b\u{2029}c", "MachineAccountName": "<R&D>"},
        "CmsPlugins": ["ActiveDirectory"]
    })
}

fn credspec_of(account: &str) -> Value {
    json!({
        "DomainJoinConfig": {"MachineAccountName": account, "DnsName": "contoso.com"},
        "CmsPlugins": ["ActiveDirectory"],
        "ActiveDirectoryConfig": {"GroupManagedServiceAccounts": [{"Scope": "contoso.com", "Name": account}]}
    })
}

/// The webhook user's ClusterRole: what install grants the keeper (with `contents`, the
/// writes of the namespaces' contents) and what the admission server's own caches read.
fn rbac(contents: bool) -> String {
    let mut contents_verbs = vec!["get", "list", "watch"];
    if contents {
        contents_verbs.extend(["create", "patch", "delete"]);
    }
    json!({"apiVersion": "v1", "kind": "List", "items": [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "gmsa-keeper"},
            "rules": [
                {"apiGroups": ["windows.k8s.io"], "resources": ["gmsacredentialspecs"],
                 "verbs": ["get", "list", "watch", "patch"]},
                {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": ["policy.gmsa.dev"], "resources": ["gmsanamespacecontents"],
                 "verbs": contents_verbs},
                {"apiGroups": ["admissionregistration.k8s.io"],
                 "resources": ["validatingadmissionpolicybindings"],
                 "verbs": ["get", "list", "watch"]},
                {"apiGroups": ["admissionregistration.k8s.io"],
                 "resources": ["validatingadmissionpolicybindings"],
                 "resourceNames": [format!("{INSTALL}-elsewhere")], "verbs": ["patch"]},
                {"apiGroups": ["rbac.authorization.k8s.io"],
                 "resources": ["roles", "clusterroles", "rolebindings", "clusterrolebindings"],
                 "verbs": ["get", "list", "watch"]},
                {"apiGroups": ["authorization.k8s.io"], "resources": ["localsubjectaccessreviews"],
                 "verbs": ["create"]}
            ]
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "gmsa-keeper"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "gmsa-keeper"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": WEBHOOK_USER}]
        }
    ]})
    .to_string()
}

/// `use` of `specs` for `APPS`' service account `app`.
fn grant(specs: &[&str]) -> String {
    json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "use-apps-specs"},
         "rules": [{"apiGroups": ["windows.k8s.io"], "resources": ["gmsacredentialspecs"],
                    "resourceNames": specs, "verbs": ["use"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "use-apps-specs", "namespace": APPS},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "use-apps-specs"},
         "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": APPS}]}
    ]})
    .to_string()
}

/// A running keeper and where to read its metrics.
struct Keeper {
    process: ManagedProcess,
    /// `https://` with the CA to trust (beside the server), or a plain-HTTP probe port.
    metrics: Metrics,
}

enum Metrics {
    Plain(u16),
    Https { port: u16, ca_pem: String },
}

impl Keeper {
    /// `gmsa-webhook --keep-published-contents --no-admission` with a plain-HTTP probe port.
    fn alone(cluster: &RealCluster, name: &str) -> Keeper {
        let port = free_port().unwrap();
        let mut command = keeper_command(cluster);
        command.args(["--no-admission", "--bind-address", "127.0.0.1"]);
        command.arg("--probe-port").arg(port.to_string());
        let process = cluster.spawn(name, command).unwrap();
        Keeper {
            process,
            metrics: Metrics::Plain(port),
        }
    }

    /// The admission server with the keeper beside it.
    fn beside_the_server(cluster: &RealCluster, name: &str) -> Keeper {
        let tls = LoopbackTls::generate(cluster.dir(), name).unwrap();
        let port = free_port().unwrap();
        let mut command = keeper_command(cluster);
        command
            .arg("--tls-cert")
            .arg(&tls.cert_path)
            .arg("--tls-key")
            .arg(&tls.key_path)
            .args(["--bind-address", "127.0.0.1", "--port", &port.to_string()]);
        let process = cluster.spawn(name, command).unwrap();
        Keeper {
            process,
            metrics: Metrics::Https {
                port,
                ca_pem: tls.ca_pem,
            },
        }
    }

    /// `/readyz` and `/metrics`, or `None` while the process does not answer yet.
    fn get(&self, path: &str) -> Option<(u16, String)> {
        match &self.metrics {
            Metrics::Plain(port) => plain_get(*port, path),
            Metrics::Https { port, ca_pem } => {
                https_get(&format!("https://127.0.0.1:{port}{path}"), ca_pem, None).ok()
            }
        }
    }
}

fn keeper_command(cluster: &RealCluster) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gmsa-webhook"));
    command
        .arg("--keep-published-contents")
        .arg("--kubeconfig")
        .arg(cluster.webhook_kubeconfig())
        .env("LOG_LEVEL", "debug")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env_remove("KUBECONFIG")
        .env_remove("TLS_CRT")
        .env_remove("TLS_KEY")
        .env_remove("HTTPS_PORT");
    command
}

/// One plain HTTP/1.1 GET on loopback; `None` when nothing answers.
fn plain_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// Polls `check` every 200 ms until it gives `Some` or [`DEADLINE`] passes.
fn poll<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < deadline, "not within {DEADLINE:?}: {what}");
        thread::sleep(Duration::from_millis(200));
    }
}

fn create(cluster: &RealCluster, name: &str, credspec: &Value) {
    let object = json!({"apiVersion": "windows.k8s.io/v1", "kind": "GMSACredentialSpec",
        "metadata": {"name": name}, "credspec": credspec});
    cluster
        .kubectl_ok(&["create", "-f", "-"], Some(&object.to_string()))
        .unwrap();
}

/// `APPS`' published contents (spec name to contents); `None` when it has no object.
fn entries(cluster: &RealCluster) -> Option<Value> {
    let out = cluster.kubectl(
        &[
            "get",
            "gmsanamespacecontents",
            "-n",
            APPS,
            INSTALL,
            "-o",
            "json",
        ],
        None,
    );
    out.status.success().then(|| {
        let object: Value = serde_json::from_slice(&out.stdout).unwrap();
        object["contents"].clone()
    })
}

/// The namespaces the `-elsewhere` binding leaves out.
fn listed(cluster: &RealCluster) -> BTreeSet<String> {
    let text = cluster
        .kubectl_ok(
            &[
                "get",
                "validatingadmissionpolicybinding",
                &format!("{INSTALL}-elsewhere"),
                "-o",
                "json",
            ],
            None,
        )
        .unwrap();
    let binding: Value = serde_json::from_str(&text).unwrap();
    gmsa_core::contents::listed_namespaces(&binding["spec"]["matchResources"]["namespaceSelector"])
}

/// Waits until `APPS`' contents are exactly `want` (`None`: no object, and `APPS` unlisted).
fn wait_entries(cluster: &RealCluster, want: Option<Value>) {
    poll(&format!("{APPS}'s published contents are {want:?}"), || {
        let listed = listed(cluster).contains(APPS);
        (entries(cluster) == want && listed == want.is_some()).then_some(())
    });
}

/// The stored spec's finalizers; `None` once it is gone.
fn finalizers(cluster: &RealCluster, name: &str) -> Option<Value> {
    let out = cluster.kubectl(&["get", "gmsacredentialspec", name, "-o", "json"], None);
    out.status.success().then(|| {
        let object: Value = serde_json::from_slice(&out.stdout).unwrap();
        object["metadata"]["finalizers"].clone()
    })
}

#[test]
fn keeper_publishes_contents_on_current_kube() {
    if skip_requested() {
        eprintln!("skipped: {SKIP_ENV}=1");
        return;
    }
    let began = Instant::now();
    let cluster = RealCluster::start(ServerVersion::Current).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("kube-apiserver ready in {:.1?}", cluster.startup_time());
    let settings = gmsa_deploy::Settings {
        kube_version: gmsa_deploy::KubeVersion::new(1, cluster.version().minor()),
        admission: gmsa_deploy::Admission::Policies,
        ..gmsa_deploy::Settings::default()
    };
    for crd in [
        gmsa_deploy::crd::custom_resource_definition(),
        gmsa_deploy::crd::namespace_contents_definition(&settings),
    ] {
        cluster.apply_crd(&crd.to_string()).unwrap();
    }
    for object in
        gmsa_deploy::policies::admission_objects(&settings, WEBHOOK_USER, &BTreeSet::new())
    {
        cluster.apply(&object.body.to_string()).unwrap();
    }
    cluster.create_service_account(APPS, "app").unwrap();
    cluster.apply(&rbac(false)).unwrap();
    cluster
        .apply(&grant(&["web", "late", "two-0", "two-1", "two-2"]))
        .unwrap();

    // Without the contents writes, the keeper says what failed, counts it, and retries until
    // it may (it turns unready only once passes fail for --watch-stale-after).
    let mut first = Keeper::alone(&cluster, "keeper-1");
    create(&cluster, "web", &web_credspec());
    poll("a 403 on the contents is logged", || {
        let log = first.process.log();
        (log.contains("cannot bring the published contents up to date")
            && log.contains("forbidden"))
        .then_some(())
    });
    poll("the failed pass is counted", || {
        let (_, metrics) = first.get("/metrics")?;
        metrics
            .contains("gmsa_webhook_published_contents_writes_total{outcome=\"Forbidden\"} ")
            .then_some(())
    });
    assert_eq!(entries(&cluster), None);
    assert_eq!(
        finalizers(&cluster, "web"),
        Some(json!([FINALIZER])),
        "the finalizer policy adds it on create"
    );
    cluster.apply(&rbac(true)).unwrap();
    wait_entries(&cluster, Some(json!({"web": WEB_CONTENTS})));
    poll("the keeper-only process is ready", || {
        (first.get("/readyz")?.0 == 200).then_some(())
    });
    eprintln!("ok    published after the grant ({:.1?})", began.elapsed());

    // Keeper-only: it says what it does, and exports its own metrics, none of the admission
    // server's (they would read zero and look like an idle webhook).
    let log = first.process.log();
    assert!(
        log.contains("keeper ready: every namespace's published contents are current"),
        "{log}"
    );
    assert!(!log.contains("Kubernetes backend ready"), "{log}");
    let (status, metrics) = first.get("/metrics").unwrap();
    assert_eq!(status, 200);
    for present in [
        "gmsa_webhook_published_contents_writes_total{outcome=\"Published\"} ",
        "gmsa_webhook_published_contents_writes_total{outcome=\"Forbidden\"} ",
        "gmsa_webhook_build_info{",
    ] {
        assert!(metrics.contains(present), "{present}:\n{metrics}");
    }
    for absent in [
        "gmsa_webhook_admission",
        "gmsa_webhook_cache_",
        "gmsa_webhook_certificate",
        "gmsa_webhook_access_reviews",
    ] {
        assert!(
            !metrics.contains(absent),
            "{absent} in keeper-only /metrics:\n{metrics}"
        );
    }

    // A grant taken away withdraws the namespace's contents; given back, they return.
    cluster
        .kubectl_ok(
            &["delete", "rolebinding", "-n", APPS, "use-apps-specs"],
            None,
        )
        .unwrap();
    wait_entries(&cluster, None);
    cluster
        .apply(&grant(&["web", "late", "two-0", "two-1", "two-2"]))
        .unwrap();
    wait_entries(&cluster, Some(json!({"web": WEB_CONTENTS})));
    eprintln!(
        "ok    a grant taken away and given back ({:.1?})",
        began.elapsed()
    );

    // A hand edit of a namespace's contents is put right (the objects are the keeper's alone).
    let forged = json!({"contents": {"web": "{\"forged\":true}", "extra": "{}"}});
    cluster
        .kubectl_ok(
            &[
                "patch",
                "gmsanamespacecontents",
                "-n",
                APPS,
                INSTALL,
                "--type=merge",
                "-p",
                &forged.to_string(),
            ],
            None,
        )
        .unwrap();
    wait_entries(&cluster, Some(json!({"web": WEB_CONTENTS})));
    eprintln!("ok    a hand edit put right ({:.1?})", began.elapsed());

    // A deleted spec is held until its contents are withdrawn, then goes.
    create(&cluster, "doomed", &credspec_of("Doomed"));
    cluster
        .apply(&grant(&[
            "web", "doomed", "late", "two-0", "two-1", "two-2",
        ]))
        .unwrap();
    wait_entries(
        &cluster,
        Some(json!({"web": WEB_CONTENTS, "doomed": to_go_json(&credspec_of("Doomed"))})),
    );
    cluster
        .kubectl_ok(
            &["delete", "gmsacredentialspec", "doomed", "--wait=false"],
            None,
        )
        .unwrap();
    poll(
        "the deleted spec goes once its contents are withdrawn",
        || finalizers(&cluster, "doomed").is_none().then_some(()),
    );
    assert_eq!(entries(&cluster), Some(json!({"web": WEB_CONTENTS})));
    eprintln!(
        "ok    a deleted spec withdrawn, then released ({:.1?})",
        began.elapsed()
    );
    first.process.check_running().unwrap();
    first.process.stop();

    // While no keeper runs, nothing is published; a keeper started later catches up.
    create(&cluster, "late", &credspec_of("Late"));
    thread::sleep(Duration::from_secs(1));
    assert_eq!(entries(&cluster), Some(json!({"web": WEB_CONTENTS})));
    let mut alone = Keeper::alone(&cluster, "keeper-2");
    wait_entries(
        &cluster,
        Some(json!({"web": WEB_CONTENTS, "late": to_go_json(&credspec_of("Late"))})),
    );
    eprintln!("ok    caught up after a restart ({:.1?})", began.elapsed());

    // Two keepers at once converge on the same contents.
    let mut beside = Keeper::beside_the_server(&cluster, "keeper-3");
    poll("the server with a keeper beside it is ready", || {
        (beside.get("/readyz")?.0 == 200).then_some(())
    });
    let accounts = ["Two0", "Two1", "Two2"];
    let mut want = json!({"web": WEB_CONTENTS, "late": to_go_json(&credspec_of("Late"))});
    for (i, account) in accounts.iter().enumerate() {
        create(&cluster, &format!("two-{i}"), &credspec_of(account));
        want[format!("two-{i}")] = json!(to_go_json(&credspec_of(account)));
    }
    wait_entries(&cluster, Some(want));
    alone.process.check_running().unwrap();
    beside.process.check_running().unwrap();
    for keeper in [&alone, &beside] {
        let log = keeper.process.log();
        assert!(!log.contains("panicked"), "{log}");
    }
    eprintln!("ok    two keepers converged ({:.1?})", began.elapsed());
}
