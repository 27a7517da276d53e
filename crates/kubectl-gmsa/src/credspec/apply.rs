//! `credspec new|convert --apply`: the GMSACredentialSpec by server-side apply. In policy mode
//! the keeper publishes its contents in the namespaces whose service accounts may use it.

use anyhow::Context;
use gmsa_core::names;
use gmsa_kube::credential_spec_resource;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::Client;
use serde_json::Value;

use crate::args::ApplyArgs;
use crate::grant::FIELD_MANAGER;

/// Applies `resource`; returns a kubectl-like line.
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
    api.patch(name, &params, &Patch::Apply(resource))
        .await
        .with_context(|| format!("cannot apply {} {name}", names::KIND))?;
    let shown = format!(
        "{}.{}/{name}",
        names::KIND.to_ascii_lowercase(),
        names::GROUP
    );
    let dry_run = if how.server_dry_run() {
        " (server dry run)"
    } else {
        ""
    };
    Ok(vec![format!("{shown} serverside-applied{dry_run}")])
}
