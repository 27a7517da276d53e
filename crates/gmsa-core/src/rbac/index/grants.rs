//! Which credential specs each RBAC grant of `use` covers, and whose service accounts it
//! reaches: what policy mode's keeper publishes in each namespace (`crate::contents`).

use std::collections::BTreeSet;

use super::{reach, RbacIndex};
use crate::rbac::rule_allows_use;

/// Which credential specs a grant of `use` covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantedSpecs {
    /// Every spec (a rule without `resourceNames`).
    Every,
    /// Only these.
    Named(BTreeSet<String>),
}

impl GrantedSpecs {
    pub fn covers(&self, spec: &str) -> bool {
        match self {
            GrantedSpecs::Every => true,
            GrantedSpecs::Named(names) => names.contains(spec),
        }
    }
}

/// One binding's grant of `use` ([`RbacIndex::use_grants`]): the specs, and the namespaces
/// whose service accounts it may cover (every namespace when `everywhere`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UseGrant {
    pub specs: GrantedSpecs,
    pub everywhere: bool,
    pub namespaces: BTreeSet<String>,
}

impl RbacIndex {
    /// Every binding whose role allows `use` of some credential spec, as which specs and whose
    /// service accounts it covers: what the policy-mode keeper publishes where. An
    /// over-approximation of the authorizer's answers (a binding naming one service account
    /// reaches its whole namespace), which is safe because admission asks the authorizer too.
    pub fn use_grants(&self) -> Vec<UseGrant> {
        let mut grants = Vec::new();
        for held in self.bindings.values() {
            let binding_ns = held.id.namespace();
            let role_ref = &held.binding.role_ref;
            if !self.role_allows(role_ref, binding_ns, &|rule| rule_allows_use(rule, None)) {
                continue;
            }
            let every = self.role_allows(role_ref, binding_ns, &|rule| {
                rule_allows_use(rule, None) && rule.resource_names.is_empty()
            });
            let specs = if every {
                GrantedSpecs::Every
            } else {
                let named = std::cell::RefCell::new(BTreeSet::new());
                self.role_allows(role_ref, binding_ns, &|rule| {
                    if rule_allows_use(rule, None) {
                        named
                            .borrow_mut()
                            .extend(rule.resource_names.iter().cloned());
                    }
                    false
                });
                GrantedSpecs::Named(named.into_inner())
            };
            let scope = reach(&held.id, &held.binding);
            let mut namespaces = scope.namespaces;
            namespaces.extend(scope.service_accounts.into_iter().map(|(ns, _)| ns));
            grants.push(UseGrant {
                specs,
                everywhere: scope.everything,
                namespaces,
            });
        }
        grants
    }
}
