//! AdmissionReview request bodies as the API server sends them, for tests and examples: one
//! builder instead of a hand-written envelope in every test file. A review of a pod CREATE in
//! `default` unless told otherwise; fields the API server leaves out stay out.

use serde_json::{json, Value};

/// What the review is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resource {
    Pods,
    CredentialSpecs,
}

/// An AdmissionReview request, built field by field.
#[derive(Debug, Clone)]
pub struct ReviewBody {
    api_version: Option<String>,
    uid: String,
    resource: Resource,
    /// The kind the request names; the resource's own unless a test says otherwise.
    kind: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    operation: String,
    sub_resource: Option<String>,
    object: Value,
    old_object: Option<Value>,
}

impl ReviewBody {
    /// A CREATE of `pod` in `default`, `admission.k8s.io/v1`, uid `u1`.
    pub fn pod(pod: Value) -> Self {
        Self {
            api_version: Some("admission.k8s.io/v1".to_string()),
            uid: "u1".to_string(),
            resource: Resource::Pods,
            kind: None,
            namespace: Some("default".to_string()),
            name: None,
            operation: "CREATE".to_string(),
            sub_resource: None,
            object: pod,
            old_object: None,
        }
    }

    /// A CREATE of the `GMSACredentialSpec` `spec` (cluster-scoped: no namespace), named as
    /// the object is.
    pub fn credential_spec(spec: Value) -> Self {
        let name = spec
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .map(str::to_string);
        Self {
            resource: Resource::CredentialSpecs,
            namespace: None,
            name,
            ..Self::pod(spec)
        }
    }

    /// The envelope's `apiVersion`; `None` leaves it out, as a broken caller might.
    pub fn api_version(mut self, api_version: Option<&str>) -> Self {
        self.api_version = api_version.map(str::to_string);
        self
    }

    pub fn uid(mut self, uid: &str) -> Self {
        self.uid = uid.to_string();
        self
    }

    /// The kind the request names, for reviews of the wrong kind.
    pub fn kind(mut self, kind: &str) -> Self {
        self.kind = Some(kind.to_string());
        self
    }

    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.to_string());
        self
    }

    /// The request's `name` (pods named by `generateName` have none yet).
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    /// `CREATE`, `UPDATE`, `DELETE`, `CONNECT`, or anything a test invents.
    pub fn operation(mut self, operation: &str) -> Self {
        self.operation = operation.to_string();
        self
    }

    /// `pods/ephemeralcontainers` and the like: the part after the slash.
    pub fn sub_resource(mut self, sub_resource: &str) -> Self {
        self.sub_resource = Some(sub_resource.to_string());
        self
    }

    /// The object as it was, for an UPDATE.
    pub fn old(mut self, old: Value) -> Self {
        self.old_object = Some(old);
        self
    }

    /// The review as JSON.
    pub fn to_value(&self) -> Value {
        let (group, resource, own_kind) = match self.resource {
            Resource::Pods => ("", "pods", "Pod"),
            Resource::CredentialSpecs => (
                gmsa_core::names::GROUP,
                gmsa_core::names::RESOURCE,
                gmsa_core::names::KIND,
            ),
        };
        let version = match self.resource {
            Resource::Pods => "v1",
            Resource::CredentialSpecs => gmsa_core::names::VERSION,
        };
        let kind = self.kind.as_deref().unwrap_or(own_kind);
        let mut request = json!({
            "uid": self.uid,
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "operation": self.operation,
            "object": self.object,
        });
        let mut set = |key: &str, value: &Option<String>| {
            if let Some(v) = value {
                request[key] = json!(v);
            }
        };
        set("namespace", &self.namespace);
        set("name", &self.name);
        set("subResource", &self.sub_resource);
        if let Some(old) = &self.old_object {
            request["oldObject"] = old.clone();
        }
        let mut review = json!({"kind": "AdmissionReview", "request": request});
        if let Some(v) = &self.api_version {
            review["apiVersion"] = json!(v);
        }
        review
    }

    /// The review as the request body the API server sends.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_value().to_string().into_bytes()
    }
}

impl std::fmt::Display for ReviewBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.to_value())
    }
}

/// A pod named `name` whose pod-level security context names the credential spec `spec`.
pub fn gmsa_pod(name: &str, spec: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "securityContext": {"windowsOptions": {"gmsaCredentialSpecName": spec}},
            "containers": [{"name": "c"}]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_review_has_what_the_api_server_sends() {
        let body = ReviewBody::pod(gmsa_pod("p", "gmsa-webapp1"))
            .uid("u9")
            .operation("UPDATE")
            .old(gmsa_pod("p", "other"))
            .to_value();
        assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(body["request"]["kind"]["kind"], "Pod");
        assert_eq!(body["request"]["namespace"], "default");
        assert_eq!(body["request"]["uid"], "u9");
        assert_eq!(
            body["request"]["oldObject"]["spec"]["securityContext"]["windowsOptions"]
                ["gmsaCredentialSpecName"],
            "other"
        );
        assert!(body["request"].get("name").is_none());
        assert!(body["request"].get("subResource").is_none());
    }

    #[test]
    fn a_credential_spec_review_is_cluster_scoped_and_named() {
        let spec = crate::credspecs::webapp1("gmsa-webapp1");
        let body = ReviewBody::credential_spec(spec)
            .api_version(None)
            .to_value();
        assert!(body.get("apiVersion").is_none());
        assert_eq!(body["request"]["kind"]["kind"], "GMSACredentialSpec");
        assert_eq!(body["request"]["resource"]["group"], "windows.k8s.io");
        assert_eq!(body["request"]["name"], "gmsa-webapp1");
        assert!(body["request"].get("namespace").is_none());
    }
}
