//! The `GMSACredentialSpec` CustomResourceDefinition: cluster-scoped, `v1` stored, `v1alpha1`
//! still served (deprecated) for clusters that stored objects through it, and `credspec` kept
//! as an arbitrary object, since Windows defines its contents.

use gmsa_core::names as core_names;
use serde_json::{json, Value};

use crate::names;

/// `gmsacredentialspecs.windows.k8s.io`.
pub fn crd_name() -> String {
    format!("{}.{}", core_names::RESOURCE, core_names::GROUP)
}

/// The CRD object.
pub fn custom_resource_definition() -> Value {
    let schema = json!({
        "openAPIV3Schema": {
            "type": "object",
            "properties": {
                (core_names::CREDSPEC_KEY): {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": true
                }
            }
        }
    });
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": crd_name(),
            "annotations": {(names::API_APPROVED_ANNOTATION): names::API_APPROVED_VALUE}
        },
        "spec": {
            "group": core_names::GROUP,
            "scope": "Cluster",
            "names": {
                "kind": core_names::KIND,
                "listKind": format!("{}List", core_names::KIND),
                "plural": core_names::RESOURCE,
                "singular": core_names::KIND.to_ascii_lowercase()
            },
            "versions": [
                {
                    "name": core_names::VERSION,
                    "served": true,
                    "storage": true,
                    "schema": schema
                },
                {
                    "name": core_names::VERSION_ALPHA,
                    "served": true,
                    "storage": false,
                    "deprecated": true,
                    "deprecationWarning": format!(
                        "{}/{} {} is deprecated; use {}/{}",
                        core_names::GROUP, core_names::VERSION_ALPHA, core_names::KIND,
                        core_names::GROUP, core_names::VERSION
                    ),
                    "schema": schema
                }
            ]
        }
    })
}
