//! `install`, `doctor` and `uninstall` against a real kube-apiserver, on each version the tier
//! covers (v1.20.2 and the current release). There is no
//! kubelet, so the webhook runs here (in this process, as the installed ServiceAccount, with
//! a token from the TokenRequest API) and is registered by URL (`install --webhook-url`); a
//! thread plays the kubelet, copying the installed Secret into the files the webhook serves.
//!
//! One cluster, one sequence: install; admission through the installed configuration;
//! `--dry-run=server` changes nothing; re-install changes nothing; certificate rotation while
//! pods are created without pause (no admission may fail); doctor's findings for a healthy
//! cluster and for each kind of breakage; uninstall keeps the CRD and the credential specs.
//!
//! Needs `hack/build-kube-apiserver.sh` to have run; `GMSA_SKIP_REAL_APISERVER=1` skips.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use clap::Parser as _;
use gmsa_testkit::real_cluster::{
    free_port, skip_requested, Feature, RealCluster, ServerVersion, SKIP_ENV,
};
use serde_json::{json, Value};
use support::{expect, find, Run};

const SYSTEM_NS: &str = "gmsa-system";
const NS: &str = "gmsa-install-e2e";
const SECRET: &str = "gmsa-webhook-tls";
const CRD: &str = "gmsacredentialspecs.windows.k8s.io";
/// Both webhook configurations install makes (the reference's are called `gmsa-webhook`).
const WEBHOOK_CONFIGURATION: &str = "gmsa-webhook-admission";

/// What every step needs.
struct Env<'a> {
    cluster: &'a RealCluster,
    dir: PathBuf,
    url: String,
    webhook_kubeconfig: PathBuf,
}

impl<'a> Env<'a> {
    /// The environment of one test in `cluster`, with a port for the webhook it will run.
    fn new(cluster: &'a RealCluster, dir_name: &str) -> (Self, u16) {
        let port = free_port().unwrap();
        let dir = cluster.dir().join(dir_name);
        std::fs::create_dir_all(&dir).unwrap();
        let env = Env {
            cluster,
            url: format!("https://127.0.0.1:{port}"),
            webhook_kubeconfig: dir.join("webhook.kubeconfig"),
            dir,
        };
        (env, port)
    }

    fn gmsa(&self, args: &[&str]) -> Run {
        support::on_cluster(self.cluster.admin_kubeconfig(), args)
    }

    fn gmsa_ok(&self, args: &[&str]) -> Run {
        support::on_cluster_ok(self.cluster.admin_kubeconfig(), args, "")
    }

    fn install(&self, extra: &[&str]) -> Run {
        let mut args = vec!["install", "--apply", "--webhook-url", &self.url];
        args.extend_from_slice(extra);
        self.gmsa_ok(&args)
    }

    fn kubectl(&self, args: &[&str]) -> String {
        self.cluster
            .kubectl_ok(args, None)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn apply(&self, manifest: &Value) {
        self.cluster
            .apply(&manifest.to_string())
            .unwrap_or_else(|e| panic!("{e}"));
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl(&all)).unwrap()
    }

    fn secret(&self) -> BTreeMap<String, String> {
        let secret = self.json(&["get", "secret", "-n", SYSTEM_NS, SECRET]);
        secret["data"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(v.as_str().unwrap())
                    .unwrap();
                (k.clone(), String::from_utf8(bytes).unwrap())
            })
            .collect()
    }

    fn ca_bundle(&self) -> String {
        let config = self.json(&["get", "mutatingwebhookconfiguration", WEBHOOK_CONFIGURATION]);
        let b64 = config["webhooks"][0]["clientConfig"]["caBundle"]
            .as_str()
            .unwrap();
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        )
        .unwrap()
    }

    /// `kind/namespace/name` → resourceVersion of everything install makes, plus the specs.
    fn snapshot(&self) -> BTreeMap<String, String> {
        let list = self.json(&[
            "get",
            "crd,namespace,serviceaccount,clusterrole,clusterrolebinding,secret,service,deployment,\
             poddisruptionbudget,mutatingwebhookconfiguration,validatingwebhookconfiguration,\
             gmsacredentialspecs,rolebinding",
            "-A",
        ]);
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                let m = &o["metadata"];
                (
                    format!(
                        "{}/{}/{}",
                        o["kind"].as_str().unwrap(),
                        m["namespace"].as_str().unwrap_or(""),
                        m["name"].as_str().unwrap()
                    ),
                    m["resourceVersion"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    fn post_pod(&self, pod: &Value) -> (u16, String) {
        self.cluster
            .request(
                "POST",
                &format!("/api/v1/namespaces/{NS}/pods"),
                Some(&pod.to_string()),
            )
            .unwrap_or_else(|e| (0, e.to_string()))
    }

    /// Runs the webhook in this process as the installed ServiceAccount (a TokenRequest token),
    /// serving the installed Secret's pair; checks that account's permissions first.
    fn start_installed_webhook(&self, port: u16) -> (Webhook, PathBuf) {
        self.write_installed_kubeconfig();
        let tls_dir = self.dir.join("tls");
        let secret = self.secret();
        write_pair(&tls_dir, &secret["tls.crt"], &secret["tls.key"]);
        let webhook = Webhook::start(&tls_dir, &self.webhook_kubeconfig, port, &[]);
        wait_for("webhook /readyz", Duration::from_secs(30), || {
            presented(&self.url).map(drop)
        });
        (webhook, tls_dir)
    }

    /// Writes `webhook_kubeconfig` for the installed ServiceAccount (a TokenRequest token)
    /// and checks that account's permissions: what the webhook needs, nothing more.
    fn write_installed_kubeconfig(&self) {
        let token = self.kubectl(&[
            "create",
            "token",
            "gmsa-webhook",
            "-n",
            SYSTEM_NS,
            "--duration=1h",
        ]);
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: real\n  cluster:\n    server: {}\n    certificate-authority-data: {}\n\
             users:\n- name: sa\n  user:\n    token: {}\ncontexts:\n- name: sa\n  context:\n    cluster: real\n    user: sa\ncurrent-context: sa\n",
            self.cluster.url(),
            base64::engine::general_purpose::STANDARD.encode(self.cluster.ca_pem()),
            token.trim()
        );
        std::fs::write(&self.webhook_kubeconfig, kubeconfig).unwrap();
        for (verb, resource, expected) in [
            ("watch", "gmsacredentialspecs.windows.k8s.io", "yes"),
            ("watch", "rolebindings.rbac.authorization.k8s.io", "yes"),
            (
                "create",
                "localsubjectaccessreviews.authorization.k8s.io",
                "yes",
            ),
            ("list", "pods", "no"),
            ("get", "secrets", "no"),
            ("use", "gmsacredentialspecs.windows.k8s.io", "no"),
            // The self-signed renewal: its own Secret and configurations, by name.
            ("update", "secret/gmsa-webhook-tls", "yes"),
            ("update", "secret/other", "no"),
            ("list", "secrets", "no"),
            (
                "update",
                "mutatingwebhookconfigurations/gmsa-webhook-admission",
                "yes",
            ),
            (
                "update",
                "validatingwebhookconfigurations/gmsa-webhook-admission",
                "yes",
            ),
            ("update", "mutatingwebhookconfigurations/other", "no"),
        ] {
            let mut args = vec!["auth", "can-i", verb, resource];
            if resource.starts_with("secret") {
                args.extend(["-n", SYSTEM_NS]);
            }
            let out = self
                .cluster
                .kubectl_as(&self.webhook_kubeconfig, &args, None);
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                expected,
                "can-i {verb} {resource}"
            );
        }
    }

    fn doctor(&self, extra: &[&str]) -> (i32, Vec<Value>) {
        let mut args = vec!["doctor", "-o", "json"];
        args.extend_from_slice(extra);
        let out = self.gmsa(&args);
        let report: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "doctor printed no JSON ({e}):\n{}\n{}",
                out.stdout, out.stderr
            )
        });
        (out.code, report["findings"].as_array().unwrap().clone())
    }
}

fn gmsa_pod(name: &str, service_account: &str, spec: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {"e2e": "install"}},
        "spec": {
            "serviceAccountName": service_account,
            "nodeSelector": {"kubernetes.io/os": "windows"},
            "securityContext": {"windowsOptions": {"gmsaCredentialSpecName": spec}},
            "containers": [{"name": "iis", "image": "mcr.microsoft.com/windows/servercore/iis:windowsservercore-ltsc2019"}]
        }
    })
}

fn credspec(name: &str, account: &str, guid: &str) -> Value {
    json!({
        "apiVersion": "windows.k8s.io/v1",
        "kind": "GMSACredentialSpec",
        "metadata": {"name": name},
        "credspec": {
            "ActiveDirectoryConfig": {"GroupManagedServiceAccounts": [
                {"Name": account, "Scope": "CONTOSO"}, {"Name": account, "Scope": "contoso.com"}]},
            "CmsPlugins": ["ActiveDirectory"],
            "DomainJoinConfig": {
                "DnsName": "contoso.com", "DnsTreeName": "contoso.com", "Guid": guid,
                "MachineAccountName": account, "NetBiosName": "CONTOSO",
                "Sid": "S-1-5-21-2126449477-2524075714-3094792973"
            }
        }
    })
}

const GUID: &str = "244818ae-87ac-4fcd-92ec-e79e5252348a";

/// The webhook under test, in this process, stopped on drop.
struct Webhook {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Webhook {
    fn start(tls_dir: &Path, kubeconfig: &Path, port: u16, extra: &[String]) -> Self {
        let mut all = vec![
            "gmsa-webhook".to_string(),
            format!("--tls-cert={}", tls_dir.join("tls.crt").display()),
            format!("--tls-key={}", tls_dir.join("tls.key").display()),
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--port={port}"),
            "--bind-address=127.0.0.1".into(),
            "--cert-poll-interval=1s".into(),
            "--shutdown-grace=0s".into(),
        ];
        all.extend_from_slice(extra);
        let args = gmsa_webhook::config::Args::try_parse_from(all).unwrap();
        let (config, _) = gmsa_webhook::config::Config::from_args_and_env(args, |_| None).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let server = gmsa_webhook::Server::bind(config).await.unwrap();
                server
                    .run(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        Self {
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes the Secret's pair as the kubelet would: a new directory, then an atomic swap of
/// the files the webhook reads.
fn write_pair(dir: &Path, cert: &str, key: &str) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in [("tls.key", key), ("tls.crt", cert)] {
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
}

fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + timeout;
    loop {
        match ready() {
            Ok(()) => return,
            Err(last) if Instant::now() > deadline => {
                panic!("{what}: not after {timeout:?}: {last}")
            }
            Err(_) => thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The leaf certificate the webhook presents, PEM-free (DER bytes).
fn presented(url: &str) -> Result<Vec<u8>, String> {
    let target = kubectl_gmsa::direct::target(url)?;
    let answer = kubectl_gmsa::direct::get(&target, "/readyz")?;
    if answer.status != 200 {
        return Err(format!("/readyz answered {}", answer.status));
    }
    Ok(answer.chain.first().map(|c| c.to_vec()).unwrap_or_default())
}

fn der_of(pem: &str) -> Vec<u8> {
    gmsa_tls::pem_certificates("x", pem).unwrap()[0].to_vec()
}

#[test]
fn install_rotate_doctor_uninstall_on_kube_1_20() {
    install_rotate_doctor_uninstall(ServerVersion::V1_20);
}

#[test]
fn install_rotate_doctor_uninstall_on_current_kube() {
    install_rotate_doctor_uninstall(ServerVersion::Current);
}

fn install_rotate_doctor_uninstall(version: ServerVersion) {
    if skip_requested() {
        eprintln!("skipped: {SKIP_ENV}=1");
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cluster = RealCluster::start(version).unwrap_or_else(|e| panic!("{e}"));
    let (env, port) = Env::new(&cluster, "install-e2e");
    let step = |name: &str| eprintln!("== {name}");

    step("install --apply");
    let out = env.install(&[]);
    assert!(out.stdout.contains("customresourcedefinition.apiextensions.k8s.io/gmsacredentialspecs.windows.k8s.io created"), "{}", out.stdout);
    assert!(
        out.stdout.contains(
            "validatingwebhookconfiguration.admissionregistration.k8s.io/gmsa-webhook-admission created"
        ),
        "{}",
        out.stdout
    );
    let ns = env.json(&["get", "namespace", SYSTEM_NS]);
    assert_eq!(ns["metadata"]["labels"]["gmsa-webhook"], "disabled");
    // policy/v1 from 1.21; 1.20 has only v1beta1.
    let pdb_kind = if version.minor() >= 21 {
        "poddisruptionbudget.v1.policy"
    } else {
        "poddisruptionbudget.v1beta1.policy"
    };
    let pdb = env.json(&["get", pdb_kind, "-n", SYSTEM_NS, "gmsa-webhook"]);
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    let mutating = env.json(&[
        "get",
        "mutatingwebhookconfiguration",
        WEBHOOK_CONFIGURATION,
        "--show-managed-fields",
    ]);
    assert_eq!(
        mutating["webhooks"][0].get("matchConditions").is_some(),
        version.has(Feature::MatchConditions),
        "matchConditions exactly where the server has them: {:#}",
        mutating["webhooks"][0]
    );
    assert_eq!(managers(&mutating), ["kubectl-gmsa"]);

    step("configurations under the name earlier versions used are superseded");
    let mut old = mutating.clone();
    old["metadata"] = json!({"name": "gmsa-webhook", "labels": mutating["metadata"]["labels"]});
    env.apply(&old);
    let out = env.install(&[]);
    assert!(
        out.stdout.contains(
            "mutatingwebhookconfiguration.admissionregistration.k8s.io/gmsa-webhook deleted (superseded by gmsa-webhook-admission)"
        ),
        "{}",
        out.stdout
    );
    let left = env.kubectl(&[
        "get",
        "mutatingwebhookconfiguration",
        "gmsa-webhook",
        "--ignore-not-found",
        "-o",
        "name",
    ]);
    assert_eq!(left.trim(), "");

    step("the webhook runs as the installed service account");
    let (mut webhook, tls_dir) = env.start_installed_webhook(port);

    step("credential specs, grants, and admission through the installed configuration");
    cluster.create_service_account(NS, "web").unwrap();
    cluster.create_service_account(NS, "other").unwrap();
    env.apply(&json!({"apiVersion": "v1", "kind": "List", "items": [
        credspec("gmsa-webapp1", "WebApp1", GUID),
        credspec("gmsa-temp", "Temp", GUID),
    ]}));
    env.gmsa_ok(&[
        "grant",
        "gmsa-webapp1",
        "--service-account",
        &format!("{NS}:web"),
        "--service-account",
        &format!("{NS}:other"),
        "--apply",
    ]);
    env.gmsa_ok(&[
        "grant",
        "gmsa-temp",
        "--service-account",
        &format!("{NS}:web"),
        "--apply",
    ]);
    wait_for(
        "the API server calls the installed webhook",
        Duration::from_secs(30),
        || {
            let (code, body) = env.post_pod(&gmsa_pod("probe", "web", "gmsa-missing"));
            if code == 201 {
                env.kubectl(&["delete", "pod", "-n", NS, "probe", "--wait=false"]);
            }
            if body.contains("cred spec gmsa-missing does not exist") {
                Ok(())
            } else {
                Err(format!("{code}: {body}"))
            }
        },
    );
    let (code, body) = env.post_pod(&gmsa_pod("app-1", "web", "gmsa-webapp1"));
    assert_eq!(code, 201, "{body}");
    let stored = env.json(&["get", "pod", "-n", NS, "app-1"]);
    assert!(
        stored["spec"]["securityContext"]["windowsOptions"]["gmsaCredentialSpec"]
            .as_str()
            .is_some_and(|c| c.contains("WebApp1"))
    );
    let bad = credspec("gmsa-bad", "WebApp1", "not-a-guid");
    let (code, body) = cluster
        .request(
            "POST",
            "/apis/windows.k8s.io/v1/gmsacredentialspecs",
            Some(&bad.to_string()),
        )
        .unwrap();
    assert_eq!(
        code, 422,
        "the /validate-credspec webhook refuses a bad spec: {body}"
    );

    step("--dry-run=server changes nothing");
    let before = env.snapshot();
    let out = env.install(&["--dry-run=server"]);
    assert!(out.stdout.contains("(server dry run)"), "{}", out.stdout);
    env.install(&["--dry-run=server", "--rotate-certs"]);
    assert_eq!(env.snapshot(), before);
    env.gmsa_ok(&["uninstall", "--dry-run=server"]);
    assert_eq!(env.snapshot(), before);

    step("re-install is idempotent");
    let out = env.install(&[]);
    for line in out.stdout.lines() {
        assert!(line.ends_with(" unchanged"), "{line}\n{}", out.stdout);
    }
    assert_eq!(env.snapshot(), before, "no resourceVersion moved");

    step("rotation under load: no admission fails");
    let old_secret = env.secret();
    let stop = AtomicBool::new(false);
    let created = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    thread::scope(|s| {
        // The kubelet: copies the Secret into the webhook's files as soon as it changes.
        s.spawn(|| {
            let mut served = old_secret["tls.crt"].clone();
            while !stop.load(Ordering::Relaxed) {
                let now = env.secret();
                if now["tls.crt"] != served {
                    write_pair(&tls_dir, &now["tls.crt"], &now["tls.key"]);
                    served = now["tls.crt"].clone();
                }
                thread::sleep(Duration::from_millis(100));
            }
        });
        // Pods, one after another, for the whole rotation.
        s.spawn(|| {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let pod = gmsa_pod(&format!("load-{i}"), "web", "gmsa-webapp1");
                match env.post_pod(&pod) {
                    (201, _) => {
                        created.fetch_add(1, Ordering::Relaxed);
                    }
                    (code, body) => failures
                        .lock()
                        .unwrap()
                        .push(format!("load-{i}: {code} {body}")),
                }
            }
        });
        thread::sleep(Duration::from_secs(1));
        let out = env.install(&["--rotate-certs"]);
        assert!(out.stderr.contains("issuing a new CA"), "{}", out.stderr);
        let new_cert = der_of(&env.secret()["tls.crt"]);
        wait_for(
            "the webhook serves the new certificate",
            Duration::from_secs(30),
            || match presented(&env.url) {
                Ok(der) if der == new_cert => Ok(()),
                Ok(_) => Err("still the old certificate".into()),
                Err(e) => Err(e),
            },
        );
        thread::sleep(Duration::from_secs(2));
        stop.store(true, Ordering::Relaxed);
    });
    let failures = failures.into_inner().unwrap();
    let created = created.into_inner();
    eprintln!("   {created} pods admitted during the rotation");
    assert!(
        failures.is_empty(),
        "{} failed admissions:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(created > 10, "only {created} pods were created");
    let new_secret = env.secret();
    assert_ne!(new_secret["ca.crt"], old_secret["ca.crt"]);
    let bundle = env.ca_bundle();
    assert!(
        bundle.contains(new_secret["ca.crt"].trim())
            && bundle.contains(old_secret["ca.crt"].trim()),
        "both CAs trusted while rotating"
    );
    let out = env.install(&[]);
    assert!(
        out.stdout.lines().all(|l| l.ends_with(" unchanged")),
        "re-install during the grace period keeps both CAs:\n{}",
        out.stdout
    );
    env.kubectl(&[
        "delete",
        "pods",
        "-n",
        NS,
        "-l",
        "e2e=install",
        "--field-selector",
        "metadata.name!=app-1",
        "--wait=false",
    ]);

    step("doctor: healthy");
    let (code, findings) = env.doctor(&[]);
    let problems: Vec<&Value> = findings.iter().filter(|f| f["status"] != "pass").collect();
    assert!(
        problems.is_empty() && code == 0,
        "exit {code}: {problems:#?}"
    );
    expect(&findings, "crd", CRD, "pass", "v1alpha1");
    expect(&findings, "certificate", "127.0.0.1", "pass", "verifies");
    expect(
        &findings,
        "webhook-ready",
        &env.url,
        "pass",
        env!("CARGO_PKG_VERSION"),
    );
    expect(
        &findings,
        "pod",
        &format!("{NS}/app-1"),
        "pass",
        "gmsa-webapp1",
    );

    step("doctor: missing grant, missing spec, mismatched contents, shared host name");
    let (code, body) = env.post_pod(&gmsa_pod("app-temp", "web", "gmsa-temp"));
    assert_eq!(code, 201, "{body}");
    let (code, body) = env.post_pod(&gmsa_pod("app-other", "other", "gmsa-webapp1"));
    assert_eq!(code, 201, "{body}");
    let mut shared = gmsa_pod("shared-a", "web", "gmsa-webapp1");
    shared["spec"]["hostname"] = json!("iis-frontend-00a");
    assert_eq!(env.post_pod(&shared).0, 201);
    shared["metadata"]["name"] = json!("shared-b");
    shared["spec"]["hostname"] = json!("iis-frontend-00b");
    assert_eq!(env.post_pod(&shared).0, 201);
    env.kubectl(&["delete", "gmsacredentialspec", "gmsa-temp"]);
    env.kubectl(&[
        "delete",
        "rolebinding",
        "-n",
        NS,
        "allow-other-use-gmsa-webapp1",
    ]);
    env.apply(&credspec(
        "gmsa-webapp1",
        "WebApp1",
        "11111111-2222-3333-4444-555555555555",
    ));
    let (code, findings) = env.doctor(&["-n", NS]);
    assert_eq!(code, 1, "a failed check exits 1");
    expect(
        &findings,
        "pod-spec-exists",
        &format!("{NS}/app-temp"),
        "fail",
        "gmsa-temp, which does not exist",
    );
    expect(
        &findings,
        "pod-grant",
        &format!("{NS}/app-other"),
        "fail",
        &format!("{NS}/other may not use gmsa-webapp1"),
    );
    expect(
        &findings,
        "pod-contents",
        &format!("{NS}/app-1"),
        "fail",
        "differ from gmsa-webapp1",
    );
    expect(
        &findings,
        "pod-hostname",
        &format!("{NS}/shared-a"),
        "warn",
        "IIS-FRONTEND-00",
    );
    let one = env.gmsa(&["doctor", "-n", NS, "--pod", "app-other", "--node-steps"]);
    assert_eq!(one.code, 1, "{}", one.stdout);
    assert!(
        one.stdout.contains(&format!(
            "kubectl gmsa grant gmsa-webapp1 --service-account {NS}:other --apply"
        )),
        "{}",
        one.stdout
    );
    assert!(
        one.stdout.contains(&format!(
            "kubectl exec -n {NS} app-other -c iis -- nltest.exe /sc_reset:contoso.com"
        )),
        "{}",
        one.stdout
    );
    assert!(!one.stdout.contains("app-temp"), "--pod checks one pod");

    step("doctor: expired certificate");
    let ca = gmsa_tls::CertificateAuthority::generate(
        "expired test CA",
        gmsa_tls::Validity::starting_now(time::Duration::days(30)),
    )
    .unwrap();
    let now = time::OffsetDateTime::now_utc();
    let expired = gmsa_tls::issue_serving_cert(
        &ca,
        &["127.0.0.1"],
        gmsa_tls::Validity {
            not_before: now - time::Duration::days(10),
            not_after: now - time::Duration::days(1),
        },
    )
    .unwrap();
    write_pair(&tls_dir, &expired.cert_pem, &expired.key_pem);
    let expired_der = der_of(&expired.cert_pem);
    wait_for(
        "the webhook serves the expired certificate",
        Duration::from_secs(30),
        || match presented(&env.url) {
            Ok(der) if der == expired_der => Ok(()),
            Ok(_) => Err("not yet".into()),
            Err(e) => Err(e),
        },
    );
    let (code, findings) = env.doctor(&["-n", "default"]);
    assert_eq!(code, 1);
    expect(
        &findings,
        "certificate-expiry",
        "127.0.0.1",
        "fail",
        "expired on",
    );
    expect(
        &findings,
        "certificate",
        "127.0.0.1",
        "fail",
        "does not verify",
    );
    let current = env.secret();
    write_pair(&tls_dir, &current["tls.crt"], &current["tls.key"]);

    step("doctor: webhook down");
    webhook.stop();
    let (code, findings) = env.doctor(&["-n", "default"]);
    assert_eq!(code, 1);
    expect(
        &findings,
        "webhook-ready",
        &env.url,
        "fail",
        "does not answer /readyz",
    );

    step("uninstall keeps the CRD and the credential specs");
    let out = env.gmsa_ok(&["uninstall"]);
    assert!(
        out.stdout.contains(
            "mutatingwebhookconfiguration.admissionregistration.k8s.io/gmsa-webhook-admission deleted"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("kept customresourcedefinition"),
        "{}",
        out.stderr
    );
    for (kind, namespace, name) in [
        ("mutatingwebhookconfiguration", None, WEBHOOK_CONFIGURATION),
        (
            "validatingwebhookconfiguration",
            None,
            WEBHOOK_CONFIGURATION,
        ),
        ("deployment", Some(SYSTEM_NS), "gmsa-webhook"),
        ("secret", Some(SYSTEM_NS), SECRET),
        ("clusterrole", None, "gmsa-webhook"),
        ("serviceaccount", Some(SYSTEM_NS), "gmsa-webhook"),
    ] {
        let mut args = vec!["get", kind, name, "--ignore-not-found", "-o", "name"];
        if let Some(ns) = namespace {
            args.extend(["-n", ns]);
        }
        assert_eq!(env.kubectl(&args).trim(), "", "{kind} {name} is gone");
    }
    assert_eq!(
        env.kubectl(&["get", "crd", CRD, "-o", "name"]).trim(),
        format!("customresourcedefinition.apiextensions.k8s.io/{CRD}")
    );
    assert_eq!(
        env.kubectl(&["get", "gmsacredentialspec", "gmsa-webapp1", "-o", "name"])
            .trim(),
        "gmsacredentialspec.windows.k8s.io/gmsa-webapp1"
    );
    // The pods above still name specs: uninstall names them, and leaves the guard where the
    // server can hold one.
    assert!(
        out.stderr
            .contains(&format!("  pod/app-1 in {NS}: gmsa-webapp1")),
        "{}",
        out.stderr
    );
    let (code, body) = env.post_pod(&gmsa_pod("after-uninstall", "web", "gmsa-webapp1"));
    // ValidatingAdmissionPolicy v1 is served from 1.30.
    if version.minor() >= 30 {
        assert_eq!(code, 403, "the guard refuses GMSA pods: {body}");
        assert!(
            body.contains(
                "GMSA admission is not installed (kubectl gmsa uninstall left this guard)"
            ),
            "{body}"
        );
    } else {
        assert!(
            out.stderr
                .contains("so no guard can be left on this version"),
            "{}",
            out.stderr
        );
        assert_eq!(code, 201, "pods are created without the webhook: {body}");
    }
}

#[test]
fn server_dry_run_on_a_fresh_cluster_on_kube_1_20() {
    server_dry_run_on_a_fresh_cluster(ServerVersion::V1_20);
}

#[test]
fn server_dry_run_on_a_fresh_cluster_on_current_kube() {
    server_dry_run_on_a_fresh_cluster(ServerVersion::Current);
}

/// README's second install command on a cluster that has never seen us: the namespace is only
/// pretended into existence, so what lives in it cannot be checked. The dry run says so,
/// succeeds, and leaves nothing behind.
fn server_dry_run_on_a_fresh_cluster(version: ServerVersion) {
    if skip_requested() {
        eprintln!("skipped: {SKIP_ENV}=1");
        return;
    }
    let cluster = RealCluster::start(version).unwrap_or_else(|e| panic!("{e}"));
    let (env, _) = Env::new(&cluster, "fresh-dry-run");
    let mut modes = vec![vec!["install", "--apply", "--dry-run=server"]];
    if version.minor() >= 36 {
        modes.push(vec![
            "install",
            "--admission",
            "policies",
            "--apply",
            "--dry-run=server",
        ]);
    }
    for args in modes {
        let out = env.gmsa_ok(&args);
        let said = format!(
            "{}\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            out.stdout,
            out.stderr
        );
        assert!(
            out.stdout.contains(&format!(
                "customresourcedefinition.apiextensions.k8s.io/{CRD} created (server dry run)"
            )),
            "{said}"
        );
        assert!(
            out.stdout
                .contains(&format!("namespace/{SYSTEM_NS} created (server dry run)")),
            "{said}"
        );
        let line = format!(
            "serviceaccount/gmsa-webhook not checked (server dry run: namespace {SYSTEM_NS} does not exist yet)"
        );
        assert!(out.stdout.lines().any(|l| l == line), "{said}");
        let unchecked = out
            .stdout
            .lines()
            .filter(|l| l.contains(" not checked "))
            .count();
        assert!(
            out.stderr.contains(&format!(
                "namespace {SYSTEM_NS} does not exist yet, so the server did not check the {unchecked} object(s) in it: serviceaccount/gmsa-webhook"
            )),
            "{said}"
        );
        // Only what lives in the namespace goes unchecked.
        for line in out.stdout.lines() {
            assert!(
                line.ends_with(" created (server dry run)")
                    || line.ends_with(&format!(
                        " not checked (server dry run: namespace {SYSTEM_NS} does not exist yet)"
                    )),
                "{line}\n{said}"
            );
        }
    }
    let kinds = if version.minor() >= 36 {
        "crd,namespace,clusterrole,clusterrolebinding,mutatingwebhookconfiguration,\
         validatingwebhookconfiguration,validatingadmissionpolicy,validatingadmissionpolicybinding,\
         mutatingadmissionpolicy,mutatingadmissionpolicybinding"
    } else {
        "crd,namespace,clusterrole,clusterrolebinding,mutatingwebhookconfiguration,\
         validatingwebhookconfiguration"
    };
    let ours = env.kubectl(&[
        "get",
        kinds,
        "-l",
        &format!(
            "{}={}",
            gmsa_deploy::names::LABEL_NAME,
            gmsa_deploy::names::APP_NAME
        ),
        "-o",
        "name",
    ]);
    assert_eq!(ours.trim(), "", "the dry run left objects behind");
    for (kind, name) in [
        ("crd", CRD),
        ("namespace", SYSTEM_NS),
        ("clusterrole", "gmsa-webhook"),
        ("mutatingwebhookconfiguration", WEBHOOK_CONFIGURATION),
    ] {
        let found = env.kubectl(&["get", kind, name, "--ignore-not-found", "-o", "name"]);
        assert_eq!(found.trim(), "", "{kind} {name} exists after a dry run");
    }
}

/// Namespace and object name of the reference install, as its deploy script defaults them.
const REFERENCE: &str = "gmsa-webhook";
const REFERENCE_WEBHOOK: &str = "admission-webhook.windows-gmsa.sigs.k8s.io";

/// A cluster prepared the way the reference's documentation does it, every object applied
/// client-side (`kubectl apply -f`): its CRD, a credential spec and a grant, and its webhook
/// (namespace, RBAC, Secret, Deployment, Service, both webhook configurations). No kubelet
/// runs, so the reference's Service has no endpoints: like a reference webhook that is down.
fn reference_install(env: &Env) {
    let crd_version = |name: &str, storage: bool| {
        json!({"name": name, "served": true, "storage": storage, "schema": {"openAPIV3Schema": {
            "type": "object",
            "properties": {"credspec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
        }}})
    };
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD, "annotations": {"api-approved.kubernetes.io": "https://github.com/kubernetes/enhancements/pull/1158"}},
        "spec": {
            "group": "windows.k8s.io",
            "scope": "Cluster",
            "names": {"plural": "gmsacredentialspecs", "singular": "gmsacredentialspec", "kind": "GMSACredentialSpec"},
            "versions": [crd_version("v1alpha1", false), crd_version("v1", true)]
        }
    });
    env.cluster
        .apply_crd(&crd.to_string())
        .unwrap_or_else(|e| panic!("{e}"));
    env.cluster.create_service_account(NS, "web").unwrap();
    env.apply(&credspec("gmsa-webapp1", "WebApp1", GUID));
    env.gmsa_ok(&[
        "grant",
        "gmsa-webapp1",
        "--service-account",
        &format!("{NS}:web"),
        "--apply",
    ]);

    let ca = gmsa_tls::CertificateAuthority::generate(
        "reference test CA",
        gmsa_tls::Validity::starting_now(time::Duration::days(30)),
    )
    .unwrap();
    let bundle = base64::engine::general_purpose::STANDARD.encode(ca.cert_pem());
    let labels = json!({"app": REFERENCE});
    let webhook = |path: &str, operations: &[&str]| {
        json!([{
            "name": REFERENCE_WEBHOOK,
            "clientConfig": {"service": {"name": REFERENCE, "namespace": REFERENCE, "path": path}, "caBundle": bundle},
            "rules": [{"operations": operations, "apiGroups": [""], "apiVersions": ["*"], "resources": ["pods"]}],
            "failurePolicy": "Fail",
            "admissionReviewVersions": ["v1", "v1beta1"],
            "sideEffects": "None",
            "namespaceSelector": {"matchExpressions": [{"key": "gmsa-webhook", "operator": "NotIn", "values": ["disabled"]}]}
        }])
    };
    env.apply(&json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": REFERENCE, "labels": {"gmsa-webhook": "disabled"}}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": REFERENCE, "namespace": REFERENCE}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "gmsa-webhook-rbac-role"},
         "rules": [{"apiGroups": ["windows.k8s.io"], "resources": ["gmsacredentialspecs"], "verbs": ["get"]}]},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": REFERENCE, "namespace": REFERENCE},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
             "metadata": {"labels": labels},
             "spec": {"serviceAccountName": REFERENCE, "containers": [{"name": REFERENCE, "image": "sigwindowstools/k8s-gmsa-webhook:v0.13.0"}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": REFERENCE, "namespace": REFERENCE},
         "spec": {"ports": [{"port": 443, "targetPort": 443}], "selector": labels}},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
         "metadata": {"name": REFERENCE}, "webhooks": webhook("/validate", &["CREATE", "UPDATE"])},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
         "metadata": {"name": REFERENCE}, "webhooks": webhook("/mutate", &["CREATE"])}
    ]}));
}

/// uid and resourceVersion of every credential spec.
fn specs(env: &Env) -> Vec<(String, String, String)> {
    env.json(&["get", "gmsacredentialspecs"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let m = &s["metadata"];
            let text = |k: &str| m[k].as_str().unwrap().to_string();
            (text("name"), text("uid"), text("resourceVersion"))
        })
        .collect()
}

fn managers(object: &Value) -> Vec<String> {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["manager"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn migration_from_a_reference_install_on_kube_1_20() {
    migration_from_a_reference_install(ServerVersion::V1_20);
}

#[test]
fn migration_from_a_reference_install_on_current_kube() {
    migration_from_a_reference_install(ServerVersion::Current);
}

/// From a reference install to ours, as a new user switches: install without
/// `--force-conflicts`, the credential specs untouched, the reference named and then retired.
fn migration_from_a_reference_install(version: ServerVersion) {
    if skip_requested() {
        eprintln!("skipped: {SKIP_ENV}=1");
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cluster = RealCluster::start(version).unwrap_or_else(|e| panic!("{e}"));
    let (env, port) = Env::new(&cluster, "migration-e2e");
    let step = |name: &str| eprintln!("== {name}");

    step("the reference install, as its documentation makes it");
    reference_install(&env);
    let before = specs(&env);
    let crd = env.json(&["get", "crd", CRD, "--show-managed-fields"]);
    // kube-apiserver manages the status.
    assert!(
        managers(&crd).contains(&"kubectl-client-side-apply".to_string())
            && !managers(&crd).contains(&"kubectl-gmsa".to_string()),
        "{:?}",
        managers(&crd)
    );
    let (code, body) = env.post_pod(&gmsa_pod("while-reference", "web", "gmsa-webapp1"));
    assert_eq!(
        code, 500,
        "the reference is down, so GMSA pods are refused: {body}"
    );
    assert!(body.contains(REFERENCE_WEBHOOK), "{body}");

    step("an install that would fail part-way changes nothing");
    let everything = |env: &Env| {
        let mut all = env.snapshot();
        all.retain(|k, _| !k.starts_with("Secret/") || k.contains("gmsa"));
        all
    };
    let untouched = everything(&env);
    let out = env.gmsa(&[
        "install",
        "--apply",
        "--webhook-url",
        &env.url,
        "--certs",
        "cert-manager",
    ]);
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("nothing was changed"), "{}", out.stderr);
    assert!(
        out.stderr.contains("cert-manager is not installed"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout, "", "no object was applied");
    assert_eq!(everything(&env), untouched);

    step("install --apply takes over the CRD and names what is left of the reference");
    let out = env.install(&[]);
    assert!(
        out.stdout.contains(&format!(
            "customresourcedefinition.apiextensions.k8s.io/{CRD} configured"
        )),
        "{}",
        out.stdout
    );
    for expected in [
        "The reference GMSA webhook (kubernetes-sigs/windows-gmsa) is still installed",
        "mutatingwebhookconfiguration.admissionregistration.k8s.io/gmsa-webhook",
        "validatingwebhookconfiguration.admissionregistration.k8s.io/gmsa-webhook",
        "deployment.apps/gmsa-webhook in namespace gmsa-webhook",
        "service/gmsa-webhook in namespace gmsa-webhook",
        "--retire-reference",
    ] {
        assert!(
            out.stderr.contains(expected),
            "{expected:?} missing from:\n{}",
            out.stderr
        );
    }
    assert_eq!(specs(&env), before, "credential specs untouched");
    let crd = env.json(&["get", "crd", CRD, "--show-managed-fields"]);
    assert!(
        managers(&crd).contains(&"kubectl-gmsa".to_string()),
        "{:?}",
        managers(&crd)
    );
    let served: Vec<&str> = crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(served, ["v1", "v1alpha1"]);
    let reference = env.json(&["get", "mutatingwebhookconfiguration", REFERENCE]);
    let hooks: Vec<&str> = reference["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["name"].as_str())
        .collect();
    assert_eq!(
        hooks,
        [REFERENCE_WEBHOOK],
        "ours are not merged into the reference's"
    );
    let ours = env.json(&["get", "mutatingwebhookconfiguration", WEBHOOK_CONFIGURATION]);
    assert_eq!(
        ours["webhooks"][0]["name"],
        "pod-mutation.gmsa.windows.k8s.io"
    );

    step("doctor warns while the reference is registered");
    let (mut webhook, _tls) = env.start_installed_webhook(port);
    let (code, findings) = env.doctor(&["-n", NS]);
    assert_eq!(code, 0, "a warning alone exits 0: {findings:#?}");
    expect(
        &findings,
        "reference-webhook",
        "mutatingwebhookconfiguration.admissionregistration.k8s.io/gmsa-webhook",
        "warn",
        "sends every pod to it as well",
    );

    step("--retire-reference removes it; pods get the contents from ours alone");
    let out = env.install(&["--retire-reference"]);
    for expected in [
        "mutatingwebhookconfiguration.admissionregistration.k8s.io/gmsa-webhook deleted",
        "validatingwebhookconfiguration.admissionregistration.k8s.io/gmsa-webhook deleted",
        "deployment.apps/gmsa-webhook deleted",
        "service/gmsa-webhook deleted",
    ] {
        assert!(
            out.stdout.contains(expected),
            "{expected:?} missing from:\n{}",
            out.stdout
        );
    }
    for line in out.stdout.lines().filter(|l| !l.ends_with(" deleted")) {
        assert!(line.ends_with(" unchanged"), "{line}");
    }
    wait_for(
        "pods are admitted by our webhook alone",
        Duration::from_secs(30),
        || match env.post_pod(&gmsa_pod("after-retire", "web", "gmsa-webapp1")) {
            (201, _) => Ok(()),
            (code, body) => Err(format!("{code}: {body}")),
        },
    );
    let stored = env.json(&["get", "pod", "-n", NS, "after-retire"]);
    assert!(
        stored["spec"]["securityContext"]["windowsOptions"]["gmsaCredentialSpec"]
            .as_str()
            .is_some_and(|c| c.contains("WebApp1")),
        "{stored}"
    );
    assert_eq!(specs(&env), before, "credential specs untouched");
    let (_, findings) = env.doctor(&["-n", NS]);
    assert!(find(
        &findings,
        "reference-webhook",
        "mutatingwebhookconfiguration.admissionregistration.k8s.io/gmsa-webhook"
    )
    .is_none());
    let out = env.install(&["--retire-reference"]);
    assert!(
        out.stderr.contains("no reference webhook is registered"),
        "{}",
        out.stderr
    );
    webhook.stop();
}

/// Self-signed mode renews itself: two replicas of the installed webhook, each with its own
/// Secret volume refreshed on its own kubelet clock, behind one address, take a staged pair
/// through trust and promotion, then renew certificates that last 40 s (a renewal starts when
/// 20 s are left) twice, while pods are created without pause and a checker handshakes with
/// every replica against the stored caBundle: not one admission or handshake may fail, and
/// every renewal ends with the replaced CA dropped.
#[test]
fn self_signed_certificates_renew_in_the_cluster_without_a_failed_admission() {
    use gmsa_testkit::secret_volume::SecretVolume;
    use gmsa_tls::self_signed::{pem_blocks, Pair, Policy};

    if skip_requested() {
        eprintln!("skipped: {SKIP_ENV}=1");
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cluster = RealCluster::start(ServerVersion::Current).unwrap_or_else(|e| panic!("{e}"));
    let (env, port) = Env::new(&cluster, "renewal-e2e");
    env.install(&[]);
    let installed = env.secret();
    let installed_pair = Pair {
        ca_pem: installed["ca.crt"].clone(),
        cert_pem: installed["tls.crt"].clone(),
        key_pem: installed["tls.key"].clone(),
    };
    let names = installed_pair.names();
    assert!(names.contains(&"127.0.0.1".to_string()), "{names:?}");

    // Two replicas as the installed ServiceAccount, renewing with 40 s certificates.
    env.write_installed_kubeconfig();
    let renewal_args: Vec<String> = [
        "--renew-certs-secret=gmsa-webhook-tls",
        "--renew-webhook-configuration=gmsa-webhook-admission",
        "--namespace=gmsa-system",
        "--renew-before=20s",
        "--renewed-cert-lifetime=40s",
        "--previous-ca-grace=10s",
        "--renew-check-interval=1s",
    ]
    .map(String::from)
    .to_vec();
    // Each replica's kubelet delivers Secret updates on its own clock.
    let lags = [Duration::from_millis(200), Duration::from_secs(3)];
    let mut replicas = Vec::new();
    let mut volumes = Vec::new();
    for i in 0..lags.len() {
        let dir = env.dir.join(format!("replica-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        volumes.push(Mutex::new(
            SecretVolume::create(&dir, &installed_pair.cert_pem, &installed_pair.key_pem).unwrap(),
        ));
        let replica_port = free_port().unwrap();
        let webhook = Webhook::start(&dir, &env.webhook_kubeconfig, replica_port, &renewal_args);
        let url = format!("https://127.0.0.1:{replica_port}");
        wait_for("replica /readyz", Duration::from_secs(30), || {
            presented(&url).map(drop)
        });
        replicas.push((webhook, url, replica_port));
    }
    // The Service: each new connection goes to the next replica.
    let backends: Vec<u16> = replicas.iter().map(|r| r.2).collect();
    let proxy = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    proxy.set_nonblocking(true).unwrap();
    let proxy_stop = std::sync::Arc::new(AtomicBool::new(false));
    let proxy_thread = {
        let stop = proxy_stop.clone();
        thread::spawn(move || {
            let mut next = 0;
            while !stop.load(Ordering::Relaxed) {
                match proxy.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let backend = backends[next % backends.len()];
                        next += 1;
                        thread::spawn(move || splice(client, backend));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
        })
    };
    cluster.create_service_account(NS, "web").unwrap();
    env.apply(&credspec("gmsa-webapp1", "WebApp1", GUID));
    env.gmsa_ok(&[
        "grant",
        "gmsa-webapp1",
        "--service-account",
        &format!("{NS}:web"),
        "--apply",
    ]);

    let stop = AtomicBool::new(false);
    let created = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    // What the Secret served, in order, and how many times the bundles went back to one CA.
    let served = Mutex::new(vec![installed_pair.cert_pem.clone()]);
    let mut trimmed = 0;
    let end_state = Mutex::new(None);
    let deadline = Instant::now() + Duration::from_secs(180);
    thread::scope(|s| {
        for (volume, lag) in volumes.iter().zip(lags) {
            let (env, stop, first) = (&env, &stop, &installed_pair.cert_pem);
            s.spawn(move || {
                let mut current = first.clone();
                while !stop.load(Ordering::Relaxed) {
                    thread::sleep(lag);
                    let secret = env.secret();
                    if secret["tls.crt"] != current {
                        volume
                            .lock()
                            .unwrap()
                            .rotate(&secret["tls.crt"], &secret["tls.key"])
                            .unwrap();
                        current = secret["tls.crt"].clone();
                    }
                }
            });
        }
        // The API server may open a new connection to any replica at any moment (its
        // connections are reused, so the pods alone would rarely show it): every replica's
        // certificate must verify against the caBundle stored at that moment.
        s.spawn(|| {
            let bundle = || {
                let path = format!("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{WEBHOOK_CONFIGURATION}");
                let (_, body) = cluster.request("GET", &path, None).unwrap();
                let config: Value = serde_json::from_str(&body).unwrap();
                let b64 = config["webhooks"][0]["clientConfig"]["caBundle"].as_str().unwrap_or("").to_string();
                String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap()
            };
            while !stop.load(Ordering::Relaxed) {
                for (_, url, _) in &replicas {
                    let before = bundle();
                    let Ok(target) = kubectl_gmsa::direct::target(url) else { continue };
                    let Ok(answer) = kubectl_gmsa::direct::get(&target, "/health") else { continue };
                    let after = bundle();
                    let now = time::OffsetDateTime::now_utc();
                    let trusted = [&before, &after].iter().any(|b| {
                        gmsa_tls::verify_serving_chain(b, &answer.chain, "127.0.0.1", now).is_ok()
                    });
                    if !trusted {
                        failures.lock().unwrap().push(format!("{url} serves a certificate the caBundle does not trust"));
                    }
                }
                thread::sleep(Duration::from_millis(100));
            }
        });
        // Pods, one after another, for the whole run.
        s.spawn(|| {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let pod = gmsa_pod(&format!("renewal-{i}"), "web", "gmsa-webapp1");
                match env.post_pod(&pod) {
                    (201, _) => {
                        created.fetch_add(1, Ordering::Relaxed);
                    }
                    (code, body) => failures
                        .lock()
                        .unwrap()
                        .push(format!("renewal-{i}: {code} {body}")),
                }
                thread::sleep(Duration::from_millis(50));
            }
        });
        // A staged pair that lasts 35 s, as if a replica had staged it: the replicas trust and
        // promote it, and renew it 15 s later.
        let staged = Pair::issue(
            &names,
            &Policy {
                cert_lifetime: time::Duration::seconds(35),
                ca_lifetime: time::Duration::seconds(400),
                ..Policy::default()
            },
        )
        .unwrap();
        let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
        let patch = json!({"data": {
            "next-ca.crt": b64(&staged.ca_pem),
            "next-tls.crt": b64(&staged.cert_pem),
            "next-tls.key": b64(&staged.key_pem),
        }});
        env.kubectl(&[
            "patch",
            "secret",
            "-n",
            SYSTEM_NS,
            SECRET,
            "--type=merge",
            "-p",
            &patch.to_string(),
        ]);
        // The observer: the staged pair's promotion and two renewals, each ending with the old
        // CA dropped from the bundles.
        let mut last_bundle_len = 1;
        while Instant::now() < deadline && trimmed < 3 {
            let secret = env.secret();
            let bundle_len = pem_blocks(&env.ca_bundle()).len();
            {
                let mut served = served.lock().unwrap();
                if served.last() != Some(&secret["tls.crt"]) {
                    served.push(secret["tls.crt"].clone());
                }
            }
            if bundle_len == 1 && last_bundle_len > 1 {
                trimmed += 1;
            }
            last_bundle_len = bundle_len;
            thread::sleep(Duration::from_millis(300));
        }
        // The end state, between two renewals (the replicas go on renewing): one CA in
        // every caBundle of both configurations, nothing staged or previous.
        wait_for("the renewal's end state", Duration::from_secs(30), || {
            let secret = env.secret();
            let mut bundles = vec![env.ca_bundle()];
            let validating = env.json(&[
                "get",
                "validatingwebhookconfiguration",
                WEBHOOK_CONFIGURATION,
            ]);
            for hook in validating["webhooks"].as_array().unwrap() {
                let b64 = hook["clientConfig"]["caBundle"].as_str().unwrap();
                let pem = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap();
                bundles.push(String::from_utf8(pem).unwrap());
            }
            let clean = !secret.contains_key("next-tls.crt")
                && !secret.contains_key("previous-ca.crt")
                && bundles
                    .iter()
                    .all(|b| pem_blocks(b) == pem_blocks(&secret["ca.crt"]));
            if clean && env.secret() == secret {
                *end_state.lock().unwrap() = Some(secret);
                Ok(())
            } else {
                Err(format!("keys {:?}", secret.keys()))
            }
        });
        stop.store(true, Ordering::Relaxed);
    });
    // Stop renewing before install takes over below.
    drop(volumes);
    drop(replicas);
    let served = served.into_inner().unwrap();
    let failures = failures.into_inner().unwrap();
    let created = created.into_inner();
    eprintln!(
        "   {created} pods admitted across {} certificates",
        served.len()
    );
    assert!(
        failures.is_empty(),
        "{} failed admissions or handshakes:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        trimmed >= 3 && served.len() >= 4,
        "a promotion and two renewals, each ending with one CA trusted: saw {trimmed} trims, {} certificates",
        served.len()
    );
    assert!(created > 50, "only {created} pods were created");

    let secret = end_state.into_inner().unwrap().unwrap();
    let renewed = Pair {
        ca_pem: secret["ca.crt"].clone(),
        cert_pem: secret["tls.crt"].clone(),
        key_pem: secret["tls.key"].clone(),
    };
    assert_eq!(renewed.names(), names, "renewals keep the names");
    let chain = gmsa_tls::pem_certificates("tls.crt", &renewed.cert_pem).unwrap();
    let validity = gmsa_tls::certificate_validity(&chain[0]).unwrap();
    let lifetime = validity.not_after - validity.not_before - gmsa_tls::NOT_BEFORE_BACKDATE;
    assert!(
        (lifetime - time::Duration::seconds(40)).abs() <= time::Duration::seconds(1),
        "{lifetime}"
    );

    // Install after the replicas renewed (their updates own the Secret's and the caBundles'
    // certificate fields now) takes those fields over without --force-conflicts. The pair
    // expires within install's 30 days, so it is replaced at once, the replaced CA trusted.
    let out = env.install(&[]);
    assert!(out.stderr.contains("issuing a new CA"), "{}", out.stderr);
    let reinstalled = env.secret();
    assert_ne!(reinstalled["tls.crt"], renewed.cert_pem);
    assert!(!reinstalled.contains_key("next-tls.crt"));
    let bundle = pem_blocks(&env.ca_bundle());
    assert!(
        bundle.contains(&pem_blocks(&reinstalled["ca.crt"])[0])
            && bundle.contains(&pem_blocks(&renewed.ca_pem)[0]),
        "the new and the replaced CA are both trusted"
    );
    let out = env.install(&[]);
    assert!(
        out.stderr.contains("keeping the Secret's"),
        "{}",
        out.stderr
    );
    let out = env.install(&["--rotate-certs"]);
    assert!(out.stderr.contains("issuing a new CA"), "{}", out.stderr);
    assert_ne!(env.secret()["tls.crt"], reinstalled["tls.crt"]);
    proxy_stop.store(true, Ordering::Relaxed);
    let _ = proxy_thread.join();
}

/// Copies bytes both ways between a client and the replica on `port` until either side closes.
fn splice(client: std::net::TcpStream, port: u16) {
    let Ok(upstream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    let (mut client_read, mut upstream_write) =
        (client.try_clone().unwrap(), upstream.try_clone().unwrap());
    let forward = thread::spawn(move || {
        let _ = std::io::copy(&mut client_read, &mut upstream_write);
        let _ = upstream_write.shutdown(std::net::Shutdown::Write);
    });
    let (mut upstream_read, mut client_write) = (upstream, client);
    let _ = std::io::copy(&mut upstream_read, &mut client_write);
    let _ = client_write.shutdown(std::net::Shutdown::Write);
    let _ = forward.join();
}
