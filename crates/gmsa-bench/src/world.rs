//! What the benchmarks admit: credential specs, the RBAC that lets the pods use them, and the
//! review bodies the API server would send for a pod naming 1 or 10 of them.

use gmsa_core::canonical::to_go_json;
use gmsa_core::Hook;
use serde_json::{json, Value};

/// The namespace and service account of every benchmark pod.
pub const NAMESPACE: &str = "bench";
pub const SERVICE_ACCOUNT: &str = "web";

/// The name of the `i`th credential spec.
pub fn spec_name(i: usize) -> String {
    format!("gmsa-bench-{i}")
}

/// The `credspec` contents of the `i`th spec, shaped like a real one.
pub fn contents(i: usize) -> Value {
    let account = format!("WebApp{i}");
    json!({
        "ActiveDirectoryConfig": {
            "GroupManagedServiceAccounts": [
                {"Name": account, "Scope": "contoso.com"},
                {"Name": account, "Scope": "CONTOSO"}
            ]
        },
        "CmsPlugins": ["ActiveDirectory"],
        "DomainJoinConfig": {
            "DnsName": "contoso.com",
            "DnsTreeName": "contoso.com",
            "Guid": "244818ae-87ac-4fcd-92ec-e79e5252348a",
            "MachineAccountName": account,
            "NetBiosName": "CONTOSO",
            "Sid": "S-1-5-21-2126449477-2524075714-3094792973"
        }
    })
}

/// The `i`th `GMSACredentialSpec` resource.
pub fn credential_spec(i: usize) -> Value {
    json!({
        "apiVersion": "windows.k8s.io/v1",
        "kind": "GMSACredentialSpec",
        "metadata": {"name": spec_name(i)},
        "credspec": contents(i)
    })
}

/// A ClusterRole allowing `use` of every credential spec, bound to the benchmark service
/// account in its namespace.
pub fn grant() -> Vec<Value> {
    vec![
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "gmsa-bench-use"},
            "rules": [{
                "apiGroups": ["windows.k8s.io"],
                "resources": ["gmsacredentialspecs"],
                "verbs": ["use"]
            }]
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "gmsa-bench-use", "namespace": NAMESPACE},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "gmsa-bench-use"},
            "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}]
        }),
    ]
}

/// `count` RoleBindings that grant nothing to the benchmark pods: other teams' RBAC, which the
/// webhook must watch and which makes RBAC evaluation (embedded) and caches (Kubernetes) larger.
pub fn other_bindings(count: usize) -> Vec<Value> {
    let mut out = vec![json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "gmsa-other-use"},
        "rules": [{
            "apiGroups": ["windows.k8s.io"],
            "resources": ["gmsacredentialspecs"],
            "verbs": ["use"],
            "resourceNames": ["gmsa-other"]
        }]
    })];
    out.extend((0..count).map(|i| {
        let ns = format!("team-{}", i % 100);
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": format!("gmsa-other-{i}"), "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "gmsa-other-use"},
            "subjects": [{"kind": "ServiceAccount", "name": format!("sa-{i}"), "namespace": ns}]
        })
    }));
    out
}

/// Every object of a world with `specs` credential specs and `bindings` unrelated bindings.
pub fn objects(specs: usize, bindings: usize) -> Vec<Value> {
    let mut out: Vec<Value> = (0..specs).map(credential_spec).collect();
    out.extend(grant());
    out.extend(other_bindings(bindings));
    out
}

/// The same objects as a multi-document YAML stream (JSON is YAML), for `--state-dir`.
pub fn state_yaml(specs: usize, bindings: usize) -> String {
    yaml(&objects(specs, bindings))
}

/// The objects as YAML files of at most `per_file` documents each: the YAML reader refuses a
/// stream of more than 1,024 documents.
pub fn state_files(specs: usize, bindings: usize, per_file: usize) -> Vec<String> {
    objects(specs, bindings)
        .chunks(per_file.max(1))
        .map(yaml)
        .collect()
}

fn yaml(objects: &[Value]) -> String {
    objects.iter().map(|o| format!("---\n{o}\n")).collect()
}

/// The review the API server sends for a new pod with `refs` GMSA references (the pod level
/// for one; ten containers naming ten specs for ten). Validation sees the pod after mutation,
/// so its places also carry the inlined contents, which it compares with the resources.
pub fn review(hook: Hook, refs: usize, uid: &str) -> Vec<u8> {
    let options = |i: usize| match hook {
        Hook::Mutate => json!({"gmsaCredentialSpecName": spec_name(i)}),
        Hook::Validate => json!({
            "gmsaCredentialSpecName": spec_name(i),
            "gmsaCredentialSpec": to_go_json(&contents(i))
        }),
    };
    let image = "mcr.microsoft.com/windows/servercore/iis:windowsservercore-ltsc2022";
    let (pod_security, containers): (Value, Vec<Value>) = if refs <= 1 {
        (
            json!({"windowsOptions": options(0)}),
            vec![json!({"name": "iis", "image": image, "ports": [{"containerPort": 80}]})],
        )
    } else {
        (
            json!({}),
            (0..refs)
                .map(|i| {
                    json!({"name": format!("c{i}"), "image": image,
                        "securityContext": {"windowsOptions": options(i)}})
                })
                .collect(),
        )
    };
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": NAMESPACE,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller",
                "uid": "8c5b8ac4-0b5c-4bd5-8b0e-5f2e2b8a0b7e",
                "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"]},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "generateName": "iis-7d9c6c7b9f-",
                    "namespace": NAMESPACE,
                    "labels": {"app": "iis", "pod-template-hash": "7d9c6c7b9f"},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "name": "iis-7d9c6c7b9f", "uid": "0d0bd2c5-58a4-4a4e-8b11-3f0b8b0f1a51",
                        "controller": true, "blockOwnerDeletion": true}]
                },
                "spec": {
                    "serviceAccountName": SERVICE_ACCOUNT,
                    "securityContext": pod_security,
                    "containers": containers,
                    "nodeSelector": {"kubernetes.io/os": "windows"},
                    "restartPolicy": "Always",
                    "terminationGracePeriodSeconds": 30,
                    "dnsPolicy": "ClusterFirst"
                },
                "status": {}
            },
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    });
    review.to_string().into_bytes()
}

/// What every answer the benchmarks send for must contain.
pub const ALLOWED: &[u8] = br#""allowed":true"#;

/// The fixed answer of the no-op target: an allowed review without a patch.
pub const NOOP_ANSWER: &[u8] = br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","response":{"uid":"bench","allowed":true}}"#;

#[cfg(test)]
mod tests {
    use super::*;
    use gmsa_core::admission::Review;
    use gmsa_core::state::State;
    use gmsa_core::{Facts, Options};

    #[test]
    fn reviews_are_admitted_by_the_embedded_state() {
        let mut state = State::default();
        state
            .add_yaml("bench", &state_yaml(10, 5))
            .expect("state parses");
        for hook in [Hook::Mutate, Hook::Validate] {
            for refs in [1, 10] {
                let body = review(hook, refs, "u");
                let review = Review::read(hook, &body);
                let needs = review.needs();
                assert!(needs.grants.len() + needs.specs.len() > 0);
                let facts = Facts::gather(&needs, &state);
                let answer = review.decide(&facts, Options::default(), String::new);
                assert!(answer.verdict.is_allowed(), "{hook:?} {refs}: {answer:?}");
            }
        }
    }
}
