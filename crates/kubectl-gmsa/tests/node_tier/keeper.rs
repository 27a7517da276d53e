//! Policy mode with its keeper down: an edited credential spec is refused, never inlined with
//! the contents of its previous generation, until the keeper is back and publishes it.

use super::*;

/// What the edit puts in the contents, so a pod carrying it got the new generation's.
const EDITED: &str = "WebApp1Edited";

/// The keeper scaled to zero, the spec edited: every GMSA pod is refused with the policy's
/// message; the keeper scaled back: pods get the edited contents, timed from the scale-up.
pub(crate) fn keeper_outage_refuses_edited_specs(env: &Env) {
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
    assert_eq!(
        status, 201,
        "before the edit, the published contents serve: {body}"
    );

    let edit = json!({"credspec": {"DomainJoinConfig": {"MachineAccountName": EDITED}}});
    env.kubectl(&[
        "patch",
        "gmsacredentialspec",
        SPEC,
        "--type=merge",
        "-p",
        &edit.to_string(),
    ]);
    let refusal = format!("cred spec {SPEC} {}", gmsa_deploy::policies::NOT_USABLE);
    let until = Instant::now() + Duration::from_secs(5);
    let mut refused = 0;
    while Instant::now() < until {
        let (status, body) = env.dry_run(&gmsa_pod("webapp"));
        assert_ne!(
            status, 201,
            "a pod was admitted with the previous generation's contents while the keeper was down: {body}"
        );
        assert!(body.contains(&refusal), "HTTP {status}: {body}");
        refused += 1;
        thread::sleep(Duration::from_millis(200));
    }

    let began = Instant::now();
    env.kubectl(&["scale", "-n", SYSTEM_NS, &deployment, "--replicas=2"]);
    env.wait_for(
        "a pod admitted with the edited contents",
        Duration::from_secs(120),
        || match env.dry_run(&gmsa_pod("webapp")) {
            (201, body) if body.contains(EDITED) => Ok(()),
            (201, body) => panic!("admitted with other contents than the edit's: {body}"),
            (status, body) => Err(format!("HTTP {status}: {body}")),
        },
    );
    eprintln!(
        "node tier: keeper outage: {refused} GMSA pods refused while it was down after the edit; \
         the edited spec served {:.1} s after the keeper was scaled back up",
        began.elapsed().as_secs_f64()
    );
    env.rollout_status();
}
