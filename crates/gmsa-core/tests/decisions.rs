//! Table-driven tests of the admission decisions, end to end through the wire format:
//! `Review::read` → `needs` → `Facts::gather` → `decide` → `respond`, with the answer decoded and
//! every patch applied to the reviewed object. Messages and codes are the reference webhook's
//! (see the anchor notes); the captured reviews in `tests/data` are real API-server requests.

#![allow(clippy::unwrap_used)] // tests may panic

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use base64::Engine;
use gmsa_core::admission::Review;
use gmsa_core::decision::random_hostname;
use gmsa_core::state::State;
use gmsa_core::{AccessCheck, ClusterView, CredentialSpec, Facts, Hook, Options, SpecLookup};
use gmsa_testkit::reviews::ReviewBody;
use rand::SeedableRng;
use serde_json::{json, Value};

/// `json.Marshal` of gmsa-webapp1's `credspec`, as the reference webhook inlined it in the
/// captured validate review.
const WEBAPP1: &str = r#"{"ActiveDirectoryConfig":{"GroupManagedServiceAccounts":[{"Name":"WebApp1","Scope":"CONTOSO"},{"Name":"WebApp1","Scope":"contoso.com"}]},"CmsPlugins":["ActiveDirectory"],"DomainJoinConfig":{"DnsName":"contoso.com","DnsTreeName":"contoso.com","Guid":"244818ae-87ac-4fcd-92ec-e79e5252348a","MachineAccountName":"WebApp1","NetBiosName":"CONTOSO","Sid":"S-1-5-21-2126449477-2524075714-3094792973"}}"#;
const WEBAPP2: &str = r#"{"CmsPlugins":["ActiveDirectory"],"DomainJoinConfig":{"MachineAccountName":"WebApp2","NetBiosName":"CONTOSO"}}"#;
/// What the hostname closure returns in these tests.
const HOSTNAME: &str = "hfixedhostname1";
const POD_PATH: &str = "/spec/securityContext/windowsOptions/gmsaCredentialSpec";

fn path(list: &str, index: usize) -> String {
    format!("/spec/{list}/{index}/securityContext/windowsOptions/gmsaCredentialSpec")
}

// ---------------------------------------------------------------------------------------------
// A fake cluster
// ---------------------------------------------------------------------------------------------

/// Specs and grants by name, recording what was asked. Grants not listed are denied.
struct World {
    specs: HashMap<String, SpecLookup>,
    grants: HashMap<String, AccessCheck>,
    asked_specs: RefCell<Vec<String>>,
    asked_grants: RefCell<Vec<(String, String, String)>>,
}

impl World {
    /// webapp1, webapp2 and html exist and may be used; `nokey` has no `credspec` key;
    /// `emptykey` has `credspec: ""`; looking up `broken` fails; `missing` does not exist.
    fn new() -> Self {
        let mut specs = HashMap::new();
        let found =
            |v: Value| SpecLookup::Found(Arc::new(CredentialSpec::from_resource(&v).unwrap()));
        specs.insert(
            "webapp1".to_string(),
            found(json!({"metadata": {"name": "webapp1"}, "credspec": serde_json::from_str::<Value>(WEBAPP1).unwrap()})),
        );
        specs.insert(
            "webapp2".to_string(),
            // Keys out of order: the encoding sorts them.
            found(json!({"metadata": {"name": "webapp2"}, "credspec": {
                "DomainJoinConfig": {"NetBiosName": "CONTOSO", "MachineAccountName": "WebApp2"},
                "CmsPlugins": ["ActiveDirectory"]}})),
        );
        specs.insert(
            "html".to_string(),
            found(
                json!({"metadata": {"name": "html"}, "credspec": {"b": "<x>&y\u{2028}", "a": 1}}),
            ),
        );
        specs.insert(
            "nokey".to_string(),
            found(json!({"metadata": {"name": "nokey"}})),
        );
        specs.insert(
            "emptykey".to_string(),
            found(json!({"metadata": {"name": "emptykey"}, "credspec": ""})),
        );
        specs.insert(
            "broken".to_string(),
            SpecLookup::Failed("connection refused".to_string()),
        );
        specs.insert("missing".to_string(), SpecLookup::NotFound);
        let grants = [
            "webapp1", "webapp2", "html", "nokey", "emptykey", "broken", "missing",
        ]
        .into_iter()
        .map(|n| (n.to_string(), AccessCheck::Allowed))
        .collect();
        Self {
            specs,
            grants,
            asked_specs: RefCell::default(),
            asked_grants: RefCell::default(),
        }
    }

    fn grant(mut self, name: &str, check: AccessCheck) -> Self {
        self.grants.insert(name.to_string(), check);
        self
    }

    fn deny(self, name: &str, reason: &str) -> Self {
        self.grant(
            name,
            AccessCheck::Denied {
                reason: reason.to_string(),
            },
        )
    }
}

impl ClusterView for World {
    fn credential_spec(&self, name: &str) -> SpecLookup {
        self.asked_specs.borrow_mut().push(name.to_string());
        self.specs
            .get(name)
            .cloned()
            .unwrap_or(SpecLookup::NotFound)
    }

    fn may_use(&self, namespace: &str, service_account: &str, spec: &str) -> AccessCheck {
        self.asked_grants.borrow_mut().push((
            namespace.to_string(),
            service_account.to_string(),
            spec.to_string(),
        ));
        self.grants
            .get(spec)
            .cloned()
            .unwrap_or(AccessCheck::Denied {
                reason: String::new(),
            })
    }
}

// ---------------------------------------------------------------------------------------------
// Building reviews
// ---------------------------------------------------------------------------------------------

/// A `securityContext` with the given GMSA fields.
fn sc(name: Option<&str>, contents: Option<&str>) -> Value {
    let mut options = serde_json::Map::new();
    if let Some(n) = name {
        options.insert("gmsaCredentialSpecName".into(), n.into());
    }
    if let Some(c) = contents {
        options.insert("gmsaCredentialSpec".into(), c.into());
    }
    json!({ "windowsOptions": options })
}

fn named(name: &str) -> Value {
    sc(Some(name), None)
}

fn container(name: &str, security_context: Value) -> Value {
    json!({"name": name, "image": "mcr.microsoft.com/windows/nanoserver:ltsc2022", "securityContext": security_context})
}

fn plain(name: &str) -> Value {
    json!({"name": name, "image": "mcr.microsoft.com/windows/nanoserver:ltsc2022"})
}

/// A pod named p1 in ns1 running as sa1 unless `spec` says otherwise.
fn pod(spec: Value) -> Value {
    let mut spec = spec;
    let map = spec.as_object_mut().unwrap();
    map.entry("serviceAccountName")
        .or_insert_with(|| json!("sa1"));
    map.entry("containers")
        .or_insert_with(|| json!([plain("app")]));
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p1", "namespace": "ns1"}, "spec": spec})
}

fn review(operation: &str, subresource: Option<&str>, object: Value, old: Value) -> Vec<u8> {
    let mut review = ReviewBody::pod(object)
        .uid("4b7c0a1e-0000-4000-8000-000000000001")
        .name("p1")
        .namespace("ns1")
        .operation(operation)
        .old(old);
    if let Some(s) = subresource {
        review = review.sub_resource(s);
    }
    review.to_bytes()
}

fn create(object: Value) -> Vec<u8> {
    review("CREATE", None, object, Value::Null)
}

fn update(old: Value, new: Value) -> Vec<u8> {
    review("UPDATE", None, new, old)
}

fn ephemeral(old: Value, new: Value) -> Vec<u8> {
    review("UPDATE", Some("ephemeralcontainers"), new, old)
}

// ---------------------------------------------------------------------------------------------
// Expected patches, written with serde_json (whose escaping of `"` and `\` is Go's) so the
// expectation does not come from the code under test.
// ---------------------------------------------------------------------------------------------

fn add(path: &str, value: &str) -> String {
    format!(
        r#"{{"op":"add","path":{},"value":{}}}"#,
        serde_json::to_string(path).unwrap(),
        serde_json::to_string(value).unwrap()
    )
}

fn patch(ops: &[String]) -> String {
    format!("[{}]", ops.join(","))
}

// ---------------------------------------------------------------------------------------------
// Running a review
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Want {
    /// Allowed with no patch.
    Allow,
    /// Allowed with exactly this JSON Patch text.
    Patch(String),
    /// Denied with this code and exactly this message.
    Deny(u16, String),
    /// Denied with this code and a message starting with this text.
    DenyPrefix(u16, String),
}

fn deny(code: u16, message: &str) -> Want {
    Want::Deny(code, message.to_string())
}

/// The decoded answer.
#[derive(Debug)]
struct Answer {
    api_version: String,
    uid: String,
    allowed: bool,
    code: Option<u64>,
    message: Option<String>,
    patch: Option<String>,
    hostname_calls: usize,
}

fn run(hook: Hook, body: &[u8], view: &impl ClusterView, options: Options) -> Answer {
    let review = Review::read(hook, body);
    let facts = Facts::gather(&review.needs(), view);
    let calls = Cell::new(0);
    let answer = review.decide(&facts, options, || {
        calls.set(calls.get() + 1);
        HOSTNAME.to_string()
    });
    let bytes = review.respond(&answer);
    let verdict = answer.verdict;
    let out: Value = serde_json::from_slice(&bytes).expect("the answer is JSON");
    assert_eq!(out["kind"], "AdmissionReview");
    let response = out["response"].as_object().expect("a response object");
    let allowed = response["allowed"].as_bool().expect("allowed is a boolean");
    assert_eq!(allowed, verdict.is_allowed());
    let patch = response.get("patch").map(|p| {
        let b64 = p.as_str().expect("the patch is a base64 string");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("valid base64");
        String::from_utf8(raw).expect("UTF-8 patch")
    });
    // patchType exactly when there is a patch; status exactly when denied.
    assert_eq!(
        response.get("patchType").map(|t| t.as_str()),
        patch.as_ref().map(|_| Some("JSONPatch"))
    );
    assert_eq!(response.contains_key("status"), !allowed, "{out}");
    let mut keys: Vec<&str> = response.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let want_keys: &[&str] = match (allowed, patch.is_some()) {
        (true, true) => &["allowed", "patch", "patchType", "uid"],
        (true, false) => &["allowed", "uid"],
        (false, _) => &["allowed", "status", "uid"],
    };
    assert_eq!(keys, want_keys, "{out}");
    assert!(calls.get() <= 1, "the hostname is generated at most once");
    Answer {
        api_version: out["apiVersion"].as_str().unwrap_or_default().to_string(),
        uid: response["uid"].as_str().unwrap_or_default().to_string(),
        allowed,
        code: response
            .get("status")
            .map(|s| s["code"].as_u64().expect("status.code")),
        message: response
            .get("status")
            .map(|s| s["message"].as_str().expect("status.message").to_string()),
        patch,
        hostname_calls: calls.get(),
    }
}

/// Applies a JSON Patch text to a copy of `object`, checking every added value landed.
fn apply(object: &Value, patch_text: &str) -> Value {
    let patch: json_patch::Patch = serde_json::from_str(patch_text).expect("a JSON Patch document");
    let mut doc = object.clone();
    json_patch::patch(&mut doc, &patch)
        .unwrap_or_else(|e| panic!("patch {patch_text} does not apply: {e}"));
    let ops: Vec<Value> = serde_json::from_str(patch_text).unwrap();
    for op in &ops {
        // Go's map[string]string marshals keys sorted: op, path, value.
        let keys: Vec<&String> = op.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 3);
        assert_eq!(op["op"], "add");
        let pointer = op["path"].as_str().unwrap();
        assert_eq!(
            doc.pointer(pointer),
            Some(&op["value"]),
            "{pointer} after patching"
        );
    }
    doc
}

fn check(
    name: &str,
    hook: Hook,
    body: &[u8],
    world: &World,
    options: Options,
    want: &Want,
) -> Answer {
    let answer = run(hook, body, world, options);
    assert_eq!(answer.api_version, "admission.k8s.io/v1", "{name}");
    assert_eq!(answer.uid, "4b7c0a1e-0000-4000-8000-000000000001", "{name}");
    match want {
        Want::Allow => {
            assert!(answer.allowed, "{name}: {answer:?}");
            assert_eq!(answer.patch, None, "{name}");
        }
        Want::Patch(text) => {
            assert!(answer.allowed, "{name}: {answer:?}");
            assert_eq!(answer.patch.as_deref(), Some(text.as_str()), "{name}");
            let request: Value = serde_json::from_slice(body).unwrap();
            apply(&request["request"]["object"], text);
        }
        Want::Deny(code, message) => {
            assert!(!answer.allowed, "{name}: {answer:?}");
            assert_eq!(answer.code, Some(u64::from(*code)), "{name}: {answer:?}");
            assert_eq!(answer.message.as_deref(), Some(message.as_str()), "{name}");
        }
        Want::DenyPrefix(code, prefix) => {
            assert!(!answer.allowed, "{name}: {answer:?}");
            assert_eq!(answer.code, Some(u64::from(*code)), "{name}: {answer:?}");
            let message = answer.message.clone().unwrap_or_default();
            assert!(
                message.starts_with(prefix.as_str()),
                "{name}: {message:?} should start with {prefix:?}"
            );
            assert!(
                message.len() > prefix.len(),
                "{name}: {message:?} should name the error"
            );
        }
    }
    let hostname_added = answer
        .patch
        .as_deref()
        .is_some_and(|p| p.contains(r#""path":"/spec/hostname""#));
    assert_eq!(answer.hostname_calls, usize::from(hostname_added), "{name}");
    answer
}

struct Case {
    name: &'static str,
    body: Vec<u8>,
    world: World,
    options: Options,
    want: Want,
}

fn case(name: &'static str, body: Vec<u8>, want: Want) -> Case {
    Case {
        name,
        body,
        world: World::new(),
        options: Options::default(),
        want,
    }
}

impl Case {
    fn world(mut self, world: World) -> Self {
        self.world = world;
        self
    }

    fn random_hostname(mut self) -> Self {
        self.options.random_hostname = true;
        self
    }
}

fn run_table(hook: Hook, cases: Vec<Case>) {
    let mut names = BTreeSet::new();
    for c in &cases {
        assert!(names.insert(c.name), "duplicate case name {}", c.name);
        check(c.name, hook, &c.body, &c.world, c.options, &c.want);
    }
}

// ---------------------------------------------------------------------------------------------
// Mutate
// ---------------------------------------------------------------------------------------------

#[test]
fn mutate_create() {
    let html_value = r#"{"a":1,"b":"\u003cx\u003e\u0026y\u2028"}"#;
    let cases = vec![
        case("no GMSA anywhere", create(pod(json!({}))), Want::Allow),
        case(
            "windowsOptions without GMSA fields",
            create(pod(json!({"securityContext": {"windowsOptions": {"runAsUserName": "ContainerUser"}}}))),
            Want::Allow,
        ),
        case(
            "pod level",
            create(pod(json!({"securityContext": named("webapp1")}))),
            Want::Patch(patch(&[add(POD_PATH, WEBAPP1)])),
        ),
        case(
            "pod level, exact bytes",
            create(pod(json!({"securityContext": named("webapp2")}))),
            Want::Patch(
                r#"[{"op":"add","path":"/spec/securityContext/windowsOptions/gmsaCredentialSpec","value":"{\"CmsPlugins\":[\"ActiveDirectory\"],\"DomainJoinConfig\":{\"MachineAccountName\":\"WebApp2\",\"NetBiosName\":\"CONTOSO\"}}"}]"#
                    .to_string(),
            ),
        ),
        case(
            "HTML characters escaped as Go does",
            create(pod(json!({"securityContext": named("html")}))),
            Want::Patch(
                r#"[{"op":"add","path":"/spec/securityContext/windowsOptions/gmsaCredentialSpec","value":"{\"a\":1,\"b\":\"\\u003cx\\u003e\\u0026y\\u2028\"}"}]"#
                    .to_string(),
            ),
        ),
        case(
            "HTML characters, same as add()",
            create(pod(json!({"securityContext": named("html")}))),
            Want::Patch(patch(&[add(POD_PATH, html_value)])),
        ),
        case(
            "second container",
            create(pod(json!({"containers": [plain("c0"), container("c1", named("webapp1"))]}))),
            Want::Patch(patch(&[add(&path("containers", 1), WEBAPP1)])),
        ),
        case(
            "init container",
            create(pod(json!({"initContainers": [container("i0", named("webapp2"))]}))),
            Want::Patch(patch(&[add(&path("initContainers", 0), WEBAPP2)])),
        ),
        case(
            "ephemeral container on create",
            create(pod(json!({"ephemeralContainers": [plain("e0"), container("e1", named("webapp2"))]}))),
            Want::Patch(patch(&[add(&path("ephemeralContainers", 1), WEBAPP2)])),
        ),
        case(
            "every place, in order pod, containers, init, ephemeral",
            create(pod(json!({
                "ephemeralContainers": [container("e0", named("webapp1"))],
                "initContainers": [container("i0", named("webapp2")), container("i1", named("webapp1"))],
                "containers": [container("c0", named("webapp2")), plain("c1"), container("c2", named("webapp1"))],
                "securityContext": named("webapp1"),
            }))),
            Want::Patch(patch(&[
                add(POD_PATH, WEBAPP1),
                add(&path("containers", 0), WEBAPP2),
                add(&path("containers", 2), WEBAPP1),
                add(&path("initContainers", 0), WEBAPP2),
                add(&path("initContainers", 1), WEBAPP1),
                add(&path("ephemeralContainers", 0), WEBAPP1),
            ])),
        ),
        case(
            "windowsOptions keeps its other fields",
            create(pod(json!({"containers": [container("c0", json!({"runAsUser": 0, "windowsOptions": {
                "gmsaCredentialSpecName": "webapp1", "runAsUserName": "ContainerAdministrator", "hostProcess": false}}))]}))),
            Want::Patch(patch(&[add(&path("containers", 0), WEBAPP1)])),
        ),
        case(
            "pre-set contents are never overwritten",
            create(pod(json!({"securityContext": sc(Some("webapp1"), Some("{\"mine\":true}"))}))),
            Want::Allow,
        ),
        case(
            "pre-set contents kept, other places filled",
            create(pod(json!({
                "securityContext": sc(Some("webapp1"), Some("whatever")),
                "containers": [container("c0", sc(Some("webapp2"), Some(""))), container("c1", named("webapp2"))],
            }))),
            Want::Patch(patch(&[add(&path("containers", 1), WEBAPP2)])),
        ),
        case(
            "pre-set contents of a missing spec are not looked up",
            create(pod(json!({"securityContext": sc(Some("missing"), Some("{}"))}))),
            Want::Allow,
        ),
        case(
            "contents without a name are left to validation",
            create(pod(json!({"securityContext": sc(None, Some("{}"))}))),
            Want::Allow,
        ),
        case(
            "missing spec",
            create(pod(json!({"securityContext": named("missing")}))),
            deny(404, "cred spec missing does not exist"),
        ),
        case(
            "lookup failure",
            create(pod(json!({"containers": [container("c0", named("broken"))]}))),
            deny(500, "unable to retrieve the contents of cred spec broken: connection refused"),
        ),
        case(
            "spec without a credspec key",
            create(pod(json!({"initContainers": [container("i0", named("nokey"))]}))),
            deny(417, "cred spec nokey does not have a credspec key"),
        ),
        case(
            "spec with an empty credspec string",
            create(pod(json!({"securityContext": named("emptykey")}))),
            deny(417, "cred spec emptykey does not have a credspec key"),
        ),
        case(
            "first problem wins: pod level before containers",
            create(pod(json!({
                "securityContext": named("nokey"),
                "containers": [container("c0", named("missing"))],
            }))),
            deny(417, "cred spec nokey does not have a credspec key"),
        ),
        case(
            "first problem wins: containers before init containers",
            create(pod(json!({
                "initContainers": [container("i0", named("nokey"))],
                "containers": [container("c0", named("webapp1")), container("c1", named("missing"))],
            }))),
            deny(404, "cred spec missing does not exist"),
        ),
        case(
            "first problem wins: init before ephemeral",
            create(pod(json!({
                "ephemeralContainers": [container("e0", named("missing"))],
                "initContainers": [container("i0", named("broken"))],
            }))),
            deny(500, "unable to retrieve the contents of cred spec broken: connection refused"),
        ),
        case(
            "random hostname added last when a place names a spec",
            create(pod(json!({"containers": [container("c0", named("webapp1"))]}))),
            Want::Patch(patch(&[add(&path("containers", 0), WEBAPP1), add("/spec/hostname", HOSTNAME)])),
        )
        .random_hostname(),
        case(
            "random hostname with only pre-set contents",
            create(pod(json!({"securityContext": sc(Some("webapp1"), Some(WEBAPP1))}))),
            Want::Patch(patch(&[add("/spec/hostname", HOSTNAME)])),
        )
        .random_hostname(),
        case(
            "random hostname with an empty hostname",
            create(pod(json!({"hostname": "", "securityContext": named("webapp2")}))),
            Want::Patch(patch(&[add(POD_PATH, WEBAPP2), add("/spec/hostname", HOSTNAME)])),
        )
        .random_hostname(),
        case(
            "random hostname keeps a set hostname",
            create(pod(json!({"hostname": "web-1", "securityContext": named("webapp1")}))),
            Want::Patch(patch(&[add(POD_PATH, WEBAPP1)])),
        )
        .random_hostname(),
        case(
            "random hostname not for pods without GMSA",
            create(pod(json!({"containers": [plain("c0")]}))),
            Want::Allow,
        )
        .random_hostname(),
        case(
            "random hostname not for contents without a name",
            create(pod(json!({"securityContext": sc(None, Some(WEBAPP1))}))),
            Want::Allow,
        )
        .random_hostname(),
        case(
            "random hostname not on a refused pod",
            create(pod(json!({"securityContext": named("missing")}))),
            deny(404, "cred spec missing does not exist"),
        )
        .random_hostname(),
        case(
            "no hostname without RANDOM_HOSTNAME",
            create(pod(json!({"securityContext": named("webapp1")}))),
            Want::Patch(patch(&[add(POD_PATH, WEBAPP1)])),
        ),
    ];
    run_table(Hook::Mutate, cases);
}

#[test]
fn mutate_update() {
    let old = pod(
        json!({"containers": [plain("c0")], "ephemeralContainers": [container("e0", named("webapp1"))]}),
    );
    let with_names = pod(json!({
        "securityContext": named("webapp1"),
        "containers": [container("c0", named("webapp2"))],
        "ephemeralContainers": [container("e0", named("webapp1"))],
    }));
    let cases = vec![
        case(
            "plain update is allowed unpatched",
            update(old.clone(), with_names.clone()),
            Want::Allow,
        ),
        case(
            "plain update is allowed even naming missing specs",
            update(
                old.clone(),
                pod(json!({"securityContext": named("missing")})),
            ),
            Want::Allow,
        ),
        case(
            "plain update gets no random hostname",
            update(old.clone(), with_names),
            Want::Allow,
        )
        .random_hostname(),
        case(
            "ephemeral: only the new container is patched",
            ephemeral(
                pod(json!({
                    "securityContext": named("webapp1"),
                    "containers": [container("c0", named("webapp2"))],
                    "ephemeralContainers": [container("e0", named("webapp1"))],
                })),
                pod(json!({
                    "securityContext": named("webapp1"),
                    "containers": [container("c0", named("webapp2"))],
                    "ephemeralContainers": [container("e0", named("webapp1")), plain("e1"), container("e2", named("webapp2"))],
                })),
            ),
            Want::Patch(patch(&[add(&path("ephemeralContainers", 2), WEBAPP2)])),
        ),
        case(
            "ephemeral: first ephemeral container",
            ephemeral(
                pod(json!({})),
                pod(json!({"ephemeralContainers": [container("debug", named("webapp1"))]})),
            ),
            Want::Patch(patch(&[add(&path("ephemeralContainers", 0), WEBAPP1)])),
        ),
        case(
            "ephemeral: pre-set contents kept",
            ephemeral(
                pod(json!({})),
                pod(
                    json!({"ephemeralContainers": [container("debug", sc(Some("webapp1"), Some(WEBAPP1)))]}),
                ),
            ),
            Want::Allow,
        ),
        case(
            "ephemeral: no hostname",
            ephemeral(
                pod(json!({})),
                pod(json!({"ephemeralContainers": [container("debug", named("webapp1"))]})),
            ),
            Want::Patch(patch(&[add(&path("ephemeralContainers", 0), WEBAPP1)])),
        )
        .random_hostname(),
        case(
            "ephemeral: new container naming a missing spec",
            ephemeral(
                pod(json!({"ephemeralContainers": [container("e0", named("missing"))]})),
                pod(
                    json!({"ephemeralContainers": [container("e0", named("missing")), container("e1", named("missing"))]}),
                ),
            ),
            deny(404, "cred spec missing does not exist"),
        ),
        case(
            "ephemeral: existing containers are not looked up",
            ephemeral(
                pod(json!({"ephemeralContainers": [container("e0", named("broken"))]})),
                pod(
                    json!({"ephemeralContainers": [container("e0", named("broken")), plain("e1")]}),
                ),
            ),
            Want::Allow,
        ),
        case(
            "ephemeral: missing old object",
            review(
                "UPDATE",
                Some("ephemeralcontainers"),
                pod(json!({})),
                Value::Null,
            ),
            deny(
                400,
                "unable to unmarshall pod JSON object: unexpected end of JSON input",
            ),
        ),
    ];
    run_table(Hook::Mutate, cases);
}

#[test]
fn mutate_asks_only_for_specs_without_contents() {
    let world = World::new();
    let body = create(pod(json!({
        "securityContext": named("webapp1"),
        "containers": [container("c0", sc(Some("webapp2"), Some("x"))), container("c1", named("webapp1"))],
        "initContainers": [container("i0", named("html"))],
    })));
    let review = Review::read(Hook::Mutate, &body);
    let needs = review.needs();
    assert_eq!(
        needs.specs,
        BTreeSet::from(["webapp1".to_string(), "html".to_string()])
    );
    assert!(needs.grants.is_empty());
    run(Hook::Mutate, &body, &world, Options::default());
    let mut asked = world.asked_specs.borrow().clone();
    asked.sort();
    assert_eq!(asked, ["html", "webapp1"]);
    assert!(world.asked_grants.borrow().is_empty());

    let update_body = update(
        pod(json!({})),
        pod(json!({"securityContext": named("webapp1")})),
    );
    assert!(Review::read(Hook::Mutate, &update_body).needs().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Validate
// ---------------------------------------------------------------------------------------------

#[test]
fn validate_create() {
    let pretty =
        serde_json::to_string_pretty(&serde_json::from_str::<Value>(WEBAPP1).unwrap()).unwrap();
    let reordered = r#"{ "DomainJoinConfig": {"Sid":"S-1-5-21-2126449477-2524075714-3094792973","NetBiosName":"CONTOSO",
        "MachineAccountName":"WebApp1","Guid":"244818ae-87ac-4fcd-92ec-e79e5252348a","DnsTreeName":"contoso.com","DnsName":"contoso.com"},
        "CmsPlugins":["ActiveDirectory"],
        "ActiveDirectoryConfig":{"GroupManagedServiceAccounts":[{"Scope":"CONTOSO","Name":"WebApp1"},{"Name":"WebApp1","Scope":"contoso.com"}]} }"#;
    let swapped = WEBAPP1
        .replace(r#""Scope":"CONTOSO""#, r#""Scope":"TMP""#)
        .replace(r#""Scope":"contoso.com""#, r#""Scope":"CONTOSO""#)
        .replace(r#""Scope":"TMP""#, r#""Scope":"contoso.com""#);
    let not_authorized = |sa: &str, spec: &str| {
        format!("service account \"{sa}\" is not authorized to `use` GMSA cred spec \"{spec}\"")
    };
    let cases = vec![
        case("no GMSA anywhere", create(pod(json!({}))), Want::Allow),
        case(
            "authorized name without contents",
            create(pod(json!({"securityContext": named("webapp1")}))),
            Want::Allow,
        ),
        case(
            "unauthorized, no reason",
            create(pod(json!({"securityContext": named("webapp1")}))),
            Want::Deny(403, not_authorized("sa1", "webapp1")),
        )
        .world(World::new().deny("webapp1", "")),
        case(
            "unauthorized, with reason",
            create(pod(json!({"containers": [container("c0", named("webapp1"))]}))),
            Want::Deny(403, format!("{}, reason: \"no RBAC policy matched\"", not_authorized("sa1", "webapp1"))),
        )
        .world(World::new().deny("webapp1", "no RBAC policy matched")),
        case(
            "unauthorized, reason quoted as Go's %q",
            create(pod(json!({"containers": [container("c0", named("webapp1"))]}))),
            Want::Deny(
                403,
                format!(r#"{}, reason: "RBAC: \"x\" <y> & z\n""#, not_authorized("sa1", "webapp1")),
            ),
        )
        .world(World::new().deny("webapp1", "RBAC: \"x\" <y> & z\n")),
        case(
            "unauthorized, empty service account quoted as written",
            create(pod(json!({"serviceAccountName": "", "initContainers": [container("i0", named("webapp2"))]}))),
            Want::Deny(403, not_authorized("", "webapp2")),
        )
        .world(World::new().deny("webapp2", "")),
        case(
            "unauthorized, absent service account quoted as empty",
            create(json!({"metadata": {"name": "p1"}, "spec": {"containers": [container("c0", named("webapp2"))]}})),
            Want::Deny(403, not_authorized("", "webapp2")),
        )
        .world(World::new().deny("webapp2", "")),
        case(
            "unknown spec names are refused by RBAC first",
            create(pod(json!({"securityContext": named("unknown")}))),
            Want::Deny(403, not_authorized("sa1", "unknown")),
        ),
        case(
            "access review failure",
            create(pod(json!({"securityContext": named("webapp1")}))),
            deny(
                500,
                "unable to check whether service account \"sa1\" may `use` GMSA cred spec \"webapp1\": localsubjectaccessreviews.authorization.k8s.io is forbidden",
            ),
        )
        .world(World::new().grant(
            "webapp1",
            AccessCheck::Failed("localsubjectaccessreviews.authorization.k8s.io is forbidden".to_string()),
        )),
        case(
            "pre-set contents, same bytes",
            create(pod(json!({"securityContext": sc(Some("webapp1"), Some(WEBAPP1))}))),
            Want::Allow,
        ),
        case(
            "pre-set contents, indented",
            create(pod(json!({"containers": [container("c0", sc(Some("webapp1"), Some(&pretty)))]}))),
            Want::Allow,
        ),
        case(
            "pre-set contents, keys in another order",
            create(pod(json!({"initContainers": [container("i0", sc(Some("webapp1"), Some(reordered)))]}))),
            Want::Allow,
        ),
        case(
            "pre-set contents, HTML escapes or not",
            create(pod(json!({"ephemeralContainers": [container("e0", sc(Some("html"), Some("{\"b\":\"<x>&y\u{2028}\",\"a\":1.0}")))]}))),
            Want::Allow,
        ),
        case(
            "pre-set contents mismatched on the pod",
            create(pod(json!({"securityContext": sc(Some("webapp1"), Some(WEBAPP2))}))),
            deny(422, "the GMSA cred spec contents for pod \"p1\" does not match the contents of GMSA resource \"webapp1\""),
        ),
        case(
            "pre-set contents mismatched on a container",
            create(pod(json!({"containers": [plain("c0"), container("iis", sc(Some("webapp1"), Some("{}")))]}))),
            deny(422, "the GMSA cred spec contents for container \"iis\" does not match the contents of GMSA resource \"webapp1\""),
        ),
        case(
            "pre-set contents mismatched on an init container",
            create(pod(json!({"initContainers": [container("setup", sc(Some("webapp2"), Some(WEBAPP1)))]}))),
            deny(422, "the GMSA cred spec contents for init container \"setup\" does not match the contents of GMSA resource \"webapp2\""),
        ),
        case(
            "pre-set contents mismatched on an ephemeral container",
            create(pod(json!({"ephemeralContainers": [container("debug", sc(Some("webapp2"), Some("{\"CmsPlugins\":[]}")))]}))),
            deny(422, "the GMSA cred spec contents for ephemeral container \"debug\" does not match the contents of GMSA resource \"webapp2\""),
        ),
        case(
            "pre-set contents, array order matters",
            create(pod(json!({"securityContext": sc(Some("webapp1"), Some(&swapped))}))),
            deny(422, "the GMSA cred spec contents for pod \"p1\" does not match the contents of GMSA resource \"webapp1\""),
        ),
        case(
            "pre-set contents not JSON",
            create(pod(json!({"containers": [container("c0", sc(Some("webapp1"), Some("<not json & \"quoted\">")))]}))),
            Want::DenyPrefix(
                422,
                r#"the GMSA cred spec contents for container "c0" does not match the contents of GMSA resource "webapp1": unable to parse "<not json & \"quoted\">" as a JSON object: "#
                    .to_string(),
            ),
        ),
        case(
            "pre-set contents a JSON array",
            create(pod(json!({"securityContext": sc(Some("webapp1"), Some("[1,2]"))}))),
            Want::DenyPrefix(
                422,
                r#"the GMSA cred spec contents for pod "p1" does not match the contents of GMSA resource "webapp1": unable to parse "[1,2]" as a JSON object: "#
                    .to_string(),
            ),
        ),
        case(
            "pre-set contents empty",
            create(pod(json!({"securityContext": sc(Some("webapp1"), Some(""))}))),
            Want::DenyPrefix(
                422,
                r#"the GMSA cred spec contents for pod "p1" does not match the contents of GMSA resource "webapp1": unable to parse "" as a JSON object: "#
                    .to_string(),
            ),
        ),
        case(
            "pre-set contents of a missing spec",
            create(pod(json!({"securityContext": sc(Some("missing"), Some("{}"))}))),
            deny(404, "cred spec missing does not exist"),
        ),
        case(
            "pre-set contents, lookup failure",
            create(pod(json!({"securityContext": sc(Some("broken"), Some("{}"))}))),
            deny(500, "unable to retrieve the contents of cred spec broken: connection refused"),
        ),
        case(
            "pre-set contents, spec without credspec key",
            create(pod(json!({"securityContext": sc(Some("nokey"), Some("{}"))}))),
            deny(417, "cred spec nokey does not have a credspec key"),
        ),
        case(
            "contents without a name on the pod",
            create(pod(json!({"securityContext": sc(None, Some(WEBAPP1))}))),
            deny(422, "pod \"p1\" has a GMSA cred spec set, but does not define the name of the corresponding resource"),
        ),
        case(
            "contents without a name on a pod with generateName",
            create(json!({"metadata": {"generateName": "web-"}, "spec": {"securityContext": sc(None, Some("{}")), "containers": [plain("c")]}})),
            deny(422, "pod \"\" has a GMSA cred spec set, but does not define the name of the corresponding resource"),
        ),
        case(
            "contents without a name on a container",
            create(pod(json!({"containers": [container("c0", sc(None, Some("{}")))]}))),
            deny(422, "container \"c0\" has a GMSA cred spec set, but does not define the name of the corresponding resource"),
        ),
        case(
            "contents without a name on an init container",
            create(pod(json!({"initContainers": [container("i0", sc(None, Some("{}")))]}))),
            deny(422, "init container \"i0\" has a GMSA cred spec set, but does not define the name of the corresponding resource"),
        ),
        case(
            "contents without a name on an ephemeral container",
            create(pod(json!({"ephemeralContainers": [container("e0", sc(None, Some("{}")))]}))),
            deny(422, "ephemeral container \"e0\" has a GMSA cred spec set, but does not define the name of the corresponding resource"),
        ),
        case(
            "authorization is checked before contents",
            create(pod(json!({"securityContext": sc(Some("webapp1"), Some("nonsense"))}))),
            Want::Deny(403, not_authorized("sa1", "webapp1")),
        )
        .world(World::new().deny("webapp1", "")),
        case(
            "first problem wins: pod before containers",
            create(pod(json!({
                "securityContext": sc(Some("webapp1"), Some("{}")),
                "containers": [container("c0", named("webapp2"))],
            }))),
            Want::Deny(422, "the GMSA cred spec contents for pod \"p1\" does not match the contents of GMSA resource \"webapp1\"".to_string()),
        )
        .world(World::new().deny("webapp2", "")),
        case(
            "first problem wins: container order",
            create(pod(json!({"containers": [container("c0", sc(None, Some("{}"))), container("c1", named("webapp2"))]}))),
            deny(422, "container \"c0\" has a GMSA cred spec set, but does not define the name of the corresponding resource"),
        ),
        case(
            "first problem wins: containers before init containers",
            create(pod(json!({
                "initContainers": [container("i0", named("webapp1"))],
                "containers": [container("c0", named("webapp2"))],
            }))),
            Want::Deny(403, not_authorized("sa1", "webapp2")),
        )
        .world(World::new().deny("webapp1", "").deny("webapp2", "")),
        case(
            "first problem wins: init before ephemeral",
            create(pod(json!({
                "ephemeralContainers": [container("e0", sc(None, Some("{}")))],
                "initContainers": [container("i0", sc(Some("webapp1"), Some("{}")))],
            }))),
            deny(422, "the GMSA cred spec contents for init container \"i0\" does not match the contents of GMSA resource \"webapp1\""),
        ),
        case(
            "several places, all fine",
            create(pod(json!({
                "securityContext": named("webapp1"),
                "containers": [container("c0", sc(Some("webapp2"), Some(WEBAPP2))), plain("c1")],
                "initContainers": [container("i0", sc(Some("webapp1"), Some(&pretty)))],
                "ephemeralContainers": [container("e0", named("html"))],
            }))),
            Want::Allow,
        ),
    ];
    run_table(Hook::Validate, cases);
}

#[test]
fn validate_asks_for_default_when_the_service_account_is_empty() {
    for spec in [
        json!({"serviceAccountName": ""}),
        json!({"serviceAccountName": null}),
        json!({}),
    ] {
        let mut pod = pod(spec);
        let map = pod["spec"].as_object_mut().unwrap();
        if map["serviceAccountName"] == "sa1" {
            map.remove("serviceAccountName");
        }
        map.insert("securityContext".into(), sc(Some("webapp1"), Some(WEBAPP1)));
        let world = World::new().deny("webapp1", "");
        let answer = run(Hook::Validate, &create(pod), &world, Options::default());
        assert_eq!(
            answer.message.as_deref(),
            Some("service account \"\" is not authorized to `use` GMSA cred spec \"webapp1\"")
        );
        assert_eq!(
            *world.asked_grants.borrow(),
            [(
                "ns1".to_string(),
                "default".to_string(),
                "webapp1".to_string()
            )]
        );
        assert!(world.asked_specs.borrow().iter().all(|s| s == "webapp1"));
    }
}

#[test]
fn validate_asks_for_each_named_spec_and_contents_only_when_pre_set() {
    let world = World::new();
    let body = create(pod(json!({
        "serviceAccountName": "builder",
        "securityContext": named("webapp1"),
        "containers": [container("c0", sc(Some("webapp2"), Some(WEBAPP2))), container("c1", named("webapp1"))],
    })));
    let needs = Review::read(Hook::Validate, &body).needs();
    assert_eq!(needs.namespace, "ns1");
    assert_eq!(needs.service_account, "builder");
    assert_eq!(
        needs.grants,
        BTreeSet::from(["webapp1".to_string(), "webapp2".to_string()])
    );
    assert_eq!(needs.specs, BTreeSet::from(["webapp2".to_string()]));
    let answer = run(Hook::Validate, &body, &world, Options::default());
    assert!(answer.allowed);
    let mut grants = world.asked_grants.borrow().clone();
    grants.sort();
    assert_eq!(
        grants,
        [
            (
                "ns1".to_string(),
                "builder".to_string(),
                "webapp1".to_string()
            ),
            (
                "ns1".to_string(),
                "builder".to_string(),
                "webapp2".to_string()
            ),
        ]
    );
    assert_eq!(*world.asked_specs.borrow(), ["webapp2"]);
}

#[test]
fn validate_update() {
    let base = || {
        json!({
            "serviceAccountName": "sa1",
            "securityContext": sc(Some("webapp1"), Some(WEBAPP1)),
            "containers": [container("c", sc(Some("webapp2"), Some(WEBAPP2))), plain("side")],
            "initContainers": [container("i", sc(Some("webapp1"), Some(WEBAPP1)))],
        })
    };
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut spec = base();
        edit(&mut spec);
        pod(spec)
    };
    let modified = |what: &str, kind: &str, res: &str| {
        format!("cannot update an existing pod's GMSA settings (GMSA {what} modified on {kind} \"{res}\")")
    };
    let cases = vec![
        case(
            "nothing changed",
            update(with(&|_| {}), with(&|_| {})),
            Want::Allow,
        ),
        case(
            "other fields changed",
            update(
                with(&|_| {}),
                with(&|s| {
                    s["containers"][0]["image"] = json!("other");
                    s["activeDeadlineSeconds"] = json!(30);
                }),
            ),
            Want::Allow,
        ),
        case(
            "containers reordered",
            update(
                with(&|_| {}),
                with(&|s| {
                    let c = s["containers"].as_array_mut().unwrap();
                    c.reverse();
                }),
            ),
            Want::Allow,
        ),
        case(
            "unauthorized names are not re-checked",
            update(with(&|_| {}), with(&|_| {})),
            Want::Allow,
        )
        .world(World::new().deny("webapp1", "").deny("webapp2", "")),
        case(
            "name modified on container",
            update(
                with(&|_| {}),
                with(&|s| {
                    s["containers"][0]["securityContext"]["windowsOptions"]
                        ["gmsaCredentialSpecName"] = json!("webapp1")
                }),
            ),
            Want::Deny(403, modified("name", "container", "c")),
        ),
        case(
            "contents modified on container",
            update(
                with(&|_| {}),
                with(&|s| {
                    s["containers"][0]["securityContext"]["windowsOptions"]["gmsaCredentialSpec"] =
                        json!(WEBAPP1)
                }),
            ),
            Want::Deny(403, modified("contents", "container", "c")),
        ),
        case(
            "contents re-encoded counts as modified",
            update(
                with(&|_| {}),
                with(&|s| {
                    s["securityContext"]["windowsOptions"]["gmsaCredentialSpec"] =
                        json!(format!(" {WEBAPP1}"))
                }),
            ),
            Want::Deny(403, modified("contents", "pod", "p1")),
        ),
        case(
            "name and contents modified on container",
            update(
                with(&|_| {}),
                with(&|s| {
                    s["containers"][0]["securityContext"] = sc(Some("webapp1"), Some(WEBAPP1))
                }),
            ),
            Want::Deny(403, modified("name and contents", "container", "c")),
        ),
        case(
            "name modified on pod",
            update(
                with(&|_| {}),
                with(&|s| {
                    s["securityContext"]["windowsOptions"]["gmsaCredentialSpecName"] =
                        json!("webapp2")
                }),
            ),
            Want::Deny(403, modified("name", "pod", "p1")),
        ),
        case(
            "name and contents modified on init container",
            update(
                with(&|_| {}),
                with(&|s| {
                    s["initContainers"][0]["securityContext"] = sc(Some("webapp2"), Some(WEBAPP2))
                }),
            ),
            Want::Deny(403, modified("name and contents", "init container", "i")),
        ),
        case(
            "GMSA added to a container",
            update(
                with(&|_| {}),
                with(&|s| s["containers"][1]["securityContext"] = named("webapp1")),
            ),
            Want::Deny(403, modified("name", "container", "side")),
        ),
        case(
            "GMSA added to a pod without one",
            update(
                with(&|s| {
                    s.as_object_mut().unwrap().remove("securityContext");
                }),
                with(&|_| {}),
            ),
            Want::Deny(403, modified("name and contents", "pod", "p1")),
        ),
        case(
            "contents removed from the pod",
            update(
                with(&|_| {}),
                with(&|s| s["securityContext"] = named("webapp1")),
            ),
            Want::Deny(403, modified("contents", "pod", "p1")),
        ),
        case(
            "windowsOptions removed from a container",
            update(
                with(&|_| {}),
                with(&|s| {
                    s["containers"][0]
                        .as_object_mut()
                        .unwrap()
                        .remove("securityContext");
                }),
            ),
            Want::Deny(403, modified("name and contents", "container", "c")),
        ),
        case(
            "container renamed",
            update(
                with(&|_| {}),
                with(&|s| s["containers"][0]["name"] = json!("c2")),
            ),
            Want::Deny(403, modified("name and contents", "container", "c2")),
        ),
        case(
            "first problem wins: pod before containers",
            update(
                with(&|_| {}),
                with(&|s| {
                    s["securityContext"]["windowsOptions"]["gmsaCredentialSpecName"] =
                        json!("webapp2");
                    s["containers"][0]["securityContext"]["windowsOptions"]
                        ["gmsaCredentialSpecName"] = json!("webapp1");
                }),
            ),
            Want::Deny(403, modified("name", "pod", "p1")),
        ),
        case(
            "missing old object",
            review("UPDATE", None, with(&|_| {}), Value::Null),
            deny(
                400,
                "unable to unmarshall pod JSON object: unexpected end of JSON input",
            ),
        ),
        case(
            "old object not a pod",
            review(
                "UPDATE",
                None,
                with(&|_| {}),
                json!({"spec": {"containers": "no"}}),
            ),
            Want::DenyPrefix(400, "unable to unmarshall pod JSON object: ".to_string()),
        ),
    ];
    run_table(Hook::Validate, cases);
}

#[test]
fn validate_update_asks_nothing() {
    let world = World::new();
    let old = pod(json!({"securityContext": sc(Some("webapp1"), Some(WEBAPP1))}));
    let body = update(old.clone(), old);
    assert!(Review::read(Hook::Validate, &body).needs().is_empty());
    assert!(run(Hook::Validate, &body, &world, Options::default()).allowed);
    assert!(world.asked_grants.borrow().is_empty());
    assert!(world.asked_specs.borrow().is_empty());
}

#[test]
fn validate_ephemeral_containers() {
    let old = || {
        pod(json!({
            "securityContext": named("webapp1"),
            "containers": [container("c", sc(Some("webapp1"), Some(WEBAPP1)))],
            "ephemeralContainers": [container("e0", sc(Some("webapp2"), Some(WEBAPP2)))],
        }))
    };
    let adding = |new: Value| {
        let mut p = old();
        p["spec"]["ephemeralContainers"]
            .as_array_mut()
            .unwrap()
            .push(new);
        p
    };
    let cases = vec![
        case("new container without GMSA", ephemeral(old(), adding(plain("e1"))), Want::Allow),
        case("new container authorized", ephemeral(old(), adding(container("e1", named("webapp2")))), Want::Allow),
        case(
            "new container with matching contents",
            ephemeral(old(), adding(container("e1", sc(Some("webapp2"), Some(WEBAPP2))))),
            Want::Allow,
        ),
        case(
            "new container unauthorized",
            ephemeral(old(), adding(container("e1", named("webapp2")))),
            deny(403, "service account \"sa1\" is not authorized to `use` GMSA cred spec \"webapp2\", reason: \"nope\""),
        )
        .world(World::new().deny("webapp2", "nope")),
        case(
            "existing places are not re-authorized",
            ephemeral(old(), adding(container("e1", named("webapp2")))),
            Want::Allow,
        )
        .world(World::new().deny("webapp1", "")),
        case(
            "new container with mismatched contents",
            ephemeral(old(), adding(container("e1", sc(Some("webapp2"), Some(WEBAPP1))))),
            deny(422, "the GMSA cred spec contents for ephemeral container \"e1\" does not match the contents of GMSA resource \"webapp2\""),
        ),
        case(
            "new container with contents but no name",
            ephemeral(old(), adding(container("e1", sc(None, Some(WEBAPP1))))),
            deny(422, "ephemeral container \"e1\" has a GMSA cred spec set, but does not define the name of the corresponding resource"),
        ),
        case(
            "new container naming a missing spec with contents",
            ephemeral(old(), adding(container("e1", sc(Some("missing"), Some("{}"))))),
            deny(404, "cred spec missing does not exist"),
        ),
        case(
            "existing ephemeral container modified",
            ephemeral(old(), {
                let mut p = adding(plain("e1"));
                p["spec"]["ephemeralContainers"][0]["securityContext"] = sc(Some("webapp1"), Some(WEBAPP2));
                p
            }),
            deny(403, "cannot update an existing pod's GMSA settings (GMSA name modified on ephemeral container \"e0\")"),
        ),
        case(
            "container modified through the subresource",
            ephemeral(old(), {
                let mut p = adding(plain("e1"));
                p["spec"]["containers"][0]["securityContext"] = named("webapp1");
                p
            }),
            deny(403, "cannot update an existing pod's GMSA settings (GMSA contents modified on container \"c\")"),
        ),
        case(
            "immutability is checked before new containers",
            ephemeral(old(), {
                let mut p = adding(container("e1", sc(None, Some("{}"))));
                p["spec"]["securityContext"] = named("webapp2");
                p
            }),
            deny(403, "cannot update an existing pod's GMSA settings (GMSA name modified on pod \"p1\")"),
        ),
    ];
    run_table(Hook::Validate, cases);

    // Only the new container's spec is asked about.
    let world = World::new();
    let body = ephemeral(
        old(),
        adding(container(
            "e1",
            sc(Some("html"), Some("{\"a\":1,\"b\":\"<x>&y\u{2028}\"}")),
        )),
    );
    assert!(run(Hook::Validate, &body, &world, Options::default()).allowed);
    assert_eq!(
        *world.asked_grants.borrow(),
        [("ns1".into(), "sa1".into(), "html".into())]
    );
    assert_eq!(*world.asked_specs.borrow(), ["html"]);
}

// ---------------------------------------------------------------------------------------------
// Body problems and the answer's envelope, both hooks
// ---------------------------------------------------------------------------------------------

/// A body refused with code 400: (case, body, answer's apiVersion, answer's uid, message or its
/// start, whether the message is exact).
type BodyCase = (
    &'static str,
    Vec<u8>,
    &'static str,
    &'static str,
    String,
    bool,
);

#[test]
fn body_problems() {
    let pod_review = |object: Value| {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1",
            "request": {"uid": "u-2", "kind": {"kind": "Pod"}, "namespace": "ns1", "operation": "CREATE", "object": object}
        }))
        .unwrap()
    };
    let cases: Vec<BodyCase> = vec![
        ("not JSON", b"not json".to_vec(), "admission.k8s.io/v1", "", "unable to unmarshall JSON body as an admission review: ".into(), false),
        ("empty body", Vec::new(), "admission.k8s.io/v1", "", "unable to unmarshall JSON body as an admission review: ".into(), false),
        ("JSON array", b"[]".to_vec(), "admission.k8s.io/v1", "", "unable to unmarshall JSON body as an admission review: ".into(), false),
        ("request not an object", br#"{"request": 5}"#.to_vec(), "admission.k8s.io/v1", "", "unable to unmarshall JSON body as an admission review: ".into(), false),
        ("no request", br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(), "admission.k8s.io/v1", "", "no 'Request' field in JSON body".into(), true),
        ("no request, v1beta1", br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview"}"#.to_vec(), "admission.k8s.io/v1beta1", "", "no 'Request' field in JSON body".into(), true),
        ("null request", br#"{"request":null}"#.to_vec(), "admission.k8s.io/v1", "", "no 'Request' field in JSON body".into(), true),
        ("null body", b"null".to_vec(), "admission.k8s.io/v1", "", "no 'Request' field in JSON body".into(), true),
        (
            "not a pod",
            br#"{"apiVersion":"admission.k8s.io/v1","request":{"uid":"u-1","kind":{"group":"apps","version":"v1","kind":"Deployment"},"operation":"CREATE","object":{"kind":"Deployment"}}}"#.to_vec(),
            "admission.k8s.io/v1", "u-1", "expected a Pod object, got a Deployment".into(), true,
        ),
        (
            "no kind",
            br#"{"apiVersion":"admission.k8s.io/v1beta1","request":{"uid":"u-1","operation":"CREATE","object":{}}}"#.to_vec(),
            "admission.k8s.io/v1beta1", "u-1", "expected a Pod object, got a ".into(), true,
        ),
        ("no object", pod_review(Value::Null), "admission.k8s.io/v1", "u-2", "unable to unmarshall pod JSON object: unexpected end of JSON input".into(), true),
        ("object an array", pod_review(json!([])), "admission.k8s.io/v1", "u-2", "unable to unmarshall pod JSON object: ".into(), false),
        ("object a string", pod_review(json!("pod")), "admission.k8s.io/v1", "u-2", "unable to unmarshall pod JSON object: ".into(), false),
        ("containers not a list", pod_review(json!({"spec": {"containers": {}}})), "admission.k8s.io/v1", "u-2", "unable to unmarshall pod JSON object: ".into(), false),
        ("container an array", pod_review(json!({"spec": {"containers": [["c0"]]}})), "admission.k8s.io/v1", "u-2", "unable to unmarshall pod JSON object: ".into(), false),
        (
            "windowsOptions an array",
            pod_review(json!({"spec": {"securityContext": {"windowsOptions": ["webapp1", "{}"]}}})),
            "admission.k8s.io/v1", "u-2", "unable to unmarshall pod JSON object: ".into(), false,
        ),
        (
            "name not a string",
            pod_review(json!({"spec": {"securityContext": {"windowsOptions": {"gmsaCredentialSpecName": 1}}}})),
            "admission.k8s.io/v1", "u-2", "unable to unmarshall pod JSON object: ".into(), false,
        ),
        ("request an array", br#"{"request": []}"#.to_vec(), "admission.k8s.io/v1", "", "unable to unmarshall JSON body as an admission review: ".into(), false),
        (
            "kind an array",
            br#"{"request": {"uid": "u-4", "kind": ["Pod"], "operation": "CREATE", "object": {}}}"#.to_vec(),
            "admission.k8s.io/v1", "", "unable to unmarshall JSON body as an admission review: ".into(), false,
        ),
        (
            "nulls in the request read as empty",
            br#"{"apiVersion": null, "request": {"uid": null, "kind": null, "operation": null, "namespace": null, "object": {}}}"#.to_vec(),
            "admission.k8s.io/v1", "", "expected a Pod object, got a ".into(), true,
        ),
        (
            "unexpected operation",
            br#"{"apiVersion":"admission.k8s.io/v1","request":{"uid":"u-3","kind":{"kind":"Pod"},"operation":"DELETE","object":{"metadata":{"name":"p"}}}}"#.to_vec(),
            "admission.k8s.io/v1", "u-3", "unpexpected operation DELETE".into(), true,
        ),
    ];
    for hook in [Hook::Mutate, Hook::Validate] {
        for (name, body, api_version, uid, message, exact) in &cases {
            let answer = run(hook, body, &World::new(), Options::default());
            assert!(!answer.allowed, "{name}");
            assert_eq!(answer.api_version, *api_version, "{name}");
            assert_eq!(answer.uid, *uid, "{name}");
            assert_eq!(answer.code, Some(400), "{name}");
            let got = answer.message.unwrap_or_default();
            if *exact {
                assert_eq!(got, *message, "{name}");
            } else {
                assert!(
                    got.starts_with(message.as_str()) && got.len() > message.len(),
                    "{name}: {got:?}"
                );
            }
        }
    }
}

#[test]
fn nulls_in_the_pod_read_as_absent() {
    let object = json!({"metadata": null, "spec": {"securityContext": null, "containers": null,
        "initContainers": [{"name": "i0", "securityContext": {"windowsOptions": null}}],
        "ephemeralContainers": [{"name": "e0", "securityContext": {"windowsOptions": {"gmsaCredentialSpecName": null, "gmsaCredentialSpec": null}}}]}});
    for hook in [Hook::Mutate, Hook::Validate] {
        let answer = run(
            hook,
            &create(object.clone()),
            &World::new(),
            Options {
                random_hostname: true,
            },
        );
        assert!(answer.allowed && answer.patch.is_none(), "{answer:?}");
    }
}

#[test]
fn answer_echoes_api_version_and_uid() {
    for api_version in ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"] {
        for (hook, object, want_patch) in [
            (
                Hook::Mutate,
                pod(json!({"securityContext": named("webapp1")})),
                true,
            ),
            (
                Hook::Mutate,
                pod(json!({"securityContext": named("missing")})),
                false,
            ),
            (
                Hook::Validate,
                pod(json!({"securityContext": named("webapp1")})),
                false,
            ),
            (
                Hook::Validate,
                pod(json!({"securityContext": named("unknown")})),
                false,
            ),
        ] {
            let mut body: Value = serde_json::from_slice(&create(object)).unwrap();
            body["apiVersion"] = json!(api_version);
            body["request"]["uid"] = json!("e911857d-c318-11e8-bbad-025000000001");
            let answer = run(
                hook,
                &serde_json::to_vec(&body).unwrap(),
                &World::new(),
                Options::default(),
            );
            assert_eq!(answer.api_version, api_version);
            assert_eq!(answer.uid, "e911857d-c318-11e8-bbad-025000000001");
            assert_eq!(answer.patch.is_some(), want_patch);
        }
    }
}

#[test]
fn denial_status_is_go_metav1_status() {
    let body = create(pod(json!({"securityContext": named("missing")})));
    let review = Review::read(Hook::Mutate, &body);
    let verdict = review.decide(
        &Facts::gather(&review.needs(), &World::new()),
        Options::default(),
        String::new,
    );
    let out: Value = serde_json::from_slice(&review.respond(&verdict)).unwrap();
    assert_eq!(
        out["response"]["status"],
        json!({"metadata": {}, "message": "cred spec missing does not exist", "code": 404})
    );
    assert_eq!(out["response"]["allowed"], false);
}

// ---------------------------------------------------------------------------------------------
// Random hostnames
// ---------------------------------------------------------------------------------------------

#[test]
fn random_hostnames_are_netbios_sized_dns_labels() {
    let mut seen = BTreeSet::new();
    let mut with_digit = 0;
    for seed in 0..20_000u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let name = random_hostname(&mut rng);
        assert_eq!(name.len(), 15, "{name}");
        let mut chars = name.chars();
        assert!(
            chars.next().is_some_and(|c| c.is_ascii_lowercase()),
            "{name}"
        );
        assert!(
            chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
            "{name}"
        );
        if name.chars().any(|c| c.is_ascii_digit()) {
            with_digit += 1;
        }
        // Unlike the reference's truncated UUIDs, no fixed `-4` at the end.
        assert!(!name.ends_with("-4"));
        seen.insert(name);
    }
    assert_eq!(seen.len(), 20_000, "no repeats in 20000 names");
    assert!(with_digit > 10_000, "digits are used: {with_digit}");
    let firsts: BTreeSet<char> = seen.iter().filter_map(|n| n.chars().next()).collect();
    assert_eq!(firsts.len(), 26, "every letter can start a name");
    let lasts: BTreeSet<char> = seen.iter().filter_map(|n| n.chars().last()).collect();
    assert_eq!(lasts.len(), 36, "every letter and digit can end a name");
}

// ---------------------------------------------------------------------------------------------
// The captured reviews
// ---------------------------------------------------------------------------------------------

fn data(name: &str) -> String {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn data_json(name: &str) -> Value {
    serde_json::from_str(&data(name)).unwrap()
}

/// The captured cluster: gmsa-webapp1 as the API server returned it, and its RBAC.
fn captured_cluster() -> State {
    let mut state = State::default();
    state
        .add_yaml("get-credspec.json", &data("get-credspec.json"))
        .unwrap();
    state
        .add_yaml("capture-rbac.yaml", &data("capture-rbac.yaml"))
        .unwrap();
    state
}

#[test]
fn capture_mutate_create() {
    let body = data("review-mutate-create-iis.json");
    let request = data_json("review-mutate-create-iis.json");
    let answer = run(
        Hook::Mutate,
        body.as_bytes(),
        &captured_cluster(),
        Options::default(),
    );
    assert_eq!(answer.api_version, "admission.k8s.io/v1");
    assert_eq!(answer.uid, "c99884c1-849e-459d-aa2d-847aa8345d7d");
    let want = format!(
        r#"[{{"op":"add","path":"/spec/securityContext/windowsOptions/gmsaCredentialSpec","value":{v}}},{{"op":"add","path":"/spec/containers/0/securityContext/windowsOptions/gmsaCredentialSpec","value":{v}}}]"#,
        v = serde_json::to_string(WEBAPP1).unwrap()
    );
    let patch = answer.patch.expect("a patch");
    assert_eq!(patch, want);
    let patched = apply(&request["request"]["object"], &patch);
    // The reference webhook's own mutation of this pod is what the API server then sent to
    // /validate: our patch must produce the same spec.
    let validated = data_json("review-validate-create-iis.json");
    assert_eq!(patched["spec"], validated["request"]["object"]["spec"]);
    // The init container has no windowsOptions and gets none.
    assert!(patched["spec"]["initContainers"][0]
        .get("securityContext")
        .is_none());

    // With RANDOM_HOSTNAME the hostname comes last.
    let answer = run(
        Hook::Mutate,
        body.as_bytes(),
        &captured_cluster(),
        Options {
            random_hostname: true,
        },
    );
    let patch = answer.patch.expect("a patch");
    assert_eq!(
        patch,
        format!(
            "{},{}]",
            &want[..want.len() - 1],
            add("/spec/hostname", HOSTNAME)
        )
    );
    let patched = apply(&request["request"]["object"], &patch);
    assert_eq!(patched["spec"]["hostname"], HOSTNAME);
}

#[test]
fn capture_validate_create() {
    let body = data("review-validate-create-iis.json");
    let answer = run(
        Hook::Validate,
        body.as_bytes(),
        &captured_cluster(),
        Options::default(),
    );
    assert!(answer.allowed, "{answer:?}");
    assert_eq!(answer.uid, "591ec3dc-91e5-4009-8daf-b7bdcf625796");
    assert_eq!(answer.patch, None);

    // The same review in a cluster without the binding is refused, naming the pod's service
    // account as written.
    let mut bare = State::default();
    bare.add_yaml("get-credspec.json", &data("get-credspec.json"))
        .unwrap();
    let answer = run(Hook::Validate, body.as_bytes(), &bare, Options::default());
    assert_eq!(answer.code, Some(403));
    assert_eq!(
        answer.message.as_deref(),
        Some("service account \"default\" is not authorized to `use` GMSA cred spec \"gmsa-webapp1\"")
    );
}

#[test]
fn capture_validate_update() {
    let body = data("review-validate-update-iis.json");
    let answer = run(
        Hook::Validate,
        body.as_bytes(),
        &World::new(),
        Options::default(),
    );
    assert!(answer.allowed, "{answer:?}");
    assert_eq!(answer.uid, "53efcc8d-9d09-4161-92bc-c26071e94daf");
    assert_eq!(answer.patch, None);
    // Mutate lets updates through untouched.
    let answer = run(
        Hook::Mutate,
        body.as_bytes(),
        &World::new(),
        Options {
            random_hostname: true,
        },
    );
    assert!(answer.allowed && answer.patch.is_none());

    // The same update changing the container's contents is refused.
    let mut edited = data_json("review-validate-update-iis.json");
    edited["request"]["object"]["spec"]["containers"][0]["securityContext"]["windowsOptions"]
        ["gmsaCredentialSpec"] = json!(WEBAPP2);
    let answer = run(
        Hook::Validate,
        &serde_json::to_vec(&edited).unwrap(),
        &World::new(),
        Options::default(),
    );
    assert_eq!(answer.code, Some(403));
    assert_eq!(
        answer.message.as_deref(),
        Some("cannot update an existing pod's GMSA settings (GMSA contents modified on container \"iis\")")
    );
}

#[test]
fn capture_denied() {
    // Mutation does not check RBAC: the pod in team-c gets its contents inlined...
    let body = data("review-mutate-create-denied.json");
    let request = data_json("review-mutate-create-denied.json");
    let answer = run(
        Hook::Mutate,
        body.as_bytes(),
        &captured_cluster(),
        Options::default(),
    );
    assert_eq!(answer.uid, "96600289-835b-4bc3-ab7b-f03323eb2995");
    let patch = answer.patch.expect("a patch");
    assert_eq!(patch, patch_text_for_pod_level());
    let patched = apply(&request["request"]["object"], &patch);
    let validated = data_json("review-validate-create-denied.json");
    assert_eq!(patched["spec"], validated["request"]["object"]["spec"]);

    // ...and validation refuses it: team-c's default service account has no grant.
    let body = data("review-validate-create-denied.json");
    let answer = run(
        Hook::Validate,
        body.as_bytes(),
        &captured_cluster(),
        Options::default(),
    );
    assert_eq!(answer.uid, "1731f403-cab6-436a-96f1-84f115f98921");
    assert_eq!(answer.code, Some(403));
    assert_eq!(
        answer.message.as_deref(),
        Some("service account \"default\" is not authorized to `use` GMSA cred spec \"gmsa-webapp1\"")
    );

    // Answered in the version asked.
    let mut beta = data_json("review-validate-create-denied.json");
    beta["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let answer = run(
        Hook::Validate,
        &serde_json::to_vec(&beta).unwrap(),
        &captured_cluster(),
        Options::default(),
    );
    assert_eq!(answer.api_version, "admission.k8s.io/v1beta1");
    assert_eq!(answer.code, Some(403));
}

fn patch_text_for_pod_level() -> String {
    patch(&[add(POD_PATH, WEBAPP1)])
}
