//! The Mutating and Validating webhook configurations, and the CEL condition that keeps every
//! pod that does not mention GMSA away from the webhook.

use gmsa_core::names as core_names;
use gmsa_core::names::paths;
use serde_json::{json, Value};

use crate::{labels, names, KubeVersion, Settings};

/// Whether a pod object `o` sets either GMSA field anywhere: pod level, containers, init
/// containers, ephemeral containers. Every step is guarded by `has()`, because a condition
/// that errors fails the request under `failurePolicy: Fail`.
fn mentions(o: &str) -> String {
    let options = |holder: &str| {
        format!(
            "(has({holder}.securityContext) && has({holder}.securityContext.windowsOptions) && \
             (has({holder}.securityContext.windowsOptions.gmsaCredentialSpecName) || \
             has({holder}.securityContext.windowsOptions.gmsaCredentialSpec)))"
        )
    };
    let list = |field: &str| {
        format!(
            "(has({o}.spec.{field}) && {o}.spec.{field}.exists(c, {}))",
            options("c")
        )
    };
    format!(
        "(has({o}.spec) && ({} || {} || {} || {}))",
        options(&format!("{o}.spec")),
        list("containers"),
        list("initContainers"),
        list("ephemeralContainers")
    )
}

/// The CEL expression: the new object or, on UPDATE, the old one mentions GMSA (so removing
/// GMSA fields from a running pod still reaches the validating webhook, which refuses it).
pub fn match_condition_expression() -> String {
    format!(
        "(object != null && {}) || (oldObject != null && {})",
        mentions("object"),
        mentions("oldObject")
    )
}

fn client_config(settings: &Settings, path: &str, ca_bundle: Option<&str>) -> Value {
    let mut config = match &settings.webhook_url {
        Some(url) => json!({"url": format!("{}{path}", url.trim_end_matches('/'))}),
        None => json!({"service": {
            "name": settings.name,
            "namespace": settings.namespace,
            "path": path,
            "port": names::SERVICE_PORT
        }}),
    };
    if let Some(pem) = ca_bundle {
        use base64::Engine as _;
        config["caBundle"] = json!(base64::engine::general_purpose::STANDARD.encode(pem));
    }
    config
}

/// Skips the webhook's own namespace and, with `opt_out`, namespaces labelled
/// `gmsa-webhook: disabled`.
fn namespace_selector(settings: &Settings, opt_out: bool) -> Value {
    let mut expressions = Vec::new();
    if opt_out {
        expressions.push(json!({
            "key": names::DISABLE_LABEL,
            "operator": "NotIn",
            "values": [names::DISABLE_VALUE]
        }));
    }
    if settings.kube_version.at_least(KubeVersion::POLICY_V1) {
        expressions.push(json!({
            "key": names::NAMESPACE_NAME_LABEL,
            "operator": "NotIn",
            "values": [settings.namespace]
        }));
    }
    json!({"matchExpressions": expressions})
}

fn pod_rule(operations: &[&str], resource: &str) -> Value {
    json!({
        "apiGroups": [""],
        "apiVersions": ["v1"],
        "operations": operations,
        "resources": [resource],
        "scope": "Namespaced"
    })
}

/// Whether namespaces labelled `gmsa-webhook: disabled` skip the validating webhook too. A
/// label must not switch authorization off, so from 1.21, where the webhook's own namespace
/// is skipped by its name, they do not: only mutation can be opted out of. Before 1.21 the
/// label is the only way to keep the webhook's own pods from waiting on it, and stays.
fn validation_opt_out(settings: &Settings) -> bool {
    !settings.kube_version.at_least(KubeVersion::POLICY_V1)
}

fn pod_webhook(
    settings: &Settings,
    name: &str,
    path: &str,
    pod_operations: &[&str],
    ca_bundle: Option<&str>,
    opt_out: bool,
) -> Value {
    let mut webhook = json!({
        "name": name,
        "clientConfig": client_config(settings, path, ca_bundle),
        "rules": [
            pod_rule(pod_operations, "pods"),
            pod_rule(&["UPDATE"], &format!("pods/{}", core_names::EPHEMERAL_CONTAINERS_SUBRESOURCE))
        ],
        "namespaceSelector": namespace_selector(settings, opt_out),
        "failurePolicy": "Fail",
        "matchPolicy": "Equivalent",
        "sideEffects": "None",
        "timeoutSeconds": names::WEBHOOK_TIMEOUT_SECONDS,
        "admissionReviewVersions": ["v1", "v1beta1"]
    });
    if settings.uses_match_conditions() {
        webhook["matchConditions"] = json!([{
            "name": names::MATCH_CONDITION_NAME,
            "expression": match_condition_expression()
        }]);
    }
    webhook
}

fn metadata(settings: &Settings) -> Value {
    let mut meta = json!({
        "name": names::webhook_configuration(&settings.name),
        "labels": labels(settings, "webhook")
    });
    if settings.certs == crate::CertMode::CertManager {
        meta["annotations"] = json!({
            (names::CERT_MANAGER_INJECT_ANNOTATION):
                format!("{}/{}", settings.namespace, names::ca_certificate(&settings.name))
        });
    }
    meta
}

/// Pods CREATE, and new ephemeral containers.
pub fn mutating(settings: &Settings, ca_bundle: Option<&str>) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": metadata(settings),
        "webhooks": [pod_webhook(settings, names::MUTATING_WEBHOOK, paths::MUTATE, &["CREATE"], ca_bundle, true)]
    })
}

/// Pods CREATE and UPDATE, new ephemeral containers, and credential specs themselves.
pub fn validating(settings: &Settings, ca_bundle: Option<&str>) -> Value {
    let credspecs = json!({
        "name": names::CREDSPEC_WEBHOOK,
        "clientConfig": client_config(settings, paths::VALIDATE_CREDSPEC, ca_bundle),
        "rules": [{
            "apiGroups": [core_names::GROUP],
            "apiVersions": [core_names::VERSION],
            "operations": ["CREATE", "UPDATE"],
            "resources": [core_names::RESOURCE],
            "scope": "Cluster"
        }],
        "failurePolicy": "Fail",
        "matchPolicy": "Equivalent",
        "sideEffects": "None",
        "timeoutSeconds": names::WEBHOOK_TIMEOUT_SECONDS,
        "admissionReviewVersions": ["v1", "v1beta1"]
    });
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": metadata(settings),
        "webhooks": [
            pod_webhook(
                settings,
                names::VALIDATING_WEBHOOK,
                paths::VALIDATE,
                &["CREATE", "UPDATE"],
                ca_bundle,
                validation_opt_out(settings),
            ),
            credspecs
        ]
    })
}
