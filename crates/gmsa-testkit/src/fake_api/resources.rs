//! The resource types the fake serves, and how each is shaped on the wire.

use gmsa_core::names;
use serde_json::{json, Map, Value};

pub(crate) const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
const RBAC_VERSIONS: &[&str] = &["v1"];

/// One served resource type: enough to route, name and shape it like the real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResourceType {
    pub plural: &'static str,
    pub kind: &'static str,
    pub group: &'static str,
    /// Served versions; the first is the storage version.
    pub versions: &'static [&'static str],
    pub namespaced: bool,
    /// Served through a CustomResourceDefinition: unstructured JSON, so list items keep their
    /// `apiVersion`/`kind`, lists always carry `metadata.continue`, and `generation` is kept.
    pub custom: bool,
}

pub(crate) const CREDENTIAL_SPECS: ResourceType = ResourceType {
    plural: names::RESOURCE,
    kind: names::KIND,
    group: names::GROUP,
    versions: &[names::VERSION, names::VERSION_ALPHA],
    namespaced: false,
    custom: true,
};

/// An RBAC type: built in, so typed on the server.
const fn rbac(plural: &'static str, kind: &'static str, namespaced: bool) -> ResourceType {
    ResourceType {
        plural,
        kind,
        group: RBAC_GROUP,
        versions: RBAC_VERSIONS,
        namespaced,
        custom: false,
    }
}

pub(crate) const CLUSTER_ROLES: ResourceType = rbac("clusterroles", "ClusterRole", false);
pub(crate) const CLUSTER_ROLE_BINDINGS: ResourceType =
    rbac("clusterrolebindings", "ClusterRoleBinding", false);
pub(crate) const ROLES: ResourceType = rbac("roles", "Role", true);
pub(crate) const ROLE_BINDINGS: ResourceType = rbac("rolebindings", "RoleBinding", true);

pub(crate) const ALL: [ResourceType; 5] = [
    CREDENTIAL_SPECS,
    CLUSTER_ROLES,
    CLUSTER_ROLE_BINDINGS,
    ROLES,
    ROLE_BINDINGS,
];

impl ResourceType {
    /// The type served at `/apis/{group}/{version}/{plural}`.
    pub fn at(group: &str, version: &str, plural: &str) -> Option<Self> {
        ALL.into_iter()
            .find(|rt| rt.group == group && rt.plural == plural && rt.versions.contains(&version))
    }

    /// The type of an object with this `apiVersion` and `kind`.
    pub fn of(api_version: &str, kind: &str) -> Option<Self> {
        let (group, version) = api_version.split_once('/')?;
        ALL.into_iter()
            .find(|rt| rt.group == group && rt.kind == kind && rt.versions.contains(&version))
    }

    /// The type named by a kind or a plural, in any case, as test code names it.
    pub fn named(name: &str) -> Option<Self> {
        ALL.into_iter()
            .find(|rt| rt.kind.eq_ignore_ascii_case(name) || rt.plural.eq_ignore_ascii_case(name))
    }

    pub fn api_version(&self, version: &str) -> String {
        format!("{}/{version}", self.group)
    }

    pub fn storage_api_version(&self) -> String {
        self.api_version(self.versions[0])
    }

    /// `plural.group`, as error messages name the resource.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.plural, self.group)
    }

    /// Whether a PUT of a missing object creates it (true for RBAC, false for CRDs).
    pub fn creates_on_update(&self) -> bool {
        !self.custom
    }

    /// Whether a PUT must carry `metadata.resourceVersion` (CRDs refuse unconditional updates).
    pub fn needs_version_on_update(&self) -> bool {
        self.custom
    }

    /// The object a BOOKMARK event carries: an empty object of the kind with only the version.
    /// Built-in kinds are typed on the server, so their non-`omitempty` fields show up as zero
    /// values; a custom resource's bookmark is just type and metadata.
    pub fn bookmark(&self, version: &str, resource_version: u64) -> Value {
        let mut object = Map::new();
        object.insert("kind".into(), json!(self.kind));
        object.insert("apiVersion".into(), json!(self.api_version(version)));
        if self.custom {
            object.insert(
                "metadata".into(),
                json!({ "resourceVersion": resource_version.to_string() }),
            );
            return Value::Object(object);
        }
        object.insert(
            "metadata".into(),
            json!({ "resourceVersion": resource_version.to_string(), "creationTimestamp": null }),
        );
        match self.kind {
            "ClusterRole" | "Role" => {
                object.insert("rules".into(), Value::Null);
            }
            _ => {
                object.insert(
                    "roleRef".into(),
                    json!({ "apiGroup": "", "kind": "", "name": "" }),
                );
            }
        }
        Value::Object(object)
    }

    /// A copy of a stored object as served under `version`.
    pub fn served(&self, object: &Value, version: &str) -> Value {
        let mut out = object.clone();
        if let Some(map) = out.as_object_mut() {
            map.insert("apiVersion".into(), json!(self.api_version(version)));
        }
        out
    }
}
