//! The node tier's guard keeps pod traffic on the machine, and teardown gives the host back.
//!
//! Only namespaces this test makes are ever addressed: a "pod" namespace on the guard's
//! bridge, and an "outside" namespace standing for the world beyond the host (198.18.0.0/30,
//! the benchmarking range), reached by a route of this test's own. With the guard up, a
//! packet from the pod range toward "outside" is dropped by the host and never arrives; the
//! pod and service ranges are unreachable once the bridge is gone; after restore the host's
//! routes, links, packet filter and sysctls are what they were.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use gmsa_testkit::real_node::{unsupported_reason, wait_until_free, HostGuard, NODE_IP, POD_CIDR};

fn sh(script: &str) -> (bool, String) {
    let out = Command::new("sh").args(["-c", script]).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn sh_ok(script: &str) -> String {
    let (ok, out) = sh(script);
    assert!(ok, "{script}: {out}");
    out
}

/// What teardown must give back, as text to compare.
fn host_state() -> String {
    let sysctls = sh_ok(
        "cat /proc/sys/net/ipv4/ip_forward /proc/sys/vm/overcommit_memory \
         /proc/sys/kernel/panic /proc/sys/kernel/panic_on_oops",
    );
    format!(
        "{}\n{}\n{}\n{}",
        sh_ok("ip -4 route show table all; ip -6 route show"),
        sh_ok("ip -o link show | sed 's/^[0-9]*: //; s/ state .*//'"),
        sh_ok("nft list ruleset"),
        sysctls
    )
}

/// Packets the "outside" namespace received from the pod range (its own counting rule).
fn outside_received() -> u64 {
    let out = sh_ok("ip netns exec gmsa-guard-outside nft list table inet guardtest");
    out.lines()
        .find(|l| l.contains("counter packets"))
        .and_then(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words
                .iter()
                .position(|w| *w == "packets")
                .and_then(|i| words.get(i + 1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(u64::MAX)
}

#[test]
fn pod_traffic_never_leaves_and_teardown_restores_the_host() {
    if let Some(reason) = unsupported_reason() {
        eprintln!("skipped: the node tier cannot run here: {reason}");
        return;
    }
    assert!(
        wait_until_free(Duration::from_secs(1800)),
        "another node cluster held this machine for 30 minutes"
    );
    let before = host_state();
    let dir = tempfile::tempdir().unwrap();
    let mut guard = HostGuard::install(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(Path::new(gmsa_testkit::real_node::STATE_DIR)
        .join("ruleset.nft")
        .is_file());

    // A pod on the bridge, and an "outside" host reachable only by this test's own route.
    let setup = format!(
        "set -e
         ip netns add gmsa-guard-pod
         ip netns add gmsa-guard-outside
         ip link add gmsa-gp0 type veth peer name gmsa-gp1
         ip link set gmsa-gp1 netns gmsa-guard-pod
         ip link set gmsa-gp0 master gmsa0 up
         ip netns exec gmsa-guard-pod ip addr add 10.88.250.9/16 dev gmsa-gp1
         ip netns exec gmsa-guard-pod ip link set gmsa-gp1 up
         ip netns exec gmsa-guard-pod ip link set lo up
         ip netns exec gmsa-guard-pod ip route add default via {NODE_IP}
         ip link add gmsa-go0 type veth peer name gmsa-go1
         ip link set gmsa-go1 netns gmsa-guard-outside
         ip addr add 198.18.0.1/30 dev gmsa-go0
         ip link set gmsa-go0 up
         ip netns exec gmsa-guard-outside ip addr add 198.18.0.2/30 dev gmsa-go1
         ip netns exec gmsa-guard-outside ip link set gmsa-go1 up
         ip netns exec gmsa-guard-outside ip route add {POD_CIDR} via 198.18.0.1
         ip netns exec gmsa-guard-outside nft add table inet guardtest
         ip netns exec gmsa-guard-outside nft add chain inet guardtest input '{{ type filter hook input priority 0; }}'
         ip netns exec gmsa-guard-outside nft add rule inet guardtest input ip saddr {POD_CIDR} counter
         echo 1 > /proc/sys/net/ipv4/ip_forward"
    );
    let (ok, out) = sh(&setup);
    let cleanup = "ip netns del gmsa-guard-pod; ip netns del gmsa-guard-outside; \
                   ip link del gmsa-go0; ip link del gmsa-gp0";
    if !ok {
        sh(cleanup);
        panic!("setting up the namespaces: {out}");
    }

    // The pod reaches the node IP (the bridge works) ...
    let (reached_node, ping_out) = sh("ip netns exec gmsa-guard-pod ping -c 1 -W 2 10.88.0.1");
    // ... and its packets toward "outside" are dropped by the host's forward rule.
    let (reached_outside, _) = sh("ip netns exec gmsa-guard-pod ping -c 3 -i 0.2 -W 1 198.18.0.2");
    let received = outside_received();
    let forward = sh_ok("iptables -L FORWARD -v -n -x");
    // The host's own traffic to the ranges follows the unreachable routes once the bridge
    // is gone (a host process still dialing a pod after teardown).
    sh_ok("ip link set gmsa0 down");
    let route = sh_ok("ip route get 10.88.77.7 2>&1 || true");
    let service_route = sh_ok("ip route get 10.96.0.99 2>&1 || true");
    sh_ok("ip link set gmsa0 up");
    sh(cleanup);
    guard.restore();
    let after = host_state();

    assert!(
        reached_node,
        "the pod could not reach the node IP: {ping_out}"
    );
    assert!(
        !reached_outside,
        "a pod packet was forwarded out of the pod network"
    );
    assert_eq!(received, 0, "the outside namespace received pod packets");
    let drop_rule = forward
        .lines()
        .find(|l| l.contains("DROP") && l.contains("10.88.0.0/16"))
        .unwrap_or_else(|| panic!("no forward drop rule: {forward}"));
    let dropped: u64 = drop_rule
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        dropped >= 3,
        "the drop rule did not count the pod's packets: {drop_rule}"
    );
    assert!(
        route.contains("unreachable") || route.contains("No route"),
        "{route}"
    );
    assert!(
        service_route.contains("unreachable") || service_route.contains("No route"),
        "{service_route}"
    );
    assert_eq!(before, after, "the host was not restored");
    assert!(!Path::new(gmsa_testkit::real_node::STATE_DIR).exists());
}
