use serde_json::{json, Value};

use super::*;

/// The reinstall command of a default webhook install.
const REINSTALL: &str = "kubectl gmsa install --apply";

/// A pod spec naming `spec` at `place` (`pod`, `containers`, `initContainers`,
/// `ephemeralContainers`), or carrying contents only (`contents`).
fn pod_spec(place: &str, spec: &str) -> Value {
    let options = json!({"securityContext": {"windowsOptions": {"gmsaCredentialSpecName": spec}}});
    let mut pod = json!({"containers": [{"name": "app", "image": "app"}]});
    match place {
        "pod" => pod["securityContext"] = options["securityContext"].clone(),
        "contents" => {
            pod["containers"][0]["securityContext"] =
                json!({"windowsOptions": {"gmsaCredentialSpec": "{}"}})
        }
        list => {
            let mut container = json!({"name": "c", "image": "c"});
            container["securityContext"] = options["securityContext"].clone();
            if list == "containers" {
                pod["containers"].as_array_mut().unwrap().push(container);
            } else {
                pod[list] = json!([container]);
            }
        }
    }
    pod
}

fn meta(name: &str) -> Value {
    json!({"name": name, "namespace": "apps"})
}

/// An object of `kind` whose pod spec is `spec`.
fn object(kind: WorkloadKind, name: &str, spec: Value) -> Value {
    let template = json!({"metadata": {"labels": {"app": name}}, "spec": spec});
    match kind {
        WorkloadKind::Pod => json!({"metadata": meta(name), "spec": template["spec"]}),
        WorkloadKind::CronJob => json!({"metadata": meta(name), "spec": {
            "schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}}}),
        _ => json!({"metadata": meta(name), "spec": {"template": template}}),
    }
}

fn owned(mut object: Value, kind: &str, owner: &str) -> Value {
    object["metadata"]["ownerReferences"] =
        json!([{"kind": kind, "name": owner, "controller": true, "apiVersion": "x", "uid": "u"}]);
    object
}

#[test]
fn every_kind_and_every_place_is_found() {
    for kind in WorkloadKind::ALL {
        for place in ["pod", "containers", "initContainers", "ephemeralContainers"] {
            let found = find(kind, &object(kind, "w", pod_spec(place, "gmsa-webapp1")))
                .unwrap_or_else(|| panic!("{kind:?} {place}"));
            assert_eq!(found.kind, kind);
            assert_eq!(found.namespace, "apps");
            assert_eq!(found.name, "w");
            assert_eq!(
                found.specs.iter().collect::<Vec<_>>(),
                ["gmsa-webapp1"],
                "{kind:?} {place}"
            );
            assert!(!found.contents_without_name);
        }
        let contents = find(kind, &object(kind, "w", pod_spec("contents", ""))).unwrap();
        assert!(contents.contents_without_name, "{kind:?}");
        assert!(contents.specs.is_empty());
        let plain = json!({"containers": [{"name": "app", "image": "app"}]});
        assert_eq!(find(kind, &object(kind, "w", plain)), None, "{kind:?}");
    }
}

#[test]
fn a_template_in_the_wrong_place_is_not_read_as_the_kinds() {
    // A CronJob's pod template is under jobTemplate; a Deployment-shaped CronJob names nothing.
    let misplaced = object(
        WorkloadKind::Deployment,
        "w",
        pod_spec("pod", "gmsa-webapp1"),
    );
    assert_eq!(find(WorkloadKind::CronJob, &misplaced), None);
}

#[test]
fn finished_and_deleting_pods_are_left_out() {
    let pod = object(WorkloadKind::Pod, "p", pod_spec("pod", "s"));
    for (field, value) in [
        ("/status/phase", json!("Succeeded")),
        ("/status/phase", json!("Failed")),
        ("/metadata/deletionTimestamp", json!("2024-01-01T00:00:00Z")),
    ] {
        let mut gone = pod.clone();
        let (parent, leaf) = field.rsplit_once('/').unwrap();
        if gone.pointer(parent).is_none() {
            gone[&parent[1..]] = json!({});
        }
        gone.pointer_mut(parent).unwrap()[leaf] = value;
        assert_eq!(find(WorkloadKind::Pod, &gone), None, "{field}");
    }
    let mut running = pod;
    running["status"] = json!({"phase": "Running"});
    assert!(find(WorkloadKind::Pod, &running).is_some());
}

#[test]
fn pods_fold_into_their_topmost_controller() {
    let spec = || pod_spec("containers", "gmsa-webapp1");
    let found: Vec<Reference> = [
        (
            WorkloadKind::Deployment,
            object(WorkloadKind::Deployment, "web", spec()),
        ),
        (
            WorkloadKind::ReplicaSet,
            owned(
                object(WorkloadKind::ReplicaSet, "web-1", spec()),
                "Deployment",
                "web",
            ),
        ),
        (
            WorkloadKind::ReplicaSet,
            // An old ReplicaSet that named another spec.
            owned(
                object(
                    WorkloadKind::ReplicaSet,
                    "web-0",
                    pod_spec("pod", "gmsa-old"),
                ),
                "Deployment",
                "web",
            ),
        ),
        (
            WorkloadKind::Pod,
            owned(
                object(WorkloadKind::Pod, "web-1-a", spec()),
                "ReplicaSet",
                "web-1",
            ),
        ),
        (
            WorkloadKind::Pod,
            owned(
                object(WorkloadKind::Pod, "web-1-b", spec()),
                "ReplicaSet",
                "web-1",
            ),
        ),
        (
            WorkloadKind::CronJob,
            object(WorkloadKind::CronJob, "nightly", spec()),
        ),
        (
            WorkloadKind::Job,
            owned(
                object(WorkloadKind::Job, "nightly-1", spec()),
                "CronJob",
                "nightly",
            ),
        ),
        (
            WorkloadKind::Pod,
            object(WorkloadKind::Pod, "alone", spec()),
        ),
        (
            // Its ReplicaSet could not be read (or names nothing): the pod stays.
            WorkloadKind::Pod,
            owned(
                object(WorkloadKind::Pod, "orphan", spec()),
                "ReplicaSet",
                "gone",
            ),
        ),
    ]
    .iter()
    .map(|(kind, o)| find(*kind, o).unwrap())
    .collect();
    let folded = fold(found);
    let lines: Vec<String> = folded.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "cronjob.batch/nightly in apps: gmsa-webapp1",
            "deployment.apps/web in apps: gmsa-old, gmsa-webapp1 (2 pods running)",
            "pod/alone in apps: gmsa-webapp1",
            "pod/orphan in apps: gmsa-webapp1 (controlled by ReplicaSet gone)",
        ]
    );
}

#[test]
fn the_plan_follows_the_flag_the_references_and_the_version() {
    use GuardPlan::*;
    use RefuseGmsaPods::*;
    let old = KubeVersion::new(1, 20);
    let new = KubeVersion::new(1, 37);
    let table = [
        (Auto, new, true, Ok(Leave)),
        (Auto, new, false, Ok(Untouched)),
        (Auto, old, true, Ok(Impossible)),
        (Auto, old, false, Ok(Untouched)),
        (Always, new, false, Ok(Leave)),
        (Always, KubeVersion::VALIDATING_POLICIES, true, Ok(Leave)),
        (
            Always,
            KubeVersion::new(1, 29),
            true,
            Err(GuardUnsupported(KubeVersion::new(1, 29))),
        ),
        (Never, new, true, Ok(Remove)),
        (Never, old, true, Ok(Remove)),
    ];
    for (when, version, referenced, expected) in table {
        assert_eq!(
            plan(when, version, referenced),
            expected,
            "{when:?} {version} {referenced}"
        );
    }
    let error = GuardUnsupported(old).to_string();
    assert!(
        error.contains("this is 1.20") && error.contains("nothing was deleted"),
        "{error}"
    );
}

#[test]
fn the_words_say_what_happens_to_new_pods() {
    let web = find(
        WorkloadKind::Deployment,
        &object(
            WorkloadKind::Deployment,
            "web",
            pod_spec("pod", "gmsa-webapp1"),
        ),
    )
    .unwrap();
    let refs = [web];
    let v = KubeVersion::new(1, 37);
    let policies = "kubectl gmsa install --admission policies --name gw --apply";
    let refused = describe(
        &refs,
        &[],
        &Ending::of(GuardPlan::Leave, "gw", v, false),
        policies,
    );
    assert_eq!(
        refused[0],
        "warning: 1 workload(s) still reference a GMSA credential spec:"
    );
    assert_eq!(refused[1], "  deployment.apps/web in apps: gmsa-webapp1");
    assert!(
        refused[2].contains("ValidatingAdmissionPolicy gw-uninstalled now refuses"),
        "{}",
        refused[2]
    );
    assert!(
        refused[2].contains(&format!("until `{policies}`, which deletes the guard")),
        "the install that was removed: {}",
        refused[2]
    );

    let old = describe(
        &refs,
        &[],
        &Ending::of(GuardPlan::Impossible, "gw", KubeVersion::new(1, 20), false),
        REINSTALL,
    );
    assert!(
        old[2].starts_with(
            "Kubernetes 1.20 has no ValidatingAdmissionPolicy v1 (1.30+), so no guard can be left"
        ),
        "{}",
        old[2]
    );
    assert!(old[2].contains("fail to start on Windows nodes"));

    let never = describe(
        &refs,
        &[],
        &Ending::of(GuardPlan::Remove, "gw", v, true),
        REINSTALL,
    );
    assert!(
        never[2].starts_with("--refuse-gmsa-pods=never"),
        "{}",
        never[2]
    );
    assert!(never[2].contains("without its contents"));

    let nothing = describe(
        &[],
        &[],
        &Ending::of(GuardPlan::Untouched, "gw", v, false),
        REINSTALL,
    );
    assert_eq!(nothing.len(), 1);
    assert!(
        nothing[0].starts_with("no workload references a credential spec; no guard is left"),
        "{}",
        nothing[0]
    );
    let kept = describe(
        &[],
        &[],
        &Ending::of(GuardPlan::Untouched, "gw", v, true),
        REINSTALL,
    );
    assert!(kept[0].contains("gw-uninstalled refuses"), "{}", kept[0]);

    let unread = describe(
        &[],
        &["cannot list pods: forbidden".into()],
        &Ending::of(GuardPlan::Leave, "gw", v, false),
        REINSTALL,
    );
    assert_eq!(
        unread[0],
        "warning: cannot list pods: forbidden: the workloads below may not be all"
    );
    assert!(unread[1].contains("now refuses"), "{unread:?}");
}
