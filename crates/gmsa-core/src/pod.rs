//! The parts of a Pod that GMSA cares about, and the places where a credential spec can be set.
//!
//! Pods are read into these small views instead of full typed pods: everything else in the
//! object (managed fields, volumes, status) is skipped by the parser, and patches are computed
//! as targeted JSON-Patch operations, never by re-serializing the pod.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// `securityContext.windowsOptions`, as much of it as GMSA uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowsOptions {
    #[serde(default)]
    pub gmsa_credential_spec_name: Option<String>,
    #[serde(default)]
    pub gmsa_credential_spec: Option<String>,
}

impl WindowsOptions {
    /// Whether either GMSA field is set.
    pub fn mentions_gmsa(&self) -> bool {
        self.gmsa_credential_spec_name.is_some() || self.gmsa_credential_spec.is_some()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecurityContext {
    #[serde(default, deserialize_with = "optional_object")]
    windows_options: Option<WindowsOptions>,
}

/// One container of any kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[serde(default)]
    pub name: String,
    #[serde(default, deserialize_with = "optional_object")]
    security_context: Option<SecurityContext>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    #[serde(default, deserialize_with = "optional_object")]
    security_context: Option<SecurityContext>,
    #[serde(default, deserialize_with = "objects")]
    containers: Vec<Container>,
    #[serde(default, deserialize_with = "objects")]
    init_containers: Vec<Container>,
    #[serde(default, deserialize_with = "objects")]
    ephemeral_containers: Vec<Container>,
    #[serde(default)]
    service_account_name: Option<String>,
    #[serde(default)]
    hostname: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    generate_name: Option<String>,
    #[serde(default)]
    owner_references: Option<OwnerReferences>,
}

/// `metadata.ownerReferences` as sent. Most pods carry one and almost no admission needs it
/// (only a GMSA pod with a fixed host name), so the parse keeps its text and
/// [`Pod::controller`] reads it on demand.
#[derive(Debug)]
struct OwnerReferences(Box<serde_json::value::RawValue>);

impl Clone for OwnerReferences {
    fn clone(&self) -> Self {
        Self(self.0.to_owned())
    }
}

impl PartialEq for OwnerReferences {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl Eq for OwnerReferences {}

impl<'de> Deserialize<'de> for OwnerReferences {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Box::<serde_json::value::RawValue>::deserialize(d).map(Self)
    }
}

/// The object that made a pod: its `ownerReferences` entry with `controller: true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    pub api_version: String,
    pub kind: String,
    pub name: String,
}

impl Controller {
    /// The API group of `api_version` (empty for the core group's `v1`).
    pub fn group(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map_or("", |(group, _)| group)
    }
}

/// The controller among `ownerReferences` text. Read leniently: we never checked this field,
/// and a value of an unexpected shape must not turn an admission into a refusal now.
fn controller_of(refs: &str) -> Option<Controller> {
    let refs: serde_json::Value = serde_json::from_str(refs).ok()?;
    let text = |r: &serde_json::Value, key: &str| {
        r.get(key)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    refs.as_array()?
        .iter()
        .find(|r| r.get("controller") == Some(&serde_json::Value::Bool(true)))
        .map(|r| Controller {
            api_version: text(r, "apiVersion"),
            kind: text(r, "kind"),
            name: text(r, "name"),
        })
}

/// A Pod, read for its GMSA settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Pod {
    #[serde(default, deserialize_with = "object")]
    metadata: ObjectMeta,
    #[serde(default, deserialize_with = "object")]
    spec: PodSpec,
}

/// A value that must be a JSON object. Serde's derived structs also accept an array (read as a
/// tuple of the fields in order); Go's decoder refuses one, and so must we.
pub(crate) struct Obj<T>(pub(crate) T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjVisitor<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(ObjVisitor(PhantomData)).map(Obj)
    }
}

/// An object, `null` read as the default (Go leaves the zero value).
pub(crate) fn object<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<Obj<T>>::deserialize(d)?
        .map(|o| o.0)
        .unwrap_or_default())
}

/// An optional object: `null` or absent is `None`.
pub(crate) fn optional_object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    Ok(Option::<Obj<T>>::deserialize(d)?.map(|o| o.0))
}

/// A list of objects, `null` read as empty.
fn objects<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<Obj<T>>>::deserialize(d)?
        .map(|v| v.into_iter().map(|o| o.0).collect())
        .unwrap_or_default())
}

/// What owns a `windowsOptions`: the pod itself or one of its containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlaceKind {
    Pod,
    Container,
    InitContainer,
    EphemeralContainer,
}

impl PlaceKind {
    /// The word used in messages; `pod` and `container` are the reference's own.
    pub fn as_str(self) -> &'static str {
        match self {
            PlaceKind::Pod => "pod",
            PlaceKind::Container => "container",
            PlaceKind::InitContainer => "init container",
            PlaceKind::EphemeralContainer => "ephemeral container",
        }
    }

    /// The pod-spec field that lists containers of this kind.
    fn list_field(self) -> Option<&'static str> {
        match self {
            PlaceKind::Pod => None,
            PlaceKind::Container => Some("containers"),
            PlaceKind::InitContainer => Some("initContainers"),
            PlaceKind::EphemeralContainer => Some("ephemeralContainers"),
        }
    }
}

impl fmt::Display for PlaceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `windowsOptions` in a pod: where it is, whose it is, and what it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place<'p> {
    pub kind: PlaceKind,
    /// The pod's or the container's name, for messages.
    pub owner: &'p str,
    /// Index in the container list (0 for the pod).
    pub index: usize,
    pub options: &'p WindowsOptions,
}

impl Place<'_> {
    /// JSON pointer of this place's `gmsaCredentialSpec` field.
    pub fn contents_path(&self) -> String {
        const TAIL: &str = "/securityContext/windowsOptions/gmsaCredentialSpec";
        match self.kind.list_field() {
            None => format!("/spec{TAIL}"),
            Some(list) => format!("/spec/{list}/{}{TAIL}", self.index),
        }
    }
}

impl Pod {
    /// Parses a pod from JSON bytes.
    pub fn from_json(raw: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str::<Obj<Self>>(raw).map(|o| o.0)
    }

    /// The pod's name; empty on CREATE with `generateName`, as in the reference's messages.
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }

    /// `metadata.generateName`, for logs when the name is not yet known.
    pub fn generate_name(&self) -> &str {
        self.metadata.generate_name.as_deref().unwrap_or_default()
    }

    /// The controller that made the pod, if its `ownerReferences` name one (read now).
    pub fn controller(&self) -> Option<Controller> {
        controller_of(self.metadata.owner_references.as_ref()?.0.get())
    }

    /// `spec.serviceAccountName` as written (possibly empty).
    pub fn service_account_name(&self) -> &str {
        self.spec
            .service_account_name
            .as_deref()
            .unwrap_or_default()
    }

    /// `spec.hostname`, empty when unset.
    pub fn hostname(&self) -> &str {
        self.spec.hostname.as_deref().unwrap_or_default()
    }

    /// The host name the container gets, as far as admission can know it: `spec.hostname`,
    /// else the pod's name, else `generateName` and the five characters the API server adds
    /// (shown as `xxxxx`). `None` when the pod has none of them.
    pub fn container_hostname(&self) -> Option<String> {
        let given = |s: &Option<String>| s.as_deref().filter(|s| !s.is_empty()).map(str::to_string);
        given(&self.spec.hostname)
            .or_else(|| given(&self.metadata.name))
            .or_else(|| given(&self.metadata.generate_name).map(|g| format!("{g}xxxxx")))
    }

    /// Every place that has a `windowsOptions`, in the reference's order: pod, containers,
    /// then (ours) init containers and ephemeral containers.
    pub fn places(&self) -> impl Iterator<Item = Place<'_>> {
        let pod = self
            .spec
            .security_context
            .as_ref()
            .and_then(|sc| sc.windows_options.as_ref())
            .map(|options| Place {
                kind: PlaceKind::Pod,
                owner: self.name(),
                index: 0,
                options,
            });
        let lists = [
            (PlaceKind::Container, &self.spec.containers),
            (PlaceKind::InitContainer, &self.spec.init_containers),
            (
                PlaceKind::EphemeralContainer,
                &self.spec.ephemeral_containers,
            ),
        ];
        pod.into_iter()
            .chain(lists.into_iter().flat_map(|(kind, list)| {
                list.iter().enumerate().filter_map(move |(index, c)| {
                    c.security_context
                        .as_ref()
                        .and_then(|sc| sc.windows_options.as_ref())
                        .map(|options| Place {
                            kind,
                            owner: &c.name,
                            index,
                            options,
                        })
                })
            }))
    }

    /// The place of the same kind and owner name, for comparing an update with its old pod.
    pub fn place_like(&self, other: &Place<'_>) -> Option<Place<'_>> {
        self.places()
            .find(|p| p.kind == other.kind && (p.kind == PlaceKind::Pod || p.owner == other.owner))
    }

    /// Names of the ephemeral containers, to tell new ones from old on the subresource.
    pub fn ephemeral_container_names(&self) -> impl Iterator<Item = &str> {
        self.spec
            .ephemeral_containers
            .iter()
            .map(|c| c.name.as_str())
    }

    /// Whether any place names a credential spec.
    pub fn names_a_spec(&self) -> bool {
        self.places()
            .any(|p| p.options.gmsa_credential_spec_name.is_some())
    }

    /// Whether any place names or carries a credential spec.
    pub fn mentions_gmsa(&self) -> bool {
        self.places().any(|p| p.options.mentions_gmsa())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;

    #[test]
    fn places_in_reference_order_with_paths() {
        let pod = Pod::from_json(
            r#"{"metadata":{"name":"p"},"spec":{
                "securityContext":{"windowsOptions":{"gmsaCredentialSpecName":"a"}},
                "containers":[{"name":"c0"},{"name":"c1","securityContext":{"windowsOptions":{"gmsaCredentialSpecName":"b"}}}],
                "initContainers":[{"name":"i0","securityContext":{"windowsOptions":{}}}],
                "ephemeralContainers":[{"name":"e0","securityContext":{"windowsOptions":{"gmsaCredentialSpec":"{}"}}}]}}"#,
        )
        .unwrap();
        let got: Vec<(String, String)> = pod
            .places()
            .map(|p| (format!("{} {}", p.kind, p.owner), p.contents_path()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "pod p".into(),
                    "/spec/securityContext/windowsOptions/gmsaCredentialSpec".into()
                ),
                (
                    "container c1".into(),
                    "/spec/containers/1/securityContext/windowsOptions/gmsaCredentialSpec".into()
                ),
                (
                    "init container i0".into(),
                    "/spec/initContainers/0/securityContext/windowsOptions/gmsaCredentialSpec"
                        .into()
                ),
                (
                    "ephemeral container e0".into(),
                    "/spec/ephemeralContainers/0/securityContext/windowsOptions/gmsaCredentialSpec"
                        .into()
                ),
            ]
        );
        assert!(pod.mentions_gmsa());
    }

    #[test]
    fn nulls_read_as_absent() {
        let pod = Pod::from_json(
            r#"{"metadata":null,"spec":{"containers":null,"securityContext":{"windowsOptions":null}}}"#,
        )
        .unwrap();
        assert_eq!(pod.places().count(), 0);
        assert!(!pod.mentions_gmsa());
    }

    #[test]
    fn wrong_types_are_errors() {
        assert!(Pod::from_json(r#"{"spec":{"containers":{}}}"#).is_err());
        assert!(Pod::from_json(
            r#"{"spec":{"securityContext":{"windowsOptions":{"gmsaCredentialSpecName":1}}}}"#
        )
        .is_err());
        assert!(Pod::from_json("[]").is_err());
    }
}
