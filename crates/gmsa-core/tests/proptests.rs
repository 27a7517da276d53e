//! Properties over generated reviews, pods and credential specs: the whole review never panics
//! and always answers a well-formed AdmissionReview for the request's uid and version; patches
//! apply to the object they were made for and put the spec's contents (or a valid hostname) at
//! each place; Go-canonical JSON reads back as the value it encoded. 256 cases per property
//! keep the suite to a few seconds.

use base64::Engine;
use gmsa_core::admission::Review;
use gmsa_core::canonical::to_go_json;
use gmsa_core::credspec::Contents;
use gmsa_core::state::State;
use gmsa_core::{Facts, Hook, Options};
use gmsa_testkit::reviews::ReviewBody;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Specs the state knows: two usable ones (one with characters Go escapes) and one without a
/// `credspec` key.
const SPEC_NAMES: [&str; 5] = ["gmsa-a", "gmsa-b", "no-credspec", "missing", "we\"ird<&>"];

fn spec_contents(name: &str) -> Option<Value> {
    match name {
        "gmsa-a" => Some(json!({"CmsPlugins": ["ActiveDirectory"],
            "DomainJoinConfig": {"DnsName": "contoso.com", "MachineAccountName": "WebApp1"}})),
        "gmsa-b" => Some(
            json!({"ActiveDirectoryConfig": {"GroupManagedServiceAccounts":
            [{"Name": "A<B>&C\u{2028}", "Scope": "contoso.com"}]}, "Number": 1.5e-7, "Big": 1e21}),
        ),
        _ => None,
    }
}

fn world() -> State {
    let mut state = State::default();
    let mut docs = String::new();
    for name in ["gmsa-a", "gmsa-b"] {
        let spec = json!({"apiVersion": "windows.k8s.io/v1", "kind": "GMSACredentialSpec",
            "metadata": {"name": name}, "credspec": spec_contents(name)});
        docs.push_str(&format!("---\n{spec}\n"));
    }
    docs.push_str(
        r#"---
{"apiVersion": "windows.k8s.io/v1", "kind": "GMSACredentialSpec", "metadata": {"name": "no-credspec"}}
---
{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "use-all"},
 "rules": [{"apiGroups": ["windows.k8s.io"], "resources": ["gmsacredentialspecs"], "verbs": ["use"]}]}
---
{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "web", "namespace": "team-a"},
 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "use-all"},
 "subjects": [{"kind": "ServiceAccount", "name": "web", "namespace": "team-a"}]}
"#,
    );
    state.add_yaml("proptest", &docs).expect("world parses");
    state
}

/// What a generated place says about GMSA.
#[derive(Debug, Clone)]
enum ContentsChoice {
    Matching,
    Pretty,
    Different,
    Garbage,
    Empty,
}

#[derive(Debug, Clone)]
struct Options_ {
    name: Option<&'static str>,
    contents: Option<ContentsChoice>,
}

fn options() -> impl Strategy<Value = Option<Options_>> {
    let name = prop::option::weighted(0.8, prop::sample::select(&SPEC_NAMES[..]));
    let contents = prop::option::weighted(
        0.3,
        prop_oneof![
            Just(ContentsChoice::Matching),
            Just(ContentsChoice::Pretty),
            Just(ContentsChoice::Different),
            Just(ContentsChoice::Garbage),
            Just(ContentsChoice::Empty),
        ],
    );
    prop::option::weighted(
        0.7,
        (name, contents).prop_map(|(name, contents)| Options_ { name, contents }),
    )
}

fn windows_options(o: &Options_) -> Value {
    let mut map = Map::new();
    if let Some(name) = o.name {
        map.insert("gmsaCredentialSpecName".into(), json!(name));
    }
    if let Some(choice) = &o.contents {
        let named = o
            .name
            .and_then(spec_contents)
            .unwrap_or(json!({"Other": true}));
        let text = match choice {
            ContentsChoice::Matching => to_go_json(&named),
            ContentsChoice::Pretty => serde_json::to_string_pretty(&named).unwrap_or_default(),
            ContentsChoice::Different => r#"{"CmsPlugins":["Other"]}"#.to_string(),
            ContentsChoice::Garbage => "not json {".to_string(),
            ContentsChoice::Empty => String::new(),
        };
        map.insert("gmsaCredentialSpec".into(), json!(text));
    }
    json!({"windowsOptions": map})
}

/// A generated pod, as the API server would send it.
#[derive(Debug, Clone)]
struct PodModel {
    name: Option<String>,
    service_account: Option<&'static str>,
    hostname: Option<&'static str>,
    pod: Option<Options_>,
    containers: Vec<(String, Option<Options_>)>,
    init: Vec<(String, Option<Options_>)>,
    ephemeral: Vec<(String, Option<Options_>)>,
}

fn containers(max: usize) -> impl Strategy<Value = Vec<(String, Option<Options_>)>> {
    vec(("[a-c]{1,2}", options()), 0..max)
}

fn pod_model() -> impl Strategy<Value = PodModel> {
    (
        prop::option::of("[a-z<>\"]{0,6}"),
        prop::option::of(prop::sample::select(vec!["", "web", "other"])),
        prop::option::of(prop::sample::select(vec!["", "host1"])),
        options(),
        containers(4),
        containers(3),
        containers(3),
    )
        .prop_map(
            |(name, service_account, hostname, pod, containers, init, ephemeral)| PodModel {
                name,
                service_account,
                hostname,
                pod,
                containers,
                init,
                ephemeral,
            },
        )
}

impl PodModel {
    fn to_json(&self) -> Value {
        let list = |items: &[(String, Option<Options_>)]| -> Value {
            items
                .iter()
                .map(|(name, o)| {
                    let mut c =
                        json!({"name": name, "image": "mcr.microsoft.com/windows/nanoserver"});
                    if let Some(o) = o {
                        c["securityContext"] = windows_options(o);
                    }
                    c
                })
                .collect()
        };
        let mut spec = json!({
            "containers": list(&self.containers),
            "initContainers": list(&self.init),
            "ephemeralContainers": list(&self.ephemeral),
        });
        if let Some(o) = &self.pod {
            spec["securityContext"] = windows_options(o);
        }
        if let Some(sa) = self.service_account {
            spec["serviceAccountName"] = json!(sa);
        }
        if let Some(h) = self.hostname {
            spec["hostname"] = json!(h);
        }
        let mut metadata = json!({"namespace": "team-a", "labels": {"app": "x"}});
        if let Some(n) = &self.name {
            metadata["name"] = json!(n);
        }
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec})
    }
}

#[derive(Debug, Clone)]
struct ReviewModel {
    hook: Hook,
    api_version: Option<&'static str>,
    uid: String,
    operation: &'static str,
    sub_resource: Option<&'static str>,
    pod: PodModel,
    /// For updates: the old pod is the same pod, or another one.
    old: Option<PodModel>,
    random_hostname: bool,
}

fn review_model() -> impl Strategy<Value = ReviewModel> {
    (
        prop_oneof![Just(Hook::Mutate), Just(Hook::Validate)],
        prop::option::of(prop::sample::select(vec![
            "admission.k8s.io/v1",
            "admission.k8s.io/v1beta1",
            "admission.k8s.io/v2",
        ])),
        any::<String>(),
        prop::sample::select(vec!["CREATE", "CREATE", "UPDATE", "DELETE", "CONNECT"]),
        prop::option::of(prop::sample::select(vec!["ephemeralcontainers", "status"])),
        pod_model(),
        prop::option::of(pod_model()),
        any::<bool>(),
    )
        .prop_map(
            |(hook, api_version, uid, operation, sub_resource, pod, old, random_hostname)| {
                ReviewModel {
                    hook,
                    api_version,
                    uid,
                    operation,
                    sub_resource,
                    pod,
                    old,
                    random_hostname,
                }
            },
        )
}

impl ReviewModel {
    fn object(&self) -> Value {
        self.pod.to_json()
    }

    fn body(&self) -> Vec<u8> {
        let mut review = ReviewBody::pod(self.object())
            .api_version(self.api_version)
            .uid(&self.uid)
            .namespace("team-a")
            .operation(self.operation);
        if let Some(s) = self.sub_resource {
            review = review.sub_resource(s);
        }
        if self.operation == "UPDATE" {
            review = review.old(self.old.as_ref().unwrap_or(&self.pod).to_json());
        }
        review.to_bytes()
    }
}

/// Decides like the webhook does with the embedded state.
fn answer(hook: Hook, body: &[u8], state: &State, random_hostname: bool) -> Value {
    let review = Review::read(hook, body);
    let facts = Facts::gather(&review.needs(), state);
    let options = Options { random_hostname };
    let answer = review.decide(&facts, options, || {
        gmsa_core::decision::random_hostname(&mut rand::rng())
    });
    let out = review.respond(&answer);
    serde_json::from_slice(&out).expect("the answer is JSON")
}

/// Checks the envelope; returns the `response` object.
fn well_formed<'a>(out: &'a Value, want_version: &str, uid: &str) -> &'a Map<String, Value> {
    assert_eq!(out["kind"], "AdmissionReview", "{out}");
    assert_eq!(out["apiVersion"], want_version, "{out}");
    let response = out["response"].as_object().expect("a response object");
    assert_eq!(response["uid"], uid, "{out}");
    let allowed = response["allowed"].as_bool().expect("allowed is a bool");
    if allowed {
        assert!(response.get("status").is_none(), "{out}");
        assert_eq!(
            response.get("patch").is_some(),
            response.get("patchType").is_some(),
            "{out}"
        );
    } else {
        let status = response["status"].as_object().expect("a status");
        let code = status["code"].as_u64().expect("a code");
        assert!(
            [400, 403, 404, 417, 422, 500].contains(&code),
            "unexpected code {code}: {out}"
        );
        assert!(
            !status["message"].as_str().unwrap_or_default().is_empty(),
            "{out}"
        );
        assert!(response.get("patch").is_none(), "{out}");
    }
    response
}

/// Applies the answer's patch to `object` and checks what landed where.
fn check_patch(response: &Map<String, Value>, object: &Value, state: &State) -> usize {
    let Some(patch) = response.get("patch") else {
        return 0;
    };
    assert_eq!(response["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch.as_str().expect("patch is a string"))
        .expect("patch is base64");
    let parsed: json_patch::Patch = serde_json::from_slice(&bytes).expect("a JSON Patch");
    let mut doc = object.clone();
    json_patch::patch(&mut doc, &parsed).expect("the patch applies to its object");
    let ops: Vec<Value> = serde_json::from_slice(&bytes).expect("ops");
    let mut contents_ops = 0;
    for op in &ops {
        assert_eq!(op["op"], "add");
        let path = op["path"].as_str().expect("path");
        let value = op["value"].as_str().expect("values are strings");
        assert_eq!(doc.pointer(path), Some(&op["value"]));
        if path == "/spec/hostname" {
            assert_eq!(value.len(), 15, "{value}");
            assert!(
                value.starts_with(|c: char| c.is_ascii_lowercase()),
                "{value}"
            );
            assert!(value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
            continue;
        }
        let name_path = path.replace("/gmsaCredentialSpec", "/gmsaCredentialSpecName");
        assert!(
            path.ends_with("/windowsOptions/gmsaCredentialSpec"),
            "{path}"
        );
        let name = object
            .pointer(&name_path)
            .and_then(Value::as_str)
            .expect("a patched place names its spec");
        assert!(
            object.pointer(path).is_none_or(Value::is_null),
            "pre-set contents are never overwritten: {path}"
        );
        let spec = state.spec(name).expect("patched with an existing spec");
        let contents = spec.contents().expect("with contents");
        assert_eq!(value, &*contents.encoded, "{path}");
        contents_ops += 1;
    }
    contents_ops
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn every_review_gets_a_well_formed_answer_and_patches_apply(model in review_model()) {
        let state = world();
        let body = model.body();
        let out = answer(model.hook, &body, &state, model.random_hostname);
        let want_version = if model.api_version == Some("admission.k8s.io/v1beta1") {
            "admission.k8s.io/v1beta1"
        } else {
            "admission.k8s.io/v1"
        };
        let response = well_formed(&out, want_version, &model.uid);
        let object = model.object();
        let contents_ops = check_patch(response, &object, &state);
        if model.hook == Hook::Validate {
            prop_assert!(response.get("patch").is_none(), "validation never patches");
        }
        // A created pod that was admitted by mutate got every named, empty place filled.
        if model.hook == Hook::Mutate
            && model.operation == "CREATE"
            && response["allowed"] == true
        {
            let pod = gmsa_core::pod::Pod::from_json(&object.to_string()).expect("pod");
            let wanted = pod
                .places()
                .filter(|p| {
                    p.options.gmsa_credential_spec_name.is_some()
                        && p.options.gmsa_credential_spec.is_none()
                })
                .count();
            prop_assert_eq!(contents_ops, wanted);
        }
    }

    #[test]
    fn any_bytes_get_a_well_formed_answer(
        body in prop_oneof![
            vec(any::<u8>(), 0..256),
            "\\{\"request\":\\{\"uid\":\"[a-z]{0,4}\",\"kind\":.{0,40}\\}\\}".prop_map(String::into_bytes),
        ],
        validate in any::<bool>(),
    ) {
        let hook = if validate { Hook::Validate } else { Hook::Mutate };
        let review = Review::read(hook, &body);
        let facts = Facts::gather(&review.needs(), &world());
        let answer = review.decide(&facts, Options::default(), String::new);
        let out: Value = serde_json::from_slice(&review.respond(&answer)).expect("JSON");
        let version = review.api_version();
        well_formed(&out, version, review.uid());
    }

    #[test]
    fn go_json_reads_back_as_the_value(value in json_value()) {
        let encoded = to_go_json(&value);
        let parsed: Value = serde_json::from_str(&encoded).expect("Go JSON is JSON");
        prop_assert!(numerically_equal(&parsed, &value), "{} became {}", value, parsed);
        // Stable: encoding what was read gives the same bytes.
        prop_assert_eq!(to_go_json(&parsed), encoded.clone());
        // HTML-safe and compact, as Go writes it.
        let unsafe_chars = ['<', '>', '&', '\u{2028}', '\u{2029}', '\n'];
        prop_assert!(!encoded.contains(unsafe_chars), "not HTML-safe: {}", encoded);
        prop_assert!(keys_sorted(&parsed));
    }

    #[test]
    fn contents_match_their_own_encodings(map in btree_map("[A-Za-z]{1,8}", json_value(), 0..6)) {
        let value = Value::Object(map.into_iter().collect());
        let contents = Contents::new(value.clone());
        prop_assert_eq!(contents.matches(&contents.encoded), Ok(true));
        let pretty = serde_json::to_string_pretty(&value).expect("pretty");
        prop_assert_eq!(contents.matches(&pretty), Ok(true));
        prop_assert_eq!(contents.matches(&to_go_json(&value)), Ok(true));
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        prop_oneof![
            any::<String>(),
            "[a-z<>&\"\\\\\u{2028}\u{2029}\u{0}-\u{1f}\u{7f}é😀 ]{0,10}",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(prop_oneof![any::<String>(), "[a-zA-Z<&]{0,6}"], inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Equality where numbers compare by value: Go reads every number of an unstructured object as
/// int64 or float64, so `2.0` comes back as `2`.
fn numerically_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| numerically_equal(v, w))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| numerically_equal(v, w)))
        }
        _ => a == b,
    }
}

/// Whether every object's keys appear in the encoding in bytewise order.
fn keys_sorted(value: &Value) -> bool {
    match value {
        Value::Array(items) => items.iter().all(keys_sorted),
        Value::Object(map) => {
            let mut sorted: Vec<String> = map.keys().cloned().collect();
            sorted.sort_unstable();
            written_key_order(&to_go_json(value)) == sorted && map.values().all(keys_sorted)
        }
        _ => true,
    }
}

/// The top-level keys of an encoded object, in the order they appear.
fn written_key_order(encoded: &str) -> Vec<String> {
    struct Keys(Vec<String>);
    impl<'de> serde::Deserialize<'de> for Keys {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Keys;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Keys, A::Error> {
                    let mut keys = Vec::new();
                    while let Some((k, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                        keys.push(k);
                    }
                    Ok(Keys(keys))
                }
            }
            d.deserialize_map(V)
        }
    }
    serde_json::from_str::<Keys>(encoded)
        .map(|k| k.0)
        .unwrap_or_default()
}
