//! `install --apply` with our image, and what a user sees right after.

use super::*;

/// `install --apply` with our image: both replicas Ready through the rendered probes; a
/// Deployment's pods get the contents; one whose service account may not use the spec is
/// refused, visibly in its ReplicaSet's events; doctor finds nothing wrong.
pub(crate) fn install_and_admit(env: &Env) {
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
    let pods = env.json(&["get", "pods", "-n", SYSTEM_NS, "-l", WEBHOOK_PODS]);
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
    env.apply(&gmsa_testkit::credspecs::webapp1(SPEC));
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
