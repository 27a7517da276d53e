//! Policy mode's published contents, decided: which encoded contents each namespace's
//! `GMSANamespaceContents` object holds, and the ordered writes that bring the cluster there.
//!
//! The admission policies read one object, the pod's namespace's, whatever the number of specs
//! (BENCHMARKS.md, "Policy mode"). Their guarantees rest on three rules kept here:
//! - a namespace's object holds a spec's contents only while the spec carries the
//!   [`FINALIZER`] and is not being deleted, so a spec deleted and created again under its name
//!   never meets its old contents (`credspec` itself is immutable in policy mode);
//! - the entries cover every spec some service account of the namespace may `use` by RBAC, and
//!   may cover more: admission still asks the authorizer;
//! - the namespaces holding an object are listed in the `elsewhere` binding's selector, which
//!   refuses GMSA places everywhere else: a namespace is listed only once its object is written,
//!   and unlisted before its object goes.
//!
//! Pure: the keeper, `install` and the tests observe the cluster, call [`plan`] and perform its
//! steps in order, stopping at the first that fails.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::credspec::{CredentialSpec, CredentialSpecError};
use crate::names::contents::FINALIZER;
use crate::names::NAMESPACE_NAME_LABEL;
use crate::rbac::UseGrant;

/// One namespace's entries: spec name to its contents as the webhook inlines them.
pub type Entries = BTreeMap<String, String>;

/// A credential spec as the plan needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecState {
    pub name: String,
    /// The encoded contents; `None` when the spec has none (no `credspec`, or `""`).
    pub contents: Option<String>,
    /// Whether it carries [`FINALIZER`].
    pub finalized: bool,
    /// Whether it is being deleted (`metadata.deletionTimestamp`).
    pub terminating: bool,
}

impl SpecState {
    /// Reads a whole `GMSACredentialSpec` as the API server returns it, with the webhook's own
    /// reading of its contents.
    pub fn from_resource(object: &Value) -> Result<Self, CredentialSpecError> {
        let spec = CredentialSpec::from_resource(object)?;
        let metadata = &object["metadata"];
        let finalized = metadata["finalizers"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == FINALIZER));
        Ok(Self {
            contents: spec.contents().map(|c| c.encoded.to_string()),
            name: spec.name,
            finalized,
            terminating: !metadata["deletionTimestamp"].is_null(),
        })
    }

    /// Whether its contents may be published: finalized, not being deleted, with contents.
    fn publishable(&self) -> Option<&str> {
        (self.finalized && !self.terminating)
            .then_some(self.contents.as_deref())
            .flatten()
    }
}

/// What each namespace's object must hold, for the namespaces that exist and have at least one
/// entry, and for `home` (the install's namespace) whatever it holds: its object is always
/// there, so a probe in it shows whether the API server reads the objects at all.
pub fn desired(
    specs: &[SpecState],
    grants: &[UseGrant],
    namespaces: &BTreeSet<String>,
    home: &str,
) -> BTreeMap<String, Entries> {
    let publishable: BTreeMap<&str, &str> = specs
        .iter()
        .filter_map(|s| Some((s.name.as_str(), s.publishable()?)))
        .collect();
    let mut desired: BTreeMap<String, Entries> = BTreeMap::new();
    for grant in grants {
        let reached: Box<dyn Iterator<Item = &String>> = if grant.everywhere {
            Box::new(namespaces.iter())
        } else {
            Box::new(grant.namespaces.intersection(namespaces))
        };
        let covered: Vec<(&str, &str)> = publishable
            .iter()
            .filter(|(name, _)| grant.specs.covers(name))
            .map(|(name, contents)| (*name, *contents))
            .collect();
        if covered.is_empty() {
            continue;
        }
        for namespace in reached {
            let entries = desired.entry(namespace.clone()).or_default();
            for (name, contents) in &covered {
                entries.insert((*name).to_string(), (*contents).to_string());
            }
        }
    }
    if namespaces.contains(home) {
        desired.entry(home.to_string()).or_default();
    }
    desired
}

/// What the cluster holds now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    /// Each namespace's object, by namespace.
    pub objects: BTreeMap<String, Entries>,
    /// The namespaces the `elsewhere` binding leaves out ([`listed_namespaces`]).
    pub listed: BTreeSet<String>,
}

/// One write, in the order [`plan`] gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Add [`FINALIZER`] to the spec.
    Finalize(String),
    /// Create or replace the namespace's object with these entries.
    Write { namespace: String, entries: Entries },
    /// List exactly these namespaces in the `elsewhere` binding.
    List(BTreeSet<String>),
    /// Delete the namespace's object.
    Delete(String),
    /// Remove [`FINALIZER`] from the spec: no object holds its contents any more.
    Release(String),
}

/// The steps from `stored` to `desired`, in an order that is safe to stop after any of them:
/// finalizers first (a spec's contents are published only once it has one); objects written
/// before their namespace is listed; namespaces unlisted before their object is deleted;
/// finalizers released last, and only for specs no stored object holds, so after the writes
/// that withdrew them were seen (a later observation, by whoever runs the plan).
pub fn plan(
    specs: &[SpecState],
    desired: &BTreeMap<String, Entries>,
    stored: &Stored,
) -> Vec<Step> {
    let mut steps: Vec<Step> = specs
        .iter()
        .filter(|s| !s.finalized && !s.terminating)
        .map(|s| Step::Finalize(s.name.clone()))
        .collect();
    for (namespace, entries) in desired {
        if stored.objects.get(namespace) != Some(entries) {
            steps.push(Step::Write {
                namespace: namespace.clone(),
                entries: entries.clone(),
            });
        }
    }
    let listed: BTreeSet<String> = desired.keys().cloned().collect();
    if listed != stored.listed {
        steps.push(Step::List(listed));
    }
    for namespace in stored.objects.keys() {
        if !desired.contains_key(namespace) {
            steps.push(Step::Delete(namespace.clone()));
        }
    }
    let held: BTreeSet<&str> = stored
        .objects
        .values()
        .flat_map(|entries| entries.keys().map(String::as_str))
        .collect();
    steps.extend(
        specs
            .iter()
            .filter(|s| s.finalized && s.terminating && !held.contains(s.name.as_str()))
            .map(|s| Step::Release(s.name.clone())),
    );
    steps
}

/// The `elsewhere` binding's namespace selector: every namespace but `listed`. The API server
/// refuses an empty `NotIn`, so `""` (no namespace's name) is always there.
pub fn elsewhere_selector(listed: &BTreeSet<String>) -> Value {
    let values: Vec<&str> = std::iter::once("")
        .chain(listed.iter().map(String::as_str))
        .collect();
    json!({"matchExpressions": [
        {"key": NAMESPACE_NAME_LABEL, "operator": "NotIn", "values": values}
    ]})
}

/// The namespaces a stored `elsewhere` selector leaves out; none when it is not one
/// [`elsewhere_selector`] wrote.
pub fn listed_namespaces(selector: &Value) -> BTreeSet<String> {
    let expressions = selector["matchExpressions"].as_array();
    let Some([expression]) = expressions.map(Vec::as_slice) else {
        return BTreeSet::new();
    };
    if expression["key"] != NAMESPACE_NAME_LABEL || expression["operator"] != "NotIn" {
        return BTreeSet::new();
    }
    expression["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect()
}

/// A stored object's entries (those that are strings).
pub fn entries_of(object: &Value) -> Entries {
    object[crate::names::contents::FIELD]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;
    use crate::rbac::GrantedSpecs;

    fn spec(name: &str, contents: Option<&str>, finalized: bool, terminating: bool) -> SpecState {
        SpecState {
            name: name.into(),
            contents: contents.map(str::to_string),
            finalized,
            terminating,
        }
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn grant(specs: Option<&[&str]>, everywhere: bool, namespaces: &[&str]) -> UseGrant {
        UseGrant {
            specs: specs.map_or(GrantedSpecs::Every, |s| GrantedSpecs::Named(set(s))),
            everywhere,
            namespaces: set(namespaces),
        }
    }

    fn entries(pairs: &[(&str, &str)]) -> Entries {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_the_finalizer_and_deletion_from_the_object() {
        let object = json!({"kind": "GMSACredentialSpec",
            "metadata": {"name": "web", "finalizers": ["other", FINALIZER],
                         "deletionTimestamp": "2026-12-07T00:00:00Z"},
            "credspec": {"B": 1, "A": "<"}});
        assert_eq!(
            SpecState::from_resource(&object).unwrap(),
            spec("web", Some(r#"{"A":"\u003c","B":1}"#), true, true)
        );
        let bare = json!({"metadata": {"name": "web"}});
        assert_eq!(
            SpecState::from_resource(&bare).unwrap(),
            spec("web", None, false, false)
        );
    }

    #[test]
    fn a_namespace_holds_what_its_grants_cover_of_the_publishable_specs() {
        let specs = [
            spec("web", Some("W"), true, false),
            spec("db", Some("D"), true, false),
            spec("new", Some("N"), false, false),
            spec("going", Some("G"), true, true),
            spec("empty", None, true, false),
        ];
        let grants = [
            grant(
                Some(&["web", "new", "going", "empty"]),
                false,
                &["a", "gone"],
            ),
            grant(None, false, &["b"]),
            grant(Some(&["nothing-here"]), true, &[]),
        ];
        let namespaces = set(&["a", "b", "c", "home"]);
        let desired = desired(&specs, &grants, &namespaces, "home");
        assert_eq!(
            desired,
            BTreeMap::from([
                ("a".to_string(), entries(&[("web", "W")])),
                ("b".to_string(), entries(&[("db", "D"), ("web", "W")])),
                ("home".to_string(), Entries::new()),
            ]),
            "unfinalized, terminating and empty specs are left out, and so are namespaces \
             that do not exist or that no grant covering a spec reaches; home always has one"
        );
        let everywhere = super::desired(
            &specs,
            &[grant(Some(&["db"]), true, &[])],
            &namespaces,
            "elsewhere",
        );
        assert_eq!(everywhere.len(), 4, "a home that does not exist has none");
        assert!(everywhere.values().all(|e| e == &entries(&[("db", "D")])));
    }

    #[test]
    fn the_plan_orders_every_step_so_stopping_anywhere_is_safe() {
        let specs = [
            spec("web", Some("W"), true, false),
            spec("new", Some("N"), false, false),
            spec("going", Some("G"), true, true),
            spec("gone-everywhere", Some("X"), true, true),
        ];
        let desired = BTreeMap::from([("a".to_string(), entries(&[("web", "W")]))]);
        let stored = Stored {
            objects: BTreeMap::from([
                ("a".to_string(), entries(&[("web", "W"), ("going", "G")])),
                ("old".to_string(), entries(&[("web", "W")])),
            ]),
            listed: set(&["a", "old"]),
        };
        assert_eq!(
            plan(&specs, &desired, &stored),
            [
                Step::Finalize("new".into()),
                Step::Write {
                    namespace: "a".into(),
                    entries: entries(&[("web", "W")])
                },
                Step::List(set(&["a"])),
                Step::Delete("old".into()),
                Step::Release("gone-everywhere".into()),
            ],
            "`going` is released only once no stored object holds it"
        );
        let settled = Stored {
            objects: desired.clone(),
            listed: set(&["a"]),
        };
        assert_eq!(
            plan(&specs[..1], &desired, &settled),
            [],
            "nothing to do once the cluster holds what it must"
        );
        let first = Stored::default();
        assert_eq!(
            plan(&specs[..1], &desired, &first),
            [
                Step::Write {
                    namespace: "a".into(),
                    entries: entries(&[("web", "W")])
                },
                Step::List(set(&["a"])),
            ],
            "a namespace is listed after its object is written"
        );
    }

    #[test]
    fn the_elsewhere_selector_round_trips_and_never_has_an_empty_not_in() {
        let empty = elsewhere_selector(&BTreeSet::new());
        assert_eq!(empty["matchExpressions"][0]["values"], json!([""]));
        assert_eq!(listed_namespaces(&empty), BTreeSet::new());
        let listed = set(&["b", "a"]);
        let selector = elsewhere_selector(&listed);
        assert_eq!(
            selector["matchExpressions"][0],
            json!({"key": NAMESPACE_NAME_LABEL, "operator": "NotIn", "values": ["", "a", "b"]})
        );
        assert_eq!(listed_namespaces(&selector), listed);
        let foreign = json!({"matchExpressions": [
            {"key": "team", "operator": "NotIn", "values": ["a"]}]});
        assert_eq!(listed_namespaces(&foreign), BTreeSet::new());
        assert_eq!(listed_namespaces(&Value::Null), BTreeSet::new());
    }

    #[test]
    fn entries_are_read_from_the_contents_field() {
        let object = json!({"contents": {"web": "W", "odd": 1}});
        assert_eq!(entries_of(&object), entries(&[("web", "W")]));
        assert_eq!(entries_of(&json!({})), Entries::new());
    }
}
