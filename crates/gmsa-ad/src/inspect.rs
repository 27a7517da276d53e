//! Reads what [`crate::readiness`] judges: the gMSA a spec names with its password readers,
//! the accounts that must read the password (nodes' computer accounts or a CCG plugin's
//! account) with their group SIDs, the KDS root keys, and who else holds the gMSA's SPNs.

use std::collections::BTreeMap;

use ldap3::{ldap_escape, Scope, SearchEntry};

use crate::directory::{first, first_bytes, values, Directory};
use crate::error::AdError;
use crate::facts::DomainFacts;
use crate::identifiers::sid_from_bytes;
use crate::readiness::{
    ccg_account, membership_sids, AccountEntry, AccountState, Principal, Retriever, RootKey,
    SpecClaims, SpnHolder, Token,
};

pub use crate::facts::GMSA_CLASS;
/// Where the forest keeps its KDS root keys, under the configuration naming context.
pub const MASTER_ROOT_KEYS_RDN: &str =
    "CN=Master Root Keys,CN=Group Key Distribution Service,CN=Services";
/// A computer's `sAMAccountName` is its NetBIOS name, at most 15 characters, and `$`.
const NETBIOS_NAME_MAX: usize = 15;
/// Names of SIDs that no directory object carries.
const WELL_KNOWN: &[(&str, &str)] = &[
    ("S-1-1-0", "Everyone"),
    ("S-1-5-11", "Authenticated Users"),
    ("S-1-5-18", "SYSTEM"),
    ("S-1-5-32-544", "BUILTIN\\Administrators"),
];

impl Directory {
    /// The KDS root keys the bind account can see (none when the container is missing).
    pub async fn root_keys(&mut self) -> Result<Vec<RootKey>, AdError> {
        let base = format!(
            "{MASTER_ROOT_KEYS_RDN},{}",
            self.root_dse().configuration_naming_context
        );
        let entries = self
            .session
            .children_if_exists(
                "KDS root key search",
                &base,
                "(objectClass=msKds-ProvRootKey)",
                &["cn", "msKds-UseStartTime"],
            )
            .await?;
        entries
            .iter()
            .map(|entry| {
                let start = first(entry, "msKds-UseStartTime").unwrap_or_default();
                let use_start_time = start.parse().map_err(|_| AdError::Malformed {
                    dn: entry.dn.clone(),
                    attribute: "msKds-UseStartTime",
                    reason: format!("{start:?} is not a FILETIME"),
                })?;
                Ok(RootKey {
                    id: first(entry, "cn").unwrap_or_else(|| entry.dn.clone()),
                    use_start_time,
                })
            })
            .collect()
    }

    /// Everything [`crate::readiness::evaluate`] needs about one spec's account. A spec with
    /// a `HostAccountConfig` is read by the CCG plugin's account, not by the `nodes`
    /// (Kubernetes node names, found by their computer accounts).
    pub async fn account_state(
        &mut self,
        claims: &SpecClaims,
        domain: &DomainFacts,
        nodes: &[String],
    ) -> Result<AccountState, AdError> {
        let mut state = AccountState {
            entry: self.account_entry(&claims.account).await?,
            ..AccountState::default()
        };
        let Some(entry) = state.entry.clone() else {
            return Ok(state);
        };
        if let Some(descriptor) = &entry.membership {
            for sid in membership_sids(descriptor).unwrap_or_default() {
                if let std::collections::btree_map::Entry::Vacant(slot) =
                    state.principals.entry(sid)
                {
                    if let Some(principal) = self.principal(slot.key()).await? {
                        slot.insert(principal);
                    }
                }
            }
        }
        state.retrievers = match &claims.ccg_plugin_input {
            Some(input) => {
                let account = ccg_account(input);
                let token = match &account {
                    Some(name) => self.token_of_account(name, domain).await?,
                    None => None,
                };
                vec![Retriever::Ccg { account, token }]
            }
            None => {
                let mut retrievers = Vec::new();
                for node in nodes {
                    retrievers.push(self.node_retriever(node, domain).await?);
                }
                retrievers
            }
        };
        for spn in &entry.spns {
            let filter = format!("(servicePrincipalName={})", ldap_escape(spn));
            let base = self.root_dse().default_naming_context.clone();
            for holder in self
                .session
                .search(
                    "SPN search",
                    &base,
                    Scope::Subtree,
                    &filter,
                    &["sAMAccountName"],
                )
                .await?
            {
                state.spn_holders.push(SpnHolder {
                    spn: spn.clone(),
                    sam_account_name: first(&holder, "sAMAccountName")
                        .unwrap_or_else(|| holder.dn.clone()),
                    dn: holder.dn,
                });
            }
        }
        Ok(state)
    }

    /// The entry whose `sAMAccountName` is `NAME$` (or `NAME`), whatever its class.
    async fn account_entry(&mut self, name: &str) -> Result<Option<AccountEntry>, AdError> {
        let filter = format!(
            "(|(sAMAccountName={0}$)(sAMAccountName={0}))",
            ldap_escape(name)
        );
        let base = self.root_dse().default_naming_context.clone();
        let found = self
            .session
            .search(
                "gMSA read",
                &base,
                Scope::Subtree,
                &filter,
                &[
                    "objectClass",
                    "sAMAccountName",
                    "userAccountControl",
                    "dNSHostName",
                    "servicePrincipalName",
                    "msDS-GroupMSAMembership",
                ],
            )
            .await?;
        // Prefer the gMSA when a user and a gMSA share the name without `$`.
        let entry = found
            .iter()
            .find(|e| has_class(e, GMSA_CLASS))
            .or(found.first());
        Ok(entry.map(|entry| AccountEntry {
            dn: entry.dn.clone(),
            sam_account_name: first(entry, "sAMAccountName").unwrap_or_default(),
            object_classes: values(entry, "objectClass").to_vec(),
            user_account_control: first(entry, "userAccountControl")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            dns_host_name: first(entry, "dNSHostName"),
            spns: values(entry, "servicePrincipalName").to_vec(),
            membership: first_bytes(entry, "msDS-GroupMSAMembership"),
        }))
    }

    /// The name and kind of the object with this SID; well-known SIDs by their names.
    async fn principal(&mut self, sid: &str) -> Result<Option<Principal>, AdError> {
        if let Some((_, name)) = WELL_KNOWN.iter().find(|(s, _)| *s == sid) {
            return Ok(Some(Principal {
                name: name.to_string(),
                dn: String::new(),
                is_group: true,
            }));
        }
        let base = self.root_dse().default_naming_context.clone();
        let found = self
            .session
            .search(
                "SID lookup",
                &base,
                Scope::Subtree,
                &format!("(objectSid={})", ldap_escape(sid)),
                &["sAMAccountName", "objectClass"],
            )
            .await?;
        Ok(found.first().map(|entry| Principal {
            name: first(entry, "sAMAccountName").unwrap_or_else(|| entry.dn.clone()),
            dn: entry.dn.clone(),
            is_group: has_class(entry, "group"),
        }))
    }

    /// A node's computer account: `sAMAccountName` from the node name's first label (as
    /// Windows derives the NetBIOS name), or `dNSHostName` equal to the node name.
    async fn node_retriever(
        &mut self,
        node: &str,
        domain: &DomainFacts,
    ) -> Result<Retriever, AdError> {
        let short: String = node
            .split('.')
            .next()
            .unwrap_or(node)
            .chars()
            .take(NETBIOS_NAME_MAX)
            .collect::<String>()
            .to_uppercase();
        let looked_for = format!("looked for sAMAccountName {short}$ or dNSHostName {node}");
        let filter = format!(
            "(&(objectClass=computer)(!(objectClass={GMSA_CLASS}))(|(sAMAccountName={}$)(dNSHostName={})))",
            ldap_escape(&short),
            ldap_escape(node)
        );
        let token = self.token_by_filter(&filter, domain).await?;
        Ok(Retriever::Node {
            node: node.to_string(),
            looked_for,
            token,
        })
    }

    /// A user's (or any account's) token, by `sAMAccountName`.
    async fn token_of_account(
        &mut self,
        name: &str,
        domain: &DomainFacts,
    ) -> Result<Option<Token>, AdError> {
        let filter = format!(
            "(&(objectSid=*)(|(sAMAccountName={0})(sAMAccountName={0}$)))",
            ldap_escape(name)
        );
        self.token_by_filter(&filter, domain).await
    }

    async fn token_by_filter(
        &mut self,
        filter: &str,
        domain: &DomainFacts,
    ) -> Result<Option<Token>, AdError> {
        let base = self.root_dse().default_naming_context.clone();
        let found = self
            .session
            .search("account lookup", &base, Scope::Subtree, filter, &["dn"])
            .await?;
        let Some(dn) = found.first().map(|e| e.dn.clone()) else {
            return Ok(None);
        };
        // tokenGroups is constructed, and only on a base search.
        let entry = self
            .session
            .search(
                "tokenGroups read",
                &dn,
                Scope::Base,
                "(objectClass=*)",
                &[
                    "sAMAccountName",
                    "objectSid",
                    "primaryGroupID",
                    "memberOf",
                    "tokenGroups",
                ],
            )
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| AdError::MissingAttribute {
                dn: dn.clone(),
                attribute: "tokenGroups",
            })?;
        Ok(Some(Token {
            sam_account_name: first(&entry, "sAMAccountName").unwrap_or_default(),
            sid: crate::directory::decode(&entry, "objectSid", sid_from_bytes)?,
            group_sids: all_bytes(&entry, "tokenGroups")
                .iter()
                .filter_map(|bytes| sid_from_bytes(bytes).ok())
                .collect(),
            primary_group_sid: first(&entry, "primaryGroupID")
                .map(|rid| format!("{}-{rid}", domain.sid)),
            direct_groups: values(&entry, "memberOf").to_vec(),
        }))
    }
}

/// Reads what `doctor --ad` needs for several specs over one connection: the domain, the root
/// keys, and each spec's account state (keyed by spec name).
pub async fn read_all(
    directory: &mut Directory,
    specs: &[SpecClaims],
    nodes: &[String],
) -> Result<(DomainFacts, Vec<RootKey>, BTreeMap<String, AccountState>), AdError> {
    let domain = directory.domain_facts().await?;
    let keys = directory.root_keys().await?;
    let mut states = BTreeMap::new();
    for claims in specs {
        let state = directory.account_state(claims, &domain, nodes).await?;
        states.insert(claims.spec.clone(), state);
    }
    Ok((domain, keys, states))
}

fn has_class(entry: &SearchEntry, class: &str) -> bool {
    values(entry, "objectClass")
        .iter()
        .any(|c| c.eq_ignore_ascii_case(class))
}

/// Every value of a binary attribute; ldap3 files values that happen to be UTF-8 as text.
fn all_bytes(entry: &SearchEntry, name: &str) -> Vec<Vec<u8>> {
    let mut all: Vec<Vec<u8>> = entry
        .bin_attrs
        .iter()
        .filter(|(key, _)| key.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.iter().cloned())
        .collect();
    all.extend(values(entry, name).iter().map(|s| s.as_bytes().to_vec()));
    all
}
