//! `DomainJoinConfig` and `ActiveDirectoryConfig`: the domain's names and the gMSAs listed
//! under them, and whether the two agree.

use serde_json::{Map, Value};

use crate::syntax;

use super::{join, present, type_name, Checker, DOMAIN_JOIN_KEYS};

impl Checker {
    pub(super) fn domain_join_config<'v>(
        &mut self,
        map: &'v Map<String, Value>,
        prefix: &str,
    ) -> Domain<'v> {
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

    pub(super) fn active_directory_config(
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
}

/// Under which of the domain's names the machine account is listed.
#[derive(Debug, Default)]
struct Listed {
    dns: bool,
    netbios: bool,
}

/// What `DomainJoinConfig` says, as far as it is valid.
#[derive(Debug, Default)]
pub(super) struct Domain<'v> {
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
