//! Server-side apply and deletion of rendered objects of any kind, with a kubectl-like line
//! per object that says whether anything changed (the resourceVersion moved) or not.

use std::fmt;

use anyhow::Context;
use gmsa_deploy::{removed_by, Admission, Kind, KindInfo, Object, ObjectRef, Removal, Settings};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::Client;
use serde_json::Value;

use crate::grant::FIELD_MANAGER;

/// The admission mode the install named `settings.name` runs in: policy mode when any of its
/// policies or bindings exists (a half-removed install's too), else the webhook. A server
/// without admission policies answers 404 for their kinds, which reads as none.
pub async fn installed_admission(
    client: &Client,
    settings: &Settings,
) -> Result<Admission, kube::Error> {
    for object in removed_by(settings, Removal::SwitchToWebhook) {
        let info = object.kind.info();
        match api(client, info, object.namespace())
            .get_opt(&object.name)
            .await
        {
            Ok(Some(_)) => return Ok(Admission::Policies),
            Ok(None) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Admission::Webhook)
}

/// Another install's admission in this cluster: a mutating webhook configuration or
/// admission policy labelled as ours, of an install with another `--name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherInstall {
    /// The object found, as `Kind name`.
    pub object: String,
    /// Its install's `--name`.
    pub name: String,
}

impl fmt::Display for OtherInstall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = &self.name;
        write!(
            f,
            "another GMSA admission install is in this cluster: {} (install --name {name}). Both \
             would answer every GMSA pod, and this one could not see its own admission take \
             effect. Change that install by running install with --name {name} (and its \
             --namespace), or remove it first: kubectl gmsa uninstall --name {name} (helm \
             uninstall for a chart release)",
            self.object
        )
    }
}

/// The first admission object of an install other than `settings.name`, if any. A server
/// without admission policies answers 404 for their kind, which reads as none.
pub async fn other_install(
    client: &Client,
    settings: &Settings,
) -> Result<Option<OtherInstall>, kube::Error> {
    let selector = format!(
        "{}={},{}!={}",
        gmsa_deploy::names::LABEL_NAME,
        gmsa_deploy::names::APP_NAME,
        gmsa_deploy::names::LABEL_INSTANCE,
        settings.name
    );
    for kind in [
        Kind::MutatingWebhookConfiguration,
        Kind::MutatingAdmissionPolicy,
    ] {
        let info = kind.info();
        let listed = match api(client, info, None)
            .list(&kube::api::ListParams::default().labels(&selector))
            .await
        {
            Ok(list) => list.items,
            Err(e) if is_not_found(&e) => continue,
            Err(e) => return Err(e),
        };
        if let Some(found) = listed.into_iter().next() {
            let labels = found.metadata.labels.unwrap_or_default();
            return Ok(Some(OtherInstall {
                object: format!("{} {}", info.kind, found.metadata.name.unwrap_or_default()),
                name: labels
                    .get(gmsa_deploy::names::LABEL_INSTANCE)
                    .cloned()
                    .unwrap_or_default(),
            }));
        }
    }
    Ok(None)
}

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
            Err(e) => Err(e).with_context(|| format!("cannot read {}", info.object_name(name))),
        }
    }

    /// Applies one rendered object; returns what happened and the kubectl-like line. Fields
    /// other managers own are taken over when the object says so ([`Object::take_over`]) or
    /// `force_conflicts` asks.
    pub async fn apply(&self, object: &Object) -> anyhow::Result<(Outcome, String)> {
        let ObjectRef {
            kind,
            namespace,
            name,
        } = &object.id;
        let info = kind.info();
        let namespace = namespace.as_deref();
        let before = self.get(info, namespace, name).await?;
        let applied = api(&self.client, info, namespace)
            .patch(
                name,
                &self.params(object.take_over),
                &Patch::Apply(&object.body),
            )
            .await
            .map_err(|e| explain(*kind, name, e))?;
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
        let mut line = format!("{} {outcome}", info.object_name(name));
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
                let mut line = format!("{} deleted", info.object_name(name));
                if self.server_dry_run {
                    line.push_str(" (server dry run)");
                }
                Ok(Some(line))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot delete {}", info.object_name(name))),
        }
    }
}

/// An apply error with what to do about it.
fn explain(kind: Kind, name: &str, e: kube::Error) -> anyhow::Error {
    let what = kind.info().object_name(name);
    let hint = match &e {
        kube::Error::Api(s) if s.code == 404 && matches!(kind, Kind::Issuer | Kind::Certificate) => {
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
