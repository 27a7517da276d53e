//! The cluster's RBAC objects, kept current from watch events and indexed by subject, so the
//! webhook can answer "may this service account `use` this credential spec" without asking
//! the API server, at a cost that grows with the bindings naming the service account or one
//! of its groups, not with all bindings in the cluster.
//!
//! Roles are read as stored. In a cluster the aggregation controller writes the rules of
//! aggregated ClusterRoles into them, and the API server's authorizer reads those; computing
//! aggregation here ([`crate::rbac::RbacPolicy`] does, for the embedded state) could disagree
//! with it.
//!
//! Every change also says which cached decisions it can affect ([`Invalidation`]): a change
//! that cannot grant or take away `use` of a credential spec affects none.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::names;
use crate::rbac::{
    rule_allows, rule_allows_use, Binding, PolicyRule, ResourceAttributes, Role, Subject, UserInfo,
};

/// Where the webhook's `use` decisions come from (`--authorization`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthorizationMode {
    /// RBAC from the watch caches; an access review only when RBAC alone does not allow
    /// (another authorizer may).
    #[default]
    Hybrid,
    /// An access review for every decision (cached briefly): for clusters where an authorizer
    /// ahead of RBAC can deny what RBAC allows.
    Api,
    /// RBAC from the watch caches alone; never an access review.
    Local,
}

impl AuthorizationMode {
    /// Every mode, as written on the command line.
    pub const NAMES: [&'static str; 3] = ["hybrid", "api", "local"];

    /// The command-line spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorizationMode::Hybrid => "hybrid",
            AuthorizationMode::Api => "api",
            AuthorizationMode::Local => "local",
        }
    }
}

impl std::fmt::Display for AuthorizationMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AuthorizationMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hybrid" => Ok(AuthorizationMode::Hybrid),
            "api" => Ok(AuthorizationMode::Api),
            "local" => Ok(AuthorizationMode::Local),
            _ => Err(format!("{s:?}: write hybrid, api or local")),
        }
    }
}

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

/// Roles and bindings, indexed for `use` decisions.
#[derive(Debug, Clone, Default)]
pub struct RbacIndex {
    cluster_roles: HashMap<String, Role>,
    roles: HashMap<(String, String), Role>,
    bindings: HashMap<BindingId, Binding>,
    /// Bindings by the users they name (service accounts as their user names) and by groups.
    by_user: HashMap<String, HashSet<BindingId>>,
    by_group: HashMap<String, HashSet<BindingId>>,
}

/// Whether a role could grant `use` of some credential spec: only such roles matter here.
fn could_grant_use(role: &Role) -> bool {
    role.rules.iter().any(|rule| rule_allows_use(rule, None))
}

/// How the authorizer reads a subject of a binding in `binding_ns`; `None` when it never
/// matches anyone (unknown kind, foreign API group, a service account without a namespace in
/// a ClusterRoleBinding).
fn subject_key(subject: &Subject, binding_ns: Option<&str>) -> Option<SubjectKey> {
    match subject.kind.as_str() {
        "User" if crate::rbac::rbac_api_group(subject) => {
            Some(SubjectKey::User(subject.name.clone()))
        }
        "Group" if crate::rbac::rbac_api_group(subject) => {
            Some(SubjectKey::Group(subject.name.clone()))
        }
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
            .filter(|id| id.namespace().is_none_or(|ns| ns == namespace))
            .filter_map(|id| Some((id, self.bindings.get(id)?)))
            .any(|(id, binding)| {
                self.role_of(binding, id.namespace())
                    .is_some_and(|role| role.rules.iter().any(&allows))
            })
    }

    fn subjects_mut(
        &mut self,
        key: SubjectKey,
    ) -> (&mut HashMap<String, HashSet<BindingId>>, String) {
        match key {
            SubjectKey::User(name) => (&mut self.by_user, name),
            SubjectKey::Group(name) => (&mut self.by_group, name),
        }
    }

    fn role_of(&self, binding: &Binding, binding_ns: Option<&str>) -> Option<&Role> {
        let role_ref = &binding.role_ref;
        match (role_ref.kind.as_str(), binding_ns) {
            ("ClusterRole", _) => self.cluster_roles.get(&role_ref.name),
            ("Role", Some(ns)) => self.roles.get(&(ns.to_string(), role_ref.name.clone())),
            _ => None,
        }
    }

    /// The decisions a binding can affect, given the roles as they are now.
    fn binding_scope(&self, id: &BindingId, binding: &Binding) -> Invalidation {
        if !self
            .role_of(binding, id.namespace())
            .is_some_and(could_grant_use)
        {
            return Invalidation::none();
        }
        reach(id, binding)
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
    /// `use`; else those of the bindings referring to it.
    fn role_scope(&self, role: &Role, namespaced: bool) -> Invalidation {
        if !could_grant_use(role) {
            return Invalidation::none();
        }
        let mut scope = Invalidation::none();
        if namespaced {
            if let Some(ns) = &role.metadata.namespace {
                scope.namespaces.insert(ns.clone());
            }
            return scope;
        }
        for (id, binding) in &self.bindings {
            if binding.role_ref.kind == "ClusterRole" && binding.role_ref.name == role.metadata.name
            {
                scope.add(reach(id, binding));
            }
        }
        scope
    }

    /// Adds or replaces a RoleBinding (`namespaced`) or ClusterRoleBinding.
    pub fn apply_binding(&mut self, binding: Binding, namespaced: bool) -> Invalidation {
        let id = BindingId::of(&binding, namespaced);
        let mut scope = self.remove_binding(&id);
        scope.add(self.binding_scope(&id, &binding));
        for subject in &binding.subjects {
            if let Some(key) = subject_key(subject, id.namespace()) {
                let (map, name) = self.subjects_mut(key);
                map.entry(name).or_default().insert(id.clone());
            }
        }
        self.bindings.insert(id, binding);
        scope
    }

    /// Removes a RoleBinding (`namespaced`) or ClusterRoleBinding.
    pub fn delete_binding(&mut self, binding: &Binding, namespaced: bool) -> Invalidation {
        self.remove_binding(&BindingId::of(binding, namespaced))
    }

    fn remove_binding(&mut self, id: &BindingId) -> Invalidation {
        let Some(old) = self.bindings.remove(id) else {
            return Invalidation::none();
        };
        for subject in &old.subjects {
            if let Some(key) = subject_key(subject, id.namespace()) {
                let (map, name) = self.subjects_mut(key);
                if let Some(ids) = map.get_mut(&name) {
                    ids.remove(id);
                    if ids.is_empty() {
                        map.remove(&name);
                    }
                }
            }
        }
        self.binding_scope(id, &old)
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
            .bindings
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
        let mut index = RbacIndex::default();
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
        let mut index = RbacIndex::default();
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
        let mut index = RbacIndex::default();
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
}
