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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use gmsa_testkit::real_cluster::https_request;
use gmsa_testkit::real_node::{
    image_archive, unsupported_reason, NodeCluster, PodLoad, Tally, BUSYBOX_IMAGE, NODE_NAME,
};
use serde_json::{json, Value};

#[path = "node_tier/doctor.rs"]
mod doctor;
mod support;

use support::Run;

#[path = "support/helm.rs"]
mod helm;
#[path = "node_tier/helm.rs"]
mod helm_release;
#[path = "node_tier/install.rs"]
mod install;
#[path = "node_tier/keeper.rs"]
mod keeper;
#[path = "node_tier/renewal.rs"]
mod renewal;
#[path = "node_tier/restart.rs"]
mod restart;
#[path = "node_tier/rollouts.rs"]
mod rollouts;

use doctor::doctor_names_the_cause;
use install::install_and_admit;
use restart::{uninstall_names_what_it_lets_through, whole_cluster_restart};
use rollouts::{eviction_respects_the_budget, mode_switches_under_load, upgrades_under_load};

const SYSTEM_NS: &str = "gmsa-system";
const NS: &str = "gmsa-node-e2e";
const DEPLOYMENT: &str = "gmsa-webhook";
const SPEC: &str = "webapp1";
/// The label selector of the Deployment's pods, in either role.
const WEBHOOK_PODS: &str = "app.kubernetes.io/name=gmsa-webhook";
/// A value only the credential spec's contents hold (`credspecs::webapp1`): a pod carrying it
/// got them inlined.
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

impl Env<'_> {
    fn gmsa(&self, args: &[&str]) -> Run {
        support::on_cluster(self.node.api().admin_kubeconfig(), args)
    }

    fn gmsa_ok(&self, args: &[&str]) -> Run {
        support::on_cluster_ok(
            self.node.api().admin_kubeconfig(),
            args,
            &self.pods_report(),
        )
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

    /// A server-side dry-run create of `pod` in the test namespace: admission runs in full,
    /// nothing is stored. The status and the body.
    fn dry_run(&self, pod: &Value) -> (u16, String) {
        let mut pod = pod.clone();
        pod["metadata"]["generateName"] = json!("probe-");
        self.node
            .api()
            .request(
                "POST",
                &format!("/api/v1/namespaces/{NS}/pods?dryRun=All"),
                Some(&pod.to_string()),
            )
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The names of every mutating and validating webhook configuration.
    fn webhook_configurations(&self) -> String {
        self.kubectl(&[
            "get",
            "mutatingwebhookconfigurations,validatingwebhookconfigurations",
            "-o",
            "name",
        ])
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
        renewal::certificates_renew_under_load(&env);
        mode_switches_under_load(&env);
        eviction_respects_the_budget(&env);
        doctor_names_the_cause(&env);
    }
    whole_cluster_restart(&mut node);
    let env = Env { node: &node };
    uninstall_names_what_it_lets_through(&env);
    helm_release::helm_install_upgrade_uninstall(&env);
}
