//! Checks of `GMSACredentialSpec` resources and of the credential-spec documents they carry:
//! what Windows needs to find in them, and whether the accounts agree with the domain. The
//! reference webhook inlines any `credspec`, even `{}`, and the container fails at start; these
//! checks catch that before, in the CLI and at the `/validate-credspec` endpoint.

use std::fmt;

use serde_json::{Map, Value};

use super::model::ACTIVE_DIRECTORY_PLUGIN;
use super::plugins::{self, Plugin};
use crate::names;
use crate::syntax::{self, SyntaxError};

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

    fn domain_join_config<'v>(&mut self, map: &'v Map<String, Value>, prefix: &str) -> Domain<'v> {
        let mut domain = Domain::default();
        let path = join(prefix, "DomainJoinConfig");
        let dj = match present(map, "DomainJoinConfig") {
            None => {
                self.push(
                    path,
                    "is missing: give DnsName, DnsTreeName, Guid, MachineAccountName, NetBiosName and Sid",
                );
                return domain;
            }
            Some(Value::Object(dj)) => dj,
            Some(other) => {
                self.push(path, format!("must be an object, not {}", type_name(other)));
                return domain;
            }
        };
        for (key, what, check) in DOMAIN_JOIN_KEYS {
            let key_path = join(&path, key);
            let Some(value) = self.string(dj, key, &key_path, what) else {
                continue;
            };
            match check(value) {
                Ok(()) => match key {
                    "DnsName" => domain.dns_name = Some(value),
                    "NetBiosName" => domain.netbios_name = Some(value),
                    "MachineAccountName" => domain.machine_account = Some(value),
                    _ => {}
                },
                Err(e) => self.push(key_path, e.to_string()),
            }
        }
        domain
    }

    fn active_directory_config(
        &mut self,
        ad: &Map<String, Value>,
        path: &str,
        domain: &Domain<'_>,
        prefix: &str,
    ) {
        let list_path = join(path, "GroupManagedServiceAccounts");
        let mut listed = Listed::default();
        let mut list_usable = false;
        match present(ad, "GroupManagedServiceAccounts") {
            None => self.push(
                &list_path,
                "is missing: list the gMSA scoped to the domain's DNS name and to its NetBIOS name",
            ),
            Some(Value::Array(items)) if items.is_empty() => self.push(
                &list_path,
                "is empty: list the gMSA scoped to the domain's DNS name and to its NetBIOS name",
            ),
            Some(Value::Array(items)) => {
                list_usable = true;
                for (i, item) in items.iter().enumerate() {
                    let item_path = format!("{list_path}[{i}]");
                    self.account_entry(item, &item_path, domain, &mut listed);
                }
            }
            Some(other) => self.push(
                &list_path,
                format!("must be a list, not {}", type_name(other)),
            ),
        }
        if let (true, Some(machine), Some(dns), Some(netbios)) = (
            list_usable,
            domain.machine_account,
            domain.dns_name,
            domain.netbios_name,
        ) {
            match (listed.dns, listed.netbios) {
                (false, false) => self.push(
                    join(&join(prefix, "DomainJoinConfig"), "MachineAccountName"),
                    format!(
                        "{machine:?} is not among the GroupManagedServiceAccounts scoped to this domain ({}): add it, as New-CredentialSpec does",
                        domain.scopes()
                    ),
                ),
                (true, false) | (false, true) => {
                    let (found, missing, kind) = if listed.dns {
                        (dns, netbios, "NetBIOS")
                    } else {
                        (netbios, dns, "DNS")
                    };
                    self.warn(
                        &list_path,
                        format!(
                            "{machine:?} is scoped to {found:?} but not to the domain's {kind} name {missing:?}: add {{Name: {machine}, Scope: {missing}}}, as New-CredentialSpec does"
                        ),
                    );
                }
                (true, true) => {}
            }
        }
        self.host_account_config(ad, path);
    }

    /// Checks one `{Name, Scope}`; notes in `listed` where it lists the machine account.
    fn account_entry(
        &mut self,
        item: &Value,
        path: &str,
        domain: &Domain<'_>,
        listed: &mut Listed,
    ) {
        let Some(entry) = item.as_object() else {
            self.push(
                path,
                format!(
                    "must be an object with Name and Scope, not {}",
                    type_name(item)
                ),
            );
            return;
        };
        let name = self.string(
            entry,
            "Name",
            &join(path, "Name"),
            "the gMSA's account name, such as WebApp1",
        );
        let name = name.filter(|n| match syntax::account(n) {
            Ok(_) => true,
            Err(e) => {
                self.push(join(path, "Name"), e.to_string());
                false
            }
        });
        let scope_path = join(path, "Scope");
        let Some(scope) = self.string(
            entry,
            "Scope",
            &scope_path,
            "the account's domain, by DNS or NetBIOS name",
        ) else {
            return;
        };
        if domain.is_own(scope) {
            let is_machine = name
                .zip(domain.machine_account)
                .is_some_and(|(n, m)| n.eq_ignore_ascii_case(m));
            if is_machine {
                let is = |own: Option<&str>| own.is_some_and(|o| o.eq_ignore_ascii_case(scope));
                listed.dns |= is(domain.dns_name);
                listed.netbios |= is(domain.netbios_name);
            }
            return;
        }
        if !domain.is_complete() {
            // Without both of the domain's names, only the scope's own syntax can be judged.
            if syntax::dns_domain(scope).is_err() && syntax::netbios(scope).is_err() {
                self.push(
                    scope_path,
                    format!("{scope:?} is neither a DNS nor a NetBIOS domain name"),
                );
            }
            return;
        }
        let other_domain = scope.contains('.') && syntax::dns_domain(scope).is_ok();
        if other_domain {
            self.warn(
                scope_path,
                format!(
                    "{scope:?} is another domain than DomainJoinConfig's ({}): the container gets this gMSA only through a trust between the domains; if the gMSA is in this domain, scope it to {:?}",
                    domain.scopes(),
                    domain.dns_name.unwrap_or_default()
                ),
            );
        } else {
            self.push(
                scope_path,
                format!(
                    "{scope:?} is neither this domain's DNS name nor its NetBIOS name ({}); an account of another domain is scoped to that domain's DNS name",
                    domain.scopes()
                ),
            );
        }
    }

    fn host_account_config(&mut self, ad: &Map<String, Value>, path: &str) {
        let path = join(path, "HostAccountConfig");
        let host = match present(ad, "HostAccountConfig") {
            None => return,
            Some(Value::Object(h)) => h,
            Some(other) => {
                self.push(path, format!("must be an object, not {}", type_name(other)));
                return;
            }
        };
        let (given, absent): (Vec<&str>, Vec<&str>) = HOST_ACCOUNT_KEYS
            .iter()
            .partition(|k| present(host, k).is_some());
        if given.is_empty() {
            self.push(
                path,
                "is empty: remove it (domain-joined hosts), or give PortableCcgVersion, PluginGUID and PluginInput (a CCG plugin)",
            );
            return;
        }
        if !absent.is_empty() {
            self.push(
                &path,
                format!(
                    "has {} but not {}: a CCG plugin needs all of PortableCcgVersion, PluginGUID and PluginInput, a domain-joined host none",
                    given.join(" and "),
                    absent.join(" and ")
                ),
            );
        }
        let mut plugin = None;
        for key in given {
            let key_path = join(&path, key);
            if key == "PluginInput" {
                self.plugin_input(host, &key_path, plugin);
                continue;
            }
            let what = if key == "PluginGUID" {
                "the CCG plugin's GUID"
            } else {
                "the portable CCG version, \"1\""
            };
            let Some(value) = self.string(host, key, &key_path, what) else {
                continue;
            };
            match key {
                "PluginGUID" => match syntax::guid(value) {
                    Err(e) => self.push(key_path, e.to_string()),
                    Ok(bare) => {
                        if !(value.starts_with('{') && value.ends_with('}')) {
                            self.push(
                                &key_path,
                                format!(
                                    "{value:?} is not wrapped in braces: CCG does not invoke a plugin written without them; write \"{{{}}}\"",
                                    bare.to_ascii_uppercase()
                                ),
                            );
                        }
                        plugin = Plugin::from_guid(value);
                        if plugin.is_none() {
                            let known: Vec<String> = Plugin::ALL
                                .iter()
                                .map(|p| format!("{p} {{{}}}", p.guid()))
                                .collect();
                            self.warn(
                                key_path,
                                format!(
                                    "{value:?} is not a CCG plugin kubectl-gmsa knows ({}), so PluginInput is not checked: make sure this plugin is installed on every Windows node",
                                    known.join(", ")
                                ),
                            );
                        }
                    }
                },
                _ if !value.chars().all(|c| c.is_ascii_digit()) => {
                    self.push(key_path, format!("{value:?} is not a version: write \"1\""));
                }
                _ => {}
            }
        }
    }

    /// `PluginInput`, in the format its plugin reads when the plugin is known.
    fn plugin_input(&mut self, host: &Map<String, Value>, path: &str, plugin: Option<Plugin>) {
        if let (Some(Plugin::Aws), Some(Value::Object(object))) =
            (plugin, present(host, "PluginInput"))
        {
            let fix = match plugins::aws_input_from_object(object) {
                Some(input) => format!(
                    "write it as the string {}",
                    serde_json::to_string(&input).unwrap_or_default()
                ),
                None => r#"write it as the string "{\"credentialArn\":\"ARN\"}""#.to_string(),
            };
            self.push(
                path,
                format!(
                    "is a JSON object: the AWS plugin reads its JSON document encoded as a string (on ECS the agent rewrites an object; on Kubernetes nothing does); {fix}"
                ),
            );
            return;
        }
        let Some(input) = self.string(host, "PluginInput", path, "the CCG plugin's input") else {
            return;
        };
        let Some(plugin) = plugin else {
            return;
        };
        match plugin.check_input(input) {
            Ok(None) => {}
            Ok(Some(note)) => self.warn(path, format!("{note} ({plugin} plugin)")),
            Err(e) => self.push(path, format!("{e} ({plugin} plugin)")),
        }
    }
}

/// Under which of the domain's names the machine account is listed.
#[derive(Debug, Default)]
struct Listed {
    dns: bool,
    netbios: bool,
}

/// What `DomainJoinConfig` says, as far as it is valid.
#[derive(Debug, Default)]
struct Domain<'v> {
    dns_name: Option<&'v str>,
    netbios_name: Option<&'v str>,
    machine_account: Option<&'v str>,
}

impl Domain<'_> {
    /// Whether both of the domain's names are known and valid, so scopes can be judged.
    fn is_complete(&self) -> bool {
        self.dns_name.is_some() && self.netbios_name.is_some()
    }

    fn is_own(&self, scope: &str) -> bool {
        [self.dns_name, self.netbios_name]
            .into_iter()
            .flatten()
            .any(|s| s.eq_ignore_ascii_case(scope))
    }

    fn scopes(&self) -> String {
        [self.dns_name, self.netbios_name]
            .into_iter()
            .flatten()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(" or ")
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
mod tests {
    use super::*;
    use serde_json::json;

    fn webapp1() -> Value {
        gmsa_testkit::credspecs::webapp1("gmsa-webapp1")
    }

    fn lines(problems: &[Problem]) -> Vec<String> {
        problems.iter().map(ToString::to_string).collect()
    }

    /// Applies `edit` to the docs' example and returns the problems.
    fn problems_after(edit: impl FnOnce(&mut Value)) -> Vec<String> {
        let mut v = webapp1();
        edit(&mut v);
        lines(&validate(&v))
    }

    #[test]
    fn the_documentation_example_is_fine_in_lowercase() {
        assert_eq!(validate(&webapp1()), vec![]);
        assert_eq!(validate_contents(&webapp1()["credspec"]), vec![]);
        let mut alpha = webapp1();
        alpha["apiVersion"] = json!("windows.k8s.io/v1alpha1");
        assert_eq!(validate(&alpha), vec![]);
    }

    #[test]
    fn resource_fields() {
        let got = problems_after(|v| {
            v["metadata"]["name"] = json!("gmsa-WebApp1");
            v["kind"] = json!("Pod");
            v["apiVersion"] = json!("v1");
        });
        assert_eq!(got.len(), 3, "{got:#?}");
        assert_eq!(got[0], r#"apiVersion: "v1" is not windows.k8s.io/v1"#);
        assert_eq!(got[1], r#"kind: "Pod" is not GMSACredentialSpec"#);
        assert!(
            got[2].starts_with(r#"metadata.name: "gmsa-WebApp1" is not a valid Kubernetes name"#),
            "{}",
            got[2]
        );
        assert!(got[2].ends_with(r#"use "gmsa-webapp1""#), "{}", got[2]);
        let got = lines(&validate(&json!({})));
        assert_eq!(got.len(), 4, "{got:#?}");
        assert!(got[3].starts_with("credspec: is missing"));
        assert_eq!(
            lines(&validate(&json!([]))),
            ["a GMSACredentialSpec must be an object, not a list"]
        );
    }

    #[test]
    fn empty_credspec_lists_what_is_missing() {
        let got = problems_after(|v| v["credspec"] = json!({}));
        assert_eq!(
            got,
            [
                "credspec.CmsPlugins: is missing: write CmsPlugins: [ActiveDirectory]",
                "credspec.DomainJoinConfig: is missing: give DnsName, DnsTreeName, Guid, MachineAccountName, NetBiosName and Sid",
                "credspec.ActiveDirectoryConfig: is missing: it lists the gMSAs under GroupManagedServiceAccounts",
            ]
        );
        let got = problems_after(|v| v["credspec"] = json!(""));
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn syntax_of_domain_join_config() {
        let got = problems_after(|v| {
            let dj = &mut v["credspec"]["DomainJoinConfig"];
            dj["Guid"] = json!("244818ae");
            dj["Sid"] = json!("S-1-5-21-1-2-3-1105");
            dj["NetBiosName"] = json!("CONTOSOCONTOSO12");
            dj["DnsTreeName"] = json!(7);
            dj.as_object_mut().unwrap().remove("DnsName");
        });
        assert_eq!(got.len(), 5, "{got:#?}");
        assert_eq!(
            got[0],
            "credspec.DomainJoinConfig.DnsName: is missing: give the domain's DNS name, such as contoso.com"
        );
        assert_eq!(
            got[1],
            "credspec.DomainJoinConfig.DnsTreeName: must be a string (the forest's DNS name, such as contoso.com), not a number"
        );
        assert!(got[2].starts_with(r#"credspec.DomainJoinConfig.Guid: "244818ae" is not a GUID"#));
        assert!(got[3].starts_with(
            r#"credspec.DomainJoinConfig.NetBiosName: "CONTOSOCONTOSO12" has 16 characters"#
        ));
        assert!(
            got[4].contains("use the domain's SID S-1-5-21-1-2-3"),
            "{}",
            got[4]
        );
    }

    #[test]
    fn cms_plugins() {
        let got = problems_after(|v| v["credspec"]["CmsPlugins"] = json!(["Other"]));
        assert_eq!(
            got,
            ["credspec.CmsPlugins: does not list ActiveDirectory: add it"]
        );
        let got = problems_after(|v| v["credspec"]["CmsPlugins"] = json!("ActiveDirectory"));
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn accounts_agree_with_the_domain() {
        let mut v = webapp1();
        v["credspec"]["ActiveDirectoryConfig"]["GroupManagedServiceAccounts"] = json!([
            {"Name": "WebApp1", "Scope": "CONTOSO"},
            {"Name": "Other", "Scope": "CONTOS0"},
            {"Name": "Log", "Scope": "dev.contoso.com"},
            {"Name": "", "Scope": "contoso.com"},
            "WebApp1"
        ]);
        let warnings = validate(&v).into_iter().filter(Problem::is_warning).count();
        assert_eq!(warnings, 2, "dev.contoso.com, and no DNS scope for WebApp1");
        let got: Vec<String> = validate(&v)
            .iter()
            .filter(|p| !p.is_warning())
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            got,
            [
                r#"credspec.ActiveDirectoryConfig.GroupManagedServiceAccounts[1].Scope: "CONTOS0" is neither this domain's DNS name nor its NetBIOS name ("contoso.com" or "CONTOSO"); an account of another domain is scoped to that domain's DNS name"#,
                "credspec.ActiveDirectoryConfig.GroupManagedServiceAccounts[3].Name: is empty: give the gMSA's account name, such as WebApp1",
                "credspec.ActiveDirectoryConfig.GroupManagedServiceAccounts[4]: must be an object with Name and Scope, not a string",
            ]
        );
        let got = problems_after(|v| {
            v["credspec"]["ActiveDirectoryConfig"]["GroupManagedServiceAccounts"] = json!([{"Name": "Other", "Scope": "contoso.com"}, {"Name": "WebApp1", "Scope": "fabrikam.com"}]);
        });
        assert_eq!(got.len(), 2, "{got:#?}");
        assert!(got[0].contains(r#""fabrikam.com" is another domain"#));
        assert_eq!(
            got[1..],
            [
                r#"credspec.DomainJoinConfig.MachineAccountName: "WebApp1" is not among the GroupManagedServiceAccounts scoped to this domain ("contoso.com" or "CONTOSO"): add it, as New-CredentialSpec does"#
            ]
        );
        // Case does not matter in names and scopes.
        let got = problems_after(|v| {
            v["credspec"]["ActiveDirectoryConfig"]["GroupManagedServiceAccounts"] = json!([{"Name": "webapp1", "Scope": "Contoso.COM"}, {"Name": "WEBAPP1", "Scope": "contoso"}]);
        });
        assert_eq!(got, Vec::<String>::new());
        let got = problems_after(|v| {
            v["credspec"]["ActiveDirectoryConfig"]["GroupManagedServiceAccounts"] = json!([]);
        });
        assert_eq!(got.len(), 1);
        assert!(got[0].contains("is empty"));
    }

    fn host(h: Value) -> Vec<Problem> {
        let mut v = webapp1();
        v["credspec"]["ActiveDirectoryConfig"]["HostAccountConfig"] = h;
        validate(&v)
    }

    const AZURE_INPUT: &str = "ObjectId=6a1d6a8b-2a9e-4e5c-9b1f-0d1a2b3c4d5e;SecretUri=https://contoso.vault.azure.net/secrets/gmsa";

    #[test]
    fn host_account_config_is_all_or_nothing() {
        assert_eq!(
            host(
                json!({"PortableCcgVersion": "1", "PluginGUID": "{CCC2A336-D7F3-4818-A213-272B7924213E}", "PluginInput": AZURE_INPUT})
            ),
            vec![]
        );
        assert_eq!(
            lines(&host(json!({"PluginGUID": "{CCC2A336-D7F3-4818-A213-272B7924213E}"}))),
            ["credspec.ActiveDirectoryConfig.HostAccountConfig: has PluginGUID but not PortableCcgVersion and PluginInput: a CCG plugin needs all of PortableCcgVersion, PluginGUID and PluginInput, a domain-joined host none"]
        );
        assert_eq!(host(json!({})).len(), 1);
        let got = host(json!({"PortableCcgVersion": "v1", "PluginGUID": "x", "PluginInput": ""}));
        assert_eq!(got.len(), 3, "{got:#?}");
        assert!(host(json!(null)).is_empty());
    }

    /// The AWS samples write PluginInput as an object; only the string is stored and read.
    #[test]
    fn aws_plugin_input_must_be_the_encoded_string() {
        let arn = "arn:aws:ssm:us-west-2:123456789012:parameter/gmsa-plugin-input";
        let spec = |input: Value| {
            host(
                json!({"PortableCcgVersion": "1", "PluginGUID": "{859E1386-BDB4-49E8-85C7-3070B13920E1}", "PluginInput": input}),
            )
        };
        let got = spec(json!({ "CredentialArn": arn }));
        assert_eq!(got.len(), 1, "{got:#?}");
        assert_eq!(got[0].severity, Severity::Error);
        assert_eq!(
            got[0].to_string(),
            format!(
                r#"credspec.ActiveDirectoryConfig.HostAccountConfig.PluginInput: is a JSON object: the AWS plugin reads its JSON document encoded as a string (on ECS the agent rewrites an object; on Kubernetes nothing does); write it as the string "{{\"credentialArn\":\"{arn}\"}}""#
            )
        );
        assert_eq!(
            spec(json!(format!(r#"{{"credentialArn":"{arn}"}}"#))),
            vec![]
        );
        let got = lines(&spec(json!(arn)));
        assert_eq!(got.len(), 1);
        assert!(got[0].contains("is a bare ARN"), "{}", got[0]);
        let got = lines(&spec(json!(
            r#"{"credentialArn":"arn:aws:iam::123456789012:role/x"}"#
        )));
        assert!(got[0].contains("is an ARN of iam"), "{}", got[0]);
        assert!(got[0].ends_with("(AWS plugin)"), "{}", got[0]);
    }

    #[test]
    fn azure_and_rancher_inputs_are_checked() {
        let azure = |input: &str| {
            host(
                json!({"PortableCcgVersion": "1", "PluginGUID": "{CCC2A336-D7F3-4818-A213-272B7924213E}", "PluginInput": input}),
            )
        };
        let got = lines(&azure("ObjectId=$MANAGED_ID;SecretUri=$SECRET_URI"));
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(got[0].starts_with(r#"credspec.ActiveDirectoryConfig.HostAccountConfig.PluginInput: ObjectId "$MANAGED_ID" is not a GUID"#), "{}", got[0]);
        let rancher = |input: &str| {
            host(
                json!({"PortableCcgVersion": "1", "PluginGUID": "{e4781092-f116-4b79-b55e-28eb6a224e26}", "PluginInput": input}),
            )
        };
        assert_eq!(rancher("cattle-windows-gmsa-system:contoso-user"), vec![]);
        let got = lines(&rancher("contoso-user"));
        assert!(got[0].contains("is not NAMESPACE:SECRET"), "{}", got[0]);
    }

    #[test]
    fn plugin_guid_needs_braces_and_unknown_plugins_are_a_warning() {
        let got = host(
            json!({"PortableCcgVersion": "1", "PluginGUID": "e4781092-f116-4b79-b55e-28eb6a224e26", "PluginInput": "ns:secret"}),
        );
        assert_eq!(
            lines(&got),
            [
                r#"credspec.ActiveDirectoryConfig.HostAccountConfig.PluginGUID: "e4781092-f116-4b79-b55e-28eb6a224e26" is not wrapped in braces: CCG does not invoke a plugin written without them; write "{E4781092-F116-4B79-B55E-28EB6A224E26}""#
            ]
        );
        let got = host(
            json!({"PortableCcgVersion": "1", "PluginGUID": "{8019A64C-3F4E-4DE3-AD2B-9A544290E2C3}", "PluginInput": "anything"}),
        );
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(got[0].is_warning());
        assert!(got[0].message.starts_with(r#""{8019A64C-3F4E-4DE3-AD2B-9A544290E2C3}" is not a CCG plugin kubectl-gmsa knows (AWS {859E1386-BDB4-49E8-85C7-3070B13920E1}, Azure Key Vault {CCC2A336-D7F3-4818-A213-272B7924213E}, Rancher {e4781092-f116-4b79-b55e-28eb6a224e26})"#), "{}", got[0]);
    }

    #[test]
    fn a_missing_scope_and_another_domain_are_warnings() {
        let accounts = |list: Value| {
            let mut v = webapp1();
            v["credspec"]["ActiveDirectoryConfig"]["GroupManagedServiceAccounts"] = list;
            validate(&v)
        };
        let got = accounts(json!([{"Name": "WebApp1", "Scope": "contoso.com"}]));
        assert_eq!(got.len(), 1);
        assert!(got[0].is_warning());
        assert_eq!(
            got[0].to_string(),
            r#"credspec.ActiveDirectoryConfig.GroupManagedServiceAccounts: "WebApp1" is scoped to "contoso.com" but not to the domain's NetBIOS name "CONTOSO": add {Name: WebApp1, Scope: CONTOSO}, as New-CredentialSpec does"#
        );
        let got = lines(&accounts(json!([{"Name": "WebApp1", "Scope": "CONTOSO"}])));
        assert!(
            got[0].contains(r#"but not to the domain's DNS name "contoso.com""#),
            "{}",
            got[0]
        );
        let got = accounts(json!([
            {"Name": "WebApp1", "Scope": "contoso.com"}, {"Name": "WebApp1", "Scope": "CONTOSO"},
            {"Name": "Log", "Scope": "fabrikam.com"}
        ]));
        assert_eq!(got.len(), 1);
        assert!(got[0].is_warning());
        assert!(got[0].to_string().starts_with(r#"credspec.ActiveDirectoryConfig.GroupManagedServiceAccounts[2].Scope: "fabrikam.com" is another domain than DomainJoinConfig's ("contoso.com" or "CONTOSO")"#), "{}", got[0]);
        // Every account in another domain: the spec names the wrong domain, an error.
        let got = accounts(json!([{"Name": "WebApp1", "Scope": "fabrikam.com"}]));
        assert!(
            got.iter().any(
                |p| !p.is_warning() && p.path == "credspec.DomainJoinConfig.MachineAccountName"
            ),
            "{got:#?}"
        );
    }
}
