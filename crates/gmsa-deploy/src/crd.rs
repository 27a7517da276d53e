//! The `GMSACredentialSpec` CustomResourceDefinition: cluster-scoped, `v1` stored, `v1alpha1`
//! still served (deprecated) for clusters that stored objects through it, and `credspec` kept
//! as an arbitrary object, since Windows defines its contents.

use std::collections::BTreeMap;

use gmsa_core::names as core_names;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionNames, CustomResourceDefinitionSpec,
    CustomResourceDefinitionVersion, CustomResourceValidation, JSONSchemaProps,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use crate::{meta, names};

/// `gmsacredentialspecs.windows.k8s.io`.
pub fn crd_name() -> String {
    format!("{}.{}", core_names::RESOURCE, core_names::GROUP)
}

/// The CRD object, as JSON.
pub fn custom_resource_definition() -> Value {
    meta::to_value(&typed())
}

fn object_schema() -> JSONSchemaProps {
    JSONSchemaProps {
        type_: Some("object".into()),
        ..JSONSchemaProps::default()
    }
}

fn typed() -> CustomResourceDefinition {
    let credspec = JSONSchemaProps {
        x_kubernetes_preserve_unknown_fields: Some(true),
        ..object_schema()
    };
    let schema = CustomResourceValidation {
        open_api_v3_schema: Some(JSONSchemaProps {
            properties: Some(BTreeMap::from([(
                core_names::CREDSPEC_KEY.to_string(),
                credspec,
            )])),
            ..object_schema()
        }),
    };
    let deprecation = format!(
        "{}/{} {} is deprecated; use {}/{}",
        core_names::GROUP,
        core_names::VERSION_ALPHA,
        core_names::KIND,
        core_names::GROUP,
        core_names::VERSION
    );
    CustomResourceDefinition {
        metadata: ObjectMeta {
            name: Some(crd_name()),
            annotations: Some(BTreeMap::from([(
                names::API_APPROVED_ANNOTATION.to_string(),
                names::API_APPROVED_VALUE.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        spec: CustomResourceDefinitionSpec {
            group: core_names::GROUP.into(),
            scope: "Cluster".into(),
            names: CustomResourceDefinitionNames {
                kind: core_names::KIND.into(),
                list_kind: Some(format!("{}List", core_names::KIND)),
                plural: core_names::RESOURCE.into(),
                singular: Some(core_names::KIND.to_ascii_lowercase()),
                ..CustomResourceDefinitionNames::default()
            },
            versions: vec![
                CustomResourceDefinitionVersion {
                    name: core_names::VERSION.into(),
                    served: true,
                    storage: true,
                    schema: Some(schema.clone()),
                    ..CustomResourceDefinitionVersion::default()
                },
                CustomResourceDefinitionVersion {
                    name: core_names::VERSION_ALPHA.into(),
                    served: true,
                    storage: false,
                    deprecated: Some(true),
                    deprecation_warning: Some(deprecation),
                    schema: Some(schema),
                    ..CustomResourceDefinitionVersion::default()
                },
            ],
            ..CustomResourceDefinitionSpec::default()
        },
        status: None,
    }
}
