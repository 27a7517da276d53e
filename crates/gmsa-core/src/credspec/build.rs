//! Building a credential spec from facts about a domain, the way Microsoft's
//! `New-CredentialSpec` does: the account scoped to the domain's DNS name and then to its
//! NetBIOS name, additional accounts scoped to their domains, and a `HostAccountConfig` only
//! when a CCG plugin is given. The facts may come from flags or from Active Directory; both
//! go through [`build_credential_spec`].

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use super::model::{
    ActiveDirectoryConfig, CredSpec, CredentialSpecResource, DomainJoinConfig,
    GroupManagedServiceAccount, HostAccountConfig, ACTIVE_DIRECTORY_PLUGIN, PORTABLE_CCG_VERSION,
};
use crate::syntax::{self, SyntaxError};

/// What a credential spec needs to know about the gMSA's domain (`Get-ADDomain` shows them as
/// DNSRoot, Forest, NetBIOSName, ObjectGUID and DomainSID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainFacts {
    pub dns_name: String,
    /// The forest's root domain; the domain itself in a single-domain forest.
    pub forest_dns_name: String,
    pub netbios_name: String,
    pub guid: String,
    pub sid: String,
}

/// Another gMSA the container may use, in its own domain or (`None`) in the spec's domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdditionalAccount {
    pub name: String,
    pub domain: Option<String>,
}

impl FromStr for AdditionalAccount {
    type Err = std::convert::Infallible;

    /// Reads `ACCOUNT` or `ACCOUNT@DOMAIN`; syntax is checked when building.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.split_once('@') {
            Some((name, domain)) => Self {
                name: name.to_string(),
                domain: Some(domain.to_string()),
            },
            None => Self {
                name: s.to_string(),
                domain: None,
            },
        })
    }
}

/// The Container Credential Guard plugin that fetches gMSA passwords on hosts that are not
/// joined to the domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CcgPlugin {
    pub guid: String,
    pub input: String,
    /// `PortableCcgVersion`; "1" is the only one there is.
    pub version: String,
}

impl CcgPlugin {
    /// A plugin of the current portable CCG version.
    pub fn new(guid: impl Into<String>, input: impl Into<String>) -> Self {
        Self {
            guid: guid.into(),
            input: input.into(),
            version: PORTABLE_CCG_VERSION.to_string(),
        }
    }
}

/// Which input a [`BuildError`] is about, so a caller can name its own flag or field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Name,
    Account,
    DnsName,
    ForestDnsName,
    NetbiosName,
    Guid,
    Sid,
    /// The additional account at this index.
    AdditionalAccount(usize),
    /// The domain of the additional account at this index.
    AdditionalAccountDomain(usize),
    CcgPluginGuid,
    CcgPluginInput,
    CcgVersion,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Name => f.write_str("resource name"),
            Field::Account => f.write_str("gMSA account"),
            Field::DnsName => f.write_str("domain DNS name"),
            Field::ForestDnsName => f.write_str("forest DNS name"),
            Field::NetbiosName => f.write_str("domain NetBIOS name"),
            Field::Guid => f.write_str("domain GUID"),
            Field::Sid => f.write_str("domain SID"),
            Field::AdditionalAccount(i) => write!(f, "additional account {}", i + 1),
            Field::AdditionalAccountDomain(i) => {
                write!(f, "domain of additional account {}", i + 1)
            }
            Field::CcgPluginGuid => f.write_str("CCG plugin GUID"),
            Field::CcgPluginInput => f.write_str("CCG plugin input"),
            Field::CcgVersion => f.write_str("portable CCG version"),
        }
    }
}

/// What is wrong with one input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Reason {
    #[error(transparent)]
    Syntax(#[from] SyntaxError),
    #[error("must not be empty")]
    Empty,
    #[error("{0:?} is not a version: the portable CCG version is a number, and \"1\" is the only one there is")]
    CcgVersion(String),
}

/// Why a credential spec could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {reason}")]
pub struct BuildError {
    pub field: Field,
    pub reason: Reason,
}

fn at(field: Field) -> impl FnOnce(SyntaxError) -> BuildError {
    move |e| BuildError {
        field,
        reason: Reason::Syntax(e),
    }
}

/// Builds the `GMSACredentialSpec` named `name` for the gMSA `account` (a final `$` is
/// dropped) of `domain`, checking every input's syntax first.
pub fn build_credential_spec(
    name: &str,
    account: &str,
    domain: &DomainFacts,
    additional: &[AdditionalAccount],
    ccg: Option<&CcgPlugin>,
) -> Result<CredentialSpecResource, BuildError> {
    syntax::object_name(name).map_err(at(Field::Name))?;
    let account = syntax::account(account).map_err(at(Field::Account))?;
    syntax::dns_domain(&domain.dns_name).map_err(at(Field::DnsName))?;
    syntax::dns_domain(&domain.forest_dns_name).map_err(at(Field::ForestDnsName))?;
    syntax::netbios(&domain.netbios_name).map_err(at(Field::NetbiosName))?;
    let guid = syntax::guid(&domain.guid).map_err(at(Field::Guid))?;
    syntax::domain_sid(&domain.sid).map_err(at(Field::Sid))?;

    let mut accounts = vec![
        GroupManagedServiceAccount {
            name: account.to_string(),
            scope: domain.dns_name.clone(),
        },
        GroupManagedServiceAccount {
            name: account.to_string(),
            scope: domain.netbios_name.clone(),
        },
    ];
    for (i, extra) in additional.iter().enumerate() {
        let name = syntax::account(&extra.name).map_err(at(Field::AdditionalAccount(i)))?;
        let scope = match &extra.domain {
            Some(d) => {
                syntax::dns_domain(d).map_err(at(Field::AdditionalAccountDomain(i)))?;
                d.clone()
            }
            None => domain.dns_name.clone(),
        };
        accounts.push(GroupManagedServiceAccount {
            name: name.to_string(),
            scope,
        });
    }

    let host_account_config = ccg.map(host_account_config).transpose()?;

    Ok(CredentialSpecResource {
        name: name.to_string(),
        credspec: CredSpec {
            active_directory_config: ActiveDirectoryConfig {
                group_managed_service_accounts: accounts,
                host_account_config,
            },
            cms_plugins: vec![ACTIVE_DIRECTORY_PLUGIN.to_string()],
            domain_join_config: DomainJoinConfig {
                dns_name: domain.dns_name.clone(),
                dns_tree_name: domain.forest_dns_name.clone(),
                guid,
                machine_account_name: account.to_string(),
                netbios_name: domain.netbios_name.clone(),
                sid: domain.sid.clone(),
            },
        },
    })
}

/// The plugin's GUID is written as New-CredentialSpec writes its own: uppercase, in braces.
fn host_account_config(ccg: &CcgPlugin) -> Result<HostAccountConfig, BuildError> {
    let guid = syntax::guid(&ccg.guid).map_err(at(Field::CcgPluginGuid))?;
    if ccg.input.trim().is_empty() {
        return Err(BuildError {
            field: Field::CcgPluginInput,
            reason: Reason::Empty,
        });
    }
    let version_ok = !ccg.version.is_empty()
        && ccg.version.chars().all(|c| c.is_ascii_digit())
        && !ccg.version.starts_with('0');
    if !version_ok {
        return Err(BuildError {
            field: Field::CcgVersion,
            reason: Reason::CcgVersion(ccg.version.clone()),
        });
    }
    Ok(HostAccountConfig {
        plugin_guid: format!("{{{}}}", guid.to_ascii_uppercase()),
        plugin_input: ccg.input.clone(),
        portable_ccg_version: ccg.version.clone(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;
    use serde_json::json;

    fn contoso() -> DomainFacts {
        DomainFacts {
            dns_name: "contoso.com".into(),
            forest_dns_name: "contoso.com".into(),
            netbios_name: "CONTOSO".into(),
            guid: "244818ae-87ac-4fcd-92ec-e79e5252348a".into(),
            sid: "S-1-5-21-2126449477-2524075714-3094792973".into(),
        }
    }

    #[test]
    fn builds_what_new_credential_spec_writes() {
        let built =
            build_credential_spec("gmsa-webapp1", "WebApp1$", &contoso(), &[], None).unwrap();
        assert_eq!(
            built.to_value(),
            json!({
                "apiVersion": "windows.k8s.io/v1",
                "kind": "GMSACredentialSpec",
                "metadata": {"name": "gmsa-webapp1"},
                "credspec": {
                    "CmsPlugins": ["ActiveDirectory"],
                    "DomainJoinConfig": {
                        "Sid": "S-1-5-21-2126449477-2524075714-3094792973",
                        "MachineAccountName": "WebApp1",
                        "Guid": "244818ae-87ac-4fcd-92ec-e79e5252348a",
                        "DnsTreeName": "contoso.com",
                        "DnsName": "contoso.com",
                        "NetBiosName": "CONTOSO"
                    },
                    "ActiveDirectoryConfig": {"GroupManagedServiceAccounts": [
                        {"Name": "WebApp1", "Scope": "contoso.com"},
                        {"Name": "WebApp1", "Scope": "CONTOSO"}
                    ]}
                }
            })
        );
        assert!(super::super::validate(&built.to_value()).is_empty());
    }

    #[test]
    fn additional_accounts_forest_and_ccg() {
        let mut domain = contoso();
        domain.dns_name = "dev.contoso.com".into();
        domain.guid = "{244818AE-87AC-4FCD-92EC-E79E5252348A}".into();
        let additional = [
            "LogAccount01".parse().unwrap(),
            "gMSA3$@other.example".parse().unwrap(),
        ];
        let ccg = CcgPlugin::new(
            "ccc2a336-d7f3-4818-a213-272b7924213e",
            "ObjectId=x;SecretUri=y",
        );
        let built = build_credential_spec("web", "WebApp1", &domain, &additional, Some(&ccg))
            .unwrap()
            .credspec;
        let dj = &built.domain_join_config;
        assert_eq!(dj.dns_tree_name, "contoso.com");
        assert_eq!(dj.guid, "244818ae-87ac-4fcd-92ec-e79e5252348a");
        let ad = built.active_directory_config.to_owned();
        let scopes: Vec<(&str, &str)> = ad
            .group_managed_service_accounts
            .iter()
            .map(|a| (a.name.as_str(), a.scope.as_str()))
            .collect();
        assert_eq!(
            scopes,
            [
                ("WebApp1", "dev.contoso.com"),
                ("WebApp1", "CONTOSO"),
                ("LogAccount01", "dev.contoso.com"),
                ("gMSA3", "other.example")
            ]
        );
        assert_eq!(
            ad.host_account_config,
            Some(HostAccountConfig {
                plugin_guid: "{CCC2A336-D7F3-4818-A213-272B7924213E}".into(),
                plugin_input: "ObjectId=x;SecretUri=y".into(),
                portable_ccg_version: "1".into()
            })
        );
    }

    #[test]
    fn refuses_bad_inputs_naming_the_field() {
        let build = |name: &str, domain: DomainFacts, ccg: Option<CcgPlugin>| {
            build_credential_spec(name, "WebApp1", &domain, &[], ccg.as_ref()).unwrap_err()
        };
        assert_eq!(build("gmsa-WebApp1", contoso(), None).field, Field::Name);
        let mut d = contoso();
        d.guid = "nope".into();
        assert_eq!(build("a", d, None).field, Field::Guid);
        let mut d = contoso();
        d.sid = "S-1-5-21-1-2-3-1105".into();
        let err = build("a", d, None);
        assert_eq!(err.field, Field::Sid);
        assert!(
            err.to_string()
                .contains("use the domain's SID S-1-5-21-1-2-3"),
            "{err}"
        );
        let mut d = contoso();
        d.netbios_name = "CONTOSOCONTOSO12".into();
        assert_eq!(build("a", d, None).field, Field::NetbiosName);
        let mut d = contoso();
        d.forest_dns_name = "not a domain".into();
        assert_eq!(build("a", d, None).field, Field::ForestDnsName);
        let err = build("a", contoso(), Some(CcgPlugin::new("x", "y")));
        assert_eq!(err.field, Field::CcgPluginGuid);
        let ccg = CcgPlugin::new("ccc2a336-d7f3-4818-a213-272b7924213e", " ");
        assert_eq!(build("a", contoso(), Some(ccg)).reason, Reason::Empty);
        let mut ccg = CcgPlugin::new("ccc2a336-d7f3-4818-a213-272b7924213e", "x");
        ccg.version = "v1".into();
        assert_eq!(build("a", contoso(), Some(ccg)).field, Field::CcgVersion);
        let err = build_credential_spec(
            "a",
            "WebApp1",
            &contoso(),
            &["x@bad domain".parse().unwrap()],
            None,
        )
        .unwrap_err();
        assert_eq!(err.field, Field::AdditionalAccountDomain(0));
    }
}
