//! The contents keeper (`--keep-published-contents`) against the real current kube-apiserver:
//! the built binary runs as processes authenticated as the webhook user, and what the API
//! server stored is checked. One cluster serves the phases, in order: a missing `patch` grant
//! (logged, retried), publication, a hand edit, removal of `credspec`, specs created while no
//! keeper runs, and two keepers at once (one alone, one beside the admission server).
//!
//! Waits are polls with a deadline, never sleeps. Needs `hack/build-kube-apiserver.sh v1.37.2`
//! and `hack/build-etcd.sh` to have run; `GMSA_SKIP_REAL_APISERVER=1` skips.

#![allow(clippy::unwrap_used)] // tests may panic

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use gmsa_core::canonical::to_go_json;
use gmsa_core::published::{CONTENTS_ANNOTATION, CONTENTS_GENERATION_ANNOTATION};
use gmsa_testkit::real_cluster::{
    free_port, https_get, skip_requested, LoopbackTls, ManagedProcess, RealCluster, ServerVersion,
    SKIP_ENV, WEBHOOK_USER,
};
use serde_json::{json, Value};

/// How long any one change may take to show; far above what it takes.
const DEADLINE: Duration = Duration::from_secs(60);

/// `web`'s first contents as Go's `json.Marshal` writes them: sorted, compact, `<>&` and
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

/// The webhook user's ClusterRole: reading specs, `patch` when `patch`, and what the admission
/// server's own caches read.
fn rbac(patch: bool) -> String {
    let mut spec_verbs = vec!["get", "list", "watch"];
    if patch {
        spec_verbs.push("patch");
    }
    json!({"apiVersion": "v1", "kind": "List", "items": [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "gmsa-keeper"},
            "rules": [
                {"apiGroups": ["windows.k8s.io"], "resources": ["gmsacredentialspecs"], "verbs": spec_verbs},
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

    /// `gmsa_webhook_published_contents_writes_total` for `outcome`, 0 before the first.
    fn writes(&self, outcome: &str) -> Option<u64> {
        let (status, body) = self.get("/metrics")?;
        if status != 200 {
            return None;
        }
        let series =
            format!("gmsa_webhook_published_contents_writes_total{{outcome=\"{outcome}\"}} ");
        Some(
            body.lines()
                .find_map(|line| line.strip_prefix(&series))
                .map_or(0, |n| n.trim().parse().unwrap()),
        )
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

/// A hand edit: `credspec` replaced (or removed with `None`) by a JSON patch.
fn edit(cluster: &RealCluster, name: &str, credspec: Option<&Value>) {
    let patch = match credspec {
        Some(value) => json!([{"op": "add", "path": "/credspec", "value": value}]),
        None => json!([{"op": "remove", "path": "/credspec"}]),
    };
    let patch = patch.to_string();
    let args = [
        "patch",
        "gmsacredentialspec",
        name,
        "--type",
        "json",
        "-p",
        &patch,
    ];
    cluster.kubectl_ok(&args, None).unwrap();
}

/// The stored object's generation, and its two annotations.
fn published(cluster: &RealCluster, name: &str) -> (i64, Option<String>, Option<String>) {
    let text = cluster
        .kubectl_ok(&["get", "gmsacredentialspec", name, "-o", "json"], None)
        .unwrap();
    let object: Value = serde_json::from_str(&text).unwrap();
    let annotation = |key: &str| {
        object["metadata"]["annotations"][key]
            .as_str()
            .map(str::to_string)
    };
    (
        object["metadata"]["generation"].as_i64().unwrap(),
        annotation(CONTENTS_ANNOTATION),
        annotation(CONTENTS_GENERATION_ANNOTATION),
    )
}

/// Waits until `name` publishes `contents` for `generation`, which must stay the object's
/// generation: the keeper's own write does not bump it.
fn wait_published(cluster: &RealCluster, name: &str, contents: &str, generation: i64) {
    let want = (
        generation,
        Some(contents.to_string()),
        Some(generation.to_string()),
    );
    poll(
        &format!("{name} publishes generation {generation}: {contents}"),
        || (published(cluster, name) == want).then_some(()),
    );
}

fn wait_withdrawn(cluster: &RealCluster, name: &str) {
    poll(&format!("{name} has neither annotation"), || {
        let (_, contents, generation) = published(cluster, name);
        (contents.is_none() && generation.is_none()).then_some(())
    });
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
    cluster
        .apply_crd(&gmsa_deploy::crd::custom_resource_definition().to_string())
        .unwrap();
    cluster.apply(&rbac(false)).unwrap();

    // Without `patch`, the keeper says which grant is missing, and retries until it has it.
    let mut first = Keeper::alone(&cluster, "keeper-1");
    poll("the keeper-only process is ready", || {
        (first.get("/readyz")?.0 == 200).then_some(())
    });
    create(&cluster, "web", &web_credspec());
    poll("a 403 on patch is logged with the grant it needs", || {
        first
            .process
            .log()
            .contains("cannot publish contents: grant get, list, watch and patch on gmsacredentialspecs.windows.k8s.io")
            .then_some(())
    });
    assert_eq!(published(&cluster, "web"), (1, None, None));
    cluster.apply(&rbac(true)).unwrap();
    wait_published(&cluster, "web", WEB_CONTENTS, 1);
    eprintln!("ok    published after the grant ({:.1?})", began.elapsed());

    // Keeper-only: it says what it does, and exports its own metrics, none of the admission
    // server's (they would read zero and look like an idle webhook).
    let log = first.process.log();
    assert!(
        log.contains("keeper ready: watching credential specs"),
        "{log}"
    );
    assert!(!log.contains("Kubernetes backend ready"), "{log}");
    let (status, metrics) = first.get("/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.contains("gmsa_webhook_published_contents_writes_total{outcome=\"Published\"} "),
        "{metrics}"
    );
    assert!(metrics.contains("gmsa_webhook_build_info{"), "{metrics}");
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

    // A hand edit bumps the generation; the contents follow. So does removing credspec.
    let edited = credspec_of("WebApp2");
    edit(&cluster, "web", Some(&edited));
    wait_published(&cluster, "web", &to_go_json(&edited), 2);
    edit(&cluster, "web", None);
    wait_withdrawn(&cluster, "web");
    eprintln!("ok    edit and removal followed ({:.1?})", began.elapsed());
    first.process.check_running().unwrap();
    first.process.stop();

    // While no keeper runs, nothing is published; a keeper started later catches up.
    create(&cluster, "late", &credspec_of("Late"));
    edit(&cluster, "web", Some(&web_credspec()));
    assert_eq!(published(&cluster, "late"), (1, None, None));
    assert_eq!(published(&cluster, "web"), (4, None, None));
    let mut alone = Keeper::alone(&cluster, "keeper-2");
    wait_published(&cluster, "late", &to_go_json(&credspec_of("Late")), 1);
    wait_published(&cluster, "web", WEB_CONTENTS, 4);
    eprintln!("ok    caught up after a restart ({:.1?})", began.elapsed());

    // Two keepers at once: each change is published exactly once, the other keeper's write
    // failing on the resourceVersion.
    let mut beside = Keeper::beside_the_server(&cluster, "keeper-3");
    poll("the server with a keeper beside it is ready", || {
        (beside.get("/readyz")?.0 == 200).then_some(())
    });
    let total =
        |outcome: &str| -> Option<u64> { Some(alone.writes(outcome)? + beside.writes(outcome)?) };
    let before = poll("both keepers' metrics", || total("Published"));
    let accounts = ["Two1", "Two2", "Two3"];
    for (i, account) in accounts.iter().enumerate() {
        create(&cluster, &format!("two-{i}"), &credspec_of(account));
    }
    edit(&cluster, "late", Some(&credspec_of("Later")));
    for (i, account) in accounts.iter().enumerate() {
        wait_published(
            &cluster,
            &format!("two-{i}"),
            &to_go_json(&credspec_of(account)),
            1,
        );
    }
    wait_published(&cluster, "late", &to_go_json(&credspec_of("Later")), 2);
    let changes = accounts.len() as u64 + 1;
    let after = poll("both keepers counted their writes", || {
        total("Published").filter(|n| *n >= before + changes)
    });
    assert_eq!(
        after,
        before + changes,
        "each change published exactly once"
    );
    let conflicts = total("Conflict");
    alone.process.check_running().unwrap();
    beside.process.check_running().unwrap();
    assert!(
        first.process.log().contains("published contents"),
        "publications are logged"
    );
    eprintln!(
        "ok    two keepers converged, conflicts: {conflicts:?} ({:.1?})",
        began.elapsed()
    );
}
