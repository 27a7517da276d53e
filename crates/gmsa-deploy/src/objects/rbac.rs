//! The webhook's identity and least-privilege RBAC, and the optional aggregated view role.

use gmsa_core::names as core_names;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingAdmissionPolicyBinding, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::authorization::v1::LocalSubjectAccessReview;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1 as k8s_rbac;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::Resource;

use crate::meta::{self, strings};
use crate::{names, CertMode, Settings};

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        ..PolicyRule::default()
    }
}

/// The webhook's own service account, the only subject of its bindings.
fn subject(settings: &Settings) -> Subject {
    Subject {
        kind: ServiceAccount::KIND.into(),
        name: settings.name.clone(),
        namespace: Some(settings.namespace.clone()),
        api_group: None,
    }
}

fn role_ref<K: Resource>(name: &str) -> RoleRef {
    RoleRef {
        api_group: Some(K::GROUP.into()),
        kind: K::KIND.into(),
        name: name.to_string(),
    }
}

pub fn service_account(settings: &Settings) -> ServiceAccount {
    ServiceAccount {
        metadata: meta::namespaced(settings, &settings.name, "webhook"),
        ..ServiceAccount::default()
    }
}

/// Exactly what the webhook's Kubernetes backend does: watch credential specs (with a GET on a
/// cache miss), watch the RBAC objects that invalidate its cached access reviews, and ask
/// LocalSubjectAccessReviews.
pub fn cluster_role(settings: &Settings) -> ClusterRole {
    let mut rules = vec![
        rule(
            core_names::GROUP,
            &[core_names::RESOURCE],
            &["get", "list", "watch"],
        ),
        rule(
            Role::GROUP,
            &[
                Role::URL_PATH_SEGMENT,
                ClusterRole::URL_PATH_SEGMENT,
                RoleBinding::URL_PATH_SEGMENT,
                ClusterRoleBinding::URL_PATH_SEGMENT,
            ],
            &["list", "watch"],
        ),
        rule(
            LocalSubjectAccessReview::GROUP,
            &[LocalSubjectAccessReview::URL_PATH_SEGMENT],
            &["create"],
        ),
    ];
    if settings.certs == CertMode::SelfSigned {
        // The renewal keeps the caBundle of our two configurations, and only theirs.
        rules.push(PolicyRule {
            resource_names: Some(vec![names::webhook_configuration(&settings.name)]),
            ..rule(
                MutatingWebhookConfiguration::GROUP,
                &[
                    MutatingWebhookConfiguration::URL_PATH_SEGMENT,
                    ValidatingWebhookConfiguration::URL_PATH_SEGMENT,
                ],
                &["get", "update"],
            )
        });
    }
    ClusterRole {
        metadata: meta::cluster(settings, &settings.name, "webhook"),
        rules: Some(rules),
        ..ClusterRole::default()
    }
}

/// Policy mode: what the keeper reads to decide each namespace's published contents (specs,
/// RBAC, namespaces), what it writes (the contents objects, the specs' finalizer, and the one
/// `-elsewhere` binding's namespace list); the API server does the rest.
pub fn keeper_cluster_role(settings: &Settings) -> ClusterRole {
    let read = ["get", "list", "watch"];
    ClusterRole {
        metadata: meta::cluster(settings, &settings.name, "webhook"),
        rules: Some(vec![
            rule(
                core_names::GROUP,
                &[core_names::RESOURCE],
                &["get", "list", "watch", "patch"],
            ),
            rule(Namespace::GROUP, &[Namespace::URL_PATH_SEGMENT], &read),
            rule(
                k8s_rbac::Role::GROUP,
                &[
                    k8s_rbac::Role::URL_PATH_SEGMENT,
                    k8s_rbac::ClusterRole::URL_PATH_SEGMENT,
                    k8s_rbac::RoleBinding::URL_PATH_SEGMENT,
                    k8s_rbac::ClusterRoleBinding::URL_PATH_SEGMENT,
                ],
                &read,
            ),
            rule(
                core_names::contents::GROUP,
                &[core_names::contents::RESOURCE],
                &["get", "list", "watch", "create", "patch", "delete"],
            ),
            rule(
                ValidatingAdmissionPolicyBinding::GROUP,
                &[ValidatingAdmissionPolicyBinding::URL_PATH_SEGMENT],
                &read,
            ),
            PolicyRule {
                resource_names: Some(vec![core_names::contents::elsewhere_policy(&settings.name)]),
                ..rule(
                    ValidatingAdmissionPolicyBinding::GROUP,
                    &[ValidatingAdmissionPolicyBinding::URL_PATH_SEGMENT],
                    &["patch"],
                )
            },
        ]),
        ..ClusterRole::default()
    }
}

pub fn cluster_role_binding(settings: &Settings) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta::cluster(settings, &settings.name, "webhook"),
        role_ref: role_ref::<ClusterRole>(&settings.name),
        subjects: Some(vec![subject(settings)]),
    }
}

/// Lets every holder of the built-in `view` role read credential specs (not `use` them).
pub fn view_role(settings: &Settings) -> ClusterRole {
    let mut meta = meta::cluster(settings, &names::view_role(&settings.name), "rbac");
    meta.labels
        .get_or_insert_default()
        .insert(names::AGGREGATE_TO_VIEW_LABEL.into(), "true".into());
    ClusterRole {
        metadata: meta,
        rules: Some(vec![rule(
            core_names::GROUP,
            &[core_names::RESOURCE],
            &["get", "list", "watch"],
        )]),
        ..ClusterRole::default()
    }
}

/// Self-signed mode: the replicas renew their certificates, so they may read and replace
/// that one Secret (and nothing else in the namespace).
pub fn certificates_role(settings: &Settings) -> Role {
    let name = names::certificates_role(&settings.name);
    Role {
        metadata: meta::namespaced(settings, &name, "certificate"),
        rules: Some(vec![PolicyRule {
            resource_names: Some(vec![names::tls_secret(&settings.name)]),
            ..rule(
                Secret::GROUP,
                &[Secret::URL_PATH_SEGMENT],
                &["get", "update"],
            )
        }]),
    }
}

pub fn certificates_role_binding(settings: &Settings) -> RoleBinding {
    let name = names::certificates_role(&settings.name);
    RoleBinding {
        metadata: meta::namespaced(settings, &name, "certificate"),
        role_ref: role_ref::<Role>(&name),
        subjects: Some(vec![subject(settings)]),
    }
}
