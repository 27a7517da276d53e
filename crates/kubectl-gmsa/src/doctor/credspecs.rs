//! The `credspec` row: the credential specs in the cluster, each checked as `credspec validate`
//! checks a file.

use std::collections::BTreeMap;

use gmsa_core::credspec::Problem;
use gmsa_core::names as core_names;
use gmsa_core::CredentialSpec;
use gmsa_kube::credential_spec_resource;
use kube::api::{Api, ListParams};
use kube::Client;
use serde_json::{json, Value};

use super::fixes::Fixes;
use super::report::{Report, Status};

/// Every GMSACredentialSpec passes `credspec validate`'s checks; the readable ones, by name, for
/// the pod checks.
pub(super) async fn check(
    client: &Client,
    fixes: &Fixes,
    report: &mut Report,
) -> BTreeMap<String, CredentialSpec> {
    let resource = credential_spec_resource();
    let api: Api<kube::api::DynamicObject> = Api::all_with(client.clone(), &resource);
    let mut specs = BTreeMap::new();
    let list = match api.list(&ListParams::default()).await {
        Ok(list) => list,
        Err(e) => {
            report.fail(
                "credspec",
                "",
                format!("cannot list credential specs: {e}"),
                format!("install the CRD: {}", fixes.reinstall()),
            );
            return specs;
        }
    };
    let mut bad = 0;
    let mut warned = 0;
    for item in list.items {
        let mut value = serde_json::to_value(&item).unwrap_or(Value::Null);
        value["apiVersion"] = json!(resource.api_version);
        value["kind"] = json!(core_names::KIND);
        let name = item.metadata.name.clone().unwrap_or_default();
        match judge(&name, &value, report) {
            Status::Fail => bad += 1,
            Status::Warn => warned += 1,
            Status::Pass => {}
        }
        if let Ok(spec) = CredentialSpec::from_resource(&value) {
            specs.insert(name, spec);
        }
    }
    if bad == 0 && warned == 0 {
        report.pass(
            "credspec",
            "",
            format!(
                "{} credential spec{}, all well formed",
                specs.len(),
                if specs.len() == 1 { "" } else { "s" }
            ),
        );
    }
    specs
}

/// The rows of one spec: a failure for its errors, a warning for its warnings, the same checks
/// as `credspec validate` and `/validate-credspec`. Returns the worst.
fn judge(name: &str, value: &Value, report: &mut Report) -> Status {
    let (warnings, problems): (Vec<Problem>, Vec<Problem>) = gmsa_core::credspec::validate(value)
        .into_iter()
        .partition(Problem::is_warning);
    let fix = format!("kubectl get gmsacredentialspec {name} -o yaml > {name}.yaml, fix it (kubectl gmsa credspec validate {name}.yaml), kubectl apply -f {name}.yaml");
    let text = |list: &[Problem]| {
        list.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    };
    let mut worst = Status::Pass;
    if !problems.is_empty() {
        report.fail("credspec", name, text(&problems), fix.clone());
        worst = Status::Fail;
    }
    if !warnings.is_empty() {
        report.warn("credspec", name, text(&warnings), fix);
        worst = worst.max(Status::Warn);
    }
    worst
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;
    use gmsa_testkit::credspecs::{mistakes, plugin_specs};

    #[test]
    fn each_mistake_is_a_failure_or_a_warning_with_its_message() {
        for mistake in mistakes() {
            let mut report = Report::default();
            let worst = judge(mistake.id, &mistake.spec, &mut report);
            let wanted = if mistake.refused {
                Status::Fail
            } else {
                Status::Warn
            };
            assert_eq!(worst, wanted, "{}", mistake.id);
            let row = report.findings.iter().find(|f| f.status == wanted).unwrap();
            for word in mistake.words {
                assert!(
                    row.detail.contains(word),
                    "{}: {word:?} not in {}",
                    mistake.id,
                    row.detail
                );
            }
        }
        for (plugin, spec) in plugin_specs() {
            let mut report = Report::default();
            assert_eq!(judge(plugin, &spec, &mut report), Status::Pass, "{plugin}");
            assert!(report.findings.is_empty());
        }
    }
}
