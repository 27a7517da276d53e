//! Policy mode on the current server: the admission policies `install --admission policies`
//! renders, no webhook anywhere, and the keeper (`gmsa-webhook --keep-published-contents
//! --no-admission`, as the webhook's user) writing each namespace's published contents. The
//! webhook tier's scenarios run unchanged (the answers that differ are the README's policy-mode
//! ones), then the keeper is stopped and a spec is created, edited, deleted and created again.

use std::collections::BTreeSet;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use gmsa_core::names::contents::FINALIZER;
use gmsa_testkit::real_cluster::{ManagedProcess, RealCluster, ServerVersion, WEBHOOK_USER};
use serde_json::{json, Value};

use super::*;

/// What the keeper may do, as install would grant its account.
fn grant_keeper(cluster: &RealCluster) -> Result<(), String> {
    let rbac = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "gmsa-contents-keeper"},
         "rules": [
            {"apiGroups": ["windows.k8s.io"], "resources": ["gmsacredentialspecs"],
             "verbs": ["get", "list", "watch", "patch"]},
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["policy.gmsa.dev"], "resources": ["gmsanamespacecontents"],
             "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
            {"apiGroups": ["admissionregistration.k8s.io"],
             "resources": ["validatingadmissionpolicybindings"],
             "verbs": ["get", "list", "watch", "patch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "gmsa-contents-keeper"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "gmsa-contents-keeper"},
         "subjects": [{"kind": "User", "name": WEBHOOK_USER}]},
    ]});
    cluster
        .apply(&rbac.to_string())
        .map(drop)
        .map_err(|e| e.to_string())
}

fn install(cluster: &RealCluster) -> Result<(), String> {
    let settings = gmsa_deploy::Settings {
        kube_version: gmsa_deploy::KubeVersion::new(1, cluster.version().minor()),
        admission: gmsa_deploy::Admission::Policies,
        ..gmsa_deploy::Settings::default()
    };
    cluster
        .apply_crd(&gmsa_deploy::crd::namespace_contents_definition(&settings).to_string())
        .map_err(|e| e.to_string())?;
    // As install renders them, the keeper being the webhook's user here.
    let objects =
        gmsa_deploy::policies::admission_objects(&settings, WEBHOOK_USER, &BTreeSet::new());
    if objects.len() != 10 {
        return Err(format!("install renders {} policy objects", objects.len()));
    }
    for object in objects {
        cluster
            .apply(&object.body.to_string())
            .map_err(|e| format!("applying {}: {e}", object.id.name))?;
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

/// Posts `pod` until `done` says the answer is the one awaited (30 s); every answer on the way
/// must be a refusal (`Err` otherwise): nothing is admitted early.
fn post_until(
    e2e: &E2e,
    pod: &Value,
    done: impl Fn(u16, &Value) -> bool,
) -> Result<(u16, Value), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, answer) = e2e.post_pod(NS, pod)?;
        if done(code, &answer) {
            return Ok((code, answer));
        }
        if code == 201 {
            return Err(format!("admitted before it should be: {answer}"));
        }
        if Instant::now() >= deadline {
            return Err(format!("still {code} after 30 s: {}", answer["message"]));
        }
        thread::sleep(Duration::from_millis(200));
    }
}

fn message(answer: &Value) -> &str {
    answer["message"].as_str().unwrap_or_default()
}

/// The keeper as install runs it: alone, no admission server, as the webhook's user.
fn start_keeper(cluster: &RealCluster) -> Result<ManagedProcess, String> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gmsa-webhook"));
    command
        .args([
            "--keep-published-contents",
            "--no-admission",
            "--kubeconfig",
        ])
        .arg(cluster.webhook_kubeconfig())
        .env("LOG_LEVEL", "debug")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env_remove("KUBECONFIG")
        .env_remove("TLS_CRT")
        .env_remove("TLS_KEY")
        .env_remove("HTTPS_PORT");
    cluster.spawn("keeper", command).map_err(|e| e.to_string())
}

fn spec(cluster: &RealCluster, name: &str) -> Result<Value, String> {
    let json = cluster
        .kubectl_ok(&["get", "gmsacredentialspec", name, "-o", "json"], None)
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&json).map_err(|e| e.to_string())
}

#[test]
fn policies_behind_current_kube() {
    if skip_requested() {
        eprintln!("skipped: {SKIP_ENV}=1");
        return;
    }
    let version = ServerVersion::Current;
    let cluster = RealCluster::start(version).unwrap_or_else(|e| panic!("{e}"));
    set_up_cluster(&cluster).unwrap_or_else(|e| panic!("setting up the cluster: {e}"));
    grant_keeper(&cluster).unwrap_or_else(|e| panic!("granting the keeper: {e}"));
    install(&cluster).unwrap_or_else(|e| panic!("installing the policies: {e}"));
    let mut keeper = start_keeper(&cluster).unwrap_or_else(|e| panic!("starting the keeper: {e}"));
    let e2e = E2e {
        cluster: &cluster,
        admission: Admission::Policies,
    };
    wait_until_policies_answer(&e2e).unwrap_or_else(|e| panic!("{e}"));
    let warnings = type_check_warnings(&cluster).unwrap_or_else(|e| panic!("{e}"));

    let (count, mut failures) = run_scenarios(&e2e);
    let still_running = keeper.check_running().map_err(|e| e.to_string());
    let log = keeper.log_tail(60);
    let outage = keeper_outage(&e2e, &mut keeper);
    eprintln!(
        "{version}: {count} scenarios in policy mode, {} failed; keeper outage phase: {} failed",
        failures.len(),
        outage.len()
    );
    failures.extend(outage);
    if let Err(e) = still_running {
        failures.push(format!(
            "  the keeper stopped during the scenarios: {e}\n{log}"
        ));
    }
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

/// Merge-patches the spec `name` as the admin, which must be refused with `expected` in the
/// message.
fn refused_patch(
    cluster: &RealCluster,
    name: &str,
    patch: &str,
    expected: &str,
) -> Result<(), String> {
    let args = [
        "patch",
        "gmsacredentialspec",
        name,
        "--type=merge",
        "-p",
        patch,
    ];
    let out = cluster.kubectl(&args, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || !stderr.contains(expected) {
        return Err(format!(
            "{patch} was not refused with {expected:?}: {stderr}"
        ));
    }
    Ok(())
}

/// Retries `check` for up to 30 s; its last error otherwise.
fn eventually(mut check: impl FnMut() -> Result<(), String>) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match check() {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The keeper stopped: existing specs keep working; a spec created meanwhile is refused, never
/// admitted without contents; `credspec` cannot be edited; a deleted spec stays (terminating,
/// still inlined) and its name cannot be taken again; nobody but the keeper releases it. Once
/// the keeper is back, the new spec works, the deleted one goes, and its name can be created
/// again with other contents, which pods then get.
fn keeper_outage(e2e: &E2e, keeper: &mut ManagedProcess) -> Vec<String> {
    keeper.stop();
    let mut failures = Vec::new();
    let mut case = |name: &str, outcome: Result<(), String>| match outcome {
        Ok(()) => eprintln!("ok    {name}"),
        Err(problem) => {
            eprintln!("FAIL  {name}");
            failures.push(format!("  {name}: {problem}"));
        }
    };
    let cluster = e2e.cluster;
    let pod_naming = |pod: &str, spec: &str| {
        with_pod_gmsa(
            windows_pod(pod, Some("webapp")),
            json!({"gmsaCredentialSpecName": spec}),
        )
    };
    let kubectl = |args: &[&str]| cluster.kubectl_ok(args, None).map_err(|e| e.to_string());
    // gmsa-webapp2 created again under its name, with other contents.
    let replacement = || {
        credspec(
            "windows.k8s.io/v1",
            "gmsa-webapp2",
            "WebApp2",
            &["CONTOSO"],
            "Replaced",
        )
    };

    case(
        "keeper down: an existing spec still works",
        (|| {
            let stored = e2e.create_pod(&pod_naming("ns-outage-existing", "gmsa-webapp1"))?;
            same("contents", pod_contents(&stored), Some(WEBAPP1))
        })(),
    );

    let created = credspec(
        "windows.k8s.io/v1",
        "gmsa-outage",
        "Outage",
        &["CONTOSO"],
        "Outage",
    );
    let grant = json!({"apiVersion": "v1", "kind": "List", "items": [
        cluster_role_use("gmsa-outage-user", &["gmsa-outage"]),
        role_binding("gmsa-outage-users", "gmsa-outage-user", &["webapp"]),
    ]});
    let new_pod = pod_naming("ns-outage-new", "gmsa-outage");
    case(
        "keeper down: a spec created meanwhile gets the finalizer and is refused as not published",
        (|| {
            cluster
                .apply(&created.to_string())
                .map_err(|e| e.to_string())?;
            cluster
                .apply(&grant.to_string())
                .map_err(|e| e.to_string())?;
            let finalizers = spec(cluster, "gmsa-outage")?["metadata"]["finalizers"].clone();
            same(
                "finalizers",
                Some(&finalizers.to_string()),
                Some(&json!([FINALIZER]).to_string()),
            )?;
            let (code, answer) = e2e.post_pod(NS, &new_pod)?;
            same("status", Some(&code.to_string()), Some("422"))?;
            let expected = policy_message("cred spec gmsa-outage does not exist");
            if message(&answer).ends_with(&expected) {
                Ok(())
            } else {
                Err(format!("refused with {:?}", message(&answer)))
            }
        })(),
    );

    case(
        "keeper down: credspec cannot be edited",
        (|| {
            let rename =
                json!({"credspec": {"DomainJoinConfig": {"MachineAccountName": "Renamed"}}});
            refused_patch(
                cluster,
                "gmsa-webapp2",
                &rename.to_string(),
                "delete the spec and create it again",
            )?;
            let stored = e2e.create_pod(&pod_naming("ns-outage-unedited", "gmsa-webapp2"))?;
            same("contents", pod_contents(&stored), Some(WEBAPP2))
        })(),
    );

    case(
        "keeper down: a deleted spec stays, still inlined, and keeps its name",
        (|| {
            kubectl(&[
                "delete",
                "gmsacredentialspec",
                "gmsa-webapp2",
                "--wait=false",
            ])?;
            let stored = spec(cluster, "gmsa-webapp2")?;
            if stored["metadata"]["deletionTimestamp"].is_null() {
                return Err("the spec went without its contents being withdrawn".into());
            }
            let pod = e2e.create_pod(&pod_naming("ns-outage-terminating", "gmsa-webapp2"))?;
            same("contents", pod_contents(&pod), Some(WEBAPP2))?;
            let again = replacement();
            if cluster.apply(&again.to_string()).is_ok() {
                return Err(
                    "the name was taken again while the old contents were published".into(),
                );
            }
            refused_patch(
                cluster,
                "gmsa-webapp2",
                r#"{"metadata":{"finalizers":null}}"#,
                "only the GMSA keeper",
            )
        })(),
    );

    case(
        "keeper back: the new spec works, the deleted one goes, its name takes new contents",
        (|| {
            let mut restarted = start_keeper(cluster)?;
            let outcome = (|| {
                let (_, stored) = post_until(e2e, &new_pod, |code, _| code == 201)?;
                same("new spec's contents", pod_contents(&stored), Some(OUTAGE))?;
                eventually(|| match spec(cluster, "gmsa-webapp2") {
                    Err(e) if e.contains("NotFound") => Ok(()),
                    Err(e) => Err(e),
                    Ok(_) => Err("gmsa-webapp2 is still there".into()),
                })?;
                let again = replacement();
                cluster
                    .apply(&again.to_string())
                    .map_err(|e| e.to_string())?;
                let replaced = gmsa_core::canonical::to_go_json(&again["credspec"]);
                let (_, stored) = post_until(
                    e2e,
                    &pod_naming("ns-back-replaced", "gmsa-webapp2"),
                    |code, _| code == 201,
                )?;
                same("replaced contents", pod_contents(&stored), Some(&replaced))
            })();
            let log = restarted.log_tail(30);
            restarted.stop();
            outcome.map_err(|e| format!("{e}\n--- keeper log ---\n{log}"))
        })(),
    );
    failures
}
