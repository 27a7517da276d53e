//! What is left of a reference install (kubernetes-sigs/windows-gmsa): its webhook
//! configurations and the Service and Deployment they call. `install` says so and can retire
//! them (`--retire-reference`), and `doctor` warns while they remain, because a pod then goes
//! through two webhooks and, with the reference down, is refused whatever ours says.
//!
//! The reference is recognised by the one webhook name both its deploy script and its chart
//! give every webhook; the object names are the user's choice there (`gmsa-webhook` by
//! default), so they identify nothing.
//!
//! Our own earlier installs left something similar: webhook configurations under the name
//! they had before (`<name>`), which [`remove_superseded`] deletes.

use std::fmt::Write as _;

use anyhow::Context;
use gmsa_deploy::Kind;
use kube::api::ListParams;
use kube::Client;
use serde_json::Value;

use crate::apply::{api, Applier};

/// The webhook name every reference webhook configuration uses.
pub const REFERENCE_WEBHOOK: &str = "admission-webhook.windows-gmsa.sigs.k8s.io";

/// One object of the reference install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub kind: Kind,
    pub namespace: Option<String>,
    pub name: String,
}

impl Leftover {
    /// `kind.group/name`, as kubectl names it.
    pub fn display(&self) -> String {
        let name = self.kind.info().object_name(&self.name);
        match &self.namespace {
            Some(ns) => format!("{name} in namespace {ns}"),
            None => name,
        }
    }

    fn delete_command(&self) -> String {
        let kind = self.kind.info().object_name(&self.name);
        match &self.namespace {
            Some(ns) => format!("kubectl -n {ns} delete {kind}"),
            None => format!("kubectl delete {kind}"),
        }
    }
}

/// The reference install's webhook configurations, and the Services and Deployments they
/// call, in the order to remove them (configurations first, so no pod waits on a webhook
/// being removed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReferenceInstall {
    pub objects: Vec<Leftover>,
}

/// Whether a webhook configuration holds a reference webhook.
pub fn is_reference_configuration(configuration: &Value) -> bool {
    configuration["webhooks"]
        .as_array()
        .is_some_and(|hooks| hooks.iter().any(|h| h["name"] == REFERENCE_WEBHOOK))
}

/// The Services (namespace, name) the reference webhooks of `configuration` call.
fn called_services(configuration: &Value) -> Vec<(String, String)> {
    configuration["webhooks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["name"] == REFERENCE_WEBHOOK)
        .filter_map(|h| {
            let service = &h["clientConfig"]["service"];
            Some((
                service["namespace"].as_str()?.to_string(),
                service["name"].as_str()?.to_string(),
            ))
        })
        .collect()
}

const CONFIGURATION_KINDS: [Kind; 2] = [
    Kind::MutatingWebhookConfiguration,
    Kind::ValidatingWebhookConfiguration,
];

/// Finds the reference install; `Ok(None)` when nothing of it is registered.
pub async fn find(client: &Client) -> anyhow::Result<Option<ReferenceInstall>> {
    let mut found = ReferenceInstall::default();
    let mut services: Vec<(String, String)> = Vec::new();
    for config_kind in CONFIGURATION_KINDS {
        let info = config_kind.info();
        let list = api(client, info, None)
            .list(&ListParams::default())
            .await
            .with_context(|| format!("cannot list {}s", info.kind))?;
        for item in list.items {
            let value = serde_json::to_value(&item).unwrap_or(Value::Null);
            if !is_reference_configuration(&value) {
                continue;
            }
            found.objects.push(Leftover {
                kind: config_kind,
                namespace: None,
                name: item.metadata.name.clone().unwrap_or_default(),
            });
            for service in called_services(&value) {
                if !services.contains(&service) {
                    services.push(service);
                }
            }
        }
    }
    if found.objects.is_empty() {
        return Ok(None);
    }
    let applier = Applier {
        client: client.clone(),
        server_dry_run: false,
        force_conflicts: false,
    };
    // The reference names its Deployment after its Service.
    for kind in [Kind::Deployment, Kind::Service] {
        for (namespace, name) in &services {
            if applier
                .get(kind.info(), Some(namespace), name)
                .await?
                .is_some()
            {
                found.objects.push(Leftover {
                    kind,
                    namespace: Some(namespace.clone()),
                    name: name.clone(),
                });
            }
        }
    }
    Ok(Some(found))
}

impl ReferenceInstall {
    /// One paragraph: what was found, why it matters, and how to retire it.
    pub fn describe(&self) -> String {
        let list: Vec<String> = self.objects.iter().map(Leftover::display).collect();
        let mut text = format!(
            "The reference GMSA webhook (kubernetes-sigs/windows-gmsa) is still installed: {}. \
             While it stays registered, the API server sends every pod to it as well as to this \
             webhook, and refuses pods whenever it is down. Retire it once this webhook is ready, \
             with `kubectl gmsa install --apply --retire-reference`, or by hand:",
            list.join(", ")
        );
        for object in &self.objects {
            let _ = write!(text, "\n  {}", object.delete_command());
        }
        text.push_str(
            "\nIts CRD and every GMSACredentialSpec are kept either way: this install owns the CRD now.",
        );
        text
    }

    /// Deletes every object found (configurations first); returns kubectl-like lines.
    pub async fn retire(&self, applier: &Applier) -> anyhow::Result<Vec<String>> {
        let mut lines = Vec::new();
        for object in &self.objects {
            if let Some(line) = applier
                .delete(
                    object.kind.info(),
                    object.namespace.as_deref(),
                    &object.name,
                )
                .await?
            {
                lines.push(line);
            }
        }
        Ok(lines)
    }
}

/// Our own webhook configurations under the name earlier versions gave them (`<name>`, now
/// `<name>-admission`): deleted once the new ones are in place, unless they also hold a
/// reference webhook (then they are the reference's, and `--retire-reference` decides).
pub async fn remove_superseded(
    applier: &Applier,
    settings: &gmsa_deploy::Settings,
) -> anyhow::Result<Vec<String>> {
    let ours = gmsa_deploy::selector_labels(settings);
    let mut lines = Vec::new();
    for superseded in gmsa_deploy::removed_by(settings, gmsa_deploy::Removal::Superseded) {
        let (info, namespace, name) = (
            superseded.kind.info(),
            superseded.namespace(),
            &superseded.name,
        );
        let Some(found) = applier.get(info, namespace, name).await? else {
            continue;
        };
        let labelled = ours
            .iter()
            .all(|(k, v)| found["metadata"]["labels"][k].as_str() == Some(v.as_str()));
        if labelled && !is_reference_configuration(&found) {
            if let Some(line) = applier.delete(info, namespace, name).await? {
                lines.push(format!(
                    "{line} (superseded by {})",
                    gmsa_deploy::names::webhook_configuration(&settings.name)
                ));
            }
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn configuration(hooks: &[(&str, &str, &str)]) -> Value {
        json!({"webhooks": hooks.iter().map(|(name, ns, svc)| json!({
            "name": name,
            "clientConfig": {"service": {"namespace": ns, "name": svc, "path": "/mutate"}}
        })).collect::<Vec<_>>()})
    }

    #[test]
    fn recognises_the_reference_by_its_webhook_name() {
        let reference = configuration(&[(REFERENCE_WEBHOOK, "gmsa-webhook", "gmsa-webhook")]);
        assert!(is_reference_configuration(&reference));
        assert_eq!(
            called_services(&reference),
            [("gmsa-webhook".to_string(), "gmsa-webhook".to_string())]
        );
        let ours = configuration(&[(
            gmsa_deploy::names::MUTATING_WEBHOOK,
            "gmsa-system",
            "gmsa-webhook",
        )]);
        assert!(!is_reference_configuration(&ours));
        assert!(called_services(&ours).is_empty());
        // Our earlier installs merged into the reference's object: still the reference's.
        let merged = configuration(&[
            (REFERENCE_WEBHOOK, "gmsa-webhook", "gmsa-webhook"),
            (
                gmsa_deploy::names::MUTATING_WEBHOOK,
                "gmsa-system",
                "gmsa-webhook",
            ),
        ]);
        assert!(is_reference_configuration(&merged));
        assert_eq!(called_services(&merged).len(), 1);
    }

    #[test]
    fn the_paragraph_names_every_object_and_both_ways_out() {
        let found = ReferenceInstall {
            objects: vec![
                Leftover {
                    kind: Kind::MutatingWebhookConfiguration,
                    namespace: None,
                    name: "gmsa-webhook".into(),
                },
                Leftover {
                    kind: Kind::Deployment,
                    namespace: Some("gmsa-webhook".into()),
                    name: "gmsa-webhook".into(),
                },
            ],
        };
        let text = found.describe();
        assert!(text.contains("--retire-reference"), "{text}");
        assert!(
            text.contains(
                "kubectl delete mutatingwebhookconfiguration.admissionregistration.k8s.io/gmsa-webhook"
            ),
            "{text}"
        );
        assert!(
            text.contains("kubectl -n gmsa-webhook delete deployment.apps/gmsa-webhook"),
            "{text}"
        );
    }
}
