//! The `webhook-configurations` row: our mutating and validating configurations and where they
//! send pods; and the `reference-webhook` row, when the reference webhook is still registered
//! beside ours.

use base64::Engine as _;
use gmsa_core::names as core_names;
use kube::Client;
use serde_json::Value;

use super::fixes::{Fixes, InstallFix};
use super::objects::get;
use super::report::Report;
use crate::direct;
use gmsa_deploy::Kind;

/// Where the API server sends admissions.
pub(super) enum Endpoint {
    Service {
        namespace: String,
        name: String,
        port: i64,
    },
    Url(String),
}

/// What the configurations register: where admissions go, and the CA bundle (PEM) they trust.
pub(super) struct Registration {
    pub(super) endpoint: Endpoint,
    pub(super) bundle: Option<String>,
}

/// Both configurations exist and call `/mutate` and `/validate`; `None` when there is nothing
/// registered for the certificate and readiness checks to look at.
pub(super) async fn check(
    client: &Client,
    name: &str,
    fixes: &Fixes,
    report: &mut Report,
) -> Option<Registration> {
    let install = fixes.reinstall();
    let mutating = get(
        client,
        Kind::MutatingWebhookConfiguration.info(),
        None,
        name,
    )
    .await;
    let validating = get(
        client,
        Kind::ValidatingWebhookConfiguration.info(),
        None,
        name,
    )
    .await;
    let (mutating, validating) = match (mutating, validating) {
        (Ok(Some(m)), Ok(Some(v))) => (m, v),
        (Err(e), _) | (_, Err(e)) => {
            report.fail(
                "webhook-configurations",
                name,
                e,
                "check your permissions".into(),
            );
            return None;
        }
        (m, v) => {
            let missing: Vec<&str> = [
                ("MutatingWebhookConfiguration", &m),
                ("ValidatingWebhookConfiguration", &v),
            ]
            .into_iter()
            .filter(|(_, x)| matches!(x, Ok(None)))
            .map(|(k, _)| k)
            .collect();
            report.fail(
                "webhook-configurations",
                name,
                format!(
                    "{} {name} missing: pods are not mutated or validated",
                    missing.join(" and ")
                ),
                install,
            );
            return None;
        }
    };
    let hooks: Vec<Value> = mutating["webhooks"]
        .as_array()
        .into_iter()
        .chain(validating["webhooks"].as_array())
        .flatten()
        .cloned()
        .collect();
    let path_of = |h: &Value| -> String {
        let config = &h["clientConfig"];
        config["service"]["path"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| {
                config["url"]
                    .as_str()
                    .and_then(|u| direct::target(u).ok())
                    .map(|t| t.path)
            })
            .unwrap_or_default()
    };
    let paths: Vec<String> = hooks.iter().map(path_of).collect();
    let missing: Vec<&str> = [core_names::paths::MUTATE, core_names::paths::VALIDATE]
        .into_iter()
        .filter(|p| !paths.iter().any(|x| x == p))
        .collect();
    if !missing.is_empty() {
        report.fail(
            "webhook-configurations",
            name,
            format!("no webhook calls {}", missing.join(", ")),
            install,
        );
        return None;
    }
    let first = &mutating["webhooks"][0];
    let policy = first["failurePolicy"].as_str().unwrap_or("Fail");
    report.pass(
        "webhook-configurations",
        name,
        format!(
            "{} webhooks ({}), failurePolicy {policy}",
            hooks.len(),
            paths.join(", ")
        ),
    );

    let config = &first["clientConfig"];
    let endpoint = match (config["service"].is_object(), config["url"].as_str()) {
        (true, _) => Endpoint::Service {
            namespace: config["service"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            name: config["service"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            port: config["service"]["port"].as_i64().unwrap_or(443),
        },
        (false, Some(url)) => Endpoint::Url(url.to_string()),
        _ => {
            report.fail(
                "webhook-configurations",
                name,
                "clientConfig has neither a service nor a URL".into(),
                install,
            );
            return None;
        }
    };
    let bundle = config["caBundle"]
        .as_str()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    Some(Registration { endpoint, bundle })
}

/// A reference webhook still registered beside ours: pods go through both.
pub(super) async fn check_reference(client: &Client, fixes: &Fixes, report: &mut Report) {
    match crate::reference::find(client).await {
        Ok(None) => {}
        Ok(Some(found)) => {
            let subject = found
                .objects
                .first()
                .map(|o| o.display())
                .unwrap_or_default();
            report.warn(
                "reference-webhook",
                &subject,
                found.describe(),
                fixes
                    .install(InstallFix::RetireReference)
                    .unwrap_or_default(),
            );
        }
        Err(e) => report.warn(
            "reference-webhook",
            "",
            format!("cannot look for a reference webhook: {e:#}"),
            "check your permissions: `kubectl auth can-i list mutatingwebhookconfigurations`"
                .into(),
        ),
    }
}

/// Another install (another `--name`, or a chart release) registered beside the one examined:
/// pods go through both, and install refuses to add to either.
pub(super) async fn check_other_install(client: &Client, fixes: &Fixes, report: &mut Report) {
    let examined = gmsa_deploy::Settings {
        name: fixes.name.clone(),
        ..gmsa_deploy::Settings::default()
    };
    match crate::apply::other_install(client, &examined).await {
        Ok(None) => {}
        Ok(Some(other)) => {
            let name = &other.name;
            report.warn(
                "other-install",
                &other.object,
                format!("install --name {name} answers GMSA pods too, beside {}", fixes.name),
                format!(
                    "keep one: kubectl gmsa uninstall --name {name} (helm uninstall for a chart release); `kubectl gmsa doctor --name {name}` examines it"
                ),
            );
        }
        Err(e) => report.warn(
            "other-install",
            "",
            format!("cannot look for another install: {e}"),
            "check your permissions: `kubectl auth can-i list mutatingwebhookconfigurations`"
                .into(),
        ),
    }
}
