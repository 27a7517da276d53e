//! The API resources the project reads and writes dynamically.

use gmsa_core::names;
use kube::api::ApiResource;

/// The `GMSACredentialSpec` resource, read through `windows.k8s.io/v1` (objects stored as
/// `v1alpha1` are converted by the API server).
pub fn credential_spec_resource() -> ApiResource {
    ApiResource {
        group: names::GROUP.to_string(),
        version: names::VERSION.to_string(),
        api_version: format!("{}/{}", names::GROUP, names::VERSION),
        kind: names::KIND.to_string(),
        plural: names::RESOURCE.to_string(),
    }
}

/// Policy mode's per-namespace `GMSANamespaceContents` resource.
pub fn namespace_contents_resource() -> ApiResource {
    let c = names::contents::KIND;
    ApiResource {
        group: names::contents::GROUP.to_string(),
        version: names::contents::VERSION.to_string(),
        api_version: format!("{}/{}", names::contents::GROUP, names::contents::VERSION),
        kind: c.to_string(),
        plural: names::contents::RESOURCE.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resource_is_the_served_version() {
        let resource = credential_spec_resource();
        assert_eq!(resource.api_version, "windows.k8s.io/v1");
        assert_eq!(resource.plural, "gmsacredentialspecs");
        assert_eq!(resource.kind, "GMSACredentialSpec");
    }
}
