//! The node cluster comes up as a user's would (a Ready node, the `default` ServiceAccount,
//! a pod Running from an imported image, the `kubernetes` Service reachable from it through
//! kube-proxy), and its teardown gives the host back: routes, links, packet filter, sysctls,
//! mounts and host paths as they were.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use gmsa_testkit::real_node::{
    unsupported_reason, wait_until_free, NodeCluster, BUSYBOX_IMAGE, KUBERNETES_SERVICE_IP,
    NODE_NAME,
};

fn sh_ok(script: &str) -> String {
    let out = Command::new("sh").args(["-c", script]).output().unwrap();
    assert!(out.status.success(), "{script}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What teardown must give back, as text to compare.
fn host_state() -> String {
    format!(
        "{}\n{}\n{}\n{}\n{}",
        sh_ok("ip -4 route show table all; ip -6 route show"),
        sh_ok("ip -o link show | sed 's/^[0-9]*: //; s/ state .*//'"),
        sh_ok("nft list ruleset"),
        sh_ok(
            "cat /proc/sys/net/ipv4/ip_forward /proc/sys/vm/overcommit_memory \
             /proc/sys/kernel/panic /proc/sys/kernel/panic_on_oops"
        ),
        sh_ok(
            "for p in /var/lib/kubelet /var/log/containers /var/log/pods /var/lib/cni \
             /run/containerd /run/netns /etc/cni /opt/cni; do [ -e $p ] && echo $p; done; \
             grep -c . /proc/self/mountinfo; ls /sys/fs/cgroup/memory | grep -c kubepods || true"
        )
    )
}

#[test]
fn a_pod_runs_and_reaches_the_api_server_through_its_service() {
    if let Some(reason) = unsupported_reason() {
        eprintln!("skipped: the node tier cannot run here: {reason}");
        return;
    }
    if std::env::var("GMSA_SKIP_NODE_TIER").is_ok_and(|v| v == "1") {
        eprintln!("skipped: GMSA_SKIP_NODE_TIER=1");
        return;
    }
    assert!(
        wait_until_free(Duration::from_secs(1800)),
        "another node cluster held this machine for 30 minutes"
    );
    let before = host_state();
    let node = NodeCluster::start().unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "node cluster up in {:.1} s; {} MiB resident",
        node.startup_time().as_secs_f64(),
        node.resident_kib() / 1024
    );
    let api = node.api();
    let nodes = api
        .kubectl_ok(&["get", "nodes", "-o", "name"], None)
        .unwrap();
    assert_eq!(nodes.trim(), format!("node/{NODE_NAME}"));

    let pod = format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"probe","namespace":"default"}},
        "spec":{{"restartPolicy":"Never","terminationGracePeriodSeconds":1,"containers":[{{"name":"c",
        "image":"{BUSYBOX_IMAGE}","imagePullPolicy":"Never",
        "command":["/bin/busybox","sh","-c","/bin/busybox nc -z -w 3 {KUBERNETES_SERVICE_IP} 443 && echo reached; /bin/busybox nslookup example.com 2>&1 | /bin/busybox head -n 3; echo done"]}}]}}}}"#
    );
    api.apply(&pod).unwrap();
    let began = Instant::now();
    let phase = loop {
        let phase = api
            .kubectl_ok(
                &["get", "pod", "probe", "-o", "jsonpath={.status.phase}"],
                None,
            )
            .unwrap_or_default();
        if phase == "Succeeded" || phase == "Failed" || began.elapsed() > Duration::from_secs(90) {
            break phase;
        }
        thread::sleep(Duration::from_millis(300));
    };
    let log = std::fs::read_dir(node.dir().join("kubelet/pod-logs"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("_probe_"))
        .map(|e| sh_ok(&format!("cat {}/c/*.log", e.path().display())))
        .collect::<String>();
    assert_eq!(
        phase,
        "Succeeded",
        "pod log:\n{log}\n{}",
        node.log_tail("kubelet", 30)
    );
    assert!(
        log.contains("reached"),
        "the pod did not reach the kubernetes Service: {log}"
    );
    // No resolver answers pods: a name lookup fails on the machine itself.
    assert!(!log.contains("Address: "), "a pod resolved a name: {log}");
    assert!(log.contains("done"), "{log}");
    drop(node);
    let after = host_state();
    assert_eq!(before, after, "the host was not restored");
}
