//! Credential specs stored as `v1alpha1`. A cluster that ran the reference webhook's early CRD
//! (where `v1alpha1` was the storage version) keeps those objects in etcd as `v1alpha1` until
//! each is written again, and the CRD's `status.storedVersions` lists `v1alpha1` until someone
//! says they are gone; a later CRD that stops serving `v1alpha1` is refused until then.
//! `install` and `doctor` report it; `migrate-storage` rewrites every spec through `v1` (a
//! no-op update, which the API server stores in the storage version) and then drops the
//! other versions from `storedVersions` through the CRD's status subresource.

use anyhow::{bail, Context as _};
use clap::Args;
use gmsa_core::names as core_names;
use gmsa_kube::credential_spec_resource;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams, TypeMeta};
use kube::Client;
use serde::Serialize;

use crate::apply::is_not_found;
use crate::cluster::{client, runtime};
use crate::exit::ExitStatus;

/// `migrate-storage`'s help.
pub const MIGRATE_STORAGE_EXAMPLES: &str = "\
Rewrites every GMSACredentialSpec through windows.k8s.io/v1 (an update that changes nothing,
which the API server stores as v1), then sets the CRD's status.storedVersions to [v1]. Safe to
run again: when only v1 is stored it says so and changes nothing. Needs update on
gmsacredentialspecs and on customresourcedefinitions/status. The webhook admits these updates
(the contents do not change), whatever today's checks say of the specs.

Examples:
  kubectl gmsa doctor                 # crd-storage: WARN when v1alpha1 is still stored
  kubectl gmsa migrate-storage";

/// `migrate-storage`.
#[derive(Debug, Args)]
pub struct MigrateStorageArgs {}

/// How many times one object is re-read and rewritten after a conflicting update.
const CONFLICT_RETRIES: usize = 5;

/// The versions the CRD's status says objects may be stored in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVersions {
    pub stored: Vec<String>,
    /// The version the CRD stores today (`spec.versions[].storage`).
    pub storage: Option<String>,
}

impl StoredVersions {
    /// Reads them from a CRD.
    pub fn of(crd: &CustomResourceDefinition) -> Self {
        Self {
            stored: crd
                .status
                .as_ref()
                .and_then(|s| s.stored_versions.clone())
                .unwrap_or_default(),
            storage: crd
                .spec
                .versions
                .iter()
                .find(|v| v.storage)
                .map(|v| v.name.clone()),
        }
    }

    /// Stored versions other than `v1`: objects may still be in etcd in those.
    pub fn stale(&self) -> Vec<&str> {
        self.stored
            .iter()
            .map(String::as_str)
            .filter(|v| *v != core_names::VERSION)
            .collect()
    }

    /// What `install` and `doctor` say when some specs may be stored in another version.
    pub fn advice(&self) -> Option<String> {
        let stale = self.stale();
        (!stale.is_empty()).then(|| {
            format!(
                "credential specs may still be stored as {} (the CRD's status.storedVersions is [{}]): a CRD that stops serving {} is refused until they are rewritten",
                stale.join(", "),
                self.stored.join(", "),
                stale.join(", ")
            )
        })
    }
}

/// The CRD's stored versions, or `None` when the CRD is not installed.
pub async fn read(client: &Client) -> anyhow::Result<Option<StoredVersions>> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    match crds.get(&gmsa_deploy::crd::crd_name()).await {
        Ok(crd) => Ok(Some(StoredVersions::of(&crd))),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e).context("cannot read the GMSACredentialSpec CRD"),
    }
}

/// `migrate-storage`.
pub fn migrate_storage(_args: &MigrateStorageArgs) -> anyhow::Result<ExitStatus> {
    let lines = runtime()?.block_on(async {
        let client = client().await?;
        migrate(&client).await
    })?;
    for line in lines {
        println!("{line}");
    }
    Ok(ExitStatus::Success)
}

#[derive(Debug, Serialize)]
struct StatusPatch<'a> {
    status: StoredVersionsPatch<'a>,
}

#[derive(Debug, Serialize)]
struct StoredVersionsPatch<'a> {
    #[serde(rename = "storedVersions")]
    stored_versions: [&'a str; 1],
}

async fn migrate(client: &Client) -> anyhow::Result<Vec<String>> {
    let crd_name = gmsa_deploy::crd::crd_name();
    let Some(before) = read(client).await? else {
        bail!("the CRD {crd_name} is not installed: nothing is stored");
    };
    if before.storage.as_deref() != Some(core_names::VERSION) {
        bail!(
            "the CRD stores {}, not {}: install again first (the fix of `kubectl gmsa doctor`'s crd-storage row, in this cluster's admission mode), then migrate-storage",
            before.storage.as_deref().unwrap_or("no version"),
            core_names::VERSION
        );
    }
    if before.stale().is_empty() {
        return Ok(vec![format!(
            "customresourcedefinition/{crd_name}: only {} is stored, nothing to migrate",
            core_names::VERSION
        )]);
    }
    let mut lines = Vec::new();
    let resource = credential_spec_resource();
    let specs: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let list = specs
        .list(&ListParams::default())
        .await
        .context("cannot list the credential specs")?;
    for item in list.items {
        let name = item.metadata.name.clone().unwrap_or_default();
        if rewrite(&specs, item, &resource).await? {
            lines.push(format!(
                "gmsacredentialspec/{name} rewritten as {}",
                core_names::VERSION
            ));
        }
    }
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let patch = StatusPatch {
        status: StoredVersionsPatch {
            stored_versions: [core_names::VERSION],
        },
    };
    crds.patch_status(&crd_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| {
            format!("cannot set status.storedVersions of {crd_name} (needs update on customresourcedefinitions/status); the specs are rewritten, run migrate-storage again")
        })?;
    lines.push(format!(
        "customresourcedefinition/{crd_name}: storedVersions [{}] -> [{}]",
        before.stored.join(", "),
        core_names::VERSION
    ));
    Ok(lines)
}

/// Writes one spec back unchanged through `v1`; `false` when it was deleted meanwhile.
async fn rewrite(
    specs: &Api<DynamicObject>,
    mut object: DynamicObject,
    resource: &kube::api::ApiResource,
) -> anyhow::Result<bool> {
    let name = object.metadata.name.clone().unwrap_or_default();
    for _ in 0..CONFLICT_RETRIES {
        object.types = Some(TypeMeta {
            api_version: resource.api_version.clone(),
            kind: resource.kind.clone(),
        });
        match specs.replace(&name, &PostParams::default(), &object).await {
            Ok(_) => return Ok(true),
            Err(e) if is_not_found(&e) => return Ok(false),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Changed since it was read: read it again and write that.
                match specs.get_opt(&name).await? {
                    Some(fresh) => object = fresh,
                    None => return Ok(false),
                }
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot rewrite gmsacredentialspec/{name}; storedVersions is left as it is, run migrate-storage again")
                })
            }
        }
    }
    bail!(
        "gmsacredentialspec/{name} kept changing while it was rewritten; run migrate-storage again"
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;

    fn versions(stored: &[&str], storage: &str) -> StoredVersions {
        StoredVersions {
            stored: stored.iter().map(|s| s.to_string()).collect(),
            storage: Some(storage.into()),
        }
    }

    #[test]
    fn only_v1_is_not_stale() {
        assert!(versions(&["v1"], "v1").stale().is_empty());
        assert_eq!(versions(&["v1"], "v1").advice(), None);
        let mixed = versions(&["v1alpha1", "v1"], "v1");
        assert_eq!(mixed.stale(), ["v1alpha1"]);
        assert_eq!(
            mixed.advice().unwrap(),
            "credential specs may still be stored as v1alpha1 (the CRD's status.storedVersions is [v1alpha1, v1]): a CRD that stops serving v1alpha1 is refused until they are rewritten"
        );
    }

    #[test]
    fn reads_the_rendered_crd() {
        let crd: CustomResourceDefinition =
            serde_json::from_value(gmsa_deploy::crd::custom_resource_definition()).unwrap();
        let read = StoredVersions::of(&crd);
        assert_eq!(read.storage.as_deref(), Some("v1"));
        assert!(read.stored.is_empty());
    }
}
