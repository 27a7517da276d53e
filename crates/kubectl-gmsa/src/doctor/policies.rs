//! Policy mode (`install --admission policies`): the `admission-policies` row (the policies
//! and their bindings, on a server that has them), the `published-contents` row (every
//! namespace's object holds what the keeper would write now, or pods naming a spec just
//! created or granted are refused), the `admission-cost` row (the largest namespace object)
//! and the `keeper` row (the Deployment that writes them has a ready replica).

use gmsa_core::contents::Step;
use gmsa_deploy::{policies, KubeVersion};
use gmsa_kube::contents::ContentsKeeper;
use kube::api::{Api, DynamicObject, ListParams};
use kube::Client;
use serde_json::Value;

use super::fixes::Fixes;
use super::objects::get;
use super::report::Report;

pub(super) async fn check(
    client: &Client,
    name: &str,
    version: KubeVersion,
    fixes: &Fixes,
    report: &mut Report,
) {
    let install = fixes.reinstall();
    if !version.at_least(KubeVersion::ADMISSION_POLICIES) {
        report.fail(
            "admission-policies",
            name,
            format!("Kubernetes {version} has no admission policies v1 (1.36+)"),
            "upgrade the control plane, or kubectl gmsa install --admission webhook --apply".into(),
        );
    }
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    for bound in policies::bound(name) {
        let (policy_info, binding_info) = (bound.policy.info(), bound.binding.info());
        let (policy_kind, binding_kind) = (policy_info.kind, binding_info.kind);
        let policy = bound.name.as_str();
        match get(client, policy_info, None, policy).await {
            Ok(Some(found)) => warnings.extend(type_check_warnings(policy, &found)),
            Ok(None) => problems.push(format!("{policy_kind} {policy} missing")),
            Err(e) => problems.push(e),
        }
        match get(client, binding_info, None, policy).await {
            Ok(Some(found)) => {
                let spec = &found["spec"];
                if spec["policyName"].as_str() != Some(policy) {
                    problems.push(format!(
                        "{binding_kind} {policy} binds {}",
                        spec["policyName"]
                    ));
                }
                if bound.reads_contents && spec["paramRef"]["name"].as_str() != Some(name) {
                    problems.push(format!(
                        "{binding_kind} {policy} does not read the namespace's GMSANamespaceContents {name}"
                    ));
                }
            }
            Ok(None) => problems.push(format!(
                "{binding_kind} {policy} missing: the policy is never evaluated"
            )),
            Err(e) => problems.push(e),
        }
    }
    if !problems.is_empty() {
        report.fail(
            "admission-policies",
            name,
            problems.join("; "),
            install.clone(),
        );
    } else if !warnings.is_empty() {
        report.warn(
            "admission-policies",
            name,
            warnings.join("; "),
            format!("reinstall with this kubectl-gmsa's version: {install}"),
        );
    } else {
        report.pass(
            "admission-policies",
            name,
            "the pod, spec and finalizer policies, each bound; no webhook on the admission path"
                .into(),
        );
    }
    published_contents(client, name, fixes, report).await;
    keeper(client, name, fixes, report).await;
}

/// What the API server's type check said about a policy's CEL (VAPs report it in status).
fn type_check_warnings(policy: &str, found: &Value) -> Vec<String> {
    found["status"]["typeChecking"]["expressionWarnings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| format!("{policy} {}: {}", w["fieldRef"], w["warning"]))
        .collect()
}

/// Above this size a namespace's object nears etcd's limit on one object (1.5 MiB by
/// default), past which the keeper cannot write it.
const LARGE_OBJECT_BYTES: usize = 1024 * 1024;

/// Every namespace's object holds what the keeper would write now; the largest one's size.
async fn published_contents(client: &Client, name: &str, fixes: &Fixes, report: &mut Report) {
    let keeper = ContentsKeeper::new(client.clone(), name, &fixes.namespace);
    let observed = match keeper.observe().await {
        Ok(observed) => observed,
        Err(e) => {
            report.fail(
                "published-contents",
                "",
                e.to_string(),
                format!(
                    "check your permissions, or install again: {}",
                    fixes.reinstall()
                ),
            );
            return;
        }
    };
    let steps = observed.plan();
    let count = |f: fn(&Step) -> bool| steps.iter().filter(|s| f(s)).count();
    let unfinalized = count(|s| matches!(s, Step::Finalize(_)));
    let namespaces = count(|s| matches!(s, Step::Write { .. } | Step::Delete(_)));
    let held = count(|s| matches!(s, Step::Release(_)));
    let listing = count(|s| matches!(s, Step::List(_)));
    if steps.is_empty() {
        report.pass(
            "published-contents",
            "",
            format!(
                "{} namespace(s) hold the contents of the specs their service accounts may use ({} spec(s) in all)",
                observed.stored.objects.len(),
                observed.specs.len()
            ),
        );
    } else {
        let mut behind = Vec::new();
        if unfinalized > 0 {
            behind.push(format!(
                "{unfinalized} spec(s) without the finalizer (refused until the keeper adds it)"
            ));
        }
        if namespaces > 0 {
            behind.push(format!("{namespaces} namespace(s) whose contents are not current (a spec just created or granted is refused there)"));
        }
        if listing > 0 {
            behind.push(
                "the -elsewhere binding does not list the namespaces that hold contents".into(),
            );
        }
        if held > 0 {
            behind.push(format!(
                "{held} deleted spec(s) kept until the keeper releases them"
            ));
        }
        report.fail(
            "published-contents",
            "",
            behind.join("; "),
            "is the keeper running (the keeper row)?".into(),
        );
    }
    admission_cost(&observed.stored.objects, fixes, report);
}

/// The `admission-cost` row: a GMSA pod costs the API server one read of its namespace's
/// object, whatever the number of specs; only that object's size can grow, with the specs its
/// service accounts may use (every spec, with a grant of every spec to every account).
fn admission_cost(
    objects: &std::collections::BTreeMap<String, gmsa_core::contents::Entries>,
    fixes: &Fixes,
    report: &mut Report,
) {
    let size = |entries: &gmsa_core::contents::Entries| {
        entries
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
    };
    let largest = objects.iter().max_by_key(|(_, entries)| size(entries));
    match largest {
        Some((namespace, entries)) if size(entries) > LARGE_OBJECT_BYTES => report.warn(
            "admission-cost",
            namespace,
            format!(
                "its published contents hold {} spec(s), {} KiB, near etcd's 1.5 MiB limit on one object: a grant of many specs to its service accounts (or of every spec, to every account) puts them all there",
                entries.len(),
                size(entries) / 1024
            ),
            format!("grant fewer specs there (kubectl gmsa doctor lists the grants), or switch to the webhook: {}", fixes.switch_to_webhook()),
        ),
        Some((namespace, entries)) => report.pass(
            "admission-cost",
            "",
            format!(
                "a GMSA pod costs the API server one read of its namespace's contents, whatever the number of specs; the largest, {namespace}'s, holds {} spec(s)",
                entries.len()
            ),
        ),
        None => report.pass(
            "admission-cost",
            "",
            "no namespace holds published contents yet".into(),
        ),
    }
}

/// The keeper Deployment (found by install's labels, in whatever namespace) is available.
async fn keeper(client: &Client, name: &str, fixes: &Fixes, report: &mut Report) {
    let api: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &kube::api::ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&()),
    );
    let selector = gmsa_deploy::selector(&gmsa_deploy::Settings {
        name: name.to_string(),
        ..gmsa_deploy::Settings::default()
    });
    let found = match api.list(&ListParams::default().labels(&selector)).await {
        Ok(list) => list.items,
        Err(e) => {
            report.warn(
                "keeper",
                name,
                format!("cannot list Deployments: {e}"),
                "check your permissions".into(),
            );
            return;
        }
    };
    let Some(deployment) = found.first() else {
        report.fail(
            "keeper",
            name,
            "no keeper Deployment: specs created or granted from now on are never published, so their pods are refused, and deleted specs are never released".into(),
            fixes.reinstall(),
        );
        return;
    };
    let value = serde_json::to_value(deployment).unwrap_or(Value::Null);
    let ns = deployment.metadata.namespace.clone().unwrap_or_default();
    let ready = value["status"]["readyReplicas"].as_i64().unwrap_or(0);
    if ready > 0 {
        report.pass(
            "keeper",
            &format!("{ns}/{name}"),
            format!("{ready} ready replica(s) keeping the published contents"),
        );
    } else {
        report.fail(
            "keeper",
            &format!("{ns}/{name}"),
            "no ready replica: specs created or granted now are refused until it runs, and deleted ones stay (existing grants keep working)".into(),
            format!("kubectl -n {ns} describe deploy/{name}; kubectl -n {ns} logs deploy/{name}"),
        );
    }
}
