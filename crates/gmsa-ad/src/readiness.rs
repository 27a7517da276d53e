//! Whether a gMSA will work for a credential spec, decided from what was read from the
//! directory. Pure: [`crate::inspect`] reads the facts, this module judges them, so every rule
//! is tested without a domain controller. Each check says what was found and, when it does
//! not pass, the command that fixes it (PowerShell on a domain-joined machine, or kubectl).

use std::collections::BTreeMap;
use std::fmt;

use gmsa_core::credspec::CredSpec;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::facts::{same_dn, DomainFacts};
pub use retrieval::{ccg_account, membership_sids};

/// Stable names of the directory checks, as reports print them.
pub const CHECK_ACCOUNT: &str = "ad-account";
pub const CHECK_RETRIEVAL: &str = "ad-retrieval";
pub const CHECK_KDS_ROOT_KEY: &str = "ad-kds-root-key";
pub const CHECK_SCOPES: &str = "ad-scopes";
pub const CHECK_SPN: &str = "ad-spn";
pub const CHECK_DNS_HOST_NAME: &str = "ad-dns-host-name";

/// `userAccountControl` bit of a disabled account.
const ACCOUNT_DISABLE: u32 = 0x2;
/// Access-mask bits that let a principal read the managed password: Windows writes 0xF01FF
/// (which includes READ_PROPERTY); generic read and generic all grant it too.
const READ_PASSWORD_MASK: u32 = 0x0000_0010 | 0x8000_0000 | 0x1000_0000;
/// Everyone and Authenticated Users: in every authenticated token.
const UNIVERSAL_SIDS: &[&str] = &["S-1-1-0", "S-1-5-11"];
/// Seconds between 1601-01-01 (FILETIME's epoch) and 1970-01-01.
const FILETIME_UNIX_OFFSET_SECS: i64 = 11_644_473_600;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// One of the `CHECK_*` names.
    pub name: &'static str,
    /// What it is about: `gmsa-webapp1`, `gmsa-webapp1 node/win-1`, `contoso.com`.
    pub subject: String,
    pub verdict: Verdict,
    pub detail: String,
    /// The command that fixes it; `None` when it passed.
    pub fix: Option<String>,
}

impl Check {
    fn new(name: &'static str, subject: &str, verdict: Verdict, detail: String) -> Self {
        Self {
            name,
            subject: subject.to_string(),
            verdict,
            detail,
            fix: None,
        }
    }
    fn pass(name: &'static str, subject: &str, detail: String) -> Self {
        Self::new(name, subject, Verdict::Pass, detail)
    }
    fn fail(name: &'static str, subject: &str, detail: String, fix: String) -> Self {
        Self {
            fix: Some(fix),
            ..Self::new(name, subject, Verdict::Fail, detail)
        }
    }
    fn warn(name: &'static str, subject: &str, detail: String, fix: String) -> Self {
        Self {
            fix: Some(fix),
            ..Self::new(name, subject, Verdict::Warn, detail)
        }
    }
}

/// What a credential spec claims about its gMSA and domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecClaims {
    /// The `GMSACredentialSpec`'s name.
    pub spec: String,
    /// `DomainJoinConfig.MachineAccountName`, without `$`.
    pub account: String,
    pub dns_name: String,
    pub netbios_name: String,
    pub guid: String,
    pub sid: String,
    /// The `Scope`s that `GroupManagedServiceAccounts` lists for [`SpecClaims::account`].
    pub scopes: Vec<String>,
    /// `HostAccountConfig.PluginInput`, for hosts that are not domain-joined (CCG).
    pub ccg_plugin_input: Option<String>,
}

impl SpecClaims {
    /// Reads the claims from a resource's `credspec` contents.
    pub fn from_contents(spec: &str, contents: &Value) -> Result<Self, String> {
        let credspec: CredSpec = serde_json::from_value(contents.clone())
            .map_err(|e| format!("its credspec is not a credential spec document: {e}"))?;
        let join = credspec.domain_join_config;
        let account = join.machine_account_name.trim_end_matches('$').to_string();
        let ad = credspec.active_directory_config;
        Ok(Self {
            spec: spec.to_string(),
            scopes: ad
                .group_managed_service_accounts
                .iter()
                .filter(|g| g.name.trim_end_matches('$').eq_ignore_ascii_case(&account))
                .map(|g| g.scope.clone())
                .collect(),
            ccg_plugin_input: ad.host_account_config.map(|h| h.plugin_input),
            account,
            dns_name: join.dns_name,
            netbios_name: join.netbios_name,
            guid: join.guid,
            sid: join.sid,
        })
    }
}

/// The account the spec names, as the directory has it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountEntry {
    pub dn: String,
    pub sam_account_name: String,
    pub object_classes: Vec<String>,
    pub user_account_control: u32,
    pub dns_host_name: Option<String>,
    pub spns: Vec<String>,
    /// `msDS-GroupMSAMembership`, the raw self-relative security descriptor.
    pub membership: Option<Vec<u8>>,
}

impl AccountEntry {
    fn is_gmsa(&self) -> bool {
        self.object_classes
            .iter()
            .any(|c| c.eq_ignore_ascii_case(crate::facts::GMSA_CLASS))
    }
}

/// A principal named by SID in the security descriptor, resolved where the directory knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub dn: String,
    pub is_group: bool,
}

/// An account that must retrieve the password (a node's computer account, or a CCG plugin's
/// account) with the SIDs its Kerberos ticket carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub sam_account_name: String,
    pub sid: String,
    /// `tokenGroups`: every group it is in, nested ones and its primary group included.
    pub group_sids: Vec<String>,
    /// Its primary group (`Domain Computers` for computers): a direct membership.
    pub primary_group_sid: Option<String>,
    /// `memberOf`: the groups it is directly in.
    pub direct_groups: Vec<String>,
}

/// Who should retrieve the password, and what the directory said about them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retriever {
    /// A Windows node; `token` is its computer account, `None` when none was found.
    Node {
        node: String,
        looked_for: String,
        token: Option<Token>,
    },
    /// The account a CCG plugin input names; `None` when it names none or it was not found.
    Ccg {
        account: Option<String>,
        token: Option<Token>,
    },
}

/// A KDS root key (`msKds-ProvRootKey`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootKey {
    pub id: String,
    /// `msKds-UseStartTime` (FILETIME): before it, no password is derived from the key.
    pub use_start_time: i64,
}

/// Another object that holds one of the gMSA's SPNs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpnHolder {
    pub spn: String,
    pub dn: String,
    pub sam_account_name: String,
}

/// Everything read for one spec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountState {
    /// The entry with the spec's `sAMAccountName`, whatever its class.
    pub entry: Option<AccountEntry>,
    /// The security descriptor's trustees by SID.
    pub principals: BTreeMap<String, Principal>,
    pub retrievers: Vec<Retriever>,
    pub spn_holders: Vec<SpnHolder>,
}

/// A FILETIME (100 ns ticks since 1601) of a Unix time in seconds.
pub fn filetime_of_unix(secs: i64) -> i64 {
    (secs + FILETIME_UNIX_OFFSET_SECS) * 10_000_000
}

fn filetime_text(filetime: i64) -> String {
    OffsetDateTime::from_unix_timestamp(filetime / 10_000_000 - FILETIME_UNIX_OFFSET_SECS)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("FILETIME {filetime}"))
}

/// Check 3: at least one KDS root key is in effect at `now` (a FILETIME).
pub fn kds_root_key(domain: &DomainFacts, keys: &[RootKey], now: i64) -> Check {
    let subject = domain.dns_name.as_str();
    let fix = "on a domain controller: Add-KdsRootKey -EffectiveImmediately (domain controllers \
               use it 10 hours later, once replicated; in a one-DC test domain: \
               Add-KdsRootKey -EffectiveTime ((Get-Date).AddHours(-10)))";
    if let Some(key) = keys.iter().find(|k| k.use_start_time <= now) {
        return Check::pass(
            CHECK_KDS_ROOT_KEY,
            subject,
            format!(
                "root key {} in effect since {} ({} key{} in all)",
                key.id,
                filetime_text(key.use_start_time),
                keys.len(),
                if keys.len() == 1 { "" } else { "s" }
            ),
        );
    }
    let detail = match keys.iter().min_by_key(|k| k.use_start_time) {
        Some(key) => format!(
            "no KDS root key is in effect yet: the earliest, {}, takes effect at {}; until then \
             no gMSA password can be produced",
            key.id,
            filetime_text(key.use_start_time)
        ),
        None => "no KDS root key found (CN=Master Root Keys is empty, or the bind account may \
                 not read it: that needs Domain Admins; Get-KdsRootKey shows them); without \
                 one no gMSA password can be produced"
            .to_string(),
    };
    Check::fail(CHECK_KDS_ROOT_KEY, subject, detail, fix.to_string())
}

/// Checks 1, 2, 4, 5 and 6 for one spec.
pub fn evaluate(claims: &SpecClaims, domain: &DomainFacts, state: &AccountState) -> Vec<Check> {
    let mut checks = vec![account(claims, domain, state)];
    if let Some(entry) = state.entry.as_ref().filter(|e| e.is_gmsa()) {
        checks.extend(retrieval::retrieval(claims, entry, state));
        checks.push(spns(claims, entry, &state.spn_holders));
        checks.push(dns_host_name(claims, domain, entry));
    }
    checks.push(scopes(claims, domain));
    checks
}

fn account(claims: &SpecClaims, domain: &DomainFacts, state: &AccountState) -> Check {
    let subject = claims.spec.as_str();
    let name = &claims.account;
    let Some(entry) = &state.entry else {
        return Check::fail(
            CHECK_ACCOUNT,
            subject,
            format!(
                "no account {name}$ in {}; the account checks that need it were skipped",
                domain.dns_name
            ),
            format!(
                "New-ADServiceAccount -Name {name} -DNSHostName {}.{} \
                 -PrincipalsAllowedToRetrieveManagedPassword <the Windows nodes' group>, or fix \
                 DomainJoinConfig.MachineAccountName in the spec",
                name.to_lowercase(),
                domain.dns_name
            ),
        );
    };
    if !entry.is_gmsa() {
        let class = entry.object_classes.last().cloned().unwrap_or_default();
        return Check::fail(
            CHECK_ACCOUNT,
            subject,
            format!(
                "{} is a {class}, not a {}; containers can only use a group managed service account",
                entry.dn,
                crate::facts::GMSA_CLASS
            ),
            format!("New-ADServiceAccount -Name <another name> -DNSHostName <name>.{}, and name it in the spec", domain.dns_name),
        );
    }
    if entry.user_account_control & ACCOUNT_DISABLE != 0 {
        return Check::fail(
            CHECK_ACCOUNT,
            subject,
            format!("{} is disabled", entry.dn),
            format!("Enable-ADAccount -Identity '{}'", entry.sam_account_name),
        );
    }
    let mut wrong = Vec::new();
    let mut compare = |field: &str, spec: &str, actual: &str| {
        let normalize = |v: &str| v.trim().trim_matches(['{', '}']).to_ascii_lowercase();
        if normalize(spec) != normalize(actual) {
            wrong.push(format!(
                "{field} is {spec:?} but the domain's is {actual:?}"
            ));
        }
    };
    compare("DnsName", &claims.dns_name, &domain.dns_name);
    compare("NetBiosName", &claims.netbios_name, &domain.netbios_name);
    compare("Guid", &claims.guid, &domain.guid);
    compare("Sid", &claims.sid, &domain.sid);
    if wrong.is_empty() {
        return Check::pass(
            CHECK_ACCOUNT,
            subject,
            format!(
                "{} is an enabled gMSA of {} ({}, {})",
                entry.sam_account_name, domain.dns_name, domain.netbios_name, domain.sid
            ),
        );
    }
    Check::fail(
        CHECK_ACCOUNT,
        subject,
        format!(
            "the spec was made for another domain, or before this one was rebuilt: {}",
            wrong.join("; ")
        ),
        format!(
            "on a machine joined to {dns}: New-CredentialSpec -AccountName {name} -Path {spec}.json, \
             then kubectl gmsa credspec convert {spec}.json --name {spec} | kubectl apply -f - \
             (or kubectl gmsa credspec new {spec} --account {name} --from-ad ... | kubectl apply -f -)",
            dns = domain.dns_name,
            spec = claims.spec,
        ),
    )
}

fn spns(claims: &SpecClaims, entry: &AccountEntry, holders: &[SpnHolder]) -> Check {
    let others: Vec<&SpnHolder> = holders
        .iter()
        .filter(|h| !same_dn(&h.dn, &entry.dn))
        .collect();
    if others.is_empty() {
        return Check::pass(
            CHECK_SPN,
            &claims.spec,
            match entry.spns.len() {
                0 => format!("{} has no servicePrincipalName", entry.sam_account_name),
                n => format!(
                    "{} SPN{} ({}), held by {} alone",
                    n,
                    if n == 1 { "" } else { "s" },
                    entry.spns.join(", "),
                    entry.sam_account_name
                ),
            },
        );
    }
    let detail: Vec<String> = others
        .iter()
        .map(|h| {
            format!(
                "{} is also held by {} ({})",
                h.spn, h.sam_account_name, h.dn
            )
        })
        .collect();
    let fix: Vec<String> = others
        .iter()
        .map(|h| format!("setspn -D {} {}", h.spn, h.sam_account_name))
        .collect();
    Check::fail(
        CHECK_SPN,
        &claims.spec,
        format!(
            "{}: Kerberos cannot tell which account a ticket is for",
            detail.join("; ")
        ),
        fix.join("; "),
    )
}

fn dns_host_name(claims: &SpecClaims, domain: &DomainFacts, entry: &AccountEntry) -> Check {
    let expected = format!("{}.{}", claims.account.to_lowercase(), domain.dns_name);
    let fix = format!(
        "Set-ADServiceAccount -Identity {} -DNSHostName {expected}",
        claims.account
    );
    let suffix = format!(".{}", domain.dns_name.to_ascii_lowercase());
    match entry.dns_host_name.as_deref().map(str::trim) {
        None | Some("") => Check::fail(
            CHECK_DNS_HOST_NAME,
            &claims.spec,
            format!("{} has no dNSHostName", entry.sam_account_name),
            fix,
        ),
        Some(host) if host.to_ascii_lowercase().ends_with(&suffix) => Check::pass(
            CHECK_DNS_HOST_NAME,
            &claims.spec,
            format!("dNSHostName {host} is in {}", domain.dns_name),
        ),
        Some(host) => Check::fail(
            CHECK_DNS_HOST_NAME,
            &claims.spec,
            format!(
                "dNSHostName {host} is not in the domain {}",
                domain.dns_name
            ),
            fix,
        ),
    }
}

fn scopes(claims: &SpecClaims, domain: &DomainFacts) -> Check {
    let has = |scope: &str| claims.scopes.iter().any(|s| s.eq_ignore_ascii_case(scope));
    let (dns, netbios) = (has(&domain.dns_name), has(&domain.netbios_name));
    let patch = |scope: &str| {
        format!(
            "kubectl patch gmsacredentialspec {} --type=json -p \
             '[{{\"op\":\"add\",\"path\":\"/credspec/ActiveDirectoryConfig/GroupManagedServiceAccounts/-\",\
             \"value\":{{\"Name\":\"{}\",\"Scope\":\"{scope}\"}}}}]'",
            claims.spec, claims.account
        )
    };
    let listed = if claims.scopes.is_empty() {
        "none".to_string()
    } else {
        claims.scopes.join(", ")
    };
    match (dns, netbios) {
        (true, true) => Check::pass(
            CHECK_SCOPES,
            &claims.spec,
            format!(
                "{} is listed with the DNS scope {} and the NetBIOS scope {}",
                claims.account, domain.dns_name, domain.netbios_name
            ),
        ),
        (false, _) => Check::fail(
            CHECK_SCOPES,
            &claims.spec,
            format!(
                "GroupManagedServiceAccounts lists {} with scopes {listed}, without the DNS scope {}: Kerberos falls back to NTLM",
                claims.account, domain.dns_name
            ),
            patch(&domain.dns_name),
        ),
        (true, false) => Check::warn(
            CHECK_SCOPES,
            &claims.spec,
            format!(
                "GroupManagedServiceAccounts lists {} with scopes {listed}, without the NetBIOS scope {}: NetBIOS-name lookups fail",
                claims.account, domain.netbios_name
            ),
            patch(&domain.netbios_name),
        ),
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "PASS",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        })
    }
}

mod retrieval;
#[cfg(test)]
mod tests;
