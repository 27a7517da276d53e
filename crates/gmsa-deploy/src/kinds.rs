//! The kinds an install may own, typed: each with the API group/version, plural and scope the
//! CLI needs to apply, read and delete it. Nothing looks a kind up by its name at run time.

use k8s_openapi::api::admissionregistration::v1::{
    MutatingAdmissionPolicy, MutatingAdmissionPolicyBinding, MutatingWebhookConfiguration,
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope, Resource};

use crate::objects::untyped;

/// How the API serves a kind: what a dynamic client needs to reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindInfo {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

/// How a k8s-openapi scope reads as [`KindInfo::namespaced`].
trait Scope {
    const NAMESPACED: bool;
}

impl Scope for NamespaceResourceScope {
    const NAMESPACED: bool = true;
}

impl Scope for ClusterResourceScope {
    const NAMESPACED: bool = false;
}

impl KindInfo {
    /// `kind.group/name`, as kubectl names an object of this kind.
    pub fn object_name(&self, name: &str) -> String {
        let kind = self.kind.to_ascii_lowercase();
        match self.api_version.rsplit_once('/') {
            Some((group, _)) => format!("{kind}.{group}/{name}"),
            None => format!("{kind}/{name}"),
        }
    }

    /// A built-in kind, from its k8s-openapi type.
    const fn of<K: Resource>() -> Self
    where
        K::Scope: Scope,
    {
        KindInfo {
            api_version: K::API_VERSION,
            kind: K::KIND,
            plural: K::URL_PATH_SEGMENT,
            namespaced: <K::Scope as Scope>::NAMESPACED,
        }
    }
}

/// Every kind an install renders, leaves behind (the uninstall guard) or once rendered, in
/// apply order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    CustomResourceDefinition,
    Namespace,
    ServiceAccount,
    ClusterRole,
    ClusterRoleBinding,
    Role,
    RoleBinding,
    Secret,
    ConfigMap,
    /// cert-manager's.
    Issuer,
    /// cert-manager's.
    Certificate,
    Service,
    Deployment,
    PodDisruptionBudget,
    /// Before Kubernetes 1.21 (k8s-openapi no longer has it; the spec is the same).
    PodDisruptionBudgetV1beta1,
    DaemonSet,
    /// The Prometheus Operator's.
    PrometheusRule,
    MutatingWebhookConfiguration,
    ValidatingWebhookConfiguration,
    MutatingAdmissionPolicy,
    MutatingAdmissionPolicyBinding,
    ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding,
}

/// [`Kind::info`], indexed by the variant's position.
static INFOS: [KindInfo; Kind::ALL.len()] = [
    KindInfo::of::<CustomResourceDefinition>(),
    KindInfo::of::<Namespace>(),
    KindInfo::of::<ServiceAccount>(),
    KindInfo::of::<ClusterRole>(),
    KindInfo::of::<ClusterRoleBinding>(),
    KindInfo::of::<Role>(),
    KindInfo::of::<RoleBinding>(),
    KindInfo::of::<Secret>(),
    KindInfo::of::<ConfigMap>(),
    KindInfo {
        api_version: untyped::CERT_MANAGER_API_VERSION,
        kind: "Issuer",
        plural: "issuers",
        namespaced: true,
    },
    KindInfo {
        api_version: untyped::CERT_MANAGER_API_VERSION,
        kind: "Certificate",
        plural: "certificates",
        namespaced: true,
    },
    KindInfo::of::<Service>(),
    KindInfo::of::<Deployment>(),
    KindInfo::of::<PodDisruptionBudget>(),
    KindInfo {
        api_version: "policy/v1beta1",
        ..KindInfo::of::<PodDisruptionBudget>()
    },
    KindInfo::of::<DaemonSet>(),
    KindInfo {
        api_version: untyped::PROMETHEUS_API_VERSION,
        kind: "PrometheusRule",
        plural: "prometheusrules",
        namespaced: true,
    },
    KindInfo::of::<MutatingWebhookConfiguration>(),
    KindInfo::of::<ValidatingWebhookConfiguration>(),
    KindInfo::of::<MutatingAdmissionPolicy>(),
    KindInfo::of::<MutatingAdmissionPolicyBinding>(),
    KindInfo::of::<ValidatingAdmissionPolicy>(),
    KindInfo::of::<ValidatingAdmissionPolicyBinding>(),
];

impl Kind {
    /// Every kind, in apply order.
    pub const ALL: [Kind; 23] = [
        Kind::CustomResourceDefinition,
        Kind::Namespace,
        Kind::ServiceAccount,
        Kind::ClusterRole,
        Kind::ClusterRoleBinding,
        Kind::Role,
        Kind::RoleBinding,
        Kind::Secret,
        Kind::ConfigMap,
        Kind::Issuer,
        Kind::Certificate,
        Kind::Service,
        Kind::Deployment,
        Kind::PodDisruptionBudget,
        Kind::PodDisruptionBudgetV1beta1,
        Kind::DaemonSet,
        Kind::PrometheusRule,
        Kind::MutatingWebhookConfiguration,
        Kind::ValidatingWebhookConfiguration,
        Kind::MutatingAdmissionPolicy,
        Kind::MutatingAdmissionPolicyBinding,
        Kind::ValidatingAdmissionPolicy,
        Kind::ValidatingAdmissionPolicyBinding,
    ];

    /// Where the API serves this kind.
    pub fn info(self) -> &'static KindInfo {
        &INFOS[self as usize]
    }

    /// The kind an object of this API version and kind is, if an install may own it.
    pub fn of(api_version: &str, kind: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| {
            let info = k.info();
            info.api_version == api_version && info.kind == kind
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_info_in_declaration_order() {
        for (i, kind) in Kind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, i, "{kind:?}");
            let info = kind.info();
            let name = format!("{kind:?}");
            assert!(name.starts_with(info.kind), "{kind:?}: {info:?}");
            assert_eq!(Kind::of(info.api_version, info.kind), Some(kind));
        }
        assert_eq!(Kind::of("v1", "Pod"), None);
        assert_eq!(
            Kind::PodDisruptionBudgetV1beta1.info().api_version,
            "policy/v1beta1"
        );
    }
}
