//! Granting service accounts the `use` of a credential spec: a ClusterRole allowing the verb
//! on that one `gmsacredentialspecs` name, and a RoleBinding per service account in its own
//! namespace, as the Kubernetes documentation sets it up. Building is pure; applying talks to
//! the cluster by server-side apply.

use std::fmt;
use std::str::FromStr;

use anyhow::Context;
use gmsa_core::names;
use gmsa_core::syntax::{self, SyntaxError};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use thiserror::Error;

/// The field manager of everything this tool applies.
pub const FIELD_MANAGER: &str = "kubectl-gmsa";
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// A service account, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceAccountRef {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ServiceAccountRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.namespace, self.name)
    }
}

/// Why a `NAMESPACE:NAME` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ServiceAccountError {
    #[error("write NAMESPACE:NAME, such as default:default")]
    Format,
    #[error("namespace {0}")]
    Namespace(SyntaxError),
    #[error("service account {0}")]
    Name(SyntaxError),
}

impl FromStr for ServiceAccountRef {
    type Err = ServiceAccountError;

    /// Reads `NAMESPACE:NAME` or the user name `system:serviceaccount:NAMESPACE:NAME`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bare = s.strip_prefix(SERVICE_ACCOUNT_PREFIX).unwrap_or(s);
        let (namespace, name) = bare.split_once(':').ok_or(ServiceAccountError::Format)?;
        if namespace.is_empty() || name.is_empty() || name.contains(':') {
            return Err(ServiceAccountError::Format);
        }
        syntax::namespace(namespace).map_err(ServiceAccountError::Namespace)?;
        syntax::object_name(name).map_err(ServiceAccountError::Name)?;
        Ok(Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }
}

/// Why a grant could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GrantError {
    #[error("SPEC {0}")]
    Spec(SyntaxError),
    #[error("{flag} {value:?} is not a valid RBAC object name: give 1 to 253 characters without '/' or '%'")]
    ObjectName { flag: &'static str, value: String },
    #[error(
        "the default {what} name {value:?} is longer than 253 characters: give one with {flag}"
    )]
    DefaultTooLong {
        what: &'static str,
        value: String,
        flag: &'static str,
    },
    #[error("--binding-name gives every RoleBinding the same name, but service accounts {first} and {second} are in the same namespace: grant them separately, or leave out --binding-name")]
    BindingNameClash {
        first: ServiceAccountRef,
        second: ServiceAccountRef,
    },
    #[error("give at least one --service-account")]
    NoServiceAccount,
}

/// The objects that grant the use of one credential spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub role: ClusterRole,
    pub bindings: Vec<RoleBinding>,
}

/// RBAC names are path segments: anything but '/' and '%', and not `.` or `..`.
fn rbac_name(flag: &'static str, value: &str) -> Result<(), GrantError> {
    let ok = !value.is_empty()
        && value.len() <= syntax::MAX_OBJECT_NAME
        && !value.contains(['/', '%'])
        && value != "."
        && value != "..";
    if ok {
        Ok(())
    } else {
        Err(GrantError::ObjectName {
            flag,
            value: value.to_string(),
        })
    }
}

fn default_name(
    what: &'static str,
    flag: &'static str,
    value: String,
) -> Result<String, GrantError> {
    if value.len() <= syntax::MAX_OBJECT_NAME {
        Ok(value)
    } else {
        Err(GrantError::DefaultTooLong { what, value, flag })
    }
}

/// The default ClusterRole name for a spec.
pub fn default_role_name(spec: &str) -> String {
    format!("{spec}-user")
}

/// The default RoleBinding name for a service account and a spec.
pub fn default_binding_name(service_account: &str, spec: &str) -> String {
    format!("allow-{service_account}-use-{spec}")
}

/// Builds the ClusterRole and RoleBindings that let `service_accounts` use `spec`. Repeated
/// service accounts count once.
pub fn grant(
    spec: &str,
    service_accounts: &[ServiceAccountRef],
    role_name: Option<&str>,
    binding_name: Option<&str>,
) -> Result<Grant, GrantError> {
    syntax::object_name(spec).map_err(GrantError::Spec)?;
    if service_accounts.is_empty() {
        return Err(GrantError::NoServiceAccount);
    }
    let role_name = match role_name {
        Some(name) => {
            rbac_name("--role-name", name)?;
            name.to_string()
        }
        None => default_name("ClusterRole", "--role-name", default_role_name(spec))?,
    };
    if let Some(name) = binding_name {
        rbac_name("--binding-name", name)?;
    }

    let mut accounts: Vec<&ServiceAccountRef> = Vec::new();
    for sa in service_accounts {
        if accounts.contains(&sa) {
            continue;
        }
        if let Some(first) = binding_name.and(accounts.iter().find(|a| a.namespace == sa.namespace))
        {
            return Err(GrantError::BindingNameClash {
                first: (*first).clone(),
                second: sa.clone(),
            });
        }
        accounts.push(sa);
    }

    let role = ClusterRole {
        metadata: ObjectMeta {
            name: Some(role_name.clone()),
            ..ObjectMeta::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![names::GROUP.to_string()]),
            resources: Some(vec![names::RESOURCE.to_string()]),
            verbs: vec![names::USE_VERB.to_string()],
            resource_names: Some(vec![spec.to_string()]),
            ..PolicyRule::default()
        }]),
        ..ClusterRole::default()
    };
    let bindings = accounts
        .into_iter()
        .map(|sa| {
            let name = match binding_name {
                Some(name) => name.to_string(),
                None => default_name(
                    "RoleBinding",
                    "--binding-name",
                    default_binding_name(&sa.name, spec),
                )?,
            };
            Ok(RoleBinding {
                metadata: ObjectMeta {
                    name: Some(name),
                    namespace: Some(sa.namespace.clone()),
                    ..ObjectMeta::default()
                },
                role_ref: RoleRef {
                    api_group: Some(RBAC_GROUP.to_string()),
                    kind: "ClusterRole".to_string(),
                    name: role_name.clone(),
                },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".to_string(),
                    name: sa.name.clone(),
                    namespace: Some(sa.namespace.clone()),
                    api_group: None,
                }]),
            })
        })
        .collect::<Result<Vec<_>, GrantError>>()?;
    Ok(Grant { role, bindings })
}

impl Grant {
    /// The objects as YAML documents: the ClusterRole, then the RoleBindings.
    pub fn to_yaml(&self) -> Result<String, crate::output::OutputError> {
        let mut docs = vec![serde_json::to_value(&self.role)];
        docs.extend(self.bindings.iter().map(serde_json::to_value));
        let docs = docs
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| crate::output::OutputError::Yaml(e.to_string()))?;
        crate::output::yaml_documents(&docs)
    }

    /// Applies every object by server-side apply; returns a kubectl-like line per object.
    pub async fn apply(
        &self,
        client: kube::Client,
        server_dry_run: bool,
        force_conflicts: bool,
    ) -> anyhow::Result<Vec<String>> {
        use kube::api::{Api, Patch, PatchParams};
        let mut params = PatchParams::apply(FIELD_MANAGER);
        if server_dry_run {
            params = params.dry_run();
        }
        if force_conflicts {
            params = params.force();
        }
        let suffix = if server_dry_run {
            " (server dry run)"
        } else {
            ""
        };
        let mut lines = Vec::new();
        let role_name = self.role.metadata.name.as_deref().unwrap_or_default();
        Api::<ClusterRole>::all(client.clone())
            .patch(role_name, &params, &Patch::Apply(&self.role))
            .await
            .with_context(|| format!("cannot apply ClusterRole {role_name}"))?;
        lines.push(format!(
            "clusterrole.{RBAC_GROUP}/{role_name} serverside-applied{suffix}"
        ));
        for binding in &self.bindings {
            let name = binding.metadata.name.as_deref().unwrap_or_default();
            let namespace = binding.metadata.namespace.as_deref().unwrap_or_default();
            Api::<RoleBinding>::namespaced(client.clone(), namespace)
                .patch(name, &params, &Patch::Apply(binding))
                .await
                .with_context(|| format!("cannot apply RoleBinding {namespace}/{name}"))?;
            lines.push(format!(
                "rolebinding.{RBAC_GROUP}/{name} serverside-applied{suffix} (namespace {namespace})"
            ));
        }
        Ok(lines)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;
    use serde_json::json;

    fn sa(s: &str) -> ServiceAccountRef {
        s.parse().unwrap()
    }

    #[test]
    fn reads_service_accounts() {
        assert_eq!(
            sa("system:serviceaccount:team-c:web"),
            ServiceAccountRef {
                namespace: "team-c".into(),
                name: "web".into()
            }
        );
        assert_eq!(
            "default".parse::<ServiceAccountRef>(),
            Err(ServiceAccountError::Format)
        );
        assert!(matches!(
            "Team:web".parse::<ServiceAccountRef>(),
            Err(ServiceAccountError::Namespace(_))
        ));
        assert!(matches!(
            "a:b:c".parse::<ServiceAccountRef>(),
            Err(ServiceAccountError::Format)
        ));
    }

    #[test]
    fn builds_the_documented_objects() {
        let g = grant(
            "gmsa-webapp1",
            &[sa("default:default"), sa("web:iis"), sa("default:default")],
            None,
            None,
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&g.role).unwrap(),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "gmsa-webapp1-user"},
                "rules": [{"apiGroups": ["windows.k8s.io"], "resources": ["gmsacredentialspecs"],
                    "verbs": ["use"], "resourceNames": ["gmsa-webapp1"]}]
            })
        );
        assert_eq!(g.bindings.len(), 2);
        assert_eq!(
            serde_json::to_value(&g.bindings[1]).unwrap(),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "allow-iis-use-gmsa-webapp1", "namespace": "web"},
                "subjects": [{"kind": "ServiceAccount", "name": "iis", "namespace": "web"}],
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "gmsa-webapp1-user"}
            })
        );
    }

    #[test]
    fn refuses_bad_names() {
        assert!(matches!(
            grant("gmsa-WebApp1", &[sa("a:b")], None, None),
            Err(GrantError::Spec(_))
        ));
        assert!(matches!(
            grant("x", &[sa("a:b")], Some("a/b"), None),
            Err(GrantError::ObjectName { .. })
        ));
        assert!(matches!(
            grant("x", &[sa("a:b"), sa("a:c")], None, Some("same")),
            Err(GrantError::BindingNameClash { .. })
        ));
        assert!(grant("x", &[sa("a:b"), sa("c:b")], Some("system:x"), Some("same")).is_ok());
        assert_eq!(
            grant("x", &[], None, None),
            Err(GrantError::NoServiceAccount)
        );
    }
}
