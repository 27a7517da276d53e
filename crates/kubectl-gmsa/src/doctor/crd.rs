//! The `crd` row: the GMSACredentialSpec CRD and the versions it serves; `crd-storage` when
//! specs may still be stored as `v1alpha1`.

use gmsa_core::names as core_names;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;

use super::objects::get;
use super::report::Report;
use crate::cluster::kind;
use crate::storage::StoredVersions;

/// The CRD exists and serves `v1` as the storage version, and `v1alpha1` for older clients.
pub(super) async fn check(client: &Client, report: &mut Report) {
    let name = gmsa_deploy::crd::crd_name();
    let info = kind("apiextensions.k8s.io/v1", "CustomResourceDefinition");
    let install = "kubectl gmsa install --apply".to_string();
    match get(client, info, None, &name).await {
        Err(e) => report.fail(
            "crd",
            &name,
            e,
            "check your permissions: `kubectl auth can-i get crd`".into(),
        ),
        Ok(None) => report.fail(
            "crd",
            &name,
            "the CRD is not installed: no GMSACredentialSpec can exist".into(),
            install,
        ),
        Ok(Some(crd)) => {
            let versions = crd["spec"]["versions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let find = |v: &str| versions.iter().find(|x| x["name"] == v).cloned();
            match (find(core_names::VERSION), find(core_names::VERSION_ALPHA)) {
                (Some(v1), Some(alpha)) if v1["served"] == true && v1["storage"] == true && alpha["served"] == true => {
                    report.pass("crd", &name, "serves v1 (storage) and v1alpha1".into());
                }
                (Some(v1), _) if v1["served"] == true => report.warn(
                    "crd",
                    &name,
                    "v1 is served but v1alpha1 is not (or v1 is not the storage version): clients still on v1alpha1 fail".into(),
                    install,
                ),
                _ => report.fail("crd", &name, "v1 is not served: the webhook reads windows.k8s.io/v1".into(), install),
            }
            if let Ok(typed) = serde_json::from_value::<CustomResourceDefinition>(crd) {
                if let Some(advice) = StoredVersions::of(&typed).advice() {
                    report.warn(
                        "crd-storage",
                        &name,
                        advice,
                        "kubectl gmsa migrate-storage".into(),
                    );
                }
            }
        }
    }
}
