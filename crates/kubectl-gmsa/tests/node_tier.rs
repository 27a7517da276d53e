//! The shipped product inside a real single-node cluster: our image run by a kubelet from
//! `kubectl gmsa install --apply`, probed, mounted, rolled, evicted and restarted, with pods
//! created by controllers and by a load that counts every admission.
//!
//! One cluster, one sequence (start-up costs about 15 s): install and what a user sees;
//! upgrades under load (rollout restart, a new image tag); the PodDisruptionBudget; a
//! whole-cluster restart. The counts and timings are printed for the closing notes.
//!
//! Needs root, `hack/build-kube-node.sh`, `hack/build-image.sh` (GMSA_IMAGE_ARCHIVE) and the
//! current kube-apiserver; `hack/test.sh` provides all of them. Skips, saying why, where the
//! host cannot run a node (not root, no bridges); `GMSA_SKIP_NODE_TIER=1` skips it too.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use gmsa_testkit::real_cluster::https_request;
use gmsa_testkit::real_node::{
    image_archive, unsupported_reason, NodeCluster, PodLoad, Tally, BUSYBOX_IMAGE, NODE_NAME,
};
use serde_json::{json, Value};

const SYSTEM_NS: &str = "gmsa-system";
const NS: &str = "gmsa-node-e2e";
const DEPLOYMENT: &str = "gmsa-webhook";
const SPEC: &str = "webapp1";
/// A value only the credential spec's contents hold: a pod carrying it got them inlined.
const MARKER: &str = "WebApp1";
/// The image install renders by default, as containerd stores it.
const IMAGE: &str = concat!("docker.io/library/gmsa-webhook:", env!("CARGO_PKG_VERSION"));

fn skip_reason() -> Option<String> {
    if std::env::var("GMSA_SKIP_NODE_TIER").is_ok_and(|v| v == "1") {
        return Some("GMSA_SKIP_NODE_TIER=1".into());
    }
    unsupported_reason()
}

struct Env<'a> {
    node: &'a NodeCluster,
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Env<'_> {
    fn gmsa(&self, args: &[&str]) -> Out {
        let out = Command::new(env!("CARGO_BIN_EXE_kubectl-gmsa"))
            .args(args)
            .env("KUBECONFIG", self.node.api().admin_kubeconfig())
            .output()
            .unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn gmsa_ok(&self, args: &[&str]) -> Out {
        let out = self.gmsa(args);
        assert_eq!(
            out.code,
            0,
            "kubectl-gmsa {}\nstdout:\n{}\nstderr:\n{}\n{}",
            args.join(" "),
            out.stdout,
            out.stderr,
            self.pods_report()
        );
        out
    }

    fn kubectl(&self, args: &[&str]) -> String {
        self.node
            .api()
            .kubectl_ok(args, None)
            .unwrap_or_else(|e| panic!("{e}\n{}", self.pods_report()))
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl(&all)).unwrap()
    }

    fn apply(&self, manifest: &Value) {
        self.node
            .api()
            .apply(&manifest.to_string())
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// The webhook's pods and their states, for failure messages.
    fn pods_report(&self) -> String {
        let out = self
            .node
            .api()
            .kubectl(&["get", "pods", "-A", "-o", "wide", "--show-labels"], None);
        let events = self.node.api().kubectl(
            &["get", "events", "-n", SYSTEM_NS, "--sort-by=.lastTimestamp"],
            None,
        );
        format!(
            "{}\n{}\n--- kubelet ---\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&events.stdout),
            self.node.log_tail("kubelet", 15)
        )
    }

    fn rollout_status(&self) {
        self.kubectl(&[
            "rollout",
            "status",
            "-n",
            SYSTEM_NS,
            &format!("deployment/{DEPLOYMENT}"),
            "--timeout=180s",
        ]);
    }

    /// Waits until `ready` holds, failing with what it last said.
    fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut ready: impl FnMut() -> Result<(), String>,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            match ready() {
                Ok(()) => return,
                Err(last) if Instant::now() > deadline => {
                    panic!(
                        "{what} not within {timeout:?}: {last}\n{}",
                        self.pods_report()
                    )
                }
                Err(_) => thread::sleep(Duration::from_millis(250)),
            }
        }
    }
}

fn gmsa_pod_spec(service_account: &str) -> Value {
    json!({
        "serviceAccountName": service_account,
        "nodeSelector": {"kubernetes.io/os": "windows"},
        "securityContext": {"windowsOptions": {"gmsaCredentialSpecName": SPEC}},
        "containers": [{"name": "iis", "image": "mcr.microsoft.com/windows/servercore/iis:windowsservercore-ltsc2019"}]
    })
}

fn gmsa_pod(service_account: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": NS, "labels": {"e2e": "node"}},
        "spec": gmsa_pod_spec(service_account),
    })
}

fn plain_pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": NS, "labels": {"e2e": "node"}},
        "spec": {"containers": [{"name": "c", "image": BUSYBOX_IMAGE}]},
    })
}

fn workload(name: &str, service_account: &str, replicas: i32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": gmsa_pod_spec(service_account),
            }
        }
    })
}

fn credspec() -> Value {
    json!({
        "apiVersion": "windows.k8s.io/v1",
        "kind": "GMSACredentialSpec",
        "metadata": {"name": SPEC},
        "credspec": {
            "ActiveDirectoryConfig": {"GroupManagedServiceAccounts": [
                {"Name": MARKER, "Scope": "CONTOSO"}, {"Name": MARKER, "Scope": "contoso.com"}]},
            "CmsPlugins": ["ActiveDirectory"],
            "DomainJoinConfig": {
                "DnsName": "contoso.com", "DnsTreeName": "contoso.com",
                "Guid": "244818ae-87ac-4fcd-92ec-e79e5252348a",
                "MachineAccountName": MARKER, "NetBiosName": "CONTOSO",
                "Sid": "S-1-5-21-2126449477-2524075714-3094792973"
            }
        }
    })
}

fn report(what: &str, tally: &Tally) {
    eprintln!(
        "node tier: {what}: {} admissions in {:.1} s ({} admitted with contents, {} unchecked, {} failed){}",
        tally.total(),
        tally.elapsed.as_secs_f64(),
        tally.admitted,
        tally.unchecked,
        tally.failed,
        if tally.messages.is_empty() {
            String::new()
        } else {
            format!("\n  {}", tally.messages.join("\n  "))
        }
    );
}

fn assert_clean(what: &str, tally: &Tally) {
    report(what, tally);
    assert!(tally.admitted > 0, "{what}: no admission at all");
    assert_eq!(tally.failed, 0, "{what}: {:?}", tally.messages);
    assert_eq!(tally.unchecked, 0, "{what}: pods admitted without contents");
}

#[test]
fn our_image_in_a_real_node() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: the node tier cannot run here: {reason}");
        return;
    }
    let archive = image_archive().unwrap_or_else(|e| panic!("{e}"));
    let node = NodeCluster::start().unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "node tier: cluster up in {:.1} s, {} MiB resident",
        node.startup_time().as_secs_f64(),
        node.resident_kib() / 1024
    );
    let began = Instant::now();
    node.import_image(&archive)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("node tier: image imported in {:?}", began.elapsed());
    let mut node = node;
    {
        let env = Env { node: &node };
        install_and_admit(&env);
        upgrades_under_load(&env);
        mode_switches_under_load(&env);
        eviction_respects_the_budget(&env);
    }
    whole_cluster_restart(&mut node);
    uninstall_names_what_it_lets_through(&Env { node: &node });
}

/// `install --apply` with our image: both replicas Ready through the rendered probes; a
/// Deployment's pods get the contents; one whose service account may not use the spec is
/// refused, visibly in its ReplicaSet's events; doctor finds nothing wrong.
fn install_and_admit(env: &Env) {
    let began = Instant::now();
    let out = env.gmsa_ok(&["install", "--apply"]);
    eprintln!(
        "node tier: install --apply returned in {:.1} s:\n{}",
        began.elapsed().as_secs_f64(),
        out.stdout
    );
    // install returns once one replica answers; both become Ready through the probes.
    env.rollout_status();
    let deployment = env.json(&["get", "deployment", "-n", SYSTEM_NS, DEPLOYMENT]);
    assert_eq!(deployment["status"]["readyReplicas"], 2, "{deployment:#}");
    let pods = env.json(&[
        "get",
        "pods",
        "-n",
        SYSTEM_NS,
        "-l",
        "app.kubernetes.io/name=gmsa-webhook",
    ]);
    let items = pods["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{pods:#}");
    for pod in items {
        assert_eq!(pod["spec"]["nodeName"], NODE_NAME);
        assert_eq!(pod["status"]["phase"], "Running", "{pod:#}");
        assert_eq!(
            pod["spec"]["containers"][0]["image"],
            IMAGE.trim_start_matches("docker.io/library/")
        );
    }

    env.kubectl(&["create", "namespace", NS]);
    env.kubectl(&["create", "serviceaccount", "-n", NS, "webapp"]);
    env.kubectl(&["create", "serviceaccount", "-n", NS, "intruder"]);
    env.apply(&credspec());
    env.gmsa_ok(&[
        "grant",
        SPEC,
        "--service-account",
        &format!("{NS}:webapp"),
        "--apply",
    ]);

    env.apply(&workload("webapp", "webapp", 2));
    env.wait_for(
        "the webapp ReplicaSet's pods",
        Duration::from_secs(60),
        || {
            let pods = env.json(&["get", "pods", "-n", NS, "-l", "app=webapp"]);
            let items = pods["items"].as_array().cloned().unwrap_or_default();
            if items.len() != 2 {
                return Err(format!("{} pods", items.len()));
            }
            for pod in &items {
                let contents = pod["spec"]["securityContext"]["windowsOptions"]
                    ["gmsaCredentialSpec"]
                    .as_str()
                    .unwrap_or_default();
                assert!(contents.contains(MARKER), "{pod:#}");
            }
            Ok(())
        },
    );

    env.apply(&workload("intruder", "intruder", 1));
    env.wait_for(
        "the refusal in the intruder ReplicaSet's events",
        Duration::from_secs(60),
        || {
            let events = env.kubectl(&[
                "get",
                "events",
                "-n",
                NS,
                "--field-selector",
                "reason=FailedCreate",
                "-o",
                "jsonpath={.items[*].message}",
            ]);
            if events
                .contains("service account \"intruder\" is not authorized to `use` GMSA cred spec")
            {
                Ok(())
            } else {
                Err(events)
            }
        },
    );
    let pods = env.json(&["get", "pods", "-n", NS, "-l", "app=intruder"]);
    assert_eq!(pods["items"].as_array().unwrap().len(), 0, "{pods:#}");

    let doctor = env.gmsa(&["doctor", "-o", "json"]);
    let report: Value = serde_json::from_str(&doctor.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", doctor.stdout, doctor.stderr));
    let findings = report["findings"].as_array().cloned().unwrap_or_default();
    assert!(!findings.is_empty(), "{report:#}");
    let failed: Vec<&Value> = findings.iter().filter(|f| f["status"] == "fail").collect();
    assert!(failed.is_empty(), "doctor failed checks: {failed:#?}");
    env.kubectl(&["delete", "deployment", "-n", NS, "intruder"]);
}

/// `rollout restart` and an image upgrade while GMSA pods are created without pause: zero
/// failed admissions, counted.
fn upgrades_under_load(env: &Env) {
    let load = PodLoad::start(env.node.api(), NS, &gmsa_pod("webapp"), MARKER, true, 3);
    thread::sleep(Duration::from_secs(2));
    for round in 1..=2 {
        env.kubectl(&[
            "rollout",
            "restart",
            "-n",
            SYSTEM_NS,
            &format!("deployment/{DEPLOYMENT}"),
        ]);
        env.rollout_status();
        eprintln!("node tier: rollout restart {round} done");
    }
    let tally = load.stop();
    assert_clean("two rollout restarts", &tally);

    let next = format!("{IMAGE}-next");
    env.node
        .tag_image(IMAGE, &next)
        .unwrap_or_else(|e| panic!("{e}"));
    let short = next.trim_start_matches("docker.io/library/").to_string();
    let load = PodLoad::start(env.node.api(), NS, &gmsa_pod("webapp"), MARKER, true, 3);
    thread::sleep(Duration::from_secs(2));
    env.gmsa_ok(&["install", "--apply", "--image", &short]);
    env.rollout_status();
    let tally = load.stop();
    assert_clean("install --apply with a new image tag", &tally);
    let deployment = env.json(&["get", "deployment", "-n", SYSTEM_NS, DEPLOYMENT]);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        short.as_str()
    );
}

/// Webhook → policies → webhook while GMSA pods are created without pause: every pod is
/// admitted with its contents, none refused, none let through unchecked, counted.
fn mode_switches_under_load(env: &Env) {
    let switch = |args: &[&str], what: &str| {
        let load = PodLoad::start(env.node.api(), NS, &gmsa_pod("webapp"), MARKER, true, 3);
        thread::sleep(Duration::from_secs(2));
        let began = Instant::now();
        let out = env.gmsa_ok(args);
        let took = began.elapsed();
        thread::sleep(Duration::from_secs(2));
        let tally = load.stop();
        eprintln!(
            "node tier: {what} took {:.1} s:\n{}{}",
            took.as_secs_f64(),
            out.stdout,
            out.stderr
        );
        assert_clean(what, &tally);
    };
    switch(
        &["install", "--apply", "--admission", "policies"],
        "switch webhook -> policies",
    );
    let webhooks = env.kubectl(&[
        "get",
        "mutatingwebhookconfigurations,validatingwebhookconfigurations",
        "-o",
        "name",
    ]);
    assert!(!webhooks.contains("gmsa-webhook"), "{webhooks}");
    let policies = env.kubectl(&["get", "validatingadmissionpolicies", "-o", "name"]);
    assert!(policies.contains("gmsa-webhook-pods"), "{policies}");

    switch(&["install", "--apply"], "switch policies -> webhook");
    let webhooks = env.kubectl(&[
        "get",
        "mutatingwebhookconfigurations,validatingwebhookconfigurations",
        "-o",
        "name",
    ]);
    assert!(webhooks.contains("gmsa-webhook-admission"), "{webhooks}");
    let policies = env.kubectl(&["get", "validatingadmissionpolicies", "-o", "name"]);
    assert!(!policies.contains("gmsa-webhook-pods"), "{policies}");
    env.rollout_status();
}

/// The PodDisruptionBudget lets one replica be evicted and refuses the last ready one.
fn eviction_respects_the_budget(env: &Env) {
    env.rollout_status();
    let pods = env.json(&[
        "get",
        "pods",
        "-n",
        SYSTEM_NS,
        "-l",
        "app.kubernetes.io/name=gmsa-webhook",
    ]);
    let names: Vec<String> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 2, "{pods:#}");
    env.wait_for(
        "the budget to allow one disruption",
        Duration::from_secs(60),
        || {
            let allowed = env.kubectl(&[
                "get",
                "pdb",
                "-n",
                SYSTEM_NS,
                DEPLOYMENT,
                "-o",
                "jsonpath={.status.disruptionsAllowed}",
            ]);
            if allowed.trim() == "1" {
                Ok(())
            } else {
                Err(allowed)
            }
        },
    );
    let evict = |name: &str| {
        let body = json!({
            "apiVersion": "policy/v1", "kind": "Eviction",
            "metadata": {"name": name, "namespace": SYSTEM_NS}
        });
        env.node
            .api()
            .request(
                "POST",
                &format!("/api/v1/namespaces/{SYSTEM_NS}/pods/{name}/eviction"),
                Some(&body.to_string()),
            )
            .unwrap()
    };
    let (first, body) = evict(&names[0]);
    assert_eq!(first, 201, "{body}");
    let (second, body) = evict(&names[1]);
    assert_eq!(second, 429, "the last ready replica was evicted: {body}");
    assert!(body.contains("disruption budget"), "{body}");
    env.rollout_status();
}

/// Every process stopped, then started: pods without GMSA are admitted as soon as the API
/// server answers; GMSA pods are refused until a replica is Ready and admitted after; no
/// deadlock.
fn whole_cluster_restart(node: &mut NodeCluster) {
    node.stop_all();
    let began = Instant::now();
    node.start_control_plane().unwrap_or_else(|e| panic!("{e}"));
    let api_up = began.elapsed();

    let (url, ca, token) = {
        let api = node.api();
        (
            api.url().to_string(),
            api.ca_pem().to_string(),
            api.admin_token().to_string(),
        )
    };
    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let post = |pod: &Value| {
                let mut pod = pod.clone();
                pod["metadata"]["generateName"] = json!("restart-");
                https_request(
                    "POST",
                    &format!("{url}/api/v1/namespaces/{NS}/pods?dryRun=All"),
                    &ca,
                    Some(&token),
                    Some(&pod.to_string()),
                )
                .unwrap_or_else(|e| (0, e.to_string()))
            };
            let mut plain = (0u32, Vec::new());
            let mut gmsa_refused = 0u32;
            // Probes until a GMSA pod is admitted, then a few more plain ones.
            let mut first_gmsa = None;
            let mut after = 0;
            while !stop.load(Ordering::Relaxed) && after < 10 {
                let (status, body) = post(&plain_pod());
                plain.0 += 1;
                if status != 201 {
                    plain.1.push(format!(
                        "HTTP {status}: {}",
                        body.chars().take(300).collect::<String>()
                    ));
                }
                if first_gmsa.is_none() {
                    let (status, body) = post(&gmsa_pod("webapp"));
                    if status == 201 {
                        assert!(
                            body.contains(MARKER),
                            "a GMSA pod admitted without contents: {body}"
                        );
                        first_gmsa = Some(began.elapsed());
                    } else {
                        gmsa_refused += 1;
                    }
                } else {
                    after += 1;
                }
                thread::sleep(Duration::from_millis(200));
            }
            (plain, gmsa_refused, first_gmsa)
        })
    };
    node.start_node_again().unwrap_or_else(|e| panic!("{e}"));
    let node_ready = began.elapsed();
    let deadline = Instant::now() + Duration::from_secs(180);
    while !prober.is_finished() {
        if Instant::now() > deadline {
            stop.store(true, Ordering::Relaxed);
        }
        thread::sleep(Duration::from_millis(250));
    }
    let ((plain_probes, plain_refused), gmsa_refused, first_gmsa) = prober.join().unwrap();
    eprintln!(
        "node tier: whole-cluster restart: API server up at +{:.1} s, node Ready at +{:.1} s, \
         first GMSA pod admitted at +{} ({gmsa_refused} GMSA probes refused before it); \
         {plain_probes} plain probes, {} refused",
        api_up.as_secs_f64(),
        node_ready.as_secs_f64(),
        first_gmsa.map_or("never".to_string(), |t| format!("{:.1} s", t.as_secs_f64())),
        plain_refused.len()
    );
    assert!(
        plain_refused.is_empty(),
        "pods without GMSA refused during the restart: {plain_refused:?}"
    );
    assert!(
        first_gmsa.is_some(),
        "no GMSA pod admitted within three minutes of the restart"
    );
}

/// `uninstall` with a GMSA Deployment present names it, and leaves a guard that keeps its
/// new pods refused (never admitted without contents) while plain pods are admitted.
fn uninstall_names_what_it_lets_through(env: &Env) {
    let out = env.gmsa_ok(&["uninstall"]);
    let said = format!("{}{}", out.stdout, out.stderr);
    eprintln!("node tier: uninstall said:\n{said}");
    assert!(
        said.contains("webapp"),
        "the GMSA Deployment is not named: {said}"
    );
    let webhooks = env.kubectl(&[
        "get",
        "mutatingwebhookconfigurations,validatingwebhookconfigurations",
        "-o",
        "name",
    ]);
    assert!(!webhooks.contains("gmsa-webhook"), "{webhooks}");
    let post = |pod: &Value| {
        let mut pod = pod.clone();
        pod["metadata"]["generateName"] = json!("after-uninstall-");
        env.node
            .api()
            .request(
                "POST",
                &format!("/api/v1/namespaces/{NS}/pods?dryRun=All"),
                Some(&pod.to_string()),
            )
            .unwrap()
    };
    let (status, body) = post(&gmsa_pod("webapp"));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("GMSA admission is not installed"), "{body}");
    let (status, body) = post(&plain_pod());
    assert_eq!(status, 201, "{body}");
}
