//! The host-name rules of GMSA pods, as admission warnings (never refusals).
//!
//! Windows gives a container the first 15 characters of its host name as its NetBIOS name, and
//! the domain sees every container that runs under one gMSA with one NetBIOS name as one
//! computer: only one of them at a time keeps its domain trust. So a GMSA pod's host name must
//! be unique in its first 15 characters among the pods running under the same gMSA. Two ways to
//! break that are caught at admission: a host name longer than 15 characters (pods of one
//! workload then agree in the part Windows keeps), and a fixed `spec.hostname` in a workload
//! that runs several pods. The webhook, `admit` and the tests share these functions.

use serde_json::Value;

use crate::canonical::go_quote;
use crate::pod::Pod;
use crate::syntax::MAX_NETBIOS;

/// Characters of the hash a Deployment puts between its name and its pods' random suffix
/// (`pod-template-hash`, at most 10).
const TEMPLATE_HASH: usize = 10;
/// Characters of the minute stamp a CronJob puts after its name in its Jobs' names.
const SCHEDULE_STAMP: usize = 8;

/// The NetBIOS name Windows makes of a host name: its first 15 characters, upper case.
fn netbios_of(host: &str) -> String {
    host.chars()
        .take(MAX_NETBIOS)
        .collect::<String>()
        .to_ascii_uppercase()
}

/// A GMSA pod whose host name is longer than a NetBIOS name; the pod must name a spec.
pub fn too_long(pod: &Pod) -> Option<String> {
    let host = pod.container_hostname()?;
    let len = host.chars().count();
    if len <= MAX_NETBIOS {
        return None;
    }
    Some(format!(
        "GMSA pod host name {} has {len} characters: Windows keeps the first {MAX_NETBIOS} ({}) as the container's NetBIOS name, which pods of one workload share and the domain then sees as one computer; set spec.hostname to at most {MAX_NETBIOS} characters, or install with --random-hostname",
        go_quote(&host),
        go_quote(&netbios_of(&host))
    ))
}

/// How many pods of one template a workload runs at once, as its manifest says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrency {
    /// `spec.replicas` (Deployment, ReplicaSet, ReplicationController) or `parallelism` (Job,
    /// CronJob's job template); absent means 1.
    Pods(i64),
    /// A DaemonSet: one pod on every node that matches, several on a cluster of more than one.
    OnePerNode,
    /// A StatefulSet: its controller sets each pod's `spec.hostname` to the pod's own name
    /// (`web-0`, `web-1`, ...) whatever the template says, so the pods never share it.
    OwnHostnames,
}

/// The concurrency of a workload of `kind`; `None` for kinds that run no pod template.
pub fn concurrency(kind: &str, manifest: &Value) -> Option<Concurrency> {
    let count = |pointer: &str| {
        Concurrency::Pods(
            manifest
                .pointer(pointer)
                .and_then(Value::as_i64)
                .unwrap_or(1),
        )
    };
    match kind {
        "Deployment" | "ReplicaSet" | "ReplicationController" => Some(count("/spec/replicas")),
        "Job" => Some(count("/spec/parallelism")),
        "CronJob" => Some(count("/spec/jobTemplate/spec/parallelism")),
        "DaemonSet" => Some(Concurrency::OnePerNode),
        "StatefulSet" => Some(Concurrency::OwnHostnames),
        _ => None,
    }
}

/// The fixed part of the names a workload's controller gives its pods, in characters: the
/// pods' own host names (without `spec.hostname`) agree in it.
fn generated_prefix_len(kind: &str, name: &str) -> usize {
    let name = name.chars().count();
    match kind {
        // NAME-HASH-xxxxx
        "Deployment" => name + 1 + TEMPLATE_HASH + 1,
        // NAME-STAMP-xxxxx (the Job's name, then the pod's suffix)
        "CronJob" => name + 1 + SCHEDULE_STAMP + 1,
        // NAME-xxxxx
        _ => name + 1,
    }
}

/// What to do about pods that share a fixed host name. Without `spec.hostname` a pod's own name
/// is its host name; when a controller's names agree in their first 15 characters that is not
/// enough, and the webhook's RANDOM_HOSTNAME gives each such pod a 15-character name of its own.
fn shared_fix(own_names_agree: bool, one_per_node: bool) -> String {
    let mut fix = if own_names_agree {
        format!("remove spec.hostname and install with --random-hostname, which gives each GMSA pod without one a random {MAX_NETBIOS}-character host name (the pods' own names agree in their first {MAX_NETBIOS} characters)")
    } else {
        "remove spec.hostname, so that each pod's own name is its host name".to_string()
    };
    if !one_per_node {
        fix.push_str(", or run one replica per host name");
    }
    fix
}

/// The consequence, said the same way by every shared-host-name warning.
fn shared_consequence(host: &str) -> String {
    format!(
        "they share the NetBIOS name {}, which the domain sees as one computer, so only one of them at a time keeps its domain trust",
        go_quote(&netbios_of(host))
    )
}

/// `admit`'s rule: a workload whose template names a credential spec and sets `spec.hostname`,
/// and that runs more than one pod at once. `name` is the workload's; `template` the pod it
/// creates.
pub fn shared_by_workload(
    kind: &str,
    name: &str,
    concurrency: Concurrency,
    template: &Pod,
) -> Option<String> {
    let host = template.hostname();
    if host.is_empty() || !template.names_a_spec() {
        return None;
    }
    let own_names_agree = generated_prefix_len(kind, name) >= MAX_NETBIOS;
    let (pods, one_per_node) = match concurrency {
        Concurrency::Pods(n) if n > 1 => {
            let what = if matches!(kind, "Job" | "CronJob") {
                format!("up to {n} pods at once (parallelism {n})")
            } else {
                format!("its {n} replicas")
            };
            (what, false)
        }
        Concurrency::OnePerNode => (
            "its pods, one on each node (several on a cluster of more than one Windows node),"
                .to_string(),
            true,
        ),
        Concurrency::Pods(_) | Concurrency::OwnHostnames => return None,
    };
    Some(format!(
        "{pods} run with the one spec.hostname {} under a gMSA: {}; {}",
        go_quote(host),
        shared_consequence(host),
        shared_fix(own_names_agree, one_per_node)
    ))
}

/// The webhook's rule, which sees one pod and makes no API call: a pod that names a credential
/// spec, sets `spec.hostname`, and was made by a controller that may run several pods from one
/// template. How many it runs would take a lookup, so the warning says "may".
///
/// StatefulSet pods are left out: the StatefulSet controller sets each pod's `spec.hostname` to
/// the pod's own name (`web-0`, `web-1`, ...), replacing the template's, so its pods never share
/// one (a name longer than 15 characters is [`too_long`]'s case).
pub fn shared_by_controller(pod: &Pod) -> Option<String> {
    let host = pod.hostname();
    if host.is_empty() || !pod.names_a_spec() {
        return None;
    }
    let controller = pod.controller()?;
    let one_per_node = match (controller.group(), controller.kind.as_str()) {
        ("apps" | "extensions", "ReplicaSet")
        | ("", "ReplicationController")
        | ("batch", "Job") => false,
        ("apps" | "extensions", "DaemonSet") => true,
        _ => return None,
    };
    let own_names_agree = pod.generate_name().chars().count() >= MAX_NETBIOS;
    Some(format!(
        "GMSA pod sets spec.hostname {} and its {} {} may run several pods with it under the same gMSA: {}; {}",
        go_quote(host),
        controller.kind,
        go_quote(&controller.name),
        shared_consequence(host),
        shared_fix(own_names_agree, one_per_node)
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use serde_json::json;

    use super::*;

    /// A pod (or template) naming gmsa-webapp1 at `place` ("pod", "container" or "none"), with
    /// `hostname` when not empty and `metadata` as given.
    fn pod(place: &str, hostname: &str, metadata: Value) -> Pod {
        let named = json!({"windowsOptions": {"gmsaCredentialSpecName": "gmsa-webapp1"}});
        let mut spec = json!({"containers": [{"name": "iis", "image": "iis"}]});
        match place {
            "pod" => spec["securityContext"] = named,
            "container" => spec["containers"][0]["securityContext"] = named,
            _ => {}
        }
        if !hostname.is_empty() {
            spec["hostname"] = json!(hostname);
        }
        Pod::from_json(&json!({"metadata": metadata, "spec": spec}).to_string()).unwrap()
    }

    #[test]
    fn concurrency_as_each_kind_says() {
        let cases = [
            (
                "Deployment",
                json!({"spec": {"replicas": 3}}),
                Some(Concurrency::Pods(3)),
            ),
            (
                "Deployment",
                json!({"spec": {}}),
                Some(Concurrency::Pods(1)),
            ),
            (
                "ReplicaSet",
                json!({"spec": {"replicas": 0}}),
                Some(Concurrency::Pods(0)),
            ),
            (
                "ReplicationController",
                json!({"spec": {"replicas": 2}}),
                Some(Concurrency::Pods(2)),
            ),
            (
                "Job",
                json!({"spec": {"parallelism": 4, "completions": 8}}),
                Some(Concurrency::Pods(4)),
            ),
            // completions alone run one at a time
            (
                "Job",
                json!({"spec": {"completions": 8}}),
                Some(Concurrency::Pods(1)),
            ),
            (
                "CronJob",
                json!({"spec": {"jobTemplate": {"spec": {"parallelism": 2}}}}),
                Some(Concurrency::Pods(2)),
            ),
            (
                "CronJob",
                json!({"spec": {"jobTemplate": {}}}),
                Some(Concurrency::Pods(1)),
            ),
            (
                "DaemonSet",
                json!({"spec": {}}),
                Some(Concurrency::OnePerNode),
            ),
            (
                "StatefulSet",
                json!({"spec": {"replicas": 3}}),
                Some(Concurrency::OwnHostnames),
            ),
            ("Service", json!({"spec": {}}), None),
        ];
        for (kind, manifest, expected) in cases {
            assert_eq!(concurrency(kind, &manifest), expected, "{kind} {manifest}");
        }
    }

    #[test]
    fn workloads_sharing_a_fixed_hostname() {
        let meta = json!({"labels": {"app": "web"}});
        // (kind, name, concurrency, place of the spec's name, hostname, expected start)
        type Case = (
            &'static str,
            &'static str,
            Concurrency,
            &'static str,
            &'static str,
            Option<&'static str>,
        );
        let cases: &[Case] = &[
            (
                "Deployment",
                "web",
                Concurrency::Pods(3),
                "pod",
                "web1",
                Some(
                    r#"its 3 replicas run with the one spec.hostname "web1" under a gMSA: they share the NetBIOS name "WEB1", which the domain sees as one computer, so only one of them at a time keeps its domain trust; remove spec.hostname and install with --random-hostname, which gives each GMSA pod without one a random 15-character host name (the pods' own names agree in their first 15 characters), or run one replica per host name"#,
                ),
            ),
            // A container naming the spec counts as much as the pod.
            (
                "ReplicaSet",
                "web",
                Concurrency::Pods(2),
                "container",
                "web1",
                Some(
                    r#"its 2 replicas run with the one spec.hostname "web1" under a gMSA: they share the NetBIOS name "WEB1", which the domain sees as one computer, so only one of them at a time keeps its domain trust; remove spec.hostname, so that each pod's own name is its host name, or run one replica per host name"#,
                ),
            ),
            // NAME- alone fills 15 characters.
            (
                "ReplicationController",
                "web-application",
                Concurrency::Pods(2),
                "pod",
                "web1",
                Some(
                    r#"its 2 replicas run with the one spec.hostname "web1" under a gMSA: they share the NetBIOS name "WEB1", which the domain sees as one computer, so only one of them at a time keeps its domain trust; remove spec.hostname and install with --random-hostname"#,
                ),
            ),
            (
                "DaemonSet",
                "agent",
                Concurrency::OnePerNode,
                "pod",
                "a-long-host-name-1",
                Some(
                    r#"its pods, one on each node (several on a cluster of more than one Windows node), run with the one spec.hostname "a-long-host-name-1" under a gMSA: they share the NetBIOS name "A-LONG-HOST-NAM", which the domain sees as one computer, so only one of them at a time keeps its domain trust; remove spec.hostname, so that each pod's own name is its host name"#,
                ),
            ),
            (
                "Job",
                "report",
                Concurrency::Pods(4),
                "pod",
                "reports",
                Some(
                    r#"up to 4 pods at once (parallelism 4) run with the one spec.hostname "reports" under a gMSA: "#,
                ),
            ),
            // A CronJob's Jobs are NAME-STAMP: 5 + 10 characters.
            (
                "CronJob",
                "night",
                Concurrency::Pods(2),
                "pod",
                "reports",
                Some(
                    r#"up to 2 pods at once (parallelism 2) run with the one spec.hostname "reports" under a gMSA: they share the NetBIOS name "REPORTS", which the domain sees as one computer, so only one of them at a time keeps its domain trust; remove spec.hostname and install with --random-hostname"#,
                ),
            ),
            // One pod at a time, no hostname, no spec, or a StatefulSet: nothing to say.
            (
                "Deployment",
                "web",
                Concurrency::Pods(1),
                "pod",
                "web1",
                None,
            ),
            (
                "Deployment",
                "web",
                Concurrency::Pods(0),
                "pod",
                "web1",
                None,
            ),
            (
                "Job",
                "report",
                Concurrency::Pods(1),
                "pod",
                "reports",
                None,
            ),
            ("Deployment", "web", Concurrency::Pods(3), "pod", "", None),
            (
                "Deployment",
                "web",
                Concurrency::Pods(3),
                "none",
                "web1",
                None,
            ),
            (
                "StatefulSet",
                "web",
                Concurrency::OwnHostnames,
                "pod",
                "web1",
                None,
            ),
        ];
        for (kind, name, concurrency, place, host, expected) in cases {
            let template = pod(place, host, meta.clone());
            let got = shared_by_workload(kind, name, *concurrency, &template);
            match (expected, &got) {
                (None, None) => {}
                (Some(start), Some(got)) => {
                    assert!(
                        got.starts_with(start),
                        "{kind} {name}:\n{got}\nwanted\n{start}"
                    );
                    let one_per_node = *concurrency == Concurrency::OnePerNode;
                    assert_eq!(
                        got.ends_with(", or run one replica per host name"),
                        !one_per_node,
                        "{got}"
                    );
                }
                _ => panic!("{kind} {name} {concurrency:?} {place} {host:?}: got {got:?}"),
            }
        }
    }

    #[test]
    fn pods_whose_controller_may_run_several() {
        let owned = |api_version: &str, kind: &str, generate_name: &str| {
            json!({
                "generateName": generate_name,
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "u0"},
                    {"apiVersion": api_version, "kind": kind, "name": "web-7776966999",
                     "uid": "u1", "controller": true}
                ]
            })
        };
        let rs = owned("apps/v1", "ReplicaSet", "web-7776966999-");
        // (metadata, place, hostname, expected start or None)
        let cases: Vec<(Value, &str, &str, Option<&str>)> = vec![
            (
                rs.clone(),
                "pod",
                "web1",
                Some(
                    r#"GMSA pod sets spec.hostname "web1" and its ReplicaSet "web-7776966999" may run several pods with it under the same gMSA: they share the NetBIOS name "WEB1", which the domain sees as one computer, so only one of them at a time keeps its domain trust; remove spec.hostname and install with --random-hostname, which gives each GMSA pod without one a random 15-character host name (the pods' own names agree in their first 15 characters), or run one replica per host name"#,
                ),
            ),
            (
                rs.clone(),
                "container",
                "web1",
                Some(r#"GMSA pod sets spec.hostname "web1" and its ReplicaSet"#),
            ),
            (
                owned("v1", "ReplicationController", "web-"),
                "pod",
                "web1",
                Some(
                    r#"GMSA pod sets spec.hostname "web1" and its ReplicationController "web-7776966999" may run several pods with it under the same gMSA: they share the NetBIOS name "WEB1", which the domain sees as one computer, so only one of them at a time keeps its domain trust; remove spec.hostname, so that each pod's own name is its host name, or run one replica per host name"#,
                ),
            ),
            (
                owned("apps/v1", "DaemonSet", "agent-"),
                "pod",
                "agent",
                Some(r#"GMSA pod sets spec.hostname "agent" and its DaemonSet"#),
            ),
            (
                owned("batch/v1", "Job", "report-"),
                "pod",
                "reports",
                Some(r#"GMSA pod sets spec.hostname "reports" and its Job"#),
            ),
            // A StatefulSet's pods get their own names as host names.
            (owned("apps/v1", "StatefulSet", ""), "pod", "web-0", None),
            // A kind of the same name in another group is not the controller we know.
            (
                owned("example.com/v1", "ReplicaSet", "web-"),
                "pod",
                "web1",
                None,
            ),
            // Not a controller, no hostname, no spec, no owner.
            (
                json!({"ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                     "name": "web", "uid": "u1"}]}),
                "pod",
                "web1",
                None,
            ),
            (rs.clone(), "pod", "", None),
            (rs, "none", "web1", None),
            (json!({"name": "web"}), "pod", "web1", None),
        ];
        for (metadata, place, host, expected) in cases {
            let got = shared_by_controller(&pod(place, host, metadata.clone()));
            match (expected, &got) {
                (None, None) => {}
                (Some(start), Some(got)) => {
                    assert!(
                        got.starts_with(start),
                        "{metadata}:\n{got}\nwanted\n{start}"
                    );
                    assert_eq!(
                        got.ends_with(", or run one replica per host name"),
                        !got.contains("DaemonSet"),
                        "{got}"
                    );
                }
                _ => panic!("{metadata} {place} {host:?}: got {got:?}"),
            }
        }
    }

    #[test]
    fn malformed_owner_references_are_ignored() {
        for refs in [
            json!("x"),
            json!([1, null]),
            json!({"controller": true}),
            json!(null),
        ] {
            let p = pod("pod", "web1", json!({"ownerReferences": refs}));
            assert!(p.controller().is_none(), "{refs}");
            assert!(shared_by_controller(&p).is_none());
        }
    }
}
