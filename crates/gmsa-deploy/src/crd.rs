//! The `GMSACredentialSpec` CustomResourceDefinition: cluster-scoped, `v1` stored, `v1alpha1`
//! still served (deprecated) for clusters that stored objects through it, and `credspec` kept
//! as an arbitrary object, since Windows defines its contents.

use std::collections::BTreeMap;

use gmsa_core::names as core_names;
use gmsa_core::names::contents;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionNames, CustomResourceDefinitionSpec,
    CustomResourceDefinitionVersion, CustomResourceValidation, JSONSchemaProps,
    JSONSchemaPropsOrBool,
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

/// `gmsanamespacecontents.policy.gmsa.dev`.
pub fn namespace_contents_crd_name() -> String {
    format!("{}.{}", contents::RESOURCE, contents::GROUP)
}

/// Policy mode's `GMSANamespaceContents` CRD, as JSON: namespaced, one version, its entries a
/// map of spec name to encoded contents (strings), which the policies' CEL reads as such.
/// Labelled as the install's: a switch to the webhook and uninstall delete it, and every
/// namespace's published contents with it.
pub fn namespace_contents_definition(settings: &crate::Settings) -> Value {
    let entries = JSONSchemaProps {
        additional_properties: Some(JSONSchemaPropsOrBool::Schema(Box::new(JSONSchemaProps {
            type_: Some("string".into()),
            ..JSONSchemaProps::default()
        }))),
        ..object_schema()
    };
    let schema = CustomResourceValidation {
        open_api_v3_schema: Some(JSONSchemaProps {
            properties: Some(BTreeMap::from([(contents::FIELD.to_string(), entries)])),
            ..object_schema()
        }),
    };
    meta::to_value(&CustomResourceDefinition {
        metadata: meta::cluster(settings, &namespace_contents_crd_name(), "admission-policy"),
        spec: CustomResourceDefinitionSpec {
            group: contents::GROUP.into(),
            scope: "Namespaced".into(),
            names: CustomResourceDefinitionNames {
                kind: contents::KIND.into(),
                list_kind: Some(format!("{}List", contents::KIND)),
                plural: contents::RESOURCE.into(),
                singular: Some(contents::KIND.to_ascii_lowercase()),
                ..CustomResourceDefinitionNames::default()
            },
            versions: vec![CustomResourceDefinitionVersion {
                name: contents::VERSION.into(),
                served: true,
                storage: true,
                schema: Some(schema),
                ..CustomResourceDefinitionVersion::default()
            }],
            ..CustomResourceDefinitionSpec::default()
        },
        status: None,
    })
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
