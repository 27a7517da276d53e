//! The credential-spec document: the JSON Microsoft's `New-CredentialSpec` writes and a
//! `GMSACredentialSpec` keeps under `credspec`. Keys are PascalCase, as Windows reads them.
//!
//! Fields are declared in alphabetical order so that serializing a model gives the same key
//! order as Go and `kubectl` (which sort keys), whatever the serializer.

use serde::{Deserialize, Serialize};

use crate::names;

/// The plugin every credential spec lists in `CmsPlugins`.
pub const ACTIVE_DIRECTORY_PLUGIN: &str = "ActiveDirectory";
/// The only portable CCG version there is.
pub const PORTABLE_CCG_VERSION: &str = "1";

/// A whole credential-spec document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredSpec {
    #[serde(rename = "ActiveDirectoryConfig")]
    pub active_directory_config: ActiveDirectoryConfig,
    #[serde(rename = "CmsPlugins")]
    pub cms_plugins: Vec<String>,
    #[serde(rename = "DomainJoinConfig")]
    pub domain_join_config: DomainJoinConfig,
}

/// The domain the container acts as a member of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainJoinConfig {
    #[serde(rename = "DnsName")]
    pub dns_name: String,
    /// The forest's root domain.
    #[serde(rename = "DnsTreeName")]
    pub dns_tree_name: String,
    #[serde(rename = "Guid")]
    pub guid: String,
    /// The gMSA the container runs as, without the final `$`.
    #[serde(rename = "MachineAccountName")]
    pub machine_account_name: String,
    #[serde(rename = "NetBiosName")]
    pub netbios_name: String,
    /// The domain's SID (not the account's).
    #[serde(rename = "Sid")]
    pub sid: String,
}

/// The gMSAs the container may use, and how a non-domain-joined host gets their passwords.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveDirectoryConfig {
    #[serde(rename = "GroupManagedServiceAccounts")]
    pub group_managed_service_accounts: Vec<GroupManagedServiceAccount>,
    /// Only for hosts that are not joined to the domain (a CCG plugin fetches the secret).
    #[serde(
        rename = "HostAccountConfig",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub host_account_config: Option<HostAccountConfig>,
}

/// One gMSA, scoped to its domain's DNS or NetBIOS name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupManagedServiceAccount {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Scope")]
    pub scope: String,
}

/// The Container Credential Guard plugin of a non-domain-joined host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostAccountConfig {
    /// The plugin's COM class, written `{XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX}`.
    #[serde(rename = "PluginGUID")]
    pub plugin_guid: String,
    /// Plugin-specific text, such as where its secret lives.
    #[serde(rename = "PluginInput")]
    pub plugin_input: String,
    #[serde(rename = "PortableCcgVersion")]
    pub portable_ccg_version: String,
}

/// A `GMSACredentialSpec` resource: a name and a credential-spec document. Serializes with
/// `apiVersion`, `kind`, `metadata` and `credspec` in that order, as the Kubernetes
/// documentation writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialSpecResource {
    pub name: String,
    pub credspec: CredSpec,
}

#[derive(Serialize)]
struct ResourceOut<'a> {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: &'static str,
    metadata: MetadataOut<'a>,
    credspec: &'a CredSpec,
}

#[derive(Serialize)]
struct MetadataOut<'a> {
    name: &'a str,
}

impl Serialize for CredentialSpecResource {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ResourceOut {
            api_version: format!("{}/{}", names::GROUP, names::VERSION),
            kind: names::KIND,
            metadata: MetadataOut { name: &self.name },
            credspec: &self.credspec,
        }
        .serialize(serializer)
    }
}

impl CredentialSpecResource {
    /// The resource as a JSON value (for APIs that take one).
    pub fn to_value(&self) -> serde_json::Value {
        // Serializing these plain structs into a Value cannot fail.
        serde_json::to_value(self).unwrap_or_default()
    }
}

impl CredSpec {
    /// The document as a JSON value.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}
