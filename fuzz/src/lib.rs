//! What the fuzz targets check, kept apart from libFuzzer so the same bodies also run as plain
//! tests on stable (gmsa-core's `tests/fuzz_bodies.rs` includes this file).

use std::sync::OnceLock;

use base64::Engine;
use gmsa_core::admission::{Endpoint, Review};
use gmsa_core::canonical::to_go_json;
use gmsa_core::state::State;
use gmsa_core::{CredentialSpec, Facts, Hook, Options};
use serde_json::Value;

const STATE: &str = r#"
apiVersion: windows.k8s.io/v1
kind: GMSACredentialSpec
metadata: {name: gmsa-webapp1}
credspec: {CmsPlugins: [ActiveDirectory], DomainJoinConfig: {DnsName: contoso.com, MachineAccountName: "A<&>"}}
---
apiVersion: windows.k8s.io/v1
kind: GMSACredentialSpec
metadata: {name: no-credspec}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: use-all}
rules: [{apiGroups: [windows.k8s.io], resources: [gmsacredentialspecs], verbs: [use]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: default, namespace: default}
subjects: [{kind: ServiceAccount, name: default, namespace: default}]
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: use-all}
"#;

fn state() -> &'static State {
    static STATE_CELL: OnceLock<State> = OnceLock::new();
    STATE_CELL.get_or_init(|| {
        let mut state = State::default();
        state
            .add_yaml("fuzz", STATE)
            .expect("the fuzz state parses");
        state
    })
}

/// Any bytes as a review body, on every endpoint: the answer is a well-formed AdmissionReview
/// for the request's uid, and a patch applies to the object it was made for.
pub fn review(data: &[u8]) {
    let endpoints = [
        Endpoint::Pods(Hook::Mutate),
        Endpoint::Pods(Hook::Validate),
        Endpoint::CredentialSpecs,
    ];
    for endpoint in endpoints {
        let review = Review::read(endpoint, data);
        let facts = Facts::gather(&review.needs(), state());
        let options = Options {
            random_hostname: true,
        };
        let decided = review.decide(&facts, options, || "fuzzhostname123".to_string());
        let out = review.respond(&decided);
        let answer: Value = serde_json::from_slice(&out).expect("the answer is JSON");
        assert_eq!(answer["kind"], "AdmissionReview");
        assert_eq!(answer["apiVersion"], review.api_version());
        assert_eq!(answer["response"]["uid"], review.uid());
        assert_eq!(answer["response"]["allowed"], decided.verdict.is_allowed());
        let Some(patch) = answer["response"]["patch"].as_str() else {
            continue;
        };
        assert_eq!(
            endpoint,
            Endpoint::Pods(Hook::Mutate),
            "only the mutation patches"
        );
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .expect("the patch is base64");
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("a JSON Patch");
        // Strings the review reader skips are not checked as strictly as a full parse checks
        // them (a lone `\udc00`, which Go also accepts); only a request that parses whole
        // gives the object to apply the patch to.
        let Ok(request) = serde_json::from_slice::<Value>(data) else {
            continue;
        };
        let mut object = request["request"]["object"].clone();
        json_patch::patch(&mut object, &patch).expect("the patch applies to its object");
    }
}

/// Any bytes as manifests and as a credential-spec resource: errors, never panics; a spec
/// that is read encodes to Go JSON that reads back.
pub fn manifests(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut state = State::default();
    let _ = state.add_yaml("fuzz", text);
    for spec in state.specs() {
        check_spec(spec);
    }
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        if let Ok(spec) = CredentialSpec::from_resource(&value) {
            check_spec(&spec);
        }
        let encoded = to_go_json(&value);
        let back: Value = serde_json::from_str(&encoded).expect("Go JSON is JSON");
        assert_eq!(to_go_json(&back), encoded, "Go JSON is stable");
    }
    let _ = gmsa_core::pod::Pod::from_json(text);
}

fn check_spec(spec: &CredentialSpec) {
    if let Some(contents) = spec.contents() {
        let back: Value = serde_json::from_str(&contents.encoded).expect("contents are JSON");
        assert_eq!(to_go_json(&back), *contents.encoded);
        if contents.value().is_object() {
            assert_eq!(contents.matches(&contents.encoded), Ok(true));
        }
    }
}
