//! The `crd` row: the GMSACredentialSpec CRD and the versions it serves; `crd-storage` when
//! specs may still be stored as `v1alpha1`.

use gmsa_core::names as core_names;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;

use super::fixes::Fixes;
use super::objects::get;
use super::report::Report;
use crate::storage::StoredVersions;

/// The CRD exists and serves `v1` as the storage version, and `v1alpha1` for older clients.
pub(super) async fn check(client: &Client, fixes: &Fixes, report: &mut Report) {
    let name = gmsa_deploy::crd::crd_name();
    let info = gmsa_deploy::Kind::CustomResourceDefinition.info();
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
            if let Ok(typed) = serde_json::from_value::<CustomResourceDefinition>(crd) {
                let stored = StoredVersions::of(&typed);
                if let Some(advice) = stored.advice() {
                    report.warn("crd-storage", &name, advice, storage_fix(&stored, fixes));
                }
            }
        }
    }
}

/// The `crd-storage` fix: `migrate-storage`, after an install in doctor's admission mode when
/// the CRD does not store `v1` yet (migrate-storage refuses to run before that).
fn storage_fix(stored: &StoredVersions, fixes: &Fixes) -> String {
    if stored.storage.as_deref() == Some(core_names::VERSION) {
        "kubectl gmsa migrate-storage".into()
    } else {
        format!("{}, then kubectl gmsa migrate-storage", fixes.reinstall())
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixes::tests::{accepted_by_install, install_commands, modes};
    use super::*;

    #[test]
    fn the_storage_fix_installs_in_doctors_mode_only_when_v1_is_not_stored() {
        for fixes in modes() {
            let migrated = StoredVersions {
                stored: vec!["v1alpha1".into(), "v1".into()],
                storage: Some("v1".into()),
            };
            assert_eq!(
                storage_fix(&migrated, &fixes),
                "kubectl gmsa migrate-storage"
            );
            let old = StoredVersions {
                stored: vec!["v1alpha1".into()],
                storage: Some("v1alpha1".into()),
            };
            let text = storage_fix(&old, &fixes);
            assert!(
                text.ends_with(", then kubectl gmsa migrate-storage"),
                "{text}"
            );
            let commands = install_commands(&text);
            assert_eq!(commands.len(), 1, "{text}");
            assert_eq!(accepted_by_install(&commands[0]), fixes.admission, "{text}");
        }
    }
}
