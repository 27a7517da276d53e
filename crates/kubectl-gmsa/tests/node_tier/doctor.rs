//! What doctor says when the webhook behind its Service does not answer.

use super::*;

/// The `webhook-ready` row of `doctor -o json`, once it fails with `cause` in its detail.
fn wait_doctor_says(env: &Env, what: &str, cause: &str) {
    env.wait_for(what, Duration::from_secs(90), || {
        let doctor = env.gmsa(&["doctor", "-o", "json"]);
        let report: Value = serde_json::from_str(&doctor.stdout).map_err(|e| e.to_string())?;
        let findings = report["findings"].as_array().cloned().unwrap_or_default();
        let row = support::find(
            &findings,
            "webhook-ready",
            &format!("{SYSTEM_NS}/{DEPLOYMENT}"),
        )
        .cloned()
        .unwrap_or(Value::Null);
        let detail = row["detail"].as_str().unwrap_or_default();
        if row["status"] == "fail" && detail.contains(cause) {
            eprintln!("node tier: doctor, {what}: {detail} (fix: {})", row["fix"]);
            Ok(())
        } else {
            Err(format!("{row}"))
        }
    });
}

/// doctor names why the webhook does not answer: scaled to zero, an image that cannot be
/// pulled, a Service with no endpoints; `install --apply --force-conflicts` mends each (the
/// hand edits own those fields).
pub(crate) fn doctor_names_the_cause(env: &Env) {
    let deployment = format!("deployment/{DEPLOYMENT}");
    env.kubectl(&["scale", "-n", SYSTEM_NS, &deployment, "--replicas=0"]);
    wait_doctor_says(env, "scaled to zero", "scaled to zero");

    env.kubectl(&[
        "set",
        "image",
        "-n",
        SYSTEM_NS,
        &deployment,
        "webhook=gmsa-webhook:no-such-tag",
    ]);
    env.kubectl(&["scale", "-n", SYSTEM_NS, &deployment, "--replicas=2"]);
    wait_doctor_says(env, "an image that cannot be pulled", "cannot be pulled");
    env.gmsa_ok(&["install", "--apply", "--force-conflicts"]);
    env.rollout_status();

    env.kubectl(&[
        "patch",
        "service",
        "-n",
        SYSTEM_NS,
        DEPLOYMENT,
        "--type=merge",
        "-p",
        r#"{"spec":{"selector":{"app.kubernetes.io/component":"nothing"}}}"#,
    ]);
    wait_doctor_says(env, "a Service with no endpoints", "no ready endpoint");
    env.gmsa_ok(&["install", "--apply", "--force-conflicts"]);
    env.rollout_status();
}
