//! The `credspec` row: the credential specs in the cluster, each checked as `credspec validate`
//! checks a file.

use std::collections::BTreeMap;

use gmsa_core::names as core_names;
use gmsa_core::CredentialSpec;
use kube::api::{Api, ListParams};
use kube::Client;
use serde_json::{json, Value};

use super::fixes::Fixes;
use super::report::Report;
use crate::cluster::credential_spec_resource;

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
    for item in list.items {
        let mut value = serde_json::to_value(&item).unwrap_or(Value::Null);
        value["apiVersion"] = json!(resource.api_version);
        value["kind"] = json!(core_names::KIND);
        let name = item.metadata.name.clone().unwrap_or_default();
        let problems = gmsa_core::credspec::validate(&value);
        if !problems.is_empty() {
            bad += 1;
            let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
            report.fail(
                "credspec",
                &name,
                text.join("; "),
                format!("kubectl get gmsacredentialspec {name} -o yaml > {name}.yaml, fix it (kubectl gmsa credspec validate {name}.yaml), kubectl apply -f {name}.yaml"),
            );
        }
        if let Ok(spec) = CredentialSpec::from_resource(&value) {
            specs.insert(name, spec);
        }
    }
    if bad == 0 {
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
