//! `credspec new|convert --apply`: the GMSACredentialSpec by server-side apply, then its
//! published contents annotations, so a spec the CLI creates works in policy mode before any
//! keeper runs. They are written by the writer `gmsa-webhook --keep-published-contents` uses
//! ([`gmsa_kube::published`]), re-reading the spec when it changed under the write.

use anyhow::Context;
use gmsa_core::names;
use gmsa_kube::credential_spec_resource;
use gmsa_kube::published::{ContentsWriter, OnConflict, Outcome, PublishError};
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
    let published = publish(&api, applied).await.with_context(|| {
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
pub async fn publish(api: &Api<DynamicObject>, object: DynamicObject) -> anyhow::Result<Published> {
    let writer = ContentsWriter::new(
        api.clone(),
        FIELD_MANAGER,
        OnConflict::Reread { attempts: ATTEMPTS },
    );
    let published = writer.publish(object).await.map_err(|e| match e {
        // The API server's error as kube reported it: install looks for it in the chain.
        PublishError::Write(e) => anyhow::Error::from(e),
        other => other.into(),
    })?;
    let generation = published.generation.unwrap_or_default();
    Ok(match published.outcome {
        Outcome::Current => Published {
            written: false,
            line: format!("contents already published (generation {generation})"),
        },
        Outcome::Published => Published {
            written: true,
            line: format!("contents published (generation {generation})"),
        },
        Outcome::Withdrawn => Published {
            written: true,
            line: format!("published contents removed (generation {generation})"),
        },
    })
}
