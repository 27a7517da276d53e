//! RBAC evaluation as the Kubernetes RBAC authorizer does it: the objects, requests and rule
//! matching here, and one evaluator over them, [`RbacIndex`], for the webhook (roles as
//! stored, kept from watch events) and for the embedded state, the CLI's offline `admit` and
//! the test fake API server (aggregation computed, with the authorizer's reason texts). Only
//! resource requests are modelled: GMSA needs nothing else.

mod index;
mod mode;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::names;

pub use index::{Aggregation, BindingId, GrantedSpecs, Invalidation, RbacIndex, UseGrant};
pub use mode::AuthorizationMode;

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Object metadata, as much of it as RBAC needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_default"
    )]
    pub labels: BTreeMap<String, String>,
}

/// One rule of a role.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    #[serde(default, deserialize_with = "null_default")]
    pub verbs: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub api_groups: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub resources: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub resource_names: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub non_resource_urls: Vec<String>,
}

/// A label selector (`matchLabels` and `matchExpressions`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default, deserialize_with = "null_default")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_default")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: String,
    #[serde(default, deserialize_with = "null_default")]
    pub values: Vec<String>,
}

impl LabelSelector {
    /// Whether `labels` satisfy the selector. An empty selector matches everything.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let value = labels.get(&r.key);
                match r.operator.as_str() {
                    "In" => value.is_some_and(|v| r.values.contains(v)),
                    "NotIn" => !value.is_some_and(|v| r.values.contains(v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    _ => false,
                }
            })
    }
}

/// A ClusterRole's `aggregationRule`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AggregationRule {
    #[serde(default, deserialize_with = "null_default")]
    pub cluster_role_selectors: Vec<LabelSelector>,
}

/// A Role (namespaced) or ClusterRole.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    #[serde(default)]
    pub metadata: Meta,
    #[serde(default, deserialize_with = "null_default")]
    pub rules: Vec<PolicyRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregation_rule: Option<AggregationRule>,
}

/// Who a binding grants to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_group: Option<String>,
}

/// The role a binding points at.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleRef {
    #[serde(default)]
    pub api_group: String,
    pub kind: String,
    pub name: String,
}

/// A RoleBinding (namespaced) or ClusterRoleBinding.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Binding {
    #[serde(default)]
    pub metadata: Meta,
    #[serde(default, deserialize_with = "null_default")]
    pub subjects: Vec<Subject>,
    pub role_ref: RoleRef,
}

/// The identity a request is made as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    /// The identity of a service account, with the groups the API server gives it.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        Self {
            name: names::service_account_user(namespace, name),
            groups: names::service_account_groups(namespace),
        }
    }
}

/// What is asked: a verb on a resource, optionally by name, optionally in a namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceAttributes {
    pub namespace: String,
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
}

impl ResourceAttributes {
    /// The request that lets a pod reference credential spec `spec` in `namespace`.
    pub fn use_credential_spec(namespace: &str, spec: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            verb: names::USE_VERB.to_string(),
            group: names::GROUP.to_string(),
            resource: names::RESOURCE.to_string(),
            subresource: String::new(),
            name: spec.to_string(),
        }
    }
}

/// The answer of an authorization check, with the reason text the API server would give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub allowed: bool,
    /// Empty when denied: the RBAC authorizer gives no reason for a denial.
    pub reason: String,
}

impl Authorization {
    /// An allowance by `subject` of `binding` (a RoleBinding of `binding_ns`, or a
    /// ClusterRoleBinding), with the reason text the RBAC authorizer writes.
    pub(crate) fn allowed_by(
        binding: &Binding,
        binding_ns: Option<&str>,
        subject: &Subject,
    ) -> Self {
        let binding_desc = match binding_ns {
            None => format!("ClusterRoleBinding {:?}", binding.metadata.name),
            Some(ns) => format!(
                "RoleBinding {:?}",
                format!("{}/{ns}", binding.metadata.name)
            ),
        };
        Authorization {
            allowed: true,
            reason: format!(
                "RBAC: allowed by {binding_desc} of {} {:?} to {}",
                binding.role_ref.kind,
                binding.role_ref.name,
                describe_subject(subject, binding_ns)
            ),
        }
    }

    /// A denial: the RBAC authorizer gives no reason for one.
    pub(crate) fn denied() -> Self {
        Authorization {
            allowed: false,
            reason: String::new(),
        }
    }
}

fn describe_subject(subject: &Subject, binding_ns: Option<&str>) -> String {
    match subject.kind.as_str() {
        "ServiceAccount" => {
            let ns = subject
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .or(binding_ns)
                .unwrap_or_default();
            // The API server writes name/namespace here (the reverse of the user name).
            format!("ServiceAccount {:?}", format!("{}/{ns}", subject.name))
        }
        kind => format!("{kind} {:?}", subject.name),
    }
}

pub(crate) fn subject_matches(
    subject: &Subject,
    user: &UserInfo,
    binding_ns: Option<&str>,
) -> bool {
    match subject.kind.as_str() {
        "User" => rbac_api_group(subject) && subject.name == user.name,
        "Group" => rbac_api_group(subject) && user.groups.contains(&subject.name),
        "ServiceAccount" => {
            let ns = subject
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .or(binding_ns)
                .unwrap_or_default();
            !ns.is_empty() && names::service_account_user(ns, &subject.name) == user.name
        }
        _ => false,
    }
}

/// Whether a User or Group subject is in the RBAC API group; the API server defaults an empty
/// group to it.
pub(crate) fn rbac_api_group(subject: &Subject) -> bool {
    matches!(
        subject.api_group.as_deref(),
        None | Some("") | Some(RBAC_GROUP)
    )
}

fn has(list: &[String], wanted: &str) -> bool {
    list.iter().any(|x| x == "*" || x == wanted)
}

pub(crate) fn rule_allows(rule: &PolicyRule, attrs: &ResourceAttributes) -> bool {
    has(&rule.verbs, &attrs.verb)
        && has(&rule.api_groups, &attrs.group)
        && resource_matches(rule, attrs)
        && (rule.resource_names.is_empty() || rule.resource_names.contains(&attrs.name))
}

/// [`rule_allows`] for `use` of the credential spec `spec` (of any, with `None`), without
/// building the request.
pub(crate) fn rule_allows_use(rule: &PolicyRule, spec: Option<&str>) -> bool {
    has(&rule.verbs, names::USE_VERB)
        && has(&rule.api_groups, names::GROUP)
        && rule
            .resources
            .iter()
            .any(|r| r == "*" || r == names::RESOURCE)
        && (rule.resource_names.is_empty()
            || spec.is_none_or(|spec| rule.resource_names.iter().any(|n| n == spec)))
}

fn resource_matches(rule: &PolicyRule, attrs: &ResourceAttributes) -> bool {
    let combined = if attrs.subresource.is_empty() {
        attrs.resource.clone()
    } else {
        format!("{}/{}", attrs.resource, attrs.subresource)
    };
    rule.resources.iter().any(|r| {
        r == "*"
            || *r == combined
            || (!attrs.subresource.is_empty() && *r == format!("*/{}", attrs.subresource))
    })
}

/// Reads `null` as the type's default, as Go's decoder does for slices and maps.
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl fmt::Display for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.allowed {
            write!(f, "allowed ({})", self.reason)
        } else {
            f.write_str("denied")
        }
    }
}
