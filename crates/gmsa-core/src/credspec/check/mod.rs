//! Checks of `GMSACredentialSpec` resources and of the credential-spec documents they carry:
//! what Windows needs to find in them, and whether the accounts agree with the domain. The
//! reference webhook inlines any `credspec`, even `{}`, and the container fails at start; these
//! checks catch that before, in the CLI and at the `/validate-credspec` endpoint.

use std::fmt;

use serde_json::{Map, Value};

use super::model::ACTIVE_DIRECTORY_PLUGIN;
use crate::names;
use crate::syntax::{self, SyntaxError};

mod domain;
mod host;

/// One thing wrong with a resource: where (a dotted path such as
/// `credspec.DomainJoinConfig.Sid`) and what, with the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
    pub severity: Severity,
}

/// Whether a problem stops the spec from working.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// A container using the spec cannot start, or gets no identity: refused where specs are
    /// admitted.
    Error,
    /// Allowed, but likely a mistake, or not checkable here (an unknown plugin): shown as an
    /// admission warning.
    Warning,
}

impl Problem {
    /// Whether the spec may still work.
    pub fn is_warning(&self) -> bool {
        self.severity == Severity::Warning
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// The `DomainJoinConfig` keys, what each holds, and its syntax.
/// A syntax check of one value.
type Check = fn(&str) -> Result<(), SyntaxError>;

const DOMAIN_JOIN_KEYS: [(&str, &str, Check); 6] = [
    (
        "DnsName",
        "the domain's DNS name, such as contoso.com",
        |s| syntax::dns_domain(s),
    ),
    (
        "DnsTreeName",
        "the forest's DNS name, such as contoso.com",
        syntax::dns_domain,
    ),
    ("Guid", "the domain's GUID", |s| syntax::guid(s).map(drop)),
    (
        "MachineAccountName",
        "the gMSA's account name, such as WebApp1",
        |s| syntax::account(s).map(drop),
    ),
    (
        "NetBiosName",
        "the domain's NetBIOS name, such as CONTOSO",
        syntax::netbios,
    ),
    ("Sid", "the domain's SID", syntax::domain_sid),
];

const HOST_ACCOUNT_KEYS: [&str; 3] = ["PortableCcgVersion", "PluginGUID", "PluginInput"];

struct Checker {
    problems: Vec<Problem>,
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// A present, non-null value.
fn present<'v>(map: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    map.get(key).filter(|v| !v.is_null())
}

impl Checker {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
            severity: Severity::Error,
        });
    }

    fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
            severity: Severity::Warning,
        });
    }

    /// A required non-empty string; reports and returns `None` otherwise.
    fn string<'v>(
        &mut self,
        map: &'v Map<String, Value>,
        key: &str,
        path: &str,
        what: &str,
    ) -> Option<&'v str> {
        match present(map, key) {
            None => {
                self.push(path, format!("is missing: give {what}"));
                None
            }
            Some(Value::String(s)) if s.is_empty() => {
                self.push(path, format!("is empty: give {what}"));
                None
            }
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                self.push(
                    path,
                    format!("must be a string ({what}), not {}", type_name(other)),
                );
                None
            }
        }
    }

    fn resource(&mut self, object: &Value) {
        let Some(map) = object.as_object() else {
            self.push(
                "",
                format!(
                    "a {} must be an object, not {}",
                    names::KIND,
                    type_name(object)
                ),
            );
            return;
        };
        let v1 = format!("{}/{}", names::GROUP, names::VERSION);
        let v1alpha1 = format!("{}/{}", names::GROUP, names::VERSION_ALPHA);
        match present(map, "apiVersion") {
            None => self.push("apiVersion", format!("is missing: write {v1}")),
            Some(Value::String(v)) if *v == v1 || *v == v1alpha1 => {}
            Some(v) => self.push("apiVersion", format!("{} is not {v1}", short(v))),
        }
        match present(map, "kind") {
            None => self.push("kind", format!("is missing: write {}", names::KIND)),
            Some(Value::String(k)) if k == names::KIND => {}
            Some(k) => self.push("kind", format!("{} is not {}", short(k), names::KIND)),
        }
        let metadata = present(map, "metadata").and_then(Value::as_object);
        match metadata.and_then(|m| present(m, "name")) {
            None => self.push(
                "metadata.name",
                "is missing: name the resource; pods refer to it by this name",
            ),
            Some(Value::String(n)) => {
                if let Err(e) = syntax::object_name(n) {
                    self.push("metadata.name", e.to_string());
                }
            }
            Some(n) => self.push(
                "metadata.name",
                format!("must be a string, not {}", type_name(n)),
            ),
        }
        match present(map, names::CREDSPEC_KEY) {
            None => self.push(
                names::CREDSPEC_KEY,
                "is missing: put the credential spec New-CredentialSpec wrote under credspec",
            ),
            Some(c) => self.contents(c, names::CREDSPEC_KEY),
        }
    }

    fn contents(&mut self, contents: &Value, prefix: &str) {
        let Some(map) = contents.as_object() else {
            self.push(
                prefix,
                format!(
                    "must be an object with CmsPlugins, DomainJoinConfig and ActiveDirectoryConfig, not {}",
                    type_name(contents)
                ),
            );
            return;
        };

        let path = join(prefix, "CmsPlugins");
        match present(map, "CmsPlugins") {
            None => self.push(path, "is missing: write CmsPlugins: [ActiveDirectory]"),
            Some(Value::Array(items)) if items.iter().any(|i| i == ACTIVE_DIRECTORY_PLUGIN) => {}
            Some(Value::Array(_)) => self.push(path, "does not list ActiveDirectory: add it"),
            Some(other) => self.push(
                path,
                format!(
                    "must be a list, not {}: write CmsPlugins: [ActiveDirectory]",
                    type_name(other)
                ),
            ),
        }

        let domain = self.domain_join_config(map, prefix);

        let path = join(prefix, "ActiveDirectoryConfig");
        match present(map, "ActiveDirectoryConfig") {
            None => self.push(
                path,
                "is missing: it lists the gMSAs under GroupManagedServiceAccounts",
            ),
            Some(Value::Object(ad)) => self.active_directory_config(ad, &path, &domain, prefix),
            Some(other) => self.push(path, format!("must be an object, not {}", type_name(other))),
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A value for a message: strings quoted, others as JSON, long ones cut.
fn short(v: &Value) -> String {
    let text = match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    if text.chars().count() > 80 {
        format!("{}...", text.chars().take(77).collect::<String>())
    } else {
        text
    }
}

/// Checks a whole `GMSACredentialSpec` resource: `apiVersion`, `kind`, `metadata.name` and
/// the `credspec` document. Empty when it is fine.
pub fn validate(resource: &Value) -> Vec<Problem> {
    let mut checker = Checker {
        problems: Vec::new(),
    };
    checker.resource(resource);
    checker.problems
}

/// Checks a bare credential-spec document (what New-CredentialSpec writes). Paths start at
/// the document (`DomainJoinConfig.Sid`).
pub fn validate_contents(contents: &Value) -> Vec<Problem> {
    let mut checker = Checker {
        problems: Vec::new(),
    };
    checker.contents(contents, "");
    checker.problems
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests;
