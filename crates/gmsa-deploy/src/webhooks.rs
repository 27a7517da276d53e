//! The Mutating and Validating webhook configurations, and the CEL condition that keeps every
//! pod that does not mention GMSA away from the webhook.

use std::collections::BTreeMap;

use gmsa_core::names as core_names;
use gmsa_core::names::paths;
use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations,
    ServiceReference, ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use k8s_openapi::{ByteString, Resource};

use crate::meta::strings;
use crate::{meta, names, KubeVersion, Settings};

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

fn client_config(settings: &Settings, path: &str, ca_bundle: Option<&str>) -> WebhookClientConfig {
    let (url, service) = match &settings.webhook_url {
        Some(url) => (Some(format!("{}{path}", url.trim_end_matches('/'))), None),
        None => (
            None,
            Some(ServiceReference {
                name: settings.name.clone(),
                namespace: settings.namespace.clone(),
                path: Some(path.to_string()),
                port: Some(names::SERVICE_PORT),
            }),
        ),
    };
    WebhookClientConfig {
        ca_bundle: ca_bundle.map(|pem| ByteString(pem.as_bytes().to_vec())),
        service,
        url,
    }
}

/// Skips the webhook's own namespace and, with `opt_out`, namespaces labelled
/// `gmsa-webhook: disabled`.
fn namespace_selector(settings: &Settings, opt_out: bool) -> LabelSelector {
    let not_in = |key: &str, value: &str| LabelSelectorRequirement {
        key: key.to_string(),
        operator: "NotIn".into(),
        values: Some(vec![value.to_string()]),
    };
    let mut expressions = Vec::new();
    if opt_out {
        expressions.push(not_in(names::DISABLE_LABEL, names::DISABLE_VALUE));
    }
    if settings.kube_version.at_least(KubeVersion::POLICY_V1) {
        expressions.push(not_in(names::NAMESPACE_NAME_LABEL, &settings.namespace));
    }
    LabelSelector {
        match_expressions: Some(expressions),
        match_labels: None,
    }
}

fn rule(
    group: &str,
    version: &str,
    operations: &[&str],
    resource: &str,
    scope: &str,
) -> RuleWithOperations {
    RuleWithOperations {
        api_groups: Some(vec![group.to_string()]),
        api_versions: Some(vec![version.to_string()]),
        operations: Some(strings(operations)),
        resources: Some(vec![resource.to_string()]),
        scope: Some(scope.into()),
    }
}

fn pod_rule(operations: &[&str], resource: &str) -> RuleWithOperations {
    rule(Pod::GROUP, Pod::VERSION, operations, resource, "Namespaced")
}

/// Whether namespaces labelled `gmsa-webhook: disabled` skip the validating webhook too. A
/// label must not switch authorization off, so from 1.21, where the webhook's own namespace
/// is skipped by its name, they do not: only mutation can be opted out of. Before 1.21 the
/// label is the only way to keep the webhook's own pods from waiting on it, and stays.
fn validation_opt_out(settings: &Settings) -> bool {
    !settings.kube_version.at_least(KubeVersion::POLICY_V1)
}

/// What a mutating and a validating webhook of ours have in common; the settings every one
/// of them shares are filled in by the conversions below.
struct Hook {
    name: &'static str,
    client_config: WebhookClientConfig,
    rules: Vec<RuleWithOperations>,
    namespace_selector: Option<LabelSelector>,
    match_conditions: Option<Vec<MatchCondition>>,
}

const FAILURE_POLICY: &str = "Fail";
const MATCH_POLICY: &str = "Equivalent";
const SIDE_EFFECTS: &str = "None";
const REVIEW_VERSIONS: &[&str] = &["v1", "v1beta1"];

/// The two webhook types of admissionregistration/v1 share every field we set; one body
/// fills either.
macro_rules! webhook_from_hook {
    ($webhook:ident) => {
        impl From<Hook> for $webhook {
            fn from(hook: Hook) -> Self {
                $webhook {
                    name: hook.name.into(),
                    client_config: hook.client_config,
                    rules: Some(hook.rules),
                    namespace_selector: hook.namespace_selector,
                    match_conditions: hook.match_conditions,
                    failure_policy: Some(FAILURE_POLICY.into()),
                    match_policy: Some(MATCH_POLICY.into()),
                    side_effects: SIDE_EFFECTS.into(),
                    timeout_seconds: Some(names::WEBHOOK_TIMEOUT_SECONDS),
                    admission_review_versions: strings(REVIEW_VERSIONS),
                    ..$webhook::default()
                }
            }
        }
    };
}

webhook_from_hook!(MutatingWebhook);
webhook_from_hook!(ValidatingWebhook);

fn pod_hook(
    settings: &Settings,
    name: &'static str,
    path: &str,
    pod_operations: &[&str],
    ca_bundle: Option<&str>,
    opt_out: bool,
) -> Hook {
    let ephemeral = format!("pods/{}", core_names::EPHEMERAL_CONTAINERS_SUBRESOURCE);
    Hook {
        name,
        client_config: client_config(settings, path, ca_bundle),
        rules: vec![
            pod_rule(pod_operations, Pod::URL_PATH_SEGMENT),
            pod_rule(&["UPDATE"], &ephemeral),
        ],
        namespace_selector: Some(namespace_selector(settings, opt_out)),
        // Left out, not empty, where the server has no such field.
        match_conditions: settings.uses_match_conditions().then(|| {
            vec![MatchCondition {
                name: names::MATCH_CONDITION_NAME.into(),
                expression: match_condition_expression(),
            }]
        }),
    }
}

fn metadata(settings: &Settings) -> ObjectMeta {
    let mut meta = meta::cluster(
        settings,
        &names::webhook_configuration(&settings.name),
        "webhook",
    );
    if settings.certs == crate::CertMode::CertManager {
        meta.annotations = Some(BTreeMap::from([(
            names::CERT_MANAGER_INJECT_ANNOTATION.to_string(),
            format!(
                "{}/{}",
                settings.namespace,
                names::ca_certificate(&settings.name)
            ),
        )]));
    }
    meta
}

/// Pods CREATE, and new ephemeral containers.
pub fn mutating(settings: &Settings, ca_bundle: Option<&str>) -> MutatingWebhookConfiguration {
    let pods = pod_hook(
        settings,
        names::MUTATING_WEBHOOK,
        paths::MUTATE,
        &["CREATE"],
        ca_bundle,
        true,
    );
    MutatingWebhookConfiguration {
        metadata: metadata(settings),
        webhooks: Some(vec![pods.into()]),
    }
}

/// Pods CREATE and UPDATE, new ephemeral containers, and credential specs themselves.
pub fn validating(settings: &Settings, ca_bundle: Option<&str>) -> ValidatingWebhookConfiguration {
    let pods = pod_hook(
        settings,
        names::VALIDATING_WEBHOOK,
        paths::VALIDATE,
        &["CREATE", "UPDATE"],
        ca_bundle,
        validation_opt_out(settings),
    );
    let credspecs = Hook {
        name: names::CREDSPEC_WEBHOOK,
        client_config: client_config(settings, paths::VALIDATE_CREDSPEC, ca_bundle),
        rules: vec![rule(
            core_names::GROUP,
            core_names::VERSION,
            &["CREATE", "UPDATE"],
            core_names::RESOURCE,
            "Cluster",
        )],
        namespace_selector: None,
        match_conditions: None,
    };
    ValidatingWebhookConfiguration {
        metadata: metadata(settings),
        webhooks: Some(vec![pods.into(), credspecs.into()]),
    }
}
