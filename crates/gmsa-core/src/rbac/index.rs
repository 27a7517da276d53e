//! The cluster's RBAC objects, kept current from watch events and indexed by subject, so the
//! webhook can answer "may this service account `use` this credential spec" without asking
//! the API server, at a cost that grows with the bindings naming the service account or one
//! of its groups, not with all bindings in the cluster.
//!
//! The same index serves the embedded state (a directory of manifests), the CLI's offline
//! `admit` and the test fake API server, which compute ClusterRole aggregation themselves
//! ([`Aggregation`]) and show the authorizer's reason text ([`RbacIndex::authorize`]).
//!
//! Every change also says which cached decisions it can affect ([`Invalidation`]): a change
//! that cannot grant or take away `use` of a credential spec affects none.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::{
    rbac_api_group, rule_allows, rule_allows_use, subject_matches, Authorization, Binding,
    PolicyRule, ResourceAttributes, Role, RoleRef, Subject, UserInfo,
};
use crate::names;

mod grants;

pub use grants::{GrantedSpecs, UseGrant};

/// A binding's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BindingId {
    /// A ClusterRoleBinding.
    Cluster(String),
    /// A RoleBinding.
    Namespaced { namespace: String, name: String },
}

/// Who a subject is, as the authorizer compares it: service accounts become their user name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SubjectKey {
    User(String),
    Group(String),
}

/// Which cached access decisions a change may have made wrong.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Invalidation {
    /// Every decision (the fallback, e.g. after a re-list).
    pub everything: bool,
    /// Every decision about a service account of these namespaces.
    pub namespaces: BTreeSet<String>,
    /// Decisions about these (namespace, service account) pairs.
    pub service_accounts: BTreeSet<(String, String)>,
}

impl Invalidation {
    /// Nothing to invalidate.
    pub fn none() -> Self {
        Self::default()
    }

    /// Everything.
    pub fn everything() -> Self {
        Self {
            everything: true,
            ..Self::default()
        }
    }

    /// Whether nothing is affected.
    pub fn is_empty(&self) -> bool {
        !self.everything && self.namespaces.is_empty() && self.service_accounts.is_empty()
    }

    /// Whether the decision about this service account is affected.
    pub fn affects(&self, namespace: &str, service_account: &str) -> bool {
        self.everything
            || self.namespaces.contains(namespace)
            || self
                .service_accounts
                .contains(&(namespace.to_string(), service_account.to_string()))
    }

    fn add(&mut self, other: Invalidation) {
        self.everything |= other.everything;
        self.namespaces.extend(other.namespaces);
        self.service_accounts.extend(other.service_accounts);
    }
}

/// How the rules of an aggregated ClusterRole (one with an `aggregationRule`) are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    /// As stored. In a cluster the aggregation controller writes the selected roles' rules
    /// into the aggregated one, and the API server's authorizer reads those; computing them
    /// here could disagree with it. The webhook's setting.
    Stored,
    /// Computed from the selectors, as the controller would: where no controller runs (a
    /// directory of manifests, the test fake API server), the stored rules are whatever the
    /// author wrote.
    Computed,
}

/// Where a binding is held: numbered in the order bindings were added, the order
/// [`RbacIndex::authorize`] visits them in. The RBAC authorizer visits them as it lists them;
/// callers add them as they list or read them, so the reason names the binding it would.
type Slot = u64;

/// A binding as held, with its identity.
#[derive(Debug, Clone)]
struct Held {
    id: BindingId,
    binding: Binding,
}

/// Roles and bindings, indexed by subject: one evaluator for the webhook (fed by watch
/// events, roles as stored) and for the embedded state, the CLI's `admit` and the test fake
/// API server (fed whole, aggregation computed).
#[derive(Debug, Clone)]
pub struct RbacIndex {
    aggregation: Aggregation,
    cluster_roles: HashMap<String, Role>,
    roles: HashMap<(String, String), Role>,
    bindings: HashMap<Slot, Held>,
    /// The slots of each binding: one, or more when a binding was read twice by
    /// [`RbacIndex::add_role_binding`] or [`RbacIndex::add_cluster_role_binding`].
    slots: HashMap<BindingId, Vec<Slot>>,
    next_slot: Slot,
    /// Bindings by the users they name (service accounts as their user names) and by groups.
    by_user: HashMap<String, HashSet<Slot>>,
    by_group: HashMap<String, HashSet<Slot>>,
}

/// How the authorizer reads a subject of a binding in `binding_ns`; `None` when it never
/// matches anyone (unknown kind, foreign API group, a service account without a namespace in
/// a ClusterRoleBinding).
fn subject_key(subject: &Subject, binding_ns: Option<&str>) -> Option<SubjectKey> {
    match subject.kind.as_str() {
        "User" if rbac_api_group(subject) => Some(SubjectKey::User(subject.name.clone())),
        "Group" if rbac_api_group(subject) => Some(SubjectKey::Group(subject.name.clone())),
        "ServiceAccount" => {
            let ns = subject
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .or(binding_ns)?;
            Some(SubjectKey::User(names::service_account_user(
                ns,
                &subject.name,
            )))
        }
        _ => None,
    }
}

/// The service-account decisions a subject can reach.
fn subject_scope(key: &SubjectKey) -> Invalidation {
    let mut scope = Invalidation::none();
    match key {
        SubjectKey::User(user) => {
            let parts: Vec<&str> = user.splitn(4, ':').collect();
            if let ["system", "serviceaccount", ns, name] = parts.as_slice() {
                scope
                    .service_accounts
                    .insert(((*ns).to_string(), (*name).to_string()));
            }
        }
        SubjectKey::Group(group) => {
            let prefix = format!("{}:", names::SERVICE_ACCOUNTS_GROUP);
            if group == names::SERVICE_ACCOUNTS_GROUP || group == names::AUTHENTICATED_GROUP {
                scope.everything = true;
            } else if let Some(ns) = group.strip_prefix(&prefix) {
                scope.namespaces.insert(ns.to_string());
            }
        }
    }
    scope
}

/// Whose decisions a binding reaches: its namespace's, or a ClusterRoleBinding's subjects'.
fn reach(id: &BindingId, binding: &Binding) -> Invalidation {
    let mut scope = Invalidation::none();
    match id.namespace() {
        Some(ns) => {
            scope.namespaces.insert(ns.to_string());
        }
        None => {
            for subject in &binding.subjects {
                if let Some(key) = subject_key(subject, None) {
                    scope.add(subject_scope(&key));
                }
            }
        }
    }
    scope
}

impl BindingId {
    fn of(binding: &Binding, namespaced: bool) -> Self {
        let name = binding.metadata.name.clone();
        if namespaced {
            BindingId::Namespaced {
                namespace: binding.metadata.namespace.clone().unwrap_or_default(),
                name,
            }
        } else {
            BindingId::Cluster(name)
        }
    }

    fn namespace(&self) -> Option<&str> {
        match self {
            BindingId::Cluster(_) => None,
            BindingId::Namespaced { namespace, .. } => Some(namespace),
        }
    }
}

impl RbacIndex {
    /// An empty index reading aggregated ClusterRoles as `aggregation` says.
    pub fn new(aggregation: Aggregation) -> Self {
        Self {
            aggregation,
            cluster_roles: HashMap::new(),
            roles: HashMap::new(),
            bindings: HashMap::new(),
            slots: HashMap::new(),
            next_slot: 0,
            by_user: HashMap::new(),
            by_group: HashMap::new(),
        }
    }

    /// Number of roles and bindings held.
    pub fn len(&self) -> usize {
        self.cluster_roles.len() + self.roles.len() + self.bindings.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the service account may `use` the credential spec, by RBAC alone: the answer
    /// of [`RbacIndex::allows`] for that request, with two allocations (the user and the
    /// namespace group names), as the admission hot path wants.
    pub fn may_use(&self, namespace: &str, service_account: &str, spec: &str) -> bool {
        let user = names::service_account_user(namespace, service_account);
        let namespace_group = format!("{}:{namespace}", names::SERVICE_ACCOUNTS_GROUP);
        let groups = [
            names::SERVICE_ACCOUNTS_GROUP,
            namespace_group.as_str(),
            names::AUTHENTICATED_GROUP,
        ];
        self.any_binding(&user, &groups, namespace, |rule| {
            rule_allows_use(rule, Some(spec))
        })
    }

    /// Whether RBAC allows the request: some binding naming the user or one of its groups,
    /// cluster-wide or in the request's namespace, refers to a role with a matching rule.
    pub fn allows(&self, user: &UserInfo, attrs: &ResourceAttributes) -> bool {
        let groups: Vec<&str> = user.groups.iter().map(String::as_str).collect();
        self.any_binding(&user.name, &groups, &attrs.namespace, |rule| {
            rule_allows(rule, attrs)
        })
    }

    /// Decides a resource request as the RBAC authorizer does, with its reason text:
    /// ClusterRoleBindings first, then RoleBindings of the request's namespace, each kind in
    /// the order added; the first that allows is named, with its first subject matching the
    /// user. Slower than [`RbacIndex::allows`] (it orders the bindings it finds), for callers
    /// that show the reason.
    pub fn authorize(&self, user: &UserInfo, attrs: &ResourceAttributes) -> Authorization {
        let mut order: Vec<(bool, Slot)> = std::iter::once(self.by_user.get(&user.name))
            .chain(user.groups.iter().map(|g| self.by_group.get(g)))
            .flatten()
            .flatten()
            .filter_map(|slot| match self.bindings.get(slot)?.id.namespace() {
                None => Some((false, *slot)),
                Some(ns) => {
                    (!attrs.namespace.is_empty() && ns == attrs.namespace).then_some((true, *slot))
                }
            })
            .collect();
        order.sort_unstable();
        order.dedup();
        order
            .iter()
            .filter_map(|(_, slot)| self.bindings.get(slot))
            .find_map(|held| {
                let binding_ns = held.id.namespace();
                let binding = &held.binding;
                let subject = binding
                    .subjects
                    .iter()
                    .find(|s| subject_matches(s, user, binding_ns))?;
                self.role_allows(&binding.role_ref, binding_ns, &|rule| {
                    rule_allows(rule, attrs)
                })
                .then(|| Authorization::allowed_by(binding, binding_ns, subject))
            })
            .unwrap_or_else(Authorization::denied)
    }

    fn any_binding(
        &self,
        user: &str,
        groups: &[&str],
        namespace: &str,
        allows: impl Fn(&PolicyRule) -> bool,
    ) -> bool {
        let sets = std::iter::once(self.by_user.get(user))
            .chain(groups.iter().map(|g| self.by_group.get(*g)));
        sets.flatten()
            .flatten()
            .filter_map(|slot| self.bindings.get(slot))
            .filter(|held| held.id.namespace().is_none_or(|ns| ns == namespace))
            .any(|held| self.role_allows(&held.binding.role_ref, held.id.namespace(), &allows))
    }

    fn subjects_mut(&mut self, key: SubjectKey) -> (&mut HashMap<String, HashSet<Slot>>, String) {
        match key {
            SubjectKey::User(name) => (&mut self.by_user, name),
            SubjectKey::Group(name) => (&mut self.by_group, name),
        }
    }

    /// Whether the role a binding in `binding_ns` refers to has a rule that `allows`.
    fn role_allows(
        &self,
        role_ref: &RoleRef,
        binding_ns: Option<&str>,
        allows: &impl Fn(&PolicyRule) -> bool,
    ) -> bool {
        match (role_ref.kind.as_str(), binding_ns) {
            ("ClusterRole", _) => {
                let Some(role) = self.cluster_roles.get(&role_ref.name) else {
                    return false;
                };
                if role.aggregation_rule.is_some() && self.aggregation == Aggregation::Computed {
                    self.aggregate_allows(role, &mut HashSet::new(), allows)
                } else {
                    role.rules.iter().any(allows)
                }
            }
            ("Role", Some(ns)) => self
                .roles
                .get(&(ns.to_string(), role_ref.name.clone()))
                .is_some_and(|role| role.rules.iter().any(allows)),
            _ => false,
        }
    }

    /// Whether a ClusterRole as the aggregation controller would fill it has a rule that
    /// `allows`: an aggregated role's own rules are replaced by those of every other
    /// ClusterRole its selectors match (themselves aggregated); `visited` ends cycles.
    fn aggregate_allows<'a>(
        &'a self,
        role: &'a Role,
        visited: &mut HashSet<&'a str>,
        allows: &impl Fn(&PolicyRule) -> bool,
    ) -> bool {
        if !visited.insert(role.metadata.name.as_str()) {
            return false;
        }
        let Some(aggregation) = &role.aggregation_rule else {
            return role.rules.iter().any(allows);
        };
        self.cluster_roles.values().any(|other| {
            other.metadata.name != role.metadata.name
                && aggregation
                    .cluster_role_selectors
                    .iter()
                    .any(|s| s.matches(&other.metadata.labels))
                && self.aggregate_allows(other, visited, allows)
        })
    }

    /// The decisions a binding can affect, given the roles as they are now.
    fn binding_scope(&self, id: &BindingId, binding: &Binding) -> Invalidation {
        if !self.role_allows(&binding.role_ref, id.namespace(), &|rule| {
            rule_allows_use(rule, None)
        }) {
            return Invalidation::none();
        }
        reach(id, binding)
    }

    /// Adds a ClusterRole as a manifest declares it; a later one with the same name replaces
    /// the earlier.
    pub fn add_cluster_role(&mut self, role: Role) {
        self.apply_role(role, false);
    }

    /// Adds a namespaced Role as a manifest declares it (namespace `default` when absent, as
    /// `kubectl apply` reads it); a later one with the same name replaces the earlier.
    pub fn add_role(&mut self, mut role: Role) {
        role.metadata
            .namespace
            .get_or_insert_with(|| "default".into());
        self.apply_role(role, true);
    }

    /// Adds a ClusterRoleBinding as a manifest declares it. One read twice is held twice, and
    /// each is visited: the embedded state has always read a directory that way.
    pub fn add_cluster_role_binding(&mut self, binding: Binding) {
        self.insert_binding(BindingId::of(&binding, false), binding);
    }

    /// Adds a RoleBinding as a manifest declares it (namespace `default` when absent); like
    /// [`RbacIndex::add_cluster_role_binding`], one read twice is held twice.
    pub fn add_role_binding(&mut self, mut binding: Binding) {
        binding
            .metadata
            .namespace
            .get_or_insert_with(|| "default".into());
        self.insert_binding(BindingId::of(&binding, true), binding);
    }

    /// Adds or replaces a Role (`namespaced`) or ClusterRole.
    pub fn apply_role(&mut self, role: Role, namespaced: bool) -> Invalidation {
        let scope = self.role_scope(&role, namespaced);
        let name = role.metadata.name.clone();
        if namespaced {
            let ns = role.metadata.namespace.clone().unwrap_or_default();
            let old = self.roles.insert((ns, name), role);
            self.with_old_role(scope, old.as_ref(), namespaced)
        } else {
            let old = self.cluster_roles.insert(name, role);
            self.with_old_role(scope, old.as_ref(), namespaced)
        }
    }

    /// Removes a Role (`namespaced`) or ClusterRole.
    pub fn delete_role(&mut self, role: &Role, namespaced: bool) -> Invalidation {
        let name = role.metadata.name.clone();
        let old = if namespaced {
            let ns = role.metadata.namespace.clone().unwrap_or_default();
            self.roles.remove(&(ns, name))
        } else {
            self.cluster_roles.remove(&name)
        };
        match old {
            Some(old) => self.role_scope(&old, namespaced),
            None => Invalidation::none(),
        }
    }

    fn with_old_role(
        &self,
        mut scope: Invalidation,
        old: Option<&Role>,
        namespaced: bool,
    ) -> Invalidation {
        if let Some(old) = old {
            scope.add(self.role_scope(old, namespaced));
        }
        scope
    }

    /// The decisions a role (in one of its versions) can affect: none unless it could grant
    /// `use`; else those of the bindings referring to it. With aggregation computed, a
    /// ClusterRole may grant through every role aggregating it: everything.
    fn role_scope(&self, role: &Role, namespaced: bool) -> Invalidation {
        if !namespaced && self.aggregation == Aggregation::Computed {
            return Invalidation::everything();
        }
        if !role.rules.iter().any(|rule| rule_allows_use(rule, None)) {
            return Invalidation::none();
        }
        let mut scope = Invalidation::none();
        if namespaced {
            if let Some(ns) = &role.metadata.namespace {
                scope.namespaces.insert(ns.clone());
            }
            return scope;
        }
        for held in self.bindings.values() {
            let role_ref = &held.binding.role_ref;
            if role_ref.kind == "ClusterRole" && role_ref.name == role.metadata.name {
                scope.add(reach(&held.id, &held.binding));
            }
        }
        scope
    }

    /// Adds or replaces a RoleBinding (`namespaced`) or ClusterRoleBinding.
    pub fn apply_binding(&mut self, binding: Binding, namespaced: bool) -> Invalidation {
        let id = BindingId::of(&binding, namespaced);
        let mut scope = self.remove_binding(&id);
        scope.add(self.insert_binding(id, binding));
        scope
    }

    /// Holds a binding in a new slot, after every binding held so far.
    fn insert_binding(&mut self, id: BindingId, binding: Binding) -> Invalidation {
        let scope = self.binding_scope(&id, &binding);
        let slot = self.next_slot;
        self.next_slot += 1;
        for subject in &binding.subjects {
            if let Some(key) = subject_key(subject, id.namespace()) {
                let (map, name) = self.subjects_mut(key);
                map.entry(name).or_default().insert(slot);
            }
        }
        self.slots.entry(id.clone()).or_default().push(slot);
        self.bindings.insert(slot, Held { id, binding });
        scope
    }

    /// Removes a RoleBinding (`namespaced`) or ClusterRoleBinding.
    pub fn delete_binding(&mut self, binding: &Binding, namespaced: bool) -> Invalidation {
        self.remove_binding(&BindingId::of(binding, namespaced))
    }

    /// Removes every binding held under `id`.
    fn remove_binding(&mut self, id: &BindingId) -> Invalidation {
        let mut scope = Invalidation::none();
        for slot in self.slots.remove(id).unwrap_or_default() {
            let Some(old) = self.bindings.remove(&slot) else {
                continue;
            };
            for subject in &old.binding.subjects {
                if let Some(key) = subject_key(subject, id.namespace()) {
                    let (map, name) = self.subjects_mut(key);
                    if let Some(slots) = map.get_mut(&name) {
                        slots.remove(&slot);
                        if slots.is_empty() {
                            map.remove(&name);
                        }
                    }
                }
            }
            scope.add(self.binding_scope(id, &old.binding));
        }
        scope
    }

    /// Replaces every Role (`namespaced`) or ClusterRole, as after a re-list.
    pub fn replace_roles(&mut self, roles: Vec<Role>, namespaced: bool) -> Invalidation {
        if namespaced {
            self.roles.clear();
        } else {
            self.cluster_roles.clear();
        }
        for role in roles {
            let name = role.metadata.name.clone();
            if namespaced {
                let ns = role.metadata.namespace.clone().unwrap_or_default();
                self.roles.insert((ns, name), role);
            } else {
                self.cluster_roles.insert(name, role);
            }
        }
        Invalidation::everything()
    }

    /// Replaces every RoleBinding (`namespaced`) or ClusterRoleBinding, as after a re-list.
    pub fn replace_bindings(&mut self, bindings: Vec<Binding>, namespaced: bool) -> Invalidation {
        let stale: Vec<BindingId> = self
            .slots
            .keys()
            .filter(|id| id.namespace().is_some() == namespaced)
            .cloned()
            .collect();
        for id in stale {
            self.remove_binding(&id);
        }
        for binding in bindings {
            self.apply_binding(binding, namespaced);
        }
        Invalidation::everything()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn role(namespace: Option<&str>, name: &str, rule: serde_json::Value) -> Role {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": namespace},
            "rules": [rule]
        }))
        .unwrap()
    }

    fn use_rule(names: &[&str]) -> serde_json::Value {
        json!({"verbs": ["use"], "apiGroups": ["windows.k8s.io"],
               "resources": ["gmsacredentialspecs"], "resourceNames": names})
    }

    fn binding(
        namespace: Option<&str>,
        name: &str,
        role: (&str, &str),
        subjects: serde_json::Value,
    ) -> Binding {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role.0, "name": role.1},
            "subjects": subjects
        }))
        .unwrap()
    }

    fn sa(namespace: Option<&str>, name: &str) -> serde_json::Value {
        json!({"kind": "ServiceAccount", "name": name, "namespace": namespace})
    }

    #[test]
    fn answers_through_users_groups_and_namespaces() {
        let mut index = RbacIndex::new(Aggregation::Stored);
        index.apply_role(role(None, "web-user", use_rule(&["web"])), false);
        index.apply_role(role(Some("a"), "local", use_rule(&[])), true);
        index.apply_binding(
            binding(
                Some("a"),
                "b1",
                ("ClusterRole", "web-user"),
                json!([sa(None, "app")]),
            ),
            true,
        );
        assert!(index.may_use("a", "app", "web"));
        assert!(!index.may_use("a", "app", "db"), "resourceNames");
        assert!(!index.may_use("a", "other", "web"));
        assert!(
            !index.may_use("b", "app", "web"),
            "a RoleBinding grants in its namespace"
        );

        index.apply_binding(
            binding(None, "c1", ("ClusterRole", "web-user"),
                json!([{"kind": "Group", "name": "system:serviceaccounts:b", "apiGroup": "rbac.authorization.k8s.io"}])),
            false,
        );
        assert!(index.may_use("b", "anyone", "web"));
        index.apply_binding(
            binding(Some("a"), "b2", ("Role", "local"),
                json!([{"kind": "User", "name": "system:serviceaccount:a:other", "apiGroup": "rbac.authorization.k8s.io"}])),
            true,
        );
        assert!(index.may_use("a", "other", "anything"));
        // A service account without a namespace means nothing in a ClusterRoleBinding.
        index.apply_binding(
            binding(
                None,
                "c2",
                ("ClusterRole", "web-user"),
                json!([sa(None, "x")]),
            ),
            false,
        );
        assert!(!index.may_use("a", "x", "web"));
    }

    #[test]
    fn updates_and_deletes_are_followed() {
        let mut index = RbacIndex::new(Aggregation::Stored);
        let grant = binding(
            Some("a"),
            "b1",
            ("ClusterRole", "web-user"),
            json!([sa(Some("a"), "app")]),
        );
        index.apply_binding(grant.clone(), true);
        assert!(!index.may_use("a", "app", "web"), "no role yet");
        index.apply_role(role(None, "web-user", use_rule(&["web"])), false);
        assert!(index.may_use("a", "app", "web"));
        // The binding moves to another subject: the old one loses it.
        index.apply_binding(
            binding(
                Some("a"),
                "b1",
                ("ClusterRole", "web-user"),
                json!([sa(Some("a"), "new")]),
            ),
            true,
        );
        assert!(!index.may_use("a", "app", "web"));
        assert!(index.may_use("a", "new", "web"));
        index.delete_binding(&grant, true);
        assert!(!index.may_use("a", "new", "web"));
        assert!(
            index.by_user.is_empty() && index.by_group.is_empty(),
            "no index entry is left behind"
        );
    }

    #[test]
    fn changes_invalidate_only_what_they_can_affect() {
        let mut index = RbacIndex::new(Aggregation::Stored);
        let unrelated = json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]});
        assert!(index
            .apply_role(role(None, "pod-reader", unrelated.clone()), false)
            .is_empty());
        let reader = binding(
            Some("x"),
            "r",
            ("ClusterRole", "pod-reader"),
            json!([sa(None, "app")]),
        );
        assert!(
            index.apply_binding(reader.clone(), true).is_empty(),
            "a role that cannot grant use"
        );
        assert!(index.delete_binding(&reader, true).is_empty());

        index.apply_role(role(None, "web-user", use_rule(&["web"])), false);
        let grant = binding(
            Some("a"),
            "g",
            ("ClusterRole", "web-user"),
            json!([sa(None, "app")]),
        );
        let scope = index.apply_binding(grant, true);
        assert!(scope.affects("a", "anyone") && !scope.affects("b", "app") && !scope.everything);

        let cluster = binding(
            None,
            "cg",
            ("ClusterRole", "web-user"),
            json!([sa(Some("c"), "svc")]),
        );
        let scope = index.apply_binding(cluster, false);
        assert!(scope.affects("c", "svc") && !scope.affects("c", "other"));

        // Editing the role reaches every binding that refers to it.
        let scope = index.apply_role(role(None, "web-user", use_rule(&["web", "db"])), false);
        assert!(scope.affects("a", "x") && scope.affects("c", "svc") && !scope.affects("b", "x"));
        assert!(!scope.everything);

        let everyone = binding(
            None,
            "all",
            ("ClusterRole", "web-user"),
            json!([{"kind": "Group", "name": "system:authenticated", "apiGroup": "rbac.authorization.k8s.io"}]),
        );
        assert!(index.apply_binding(everyone, false).everything);
        assert!(index.may_use("b", "anyone", "db"));
        assert!(index.replace_bindings(Vec::new(), true).everything);
        assert!(
            index.may_use("a", "app", "web"),
            "the ClusterRoleBindings stay"
        );
        index.replace_bindings(Vec::new(), false);
        assert!(
            !index.may_use("a", "app", "web"),
            "re-listed without any binding"
        );
    }

    fn asking(
        namespace: &str,
        service_account: &str,
        spec: &str,
    ) -> (UserInfo, ResourceAttributes) {
        (
            UserInfo::service_account(namespace, service_account),
            ResourceAttributes::use_credential_spec(namespace, spec),
        )
    }

    fn group(name: &str) -> serde_json::Value {
        json!({"kind": "Group", "name": name, "apiGroup": "rbac.authorization.k8s.io"})
    }

    #[test]
    fn aggregation_is_computed_only_when_asked() {
        let aggregated: Role = serde_json::from_value(json!({
            "metadata": {"name": "gmsa-users"},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"gmsa/aggregate": "true"}}]},
            "rules": []
        }))
        .unwrap();
        let part: Role = serde_json::from_value(json!({
            "metadata": {"name": "part", "labels": {"gmsa/aggregate": "true"}},
            "rules": [use_rule(&["web"])]
        }))
        .unwrap();
        let grant = binding(
            Some("a"),
            "g",
            ("ClusterRole", "gmsa-users"),
            json!([sa(None, "app")]),
        );
        let (user, attrs) = asking("a", "app", "web");
        // The selected part grants only when aggregation is computed.
        for (aggregation, granted) in [(Aggregation::Computed, true), (Aggregation::Stored, false)]
        {
            let mut index = RbacIndex::new(aggregation);
            index.add_cluster_role(aggregated.clone());
            index.add_cluster_role(part.clone());
            index.add_role_binding(grant.clone());
            assert_eq!(index.may_use("a", "app", "web"), granted, "{aggregation:?}");
            assert_eq!(index.allows(&user, &attrs), granted, "{aggregation:?}");
            assert_eq!(
                index.authorize(&user, &attrs).allowed,
                granted,
                "{aggregation:?}"
            );
        }
        // Rules stored in the aggregated role (as the controller writes them) grant only when
        // read as stored: computing replaces them with the (here absent) parts'.
        let mut filled = aggregated;
        filled.rules = part.rules;
        for (aggregation, granted) in [(Aggregation::Computed, false), (Aggregation::Stored, true)]
        {
            let mut index = RbacIndex::new(aggregation);
            index.add_cluster_role(filled.clone());
            index.add_role_binding(grant.clone());
            assert_eq!(index.may_use("a", "app", "web"), granted, "{aggregation:?}");
            assert_eq!(
                index.authorize(&user, &attrs).allowed,
                granted,
                "{aggregation:?}"
            );
        }
    }

    #[test]
    fn the_reason_names_the_binding_the_authorizer_visits_first() {
        let mut index = RbacIndex::new(Aggregation::Computed);
        index.add_cluster_role(role(None, "web-user", use_rule(&["web"])));
        let first = binding(
            Some("a"),
            "z-first",
            ("ClusterRole", "web-user"),
            json!([sa(None, "app")]),
        );
        index.add_role_binding(first.clone());
        index.add_role_binding(binding(
            Some("a"),
            "a-second",
            ("ClusterRole", "web-user"),
            json!([group("system:serviceaccounts:a"), sa(None, "app")]),
        ));
        let (user, attrs) = asking("a", "app", "web");
        assert_eq!(
            index.authorize(&user, &attrs).to_string(),
            r#"allowed (RBAC: allowed by RoleBinding "z-first/a" of ClusterRole "web-user" to ServiceAccount "app/a")"#,
            "RoleBindings in the order added, not by name"
        );
        let cluster = binding(
            None,
            "later",
            ("ClusterRole", "web-user"),
            json!([group("system:authenticated")]),
        );
        index.add_cluster_role_binding(cluster.clone());
        assert_eq!(
            index.authorize(&user, &attrs).reason,
            r#"RBAC: allowed by ClusterRoleBinding "later" of ClusterRole "web-user" to Group "system:authenticated""#,
            "ClusterRoleBindings first"
        );
        index.delete_binding(&cluster, false);
        index.delete_binding(&first, true);
        assert_eq!(
            index.authorize(&user, &attrs).reason,
            r#"RBAC: allowed by RoleBinding "a-second/a" of ClusterRole "web-user" to Group "system:serviceaccounts:a""#,
            "the first subject matching the user is named"
        );
        let denied = index.authorize(&user, &ResourceAttributes::use_credential_spec("a", "db"));
        assert_eq!(
            denied,
            Authorization {
                allowed: false,
                reason: String::new()
            }
        );
        assert_eq!(denied.to_string(), "denied");
    }

    #[test]
    fn a_binding_read_twice_is_held_twice_until_applied() {
        let mut index = RbacIndex::new(Aggregation::Computed);
        index.add_cluster_role(role(None, "web-user", use_rule(&["web"])));
        let named = |subject: &str| {
            binding(
                Some("a"),
                "b",
                ("ClusterRole", "web-user"),
                json!([sa(None, subject)]),
            )
        };
        index.add_role_binding(named("one"));
        index.add_role_binding(named("two"));
        assert_eq!(index.len(), 3);
        assert!(index.may_use("a", "one", "web") && index.may_use("a", "two", "web"));
        index.apply_binding(named("three"), true);
        assert_eq!(index.len(), 2, "applying replaces every version");
        assert!(!index.may_use("a", "one", "web") && !index.may_use("a", "two", "web"));
        assert!(index.may_use("a", "three", "web"));
        index.delete_binding(&named("three"), true);
        assert!(index.by_user.is_empty() && index.slots.is_empty());
    }

    #[test]
    fn manifests_without_a_namespace_are_in_default() {
        let mut index = RbacIndex::new(Aggregation::Computed);
        index.add_role(role(None, "local", use_rule(&[])));
        index.add_role_binding(binding(
            None,
            "b",
            ("Role", "local"),
            json!([sa(None, "app")]),
        ));
        assert!(index.may_use("default", "app", "anything"));
        assert!(!index.may_use("other", "app", "anything"));
        // Watch events are read as they come: no namespace is none, not `default`.
        let mut index = RbacIndex::new(Aggregation::Stored);
        index.apply_role(role(None, "local", use_rule(&[])), true);
        index.apply_binding(
            binding(None, "b", ("Role", "local"), json!([sa(None, "app")])),
            true,
        );
        assert!(!index.may_use("default", "app", "anything"));
    }

    #[test]
    fn computed_aggregation_invalidates_everything_on_a_cluster_role_change() {
        let unrelated = json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]});
        let mut computed = RbacIndex::new(Aggregation::Computed);
        assert!(
            computed
                .apply_role(role(None, "pod-reader", unrelated.clone()), false)
                .everything,
            "a role aggregated into another may grant through it"
        );
        assert!(computed
            .apply_role(role(Some("a"), "pod-reader", unrelated.clone()), true)
            .is_empty());
        let mut stored = RbacIndex::new(Aggregation::Stored);
        assert!(stored
            .apply_role(role(None, "pod-reader", unrelated), false)
            .is_empty());
    }

    #[test]
    fn use_grants_say_which_specs_reach_which_namespaces() {
        let mut index = RbacIndex::new(Aggregation::Stored);
        index.apply_role(role(None, "web-user", use_rule(&["web", "db"])), false);
        index.apply_role(role(None, "any-user", use_rule(&[])), false);
        index.apply_role(
            role(
                None,
                "reader",
                json!({"verbs": ["get"], "apiGroups": ["windows.k8s.io"],
                                        "resources": ["gmsacredentialspecs"]}),
            ),
            false,
        );
        index.apply_role(role(Some("b"), "local", use_rule(&["b-only"])), true);
        index.apply_binding(
            binding(
                None,
                "sa",
                ("ClusterRole", "web-user"),
                json!([sa(Some("a"), "x")]),
            ),
            false,
        );
        index.apply_binding(
            binding(
                None,
                "all",
                ("ClusterRole", "any-user"),
                json!([{"kind": "Group", "name": "system:serviceaccounts",
                            "apiGroup": "rbac.authorization.k8s.io"}]),
            ),
            false,
        );
        index.apply_binding(
            binding(
                None,
                "read",
                ("ClusterRole", "reader"),
                json!([sa(Some("c"), "x")]),
            ),
            false,
        );
        index.apply_binding(
            binding(
                Some("b"),
                "local",
                ("Role", "local"),
                json!([sa(Some("elsewhere"), "y")]),
            ),
            true,
        );
        let mut grants = index.use_grants();
        grants.sort_by_key(|g| (g.everywhere, g.namespaces.clone()));
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(
            grants,
            [
                UseGrant {
                    specs: GrantedSpecs::Named(names(&["web", "db"])),
                    everywhere: false,
                    namespaces: names(&["a"]),
                },
                UseGrant {
                    specs: GrantedSpecs::Named(names(&["b-only"])),
                    everywhere: false,
                    namespaces: names(&["b"]),
                },
                UseGrant {
                    specs: GrantedSpecs::Every,
                    everywhere: true,
                    namespaces: names(&[]),
                },
            ],
            "a role without `use` grants nothing; a RoleBinding reaches its own namespace"
        );
    }
}
