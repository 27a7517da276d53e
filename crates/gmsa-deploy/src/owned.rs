//! Everything any install may own: both admission modes, the uninstall guard and the names
//! earlier versions gave, each with what removes it. Install, the mode switches, uninstall and
//! doctor read this one list.

use crate::policies::{self, guard};
use crate::{crd, names, Kind, ObjectRef, Settings};

/// What removes an object an install may own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Uninstall only: both modes have it, or an install with other options or an earlier
    /// version made it (a switch of mode leaves it).
    Uninstall,
    /// The names earlier versions gave the webhook configurations: install removes them once
    /// the new ones are registered, and uninstall.
    Superseded,
    /// Webhook mode's serving pieces: a switch to policy mode removes them, and uninstall.
    SwitchToPolicies,
    /// Policy mode's policies and bindings: a switch to the webhook removes them, and
    /// uninstall first of all (its bindings stop admission before anything else goes).
    SwitchToWebhook,
    /// The guard uninstall leaves: the next install removes it, and an uninstall that leaves
    /// none.
    NextInstall,
    /// Kept by uninstall unless asked (`--delete-namespace`, `--delete-crd`).
    OnRequest,
}

/// One object an install may own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    pub object: ObjectRef,
    pub removed_by: Removal,
}

/// Every object any install named `settings.name` in `settings.namespace` may own, in the
/// order they are removed: webhook configurations before what they call, bindings before
/// their policies, identities last.
pub fn owned(settings: &Settings) -> Vec<Owned> {
    use Removal::*;
    let name = settings.name.as_str();
    let cluster = |kind, name: String, removed_by| Owned {
        object: ObjectRef::cluster(kind, name),
        removed_by,
    };
    let namespaced = |kind, name: String, removed_by| Owned {
        object: ObjectRef::namespaced(kind, settings, name),
        removed_by,
    };
    let configurations = names::webhook_configuration(name);
    let bound = policies::bound(name);
    // Bindings before their policies: removing a binding takes its policy off the admission
    // path at once, and a policy left without its binding is never evaluated.
    let bindings = bound
        .iter()
        .map(|p| cluster(p.binding, p.name.clone(), SwitchToWebhook));
    let bound_policies = bound
        .iter()
        .map(|p| cluster(p.policy, p.name.clone(), SwitchToWebhook));
    let retired = policies::retired(name)
        .into_iter()
        .map(|(kind, name)| cluster(kind, name, SwitchToWebhook));
    let mut owned: Vec<Owned> = bindings.chain(bound_policies).chain(retired).collect();
    owned.extend([
        // Deleting it deletes every namespace's published contents, once no policy reads them.
        cluster(
            Kind::CustomResourceDefinition,
            crd::namespace_contents_crd_name(),
            SwitchToWebhook,
        ),
        cluster(
            Kind::ValidatingWebhookConfiguration,
            configurations.clone(),
            SwitchToPolicies,
        ),
        cluster(
            Kind::MutatingWebhookConfiguration,
            configurations,
            SwitchToPolicies,
        ),
        // The name earlier versions gave the configurations.
        cluster(
            Kind::ValidatingWebhookConfiguration,
            name.into(),
            Superseded,
        ),
        cluster(Kind::MutatingWebhookConfiguration, name.into(), Superseded),
        namespaced(Kind::DaemonSet, names::node_setup(name), Uninstall),
        // The certificate alerts and cert-manager's objects serve the webhook alone: policy
        // mode renders none, and a Certificate left behind would issue the TLS Secret again.
        namespaced(Kind::PrometheusRule, name.into(), SwitchToPolicies),
        namespaced(Kind::PodDisruptionBudget, name.into(), SwitchToPolicies),
        namespaced(Kind::PodDisruptionBudgetV1beta1, name.into(), Uninstall),
        namespaced(Kind::Deployment, name.into(), Uninstall),
        namespaced(Kind::Service, name.into(), SwitchToPolicies),
        namespaced(Kind::Certificate, names::tls_secret(name), SwitchToPolicies),
        namespaced(Kind::Issuer, names::ca_issuer(name), SwitchToPolicies),
        namespaced(
            Kind::Certificate,
            names::ca_certificate(name),
            SwitchToPolicies,
        ),
        namespaced(Kind::Secret, names::ca_certificate(name), SwitchToPolicies),
        namespaced(Kind::Issuer, names::issuer(name), SwitchToPolicies),
        namespaced(Kind::Secret, names::tls_secret(name), SwitchToPolicies),
        namespaced(
            Kind::RoleBinding,
            names::certificates_role(name),
            SwitchToPolicies,
        ),
        namespaced(Kind::Role, names::certificates_role(name), SwitchToPolicies),
        namespaced(Kind::ConfigMap, names::client_ca(name), SwitchToPolicies),
        cluster(Kind::ClusterRole, names::view_role(name), Uninstall),
        cluster(Kind::ClusterRoleBinding, name.into(), Uninstall),
        cluster(Kind::ClusterRole, name.into(), Uninstall),
        namespaced(Kind::ServiceAccount, name.into(), Uninstall),
        cluster(
            Kind::ValidatingAdmissionPolicyBinding,
            guard::guard(name),
            NextInstall,
        ),
        cluster(
            Kind::ValidatingAdmissionPolicy,
            guard::guard(name),
            NextInstall,
        ),
        cluster(Kind::Namespace, settings.namespace.clone(), OnRequest),
        cluster(Kind::CustomResourceDefinition, crd::crd_name(), OnRequest),
    ]);
    owned
}

/// The objects of `owned` that `removal` removes, in removal order.
pub fn removed_by(settings: &Settings, removal: Removal) -> Vec<ObjectRef> {
    owned(settings)
        .into_iter()
        .filter(|o| o.removed_by == removal)
        .map(|o| o.object)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(refs: &[ObjectRef]) -> Vec<String> {
        refs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_switch_to_policies_unregisters_the_webhook_before_what_it_calls() {
        let settings = Settings {
            name: "gw".into(),
            namespace: "ns".into(),
            ..Settings::default()
        };
        let removed = removed_by(&settings, Removal::SwitchToPolicies);
        assert_eq!(
            names(&removed),
            [
                "validatingwebhookconfiguration.admissionregistration.k8s.io/gw-admission",
                "mutatingwebhookconfiguration.admissionregistration.k8s.io/gw-admission",
                "prometheusrule.monitoring.coreos.com/gw",
                "poddisruptionbudget.policy/gw",
                "service/gw",
                "certificate.cert-manager.io/gw-tls",
                "issuer.cert-manager.io/gw-ca",
                "certificate.cert-manager.io/gw-ca",
                "secret/gw-ca",
                "issuer.cert-manager.io/gw-selfsigned",
                "secret/gw-tls",
                "rolebinding.rbac.authorization.k8s.io/gw-certificates",
                "role.rbac.authorization.k8s.io/gw-certificates",
                "configmap/gw-client-ca",
            ]
        );
        assert!(removed
            .iter()
            .all(|o| o.namespace.is_none() || o.namespace.as_deref() == Some("ns")));
    }

    #[test]
    fn bindings_go_before_their_policies() {
        let settings = Settings::default();
        let kinds: Vec<Kind> = removed_by(&settings, Removal::SwitchToWebhook)
            .iter()
            .map(|o| o.kind)
            .collect();
        assert_eq!(
            kinds,
            [
                Kind::ValidatingAdmissionPolicyBinding,
                Kind::ValidatingAdmissionPolicyBinding,
                Kind::MutatingAdmissionPolicyBinding,
                Kind::ValidatingAdmissionPolicyBinding,
                Kind::MutatingAdmissionPolicyBinding,
                Kind::ValidatingAdmissionPolicy,
                Kind::ValidatingAdmissionPolicy,
                Kind::MutatingAdmissionPolicy,
                Kind::ValidatingAdmissionPolicy,
                Kind::MutatingAdmissionPolicy,
                // The per-spec policy of earlier versions.
                Kind::ValidatingAdmissionPolicyBinding,
                Kind::ValidatingAdmissionPolicy,
                // The published contents, last: no policy reads them any more.
                Kind::CustomResourceDefinition,
            ]
        );
        let guard = removed_by(&settings, Removal::NextInstall);
        assert_eq!(
            names(&guard),
            [
                "validatingadmissionpolicybinding.admissionregistration.k8s.io/gmsa-webhook-uninstalled",
                "validatingadmissionpolicy.admissionregistration.k8s.io/gmsa-webhook-uninstalled",
            ]
        );
    }

    #[test]
    fn every_object_is_listed_once_in_the_scope_of_its_kind() {
        let settings = Settings::default();
        let owned = owned(&settings);
        for (i, o) in owned.iter().enumerate() {
            assert_eq!(
                o.object.kind.info().namespaced,
                o.object.namespace.is_some(),
                "{}",
                o.object
            );
            assert!(
                !owned[..i].iter().any(|earlier| earlier.object == o.object),
                "{} twice",
                o.object
            );
        }
        let kept = removed_by(&settings, Removal::OnRequest);
        assert_eq!(
            names(&kept),
            [
                "namespace/gmsa-system",
                "customresourcedefinition.apiextensions.k8s.io/gmsacredentialspecs.windows.k8s.io"
            ]
        );
    }
}
