//! A prototype of policy mode whose per-pod cost does not grow with the number of specs
//! (issue 21), measured side by side with today's policies and the webhook.
//!
//! Today every spec is a parameter of the mutating and of the `use` policy, so the API server
//! invokes both once per spec for every pod (`CollectParams` with a selector lists them all).
//! Here:
//!
//! - the mutating policy's parameters are a few *contents shards* (one object per range of spec
//!   names, holding `name -> published contents`), so it is invoked once per shard. It inlines
//!   the contents a shard holds and labels the pod `credspec.gmsa.windows.k8s.io/<name>` for
//!   each name of its range the shard holds (removing such a label the shard does not vouch
//!   for, so a client cannot forge one);
//! - the `use` policy (unchanged: published for the current generation, pre-set contents equal)
//!   has one binding per spec, `paramRef.name` the spec and an `objectSelector` on that label.
//!   Validating policies see the object as mutated, so only the specs the pod names are
//!   invoked; the other bindings cost a label-selector match, no CEL;
//! - the per-request policy also refuses a created place with contents whose label is missing,
//!   so a pod is never admitted with contents no per-spec check saw.
//!
//! In the product the keeper would write the shards and the bindings (binding first, then the
//! shard entry); here the bench writes them as they would be.
//!
//! `marked` drops the per-spec bindings: one `use` binding takes as parameters only the specs
//! labelled [`UNPUBLISHED_LABEL`], which a mutating policy on the spec's own create and
//! `credspec` update would set (synchronously, so a keeper outage cannot miss it) and the keeper
//! would remove once the shards hold the new contents (a JSON Patch testing the generation).
//! Not built here: that spec-side policy, the keeper's writes, the pre-set-contents comparison
//! with the shard entry (the mutating policy would mark a mismatch for the per-request policy),
//! and anything for a spec *deleted* while the keeper is down (its shard entry stays usable).
//!
//! What the measurements showed (k8s.io/apiserver v0.37.2, `pkg/admission/plugin/...`):
//! - a binding is cheap only without selectors: its `objectSelector` and `namespaceSelector`
//!   are parsed again for every request and binding (`policy/generic/policy_matcher.go`
//!   112-119, called from `policy/matching/matching.go` 75 and 81), about 7 µs per
//!   label-routed binding here, so per-spec bindings still grow with the number of specs;
//! - every invocation converts its parameter for CEL before the match conditions run
//!   (`cel/activation.go` 76-78): a custom resource by a JSON round trip of the whole object
//!   (`pkg/cel/common/valuesschemalesstyped.go` 88-102), a ConfigMap lazily. A custom-resource
//!   shard holding many specs therefore costs as much as the specs it holds (`routed`);
//!   ConfigMap shards do not (`routed-configmap`, `shards`);
//! - a ConfigMap parameter informer is the API server's shared one: deleting the last policy
//!   with that `paramKind` cancels it (`policy/generic/policy_source.go` 381-386) and a later
//!   policy gets the stopped informer back (426-431), whose cache no longer changes: run
//!   ConfigMap modes in separate `gmsa-bench` runs;
//! - mutating bindings cannot be routed by what the pod names: all of them are matched before
//!   any mutation (`policy/generic/policy_dispatcher.go` 138-205), and a reinvocation runs
//!   only invocations already run once (`policy/mutating/dispatcher.go` 176).
//!
//! Why ConfigMap shards are out for good: the stopped ConfigMap informer is an upstream bug
//! (kubernetes/kubernetes#130887, fix proposed in #141015, not merged at v1.37.2). It takes no
//! uninstall, only one refresh with no binding of a policy with that `paramKind`, and then a
//! policy may validate against an object etcd no longer holds. Custom-resource parameters get
//! an informer of their own, started again for a later policy.
//!
//! `namespaced` is the one design left whose per-pod cost does not grow with the number of
//! specs: a binding's `paramRef` with a `name` and no `namespace` makes the API server read the
//! object of that name in the *request's* namespace, a cached get, one invocation. Each
//! namespace that may use specs gets one `GMSANamespaceContents` (a custom resource, so no
//! stopped informer) holding the contents of the specs its service accounts may use; the `use`
//! policy's parameters are only the specs labelled unpublished, as in `marked`.
//!
//! Measured (BENCHMARKS.md; `gmsa-bench policies --specs 1000,10000 --modes
//! none,webhook,namespaced,namespaced-unmarked --rounds 2`), API-server CPU per pod at 10,000
//! specs: webhook 3.1 ms, `namespaced-unmarked` (no unpublished binding) 4.35 ms with a p50 of
//! 8.9 ms against the webhook's 6.6 ms, `namespaced` 15.2 ms. The contents object costs what
//! the webhook does at every count; the unpublished binding does not: a `paramRef.selector` is
//! answered by listing the parameter informer's whole store and matching each object's labels
//! (`CollectParams`, `policy_dispatcher.go` 376-386), about 1 µs per spec per pod, and that
//! informer holds every spec (about 80 MiB of heap at 10,000). A synchronous mark can only be
//! written on the spec itself (an admission policy changes nothing but its own object), and
//! the only ways a pod's policies reach one spec are a selector over all of them or a binding
//! per spec (7 µs each), so a design that refuses an edited spec while the keeper is down pays
//! per spec on every pod, however cheaply. The choices left:
//! - that scan: at 1,000 specs already 1.8× the webhook's CPU (4.9 against 2.6 ms);
//! - no mark: an edit made while the keeper is down keeps its old contents until the keeper is
//!   back, which the issue rules out;
//! - no edit: in this mode a spec's `credspec` cannot change (a validating policy on the spec's
//!   update, as an immutable ConfigMap), and a spec is replaced by deleting and creating it.
//!   With the finalizer below, every contents entry then belongs to a spec object that exists
//!   (terminating, maybe) with exactly that `credspec`, and a new spec has no entry until the
//!   keeper writes one: nothing is ever inlined stale, and no policy needs a spec as a
//!   parameter, so the spec informer (and its heap) goes too. The price is a behaviour: README's
//!   "a spec just created or edited" row becomes "edits refused; delete and create again".
//!   This is the candidate to build: `namespaced-immutable` measures its pod path. Against the
//!   webhook in the same run (`--modes none,webhook,namespaced-immutable,namespaced`), API-server
//!   CPU per pod was 1.35×, 1.24×, 1.18× and 0.73× at 1, 100, 1,000 and 10,000 specs, p50 11.0
//!   against 9.3 ms at 1 spec and 7.1 against 8.0 ms at 10,000, heap at 10,000 357 against
//!   349 MiB (`namespaced` 430).
//!
//! What a pod costs otherwise grows with what its namespace may use (the object is converted
//! whole), not with the cluster. What the product would still need, none of it built here:
//! - the keeper scoping each namespace's object by RBAC (the specs some service account of the
//!   namespace may `use`, an over-approximation is safe: the `pods` policy still asks the
//!   authorizer); a grant of every spec to every service account puts every spec in every
//!   namespace's object, back to a cost that grows with the cluster (and one object holds at
//!   most about 2,000 specs before etcd's 1.5 MiB limit);
//! - a mutating policy on the spec's own create and `credspec` update setting the unpublished
//!   label, and a finalizer so that a deleted spec stays (terminating, still usable) until the
//!   keeper has taken it out of every namespace's object, instead of staying usable unseen;
//! - the keeper clearing a label (and a finalizer) only once every API server answers with the
//!   new objects: one watch per resource delivers in resourceVersion order, so a canary entry
//!   written last and seen through a dry-run pod on each API server of the `kubernetes`
//!   endpoints proves the earlier writes are seen there too. Without it an API server whose
//!   contents informer lags its spec informer would inline an edited spec's old contents;
//! - messages: a spec labelled unpublished is "changed, not yet published"; a name the
//!   namespace's object does not hold is "not published for this namespace" (no such spec, or
//!   no grant the keeper saw).

use gmsa_deploy::policies::{self, cel};
use serde_json::{json, Value};

/// The label prefix routing a pod to the `use` binding of a spec it names.
pub const ROUTE_PREFIX: &str = "credspec.gmsa.windows.k8s.io";
/// Specs per contents shard (one object must stay well under etcd's 1.5 MiB).
pub const SHARD_SIZE: usize = 2500;
const GROUP: &str = "windows.k8s.io";
const SHARD_VERSION: &str = "v1alpha1";
const SHARD_KIND: &str = "GMSAContentsShard";
/// Every object of the prototype carries it, so a cell deletes them in one call per kind.
pub const MODE_LABEL: &str = "bench.gmsa.windows.k8s.io/mode";
const NAME: &str = "routed";

/// Where the contents shards live. The API server converts a parameter for every invocation:
/// a custom resource by a JSON round trip of the whole object, a built-in typed object
/// (ConfigMap) by lazy reflection, reading only the keys the CEL touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardKind {
    /// `GMSAContentsShard`, a cluster-scoped custom resource.
    Custom,
    /// ConfigMaps in the bench namespace: `data` the contents, the range in annotations.
    ConfigMap,
    /// One `GMSANamespaceContents` per namespace, named [`NAMESPACE_CONTENTS`], holding the
    /// specs that namespace may use: the binding's `paramRef` has a name and no namespace, so
    /// the API server reads the one object of the pod's own namespace (a cached get, one
    /// invocation), however many specs the cluster has.
    Namespaced,
}

/// The name of a namespace's contents object ([`ShardKind::Namespaced`]).
pub const NAMESPACE_CONTENTS: &str = "gmsa-contents";
/// How many specs the bench namespace's contents object holds by default: what a namespace's
/// service accounts may use, not the cluster's count.
pub const NAMESPACE_SPECS: usize = 10;
const NAMESPACED_KIND: &str = "GMSANamespaceContents";

const FROM: &str = "gmsa.windows.k8s.io/from";
const TO: &str = "gmsa.windows.k8s.io/to";

impl ShardKind {
    fn entries(self) -> &'static str {
        match self {
            ShardKind::Custom | ShardKind::Namespaced => "params.entries",
            ShardKind::ConfigMap => "params.data",
        }
    }

    fn range(self) -> (String, String) {
        match self {
            ShardKind::Custom => ("params.from".into(), "params.to".into()),
            ShardKind::ConfigMap => (
                format!("params.metadata.?annotations[?'{FROM}'].orValue('')"),
                format!("params.metadata.?annotations[?'{TO}'].orValue('')"),
            ),
            // One object answers for every name of its namespace.
            ShardKind::Namespaced => ("''".into(), "''".into()),
        }
    }

    fn param_kind(self) -> Value {
        match self {
            ShardKind::Custom => {
                json!({"apiVersion": format!("{GROUP}/{SHARD_VERSION}"), "kind": SHARD_KIND})
            }
            ShardKind::ConfigMap => json!({"apiVersion": "v1", "kind": "ConfigMap"}),
            ShardKind::Namespaced => {
                json!({"apiVersion": format!("{GROUP}/{SHARD_VERSION}"), "kind": NAMESPACED_KIND})
            }
        }
    }

    fn param_ref(self, namespace: &str) -> Value {
        match self {
            ShardKind::Custom => json!({"selector": {}, "parameterNotFoundAction": "Allow"}),
            ShardKind::ConfigMap => {
                json!({"namespace": namespace, "selector": {"matchLabels": {MODE_LABEL: NAME}},
                                           "parameterNotFoundAction": "Allow"})
            }
            // No namespace: the request's own.
            ShardKind::Namespaced => {
                json!({"name": NAMESPACE_CONTENTS, "parameterNotFoundAction": "Allow"})
            }
        }
    }

    /// The API path shards are created at.
    pub fn collection(self, namespace: &str) -> String {
        match self {
            ShardKind::Custom => format!("/apis/{GROUP}/{SHARD_VERSION}/gmsacontentsshards"),
            ShardKind::ConfigMap => format!("/api/v1/namespaces/{namespace}/configmaps"),
            ShardKind::Namespaced => {
                format!(
                    "/apis/{GROUP}/{SHARD_VERSION}/namespaces/{namespace}/gmsanamespacecontents"
                )
            }
        }
    }
}

/// The label key routing spec name `n` (CEL string): the name itself as the key's name part
/// when it fits (63), else as its prefix (a spec name is a DNS subdomain, up to 253).
pub fn route_key(n: &str) -> String {
    format!("(size({n}) <= 63 ? '{ROUTE_PREFIX}/' + {n} : {n} + '/{ROUTE_PREFIX}')")
}

/// The same, in Rust.
pub fn route_label(name: &str) -> String {
    if name.len() <= 63 {
        format!("{ROUTE_PREFIX}/{name}")
    } else {
        format!("{name}/{ROUTE_PREFIX}")
    }
}

fn labelled(n: &str) -> String {
    format!("object.metadata.?labels[?{}].hasValue()", route_key(n))
}

/// A CRD of this prototype: `kind` with its names (plural, singular), an `entries` map of
/// published contents and the given other string fields.
fn crd(kind: &str, (plural, singular): (&str, &str), scope: &str, strings: &[&str]) -> Value {
    let mut properties = json!({
        "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
        "entries": {"type": "object", "additionalProperties": {"type": "string"}}
    });
    for field in strings {
        properties[*field] = json!({"type": "string"});
    }
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{GROUP}"), "annotations": {
            gmsa_deploy::names::API_APPROVED_ANNOTATION: gmsa_deploy::names::API_APPROVED_VALUE}},
        "spec": {
            "group": GROUP, "scope": scope,
            "names": {"kind": kind, "plural": plural, "singular": singular, "listKind": format!("{kind}List")},
            "versions": [{"name": SHARD_VERSION, "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": properties}}}]
        }
    })
}

/// The CRD of the contents shards: a name range and the published contents of the specs in it.
pub fn shard_crd() -> Value {
    crd(
        SHARD_KIND,
        ("gmsacontentsshards", "gmsacontentsshard"),
        "Cluster",
        &["from", "to"],
    )
}

/// The CRD of the per-namespace contents objects: the published contents of the specs a
/// namespace may use.
pub fn namespaced_crd() -> Value {
    crd(
        NAMESPACED_KIND,
        ("gmsanamespacecontents", "gmsanamespacecontents"),
        "Namespaced",
        &[],
    )
}

/// A namespace's contents object (created in it), holding `specs`.
pub fn namespace_contents(specs: &[(String, String)]) -> Value {
    let entries: serde_json::Map<String, Value> = specs
        .iter()
        .map(|(n, c)| (n.clone(), Value::String(c.clone())))
        .collect();
    json!({
        "apiVersion": format!("{GROUP}/{SHARD_VERSION}"), "kind": NAMESPACED_KIND,
        "metadata": {"name": NAMESPACE_CONTENTS, "labels": {MODE_LABEL: NAME}},
        "entries": entries
    })
}

/// The shards for `specs` (name, contents), by sorted name: each holds a range `[from, to)`
/// (`to` empty for the last), so exactly one shard answers for any name.
pub fn shards(specs: &[(String, String)], kind: ShardKind) -> Vec<Value> {
    let mut sorted: Vec<&(String, String)> = specs.iter().collect();
    sorted.sort();
    let chunks: Vec<&[&(String, String)]> = sorted.chunks(SHARD_SIZE).collect();
    let mut out = Vec::new();
    if kind == ShardKind::Namespaced {
        return vec![namespace_contents(specs)];
    }
    for (i, chunk) in chunks.iter().enumerate() {
        let from = if i == 0 {
            String::new()
        } else {
            chunk[0].0.clone()
        };
        let to = chunks
            .get(i + 1)
            .map(|next| next[0].0.clone())
            .unwrap_or_default();
        let entries: serde_json::Map<String, Value> = chunk
            .iter()
            .map(|(n, c)| (n.clone(), Value::String(c.clone())))
            .collect();
        out.push(match kind {
            ShardKind::Custom => json!({
                "apiVersion": format!("{GROUP}/{SHARD_VERSION}"), "kind": SHARD_KIND,
                "metadata": {"name": format!("{NAME}-{i}"), "labels": {MODE_LABEL: NAME}},
                "from": from, "to": to, "entries": entries
            }),
            // (Namespaced returned above.)
            ShardKind::ConfigMap | ShardKind::Namespaced => json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("{NAME}-{i}"), "labels": {MODE_LABEL: NAME},
                             "annotations": {FROM: from, TO: to}},
                "data": entries
            }),
        });
    }
    out
}

fn pod_rules() -> Value {
    json!({
        "resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                           "resources": ["pods", "pods/ephemeralcontainers"]}],
        "matchPolicy": "Equivalent"
    })
}

/// Whether a place this request creates names some spec.
fn names_a_spec() -> String {
    let mut any = vec![format!(
        "({} && {} != '')",
        cel::CREATING,
        cel::name_of("object.spec")
    )];
    for list in cel::LISTS {
        any.push(format!(
            "{}.exists(c, {} != '')",
            cel::created(list),
            cel::name_of("c")
        ));
    }
    any.join(" || ")
}

/// The JSON Patch one shard contributes: labels for the names of its range it holds (and
/// removal of such labels for names it does not hold), contents where a place names a spec
/// it holds and has none.
fn shard_patch(kind: ShardKind) -> String {
    let entries = kind.entries();
    let holds = |n: &str| format!("{n} in {entries}");
    let key = |n: &str| format!("jsonpatch.escapeKey({})", route_key(n));
    let labels_map = format!(
        "(variables.mine.exists(n, n in {entries}) && !has(object.metadata.labels) ? \
         [JSONPatch{{op: 'add', path: '/metadata/labels', value: {{}}}}] : [])"
    );
    let add_labels = format!(
        "variables.mine.filter(n, {}).map(n, JSONPatch{{op: 'add', path: '/metadata/labels/' + {}, value: ''}})",
        holds("n"),
        key("n")
    );
    let remove_labels = format!(
        "variables.mine.filter(n, !({}) && {}).map(n, JSONPatch{{op: 'remove', path: '/metadata/labels/' + {}}})",
        holds("n"),
        labelled("n"),
        key("n")
    );
    let add = |path: String, holder: &str| {
        format!(
            "JSONPatch{{op: 'add', path: {path}, value: {entries}[{}]}}",
            cel::name_of(holder)
        )
    };
    let mut inline = vec![format!(
        "({} && {} in {entries} && !{}.hasValue() ? [{}] : [])",
        cel::CREATING,
        cel::name_of("object.spec"),
        cel::contents_of("object.spec"),
        add(
            "'/spec/securityContext/windowsOptions/gmsaCredentialSpec'".into(),
            "object.spec"
        )
    )];
    for list in cel::LISTS {
        inline.push(format!(
            "{}.filter(c, {} in {entries} && !{}.hasValue()).map(c, {})",
            cel::created_variable(list),
            cel::name_of("c"),
            cel::contents_of("c"),
            add(
                format!(
                    "'/spec/{}/' + string(object.spec.{}.indexOf(c)) + '/securityContext/windowsOptions/gmsaCredentialSpec'",
                    list.field, list.field
                ),
                "c"
            )
        ));
    }
    format!(
        "{labels_map} + {add_labels} + {remove_labels} + (variables.mutated ? {} : [])",
        inline.join(" + ")
    )
}

fn mutating_policy(kind: ShardKind) -> Value {
    let (from, to) = kind.range();
    let mut variables: Vec<Value> = cel::LISTS
        .iter()
        .map(|l| json!({"name": l.field, "expression": cel::created(*l)}))
        .collect();
    variables.push(json!({"name": "names", "expression": cel::created_names()}));
    variables.push(json!({"name": "mine", "expression": format!(
        "variables.names.filter(n, n >= {from} && ({to} == '' || n < {to}))")}));
    variables.push(json!({"name": "mutated", "expression": format!(
        "namespaceObject.metadata.?labels[?'{}'].orValue('') != '{}'",
        gmsa_deploy::names::DISABLE_LABEL, gmsa_deploy::names::DISABLE_VALUE)}));
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingAdmissionPolicy",
        "metadata": {"name": format!("{NAME}-inline"), "labels": {MODE_LABEL: NAME}},
        "spec": {
            "paramKind": kind.param_kind(),
            "matchConstraints": pod_rules(),
            "matchConditions": [{"name": "names-a-spec", "expression": names_a_spec()}],
            "variables": variables,
            "mutations": [{"patchType": "JSONPatch", "jsonPatch": {"expression": shard_patch(kind)}}],
            "failurePolicy": "Fail",
            "reinvocationPolicy": "Never"
        }
    })
}

fn mutating_binding(kind: ShardKind, namespace: &str) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingAdmissionPolicyBinding",
        "metadata": {"name": format!("{NAME}-inline"), "labels": {MODE_LABEL: NAME}},
        "spec": {"policyName": format!("{NAME}-inline"),
                 "paramRef": kind.param_ref(namespace)}
    })
}

/// Today's policies with the `use` and per-request ones renamed, the per-request one refusing
/// contents no per-spec check saw.
fn validating_policies(settings: &gmsa_deploy::Settings) -> [Value; 2] {
    let mut use_policy =
        serde_json::to_value(policies::use_policy_object(settings)).unwrap_or_default();
    use_policy["metadata"] = json!({"name": format!("{NAME}-use"), "labels": {MODE_LABEL: NAME}});
    let mut pods = serde_json::to_value(policies::pods_policy_object(settings)).unwrap_or_default();
    pods["metadata"] = json!({"name": format!("{NAME}-pods"), "labels": {MODE_LABEL: NAME}});
    let unrouted = |h: &str| {
        format!(
            "{} != '' && {}.hasValue() && !{}",
            cel::name_of(h),
            cel::contents_of(h),
            labelled(&cel::name_of(h))
        )
    };
    let mut routed = vec![(
        format!("!({} && {})", cel::CREATING, unrouted("object.spec")),
        format!(
            "'cred spec ' + {} + ' {}'",
            cel::name_of("object.spec"),
            policies::NOT_USABLE
        ),
    )];
    for list in cel::LISTS {
        let var = cel::created_variable(list);
        routed.push((
            format!("!({} && {var}.exists(c, {}))", cel::CREATING, unrouted("c")),
            format!(
                "'cred spec ' + {} + ' {}'",
                cel::name_of(&format!("{var}.filter(c, {})[0]", unrouted("c"))),
                policies::NOT_USABLE
            ),
        ));
    }
    if let Some(validations) = pods["spec"]["validations"].as_array_mut() {
        for (expression, message) in routed {
            validations.push(json!({"expression": expression, "messageExpression": message, "reason": "Invalid"}));
        }
    }
    [use_policy, pods]
}

fn binding(name: String, policy: &str, param_ref: Option<Value>, matching: Option<Value>) -> Value {
    let mut spec = json!({"policyName": format!("{NAME}-{policy}"), "validationActions": ["Deny"]});
    if let Some(p) = param_ref {
        spec["paramRef"] = p;
    }
    if let Some(m) = matching {
        spec["matchResources"] = m;
    }
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name, "labels": {MODE_LABEL: NAME}},
        "spec": spec
    })
}

/// The `use` binding of one spec: only pods labelled for it; a spec gone is refused.
pub fn use_binding(i: usize, spec: &str) -> Value {
    binding(
        format!("{NAME}-use-{i}"),
        "use",
        Some(json!({"name": spec, "parameterNotFoundAction": "Deny"})),
        Some(json!({
            "namespaceSelector": {}, "objectSelector": {"matchExpressions": [
                {"key": route_label(spec), "operator": "Exists"}]}
        })),
    )
}

/// The policies and their fixed bindings (the per-spec ones come from [`use_binding`]): new
/// ephemeral containers are checked against every spec, as today (the pod's labels cannot
/// change on that subresource).
/// The label a spec would carry from the write that changes its `credspec` (set by a mutating
/// policy on the spec itself, so synchronously) until the keeper has published the change.
pub const UNPUBLISHED_LABEL: &str = "gmsa.windows.k8s.io/unpublished";

/// One prototype's parts: where the contents live, which specs the `use` policy takes as
/// parameters, and whether each spec has a `use` binding of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prototype {
    pub kind: ShardKind,
    pub uses: UseParams,
    /// One `use` binding per spec ([`use_binding`]), routed by the label the mutation sets.
    pub per_spec_bindings: bool,
}

/// Which specs the `use` policy takes as parameters, besides the per-spec bindings of
/// `routed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UseParams {
    /// Every spec, for new ephemeral containers only (their pod's labels cannot change).
    Ephemeral,
    /// Those, and for every pod the specs labelled [`UNPUBLISHED_LABEL`].
    Unpublished,
    /// None: no `use` policy, so no informer over the specs (an immutable `credspec`).
    Nothing,
}

pub fn objects(
    settings: &gmsa_deploy::Settings,
    kind: ShardKind,
    namespace: &str,
    uses: UseParams,
) -> Vec<Value> {
    let mut out = vec![mutating_policy(kind), mutating_binding(kind, namespace)];
    let [use_policy, pods] = validating_policies(settings);
    out.push(pods);
    out.push(binding(format!("{NAME}-pods"), "pods", None, None));
    if uses == UseParams::Nothing {
        return out;
    }
    out.push(use_policy);
    if uses == UseParams::Unpublished {
        // Only the specs changed since their last publication are parameters: a pod naming
        // one is refused until the keeper has caught up.
        out.push(binding(
            format!("{NAME}-use-unpublished"),
            "use",
            Some(
                json!({"selector": {"matchLabels": {UNPUBLISHED_LABEL: "true"}},
                        "parameterNotFoundAction": "Allow"}),
            ),
            None,
        ));
    }
    out.push(binding(
        format!("{NAME}-use-ephemeral"),
        "use",
        Some(json!({"selector": {}, "parameterNotFoundAction": "Allow"})),
        Some(json!({
            "namespaceSelector": {}, "objectSelector": {},
            "resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"],
                               "resources": ["pods/ephemeralcontainers"]}]
        })),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_every_name_once_by_range() {
        let specs: Vec<(String, String)> = (0..(SHARD_SIZE * 2 + 3))
            .map(|i| (format!("spec-{i}"), format!("c{i}")))
            .collect();
        let shards = shards(&specs, ShardKind::Custom);
        assert_eq!(shards.len(), 3);
        assert_eq!(shards[0]["from"], "");
        assert_eq!(shards[2]["to"], "");
        for (name, contents) in &specs {
            let holders: Vec<&Value> = shards
                .iter()
                .filter(|s| {
                    let from = s["from"].as_str().unwrap_or_default();
                    let to = s["to"].as_str().unwrap_or_default();
                    name.as_str() >= from && (to.is_empty() || name.as_str() < to)
                })
                .collect();
            assert_eq!(holders.len(), 1, "{name}");
            assert_eq!(holders[0]["entries"][name], *contents);
        }
    }

    #[test]
    fn a_namespace_reads_its_own_contents_object() {
        let objects = objects(
            &gmsa_deploy::Settings::default(),
            ShardKind::Namespaced,
            "bench",
            UseParams::Unpublished,
        );
        let binding = &objects[1];
        assert_eq!(binding["kind"], "MutatingAdmissionPolicyBinding");
        // No namespace: the API server takes the request's.
        assert_eq!(
            binding["spec"]["paramRef"],
            json!({"name": NAMESPACE_CONTENTS, "parameterNotFoundAction": "Allow"})
        );
        let specs: Vec<(String, String)> =
            (0..3).map(|i| (format!("s{i}"), format!("c{i}"))).collect();
        let held = shards(&specs, ShardKind::Namespaced);
        assert_eq!(held.len(), 1);
        assert_eq!(held[0]["metadata"]["name"], NAMESPACE_CONTENTS);
        assert_eq!(held[0]["entries"]["s2"], "c2");
        // Without a `use` policy, nothing takes a spec as a parameter.
        let immutable = super::objects(
            &gmsa_deploy::Settings::default(),
            ShardKind::Namespaced,
            "bench",
            UseParams::Nothing,
        );
        assert_eq!(immutable.len(), 4);
        assert!(immutable
            .iter()
            .all(|o| o["metadata"]["name"].as_str() != Some("routed-use")
                && o["spec"]["policyName"].as_str() != Some("routed-use")));
        // The `use` policy's parameters are the unpublished specs only.
        assert!(objects
            .iter()
            .any(
                |o| o["spec"]["paramRef"]["selector"]["matchLabels"][UNPUBLISHED_LABEL] == "true"
            ));
    }

    #[test]
    fn long_names_route_by_prefix() {
        assert_eq!(
            route_label("webapp1"),
            "credspec.gmsa.windows.k8s.io/webapp1"
        );
        let long = "a".repeat(64);
        assert_eq!(
            route_label(&long),
            format!("{long}/credspec.gmsa.windows.k8s.io")
        );
    }
}
