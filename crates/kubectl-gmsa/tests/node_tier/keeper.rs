//! Policy mode with its keeper down: a spec's credspec cannot be edited; a spec created and
//! granted meanwhile is refused (never admitted without contents) until the keeper is back
//! and publishes it; a deleted spec stays, still served, until the keeper has withdrawn its
//! contents.

use super::*;

/// Created and granted while the keeper is down.
const LATE: &str = "webapp-late";

/// A pod of `webapp` naming `spec`.
fn pod_naming(spec: &str) -> Value {
    let mut pod = gmsa_pod("webapp");
    pod["spec"]["securityContext"]["windowsOptions"]["gmsaCredentialSpecName"] = json!(spec);
    pod
}

/// The keeper scaled to zero: an edit is refused, a new spec's pods are refused with the
/// policy's message; the keeper scaled back: the new spec serves, timed from the scale-up.
pub(crate) fn keeper_outage_refuses_unpublished_specs(env: &Env) {
    let deployment = format!("deployment/{DEPLOYMENT}");
    env.rollout_status();
    env.kubectl(&["scale", "-n", SYSTEM_NS, &deployment, "--replicas=0"]);
    env.wait_for(
        "the keeper's pods to be gone",
        Duration::from_secs(90),
        || {
            let pods = env.json(&["get", "pods", "-n", SYSTEM_NS, "-l", WEBHOOK_PODS]);
            match pods["items"].as_array().map_or(0, Vec::len) {
                0 => Ok(()),
                n => Err(format!("{n} pods")),
            }
        },
    );
    let (status, body) = env.dry_run(&gmsa_pod("webapp"));
    assert_eq!(status, 201, "the published contents serve: {body}");

    let edit = json!({"credspec": {"DomainJoinConfig": {"MachineAccountName": "Edited"}}});
    let edited = env.node.api().kubectl(
        &[
            "patch",
            "gmsacredentialspec",
            SPEC,
            "--type=merge",
            "-p",
            &edit.to_string(),
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&edited.stderr);
    assert!(
        !edited.status.success() && stderr.contains("delete the spec and create it again"),
        "an edit of credspec was not refused: {stderr}"
    );

    env.apply(&gmsa_testkit::credspecs::webapp1(LATE));
    env.gmsa_ok(&[
        "grant",
        LATE,
        "--service-account",
        &format!("{NS}:webapp"),
        "--apply",
    ]);
    let refusal = format!("cred spec {LATE} is not published for namespace {NS}");
    let until = Instant::now() + Duration::from_secs(5);
    let mut refused = 0;
    while Instant::now() < until {
        let (status, body) = env.dry_run(&pod_naming(LATE));
        assert_ne!(
            status, 201,
            "a pod was admitted naming a spec the keeper has not published: {body}"
        );
        assert!(body.contains(&refusal), "HTTP {status}: {body}");
        refused += 1;
        thread::sleep(Duration::from_millis(200));
    }

    let began = Instant::now();
    env.kubectl(&["scale", "-n", SYSTEM_NS, &deployment, "--replicas=1"]);
    env.wait_for(
        "a pod admitted with the new spec's contents",
        Duration::from_secs(120),
        || match env.dry_run(&pod_naming(LATE)) {
            (201, body) if body.contains(MARKER) => Ok(()),
            (201, body) => panic!("admitted without the new spec's contents: {body}"),
            (status, body) => Err(format!("HTTP {status}: {body}")),
        },
    );
    eprintln!(
        "node tier: keeper outage: the edit refused, {refused} pods naming a new spec refused while \
         it was down; the new spec served {:.1} s after the keeper was scaled back up",
        began.elapsed().as_secs_f64()
    );
    env.rollout_status();
    env.kubectl(&["delete", "gmsacredentialspec", LATE, "--wait=false"]);
    env.wait_for(
        "the deleted spec released by the keeper",
        Duration::from_secs(60),
        || {
            let left = env.kubectl(&["get", "gmsacredentialspecs", "-o", "name"]);
            if left.contains(LATE) {
                Err(left)
            } else {
                Ok(())
            }
        },
    );
}
