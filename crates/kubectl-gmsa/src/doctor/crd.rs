//! The `crd` row: the GMSACredentialSpec CRD and the versions it serves.

use gmsa_core::names as core_names;
use kube::Client;

use super::fixes::Fixes;
use super::objects::get;
use super::report::Report;
use crate::cluster::kind;

/// The CRD exists and serves `v1` as the storage version, and `v1alpha1` for older clients.
pub(super) async fn check(client: &Client, fixes: &Fixes, report: &mut Report) {
    let name = gmsa_deploy::crd::crd_name();
    let info = kind("apiextensions.k8s.io/v1", "CustomResourceDefinition");
    let install = fixes.reinstall();
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
        }
    }
}
