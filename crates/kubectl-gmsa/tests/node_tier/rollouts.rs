//! Upgrades, mode switches and evictions while GMSA pods are created without pause.

use super::*;

/// `rollout restart` and an image upgrade while GMSA pods are created without pause: zero
/// failed admissions, counted.
pub(crate) fn upgrades_under_load(env: &Env) {
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
pub(crate) fn mode_switches_under_load(env: &Env) {
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
    let webhooks = env.webhook_configurations();
    assert!(!webhooks.contains("gmsa-webhook"), "{webhooks}");
    let policies = env.kubectl(&["get", "validatingadmissionpolicies", "-o", "name"]);
    assert!(policies.contains("gmsa-webhook-pods"), "{policies}");
    super::keeper::keeper_outage_refuses_unpublished_specs(env);

    switch(&["install", "--apply"], "switch policies -> webhook");
    let webhooks = env.webhook_configurations();
    assert!(webhooks.contains("gmsa-webhook-admission"), "{webhooks}");
    let policies = env.kubectl(&["get", "validatingadmissionpolicies", "-o", "name"]);
    assert!(!policies.contains("gmsa-webhook-pods"), "{policies}");
    env.rollout_status();
}

/// The PodDisruptionBudget lets one replica be evicted and refuses the last ready one.
pub(crate) fn eviction_respects_the_budget(env: &Env) {
    env.rollout_status();
    let pods = env.json(&["get", "pods", "-n", SYSTEM_NS, "-l", WEBHOOK_PODS]);
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
