//! Policy mode on the current server: the admission policies `install --admission policies`
//! renders, no webhook process anywhere, and the keeper publishing each spec's contents. The
//! webhook tier's scenarios run unchanged (the few answers policies give differently are
//! listed in the README and asserted here), then the keeper is stopped.

use std::thread;
use std::time::{Duration, Instant};

use std::process::Command;

use gmsa_testkit::real_cluster::{ManagedProcess, RealCluster, ServerVersion, WEBHOOK_USER};
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
    manifest.admission.into_iter().map(|o| o.body).collect()
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
pub(super) fn type_check_warnings(cluster: &RealCluster) -> Result<Vec<String>, String> {
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

/// The spec as stored.
fn spec(cluster: &RealCluster, name: &str) -> Result<Value, String> {
    let json = cluster
        .kubectl_ok(&["get", "gmsacredentialspec", name, "-o", "json"], None)
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&json).map_err(|e| e.to_string())
}

/// Waits (30 s) until every spec's published contents are current.
fn wait_published(cluster: &RealCluster) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = cluster
            .kubectl_ok(&["get", "gmsacredentialspecs", "-o", "json"], None)
            .map_err(|e| e.to_string())?;
        let list: Value = serde_json::from_str(&list).map_err(|e| e.to_string())?;
        let pending: Vec<String> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|item| {
                !matches!(
                    gmsa_core::published::publication(item),
                    Ok(gmsa_core::published::Publication::Current)
                )
            })
            .map(|item| item["metadata"]["name"].to_string())
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("not published within 30 s: {}", pending.join(", ")));
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// The API server loads policies and their parameters asynchronously: probe until a pod
/// naming a spec is mutated and one naming no spec is refused by a policy (bounded).
pub(super) fn wait_until_policies_answer(e2e: &E2e) -> Result<(), String> {
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
    let mut keeper = start_keeper(&cluster).unwrap_or_else(|e| panic!("starting the keeper: {e}"));
    if let Err(e) = wait_published(&cluster) {
        panic!("{e}\n--- keeper log ---\n{}", keeper.log_tail(40));
    }
    install_policies(&cluster).unwrap_or_else(|e| panic!("installing the policies: {e}"));
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

/// Posts `pod` until `done` says the answer is the one awaited (30 s); every answer on the way
/// must be a refusal (`Err` otherwise): nothing is admitted early.
pub(super) fn post_until(
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

pub(super) fn message(answer: &Value) -> &str {
    answer["message"].as_str().unwrap_or_default()
}

/// The keeper stopped: existing specs keep working; a spec created meanwhile and a spec edited
/// by hand are refused with the keeper named, never admitted with missing or stale contents;
/// once the keeper is back, both work with their current contents.
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

    case(
        "keeper down: an existing spec still works",
        (|| {
            let stored = e2e.create_pod(&pod_naming("outage-existing", "gmsa-webapp1"))?;
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
    let new_pod = pod_naming("outage-new", "gmsa-outage");
    case(
        "keeper down: a spec created meanwhile is refused, pointing at doctor",
        (|| {
            cluster
                .apply(&created.to_string())
                .map_err(|e| e.to_string())?;
            cluster
                .apply(&grant.to_string())
                .map_err(|e| e.to_string())?;
            let (code, answer) = post_until(e2e, &new_pod, |_, a| {
                message(a).ends_with(&format!(
                    "cred spec gmsa-outage {}",
                    gmsa_deploy::policies::NOT_USABLE
                ))
            })?;
            same("status", Some(&code.to_string()), Some("422"))?;
            same(
                "published contents",
                spec(cluster, "gmsa-outage")?["metadata"]["annotations"]
                    [gmsa_core::published::CONTENTS_ANNOTATION]
                    .as_str(),
                None,
            )
            .map(|_| drop(answer))
        })(),
    );

    let rename =
        json!({"credspec": {"DomainJoinConfig": {"MachineAccountName": "WebApp2Renamed"}}});
    let mut edited_contents = String::new();
    let edited_pod = pod_naming("outage-edited", "gmsa-webapp2");
    let mut stale_preset = windows_pod("outage-stale-preset", Some("webapp"));
    stale_preset["spec"]["containers"] = json!([container(
        "app",
        Some(json!({"gmsaCredentialSpecName": "gmsa-webapp2", "gmsaCredentialSpec": WEBAPP2}))
    )]);
    case(
        "keeper down: a spec edited by hand is never inlined with its old contents",
        (|| {
            cluster
                .kubectl_ok(
                    &[
                        "patch",
                        "gmsacredentialspec",
                        "gmsa-webapp2",
                        "--type=merge",
                        "-p",
                        &rename.to_string(),
                    ],
                    None,
                )
                .map_err(|e| e.to_string())?;
            let stored = spec(cluster, "gmsa-webapp2")?;
            edited_contents = gmsa_core::canonical::to_go_json(&stored["credspec"]);
            let generation = stored["metadata"]["generation"].clone();
            // Left without contents, the pod is refused by the per-request policy; with the
            // old contents pre-set, by the per-spec one, which names the generation.
            let unusable = format!(
                "cred spec gmsa-webapp2 {}",
                gmsa_deploy::policies::NOT_USABLE
            );
            post_until(e2e, &edited_pod, |_, a| message(a).ends_with(&unusable))?;
            let expected = format!("the contents of cred spec gmsa-webapp2 are not published for its generation {generation}");
            post_until(e2e, &stale_preset, |_, a| message(a).contains(&expected)).map(|_| ())
        })(),
    );

    case(
        "keeper back: both specs work with their current contents",
        (|| {
            let mut restarted = start_keeper(cluster)?;
            let outcome = (|| {
                let (_, stored) = post_until(e2e, &new_pod, |code, _| code == 201)?;
                same("new spec's contents", pod_contents(&stored), Some(OUTAGE))?;
                let (_, stored) = post_until(e2e, &edited_pod, |code, _| code == 201)?;
                same(
                    "edited spec's contents",
                    pod_contents(&stored),
                    Some(&edited_contents),
                )
            })();
            let log = restarted.log_tail(30);
            restarted.stop();
            outcome.map_err(|e| format!("{e}\n--- keeper log ---\n{log}"))
        })(),
    );
    failures
}
