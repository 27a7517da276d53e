//! The pod rows (`pod`, `pod-spec-exists`, `pod-grant`, `pod-contents`, `pod-windows`,
//! `pod-hostname`): for each pod that names a credential spec, what the API server and the node
//! will need.

use std::collections::{BTreeMap, HashMap};

use gmsa_core::names as core_names;
use gmsa_core::pod::Pod;
use gmsa_core::CredentialSpec;
use kube::api::{Api, ListParams, PostParams};
use kube::Client;
use serde_json::{json, Value};

use super::args::DoctorArgs;
use super::fixes::Fixes;
use super::hostnames::{conflict, HostPod};
use super::report::{Report, Status};
use crate::apply::api;

/// Pods are read, never rendered, so `gmsa_deploy::Kind` does not list them.
const POD: gmsa_deploy::KindInfo = gmsa_deploy::KindInfo {
    api_version: "v1",
    kind: "Pod",
    plural: "pods",
    namespaced: true,
};

/// A pod worth checking, kept for the node steps.
pub(super) struct CheckedPod {
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) container: Option<String>,
    pub(super) spec: Option<String>,
}

fn windows_targeted(pod: &Value) -> bool {
    let spec = &pod["spec"];
    if spec["nodeSelector"]["kubernetes.io/os"] == "windows" {
        return true;
    }
    let terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    !terms.is_empty()
        && terms.iter().all(|term| {
            term["matchExpressions"].as_array().is_some_and(|exprs| {
                exprs.iter().any(|e| {
                    e["key"] == "kubernetes.io/os"
                        && e["operator"] == "In"
                        && e["values"]
                            .as_array()
                            .is_some_and(|v| v.len() == 1 && v[0] == "windows")
                })
            })
        })
}

/// Each selected pod: its specs exist, its service account may use them, their contents were
/// inlined and are current, it targets Windows, and its NetBIOS name is its own.
pub(super) async fn check(
    client: &Client,
    args: &DoctorArgs,
    specs: &BTreeMap<String, CredentialSpec>,
    fixes: &Fixes,
    report: &mut Report,
) -> Vec<CheckedPod> {
    let pods_api = |ns: Option<&str>| api(client, &POD, ns);
    let all: Vec<Value> = match pods_api(None).list(&ListParams::default()).await {
        Ok(list) => list
            .items
            .iter()
            .filter_map(|p| serde_json::to_value(p).ok())
            .collect(),
        Err(e) => {
            report.fail(
                "pod",
                "",
                format!("cannot list pods: {e}"),
                "run doctor as a user who may list pods".into(),
            );
            return Vec::new();
        }
    };
    let mentions = |p: &Value| Pod::from_json(&p.to_string()).is_ok_and(|pod| pod.mentions_gmsa());
    let selected: Vec<&Value> = match &args.pod {
        Some(name) => {
            let ns = args.namespace.as_deref().unwrap_or("default");
            match all.iter().find(|p| {
                p["metadata"]["name"] == name.as_str() && p["metadata"]["namespace"] == ns
            }) {
                Some(p) => vec![p],
                None => {
                    report.fail(
                        "pod",
                        &format!("{ns}/{name}"),
                        "no such pod".into(),
                        format!("kubectl get pods -n {ns}"),
                    );
                    return Vec::new();
                }
            }
        }
        None => all
            .iter()
            .filter(|p| {
                args.namespace
                    .as_deref()
                    .is_none_or(|ns| p["metadata"]["namespace"] == ns)
            })
            .filter(|p| mentions(p))
            .collect(),
    };
    if selected.is_empty() {
        report.pass("pod", "", "no pod names a credential spec".into());
        return Vec::new();
    }
    // Live pods that name a credential spec, across the cluster, for their host names.
    let live: Vec<HostPod> = all
        .iter()
        .filter_map(|p| {
            let pod = Pod::from_json(&p.to_string()).ok()?;
            let mut names: Vec<String> = pod
                .places()
                .filter_map(|pl| pl.options.gmsa_credential_spec_name.clone())
                .collect();
            names.sort();
            names.dedup();
            let subject = format!(
                "{}/{}",
                p["metadata"]["namespace"].as_str().unwrap_or_default(),
                pod.name()
            );
            HostPod::live(subject, p, names)
        })
        .collect();
    let mut reviews: HashMap<(String, String, String), Review> = HashMap::new();
    let mut checked = Vec::new();
    for p in selected {
        let ns = p["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let Ok(pod) = Pod::from_json(&p.to_string()) else {
            continue;
        };
        let subject = format!("{ns}/{}", pod.name());
        let sa = match pod.service_account_name() {
            "" => core_names::DEFAULT_SERVICE_ACCOUNT,
            sa => sa,
        }
        .to_string();
        let before = report.findings.len();
        let mut first_spec = None;
        let first_container = p["spec"]["containers"][0]["name"]
            .as_str()
            .map(str::to_owned);
        if !pod.mentions_gmsa() {
            report.warn(
                "pod",
                &subject,
                "the pod names no credential spec".into(),
                "set securityContext.windowsOptions.gmsaCredentialSpecName".into(),
            );
        }
        let mut seen_specs = Vec::new();
        for place in pod.places() {
            let Some(spec_name) = place.options.gmsa_credential_spec_name.clone() else {
                if place.options.gmsa_credential_spec.is_some() {
                    report.fail("pod-contents", &subject, format!("{} {:?} has credential-spec contents without a name", place.kind, place.owner), "name the GMSACredentialSpec in gmsaCredentialSpecName and recreate the pod".into());
                }
                continue;
            };
            first_spec.get_or_insert(spec_name.clone());
            let where_ = format!("{} {:?}", place.kind, place.owner);
            let Some(spec) = specs.get(&spec_name) else {
                report.fail(
                    "pod-spec-exists",
                    &subject,
                    format!("{where_} names {spec_name}, which does not exist"),
                    format!(
                        "create it: kubectl gmsa credspec new {spec_name} ... | kubectl apply -f -"
                    ),
                );
                continue;
            };
            if !seen_specs.contains(&spec_name) {
                seen_specs.push(spec_name.clone());
                let key = (ns.clone(), sa.clone(), spec_name.clone());
                if !reviews.contains_key(&key) {
                    let answer = review(client, &ns, &sa, &spec_name).await;
                    reviews.insert(key.clone(), answer);
                }
                match &reviews[&key] {
                    Ok((true, _)) => {}
                    Ok((false, reason)) => report.fail(
                        "pod-grant",
                        &subject,
                        format!(
                            "service account {ns}/{sa} may not use {spec_name}{}",
                            if reason.is_empty() {
                                String::new()
                            } else {
                                format!(" ({reason})")
                            }
                        ),
                        format!(
                            "kubectl gmsa grant {spec_name} --service-account {ns}:{sa} --apply"
                        ),
                    ),
                    Err(e) => report.warn(
                        "pod-grant",
                        &subject,
                        format!("cannot ask whether {ns}/{sa} may use {spec_name}: {e}"),
                        "run doctor as a user who may create subjectaccessreviews".into(),
                    ),
                }
            }
            let recreate = format!("kubectl -n {ns} delete pod {} (its controller recreates it with the current contents)", pod.name());
            match (&place.options.gmsa_credential_spec, spec.contents()) {
                (None, _) => report.fail("pod-contents", &subject, format!("{where_}: the contents of {spec_name} were never inlined (the webhook did not see this pod)"), format!("check the webhook rows above, then {recreate}")),
                (Some(_), None) => report.fail("pod-contents", &subject, format!("{spec_name} has no credspec key"), format!("kubectl edit gmsacredentialspec {spec_name}")),
                (Some(contents), Some(expected)) => match expected.matches(contents) {
                    Ok(true) => {}
                    Ok(false) | Err(_) => report.fail("pod-contents", &subject, format!("{where_}: the inlined contents differ from {spec_name} (it changed after the pod was created)"), recreate),
                },
            }
        }
        if !windows_targeted(p) {
            report.warn(
                "pod-windows",
                &subject,
                "the pod does not select Windows nodes (nodeSelector kubernetes.io/os: windows)"
                    .into(),
                "add nodeSelector: {kubernetes.io/os: windows} to the pod template".into(),
            );
        }
        if let Some(this) = live.iter().find(|h| h.subject == subject) {
            for spec_name in &seen_specs {
                match conflict(this, spec_name, &live, fixes) {
                    Some((Status::Fail, detail, fix)) => {
                        report.fail("pod-hostname", &subject, detail, fix)
                    }
                    Some((_, detail, fix)) => report.warn("pod-hostname", &subject, detail, fix),
                    None => {}
                }
            }
        }
        if report.findings.len() == before {
            report.pass(
                "pod",
                &subject,
                format!(
                    "uses {}: exists, granted to {sa}, inlined and current, targets Windows",
                    seen_specs.join(", ")
                ),
            );
        }
        checked.push(CheckedPod {
            namespace: ns,
            name: pod.name().to_string(),
            container: first_container,
            spec: first_spec,
        });
    }
    checked
}

/// A SubjectAccessReview's answer (allowed, reason), or why it could not be asked.
type Review = Result<(bool, String), String>;

/// A SubjectAccessReview: may this service account `use` this credential spec?
async fn review(client: &Client, namespace: &str, service_account: &str, spec: &str) -> Review {
    let body = json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": core_names::service_account_user(namespace, service_account),
            "groups": core_names::service_account_groups(namespace),
            "resourceAttributes": {
                "namespace": namespace,
                "verb": core_names::USE_VERB,
                "group": core_names::GROUP,
                "version": core_names::VERSION,
                "resource": core_names::RESOURCE,
                "name": spec
            }
        }
    });
    let review: k8s_openapi::api::authorization::v1::SubjectAccessReview =
        serde_json::from_value(body).map_err(|e| e.to_string())?;
    let api: Api<k8s_openapi::api::authorization::v1::SubjectAccessReview> =
        Api::all(client.clone());
    let answer = api
        .create(&PostParams::default(), &review)
        .await
        .map_err(|e| e.to_string())?;
    let status = answer.status.ok_or("no status in the answer")?;
    Ok((status.allowed, status.reason.unwrap_or_default()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn windows_targeting_by_selector_or_affinity() {
        assert!(windows_targeted(
            &json!({"spec": {"nodeSelector": {"kubernetes.io/os": "windows"}}})
        ));
        assert!(!windows_targeted(&json!({"spec": {}})));
        let affinity = json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["windows"]}]}]}}}}});
        assert!(windows_targeted(&affinity));
    }
}
