//! Differential test of `gmsa_core::rbac` against the real RBAC authorizer, on every version
//! the real-API-server tier covers. Generated worlds of Roles, ClusterRoles and bindings are
//! applied to a real kube-apiserver; then, for every service account and credential spec of
//! each world, the answer of our evaluator (over the roles and bindings the server lists, its
//! bootstrap policy included) is compared with a LocalSubjectAccessReview, the question the
//! webhook asks. A second round deletes and re-creates bindings and roles and compares again.
//!
//! `RbacIndex` is compared in both its settings: `Aggregation::Stored`, the webhook's (roles
//! read as stored, built object by object as watch events build it), on every case; and
//! `Aggregation::Computed`, the embedded state's and the fake API server's, on every case
//! outside worlds with an aggregated ClusterRole. Those are stored with rules as if the
//! aggregation controller had filled them (the test server runs none), which the authorizer
//! and the stored setting read, while the computed setting computes aggregation itself.
//!
//! Worlds are independent: each has its own namespaces, service accounts and spec names, and a
//! binding to a group that spans worlds (`system:serviceaccounts`, `system:authenticated`)
//! only ever grants that world's spec names.
//!
//! `GMSA_RBAC_SEED=N` replays a run; `GMSA_SKIP_REAL_APISERVER=1` skips.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::collections::{BTreeMap, BTreeSet};
use std::thread;
use std::time::{Duration, Instant};

use gmsa_core::rbac::{Aggregation, Binding, RbacIndex, ResourceAttributes, Role, UserInfo};
use gmsa_testkit::real_cluster::{skip_requested, RealCluster, ServerVersion, SKIP_ENV};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom as _;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{json, Value};

const WORLDS: usize = 24;
const RBAC: &str = "rbac.authorization.k8s.io/v1";

/// One question: may this service account do `verb` on this spec name, in its namespace?
#[derive(Debug, Clone)]
struct Case {
    namespace: String,
    service_account: String,
    verb: &'static str,
    spec: String,
}

/// The names one world uses.
struct World {
    index: usize,
}

impl World {
    fn ns(&self, which: usize) -> String {
        format!("w{}-{}", self.index, ["a", "b"][which])
    }
    fn spec(&self, which: usize) -> String {
        format!("w{}-spec-{which}", self.index)
    }
    fn name(&self, what: &str, n: usize) -> String {
        format!("w{}-{what}-{n}", self.index)
    }
    /// (namespace, service account) pairs: two in namespace a, one in b.
    fn service_accounts(&self) -> Vec<(String, String)> {
        vec![
            (self.ns(0), "sa1".into()),
            (self.ns(0), "sa2".into()),
            (self.ns(1), "sa1".into()),
        ]
    }

    fn cases(&self) -> Vec<Case> {
        let mut cases = Vec::new();
        for (namespace, service_account) in self.service_accounts() {
            for spec in 0..3 {
                for verb in ["use", "get"] {
                    cases.push(Case {
                        namespace: namespace.clone(),
                        service_account: service_account.clone(),
                        verb,
                        spec: self.spec(spec),
                    });
                }
            }
        }
        cases
    }

    /// Namespaces and service accounts (no token: there is no controller manager).
    fn identities(&self) -> Vec<Value> {
        let mut objects: Vec<Value> = (0..2)
            .map(|i| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.ns(i)}}))
            .collect();
        for (namespace, name) in self.service_accounts() {
            objects.push(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": name, "namespace": namespace},
                "automountServiceAccountToken": false}));
        }
        objects
    }

    /// A random rule; `names_required` forces resourceNames (of this world) when the rule
    /// may reach subjects of other worlds.
    fn rule(&self, rng: &mut StdRng, names_required: bool) -> Value {
        let verbs: &[&[&str]] = &[&["use"], &["get"], &["*"], &["use", "get"], &["list"]];
        let groups: &[&[&str]] = &[
            &["windows.k8s.io"],
            &["windows.k8s.io"],
            &["*"],
            &[""],
            &["example.k8s.io"],
        ];
        let resources: &[&[&str]] = &[
            &["gmsacredentialspecs"],
            &["gmsacredentialspecs"],
            &["*"],
            &["gmsacredentialspecs/status"],
            &["pods"],
        ];
        let mut rule = json!({
            "verbs": verbs.choose(rng).unwrap(),
            "apiGroups": groups.choose(rng).unwrap(),
            "resources": resources.choose(rng).unwrap(),
        });
        let names: Vec<String> = match rng.random_range(0..4) {
            0 if !names_required => Vec::new(),
            0 | 1 => vec![self.spec(0)],
            2 => vec![self.spec(1)],
            _ => vec![self.spec(0), self.spec(1)],
        };
        if !names.is_empty() {
            rule["resourceNames"] = json!(names);
        }
        rule
    }

    /// A random subject, and whether it reaches beyond this world.
    fn subject(&self, rng: &mut StdRng, cluster_binding: bool) -> (Value, bool) {
        let name = *["sa1", "sa2"].choose(rng).unwrap();
        let sa = json!({"kind": "ServiceAccount", "name": name,
            "namespace": self.ns(rng.random_range(0..2))});
        let group = |name: String| json!({"kind": "Group", "name": name, "apiGroup": "rbac.authorization.k8s.io"});
        match rng.random_range(0..7) {
            0 | 1 => (sa, false),
            // Without a namespace: the binding's own (RoleBindings only; the API refuses it
            // in a ClusterRoleBinding).
            2 if !cluster_binding => (json!({"kind": "ServiceAccount", "name": "sa1"}), false),
            2 => (sa, false),
            3 => (
                json!({"kind": "User", "apiGroup": "rbac.authorization.k8s.io",
                    "name": format!("system:serviceaccount:{}:sa2", self.ns(0))}),
                false,
            ),
            4 => (
                group(format!(
                    "system:serviceaccounts:{}",
                    self.ns(rng.random_range(0..2))
                )),
                false,
            ),
            5 => (group("system:serviceaccounts".into()), true),
            _ => (group("system:authenticated".into()), true),
        }
    }

    /// A random binding (and the role it refers to, unless it refers to a missing one), in a
    /// namespace of this world or cluster-wide.
    fn binding(&self, rng: &mut StdRng, n: usize) -> Vec<Value> {
        let cluster_binding = rng.random_range(0..4) == 0;
        let subjects: Vec<(Value, bool)> = (0..rng.random_range(1..=2))
            .map(|_| self.subject(rng, cluster_binding))
            .collect();
        let wide = subjects.iter().any(|(_, wide)| *wide);
        // A binding's subjects may reach other worlds only through this world's spec names;
        // a cluster-wide binding reaches every namespace, so it too is held to them.
        let names_required = wide || cluster_binding;
        let rules: Vec<Value> = (0..rng.random_range(1..=2))
            .map(|_| self.rule(rng, names_required))
            .collect();
        let subjects: Vec<Value> = subjects.into_iter().map(|(s, _)| s).collect();
        let binding_ns = self.ns(rng.random_range(0..2));
        let role_name = self.name("role", n);
        let mut objects = Vec::new();
        let use_cluster_role = cluster_binding || rng.random_range(0..2) == 0;
        let role_ref = if use_cluster_role {
            let mut role = json!({"apiVersion": RBAC, "kind": "ClusterRole",
                "metadata": {"name": role_name}, "rules": rules});
            if rng.random_range(0..4) == 0 {
                // Aggregated, with rules as if the aggregation controller had filled them (the
                // test server runs none), and a labelled part whose rules differ.
                let label = format!("gmsa-test/aggregate-w{}", self.index);
                role["aggregationRule"] =
                    json!({"clusterRoleSelectors": [{"matchLabels": {(label.clone()): "true"}}]});
                objects.push(json!({"apiVersion": RBAC, "kind": "ClusterRole",
                    "metadata": {"name": self.name("part", n), "labels": {(label): "true"}},
                    "rules": [self.rule(rng, true)]}));
            }
            objects.insert(0, role);
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name})
        } else {
            // Sometimes the Role lives in the other namespace: the binding then grants nothing.
            let role_ns = if rng.random_range(0..5) == 0 {
                self.ns(1 - usize::from(binding_ns.ends_with('b')))
            } else {
                binding_ns.clone()
            };
            objects.push(json!({"apiVersion": RBAC, "kind": "Role",
                "metadata": {"name": role_name, "namespace": role_ns}, "rules": rules}));
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name})
        };
        let binding_name = self.name("binding", n);
        objects.push(if cluster_binding {
            json!({"apiVersion": RBAC, "kind": "ClusterRoleBinding",
                "metadata": {"name": binding_name}, "subjects": subjects, "roleRef": role_ref})
        } else {
            json!({"apiVersion": RBAC, "kind": "RoleBinding",
                "metadata": {"name": binding_name, "namespace": binding_ns},
                "subjects": subjects, "roleRef": role_ref})
        });
        objects
    }
}

/// The evaluator in both settings over every role and binding the server lists: aggregation
/// computed (the embedded state's, read as manifests are) and stored (the webhook's, built
/// object by object as watch events would build it).
fn local_evaluators(cluster: &RealCluster) -> (RbacIndex, RbacIndex) {
    let list = |kind: &str| -> Vec<Value> {
        let text = cluster
            .kubectl_ok(&["get", kind, "-A", "-o", "json"], None)
            .unwrap_or_else(|e| panic!("{e}"));
        let list: Value = serde_json::from_str(&text).unwrap();
        list["items"].as_array().cloned().unwrap_or_default()
    };
    let role = |v: Value| serde_json::from_value::<Role>(v).unwrap();
    let binding = |v: Value| serde_json::from_value::<Binding>(v).unwrap();
    let mut computed = RbacIndex::new(Aggregation::Computed);
    let mut stored = RbacIndex::new(Aggregation::Stored);
    // Bindings first: the index must cope with roles arriving after the bindings to them.
    for v in list("clusterrolebindings.rbac.authorization.k8s.io") {
        stored.apply_binding(binding(v.clone()), false);
        computed.add_cluster_role_binding(binding(v));
    }
    for v in list("rolebindings.rbac.authorization.k8s.io") {
        stored.apply_binding(binding(v.clone()), true);
        computed.add_role_binding(binding(v));
    }
    for v in list("clusterroles.rbac.authorization.k8s.io") {
        stored.apply_role(role(v.clone()), false);
        computed.add_cluster_role(role(v));
    }
    for v in list("roles.rbac.authorization.k8s.io") {
        stored.apply_role(role(v.clone()), true);
        computed.add_role(role(v));
    }
    (computed, stored)
}

fn attributes(case: &Case) -> (UserInfo, ResourceAttributes) {
    (
        UserInfo::service_account(&case.namespace, &case.service_account),
        ResourceAttributes {
            verb: case.verb.to_string(),
            ..ResourceAttributes::use_credential_spec(&case.namespace, &case.spec)
        },
    )
}

/// The real authorizer's answer, asked the way the webhook asks it.
fn server_answer(cluster: &RealCluster, case: &Case) -> bool {
    let user = UserInfo::service_account(&case.namespace, &case.service_account);
    let review = json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "LocalSubjectAccessReview",
        "metadata": {"namespace": case.namespace},
        "spec": {
            "user": user.name,
            "groups": user.groups,
            "resourceAttributes": {
                "namespace": case.namespace, "verb": case.verb, "group": "windows.k8s.io",
                "version": "v1", "resource": "gmsacredentialspecs", "name": case.spec
            }
        }
    });
    let path = format!(
        "/apis/authorization.k8s.io/v1/namespaces/{}/localsubjectaccessreviews",
        case.namespace
    );
    let (code, body) = cluster
        .request("POST", &path, Some(&review.to_string()))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, 201, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    answer["status"]["allowed"] == json!(true)
}

/// Compares every case with the evaluator in both settings (aggregation computed only
/// outside `aggregated` worlds, where it computes what the server reads as stored); a
/// difference is asked again for up to 10 s, since the authorizer's caches follow the API a
/// moment behind. Returns (cases, allowed, differences).
fn compare(
    cluster: &RealCluster,
    cases: &[Case],
    aggregated: &BTreeSet<String>,
) -> (usize, usize, Vec<String>) {
    let (computed, stored) = local_evaluators(cluster);
    let mut differing: Vec<(&Case, &str, bool)> = Vec::new();
    let mut allowed = 0;
    for case in cases {
        let (user, attrs) = attributes(case);
        let by_stored = stored.allows(&user, &attrs);
        allowed += usize::from(by_stored);
        let server = server_answer(cluster, case);
        if server != by_stored {
            differing.push((case, "RbacIndex::allows (stored)", by_stored));
        }
        let reasoned = stored.authorize(&user, &attrs).allowed;
        if server != reasoned {
            differing.push((case, "RbacIndex::authorize (stored)", reasoned));
        }
        // The webhook's hot path answers `use` without building the request.
        if case.verb == "use" {
            let fast = stored.may_use(&case.namespace, &case.service_account, &case.spec);
            if server != fast {
                differing.push((case, "RbacIndex::may_use (stored)", fast));
            }
        }
        let world = case.namespace.rsplit_once('-').map_or("", |(w, _)| w);
        let by_computed = computed.authorize(&user, &attrs).allowed;
        if !aggregated.contains(world) && server != by_computed {
            differing.push((case, "RbacIndex::authorize (computed)", by_computed));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !differing.is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(500));
        differing.retain(|(case, _, ours)| server_answer(cluster, case) != *ours);
    }
    let differences = differing
        .iter()
        .map(|(case, which, ours)| format!("{case:?}: {which} {ours}, the API server's {}", !ours))
        .collect();
    (cases.len(), allowed, differences)
}

/// The worlds (`w3`) holding an aggregated ClusterRole.
fn aggregated_worlds(bindings: &BTreeMap<String, Vec<Value>>) -> BTreeSet<String> {
    bindings
        .values()
        .flatten()
        .filter(|o| o.get("aggregationRule").is_some())
        .filter_map(|o| {
            o["metadata"]["name"]
                .as_str()?
                .split('-')
                .next()
                .map(str::to_owned)
        })
        .collect()
}

fn apply_all(cluster: &RealCluster, objects: &[Value]) {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    cluster
        .apply(&list.to_string())
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn rbac_evaluation_agrees_with_kube_1_20() {
    rbac_evaluation_agrees_with_the_real_authorizer(ServerVersion::V1_20);
}

#[test]
fn rbac_evaluation_agrees_with_current_kube() {
    rbac_evaluation_agrees_with_the_real_authorizer(ServerVersion::Current);
}

fn rbac_evaluation_agrees_with_the_real_authorizer(version: ServerVersion) {
    if skip_requested() {
        eprintln!("skipped: {SKIP_ENV}=1");
        return;
    }
    let seed = std::env::var("GMSA_RBAC_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random::<u64>());
    eprintln!("GMSA_RBAC_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let cluster = RealCluster::start(version).unwrap_or_else(|e| panic!("{e}"));
    let worlds: Vec<World> = (0..WORLDS).map(|index| World { index }).collect();
    let cases: Vec<Case> = worlds.iter().flat_map(World::cases).collect();

    apply_all(
        &cluster,
        &worlds
            .iter()
            .flat_map(World::identities)
            .collect::<Vec<_>>(),
    );
    let mut bindings: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for world in &worlds {
        for n in 0..rng.random_range(2..=5) {
            bindings.insert(world.name("binding", n), world.binding(&mut rng, n));
        }
    }
    apply_all(
        &cluster,
        &bindings.values().flatten().cloned().collect::<Vec<_>>(),
    );
    let aggregated = aggregated_worlds(&bindings);
    let (count, allowed, mut differences) = compare(&cluster, &cases, &aggregated);
    eprintln!(
        "{version} round 1: {count} cases, {allowed} allowed, {} of {WORLDS} worlds aggregated, {} differences",
        aggregated.len(),
        differences.len()
    );

    // Round 2: delete some bindings and roles, re-create others under the same names with
    // new subjects and rules, as operators and controllers do.
    let mut changed = Vec::new();
    let mut deleted = Vec::new();
    for (name, objects) in bindings.iter_mut() {
        match rng.random_range(0..4) {
            0 => deleted.extend(objects.iter().cloned()),
            // The role alone: the binding now refers to nothing.
            1 => deleted.push(objects[0].clone()),
            2 => {
                deleted.extend(objects.iter().cloned());
                let world: usize = name[1..name.find('-').unwrap()].parse().unwrap();
                let n: usize = name.rsplit('-').next().unwrap().parse().unwrap();
                *objects = worlds[world].binding(&mut rng, n);
                changed.extend(objects.iter().cloned());
            }
            _ => {}
        }
    }
    let deleted_objects = deleted.clone();
    let deleted = json!({"apiVersion": "v1", "kind": "List", "items": deleted});
    cluster
        .kubectl_ok(
            &["delete", "--ignore-not-found", "--wait=false", "-f", "-"],
            Some(&deleted.to_string()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    apply_all(&cluster, &changed);
    let mut aggregated = aggregated_worlds(&bindings);
    aggregated.extend(aggregated_worlds(&BTreeMap::from([(
        String::new(),
        deleted_objects,
    )])));
    let (count2, allowed2, differences2) = compare(&cluster, &cases, &aggregated);
    eprintln!(
        "{version} round 2: {count2} cases, {allowed2} allowed, {} of {WORLDS} worlds aggregated, {} differences",
        aggregated.len(),
        differences2.len()
    );
    differences.extend(differences2);
    assert!(
        allowed > 0 && allowed < count,
        "the generated worlds must both allow and deny ({allowed} of {count} allowed)"
    );
    assert!(
        differences.is_empty(),
        "GMSA_RBAC_SEED={seed}: {} of {} answers differ from {version}'s authorizer:\n{}",
        differences.len(),
        count + count2,
        differences.join("\n")
    );
}
