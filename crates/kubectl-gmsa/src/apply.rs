//! Server-side apply and deletion of rendered objects of any kind, with a kubectl-like line
//! per object that says whether anything changed (the resourceVersion moved) or not.

use std::fmt;

use anyhow::Context;
use gmsa_deploy::KindInfo;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::Client;
use serde_json::Value;

use crate::grant::FIELD_MANAGER;

/// What applying one object did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Configured,
    Unchanged,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
        })
    }
}

/// Applies and deletes with one client, field manager `kubectl-gmsa`.
#[derive(Clone)]
pub struct Applier {
    pub client: Client,
    pub server_dry_run: bool,
    pub force_conflicts: bool,
}

/// The API of a kind, in `namespace` when it is namespaced.
pub fn api(client: &Client, info: &KindInfo, namespace: Option<&str>) -> Api<DynamicObject> {
    let (group, version) = match info.api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", info.api_version),
    };
    let resource = ApiResource {
        group: group.to_string(),
        version: version.to_string(),
        api_version: info.api_version.to_string(),
        kind: info.kind.to_string(),
        plural: info.plural.to_string(),
    };
    match (info.namespaced, namespace) {
        (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, &resource),
        _ => Api::all_with(client.clone(), &resource),
    }
}

/// `kind.group/name`, as kubectl names objects.
pub fn display_name(info: &KindInfo, name: &str) -> String {
    let group = info.api_version.rsplit_once('/').map_or("", |(g, _)| g);
    if group.is_empty() {
        format!("{}/{name}", info.kind.to_ascii_lowercase())
    } else {
        format!("{}.{group}/{name}", info.kind.to_ascii_lowercase())
    }
}

fn object_name(object: &Value) -> (&str, Option<&str>) {
    let meta = &object["metadata"];
    (
        meta["name"].as_str().unwrap_or_default(),
        meta["namespace"].as_str(),
    )
}

/// Whether an API error means the kind itself is unknown to the server (a CRD not installed,
/// an API version it does not serve).
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 404)
}

impl Applier {
    fn params(&self, force: bool) -> PatchParams {
        let mut params = PatchParams::apply(FIELD_MANAGER);
        if self.server_dry_run {
            params = params.dry_run();
        }
        if force || self.force_conflicts {
            params = params.force();
        }
        params
    }

    /// The object as stored, if it exists.
    pub async fn get(
        &self,
        info: &KindInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> anyhow::Result<Option<Value>> {
        match api(&self.client, info, namespace).get_opt(name).await {
            Ok(found) => Ok(found.map(|o| serde_json::to_value(o).unwrap_or(Value::Null))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", display_name(info, name))),
        }
    }

    /// Applies one rendered object; returns what happened and the kubectl-like line.
    pub async fn apply(&self, object: &Value) -> anyhow::Result<(Outcome, String)> {
        self.apply_with(object, false).await
    }

    /// Applies one object, taking over fields other managers own whatever `force_conflicts`
    /// says: for objects that are ours by definition (the CRD a reference install applied
    /// client-side).
    pub async fn apply_forced(&self, object: &Value) -> anyhow::Result<(Outcome, String)> {
        self.apply_with(object, true).await
    }

    async fn apply_with(&self, object: &Value, force: bool) -> anyhow::Result<(Outcome, String)> {
        let info = gmsa_deploy::kind_info(object)
            .with_context(|| format!("no API known for {}", object["kind"]))?;
        let (name, namespace) = object_name(object);
        let before = self.get(info, namespace, name).await?;
        let applied = api(&self.client, info, namespace)
            .patch(name, &self.params(force), &Patch::Apply(object))
            .await
            .map_err(|e| explain(info, name, e))?;
        let outcome = match before {
            None => Outcome::Created,
            Some(before) => {
                let rv = |o: &Value| o["metadata"]["resourceVersion"].as_str().map(str::to_owned);
                if applied.metadata.resource_version == rv(&before) {
                    Outcome::Unchanged
                } else {
                    Outcome::Configured
                }
            }
        };
        let mut line = format!("{} {outcome}", display_name(info, name));
        if self.server_dry_run {
            line.push_str(" (server dry run)");
        }
        Ok((outcome, line))
    }

    /// Deletes one object if it exists; `Ok(None)` when there was nothing to delete.
    pub async fn delete(
        &self,
        info: &KindInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> anyhow::Result<Option<String>> {
        let params = DeleteParams {
            dry_run: self.server_dry_run,
            ..DeleteParams::background()
        };
        match api(&self.client, info, namespace)
            .delete(name, &params)
            .await
        {
            Ok(_) => {
                let mut line = format!("{} deleted", display_name(info, name));
                if self.server_dry_run {
                    line.push_str(" (server dry run)");
                }
                Ok(Some(line))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot delete {}", display_name(info, name))),
        }
    }
}

/// An apply error with what to do about it.
fn explain(info: &KindInfo, name: &str, e: kube::Error) -> anyhow::Error {
    let what = display_name(info, name);
    let hint = match &e {
        kube::Error::Api(s) if s.code == 404 && info.api_version.starts_with("cert-manager.io") => {
            ": cert-manager is not installed in this cluster (install it, or use --certs self-signed)"
        }
        kube::Error::Api(s) if s.code == 409 && s.message.contains("the object has been modified") => {
            ": it changed while install ran (the webhook's replicas renew the self-signed certificates); run install again"
        }
        kube::Error::Api(s) if s.code == 409 => {
            ": another field manager owns these fields; re-run with --force-conflicts to take them over"
        }
        kube::Error::Api(s) if s.code == 403 => ": your user may not do this; ask a cluster admin",
        _ => "",
    };
    anyhow::Error::new(e).context(format!("cannot apply {what}{hint}"))
}

pub fn is_crd(object: &Value) -> bool {
    object["kind"] == "CustomResourceDefinition"
}

pub fn is_webhook_config(object: &Value) -> bool {
    object["kind"]
        .as_str()
        .is_some_and(|k| k.ends_with("WebhookConfiguration"))
}

pub fn is_tls_secret(object: &Value) -> bool {
    object["kind"] == "Secret" && object["type"] == "kubernetes.io/tls"
}

/// Objects that are ours by definition are taken over from other field managers: the CRD
/// (a reference install may have applied it client-side, its fields then belong to
/// `kubectl-client-side-apply`), and the self-signed Secret and the webhook configurations,
/// whose certificate fields the replicas' renewal writes with updates. Everything else
/// conflicts unless `--force-conflicts`.
pub async fn apply_one(applier: &Applier, object: &Value) -> anyhow::Result<(Outcome, String)> {
    if is_crd(object) || is_tls_secret(object) || is_webhook_config(object) {
        applier.apply_forced(object).await
    } else {
        applier.apply(object).await
    }
}
