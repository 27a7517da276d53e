//! The contents a `GMSACredentialSpec` publishes in its annotations for policy mode.
//!
//! Admission policies (CEL) cannot encode JSON, so each spec carries the exact text the webhook
//! inlines into pods, and the `metadata.generation` it was computed from: an edit of the spec
//! bumps the generation (annotation writes do not), which makes the old text unusable until it
//! is published again. Deciding what to write is pure; the keeper and the CLI write it.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use thiserror::Error;

use crate::credspec::{CredentialSpec, CredentialSpecError};

/// The contents as the webhook inlines them: Go's `json.Marshal` of `credspec`.
pub const CONTENTS_ANNOTATION: &str = "gmsa.windows.k8s.io/contents";
/// The decimal `metadata.generation` [`CONTENTS_ANNOTATION`] was computed from.
pub const CONTENTS_GENERATION_ANNOTATION: &str = "gmsa.windows.k8s.io/contents-generation";

/// What a spec's annotations need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Publication {
    /// They already say what they must.
    Current,
    /// Set both annotations.
    Publish { contents: String, generation: i64 },
    /// The spec has no contents: remove both.
    Withdraw,
}

/// Why an object's publication cannot be decided.
#[derive(Debug, Error, PartialEq)]
pub enum PublicationError {
    #[error(transparent)]
    Spec(#[from] CredentialSpecError),
    #[error("GMSACredentialSpec {0} has no metadata.generation: publish only objects read from the API server")]
    NoGeneration(String),
}

/// Decides what `object` (a whole `GMSACredentialSpec` as the API server returns it) must
/// change in its annotations. The contents come from [`CredentialSpec::from_resource`], the
/// webhook's own reading, so a spec the webhook finds empty (no `credspec`, or `""`) publishes
/// nothing.
pub fn publication(object: &Value) -> Result<Publication, PublicationError> {
    let spec = CredentialSpec::from_resource(object)?;
    let metadata = object.get("metadata");
    let annotation = |key: &str| {
        metadata
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
    };
    let published = annotation(CONTENTS_ANNOTATION);
    let published_generation = annotation(CONTENTS_GENERATION_ANNOTATION);
    let Some(contents) = spec.contents() else {
        return Ok(if published.is_none() && published_generation.is_none() {
            Publication::Current
        } else {
            Publication::Withdraw
        });
    };
    let generation = metadata
        .and_then(|m| m.get("generation"))
        .and_then(Value::as_i64)
        .ok_or_else(|| PublicationError::NoGeneration(spec.name.clone()))?;
    let current = published == Some(&*contents.encoded)
        && published_generation == Some(generation.to_string().as_str());
    Ok(if current {
        Publication::Current
    } else {
        Publication::Publish {
            contents: contents.encoded.to_string(),
            generation,
        }
    })
}

impl Publication {
    /// The JSON merge patch making this change to the object at `resource_version`: the API
    /// server refuses it (409) once the object has changed, so contents computed from an older
    /// object are never written. `None` when there is nothing to change.
    pub fn merge_patch<'a>(&'a self, resource_version: &'a str) -> Option<MergePatch<'a>> {
        let annotations = match self {
            Publication::Current => return None,
            Publication::Publish {
                contents,
                generation,
            } => BTreeMap::from([
                (CONTENTS_ANNOTATION, Some(contents.clone())),
                (CONTENTS_GENERATION_ANNOTATION, Some(generation.to_string())),
            ]),
            Publication::Withdraw => BTreeMap::from([
                (CONTENTS_ANNOTATION, None),
                (CONTENTS_GENERATION_ANNOTATION, None),
            ]),
        };
        Some(MergePatch {
            metadata: PatchMetadata {
                resource_version,
                annotations,
            },
        })
    }
}

/// A merge patch of `metadata.annotations`, guarded by `metadata.resourceVersion`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MergePatch<'a> {
    metadata: PatchMetadata<'a>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct PatchMetadata<'a> {
    #[serde(rename = "resourceVersion")]
    resource_version: &'a str,
    /// `None` is written `null`, which removes the annotation.
    annotations: BTreeMap<&'static str, Option<String>>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(credspec: Option<Value>, generation: i64, annotations: Value) -> Value {
        let mut object = json!({
            "apiVersion": "windows.k8s.io/v1",
            "kind": "GMSACredentialSpec",
            "metadata": {"name": "web", "generation": generation, "resourceVersion": "7",
                         "annotations": annotations},
        });
        if let Some(c) = credspec {
            object["credspec"] = c;
        }
        object
    }

    fn published(contents: &str, generation: &str) -> Value {
        json!({CONTENTS_ANNOTATION: contents, CONTENTS_GENERATION_ANNOTATION: generation})
    }

    #[test]
    fn publishes_go_encoding_with_html_and_line_separator_escapes() {
        let object = spec(
            Some(json!({"Name": "<R&D>", "Note": "a\u{2028}b\u{2029}c", "A": 1})),
            3,
            json!({}),
        );
        assert_eq!(
            publication(&object),
            Ok(Publication::Publish {
                contents: r#"{"A":1,"Name":"\u003cR\u0026D\u003e","Note":"a\u2028b\u2029c"}"#
                    .into(),
                generation: 3,
            })
        );
    }

    #[test]
    fn contents_equal_what_the_webhook_inlines() {
        let credspec = json!({"DomainJoinConfig": {"Sid": "S-1", "DnsName": "a&b"}});
        let object = spec(Some(credspec.clone()), 1, json!({}));
        let Ok(Publication::Publish { contents, .. }) = publication(&object) else {
            panic!("expected a publication");
        };
        assert_eq!(contents, crate::canonical::to_go_json(&credspec));
    }

    #[test]
    fn already_current_needs_nothing() {
        let object = spec(
            Some(json!({"B": 2, "A": 1})),
            4,
            published(r#"{"A":1,"B":2}"#, "4"),
        );
        assert_eq!(publication(&object), Ok(Publication::Current));
    }

    #[test]
    fn a_stale_generation_is_published_again() {
        let contents = r#"{"A":1}"#;
        let object = spec(Some(json!({"A": 1})), 5, published(contents, "4"));
        assert_eq!(
            publication(&object),
            Ok(Publication::Publish {
                contents: contents.into(),
                generation: 5
            })
        );
        // Decimal text, compared as text: the policies compare `string(generation)`.
        let padded = spec(Some(json!({"A": 1})), 5, published(contents, "05"));
        assert!(matches!(
            publication(&padded),
            Ok(Publication::Publish { .. })
        ));
    }

    #[test]
    fn edited_contents_are_published_again() {
        let object = spec(Some(json!({"A": 2})), 5, published(r#"{"A":1}"#, "5"));
        assert!(matches!(
            publication(&object),
            Ok(Publication::Publish { generation: 5, .. })
        ));
    }

    #[test]
    fn without_credspec_the_annotations_go() {
        for annotations in [
            published("{}", "1"),
            json!({CONTENTS_ANNOTATION: "{}"}),
            json!({CONTENTS_GENERATION_ANNOTATION: "1"}),
        ] {
            let object = spec(None, 2, annotations.clone());
            assert_eq!(
                publication(&object),
                Ok(Publication::Withdraw),
                "{annotations}"
            );
        }
        let bare = spec(None, 2, json!({"other": "x"}));
        assert_eq!(publication(&bare), Ok(Publication::Current));
        let mut no_annotations = spec(None, 2, json!({}));
        no_annotations["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("annotations");
        assert_eq!(publication(&no_annotations), Ok(Publication::Current));
        // As the webhook reads it: an empty string is no contents.
        let empty = spec(Some(json!("")), 2, published("\"\"", "2"));
        assert_eq!(publication(&empty), Ok(Publication::Withdraw));
    }

    #[test]
    fn refuses_objects_it_cannot_read() {
        let mut object = spec(Some(json!({})), 1, json!({}));
        object["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("generation");
        assert_eq!(
            publication(&object),
            Err(PublicationError::NoGeneration("web".into()))
        );
        assert_eq!(
            publication(&json!({"credspec": {}})),
            Err(PublicationError::Spec(CredentialSpecError::NoName))
        );
    }

    #[test]
    fn patches_are_guarded_by_the_resource_version() {
        let publish = Publication::Publish {
            contents: r#"{"A":"<"}"#.into(),
            generation: 9,
        };
        assert_eq!(
            serde_json::to_value(publish.merge_patch("42").unwrap()).unwrap(),
            json!({"metadata": {"resourceVersion": "42", "annotations": {
                CONTENTS_ANNOTATION: r#"{"A":"<"}"#, CONTENTS_GENERATION_ANNOTATION: "9"}}})
        );
        assert_eq!(
            serde_json::to_value(Publication::Withdraw.merge_patch("43").unwrap()).unwrap(),
            json!({"metadata": {"resourceVersion": "43", "annotations": {
                CONTENTS_ANNOTATION: null, CONTENTS_GENERATION_ANNOTATION: null}}})
        );
        assert_eq!(Publication::Current.merge_patch("44"), None);
    }
}
