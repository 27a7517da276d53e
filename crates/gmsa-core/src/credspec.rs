//! The `GMSACredentialSpec` resource and the contents that get inlined into pods.

pub mod build;
pub mod check;
pub mod model;
pub mod plugins;

pub use build::{build_credential_spec, AdditionalAccount, BuildError, CcgPlugin, DomainFacts};
pub use check::{validate, validate_contents, Problem, Severity};
pub use model::{CredSpec, CredentialSpecResource};
pub use plugins::Plugin;

use std::sync::Arc;

use serde_json::Value;
use thiserror::Error;

use crate::canonical::to_go_json;
use crate::names;

/// A `GMSACredentialSpec` as the webhook needs it: its name, and its contents already encoded
/// the way they are inlined, so the hot path never re-encodes.
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialSpec {
    pub name: String,
    /// The resource's `resourceVersion`, when it came from an API server.
    pub resource_version: Option<String>,
    /// `None` when the resource has no `credspec` key (the reference answers 417 then).
    contents: Option<Contents>,
}

/// The `credspec` object in its Go-compatible encoding, and that encoding already written as a
/// JSON string, as it stands in a patch. Only text is kept: a parsed value costs about ten
/// times the memory, and admissions need the text (the value is re-read in the rare cases that
/// need it).
#[derive(Debug, Clone, PartialEq)]
pub struct Contents {
    /// `json.Marshal(credspec)`, as the reference inlines it.
    pub encoded: Arc<str>,
    quoted: Arc<str>,
}

/// Why an object is not a usable `GMSACredentialSpec`.
#[derive(Debug, Error, PartialEq)]
pub enum CredentialSpecError {
    #[error("a GMSACredentialSpec must be a JSON object")]
    NotAnObject,
    #[error("the GMSACredentialSpec has no metadata.name: give it a name")]
    NoName,
    #[error("expected kind {expected}, got {got:?}")]
    WrongKind { expected: &'static str, got: String },
}

impl CredentialSpec {
    /// Builds the spec from a whole resource object (`apiVersion`, `kind`, `metadata`, `credspec`).
    /// The kind is checked only when present, since watch events may omit it.
    pub fn from_resource(object: &Value) -> Result<Self, CredentialSpecError> {
        let map = object.as_object().ok_or(CredentialSpecError::NotAnObject)?;
        if let Some(kind) = map.get("kind").and_then(Value::as_str) {
            if kind != names::KIND {
                return Err(CredentialSpecError::WrongKind {
                    expected: names::KIND,
                    got: kind.to_string(),
                });
            }
        }
        let metadata = map.get("metadata");
        let name = metadata
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or(CredentialSpecError::NoName)?;
        let resource_version = metadata
            .and_then(|m| m.get("resourceVersion"))
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok(Self {
            name: name.to_string(),
            resource_version,
            // The reference treats an empty string like a missing key.
            contents: map
                .get(names::CREDSPEC_KEY)
                .filter(|c| c.as_str() != Some(""))
                .cloned()
                .map(Contents::new),
        })
    }

    /// Builds a spec directly from a name and its `credspec` contents.
    pub fn new(name: impl Into<String>, contents: Value) -> Self {
        Self {
            name: name.into(),
            resource_version: None,
            contents: Some(Contents::new(contents)),
        }
    }

    /// The contents, or `None` when the resource has no `credspec` key.
    pub fn contents(&self) -> Option<&Contents> {
        self.contents.as_ref()
    }
}

impl Contents {
    /// Wraps a `credspec` value and encodes it once.
    pub fn new(value: Value) -> Self {
        let encoded = to_go_json(&value);
        let mut quoted = String::with_capacity(encoded.len() + encoded.len() / 4 + 2);
        crate::canonical::write_go_string(&mut quoted, &encoded);
        Self {
            encoded: encoded.into(),
            quoted: quoted.into(),
        }
    }

    /// The contents as a JSON value.
    pub fn value(&self) -> Value {
        // `encoded` is JSON we wrote ourselves; it always parses.
        serde_json::from_str(&self.encoded).unwrap_or(Value::Null)
    }

    /// [`Contents::encoded`] as a JSON string with Go's escaping: a patch operation's value.
    pub fn quoted(&self) -> &str {
        &self.quoted
    }

    /// Whether pre-set contents from a pod mean the same as these: the same JSON object, keys in
    /// any order, whitespace ignored, array order significant. A parse failure is the reason the
    /// reference appends to its message.
    pub fn matches(&self, preset: &str) -> Result<bool, String> {
        if preset == &*self.encoded {
            return Ok(true);
        }
        let parsed: serde_json::Map<String, Value> = serde_json::from_str(preset).map_err(|e| {
            format!(
                "unable to parse {} as a JSON object: {e}",
                crate::canonical::go_quote(preset)
            )
        })?;
        Ok(match self.value() {
            Value::Object(expected) => json_equal_objects(&parsed, &expected),
            _ => false,
        })
    }
}

/// Object equality where numbers compare by value (Go decodes them all as float64).
fn json_equal_objects(
    a: &serde_json::Map<String, Value>,
    b: &serde_json::Map<String, Value>,
) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|(k, v)| b.get(k).is_some_and(|w| json_equal(v, w)))
}

fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| json_equal(v, w))
        }
        (Value::Object(x), Value::Object(y)) => json_equal_objects(x, y),
        _ => a == b,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;
    use serde_json::json;

    fn webapp1() -> Value {
        json!({
            "apiVersion": "windows.k8s.io/v1",
            "kind": "GMSACredentialSpec",
            "metadata": {"name": "gmsa-webapp1", "resourceVersion": "261"},
            "credspec": {
                "CmsPlugins": ["ActiveDirectory"],
                "DomainJoinConfig": {"Sid": "S-1-5-21-1", "MachineAccountName": "WebApp1",
                    "Guid": "244818ae-87ac-4fcd-92ec-e79e5252348a", "DnsTreeName": "contoso.com",
                    "DnsName": "contoso.com", "NetBiosName": "CONTOSO"},
                "ActiveDirectoryConfig": {"GroupManagedServiceAccounts": [
                    {"Name": "WebApp1", "Scope": "contoso.com"}, {"Name": "WebApp1", "Scope": "CONTOSO"}]}
            }
        })
    }

    #[test]
    fn encodes_contents_once_sorted() {
        let spec = CredentialSpec::from_resource(&webapp1()).unwrap();
        assert_eq!(spec.name, "gmsa-webapp1");
        assert_eq!(spec.resource_version.as_deref(), Some("261"));
        let encoded = &spec.contents().unwrap().encoded;
        assert!(encoded.starts_with(r#"{"ActiveDirectoryConfig":{"GroupManagedServiceAccounts":[{"Name":"WebApp1","Scope":"contoso.com"}"#));
        assert!(encoded.ends_with(r#""NetBiosName":"CONTOSO","Sid":"S-1-5-21-1"}}"#));
    }

    #[test]
    fn missing_credspec_key_is_kept_as_none() {
        let spec = CredentialSpec::from_resource(&json!({"metadata": {"name": "x"}})).unwrap();
        assert!(spec.contents().is_none());
    }

    #[test]
    fn refuses_nameless_and_wrong_kind() {
        assert_eq!(
            CredentialSpec::from_resource(&json!({"credspec": {}})),
            Err(CredentialSpecError::NoName)
        );
        assert!(matches!(
            CredentialSpec::from_resource(&json!({"kind": "Pod", "metadata": {"name": "x"}})),
            Err(CredentialSpecError::WrongKind { .. })
        ));
    }

    #[test]
    fn matches_ignores_key_order_and_whitespace_but_not_array_order() {
        let spec = CredentialSpec::from_resource(&webapp1()).unwrap();
        let contents = spec.contents().unwrap();
        let reordered = serde_json::to_string_pretty(&webapp1()["credspec"]).unwrap();
        assert_eq!(contents.matches(&reordered), Ok(true));
        let mut swapped = webapp1()["credspec"].clone();
        let accounts = swapped["ActiveDirectoryConfig"]["GroupManagedServiceAccounts"]
            .as_array_mut()
            .unwrap();
        accounts.reverse();
        assert_eq!(contents.matches(&swapped.to_string()), Ok(false));
        let err = contents.matches("not json").unwrap_err();
        assert!(
            err.starts_with(r#"unable to parse "not json" as a JSON object: "#),
            "{err}"
        );
        assert!(contents.matches("[1]").is_err());
    }
}
