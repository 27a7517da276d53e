//! A multi-version object store with one global revision counter, as etcd keeps it: every
//! write gets the next resourceVersion, old revisions stay readable until compaction, and
//! watches replay history from any retained version.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::resources::ResourceType;

/// The first resourceVersion handed out. A fresh real cluster is already in the hundreds, and
/// starting above zero keeps `"0"` (meaning "any version") from ever naming a real state.
const FIRST_RESOURCE_VERSION: u64 = 100;

/// Where an object lives; ordered like etcd keys within a resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Key {
    pub resource: &'static str,
    pub namespace: String,
    pub name: String,
}

impl Key {
    /// The key as etcd spells it below the listed prefix, which decides list order and
    /// continue tokens: `ns/name` when listing across namespaces, `name` otherwise.
    pub fn relative(&self, across_namespaces: bool) -> String {
        if across_namespaces && !self.namespace.is_empty() {
            format!("{}/{}", self.namespace, self.name)
        } else {
            self.name.clone()
        }
    }
}

/// One stored revision of a key; `None` marks a deletion.
#[derive(Debug, Clone)]
struct Revision {
    rv: u64,
    object: Option<Arc<Value>>,
}

/// One change, as watchers see it: the object before and after (either may be absent).
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub rv: u64,
    pub resource: &'static str,
    pub prev: Option<Arc<Value>>,
    pub object: Option<Arc<Value>>,
}

/// How a write treats an existing or missing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteMode {
    Create,
    /// Update; `precondition` is the resourceVersion the writer last saw, if it sent one.
    Update {
        precondition: Option<u64>,
        create_if_missing: bool,
    },
    Upsert,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WriteError {
    AlreadyExists,
    NotFound,
    Conflict,
}

/// The outcome of a write: the stored object, and the change if anything changed.
pub(crate) struct Written {
    pub object: Arc<Value>,
    pub change: Option<Change>,
    pub created: bool,
}

#[derive(Debug)]
pub(crate) struct Store {
    rv: u64,
    compacted: u64,
    history: BTreeMap<Key, Vec<Revision>>,
    /// The last change of each resource type: what a watch cache's bookmarks report.
    last_change: BTreeMap<&'static str, u64>,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            rv: FIRST_RESOURCE_VERSION,
            compacted: 0,
            history: BTreeMap::new(),
            last_change: BTreeMap::new(),
        }
    }
}

impl Store {
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn compacted(&self) -> u64 {
        self.compacted
    }

    /// The resourceVersion of the last change to `resource`, 0 when it never changed.
    pub fn last_change(&self, resource: &str) -> u64 {
        self.last_change.get(resource).copied().unwrap_or(0)
    }

    pub fn get(&self, key: &Key) -> Option<Arc<Value>> {
        self.history.get(key)?.last()?.object.clone()
    }

    /// Every live object of `rt` (in `namespace` if given) as of revision `at`, in key order.
    pub fn snapshot(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        at: u64,
    ) -> Vec<(Key, Arc<Value>)> {
        self.keys_of(rt, namespace)
            .filter_map(|(key, revisions)| {
                let revision = revisions.iter().rev().find(|r| r.rv <= at)?;
                Some((key.clone(), revision.object.clone()?))
            })
            .collect()
    }

    /// Every change to `rt` (in `namespace` if given) after revision `after`, oldest first.
    pub fn changes_since(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        after: u64,
    ) -> Vec<Change> {
        let mut changes: Vec<Change> = self
            .keys_of(rt, namespace)
            .flat_map(|(_, revisions)| {
                revisions
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.rv > after)
                    .map(|(i, r)| Change {
                        rv: r.rv,
                        resource: rt.plural,
                        prev: i.checked_sub(1).and_then(|p| revisions[p].object.clone()),
                        object: r.object.clone(),
                    })
            })
            .collect();
        changes.sort_by_key(|c| c.rv);
        changes
    }

    fn keys_of<'a>(
        &'a self,
        rt: &'a ResourceType,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a Key, &'a Vec<Revision>)> + 'a {
        self.history.iter().filter(move |(k, _)| {
            k.resource == rt.plural && namespace.is_none_or(|ns| k.namespace == ns)
        })
    }

    /// Stores `object` (already checked for name and namespace) under `key`, filling in the
    /// server-owned metadata.
    pub fn write(
        &mut self,
        rt: &ResourceType,
        key: Key,
        mut object: Map<String, Value>,
        mode: WriteMode,
        now: &str,
        uid: impl FnOnce() -> String,
    ) -> Result<Written, WriteError> {
        let existing = self.get(&key);
        match (mode, &existing) {
            (WriteMode::Create, Some(_)) => return Err(WriteError::AlreadyExists),
            (
                WriteMode::Update {
                    create_if_missing: false,
                    ..
                },
                None,
            ) => return Err(WriteError::NotFound),
            (
                WriteMode::Update {
                    precondition: Some(expected),
                    ..
                },
                Some(current),
            ) if resource_version_of(current) != Some(expected) => {
                return Err(WriteError::Conflict)
            }
            _ => {}
        }

        object.insert("apiVersion".into(), json!(rt.storage_api_version()));
        object.insert("kind".into(), json!(rt.kind));
        let meta = metadata_mut(&mut object);
        for owned in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "generation",
            "selfLink",
        ] {
            meta.remove(owned);
        }
        meta.remove("generateName");
        meta.insert("name".into(), json!(key.name));
        if rt.namespaced {
            meta.insert("namespace".into(), json!(key.namespace));
        } else {
            meta.remove("namespace");
        }
        let existing_meta = existing.as_deref().and_then(|e| e.get("metadata"));
        let keep = |field: &str| existing_meta.and_then(|m| m.get(field)).cloned();
        meta.insert("uid".into(), keep("uid").unwrap_or_else(|| json!(uid())));
        meta.insert(
            "creationTimestamp".into(),
            keep("creationTimestamp").unwrap_or_else(|| json!(now)),
        );
        if rt.custom {
            let generation = match existing.as_deref() {
                None => 1,
                Some(old) => {
                    let old_generation = old
                        .pointer("/metadata/generation")
                        .and_then(Value::as_i64)
                        .unwrap_or(1);
                    if without_metadata(old) == Some(without_metadata_map(&object)) {
                        old_generation
                    } else {
                        old_generation + 1
                    }
                }
            };
            metadata_mut(&mut object).insert("generation".into(), json!(generation));
        }

        // An update that changes nothing is not written, as etcd's GuaranteedUpdate skips it.
        if let Some(current) = &existing {
            let mut candidate = object.clone();
            if let Some(rv) = current.pointer("/metadata/resourceVersion") {
                metadata_mut(&mut candidate).insert("resourceVersion".into(), rv.clone());
            }
            if **current == Value::Object(candidate) {
                return Ok(Written {
                    object: current.clone(),
                    change: None,
                    created: false,
                });
            }
        }

        self.rv += 1;
        let rv = self.rv;
        metadata_mut(&mut object).insert("resourceVersion".into(), json!(rv.to_string()));
        let stored = Arc::new(Value::Object(object));
        self.history.entry(key).or_default().push(Revision {
            rv,
            object: Some(stored.clone()),
        });
        self.last_change.insert(rt.plural, rv);
        let created = existing.is_none();
        Ok(Written {
            object: stored.clone(),
            change: Some(Change {
                rv,
                resource: rt.plural,
                prev: existing,
                object: Some(stored),
            }),
            created,
        })
    }

    /// Deletes `key`; the change carries the last state of the object.
    pub fn delete(&mut self, rt: &ResourceType, key: &Key) -> Option<Change> {
        let existing = self.get(key)?;
        self.rv += 1;
        let rv = self.rv;
        self.history
            .entry(key.clone())
            .or_default()
            .push(Revision { rv, object: None });
        self.last_change.insert(rt.plural, rv);
        Some(Change {
            rv,
            resource: rt.plural,
            prev: Some(existing),
            object: None,
        })
    }

    /// Forgets every revision older than the current one, as etcd compaction does.
    pub fn compact(&mut self) {
        self.compacted = self.rv;
        self.history.retain(|_, revisions| {
            if let Some(last) = revisions.pop() {
                revisions.clear();
                if last.object.is_some() {
                    revisions.push(last);
                }
            }
            !revisions.is_empty()
        });
    }
}

/// The resourceVersion of a stored object.
pub(crate) fn resource_version_of(object: &Value) -> Option<u64> {
    object
        .pointer("/metadata/resourceVersion")?
        .as_str()?
        .parse()
        .ok()
}

fn metadata_mut(object: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let meta = object.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    match meta {
        Value::Object(map) => map,
        _ => unreachable!("metadata was just made an object"),
    }
}

fn without_metadata(object: &Value) -> Option<Map<String, Value>> {
    object.as_object().map(without_metadata_map)
}

fn without_metadata_map(object: &Map<String, Value>) -> Map<String, Value> {
    let mut copy = object.clone();
    copy.remove("metadata");
    copy.remove("status");
    copy.remove("apiVersion");
    copy
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_api::resources::{CLUSTER_ROLES, CREDENTIAL_SPECS};

    fn key(name: &str) -> Key {
        Key {
            resource: CREDENTIAL_SPECS.plural,
            namespace: String::new(),
            name: name.into(),
        }
    }

    fn spec(name: &str, account: &str) -> Map<String, Value> {
        match json!({ "metadata": { "name": name }, "credspec": { "Account": account } }) {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    fn put(store: &mut Store, name: &str, account: &str) -> Written {
        store
            .write(
                &CREDENTIAL_SPECS,
                key(name),
                spec(name, account),
                WriteMode::Upsert,
                "now",
                || "uid".into(),
            )
            .expect("upsert never fails")
    }

    #[test]
    fn unchanged_update_keeps_version_and_emits_nothing() {
        let mut store = Store::default();
        let first = put(&mut store, "a", "x");
        let again = put(&mut store, "a", "x");
        assert!(again.change.is_none());
        assert_eq!(
            resource_version_of(&first.object),
            resource_version_of(&again.object)
        );
        let changed = put(&mut store, "a", "y");
        assert_eq!(
            changed.object.pointer("/metadata/generation"),
            Some(&json!(2))
        );
    }

    #[test]
    fn snapshot_reads_old_revisions_until_compaction() {
        let mut store = Store::default();
        let first = put(&mut store, "a", "x");
        let at = resource_version_of(&first.object).expect("rv");
        put(&mut store, "a", "y");
        put(&mut store, "b", "z");
        let old = store.snapshot(&CREDENTIAL_SPECS, None, at);
        assert_eq!(old.len(), 1);
        assert_eq!(old[0].1.pointer("/credspec/Account"), Some(&json!("x")));
        assert_eq!(store.changes_since(&CREDENTIAL_SPECS, None, at).len(), 2);
        assert!(store.changes_since(&CLUSTER_ROLES, None, 0).is_empty());
        store.compact();
        assert_eq!(store.compacted(), store.resource_version());
        assert!(store
            .changes_since(&CREDENTIAL_SPECS, None, 0)
            .iter()
            .all(|c| c.prev.is_none()));
        assert_eq!(
            store
                .snapshot(&CREDENTIAL_SPECS, None, store.resource_version())
                .len(),
            2
        );
    }

    #[test]
    fn delete_records_the_last_state() {
        let mut store = Store::default();
        put(&mut store, "a", "x");
        let change = store.delete(&CREDENTIAL_SPECS, &key("a")).expect("exists");
        assert!(change.object.is_none());
        assert_eq!(
            change
                .prev
                .and_then(|p| p.pointer("/credspec/Account").cloned()),
            Some(json!("x"))
        );
        assert!(store.get(&key("a")).is_none());
        assert!(store.delete(&CREDENTIAL_SPECS, &key("a")).is_none());
    }
}
