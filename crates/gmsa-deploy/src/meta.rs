//! What every rendered object shares: its metadata, label selectors, and the one conversion of
//! a typed object into the JSON a [`Manifest`](crate::Manifest) holds.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::Resource;
use serde::Serialize;
use serde_json::Value;

use crate::{labels, Settings};

/// A cluster-scoped object's name and labels.
pub fn cluster(settings: &Settings, name: &str, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        labels: Some(labels(settings, component)),
        ..ObjectMeta::default()
    }
}

/// A namespaced object's name and labels, in the install's namespace.
pub fn namespaced(settings: &Settings, name: &str, component: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(settings.namespace.clone()),
        ..cluster(settings, name, component)
    }
}

/// A selector on exactly these labels.
pub fn match_labels(labels: BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels),
        ..LabelSelector::default()
    }
}

/// Owned copies, for the many `Vec<String>` fields.
pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A top-level object as JSON. k8s-openapi writes `apiVersion` and `kind` for every
/// [`Resource`], and its objects have string keys only, so serializing cannot fail.
pub fn to_value<K: Resource + Serialize>(object: &K) -> Value {
    serde_json::to_value(object).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Namespace;

    use super::*;

    #[test]
    fn typed_objects_carry_their_api_version_and_kind() {
        let value = to_value(&Namespace::default());
        assert_eq!(value["apiVersion"], "v1");
        assert_eq!(value["kind"], "Namespace");
        assert_eq!(value["metadata"], Value::Object(Default::default()));
        assert!(value.get("spec").is_none(), "None fields are left out");
    }
}
