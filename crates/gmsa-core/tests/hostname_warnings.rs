//! Admission warnings for GMSA pods whose host name is longer than a NetBIOS name (on the
//! validation of a creation), or fixed by `spec.hostname` under a controller that may run
//! several pods (on the mutation of a creation): never a refusal, never a change to a patch,
//! and only for pods that name a spec.

#![allow(clippy::unwrap_used)] // tests may panic

use std::sync::Arc;

use gmsa_core::admission::{Answer, Review};
use gmsa_core::{AccessCheck, CredentialSpec, Facts, Hook, Options, SpecLookup};
use gmsa_testkit::reviews::ReviewBody;
use serde_json::{json, Value};

fn review(hook: Hook, operation: &str, metadata: Value, spec: Value) -> Review {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec});
    let mut body = ReviewBody::pod(pod.clone()).operation(operation);
    if operation == "UPDATE" {
        body = body.old(pod);
    }
    Review::read(hook, &body.to_bytes())
}

fn gmsa_spec(hostname: Option<&str>) -> Value {
    let mut spec = json!({
        "securityContext": {"windowsOptions": {"gmsaCredentialSpecName": "gmsa-webapp1"}},
        "containers": [{"name": "iis", "image": "iis"}]
    });
    if let Some(h) = hostname {
        spec["hostname"] = json!(h);
    }
    spec
}

/// The cluster of these tests: gmsa-webapp1 exists and every service account may use it.
fn granted() -> Facts {
    let spec = CredentialSpec::new(
        "gmsa-webapp1",
        json!({"CmsPlugins": ["ActiveDirectory"], "DomainJoinConfig": {"MachineAccountName": "WebApp1"}}),
    );
    Facts {
        specs: [(
            "gmsa-webapp1".to_string(),
            SpecLookup::Found(Arc::new(spec)),
        )]
        .into(),
        grants: [("gmsa-webapp1".to_string(), AccessCheck::Allowed)].into(),
    }
}

fn decide(r: &Review, facts: &Facts, options: Options) -> Answer {
    r.decide(facts, options, || "randomrandomran".to_string())
}

/// The warnings of an admission in the granted cluster.
fn warned(r: &Review) -> Vec<String> {
    let answer = decide(r, &granted(), Options::default());
    assert!(answer.verdict.is_allowed(), "{answer:?}");
    answer.warnings
}

#[test]
fn long_host_names_of_gmsa_pods_are_warned() {
    let r = review(
        Hook::Validate,
        "CREATE",
        json!({"name": "iis-7776966999-n5nzr"}),
        gmsa_spec(None),
    );
    let warnings = warned(&r);
    assert_eq!(
        warnings,
        [
            r#"GMSA pod host name "iis-7776966999-n5nzr" has 20 characters: Windows keeps the first 15 ("IIS-7776966999-") as the container's NetBIOS name, which pods of one workload share and the domain then sees as one computer; set spec.hostname to at most 15 characters, or install with --random-hostname"#
        ]
    );
    // In the answer, beside the verdict, which stays an admission.
    let answer: Value =
        serde_json::from_slice(&r.respond(&decide(&r, &granted(), Options::default()))).unwrap();
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(answer["response"]["warnings"], json!(warnings));

    // generateName: the five characters the API server adds count.
    let r = review(
        Hook::Validate,
        "CREATE",
        json!({"generateName": "with-creds-"}),
        gmsa_spec(None),
    );
    assert!(warned(&r)[0].starts_with(r#"GMSA pod host name "with-creds-xxxxx" has 16 characters"#));
    // spec.hostname wins over the name.
    let r = review(
        Hook::Validate,
        "CREATE",
        json!({"name": "iis-7776966999-n5nzr"}),
        gmsa_spec(Some("webapp1-0")),
    );
    assert!(warned(&r).is_empty());
    let r = review(
        Hook::Validate,
        "CREATE",
        json!({"name": "p"}),
        gmsa_spec(Some("a-very-long-host-name")),
    );
    assert_eq!(warned(&r).len(), 1);
}

#[test]
fn no_warning_elsewhere() {
    let long = json!({"name": "iis-7776966999-n5nzr"});
    // Not a GMSA pod.
    let plain = json!({"containers": [{"name": "iis", "image": "iis"}]});
    assert!(warned(&review(Hook::Validate, "CREATE", long.clone(), plain)).is_empty());
    // Mutation and updates say nothing (the host name cannot change after creation).
    assert!(warned(&review(
        Hook::Mutate,
        "CREATE",
        long.clone(),
        gmsa_spec(None)
    ))
    .is_empty());
    assert!(warned(&review(
        Hook::Validate,
        "UPDATE",
        long.clone(),
        gmsa_spec(None)
    ))
    .is_empty());
    // Exactly 15 is whole.
    let r = review(
        Hook::Validate,
        "CREATE",
        json!({"name": "iis-77769669-n5"}),
        gmsa_spec(None),
    );
    assert!(warned(&r).is_empty());
    // A denied verdict carries no warnings.
    let r = review(Hook::Validate, "CREATE", long, gmsa_spec(None));
    let mut no_grant = granted();
    no_grant.grants.clear();
    let denied = decide(&r, &no_grant, Options::default());
    assert!(!denied.verdict.is_allowed(), "{denied:?}");
    assert!(denied.warnings.is_empty());
    let answer: Value = serde_json::from_slice(&r.respond(&denied)).unwrap();
    assert!(answer["response"].get("warnings").is_none());
}

/// What the mutation answers for `metadata` and `spec`, with gmsa-webapp1 in the cluster.
fn mutate_answer(metadata: Value, spec: Value, options: Options) -> (Value, Vec<String>) {
    let r = review(Hook::Mutate, "CREATE", metadata, spec);
    let decided = decide(&r, &granted(), options);
    let answer: Value = serde_json::from_slice(&r.respond(&decided)).unwrap();
    (answer, decided.warnings)
}

#[test]
fn a_fixed_hostname_under_a_replica_set_is_warned_on_mutation_with_the_same_patch() {
    let owner = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7776966999",
                        "uid": "u1", "controller": true}]);
    let owned = json!({"generateName": "web-7776966999-", "ownerReferences": owner});
    let plain = json!({"generateName": "web-7776966999-"});
    let (warned, warnings) =
        mutate_answer(owned.clone(), gmsa_spec(Some("web1")), Options::default());
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with(r#"GMSA pod sets spec.hostname "web1" and its ReplicaSet "web-7776966999" may run several pods with it"#),
        "{warnings:?}"
    );
    assert_eq!(warned["response"]["warnings"], json!(warnings));
    // The same pod without its owner: the very same answer, less the warnings.
    let (unwarned, none) = mutate_answer(plain, gmsa_spec(Some("web1")), Options::default());
    assert!(none.is_empty());
    assert!(unwarned["response"].get("warnings").is_none());
    let mut stripped = warned.clone();
    stripped["response"]
        .as_object_mut()
        .unwrap()
        .remove("warnings");
    assert_eq!(stripped, unwarned);
    assert!(unwarned["response"]["patch"].is_string());

    // RANDOM_HOSTNAME fills in pods without a hostname: those are not warned of, and the
    // validation that sees the random one says nothing either.
    let (answer, warnings) = mutate_answer(
        owned.clone(),
        gmsa_spec(None),
        Options {
            random_hostname: true,
        },
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(answer["response"].get("warnings").is_none());
    let mut random = gmsa_spec(Some("randomrandomran"));
    random["securityContext"]["windowsOptions"]["gmsaCredentialSpec"] = json!(
        r#"{"CmsPlugins":["ActiveDirectory"],"DomainJoinConfig":{"MachineAccountName":"WebApp1"}}"#
    );
    let mut meta = owned;
    meta["name"] = json!("web-7776966999-abcde");
    assert!(crate::warned(&review(Hook::Validate, "CREATE", meta, random)).is_empty());
}
