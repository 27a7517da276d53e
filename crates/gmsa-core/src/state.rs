//! The embedded state: a directory of YAML manifests standing in for a cluster.
//!
//! Credential specs and RBAC objects are kept; other kinds are skipped (and reported, so a
//! caller can log them at debug). The same state backs the webhook's `--state-dir` and the
//! CLI's offline `admit`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use thiserror::Error;

use crate::credspec::{CredentialSpec, CredentialSpecError};
use crate::decision::{AccessCheck, ClusterView, SpecLookup};
use crate::names;
use crate::rbac::{Aggregation, Binding, RbacIndex, ResourceAttributes, Role, UserInfo};

const RBAC_API_VERSION: &str = "rbac.authorization.k8s.io/v1";

/// Why a manifest could not be read.
#[derive(Debug, Error)]
pub enum StateError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{source_name}: not valid YAML: {message}")]
    Yaml {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: document {index}: {message}")]
    Object {
        source_name: String,
        index: usize,
        message: String,
    },
    #[error("{source_name}: document {index}: {source}")]
    CredentialSpec {
        source_name: String,
        index: usize,
        source: CredentialSpecError,
    },
    #[error("state directory {0} does not exist or is not a directory: pass a directory of YAML manifests")]
    NotADirectory(PathBuf),
}

/// Credential specs and RBAC, as read from manifests.
#[derive(Debug, Clone)]
pub struct State {
    specs: BTreeMap<String, Arc<CredentialSpec>>,
    /// Aggregation computed: no controller fills aggregated roles in a directory of manifests.
    rbac: RbacIndex,
    /// `kind name (source)` of documents that were not used.
    skipped: Vec<String>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            specs: BTreeMap::new(),
            rbac: RbacIndex::new(Aggregation::Computed),
            skipped: Vec::new(),
        }
    }
}

impl State {
    /// Adds every document of one YAML text; `source_name` names it in errors.
    pub fn add_yaml(&mut self, source_name: &str, text: &str) -> Result<(), StateError> {
        // A UTF-8 BOM is common in files written on Windows.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| StateError::Yaml {
            source_name: source_name.to_string(),
            message: e.to_string(),
        })?;
        for (index, doc) in docs.into_iter().enumerate() {
            self.add_object(source_name, index + 1, doc)?;
        }
        Ok(())
    }

    /// Adds one object (a `List` adds its items).
    pub fn add_object(
        &mut self,
        source_name: &str,
        index: usize,
        doc: Value,
    ) -> Result<(), StateError> {
        if doc.is_null() {
            return Ok(());
        }
        let object_err = |message: String| StateError::Object {
            source_name: source_name.to_string(),
            index,
            message,
        };
        let kind = doc
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let api_version = doc
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let group = api_version
            .split_once('/')
            .map(|(g, _)| g)
            .unwrap_or_default();
        match (group, kind.as_str()) {
            (_, "List") | (_, "") if doc.get("items").is_some() => {
                let items = doc
                    .get("items")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for item in items {
                    self.add_object(source_name, index, item)?;
                }
            }
            (names::GROUP, names::KIND) => {
                let spec = CredentialSpec::from_resource(&doc).map_err(|source| {
                    StateError::CredentialSpec {
                        source_name: source_name.to_string(),
                        index,
                        source,
                    }
                })?;
                self.specs.insert(spec.name.clone(), Arc::new(spec));
            }
            ("rbac.authorization.k8s.io", "ClusterRole" | "Role") => {
                let role: Role = serde_json::from_value(doc)
                    .map_err(|e| object_err(format!("not a valid {kind}: {e}")))?;
                if kind == "Role" {
                    self.rbac.add_role(role);
                } else {
                    self.rbac.add_cluster_role(role);
                }
            }
            ("rbac.authorization.k8s.io", "ClusterRoleBinding" | "RoleBinding") => {
                let binding: Binding = serde_json::from_value(doc)
                    .map_err(|e| object_err(format!("not a valid {kind}: {e}")))?;
                if kind == "RoleBinding" {
                    self.rbac.add_role_binding(binding);
                } else {
                    self.rbac.add_cluster_role_binding(binding);
                }
            }
            _ => {
                let name = doc
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                self.skipped
                    .push(format!("{api_version} {kind} {name} ({source_name})"));
            }
        }
        Ok(())
    }

    /// Reads every `*.yaml`, `*.yml` and `*.json` file of a directory, in name order.
    /// Hidden entries (such as a Kubernetes volume's `..data`) are skipped.
    pub fn load_dir(dir: &Path) -> Result<Self, StateError> {
        if !dir.is_dir() {
            return Err(StateError::NotADirectory(dir.to_path_buf()));
        }
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StateError::Io { path, source }
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                let hidden = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_none_or(|n| n.starts_with('.'));
                let ext = p.extension().and_then(|e| e.to_str()).unwrap_or_default();
                !hidden && matches!(ext, "yaml" | "yml" | "json") && p.is_file()
            })
            .collect();
        files.sort();
        let mut state = State::default();
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(io(&file))?;
            state.add_yaml(&file.display().to_string(), &text)?;
        }
        Ok(state)
    }

    /// The credential spec with that name.
    pub fn spec(&self, name: &str) -> Option<&Arc<CredentialSpec>> {
        self.specs.get(name)
    }

    /// All credential specs, by name.
    pub fn specs(&self) -> impl Iterator<Item = &Arc<CredentialSpec>> {
        self.specs.values()
    }

    /// The RBAC roles and bindings.
    pub fn rbac(&self) -> &RbacIndex {
        &self.rbac
    }

    /// Documents that were read but are not credential specs or RBAC.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// The `apiVersion` RBAC objects are written with, for generated manifests.
    pub fn rbac_api_version() -> &'static str {
        RBAC_API_VERSION
    }
}

impl ClusterView for State {
    fn credential_spec(&self, name: &str) -> SpecLookup {
        match self.specs.get(name) {
            Some(spec) => SpecLookup::Found(spec.clone()),
            None => SpecLookup::NotFound,
        }
    }

    fn may_use(&self, namespace: &str, service_account: &str, spec: &str) -> AccessCheck {
        let user = UserInfo::service_account(namespace, service_account);
        let attrs = ResourceAttributes::use_credential_spec(namespace, spec);
        let answer = self.rbac.authorize(&user, &attrs);
        if answer.allowed {
            AccessCheck::Allowed
        } else {
            AccessCheck::Denied {
                reason: answer.reason,
            }
        }
    }
}
