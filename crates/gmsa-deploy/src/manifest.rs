//! The install as typed phases: each rendered object with its kind, namespace and name, grouped
//! by what it is for, in the order the phases are applied.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

use k8s_openapi::Resource;
use serde::Serialize;
use serde_json::Value;

use crate::objects::{certificates, deployment, rbac, untyped, workload};
use crate::{crd, meta, policies, webhooks, Admission, CertMode, Kind, KubeVersion};
use crate::{Settings, SettingsError, TlsMaterial};

/// Which object: its kind, its namespace when the kind is namespaced, its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    pub kind: Kind,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    /// A cluster-scoped object.
    pub fn cluster(kind: Kind, name: impl Into<String>) -> Self {
        ObjectRef {
            kind,
            namespace: None,
            name: name.into(),
        }
    }

    /// An object in the install's namespace.
    pub fn namespaced(kind: Kind, settings: &Settings, name: impl Into<String>) -> Self {
        ObjectRef {
            kind,
            namespace: Some(settings.namespace.clone()),
            name: name.into(),
        }
    }

    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }
}

impl fmt::Display for ObjectRef {
    /// `kind.group/name`, as kubectl names objects.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kind.info().object_name(&self.name))
    }
}

/// One rendered object: which it is, and what is applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub id: ObjectRef,
    pub body: Value,
    /// Fields other field managers hold are taken over on apply: the CRD (a reference install
    /// may have applied it client-side), what the replicas' certificate renewal writes (the
    /// self-signed Secret, the webhook configurations) and what the policy-mode keeper writes
    /// (the `-elsewhere` binding). Everything else conflicts unless asked.
    pub take_over: bool,
}

impl Object {
    /// A typed object as JSON, with its name and namespace read from its metadata.
    pub(crate) fn typed<K: Resource + Serialize>(kind: Kind, object: &K) -> Self {
        Object::untyped(kind, meta::to_value(object))
    }

    pub(crate) fn untyped(kind: Kind, body: Value) -> Self {
        let metadata = &body["metadata"];
        let id = ObjectRef {
            kind,
            namespace: metadata["namespace"].as_str().map(str::to_owned),
            name: metadata["name"].as_str().unwrap_or_default().to_owned(),
        };
        let take_over = matches!(
            kind,
            Kind::CustomResourceDefinition
                | Kind::Secret
                | Kind::MutatingWebhookConfiguration
                | Kind::ValidatingWebhookConfiguration
        );
        Object {
            id,
            body,
            take_over,
        }
    }
}

/// The rendered objects, by phase. Applied in field order: definitions and identities first,
/// admission last, so the API server never calls a webhook (or evaluates a policy) whose
/// workload is not there.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Manifest {
    /// The CRD and the namespace.
    pub definitions: Vec<Object>,
    /// The service account, its cluster roles and binding.
    pub identity: Vec<Object>,
    /// Serving and client certificates, and what renews them.
    pub certificates: Vec<Object>,
    /// Service, Deployment (the webhook's or the keeper's), PodDisruptionBudget, node setup,
    /// PrometheusRule.
    pub workload: Vec<Object>,
    /// The webhook configurations, or the admission policies each before its binding.
    pub admission: Vec<Object>,
}

impl Manifest {
    /// Every object, in apply order.
    pub fn objects(&self) -> impl Iterator<Item = &Object> {
        self.before_admission().chain(&self.admission)
    }

    /// Every object but the admission phase's, in apply order: what must be in place before
    /// anything sends admissions to it.
    pub fn before_admission(&self) -> impl Iterator<Item = &Object> {
        self.definitions
            .iter()
            .chain(&self.identity)
            .chain(&self.certificates)
            .chain(&self.workload)
    }

    /// Every object as applied, in apply order (the YAML output).
    pub fn bodies(&self) -> Vec<Value> {
        self.objects().map(|o| o.body.clone()).collect()
    }
}

/// Renders every object for `settings`. `tls` is required for self-signed certificates and for
/// an existing Secret (its CA bundle), and ignored with cert-manager.
pub fn render(settings: &Settings, tls: Option<&TlsMaterial>) -> Result<Manifest, SettingsError> {
    settings.check()?;
    if settings.admission == Admission::Policies {
        return Ok(render_policies(settings));
    }
    let ca_bundle = match (&settings.certs, tls) {
        (CertMode::CertManager, _) => None,
        (_, Some(tls)) if !tls.ca_bundle_pem.is_empty() => Some(trusted_bundle(tls)),
        (CertMode::SelfSigned, _) => return Err(SettingsError::NoCertificates),
        (CertMode::Secret(name), _) => return Err(SettingsError::NoCaBundle(name.clone())),
    };
    let ca_bundle = ca_bundle.as_deref();
    let mut identity = vec![
        Object::typed(Kind::ServiceAccount, &rbac::service_account(settings)),
        Object::typed(Kind::ClusterRole, &rbac::cluster_role(settings)),
        Object::typed(
            Kind::ClusterRoleBinding,
            &rbac::cluster_role_binding(settings),
        ),
    ];
    if settings.aggregate_to_view {
        identity.push(Object::typed(Kind::ClusterRole, &rbac::view_role(settings)));
    }
    let mut certificates = Vec::new();
    match (&settings.certs, tls) {
        (CertMode::SelfSigned, Some(tls)) => {
            certificates.push(Object::typed(
                Kind::Role,
                &rbac::certificates_role(settings),
            ));
            certificates.push(Object::typed(
                Kind::RoleBinding,
                &rbac::certificates_role_binding(settings),
            ));
            certificates.push(tls_secret(settings, tls));
        }
        (CertMode::CertManager, _) => {
            certificates.push(Object::untyped(Kind::Issuer, untyped::issuer(settings)));
            certificates.push(Object::untyped(
                Kind::Certificate,
                untyped::ca_certificate(settings),
            ));
            certificates.push(Object::untyped(Kind::Issuer, untyped::ca_issuer(settings)));
            certificates.push(Object::untyped(
                Kind::Certificate,
                untyped::certificate(settings),
            ));
        }
        _ => {}
    }
    if let Some(pem) = &settings.client_ca_pem {
        certificates.push(Object::typed(
            Kind::ConfigMap,
            &certificates::client_ca(settings, pem),
        ));
    }
    let mut workload = vec![
        Object::typed(Kind::Service, &workload::service(settings)),
        Object::typed(Kind::Deployment, &deployment::deployment(settings)),
    ];
    if settings.pod_disruption_budget {
        let kind = if settings.kube_version.at_least(KubeVersion::POLICY_V1) {
            Kind::PodDisruptionBudget
        } else {
            Kind::PodDisruptionBudgetV1beta1
        };
        workload.push(Object::untyped(
            kind,
            workload::pod_disruption_budget(settings),
        ));
    }
    if settings.node_setup {
        workload.push(Object::typed(
            Kind::DaemonSet,
            &workload::node_setup(settings),
        ));
    }
    if settings.prometheus_rule {
        workload.push(Object::untyped(
            Kind::PrometheusRule,
            untyped::prometheus_rule(settings),
        ));
    }
    Ok(Manifest {
        definitions: definitions(settings),
        identity,
        certificates,
        workload,
        admission: vec![
            Object::typed(
                Kind::MutatingWebhookConfiguration,
                &webhooks::mutating(settings, ca_bundle),
            ),
            Object::typed(
                Kind::ValidatingWebhookConfiguration,
                &webhooks::validating(settings, ca_bundle),
            ),
        ],
    })
}

/// Policy mode: the keeper that publishes contents (no Service, certificates or webhook
/// configurations) and the node setup if asked, then the policies, each before its binding.
fn render_policies(settings: &Settings) -> Manifest {
    let mut identity = vec![
        Object::typed(Kind::ServiceAccount, &rbac::service_account(settings)),
        Object::typed(Kind::ClusterRole, &rbac::keeper_cluster_role(settings)),
        Object::typed(
            Kind::ClusterRoleBinding,
            &rbac::cluster_role_binding(settings),
        ),
    ];
    if settings.aggregate_to_view {
        identity.push(Object::typed(Kind::ClusterRole, &rbac::view_role(settings)));
    }
    let mut workload = vec![Object::typed(
        Kind::Deployment,
        &deployment::keeper(settings),
    )];
    if settings.node_setup {
        workload.push(Object::typed(
            Kind::DaemonSet,
            &workload::node_setup(settings),
        ));
    }
    Manifest {
        definitions: definitions(settings),
        identity,
        certificates: Vec::new(),
        workload,
        admission: policies::admission_objects(
            settings,
            &policies::keeper_user(settings),
            &BTreeSet::new(),
        ),
    }
}

fn definitions(settings: &Settings) -> Vec<Object> {
    let mut definitions = vec![Object::untyped(
        Kind::CustomResourceDefinition,
        crd::custom_resource_definition(),
    )];
    if settings.admission == Admission::Policies {
        definitions.push(Object::untyped(
            Kind::CustomResourceDefinition,
            crd::namespace_contents_definition(settings),
        ));
    }
    definitions.push(Object::typed(
        Kind::Namespace,
        &workload::namespace(settings),
    ));
    definitions
}

/// The self-signed Secret alone, for `tls` (a rotation stages its new pair with it before the
/// install applies the rest).
pub fn tls_secret(settings: &Settings, tls: &TlsMaterial) -> Object {
    Object::typed(Kind::Secret, &certificates::tls_secret(settings, tls))
}

/// What the webhook configurations trust: the bundle, then every CA of `also_trusted` it
/// lacks.
fn trusted_bundle(tls: &TlsMaterial) -> Cow<'_, str> {
    let mut blocks = gmsa_tls::self_signed::pem_blocks(&tls.ca_bundle_pem);
    let before = blocks.len();
    for block in &tls.also_trusted {
        if !blocks.contains(block) {
            blocks.push(block.clone());
        }
    }
    if blocks.len() == before {
        Cow::Borrowed(&tls.ca_bundle_pem)
    } else {
        Cow::Owned(blocks.concat())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use base64::Engine as _;

    use super::*;

    const CA1: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    const CA2: &str = "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n";

    fn tls() -> TlsMaterial {
        TlsMaterial {
            ca_bundle_pem: CA1.into(),
            secret: Some(crate::SelfSignedSecret::default()),
            ..TlsMaterial::default()
        }
    }

    fn kinds(objects: &[Object]) -> Vec<Kind> {
        objects.iter().map(|o| o.id.kind).collect()
    }

    fn ca_bundles(m: &Manifest) -> Vec<String> {
        m.admission
            .iter()
            .flat_map(|o| o.body["webhooks"].as_array().unwrap().clone())
            .map(|hook| {
                let b64 = hook["clientConfig"]["caBundle"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                let pem = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap();
                String::from_utf8(pem).unwrap()
            })
            .collect()
    }

    #[test]
    fn each_phase_holds_its_own_objects() {
        let settings = Settings {
            node_setup: true,
            ..Settings::default()
        };
        let m = render(&settings, Some(&tls())).unwrap();
        assert_eq!(
            kinds(&m.definitions),
            [Kind::CustomResourceDefinition, Kind::Namespace]
        );
        assert_eq!(
            kinds(&m.identity),
            [
                Kind::ServiceAccount,
                Kind::ClusterRole,
                Kind::ClusterRoleBinding
            ]
        );
        assert_eq!(
            kinds(&m.certificates),
            [Kind::Role, Kind::RoleBinding, Kind::Secret]
        );
        assert_eq!(
            kinds(&m.workload),
            [
                Kind::Service,
                Kind::Deployment,
                Kind::PodDisruptionBudget,
                Kind::DaemonSet
            ]
        );
        assert_eq!(
            kinds(&m.admission),
            [
                Kind::MutatingWebhookConfiguration,
                Kind::ValidatingWebhookConfiguration
            ]
        );
        let taken_over: Vec<Kind> = m
            .objects()
            .filter(|o| o.take_over)
            .map(|o| o.id.kind)
            .collect();
        assert_eq!(
            taken_over,
            [
                Kind::CustomResourceDefinition,
                Kind::Secret,
                Kind::MutatingWebhookConfiguration,
                Kind::ValidatingWebhookConfiguration
            ]
        );
        assert_eq!(
            m.certificates[2].id.to_string(),
            "secret/gmsa-webhook-tls",
            "kubectl's naming"
        );
        assert_eq!(
            m.admission[0].id.to_string(),
            "mutatingwebhookconfiguration.admissionregistration.k8s.io/gmsa-webhook-admission"
        );

        let policies = Settings {
            admission: Admission::Policies,
            kube_version: KubeVersion::ADMISSION_POLICIES,
            ..settings
        };
        let m = render(&policies, None).unwrap();
        assert!(m.certificates.is_empty());
        assert_eq!(kinds(&m.workload), [Kind::Deployment, Kind::DaemonSet]);
        assert_eq!(
            kinds(&m.admission),
            [
                Kind::MutatingAdmissionPolicy,
                Kind::MutatingAdmissionPolicyBinding,
                Kind::ValidatingAdmissionPolicy,
                Kind::ValidatingAdmissionPolicyBinding,
                Kind::ValidatingAdmissionPolicy,
                Kind::ValidatingAdmissionPolicyBinding,
                Kind::MutatingAdmissionPolicy,
                Kind::MutatingAdmissionPolicyBinding,
                Kind::ValidatingAdmissionPolicy,
                Kind::ValidatingAdmissionPolicyBinding
            ]
        );
        let definitions: Vec<String> = m.definitions.iter().map(|o| o.id.to_string()).collect();
        assert_eq!(
            definitions,
            [
                "customresourcedefinition.apiextensions.k8s.io/gmsacredentialspecs.windows.k8s.io",
                "customresourcedefinition.apiextensions.k8s.io/gmsanamespacecontents.policy.gmsa.dev",
                "namespace/gmsa-system"
            ]
        );
        let owned = crate::owned(&policies);
        for object in m.objects() {
            assert!(owned.iter().any(|o| o.object == object.id), "{}", object.id);
        }
    }

    #[test]
    fn the_secrets_resource_version_is_an_input() {
        let settings = Settings::default();
        let without = render(&settings, Some(&tls())).unwrap();
        assert!(without.certificates[2].body["metadata"]
            .get("resourceVersion")
            .is_none());
        let read = TlsMaterial {
            secret_resource_version: Some("42".into()),
            ..tls()
        };
        let with = render(&settings, Some(&read)).unwrap();
        assert_eq!(
            with.certificates[2].body["metadata"]["resourceVersion"],
            "42"
        );
        assert_eq!(tls_secret(&settings, &read), with.certificates[2]);
        let only_the_secret_differs = |m: &Manifest| {
            m.objects()
                .filter(|o| o.id.kind != Kind::Secret)
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            only_the_secret_differs(&without),
            only_the_secret_differs(&with)
        );
    }

    #[test]
    fn extra_cas_are_trusted_once_and_a_known_one_changes_nothing() {
        let settings = Settings::default();
        let plain = render(&settings, Some(&tls())).unwrap();
        assert_eq!(ca_bundles(&plain), [CA1; 3]);
        let known = TlsMaterial {
            also_trusted: vec![CA1.into()],
            ..tls()
        };
        assert_eq!(render(&settings, Some(&known)).unwrap(), plain);
        let renewed = TlsMaterial {
            also_trusted: vec![CA1.into(), CA2.into(), CA2.into()],
            ..tls()
        };
        let m = render(&settings, Some(&renewed)).unwrap();
        assert_eq!(ca_bundles(&m), vec![format!("{CA1}{CA2}"); 3]);
        assert_eq!(
            m.certificates, plain.certificates,
            "only the bundles change"
        );
    }
}
