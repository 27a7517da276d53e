//! Policy mode on the current server: the admission policies `install --admission policies`
//! renders, no webhook process anywhere, and the keeper publishing each spec's contents. The
//! webhook tier's scenarios run unchanged (the few answers policies give differently are
//! listed in the README and asserted here), then the keeper is stopped.

use std::thread;
use std::time::{Duration, Instant};

use gmsa_testkit::real_cluster::{RealCluster, ServerVersion, WEBHOOK_USER};
use serde_json::{json, Value};

use super::*;

/// The admission policies and bindings, as install renders them for this server.
fn policy_objects(cluster: &RealCluster) -> Vec<Value> {
    let settings = gmsa_deploy::Settings {
        kube_version: gmsa_deploy::KubeVersion::new(1, cluster.version().minor()),
        admission: gmsa_deploy::Admission::Policies,
        ..gmsa_deploy::Settings::default()
    };
    let manifest = gmsa_deploy::render(&settings, None).unwrap_or_else(|e| panic!("{e}"));
    manifest
        .objects
        .into_iter()
        .filter(|o| {
            o["kind"]
                .as_str()
                .is_some_and(|k| k.contains("AdmissionPolicy"))
        })
        .collect()
}

/// Applies the policies; the API server compiles their CEL on create and refuses what does
/// not compile, and reports type-check warnings in the status.
fn install_policies(cluster: &RealCluster) -> Result<(), String> {
    let objects = policy_objects(cluster);
    if objects.len() != 6 {
        return Err(format!("install renders {} policy objects", objects.len()));
    }
    for object in &objects {
        cluster
            .apply(&object.to_string())
            .map_err(|e| format!("applying {}: {e}", object["metadata"]["name"]))?;
    }
    Ok(())
}

/// Type-check warnings of the stored ValidatingAdmissionPolicies (the server fills them in
/// shortly after create).
fn type_check_warnings(cluster: &RealCluster) -> Result<Vec<String>, String> {
    let list = cluster
        .kubectl_ok(&["get", "validatingadmissionpolicies", "-o", "json"], None)
        .map_err(|e| e.to_string())?;
    let list: Value = serde_json::from_str(&list).map_err(|e| e.to_string())?;
    let mut warnings = Vec::new();
    for item in list["items"].as_array().into_iter().flatten() {
        for w in item["status"]["typeChecking"]["expressionWarnings"]
            .as_array()
            .into_iter()
            .flatten()
        {
            warnings.push(format!(
                "{} {}: {}",
                item["metadata"]["name"], w["fieldRef"], w["warning"]
            ));
        }
    }
    Ok(warnings)
}

/// The keeper may read and annotate credential specs (what install grants its account).
fn grant_keeper(cluster: &RealCluster) -> Result<(), String> {
    let rbac = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "gmsa-keeper"},
         "rules": [{"apiGroups": ["windows.k8s.io"], "resources": ["gmsacredentialspecs"],
                    "verbs": ["get", "list", "watch", "patch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "gmsa-keeper"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "gmsa-keeper"},
         "subjects": [{"kind": "User", "name": WEBHOOK_USER}]},
    ]});
    cluster
        .apply(&rbac.to_string())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Publishes every spec's contents the way the keeper does (stand-in until it runs here).
fn publish_by_hand(cluster: &RealCluster) -> Result<(), String> {
    let list = cluster
        .kubectl_ok(&["get", "gmsacredentialspecs", "-o", "json"], None)
        .map_err(|e| e.to_string())?;
    let list: Value = serde_json::from_str(&list).map_err(|e| e.to_string())?;
    for item in list["items"].as_array().into_iter().flatten() {
        let name = item["metadata"]["name"].as_str().unwrap_or_default();
        let Some(credspec) = item.get("credspec") else {
            continue;
        };
        let patch = json!({"metadata": {"annotations": {
            gmsa_core::published::CONTENTS_ANNOTATION: gmsa_core::canonical::to_go_json(credspec),
            gmsa_core::published::CONTENTS_GENERATION_ANNOTATION: item["metadata"]["generation"].to_string(),
        }}});
        cluster
            .kubectl_ok(
                &[
                    "patch",
                    "gmsacredentialspec",
                    name,
                    "--type=merge",
                    "-p",
                    &patch.to_string(),
                ],
                None,
            )
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The API server loads policies and their parameters asynchronously: probe until a pod
/// naming a spec is mutated and one naming no spec is refused by a policy (bounded).
fn wait_until_policies_answer(e2e: &E2e) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mutated = with_pod_gmsa(
        windows_pod("probe-mutate", Some("webapp")),
        json!({"gmsaCredentialSpecName": "gmsa-webapp1"}),
    );
    let refused = with_pod_gmsa(
        windows_pod("probe-validate", None),
        json!({"gmsaCredentialSpecName": "gmsa-probe"}),
    );
    loop {
        let (code, answer) = e2e.send(
            "POST",
            &format!("/api/v1/namespaces/{NS}/pods?dryRun=All"),
            &mutated,
        )?;
        let inlined = code == 201 && pod_contents(&answer) == Some(WEBAPP1);
        let (code, status) = e2e.post_pod(NS, &refused)?;
        let message = status["message"].as_str().unwrap_or_default();
        let validated = code != 201 && message.contains("ValidatingAdmissionPolicy");
        if code == 201 {
            e2e.cluster
                .kubectl_ok(
                    &["delete", "pod", "-n", NS, "probe-validate", "--wait=false"],
                    None,
                )
                .map_err(|e| e.to_string())?;
        }
        if inlined && validated {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the policies never answered: inlined {inlined}, last refusal {code}: {message}"
            ));
        }
        thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn policies_behind_current_kube() {
    if skip_requested() {
        eprintln!("skipped: {SKIP_ENV}=1");
        return;
    }
    let version = ServerVersion::Current;
    let cluster = RealCluster::start(version).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "kube-apiserver {version} ready in {:.1?} at {}",
        cluster.startup_time(),
        cluster.url()
    );
    set_up_cluster(&cluster).unwrap_or_else(|e| panic!("setting up the cluster: {e}"));
    grant_keeper(&cluster).unwrap_or_else(|e| panic!("granting the keeper: {e}"));
    publish_by_hand(&cluster).unwrap_or_else(|e| panic!("publishing: {e}"));
    install_policies(&cluster).unwrap_or_else(|e| panic!("installing the policies: {e}"));
    let e2e = E2e {
        cluster: &cluster,
        admission: Admission::Policies,
    };
    wait_until_policies_answer(&e2e).unwrap_or_else(|e| panic!("{e}"));
    let warnings = type_check_warnings(&cluster).unwrap_or_else(|e| panic!("{e}"));

    let (count, mut failures) = run_scenarios(&e2e);
    eprintln!(
        "{version}: {count} scenarios in policy mode, {} failed",
        failures.len()
    );
    if !warnings.is_empty() {
        failures.push(format!("  type-check warnings:\n{}", warnings.join("\n")));
    }
    if !failures.is_empty() {
        panic!(
            "{} failures in policy mode on {version}:\n{}",
            failures.len(),
            failures.join("\n"),
        );
    }
}
