//! `credspec new|convert --apply`: the GMSACredentialSpec by server-side apply, then its
//! published contents annotations, so a spec the CLI creates works in policy mode before any
//! keeper runs. They are written as `gmsa-webhook --keep-published-contents` writes them:
//! decided by `gmsa_core::published` from the object the API server returned, in a merge patch
//! guarded by that object's resourceVersion.

use anyhow::{bail, Context};
use gmsa_core::names;
use gmsa_core::published::{publication, Publication};
use gmsa_kube::credential_spec_resource;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::Client;
use serde_json::Value;

use crate::args::ApplyArgs;
use crate::grant::FIELD_MANAGER;

/// How often a publication is decided again when the spec changed under it (409).
const ATTEMPTS: usize = 5;

/// Applies `resource` and publishes its contents; returns a kubectl-like line for each. A
/// server dry run publishes nothing: nothing was stored.
pub async fn apply(
    client: Client,
    resource: &Value,
    how: &ApplyArgs,
) -> anyhow::Result<Vec<String>> {
    let name = resource["metadata"]["name"].as_str().unwrap_or_default();
    let api: Api<DynamicObject> = Api::all_with(client, &credential_spec_resource());
    let mut params = PatchParams::apply(FIELD_MANAGER);
    if how.server_dry_run() {
        params = params.dry_run();
    }
    if how.force_conflicts {
        params = params.force();
    }
    let applied = api
        .patch(name, &params, &Patch::Apply(resource))
        .await
        .with_context(|| format!("cannot apply {} {name}", names::KIND))?;
    let shown = format!(
        "{}.{}/{name}",
        names::KIND.to_ascii_lowercase(),
        names::GROUP
    );
    if how.server_dry_run() {
        return Ok(vec![format!("{shown} serverside-applied (server dry run)")]);
    }
    let applied_line = format!("{shown} serverside-applied");
    let published = publish(&api, name, applied).await.with_context(|| {
        format!(
            "{applied_line}, but its published contents were not written: policy mode cannot \
             use it until they are (`gmsa-webhook --keep-published-contents` writes them too)"
        )
    })?;
    Ok(vec![applied_line, format!("{shown} {}", published.line)])
}

/// What [`publish`] did: whether it wrote, and the output line.
pub struct Published {
    pub written: bool,
    pub line: String,
}

/// Writes what `object`'s annotations need; on a conflict, decides again from the object as
/// stored now.
pub async fn publish(
    api: &Api<DynamicObject>,
    name: &str,
    mut object: DynamicObject,
) -> anyhow::Result<Published> {
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    for _ in 0..ATTEMPTS {
        let generation = object.metadata.generation.unwrap_or_default();
        let resource_version = object
            .metadata
            .resource_version
            .clone()
            .context("the API server returned the spec without a resourceVersion")?;
        let change = publication(&serde_json::to_value(&object)?)?;
        let Some(patch) = change.merge_patch(&resource_version) else {
            return Ok(Published {
                written: false,
                line: format!("contents already published (generation {generation})"),
            });
        };
        match api.patch(name, &params, &Patch::Merge(&patch)).await {
            Ok(_) => {
                let line = match change {
                    Publication::Withdraw => {
                        format!("published contents removed (generation {generation})")
                    }
                    _ => format!("contents published (generation {generation})"),
                };
                return Ok(Published {
                    written: true,
                    line,
                });
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                object = api.get(name).await.context("cannot read it again")?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    bail!("it changed {ATTEMPTS} times while its contents were being published")
}
