//! Check 2, who may retrieve the password: the gMSA's `msDS-GroupMSAMembership` security
//! descriptor (parsed by `windows-sddl`) against each reader's token, and the account a CCG
//! plugin input names.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{
    AccountEntry, AccountState, Check, Principal, Retriever, SpecClaims, Token, CHECK_RETRIEVAL,
    READ_PASSWORD_MASK, UNIVERSAL_SIDS,
};
use crate::facts::same_dn;

/// One allow or deny rule of the security descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    allow: bool,
    sid: String,
}

/// The SIDs the security descriptor names, in order, for [`crate::inspect`] to resolve.
pub fn membership_sids(descriptor: &[u8]) -> Result<Vec<String>, String> {
    Ok(rules(descriptor)?.into_iter().map(|r| r.sid).collect())
}

fn rules(descriptor: &[u8]) -> Result<Vec<Rule>, String> {
    let parsed = windows_sddl::parse(descriptor).map_err(|e| e.to_string())?;
    if parsed.dacl_kind == windows_sddl::DaclKind::Null {
        // A NULL DACL allows everyone.
        return Ok(vec![Rule {
            allow: true,
            sid: UNIVERSAL_SIDS[0].to_string(),
        }]);
    }
    Ok(parsed
        .dacl
        .map(|acl| acl.aces)
        .unwrap_or_default()
        .into_iter()
        .filter(|ace| ace.mask.bits() & READ_PASSWORD_MASK != 0)
        .filter_map(|ace| {
            let allow = match ace.ace_type {
                windows_sddl::AceType::AccessAllowed => true,
                windows_sddl::AceType::AccessDenied => false,
                // Object ACEs and others do not grant reading this attribute as a whole.
                _ => return None,
            };
            Some(Rule {
                allow,
                sid: ace.trustee.to_string(),
            })
        })
        .collect())
}

/// How a token is related to the SID of an allowing rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Path {
    Own,
    Member,
    NestedMember,
}

/// How a token fared against the rules: a deny rule naming one of its SIDs before any allow
/// rule denies; otherwise the allow rule with the closest relation (its own SID, a group it is
/// directly in, a nested group) is the one to report.
fn decide<'r>(
    rules: &'r [Rule],
    token: &Token,
    principals: &BTreeMap<String, Principal>,
) -> Option<(&'r Rule, Path)> {
    let mut sids: BTreeSet<&str> = token.group_sids.iter().map(String::as_str).collect();
    sids.insert(&token.sid);
    sids.extend(token.primary_group_sid.as_deref());
    sids.extend(UNIVERSAL_SIDS);
    let path = |rule: &Rule| {
        if rule.sid == token.sid {
            Path::Own
        } else if token.primary_group_sid.as_deref() == Some(rule.sid.as_str())
            || UNIVERSAL_SIDS.contains(&rule.sid.as_str())
            || principals
                .get(&rule.sid)
                .is_some_and(|p| token.direct_groups.iter().any(|g| same_dn(g, &p.dn)))
        {
            Path::Member
        } else {
            Path::NestedMember
        }
    };
    let mut matching = rules.iter().filter(|r| sids.contains(r.sid.as_str()));
    let first = matching.next()?;
    if !first.allow {
        return Some((first, Path::Own));
    }
    std::iter::once(first)
        .chain(matching.take_while(|r| r.allow))
        .map(|r| (r, path(r)))
        .min_by_key(|(_, p)| *p)
}

/// Check 2 for one spec: one row per reader.
pub(super) fn retrieval(
    claims: &SpecClaims,
    entry: &AccountEntry,
    state: &AccountState,
) -> Vec<Check> {
    let gmsa = &claims.account;
    let rules = match entry.membership.as_deref().map(rules) {
        None => Vec::new(),
        Some(Ok(rules)) => rules,
        Some(Err(reason)) => {
            return vec![Check::fail(
                CHECK_RETRIEVAL,
                &claims.spec,
                format!("the msDS-GroupMSAMembership of {} cannot be read: {reason}", entry.dn),
                format!("Set-ADServiceAccount -Identity {gmsa} -PrincipalsAllowedToRetrieveManagedPassword <the Windows nodes' group>"),
            )];
        }
    };
    let name_of = |sid: &str| {
        state
            .principals
            .get(sid)
            .map_or_else(|| sid.to_string(), |p| p.name.clone())
    };
    let allowed: Vec<String> = rules
        .iter()
        .filter(|r| r.allow)
        .map(|r| name_of(&r.sid))
        .collect();
    let allowed_group = rules
        .iter()
        .filter(|r| r.allow)
        .find_map(|r| state.principals.get(&r.sid).filter(|p| p.is_group));
    // Set-ADServiceAccount replaces the whole list: one command that keeps the current readers
    // and adds every account that is refused, so running the fix of one row undoes no other.
    let refused: Vec<&str> = state
        .retrievers
        .iter()
        .filter_map(|r| match r {
            Retriever::Node { token, .. } | Retriever::Ccg { token, .. } => token.as_ref(),
        })
        .filter(|t| decide(&rules, t, &state.principals).is_none_or(|(rule, _)| !rule.allow))
        .map(|t| t.sam_account_name.as_str())
        .collect();
    let grant = |account: &str| match allowed_group {
        Some(group) => format!(
            "Add-ADGroupMember -Identity '{}' -Members '{account}', then purge the host's tickets \
             (klist.exe -li 0x3e7 purge) or reboot it",
            group.name
        ),
        None => {
            let mut names: Vec<String> = allowed.iter().map(|n| format!("'{n}'")).collect();
            for name in refused.iter().copied().chain([account]) {
                let quoted = format!("'{name}'");
                if !names.contains(&quoted) {
                    names.push(quoted);
                }
            }
            format!(
                "Set-ADServiceAccount -Identity {gmsa} -PrincipalsAllowedToRetrieveManagedPassword {}",
                names.join(",")
            )
        }
    };
    if state.retrievers.is_empty() {
        return vec![Check::warn(
            CHECK_RETRIEVAL,
            &claims.spec,
            "no Windows node (label kubernetes.io/os=windows) to check".to_string(),
            "label the Windows nodes kubernetes.io/os=windows, or name one with --node".to_string(),
        )];
    }
    state
        .retrievers
        .iter()
        .map(|retriever| {
            let (subject, token) = match retriever {
                Retriever::Node { node, looked_for, token } => {
                    let subject = format!("{} node/{node}", claims.spec);
                    let Some(token) = token else {
                        return Check::fail(
                            CHECK_RETRIEVAL,
                            &subject,
                            format!("no computer account for node {node} ({looked_for}): the node is not joined to this domain"),
                            format!("join the node to {} (Add-Computer -DomainName {} -Restart, on the node), or give non-domain-joined nodes a spec with a HostAccountConfig (CCG)", claims.dns_name, claims.dns_name),
                        );
                    };
                    (subject, token)
                }
                Retriever::Ccg { account, token } => {
                    let subject = format!("{} ccg/{}", claims.spec, account.as_deref().unwrap_or("?"));
                    match (account, token) {
                        (None, _) => {
                            return Check::warn(
                                CHECK_RETRIEVAL,
                                &subject,
                                "the HostAccountConfig's plugin input names no account (it points the CCG plugin at a secret), so who retrieves the password could not be checked; nodes are not checked for CCG specs".to_string(),
                                format!("check that the account in the plugin's secret is listed: Get-ADServiceAccount {gmsa} -Properties PrincipalsAllowedToRetrieveManagedPassword"),
                            );
                        }
                        (Some(account), None) => {
                            return Check::fail(
                                CHECK_RETRIEVAL,
                                &subject,
                                format!("the plugin input names {account}, which is no account of this domain"),
                                format!("New-ADUser -Name {account} (the CCG plugin's account), or fix HostAccountConfig.PluginInput"),
                            );
                        }
                        (Some(_), Some(token)) => (subject, token),
                    }
                }
            };
            let account = &token.sam_account_name;
            match decide(&rules, token, &state.principals) {
                Some((rule, Path::Own)) if rule.allow => Check::pass(
                    CHECK_RETRIEVAL,
                    &subject,
                    format!("{account} may retrieve the password of {gmsa}$ directly"),
                ),
                Some((rule, path)) if rule.allow => {
                    let group = name_of(&rule.sid);
                    let how = if path == Path::Member { "a member" } else { "a nested member" };
                    Check::pass(
                        CHECK_RETRIEVAL,
                        &subject,
                        format!("{account} may retrieve the password of {gmsa}$ through group {group}, of which it is {how}"),
                    )
                }
                Some((rule, _)) => Check::fail(
                    CHECK_RETRIEVAL,
                    &subject,
                    format!("{account} is denied the password of {gmsa}$ by a deny entry for {}", name_of(&rule.sid)),
                    format!("remove the deny entry: {}", grant(account)),
                ),
                None => Check::fail(
                    CHECK_RETRIEVAL,
                    &subject,
                    format!(
                        "{account} may not retrieve the password of {gmsa}$: allowed are {}",
                        if allowed.is_empty() { "none".to_string() } else { allowed.join(", ") }
                    ),
                    grant(account),
                ),
            }
        })
        .collect()
}

/// The account a CCG plugin input names, when it names one: a `key=value` pair such as
/// `Username=ccg-reader@contoso.com` (`;`- or `,`-separated, or a JSON object), or a bare
/// `user@domain` / `DOMAIN\user`. Returns the account name without domain.
pub fn ccg_account(input: &str) -> Option<String> {
    const KEYS: &[&str] = &[
        "username",
        "user",
        "account",
        "accountname",
        "samaccountname",
        "userprincipalname",
        "principal",
    ];
    let strip_domain = |value: &str| {
        let value = value.trim().trim_matches('"');
        let name = match (value.split_once('@'), value.rsplit_once('\\')) {
            (Some((user, _)), _) => user,
            (None, Some((_, user))) => user,
            (None, None) => value,
        };
        (!name.is_empty()).then(|| name.to_string())
    };
    if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(input) {
        return map.iter().find_map(|(k, v)| {
            KEYS.contains(&k.to_ascii_lowercase().as_str())
                .then(|| v.as_str().and_then(strip_domain))
                .flatten()
        });
    }
    let parts: Vec<&str> = input.split([';', ',']).map(str::trim).collect();
    parts
        .iter()
        .find_map(|part| {
            let (key, value) = part.split_once('=')?;
            KEYS.contains(&key.trim().to_ascii_lowercase().as_str())
                .then(|| strip_domain(value))
                .flatten()
        })
        .or_else(|| {
            parts
                .iter()
                .filter(|p| !p.contains('=') && !p.contains("://"))
                .find(|p| p.contains('@') || p.contains('\\'))
                .and_then(|p| strip_domain(p))
        })
}
