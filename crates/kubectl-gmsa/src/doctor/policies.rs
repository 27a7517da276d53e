//! Policy mode (`install --admission policies`): the `admission-policies` row (the three
//! policies and their bindings, on a server that has them), the `published-contents` row (every
//! spec's contents published for its current generation, or its pods are refused) and the
//! `keeper` row (the Deployment that publishes them has a ready replica).

use gmsa_core::published::{publication, Publication};
use gmsa_deploy::{policies, KubeVersion};
use gmsa_kube::credential_spec_resource;
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
                if bound.per_spec && spec["paramRef"]["selector"].is_null() {
                    problems.push(format!(
                        "{binding_kind} {policy} does not take every credential spec as a parameter"
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
            "a mutating and two validating policies, each bound; no webhook on the admission path"
                .into(),
        );
    }
    if let Some(specs) = published_contents(client, fixes, report).await {
        admission_cost(specs, fixes, report);
    }
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

/// Every spec with contents has them published for its generation; returns how many specs
/// there are, when they could be listed.
async fn published_contents(client: &Client, fixes: &Fixes, report: &mut Report) -> Option<usize> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &credential_spec_resource());
    let list = match api.list(&ListParams::default()).await {
        Ok(list) => list,
        Err(e) => {
            report.fail(
                "published-contents",
                "",
                format!("cannot list credential specs: {e}"),
                "check your permissions".into(),
            );
            return None;
        }
    };
    let mut current = 0;
    let mut stale = 0;
    for item in &list.items {
        let name = item.metadata.name.clone().unwrap_or_default();
        let object = serde_json::to_value(item).unwrap_or(Value::Null);
        match publication(&object) {
            Ok(Publication::Current) => current += 1,
            Ok(Publication::Publish { generation, .. }) => {
                stale += 1;
                report.fail(
                    "published-contents",
                    &name,
                    format!("contents not published for generation {generation}: pods naming {name} are refused"),
                    format!("is the keeper running (the keeper row)? `{}` publishes them too", fixes.reinstall()),
                );
            }
            Ok(Publication::Withdraw) => report.warn(
                "published-contents",
                &name,
                "no credspec, yet contents are published: the keeper removes them".into(),
                "is the keeper running (the keeper row)?".into(),
            ),
            Err(e) => report.fail(
                "published-contents",
                &name,
                e.to_string(),
                format!("fix the spec: kubectl edit gmsacredentialspec {name}"),
            ),
        }
    }
    if stale == 0 {
        report.pass(
            "published-contents",
            "",
            format!("{current} credential spec(s) published for their current generation"),
        );
    }
    Some(list.items.len())
}

/// The `admission-cost` row: whether the API server pays more for policy mode than it would
/// for the webhook, by how many specs each GMSA pod makes it evaluate.
fn admission_cost(specs: usize, fixes: &Fixes, report: &mut Report) {
    match policies::cost_warning(specs) {
        Some(warning) => report.warn(
            "admission-cost",
            "",
            warning,
            format!("switch to the webhook: {}", fixes.switch_to_webhook()),
        ),
        None => report.pass(
            "admission-cost",
            "",
            format!(
                "{specs} credential spec(s), within the {} where policy mode costs the API server at most about twice what the webhook does",
                policies::SPECS_WITHIN_TWICE_THE_WEBHOOK
            ),
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
            "no keeper Deployment: new or edited specs are never published, so their pods are refused".into(),
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
            format!("{ready} ready replica(s) publishing contents"),
        );
    } else {
        report.fail(
            "keeper",
            &format!("{ns}/{name}"),
            "no ready replica: specs created or edited now are refused until it runs (existing ones keep working)".into(),
            format!("kubectl -n {ns} describe deploy/{name}; kubectl -n {ns} logs deploy/{name}"),
        );
    }
}
