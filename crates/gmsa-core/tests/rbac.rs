//! Table-driven tests of RBAC evaluation (as the Kubernetes RBAC authorizer decides, with its
//! reason texts) and of loading the embedded state from YAML manifests.

#![allow(clippy::unwrap_used)] // tests may panic

use std::path::PathBuf;

use gmsa_core::rbac::{Authorization, ResourceAttributes, UserInfo};
use gmsa_core::state::{State, StateError};
use gmsa_core::{AccessCheck, ClusterView, SpecLookup};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Building policies
// ---------------------------------------------------------------------------------------------

const RBAC: &str = "rbac.authorization.k8s.io/v1";

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> Value {
    json!({"verbs": verbs, "apiGroups": groups, "resources": resources, "resourceNames": names})
}

/// `use` on webapp1 only.
fn use_webapp1() -> Value {
    rule(
        &["use"],
        &["windows.k8s.io"],
        &["gmsacredentialspecs"],
        &["webapp1"],
    )
}

fn cluster_role(name: &str, rules: Vec<Value>) -> Value {
    json!({"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": name}, "rules": rules})
}

fn labelled_cluster_role(name: &str, labels: Value, rules: Vec<Value>) -> Value {
    json!({"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": name, "labels": labels}, "rules": rules})
}

fn aggregated_cluster_role(name: &str, selectors: Value, rules: Vec<Value>) -> Value {
    json!({"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": name},
        "aggregationRule": {"clusterRoleSelectors": selectors}, "rules": rules})
}

fn role(name: &str, namespace: &str, rules: Vec<Value>) -> Value {
    json!({"apiVersion": RBAC, "kind": "Role", "metadata": {"name": name, "namespace": namespace}, "rules": rules})
}

fn cluster_role_binding(name: &str, role_kind: &str, role: &str, subjects: Vec<Value>) -> Value {
    json!({"apiVersion": RBAC, "kind": "ClusterRoleBinding", "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role}, "subjects": subjects})
}

fn role_binding(
    name: &str,
    namespace: &str,
    role_kind: &str,
    role: &str,
    subjects: Vec<Value>,
) -> Value {
    json!({"apiVersion": RBAC, "kind": "RoleBinding", "metadata": {"name": name, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role}, "subjects": subjects})
}

fn sa(name: &str, namespace: Option<&str>) -> Value {
    match namespace {
        Some(ns) => json!({"kind": "ServiceAccount", "name": name, "namespace": ns}),
        None => json!({"kind": "ServiceAccount", "name": name}),
    }
}

fn user(name: &str) -> Value {
    json!({"kind": "User", "name": name, "apiGroup": "rbac.authorization.k8s.io"})
}

fn group(name: &str) -> Value {
    json!({"kind": "Group", "name": name, "apiGroup": "rbac.authorization.k8s.io"})
}

fn state_of(docs: Vec<Value>) -> State {
    let mut state = State::default();
    for (i, doc) in docs.into_iter().enumerate() {
        state.add_object("case", i + 1, doc).unwrap();
    }
    state
}

/// May service account `sa` of `namespace` use `spec`?
fn ask(state: &State, namespace: &str, sa: &str, spec: &str) -> Authorization {
    state.rbac().authorize(
        &UserInfo::service_account(namespace, sa),
        &ResourceAttributes::use_credential_spec(namespace, spec),
    )
}

/// One question and its answer: `Some(reason)` when allowed, `None` when denied.
struct Case {
    name: &'static str,
    docs: Vec<Value>,
    namespace: &'static str,
    sa: &'static str,
    spec: &'static str,
    want: Option<String>,
}

fn allowed(name: &'static str, docs: Vec<Value>, reason: &str) -> Case {
    Case {
        name,
        docs,
        namespace: "ns1",
        sa: "sa1",
        spec: "webapp1",
        want: Some(reason.to_string()),
    }
}

fn denied(name: &'static str, docs: Vec<Value>) -> Case {
    Case {
        name,
        docs,
        namespace: "ns1",
        sa: "sa1",
        spec: "webapp1",
        want: None,
    }
}

impl Case {
    fn asked_by(mut self, namespace: &'static str, sa: &'static str) -> Self {
        self.namespace = namespace;
        self.sa = sa;
        self
    }

    fn spec(mut self, spec: &'static str) -> Self {
        self.spec = spec;
        self
    }
}

fn run_table(cases: Vec<Case>) {
    let mut names = std::collections::BTreeSet::new();
    for c in cases {
        assert!(names.insert(c.name), "duplicate case {}", c.name);
        let state = state_of(c.docs);
        let got = ask(&state, c.namespace, c.sa, c.spec);
        match &c.want {
            Some(reason) => {
                assert!(got.allowed, "{}: should be allowed", c.name);
                assert_eq!(&got.reason, reason, "{}", c.name);
                assert_eq!(
                    state.may_use(c.namespace, c.sa, c.spec),
                    AccessCheck::Allowed,
                    "{}",
                    c.name
                );
            }
            None => {
                assert!(
                    !got.allowed,
                    "{}: should be denied, got {}",
                    c.name, got.reason
                );
                assert_eq!(
                    got.reason, "",
                    "{}: the RBAC authorizer gives no reason for a denial",
                    c.name
                );
                assert_eq!(
                    state.may_use(c.namespace, c.sa, c.spec),
                    AccessCheck::Denied {
                        reason: String::new()
                    },
                    "{}",
                    c.name
                );
            }
        }
    }
}

/// A ClusterRole with `rules`, bound cluster-wide to every service account.
fn granted_by(rules: Vec<Value>) -> Vec<Value> {
    vec![
        cluster_role("r", rules),
        cluster_role_binding(
            "all-sa",
            "ClusterRole",
            "r",
            vec![group("system:serviceaccounts")],
        ),
    ]
}

const BY_ALL_SA: &str = r#"RBAC: allowed by ClusterRoleBinding "all-sa" of ClusterRole "r" to Group "system:serviceaccounts""#;

// ---------------------------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------------------------

#[test]
fn rules_match_verbs_groups_resources_and_names() {
    let cases = vec![
        allowed("exact rule", granted_by(vec![use_webapp1()]), BY_ALL_SA),
        allowed(
            "verb wildcard",
            granted_by(vec![rule(
                &["*"],
                &["windows.k8s.io"],
                &["gmsacredentialspecs"],
                &["webapp1"],
            )]),
            BY_ALL_SA,
        ),
        allowed(
            "verb among others",
            granted_by(vec![rule(
                &["get", "use", "list"],
                &["windows.k8s.io"],
                &["gmsacredentialspecs"],
                &[],
            )]),
            BY_ALL_SA,
        ),
        denied(
            "other verbs only",
            granted_by(vec![rule(
                &["get", "list", "watch"],
                &["windows.k8s.io"],
                &["gmsacredentialspecs"],
                &[],
            )]),
        ),
        denied(
            "no verbs",
            granted_by(vec![rule(
                &[],
                &["windows.k8s.io"],
                &["gmsacredentialspecs"],
                &[],
            )]),
        ),
        denied(
            "verbs are case-sensitive",
            granted_by(vec![rule(
                &["USE"],
                &["windows.k8s.io"],
                &["gmsacredentialspecs"],
                &[],
            )]),
        ),
        allowed(
            "group wildcard",
            granted_by(vec![rule(&["use"], &["*"], &["gmsacredentialspecs"], &[])]),
            BY_ALL_SA,
        ),
        denied(
            "core group",
            granted_by(vec![rule(&["use"], &[""], &["gmsacredentialspecs"], &[])]),
        ),
        denied(
            "no groups",
            granted_by(vec![rule(&["use"], &[], &["gmsacredentialspecs"], &[])]),
        ),
        allowed(
            "resource wildcard",
            granted_by(vec![rule(&["use"], &["windows.k8s.io"], &["*"], &[])]),
            BY_ALL_SA,
        ),
        allowed(
            "all wildcards",
            granted_by(vec![rule(&["*"], &["*"], &["*"], &[])]),
            BY_ALL_SA,
        ),
        denied(
            "subresource rule",
            granted_by(vec![rule(
                &["use"],
                &["windows.k8s.io"],
                &["gmsacredentialspecs/status"],
                &[],
            )]),
        ),
        denied(
            "any-resource subresource rule",
            granted_by(vec![rule(
                &["use"],
                &["windows.k8s.io"],
                &["*/status"],
                &[],
            )]),
        ),
        denied(
            "resources are case-sensitive",
            granted_by(vec![rule(
                &["use"],
                &["windows.k8s.io"],
                &["GMSACredentialSpecs"],
                &[],
            )]),
        ),
        denied(
            "singular resource",
            granted_by(vec![rule(
                &["use"],
                &["windows.k8s.io"],
                &["gmsacredentialspec"],
                &[],
            )]),
        ),
        allowed(
            "no resource names means every name",
            granted_by(vec![rule(
                &["use"],
                &["windows.k8s.io"],
                &["gmsacredentialspecs"],
                &[],
            )]),
            BY_ALL_SA,
        ),
        allowed(
            "name among others",
            granted_by(vec![rule(
                &["use"],
                &["windows.k8s.io"],
                &["gmsacredentialspecs"],
                &["webapp0", "webapp1"],
            )]),
            BY_ALL_SA,
        ),
        denied("other name", granted_by(vec![use_webapp1()])).spec("webapp2"),
        denied(
            "no wildcard in resource names",
            granted_by(vec![rule(
                &["use"],
                &["windows.k8s.io"],
                &["gmsacredentialspecs"],
                &["*"],
            )]),
        ),
        denied(
            "names are case-sensitive",
            granted_by(vec![rule(
                &["use"],
                &["windows.k8s.io"],
                &["gmsacredentialspecs"],
                &["WebApp1"],
            )]),
        ),
        allowed(
            "second rule matches",
            granted_by(vec![
                rule(&["get"], &["windows.k8s.io"], &["gmsacredentialspecs"], &[]),
                rule(
                    &["use"],
                    &["windows.k8s.io"],
                    &["gmsacredentialspecs"],
                    &["webapp1"],
                ),
            ]),
            BY_ALL_SA,
        ),
        denied(
            "no single rule matches every part",
            granted_by(vec![
                rule(&["use"], &["other.io"], &["gmsacredentialspecs"], &[]),
                rule(&["get"], &["windows.k8s.io"], &["gmsacredentialspecs"], &[]),
                rule(&["use"], &["windows.k8s.io"], &["other"], &[]),
            ]),
        ),
        denied(
            "non-resource rule",
            granted_by(vec![json!({"verbs": ["*"], "nonResourceURLs": ["*"]})]),
        ),
        denied("no rules", granted_by(vec![])),
        allowed(
            "null lists read as empty",
            granted_by(vec![
                json!({"verbs": ["use"], "apiGroups": ["windows.k8s.io"], "resources": ["gmsacredentialspecs"], "resourceNames": null}),
            ]),
            BY_ALL_SA,
        ),
    ];
    run_table(cases);
}

#[test]
fn rules_for_subresources() {
    let state = state_of(granted_by(vec![
        rule(&["update"], &[""], &["pods/ephemeralcontainers"], &[]),
        rule(&["get"], &[""], &["*/status"], &[]),
        rule(&["list"], &[""], &["pods"], &[]),
    ]));
    let user = UserInfo::service_account("ns1", "sa1");
    let ask = |verb: &str, resource: &str, subresource: &str| {
        let attrs = ResourceAttributes {
            namespace: "ns1".into(),
            verb: verb.into(),
            group: String::new(),
            resource: resource.into(),
            subresource: subresource.into(),
            name: "p1".into(),
        };
        state.rbac().authorize(&user, &attrs).allowed
    };
    assert!(ask("update", "pods", "ephemeralcontainers"));
    assert!(!ask("update", "pods", ""));
    assert!(!ask("update", "pods", "status"));
    assert!(ask("get", "pods", "status"));
    assert!(ask("get", "nodes", "status"));
    assert!(!ask("get", "pods", ""));
    assert!(!ask("get", "pods", "statuses"));
    assert!(ask("list", "pods", ""));
    assert!(!ask("list", "pods", "log"));
}

// ---------------------------------------------------------------------------------------------
// Bindings and scopes
// ---------------------------------------------------------------------------------------------

#[test]
fn bindings_and_namespaces() {
    let webapp1_role = || cluster_role("webapp1-role", vec![use_webapp1()]);
    let cases = vec![
        allowed(
            "RoleBinding to a ClusterRole",
            vec![webapp1_role(), role_binding("b", "ns1", "ClusterRole", "webapp1-role", vec![sa("sa1", Some("ns1"))])],
            r#"RBAC: allowed by RoleBinding "b/ns1" of ClusterRole "webapp1-role" to ServiceAccount "sa1/ns1""#,
        ),
        denied(
            "RoleBinding to a ClusterRole, other namespace",
            vec![webapp1_role(), role_binding("b", "ns2", "ClusterRole", "webapp1-role", vec![sa("sa1", Some("ns1"))])],
        ),
        denied(
            "RoleBinding in ns1, pod in ns2",
            vec![webapp1_role(), role_binding("b", "ns1", "ClusterRole", "webapp1-role", vec![sa("sa1", None)])],
        )
        .asked_by("ns2", "sa1"),
        allowed(
            "RoleBinding to a Role",
            vec![
                role("r", "ns1", vec![use_webapp1()]),
                role_binding("b", "ns1", "Role", "r", vec![sa("sa1", Some("ns1"))]),
            ],
            r#"RBAC: allowed by RoleBinding "b/ns1" of Role "r" to ServiceAccount "sa1/ns1""#,
        ),
        denied(
            "RoleBinding to a Role of another namespace",
            vec![
                role("r", "ns2", vec![use_webapp1()]),
                role_binding("b", "ns1", "Role", "r", vec![sa("sa1", Some("ns1"))]),
            ],
        ),
        denied(
            "RoleBinding to a missing role",
            vec![role_binding("b", "ns1", "ClusterRole", "nothing", vec![sa("sa1", Some("ns1"))])],
        ),
        allowed(
            "RoleBinding kind ClusterRole ignores a Role of that name",
            vec![
                role("same", "ns1", vec![]),
                cluster_role("same", vec![use_webapp1()]),
                role_binding("b", "ns1", "ClusterRole", "same", vec![sa("sa1", None)]),
            ],
            r#"RBAC: allowed by RoleBinding "b/ns1" of ClusterRole "same" to ServiceAccount "sa1/ns1""#,
        ),
        denied(
            "RoleBinding kind Role ignores a ClusterRole of that name",
            vec![
                role("same", "ns1", vec![]),
                cluster_role("same", vec![use_webapp1()]),
                role_binding("b", "ns1", "Role", "same", vec![sa("sa1", None)]),
            ],
        ),
        allowed(
            "ClusterRoleBinding, any namespace",
            vec![webapp1_role(), cluster_role_binding("crb", "ClusterRole", "webapp1-role", vec![sa("sa1", Some("ns9"))])],
            r#"RBAC: allowed by ClusterRoleBinding "crb" of ClusterRole "webapp1-role" to ServiceAccount "sa1/ns9""#,
        )
        .asked_by("ns9", "sa1"),
        denied(
            "ClusterRoleBinding to a Role",
            vec![
                role("r", "ns1", vec![use_webapp1()]),
                cluster_role_binding("crb", "Role", "r", vec![sa("sa1", Some("ns1"))]),
            ],
        ),
        allowed(
            "ClusterRoleBindings are visited first",
            vec![
                webapp1_role(),
                role_binding("b", "ns1", "ClusterRole", "webapp1-role", vec![sa("sa1", None)]),
                cluster_role_binding("crb", "ClusterRole", "webapp1-role", vec![group("system:authenticated")]),
            ],
            r#"RBAC: allowed by ClusterRoleBinding "crb" of ClusterRole "webapp1-role" to Group "system:authenticated""#,
        ),
        allowed(
            "a binding whose role does not allow is passed over",
            vec![
                webapp1_role(),
                cluster_role("nothing", vec![]),
                role_binding("a", "ns1", "ClusterRole", "nothing", vec![sa("sa1", None)]),
                role_binding("b", "ns1", "ClusterRole", "webapp1-role", vec![sa("sa1", None)]),
            ],
            r#"RBAC: allowed by RoleBinding "b/ns1" of ClusterRole "webapp1-role" to ServiceAccount "sa1/ns1""#,
        ),
        denied("no bindings", vec![webapp1_role()]),
        denied(
            "binding without subjects",
            vec![webapp1_role(), role_binding("b", "ns1", "ClusterRole", "webapp1-role", vec![])],
        ),
    ];
    run_table(cases);
}

#[test]
fn role_binding_without_namespace_is_in_default() {
    let mut binding = role_binding(
        "b",
        "x",
        "ClusterRole",
        "webapp1-role",
        vec![sa("sa1", None)],
    );
    binding["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("namespace");
    let mut r = role("r", "x", vec![use_webapp1()]);
    r["metadata"].as_object_mut().unwrap().remove("namespace");
    let mut role_binding_to_role = role_binding("b2", "x", "Role", "r", vec![sa("sa2", None)]);
    role_binding_to_role["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("namespace");
    let state = state_of(vec![
        cluster_role("webapp1-role", vec![use_webapp1()]),
        binding,
        r,
        role_binding_to_role,
    ]);
    let got = ask(&state, "default", "sa1", "webapp1");
    assert_eq!(
        got.reason,
        r#"RBAC: allowed by RoleBinding "b/default" of ClusterRole "webapp1-role" to ServiceAccount "sa1/default""#
    );
    assert!(ask(&state, "default", "sa2", "webapp1").allowed);
    assert!(!ask(&state, "ns1", "sa1", "webapp1").allowed);
}

// ---------------------------------------------------------------------------------------------
// Subjects
// ---------------------------------------------------------------------------------------------

#[test]
fn subjects() {
    let bound = |subjects: Vec<Value>| {
        vec![
            cluster_role("webapp1-role", vec![use_webapp1()]),
            role_binding("b", "ns1", "ClusterRole", "webapp1-role", subjects),
        ]
    };
    let cluster_bound = |subjects: Vec<Value>| {
        vec![
            cluster_role("webapp1-role", vec![use_webapp1()]),
            cluster_role_binding("crb", "ClusterRole", "webapp1-role", subjects),
        ]
    };
    let by = |subject: &str| {
        format!(
            r#"RBAC: allowed by RoleBinding "b/ns1" of ClusterRole "webapp1-role" to {subject}"#
        )
    };
    let cases = vec![
        allowed(
            "service account with namespace",
            bound(vec![sa("sa1", Some("ns1"))]),
            &by(r#"ServiceAccount "sa1/ns1""#),
        ),
        allowed(
            "service account without namespace",
            bound(vec![sa("sa1", None)]),
            &by(r#"ServiceAccount "sa1/ns1""#),
        ),
        allowed(
            "service account with empty namespace",
            bound(vec![
                json!({"kind": "ServiceAccount", "name": "sa1", "namespace": ""}),
            ]),
            &by(r#"ServiceAccount "sa1/ns1""#),
        ),
        denied(
            "a binding in ns1 grants nothing in the subject's own namespace",
            bound(vec![sa("builder", Some("ci"))]),
        )
        .asked_by("ci", "builder"),
        denied(
            "service account of another name",
            bound(vec![sa("sa2", Some("ns1"))]),
        ),
        denied(
            "service account of another namespace",
            bound(vec![sa("sa1", Some("ns2"))]),
        ),
        denied(
            "service account without namespace in a ClusterRoleBinding",
            cluster_bound(vec![sa("sa1", None)]),
        ),
        allowed(
            "service account in a ClusterRoleBinding",
            cluster_bound(vec![sa("sa1", Some("ns1"))]),
            r#"RBAC: allowed by ClusterRoleBinding "crb" of ClusterRole "webapp1-role" to ServiceAccount "sa1/ns1""#,
        ),
        allowed(
            "user name of the service account",
            bound(vec![user("system:serviceaccount:ns1:sa1")]),
            &by(r#"User "system:serviceaccount:ns1:sa1""#),
        ),
        allowed(
            "user with the group defaulted",
            bound(vec![
                json!({"kind": "User", "name": "system:serviceaccount:ns1:sa1"}),
            ]),
            &by(r#"User "system:serviceaccount:ns1:sa1""#),
        ),
        allowed(
            "user with an empty group, defaulted by the API server",
            bound(vec![
                json!({"kind": "User", "name": "system:serviceaccount:ns1:sa1", "apiGroup": ""}),
            ]),
            &by(r#"User "system:serviceaccount:ns1:sa1""#),
        ),
        denied("bare user name", bound(vec![user("sa1")])),
        denied(
            "user of another namespace",
            bound(vec![user("system:serviceaccount:ns2:sa1")]),
        ),
        allowed(
            "all service accounts",
            bound(vec![group("system:serviceaccounts")]),
            &by(r#"Group "system:serviceaccounts""#),
        ),
        allowed(
            "service accounts of the namespace",
            bound(vec![group("system:serviceaccounts:ns1")]),
            &by(r#"Group "system:serviceaccounts:ns1""#),
        ),
        denied(
            "service accounts of another namespace",
            bound(vec![group("system:serviceaccounts:ns2")]),
        ),
        allowed(
            "authenticated users",
            cluster_bound(vec![group("system:authenticated")]),
            r#"RBAC: allowed by ClusterRoleBinding "crb" of ClusterRole "webapp1-role" to Group "system:authenticated""#,
        ),
        denied(
            "unauthenticated users",
            bound(vec![group("system:unauthenticated")]),
        ),
        denied("masters", bound(vec![group("system:masters")])),
        denied(
            "unknown subject kind",
            bound(vec![json!({"kind": "Robot", "name": "sa1"})]),
        ),
        allowed(
            "the first matching subject is named",
            bound(vec![
                user("someone"),
                group("system:serviceaccounts:ns1"),
                sa("sa1", None),
            ]),
            &by(r#"Group "system:serviceaccounts:ns1""#),
        ),
    ];
    run_table(cases);

    // A service account of another namespace bound in ns1 may act in ns1 (not what a pod's
    // review asks, but what the authorizer answers).
    let state = state_of(bound(vec![sa("builder", Some("ci"))]));
    let got = state.rbac().authorize(
        &UserInfo::service_account("ci", "builder"),
        &ResourceAttributes::use_credential_spec("ns1", "webapp1"),
    );
    assert_eq!(
        got.reason,
        r#"RBAC: allowed by RoleBinding "b/ns1" of ClusterRole "webapp1-role" to ServiceAccount "builder/ci""#
    );
    // Outside any namespace only cluster-wide bindings count.
    let state = state_of(bound(vec![group("system:serviceaccounts")]));
    let user = UserInfo::service_account("ns1", "sa1");
    assert!(
        state
            .rbac()
            .authorize(
                &user,
                &ResourceAttributes::use_credential_spec("ns1", "webapp1")
            )
            .allowed
    );
    assert!(
        !state
            .rbac()
            .authorize(
                &user,
                &ResourceAttributes::use_credential_spec("", "webapp1")
            )
            .allowed
    );
}

// ---------------------------------------------------------------------------------------------
// Aggregation
// ---------------------------------------------------------------------------------------------

#[test]
fn aggregation() {
    let labelled =
        |name: &str, labels: Value| labelled_cluster_role(name, labels, vec![use_webapp1()]);
    let binding = || {
        role_binding(
            "b",
            "ns1",
            "ClusterRole",
            "gmsa-users",
            vec![sa("sa1", None)],
        )
    };
    let reason = r#"RBAC: allowed by RoleBinding "b/ns1" of ClusterRole "gmsa-users" to ServiceAccount "sa1/ns1""#;
    let agg = |selectors: Value| aggregated_cluster_role("gmsa-users", selectors, vec![]);
    let cases = vec![
        allowed(
            "matchLabels",
            vec![
                agg(json!([{"matchLabels": {"gmsa.k8s.io/aggregate": "true"}}])),
                labelled("w1", json!({"gmsa.k8s.io/aggregate": "true", "other": "x"})),
                binding(),
            ],
            reason,
        ),
        denied(
            "matchLabels, other value",
            vec![
                agg(json!([{"matchLabels": {"gmsa.k8s.io/aggregate": "true"}}])),
                labelled("w1", json!({"gmsa.k8s.io/aggregate": "false"})),
                binding(),
            ],
        ),
        denied(
            "matchLabels, every label needed",
            vec![
                agg(json!([{"matchLabels": {"a": "1", "b": "2"}}])),
                labelled("w1", json!({"a": "1"})),
                binding(),
            ],
        ),
        allowed(
            "several selectors, any one",
            vec![
                agg(json!([{"matchLabels": {"a": "1"}}, {"matchLabels": {"b": "2"}}])),
                labelled("w1", json!({"b": "2"})),
                binding(),
            ],
            reason,
        ),
        allowed(
            "matchExpressions In",
            vec![
                agg(
                    json!([{"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gmsa", "web"]}]}]),
                ),
                labelled("w1", json!({"tier": "web"})),
                binding(),
            ],
            reason,
        ),
        denied(
            "matchExpressions In, absent",
            vec![
                agg(
                    json!([{"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gmsa"]}]}]),
                ),
                labelled("w1", json!({})),
                binding(),
            ],
        ),
        allowed(
            "matchExpressions NotIn, absent key matches",
            vec![
                agg(
                    json!([{"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]}]),
                ),
                labelled("w1", json!({"x": "y"})),
                binding(),
            ],
            reason,
        ),
        denied(
            "matchExpressions NotIn",
            vec![
                agg(
                    json!([{"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]}]),
                ),
                labelled("w1", json!({"tier": "db"})),
                binding(),
            ],
        ),
        allowed(
            "matchExpressions Exists",
            vec![
                agg(json!([{"matchExpressions": [{"key": "gmsa", "operator": "Exists"}]}])),
                labelled("w1", json!({"gmsa": ""})),
                binding(),
            ],
            reason,
        ),
        denied(
            "matchExpressions DoesNotExist",
            vec![
                agg(json!([{"matchExpressions": [{"key": "gmsa", "operator": "DoesNotExist"}]}])),
                labelled("w1", json!({"gmsa": "yes"})),
                binding(),
            ],
        ),
        allowed(
            "matchLabels and matchExpressions together",
            vec![
                agg(
                    json!([{"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "b", "operator": "DoesNotExist"}]}]),
                ),
                labelled("w1", json!({"a": "1"})),
                binding(),
            ],
            reason,
        ),
        denied(
            "matchLabels and matchExpressions, one fails",
            vec![
                agg(
                    json!([{"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "b", "operator": "DoesNotExist"}]}]),
                ),
                labelled("w1", json!({"a": "1", "b": "2"})),
                binding(),
            ],
        ),
        denied(
            "unknown operator selects nothing",
            vec![
                agg(
                    json!([{"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["0"]}]}]),
                ),
                labelled("w1", json!({"a": "1"})),
                binding(),
            ],
        ),
        allowed(
            "empty selector selects every ClusterRole",
            vec![
                agg(json!([{}])),
                cluster_role("w1", vec![use_webapp1()]),
                binding(),
            ],
            reason,
        ),
        denied(
            "no selectors",
            vec![agg(json!([])), labelled("w1", json!({"a": "1"})), binding()],
        ),
        denied(
            "own rules are replaced by the aggregated ones",
            vec![
                aggregated_cluster_role(
                    "gmsa-users",
                    json!([{"matchLabels": {"a": "1"}}]),
                    vec![use_webapp1()],
                ),
                binding(),
            ],
        ),
        allowed(
            "aggregation of an aggregated role",
            vec![
                agg(json!([{"matchLabels": {"level": "1"}}])),
                json!({"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": "middle", "labels": {"level": "1"}},
                    "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"level": "2"}}]}}),
                labelled("w1", json!({"level": "2"})),
                binding(),
            ],
            reason,
        ),
        denied(
            "aggregation cycle without rules",
            vec![
                json!({"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": "gmsa-users", "labels": {"ring": "a"}},
                    "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"ring": "b"}}]}}),
                json!({"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": "other", "labels": {"ring": "b"}},
                    "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"ring": "a"}}]}}),
                binding(),
            ],
        ),
        allowed(
            "aggregation cycle with a leaf",
            vec![
                json!({"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": "gmsa-users", "labels": {"ring": "a"}},
                    "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"ring": "b"}}]}}),
                json!({"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": "other", "labels": {"ring": "b"}},
                    "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"ring": "a"}}, {"matchLabels": {"leaf": "1"}}]}}),
                labelled("w1", json!({"leaf": "1"})),
                binding(),
            ],
            reason,
        ),
        denied(
            "Roles are never aggregated",
            vec![
                agg(json!([{"matchLabels": {"a": "1"}}])),
                json!({"apiVersion": RBAC, "kind": "Role", "metadata": {"name": "w1", "namespace": "ns1", "labels": {"a": "1"}}, "rules": [use_webapp1()]}),
                binding(),
            ],
        ),
    ];
    run_table(cases);
}

// ---------------------------------------------------------------------------------------------
// The captured cluster
// ---------------------------------------------------------------------------------------------

fn data(name: &str) -> String {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn captured_access_reviews() {
    let mut state = State::default();
    state
        .add_yaml("capture-rbac.yaml", &data("capture-rbac.yaml"))
        .unwrap();
    state
        .add_yaml("get-credspec.json", &data("get-credspec.json"))
        .unwrap();
    for file in [
        "lsar-default-default-gmsa-webapp1.json",
        "lsar-team-c-default-gmsa-webapp1.json",
    ] {
        let review: Value = serde_json::from_str(&data(file)).unwrap();
        let spec = &review["spec"];
        let attrs = &spec["resourceAttributes"];
        let user = UserInfo {
            name: spec["user"].as_str().unwrap().to_string(),
            groups: spec["groups"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g.as_str().unwrap().to_string())
                .collect(),
        };
        let namespace = attrs["namespace"].as_str().unwrap();
        // The access review the webhook makes is the one captured.
        let sa = user.name.rsplit(':').next().unwrap();
        assert_eq!(user, UserInfo::service_account(namespace, sa), "{file}");
        let ours =
            ResourceAttributes::use_credential_spec(namespace, attrs["name"].as_str().unwrap());
        assert_eq!(ours.verb, attrs["verb"], "{file}");
        assert_eq!(ours.group, attrs["group"], "{file}");
        assert_eq!(ours.resource, attrs["resource"], "{file}");

        let got = state.rbac().authorize(&user, &ours);
        assert_eq!(
            got.allowed,
            review["status"]["allowed"].as_bool().unwrap(),
            "{file}"
        );
        assert_eq!(
            got.reason,
            review["status"]["reason"].as_str().unwrap_or_default(),
            "{file}"
        );
    }
    assert_eq!(
        ask(&state, "default", "default", "gmsa-webapp1").reason,
        r#"RBAC: allowed by RoleBinding "allow-default-svc-account-read-on-gmsa-WebApp1/default" of ClusterRole "webapp1-role" to ServiceAccount "default/default""#
    );
    assert_eq!(
        state.may_use("default", "default", "gmsa-webapp1"),
        AccessCheck::Allowed
    );
    assert_eq!(
        state.may_use("team-c", "default", "gmsa-webapp1"),
        AccessCheck::Denied {
            reason: String::new()
        }
    );
    assert_eq!(
        state.may_use("default", "other", "gmsa-webapp1"),
        AccessCheck::Denied {
            reason: String::new()
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Loading the state from YAML
// ---------------------------------------------------------------------------------------------

const SPEC_YAML: &str = r#"apiVersion: windows.k8s.io/v1
kind: GMSACredentialSpec
metadata:
  name: webapp1
credspec:
  CmsPlugins:
    - ActiveDirectory
  DomainJoinConfig:
    NetBiosName: CONTOSO
    MachineAccountName: WebApp1
"#;

const RBAC_YAML: &str = r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: webapp1-user
rules:
  - apiGroups: ["windows.k8s.io"]
    resources: ["gmsacredentialspecs"]
    verbs: ["use"]
    resourceNames: ["webapp1"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: webapp1-default
  namespace: ns1
subjects:
  - kind: ServiceAccount
    name: default
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: webapp1-user
"#;

const WEBAPP1_ENCODED: &str = r#"{"CmsPlugins":["ActiveDirectory"],"DomainJoinConfig":{"MachineAccountName":"WebApp1","NetBiosName":"CONTOSO"}}"#;

fn loaded(text: &str) -> State {
    let mut state = State::default();
    state
        .add_yaml("manifests.yaml", text)
        .unwrap_or_else(|e| panic!("{e}"));
    state
}

/// The state holds webapp1 and lets ns1's default service account use it.
fn assert_webapp1_usable(state: &State, what: &str) {
    match state.credential_spec("webapp1") {
        SpecLookup::Found(spec) => assert_eq!(
            &*spec.contents().unwrap().encoded,
            WEBAPP1_ENCODED,
            "{what}"
        ),
        other => panic!("{what}: webapp1 not found: {other:?}"),
    }
    assert_eq!(
        state.may_use("ns1", "default", "webapp1"),
        AccessCheck::Allowed,
        "{what}"
    );
    assert!(
        matches!(
            state.may_use("ns2", "default", "webapp1"),
            AccessCheck::Denied { .. }
        ),
        "{what}"
    );
}

#[test]
fn state_reads_yaml_forms() {
    let list = format!(
        "apiVersion: v1\nkind: List\nitems:\n{}",
        [SPEC_YAML, RBAC_YAML]
            .join("---\n")
            .split("---\n")
            .map(|doc| {
                let mut lines = doc.lines();
                let first = lines.next().unwrap();
                let rest: String = lines.map(|l| format!("\n    {l}")).collect();
                format!("  - {first}{rest}\n")
            })
            .collect::<String>()
    );
    let json_list = serde_json::to_string_pretty(
        &json!({"apiVersion": "v1", "kind": "List", "items": json_form()}),
    )
    .unwrap();
    let cases: Vec<(&str, String)> = vec![
        ("multi-document", format!("{SPEC_YAML}---\n{RBAC_YAML}")),
        ("leading separator and empty documents", format!("---\n---\n{SPEC_YAML}---\n# only a comment\n---\n{RBAC_YAML}---\n")),
        ("byte-order mark", format!("\u{feff}{SPEC_YAML}---\n{RBAC_YAML}")),
        ("CRLF line ends", format!("{SPEC_YAML}---\n{RBAC_YAML}").replace('\n', "\r\n")),
        ("List", list),
        ("List as JSON", json_list),
        ("other kinds mixed in", format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns1\n---\n{SPEC_YAML}---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: default\n  namespace: ns1\n---\n{RBAC_YAML}"
        )),
        ("v1alpha1 credential spec", format!("{}---\n{RBAC_YAML}", SPEC_YAML.replace("windows.k8s.io/v1", "windows.k8s.io/v1alpha1"))),
        ("v1beta1 RBAC", format!("{SPEC_YAML}---\n{}", RBAC_YAML.replace("rbac.authorization.k8s.io/v1", "rbac.authorization.k8s.io/v1beta1"))),
    ];
    for (what, text) in cases {
        assert_webapp1_usable(&loaded(&text), what);
    }
}

/// SPEC_YAML and RBAC_YAML as JSON objects.
fn json_form() -> Vec<Value> {
    vec![
        json!({"apiVersion": "windows.k8s.io/v1", "kind": "GMSACredentialSpec", "metadata": {"name": "webapp1"},
            "credspec": {"CmsPlugins": ["ActiveDirectory"], "DomainJoinConfig": {"NetBiosName": "CONTOSO", "MachineAccountName": "WebApp1"}}}),
        cluster_role("webapp1-user", vec![use_webapp1()]),
        role_binding(
            "webapp1-default",
            "ns1",
            "ClusterRole",
            "webapp1-user",
            vec![sa("default", None)],
        ),
    ]
}

#[test]
fn state_skips_unknown_kinds_and_reports_them() {
    let state = loaded(&format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: default\n  namespace: ns1\n---\n{SPEC_YAML}---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: gmsacredentialspecs.windows.k8s.io\n---\napiVersion: v1\nkind: ConfigMap\n---\nsomething: without a kind\n"
    ));
    assert_eq!(state.specs().count(), 1);
    assert!(state.rbac().is_empty());
    let skipped = state.skipped();
    assert_eq!(skipped.len(), 4, "{skipped:?}");
    assert!(
        skipped[0].contains("ServiceAccount")
            && skipped[0].contains("default")
            && skipped[0].contains("manifests.yaml"),
        "{skipped:?}"
    );
    assert!(
        skipped[1].contains("CustomResourceDefinition")
            && skipped[1].contains("gmsacredentialspecs.windows.k8s.io"),
        "{skipped:?}"
    );
    assert!(skipped[2].contains("ConfigMap"), "{skipped:?}");
}

#[test]
fn state_counts_and_replaces() {
    let state = loaded(&format!(
        "{SPEC_YAML}---\n{}---\n{RBAC_YAML}",
        SPEC_YAML.replace("WebApp1", "Replaced")
    ));
    assert_eq!(state.specs().count(), 1);
    let spec = state.spec("webapp1").unwrap();
    assert!(
        spec.contents().unwrap().encoded.contains("Replaced"),
        "the later document wins"
    );
    assert_eq!(state.rbac().len(), 2);
    assert!(matches!(
        state.credential_spec("nope"),
        SpecLookup::NotFound
    ));
}

#[test]
fn state_errors_name_the_source() {
    let bad: Vec<(&str, String, &str)> = vec![
        ("unclosed flow sequence", "apiVersion: v1\nkind: [oops\n".into(), "bad.yaml: not valid YAML: "),
        ("bad indentation", "a:\n  b: 1\n c: 2\n".into(), "bad.yaml: not valid YAML: "),
        ("tab indentation", format!("{SPEC_YAML}---\nkind: Role\nmetadata:\n\tname: x\n"), "bad.yaml: not valid YAML: "),
        (
            "RoleBinding without roleRef",
            format!("{SPEC_YAML}---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: b\n"),
            "bad.yaml: document 2: not a valid RoleBinding: ",
        ),
        (
            "ClusterRole with rules not a list",
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: r\nrules: 5\n".into(),
            "bad.yaml: document 1: not a valid ClusterRole: ",
        ),
        (
            "credential spec without a name",
            "apiVersion: windows.k8s.io/v1\nkind: GMSACredentialSpec\ncredspec: {}\n".into(),
            "bad.yaml: document 1: the GMSACredentialSpec has no metadata.name",
        ),
    ];
    for (what, text, prefix) in bad {
        let mut state = State::default();
        let err = state
            .add_yaml("bad.yaml", &text)
            .expect_err(what)
            .to_string();
        assert!(err.starts_with(prefix), "{what}: {err}");
    }
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("gmsa-core-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, text: &str) {
        let path = self.0.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn state_loads_a_directory() {
    let dir = TempDir::new("load");
    dir.write("10-spec.yaml", SPEC_YAML);
    dir.write("20-rbac.yml", RBAC_YAML);
    dir.write(
        "30-extra.json",
        &serde_json::to_string(
            &json!({"apiVersion": "windows.k8s.io/v1", "kind": "GMSACredentialSpec",
            "metadata": {"name": "webapp2"}, "credspec": {"b": 1, "a": "<&>"}}),
        )
        .unwrap(),
    );
    // Not manifests, or hidden (a Secret/ConfigMap volume's `..data` and friends).
    dir.write("README.md", "not: [yaml");
    dir.write("notes.txt", "not: [yaml");
    dir.write(".hidden.yaml", "not: [yaml");
    dir.write("..data/10-spec.yaml", "not: [yaml");
    dir.write("nested/extra.yaml", "not: [yaml");
    let state = State::load_dir(&dir.0).unwrap_or_else(|e| panic!("{e}"));
    assert_webapp1_usable(&state, "directory");
    let webapp2 = state.spec("webapp2").unwrap();
    assert_eq!(
        &*webapp2.contents().unwrap().encoded,
        r#"{"a":"\u003c\u0026\u003e","b":1}"#
    );
    assert_eq!(state.specs().count(), 2);

    dir.write("40-broken.yaml", "kind: [oops\n");
    let err = State::load_dir(&dir.0)
        .expect_err("broken file")
        .to_string();
    assert!(
        err.contains("40-broken.yaml") && err.contains("not valid YAML"),
        "{err}"
    );
}

#[test]
fn state_refuses_a_missing_directory() {
    let dir = TempDir::new("missing");
    let missing = dir.0.join("nope");
    let err = State::load_dir(&missing).expect_err("missing");
    assert!(matches!(err, StateError::NotADirectory(_)), "{err}");
    assert!(err.to_string().contains("nope"), "{err}");
    dir.write("file.yaml", SPEC_YAML);
    assert!(matches!(
        State::load_dir(&dir.0.join("file.yaml")),
        Err(StateError::NotADirectory(_))
    ));
    // An empty directory is an empty cluster.
    let empty = TempDir::new("empty");
    let state = State::load_dir(&empty.0).unwrap();
    assert_eq!(state.specs().count(), 0);
    assert!(state.rbac().is_empty());
}
